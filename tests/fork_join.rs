//! `join`, `scope` and `install`: fork-join inside a pool, borrowing from
//! the caller's stack.

mod common;

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

use common::{pool, silence_expected_panics, timed, Counter};

fn name() -> String {
    thread::current().name().unwrap_or("").to_owned()
}

fn message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("<not a string>")
}

#[test]
fn join_from_outside() {
    timed(|| {
        let pool = pool(2, "join-out");
        let data: Vec<u64> = (1..=1000).collect();
        let (left, right) = data.split_at(500);
        let (a, b) = pool.join(|| left.iter().sum::<u64>(), || right.iter().sum::<u64>());
        assert_eq!(a + b, 500_500);
        // Both halves ran on the pool, not on the caller.
        let (na, nb) = pool.join(name, name);
        assert!(na.starts_with("join-out-"), "{na}");
        assert!(nb.starts_with("join-out-"), "{nb}");
    });
}

#[test]
fn join_from_a_worker_and_from_a_spawned_job() {
    timed(|| {
        let pool = pool(2, "join-in");
        let (a, b) = pool.install(|| offload::join(|| 1 + 1, name));
        assert_eq!(a, 2);
        assert!(b.starts_with("join-in-"));
        let p = pool.clone();
        let t = pool.spawn(move || {
            let (x, y) = p.join(|| 20, || 22);
            let (u, v) = offload::join(name, name);
            (x + y, u, v)
        });
        let (sum, u, v) = t.wait().unwrap();
        assert_eq!(sum, 42);
        assert!(u.starts_with("join-in-") && v.starts_with("join-in-"));
    });
}

#[test]
fn join_on_a_one_thread_pool() {
    timed(|| {
        let pool = pool(1, "join-one");
        let (a, (b, c)) = pool.join(|| 1, || offload::join(|| 2, || 3));
        assert_eq!((a, b, c), (1, 2, 3));
    });
}

#[test]
fn join_reraises_a_panic_of_either_side_after_both_ran() {
    silence_expected_panics();
    timed(|| {
        let pool = pool(2, "join-panic");
        for side in ["a", "b", "both"] {
            let other_ran = Counter::new();
            let ran = other_ran.clone();
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                pool.join(
                    || {
                        if side != "b" {
                            panic!("expected panic in a");
                        }
                        ran.incr();
                    },
                    || {
                        if side != "a" {
                            panic!("expected panic in b");
                        }
                        ran.incr();
                    },
                )
            }));
            let payload = result.unwrap_err();
            let expected = if side == "b" {
                "expected panic in b"
            } else {
                // With both panicking, a's panic wins.
                "expected panic in a"
            };
            assert_eq!(message(&*payload), expected);
            let other = if side == "both" { 0 } else { 1 };
            assert_eq!(
                other_ran.get(),
                other,
                "side {side}: the other half must have run"
            );
        }
        // The pool is fine afterwards.
        assert_eq!(pool.join(|| 1, || 2), (1, 2));
    });
}

#[test]
fn join_panic_waits_for_the_other_half() {
    silence_expected_panics();
    timed(|| {
        // b runs until a has panicked; join must not return before b did.
        let pool = pool(2, "join-wait");
        let done = Counter::new();
        let (tx, rx) = mpsc::channel::<()>();
        let d = done.clone();
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.join(
                move || {
                    let _signal_on_unwind = SendOnDrop(tx);
                    panic!("expected panic");
                },
                move || {
                    let _ = rx.recv();
                    d.incr();
                },
            )
        }));
        assert!(result.is_err());
        assert_eq!(done.get(), 1);
    });
}

/// Sends on drop: lets a panicking job signal (while unwinding) that it
/// has panicked.
struct SendOnDrop(mpsc::Sender<()>);

