//! Helpers shared by the integration tests.
//!
//! - [`with_timeout`]: runs a test body on its own thread and fails the test
//!   if it does not finish in time, so that no test can hang CI;
//! - [`DropCounter`] / [`Tracked`]: a value that counts its drops;
//! - [`Gate`]: holds one worker of a pool busy until released;
//! - [`silence_expected_panics`] / [`quiet_panics_where`]: keep the output
//!   readable when tests panic on purpose.
//!
//! Synchronisation is done with channels and barriers only, never sleeps.

#![allow(dead_code)]

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier, Once};
use std::thread::{self, ThreadId};
use std::time::Duration;

use offload::{Pool, Task};

/// The default time limit of a test body, in seconds: generous, since CI is
/// a shared 2-core machine and the tests run in debug.
pub const TIMEOUT: u64 = 60;

/// Runs `body` on a new thread and returns its result; re-raises its panic;
/// panics if it has not finished after `secs` seconds (the body's thread is
/// then left behind, blocked: the test fails instead of hanging).
pub fn with_timeout<T, F>(secs: u64, body: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let name = thread::current()
        .name()
        .map_or_else(|| "test-body".to_owned(), |n| format!("{n} (body)"));
    let (tx, rx) = mpsc::channel();
    let handle = thread::Builder::new()
        .name(name)
        .spawn(move || {
            let result = panic::catch_unwind(AssertUnwindSafe(body));
            let _ = tx.send(result);
        })
        .expect("spawn the test body's thread");
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(value)) => {
            handle.join().expect("the body's thread");
            value
        }
        Ok(Err(payload)) => {
            let _ = handle.join();
            panic::resume_unwind(payload)
        }
        Err(RecvTimeoutError::Timeout) => {
            panic!("test body did not finish within {secs} s (deadlock or lost wake-up?)")
        }
        Err(RecvTimeoutError::Disconnected) => unreachable!("the body's thread always sends"),
    }
}

/// `with_timeout(TIMEOUT, body)`.
pub fn timed<T, F>(body: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    with_timeout(TIMEOUT, body)
}

/// A message that panics raised on purpose by the tests contain; the panic
/// hook installed by [`silence_expected_panics`] does not print them.
pub const EXPECTED: &str = "expected panic";

/// Installs (once per process) a panic hook that stays quiet for the panics
/// whose payload `quiet` accepts (it may also record what it sees); every
/// other panic is reported by the previous hook as usual. A test binary
/// installs one such hook: later calls do nothing.
pub fn quiet_panics_where(
    quiet: impl Fn(&(dyn std::any::Any + Send)) -> bool + Send + Sync + 'static,
) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !quiet(info.payload()) {
                previous(info);
            }
        }));
    });
}

/// [`quiet_panics_where`] for the panics tests raise on purpose: those whose
/// message contains [`EXPECTED`], and those with a payload that is not a
/// string (`panic_any` of a test type).
pub fn silence_expected_panics() {
    quiet_panics_where(|payload| {
        let is_string = payload.is::<&str>() || payload.is::<String>();
        !is_string || panic_message(payload).contains(EXPECTED)
    });
}

/// The message of a panic payload: a `&str` or `String`, or a placeholder.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a payload that is not a string)")
}

/// A shared counter.
#[derive(Clone, Default, Debug)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn incr(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Counts the drops of the [`Tracked`] values it hands out.
#[derive(Clone, Default, Debug)]
pub struct DropCounter {
    drops: Counter,
    created: Counter,
}

impl DropCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new value whose drop this counter counts.
    pub fn track(&self) -> Tracked {
        self.track_value(0)
    }

    /// A new value carrying `value`, whose drop this counter counts.
    pub fn track_value(&self, value: u64) -> Tracked {
        self.created.incr();
        Tracked {
            value,
            drops: self.drops.clone(),
        }
    }

    /// How many tracked values have been dropped.
    pub fn drops(&self) -> usize {
        self.drops.get()
    }

    /// How many tracked values have been created.
    pub fn created(&self) -> usize {
        self.created.get()
    }

    /// How many tracked values are still alive.
    pub fn alive(&self) -> usize {
        self.created() - self.drops()
    }
}

/// A value that increments its [`DropCounter`] when dropped.
#[derive(Debug)]
pub struct Tracked {
    pub value: u64,
    drops: Counter,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.incr();
    }
}

/// Holds one worker of a pool busy until released: the gate job signals
/// that it runs, then blocks on a channel. On a 1-thread pool this holds the
/// only worker, so that jobs spawned meanwhile stay queued.
pub struct Gate {
    release: Option<mpsc::Sender<()>>,
    task: Option<Task<()>>,
}

