//! Blocking a thread on a future: [`Task::wait`] and
//! [`Task::wait_timeout`], and `Reserve::wait` (through
//! [`block_on_future_stepping_out`]). On a worker the wait runs other jobs
//! of its pool meanwhile (`WorkerThread::wait_until_deadline_stepping_out`);
//! on any other thread it spins, then parks on the thread's parker, which
//! the future's waker unparks.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::JoinError;
use crate::sched::worker::{spin_then_park, thread_parker, WorkerThread};
use crate::sched::worker_loop::SPIN_ROUNDS;
use crate::sync::StdArc;
use crate::task::handoff::{Task, WaitPoll};

// Listed under `Task` in the docs, beside the rest of its methods.
impl<T> Task<T> {
    /// Waits, as [`wait`](Task::wait) does, for at most `timeout`: Python's
    /// `future.result(timeout=...)`. Returns `None` if the job has not
    /// finished in time; the Task is then unchanged, to await or wait on
    /// again, or to drop (which cancels the job, see
    /// [`is_cancelled`](crate::is_cancelled)). Once it has returned
    /// `Some`, the result is taken: awaiting or waiting on the Task again
    /// panics, as polling a finished future may.
    ///
    /// A zero `timeout` only looks; one too large for an [`Instant`](std::time::Instant)
    /// waits as `wait` does. On a worker, which runs other jobs while it
    /// waits, the deadline is checked between those jobs: a long one it
    /// picked up delays the return by up to its own length. Async callers
    /// use their executor's timeout around `.await` instead.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let pool = offload::Pool::builder().threads(1).build().unwrap();
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// let mut task = pool.spawn(move || gate.recv().map(|()| 42).unwrap());
    /// assert!(task.wait_timeout(Duration::from_millis(10)).is_none());
    /// release.send(()).unwrap();
    /// assert_eq!(task.wait().unwrap(), 42); // still usable
    /// ```
    pub fn wait_timeout(&mut self, timeout: std::time::Duration) -> Option<Result<T, JoinError>> {
        if let Some(output) = self.try_take() {
            return Some(output);
        }
        block_on_future(WaitPoll(self), |wait| wait.0.is_finished(), Some(timeout))
    }

    /// Blocks the calling thread until the job has finished and returns its
    /// result: Python's `Future.result()`.
    ///
    /// Called on a worker of any offload pool, the worker keeps running other
    /// jobs while it waits, so waiting on a job of the same pool (even a
    /// 1-thread pool) does not deadlock. Called on an async executor's
    /// thread, it blocks that thread: `.await` the Task there instead.
    ///
    /// ```
    /// let pool = offload::Pool::new();
    /// let inner = pool.clone();
    /// let sum = pool.spawn(move || {
    ///     let halves = [inner.spawn(|| 1 + 2), inner.spawn(|| 3 + 4)];
    ///     halves.into_iter().map(|t| t.wait().unwrap()).sum::<i32>()
    /// });
    /// assert_eq!(sum.wait().unwrap(), 10);
    /// ```
    pub fn wait(mut self) -> Result<T, JoinError> {
        if let Some(output) = self.try_take() {
            return output;
        }
        block_on_future(WaitPoll(&mut self), |wait| wait.0.is_finished(), None)
            .expect("an untimed wait resolves")
    }
}

/// Blocks until `future` resolves, or `timeout` has passed (`None` then):
/// `Task::wait` and `wait_timeout`, `Reserve::wait`. `is_ready` says
/// whether a poll would resolve now, without a waker; whoever makes it true
/// wakes the waker that the last poll registered (this thread's parker).
/// On a worker, runs other jobs meanwhile; a timeout too large for an
/// `Instant` waits without one.
pub(crate) fn block_on_future<F>(
    future: F,
    is_ready: impl Fn(&F) -> bool,
    timeout: Option<Duration>,
) -> Option<F::Output>
where
    F: Future + Unpin,
{
    block_on_future_stepping_out(future, is_ready, timeout, |_| {}, |_| {})
}

/// [`block_on_future`], calling `step_out` before each job a waiting
/// worker runs and `step_in` after (see
/// [`WorkerThread::wait_until_deadline_stepping_out`]).
pub(crate) fn block_on_future_stepping_out<F>(
    mut future: F,
    is_ready: impl Fn(&F) -> bool,
    timeout: Option<Duration>,
    step_out: impl Fn(&F),
    step_in: impl Fn(&F),
) -> Option<F::Output>
where
    F: Future + Unpin,
{
    let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
    let past = || deadline.is_some_and(|deadline| Instant::now() >= deadline);
    WorkerThread::with_current(|worker| {
        let parker = match worker {
            Some(worker) => StdArc::clone(worker.parker()),
            None => thread_parker(),
        };
        let waker = Waker::from(StdArc::clone(&parker));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(output) = Pin::new(&mut future).poll(&mut cx) {
                return Some(output);
            }
            if past() {
                return None;
            }
            match worker {
                Some(worker) => {
                    worker.wait_until_deadline_stepping_out(
                        || is_ready(&future),
                        deadline,
                        || step_out(&future),
                        || step_in(&future),
                    );
                }
                None => spin_then_park(&parker, || is_ready(&future), deadline, SPIN_ROUNDS),
            }
        }
    })
}
