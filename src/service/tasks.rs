//! The server's background tasks. Every task the server starts (jobs, uploads finishing
//! after their answer, schedulers, download writers) belongs to one [`TaskSet`]; shutdown
//! cancels the set's token, asks running jobs to stop through their progress handles, and
//! awaits every task, so nothing outlives the server and no repository or index stays
//! open behind it.
//!
//! This is not an engine thread pool: the repository owns its own threads and blocking
//! work (`repo/`), and a task here only awaits it.

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::repo::Progress;

/// A cloneable handle on the server's set of background tasks.
#[derive(Clone, Default)]
pub struct TaskSet {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl TaskSet {
    pub fn new() -> TaskSet {
        TaskSet::default()
    }

    /// Runs `future` as a task of the set. It should end soon after [`Self::cancelled`]
    /// resolves.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(future)
    }

    /// Runs a job's `future` as a task of the set; on shutdown its `progress` is
    /// cancelled, so the engine stops it at its next check and records nothing half done.
    pub fn spawn_job<F>(&self, progress: Arc<Progress>, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::pin!(future);
            tokio::select! {
                output = &mut future => return output,
                _ = cancel.cancelled() => progress.cancel(),
            }
            future.await
        })
    }

    /// Resolves once shutdown began.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Begins shutdown: cancels the token; no task is refused yet.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Cancels the token and waits for every task of the set to end.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Tasks still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_cancels_jobs_and_awaits_every_task() {
        let tasks = TaskSet::new();
        let progress = Arc::new(Progress::new());
        let seen = progress.clone();
        let job = tasks.spawn_job(progress.clone(), async move {
            while !seen.is_cancelled() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            "stopped"
        });
        let set = tasks.clone();
        let looping = tasks.spawn(async move { set.cancelled().await });
        assert_eq!(tasks.len(), 2);
        tasks.shutdown().await;
        assert!(tasks.is_empty());
        assert!(progress.is_cancelled());
        assert_eq!(job.await.unwrap(), "stopped");
        looping.await.unwrap();
    }
}
