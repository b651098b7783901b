//! Every closure and every output is dropped exactly once, on every path.

mod common;

use std::sync::mpsc;
use std::thread;

use common::{is_terminating, pool, spin_until, timed, Counter, DropCounter, Gate};

const N: usize = 300;

/// Spawns a job that captures a tracked value and returns another.
fn tracked_job(
    pool: &offload::Pool,
    closures: &DropCounter,
    outputs: &DropCounter,
    runs: &Counter,
    value: u64,
) -> offload::Task<common::Tracked> {
    let captured = closures.track_value(value);
    let outputs = outputs.clone();
    let runs = runs.clone();
    pool.spawn(move || {
        runs.incr();
        let captured = captured;
        outputs.track_value(captured.value)
    })
}

struct Counts {
    closures: DropCounter,
    outputs: DropCounter,
    runs: Counter,
}

impl Counts {
    fn new() -> Self {
        Self {
            closures: DropCounter::new(),
            outputs: DropCounter::new(),
            runs: Counter::new(),
        }
    }

    fn job(&self, pool: &offload::Pool, value: u64) -> offload::Task<common::Tracked> {
        tracked_job(pool, &self.closures, &self.outputs, &self.runs, value)
    }

    /// Every closure dropped once; every output created dropped once.
    fn assert_balanced(&self, spawned: usize) {
        assert_eq!(self.closures.created(), spawned);
        assert_eq!(self.closures.drops(), spawned, "closures");
        assert_eq!(self.outputs.created(), self.runs.get());
        assert_eq!(self.outputs.drops(), self.outputs.created(), "outputs");
    }
}

#[test]
fn awaited_outputs() {
    timed(|| {
        let pool = pool(2, "awaited");
        let c = Counts::new();
        let tasks: Vec<_> = (0..N as u64).map(|i| c.job(&pool, i)).collect();
        let outputs: Vec<_> = pollster::block_on(futures::future::join_all(tasks));
        assert_eq!(c.outputs.drops(), 0);
        for (i, out) in outputs.into_iter().enumerate() {
            assert_eq!(out.unwrap().value, i as u64);
        }
        pool.shutdown();
        assert_eq!(c.runs.get(), N);
        c.assert_balanced(N);
    });
}

#[test]
fn waited_outputs() {
    timed(|| {
        let pool = pool(2, "waited");
        let c = Counts::new();
        for i in 0..N as u64 {
            let out = c.job(&pool, i).wait().unwrap();
            assert_eq!(out.value, i);
            assert_eq!(c.outputs.drops(), i as usize);
        }
        pool.shutdown();
        c.assert_balanced(N);
    });
}

#[test]
fn detached_outputs() {
    timed(|| {
        let pool = pool(2, "detached");
        let c = Counts::new();
        for i in 0..N as u64 {
            c.job(&pool, i).detach();
        }
        pool.shutdown();
        assert_eq!(c.runs.get(), N);
        c.assert_balanced(N);
    });
}

#[test]
fn tasks_dropped_before_start() {
    timed(|| {
        let pool = pool(1, "before-start");
        let c = Counts::new();
        let gate = Gate::hold(&pool);
        for i in 0..N as u64 {
            drop(c.job(&pool, i));
        }
        assert_eq!(c.closures.drops(), N);
        gate.release();
        pool.shutdown();
        assert_eq!(c.runs.get(), 0);
        c.assert_balanced(N);
    });
}

#[test]
fn tasks_dropped_after_completion() {
    timed(|| {
        let pool = pool(1, "after-done");
        let c = Counts::new();
        let tasks: Vec<_> = (0..N as u64).map(|i| c.job(&pool, i)).collect();
        pool.spawn(|| ()).wait().unwrap(); // FIFO: all of them have run
        assert_eq!(c.runs.get(), N);
        assert_eq!(c.outputs.drops(), 0, "outputs waiting in their Tasks");
        for task in tasks {
            assert!(task.is_finished());
            drop(task);
        }
        assert_eq!(c.outputs.drops(), N);
        pool.shutdown();
        c.assert_balanced(N);
    });
}

#[test]
fn task_dropped_while_running() {
    timed(|| {
        let pool = pool(1, "while-running");
        let outputs = DropCounter::new();
        let closures = DropCounter::new();
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let out = outputs.clone();
        let captured = closures.track();
        let task = pool.spawn(move || {
            let _captured = captured;
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            out.track()
        });
        started_rx.recv().unwrap();
        drop(task);
        go_tx.send(()).unwrap();
        pool.shutdown();
        assert_eq!(closures.drops(), 1);
        assert_eq!(outputs.created(), 1);
        assert_eq!(outputs.drops(), 1);
    });
}

