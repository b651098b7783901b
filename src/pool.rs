//! [`Pool`], its [`Builder`], and the global pool. (`try_spawn`,
//! `try_spawn_blocking`, `reserve` and `try_reserve`, a bounded pool's
//! face: `permit.rs`.)

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::blocking::spares::{NameFn, SpareConfig};
use crate::flow::slots::Slot;
use crate::fork_join::parts::in_worker;
use crate::fork_join::scope::Scope;
use crate::job_priority::Priority;
use crate::observe::metrics::SAMPLE_EVERY;
use crate::sched::priority::{self, WorkerPriority};
use crate::sched::registry::{Hook, Registry};
use crate::sched::worker::{WorkerDeques, WorkerThread};
use crate::sync::{thread, Arc};
use crate::task::context::Context as JobContext;
use crate::task::handoff::{new_task, Task};

/// A work-stealing pool of CPU worker threads, one per core by default.
///
/// Every [`spawn`](Pool::spawn) returns a [`Task`]: a future of the job's
/// result that any executor can await without blocking. `Pool` is a cheap
/// handle (`Clone` shares the same threads).
///
/// ```
/// # pollster::block_on(async {
/// let pool = offload::Pool::new();
/// let digest = pool.spawn(|| {
///     (0..1_000_000u64).fold(0u64, |h, x| h.rotate_left(5) ^ x)
/// });
/// println!("{:x}", digest.await.unwrap());
/// # });
/// ```
///
/// # Shutting down
///
/// - [`shutdown`](Pool::shutdown) stops accepting jobs, runs every queued
///   one and joins the threads;
/// - [`shutdown_now`](Pool::shutdown_now) stops accepting, cancels queued
///   jobs at once (their Tasks resolve to a cancelled
///   [`JoinError`](crate::JoinError) before it waits) and waits for the
///   running ones;
/// - dropping the last handle never blocks: queued jobs still run, and so
///   do the jobs that running jobs spawn meanwhile (as in rayon: every
///   Task's job holds the pool, so a detached continuation is never lost);
///   the threads exit once no Task's job is left. Only an explicit
///   shutdown refuses new jobs;
/// - from async code, whose thread must not park:
///   [`shutdown_async`](Pool::shutdown_async) and
///   [`shutdown_now_async`](Pool::shutdown_now_async) return a [`Shutdown`]
///   future; [`shutdown_timeout`](Pool::shutdown_timeout) bounds the wait.
///
/// A spawn after shutdown returns a Task that is already cancelled.
pub struct Pool {
    registry: Arc<Registry>,
    /// What this handle's submissions carry (see [`Pool::with_priority`]).
    priority: Priority,
}

impl Pool {
    /// A pool with one worker per available core ([`num_cpus::get`], which
    /// respects cgroup CPU quotas).
    ///
    /// # Panics
    /// If the operating system refuses to start a thread; use
    /// [`Pool::builder`] to handle that error.
    ///
    /// ```
    /// let pool = offload::Pool::new();
    /// assert!(pool.threads() >= 1);
    /// assert_eq!(pool.spawn(|| 2 + 2).wait().unwrap(), 4);
    /// pool.shutdown();
    /// ```
    #[must_use]
    pub fn new() -> Pool {
        Pool::builder()
            .build()
            .expect("offload: failed to start the pool's threads")
    }

    /// A handle to the global pool: the one that [`offload::spawn`](crate::spawn)
    /// and the other free functions use outside any pool. It is created
    /// with one worker per core on first use, or as
    /// [`Builder::build_global`] configured it (call that first).
    ///
    /// Everything a `Pool` offers works on it: [`metrics`](Pool::metrics),
    /// [`try_spawn`](Pool::try_spawn), [`reserve`](Pool::reserve),
    /// [`try_reserve`](Pool::try_reserve), shutdown. Every call returns a
    /// handle to the same threads; dropping one never stops them (the
    /// process keeps a handle of its own).
    ///
    /// **Shutting it down is for good.** After
    /// [`shutdown`](Pool::shutdown) (or `shutdown_now`, or their timed and
    /// async forms) on the global pool, it is not rebuilt:
    /// [`offload::spawn`](crate::spawn) and
    /// [`spawn_blocking`](crate::spawn_blocking) outside any pool return
    /// Tasks that are already cancelled, `try_spawn` and `try_reserve`
    /// refuse with `is_shutdown()`, [`join`](crate::join) and
    /// [`scope`](crate::scope) outside any pool panic, and
    /// [`Builder::build_global`] still reports
    /// [`AlreadyExists`](io::ErrorKind::AlreadyExists). Shut it down once,
    /// at the end of `main`, to let queued jobs finish (or cancel them)
    /// before the process exits.
    ///
    /// ```
    /// # pollster::block_on(async {
    /// let pool = offload::Pool::global();
    /// let task = offload::spawn(|| 6 * 7); // the same pool
    /// assert_eq!(task.await.unwrap(), 42);
    /// assert!(pool.metrics().spawned() >= 1);
    /// match pool.try_spawn(|| 1) {
    ///     Ok(task) => assert_eq!(task.await.unwrap(), 1),
    ///     Err(busy) => assert!(busy.is_full()), // shed: answer 503
    /// }
    /// # });
    /// ```
    #[must_use]
    pub fn global() -> Pool {
        global().clone()
    }

