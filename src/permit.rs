//! The public face of a bounded queue: [`Pool::try_spawn`],
//! [`Pool::try_spawn_blocking`], [`Pool::reserve`] and [`Pool::try_reserve`]
//! (an `impl Pool` block, through `Pool::registry`), [`TrySpawnError`],
//! [`Reserve`], [`Permit`], [`TryReserveError`] and [`ShutdownError`].

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::blocking::spares::Refused;
use crate::flow::slots::{Acquire, Slot};
#[cfg(doc)]
use crate::pool::Builder;
use crate::pool::{keeping_alive, spawn_with_slot, Pool};
use crate::task::handoff::{new_task, Task};

impl Pool {
    /// Runs `job` on a spare thread as [`spawn_blocking`](Pool::spawn_blocking)
    /// does, if the queue of blocking jobs has room, or gives it back at
    /// once.
    ///
    /// The job is refused when [`max_blocking_threads`](Builder::max_blocking_threads)
    /// blocking jobs run and [`max_queued_blocking`](Builder::max_queued_blocking)
    /// more wait for a spare thread, or after shutdown (without
    /// `max_queued_blocking` only then). A refusal never blocks and
    /// allocates nothing: the error hands the closure back
    /// ([`TrySpawnError::into_inner`]), to run elsewhere, retry, or answer
    /// "busy".
    ///
    /// ```
    /// use std::sync::mpsc;
    ///
    /// let pool = offload::Pool::builder()
    ///     .max_blocking_threads(1)
    ///     .max_queued_blocking(1)
    ///     .build()
    ///     .unwrap();
    /// let (release, gate) = mpsc::channel::<()>();
    /// let (started_tx, started) = mpsc::channel();
    /// // Holds the one spare thread for blocking jobs...
    /// let running = pool.spawn_blocking(move || {
    ///     started_tx.send(()).unwrap();
    ///     gate.recv().unwrap();
    /// });
    /// started.recv().unwrap();
    /// // ...so one more job waits for it, and the next is refused.
    /// let queued = pool.try_spawn_blocking(|| 1).expect("one place in the queue");
    /// let refused = pool.try_spawn_blocking(|| 2).unwrap_err();
    /// assert!(refused.is_full());
    /// release.send(()).unwrap();
    /// assert_eq!(queued.wait().unwrap(), 1);
    /// # running.wait().unwrap();
    /// ```
    ///
    /// # Errors
    /// [`TrySpawnError`]: [`is_full`](TrySpawnError::is_full) or
    /// [`is_shutdown`](TrySpawnError::is_shutdown), with the job inside.
    pub fn try_spawn_blocking<F, T>(&self, job: F) -> Result<Task<T>, TrySpawnError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let registry = self.registry();
        if registry.is_terminating() {
            registry.tally().refused();
            return Err(TrySpawnError::shutdown(job));
        }
        let mut job = Some(job);
        let mut task = None;
        let admitted = registry.spares().try_submit(registry, || {
            let job = job.take().expect("made once");
            // Only an admitted job takes a handle and its spawner's
            // context: a refusal allocates and clones nothing.
            let (cell, made) = new_task(
                keeping_alive(registry, job),
                None,
                registry.tally().spawned(self.priority()),
                self.priority(),
            );
            task = Some(made);
            cell
        });
        match admitted {
            Ok(()) => Ok(task.expect("made when admitted")),
            Err(refused) => {
                registry.tally().refused();
                let job = job.take().expect("not made when refused");
                Err(match refused {
                    Refused::Full => TrySpawnError::full(job),
                    Refused::Shutdown => TrySpawnError::shutdown(job),
                })
            }
        }
    }

    /// Queues `job` if the pool's queue has room, or gives it back at once.
    ///
    /// On a bounded pool ([`Builder::max_queued`]) the job is refused when
    /// `max_queued` jobs are waiting to start, or when [`reserve`](Pool::reserve)
    /// waiters are in line for the next free slot (they came first). An
    /// unbounded pool refuses only after shutdown. A refusal never blocks
    /// and allocates nothing: the error hands the closure back
    /// ([`TrySpawnError::into_inner`]), to run elsewhere, retry, or answer
    /// "busy" (an HTTP 503).
    ///
    /// ```
    /// // Detection off: otherwise a helper would take the queued job while
    /// // `running` sits in `recv`.
    /// let pool = offload::Pool::builder()
    ///     .threads(1)
    ///     .max_queued(1)
    ///     .detect_blocking(false)
    ///     .build()
    ///     .unwrap();
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// let (started_tx, started) = std::sync::mpsc::channel();
    /// let running = pool.spawn(move || {
    ///     started_tx.send(()).unwrap();
    ///     gate.recv().unwrap();
    /// });
    /// started.recv().unwrap(); // the worker is busy; the queue is empty
    /// let queued = pool.try_spawn(|| 1).expect("one slot");
    /// let refused = pool.try_spawn(|| 2).unwrap_err();
    /// assert!(refused.is_full());
    /// release.send(()).unwrap();
    /// assert_eq!(queued.wait().unwrap(), 1);
    /// # running.wait().unwrap();
    /// ```
    ///
    /// # Errors
    /// [`TrySpawnError`]: [`is_full`](TrySpawnError::is_full) or
    /// [`is_shutdown`](TrySpawnError::is_shutdown), with the job inside.
    pub fn try_spawn<F, T>(&self, job: F) -> Result<Task<T>, TrySpawnError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if self.registry().is_terminating() {
            self.registry().tally().refused();
            return Err(TrySpawnError::shutdown(job));
        }
        let slot = match self.registry().slots() {
            None => None,
            Some(slots) => match Slot::try_acquire(slots) {
                Some(slot) => Some(slot),
                None => {
                    self.registry().tally().refused();
                    return Err(TrySpawnError::full(job));
                }
            },
        };
        Ok(spawn_with_slot(self.registry(), self.priority(), job, slot))
    }

    /// Waits for a free slot in the pool's queue and reserves it: a future
    /// that any executor can await, holding no thread while it waits, which
    /// resolves to a [`Permit`](crate::Permit) to spawn one job with.
    /// Waiters are served first come, first served (a blocking
    /// [`Reserve::wait`] inside a job steps out of the line while its
    /// worker runs another job, and keeps its place); a slot frees when a
    /// queued job starts or is cancelled, or a permit is dropped unused.
    /// On an unbounded pool it resolves at once.
    ///
    /// This is backpressure: a producer that awaits `reserve` before each
    /// job (an accept loop, a reader of a big file) slows down to the pool's
    /// pace instead of queueing without bound. Synchronous producers call
    /// [`Reserve::wait`].
    ///
    /// ```
    /// # pollster::block_on(async {
    /// let pool = offload::Pool::builder().threads(2).max_queued(4).build().unwrap();
    /// let mut tasks = Vec::new();
    /// for i in 0..32u64 {
    ///     let permit = pool.reserve().await.expect("the pool runs");
    ///     tasks.push(permit.spawn(move || i * 2));
    /// }
    /// let mut sum = 0;
    /// for task in tasks {
    ///     sum += task.await.unwrap();
    /// }
    /// assert_eq!(sum, 992);
    /// # });
    /// ```
    ///
    /// # Errors
    /// The future resolves to [`ShutdownError`](crate::ShutdownError) once
    /// the pool is shut down, also while it waits.
    pub fn reserve(&self) -> Reserve {
        Reserve::new(self.clone())
    }

    /// Reserves a free slot in the pool's queue at once, or refuses: the
    /// form of [`reserve`](Pool::reserve) that never waits, for a server
    /// that sheds a request before it reads its body (an HTTP 503).
    ///
    /// It refuses as [`try_spawn`](Pool::try_spawn) does: when
    /// [`max_queued`](Builder::max_queued) jobs (and unused permits) are
    /// waiting to start, or `reserve` waiters are in line (they came
    /// first), or the pool has been shut down. On an unbounded pool it
    /// refuses only after shutdown. A refusal never blocks, allocates
    /// nothing and counts in [`Metrics::refused`](crate::Metrics::refused).
    ///
    /// ```
    /// // Detection off: otherwise a helper would take the queued job while
    /// // `running` sits in `recv`.
    /// let pool = offload::Pool::builder()
    ///     .threads(1)
    ///     .max_queued(1)
    ///     .detect_blocking(false)
    ///     .build()
    ///     .unwrap();
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// let (started_tx, started) = std::sync::mpsc::channel();
    /// let running = pool.spawn(move || {
    ///     started_tx.send(()).unwrap();
    ///     gate.recv().unwrap();
    /// });
    /// started.recv().unwrap(); // the worker is busy; the queue is empty
    /// let permit = pool.try_reserve().expect("one slot");
    /// assert!(pool.try_reserve().unwrap_err().is_full()); // shed this request
    /// let queued = permit.spawn(|| 1); // the body was read: run it
    /// release.send(()).unwrap();
    /// assert_eq!(queued.wait().unwrap(), 1);
    /// # running.wait().unwrap();
    /// ```
    ///
    /// # Errors
    /// [`TryReserveError`]: [`is_full`](TryReserveError::is_full) or
    /// [`is_shutdown`](TryReserveError::is_shutdown).
    pub fn try_reserve(&self) -> Result<Permit, TryReserveError> {
        if self.registry().is_terminating() {
            self.registry().tally().refused();
            return Err(TryReserveError::shutdown());
        }
        let slot = match self.registry().slots() {
            None => None,
            Some(slots) => match Slot::try_acquire(slots) {
                Some(slot) => Some(slot),
                None => {
                    self.registry().tally().refused();
                    return Err(TryReserveError::full());
                }
            },
        };
        Ok(Permit::new(self.clone(), slot))
    }
}

