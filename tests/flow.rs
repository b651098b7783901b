//! Flow control, as a user relies on it: the bounded queue
//! (`Builder::max_queued`, `Pool::try_spawn`, `Pool::reserve`, `Permit`),
//! cancellation that reaches a running job (`Task::cancel`, dropping a Task,
//! `offload::is_cancelled`), and `Task::wait_timeout`.
//!
//! There is no public slot counter, so the count is checked by behaviour
//! ([`assert_all_slots_free`]): with every worker held by a gate job (so
//! nothing queued can start), exactly `max_queued` `try_spawn`s are admitted
//! and the next one is refused as full. A slot leaked on some path makes an
//! admission fail; one given back twice makes the extra one succeed (or the
//! count wrap, which refuses everything). A shut-down pool refuses
//! everything, so for the shutdown paths the count is read from the `Debug`
//! output of a `Reserve` instead ([`held`]), as `common::is_terminating`
//! reads a pool's.
//!
//! Synchronisation is by channels, barriers and joins; every test body runs
//! under a timeout, and every loop that waits for a job to notice its
//! cancellation gives up after [`WAIT`]; no assertion depends on timing.

mod common;

use std::future::Future;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use common::{is_terminating, pool, spin_until, timed, Counter, DropCounter, Gate};
use futures::StreamExt;
use offload::{Permit, Pool, Reserve, ShutdownError, Task, TryReserveError, TrySpawnError};

/// How long a job or the test waits for something that must happen (a
/// cancellation to be seen, a waiter to resolve) before it reports failure.
const WAIT: Duration = Duration::from_secs(10);

const SC: Ordering = Ordering::SeqCst;

// ---- helpers -----------------------------------------------------------

/// A pool of `threads` threads named `{prefix}-{i}`, admitting `max` queued
/// jobs through `try_spawn` and `reserve`.
fn bounded(threads: usize, max: usize, prefix: &'static str) -> Pool {
    Pool::builder()
        .threads(threads)
        .detect_blocking(false) // gated workers must hold the queue
        .max_queued(max)
        .thread_name(move |i| format!("{prefix}-{i}"))
        .build()
        .expect("build the pool")
}

/// Holds every worker of `pool` in a gate job: each has signalled that it
/// runs, so nothing queued after this starts until the gates open.
fn gate_all(pool: &Pool) -> Vec<Gate> {
    (0..pool.threads()).map(|_| Gate::hold(pool)).collect()
}

fn open_all(gates: Vec<Gate>) {
    for gate in gates {
        gate.release();
    }
}

/// The slots taken now, from the `Debug` output of a `Reserve` (which
/// shows the pool's `Slots { max, held, waiting }`): the only window on the
/// count once the pool is shut down and refuses everything.
fn held(pool: &Pool) -> usize {
    let text = slots_debug(pool);
    let at = text
        .find("held: ")
        .unwrap_or_else(|| panic!("no slot count in {text}"))
        + "held: ".len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no slot count in {text}"))
}

/// The `Debug` output of a fresh (never polled) `Reserve` on `pool`.
fn slots_debug(pool: &Pool) -> String {
    format!("{:?}", pool.reserve())
}

/// Whether some `reserve` waiter is in line (from the `Debug` output).
fn someone_waits(pool: &Pool) -> bool {
    slots_debug(pool).contains("waiting: true")
}

/// Every slot of the bounded `pool` is free: with all its workers gated,
/// exactly `max_queued` `try_spawn`s are admitted and the next is refused
/// as full. Then the gates open and the admitted jobs run. The pool must be
/// quiet (no job of the scenario queued or running).
#[track_caller]
fn assert_all_slots_free(pool: &Pool, after: &str) {
    let max = pool.max_queued().expect("a bounded pool");
    let gates = gate_all(pool);
    let mut admitted = Vec::with_capacity(max);
    for i in 0..max {
        match pool.try_spawn(move || i) {
            Ok(task) => admitted.push(task),
            Err(err) => panic!(
                "after {after}: try_spawn {} of {max} refused ({err}): a slot leaked; {}",
                i + 1,
                slots_debug(pool)
            ),
        }
    }
    match pool.try_spawn(move || max) {
        Ok(_) => panic!(
            "after {after}: try_spawn {} of {max} admitted: a slot was given back twice; {}",
            max + 1,
            slots_debug(pool)
        ),
        Err(err) => assert!(err.is_full(), "after {after}: refused, but not full: {err}"),
    }
    open_all(gates);
    for (i, task) in admitted.into_iter().enumerate() {
        assert_eq!(task.wait().unwrap(), i, "after {after}");
    }
}

/// Counts its wake-ups.
#[derive(Debug, Default)]
struct CountingWaker(AtomicUsize);

impl CountingWaker {
    fn new() -> (Arc<Self>, Waker) {
        let counter = Arc::new(Self::default());
        let waker = Waker::from(Arc::clone(&counter));
        (counter, waker)
    }

    fn wakes(&self) -> usize {
        self.0.load(SC)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SC);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, SC);
    }
}

/// Polls `future` once with `waker`.
fn poll_with<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
}

/// Polls `future` once with a waker that does nothing.
fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    poll_with(future, &futures::task::noop_waker())
}

/// Inside a job: polls `is_cancelled` until it is true or [`WAIT`] passed;
/// returns whether the job saw its cancellation.
fn wait_for_cancel() -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if offload::is_cancelled() {
            return true;
        }
        thread::yield_now();
    }
    offload::is_cancelled()
}

/// A job that says when it runs, then waits for its cancellation: its
/// Task resolves to whether it saw it.
fn cancellable(pool: &Pool) -> (Task<bool>, mpsc::Receiver<()>) {
    let (started_tx, started) = mpsc::channel();
    let task = pool.spawn(move || {
        started_tx.send(()).unwrap();
        wait_for_cancel()
    });
    (task, started)
}

/// `try_spawn` that must be admitted.
#[track_caller]
fn admit<T: Send + 'static>(pool: &Pool, job: impl FnOnce() -> T + Send + 'static) -> Task<T> {
    match pool.try_spawn(job) {
        Ok(task) => task,
        Err(err) => panic!("try_spawn refused: {err}; {}", slots_debug(pool)),
    }
}

/// `try_spawn` that must be refused because the queue is full.
#[track_caller]
fn assert_full(pool: &Pool, what: &str) {
    match pool.try_spawn(|| ()) {
        Ok(_) => panic!("{what}: try_spawn admitted; {}", slots_debug(pool)),
        Err(err) => assert!(err.is_full(), "{what}: refused, but not full: {err}"),
    }
}

fn assert_send_static<T: Send + 'static>() {}

/// Keeps the panics this file causes on purpose out of the output (one
/// hook per test binary, so every test installs the same one).
fn quiet_expected_panics() {
    common::quiet_panics_where(|payload| {
        let message = common::panic_message(payload);
        message.contains(common::EXPECTED) || message.contains("polled after")
    });
}

// ---- slot accounting on every path -------------------------------------