    /// A [`Builder`] to configure a pool.
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(2).build()?;
    /// assert_eq!(pool.threads(), 2);
    /// pool.shutdown();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    fn from_registry(registry: Arc<Registry>) -> Pool {
        registry.add_handle();
        Pool {
            registry,
            priority: Priority::Normal,
        }
    }

    /// A handle to the same pool whose submissions carry `priority`:
    /// [`spawn`](Pool::spawn), [`try_spawn`](Pool::try_spawn),
    /// [`reserve`](Pool::reserve) and [`try_reserve`](Pool::try_reserve)
    /// (their [`Permit::spawn`](crate::Permit::spawn)),
    /// [`spawn_blocking`](Pool::spawn_blocking) and
    /// [`try_spawn_blocking`](Pool::try_spawn_blocking); and
    /// [`join`](Pool::join), [`scope`](Pool::scope) and
    /// [`install`](Pool::install) called from outside the pool. Handles
    /// clone as any `Pool` does (a clone keeps the priority) and share
    /// everything else: the threads, the bound, the shutdown, and
    /// [`metrics`](Pool::metrics), which stay whole-pool.
    ///
    /// Work started inside a job inherits the job's priority: the halves of
    /// its [`join`](crate::join)s, the jobs of its [`scope`](crate::scope)s,
    /// and its [`offload::spawn`](crate::spawn) and
    /// [`offload::spawn_blocking`](crate::spawn_blocking) calls.
    ///
    /// The rules:
    ///
    /// - **Most urgent first.** A free worker starts the most urgent job it
    ///   can find (in its own deque, the queues of jobs from outside, the
    ///   other workers' deques) before a less urgent one. A running job is
    ///   never interrupted: a `High` job that arrives while every worker
    ///   runs a `Low` one waits for the first of them to end. Queued
    ///   `spawn_blocking` jobs (waiting only once `max_blocking_threads`
    ///   spare threads are busy) start in strict priority order, without
    ///   the starvation bound below.
    /// - **No starvation.** After 7 starts in a row that each passed over a
    ///   less urgent job, a worker's next start is the oldest job of a less
    ///   urgent priority (`Normal` and `Low` taking turns when both wait):
    ///   under a permanent flood of `High` jobs, `Low` jobs still get at
    ///   least one start in 16 of each worker, one in 8 when no `Normal`
    ///   job waits. An urgent job now and then beside a background batch
    ///   never triggers the rule, so it waits for one job to end, not two.
    /// - **A pool that uses only `Normal` pays nothing measurable**: its
    ///   workers read one more counter, which stays zero, per look for work.
    /// - **Backpressure is shared.** [`Builder::max_queued`] bounds the
    ///   queued jobs of every priority together, and a `High` `try_spawn`
    ///   is refused at the bound as a `Low` one is: the bound caps the
    ///   memory and the queueing a pool accepts, which every job costs
    ///   whatever its priority. (A server that must admit urgent requests
    ///   past a full background queue bounds the background submissions
    ///   itself, for instance with a semaphore.)
    ///
    /// ```
    /// use offload::Priority;
    /// # pollster::block_on(async {
    /// let pool = offload::Pool::builder().threads(2).build().unwrap();
    /// let background = pool.with_priority(Priority::Low);
    /// let urgent = pool.with_priority(Priority::High);
    /// let batch: Vec<_> = (0..100u64).map(|i| background.spawn(move || i)).collect();
    /// // Starts before the queued background jobs.
    /// assert_eq!(urgent.spawn(|| 6 * 7).await.unwrap(), 42);
    /// assert_eq!(urgent.priority(), Priority::High);
    /// for task in batch {
    ///     task.await.unwrap();
    /// }
    /// # });
    /// ```
    #[must_use]
    pub fn with_priority(&self, priority: Priority) -> Pool {
        self.clone().with_priority_moved(priority)
    }

    /// The priority this handle's submissions carry (`Normal` unless it was
    /// made by [`with_priority`](Pool::with_priority)).
    ///
    /// ```
    /// use offload::Priority;
    /// let pool = offload::Pool::builder().threads(1).build().unwrap();
    /// assert_eq!(pool.priority(), Priority::Normal);
    /// assert_eq!(pool.with_priority(Priority::High).priority(), Priority::High);
    /// pool.shutdown();
    /// ```
    #[must_use]
    pub fn priority(&self) -> Priority {
        self.priority
    }

    fn with_priority_moved(mut self, priority: Priority) -> Pool {
        self.priority = priority;
        self
    }

    /// The number of worker threads.
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(2).build().unwrap();
    /// assert_eq!(pool.threads(), 2);
    /// pool.shutdown();
    /// ```
    #[must_use]
    pub fn threads(&self) -> usize {
        self.registry.num_threads()
    }

    /// The bound on jobs waiting to start set by
    /// [`Builder::max_queued`], or `None` for an unbounded pool.
    ///
    /// ```
    /// let bounded = offload::Pool::builder().threads(1).max_queued(64).build().unwrap();
    /// assert_eq!(bounded.max_queued(), Some(64));
    /// let unbounded = offload::Pool::builder().threads(1).build().unwrap();
    /// assert_eq!(unbounded.max_queued(), None);
    /// bounded.shutdown();
    /// unbounded.shutdown();
    /// ```
    #[must_use]
    pub fn max_queued(&self) -> Option<usize> {
        self.registry.slots().map(|slots| slots.max())
    }

    /// A snapshot of what the pool has done and is doing: cheap (it sums
    /// a few counters per worker and per submitting thread, and takes the
    /// spare threads' and the reserve line's locks for a moment), so it
    /// can be polled, logged or exported at any rate.
    ///
    /// Only Tasks count as jobs: those of [`spawn`](Pool::spawn),
    /// [`try_spawn`](Pool::try_spawn), [`Permit::spawn`](crate::Permit::spawn)
    /// and [`spawn_blocking`](Pool::spawn_blocking) (and of the free
    /// functions). The halves of a [`join`](crate::join), the jobs of a
    /// [`scope`](crate::scope) and [`install`](Pool::install) bodies are
    /// not counted, so fork-join costs nothing more.
    ///
    /// | figure | meaning |
    /// |---|---|
    /// | [`threads`](crate::Metrics::threads) | worker threads |
    /// | [`uptime`](crate::Metrics::uptime) | time since the pool was built |
    /// | [`queued`](crate::Metrics::queued) | now: spawned, not started, not discarded (`spawn_blocking` jobs waiting for a spare included; a Task cancelled while queued until a worker reaches its job) |
    /// | [`running`](crate::Metrics::running) | now: started, not finished (jobs on spare threads included) |
    /// | [`spawned`](crate::Metrics::spawned) | total Tasks created (those spawned after shutdown, cancelled at once, included) |
    /// | [`completed`](crate::Metrics::completed) | total jobs that ran and returned |
    /// | [`panicked`](crate::Metrics::panicked) | total jobs that ran and panicked |
    /// | [`cancelled`](crate::Metrics::cancelled) | total jobs discarded unrun: by their Task's cancel or drop, or by a shutdown |
    /// | [`stopped`](crate::Metrics::stopped) | total jobs that ran and stopped themselves through [`stop_if_cancelled`](crate::stop_if_cancelled) |
    /// | [`refused`](crate::Metrics::refused) | total `try_spawn` and `try_reserve` refusals (full or shut down) |
    /// | [`busy`](crate::Metrics::busy) | per worker: uptime minus the time its thread was parked for want of work (measured at the sleep transitions) |
    /// | [`steals`](crate::Metrics::steals) | total batches a worker stole from another's deque |
    /// | [`queue_wait`](crate::Metrics::queue_wait) | sampled: spawn to start, a [`Histogram`](crate::Histogram) |
    /// | [`run_time`](crate::Metrics::run_time) | sampled: start to end |
    /// | [`blocked`](crate::Metrics::blocked) | now: threads away from their worker's place in [`blocking`](crate::blocking) |
    /// | [`detected_total`](crate::Metrics::detected_total) | total blocked runners the blocking detector noticed ([`Builder::detect_blocking`]) |
    /// | [`spare_threads`](crate::Metrics::spare_threads) | now: spare threads alive |
    /// | [`reserve_waiters`](crate::Metrics::reserve_waiters) | now: [`reserve`](Pool::reserve) waiters in line |
    ///
    /// Once every job has ended, `spawned = completed + panicked +
    /// cancelled + stopped`. A resolved Task's job is already counted when its
    /// `await` or [`wait`](crate::Task::wait) returns (a cancelled one
    /// when its job is discarded: at the latest, once
    /// [`shutdown`](Pool::shutdown) returns).
    ///
    /// **Sampling.** Reading the clock twice per job would cost more than
    /// a short job, so one Task in 64 carries a spawn timestamp: the first
    /// and every 64th spawned by each worker, and by each thread outside
    /// the pool. Only those read the clock (at spawn, start and end), so
    /// the histograms hold about 1/64 of the jobs
    /// ([`Builder::metrics_sample_every`] changes the rate).
    ///
    /// For rates and recent latencies, take snapshots at intervals and
    /// subtract them with [`Metrics::since`](crate::Metrics::since).
    ///
    /// ```
    /// // Detection off: otherwise a helper would run `waiting` while `busy`
    /// // sits in `recv`.
    /// let pool = offload::Pool::builder().threads(1).detect_blocking(false).build().unwrap();
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// let (started_tx, started) = std::sync::mpsc::channel();
    /// let busy = pool.spawn(move || {
    ///     started_tx.send(()).unwrap();
    ///     gate.recv().unwrap();
    /// });
    /// started.recv().unwrap();
    /// let waiting = pool.spawn(|| 2 + 2);
    /// let now = pool.metrics();
    /// assert_eq!((now.running(), now.queued()), (1, 1));
    /// release.send(()).unwrap();
    /// busy.wait().unwrap();
    /// assert_eq!(waiting.wait().unwrap(), 4);
    /// let then = pool.metrics();
    /// assert_eq!((then.spawned(), then.completed()), (2, 2));
    /// assert_eq!(then.queue_wait().count(), 1); // the first spawn is sampled
    /// ```
    #[must_use]
    pub fn metrics(&self) -> crate::observe::metrics::Metrics {
        self.registry.metrics()
    }

    #[inline]
    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Queues `job` at once and returns its [`Task`].
    ///
    /// From outside the pool the job goes to a shared FIFO queue; from one of
    /// this pool's workers, to that worker's own deque. Spawning never waits
    /// for a lock that is held while jobs run.
    ///
    /// `spawn` never refuses a job and never waits, even on a bounded pool
    /// whose queue is full ([`Builder::max_queued`]): the job is queued and
    /// counted, and [`try_spawn`](Pool::try_spawn) and
    /// [`reserve`](Pool::reserve) admit nothing until the queue is back
    /// under its bound. Use those two where the submitter must feel the
    /// pressure.
    ///
    /// Python's `Executor.map(f, items, buffersize=n)` is
    /// [`buffered`](https://docs.rs/futures/latest/futures/stream/trait.StreamExt.html#method.buffered)
    /// over Tasks: at most `n` jobs in flight, results in order
    /// (`buffer_unordered` yields them as they finish, as `as_completed`):
    ///
    /// ```
    /// use futures::StreamExt;
    /// # pollster::block_on(async {
    /// let pool = offload::Pool::new();
    /// let squares: Vec<u64> = futures::stream::iter(0..100u64)
    ///     .map(|i| pool.spawn(move || i * i))
    ///     .buffered(8) // spawns lazily: 8 Tasks in flight at most
    ///     .map(|result| result.expect("no job panics"))
    ///     .collect()
    ///     .await;
    /// assert_eq!(squares[99], 9801);
    /// # });
    /// ```
    ///
    /// ```
    /// let pool = offload::Pool::new();
    /// let tasks: Vec<_> = (0..4u64).map(|i| pool.spawn(move || i * i)).collect();
    /// let squares: Vec<u64> = tasks.into_iter().map(|t| t.wait().unwrap()).collect();
    /// assert_eq!(squares, [0, 1, 4, 9]);
    /// ```
    pub fn spawn<F, T>(&self, job: F) -> Task<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        spawn_on(&self.registry, self.priority, job)
    }

    /// Runs `job`, a blocking call (a sync HTTP client, a sync database
    /// driver, `std::fs`, a `sleep`), on one of the pool's spare threads,
    /// and returns its [`Task`]: Python's `asyncio.to_thread(f)`.
    ///
    /// The job never runs on one of the `threads` workers, so it never
    /// holds up their CPU jobs, however long it blocks. It runs on an idle
    /// spare thread, or a new one while fewer than
    /// [`Builder::max_blocking_threads`] exist; past that, it waits in a
    /// FIFO queue for the first spare to be free. Spare threads exit after
    /// [`Builder::blocking_keep_alive`] idle.
    ///
    /// The Task is the same as [`spawn`](Pool::spawn)'s: await it or
    /// [`wait`](Task::wait) on it; dropping it before the job starts cancels
    /// the job; a panic resolves it to a [`JoinError`](crate::JoinError);
    /// after `shutdown` the job is cancelled. `shutdown` waits for the
    /// running blocking jobs too, and `shutdown_now` cancels the queued
    /// ones ([`is_cancelled`](crate::is_cancelled) tells the running ones).
    /// The pool's [`max_queued`](Builder::max_queued) bound does not count
    /// blocking jobs.
    ///
    /// If no spare thread can be started (the OS refuses a thread), the
    /// job waits for a spare that exists, or, if there is none, runs on the
    /// workers; the first such failure is reported on stderr.
    ///
    /// Inside the job, [`spawn`](crate::spawn) and `spawn_blocking` queue
    /// on this pool; [`join`](crate::join) and [`scope`](crate::scope) run
    /// on its workers while the job's thread waits, as [`Pool::join`] from
    /// any thread outside the pool does (and, like it, panic once the pool
    /// is shutting down).
    ///
    /// ```
    /// use std::time::Duration;
    /// # pollster::block_on(async {
    /// let pool = offload::Pool::builder().threads(2).build().unwrap();
    /// // 16 sync "HTTP calls" of 50 ms each, at once, while both workers
    /// // stay free for CPU jobs.
    /// let calls: Vec<_> = (0..16u64)
    ///     .map(|i| pool.spawn_blocking(move || {
    ///         std::thread::sleep(Duration::from_millis(50));
    ///         i
    ///     }))
    ///     .collect();
    /// let cpu = pool.spawn(|| (1..=20u64).product::<u64>());
    /// assert_eq!(cpu.await.unwrap(), 2_432_902_008_176_640_000);
    /// let mut sum = 0;
    /// for call in calls {
    ///     sum += call.await.unwrap();
    /// }
    /// assert_eq!(sum, 120);
    /// # });
    /// ```
    pub fn spawn_blocking<F, T>(&self, job: F) -> Task<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        spawn_blocking_on(&self.registry, self.priority, job)
    }

    /// [`Builder::max_blocking_threads`]: the most spare threads at once.
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(1).max_blocking_threads(4).build().unwrap();
    /// assert_eq!(pool.max_blocking_threads(), 4);
    /// pool.shutdown();
    /// ```
    #[must_use]
    pub fn max_blocking_threads(&self) -> usize {
        self.registry.spares().max()
    }

    // try_spawn, try_spawn_blocking, reserve and try_reserve: permit.rs.

    /// Runs `a` and `b`, potentially in parallel on this pool, and returns
    /// both results. Blocks the caller until both are done; a panic in either
    /// is re-raised after both finished.
    ///
    /// ```
    /// let pool = offload::Pool::new();
    /// let v: Vec<u64> = (1..=1000).collect();
    /// let (left, right) = v.split_at(500);
    /// let (a, b) = pool.join(|| left.iter().sum::<u64>(), || right.iter().sum::<u64>());
    /// assert_eq!(a + b, 500_500);
    /// ```
    ///
    /// # Panics
    /// Re-raises a panic of `a` or `b`. Panics if the pool has been shut
    /// down (and the caller is not one of its workers).
    pub fn join<A, B, RA, RB>(&self, a: A, b: B) -> (RA, RB)
    where
        A: FnOnce() -> RA + Send,
        B: FnOnce() -> RB + Send,
        RA: Send,
        RB: Send,
    {
        crate::fork_join::join::join_in(
            &self.registry,
            self.priority,
            crate::task::context::wrap(a),
            crate::task::context::wrap(b),
        )
    }

    /// Runs `op` on a worker of this pool with a [`Scope`] whose jobs may
    /// borrow from the caller's stack; returns once every job spawned in
    /// the scope has finished. See [`scope`](crate::scope).
    ///
    /// # Panics
    /// Re-raises the first panic of the body or of a job, after every job
    /// finished. Panics if the pool has been shut down.
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(2).build().unwrap();
    /// let mut halves = [0u64; 2];
    /// let (lo, hi) = halves.split_at_mut(1);
    /// pool.scope(|s| {
    ///     s.spawn(move |_| lo[0] = (1..=50).sum());
    ///     s.spawn(move |_| hi[0] = (51..=100).sum());
    /// });
    /// assert_eq!(halves[0] + halves[1], 5050);
    /// pool.shutdown();
    /// ```
    pub fn scope<'scope, OP, R>(&self, op: OP) -> R
    where
        OP: FnOnce(&Scope<'scope>) -> R + Send,
        R: Send,
    {
        crate::fork_join::scope::scope_in(
            &self.registry,
            self.priority,
            crate::fork_join::scope::in_current_context(op),
        )
    }

    /// Runs `op` on a worker of this pool, blocking the caller until it
    /// returns, so that `offload::join` and `offload::scope` inside it use
    /// this pool. Called from one of this pool's workers (or helpers, see
    /// [`Builder::detect_blocking`]), runs `op` in place; from a worker of
    /// another pool, that worker runs its own jobs while it waits.
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(2).build().unwrap();
    /// let n = pool.install(|| {
    ///     let (a, b) = offload::join(|| 1, || 2);
    ///     a + b
    /// });
    /// assert_eq!(n, 3);
    /// ```
    ///
    /// # Panics
    /// Re-raises a panic of `op`. Panics if the pool has been shut down.
    pub fn install<OP, R>(&self, op: OP) -> R
    where
        OP: FnOnce() -> R + Send,
        R: Send,
    {
        if crate::blocking::detect::is_helping(&self.registry) {
            // A helper of this pool runs its jobs as a worker would.
            return op();
        }
        let op = crate::task::context::wrap(op);
        in_worker(&self.registry, self.priority, |_| op())
    }

    /// Stops accepting jobs, runs every queued job, and waits for the
    /// threads to exit. Called from one of this pool's own workers, it
    /// cannot wait for itself: it only starts the shutdown. Called from a
    /// worker of another pool, that worker runs its own pool's jobs while it
    /// waits.
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(1).build().unwrap();
    /// let queued = pool.spawn(|| 7);
    /// pool.shutdown(); // the queued job still runs
    /// assert_eq!(queued.wait().unwrap(), 7);
    /// // A spawn after shutdown resolves as cancelled.
    /// assert!(pool.spawn(|| 8).wait().unwrap_err().is_cancelled());
    /// ```
    pub fn shutdown(&self) {
        self.registry.terminate(false);
        self.wait_for_workers();
    }

    /// Stops accepting jobs, cancels every queued job (its Task resolves to
    /// a cancelled [`JoinError`](crate::JoinError)), and waits for the jobs
    /// already running to finish and the threads to exit: Python's
    /// `shutdown(cancel_futures=True)`.
    ///
    /// The calling thread cancels the queued jobs itself, before it waits:
    /// those queued from outside, on the workers' own deques, waiting for a
    /// spare thread ([`spawn_blocking`](Pool::spawn_blocking)), and the
    /// [`reserve`](Pool::reserve) waiters in line (which resolve to
    /// [`ShutdownError`](crate::ShutdownError)). So every Task queued before
    /// the call has resolved by the time it waits, even while every worker
    /// is stuck in a job. Jobs already running are told through
    /// [`is_cancelled`](crate::is_cancelled); a job that never returns keeps
    /// this call waiting (use [`shutdown_now_async`](Pool::shutdown_now_async)
    /// or a thread to bound the wait). Called from one of this pool's own
    /// workers, it cancels the queued jobs and only starts the shutdown.
    ///
    /// Parts of a `join`, `scope` or `install` that is already running are
    /// not cancellable: they run, so that their caller can return.
    ///
    /// ```
    /// // Detection off: otherwise a helper would run the queued jobs while
    /// // `stuck` sits in `recv`.
    /// let pool = offload::Pool::builder().threads(1).detect_blocking(false).build().unwrap();
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// let (started_tx, started) = std::sync::mpsc::channel();
    /// let stuck = pool.spawn(move || {
    ///     started_tx.send(()).unwrap();
    ///     gate.recv().unwrap();
    /// });
    /// started.recv().unwrap();
    /// let queued: Vec<_> = (0..100).map(|i| pool.spawn(move || i)).collect();
    /// let shutdown = pool.shutdown_now_async(); // the worker is still stuck
    /// assert!(queued.iter().all(|task| task.is_finished()));
    /// for task in queued {
    ///     assert!(task.wait().unwrap_err().is_cancelled());
    /// }
    /// release.send(()).unwrap();
    /// pollster::block_on(shutdown);
    /// stuck.wait().unwrap();
    /// ```
    pub fn shutdown_now(&self) {
        self.registry.terminate(true);
        self.wait_for_workers();
    }

    /// [`shutdown`](Pool::shutdown), waiting at most `timeout` for the
    /// threads to exit; returns `true` if every one exited in time. The
    /// shutdown goes on after a timeout: the queued jobs still run, and the
    /// threads exit when they are done (call again, or await
    /// [`shutdown_async`](Pool::shutdown_async), to wait more). Called from
    /// one of this pool's own workers, it only starts the shutdown and
    /// returns `false`. The calling thread parks, even on a worker of
    /// another pool (whose published `join` halves others can take, but
    /// which runs no job while it waits); with a timeout too large for an `Instant`
    /// it waits as [`shutdown`](Pool::shutdown) does.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let pool = offload::Pool::builder().threads(2).build().unwrap();
    /// let task = pool.spawn(|| 6 * 7);
    /// assert!(pool.shutdown_timeout(Duration::from_secs(10)));
    /// assert_eq!(task.wait().unwrap(), 42);
    /// ```
    pub fn shutdown_timeout(&self, timeout: Duration) -> bool {
        self.registry.terminate(false);
        if self.on_own_worker() {
            return false;
        }
        // A timeout too large for an `Instant` waits for ever.
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.registry.wait_until_exited_or(deadline),
            None => {
                self.registry.wait_until_exited();
                true
            }
        }
    }

    /// Starts [`shutdown`](Pool::shutdown) now and returns a future that
    /// resolves once every thread has exited: for an async caller, whose
    /// thread must not park. Queued jobs run first. Dropping the future
    /// does not stop the shutdown, only the waiting.
    ///
    /// ```
    /// # pollster::block_on(async {
    /// let pool = offload::Pool::builder().threads(2).build().unwrap();
    /// let task = pool.spawn(|| 6 * 7);
    /// pool.shutdown_async().await;
    /// assert_eq!(task.await.unwrap(), 42);
    /// # });
    /// ```
    pub fn shutdown_async(&self) -> Shutdown {
        self.registry.terminate(false);
        Shutdown {
            registry: Arc::clone(&self.registry),
        }
    }

    /// Starts [`shutdown_now`](Pool::shutdown_now) and returns a future
    /// that resolves once every thread has exited (see
    /// [`shutdown_async`](Pool::shutdown_async)). As `shutdown_now` does,
    /// it cancels every queued job before it returns: their Tasks have
    /// resolved by then, even while every worker is stuck in a job.
    ///
    /// ```
    /// # pollster::block_on(async {
    /// let pool = offload::Pool::builder().threads(1).build().unwrap();
    /// pool.shutdown_now_async().await; // every worker has exited
    /// assert!(pool.spawn(|| 1).await.unwrap_err().is_cancelled());
    /// # });
    /// ```
    pub fn shutdown_now_async(&self) -> Shutdown {
        self.registry.terminate(true);
        Shutdown {
            registry: Arc::clone(&self.registry),
        }
    }

    /// Whether the caller runs on one of this pool's threads: a worker, a
    /// thread away from a worker's place, or a spare running a blocking
    /// job. Such a thread cannot wait for the pool's threads to exit.
    fn on_own_worker(&self) -> bool {
        WorkerThread::with_current(|worker| {
            worker.is_some_and(|worker| worker.registry().is(&self.registry))
        }) || crate::sched::worker::with_away(|away| {
            away.is_some_and(|away| away.is(&self.registry))
        })
    }

    fn wait_for_workers(&self) {
        if !self.on_own_worker() {
            self.registry.wait_until_exited();
        }
    }
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new()
    }
}

