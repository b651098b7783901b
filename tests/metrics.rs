//! `Pool::metrics`: the counts after known workloads, the figures of the
//! moment while jobs are held at known points, and the sampled timings.
//!
//! Every body runs under a timeout; jobs are held and released with
//! channels, never sleeps; nothing asserts a duration beyond what holds by
//! construction (a histogram's order, busy time within the uptime).

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::Context;

use common::{signal, timed, Gate, EXPECTED};
use offload::{Metrics, Pool};

fn pool(threads: usize) -> Pool {
    Pool::builder()
        .threads(threads)
        .detect_blocking(false) // gated workers must hold the queue
        .build()
        .expect("build the pool")
}

/// The invariant every snapshot of an idle pool keeps.
fn assert_settled(m: &Metrics) {
    assert_eq!(m.queued(), 0, "{m:?}");
    assert_eq!(m.running(), 0, "{m:?}");
    assert_eq!(
        m.spawned(),
        m.completed() + m.panicked() + m.cancelled(),
        "{m:?}"
    );
}

/// A snapshot of `pool` once idle, with `completed` jobs done.
fn settled(pool: &Pool, completed: u64) -> Metrics {
    let m = pool.metrics();
    assert_eq!(m.completed(), completed, "{m:?}");
    assert_settled(&m);
    m
}

#[test]
fn counts_and_samples_after_a_known_workload() {
    common::silence_expected_panics();
    timed(|| {
        let pool = pool(2);
        // From one thread (this test's body, which spawns nothing else):
        // the 1st, 65th, 129th and 193rd carry a timestamp.
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                pool.spawn(move || {
                    assert!(i % 20 != 7, "{EXPECTED}: job {i}");
                    i
                })
            })
            .collect();
        let (mut ok, mut panicked) = (0, 0);
        for task in tasks {
            match task.wait() {
                Ok(_) => ok += 1,
                Err(err) => {
                    assert!(err.is_panic());
                    panicked += 1;
                }
            }
        }
        assert_eq!((ok, panicked), (190, 10));
        // A resolved Task's job is counted already: no shutdown needed.
        let m = pool.metrics();
        assert_eq!(m.threads(), 2);
        assert_eq!(m.spawned(), 200);
        assert_eq!(m.completed(), 190);
        assert_eq!(m.panicked(), 10);
        assert_eq!(m.cancelled(), 0);
        assert_eq!(m.refused(), 0);
        assert_settled(&m);
        for histogram in [m.queue_wait(), m.run_time()] {
            assert_eq!(histogram.count(), 4, "{m:?}");
            assert!(histogram.p50() <= histogram.p99());
            assert!(histogram.p99() <= histogram.max());
            assert!(histogram.quantile(0.0) <= histogram.p50());
        }
        assert_eq!(m.busy().len(), 2);
        assert!(m.busy().iter().all(|&busy| busy <= m.uptime()), "{m:?}");
        let text = m.to_string();
        assert!(
            text.contains("200 spawned, 190 completed, 10 panicked"),
            "{text}"
        );
        assert!(text.contains("(n = 4)"), "{text}");
        pool.shutdown();
        assert_settled(&pool.metrics());
    });
}

#[test]
fn queued_and_running_while_a_job_is_held() {
    timed(|| {
        let pool = pool(1);
        let gate = Gate::hold(&pool);
        let queued: Vec<_> = (0..3).map(|i| pool.spawn(move || i)).collect();
        let m = pool.metrics();
        assert_eq!((m.running(), m.queued()), (1, 3), "{m:?}");
        assert_eq!(m.spawned(), 4);
        gate.release();
        for task in queued {
            task.wait().unwrap();
        }
        settled(&pool, 4);
    });
}

#[test]
fn spawns_from_a_worker_count_on_the_worker() {
    timed(|| {
        let pool = pool(2);
        let inner = pool.clone();
        let sum = pool.spawn(move || {
            let children: Vec<_> = (0..100u64).map(|i| inner.spawn(move || i)).collect();
            children.into_iter().map(|t| t.wait().unwrap()).sum::<u64>()
        });
        assert_eq!(sum.wait().unwrap(), 4950);
        let m = settled(&pool, 101);
        assert_eq!(m.spawned(), 101);
        // The outer job (this thread's first spawn) and the worker's 1st
        // and 65th spawns.
        assert_eq!(m.queue_wait().count(), 3, "{m:?}");
    });
}

#[test]
fn fork_join_is_not_counted() {
    timed(|| {
        fn fib(n: u64) -> u64 {
            if n < 2 {
                return n;
            }
            let (a, b) = offload::join(|| fib(n - 1), || fib(n - 2));
            a + b
        }
        let pool = pool(2);
        assert_eq!(pool.install(|| fib(18)), 2584);
        let mut parts = [0u8; 4];
        pool.scope(|s| {
            for (i, part) in parts.iter_mut().enumerate() {
                s.spawn(move |_| *part = i as u8);
            }
        });
        let m = pool.metrics();
        assert_eq!(m.spawned(), 0, "{m:?}");
        assert_eq!(m.completed() + m.queue_wait().count(), 0, "{m:?}");
    });
}