#[test]
fn slots_come_back_after_jobs_run() {
    timed(|| {
        let pool = bounded(2, 4, "run");
        assert_eq!(pool.max_queued(), Some(4));
        assert_all_slots_free(&pool, "nothing");
        // Admitted by every door: try_spawn (retried while full), reserve
        // (blocking and async), and plain spawn.
        let mut tasks = Vec::new();
        for i in 0..40u64 {
            let mut job = move || i * 3;
            let task = loop {
                match pool.try_spawn(job) {
                    Ok(task) => break task,
                    Err(err) => {
                        assert!(err.is_full());
                        job = err.into_inner();
                        thread::yield_now();
                    }
                }
            };
            tasks.push((i * 3, task));
            let permit = pool.reserve().wait().expect("the pool runs");
            tasks.push((i * 5, permit.spawn(move || i * 5)));
            let permit = futures::executor::block_on(pool.reserve()).expect("the pool runs");
            tasks.push((i * 7, permit.spawn(move || i * 7)));
            tasks.push((i * 11, pool.spawn(move || i * 11)));
        }
        for (expected, task) in tasks {
            assert_eq!(task.wait().unwrap(), expected);
        }
        assert_all_slots_free(&pool, "jobs that ran");
    });
}

#[test]
fn plain_spawn_is_never_refused_but_counts() {
    timed(|| {
        let max = 3;
        let pool = bounded(1, max, "plain");
        let gates = gate_all(&pool);
        let runs = Counter::new();
        // Twice the bound, all queued behind the gate: spawn never refuses.
        let mut tasks: Vec<_> = (0..2 * max)
            .map(|i| {
                let runs = runs.clone();
                pool.spawn(move || {
                    runs.incr();
                    i
                })
            })
            .collect();
        assert!(tasks.iter().all(|task| !task.is_finished()));
        assert_full(&pool, "2 × max_queued plain spawns queued");
        // They count: cancelling max of them leaves the queue still full;
        // one more makes room for exactly one admission.
        for task in tasks.drain(..max) {
            task.cancel();
            assert!(task.wait().unwrap_err().is_cancelled());
            assert_full(&pool, "max_queued queued plain spawns");
        }
        tasks.remove(0).cancel();
        let admitted = admit(&pool, || 100);
        assert_full(&pool, "the queue back at its bound");
        open_all(gates);
        assert_eq!(admitted.wait().unwrap(), 100);
        let rest: Vec<usize> = tasks.into_iter().map(|t| t.wait().unwrap()).collect();
        assert_eq!(rest, (max + 1..2 * max).collect::<Vec<_>>());
        assert_eq!(runs.get(), max - 1);
        assert_all_slots_free(&pool, "plain spawns past the bound");
    });
}

#[test]
fn a_panicking_job_gives_its_slot_back() {
    quiet_expected_panics();
    timed(|| {
        let pool = bounded(1, 2, "panic");
        let tasks: Vec<Task<()>> = (0..20)
            .map(|_| {
                let permit = pool.reserve().wait().expect("the pool runs");
                permit.spawn(|| panic!("expected panic"))
            })
            .collect();
        for task in tasks {
            assert!(task.wait().unwrap_err().is_panic());
        }
        let admitted = admit(&pool, || panic!("expected panic"));
        assert!(admitted.wait().unwrap_err().is_panic());
        assert_all_slots_free(&pool, "panicking jobs");
    });
}

#[test]
fn cancelling_a_queued_job_frees_its_slot_at_once() {
    timed(|| {
        let pool = bounded(1, 3, "cancel-q");
        let gates = gate_all(&pool);
        let runs = Counter::new();
        let closures = DropCounter::new();
        let spawn = |i: u64| {
            let runs = runs.clone();
            let captured = closures.track_value(i);
            admit(&pool, move || {
                runs.incr();
                let captured = captured;
                captured.value
            })
        };
        let (a, b, c) = (spawn(0), spawn(1), spawn(2));
        assert_full(&pool, "three queued");

        // cancel(): the closure is dropped and the slot freed at once, on
        // this thread, while the worker is still held.
        a.cancel();
        assert_eq!(closures.drops(), 1);
        assert!(a.is_finished());
        assert!(a.wait().unwrap_err().is_cancelled());
        let d = spawn(3);
        assert_full(&pool, "a cancelled slot taken again");

        // Cancelling twice, then dropping: one slot, freed once.
        b.cancel();
        b.cancel();
        drop(b);
        assert_eq!(closures.drops(), 2);
        let e = spawn(4);
        assert_full(&pool, "a slot cancelled twice and dropped");

        open_all(gates);
        assert_eq!(c.wait().unwrap(), 2);
        assert_eq!(d.wait().unwrap(), 3);
        assert_eq!(e.wait().unwrap(), 4);
        assert_eq!(runs.get(), 3);
        assert_eq!(closures.drops(), 5);
        assert_all_slots_free(&pool, "cancel before start");
    });
}

#[test]
fn dropping_a_queued_task_frees_its_slot_at_once() {
    timed(|| {
        let pool = bounded(2, 4, "drop-q");
        let gates = gate_all(&pool);
        let runs = Counter::new();
        let spawn = || {
            let runs = runs.clone();
            admit(&pool, move || runs.incr())
        };
        let mut tasks: Vec<_> = (0..4).map(|_| spawn()).collect();
        assert_full(&pool, "four queued");
        for round in 0..10 {
            drop(tasks.remove(round % tasks.len()));
            tasks.push(spawn());
            assert_full(&pool, "a dropped slot taken again");
        }
        // A Task dropped after cancel() gives nothing back a second time.
        let cancelled = tasks.pop().unwrap();
        cancelled.cancel();
        tasks.push(spawn());
        drop(cancelled);
        assert_full(&pool, "a cancelled Task dropped");
        open_all(gates);
        for task in tasks {
            task.wait().unwrap();
        }
        assert_eq!(runs.get(), 4);
        assert_all_slots_free(&pool, "drop before start");
    });
}

#[test]
fn cancelling_a_running_job_holds_no_slot_and_tells_it() {
    timed(|| {
        let pool = bounded(1, 2, "cancel-r");
        let (task, started) = cancellable(&pool);
        started.recv_timeout(WAIT).expect("the job started");
        // A started job holds no slot: the whole bound is free to admit.
        let queued = [admit(&pool, || 1), admit(&pool, || 2)];
        assert_full(&pool, "two queued behind a running job");
        task.cancel();
        assert!(task.wait().unwrap(), "the job never saw cancel()");
        let [one, two] = queued;
        assert_eq!(one.wait().unwrap() + two.wait().unwrap(), 3);
        assert_all_slots_free(&pool, "cancel while running");

        // Dropped while running: the same, and the slot is not freed again.
        let (task, started) = cancellable(&pool);
        started.recv_timeout(WAIT).expect("the job started");
        drop(task);
        assert_all_slots_free(&pool, "drop while running");
    });
}

