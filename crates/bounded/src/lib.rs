//! `#[bounded::test]`: Shipday's test attribute. Every test runs under a timeout and fails with
//! a message naming the test when it does not finish in time, instead of hanging the suite.
//!
//! - On an `async fn` it is `#[tokio::test]` (the same arguments, e.g.
//!   `flavor = "multi_thread", worker_threads = 2`) around a body raced against
//!   `tokio::time::timeout`.
//! - On a plain `fn` it is `#[test]` around a body run on its own thread and waited for with a
//!   deadline.
//! - `timeout_secs = N` changes the limit (default [`DEFAULT_SECS`] seconds).
//!
//! Written against `proc_macro` alone (no `syn`, no `quote`): it only finds the function's
//! name and body, so it costs next to nothing to build.

use proc_macro::{Delimiter, Group, Literal, Punct, Spacing, TokenStream, TokenTree};
use std::str::FromStr;

/// A test's time limit unless it says `timeout_secs = N`: generous, because the machine that
/// runs the suite may be busy; a hang is caught either way.
const DEFAULT_SECS: u64 = 180;

/// Runs the test under a timeout; see the crate documentation.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args, item) {
        Ok(tokens) => tokens,
        Err(message) => compile_error(&message),
    }
}

fn expand(args: TokenStream, item: TokenStream) -> Result<TokenStream, String> {
    let (secs, passed) = split_args(args)?;
    let mut tokens: Vec<TokenTree> = item.into_iter().collect();
    let fn_at = tokens.iter().position(|t| is_ident(t, "fn")).ok_or("#[bounded::test] goes on a function")?;
    let is_async = tokens.iter().take(fn_at).any(|t| is_ident(t, "async"));
    let name = match tokens.get(fn_at + 1) {
        Some(TokenTree::Ident(name)) => name.to_string(),
        _ => return Err("#[bounded::test]: the function has no name".into()),
    };
    let body_at = tokens
        .iter()
        .rposition(|t| matches!(t, TokenTree::Group(g) if g.delimiter() == Delimiter::Brace))
        .ok_or("#[bounded::test]: the function has no body")?;
    let Some(TokenTree::Group(body)) = tokens.get(body_at).cloned() else {
        return Err("#[bounded::test]: the function has no body".into());
    };
    let bounded = if is_async { async_body(&name, secs, body) } else { sync_body(&name, secs, body) };
    if let Some(slot) = tokens.get_mut(body_at) {
        *slot = TokenTree::Group(Group::new(Delimiter::Brace, bounded?));
    }

    let mut out = if is_async {
        let mut attr = TokenStream::from_str("::tokio::test").map_err(|e| e.to_string())?;
        if !passed.is_empty() {
            attr.extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, passed))]);
        }
        attribute(attr)
    } else {
        if !passed.is_empty() {
            return Err("#[bounded::test] on a plain fn takes only `timeout_secs = N`".into());
        }
        attribute(TokenStream::from_str("::core::prelude::v1::test").map_err(|e| e.to_string())?)
    };
    out.extend(tokens);
    Ok(out)
}

/// `timeout_secs = N` taken out; every other argument is passed on to `#[tokio::test]`.
fn split_args(args: TokenStream) -> Result<(u64, TokenStream), String> {
    let mut secs = DEFAULT_SECS;
    let mut passed = Vec::<TokenTree>::new();
    let mut current = Vec::<TokenTree>::new();
    let mut flush = |current: &mut Vec<TokenTree>| -> Result<(), String> {
        let arg = std::mem::take(current);
        if arg.first().is_some_and(|t| is_ident(t, "timeout_secs")) {
            secs = match arg.get(2) {
                Some(TokenTree::Literal(n)) => {
                    n.to_string().parse().map_err(|_| format!("timeout_secs must be a whole number, not {n}"))?
                }
                _ => return Err("write timeout_secs = N".into()),
            };
        } else if !arg.is_empty() {
            if !passed.is_empty() {
                passed.push(TokenTree::Punct(Punct::new(',', Spacing::Alone)));
            }
            passed.extend(arg);
        }
        Ok(())
    };
    for token in args {
        if matches!(&token, TokenTree::Punct(p) if p.as_char() == ',') {
            flush(&mut current)?;
        } else {
            current.push(token);
        }
    }
    flush(&mut current)?;
    Ok((secs, passed.into_iter().collect()))
}