impl Clone for Pool {
    fn clone(&self) -> Self {
        Pool::from_registry(Arc::clone(&self.registry)).with_priority_moved(self.priority)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.registry.remove_handle() {
            // The last handle: queued jobs still run, then the threads exit.
            self.registry.terminate(false);
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.threads())
            .field("terminating", &self.registry.is_terminating())
            .field("max_queued", &self.max_queued())
            .field("priority", &self.priority)
            .finish()
    }
}

/// A pool's shutdown, as a future: resolves once every worker thread has
/// exited. Made by [`Pool::shutdown_async`] and
/// [`Pool::shutdown_now_async`], which start the shutdown themselves, so
/// dropping this future only stops the waiting. Any executor can await it;
/// awaiting it on one of the pool's own workers never resolves, since that
/// worker cannot exit while it waits.
///
/// ```
/// # pollster::block_on(async {
/// let pool = offload::Pool::builder().threads(1).build().unwrap();
/// let queued = pool.spawn(|| 1);
/// let shutdown: offload::Shutdown = pool.shutdown_async();
/// shutdown.await; // the queued job ran, the threads exited
/// assert_eq!(queued.await.unwrap(), 1);
/// # });
/// ```
#[must_use = "the shutdown has started; await this to wait until the threads exited"]
pub struct Shutdown {
    registry: Arc<Registry>,
}