impl Drop for SendOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[test]
fn scope_borrows_and_mutates_disjoint_slices() {
    timed(|| {
        let pool = pool(2, "scope-slices");
        let mut data: Vec<u64> = (0..10_000).collect();
        let factor = 3;
        pool.scope(|s| {
            for chunk in data.chunks_mut(100) {
                s.spawn(move |_| chunk.iter_mut().for_each(|x| *x *= factor));
            }
        });
        assert!(data.iter().enumerate().all(|(i, &x)| x == 3 * i as u64));
        // The free function, from outside (global pool).
        offload::scope(|s| {
            for chunk in data.chunks_mut(1000) {
                s.spawn(|_| chunk.iter_mut().for_each(|x| *x += 1));
            }
        });
        assert!(data.iter().enumerate().all(|(i, &x)| x == 3 * i as u64 + 1));
    });
}

#[test]
fn scope_returns_the_body_value() {
    timed(|| {
        let pool = pool(2, "scope-value");
        let v = pool.scope(|s| {
            s.spawn(|_| ());
            "body"
        });
        assert_eq!(v, "body");
    });
}

#[test]
fn scope_waits_for_nested_spawns() {
    timed(|| {
        let pool = pool(2, "scope-nested");
        let count = AtomicUsize::new(0);
        pool.scope(|s| {
            for _ in 0..10 {
                s.spawn(|s| {
                    count.fetch_add(1, Ordering::Relaxed);
                    for _ in 0..10 {
                        s.spawn(|s| {
                            count.fetch_add(1, Ordering::Relaxed);
                            s.spawn(|_| {
                                count.fetch_add(1, Ordering::Relaxed);
                            });
                        });
                    }
                });
            }
        });
        assert_eq!(count.load(Ordering::Relaxed), 10 + 100 + 100);
    });
}

#[test]
fn scope_on_a_one_thread_pool_and_nested_scopes() {
    timed(|| {
        let pool = pool(1, "scope-one");
        let mut totals = [0u64; 4];
        pool.scope(|s| {
            for (k, total) in totals.iter_mut().enumerate() {
                s.spawn(move |_| {
                    let mut parts = [0u64; 4];
                    offload::scope(|inner| {
                        for (j, part) in parts.iter_mut().enumerate() {
                            inner.spawn(move |_| *part = (k * 10 + j) as u64);
                        }
                    });
                    *total = parts.iter().sum();
                });
            }
        });
        assert_eq!(totals, [6, 46, 86, 126]);
    });
}

#[test]
fn panic_in_a_scope_job_is_reraised_after_all_jobs_finished() {
    silence_expected_panics();
    timed(|| {
        let pool = pool(2, "scope-panic");
        let finished = AtomicUsize::new(0);
        let (tx, rx) = mpsc::channel::<()>();
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                let finished = &finished;
                // This job can only finish after the other one panicked.
                s.spawn(move |_| {
                    let _ = rx.recv();
                    finished.fetch_add(1, Ordering::SeqCst);
                });
                s.spawn(move |_| {
                    let _signal_on_unwind = SendOnDrop(tx);
                    panic!("expected panic in a scope job");
                });
                for _ in 0..20 {
                    s.spawn(move |_| {
                        finished.fetch_add(1, Ordering::SeqCst);
                    });
                }
            })
        }));
        let payload = result.unwrap_err();
        assert_eq!(message(&*payload), "expected panic in a scope job");
        assert_eq!(finished.load(Ordering::SeqCst), 21);
        // The pool still works.
        assert_eq!(pool.spawn(|| 1).wait().unwrap(), 1);
    });
}

#[test]
fn panic_in_the_scope_body_is_reraised_after_its_jobs_finished() {
    silence_expected_panics();
    timed(|| {
        let pool = pool(2, "scope-body");
        let finished = AtomicUsize::new(0);
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                for _ in 0..50 {
                    s.spawn(|_| {
                        common::spin_work(1000);
                        finished.fetch_add(1, Ordering::SeqCst);
                    });
                }
                panic!("expected panic in the body");
            })
        }));
        assert_eq!(message(&*result.unwrap_err()), "expected panic in the body");
        assert_eq!(finished.load(Ordering::SeqCst), 50);
    });
}

#[test]
fn install_on_another_pool_from_a_worker() {
    timed(|| {
        let a = pool(1, "install-a");
        let b = pool(1, "install-b");
        let b2 = b.clone();
        let t = a.spawn(move || {
            let outer = name();
            let (inner, joined) = b2.install(|| {
                let (x, y) = offload::join(name, name);
                (name(), (x, y))
            });
            (outer, inner, joined)
        });
        let (outer, inner, (x, y)) = t.wait().unwrap();
        assert_eq!(outer, "install-a-0");
        assert_eq!(inner, "install-b-0");
        // join inside install uses the installed pool.
        assert_eq!((x.as_str(), y.as_str()), ("install-b-0", "install-b-0"));
    });
}

