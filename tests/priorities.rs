//! Priorities inside one pool, as a user relies on them: the order in which
//! queued jobs of each priority start, the inheritance of a job's priority
//! by the work it starts (`join` halves, `scope` jobs, `offload::spawn`),
//! the starvation bound under a flood of more urgent jobs, priorities
//! through `try_spawn`, `reserve` and `spawn_blocking`, and shutdowns that
//! reach every lane.
//!
//! Orders are observed on pools whose one worker is held by a gate job
//! while the jobs under test are queued, so every job waits for the same
//! free worker and the start order is the scheduler's choice alone. Those
//! pools do not detect blocking (a helper would run the queued jobs while
//! the gate job waits). Synchronisation is by channels only; every body
//! runs under a timeout.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use common::{timed, Gate};
use offload::{Pool, Priority, Task};

/// A log of job labels in start order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, label: impl Into<String>) {
        self.0.lock().unwrap().push(label.into());
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A pool of one worker that does not detect blocking (module docs).
fn one_worker() -> Pool {
    Pool::builder()
        .threads(1)
        .detect_blocking(false)
        .build()
        .unwrap()
}

/// Spawns a job on `pool` that logs `label` when it starts.
fn logged(pool: &Pool, log: &Log, label: &str) -> Task<()> {
    let (log, label) = (log.clone(), label.to_owned());
    pool.spawn(move || log.push(label))
}

/// The 1-based start positions of the jobs labelled `label` in `order`.
fn starts_of(order: &[String], label: &str) -> Vec<usize> {
    order
        .iter()
        .enumerate()
        .filter(|(_, l)| *l == label)
        .map(|(at, _)| at + 1)
        .collect()
}

fn wait_all(tasks: Vec<Task<()>>) {
    for task in tasks {
        task.wait().expect("the job ran");
    }
}

#[test]
fn priority_is_ordered_by_urgency_with_normal_the_default() {
    assert!(Priority::High > Priority::Normal);
    assert!(Priority::Normal > Priority::Low);
    assert_eq!(Priority::default(), Priority::Normal);
    let set: std::collections::HashSet<_> = [Priority::High, Priority::Normal, Priority::Low]
        .into_iter()
        .collect();
    assert_eq!(set.len(), 3);
}

#[test]
fn handles_clone_and_share_the_pool_and_its_metrics() {
    timed(|| {
        let pool = one_worker();
        assert_eq!(pool.priority(), Priority::Normal);
        let high = pool.with_priority(Priority::High);
        assert_eq!(high.priority(), Priority::High);
        assert_eq!(high.clone().priority(), Priority::High);
        assert_eq!(high.with_priority(Priority::Low).priority(), Priority::Low);
        assert!(format!("{high:?}").contains("High"));
        assert_eq!(high.threads(), 1);
        high.spawn(|| ()).wait().unwrap();
        pool.with_priority(Priority::Low)
            .spawn(|| ())
            .wait()
            .unwrap();
        pool.spawn(|| ()).wait().unwrap();
        // One pool: every handle's jobs in one count.
        assert_eq!(pool.metrics().spawned(), 3);
        assert_eq!(high.metrics().completed(), 3);
        // Shutting down through one handle shuts down the pool.
        high.shutdown();
        assert!(pool.spawn(|| ()).wait().unwrap_err().is_cancelled());
    });
}

#[test]
fn queued_jobs_start_most_urgent_first_then_in_submission_order() {
    timed(|| {
        let pool = one_worker();
        let gate = Gate::hold(&pool);
        let log = Log::default();
        let (high, low) = (
            pool.with_priority(Priority::High),
            pool.with_priority(Priority::Low),
        );
        let tasks = vec![
            logged(&low, &log, "L1"),
            logged(&pool, &log, "N1"),
            logged(&high, &log, "H1"),
            logged(&low, &log, "L2"),
            logged(&pool, &log, "N2"),
            logged(&high, &log, "H2"),
        ];
        gate.release();
        wait_all(tasks);
        assert_eq!(log.take(), ["H1", "H2", "N1", "N2", "L1", "L2"]);
    });
}