#[test]
fn cancelling_races_with_the_start_and_never_leaks_a_slot() {
    timed(|| {
        let pool = bounded(2, 4, "race");
        let runs = Counter::new();
        let closures = DropCounter::new();
        let mut kept = Vec::new();
        for i in 0..3000u64 {
            let runs = runs.clone();
            let captured = closures.track_value(i);
            let job = move || {
                runs.incr();
                let captured = captured;
                captured.value
            };
            let task = if i % 2 == 0 {
                pool.reserve().wait().expect("the pool runs").spawn(job)
            } else {
                pool.spawn(job)
            };
            match i % 3 {
                0 => drop(task),
                1 => {
                    task.cancel();
                    kept.push((i, task));
                }
                _ => kept.push((i, task)),
            }
        }
        for (i, task) in kept {
            match task.wait() {
                Ok(value) => assert_eq!(value, i),
                Err(err) => {
                    assert!(err.is_cancelled(), "job {i}: {err}");
                    assert_eq!(i % 3, 1, "job {i} was never cancelled");
                }
            }
        }
        // Each dropped job either lost the race (its slot went with the
        // closure, on this thread) or started (the slot freed at its start,
        // before any worker can take a gate job after it).
        assert_all_slots_free(&pool, "cancels and drops racing with starts");
        pool.shutdown();
        assert_eq!(closures.drops(), 3000, "every closure dropped once");
        assert!(runs.get() <= 3000);
        assert_eq!(held(&pool), 0, "{}", slots_debug(&pool));
    });
}

#[test]
fn shutdown_runs_queued_jobs_and_frees_their_slots() {
    timed(|| {
        let pool = bounded(1, 3, "shutdown");
        let gate = Gate::hold(&pool);
        let runs = Counter::new();
        let job = |i: usize| {
            let runs = runs.clone();
            move || {
                runs.incr();
                i
            }
        };
        let mut tasks = vec![pool.reserve().wait().unwrap().spawn(job(0))];
        tasks.push(admit(&pool, job(1)));
        tasks.push(admit(&pool, job(2)));
        assert_full(&pool, "three queued");
        tasks.push(pool.spawn(job(3)));
        tasks.push(pool.spawn(job(4)));
        assert_eq!(held(&pool), 5);

        let p = pool.clone();
        let shutdown = thread::spawn(move || p.shutdown());
        spin_until(|| is_terminating(&pool));
        assert!(pool.try_spawn(|| ()).unwrap_err().is_shutdown());
        assert_eq!(runs.get(), 0);
        gate.release();
        shutdown.join().unwrap();
        assert_eq!(runs.get(), 5);
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.wait().unwrap(), i);
        }
        assert_eq!(held(&pool), 0, "{}", slots_debug(&pool));
    });
}

#[test]
fn shutdown_now_cancels_queued_jobs_and_frees_their_slots() {
    timed(|| {
        let pool = bounded(2, 4, "shutdown-now");
        let gates = gate_all(&pool);
        let runs = Counter::new();
        let closures = DropCounter::new();
        let job = || {
            let runs = runs.clone();
            let captured = closures.track();
            move || {
                runs.incr();
                drop(captured);
            }
        };
        let mut tasks = vec![pool.reserve().wait().unwrap().spawn(job())];
        // An unused permit held across the shutdown.
        let unused = pool.reserve().wait().unwrap();
        tasks.extend((0..2).map(|_| admit(&pool, job())));
        assert_full(&pool, "four slots taken");
        tasks.extend((0..3).map(|_| pool.spawn(job())));
        assert_eq!(held(&pool), 7);

        let p = pool.clone();
        let shutdown = thread::spawn(move || p.shutdown_now());
        spin_until(|| is_terminating(&pool));
        open_all(gates);
        shutdown.join().unwrap();
        assert_eq!(runs.get(), 0);
        assert_eq!(closures.drops(), 6);
        for task in tasks {
            assert!(task.is_finished());
            assert!(task.wait().unwrap_err().is_cancelled());
        }
        assert_eq!(
            held(&pool),
            1,
            "the unused permit's; {}",
            slots_debug(&pool)
        );
        drop(unused);
        assert_eq!(held(&pool), 0, "{}", slots_debug(&pool));
    });
}

#[test]
fn a_permit_across_shutdown_frees_its_slot() {
    timed(|| {
        let pool = bounded(1, 2, "permit-shutdown");
        let used = pool.reserve().wait().expect("the pool runs");
        let unused = pool.reserve().wait().expect("the pool runs");
        assert_eq!(held(&pool), 2);
        pool.shutdown();
        // Spawning with a permit after shutdown: an already cancelled Task,
        // the closure dropped unrun, the slot freed.
        let closures = DropCounter::new();
        let captured = closures.track();
        let runs = Counter::new();
        let r = runs.clone();
        let task = used.spawn(move || {
            r.incr();
            drop(captured);
        });
        assert!(task.is_finished());
        assert!(task.wait().unwrap_err().is_cancelled());
        assert_eq!((runs.get(), closures.drops()), (0, 1));
        assert_eq!(held(&pool), 1);
        thread::spawn(move || drop(unused)).join().unwrap();
        assert_eq!(held(&pool), 0, "{}", slots_debug(&pool));
    });
}

#[test]
fn an_unused_permit_dropped_on_another_thread_frees_its_slot() {
    assert_send_static::<Permit>();
    timed(|| {
        let pool = bounded(1, 2, "permit-drop");
        let gate = Gate::hold(&pool);
        let first = pool.reserve().wait().expect("the pool runs");
        let second = pool.reserve().wait().expect("the pool runs");
        assert!(format!("{first:?}").contains("bounded: true"), "{first:?}");
        assert_full(&pool, "two unused permits");
        let mut reserve = pool.reserve();
        assert!(poll_once(&mut reserve).is_pending(), "no slot for a third");
        drop(reserve);
        thread::spawn(move || drop(second)).join().unwrap();
        let queued = admit(&pool, || 7);
        assert_full(&pool, "a dropped permit's slot taken again");
        thread::spawn(move || drop(first)).join().unwrap();
        gate.release();
        assert_eq!(queued.wait().unwrap(), 7);
        assert_all_slots_free(&pool, "unused permits dropped on other threads");
    });
}

#[test]
fn a_used_permit_holds_its_slot_until_the_job_starts() {
    timed(|| {
        let pool = bounded(1, 2, "permit-use");
        let gate = Gate::hold(&pool);
        let first = pool.reserve().wait().expect("the pool runs").spawn(|| 1);
        let second = futures::executor::block_on(pool.reserve())
            .expect("the pool runs")
            .spawn(|| 2);
        assert_full(&pool, "two permit jobs queued");
        gate.release();
        assert_eq!(first.wait().unwrap() + second.wait().unwrap(), 3);
        assert_all_slots_free(&pool, "used permits");
    });
}

#[test]
fn a_reserve_dropped_while_waiting_leaves_the_line() {
    timed(|| {
        let pool = bounded(1, 1, "reserve-drop");
        let gate = Gate::hold(&pool);
        let queued = admit(&pool, || 1);
        let (wakes, waker) = CountingWaker::new();
        let mut reserve = pool.reserve();
        assert!(poll_with(&mut reserve, &waker).is_pending());
        assert!(someone_waits(&pool));
        drop(reserve);
        assert!(!someone_waits(&pool), "{}", slots_debug(&pool));

        // Blocking forms that give up leave the line too.
        assert!(pool.reserve().wait_timeout(Duration::ZERO).is_none());
        assert!(pool
            .reserve()
            .wait_timeout(Duration::from_millis(5))
            .is_none());

        // The freed slot goes back to the count, not to a waiter long gone.
        queued.cancel();
        assert_eq!(wakes.wakes(), 0);
        let again = admit(&pool, || 2);
        assert_full(&pool, "the slot taken again");
        gate.release();
        assert_eq!(again.wait().unwrap(), 2);
        assert_all_slots_free(&pool, "reserves dropped while waiting");
    });
}

