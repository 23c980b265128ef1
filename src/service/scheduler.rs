//! The core scheduler: named periodic tasks (Wings upload expiry, the state mirror,
//! Backup-chan's scheduled jobs, and the coming cron schedules of policies), driven by a
//! single task of the server's set. Each due task runs as a task of its own, so a long
//! one (an integrity check) never holds back another (the state mirror); a task never
//! overlaps itself. Each keeps its next run, last run, last result and counts, shown by
//! `GET /v1/scheduler` and the metrics; [`Scheduler::run_now`] runs one at once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::Notify;
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
    /// Whether a run is in progress.
    pub running: bool,
}

struct Entry {
    view: ScheduledView,
    every: Duration,
    due: Instant,
    /// `due` on the wall clock, for callers that show times.
    due_at: DateTime<Utc>,
    work: Arc<Work>,
}

/// The scheduler; add tasks, then [`Scheduler::start`] it.
#[derive(Default)]
pub struct Scheduler {
    entries: Mutex<Vec<Entry>>,
    /// Wakes the driver when a task ends or is asked to run now.
    wake: Notify,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn wall_after(wait: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default()
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
        self.add_first_in(name, every, every, work);
    }

    /// Runs `work` every `every`, the first time after `first` (a period that began
    /// before a restart continues instead of starting over).
    pub fn add_first_in(&self, name: &str, every: Duration, first: Duration, work: Work) {
        let every = every.max(Duration::from_millis(100));
        let due_at = wall_after(first);
        self.entries().push(Entry {
            view: ScheduledView {
                name: name.to_string(),
                every_secs: every.as_secs(),
                next_run: rfc3339(due_at),
                last_run: None,
                last_result: None,
                runs: 0,
                failures: 0,
                running: false,
            },
            every,
            due: Instant::now() + first,
            due_at,
            work: Arc::new(work),
        });
        self.wake.notify_one();
    }

    /// Every task, in the order added.
    pub fn list(&self) -> Vec<ScheduledView> {
        self.entries().iter().map(|e| e.view.clone()).collect()
    }

    /// The period and next run of the task `name`.
    pub fn next_run(&self, name: &str) -> Option<(Duration, DateTime<Utc>)> {
        self.entries()
            .iter()
            .find(|e| e.view.name == name)
            .map(|e| (e.every, e.due_at))
    }

    /// Makes the task `name` due now (a running one runs again once it ends). Returns
    /// whether there is such a task.
    pub fn run_now(&self, name: &str) -> bool {
        let known = match self.entries().iter_mut().find(|e| e.view.name == name) {
            Some(entry) => {
                entry.due = Instant::now();
                entry.due_at = Utc::now();
                entry.view.next_run = rfc3339(entry.due_at);
                true
            }
            None => false,
        };
        if known {
            self.wake.notify_one();
        }
        known
    }

    /// Starts the driver as a task of `tasks`; each due task runs as a task of `tasks`
    /// too. Everything ends on shutdown (a run in progress finishes first).
    pub fn start(self: &Arc<Self>, tasks: &TaskSet) {
        let (scheduler, set) = (self.clone(), tasks.clone());
        tasks.spawn(async move {
            loop {
                let next = scheduler
                    .entries()
                    .iter()
                    .filter(|e| !e.view.running)
                    .map(|e| e.due)
                    .min();
                let wake = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => {}
                    _ = scheduler.wake.notified() => {}
                    _ = set.cancelled() => return,
                }
                scheduler.launch_due(&set);
            }
        });
    }

    /// Starts every due task that is not running.
    fn launch_due(self: &Arc<Self>, tasks: &TaskSet) {
        let now = Instant::now();
        let mut due = Vec::new();
        for (index, entry) in self.entries().iter_mut().enumerate() {
            if entry.due <= now && !entry.view.running {
                entry.view.running = true;
                // The next period counts from this start; a `run_now` while this run
                // goes on makes it due again, to run once this one ends.
                entry.due = now + entry.every;
                entry.due_at = wall_after(entry.every);
                entry.view.next_run = rfc3339(entry.due_at);
                due.push((index, entry.work.clone()));
            }
        }
        for (index, work) in due {
            let scheduler = self.clone();
            tasks.spawn(async move {
                let started = rfc3339(Utc::now());
                let result = work().await;
                scheduler.finished(index, started, result);
            });
        }
    }

    fn finished(&self, index: usize, started: String, result: Result<(), String>) {
        {
            let mut entries = self.entries();
            let Some(entry) = entries.get_mut(index) else {
                return;
            };
            entry.view.running = false;
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
        self.wake.notify_one();
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

    #[tokio::test(start_paused = true)]
    async fn a_slow_task_holds_back_no_other_and_run_now_runs_at_once() {
        let scheduler = Arc::new(Scheduler::new());
        let (fast, slow) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let seen = fast.clone();
        scheduler.add(
            "fast",
            Duration::from_secs(5),
            Box::new(move || {
                let seen = seen.clone();
                Box::pin(async move {
                    seen.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                })
            }),
        );
        let seen = slow.clone();
        scheduler.add_first_in(
            "slow",
            Duration::from_secs(3600),
            Duration::from_secs(1),
            Box::new(move || {
                let seen = seen.clone();
                Box::pin(async move {
                    seen.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(())
                })
            }),
        );
        let tasks = TaskSet::new();
        scheduler.start(&tasks);
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert_eq!(slow.load(Ordering::Relaxed), 1, "first run after 1 s");
        assert_eq!(
            fast.load(Ordering::Relaxed),
            6,
            "not held back by the slow run"
        );
        assert!(scheduler.list()[1].running);
        // Asked for while running: runs again once the run in progress ends, not twice.
        assert!(scheduler.run_now("slow"));
        assert!(scheduler.run_now("slow"));
        assert!(!scheduler.run_now("nothing"));
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert_eq!(slow.load(Ordering::Relaxed), 2);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(slow.load(Ordering::Relaxed), 2);
        assert_eq!(scheduler.list()[1].runs, 2);
        tasks.shutdown().await;
    }
}
