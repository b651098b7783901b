//! A small, deterministic stress of every path that allocates or frees,
//! meant to run under valgrind's memcheck (CI does, see `.ci/run`):
//!
//! ```text
//! cargo build --example valgrind_stress
//! valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite,indirect \
//!     --error-exitcode=1 target/debug/examples/valgrind_stress
//! ```
//!
//! Each round builds a pool (1 to 4 threads) and goes through: awaited,
//! waited, cancelled (dropped while queued), dropped-while-running and
//! detached Tasks with heap outputs; panicking jobs (a heap payload, and
//! one whose `Drop` panics); jobs that spawn and wait on jobs of their own
//! pool; `join`, `scope` and `install`; on bounded pools (every other
//! round) `try_spawn` refusals, `reserve` permits used and dropped, a
//! reservation dropped while it waits; `cancel` of a queued and of a
//! running job, and `wait_timeout`; `spawn_blocking` jobs on spare
//! threads (past a cap of 2, queued) and a job in `blocking` (which lends
//! its worker's place to a stand-in in the rounds without detection, and
//! gets a helper in the others), the spares retiring at once in every
//! other round; then `shutdown`, `shutdown_now` or
//! the drop of the last handle with jobs still queued behind a held worker,
//! and a spawn after the shutdown. It waits for every worker thread (and
//! every spare thread that ran one of its jobs) to end before the next
//! round, so that nothing the pool owns is still alive at
//! exit: memcheck must report no error and no byte definitely or
//! indirectly lost. It avoids the global pool, whose threads live for ever.
//!
//! Then a `LoopWatch` on a futures loop sees three stalls, two in a system
//! call and one in a loop that allocates without pause: the watcher's
//! checks, its `/proc` reads and the reporting run under memcheck (under
//! valgrind the kernel shows valgrind's registers and signal mask for the
//! thread, so the stalls come without stacks, with the reason; natively
//! they have stacks), and the watcher thread exits once the watch is
//! dropped.
//!
//! It checks its results and exits non-zero on a wrong one. Sized to take a
//! few seconds natively and well under two minutes under memcheck; pass a
//! number of rounds as the first argument to change it.

use std::cell::RefCell;
use std::panic;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use offload::{Pool, Task};

/// Rounds by default: every pool size with every ending, 33 times over.
const ROUNDS: usize = 400;

/// Reports a worker thread's end when its thread-locals are destroyed.
struct ThreadEnd(mpsc::Sender<()>);

impl Drop for ThreadEnd {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

thread_local! {
    static THREAD_END: RefCell<Option<ThreadEnd>> = const { RefCell::new(None) };
}

/// A panic payload whose `Drop` panics: the pool must contain it.
struct PanicOnDrop(#[allow(dead_code)] Vec<u8>);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("a payload's drop panics");
    }
}

fn fib(n: u32) -> u64 {
    if n < 2 {
        return u64::from(n);
    }
    let (a, b) = offload::join(|| fib(n - 1), || fib(n - 2));
    a + b
}

fn heap_job(i: usize) -> impl FnOnce() -> Vec<u64> + Send + 'static {
    let captured = format!("job {i}");
    move || vec![captured.len() as u64; 1 + i % 7]
}