#[test]
fn a_reserve_granted_but_dropped_before_its_poll_hands_the_slot_back() {
    timed(|| {
        let pool = bounded(1, 1, "reserve-granted");
        let gate = Gate::hold(&pool);
        let queued = admit(&pool, || 1);
        let (wakes, waker) = CountingWaker::new();
        let mut reserve = pool.reserve();
        assert!(poll_with(&mut reserve, &waker).is_pending());
        // The slot freed goes to the waiter: it is woken, and try_spawn
        // cannot take that slot meanwhile.
        queued.cancel();
        assert_eq!(wakes.wakes(), 1);
        assert_full(&pool, "a slot granted to a waiter");
        drop(reserve);
        let again = admit(&pool, || 2);
        assert_full(&pool, "the slot taken again");
        again.cancel();

        // Granted to the first of two, who leaves: it goes to the second.
        let queued = admit(&pool, || 3);
        let (first_wakes, first_waker) = CountingWaker::new();
        let (second_wakes, second_waker) = CountingWaker::new();
        let mut first = pool.reserve();
        let mut second = pool.reserve();
        assert!(poll_with(&mut first, &first_waker).is_pending());
        assert!(poll_with(&mut second, &second_waker).is_pending());
        queued.cancel();
        assert_eq!((first_wakes.wakes(), second_wakes.wakes()), (1, 0));
        drop(first);
        assert_eq!(second_wakes.wakes(), 1);
        assert_full(&pool, "the slot handed on to the second waiter");
        let permit = match poll_with(&mut second, &second_waker) {
            Poll::Ready(result) => result.expect("the pool runs"),
            Poll::Pending => panic!("the second waiter was handed the slot"),
        };
        drop(permit);
        gate.release();
        assert_all_slots_free(&pool, "granted reserves dropped");
    });
}

// ---- waiters: order and shutdown ---------------------------------------

#[test]
fn waiters_are_served_first_come_first_served() {
    timed(|| {
        let max = 3;
        let pool = bounded(1, max, "fifo");
        let gate = Gate::hold(&pool);
        let mut queued: Vec<_> = (0..max).map(|i| admit(&pool, move || i)).collect();
        let wakers: Vec<_> = (0..3).map(|_| CountingWaker::new()).collect();
        let mut waiting: Vec<Option<Reserve>> = wakers
            .iter()
            .map(|(_, waker)| {
                let mut reserve = pool.reserve();
                assert!(poll_with(&mut reserve, waker).is_pending());
                Some(reserve)
            })
            .collect();
        assert_full(&pool, "waiters in line");
        let mut spawned = Vec::new();
        for turn in 0..3 {
            // Free one slot: the oldest waiter, and it only, is woken.
            let task = queued.remove(0);
            task.cancel();
            let wakes: Vec<usize> = wakers.iter().map(|(count, _)| count.wakes()).collect();
            let expected: Vec<usize> = (0..3).map(|i| usize::from(i <= turn)).collect();
            assert_eq!(
                wakes, expected,
                "turn {turn}: wake-ups of the three waiters"
            );
            // The slot is the waiter's, not try_spawn's.
            assert_full(&pool, "a slot granted to the oldest waiter");
            // Younger waiters polled first still wait; the oldest gets it.
            for later in (turn + 1..3).rev() {
                let reserve = waiting[later].as_mut().unwrap();
                assert!(poll_with(reserve, &wakers[later].1).is_pending());
            }
            let mut reserve = waiting[turn].take().unwrap();
            let permit = match poll_with(&mut reserve, &wakers[turn].1) {
                Poll::Ready(result) => result.expect("the pool runs"),
                Poll::Pending => panic!("turn {turn}: the oldest waiter was not served"),
            };
            spawned.push(permit.spawn(move || 10 + turn));
            assert_full(&pool, "the granted slot used by the permit");
        }
        assert!(!someone_waits(&pool));
        gate.release();
        for (turn, task) in spawned.into_iter().enumerate() {
            assert_eq!(task.wait().unwrap(), 10 + turn);
        }
        assert_all_slots_free(&pool, "three waiters served in turn");
    });
}

#[test]
fn waiters_are_served_in_order_on_an_executor() {
    timed(|| {
        // Producers awaiting reserve on a tokio current-thread loop are
        // served in the order they joined the line.
        let pool = bounded(1, 1, "fifo-tokio");
        let gate = Gate::hold(&pool);
        let queued = admit(&pool, || ());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let order = rt.block_on(async {
            let (served_tx, mut served) = tokio::sync::mpsc::unbounded_channel();
            let (lined_tx, mut lined) = tokio::sync::mpsc::unbounded_channel();
            let mut handles = Vec::new();
            for who in 0..4 {
                let (pool, served_tx, lined_tx) =
                    (pool.clone(), served_tx.clone(), lined_tx.clone());
                handles.push(tokio::spawn(async move {
                    let mut reserve = pool.reserve();
                    let first = futures::poll!(&mut reserve);
                    lined_tx.send(first.is_pending()).unwrap();
                    let permit = reserve.await.expect("the pool runs");
                    served_tx.send(who).unwrap();
                    // The next waiter gets the slot once this job starts.
                    permit.spawn(move || who).await.unwrap()
                }));
                // It joined the line before the next one is spawned.
                assert_eq!(lined.recv().await, Some(true), "waiter {who} polled");
            }
            assert!(someone_waits(&pool));
            // The slots free one at a time: the queued job is cancelled, then
            // each permit's job starts on the worker, the gate open.
            drop(queued);
            drop(gate);
            let mut order = Vec::new();
            for _ in 0..4 {
                order.push(served.recv().await.unwrap());
            }
            for (who, handle) in handles.into_iter().enumerate() {
                assert_eq!(handle.await.unwrap(), who);
            }
            order
        });
        assert_eq!(order, [0, 1, 2, 3]);
        assert_all_slots_free(&pool, "waiters on an executor");
    });
}

#[test]
fn waiters_resolve_with_shutdown_error_on_shutdown() {
    timed(|| waiters_resolve_on(false));
}

#[test]
fn waiters_resolve_with_shutdown_error_on_shutdown_now() {
    timed(|| waiters_resolve_on(true));
}

