//! `Builder::worker_priority`: the workers' nice value is the building
//! thread's (the default, `Inherit`) or that plus an increment, or their
//! policy `SCHED_IDLE`; every worker's, and only theirs. Linux only:
//! elsewhere the setting has no effect.

#![cfg(target_os = "linux")]

mod common;

use common::{on_every_worker, timed};
use offload::{Pool, WorkerPriority};

/// The calling thread's nice value.
fn nice() -> i32 {
    // SAFETY: getpriority has no preconditions; on Linux, PRIO_PROCESS with
    // `who` 0 reads the calling thread's nice value. No value a test thread
    // can have is ambiguous with the -1 error return: the tests compare it.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

/// The calling thread's scheduling policy.
fn policy() -> i32 {
    // SAFETY: no preconditions; pid 0 is the calling thread on Linux.
    unsafe { libc::sched_getscheduler(0) }
}

#[test]
fn default_workers_inherit_the_builders_priority() {
    timed(|| {
        let caller = nice();
        let pool = Pool::builder().threads(3).build().unwrap();
        assert_eq!(on_every_worker(&pool, nice), [caller; 3]);
        assert_eq!(on_every_worker(&pool, policy), [policy(); 3]);
        let ten = Pool::builder()
            .threads(3)
            .worker_priority(WorkerPriority::Nice(10))
            .build()
            .unwrap();
        assert_eq!(on_every_worker(&ten, nice), [(caller + 10).min(19); 3]);
        assert_eq!(nice(), caller, "the building thread keeps its priority");
    });
}

#[test]
fn explicit_increments_are_relative_and_clamped() {
    timed(|| {
        let caller = nice();
        let same = Pool::builder()
            .threads(2)
            .worker_priority(WorkerPriority::Inherit)
            .build()
            .unwrap();
        assert_eq!(on_every_worker(&same, nice), [caller; 2]);
        let three = Pool::builder()
            .threads(2)
            .worker_priority(WorkerPriority::Nice(3))
            .build()
            .unwrap();
        assert_eq!(on_every_worker(&three, nice), [(caller + 3).min(19); 2]);
        let most = Pool::builder()
            .threads(1)
            .worker_priority(WorkerPriority::Nice(100))
            .build()
            .unwrap();
        assert_eq!(on_every_worker(&most, nice), [19]);
        assert_eq!(nice(), caller);
    });
}

#[test]
fn a_spawned_job_does_not_change_other_threads() {
    timed(|| {
        let caller = nice();
        let pool = Pool::builder()
            .threads(1)
            .worker_priority(WorkerPriority::Nice(7))
            .build()
            .unwrap();
        // A thread started by a job inherits the worker's nice value, as any
        // thread inherits its creator's; the caller's is untouched.
        let child = pool
            .spawn(|| std::thread::spawn(nice).join().unwrap())
            .wait()
            .unwrap();
        assert_eq!(child, (caller + 7).min(19));
        assert_eq!(nice(), caller);
    });
}

#[test]
fn idle_workers_use_sched_idle_and_the_caller_does_not() {
    timed(|| {
        let (caller_policy, caller_nice) = (policy(), nice());
        let pool = Pool::builder()
            .threads(2)
            .worker_priority(WorkerPriority::Idle)
            .build()
            .unwrap();
        assert_eq!(on_every_worker(&pool, policy), [libc::SCHED_IDLE; 2]);
        assert_eq!((policy(), nice()), (caller_policy, caller_nice));
    });
}