impl Future for Shutdown {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.registry.poll_exited(cx)
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("registry", &self.registry)
            .finish()
    }
}

/// Configures and starts a [`Pool`].
///
/// ```
/// let pool = offload::Pool::builder()
///     .threads(2)
///     .thread_name(|i| format!("hasher-{i}"))
///     .stack_size(4 << 20)
///     .worker_priority(offload::WorkerPriority::Nice(5))
///     .on_thread_start(|i| eprintln!("worker {i} up"))
///     .build()
///     .expect("threads");
/// assert_eq!(pool.threads(), 2);
/// ```
#[must_use = "a Builder does nothing until `build` is called"]
#[derive(Default)]
pub struct Builder {
    threads: Option<usize>,
    max_queued: Option<usize>,
    max_blocking_threads: Option<usize>,
    max_queued_blocking: Option<usize>,
    blocking_keep_alive: Option<Duration>,
    detect_blocking: Option<bool>,
    thread_name: Option<NameFn>,
    stack_size: Option<usize>,
    worker_priority: WorkerPriority,
    on_start: Option<Hook>,
    on_stop: Option<Hook>,
    metrics_sample_every: Option<u32>,
}

impl Builder {
    /// Times one Task in `n` for the [`queue_wait`](crate::Metrics::queue_wait)
    /// and [`run_time`](crate::Metrics::run_time) histograms of
    /// [`Pool::metrics`] (default: 64): the first and every `n`th spawned
    /// by each worker and by each thread outside the pool. 1 times every
    /// Task; 0 is an [`InvalidInput`](io::ErrorKind::InvalidInput) error
    /// at `build`.
    ///
    /// A timed Task reads the clock three times (at its spawn, start and
    /// end) and bumps two histogram buckets; an untimed one does neither.
    /// So at 1 each Task pays that much more than at the default: about
    /// 80 ns a job on a 2-core x86_64 VM (empty jobs spawned from one
    /// thread: 82–105 ns at 64, 169–176 ns at 1), which matters only for
    /// jobs of a few microseconds or less; `cargo run --release --example
    /// spawn_cost` measures it on your machine (64 against 1, in one run).
    /// A power of two is tested with a mask; any other `n` with a division
    /// per spawn. Choose a smaller `n` for low job rates, where 1 in 64
    /// leaves too few samples for a p99 (after 600 jobs, 10 samples).
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(1).metrics_sample_every(1).build().unwrap();
    /// for i in 0..10 {
    ///     pool.spawn(move || i).wait().unwrap();
    /// }
    /// assert_eq!(pool.metrics().run_time().count(), 10);
    /// assert!(offload::Pool::builder().metrics_sample_every(0).build().is_err());
    /// ```
    pub fn metrics_sample_every(mut self, n: u32) -> Self {
        self.metrics_sample_every = Some(n);
        self
    }

