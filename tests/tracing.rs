//! Feature `tracing`: a job runs inside the span current where it was
//! spawned (`spawn`, `spawn_blocking`, `try_spawn`, `Permit::spawn`), and
//! `join` halves, `scope` jobs and `install` bodies inside the span current
//! where `join`, `scope` or `install` was called, on whatever thread runs
//! them. A global subscriber (this binary's own process) gives the spans
//! ids, which the jobs compare with their `Span::current()`.

#![cfg(feature = "tracing")]

mod common;

use std::sync::OnceLock;

use common::timed;
use offload::Pool;
use tracing::span::Id;
use tracing::{info_span, Span};

fn subscriber() {
    static SET: OnceLock<()> = OnceLock::new();
    SET.get_or_init(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry())
            .expect("the only global subscriber of this binary");
    });
}

fn current() -> Option<Id> {
    Span::current().id()
}

/// A 2-thread pool (detection off: nothing here blocks).
fn pool(prefix: &'static str) -> Pool {
    common::pool(2, prefix)
}

#[test]
fn spawned_jobs_run_in_the_spawners_span() {
    subscriber();
    timed(|| {
        let pool = pool("span-spawn");
        let span = info_span!("request", id = 1);
        let expected = span.id();
        assert!(expected.is_some());
        let _in_request = span.enter();
        assert_eq!(pool.spawn(current).wait().unwrap(), expected);
        assert_eq!(pool.spawn_blocking(current).wait().unwrap(), expected);
        assert_eq!(pool.try_spawn(current).unwrap().wait().unwrap(), expected);
        let permit = pool.try_reserve().unwrap();
        assert_eq!(permit.spawn(current).wait().unwrap(), expected);
        // The free functions, from outside any pool (the global pool).
        assert_eq!(offload::spawn(current).wait().unwrap(), expected);
        assert_eq!(offload::spawn_blocking(current).wait().unwrap(), expected);
        // Awaited on an executor too.
        assert_eq!(
            futures::executor::block_on(pool.spawn(current)).unwrap(),
            expected
        );
    });
}

#[test]
fn a_job_outside_any_span_runs_outside_any_span() {
    subscriber();
    timed(|| {
        let pool = pool("span-none");
        assert_eq!(pool.spawn(current).wait().unwrap(), None);
        // Not the span of whatever ran on the worker before.
        let span = info_span!("earlier");
        let _ = span.in_scope(|| pool.spawn(current).wait());
        assert_eq!(pool.spawn(current).wait().unwrap(), None);
    });
}

#[test]
fn join_halves_scope_jobs_and_install_bodies_run_in_the_callers_span() {
    subscriber();
    timed(|| {
        let pool = pool("span-fork");
        let span = info_span!("batch");
        let expected = span.id();
        let _in_batch = span.enter();
        // From outside the pool: every part runs on a worker.
        assert_eq!(
            pool.join(current, current),
            (expected.clone(), expected.clone())
        );
        let mut seen = vec![None; 8];
        pool.scope(|s| {
            for slot in seen.iter_mut() {
                s.spawn(move |_| *slot = current());
            }
        });
        assert!(seen.iter().all(|id| *id == expected), "{seen:?}");
        assert_eq!(pool.install(current), expected);
        // Inside a job, in a span the job entered: join and scope there
        // carry that span to whichever worker runs their parts.
        let (inner_id, parts) = pool
            .spawn(|| {
                let inner = info_span!("inner");
                let _in_inner = inner.enter();
                let (a, b) = offload::join(current, current);
                let mut scoped = None;
                offload::scope(|s| s.spawn(|_| scoped = current()));
                (inner.id(), [a, b, scoped])
            })
            .wait()
            .unwrap();
        assert!(inner_id.is_some());
        assert!(parts.iter().all(|id| *id == inner_id), "{parts:?}");
    });
}
