//! `Builder`: thread count, names, stack size, start/stop hooks; and the
//! static properties of `Pool`.

mod common;

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex};
use std::thread;

use common::{all_workers, silence_expected_panics, timed};
use offload::{Builder, JoinError, Pool, Scope, Task};

#[test]
fn zero_threads_is_invalid_input() {
    let err = Pool::builder().threads(0).build().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    // Nothing in this file uses the global pool, so build_global gets as far
    // as validating the thread count.
    let err = Pool::builder().threads(0).build_global().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn thread_count() {
    timed(|| {
        for n in [1, 2, 3, 5] {
            let pool = Pool::builder()
                .threads(n)
                .detect_blocking(false)
                .build()
                .unwrap();
            assert_eq!(pool.threads(), n);
            let (ids, _) = all_workers(&pool);
            assert_eq!(ids.len(), n);
        }
        let default = Pool::new();
        assert!(default.threads() >= 1);
        assert_eq!(Pool::default().threads(), default.threads());
        assert_eq!(
            Pool::builder().build().unwrap().threads(),
            default.threads()
        );
    });
}

#[test]
fn thread_name_is_applied() {
    timed(|| {
        let pool = Pool::builder()
            .threads(3)
            .detect_blocking(false) // jobs meet at a barrier on the workers
            .thread_name(|i| format!("cruncher #{i}"))
            .build()
            .unwrap();
        let (_, names) = all_workers(&pool);
        let expected: HashSet<String> = (0..3).map(|i| format!("cruncher #{i}")).collect();
        assert_eq!(names, expected);
        let name = pool
            .spawn(|| thread::current().name().map(str::to_owned))
            .wait()
            .unwrap();
        assert!(name.unwrap().starts_with("cruncher #"));
    });
}

#[test]
fn default_thread_names() {
    timed(|| {
        let pool = Pool::builder()
            .threads(2)
            .detect_blocking(false)
            .build()
            .unwrap();
        let (_, names) = all_workers(&pool);
        let expected: HashSet<String> = (0..2).map(|i| format!("offload-{i}")).collect();
        assert_eq!(names, expected);
    });
}

thread_local! {
    static STARTED_AS: Cell<Option<usize>> = const { Cell::new(None) };
}

#[test]
fn on_thread_start_runs_once_per_thread_before_jobs() {
    timed(|| {
        let starts: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
        let s = Arc::clone(&starts);
        let pool = Pool::builder()
            .threads(3)
            .detect_blocking(false) // jobs meet at a barrier on the workers
            .thread_name(|i| format!("hooked-{i}"))
            .on_thread_start(move |i| {
                assert_eq!(
                    thread::current().name(),
                    Some(format!("hooked-{i}").as_str())
                );
                STARTED_AS.with(|c| c.set(Some(i)));
                *s.lock().unwrap().entry(i).or_default() += 1;
            })
            .build()
            .unwrap();
        // Every job, on every worker, sees that its thread's hook ran.
        for _ in 0..5 {
            let barrier = Arc::new(std::sync::Barrier::new(3));
            let tasks: Vec<_> = (0..3)
                .map(|_| {
                    let barrier = Arc::clone(&barrier);
                    pool.spawn(move || {
                        barrier.wait();
                        let index = STARTED_AS.with(Cell::get).expect("hook ran first");
                        assert_eq!(
                            thread::current().name(),
                            Some(format!("hooked-{index}").as_str())
                        );
                        index
                    })
                })
                .collect();
            let indices: HashSet<usize> = tasks.into_iter().map(|t| t.wait().unwrap()).collect();
            assert_eq!(indices, HashSet::from([0, 1, 2]));
        }
        pool.shutdown();
        let starts = starts.lock().unwrap().clone();
        assert_eq!(starts, HashMap::from([(0, 1), (1, 1), (2, 1)]));
    });
}

#[inline(never)]
fn big_stack_frame() -> u64 {
    const LEN: usize = 4 << 20;
    let mut buf = [0u8; LEN];
    for (i, b) in buf.iter_mut().enumerate().step_by(4096) {
        *b = i as u8 | 1;
    }
    let buf = std::hint::black_box(&mut buf);
    buf.iter().step_by(4096).map(|&b| u64::from(b)).sum()
}

#[test]
fn stack_size_is_applied() {
    timed(|| {
        let pool = Pool::builder()
            .threads(2)
            .detect_blocking(false) // jobs meet at a barrier on the workers
            .stack_size(16 << 20)
            .build()
            .unwrap();
        let expected: u64 = (0..4usize << 20)
            .step_by(4096)
            .map(|i| u64::from(i as u8 | 1))
            .sum();
        assert_eq!(pool.spawn(big_stack_frame).wait().unwrap(), expected);
        // Both halves of a join get the big stack too.
        assert_eq!(
            pool.install(|| offload::join(big_stack_frame, big_stack_frame)),
            (expected, expected)
        );
    });
}

#[test]
fn panicking_start_hook_leaves_the_worker_serving() {
    silence_expected_panics();
    timed(|| {
        let pool = Pool::builder()
            .threads(2)
            .detect_blocking(false) // jobs meet at a barrier on the workers
            .on_thread_start(|i| {
                if i == 0 {
                    panic!("expected panic in on_thread_start");
                }
            })
            .build()
            .unwrap();
        let (ids, _) = all_workers(&pool);
        assert_eq!(ids.len(), 2);
        assert_eq!(pool.spawn(|| 4).wait().unwrap(), 4);
    });
}

#[test]
fn panicking_stop_hook_does_not_stop_shutdown() {
    silence_expected_panics();
    timed(|| {
        let stops = common::Counter::new();
        let s = stops.clone();
        let pool = Pool::builder()
            .threads(2)
            .on_thread_stop(move |_| {
                s.incr();
                panic!("expected panic in on_thread_stop");
            })
            .build()
            .unwrap();
        let t = pool.spawn(|| 1);
        pool.shutdown();
        assert_eq!(t.wait().unwrap(), 1);
        assert_eq!(stops.get(), 2);
    });
}

#[test]
fn hooks_and_jobs_on_a_pool_dropped_right_away() {
    timed(|| {
        // Building and dropping at once: every thread starts and stops.
        let starts = common::Counter::new();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel();
        let stop_tx = Mutex::new(stop_tx);
        let s = starts.clone();
        let pool = Pool::builder()
            .threads(2)
            .on_thread_start(move |_| s.incr())
            .on_thread_stop(move |i| stop_tx.lock().unwrap().send(i).unwrap())
            .build()
            .unwrap();
        drop(pool);
        let mut stopped: Vec<usize> = stop_rx.iter().take(2).collect();
        stopped.sort_unstable();
        assert_eq!(stopped, [0, 1]);
        assert_eq!(starts.get(), 2);
    });
}

#[test]
fn static_properties() {
    fn clone_send_sync_debug<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}
    fn send_sync_debug<T: Send + Sync + std::fmt::Debug>() {}
    fn error<T: std::error::Error + Send + Sync + 'static>() {}
    fn debug<T: std::fmt::Debug>() {}
    clone_send_sync_debug::<Pool>();
    send_sync_debug::<Task<u8>>();
    error::<JoinError>();
    debug::<Builder>();
    debug::<Scope<'static>>();
}

#[test]
fn debug_output() {
    timed(|| {
        let pool = Pool::builder().threads(2).build().unwrap();
        let text = format!("{pool:?}");
        assert!(text.contains("Pool"), "{text}");
        assert!(text.contains("threads: 2"), "{text}");
        let builder = Pool::builder().threads(4).thread_name(|i| i.to_string());
        let text = format!("{builder:?}");
        assert!(
            text.contains("Builder") && text.contains("threads"),
            "{text}"
        );
        let task = pool.spawn(|| 1);
        assert!(format!("{task:?}").contains("Task"));
        task.wait().unwrap();
        pool.scope(|s| assert!(format!("{s:?}").contains("Scope")));
    });
}

#[test]
fn clones_share_the_threads() {
    timed(|| {
        let pool = Pool::builder()
            .threads(2)
            .detect_blocking(false)
            .build()
            .unwrap();
        let clone = pool.clone();
        let (a, _) = all_workers(&pool);
        let (b, _) = all_workers(&clone);
        assert_eq!(a, b);
        // And are usable from other threads.
        let h = thread::spawn(move || clone.spawn(|| 9).wait().unwrap());
        assert_eq!(h.join().unwrap(), 9);
    });
}
