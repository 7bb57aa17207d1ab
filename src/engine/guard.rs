//! The task boundary: a panic inside long work (a deploy, a ref being resolved, a check on a
//! host) is caught where the task was spawned, reported to the engine as a failure, and never
//! leaves an environment held by work that no longer runs.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Runs a future, turning a panic while polling it into `Err(message)`.
pub(crate) struct CatchUnwind<F>(Pin<Box<F>>);

/// Wraps `future` so a panic inside it becomes `Err(message)`.
pub(crate) fn catch_unwind<F: Future>(future: F) -> CatchUnwind<F> {
    CatchUnwind(Box::pin(future))
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        // The future is dropped right after a panic, never polled again, so no broken state
        // of it is observed.
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

/// The text a panic carried (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Spawns `future`; if it panics, `on_panic` runs with the message (it tells the engine, so the
/// work is recorded as failed).
pub(crate) fn spawn_guarded<F>(task: &'static str, future: F, on_panic: impl FnOnce(String) + Send + 'static)
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(message) = catch_unwind(future).await {
            tracing::error!(task, %message, "a task panicked; recorded as a failure");
            on_panic(message);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_inside_a_task_reaches_its_handler_with_the_message() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn_guarded(
            "test",
            async {
                tokio::task::yield_now().await;
                panic!("byte index 4 is not a char boundary");
            },
            move |message| {
                let _ = tx.send(message);
            },
        );
        assert_eq!(rx.await.unwrap(), "byte index 4 is not a char boundary");
        assert_eq!(catch_unwind(async { 7 }).await, Ok(7));
    }
}