fn round(index: usize) {
    let threads = 1 + index % 4;
    let (end_tx, end_rx) = mpsc::channel();
    let (spare_end_tx, spare_end_rx) = mpsc::channel();
    let end_tx = Mutex::new(end_tx);
    let mut builder = Pool::builder()
        .threads(threads)
        .thread_name(move |i| format!("vg{index}-{i}"))
        .on_thread_start(move |i| {
            // Workers only (spares take the indices from `threads` on).
            if i < threads {
                let end = ThreadEnd(end_tx.lock().unwrap().clone());
                THREAD_END.with(|slot| *slot.borrow_mut() = Some(end));
            }
        });
    if index % 2 == 1 {
        builder = builder.max_queued(8);
    }
    let keep_alive = Duration::from_millis(if index % 2 == 0 { 0 } else { 100 });
    // Detection off in every other round: `blocking` then lends the place
    // to a stand-in; with it, the call is marked and a helper runs the
    // jobs behind it.
    let pool = builder
        .detect_blocking(index % 2 == 1)
        .max_blocking_threads(2)
        .blocking_keep_alive(keep_alive)
        .build()
        .expect("build the pool");
    // Spare threads run the `on_thread_start` hook too, which leaves them
    // alone: their jobs register their thread's end, once per thread (a
    // spare that ran none of our jobs is not waited for).
    let spares_end = SpareEnds {
        tx: Arc::new(Mutex::new(spare_end_tx)),
        count: Arc::new(AtomicUsize::new(0)),
    };

    // Awaited, waited, dropped (most while queued), detached.
    let tasks: Vec<Task<Vec<u64>>> = (0..200).map(|i| pool.spawn(heap_job(i))).collect();
    for (i, task) in tasks.into_iter().enumerate() {
        match i % 4 {
            0 => assert_eq!(futures::executor::block_on(task).unwrap().len(), 1 + i % 7),
            1 => assert_eq!(task.wait().unwrap().len(), 1 + i % 7),
            2 => drop(task),
            _ => task.detach(),
        }
    }

    // Panics: a String payload awaited, detached and dropped; a payload
    // whose drop panics, detached (dropped on a worker) and awaited.
    for i in 0..20 {
        let task = pool.spawn(move || -> Vec<u8> { panic!("job {i} panics") });
        match i % 3 {
            0 => assert!(task.wait().unwrap_err().is_panic()),
            1 => task.detach(),
            _ => drop(task),
        }
        pool.spawn(|| -> u8 { panic::panic_any(PanicOnDrop(vec![1; 32])) })
            .detach();
    }
    let payload = pool
        .spawn(|| -> u8 { panic::panic_any(PanicOnDrop(vec![2; 32])) })
        .wait()
        .unwrap_err()
        .into_panic();
    assert!(panic::catch_unwind(panic::AssertUnwindSafe(move || drop(payload))).is_err());

    // Jobs that spawn and wait on jobs of their own pool.
    let inner = pool.clone();
    let total = pool
        .spawn(move || {
            let children: Vec<_> = (0..16).map(|i| inner.spawn(heap_job(i))).collect();
            children
                .into_iter()
                .map(|t| t.wait().unwrap().len())
                .sum::<usize>()
        })
        .wait()
        .unwrap();
    assert_eq!(total, (0..16).map(|i| 1 + i % 7).sum::<usize>());

    // Fork-join from outside the pool.
    assert_eq!(pool.install(|| fib(12)), 144);
    let mut chunks = vec![vec![0u32; 64]; 8];
    pool.scope(|s| {
        for (i, chunk) in chunks.iter_mut().enumerate() {
            s.spawn(move |_| chunk.iter_mut().for_each(|x| *x = i as u32));
        }
    });
    assert!(chunks
        .iter()
        .enumerate()
        .all(|(i, c)| c.iter().all(|&x| x == i as u32)));
    let (a, b) = pool.join(|| vec![1u8; 100], || String::from("join"));
    assert_eq!((a.len(), b.as_str()), (100, "join"));
    let caught = panic::catch_unwind(panic::AssertUnwindSafe(|| {
        pool.join(|| -> u8 { panic!("a join half panics") }, || vec![0u8; 10])
    }));
    assert!(caught.is_err());

    // Flow control: refusals hand the closure back; permits used and
    // dropped; a reservation dropped while it may wait; cancel and
    // wait_timeout.
    let mut admitted = Vec::new();
    for i in 0..64 {
        match pool.try_spawn(heap_job(i)) {
            Ok(task) => admitted.push(task),
            Err(refused) => {
                assert!(refused.is_full());
                drop(refused.into_inner());
            }
        }
    }
    let _ = futures::FutureExt::now_or_never(pool.reserve());
    for task in admitted {
        assert!(task.wait().is_ok());
    }
    for i in 0..16 {
        let permit = pool.reserve().wait().expect("the pool runs");
        if i % 4 == 0 {
            drop(permit);
        } else {
            assert!(permit.spawn(heap_job(i)).wait().is_ok());
        }
    }
    let cancelled = pool.spawn(heap_job(3));
    cancelled.cancel();
    let _ = cancelled.wait();
    let mut timed = pool.spawn(heap_job(5));
    if timed.wait_timeout(std::time::Duration::ZERO).is_none() {
        assert!(timed.wait().is_ok());
    }
    let (running_tx, running_rx) = mpsc::channel();
    let stoppable = pool.spawn(move || {
        running_tx.send(()).unwrap();
        while !offload::is_cancelled() {
            std::thread::yield_now();
        }
        vec![1u8; 16]
    });
    running_rx.recv().unwrap();
    stoppable.cancel();
    assert_eq!(stoppable.wait().unwrap().len(), 16);

    // Blocking work on the spare threads: a job in `blocking` while others
    // wait behind it (first, while both spares are free): it lends its
    // place to a stand-in, or, with detection, a helper runs them; the
    // `spawn_blocking` jobs past the cap of 2
    // (queued), awaited, dropped and detached. Spares retire between
    // rounds (keep-alive 0 in every other round) or at shutdown.
    let (lent_tx, lent_rx) = mpsc::channel::<()>();
    let (queued_tx, queued_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel();
    let spares_end_in_job = spares_end.clone();
    let lender = pool.spawn(move || {
        started_tx.send(()).unwrap();
        let _ = queued_rx.recv();
        offload::blocking(move || lent_rx.recv().map(|()| vec![3u8; 8]))
    });
    started_rx.recv().unwrap();
    let behind: Vec<_> = (0..threads)
        .map(|i| {
            let spares_end = spares_end_in_job.clone();
            let job = heap_job(i);
            pool.spawn(move || {
                note_thread_end(&spares_end);
                job()
            })
        })
        .collect();
    drop(queued_tx);
    for task in behind {
        assert!(task.wait().is_ok());
    }
    drop(lent_tx);
    assert!(lender.wait().unwrap().is_err());
    let blocking: Vec<_> = (0..12)
        .map(|i| {
            let job = heap_job(i);
            let spares_end = spares_end.clone();
            pool.spawn_blocking(move || {
                note_thread_end(&spares_end);
                job()
            })
        })
        .collect();
    for (i, task) in blocking.into_iter().enumerate() {
        match i % 3 {
            0 => assert_eq!(task.wait().unwrap().len(), 1 + i % 7),
            1 => drop(task),
            _ => task.detach(),
        }
    }

    // Shut down with one worker held and jobs queued behind it; one Task
    // is dropped while its job runs.
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let running = pool.spawn(move || {
        started_tx.send(()).unwrap();
        let _ = release_rx.recv();
        vec![9u8; 64]
    });
    started_rx.recv().unwrap();
    drop(running);
    let queued: Vec<_> = (0..100).map(|i| pool.spawn(heap_job(i))).collect();
    match index % 3 {
        0 => {
            let p = pool.clone();
            let shutdown = std::thread::spawn(move || p.shutdown());
            drop(release_tx);
            shutdown.join().unwrap();
            assert!(queued.into_iter().all(|t| t.wait().is_ok()));
        }
        1 => {
            let p = pool.clone();
            let shutdown = std::thread::spawn(move || p.shutdown_now());
            drop(release_tx);
            shutdown.join().unwrap();
            // Some may have run before the shutdown; the others are cancelled.
            for task in queued {
                if let Err(err) = task.wait() {
                    assert!(err.is_cancelled());
                }
            }
        }
        _ => {
            // The last handle goes while the worker is held; queued jobs
            // still run, half of them detached.
            drop(pool);
            drop(release_tx);
            for (i, task) in queued.into_iter().enumerate() {
                if i % 2 == 0 {
                    task.detach();
                } else {
                    assert!(task.wait().is_ok());
                }
            }
            for _ in 0..threads {
                end_rx.recv().expect("a worker thread ended");
            }
            spares_end.wait_all(&spare_end_rx);
            return;
        }
    }
    // A spawn after shutdown is cancelled at once.
    assert!(pool.spawn(heap_job(1)).wait().unwrap_err().is_cancelled());
    // Every job has ended: the metrics add up.
    let metrics = pool.metrics();
    assert_eq!(
        metrics.spawned(),
        metrics.completed() + metrics.panicked() + metrics.cancelled(),
        "{metrics}"
    );
    drop(pool);
    for _ in 0..threads {
        end_rx.recv().expect("a worker thread ended");
    }
    spares_end.wait_all(&spare_end_rx);
}

/// Registers the ends of the spare threads that ran a job of ours.
#[derive(Clone)]
struct SpareEnds {
    tx: Arc<Mutex<mpsc::Sender<()>>>,
    /// Spare threads registered.
    count: Arc<AtomicUsize>,
}

impl SpareEnds {
    /// Waits until every registered spare thread has ended.
    fn wait_all(&self, rx: &mpsc::Receiver<()>) {
        for _ in 0..self.count.load(Ordering::SeqCst) {
            rx.recv().expect("a spare thread ended");
        }
    }
}

/// On a thread with no end reporter yet (a spare thread: workers have
/// theirs from `on_thread_start`), registers its end with `ends`.
fn note_thread_end(ends: &SpareEnds) {
    THREAD_END.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            ends.count.fetch_add(1, Ordering::SeqCst);
            *slot = Some(ThreadEnd(ends.tx.lock().unwrap().clone()));
        }
    });
}

