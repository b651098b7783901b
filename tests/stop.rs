//! `offload::stop_if_cancelled`: a running job that was asked to stop
//! unwinds, without the panic hook, and its Task resolves as cancelled
//! (never as a panic), from every part of the job and on every executor;
//! elsewhere it does nothing.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{pool, timed, DropCounter};
use offload::{JoinError, Pool, Task};

/// How long a job waits for its cancellation before it gives up (and the
/// test fails on its result).
const WAIT: Duration = Duration::from_secs(10);

/// Panics that reached the panic hook in this process.
static HOOKED: AtomicUsize = AtomicUsize::new(0);

fn count_hooked_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            HOOKED.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

/// Inside a job: signals `started`, then calls `stop_if_cancelled` until
/// it unwinds; returns `"gave up"` if it has not after [`WAIT`].
fn run_until_stopped(started: &mpsc::Sender<()>) -> &'static str {
    started.send(()).unwrap();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        offload::stop_if_cancelled();
        thread::yield_now();
    }
    "gave up"
}

#[track_caller]
fn assert_stopped<T: std::fmt::Debug>(result: Result<T, JoinError>) {
    let err = result.expect_err("the job ran to its end instead of stopping");
    assert!(err.is_cancelled(), "{err:?}");
    assert!(!err.is_panic(), "{err:?}");
}

/// Spawns a job that runs until stopped; returns once it runs.
fn stoppable(pool: &Pool, drops: &DropCounter) -> Task<&'static str> {
    let (started_tx, started) = mpsc::channel();
    let guard = drops.track();
    let task = pool.spawn(move || {
        let _guard = guard; // dropped by the unwind
        run_until_stopped(&started_tx)
    });
    started.recv().unwrap();
    task
}

#[test]
fn a_cancelled_job_stops_and_its_task_resolves_cancelled_without_the_hook() {
    count_hooked_panics();
    timed(|| {
        let pool = pool(1, "stop-cancel");
        let drops = DropCounter::new();
        let before = HOOKED.load(Ordering::SeqCst);
        let task = stoppable(&pool, &drops);
        task.cancel();
        assert_stopped(task.wait());
        assert_eq!(drops.drops(), 1, "the unwind dropped the job's values");
        assert_eq!(HOOKED.load(Ordering::SeqCst), before, "the panic hook ran");
        // The worker goes on.
        assert_eq!(pool.spawn(|| 6 * 7).wait().unwrap(), 42);
        let metrics = pool.metrics();
        assert_eq!((metrics.stopped(), metrics.panicked()), (1, 0));
        assert_eq!(metrics.running(), 0);
        assert_eq!(
            metrics.spawned(),
            metrics.completed() + metrics.panicked() + metrics.cancelled() + metrics.stopped()
        );
    });
}

#[test]
fn dropping_the_task_stops_the_job() {
    timed(|| {
        let pool = pool(1, "stop-drop");
        let drops = DropCounter::new();
        let task = stoppable(&pool, &drops);
        drop(task);
        // The next job runs once the stopped one has unwound.
        pool.spawn(|| ()).wait().unwrap();
        assert_eq!(drops.drops(), 1);
        assert_eq!(pool.metrics().stopped(), 1);
    });
}

#[test]
fn shutdown_now_stops_running_jobs() {
    timed(|| {
        let pool = pool(2, "stop-now");
        let drops = DropCounter::new();
        let tasks = [stoppable(&pool, &drops), stoppable(&pool, &drops)];
        pool.shutdown_now();
        for task in tasks {
            assert_stopped(task.wait());
        }
        assert_eq!(drops.drops(), 2);
    });
}

#[test]
fn a_blocking_job_stops_too() {
    timed(|| {
        let pool = pool(1, "stop-blocking");
        let (started_tx, started) = mpsc::channel();
        let task = pool.spawn_blocking(move || run_until_stopped(&started_tx));
        started.recv().unwrap();
        task.cancel();
        assert_stopped(task.wait());
    });
}

#[test]
fn an_uncancelled_job_and_a_thread_outside_any_pool_run_on() {
    timed(|| {
        offload::stop_if_cancelled(); // off a pool: nothing
        let pool = pool(1, "stop-none");
        let task = pool.spawn(|| {
            offload::stop_if_cancelled();
            7
        });
        assert_eq!(task.wait().unwrap(), 7);
        // A detached job is never cancelled by its Task.
        let (tx, rx) = mpsc::channel();
        pool.spawn(move || {
            offload::stop_if_cancelled();
            tx.send(8).unwrap();
        })
        .detach();
        assert_eq!(rx.recv().unwrap(), 8);
        // A join from outside any pool has no Task to resolve: its halves
        // run on.
        let (a, b) = pool.join(
            || {
                offload::stop_if_cancelled();
                1
            },
            || 2,
        );
        assert_eq!(a + b, 3);
    });
}

/// Which part of the job stops.
#[derive(Clone, Copy, Debug)]
enum Part {
    JoinFirst,
    JoinSecond,
    ScopeJob,
    InstallOnAnotherPool,
}

fn stops_inside(part: Part) {
    timed(move || {
        let pool = pool(2, "stop-part");
        let other = pool_with_name("stop-other");
        let (started_tx, started) = mpsc::channel();
        let drops = DropCounter::new();
        let guard = drops.track();
        let task = pool.spawn(move || {
            let _guard = guard;
            let run = || run_until_stopped(&started_tx);
            match part {
                Part::JoinFirst => offload::join(run, || "other half").0,
                Part::JoinSecond => offload::join(|| "other half", run).1,
                Part::ScopeJob => {
                    let mut out = "";
                    offload::scope(|s| s.spawn(|_| out = run()));
                    out
                }
                Part::InstallOnAnotherPool => other.install(run),
            }
        });
        started.recv().unwrap();
        task.cancel();
        assert_stopped(task.wait());
        assert_eq!(drops.drops(), 1);
        assert_eq!(pool.metrics().stopped(), 1);
    });
}

fn pool_with_name(prefix: &'static str) -> Pool {
    pool(1, prefix)
}

#[test]
fn a_join_half_stops_the_job() {
    stops_inside(Part::JoinFirst);
    stops_inside(Part::JoinSecond);
}

#[test]
fn a_scope_job_stops_the_job() {
    stops_inside(Part::ScopeJob);
}

#[test]
fn an_install_body_on_another_pool_stops_the_job() {
    stops_inside(Part::InstallOnAnotherPool);
}

#[test]
fn a_stopped_job_resolves_cancelled_on_tokio_smol_and_futures() {
    timed(|| {
        let pool = pool(1, "stop-exec");
        let drops = DropCounter::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let task = stoppable(&pool, &drops);
        task.cancel();
        assert_stopped(
            rt.block_on(async { tokio::time::timeout(WAIT, task).await.expect("resolved") }),
        );
        let task = stoppable(&pool, &drops);
        task.cancel();
        assert_stopped(smol::block_on(task));
        let task = stoppable(&pool, &drops);
        task.cancel();
        assert_stopped(futures::executor::block_on(task));
        assert_eq!(drops.drops(), 3);
    });
}