/// Why [`Pool::try_spawn`] refused a job; it carries the job back, unrun.
///
/// ```
/// let pool = offload::Pool::builder().threads(1).build().unwrap();
/// pool.shutdown();
/// let err = pool.try_spawn(|| 6 * 7).unwrap_err();
/// assert!(err.is_shutdown());
/// assert_eq!(err.to_string(), "offload: the pool has been shut down");
/// let job = err.into_inner(); // the closure, never run
/// assert_eq!(job(), 42);
/// ```
pub struct TrySpawnError<F> {
    job: F,
    full: bool,
}

impl<F> TrySpawnError<F> {
    pub(crate) fn full(job: F) -> Self {
        Self { job, full: true }
    }

    pub(crate) fn shutdown(job: F) -> Self {
        Self { job, full: false }
    }

    /// The pool's queue held [`max_queued`](crate::Builder::max_queued) jobs
    /// waiting to start (or a [`reserve`](Pool::reserve) waiter was first in
    /// line for the next free slot); from [`Pool::try_spawn_blocking`], the
    /// blocking queue held [`max_queued_blocking`](crate::Builder::max_queued_blocking).
    ///
    /// See the example on [`TrySpawnError`].
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The pool was shut down.
    ///
    /// See the example on [`TrySpawnError`].
    #[must_use]
    pub fn is_shutdown(&self) -> bool {
        !self.full
    }