fn waiters_resolve_on(now: bool) {
    let pool = bounded(1, 1, if now { "waiters-now" } else { "waiters" });
    let gate = Gate::hold(&pool);
    let queued = admit(&pool, || 1);
    let (results_tx, results) = mpsc::channel::<(&str, Result<Permit, ShutdownError>)>();

    // A synchronous producer in `Reserve::wait`.
    let (p, tx) = (pool.clone(), results_tx.clone());
    thread::spawn(move || tx.send(("Reserve::wait", p.reserve().wait())).unwrap());
    spin_until(|| someone_waits(&pool));

    // Async producers on tokio and smol, each seen pending before the
    // shutdown.
    let (pending_tx, pending) = mpsc::channel();
    let (p, tx, pending_tx2) = (pool.clone(), results_tx.clone(), pending_tx.clone());
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let result = rt.block_on(async {
            let mut reserve = p.reserve();
            pending_tx2
                .send(futures::poll!(&mut reserve).is_pending())
                .unwrap();
            reserve.await
        });
        tx.send(("tokio", result)).unwrap();
    });
    let (p, tx) = (pool.clone(), results_tx);
    thread::spawn(move || {
        let result = smol::block_on(async {
            let mut reserve = p.reserve();
            pending_tx
                .send(futures::poll!(&mut reserve).is_pending())
                .unwrap();
            reserve.await
        });
        tx.send(("smol", result)).unwrap();
    });
    for _ in 0..2 {
        assert!(pending.recv_timeout(WAIT).expect("a producer polled"));
    }

    // The shutdown waits for the gate, but the waiters resolve at once.
    let p = pool.clone();
    let shutdown = thread::spawn(move || {
        if now {
            p.shutdown_now();
        } else {
            p.shutdown();
        }
    });
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (who, result) = results.recv_timeout(WAIT).expect("a waiter resolved");
        let err = result.expect_err(who);
        assert_eq!(err.to_string(), "offload: the pool has been shut down");
        seen.push(who);
    }
    seen.sort_unstable();
    assert_eq!(seen, ["Reserve::wait", "smol", "tokio"]);
    assert!(!shutdown.is_finished(), "the gate still holds the worker");

    // Later reservations resolve so at once, and try_spawn says why.
    let err = futures::executor::block_on(pool.reserve()).unwrap_err();
    assert_eq!(err.to_string(), "offload: the pool has been shut down");
    assert!(pool.reserve().wait().is_err());
    assert!(matches!(
        pool.reserve().wait_timeout(Duration::ZERO),
        Some(Err(_))
    ));
    assert!(pool.try_spawn(|| ()).unwrap_err().is_shutdown());

    gate.release();
    shutdown.join().unwrap();
    match queued.wait() {
        Ok(value) => assert!(!now && value == 1),
        Err(err) => assert!(now && err.is_cancelled()),
    }
    assert_eq!(held(&pool), 0, "{}", slots_debug(&pool));
}

#[test]
fn reserve_wait_on_a_worker_runs_queued_jobs() {
    timed(|| {
        // A job of a 1-thread pool reserving a slot of its own pool, whose
        // queue is over the bound: only this worker can start the queued
        // jobs, and it does so while it waits.
        let pool = bounded(1, 1, "reserve-worker");
        let p = pool.clone();
        let sum = pool.spawn(move || {
            let kids: Vec<_> = (0..3u64).map(|i| p.spawn(move || i)).collect();
            let permit = p.reserve().wait().expect("the pool runs");
            let last = permit.spawn(|| 10).wait().unwrap();
            kids.into_iter().map(|t| t.wait().unwrap()).sum::<u64>() + last
        });
        assert_eq!(sum.wait().unwrap(), 13);
        assert_all_slots_free(&pool, "a reserve waited on a worker");
    });
}

#[test]
fn reserve_waits_nested_on_a_worker_do_not_deadlock() {
    timed(|| {
        // `Reserve::wait`'s docs: on a worker "jobs starting is what frees
        // slots, so this cannot deadlock a pool on its own queue". The
        // outer job waits for a slot (the queue holds `q`); while it waits,
        // the worker starts `q`, whose start frees the slot and grants it
        // to the outer waiter; but `q` itself then waits for a slot on the
        // same worker, above the outer frame: the one slot is granted to a
        // waiter that cannot collect it until `q` returns.
        let pool = bounded(1, 1, "nested-reserve");
        let p = pool.clone();
        let mut task = pool.spawn(move || {
            let inner = p.clone();
            let q = p.spawn(move || {
                let permit = inner.reserve().wait().expect("the pool runs");
                permit.spawn(|| 2).wait().unwrap()
            });
            let permit = p.reserve().wait().expect("the pool runs");
            permit.spawn(|| 1).wait().unwrap() + q.wait().unwrap()
        });
        let result = task.wait_timeout(WAIT).unwrap_or_else(|| {
            panic!(
                "nested Reserve::wait on a worker deadlocked: {}",
                slots_debug(&pool)
            )
        });
        assert_eq!(result.unwrap(), 3);
    });
}

#[test]
fn reserve_pushes_back_an_async_producer() {
    timed(|| {
        let (threads, max) = (2, 4);
        let pool = bounded(threads, max, "producer");
        let started = Arc::new(AtomicUsize::new(0));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (sum, worst) = rt.block_on(async {
            let mut tasks = Vec::new();
            let mut worst = 0;
            for i in 0..300u64 {
                let permit = pool.reserve().await.expect("the pool runs");
                // Submitted and not started: at most the slots other than
                // ours, plus the jobs between their start and their first
                // instruction (one per worker).
                let backlog = tasks.len() - started.load(SC);
                worst = worst.max(backlog);
                let started = Arc::clone(&started);
                tasks.push(permit.spawn(move || {
                    started.fetch_add(1, SC);
                    common::spin_work(2_000) ^ common::spin_work(2_000) ^ i
                }));
            }
            let mut sum = 0;
            for task in tasks {
                sum ^= task.await.unwrap();
            }
            (sum, worst)
        });
        assert_eq!(sum, (0..300).fold(0, |acc, i| acc ^ i));
        assert!(
            worst < max + threads,
            "a producer ran {worst} jobs ahead of a pool bounded at {max}"
        );
        assert_all_slots_free(&pool, "an async producer");
    });
}

// ---- wait_timeout ------------------------------------------------------

/// A job that waits on a gate (`release` opens it) and returns 42.
fn gated_job(pool: &Pool) -> (Task<u32>, mpsc::Sender<()>) {
    let (release, gate) = mpsc::channel::<()>();
    let task = pool.spawn(move || {
        let _ = gate.recv();
        42
    });
    (task, release)
}

#[test]
fn wait_timeout_zero_only_looks_and_the_task_stays_usable() {
    timed(|| {
        let pool = pool(1, "wt-zero");
        let (mut task, release) = gated_job(&pool);
        assert!(task.wait_timeout(Duration::ZERO).is_none());
        assert!(task.wait_timeout(Duration::ZERO).is_none());
        assert!(task.wait_timeout(Duration::from_millis(1)).is_none());
        assert!(!task.is_finished());
        release.send(()).unwrap();
        // Then awaited on an executor.
        assert_eq!(futures::executor::block_on(task).unwrap(), 42);

        // Then waited on.
        let (mut task, release) = gated_job(&pool);
        assert!(task.wait_timeout(Duration::ZERO).is_none());
        release.send(()).unwrap();
        assert_eq!(task.wait().unwrap(), 42);

        // Then waited on with a timeout again, and on tokio.
        let (mut task, release) = gated_job(&pool);
        assert!(task.wait_timeout(Duration::ZERO).is_none());
        release.send(()).unwrap();
        assert_eq!(task.wait_timeout(WAIT).expect("finished").unwrap(), 42);
        let (mut task, release) = gated_job(&pool);
        assert!(task.wait_timeout(Duration::ZERO).is_none());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        release.send(()).unwrap();
        assert_eq!(rt.block_on(task).unwrap(), 42);

        // A finished job: a zero timeout is enough.
        let mut done = pool.spawn(|| 7);
        pool.spawn(|| ()).wait().unwrap(); // FIFO from outside
        assert_eq!(done.wait_timeout(Duration::ZERO).unwrap().unwrap(), 7);

        // A cancelled one resolves, too.
        let gate = Gate::hold(&pool);
        let mut cancelled = pool.spawn(|| 8);
        cancelled.cancel();
        let result = cancelled.wait_timeout(Duration::ZERO).expect("resolved");
        assert!(result.unwrap_err().is_cancelled());
        gate.release();
    });
}