fn main() {
    // The panics above are expected: keep the output (and memcheck) quiet.
    panic::set_hook(Box::new(|_| {}));
    let rounds = std::env::args()
        .nth(1)
        .map_or(ROUNDS, |n| n.parse().expect("a number of rounds"));
    for index in 0..rounds {
        round(index);
    }
    // The watch's part panics only on a wrong result: let it be seen.
    drop(panic::take_hook());
    watched_stalls();
    println!("valgrind_stress: {rounds} rounds done");
}

/// A watched loop stalls three times, each until the stall is reported with
/// a stack; the last stall allocates and frees without pause, so the signal
/// often lands inside the allocator. Then the watch is dropped and its
/// watcher thread waited for.
fn watched_stalls() {
    use futures::future::{self, Either};
    use std::task::Poll;

    let (tx, reported) = mpsc::channel();
    let tx = Mutex::new(tx);
    let watch = offload::LoopWatch::new(Duration::from_millis(20))
        .period(Duration::from_millis(5))
        .on_stall(move |stall| {
            if stall.is_ongoing() {
                let _ = tx.lock().unwrap().send((
                    stall.stack().map(<[_]>::len),
                    stall.no_stack_reason().map(str::to_owned),
                ));
            }
        });
    let stats = watch.stats();
    let body = async {
        for stall in 0..3u64 {
            // Back on the loop until it has answered a wake-up since the
            // last stall.
            let samples = stats.samples();
            future::poll_fn(|cx| {
                if stats.samples() > samples {
                    Poll::Ready(())
                } else {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            })
            .await;
            let frames = if stall < 2 {
                reported.recv().expect("a stall report")
            } else {
                let mut kept = Vec::new();
                loop {
                    kept.push(vec![stall; 64]);
                    if kept.len() > 32 {
                        kept.clear();
                    }
                    if let Ok(frames) = reported.try_recv() {
                        break frames;
                    }
                }
            };
            // Natively, a stack. Under valgrind the kernel's view of the
            // thread (its registers in /proc, its signal mask) is valgrind's
            // own, so the checks before a capture fail and the stall comes
            // without a stack, with the reason: the safe outcome.
            let (frames, why) = frames;
            if cfg!(target_os = "linux") {
                assert!(frames.is_some_and(|n| n > 0) || why.is_some(), "{why:?}");
            }
        }
    };
    let both = async {
        match future::select(watch, std::pin::pin!(body)).await {
            Either::Left(_) => unreachable!("a LoopWatch never completes"),
            Either::Right(((), _)) => {}
        }
    };
    futures::executor::block_on(both);
    // Three, or more where valgrind, which runs one thread at a time, held
    // the loop off past the threshold between them.
    assert!(stats.stalls() >= 3, "{stats:?}");
    // The watch is gone: its watcher thread exits (Linux: by name).
    #[cfg(target_os = "linux")]
    while std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .any(|name| name.trim() == "offload-loop-wa")
    {
        std::thread::sleep(Duration::from_millis(1));
    }
}
