//! Fault injection for crash-safety tests: a backend wrapper that fails chosen calls.
//!
//! [`FaultyBackend`] counts every call by [`Operation`] and, following its
//! [`FaultPlan`], either passes the call to the inner backend or fails it with
//! [`BackendError::Injected`] without touching the inner backend. A test counts the
//! steps of a run under [`FaultPlan::Never`], then replays it with
//! [`FaultPlan::StopAfter`] each step in turn and checks what the inner backend holds.
//! [`FaultPlan::TearAfter`] also half-applies the last write before the stop, as a
//! process killed in the middle of writing an object leaves it. It does not corrupt
//! stored data, delay calls or reorder them.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;

use super::{Backend, BackendError, DynBackend, ObjectMeta, ObjectWriter};

/// A backend call, as counted and failed by [`FaultyBackend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Put,
    Create,
    Write,
    Finish,
    Get,
    Head,
    Delete,
    List,
}

impl Operation {
    pub const ALL: [Operation; 8] = [
        Operation::Put,
        Operation::Create,
        Operation::Write,
        Operation::Finish,
        Operation::Get,
        Operation::Head,
        Operation::Delete,
        Operation::List,
    ];

    /// Whether the call changes (or starts changing) what the backend stores.
    pub fn is_mutating(self) -> bool {
        matches!(
            self,
            Operation::Put
                | Operation::Create
                | Operation::Write
                | Operation::Finish
                | Operation::Delete
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which calls a [`FaultyBackend`] fails. Counts are of calls made over the wrapper's
/// whole life, failed ones included, whatever the plan was at the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultPlan {
    /// Every call goes through.
    #[default]
    Never,
    /// Call number `n` (0-based) of `operation` fails, once; the others go through.
    FailNth { operation: Operation, n: u64 },
    /// The first `mutations` mutating calls go through; from then on every call fails,
    /// reads included, as if the process had been killed after that many mutations.
    /// Open uploads are neither finished nor aborted: their inner writers are kept,
    /// unfinished, until the wrapper is dropped, as a dead process would leave them.
    StopAfter { mutations: u64 },
    /// As `StopAfter`, but the mutating call that meets the stop is torn rather than
    /// refused when it carries data: a `put` sends the first half of its bytes into an
    /// upload of the same key that is then abandoned unfinished (a killed process's
    /// temporary file or open multipart upload), an upload's `write` passes the first
    /// half of its bytes to the inner upload before the stop. The call still fails.
    TearAfter { mutations: u64 },
}

/// What the plan decides for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Proceed,
    Fail,
    Stopped,
    /// Apply the first half of the call's data, then stop.
    Torn,
}

struct State {
    plan: FaultPlan,
    calls: [u64; Operation::ALL.len()],
    mutations: u64,
}

impl State {
    fn is_stopped(&self) -> bool {
        self.stop_point().is_some_and(|stop| self.mutations >= stop)
    }

    /// The number of mutations after which the plan stops everything, if it does.
    fn stop_point(&self) -> Option<u64> {
        match self.plan {
            FaultPlan::StopAfter { mutations } | FaultPlan::TearAfter { mutations } => {
                Some(mutations)
            }
            FaultPlan::Never | FaultPlan::FailNth { .. } => None,
        }
    }
}

/// State shared by the wrapper and its writers.
struct Shared {
    state: Mutex<State>,
    /// Inner writers of uploads cut off by a stop, kept alive so that nothing (such as
    /// a local writer's Drop removing its temporary) happens that a killed process
    /// would not do.
    abandoned: Mutex<Vec<Box<dyn ObjectWriter>>>,
}

/// Locks a mutex; the guarded data is only counters and a list, valid even after a
/// panic elsewhere, so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Counts a call and decides its fate.
    fn admit(&self, operation: Operation) -> Verdict {
        let mut state = lock(&self.state);
        let nth = state.calls[operation.index()];
        state.calls[operation.index()] += 1;
        if operation.is_mutating() {
            // Counted first, so this call is itself refused once it is past the limit.
            let before = state.mutations;
            state.mutations += 1;
            match (state.plan, state.stop_point()) {
                (FaultPlan::TearAfter { .. }, Some(stop)) if before == stop => {
                    return Verdict::Torn
                }
                (_, Some(stop)) if before >= stop => return Verdict::Stopped,
                _ => {}
            }
        } else if state.is_stopped() {
            return Verdict::Stopped;
        }
        match state.plan {
            FaultPlan::FailNth {
                operation: target,
                n,
            } if target == operation && n == nth => Verdict::Fail,
            _ => Verdict::Proceed,
        }
    }