#[test]
fn wait_timeout_with_huge_durations_waits_for_the_result() {
    timed(|| {
        let pool = pool(1, "wt-huge");
        // Too large for an Instant: waits as `wait` does.
        let hundred_years = Duration::from_secs(100 * 365 * 24 * 3600);
        for timeout in [Duration::MAX, Duration::from_secs(u64::MAX), hundred_years] {
            let (mut task, release) = gated_job(&pool);
            assert!(task.wait_timeout(Duration::ZERO).is_none());
            let opener = thread::spawn(move || release.send(()).unwrap());
            let result = task.wait_timeout(timeout);
            let result = result.unwrap_or_else(|| panic!("{timeout:?}: not resolved"));
            assert_eq!(result.unwrap(), 42);
            opener.join().unwrap();

            // And on a finished Task.
            let mut done = pool.spawn(|| 5);
            pool.spawn(|| ()).wait().unwrap();
            assert_eq!(done.wait_timeout(timeout).unwrap().unwrap(), 5);
        }
    });
}

#[test]
fn wait_timeout_on_a_worker_runs_the_awaited_job() {
    timed(|| {
        // On a 1-thread pool, only the waiting worker can run the job it
        // waits for: it does so while it waits, with any timeout but zero.
        let pool = pool(1, "wt-worker");
        let other = pool.clone();
        let results = pool.spawn(move || {
            let mut inner = other.spawn(|| 5);
            let looked = inner.wait_timeout(Duration::ZERO).is_none();
            let waited = inner.wait_timeout(WAIT).map(Result::unwrap);
            let mut forever = other.spawn(|| 6);
            let waited_max = forever.wait_timeout(Duration::MAX).map(Result::unwrap);
            (looked, waited, waited_max)
        });
        assert_eq!(results.wait().unwrap(), (true, Some(5), Some(6)));

        // A timed wait on a worker that does time out: the Task of another,
        // gated pool; the worker returns, and the Task is still usable.
        let gated = common::pool(1, "wt-gated");
        let (task, release) = gated_job(&gated);
        let (task, timed_out) = pool
            .spawn(move || {
                let mut task = task;
                let timed_out = task.wait_timeout(Duration::from_millis(5)).is_none();
                (task, timed_out)
            })
            .wait()
            .unwrap();
        assert!(timed_out);
        release.send(()).unwrap();
        assert_eq!(task.wait().unwrap(), 42);
    });
}

#[test]
fn polling_a_task_after_wait_timeout_returned_some_panics() {
    quiet_expected_panics();
    timed(|| {
        let pool = pool(1, "wt-spent");
        let mut task = pool.spawn(|| 1);
        assert_eq!(task.wait_timeout(WAIT).unwrap().unwrap(), 1);
        let again =
            panic::catch_unwind(AssertUnwindSafe(|| futures::executor::block_on(&mut task)));
        assert!(again.is_err(), "a spent Task polled again did not panic");
        drop(task);

        let mut task = pool.spawn(|| 2);
        assert_eq!(task.wait_timeout(WAIT).unwrap().unwrap(), 2);
        let again = panic::catch_unwind(AssertUnwindSafe(move || task.wait()));
        assert!(again.is_err(), "a spent Task waited on again did not panic");
        // The pool is unharmed.
        assert_eq!(pool.spawn(|| 3).wait().unwrap(), 3);
    });
}

// ---- is_cancelled ------------------------------------------------------

#[test]
fn is_cancelled_is_false_off_a_worker_and_for_jobs_nobody_cancelled() {
    timed(|| {
        assert!(!offload::is_cancelled());
        let pool = pool(2, "not-cancelled");
        assert!(!pool.spawn(offload::is_cancelled).wait().unwrap());
        let (a, b) = pool.join(offload::is_cancelled, offload::is_cancelled);
        assert!(!a && !b);
        assert!(!pool.install(offload::is_cancelled));
        assert!(!offload::is_cancelled());

        // A detached job: detaching is not cancelling, even while it runs.
        let (release, gate) = mpsc::channel::<()>();
        let (report_tx, report) = mpsc::channel();
        let (started_tx, started) = mpsc::channel();
        pool.spawn(move || {
            started_tx.send(()).unwrap();
            let _ = gate.recv();
            report_tx.send(offload::is_cancelled()).unwrap();
        })
        .detach();
        started.recv_timeout(WAIT).expect("the job started");
        release.send(()).unwrap();
        assert!(!report.recv_timeout(WAIT).expect("the job reported"));

        // A detached job queued behind others, and one whose Task is kept.
        let gate = Gate::hold(&pool);
        let (report_tx, report) = mpsc::channel();
        pool.spawn(move || report_tx.send(offload::is_cancelled()).unwrap())
            .detach();
        let kept = pool.spawn(offload::is_cancelled);
        gate.release();
        assert!(!report.recv_timeout(WAIT).expect("the job reported"));
        assert!(!kept.wait().unwrap());
    });
}

#[test]
fn dropping_a_running_task_tells_the_job() {
    timed(|| {
        let pool = pool(1, "drop-running");
        let (report_tx, report) = mpsc::channel();
        let (started_tx, started) = mpsc::channel();
        let task = pool.spawn(move || {
            started_tx.send(()).unwrap();
            report_tx.send(wait_for_cancel()).unwrap();
        });
        started.recv_timeout(WAIT).expect("the job started");
        drop(task);
        assert!(
            report.recv_timeout(WAIT).expect("the job reported"),
            "the job never saw its Task dropped"
        );
        // The next job of the worker starts afresh.
        assert!(!pool.spawn(offload::is_cancelled).wait().unwrap());
    });
}

/// What a cancelled job saw in the parts it started afterwards.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    job: bool,
    /// Leaves of a join tree that saw it, of [`LEAVES`].
    join: usize,
    scope: Vec<bool>,
    install: bool,
    new_task: bool,
}

/// Leaves of the join tree in [`cancel_reaches_parts`].
const LEAVES: usize = 1 << 8;

/// A join tree of `LEAVES` leaves, each with some work (so that the idle
/// worker asks for a share and steals halves): how many leaves saw
/// `is_cancelled`, and how many ran on another thread than the root.
fn join_tree(depth: u32, root: thread::ThreadId) -> (usize, usize) {
    if depth == 0 {
        std::hint::black_box(common::spin_work(2_000));
        let elsewhere = usize::from(thread::current().id() != root);
        return (usize::from(offload::is_cancelled()), elsewhere);
    }
    let ((a, x), (b, y)) =
        offload::join(|| join_tree(depth - 1, root), || join_tree(depth - 1, root));
    (a + b, x + y)
}

#[test]
fn cancel_reaches_join_scope_and_install_started_by_the_job() {
    timed(|| cancel_reaches_parts(false));
}

#[test]
fn dropping_the_task_reaches_join_scope_and_install_started_by_the_job() {
    timed(|| cancel_reaches_parts(true));
}