#[test]
fn jobs_spawned_on_the_worker_start_most_urgent_first() {
    timed(|| {
        let pool = one_worker();
        let log = Log::default();
        let (started_tx, started) = mpsc::channel();
        let (release, gate) = mpsc::channel::<()>();
        let (tasks_tx, tasks_rx) = mpsc::channel();
        let handles = [
            pool.with_priority(Priority::Low),
            pool.clone(),
            pool.with_priority(Priority::High),
        ];
        let job_log = log.clone();
        // The gate job queues on its own worker's deques.
        let gate_job = pool.spawn(move || {
            let tasks: Vec<_> = ["L", "N", "H"]
                .iter()
                .zip(&handles)
                .map(|(label, handle)| logged(handle, &job_log, label))
                .collect();
            tasks_tx.send(tasks).unwrap();
            started_tx.send(()).unwrap();
            gate.recv().unwrap();
        });
        started.recv().unwrap();
        let tasks = tasks_rx.recv().unwrap();
        release.send(()).unwrap();
        gate_job.wait().unwrap();
        wait_all(tasks);
        assert_eq!(log.take(), ["H", "N", "L"]);
    });
}

/// The work a `High` job starts is `High` too: its `join` half (which
/// `offload::spawn`s a child), its `scope` job (which does too), and its
/// own `offload::spawn`; all of it starts before the `Normal` and `Low`
/// jobs queued before it.
#[test]
fn join_halves_scope_jobs_and_spawns_inherit_the_running_priority() {
    timed(|| {
        let pool = one_worker();
        let gate = Gate::hold(&pool);
        let log = Log::default();
        let normal = logged(&pool, &log, "normal");
        let low = logged(&pool.with_priority(Priority::Low), &log, "low");
        let job_log = log.clone();
        let high = pool.with_priority(Priority::High).spawn(move || {
            let log = job_log;
            log.push("high");
            let child = |label: &'static str, log: &Log| {
                let log = log.clone();
                offload::spawn(move || log.push(label)).detach();
            };
            offload::join(
                || log.push("join-a"),
                || {
                    log.push("join-b");
                    child("join-b-child", &log);
                },
            );
            offload::scope(|s| {
                s.spawn(|_| {
                    log.push("scope-job");
                    child("scope-job-child", &log);
                });
            });
            child("spawned", &log);
        });
        gate.release();
        high.wait().unwrap();
        normal.wait().unwrap();
        low.wait().unwrap();
        let order = log.take();
        let at = |label: &str| order.iter().position(|l| l == label).unwrap();
        assert_eq!(order.len(), 9, "{order:?}");
        for label in [
            "high",
            "join-a",
            "join-b",
            "join-b-child",
            "scope-job",
            "scope-job-child",
            "spawned",
        ] {
            assert!(at(label) < at("normal"), "{label} after normal: {order:?}");
        }
        assert!(at("normal") < at("low"), "{order:?}");
    });
}

/// A `High` job's `join` from a `Low` handle's job on the same worker:
/// the halves of each job go back to the job that made them (the worker
/// reclaims its own half from its lane), whatever lane it runs in.
#[test]
fn joins_at_every_priority_compute_correctly() {
    fn fib(n: u64) -> u64 {
        if n < 2 {
            return n;
        }
        let (a, b) = offload::join(|| fib(n - 1), || fib(n - 2));
        a + b
    }
    timed(|| {
        let pool = Pool::builder().threads(2).build().unwrap();
        let tasks: Vec<_> = [Priority::High, Priority::Normal, Priority::Low]
            .into_iter()
            .cycle()
            .take(12)
            .map(|priority| pool.with_priority(priority).spawn(|| fib(18)))
            .collect();
        for task in tasks {
            assert_eq!(task.wait().unwrap(), 2584);
        }
        let high = pool.with_priority(Priority::High);
        assert_eq!(high.install(|| fib(15)), 610);
        assert_eq!(high.join(|| fib(10), || fib(11)), (55, 89));
    });
}