impl Gate {
    /// Spawns the gate job on `pool` and returns once it is running.
    pub fn hold(pool: &Pool) -> Gate {
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let task = pool.spawn(move || {
            started_tx.send(()).unwrap();
            // Err (the Gate was dropped) releases too.
            let _ = release_rx.recv();
        });
        started_rx.recv().expect("the gate job started");
        Gate {
            release: Some(release_tx),
            task: Some(task),
        }
    }

    /// Releases the gate job without waiting for it to return.
    pub fn open(mut self) -> Task<()> {
        drop(self.release.take());
        self.task.take().unwrap()
    }

    /// Releases the gate job and waits for it to return.
    pub fn release(self) {
        self.open().wait().expect("the gate job");
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // Dropping the sender releases the job, if still held.
        drop(self.release.take());
        if let Some(task) = self.task.take() {
            task.detach();
        }
    }
}

/// A one-shot signal between threads (a job and the test, typically).
pub fn signal() -> (mpsc::Sender<()>, mpsc::Receiver<()>) {
    mpsc::channel()
}

/// Spins (yielding) until `cond` holds: for states that can only be
/// observed by polling. Always called under a timeout.
pub fn spin_until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        thread::yield_now();
    }
}

/// Whether `pool` has started terminating (as its `Debug` output shows).
pub fn is_terminating(pool: &Pool) -> bool {
    format!("{pool:?}").contains("terminating: true")
}

/// Runs `read()` once on each worker of `pool`: `pool.threads()` jobs that
/// must all be running at the same time (they meet at a barrier), so each
/// runs on a worker of its own. The pool must not detect blocking
/// (`Builder::detect_blocking(false)`): a job waiting at the barrier would
/// get a helper, which could run the next one.
pub fn on_every_worker<T: Send + 'static>(pool: &Pool, read: fn() -> T) -> Vec<T> {
    let n = pool.threads();
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            pool.spawn(move || {
                barrier.wait();
                read()
            })
        })
        .collect();
    tasks
        .into_iter()
        .map(|task| task.wait().expect("a barrier job"))
        .collect()
}

/// The distinct thread ids and names of `pool`'s workers, one job on each
/// (see [`on_every_worker`]): proof that every worker is alive and serving.
pub fn all_workers(pool: &Pool) -> (HashSet<ThreadId>, HashSet<String>) {
    let workers = on_every_worker(pool, || {
        let me = thread::current();
        (me.id(), me.name().unwrap_or("").to_owned())
    });
    let mut ids = HashSet::new();
    let mut names = HashSet::new();
    for (id, name) in workers {
        ids.insert(id);
        names.insert(name);
    }
    let n = pool.threads();
    assert_eq!(ids.len(), n, "{n} jobs met at a barrier on fewer threads");
    (ids, names)
}

/// A pool of `n` threads named `{prefix}-{i}`, without blocking detection:
/// the tests that use it hold workers with a [`Gate`] or meet on them at a
/// barrier, and count on the jobs queued behind those waiting (with
/// detection on, a helper would run them; `tests/detect.rs` tests that).
pub fn pool(n: usize, prefix: &'static str) -> Pool {
    Pool::builder()
        .threads(n)
        .detect_blocking(false)
        .thread_name(move |i| format!("{prefix}-{i}"))
        .build()
        .expect("build the pool")
}

/// Busy work whose result the optimiser cannot predict.
pub fn spin_work(iterations: u64) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15_u64;
    for x in 0..iterations {
        h = std::hint::black_box(h.rotate_left(5) ^ x.wrapping_mul(0x0100_0000_01B3));
    }
    h
}

/// Sends a worker's index when its thread ends (see [`report_thread_end`]).
struct ThreadEndReport {
    index: usize,
    tx: mpsc::Sender<usize>,
}

impl Drop for ThreadEndReport {
    fn drop(&mut self) {
        let _ = self.tx.send(self.index);
    }
}

thread_local! {
    static THREAD_END: std::cell::RefCell<Option<ThreadEndReport>> =
        const { std::cell::RefCell::new(None) };
}

/// Called from `on_thread_start(i)`: sends `i` on `tx` when the worker's
/// thread really ends (its thread-locals are destroyed), which is after its
/// `on_thread_stop` and after the last worker's final drain.
pub fn report_thread_end(index: usize, tx: mpsc::Sender<usize>) {
    THREAD_END.with(|slot| *slot.borrow_mut() = Some(ThreadEndReport { index, tx }));
}

/// A builder of `threads` workers named `{prefix}{i}` (spare threads take
/// the indices from `threads` on).
pub fn named_pool(threads: usize, prefix: &'static str) -> offload::Builder {
    Pool::builder()
        .threads(threads)
        .thread_name(move |i| format!("{prefix}{i}"))
}

/// The calling thread's name, or "".
pub fn thread_name() -> String {
    thread::current().name().unwrap_or("").to_owned()
}

/// The threads of this process whose name starts with `prefix` (Linux: the
/// `comm` of each task, at most 15 bytes).
#[cfg(target_os = "linux")]
pub fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with(prefix))
        .count()
}
