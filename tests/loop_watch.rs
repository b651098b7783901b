//! `LoopWatch`: stalls reported while they happen (with the blocked
//! function on the stack, Linux), once per stall, with an honest duration;
//! a healthy loop reports nothing; a panicking reporter does not stop the
//! watch; the watcher thread goes away with the last watch, and a watch's
//! reporter thread with its watch.
//!
//! The tests of this file run one at a time (`ONE_AT_A_TIME`): they count
//! the process's watcher threads. The stalls are the behaviour under test;
//! the tests wait for them through channels, never by sleeping, except where
//! a stall of a known length is the point.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use common::timed;
use futures::future::{self, Either};
use offload::{LoopWatch, Stall};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
}

/// The executors a stall is tested on.
#[derive(Clone, Copy, Debug)]
enum Executor {
    TokioCurrentThread,
    Smol,
    Futures,
}

const EXECUTORS: [Executor; 3] = [
    Executor::TokioCurrentThread,
    Executor::Smol,
    Executor::Futures,
];

/// Runs `body` on `executor`'s loop (this thread), with `watch` polled by
/// the same loop: a body that blocks stalls the watch.
fn run_watched<T>(executor: Executor, watch: LoopWatch, body: impl Future<Output = T>) -> T {
    let both = async move {
        match future::select(watch, pin!(body)).await {
            Either::Left(((), _)) => unreachable!("a LoopWatch never completes"),
            Either::Right((value, _)) => value,
        }
    };
    match executor {
        Executor::TokioCurrentThread => tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(both),
        Executor::Smol => smol::block_on(both),
        Executor::Futures => futures::executor::block_on(both),
    }
}

/// A reporter that sends every stall to the returned receiver.
fn reporting_to() -> (impl Fn(&Stall) + Send + Sync + 'static, Receiver<Stall>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    (
        move |stall: &Stall| drop(tx.lock().unwrap().send(stall.clone())),
        rx,
    )
}

