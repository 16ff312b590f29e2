//! The running components' tasks, each known by its component's name.
//!
//! A component whose task panics stops taking batches, and the stages before it stop with it
//! (their queues fill and block). Left running, the shipper would answer its API, read nothing
//! more and deliver nothing, and only a stalled-pipeline alert would tell. So the first panic is
//! reported as a [`ComponentFailure`] naming the component: the shipper logs it, shuts down what
//! can still drain, and exits with an error, so that its supervisor (systemd, Kubernetes) starts
//! it again, and it reads again from the saved positions what was not acknowledged (the batch the
//! panic dropped never was: its finalizers record an error when dropped).
//!
//! Guarantees:
//! - [`ComponentTasks::first_failure`] resolves only on a panic, never on a task that ended on its
//!   own (a source that finished, a stage whose input ended): those are part of a drain.
//! - A task's result is taken once: what `first_failure` took, [`ComponentTasks::join_all`]
//!   does not see again, and the reverse. `join_all` (a drain) logs every panic it meets and
//!   returns the first, so that a panic during a shutdown (a source's last positions save) ends
//!   the process with an error too.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinError, JoinSet};

/// A component's task that panicked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentFailure {
    /// The component's name in the configuration.
    pub component: String,
    /// What the panic said.
    pub message: String,
}

impl std::fmt::Display for ComponentFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "component `{}` panicked: {}",
            self.component, self.message
        )
    }
}

/// The tasks of a pipeline's components.
#[derive(Default)]
pub struct ComponentTasks {
    set: JoinSet<()>,
    names: HashMap<Id, String>,
}

impl ComponentTasks {
    /// Runs `task` on the runtime as component `name`'s task.
    pub fn spawn(&mut self, name: &str, task: impl Future<Output = ()> + Send + 'static) {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name.to_string());
    }

    /// Waits for the first task that panics; pending forever when none does (tasks that end on
    /// their own are set aside on the way).
    pub async fn first_failure(&mut self) -> ComponentFailure {
        loop {
            match self.set.join_next_with_id().await {
                Some(Ok((id, ()))) => {
                    self.names.remove(&id);
                }
                Some(Err(error)) if error.is_panic() => return self.failure(error),
                // Cancelled: only `abort_all` cancels, at the end of a shutdown.
                Some(Err(error)) => {
                    self.names.remove(&error.id());
                }
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Waits for every task to end, logging those that panicked; the first of them, if any.
    pub async fn join_all(&mut self, what: &str) -> Option<ComponentFailure> {
        let mut first = None;
        while let Some(result) = self.set.join_next().await {
            if let Err(error) = result
                && error.is_panic()
            {
                let failure = self.failure(error);
                tracing::error!(component = %failure.component, error = %failure.message, "A {what} task panicked.");
                first.get_or_insert(failure);
            }
        }
        first
    }

    /// Cancels every task still running.
    pub fn abort_all(&mut self) {
        self.set.abort_all();
    }

    fn failure(&mut self, error: JoinError) -> ComponentFailure {
        let component = self
            .names
            .remove(&error.id())
            .unwrap_or_else(|| "(unknown)".to_string());
        let message = match error.try_into_panic() {
            Ok(payload) => log_capturer_components::blocking::panic_message(payload.as_ref()),
            Err(error) => error.to_string(),
        };
        ComponentFailure { component, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_reported_with_its_component_and_message() {
        let mut tasks = ComponentTasks::default();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("finished_source", async {});
        tasks.spawn("dedup", async move {
            let _ = released.await;
            panic!("failed to reserve space for extra elements");
        });
        tasks.spawn("loki", std::future::pending());
        release.send(()).unwrap();
        let failure = tasks.first_failure().await;
        assert_eq!(
            failure,
            ComponentFailure {
                component: "dedup".into(),
                message: "failed to reserve space for extra elements".into(),
            }
        );
        assert_eq!(
            failure.to_string(),
            "component `dedup` panicked: failed to reserve space for extra elements"
        );
    }

    #[tokio::test]
    async fn tasks_that_end_on_their_own_are_no_failure() {
        let mut tasks = ComponentTasks::default();
        let (a_done, a_ended) = tokio::sync::oneshot::channel::<()>();
        let (b_done, b_ended) = tokio::sync::oneshot::channel::<()>();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("a", async move {
            let _ = a_done.send(());
        });
        tasks.spawn("b", async move {
            let _ = b_done.send(());
        });
        tasks.spawn("c", async move {
            let _ = released.await;
            panic!("late");
        });
        // `a` and `b` have ended before `c` panics: the first failure is still `c`'s.
        a_ended.await.unwrap();
        b_ended.await.unwrap();
        release.send(()).unwrap();
        assert_eq!(tasks.first_failure().await.component, "c");
        assert!(tasks.names.is_empty(), "every ended task was set aside");
        tasks.join_all("component").await;
    }

    #[tokio::test]
    async fn a_formatted_panic_message_is_kept() {
        let mut tasks = ComponentTasks::default();
        tasks.spawn("parse", async {
            let line = 7;
            panic!("bad line {line}");
        });
        assert_eq!(tasks.first_failure().await.message, "bad line 7");
    }
}