    /// The number of worker threads (default: [`num_cpus::get`]). Zero is
    /// an [`InvalidInput`](io::ErrorKind::InvalidInput) error at `build`.
    ///
    /// `threads` is the number of CPU jobs the pool runs at once while none
    /// blocks. A job that blocks (marked with [`blocking`](crate::blocking),
    /// or seen by [`detect_blocking`](Builder::detect_blocking)) is
    /// compensated by a spare thread that runs other jobs meanwhile, so
    /// that `threads` threads stay on the CPU; at most
    /// [`max_blocking_threads`](Builder::max_blocking_threads) compensate at
    /// once. A compensated job that is back from its block finishes beside
    /// its compensating thread rather than wait for it: after a stand-in
    /// took its place, for the rest of the job at most; after a detected
    /// or marked block, until the helper's current job ends. So the pool runs at most
    /// `threads + max_blocking_threads` of its CPU jobs at once (blocked
    /// ones included), more than `threads` only during those overlaps, and
    /// [`spawn_blocking`](Pool::spawn_blocking) jobs on spare threads of
    /// their own.
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(2).build().unwrap();
    /// assert_eq!(pool.threads(), 2);
    /// pool.shutdown();
    /// ```
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Bounds the jobs waiting to start (queued, not yet running) that
    /// [`Pool::try_spawn`] and [`Pool::reserve`] admit (default: unbounded).
    /// Zero is an [`InvalidInput`](io::ErrorKind::InvalidInput) error at
    /// `build`.
    ///
    /// The bound is on waiting jobs, not on running ones: a pool of `t`
    /// threads bounded at `n` holds at most `t` running jobs and `n` queued
    /// ones admitted by those two. A job counts from its submission until
    /// it starts or is cancelled; an unused [`Permit`](crate::Permit)
    /// counts too. Plain [`Pool::spawn`] is never refused: its jobs are
    /// queued past the bound and counted, so they delay the next admission.
    ///
    /// How to choose `n`: at a full queue a job waits about `n / t` job
    /// durations before it starts (the typical wait), and the last one
    /// admitted up to one duration more, plus whatever preempts the
    /// workers. So for a tail bound `w` on the queue wait of jobs of
    /// duration `d`, take `n ≈ t × (w / d − 1)`: for 2 ms jobs on 8
    /// threads and a 10 ms bound, 32; for a bound of two job durations,
    /// `n = t`. (`examples/overload.rs` measures it.)
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(1).max_queued(128).build().unwrap();
    /// assert_eq!(pool.max_queued(), Some(128));
    /// match pool.try_spawn(|| 1) {
    ///     Ok(task) => assert_eq!(task.wait().unwrap(), 1),
    ///     Err(busy) => assert!(busy.is_full()), // shed the request
    /// }
    /// pool.shutdown();
    /// ```
    pub fn max_queued(mut self, max: usize) -> Self {
        self.max_queued = Some(max);
        self
    }