/// Under a flood of `High` jobs, every 8th start of the worker (after 7
/// that passed a `Low` job over) is a `Low` one: the i-th `Low` job starts
/// by start 8i.
#[test]
fn lower_lanes_get_one_start_in_eight_under_a_flood() {
    timed(|| {
        let pool = one_worker();
        let gate = Gate::hold(&pool);
        let log = Log::default();
        let (high, low) = (
            pool.with_priority(Priority::High),
            pool.with_priority(Priority::Low),
        );
        let mut tasks: Vec<_> = (0..10).map(|_| logged(&low, &log, "L")).collect();
        tasks.extend((0..80).map(|_| logged(&high, &log, "H")));
        gate.release();
        wait_all(tasks);
        let order = log.take();
        let lows = starts_of(&order, "L");
        assert_eq!(lows.len(), 10);
        for (i, start) in lows.iter().enumerate() {
            assert!(
                *start <= 8 * (i + 1),
                "Low #{} started {start}th: {order:?}",
                i + 1
            );
        }
        // And not more than that: the flood keeps 7 starts in 8.
        assert!(lows[0] >= 8, "{order:?}");
    });
}

/// With `Normal` and `Low` both waiting under the flood, the lower starts
/// alternate between them: each still gets one start in 16.
#[test]
fn two_lower_lanes_take_turns_under_a_flood() {
    timed(|| {
        let pool = one_worker();
        let gate = Gate::hold(&pool);
        let log = Log::default();
        let (high, low) = (
            pool.with_priority(Priority::High),
            pool.with_priority(Priority::Low),
        );
        let mut tasks: Vec<_> = (0..6).map(|_| logged(&low, &log, "L")).collect();
        tasks.extend((0..6).map(|_| logged(&pool, &log, "N")));
        tasks.extend((0..96).map(|_| logged(&high, &log, "H")));
        gate.release();
        wait_all(tasks);
        let order = log.take();
        for lane in ["N", "L"] {
            let starts = starts_of(&order, lane);
            for (i, start) in starts.iter().enumerate().take(5) {
                assert!(
                    *start <= 16 * (i + 1),
                    "{lane} #{} at {start}: {order:?}",
                    i + 1
                );
            }
        }
    });
}

#[test]
fn try_spawn_and_reserve_carry_the_handle_priority_under_one_shared_bound() {
    timed(|| {
        let pool = Pool::builder()
            .threads(1)
            .max_queued(4)
            .detect_blocking(false)
            .build()
            .unwrap();
        let gate = Gate::hold(&pool);
        let log = Log::default();
        let (high, low) = (
            pool.with_priority(Priority::High),
            pool.with_priority(Priority::Low),
        );
        let spawn = |handle: &Pool, label: &'static str| {
            let log = log.clone();
            handle.try_spawn(move || log.push(label)).ok().unwrap()
        };
        let mut tasks = vec![spawn(&low, "low"), spawn(&pool, "normal")];
        let permit = high.reserve().wait().unwrap();
        let log2 = log.clone();
        tasks.push(permit.spawn(move || log2.push("high-permit")));
        let log3 = log.clone();
        tasks.push(
            high.try_reserve()
                .unwrap()
                .spawn(move || log3.push("high-try-permit")),
        );
        // The bound is shared: four queued, so every priority is refused.
        assert!(high.try_spawn(|| ()).unwrap_err().is_full());
        assert!(low.try_spawn(|| ()).unwrap_err().is_full());
        assert!(pool.try_reserve().unwrap_err().is_full());
        gate.release();
        wait_all(tasks);
        assert_eq!(
            log.take(),
            ["high-permit", "high-try-permit", "normal", "low"]
        );
    });
}

