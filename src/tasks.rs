//! A supervised set of long-running tasks: `serve`'s (the server, the
//! listeners, the followers) and, nested in it, the cluster controller's
//! (reflectors, snapshot builder, Lease, audit). A task that ends (it
//! returned, or panicked) is reported with its name; the caller decides
//! whether that was expected (after the termination signal) or must end
//! the process. Dropping the set aborts the tasks still running.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::task::{Id, JoinSet};

/// A task to supervise, with the name its end is reported under.
pub type Task = (&'static str, BoxFuture<'static, ()>);

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It returned; with what it said about why, if anything.
    Returned(Option<String>),
    /// It panicked, with the panic's message.
    Panicked(String),
    /// It was aborted from outside.
    Cancelled,
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Returned(None) => f.write_str("ended"),
            Ended::Returned(Some(why)) => write!(f, "ended: {why}"),
            Ended::Panicked(message) => write!(f, "panicked: {message}"),
            Ended::Cancelled => f.write_str("was cancelled"),
        }
    }
}

#[derive(Default)]
pub struct Tasks {
    set: JoinSet<Option<String>>,
    /// The names by task id: a panicked task returns no value to carry its
    /// name, only its id.
    names: HashMap<Id, &'static str>,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a task that should run until shutdown.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.spawn_saying(name, task.map(|()| None));
    }

    /// Starts a task that says, when it returns, why it did.
    pub fn spawn_saying(
        &mut self,
        name: &'static str,
        task: impl Future<Output = Option<String>> + Send + 'static,
    ) {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// Waits for the next task to end; None when none is left.
    pub async fn next_ended(&mut self) -> Option<(&'static str, Ended)> {
        let (id, ended) = match self.set.join_next_with_id().await? {
            Ok((id, said)) => (id, Ended::Returned(said)),
            Err(e) => {
                let id = e.id();
                let ended = match e.try_into_panic() {
                    Ok(payload) => Ended::Panicked(panic_message(payload.as_ref())),
                    Err(_) => Ended::Cancelled,
                };
                (id, ended)
            }
        };
        let name = self.names.remove(&id).unwrap_or("an unnamed task");
        Some((name, ended))
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_or_returns_is_reported_by_name() {
        let mut tasks = Tasks::new();
        tasks.spawn("forever", std::future::pending());
        tasks.spawn("panics", async { panic!("the disk is gone") });
        let (name, ended) = tasks.next_ended().await.unwrap();
        assert_eq!(name, "panics");
        assert_eq!(ended, Ended::Panicked("the disk is gone".into()));
        assert_eq!(ended.to_string(), "panicked: the disk is gone");

        tasks.spawn_saying("says", async { Some("its watch closed".into()) });
        let (name, ended) = tasks.next_ended().await.unwrap();
        assert_eq!(
            (name, ended.to_string()),
            ("says", "ended: its watch closed".into())
        );
    }

    #[tokio::test]
    async fn dropping_the_set_stops_what_still_runs() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut tasks = Tasks::new();
        tasks.spawn("holds the sender", async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(tasks);
        // The sender is dropped with the aborted task.
        assert!(rx.await.is_err());
    }
}