    /// The most blocking jobs running at once on spare threads, and apart
    /// from them the most spare threads compensating for blocked workers
    /// at once (default: 512, as tokio's blocking pool). Zero is an
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) error at `build`.
    ///
    /// Spare threads run [`Pool::spawn_blocking`] jobs, stand in for
    /// workers blocked in [`blocking`](crate::blocking), and help while a
    /// worker is blocked without it ([`detect_blocking`](Builder::detect_blocking)).
    /// They are started when needed and exit after
    /// [`blocking_keep_alive`](Builder::blocking_keep_alive) idle. The rule:
    ///
    /// - At most `max` spare threads run `spawn_blocking` jobs at once;
    ///   past that, the jobs wait in a FIFO queue for one (see
    ///   [`max_queued_blocking`](Builder::max_queued_blocking)).
    /// - At most `max` *other* spare threads compensate at once (stand-ins
    ///   and helpers); past that, `blocking` inside a job runs without a
    ///   stand-in or helper (the worker blocks, as it would without
    ///   `blocking`).
    ///   A stand-in keeps its turn until the thread it stands in for has
    ///   taken its place back: when the blocking call returns, that thread
    ///   finishes its job beside the stand-in (not waiting for the
    ///   stand-in's job), so for the rest of that job the two both run CPU
    ///   work. Hence at most `threads + max` threads run the pool's CPU jobs
    ///   at once, each extra one for the rest of one job at most.
    /// - The two are counted apart, so compensation never takes a thread
    ///   that a `spawn_blocking` job needs: a job that, inside `blocking`,
    ///   waits for a `spawn_blocking` job gets its answer at every
    ///   `max ≥ 1`. An idle spare serves either.
    ///
    /// So a pool has at most `threads + 2 × max` threads, plus one for the
    /// blocking detector. CPU jobs never wait for blocking jobs: those never
    /// run on the workers. A job that is one blocking call from start to
    /// end (one database query, one HTTP request) belongs in
    /// [`Pool::spawn_blocking`]: wrapped in [`blocking`](crate::blocking)
    /// inside a [`Pool::spawn`] job it would first wait in the queue behind
    /// the CPU jobs and then take a stand-in or a helper.
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(1).max_blocking_threads(2).build().unwrap();
    /// assert_eq!(pool.max_blocking_threads(), 2);
    /// let read = pool.spawn_blocking(|| std::fs::metadata(".").is_ok());
    /// assert!(read.wait().unwrap());
    /// pool.shutdown();
    /// ```
    pub fn max_blocking_threads(mut self, max: usize) -> Self {
        self.max_blocking_threads = Some(max);
        self
    }

    /// Bounds the [`Pool::spawn_blocking`] jobs waiting for a spare thread
    /// (all [`max_blocking_threads`](Builder::max_blocking_threads) run
    /// one) that [`Pool::try_spawn_blocking`] admits (default: unbounded).
    /// Zero is an [`InvalidInput`](io::ErrorKind::InvalidInput) error at
    /// `build`.
    ///
    /// Plain `spawn_blocking` is never refused: its jobs are queued past
    /// the bound and counted, so they delay the next admission.
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(1).max_queued_blocking(16).build().unwrap();
    /// assert_eq!(pool.spawn_blocking(|| 5).wait().unwrap(), 5);
    /// pool.shutdown();
    /// ```
    pub fn max_queued_blocking(mut self, max: usize) -> Self {
        self.max_queued_blocking = Some(max);
        self
    }

    /// How long an idle spare thread waits for work before it exits
    /// (default: 10 s, as tokio's blocking pool).
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = offload::Pool::builder()
    ///     .threads(1)
    ///     .blocking_keep_alive(Duration::from_millis(100))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pool.spawn_blocking(|| 5).wait().unwrap(), 5);
    /// pool.shutdown();
    /// ```
    pub fn blocking_keep_alive(mut self, keep_alive: Duration) -> Self {
        self.blocking_keep_alive = Some(keep_alive);
        self
    }

    /// Whether the pool notices jobs that block without saying so
    /// (default: on where the platform can tell, that is on Linux; off
    /// elsewhere, where this setting has no effect).
    ///
    /// A job that calls a sync HTTP client, a sync database driver or
    /// `std::thread::sleep` without [`blocking`](crate::blocking) holds its
    /// worker, and the jobs queued behind it wait. With detection on, one
    /// thread per pool (`offload-detect`) looks at the workers while jobs
    /// wait (every 10 ms at most, 2 ms while it compensates, 100 µs just
    /// after each detection; never while no job waits, so an idle pool
    /// costs nothing) and treats a worker as if it
    /// had called `blocking` when it has been inside one job for 100 µs or
    /// more and its thread is not on a CPU (Linux: its state in
    /// `/proc/self/task/<tid>/stat` is `S` or `D`, sleeping in the kernel;
    /// a job that computes, or waits for a core, reads `R`). For each such
    /// worker, while jobs wait, a spare thread (one of the
    /// [`max_blocking_threads`](Builder::max_blocking_threads) that may
    /// compensate at once) runs the
    /// pool's other jobs until the blocked one is back; so a pool keeps
    /// `threads` threads on CPU jobs, give or take one job around each
    /// change. A job that blocks after computing for a while is noticed
    /// within about as long again, and the first blocked job of a busy
    /// period within about 20 ms. On a 2-core machine the detector costs
    /// about 0.2% of the CPU time of a saturated pool (BENCHMARKS.md).
    ///
    /// The rule for helpers, stated: each *runner* (a thread running the
    /// pool's jobs: a worker, or a helper) seen blocked gets one helper
    /// while jobs wait, and keeps it until it is back (the helper leaves
    /// between two jobs). A helper's own block is compensated like a
    /// worker's, so that a load where every job blocks still keeps
    /// `threads` threads on the CPU. A runner counts as blocked only after
    /// 100 µs inside one job off the CPU, and the detector starts at most
    /// one helper per blocked runner per look, so new threads start at
    /// most one per blocked runner per 100 µs. Helpers and the stand-ins
    /// of [`blocking`](crate::blocking) together number at most
    /// [`max_blocking_threads`](Builder::max_blocking_threads): the pool
    /// runs at most `threads + max_blocking_threads` CPU jobs at once,
    /// however the blocks pile up.
    ///
    /// A call marked with [`blocking`](crate::blocking) goes through the
    /// detector too, but is looked at from 100 µs into the call itself (not
    /// from when the detector first saw the job), more often, and even
    /// where `/proc` cannot be read; after a marked call that lasted 10 ms
    /// or more and that the detector last read off the CPU (or never read),
    /// the next one on that worker hands its place to a spare at once if
    /// jobs wait.
    /// Prefer [`Pool::spawn_blocking`] for a job that is one blocking
    /// call, and [`blocking`](crate::blocking) where you know a call
    /// blocks; detection is the net under the calls you did not know
    /// about. A join half that a blocked job has not shared yet
    /// still waits for it.
    ///
    /// The detector also makes it safe for a worker to hold the wake-ups
    /// of Tasks it completes while jobs queue behind it, and wake an event
    /// loop once per batch (see [`Task`]'s *Wake-ups under a backlog*): it
    /// wakes what a blocked worker holds. Without it
    /// (`detect_blocking(false)`) every completion wakes its awaiter at
    /// once.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let pool = offload::Pool::builder().threads(1).build().unwrap();
    /// // A job that blocks without saying so...
    /// let slow = pool.spawn(|| std::thread::sleep(Duration::from_millis(300)));
    /// // ...does not hold the pool's one thread: on Linux this job runs on a
    /// // helper long before the sleep ends.
    /// let quick = pool.spawn(|| 6 * 7);
    /// assert_eq!(quick.wait().unwrap(), 42);
    /// slow.wait().unwrap();
    /// ```
    pub fn detect_blocking(mut self, detect: bool) -> Self {
        self.detect_blocking = Some(detect);
        self
    }

    /// Names worker `i` `name(i)` (default: `offload-{i}`). Spare threads
    /// (see [`max_blocking_threads`](Builder::max_blocking_threads)) take
    /// the indices from `threads` on, one more for each one started
    /// (default: `offload-blocking-{k}`).
    ///
    /// ```
    /// let pool = offload::Pool::builder()
    ///     .threads(1)
    ///     .thread_name(|i| format!("cpu-{i}"))
    ///     .build()
    ///     .unwrap();
    /// let name = pool.spawn(|| std::thread::current().name().map(String::from));
    /// assert!(name.wait().unwrap().unwrap().starts_with("cpu-"));
    /// pool.shutdown();
    /// ```
    pub fn thread_name(mut self, name: impl Fn(usize) -> String + Send + Sync + 'static) -> Self {
        self.thread_name = Some(Box::new(name));
        self
    }

    /// The stack size of each worker, in bytes (default: the standard
    /// library's, 2 MiB).
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(1).stack_size(4 << 20).build().unwrap();
    /// let big = pool.spawn(|| {
    ///     let buf = [1u8; 1 << 20]; // 1 MiB on the worker's stack
    ///     buf.iter().map(|&b| u32::from(b)).sum::<u32>()
    /// });
    /// assert_eq!(big.wait().unwrap(), 1 << 20);
    /// pool.shutdown();
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// The OS scheduling priority of the workers, relative to the thread
    /// that calls [`build`](Builder::build) (default:
    /// [`WorkerPriority::Inherit`], the same priority). Linux only;
    /// elsewhere priorities belong to the whole process and this setting
    /// has no effect.
    ///
    /// A lower priority is an opt-in for one situation: the pool's jobs keep
    /// every core busy and an event loop in the same program must stay
    /// responsive. Then a wake-up of the loop (a timer, a socket) waits until
    /// the scheduler takes a core from a worker; at the same priority that
    /// can be a time slice, milliseconds of lateness for every request on
    /// that loop. Lower-priority workers still get every core that nobody
    /// else wants, at full speed; only their share of a *contended* core
    /// shrinks.
    ///
    /// - [`Inherit`](WorkerPriority::Inherit) (the default): the caller's
    ///   priority. The pool never runs below the thread that built it.
    /// - [`Nice(n)`](WorkerPriority::Nice) gives the workers a smaller share
    ///   of a contended core (about 1/9 at +10). On Linux's EEVDF scheduler
    ///   a waking thread may still wait for the running worker's slice to
    ///   end, so it helps the loop's tail latency less than one would hope:
    ///   BENCHMARKS.md's sweeps show no clear gain on a quiet machine.
    /// - [`Idle`](WorkerPriority::Idle) (`SCHED_IDLE`): a waking thread
    ///   preempts a worker at once. The best latency for the loop; but the
    ///   pool starves while other threads of the program keep the cores busy.
    ///
    /// The price of either opt-in is a priority inversion waiting to happen:
    /// with two busy threads at the caller's priority in the same process,
    /// 16 short jobs took 0.86 s at `Nice(10)` (27.5 s at `Idle`) instead of
    /// 0.16 s; an event loop awaiting them waits as long. Threads that a job
    /// starts inherit the worker's priority for life.
    ///
    /// Why `Inherit` stays the default: `examples/sched_policy.rs` sets each
    /// option side by side (a 1 ms ticker on a loop while 16 jobs of 10 ms
    /// saturate the pool, and the same 16 jobs beside two busy threads of
    /// the program). On the 2-core VM (loaded: load average 5 to 15) none bought the loop a better tail
    /// without costing the pool: `Nice(10)` took the jobs beside busy
    /// threads 4.2–5.0× as long; `SCHED_BATCH` workers (which the scheduler
    /// never lets preempt anyone) made the ticker's p99 worse (1.5–2.2×
    /// `Inherit`'s); a 20 ms EEVDF slice for the workers moved it little
    /// (0.8–0.9×) for 1.07–1.38× the pool's time. What helped the loop was
    /// a short EEVDF slice for the *loop's* thread (`sched_setattr` with
    /// `sched_runtime` of 0.1 ms, Linux 6.12 or later: p99 0.47–0.53× for
    /// 1.06–1.23× the pool's time), a setting of the caller's thread that
    /// the pool does not own.
    ///
    /// `cargo run --release --example compare` measures the loop's lateness
    /// with each (see BENCHMARKS.md). Each worker changes its own priority
    /// when it starts, before `on_thread_start` hooks run. Threads that a
    /// job starts inherit the worker's priority. Best effort: if the OS
    /// refuses, the worker keeps the caller's priority.
    ///
    /// ```
    /// use offload::{Pool, WorkerPriority};
    ///
    /// // Workers at the same priority as the rest of the program:
    /// let pool = Pool::builder().worker_priority(WorkerPriority::Inherit).build().unwrap();
    /// assert_eq!(pool.spawn(|| 6 * 7).wait().unwrap(), 42);
    ///
    /// // Workers that yield to everything else (nice 19 on Linux):
    /// let background = Pool::builder()
    ///     .threads(1)
    ///     .worker_priority(WorkerPriority::Nice(19))
    ///     .build()
    ///     .unwrap();
    /// # #[cfg(target_os = "linux")]
    /// let nice = background
    ///     // SAFETY: getpriority has no preconditions; on Linux, PRIO_PROCESS
    ///     // with `who` 0 reads the calling thread's nice value.
    ///     .spawn(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) })
    ///     .wait()
    ///     .unwrap();
    /// # #[cfg(target_os = "linux")]
    /// assert_eq!(nice, 19);
    /// ```
    pub fn worker_priority(mut self, priority: WorkerPriority) -> Self {
        self.worker_priority = priority;
        self
    }

    /// Runs `hook(i)` on every thread that runs the pool's jobs when it
    /// starts, before it runs any job: worker `i` (`0..threads`), and each
    /// spare thread (see [`max_blocking_threads`](Builder::max_blocking_threads)),
    /// which takes the indices from `threads` on, as
    /// [`thread_name`](Builder::thread_name) does. So per-thread set-up
    /// (a thread-local connection, an attached JVM, affinity, a tracing
    /// subscriber) is there for every job: `spawn_blocking` jobs, and the
    /// CPU jobs that a spare thread runs while it stands in for a blocked
    /// worker or helps. A table indexed by `i` must therefore hold more
    /// than `threads` entries (or skip `i >= threads`). A panic in the hook
    /// is reported by the panic hook and then ignored: the thread serves as
    /// usual.
    ///
    /// ```
    /// use std::cell::Cell;
    ///
    /// thread_local!(static READY: Cell<bool> = const { Cell::new(false) });
    /// let pool = offload::Pool::builder()
    ///     .threads(1)
    ///     .on_thread_start(|_| READY.with(|ready| ready.set(true)))
    ///     .build()
    ///     .unwrap();
    /// assert!(pool.spawn(|| READY.with(Cell::get)).wait().unwrap());
    /// assert!(pool.spawn_blocking(|| READY.with(Cell::get)).wait().unwrap());
    /// ```
    pub fn on_thread_start(mut self, hook: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_start = Some(Box::new(hook));
        self
    }

    /// Runs `hook(i)` on every thread that runs the pool's jobs (worker `i`,
    /// or a spare thread, as for [`on_thread_start`](Builder::on_thread_start))
    /// after its last job, before it exits: a spare thread when it has been
    /// idle for [`blocking_keep_alive`](Builder::blocking_keep_alive) or the
    /// pool shuts down. A panic in the hook is reported by the panic hook
    /// and then ignored.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// let stopped = Arc::new(AtomicUsize::new(0));
    /// let counter = Arc::clone(&stopped);
    /// let pool = offload::Pool::builder()
    ///     .threads(2)
    ///     .on_thread_stop(move |_| {
    ///         counter.fetch_add(1, Ordering::SeqCst);
    ///     })
    ///     .build()
    ///     .unwrap();
    /// pool.shutdown(); // waits for both workers to exit
    /// assert_eq!(stopped.load(Ordering::SeqCst), 2);
    /// ```
    pub fn on_thread_stop(mut self, hook: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_stop = Some(Box::new(hook));
        self
    }

    /// Starts the threads. If one cannot be started, those already started
    /// are shut down and the error is returned; a panic of `thread_name`
    /// shuts them down too before it propagates.
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(2).build()?;
    /// assert_eq!(pool.spawn(|| 6 * 7).wait().unwrap(), 42);
    /// pool.shutdown();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn build(self) -> io::Result<Pool> {
        let threads = self.threads.unwrap_or_else(num_cpus::get);
        if threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offload: a pool needs at least one thread",
            ));
        }
        if self.max_queued == Some(0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offload: max_queued must be at least 1 (a pool must admit a job)",
            ));
        }
        if self.metrics_sample_every == Some(0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offload: metrics_sample_every must be at least 1 (1 times every Task)",
            ));
        }
        if self.max_blocking_threads == Some(0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offload: max_blocking_threads must be at least 1",
            ));
        }
        if self.max_queued_blocking == Some(0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offload: max_queued_blocking must be at least 1 (a pool must admit a job)",
            ));
        }
        let deques: Vec<WorkerDeques> = (0..threads).map(|_| WorkerDeques::new()).collect();
        let stealers = deques.iter().map(|d| d.normal.stealer()).collect();
        let lane_stealers = [0, 1].map(|lane| {
            deques
                .iter()
                .map(|d| d.lanes[lane].stealer())
                .collect::<Box<[_]>>()
        });
        let spares = SpareConfig {
            max: self
                .max_blocking_threads
                .unwrap_or(DEFAULT_MAX_BLOCKING_THREADS),
            keep_alive: self
                .blocking_keep_alive
                .unwrap_or(DEFAULT_BLOCKING_KEEP_ALIVE),
            name: self.thread_name,
            stack_size: self.stack_size,
            priority: self.worker_priority,
            max_queued: self.max_queued_blocking,
        };
        let detect_blocking = DETECTION_AVAILABLE && self.detect_blocking.unwrap_or(true);
        let registry = Arc::new(Registry::new(
            stealers,
            lane_stealers,
            self.on_start,
            self.on_stop,
            self.max_queued,
            spares,
            detect_blocking,
            self.metrics_sample_every.map_or(SAMPLE_EVERY, u64::from),
        ));

        // An error, or a panic (`thread_name` is user code, and std panics
        // on a name with a NUL byte), stops the threads already started.
        let mut guard = StopStarted {
            registry: &registry,
            threads,
            started: 0,
        };
        for (index, deque) in deques.into_iter().enumerate() {
            let name = registry.spares().thread_name(index);
            let mut builder = thread::Builder::new().name(name);
            if let Some(bytes) = self.stack_size {
                builder = builder.stack_size(bytes);
            }
            let worker_registry = Arc::clone(&registry);
            let worker_priority = self.worker_priority;
            builder.spawn(move || {
                priority::apply_to_current_thread(worker_priority);
                WorkerThread::run(index, worker_registry, deque);
            })?;
            guard.started += 1;
        }
        if detect_blocking {
            start_detector(&registry)?;
        }
        std::mem::forget(guard);
        Ok(Pool::from_registry(registry))
    }

    /// Builds the pool that [`offload::spawn`](crate::spawn) and the other
    /// free functions use. Must come before their first use.
    ///
    /// # Errors
    /// [`AlreadyExists`](io::ErrorKind::AlreadyExists) if the global pool
    /// already exists (built, or created on first use); otherwise as
    /// [`build`](Builder::build).
    ///
    /// ```
    /// use std::io::ErrorKind;
    /// offload::Pool::builder().threads(2).build_global()?;
    /// assert_eq!(offload::Pool::global().threads(), 2);
    /// assert_eq!(offload::spawn(|| 6 * 7).wait().unwrap(), 42);
    /// // Only the first call configures it.
    /// let again = offload::Pool::builder().threads(1).build_global();
    /// assert_eq!(again.unwrap_err().kind(), ErrorKind::AlreadyExists);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn build_global(self) -> io::Result<()> {
        let already_exists = || {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "offload: the global pool already exists",
            )
        };
        if GLOBAL.get().is_some() {
            return Err(already_exists());
        }
        // If another thread set the global pool meanwhile, ours is dropped
        // (its threads exit) and the caller learns it was too late.
        GLOBAL.set(self.build()?).map_err(|_| already_exists())
    }
}