#[test]
fn shutdown_now_with_queued_jobs() {
    timed(|| {
        let pool = pool(1, "now");
        let c = Counts::new();
        let gate = Gate::hold(&pool);
        let mut held = Vec::new();
        for i in 0..N as u64 {
            let task = c.job(&pool, i);
            match i % 3 {
                0 => held.push(task),
                1 => task.detach(),
                _ => drop(task),
            }
        }
        let p = pool.clone();
        let shutdown = thread::spawn(move || p.shutdown_now());
        spin_until(|| is_terminating(&pool));
        gate.release();
        shutdown.join().unwrap();
        assert_eq!(c.runs.get(), 0);
        for task in held {
            assert!(task.wait().unwrap_err().is_cancelled());
        }
        c.assert_balanced(N);
    });
}

#[test]
fn pool_dropped_with_queued_jobs() {
    timed(|| {
        let pool = pool(1, "dropped");
        let c = Counts::new();
        let gate = Gate::hold(&pool);
        let mut held = Vec::new();
        for i in 0..N as u64 {
            let task = c.job(&pool, i);
            match i % 3 {
                0 => held.push((i, task)),
                1 => task.detach(),
                _ => drop(task),
            }
        }
        // The last job tells when the worker got through the queue.
        let (last_tx, last_rx) = mpsc::channel();
        pool.spawn(move || last_tx.send(()).unwrap()).detach();
        drop(pool);
        gate.release();
        last_rx.recv().unwrap();
        let mut kept = 0;
        for (i, task) in held {
            assert_eq!(task.wait().unwrap().value, i);
            kept += 1;
        }
        // Jobs of dropped Tasks were cancelled; the others ran.
        let dropped = N / 3;
        assert_eq!(c.runs.get(), N - dropped);
        assert_eq!(kept, N.div_ceil(3));
        c.assert_balanced(N);
    });
}

#[test]
fn cancelled_by_a_spawn_after_shutdown() {
    timed(|| {
        let pool = pool(1, "post-shutdown");
        pool.shutdown();
        let c = Counts::new();
        let held: Vec<_> = (0..N as u64).map(|i| c.job(&pool, i)).collect();
        for i in 0..N as u64 {
            c.job(&pool, i).detach();
        }
        assert_eq!(c.closures.drops(), 2 * N);
        for task in held {
            assert!(task.wait().unwrap_err().is_cancelled());
        }
        assert_eq!(c.runs.get(), 0);
        c.assert_balanced(2 * N);
    });
}

#[test]
fn closure_of_a_panicking_job_is_dropped_once() {
    common::silence_expected_panics();
    timed(|| {
        let pool = pool(2, "panicking");
        let closures = DropCounter::new();
        let tasks: Vec<_> = (0..N)
            .map(|_| {
                let captured = closures.track();
                pool.spawn(move || {
                    let _captured = captured;
                    panic!("expected panic");
                })
            })
            .collect();
        for task in tasks {
            assert!(task.wait().unwrap_err().is_panic());
        }
        pool.shutdown();
        assert_eq!(closures.drops(), N);
    });
}

#[test]
fn detached_after_completion() {
    timed(|| {
        let pool = pool(1, "detach-done");
        let c = Counts::new();
        let tasks: Vec<_> = (0..N as u64).map(|i| c.job(&pool, i)).collect();
        pool.spawn(|| ()).wait().unwrap(); // FIFO: all of them have run
        assert_eq!(c.outputs.drops(), 0);
        for task in tasks {
            task.detach();
        }
        // Detaching a finished Task drops its output at once.
        assert_eq!(c.outputs.drops(), N);
        pool.shutdown();
        c.assert_balanced(N);
    });
}

#[test]
fn large_and_zero_sized_outputs() {
    timed(|| {
        let pool = pool(2, "sizes");
        let big = pool.spawn(|| [7u64; 4096]).wait().unwrap();
        assert!(big.iter().all(|&x| x == 7));
        let boxed = pool.spawn(|| vec![1u8; 1 << 20]).wait().unwrap();
        assert_eq!(boxed.len(), 1 << 20);
        pool.spawn(|| ()).wait().unwrap();
        struct Zst;
        assert!(matches!(pool.spawn(|| Zst).wait(), Ok(Zst)));
    });
}