#[test]
fn queued_blocking_jobs_start_most_urgent_first() {
    timed(|| {
        let pool = Pool::builder()
            .threads(1)
            .max_blocking_threads(1)
            .build()
            .unwrap();
        let (started_tx, started) = mpsc::channel();
        let (release, gate) = mpsc::channel::<()>();
        let holder = pool.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            gate.recv().unwrap();
        });
        started.recv().unwrap();
        let log = Log::default();
        let (high, low) = (
            pool.with_priority(Priority::High),
            pool.with_priority(Priority::Low),
        );
        let blocking = |handle: &Pool, label: &'static str| {
            let log = log.clone();
            handle.spawn_blocking(move || log.push(label))
        };
        let mut tasks = vec![
            blocking(&low, "low"),
            blocking(&pool, "normal"),
            blocking(&high, "high"),
        ];
        let log2 = log.clone();
        tasks.push(
            high.try_spawn_blocking(move || log2.push("high-try"))
                .ok()
                .unwrap(),
        );
        release.send(()).unwrap();
        holder.wait().unwrap();
        wait_all(tasks);
        assert_eq!(log.take(), ["high", "high-try", "normal", "low"]);
    });
}

/// A blocking job's `offload::spawn` inherits its priority too.
#[test]
fn a_blocking_jobs_spawn_inherits_its_priority() {
    timed(|| {
        let pool = one_worker();
        let gate = Gate::hold(&pool);
        let log = Log::default();
        let low = logged(&pool.with_priority(Priority::Low), &log, "low");
        let job_log = log.clone();
        let child = pool
            .with_priority(Priority::High)
            .spawn_blocking(move || offload::spawn(move || job_log.push("child")))
            .wait()
            .unwrap();
        gate.release();
        child.wait().unwrap();
        low.wait().unwrap();
        assert_eq!(log.take(), ["child", "low"]);
    });
}

/// Jobs of every lane, queued from outside (the injectors) and from the
/// worker (its deques), for the shutdown tests: the gate job queues its
/// share, then holds the worker until `release` is sent.
fn queue_every_lane(pool: &Pool) -> (mpsc::Sender<()>, Task<()>, Vec<Task<()>>) {
    let (started_tx, started) = mpsc::channel();
    let (release, gate) = mpsc::channel::<()>();
    let (tasks_tx, tasks_rx) = mpsc::channel();
    let handles: Vec<Pool> = [Priority::High, Priority::Normal, Priority::Low]
        .into_iter()
        .map(|priority| pool.with_priority(priority))
        .collect();
    let inner = handles.clone();
    let gate_job = pool.spawn(move || {
        let tasks: Vec<_> = inner
            .iter()
            .flat_map(|handle| (0..3).map(move |_| handle.spawn(|| ())))
            .collect();
        tasks_tx.send(tasks).unwrap();
        started_tx.send(()).unwrap();
        let _ = gate.recv();
    });
    started.recv().unwrap();
    let mut tasks = tasks_rx.recv().unwrap();
    for handle in &handles {
        tasks.extend((0..3).map(|_| handle.spawn(|| ())));
    }
    (release, gate_job, tasks)
}

#[test]
fn shutdown_now_cancels_the_queued_jobs_of_every_lane() {
    timed(|| {
        let pool = one_worker();
        let (release, gate_job, tasks) = queue_every_lane(&pool);
        let shutdown = pool.shutdown_now_async();
        // Resolved before the worker is free: the caller swept every lane.
        assert!(tasks.iter().all(Task::is_finished));
        for task in tasks {
            assert!(task.wait().unwrap_err().is_cancelled());
        }
        release.send(()).unwrap();
        pollster::block_on(shutdown);
        gate_job.wait().unwrap();
        let metrics = pool.metrics();
        assert_eq!(metrics.cancelled(), 18);
        assert_eq!(metrics.queued(), 0);
    });
}

#[test]
fn shutdown_runs_every_lane_and_then_refuses_every_priority() {
    timed(|| {
        let pool = one_worker();
        let (release, gate_job, tasks) = queue_every_lane(&pool);
        let high = pool.with_priority(Priority::High);
        let shutdown = pool.shutdown_async();
        release.send(()).unwrap();
        pollster::block_on(shutdown);
        gate_job.wait().unwrap();
        wait_all(tasks);
        for priority in [Priority::High, Priority::Normal, Priority::Low] {
            let late = pool.with_priority(priority).spawn(|| ());
            assert!(late.wait().unwrap_err().is_cancelled());
        }
        assert!(high.try_spawn(|| ()).unwrap_err().is_shutdown());
        assert_eq!(pool.metrics().completed(), 19);
    });
}

