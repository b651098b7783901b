//! Fork-join: [`join`](crate::join) runs two closures, potentially in
//! parallel, and returns both results.
//!
//! On a worker, `join(a, b)` pushes `b` on the worker's own deque (where an
//! idle worker may steal it), runs `a`, then takes `b` back: it pops its
//! deque, running whatever was pushed above `b` (jobs `a` spawned), until it
//! pops `b` itself and runs it inline, or finds the deque empty (`b` was
//! stolen) and waits for `b`'s latch, running other jobs meanwhile.
//!
//! Both closures always run to completion before `join` returns. If either
//! panicked, the panic is re-raised after both finished (`a`'s first).

use std::panic::{self, AssertUnwindSafe};

use crate::job::{JobResult, StackJob};
use crate::latch::Latch;
use crate::worker::WorkerThread;

/// `join` on the worker it runs on.
pub(crate) fn join_on_worker<A, B, RA, RB>(worker: &WorkerThread, a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let job_b = StackJob::new(b, Latch::new(worker.parker()));
    // SAFETY: `job_b` stays on this stack until it is popped back (and run
    // inline) or its latch is set: every path below waits for one of them.
    let job_b_ref = unsafe { job_b.as_job_ref() };
    worker.push(job_b_ref);

    let result_a = panic::catch_unwind(AssertUnwindSafe(a));

    let result_b = loop {
        if job_b.latch.probe() {
            break job_b.into_job_result();
        }
        match worker.pop() {
            Some(job) if job == job_b_ref => break JobResult::call(|| job_b.run_inline()),
            Some(job) => worker.execute(job),
            None => {
                worker.wait_until(|| job_b.latch.probe());
                break job_b.into_job_result();
            }
        }
    };

    match result_a {
        Ok(ra) => (ra, result_b.into_return_value()),
        Err(payload) => panic::resume_unwind(payload),
    }
}