#[test]
fn cancelled_jobs_count_once_discarded() {
    timed(|| {
        let pool = pool(1);
        let gate = Gate::hold(&pool);
        let mut queued: Vec<_> = (0..5).map(|i| pool.spawn(move || i)).collect();
        drop(queued.pop());
        drop(queued.pop());
        queued[0].cancel();
        gate.release();
        let results: Vec<_> = queued.into_iter().map(|t| t.wait()).collect();
        assert!(results[0].as_ref().unwrap_err().is_cancelled());
        assert!(results[1..].iter().all(Result::is_ok));
        // The cancelled jobs count when the worker reaches them: at the
        // latest at shutdown.
        pool.shutdown();
        let m = pool.metrics();
        assert_eq!(m.spawned(), 6);
        assert_eq!(m.completed(), 3);
        assert_eq!(m.cancelled(), 3);
        assert_settled(&m);
        // A spawn after shutdown is cancelled at once, and counted.
        assert!(pool.spawn(|| ()).wait().unwrap_err().is_cancelled());
        let m = pool.metrics();
        assert_eq!((m.spawned(), m.cancelled()), (7, 4));
    });
}

#[test]
fn shutdown_now_counts_the_queued_jobs_cancelled() {
    timed(|| {
        let pool = pool(1);
        let gate = Gate::hold(&pool);
        let queued: Vec<_> = (0..3).map(|i| pool.spawn(move || i)).collect();
        let shutdown = pool.shutdown_now_async();
        gate.release();
        pollster::block_on(shutdown);
        for task in queued {
            assert!(task.wait().unwrap_err().is_cancelled());
        }
        let m = pool.metrics();
        assert_eq!((m.spawned(), m.completed(), m.cancelled()), (4, 1, 3));
        assert_settled(&m);
    });
}

#[test]
fn refusals_and_reserve_waiters() {
    timed(|| {
        let pool = Pool::builder()
            .threads(1)
            .max_queued(1)
            .detect_blocking(false) // a gated worker must hold the queue
            .build()
            .unwrap();
        let gate = Gate::hold(&pool);
        let admitted = pool.try_spawn(|| 1).expect("one free slot");
        assert!(pool.try_spawn(|| 2).unwrap_err().is_full());
        assert!(pool.try_spawn(|| 3).unwrap_err().is_full());
        let mut reserve = pool.reserve();
        let waker = futures::task::noop_waker();
        assert!(Pin::new(&mut reserve)
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        let m = pool.metrics();
        assert_eq!((m.refused(), m.reserve_waiters()), (2, 1), "{m:?}");
        assert_eq!((m.running(), m.queued()), (1, 1), "{m:?}");
        drop(reserve);
        assert_eq!(pool.metrics().reserve_waiters(), 0);
        gate.release();
        assert_eq!(admitted.wait().unwrap(), 1);
        pool.shutdown();
        assert!(pool.try_spawn(|| 4).unwrap_err().is_shutdown());
        let m = pool.metrics();
        assert_eq!((m.spawned(), m.completed(), m.refused()), (2, 2, 3));
        assert_settled(&m);
    });
}

#[test]
fn blocking_jobs_and_spare_threads() {
    timed(|| {
        let pool = pool(1);
        let (started_tx, started) = signal();
        let (release, gate) = mpsc::channel::<()>();
        let job = pool.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            gate.recv().unwrap();
        });
        started.recv().unwrap();
        let m = pool.metrics();
        assert_eq!(m.spare_threads(), 1, "{m:?}");
        assert_eq!((m.running(), m.spawned()), (1, 1), "{m:?}");
        release.send(()).unwrap();
        job.wait().unwrap();
        settled(&pool, 1);
    });
}

#[test]
fn a_thread_in_blocking_counts_as_blocked() {
    timed(|| {
        let pool = pool(1);
        let (started_tx, started) = signal();
        let (go, go_rx) = mpsc::channel::<()>();
        let (inside_tx, inside) = signal();
        let (release, release_rx) = mpsc::channel::<()>();
        let lender = pool.spawn(move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            offload::blocking(move || {
                inside_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            });
        });
        started.recv().unwrap();
        // Queued behind the lender: the reason to lend its place.
        let waiting = pool.spawn(|| 7);
        go.send(()).unwrap();
        inside.recv().unwrap();
        assert_eq!(waiting.wait().unwrap(), 7); // run by the stand-in
        let m = pool.metrics();
        assert_eq!(m.blocked(), 1, "{m:?}");
        assert!(m.spare_threads() >= 1, "{m:?}");
        assert_eq!(m.running(), 1, "{m:?}");
        release.send(()).unwrap();
        lender.wait().unwrap();
        // The lender's Task resolves as its job ends, before its thread
        // has taken its place back from the stand-in.
        common::spin_until(|| pool.metrics().blocked() == 0);
        settled(&pool, 2);
    });
}