    /// The job that was refused, never run.
    ///
    /// See the example on [`TrySpawnError`].
    pub fn into_inner(self) -> F {
        self.job
    }
}

impl<F> fmt::Debug for TrySpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrySpawnError")
            .field("reason", &if self.full { "full" } else { "shutdown" })
            .finish_non_exhaustive()
    }
}

impl<F> fmt::Display for TrySpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.full {
            "offload: the pool's queue is full"
        } else {
            "offload: the pool has been shut down"
        })
    }
}

impl<F> Error for TrySpawnError<F> {}

/// Why [`Pool::try_reserve`] refused to reserve a queue slot.
///
/// ```
/// let pool = offload::Pool::builder().threads(1).max_queued(1).build().unwrap();
/// let permit = pool.try_reserve().expect("a free slot");
/// let err = pool.try_reserve().unwrap_err(); // the one slot is taken
/// assert!(err.is_full());
/// drop(permit);
/// pool.shutdown();
/// let err = pool.try_reserve().unwrap_err();
/// assert!(err.is_shutdown());
/// assert_eq!(err.to_string(), "offload: the pool has been shut down");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TryReserveError {
    full: bool,
}

impl TryReserveError {
    pub(crate) fn full() -> Self {
        Self { full: true }
    }

    pub(crate) fn shutdown() -> Self {
        Self { full: false }
    }

