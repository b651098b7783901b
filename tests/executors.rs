//! A Task is a plain future: every executor can await many of them at once,
//! and a Task may be polled on one thread and completed on another.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;

use common::{pool, timed, Counter, Gate};
use futures::future::join_all;
use offload::{Pool, Task};

const IN_FLIGHT: u64 = 10_000;

fn spawn_many(pool: &Pool) -> Vec<Task<u64>> {
    (0..IN_FLIGHT)
        .map(|i| pool.spawn(move || i * i + 1))
        .collect()
}

fn check(results: Vec<Result<u64, offload::JoinError>>) {
    assert_eq!(results.len() as u64, IN_FLIGHT);
    for (i, r) in results.into_iter().enumerate() {
        let i = i as u64;
        assert_eq!(r.expect("job ok"), i * i + 1);
    }
}

#[test]
fn tokio_current_thread_join_all() {
    timed(|| {
        let pool = pool(2, "tokio-ct");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let results = rt.block_on(join_all(spawn_many(&pool)));
        check(results);
    });
}

#[test]
fn tokio_current_thread_sequential_awaits() {
    timed(|| {
        let pool = pool(2, "tokio-seq");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let results = rt.block_on(async {
            let mut out = Vec::new();
            for task in spawn_many(&pool) {
                out.push(task.await);
            }
            out
        });
        check(results);
    });
}

/// A loop that keeps many Tasks in flight while jobs queue (a fan-out):
/// workers then hold completion wake-ups back and wake a batch at once,
/// partly through the loop's own polls (`src/task/completions.rs`). Every Task
/// resolves, with its own result, on a single-threaded loop with drivers
/// and on one without.
#[test]
fn tokio_current_thread_fan_out_with_a_backlog() {
    use futures::stream::{self, StreamExt};
    timed(|| {
        // Detection on: without a detector a pool never holds a wake-up.
        let pool = Pool::builder().threads(2).build().unwrap();
        for drivers in [true, false] {
            let mut builder = tokio::runtime::Builder::new_current_thread();
            if drivers {
                builder.enable_all();
            }
            let rt = builder.build().unwrap();
            let results: Vec<u64> = rt.block_on(
                stream::iter(0..IN_FLIGHT)
                    .map(|i| {
                        let task = pool.spawn(move || {
                            std::hint::black_box(common::spin_work(200));
                            i * i + 1
                        });
                        async move { (i, task.await.expect("job ok")) }
                    })
                    .buffer_unordered(256)
                    .map(|(i, r)| {
                        assert_eq!(r, i * i + 1);
                        i
                    })
                    .collect(),
            );
            let mut seen = results;
            seen.sort_unstable();
            assert_eq!(seen, (0..IN_FLIGHT).collect::<Vec<_>>());
        }
    });
}

#[test]
fn tokio_multi_thread_spawned_tasks() {
    timed(|| {
        let pool = pool(2, "tokio-mt");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let results = rt.block_on(async {
            // Each Task is awaited inside its own tokio task, which the
            // runtime may move between its threads.
            let handles: Vec<_> = spawn_many(&pool).into_iter().map(tokio::spawn).collect();
            let mut out = Vec::new();
            for h in handles {
                out.push(h.await.expect("tokio task"));
            }
            out
        });
        check(results);
    });
}

#[test]
fn tokio_multi_thread_spawn_inside_runtime() {
    timed(|| {
        let pool = pool(2, "tokio-mt2");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let sum = rt.block_on(async move {
            let handles: Vec<_> = (0..1000u64)
                .map(|i| {
                    let pool = pool.clone();
                    tokio::spawn(async move {
                        let a = pool.spawn(move || i * 2).await.unwrap();
                        let b = pool.spawn(move || a + 1).await.unwrap();
                        b
                    })
                })
                .collect();
            let mut sum = 0;
            for h in handles {
                sum += h.await.unwrap();
            }
            sum
        });
        assert_eq!(sum, (0..1000u64).map(|i| i * 2 + 1).sum::<u64>());
    });
}

#[test]
fn smol_block_on() {
    timed(|| {
        let pool = pool(2, "smol");
        check(smol::block_on(join_all(spawn_many(&pool))));
    });
}

