//! Long-lived tasks that are owned: a process runs whole or not at all. Every task a process
//! depends on is spawned here by name; the first one to end or panic before shutdown is
//! reported with its name and reason, and the process then turns unready, closes its streams
//! and exits non-zero, so that Kubernetes restarts it instead of leaving it half alive.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinSet};

/// Why a supervised task stopped.
#[derive(Debug)]
pub struct Stopped {
    pub task: &'static str,
    pub reason: String,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} task {}", self.task, self.reason)
    }
}

impl std::error::Error for Stopped {}

/// The tasks a process cannot run without.
#[derive(Default)]
pub struct Tasks {
    set: JoinSet<anyhow::Result<()>>,
    names: HashMap<Id, &'static str>,
}

impl Tasks {
    /// Runs `task` until it ends; ending at all, before shutdown, is a failure.
    pub fn spawn<F, T>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = T> + Send + 'static,
        T: Outcome + 'static,
    {
        let task = fault::inject(name, task);
        let handle = self.set.spawn(async move { task.await.into_result() });
        self.names.insert(handle.id(), name);
    }

    /// Resolves once every task has ended (after a shutdown).
    pub async fn ended(&mut self) {
        while self.set.join_next().await.is_some() {}
    }

    /// Resolves when a task ends, with its name and why; never when there are none.
    pub async fn stopped(&mut self) -> Stopped {
        let Some(joined) = self.set.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let (id, reason) = match joined {
            Ok((id, Ok(()))) => (id, "ended".to_string()),
            Ok((id, Err(error))) => (
                id,
                format!("failed: {}", crate::logging::causes(error.as_ref())),
            ),
            Err(error) => {
                let id = error.id();
                let reason = match error.try_into_panic() {
                    Ok(panic) => format!("panicked: {}", panic_message(&panic)),
                    Err(error) => format!("was cancelled: {error}"),
                };
                (id, reason)
            }
        };
        let task = self.names.remove(&id).unwrap_or("unnamed");
        Stopped { task, reason }
    }
}

/// The text of a panic's payload.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// What a supervised task may return.
pub trait Outcome: Send {
    fn into_result(self) -> anyhow::Result<()>;
}

impl Outcome for () {
    fn into_result(self) -> anyhow::Result<()> {
        Ok(())
    }
}

impl<E> Outcome for Result<(), E>
where
    E: Into<anyhow::Error> + Send,
{
    fn into_result(self) -> anyhow::Result<()> {
        self.map_err(Into::into)
    }
}

/// A fault hook for tests, compiled only with the `fault-injection` feature: the task named
/// in `LATTICE_XDS_FAULT_TASK` panics `LATTICE_XDS_FAULT_AFTER` (default 1s) after it starts.
#[cfg(feature = "fault-injection")]
mod fault {
    use std::future::Future;
    use std::pin::Pin;

    pub fn inject<F, T>(name: &'static str, task: F) -> Pin<Box<dyn Future<Output = T> + Send>>
    where
        F: Future<Output = T> + Send + 'static,
        T: 'static,
    {
        let chosen = std::env::var("LATTICE_XDS_FAULT_TASK").ok();
        if chosen.as_deref() != Some(name) {
            return Box::pin(task);
        }
        let after = std::env::var("LATTICE_XDS_FAULT_AFTER")
            .ok()
            .and_then(|after| humantime::parse_duration(&after).ok())
            .unwrap_or(std::time::Duration::from_secs(1));
        Box::pin(async move {
            tokio::select! {
                output = task => output,
                () = tokio::time::sleep(after) => panic!("fault injected into the {name} task"),
            }
        })
    }
}

#[cfg(not(feature = "fault-injection"))]
mod fault {
    pub fn inject<F>(_name: &'static str, task: F) -> F {
        task
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