/// Whether this platform can tell a blocked thread from a running one (see
/// [`Builder::detect_blocking`]); never under loom, whose models build
/// pools of their own threads only.
const DETECTION_AVAILABLE: bool = cfg!(all(target_os = "linux", not(loom)));

/// Starts the blocking detector of `registry` (see
/// [`crate::blocking::detect`]), counted as one of its live threads.
#[cfg(not(loom))]
fn start_detector(registry: &Arc<Registry>) -> io::Result<()> {
    registry.add_live_thread();
    let detector_registry = Arc::clone(registry);
    let started = thread::Builder::new()
        .name("offload-detect".to_owned())
        .stack_size(128 << 10)
        .spawn(move || {
            crate::blocking::detect::watch(&detector_registry);
            detector_registry.workers_exited(1, None);
        });
    started
        .map(drop)
        .inspect_err(|_| registry.workers_exited(1, None))
}

#[cfg(loom)]
fn start_detector(_registry: &Arc<Registry>) -> io::Result<()> {
    Ok(())
}

/// Stops the threads [`Builder::build`] started if it returns an error or
/// unwinds before all of them are started.
struct StopStarted<'a> {
    registry: &'a Registry,
    threads: usize,
    started: usize,
}

impl Drop for StopStarted<'_> {
    fn drop(&mut self) {
        self.registry
            .workers_exited(self.threads - self.started, None);
        self.registry.terminate(false);
        self.registry.wait_until_exited();
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("threads", &self.threads)
            .field("max_queued", &self.max_queued)
            .field("max_blocking_threads", &self.max_blocking_threads)
            .field("max_queued_blocking", &self.max_queued_blocking)
            .field("blocking_keep_alive", &self.blocking_keep_alive)
            .field("detect_blocking", &self.detect_blocking)
            .field("thread_name", &self.thread_name.as_ref().map(|_| ".."))
            .field("stack_size", &self.stack_size)
            .field("worker_priority", &self.worker_priority)
            .field("on_thread_start", &self.on_start.as_ref().map(|_| ".."))
            .field("on_thread_stop", &self.on_stop.as_ref().map(|_| ".."))
            .field("metrics_sample_every", &self.metrics_sample_every)
            .finish()
    }
}