#[test]
fn async_executor_on_several_threads() {
    timed(|| {
        let pool = pool(2, "async-ex");
        let ex = Arc::new(async_executor::Executor::new());
        let (stop_tx, stop_rx) = smol::channel::unbounded::<()>();
        let helpers: Vec<_> = (0..2)
            .map(|_| {
                let ex = Arc::clone(&ex);
                let stop_rx = stop_rx.clone();
                thread::spawn(move || {
                    let _ = smol::block_on(ex.run(stop_rx.recv()));
                })
            })
            .collect();
        let handles: Vec<_> = spawn_many(&pool)
            .into_iter()
            .map(|task| ex.spawn(task))
            .collect();
        let results = smol::block_on(ex.run(join_all(handles)));
        drop(stop_tx);
        for h in helpers {
            h.join().unwrap();
        }
        check(results);
    });
}

#[test]
fn futures_block_on() {
    timed(|| {
        let pool = pool(2, "futures");
        check(futures::executor::block_on(join_all(spawn_many(&pool))));
    });
}

#[test]
fn futures_local_pool_spawned() {
    timed(|| {
        use futures::task::LocalSpawnExt;
        let pool = pool(2, "futures-local");
        let mut local = futures::executor::LocalPool::new();
        let spawner = local.spawner();
        let handles: Vec<_> = spawn_many(&pool)
            .into_iter()
            .map(|task| spawner.spawn_local_with_handle(task).unwrap())
            .collect();
        check(local.run_until(join_all(handles)));
    });
}

#[test]
fn pollster_block_on() {
    timed(|| {
        let pool = pool(2, "pollster");
        check(pollster::block_on(join_all(spawn_many(&pool))));
    });
}

#[test]
fn futures_unordered_completes_everything() {
    timed(|| {
        use futures::stream::{FuturesUnordered, StreamExt};
        let pool = pool(2, "unordered");
        let mut set: FuturesUnordered<_> = spawn_many(&pool).into_iter().collect();
        let sum = pollster::block_on(async {
            let mut sum = 0u64;
            while let Some(r) = set.next().await {
                sum += r.unwrap();
            }
            sum
        });
        assert_eq!(sum, (0..IN_FLIGHT).map(|i| i * i + 1).sum::<u64>());
    });
}

#[test]
fn task_moved_to_another_thread() {
    timed(|| {
        let pool = pool(2, "moved");
        let (tx, rx) = mpsc::channel::<Task<String>>();
        let awaiter = thread::spawn(move || {
            let task = rx.recv().unwrap();
            pollster::block_on(task).unwrap()
        });
        tx.send(pool.spawn(|| "made on a worker".to_owned()))
            .unwrap();
        assert_eq!(awaiter.join().unwrap(), "made on a worker");
    });
}

/// A waker that counts its wake-ups.
struct CountingWaker(Counter);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.incr();
    }
}

#[test]
fn first_polls_that_spin_and_miss_still_get_their_wake_ups() {
    timed(|| {
        // The worker is held, so every first poll below spins (or skips its
        // spin, after the misses before it) and sees no output. Each must
        // still register its waker and be woken once the job has run.
        struct Numbered(usize, std::sync::Mutex<mpsc::Sender<usize>>);
        impl Wake for Numbered {
            fn wake(self: Arc<Self>) {
                let _ = self.1.lock().unwrap().send(self.0);
            }
        }
        let pool = pool(1, "spin-miss");
        let gate = Gate::hold(&pool);
        let mut tasks: Vec<Task<u64>> = (0..64u64).map(|i| pool.spawn(move || i * 3)).collect();
        let (woken_tx, woken) = mpsc::channel();
        for (i, task) in tasks.iter_mut().enumerate() {
            let waker = Waker::from(Arc::new(Numbered(i, woken_tx.clone().into())));
            assert!(Pin::new(task)
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
        }
        gate.release();
        let mut seen = vec![0; tasks.len()];
        for _ in 0..tasks.len() {
            seen[woken.recv().expect("a wake-up")] += 1;
        }
        assert!(
            seen.iter().all(|&n| n == 1),
            "one wake-up per Task: {seen:?}"
        );
        for (i, task) in tasks.into_iter().enumerate() {
            assert!(task.is_finished());
            assert_eq!(task.wait().unwrap(), i as u64 * 3);
        }
    });
}

#[test]
fn task_polled_on_one_thread_completed_on_another() {
    timed(|| {
        // The worker is held, so the first poll registers a waker and
        // returns Pending; the Task then moves to another thread, which
        // registers its own waker and gets the output.
        let pool = pool(1, "repoll");
        let gate = Gate::hold(&pool);
        let mut task = pool.spawn(|| 42u32);
        let first_wakes = Counter::new();
        let waker = Waker::from(Arc::new(CountingWaker(first_wakes.clone())));
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut task).poll(&mut cx).is_pending());
        assert!(!task.is_finished());
        let other = thread::spawn(move || pollster::block_on(task));
        gate.release();
        assert_eq!(other.join().unwrap().unwrap(), 42);
        // The first waker was replaced before completion: at most a spurious
        // wake-up, never a required one.
        assert!(first_wakes.get() <= 1);
    });
}