fn cancel_reaches_parts(by_drop: bool) {
    let pool = pool(2, if by_drop { "parts-drop" } else { "parts" });
    let other = common::pool(1, "parts-other");
    let (started_tx, started) = mpsc::channel();
    let (report_tx, report) = mpsc::channel();
    let p = pool.clone();
    let mut task = pool.spawn(move || {
        started_tx.send(()).unwrap();
        let job = wait_for_cancel();
        let (join, stolen) = join_tree(LEAVES.trailing_zeros(), thread::current().id());
        let mut scope = vec![false; 8];
        offload::scope(|s| {
            for seen in scope.iter_mut() {
                s.spawn(move |_| {
                    std::hint::black_box(common::spin_work(2_000));
                    *seen = offload::is_cancelled();
                });
            }
        });
        let install = other.install(offload::is_cancelled);
        // A new Task spawned inside has a cancellation of its own.
        let new_task = p.spawn(offload::is_cancelled).wait().unwrap();
        let seen = Seen {
            job,
            join,
            scope,
            install,
            new_task,
        };
        report_tx.send((seen, stolen)).unwrap();
    });
    started.recv_timeout(WAIT).expect("the job started");
    if by_drop {
        drop(task);
    } else {
        task.cancel();
        task.wait_timeout(WAIT * 2)
            .expect("the job finished")
            .expect("the job returned");
    }
    let (seen, stolen) = report.recv_timeout(WAIT * 2).expect("the job reported");
    assert_eq!(
        seen,
        Seen {
            job: true,
            join: LEAVES,
            scope: vec![true; 8],
            install: true,
            new_task: false,
        },
        "({stolen} join leaves ran on the other worker)"
    );
}

#[test]
fn shutdown_now_tells_running_jobs() {
    timed(|| {
        let pool = pool(2, "now-running");
        let (first, first_started) = cancellable(&pool);
        let (report_tx, report) = mpsc::channel();
        let (started_tx, second_started) = mpsc::channel();
        // A detached job is told too: it is the pool that stops.
        pool.spawn(move || {
            started_tx.send(()).unwrap();
            report_tx.send(wait_for_cancel()).unwrap();
        })
        .detach();
        first_started.recv_timeout(WAIT).expect("a job started");
        second_started.recv_timeout(WAIT).expect("a job started");
        let queued = pool.spawn(|| ());
        // Returns once both running jobs noticed and returned.
        pool.shutdown_now();
        assert!(
            first.wait().unwrap(),
            "a running job never saw shutdown_now"
        );
        assert!(report
            .recv_timeout(WAIT)
            .expect("the detached job reported"));
        assert!(queued.wait().unwrap_err().is_cancelled());
        assert!(!offload::is_cancelled());
    });
}

#[test]
fn shutdown_now_reaches_parts_of_a_running_job() {
    timed(|| {
        let pool = pool(2, "now-parts");
        let (started_tx, started) = mpsc::channel();
        let task = pool.spawn(move || {
            started_tx.send(()).unwrap();
            let job = wait_for_cancel();
            let join = offload::join(offload::is_cancelled, offload::is_cancelled);
            let mut scope = [false; 3];
            offload::scope(|s| {
                for seen in scope.iter_mut() {
                    s.spawn(move |_| *seen = offload::is_cancelled());
                }
            });
            (job, join, scope)
        });
        started.recv_timeout(WAIT).expect("the job started");
        pool.shutdown_now();
        assert_eq!(task.wait().unwrap(), (true, (true, true), [true; 3]));
    });
}

// ---- TrySpawnError, max_queued, an unbounded pool ----------------------

/// Not `Debug`, not `Clone`: a closure's captured state, to get back intact.
struct Payload {
    text: String,
    _tracked: common::Tracked,
}

#[test]
fn try_spawn_after_shutdown_returns_the_closure_unrun() {
    timed(|| {
        for pool in [bounded(1, 2, "refused-b"), pool(1, "refused-u")] {
            pool.shutdown();
            let runs = Counter::new();
            let drops = DropCounter::new();
            let payload = Payload {
                text: "intact".to_owned(),
                _tracked: drops.track(),
            };
            let r = runs.clone();
            let err = pool
                .try_spawn(move || {
                    r.incr();
                    payload
                })
                .unwrap_err();
            assert!(err.is_shutdown() && !err.is_full());
            assert_eq!(err.to_string(), "offload: the pool has been shut down");
            assert!(format!("{err:?}").contains("shutdown"), "{err:?}");
            assert_eq!((runs.get(), drops.drops()), (0, 0), "unrun, undropped");
            let job = err.into_inner();
            let payload = job();
            assert_eq!(payload.text, "intact");
            assert_eq!(runs.get(), 1);
            drop(payload);
            assert_eq!(drops.drops(), 1);
        }
    });
}

/// `?` turns it into a boxed error: it is a `std::error::Error + 'static`.
fn refuse(pool: &Pool) -> Result<Task<u8>, Box<dyn std::error::Error>> {
    Ok(pool.try_spawn(|| 1u8)?)
}

#[test]
fn try_spawn_error_when_full_formats_and_is_an_error() {
    timed(|| {
        let pool = bounded(1, 1, "full");
        let gate = Gate::hold(&pool);
        let queued = admit(&pool, || 0u8);
        let text = String::from("kept");
        let err: TrySpawnError<_> = pool.try_spawn(move || text).unwrap_err();
        assert!(err.is_full() && !err.is_shutdown());
        assert_eq!(err.to_string(), "offload: the pool's queue is full");
        // Debug does not need the closure to be Debug.
        assert!(format!("{err:?}").contains("full"), "{err:?}");
        let source: &dyn std::error::Error = &err;
        assert!(source.source().is_none());
        assert_eq!(err.into_inner()(), "kept");
        let boxed = refuse(&pool).unwrap_err();
        assert_eq!(boxed.to_string(), "offload: the pool's queue is full");
        gate.release();
        assert_eq!(queued.wait().unwrap(), 0);

        let shut = bounded(1, 1, "shut");
        shut.shutdown();
        let err: ShutdownError = shut.reserve().wait().unwrap_err();
        assert_eq!(err, err.clone());
        let shutdown: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
        assert_eq!(shutdown.to_string(), "offload: the pool has been shut down");
    });
}

#[test]
fn max_queued_zero_is_invalid_input() {
    let err = Pool::builder()
        .threads(1)
        .max_queued(0)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let pool = bounded(1, 1, "max-one");
    assert_eq!(pool.max_queued(), Some(1));
    assert_eq!(common::pool(1, "unbounded").max_queued(), None);
}

#[test]
fn an_unbounded_pool_never_reports_full() {
    timed(|| {
        let pool = pool(1, "unbounded");
        assert_eq!(pool.max_queued(), None);
        let gate = Gate::hold(&pool);
        let tasks: Vec<_> = (0..1000u32).map(|i| admit(&pool, move || i)).collect();
        // A reservation resolves at once, whatever is queued.
        let mut reserve = pool.reserve();
        let permit = match poll_once(&mut reserve) {
            Poll::Ready(result) => result.expect("the pool runs"),
            Poll::Pending => panic!("an unbounded pool made a reservation wait"),
        };
        assert!(
            format!("{permit:?}").contains("bounded: false"),
            "{permit:?}"
        );
        let blocking = pool
            .reserve()
            .wait_timeout(Duration::ZERO)
            .expect("resolved at once")
            .expect("the pool runs");
        let by_permits = [permit.spawn(|| 1000u32), blocking.spawn(|| 1001)];
        gate.release();
        for (i, task) in tasks.into_iter().chain(by_permits).enumerate() {
            assert_eq!(task.wait().unwrap(), i as u32);
        }
        pool.shutdown();
        assert!(pool.reserve().wait().is_err());
    });
}