/// [`Pool::spawn`] on `registry`.
pub(crate) fn spawn_on<F, T>(registry: &Arc<Registry>, priority: Priority, job: F) -> Task<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let slot = registry.slots().map(Slot::forced);
    spawn_with_slot(registry, priority, job, slot)
}

/// Queues `job` on `registry` at `priority`, holding `slot` until it
/// starts.
pub(crate) fn spawn_with_slot<F, T>(
    registry: &Arc<Registry>,
    priority: Priority,
    job: F,
    slot: Option<Slot>,
) -> Task<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let spawned_at = registry.tally().spawned(priority);
    let (job, task) = new_task(keeping_alive(registry, job), slot, spawned_at, priority);
    registry.submit(job);
    task
}

/// [`Pool::spawn_blocking`] on `registry`.
pub(crate) fn spawn_blocking_on<F, T>(
    registry: &Arc<Registry>,
    priority: Priority,
    job: F,
) -> Task<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let spawned_at = registry.tally().spawned(priority);
    let (job, task) = new_task(keeping_alive(registry, job), None, spawned_at, priority);
    registry.spares().submit(registry, job);
    task
}

/// `job`, running in the context of its spawner (see [`crate::task::context`])
/// and holding a handle to its pool until it has run or been dropped:
/// a Task's job counts as a handle, so that the pool terminates once the
/// last [`Pool`] is gone *and* no Task's job is left, and the jobs that
/// running jobs spawn meanwhile still run (as rayon's `spawn` does).
pub(crate) fn keeping_alive<F, T>(
    registry: &Arc<Registry>,
    job: F,
) -> impl FnOnce() -> T + Send + 'static
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let pool = Pool::from_registry(Arc::clone(registry));
    let context = JobContext::capture();
    move || {
        // Dropped when the job returns or unwinds, or with the closure if
        // the job is cancelled before it starts.
        let _pool = pool;
        let _entered = context.enter();
        job()
    }
}

/// [`Builder::max_blocking_threads`]'s default: tokio's.
const DEFAULT_MAX_BLOCKING_THREADS: usize = 512;

/// [`Builder::blocking_keep_alive`]'s default: tokio's.
const DEFAULT_BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(10);

static GLOBAL: OnceLock<Pool> = OnceLock::new();

/// The global pool, created with the defaults on first use unless
/// [`Builder::build_global`] configured it.
pub(crate) fn global() -> &'static Pool {
    GLOBAL.get_or_init(Pool::new)
}