#[test]
fn install_back_and_forth_between_two_pools() {
    timed(|| {
        // A's worker waits on B, whose worker installs back on A: A's waiting
        // worker must run that job itself.
        let a = pool(1, "ping");
        let b = pool(1, "pong");
        let (a2, b2) = (a.clone(), b.clone());
        let names = a.install(move || {
            let here = name();
            let (there, back) = b2.install(move || (name(), a2.install(name)));
            (here, there, back)
        });
        assert_eq!(
            names,
            (
                "ping-0".to_owned(),
                "pong-0".to_owned(),
                "ping-0".to_owned()
            )
        );
    });
}

#[test]
fn install_on_the_same_pool_runs_in_place() {
    timed(|| {
        let pool = pool(1, "in-place");
        let p = pool.clone();
        let v = pool.install(move || {
            let outer = thread::current().id();
            p.install(move || thread::current().id() == outer)
        });
        assert!(v);
    });
}

#[test]
fn install_reraises_a_panic() {
    silence_expected_panics();
    timed(|| {
        let pool = pool(1, "install-panic");
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.install(|| panic!("expected panic in install"))
        }));
        assert_eq!(message(&*r.unwrap_err()), "expected panic in install");
        assert_eq!(pool.install(|| 5), 5);
    });
}

fn fib(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let (a, b) = offload::join(|| fib(n - 1), || fib(n - 2));
    a + b
}

#[test]
fn fib_with_join_at_every_level() {
    timed(|| {
        let pool = pool(2, "fib");
        assert_eq!(pool.install(|| fib(25)), 75_025);
        let one = common::pool(1, "fib-one");
        assert_eq!(one.install(|| fib(20)), 6_765);
    });
}

fn sum_and_bump(slice: &mut [u64]) -> u64 {
    match slice.len() {
        0 => 0,
        1 => {
            slice[0] += 1;
            slice[0]
        }
        n => {
            let (left, right) = slice.split_at_mut(n / 2);
            let (a, b) = offload::join(|| sum_and_bump(left), || sum_and_bump(right));
            a + b
        }
    }
}

#[test]
fn divide_and_conquer_down_to_single_elements() {
    timed(|| {
        const LEN: u64 = 1 << 20;
        let pool = pool(2, "dnc");
        let mut data: Vec<u64> = (0..LEN).collect();
        let sum = pool.install(|| sum_and_bump(&mut data));
        assert_eq!(sum, LEN * (LEN + 1) / 2);
        assert!(data.iter().enumerate().all(|(i, &x)| x == i as u64 + 1));
    });
}

#[test]
fn scope_spawn_from_a_plain_thread_inside_the_scope() {
    timed(|| {
        let pool = pool(1, "scope-plain");
        let mut slots = [0u32; 4];
        pool.scope(|s| {
            let (a, b) = slots.split_at_mut(2);
            // A plain thread borrowing the scope queues a job on the pool.
            thread::scope(|ts| {
                ts.spawn(|| s.spawn(move |_| a.iter_mut().for_each(|x| *x = 1)));
            });
            s.spawn(move |_| b.iter_mut().for_each(|x| *x = 2));
        });
        assert_eq!(slots, [1, 1, 2, 2]);
    });
}

/// Visits every leaf of a binary recursion of `depth` levels, with a join at
/// every level, and panics at leaf `panic_at` (if any).
fn visit(depth: u32, leaf: u64, panic_at: Option<u64>, visited: &AtomicUsize) {
    if depth == 0 {
        visited.fetch_add(1, Ordering::Relaxed);
        if Some(leaf) == panic_at {
            panic!("expected panic at leaf {leaf}");
        }
        return;
    }
    offload::join(
        || visit(depth - 1, 2 * leaf, panic_at, visited),
        || visit(depth - 1, 2 * leaf + 1, panic_at, visited),
    );
}