#[test]
fn waker_is_woken_on_completion_and_is_finished_follows() {
    timed(|| {
        let pool = pool(1, "waker");
        let gate = Gate::hold(&pool);
        let mut task = pool.spawn(|| 7u8);
        let (wake_tx, wake_rx) = mpsc::channel::<()>();
        struct ChannelWaker(std::sync::Mutex<mpsc::Sender<()>>);
        impl Wake for ChannelWaker {
            fn wake(self: Arc<Self>) {
                let _ = self.0.lock().unwrap().send(());
            }
        }
        let waker = Waker::from(Arc::new(ChannelWaker(std::sync::Mutex::new(wake_tx))));
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut task).poll(&mut cx).is_pending());
        // Polling again with the same waker stays pending.
        assert!(Pin::new(&mut task).poll(&mut cx).is_pending());
        assert!(format!("{task:?}").contains("queued"));
        gate.release();
        wake_rx.recv().expect("woken on completion");
        assert!(task.is_finished());
        assert!(format!("{task:?}").contains("finished"));
        match Pin::new(&mut task).poll(&mut cx) {
            Poll::Ready(Ok(7)) => {}
            other => panic!("expected Ready(Ok(7)), got {other:?}"),
        }
    });
}

#[test]
fn task_is_send_unpin_future() {
    fn assert_send_sync_unpin<T: Send + Sync + Unpin>() {}
    fn assert_future<F: Future<Output = Result<u8, offload::JoinError>> + Send + Unpin>() {}
    assert_send_sync_unpin::<Task<u8>>();
    assert_future::<Task<u8>>();
}

#[test]
fn select_between_tasks_keeps_the_loser_usable() {
    timed(|| {
        let pool = pool(1, "select");
        let gate = Gate::hold(&pool);
        let fast = pool.spawn(|| 1u32);
        let slow = pool.spawn(|| 2u32);
        gate.release();
        // The loser of a select is polled with a waker, then polled again
        // later with another.
        let (first, loser) = pollster::block_on(async {
            match futures::future::select(fast, slow).await {
                futures::future::Either::Left((r, other)) => (r.unwrap(), other),
                futures::future::Either::Right((r, other)) => (r.unwrap(), other),
            }
        });
        let second = futures::executor::block_on(loser).unwrap();
        let mut both = [first, second];
        both.sort_unstable();
        assert_eq!(both, [1, 2]);
    });
}

#[test]
fn a_fresh_waker_on_every_poll() {
    // Replaces the registered waker on every poll while the job may be
    // completing: the Task still resolves, exactly once.
    timed(|| {
        let pool = pool(2, "fresh-waker");
        for i in 0..2000u64 {
            let mut task = pool.spawn(move || i + 1);
            let value = loop {
                let waker = Waker::from(Arc::new(CountingWaker(Counter::new())));
                match Pin::new(&mut task).poll(&mut Context::from_waker(&waker)) {
                    Poll::Ready(r) => break r.unwrap(),
                    Poll::Pending => thread::yield_now(),
                }
            };
            assert_eq!(value, i + 1);
        }
    });
}

#[test]
#[should_panic(expected = "polled after it returned Ready")]
fn polling_after_ready_panics() {
    let pool = pool(1, "after-ready");
    let mut task = pool.spawn(|| 1);
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    pool.spawn(|| ()).wait().unwrap();
    assert!(matches!(
        Pin::new(&mut task).poll(&mut cx),
        Poll::Ready(Ok(1))
    ));
    let _ = Pin::new(&mut task).poll(&mut cx);
}
