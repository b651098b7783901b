//! Heap allocations a submission costs the submitting thread: `spawn`
//! allocates the Task's cell and nothing else (the injector links jobs
//! through their headers), and `wait` from outside the pool allocates
//! nothing (it parks on the thread's cached parker); a `try_spawn` that a
//! full queue refuses allocates nothing at all. Counted per thread by a
//! counting global allocator, so the workers' own allocations do not blur
//! the figure.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::timed;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to `System` unchanged; the counter is a
// thread-local `Cell` with a const initialiser, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is `System.dealloc`'s.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn spawn_and_wait_from_outside_allocate_only_the_task_cell() {
    timed(|| {
        let pool = offload::Pool::builder().threads(2).build().unwrap();
        // Warm up: the thread's parker.
        pool.spawn(|| 1u64).wait().unwrap();
        const ROUNDS: usize = 1000;
        let before = allocations();
        for i in 0..ROUNDS as u64 {
            assert_eq!(pool.spawn(move || i + 1).wait().unwrap(), i + 1);
        }
        let made = allocations() - before;
        assert_eq!(made, ROUNDS, "allocations for {ROUNDS} spawns + waits");
    });
}

#[test]
fn a_burst_from_outside_allocates_only_the_task_cells() {
    timed(|| {
        const THREADS: usize = 2;
        const BURST: usize = 10_000;
        let pool = offload::Pool::builder().threads(THREADS).build().unwrap();
        let mut tasks = Vec::with_capacity(BURST);

        // Warm up: `install` makes this thread's parker (a `wait` on a
        // Task already finished would not).
        pool.install(|| ());
        let before = allocations();
        tasks.extend((0..BURST).map(|i| pool.spawn(move || i)));
        for (i, task) in tasks.drain(..).enumerate() {
            assert_eq!(task.wait().unwrap(), i);
        }
        let made = allocations() - before;
        assert_eq!(made, BURST, "allocations for {BURST} spawns");
    });
}

#[test]
fn try_spawn_allocates_the_cell_when_admitted_and_nothing_when_refused() {
    timed(|| {
        let pool = offload::Pool::builder()
            .threads(1)
            .max_queued(1)
            .detect_blocking(false) // the held worker must hold the queue
            .build()
            .unwrap();
        // Hold the one worker, so that the queue fills and stays full.
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let holder = pool.spawn(move || {
            started_tx.send(()).unwrap();
            gate.recv().unwrap();
        });
        started.recv().unwrap();

        let before = allocations();
        let admitted = pool.try_spawn(|| 7).expect("one free slot");
        assert_eq!(allocations() - before, 1, "an admitted try_spawn: the cell");

        const REFUSALS: usize = 10_000;
        let before = allocations();
        for i in 0..REFUSALS {
            let refused = pool.try_spawn(move || i).expect_err("the queue is full");
            assert!(refused.is_full());
        }
        assert_eq!(
            allocations() - before,
            0,
            "allocations for {REFUSALS} refusals"
        );

        release.send(()).unwrap();
        holder.wait().unwrap();
        assert_eq!(admitted.wait().unwrap(), 7);
    });
}

#[test]
fn try_spawn_blocking_allocates_nothing_when_refused() {
    timed(|| {
        let pool = offload::Pool::builder()
            .threads(1)
            .max_blocking_threads(1)
            .max_queued_blocking(1)
            .build()
            .unwrap();
        // Hold the one spare thread for blocking jobs, and fill the queue.
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let holder = pool.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            gate.recv().unwrap();
        });
        started.recv().unwrap();
        let admitted = pool.try_spawn_blocking(|| 7).expect("one place queued");

        const REFUSALS: usize = 10_000;
        let before = allocations();
        for i in 0..REFUSALS {
            let refused = pool
                .try_spawn_blocking(move || i)
                .expect_err("the queue is full");
            assert!(refused.is_full());
        }
        assert_eq!(
            allocations() - before,
            0,
            "allocations for {REFUSALS} refusals"
        );

        release.send(()).unwrap();
        holder.wait().unwrap();
        assert_eq!(admitted.wait().unwrap(), 7);
    });
}
