//! The core scheduler: named periodic tasks (Wings upload expiry, the state mirror, and
//! the coming cron schedules of policies) run one at a time by a single task of the
//! server's set. Each keeps its next run, last run, last result and counts, shown by
//! `GET /v1/scheduler` and the metrics.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use tokio::time::Instant;

use super::tasks::TaskSet;

/// One run of a task: `Err` carries what went wrong, for the task's last result.
pub type Work = Box<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// A scheduled task as shown.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduledView {
    pub name: String,
    pub every_secs: u64,
    /// RFC 3339.
    pub next_run: String,
    pub last_run: Option<String>,
    /// `"ok"` or the error of the last run.
    pub last_result: Option<String>,
    pub runs: u64,
    pub failures: u64,
}

struct Entry {
    view: ScheduledView,
    every: Duration,
    due: Instant,
    work: Arc<Work>,
}

/// The scheduler; add tasks, then [`Scheduler::start`] it.
#[derive(Default)]
pub struct Scheduler {
    entries: Mutex<Vec<Entry>>,
}

fn rfc3339_after(wait: Duration) -> String {
    let at = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Scheduler {
    pub fn new() -> Scheduler {
        Scheduler::default()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` every `every`, the first time one period from now.
    pub fn add(&self, name: &str, every: Duration, work: Work) {
        let every = every.max(Duration::from_millis(100));
        self.entries().push(Entry {
            view: ScheduledView {
                name: name.to_string(),
                every_secs: every.as_secs(),
                next_run: rfc3339_after(every),
                last_run: None,
                last_result: None,
                runs: 0,
                failures: 0,
            },
            every,
            due: Instant::now() + every,
            work: Arc::new(work),
        });
    }

    /// Every task, in the order added.
    pub fn list(&self) -> Vec<ScheduledView> {
        self.entries().iter().map(|e| e.view.clone()).collect()
    }

    /// Runs the due tasks, one at a time, as a task of `tasks` until shutdown.
    pub fn start(self: &Arc<Self>, tasks: &TaskSet) {
        let (scheduler, stop) = (self.clone(), tasks.clone());
        tasks.spawn(async move {
            loop {
                let next = scheduler.entries().iter().map(|e| e.due).min();
                let wake = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => {}
                    _ = stop.cancelled() => return,
                }
                scheduler.run_due().await;
            }
        });
    }

    async fn run_due(&self) {
        let now = Instant::now();
        let due: Vec<(usize, Arc<Work>)> = self
            .entries()
            .iter()
            .enumerate()
            .filter(|(_, e)| e.due <= now)
            .map(|(i, e)| (i, e.work.clone()))
            .collect();
        for (index, work) in due {
            let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let result = work().await;
            let mut entries = self.entries();
            let entry = &mut entries[index];
            entry.due = Instant::now() + entry.every;
            entry.view.next_run = rfc3339_after(entry.every);
            entry.view.last_run = Some(started);
            entry.view.runs += 1;
            match result {
                Ok(()) => entry.view.last_result = Some("ok".into()),
                Err(error) => {
                    tracing::warn!(task = %entry.view.name, %error, "scheduled task failed");
                    entry.view.failures += 1;
                    entry.view.last_result = Some(error);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test(start_paused = true)]
    async fn tasks_run_at_their_period_and_record_their_results() {
        let scheduler = Arc::new(Scheduler::new());
        let count = Arc::new(AtomicU64::new(0));
        let seen = count.clone();
        scheduler.add(
            "tick",
            Duration::from_secs(10),
            Box::new(move || {
                let seen = seen.clone();
                Box::pin(async move {
                    seen.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                })
            }),
        );
        scheduler.add(
            "broken",
            Duration::from_secs(25),
            Box::new(|| Box::pin(async { Err("disk full".to_string()) })),
        );
        let tasks = TaskSet::new();
        scheduler.start(&tasks);
        tokio::time::sleep(Duration::from_secs(31)).await;
        let views = scheduler.list();
        assert_eq!(count.load(Ordering::Relaxed), 3);
        assert_eq!((views[0].runs, views[0].failures), (3, 0));
        assert_eq!(views[0].last_result.as_deref(), Some("ok"));
        assert_eq!((views[1].runs, views[1].failures), (1, 1));
        assert_eq!(views[1].last_result.as_deref(), Some("disk full"));
        tasks.shutdown().await;
    }
}