/// A pool of several workers with every lane busy at once: every job runs
/// exactly once, and the pool drains.
#[test]
fn mixed_lanes_on_many_workers_run_every_job_once() {
    timed(|| {
        let pool = Pool::builder().threads(3).build().unwrap();
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..3000usize {
            let priority = [Priority::High, Priority::Normal, Priority::Low][i % 3];
            let counter = Arc::clone(&counter);
            tasks.push(pool.with_priority(priority).spawn(move || {
                if i % 10 == 0 {
                    // Nested work in the job's lane.
                    let (a, b) = offload::join(|| i, || i + 1);
                    offload::spawn(move || a + b).detach();
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }));
        }
        wait_all(tasks);
        assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), 3000);
        pool.shutdown();
        let metrics = pool.metrics();
        assert_eq!(metrics.spawned(), metrics.completed());
        assert_eq!(metrics.queued(), 0);
    });
}

/// `Metrics` split by priority: queued counts while the worker is held,
/// queue-wait histograms once the jobs ran (every job timed), and the
/// whole-pool figures still add up.
#[test]
fn metrics_count_and_time_each_priority() {
    timed(|| {
        let pool = Pool::builder()
            .threads(1)
            .detect_blocking(false)
            .metrics_sample_every(1)
            .build()
            .unwrap();
        let gate = Gate::hold(&pool);
        let before = pool.metrics();
        let mut tasks = Vec::new();
        for (priority, n) in [
            (Priority::High, 2),
            (Priority::Normal, 3),
            (Priority::Low, 4),
        ] {
            let handle = pool.with_priority(priority);
            tasks.extend((0..n).map(|_| handle.spawn(|| ())));
        }
        let cancelled = pool.with_priority(Priority::Low).spawn(|| ());
        cancelled.cancel();
        let queued = pool.metrics();
        assert_eq!(queued.queued_at(Priority::High), 2);
        assert_eq!(queued.queued_at(Priority::Normal), 3);
        // The cancelled Task's job counts until a worker reaches it.
        assert_eq!(queued.queued_at(Priority::Low), 5);
        assert_eq!(queued.queued(), 10);
        gate.release();
        wait_all(tasks);
        pool.shutdown();
        let done = pool.metrics().since(&before);
        for priority in [Priority::High, Priority::Normal, Priority::Low] {
            assert_eq!(done.queued_at(priority), 0, "{priority:?}");
        }
        assert_eq!(done.queue_wait_at(Priority::High).count(), 2);
        assert_eq!(done.queue_wait_at(Priority::Normal).count(), 3);
        assert_eq!(done.queue_wait_at(Priority::Low).count(), 4);
        // The gate job's own wait was recorded before `before`.
        assert_eq!(done.queue_wait().count(), 9);
        assert_eq!(done.cancelled(), 1);
    });
}

/// An urgent job now and then beside a batch is not a flood: the worker
/// takes it at its next start every time, however many batch and urgent
/// jobs it ran before (the starvation rule counts only runs of starts that
/// passed a less urgent job over, and each batch job ends the run; a rule
/// that took a batch job every 8th start would take one ahead of the
/// urgent job in the 6th round here, where each round is 3 starts).
#[test]
fn an_occasional_urgent_job_always_starts_next() {
    timed(|| {
        let pool = one_worker();
        let low = pool.with_priority(Priority::Low);
        let high = pool.with_priority(Priority::High);
        let log = Log::default();
        for round in 0..20 {
            let gate = Gate::hold(&pool);
            let mut tasks: Vec<_> = (0..2).map(|_| logged(&low, &log, "L")).collect();
            tasks.push(logged(&high, &log, "H"));
            gate.release();
            wait_all(tasks);
            assert_eq!(log.take(), ["H", "L", "L"], "round {round}");
        }
    });
}