    /// The pool's queue held [`max_queued`](crate::Builder::max_queued) jobs
    /// waiting to start (unused permits included), or a
    /// [`reserve`](Pool::reserve) waiter was first in line for the next
    /// free slot.
    ///
    /// See the example on [`TryReserveError`].
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The pool was shut down.
    ///
    /// See the example on [`TryReserveError`].
    #[must_use]
    pub fn is_shutdown(&self) -> bool {
        !self.full
    }
}

impl fmt::Display for TryReserveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.full {
            "offload: the pool's queue is full"
        } else {
            "offload: the pool has been shut down"
        })
    }
}

impl Error for TryReserveError {}

/// [`Pool::reserve`] found the pool shut down (before or while waiting).
///
/// ```
/// # pollster::block_on(async {
/// let pool = offload::Pool::builder().threads(1).max_queued(4).build().unwrap();
/// pool.shutdown();
/// let err: offload::ShutdownError = pool.reserve().await.unwrap_err();
/// assert_eq!(err.to_string(), "offload: the pool has been shut down");
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownError(());

impl ShutdownError {
    pub(crate) fn new() -> Self {
        Self(())
    }
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("offload: the pool has been shut down")
    }
}

impl Error for ShutdownError {}

/// A queue slot of a pool, reserved by [`Pool::reserve`]: spawn one job
/// with it ([`Permit::spawn`]), or drop it to free the slot.
///
/// A permit holds a handle to its pool, so it may be sent to any thread and
/// kept for as long as needed; while it exists the slot counts as taken.
///
/// ```
/// # pollster::block_on(async {
/// let pool = offload::Pool::builder().threads(2).max_queued(64).build().unwrap();
/// let permit = pool.reserve().await.expect("the pool runs");
/// let task = permit.spawn(|| 6 * 7);
/// assert_eq!(task.await.unwrap(), 42);
/// # });
/// ```
#[must_use = "dropping a Permit frees its slot unused"]
pub struct Permit {
    pool: Pool,
    /// `None` for an unbounded pool.
    slot: Option<Slot>,
}

impl Permit {
    pub(crate) fn new(pool: Pool, slot: Option<Slot>) -> Self {
        Self { pool, slot }
    }

    /// Queues `job` in the reserved slot and returns its [`Task`], as
    /// [`Pool::spawn`] does. If the pool has been shut down meanwhile, the
    /// Task is already cancelled (and the slot freed).
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(1).max_queued(4).build().unwrap();
    /// let permit = pool.reserve().wait().unwrap();
    /// assert_eq!(permit.spawn(|| 6 * 7).wait().unwrap(), 42);
    /// let late = pool.reserve().wait().unwrap();
    /// pool.shutdown();
    /// assert!(late.spawn(|| 1).wait().unwrap_err().is_cancelled());
    /// ```
    pub fn spawn<F, T>(self, job: F) -> Task<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        spawn_with_slot(self.pool.registry(), self.pool.priority(), job, self.slot)
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("pool", &self.pool)
            .field("bounded", &self.slot.is_some())
            .finish()
    }
}

/// The future of [`Pool::reserve`]: resolves to a [`Permit`] once a queue
/// slot is free for it, first come first served, or to a [`ShutdownError`]
/// once the pool is shut down. It holds no thread while it waits; dropping
/// it leaves the line.
///
/// ```
/// let pool = offload::Pool::builder().threads(1).max_queued(2).build().unwrap();
/// let reserve: offload::Reserve = pool.reserve(); // first in line
/// let permit = pollster::block_on(reserve).unwrap();
/// assert_eq!(permit.spawn(|| 3).wait().unwrap(), 3);
/// pool.shutdown();
/// ```
#[must_use = "a Reserve does nothing unless awaited"]
pub struct Reserve {
    pool: Pool,
    /// `None` for an unbounded pool, and once resolved.
    acquire: Option<Acquire>,
    done: bool,
}

