//! Blocking work (a positions save, a file sink's write, a dead-letter append) run on tokio's
//! blocking threads, with its panic raised again in the task that waits for it.
//!
//! `spawn_blocking` hands a panic back as an error value. Taken for an ordinary error, a bug
//! turned into a component that runs on broken: the file sink retried forever against the lock
//! the panic had poisoned, delivering nothing; the docker source's committer stopped saving
//! cursors and the shipper ran on; the dead-letter queue went on from whatever state the panic
//! left it in. Raised in the component's task instead, the panic stops the shipper with an error
//! naming the component (see `log_capturer::tasks`), and what was not acknowledged is read again
//! after the restart.
//!
//! Guarantees: [`run`] returns what `work` returned, or [`Cancelled`] when the runtime shut
//! down before `work` ran (the end of a shutdown); a panic in `work` is never returned as a
//! value, it unwinds the caller.

/// The text a panic was raised with (`panic!("...")` gives a `&str` or a `String`), for the
/// logs of whoever catches it.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}

/// The runtime shut down before the blocking work ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the runtime shut down before the blocking work ran")
    }
}

/// Runs `work` on a blocking thread and waits for it; a panic in `work` is raised again here.
pub async fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Cancelled> {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Ok(value),
        Err(join) => match join.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(_) => Err(Cancelled),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::panic::AssertUnwindSafe;

    #[tokio::test]
    async fn the_value_is_returned() {
        assert_eq!(run(|| 41 + 1).await, Ok(42));
    }

    #[tokio::test]
    async fn a_panic_in_the_work_unwinds_the_caller_with_its_message() {
        let caught = AssertUnwindSafe(run(|| -> u32 { panic!("the save broke") }))
            .catch_unwind()
            .await;
        let payload = caught.expect_err("the panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"the save broke"));
    }
}