    fn is_stopped(&self) -> bool {
        lock(&self.state).is_stopped()
    }

    fn abandon(&self, writer: Box<dyn ObjectWriter>) {
        lock(&self.abandoned).push(writer);
    }
}

fn injected(key: &str, operation: Operation) -> BackendError {
    BackendError::Injected {
        key: key.to_string(),
        operation,
    }
}

/// A backend wrapper failing calls according to a [`FaultPlan`]; see the module docs.
pub struct FaultyBackend {
    inner: DynBackend,
    shared: Arc<Shared>,
}

impl FaultyBackend {
    pub fn new(inner: DynBackend, plan: FaultPlan) -> FaultyBackend {
        let state = State {
            plan,
            calls: [0; Operation::ALL.len()],
            mutations: 0,
        };
        FaultyBackend {
            inner,
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                abandoned: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The wrapped backend, to inspect what a run left behind.
    pub fn inner(&self) -> &DynBackend {
        &self.inner
    }

    pub fn plan(&self) -> FaultPlan {
        lock(&self.shared.state).plan
    }

    /// Replaces the plan; counts carry on.
    pub fn set_plan(&self, plan: FaultPlan) {
        lock(&self.shared.state).plan = plan;
    }

    /// Calls of `operation` so far, failed ones included.
    pub fn operation_count(&self, operation: Operation) -> u64 {
        lock(&self.shared.state).calls[operation.index()]
    }

    /// Mutating calls so far, failed ones included.
    pub fn mutation_count(&self) -> u64 {
        lock(&self.shared.state).mutations
    }

    fn check(&self, operation: Operation, key: &str) -> Result<(), BackendError> {
        match self.shared.admit(operation) {
            Verdict::Proceed => Ok(()),
            Verdict::Fail | Verdict::Stopped | Verdict::Torn => Err(injected(key, operation)),
        }
    }
}

impl std::fmt::Debug for FaultyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyBackend")
            .field("inner", &self.inner.describe())
            .field("plan", &self.plan())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Backend for FaultyBackend {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), BackendError> {
        match self.shared.admit(Operation::Put) {
            Verdict::Proceed => self.inner.put(key, data).await,
            Verdict::Torn => {
                // The put dies half-way: its bytes so far sit in an unfinished upload.
                if let Ok(mut writer) = self.inner.create(key).await {
                    let _ = writer.write(data.slice(..data.len() / 2)).await;
                    self.shared.abandon(writer);
                }
                Err(injected(key, Operation::Put))
            }
            Verdict::Fail | Verdict::Stopped => Err(injected(key, Operation::Put)),
        }
    }

    async fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, BackendError> {
        self.check(Operation::Create, key)?;
        let inner = self.inner.create(key).await?;
        Ok(Box::new(FaultyWriter {
            key: key.to_string(),
            shared: Arc::clone(&self.shared),
            inner: Some(inner),
        }))
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        self.check(Operation::Get, key)?;
        self.inner.get(key, range).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, BackendError> {
        self.check(Operation::Head, key)?;
        self.inner.head(key).await
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.check(Operation::Delete, key)?;
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, BackendError> {
        self.check(Operation::List, prefix)?;
        self.inner.list(prefix).await
    }

    async fn abort_stale_uploads(
        &self,
        older_than: std::time::Duration,
    ) -> Result<u64, BackendError> {
        self.inner.abort_stale_uploads(older_than).await
    }

    async fn free_space(&self) -> Result<Option<u64>, BackendError> {
        self.inner.free_space().await
    }

    fn reads_in_flight(&self) -> usize {
        self.inner.reads_in_flight()
    }

    fn describe(&self) -> String {
        format!("faulty:{}", self.inner.describe())
    }
}

/// An upload through a [`FaultyBackend`]. Once a fault hit it, the upload stays failed:
/// continuing would silently lose the bytes of the failed write.
struct FaultyWriter {
    key: String,
    shared: Arc<Shared>,
    /// `None` once a fault ended the upload.
    inner: Option<Box<dyn ObjectWriter>>,
}

impl FaultyWriter {
    /// Applies the plan to a call on this upload, ending the upload on a fault.
    fn check(&mut self, operation: Operation) -> Result<&mut Box<dyn ObjectWriter>, BackendError> {
        let verdict = self.shared.admit(operation);
        self.apply(verdict, operation)
    }

    /// Carries out the plan's verdict on a call to this upload.
    fn apply(
        &mut self,
        verdict: Verdict,
        operation: Operation,
    ) -> Result<&mut Box<dyn ObjectWriter>, BackendError> {
        match (verdict, self.inner.take()) {
            (Verdict::Proceed, Some(inner)) => Ok(self.inner.insert(inner)),
            // A dead process leaves its upload as it was (a torn write: see `write`).
            (Verdict::Stopped | Verdict::Torn, Some(inner)) => {
                self.shared.abandon(inner);
                Err(injected(&self.key, operation))
            }
            // A failed call: dropping the inner writer gives the upload up, as a caller
            // seeing the error would.
            _ => Err(injected(&self.key, operation)),
        }
    }
}

#[async_trait]
impl ObjectWriter for FaultyWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), BackendError> {
        let verdict = self.shared.admit(Operation::Write);
        if verdict == Verdict::Torn {
            if let Some(mut inner) = self.inner.take() {
                // Half the bytes reach the upload; then the process is gone.
                let _ = inner.write(data.slice(..data.len() / 2)).await;
                self.shared.abandon(inner);
            }
            return Err(injected(&self.key, Operation::Write));
        }
        self.apply(verdict, Operation::Write)?.write(data).await
    }

    async fn finish(mut self: Box<Self>) -> Result<(), BackendError> {
        self.check(Operation::Finish)?;
        match self.inner.take() {
            Some(inner) => inner.finish().await,
            None => Err(injected(&self.key, Operation::Finish)),
        }
    }

    /// Not counted and never failed by `FailNth` (there is no abort [`Operation`]);
    /// after a stop it fails as `Finish`, the other way an upload ends.
    async fn abort(mut self: Box<Self>) -> Result<(), BackendError> {
        let Some(inner) = self.inner.take() else {
            return Ok(());
        };
        if self.shared.is_stopped() {
            self.shared.abandon(inner);
            return Err(injected(&self.key, Operation::Finish));
        }
        inner.abort().await
    }
}

impl Drop for FaultyWriter {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            if self.shared.is_stopped() {
                self.shared.abandon(inner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{conformance, LocalBackend, MemoryBackend};

    fn wrap(plan: FaultPlan) -> FaultyBackend {
        FaultyBackend::new(Arc::new(MemoryBackend::new()), plan)
    }

    fn is_injected<T>(result: &Result<T, BackendError>, expected: Operation) -> bool {
        matches!(result, Err(BackendError::Injected { operation, .. }) if *operation == expected)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_is_transparent() {
        let backend = wrap(FaultPlan::Never);
        assert_eq!(backend.describe(), "faulty:memory");
        conformance::run_all(Arc::new(backend)).await;
    }

    #[tokio::test]
    async fn fail_nth_fails_once_and_does_nothing() {
        let plan = FaultPlan::FailNth {
            operation: Operation::Put,
            n: 1,
        };
        let backend = wrap(plan);
        backend
            .put("a", Bytes::from_static(b"a"))
            .await
            .expect("put 0");
        assert!(is_injected(
            &backend.put("b", Bytes::new()).await,
            Operation::Put
        ));
        backend
            .put("c", Bytes::from_static(b"c"))
            .await
            .expect("put 2");
        backend
            .put("b", Bytes::from_static(b"b"))
            .await
            .expect("put 3");
        backend.get("a", None).await.expect("reads unaffected");
        assert_eq!(backend.operation_count(Operation::Put), 4);
        assert_eq!(backend.operation_count(Operation::Get), 1);
        assert_eq!(backend.mutation_count(), 4);
        assert_eq!(backend.plan(), plan);
    }

    #[tokio::test]
    async fn fail_nth_read() {
        let backend = wrap(FaultPlan::FailNth {
            operation: Operation::List,
            n: 0,
        });
        assert!(is_injected(&backend.list("").await, Operation::List));
        assert!(backend.list("").await.expect("list").is_empty());
        assert_eq!(backend.mutation_count(), 0);
    }

    #[tokio::test]
    async fn failed_write_ends_the_upload() {
        let backend = wrap(FaultPlan::FailNth {
            operation: Operation::Write,
            n: 1,
        });
        let mut writer = backend.create("w").await.expect("create");
        writer
            .write(Bytes::from_static(b"1"))
            .await
            .expect("write 0");
        let failed = writer.write(Bytes::from_static(b"2")).await;
        assert!(is_injected(&failed, Operation::Write));
        writer
            .write(Bytes::from_static(b"3"))
            .await
            .expect_err("upload ended");
        assert!(is_injected(&writer.finish().await, Operation::Finish));
        assert!(backend.inner().list("").await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn failed_finish_publishes_nothing() {
        let backend = wrap(FaultPlan::FailNth {
            operation: Operation::Finish,
            n: 0,
        });
        let mut writer = backend.create("f").await.expect("create");
        writer.write(Bytes::from_static(b"f")).await.expect("write");
        assert!(is_injected(&writer.finish().await, Operation::Finish));
        assert!(backend.inner().head("f").await.is_err());
    }

    #[tokio::test]
    async fn stop_after_fails_everything_afterwards() {
        let backend = wrap(FaultPlan::StopAfter { mutations: 2 });
        backend
            .get("a", None)
            .await
            .expect_err("missing, but not stopped yet");
        backend
            .put("a", Bytes::from_static(b"a"))
            .await
            .expect("mutation 0");
        backend.delete("zz").await.expect("mutation 1");
        assert!(is_injected(&backend.get("a", None).await, Operation::Get));
        assert!(is_injected(&backend.list("").await, Operation::List));
        assert!(is_injected(
            &backend.put("b", Bytes::new()).await,
            Operation::Put
        ));
        assert!(is_injected(&backend.create("c").await, Operation::Create));
        let keys = backend.inner().list("").await.expect("list");
        assert_eq!(keys.len(), 1);
        backend.set_plan(FaultPlan::Never);
        backend.get("a", None).await.expect("plan lifted");
    }

    #[tokio::test]
    async fn stop_after_zero_fails_reads_too() {
        let backend = wrap(FaultPlan::StopAfter { mutations: 0 });
        assert!(is_injected(&backend.head("a").await, Operation::Head));
        assert_eq!(backend.operation_count(Operation::Head), 1);
    }

    #[tokio::test]
    async fn stopped_writer_does_not_publish() {
        let backend = wrap(FaultPlan::StopAfter { mutations: 2 });
        let mut writer = backend.create("s").await.expect("create is mutation 0");
        writer
            .write(Bytes::from_static(b"s"))
            .await
            .expect("write is mutation 1");
        assert!(is_injected(&writer.finish().await, Operation::Finish));
        assert!(backend.inner().head("s").await.is_err());

        // A stop set while uploads are open cuts them off too.
        let backend = wrap(FaultPlan::Never);
        let mut writer = backend.create("t").await.expect("create");
        writer.write(Bytes::from_static(b"t")).await.expect("write");
        backend.set_plan(FaultPlan::StopAfter {
            mutations: backend.mutation_count(),
        });
        assert!(is_injected(&writer.finish().await, Operation::Finish));
        assert!(backend.inner().head("t").await.is_err());
    }

    #[tokio::test]
    async fn tear_after_half_applies_the_write_that_meets_the_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = Arc::new(LocalBackend::new(dir.path()));
        let temporaries = || std::fs::read_dir(dir.path().join("tmp")).map_or(0, |d| d.count());

        // A torn put leaves an unfinished temporary holding half its bytes, no object.
        let backend = FaultyBackend::new(local.clone(), FaultPlan::TearAfter { mutations: 1 });
        backend
            .put("a", Bytes::from_static(b"aaaa"))
            .await
            .expect("mutation 0");
        assert!(is_injected(
            &backend.put("b", Bytes::from_static(b"bbbb")).await,
            Operation::Put
        ));
        assert!(is_injected(&backend.get("a", None).await, Operation::Get));
        assert!(local.head("b").await.is_err());
        assert_eq!(temporaries(), 1);
        let temporary = std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .flatten()
            .next()
            .expect("one temporary");
        assert_eq!(std::fs::read(temporary.path()).expect("read"), b"bb");

        // A torn write passes half its bytes to the upload, which is never finished.
        let backend = FaultyBackend::new(local.clone(), FaultPlan::TearAfter { mutations: 2 });
        let mut writer = backend.create("c").await.expect("create is mutation 0");
        writer
            .write(Bytes::from_static(b"cc"))
            .await
            .expect("write is mutation 1");
        assert!(is_injected(
            &writer.write(Bytes::from_static(b"dddd")).await,
            Operation::Write
        ));
        assert!(is_injected(&writer.finish().await, Operation::Finish));
        assert!(local.head("c").await.is_err());
        assert_eq!(temporaries(), 2);
    }

    #[tokio::test]
    async fn stopped_local_upload_leaves_its_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = Arc::new(LocalBackend::new(dir.path()));
        let backend = FaultyBackend::new(local.clone(), FaultPlan::StopAfter { mutations: 2 });
        let mut writer = backend.create("l").await.expect("create");
        writer.write(Bytes::from_static(b"l")).await.expect("write");
        drop(writer);
        let temporaries = std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .count();
        assert_eq!(temporaries, 1, "a killed process leaves its temporary");
        assert!(local.list("").await.expect("list").is_empty());
        assert_eq!(
            local
                .clean_temporaries(std::time::Duration::ZERO)
                .await
                .expect("clean"),
            1
        );
    }

    /// A run of a few steps, whatever faults it meets: stops at the first error.
    async fn small_run(backend: &FaultyBackend) -> Result<(), BackendError> {
        backend.put("data/a", Bytes::from_static(b"aaaa")).await?;
        let mut writer = backend.create("data/b").await?;
        writer.write(Bytes::from_static(b"bb")).await?;
        writer.write(Bytes::from_static(b"bb")).await?;
        writer.finish().await?;
        backend.get("data/a", None).await?;
        backend.delete("data/a").await?;
        backend.put("index", Bytes::from_static(b"done")).await
    }

    #[tokio::test]
    async fn replay_stopping_at_each_step() {
        let counting = wrap(FaultPlan::Never);
        small_run(&counting).await.expect("clean run");
        let steps = counting.mutation_count();
        assert_eq!(steps, 7);
        for stop in 0..=steps {
            let backend = wrap(FaultPlan::StopAfter { mutations: stop });
            let outcome = small_run(&backend).await;
            assert_eq!(outcome.is_ok(), stop == steps, "stop after {stop}");
            // Whatever the stop, each object is absent or complete.
            for meta in backend.inner().list("").await.expect("list") {
                assert_eq!(meta.size, 4, "stop after {stop}: {meta:?}");
            }
            let finished = backend.inner().head("data/b").await.is_ok();
            assert_eq!(finished, stop >= 5, "stop after {stop}");
        }
    }
}