#[test]
fn a_panic_deep_in_a_recursion_still_runs_every_branch() {
    silence_expected_panics();
    timed(|| {
        // Most joins deep in a recursion run inline (two plain calls); the
        // guarantee is the same as for shared ones: both halves run to
        // completion, and the panic comes out of the outermost join.
        const DEPTH: u32 = 16;
        for threads in [1, 2] {
            let pool = pool(threads, "deep-panic");
            for panic_at in [0, 12_345, (1 << DEPTH) - 1] {
                let visited = AtomicUsize::new(0);
                let result = panic::catch_unwind(AssertUnwindSafe(|| {
                    pool.install(|| visit(DEPTH, 0, Some(panic_at), &visited));
                }));
                let payload = result.expect_err("the leaf's panic comes out");
                assert_eq!(
                    message(&*payload),
                    format!("expected panic at leaf {panic_at}")
                );
                assert_eq!(visited.load(Ordering::Relaxed), 1 << DEPTH);
            }
            // Without a panic, every leaf once.
            let visited = AtomicUsize::new(0);
            pool.install(|| visit(DEPTH, 0, None, &visited));
            assert_eq!(visited.load(Ordering::Relaxed), 1 << DEPTH);
        }
    });
}

// ---- a join's second half is taken by whichever worker is free ----------
//
// In these tests the two halves of a join meet at a barrier: the join can
// only complete if another worker takes the second half while the first
// one waits, without the first half joining again or polling anything. A
// pool that keeps the half to itself hangs, which the timeout turns into a
// failure. (After rayon-core's `join_context_second` and its barrier
// tests.)

/// Both halves of `pool.install(|| join(..))` meet at a barrier; returns
/// the threads that ran them.
fn halves_meet(pool: &offload::Pool) -> (thread::ThreadId, thread::ThreadId) {
    let barrier = std::sync::Barrier::new(2);
    pool.install(|| {
        offload::join(
            || {
                barrier.wait();
                thread::current().id()
            },
            || {
                barrier.wait();
                thread::current().id()
            },
        )
    })
}

#[test]
fn halves_meet_at_a_barrier_on_a_fresh_pool() {
    timed(|| {
        // Fresh pools: the other worker may not have started, may be
        // spinning or asleep when the join starts; each time it must take
        // the half. Then on the same pool, warm.
        for _ in 0..20 {
            let pool = pool(2, "meet-fresh");
            let (a, b) = halves_meet(&pool);
            assert_ne!(a, b, "the halves ran on two workers");
            let (a, b) = halves_meet(&pool);
            assert_ne!(a, b);
        }
    });
}

#[test]
fn halves_meet_at_a_barrier_from_outside_the_pool() {
    timed(|| {
        for _ in 0..10 {
            let pool = pool(2, "meet-out");
            let barrier = std::sync::Barrier::new(2);
            pool.join(|| barrier.wait(), || barrier.wait());
        }
    });
}

#[test]
fn a_worker_that_frees_up_during_the_first_half_takes_the_second() {
    timed(|| {
        for _ in 0..10 {
            // One worker is busy when the join starts: it frees up only
            // once the first half runs, and must then take the second half
            // (the first waits for it at the barrier).
            let pool = pool(2, "meet-later");
            let gate = common::Gate::hold(&pool);
            let barrier = std::sync::Barrier::new(2);
            let gate = std::sync::Mutex::new(Some(gate));
            pool.install(|| {
                offload::join(
                    || {
                        drop(gate.lock().unwrap().take().unwrap().open());
                        barrier.wait();
                    },
                    || barrier.wait(),
                )
            });
        }
    });
}

#[test]
fn nested_halves_meet_at_a_barrier() {
    timed(|| {
        // The first half joins once more, then waits: the outer and the
        // inner second halves must both be taken, by the two other workers.
        for _ in 0..10 {
            let pool = pool(3, "meet-nested");
            let barrier = std::sync::Barrier::new(3);
            let meet = || {
                barrier.wait();
            };
            pool.install(|| offload::join(meet, || offload::join(meet, meet)));
            pool.install(|| offload::join(|| offload::join(meet, meet), meet));
        }
    });
}