#[test]
fn a_worker_held_in_a_job_is_stolen_from() {
    timed(|| {
        let pool = pool(2);
        let inner = pool.clone();
        let (children_tx, children_rx) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        // Its children go to its own deque; it then parks without running
        // them (a plain channel), so only the other worker can: by stealing.
        let holder = pool.spawn(move || {
            let children: Vec<_> = (0..8u64).map(|i| inner.spawn(move || i)).collect();
            children_tx.send(children).unwrap();
            release_rx.recv().unwrap();
        });
        let children = children_rx.recv().unwrap();
        assert_eq!(
            children.into_iter().map(|t| t.wait().unwrap()).sum::<u64>(),
            28
        );
        assert!(pool.metrics().steals() >= 1);
        release.send(()).unwrap();
        holder.wait().unwrap();
        assert_settled(&pool.metrics());
    });
}

#[test]
fn a_snapshot_is_a_plain_value() {
    fn send_sync_clone<T: Send + Sync + Clone + std::fmt::Debug + std::fmt::Display>() {}
    send_sync_clone::<Metrics>();
    send_sync_clone::<offload::Histogram>();
    let pool = pool(1);
    let m = pool.metrics();
    assert!(m.queue_wait().is_empty());
    assert_eq!(m.queue_wait().p99(), std::time::Duration::ZERO);
    assert_eq!(m.clone().spawned(), 0);
    assert!(format!("{m:?}").contains("spawned: 0"));
}

#[test]
fn since_covers_the_interval_and_keeps_the_gauges() {
    timed(|| {
        let pool = Pool::builder()
            .threads(1)
            .detect_blocking(false)
            .metrics_sample_every(1)
            .build()
            .unwrap();
        for i in 0..10 {
            pool.spawn(move || i).wait().unwrap();
        }
        let earlier = pool.metrics();
        for i in 0..25 {
            pool.spawn(move || i).wait().unwrap();
        }
        let gate = Gate::hold(&pool);
        let queued = pool.spawn(|| ());
        let now = pool.metrics();
        let interval = now.since(&earlier);
        // Counts over the interval: 25 jobs, the gate and the queued one.
        assert_eq!(interval.spawned(), 27, "{interval:?}");
        assert_eq!(interval.completed(), 25, "{interval:?}");
        assert_eq!(interval.run_time().count(), 25);
        assert_eq!(interval.queue_wait().count(), 26); // the queued one has not started
        assert!(interval.run_time().max() <= now.run_time().max());
        assert_eq!(interval.uptime(), now.uptime() - earlier.uptime());
        assert!(interval.busy()[0] <= interval.uptime());
        // Gauges as of the later snapshot.
        assert_eq!((interval.running(), interval.queued()), (1, 1));
        // Swapped snapshots give zeros, never wrapped counts.
        let backwards = earlier.since(&now);
        assert_eq!((backwards.spawned(), backwards.run_time().count()), (0, 0));
        assert_eq!(backwards.uptime(), std::time::Duration::ZERO);
        gate.release();
        queued.wait().unwrap();
    });
}

#[test]
fn metrics_sample_every_sets_the_share_of_timed_tasks() {
    timed(|| {
        for (every, timed_jobs) in [(1, 12), (3, 4), (4, 3), (64, 1)] {
            let pool = Pool::builder()
                .threads(1)
                .metrics_sample_every(every)
                .build()
                .unwrap();
            // From outside the pool: one counter block, so the 1st, the
            // (every+1)th, ... are timed.
            for i in 0..12 {
                pool.spawn(move || i).wait().unwrap();
            }
            let m = pool.metrics();
            assert_eq!(m.run_time().count(), timed_jobs, "every {every}: {m:?}");
            assert_eq!(m.queue_wait().count(), timed_jobs, "every {every}");
        }
        let err = Pool::builder().metrics_sample_every(0).build().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    });
}

#[cfg(target_os = "linux")]
#[test]
fn detected_total_counts_unmarked_blocking_that_came_and_went() {
    timed(|| {
        // Detection on (the default on Linux): a job blocks without saying
        // so while another waits behind it.
        let pool = Pool::builder().threads(1).build().unwrap();
        let before = pool.metrics();
        assert_eq!(before.detected_total(), 0);
        let (release, gate) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel();
        let blocked = pool.spawn(move || {
            started_tx.send(()).unwrap();
            gate.recv().unwrap();
        });
        started.recv().unwrap();
        let behind = pool.spawn(|| 1);
        // The detector notices within milliseconds; poll (under the test's
        // timeout) rather than guess how long.
        common::spin_until(|| pool.metrics().detected_total() >= 1);
        assert_eq!(behind.wait().unwrap(), 1); // run by a helper meanwhile
        release.send(()).unwrap();
        blocked.wait().unwrap();
        let after = pool.metrics();
        assert!(after.since(&before).detected_total() >= 1);
        assert!(after.to_string().contains("in all"), "{after}");
    });
}