/// `::tokio::time::timeout(LIMIT, async move BODY).await.unwrap_or_else(|_| panic!(..))`
fn async_body(name: &str, secs: u64, body: Group) -> Result<TokenStream, String> {
    let mut call = TokenStream::from_str(&format!("::std::time::Duration::from_secs({secs}), async move"))
        .map_err(|e| e.to_string())?;
    call.extend([TokenTree::Group(body)]);
    let mut out = TokenStream::from_str("::tokio::time::timeout").map_err(|e| e.to_string())?;
    out.extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, call))]);
    out.extend(
        TokenStream::from_str(&format!(".await.unwrap_or_else(|_| {})", timed_out(name, secs)))
            .map_err(|e| e.to_string())?,
    );
    Ok(out)
}

/// The body on its own thread, waited for with a deadline; its panic is the test's panic.
fn sync_body(name: &str, secs: u64, body: Group) -> Result<TokenStream, String> {
    // `move || { let out = (move || BODY)(); done.send(()); out }`, built in parts because a
    // token stream cannot open a bracket that another one closes.
    let mut closure = TokenStream::from_str("move ||").map_err(|e| e.to_string())?;
    closure.extend([TokenTree::Group(body)]);
    let mut spawned = TokenStream::from_str("let __bounded_out =").map_err(|e| e.to_string())?;
    spawned.extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, closure))]);
    spawned.extend(
        TokenStream::from_str("(); let _ = __bounded_done.send(()); __bounded_out").map_err(|e| e.to_string())?,
    );
    let mut thread_body = TokenStream::from_str("move ||").map_err(|e| e.to_string())?;
    thread_body.extend([TokenTree::Group(Group::new(Delimiter::Brace, spawned))]);

    let mut out = TokenStream::from_str(&format!(
        "let (__bounded_done, __bounded_finished) = ::std::sync::mpsc::channel::<()>();\n\
         let __bounded_test = ::std::thread::Builder::new().name({name:?}.into()).spawn"
    ))
    .map_err(|e| e.to_string())?;
    out.extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, thread_body))]);
    out.extend(
        TokenStream::from_str(&format!(
            ".expect(\"a thread for the test\");\n\
         match __bounded_finished.recv_timeout(::std::time::Duration::from_secs({secs})) {{\n\
             ::std::result::Result::Err(::std::sync::mpsc::RecvTimeoutError::Timeout) => {},\n\
             _ => match __bounded_test.join() {{\n\
                 ::std::result::Result::Ok(__bounded_out) => __bounded_out,\n\
                 ::std::result::Result::Err(panic) => ::std::panic::resume_unwind(panic),\n\
             }},\n\
         }}",
            timed_out(name, secs)
        ))
        .map_err(|e| e.to_string())?,
    );
    Ok(out)
}

fn timed_out(name: &str, secs: u64) -> String {
    format!(
        "::std::panic!(\"test `{name}` did not finish within {secs} s (#[bounded::test]): it hangs or waits for something that never happens\")"
    )
}

fn attribute(path: TokenStream) -> TokenStream {
    let mut out = TokenStream::new();
    out.extend([
        TokenTree::Punct(Punct::new('#', Spacing::Alone)),
        TokenTree::Group(Group::new(Delimiter::Bracket, path)),
    ]);
    out
}

fn is_ident(token: &TokenTree, word: &str) -> bool {
    matches!(token, TokenTree::Ident(i) if i.to_string() == word)
}

fn compile_error(message: &str) -> TokenStream {
    let mut out = TokenStream::from_str("::core::compile_error!").unwrap_or_default();
    let mut arg = TokenStream::new();
    arg.extend([TokenTree::Literal(Literal::string(message))]);
    out.extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, arg))]);
    out.extend([TokenTree::Punct(Punct::new(';', Spacing::Alone))]);
    out
}