// ---- the Executor.map(buffersize=) idiom -------------------------------

const ITEMS: u64 = 64;

/// Maps `ITEMS` inputs through the pool with `buffered(limit)` (or
/// `buffer_unordered`): returns the outputs in the order the stream gave
/// them and the most jobs that were ever running at once.
async fn map_through(pool: &Pool, limit: usize, unordered: bool) -> (Vec<u64>, usize) {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let tasks = futures::stream::iter(0..ITEMS).map(|i| {
        let (running, most) = (Arc::clone(&running), Arc::clone(&most));
        pool.spawn(move || {
            let now = running.fetch_add(1, SC) + 1;
            most.fetch_max(now, SC);
            // Later items are shorter, so that unordered output differs.
            std::hint::black_box(common::spin_work(200 * (ITEMS - i)));
            running.fetch_sub(1, SC);
            i * i
        })
    });
    let results = if unordered {
        tasks.buffer_unordered(limit).collect::<Vec<_>>().await
    } else {
        tasks.buffered(limit).collect::<Vec<_>>().await
    };
    let outputs = results.into_iter().map(Result::unwrap).collect();
    (outputs, most.load(SC))
}

fn check_map(executor: &str, limit: usize, unordered: bool, (outputs, most): (Vec<u64>, usize)) {
    let expected: Vec<u64> = (0..ITEMS).map(|i| i * i).collect();
    if unordered {
        let mut sorted = outputs;
        sorted.sort_unstable();
        assert_eq!(
            sorted, expected,
            "{executor}: buffer_unordered lost or added"
        );
    } else {
        assert_eq!(outputs, expected, "{executor}: buffered out of order");
    }
    assert!(
        (1..=limit).contains(&most),
        "{executor}: {most} jobs in flight with a buffer of {limit}"
    );
}

fn map_on_executors(unordered: bool) {
    // More workers than the buffer: the bound comes from the stream.
    let pool = pool(4, if unordered { "unordered" } else { "buffered" });
    for limit in [1, 3] {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let result = rt.block_on(map_through(&pool, limit, unordered));
        check_map("tokio current-thread", limit, unordered, result);
        let result = smol::block_on(map_through(&pool, limit, unordered));
        check_map("smol", limit, unordered, result);
        let result = futures::executor::block_on(map_through(&pool, limit, unordered));
        check_map("futures::executor", limit, unordered, result);
    }
}

#[test]
fn buffered_over_tasks_keeps_order_and_bounds_jobs_in_flight() {
    timed(|| map_on_executors(false));
}

#[test]
fn buffer_unordered_over_tasks_bounds_jobs_in_flight() {
    timed(|| map_on_executors(true));
}

// ---- try_reserve -------------------------------------------------------

#[test]
fn try_reserve_error_is_an_error_for_any_thread() {
    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<TryReserveError>();
    timed(|| {
        let pool = bounded(1, 1, "try-reserve-err");
        pool.shutdown();
        let err = pool.try_reserve().unwrap_err();
        assert!(err.is_shutdown() && !err.is_full());
        assert_eq!(err.to_string(), "offload: the pool has been shut down");
        assert!(format!("{err:?}").contains("TryReserveError"));
        // It converts with `?` into the usual boxed error.
        let boxed: Box<dyn std::error::Error + Send + Sync> = err.into();
        assert!(boxed.to_string().contains("shut down"));
    });
}

#[test]
fn try_reserve_takes_free_slots_and_refuses_when_full() {
    timed(|| {
        let pool = bounded(1, 3, "try-reserve");
        let gates = gate_all(&pool);
        let before = pool.metrics().refused();
        let permits: Vec<Permit> = (0..3)
            .map(|i| match pool.try_reserve() {
                Ok(permit) => permit,
                Err(err) => panic!("try_reserve {i} refused: {err}; {}", slots_debug(&pool)),
            })
            .collect();
        // Unused permits count as taken: a fourth is refused, as a try_spawn.
        let err = pool.try_reserve().unwrap_err();
        assert!(err.is_full() && !err.is_shutdown());
        assert_eq!(err.to_string(), "offload: the pool's queue is full");
        assert_full(&pool, "three unused permits");
        assert_eq!(pool.metrics().refused(), before + 2);
        // Dropping one unused permit gives its slot back.
        let mut permits = permits.into_iter();
        drop(permits.next());
        let again = pool.try_reserve().expect("the dropped permit's slot");
        let tasks: Vec<Task<u32>> = permits
            .chain([again])
            .enumerate()
            .map(|(i, permit)| permit.spawn(move || i as u32))
            .collect();
        open_all(gates);
        let sum: u32 = tasks.into_iter().map(|t| t.wait().unwrap()).sum();
        assert_eq!(sum, 3);
        assert_all_slots_free(&pool, "try_reserve");
    });
}

#[test]
fn try_reserve_does_not_pass_a_waiter_in_line() {
    timed(|| {
        let pool = bounded(1, 1, "try-reserve-line");
        let gates = gate_all(&pool);
        let first = pool.try_reserve().expect("the one slot");
        let mut waiter = pool.reserve();
        assert!(poll_once(&mut waiter).is_pending());
        drop(first); // the slot goes to the waiter, not to a try_reserve
        assert!(pool.try_reserve().unwrap_err().is_full());
        let granted = futures::executor::block_on(waiter).expect("the pool runs");
        drop(granted);
        open_all(gates);
        assert_all_slots_free(&pool, "a waiter served before try_reserve");
    });
}

#[test]
fn try_reserve_on_an_unbounded_pool_refuses_only_after_shutdown() {
    timed(|| {
        let pool = pool(1, "try-reserve-unbounded");
        let permits: Vec<Permit> = (0..100).map(|_| pool.try_reserve().unwrap()).collect();
        let tasks: Vec<Task<usize>> = permits
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.spawn(move || i))
            .collect();
        assert_eq!(
            tasks.into_iter().map(|t| t.wait().unwrap()).sum::<usize>(),
            4950
        );
        let permit = pool.try_reserve().unwrap();
        pool.shutdown();
        assert!(pool.try_reserve().unwrap_err().is_shutdown());
        // A permit taken before shutdown spawns a cancelled Task.
        assert!(permit.spawn(|| ()).wait().unwrap_err().is_cancelled());
    });
}

#[test]
fn try_reserve_then_await_on_tokio_smol_and_futures() {
    timed(|| {
        let pool = bounded(2, 4, "try-reserve-exec");
        let job = |pool: &Pool, n: u64| {
            let permit = pool.try_reserve().expect("room");
            permit.spawn(move || n * 2)
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(job(&pool, 1)).unwrap(), 2);
        assert_eq!(smol::block_on(job(&pool, 2)).unwrap(), 4);
        assert_eq!(futures::executor::block_on(job(&pool, 3)).unwrap(), 6);
        assert_all_slots_free(&pool, "awaited permits");
    });
}
