//! Chat adapters at the edge. They turn platform input into [`Invocation`]s and render
//! [`Reply`]s and progress; they decide nothing.
//!
//! [`Invocation`]: crate::engine::Invocation
//! [`Reply`]: crate::engine::Reply

pub mod console;
pub mod text;
