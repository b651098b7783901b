//! The free functions `offload::spawn`, `join` and `scope` use the global
//! pool; `Builder::build_global` configures it once. (Each test file is its
//! own process, so this file owns its global pool.)

mod common;

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, OnceLock};
use std::thread;

use common::{pool, timed};
use offload::Pool;

const GLOBAL_THREADS: usize = 3;

/// Every test calls this first, so the first `build_global` of the process
/// comes before any other use of the global pool, whatever the test order.
fn init_global() -> &'static io::Result<()> {
    static INIT: OnceLock<io::Result<()>> = OnceLock::new();
    INIT.get_or_init(|| {
        Pool::builder()
            .threads(GLOBAL_THREADS)
            .thread_name(|i| format!("global-{i}"))
            .build_global()
    })
}

fn name() -> String {
    thread::current().name().unwrap_or("").to_owned()
}

#[test]
fn build_global_before_first_use_succeeds() {
    assert!(init_global().is_ok(), "{:?}", init_global());
    timed(|| {
        let n = offload::spawn(name).wait().unwrap();
        assert!(n.starts_with("global-"), "{n}");
    });
}

#[test]
fn build_global_after_the_global_pool_exists() {
    assert!(init_global().is_ok());
    timed(|| {
        offload::spawn(|| ()).wait().unwrap();
        let err = Pool::builder().threads(1).build_global().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        // Also when racing from several threads: every one is refused.
        let errs: Vec<_> = (0..4)
            .map(|_| thread::spawn(|| Pool::builder().threads(1).build_global()))
            .map(|h| h.join().unwrap())
            .collect();
        for e in errs {
            assert_eq!(e.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        }
        // The global pool is unchanged: GLOBAL_THREADS jobs meet at a
        // barrier, so they run on that many distinct global workers.
        let names = Mutex::new(HashSet::new());
        let barrier = Barrier::new(GLOBAL_THREADS);
        offload::scope(|s| {
            for _ in 0..GLOBAL_THREADS {
                s.spawn(|_| {
                    barrier.wait();
                    names.lock().unwrap().insert(name());
                });
            }
        });
        let names = names.into_inner().unwrap();
        assert!(names.iter().all(|n| n.starts_with("global-")), "{names:?}");
        assert_eq!(names.len(), GLOBAL_THREADS);
    });
}

#[test]
fn spawn_on_the_global_pool() {
    assert!(init_global().is_ok());
    timed(|| {
        let tasks: Vec<_> = (0..1000u64)
            .map(|i| offload::spawn(move || i * 2))
            .collect();
        let sum: u64 = pollster::block_on(futures::future::join_all(tasks))
            .into_iter()
            .map(Result::unwrap)
            .sum();
        assert_eq!(sum, 999 * 1000);
    });
}

#[test]
fn join_and_scope_from_outside_use_the_global_pool() {
    assert!(init_global().is_ok());
    timed(|| {
        let (a, b) = offload::join(name, name);
        assert!(a.starts_with("global-") && b.starts_with("global-"));
        let mut names = vec![String::new(); 8];
        offload::scope(|s| {
            for slot in names.iter_mut() {
                s.spawn(move |_| *slot = name());
            }
        });
        assert!(names.iter().all(|n| n.starts_with("global-")), "{names:?}");
    });
}

#[test]
fn free_functions_on_another_pools_worker_use_that_pool() {
    assert!(init_global().is_ok());
    timed(|| {
        let pool = pool(1, "local");
        let (joined, scoped, spawned) = pool.install(|| {
            let joined = offload::join(name, name);
            let mut scoped = String::new();
            offload::scope(|s| s.spawn(|_| scoped = name()));
            // Like join and scope (and rayon's and tokio's spawn): the
            // current pool.
            let spawned = offload::spawn(name).wait().unwrap();
            (joined, scoped, spawned)
        });
        assert_eq!(joined, ("local-0".to_owned(), "local-0".to_owned()));
        assert_eq!(scoped, "local-0");
        assert_eq!(spawned, "local-0");
    });
}

fn fib(n: u32) -> u64 {
    if n < 2 {
        n.into()
    } else {
        let (a, b) = offload::join(|| fib(n - 1), || fib(n - 2));
        a + b
    }
}

#[test]
fn nested_free_functions_inside_global_jobs() {
    assert!(init_global().is_ok());
    timed(|| {
        assert_eq!(offload::spawn(|| fib(20)).wait().unwrap(), 6765);
        let counter = AtomicUsize::new(0);
        offload::scope(|s| {
            for _ in 0..10 {
                s.spawn(|_| {
                    let (a, b) = offload::join(|| 1, || 2);
                    counter.fetch_add(a + b, Ordering::Relaxed);
                });
            }
        });
        assert_eq!(counter.load(Ordering::Relaxed), 30);
    });
}

#[test]
fn pool_global_is_a_handle_to_the_configured_global_pool() {
    assert!(init_global().is_ok());
    timed(|| {
        let global = Pool::global();
        assert_eq!(global.threads(), GLOBAL_THREADS);
        assert!(global.spawn(name).wait().unwrap().starts_with("global-"));
        // The free functions and the handle see the same counters.
        let before = global.metrics().spawned();
        let tasks: Vec<_> = (0..10).map(|i| offload::spawn(move || i)).collect();
        for task in tasks {
            task.wait().unwrap();
        }
        assert!(global.metrics().spawned() >= before + 10);
        // try_spawn and try_reserve work on it; an unbounded global pool
        // admits everything.
        let task = global.try_spawn(|| 6 * 7).expect("admitted");
        assert_eq!(pollster::block_on(task).unwrap(), 42);
        let permit = global.try_reserve().expect("admitted");
        assert_eq!(permit.spawn(name).wait().unwrap().get(..7), Some("global-"));
        // Dropping handles never stops the global pool.
        drop(global);
        drop(Pool::global());
        assert_eq!(offload::spawn(|| 1).wait().unwrap(), 1);
    });
}
