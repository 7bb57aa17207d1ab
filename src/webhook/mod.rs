//! Inbound webhooks from services that are not chat platforms. Like the chat adapters, they
//! only verify, translate and hand on; the engine decides.

pub mod github;