impl Reserve {
    pub(crate) fn new(pool: Pool) -> Self {
        let acquire = pool
            .registry()
            .slots()
            .map(|slots| Acquire::new(slots.clone()));
        Self {
            pool,
            acquire,
            done: false,
        }
    }

    /// Blocks the calling thread until the reservation resolves: the form
    /// for synchronous producers (a thread reading a file, an accept loop
    /// on a plain socket). On a worker of any offload pool, the worker runs
    /// other jobs while it waits, as [`Task::wait`] does; jobs starting is
    /// what frees slots. While the worker runs one of those jobs, this wait
    /// steps out of the line (keeping its place; a slot freed meanwhile goes
    /// to the next waiter, and a `try_spawn` may take it), since it could
    /// not take a slot until that job returns: so a job that waits for a slot too, or for a Task whose job
    /// does, cannot deadlock the pool on its own queue. (Awaiting the
    /// future with a foreign `block_on` inside a job has no such help: use
    /// `wait`.)
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(2).max_queued(8).build().unwrap();
    /// let tasks: Vec<_> = (0..100u64)
    ///     .map(|i| pool.reserve().wait().unwrap().spawn(move || i * i))
    ///     .collect();
    /// let sum: u64 = tasks.into_iter().map(|t| t.wait().unwrap()).sum();
    /// assert_eq!(sum, 328_350);
    /// ```
    pub fn wait(self) -> Result<Permit, ShutdownError> {
        self.block(None).expect("an untimed wait resolves")
    }

    /// [`wait`](Self::wait), giving up after `timeout`: `None` then, and
    /// the reservation is dropped (the line left). On a worker the deadline
    /// is checked between the jobs it runs meanwhile, as for
    /// [`Task::wait_timeout`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = offload::Pool::builder().threads(1).max_queued(4).build().unwrap();
    /// match pool.reserve().wait_timeout(Duration::from_secs(5)) {
    ///     Some(Ok(permit)) => assert_eq!(permit.spawn(|| 1).wait().unwrap(), 1),
    ///     Some(Err(shut_down)) => unreachable!("{shut_down}"),
    ///     None => unreachable!("the queue is empty: a slot is free at once"),
    /// }
    /// pool.shutdown();
    /// ```
    pub fn wait_timeout(self, timeout: Duration) -> Option<Result<Permit, ShutdownError>> {
        self.block(Some(timeout))
    }

    fn block(self, timeout: Option<Duration>) -> Option<Result<Permit, ShutdownError>> {
        // On a worker, the wait leaves the line while the worker runs
        // another job (see `Acquire::step_out`).
        let step_out = |reserve: &Reserve| {
            if let Some(acquire) = &reserve.acquire {
                acquire.step_out();
            }
        };
        let step_in = |reserve: &Reserve| {
            if let Some(acquire) = &reserve.acquire {
                acquire.step_in();
            }
        };
        crate::sched::block_on::block_on_future_stepping_out(
            self,
            |reserve| reserve.is_ready(),
            timeout,
            step_out,
            step_in,
        )
    }

    /// Whether a poll would resolve now.
    fn is_ready(&self) -> bool {
        self.done
            || self.pool.registry().is_terminating()
            || self.acquire.as_ref().is_none_or(Acquire::is_ready)
    }
}

impl Future for Reserve {
    type Output = Result<Permit, ShutdownError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.done, "offload: Reserve polled after it resolved");
        let result = if this.pool.registry().is_terminating() {
            // Dropping the acquire leaves the line (or frees a granted slot).
            this.acquire = None;
            Err(ShutdownError::new())
        } else {
            match this.acquire.as_mut() {
                None => Ok(None),
                Some(acquire) => match Pin::new(acquire).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => result.map(Some).map_err(|_| ShutdownError::new()),
                },
            }
        };
        this.done = true;
        this.acquire = None;
        Poll::Ready(result.map(|slot| Permit {
            pool: this.pool.clone(),
            slot,
        }))
    }
}

impl fmt::Debug for Reserve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reserve")
            .field("pool", &self.pool)
            .field("acquire", &self.acquire)
            .field("done", &self.done)
            .finish()
    }
}