/// Yields to the executor once (so the watch is polled again).
async fn yield_once() {
    let mut yielded = false;
    future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// The blocking call under watch: waits, on the loop, until the reporter
/// has seen the stall.
#[inline(never)]
fn blocking_function_under_watch(reported: &Receiver<Stall>) -> Stall {
    reported.recv().expect("the ongoing stall is reported")
}

fn frames(stall: &Stall) -> Vec<String> {
    stall
        .stack()
        .unwrap_or_default()
        .iter()
        .filter_map(|frame| frame.function().map(str::to_owned))
        .collect()
}

#[test]
fn a_blocked_loop_is_reported_while_blocked_with_the_blocking_function() {
    let _serial = one_at_a_time();
    for executor in EXECUTORS {
        timed(move || {
            let (report, reported) = reporting_to();
            let watch = LoopWatch::new(Duration::from_millis(20))
                .period(Duration::from_millis(5))
                .on_stall(report);
            let stats = watch.stats();
            let ongoing = run_watched(executor, watch, async {
                yield_once().await; // the watch's first poll
                blocking_function_under_watch(&reported)
            });
            assert!(ongoing.is_ongoing(), "{executor:?}: {ongoing:?}");
            assert!(
                ongoing.duration() >= Duration::from_millis(20),
                "{ongoing:?}"
            );
            assert_eq!(ongoing.thread_id(), std::thread::current().id());
            assert_eq!(ongoing.thread_name(), std::thread::current().name());
            if cfg!(target_os = "linux") {
                let names = frames(&ongoing);
                assert!(
                    names
                        .iter()
                        .any(|name| name.contains("blocking_function_under_watch")),
                    "{executor:?}: the stack names the blocking function: {ongoing:#}"
                );
                assert!(ongoing
                    .to_string()
                    .contains("blocking_function_under_watch"));
                // The one-line summary names the application's frame; the
                // short form keeps at most 8 of its frames, `{:#}` them all.
                let summary = ongoing.summary();
                assert!(!summary.contains('\n'), "{summary}");
                assert!(
                    summary.contains("in loop_watch::blocking_function_under_watch"),
                    "{executor:?}: {summary}"
                );
                let numbered = |text: String| {
                    text.lines()
                        .filter(|line| {
                            line.trim_start()
                                .split(':')
                                .next()
                                .unwrap()
                                .parse::<usize>()
                                .is_ok()
                        })
                        .count()
                };
                assert!(numbered(ongoing.to_string()) <= 8, "{ongoing}");
                assert_eq!(
                    numbered(format!("{ongoing:#}")),
                    ongoing.stack().unwrap().len(),
                    "{ongoing:#}"
                );
            } else {
                eprintln!("skipped the stack check: stacks are taken on Linux only");
            }
            assert_eq!(stats.stalls(), 1, "{executor:?}");
        });
    }
}

/// Keeps the loop turning (so the watch is polled) until a report that
/// the stall is over arrives; returns every report received.
async fn reports_until_the_end(reported: &Receiver<Stall>) -> Vec<Stall> {
    let mut reports = Vec::new();
    while !reports.iter().any(|stall: &Stall| !stall.is_ongoing()) {
        reports.extend(reported.try_iter());
        yield_once().await;
    }
    reports
}

#[test]
fn a_stall_is_counted_once_and_reported_with_its_full_length() {
    let _serial = one_at_a_time();
    timed(|| {
        let (report, reported) = reporting_to();
        let period = Duration::from_millis(5);
        let watch = LoopWatch::new(Duration::from_millis(20))
            .period(period)
            .on_stall(report);
        let stats = watch.stats();
        let stall = Duration::from_millis(60);
        let reports = run_watched(Executor::TokioCurrentThread, watch, async {
            yield_once().await;
            std::thread::sleep(stall); // the stall under test
            reports_until_the_end(&reported).await
        });
        // One report while it lasted (unless the watcher thread itself was
        // held off the CPU for the whole stall), then one at its end.
        let (last, earlier) = reports.split_last().unwrap();
        assert!(!last.is_ongoing() && earlier.len() <= 1, "{reports:?}");
        assert!(earlier.iter().all(Stall::is_ongoing), "{reports:?}");
        // At least the stall, at most one period more (plus this machine's
        // scheduling delays: generous, it may be loaded).
        assert!(last.duration() >= stall, "{last:?}");
        assert!(
            last.duration() <= stall + period + Duration::from_secs(1),
            "{last:?}"
        );
        assert_eq!(stats.stalls(), 1);
        assert!(stats.lag_max() >= stall - period, "{stats:?}");
    });
}

#[test]
fn a_healthy_loop_reports_nothing() {
    let _serial = one_at_a_time();
    timed(|| {
        let reports = Arc::new(AtomicUsize::new(0));
        let counted = reports.clone();
        // Generous: a loaded CI machine may hold the loop off its core.
        let watch = LoopWatch::new(Duration::from_secs(5))
            .period(Duration::from_millis(1))
            .on_stall(move |_| {
                counted.fetch_add(1, Ordering::Relaxed);
            });
        let stats = watch.stats();
        run_watched(Executor::Futures, watch, async {
            // Async work that never blocks: wait for 50 lag samples.
            future::poll_fn(|_| {
                if stats.samples() >= 50 {
                    Poll::Ready(())
                } else {
                    Poll::Pending // the watch's wake-ups poll this again
                }
            })
            .await
        });
        assert_eq!(reports.load(Ordering::Relaxed), 0);
        assert_eq!(stats.stalls(), 0);
        assert!(stats.samples() >= 50);
        assert!(stats.lag_p50() <= stats.lag_p99() && stats.lag_p99() <= stats.lag_max());
    });
}

#[test]
fn a_panicking_reporter_does_not_stop_the_watch() {
    let _serial = one_at_a_time();
    common::silence_expected_panics();
    timed(|| {
        let (tx, reported) = mpsc::channel::<Stall>();
        let tx: Mutex<Sender<Stall>> = Mutex::new(tx);
        let watch = LoopWatch::new(Duration::from_millis(10))
            .period(Duration::from_millis(2))
            .on_stall(move |stall| {
                let _ = tx.lock().unwrap().send(stall.clone());
                panic!("{}: a reporter that panics", common::EXPECTED);
            });
        let stats = watch.stats();
        run_watched(Executor::Smol, watch, async {
            yield_once().await;
            for _ in 0..3 {
                let stall = blocking_function_under_watch(&reported);
                assert!(stall.is_ongoing());
                reports_until_the_end(&reported).await;
            }
        });
        assert_eq!(stats.stalls(), 3);
    });
}

#[test]
fn loop_watch_rejects_a_zero_threshold_or_period() {
    let zero = std::panic::catch_unwind(|| LoopWatch::new(Duration::ZERO));
    assert!(zero.is_err());
    let zero = std::panic::catch_unwind(|| {
        LoopWatch::new(Duration::from_millis(1)).period(Duration::ZERO)
    });
    assert!(zero.is_err());
}

/// How many watcher threads this process has (Linux: by name).
#[cfg(target_os = "linux")]
fn watcher_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "offload-loop-wa") // comm keeps 15 bytes
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn dropping_every_watch_stops_the_watcher_thread() {
    let _serial = one_at_a_time();
    timed(|| {
        common::spin_until(|| watcher_threads() == 0); // earlier tests' watcher
        let watches: Vec<_> = (0..3)
            .map(|_| LoopWatch::new(Duration::from_millis(50)).period(Duration::from_millis(1)))
            .collect();
        let stats: Vec<_> = watches.iter().map(LoopWatch::stats).collect();
        futures::executor::block_on(async {
            let mut watches: Vec<_> = watches.into_iter().map(Box::pin).collect();
            future::poll_fn(|cx| {
                for watch in &mut watches {
                    let _ = watch.as_mut().poll(cx);
                }
                if stats.iter().all(|stats| stats.samples() >= 3) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            assert_eq!(watcher_threads(), 1, "one watcher serves every watch");
        });
        // The watches are dropped: the thread exits.
        common::spin_until(|| watcher_threads() == 0);
    });
}

/// Allocates and frees without pause until `done`, so that the signal lands
/// inside the allocator most of the time.
#[inline(never)]
fn allocating_loop(mut done: impl FnMut() -> bool) {
    let mut kept = Vec::new();
    while !done() {
        for size in [16usize, 200, 4096, 70_000] {
            kept.push(vec![size as u8; size]);
        }
        if kept.len() > 64 {
            kept.clear();
        }
    }
}

#[test]
fn capture_while_the_loop_allocates() {
    let _serial = one_at_a_time();
    timed(|| {
        let (report, reported) = reporting_to();
        let watch = LoopWatch::new(Duration::from_millis(5))
            .period(Duration::from_millis(1))
            .on_stall(report);
        let captures = 20;
        let stalls = run_watched(Executor::TokioCurrentThread, watch, async {
            yield_once().await;
            let mut ongoing = Vec::new();
            for _ in 0..captures {
                let mut seen = None;
                allocating_loop(|| {
                    seen = seen
                        .take()
                        .or_else(|| reported.try_iter().find(Stall::is_ongoing));
                    seen.is_some()
                });
                ongoing.push(seen.unwrap());
                reports_until_the_end(&reported).await;
            }
            ongoing
        });
        // Every capture came back (a lock taken in the signal handler's path
        // would have deadlocked this test); most found the allocating loop.
        assert_eq!(stalls.len(), captures);
        if cfg!(target_os = "linux") {
            let named = stalls
                .iter()
                .filter(|stall| {
                    frames(stall)
                        .iter()
                        .any(|name| name.contains("allocating_loop"))
                })
                .count();
            assert!(named > 0, "{stalls:?}");
        }
    });
}

/// How many reporter threads this process has (Linux: by name).
#[cfg(target_os = "linux")]
fn reporter_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "offload-stall-r") // comm keeps 15 bytes
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn a_watch_reporter_thread_ends_with_its_watch() {
    let _serial = one_at_a_time();
    timed(|| {
        common::spin_until(|| reporter_threads() == 0); // earlier tests'
        let (report, reported) = reporting_to();
        let watch = LoopWatch::new(Duration::from_millis(10))
            .period(Duration::from_millis(2))
            .on_stall(report);
        run_watched(Executor::Futures, watch, async {
            yield_once().await;
            let stall = blocking_function_under_watch(&reported);
            assert!(stall.is_ongoing());
            assert_eq!(reporter_threads(), 1, "one reporter thread for the watch");
            reports_until_the_end(&reported).await;
        });
        // The watch is dropped: its reporter thread ends.
        common::spin_until(|| reporter_threads() == 0);
    });
}
