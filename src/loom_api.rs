//! Entry points for the loom models in `loom-tests/` (only under
//! `cfg(loom)`; not part of the public API).
//!
//! They expose the protocols themselves, so a model can drive the handoff
//! cell, the sleep protocol and the latches with as few threads as the
//! property needs, instead of through a whole pool. The worker loop is
//! exposed as it ships ([`run_worker`], [`run_worker_until`]: the very
//! functions every worker runs), over queues that the model provides
//! ([`Queues`]).

use std::sync::Arc as StdArc;

use crate::observe::metrics::PoolStats;
use crate::sched::parker::Parker as InnerParker;
use crate::task::handoff::Task;
use crate::task::job::{JobRef, Mode};

/// The job side of a handoff cell.
#[derive(Debug)]
pub struct Job(JobRef);

impl Job {
    /// Runs the job as a worker would.
    pub fn run(self) {
        self.0.execute(Mode::Run, &PoolStats::new(0).this_thread());
    }

    /// Cancels the job as a worker does during `shutdown_now`.
    pub fn cancel(self) {
        self.0
            .execute(Mode::Cancel, &PoolStats::new(0).this_thread());
    }
}

/// Allocates a handoff cell: the job to hand to a "worker", and its Task.
pub fn task<F, T>(func: F) -> (Job, Task<T>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (job, task) = crate::task::handoff::new_task(func, None, 0, crate::Priority::Normal);
    (Job(job), task)
}

/// The queue of jobs submitted from outside the pool.
#[derive(Debug)]
pub struct Injector(crate::sched::injector::Injector);

impl Injector {
    /// An empty injector.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(crate::sched::injector::Injector::new())
    }
    /// Queues `job` at the back.
    pub fn push(&self, job: Job) {
        self.0.push(job.0);
    }
    /// Queues `job` again after a pop took it (`shutdown_now`'s sweep).
    pub fn push_again(&self, job: Job) {
        self.0.push_again(job.0);
    }
    /// Whether no job is queued or being pushed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Pops the oldest job, waiting for a concurrent consumer (a drain).
    pub fn pop(&self) -> Option<Job> {
        self.0.pop_waiting().map(Job)
    }
    /// Pops the oldest jobs as a worker does, a batch at most, oldest
    /// first; empty also if another thread is consuming.
    pub fn try_pop_batch(&self) -> Vec<Job> {
        let deque = crate::sched::deque::Worker::new_lifo();
        let mut jobs: Vec<Job> = self
            .0
            .try_pop_batch(&deque, crate::sched::injector::MAX_BATCH)
            .map(Job)
            .into_iter()
            .collect();
        while let Some(job) = deque.pop() {
            jobs.push(Job(job));
        }
        jobs
    }
}

/// The one-token parker every blocked thread waits on.
#[derive(Debug, Clone, Default)]
pub struct Parker(StdArc<InnerParker>);

impl Parker {
    /// A parker with no token.
    pub fn new() -> Self {
        Self(StdArc::new(InnerParker::new()))
    }
    /// Waits for the token and consumes it.
    pub fn park(&self) {
        self.0.park();
    }
    /// Makes the token available.
    pub fn unpark(&self) {
        self.0.unpark();
    }
    /// Makes the calling thread the owner (a worker's place passing to
    /// another thread); the previous owner must not be parked on it.
    pub fn rebind(&self) {
        self.0.rebind();
    }
    /// A timed park whose deadline has already passed: it consumes a token
    /// that is there, or gives up. Returns whether it consumed one.
    pub fn park_timed_out(&self) -> bool {
        self.0.park_deadline(std::time::Instant::now())
    }
}

/// Who holds a worker's place, and who waits for it back.
#[derive(Debug, Clone)]
pub struct Baton(crate::sync::Arc<crate::blocking::baton::Baton>);

impl Baton {
    /// A place held by its home thread, nobody away.
    pub fn new() -> Self {
        Self(crate::sync::Arc::new(crate::blocking::baton::Baton::new()))
    }
    /// Whether a thread waits for the place (the holder's hint).
    pub fn is_wanted(&self) -> bool {
        self.0.is_wanted()
    }
    /// The holder lends the place (see `Baton::lend`).
    pub fn lend(&self, start_stand_in: impl FnOnce() -> bool) -> bool {
        self.0.lend(start_stand_in)
    }
    /// The holder passes the place to the first in line, between jobs.
    pub fn pass(&self, keep_frames: bool) -> bool {
        self.0.pass(keep_frames)
    }
    /// A stand-in leaves the place.
    pub fn leave(&self) {
        self.0.leave();
    }
    /// A thread away waits until it holds the place again; `holder` is the
    /// place's parker, `own` this thread's.
    pub fn come_back(&self, holder: &Parker, own: &Parker) {
        self.0.come_back(&holder.0, StdArc::clone(&own.0), true);
    }
    /// Whether no thread but the holder has frames on the place.
    pub fn nobody_away(&self) -> bool {
        self.0.nobody_away()
    }
}

impl Default for Baton {
    fn default() -> Self {
        Self::new()
    }
}

/// The queue slots of a bounded pool.
#[derive(Debug, Clone)]
pub struct Slots(crate::sync::Arc<crate::flow::slots::Slots>);

/// One slot, held; dropping it gives it back.
#[derive(Debug)]
pub struct Slot(crate::flow::slots::Slot);

impl Slots {
    /// `max` free slots.
    pub fn new(max: usize) -> Self {
        Self(crate::sync::Arc::new(crate::flow::slots::Slots::new(max)))
    }
    /// A free slot, if there is one and nobody waits (`try_spawn`).
    pub fn try_acquire(&self) -> Option<Slot> {
        crate::flow::slots::Slot::try_acquire(&self.0).map(Slot)
    }
    /// A slot, past the bound if need be (plain `spawn`).
    pub fn forced(&self) -> Slot {
        Slot(crate::flow::slots::Slot::forced(&self.0))
    }
    /// Slots held now.
    pub fn held(&self) -> usize {
        self.0.held()
    }
    /// Waits for a slot in the FIFO line (`reserve`); `Err` once closed.
    /// Its `step_out`/`step_in` are what a blocking wait on a worker does
    /// around each job it runs.
    pub fn acquire(&self) -> Acquire {
        Acquire(crate::flow::slots::Acquire::new(self.0.clone()))
    }
    /// Shuts the line (pool shutdown).
    pub fn close(&self) {
        self.0.close();
    }
}

/// A waiter for a slot (`Pool::reserve`'s inner future).
#[derive(Debug)]
pub struct Acquire(crate::flow::slots::Acquire);

impl Acquire {
    /// Leaves the line, keeping its place (the worker runs another job).
    pub fn step_out(&self) {
        self.0.step_out();
    }
    /// Comes back to its place.
    pub fn step_in(&self) {
        self.0.step_in();
    }
}

impl std::future::Future for Acquire {
    type Output = Result<Slot, ()>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|result| result.map(Slot).map_err(drop))
    }
}

/// A handoff cell whose job holds `slot` until it starts or is cancelled.
pub fn task_with_slot<F, T>(func: F, slot: Slot) -> (Job, Task<T>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (job, task) =
        crate::task::handoff::new_task(func, Some(slot.0), 0, crate::Priority::Normal);
    (Job(job), task)
}

/// The sleep protocol of idle workers.
#[derive(Debug)]
pub struct Sleep(crate::sched::sleep::Sleep);

impl Sleep {
    /// Sleep state for `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self(crate::sched::sleep::Sleep::new(workers))
    }
    /// Call after making a job visible: wakes one sleeper if any.
    pub fn notify_one(&self) {
        self.0.notify_one();
    }
    /// Wakes every sleeper.
    pub fn notify_all(&self) {
        self.0.notify_all();
    }
    /// Wakes worker `index` directly (as a latch or a Task waker does).
    pub fn unpark(&self, index: usize) {
        self.0.parker(index).unpark();
    }
    /// The blocking detector sleeps until a notifier that finds nobody to
    /// wake pokes it, unless `has_waiting()` sees a job after it raised its
    /// flag; returns whether it slept (see `Dormancy::sleep_unless`).
    pub fn detector_sleep_unless(&self, has_waiting: impl FnOnce() -> bool) -> bool {
        self.0.dormancy().sleep_unless(has_waiting)
    }
}

/// The completion wake-ups a worker place holds back while its pool is
/// backlogged (src/task/completions.rs).
#[derive(Debug)]
pub struct HeldWakeUps(crate::task::completions::Deferred);

impl HeldWakeUps {
    /// An empty list.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(crate::task::completions::Deferred::new())
    }
    /// A worker holds `waker` back, keeping the detector of `sleep` awake
    /// for it.
    pub fn hold(&self, waker: std::task::Waker, sleep: &Sleep) {
        if self.0.push(waker) {
            sleep.0.dormancy().keep_awake();
        }
    }
    /// Whether a wake-up is held (the detector's look).
    pub fn is_pending(&self) -> bool {
        self.0.is_pending()
    }
    /// Wakes every held wake-up; returns how many.
    pub fn wake_all(&self) -> usize {
        self.0.wake_all()
    }
}

/// A thread that runs jobs, as the blocking detector sees it
/// (src/blocking/runner.rs).
#[derive(Clone)]
pub struct Runner(crate::sync::Arc<crate::blocking::runner::Runner>);

impl Runner {
    /// A runner in a job, not flagged.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(crate::sync::Arc::new(crate::blocking::runner::Runner::new()))
    }
    /// Its thread ended the job it was in (its check of its own flag).
    pub fn job_ended(&self, compensation: &Compensation) {
        self.0.job_ended(&compensation.0);
    }
    /// Its thread enters a marked call (`offload::blocking`), `nanos`
    /// after the detector's epoch.
    pub fn mark(&self, nanos: u64) {
        self.0.mark(std::time::Duration::from_nanos(nanos));
    }
    /// The marked call it is in, as the detector reads it (0: none).
    pub fn marked_token(&self) -> u64 {
        self.0.marked_token()
    }
    /// Its thread's marked call returned.
    pub fn marked_call_ended(&self, compensation: &Compensation) {
        self.0.marked_call_ended(&compensation.0);
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}

/// The detector's counts of blocked runners and of helpers.
#[derive(Clone)]
pub struct Compensation(crate::sync::Arc<crate::blocking::runner::Compensation>);

impl Compensation {
    /// No runner blocked, no helper.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(crate::sync::Arc::new(
            crate::blocking::runner::Compensation::new(),
        ))
    }
    /// The detector flags `runner` (not flagged) as blocked.
    pub fn flag(&self, runner: &Runner) {
        self.0.flag(&runner.0);
    }
    /// The detector flags `runner`, found blocked in the marked call
    /// `token`; whether the flag stays (the call had not ended).
    pub fn flag_marked(&self, runner: &Runner, token: u64) -> bool {
        self.0.flag_marked(&runner.0, token)
    }
    /// Clears `runner`'s flag if set; whether this call did.
    pub fn unflag(&self, runner: &Runner) -> bool {
        self.0.unflag(&runner.0)
    }
    /// Runners flagged now.
    pub fn blocked(&self) -> usize {
        self.0.blocked()
    }
    /// Helpers alive now.
    pub fn helpers(&self) -> usize {
        self.0.helpers()
    }
    /// The detector counts a helper it is about to start, if there are
    /// fewer than blocked runners.
    pub fn add_helper(&self) -> bool {
        self.0.add_helper()
    }
    /// A helper that found no job leaves.
    pub fn remove_helper(&self) {
        self.0.remove_helper();
    }
    /// A helper between two jobs: whether it stays (else it has left).
    pub fn helper_stays(&self) -> bool {
        self.0.helper_stays()
    }
}

impl std::fmt::Debug for Compensation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compensation")
            .field("blocked", &self.blocked())
            .field("helpers", &self.helpers())
            .finish()
    }
}

/// Proof, handed to [`Queues::take_shared`], that the worker taking from a
/// shared queue is a spinner (see `src/sched/worker_loop.rs`). Models cannot make one.
#[derive(Debug)]
pub struct Spinning<'a>(#[allow(dead_code)] &'a crate::sched::sleep::Spinning<'a>);

/// The queues of a model's workers: what the worker loop looks in.
pub trait Queues {
    /// What the queues hold.
    type Job;
    /// Pops worker `worker`'s own queue.
    fn pop_own(&self, worker: usize) -> Option<Self::Job>;
    /// Takes from a queue shared with other workers (possibly a batch,
    /// whose rest goes to `worker`'s own queue); only a spinner may.
    fn take_shared(&self, worker: usize, spinning: &Spinning<'_>) -> Option<Self::Job>;
    /// Whether any queue `worker` looks in holds a job, its own included.
    fn has_work(&self, worker: usize) -> bool;
    /// Runs a job that `worker` found.
    fn execute(&self, worker: usize, job: Self::Job);
    /// Whether `worker` spins a round before it sleeps (loom has no clock:
    /// one round stands for any learnt spin; see `src/sched/spin_budget.rs`).
    fn spins(&self, _worker: usize) -> bool {
        false
    }
}

/// The library's worker, over a model's queues.
struct ModelWorker<'a, Q> {
    sleep: &'a crate::sched::sleep::Sleep,
    queues: &'a Q,
    index: usize,
}

impl<Q: Queues> crate::sched::worker_loop::Queues for ModelWorker<'_, Q> {
    type Job = Q::Job;
    fn sleep(&self) -> &crate::sched::sleep::Sleep {
        self.sleep
    }
    fn index(&self) -> usize {
        self.index
    }
    fn pop_own(&self) -> Option<Q::Job> {
        self.queues.pop_own(self.index)
    }
    fn take_shared(&self, spinning: &crate::sched::sleep::Spinning<'_>) -> Option<Q::Job> {
        self.queues.take_shared(self.index, &Spinning(spinning))
    }
    fn has_work(&self) -> bool {
        self.queues.has_work(self.index)
    }
    fn execute(&self, job: Q::Job) {
        self.queues.execute(self.index, job);
    }
    fn spin_budget(&self) -> std::time::Duration {
        if self.queues.spins(self.index) {
            std::time::Duration::from_nanos(1)
        } else {
            std::time::Duration::ZERO
        }
    }
}

/// Runs worker `index`'s loop (the one every pool worker runs) until
/// `terminating()` holds and it finds no job.
pub fn run_worker<Q: Queues>(
    sleep: &Sleep,
    queues: &Q,
    index: usize,
    terminating: impl Fn() -> bool,
) {
    let worker = ModelWorker {
        sleep: &sleep.0,
        queues,
        index,
    };
    crate::sched::worker_loop::run_until_terminated(&worker, terminating);
}

/// Runs worker `index`'s loop until `done()` holds, as a worker waiting
/// for a join half or a Task does; whoever makes `done()` true must then
/// [`Sleep::unpark`] this worker.
pub fn run_worker_until<Q: Queues>(
    sleep: &Sleep,
    queues: &Q,
    index: usize,
    done: impl Fn() -> bool,
) {
    let worker = ModelWorker {
        sleep: &sleep.0,
        queues,
        index,
    };
    crate::sched::worker_loop::run_until(&worker, done);
}

/// A set-once latch whose waiter parks on a [`Parker`].
#[derive(Debug)]
pub struct Latch(crate::fork_join::latch::Latch);

impl Latch {
    /// A latch that wakes `waiter` when set.
    pub fn new(waiter: &Parker) -> Self {
        Self(crate::fork_join::latch::Latch::new(&waiter.0))
    }
    /// A latch that wakes `waiter` through a plain pointer, as a private
    /// `join` half's latch does (no reference count).
    ///
    /// # Safety
    /// `waiter` must outlive every call to [`set`](Self::set).
    pub unsafe fn for_worker(waiter: &Parker) -> Self {
        // SAFETY: the caller's contract is `for_worker`'s.
        Self(unsafe { crate::fork_join::latch::Latch::for_worker(&waiter.0) })
    }
    /// Whether it is set (Acquire).
    pub fn probe(&self) -> bool {
        self.0.probe()
    }
    /// Sets it and wakes the waiter.
    pub fn set(&self) {
        // SAFETY: `self` is borrowed for the whole call, so it stays valid.
        unsafe { crate::fork_join::latch::Latch::set(&self.0) }
    }
}

/// The completion counter of a scope.
#[derive(Debug)]
pub struct CountLatch(crate::fork_join::latch::CountLatch);

impl CountLatch {
    /// A count of one (the body) that wakes `waiter` at zero.
    pub fn new(waiter: &Parker) -> Self {
        Self(crate::fork_join::latch::CountLatch::new(&waiter.0))
    }
    /// Adds one pending job.
    pub fn increment(&self) {
        self.0.increment();
    }
    /// Whether the count reached zero (Acquire).
    pub fn probe(&self) -> bool {
        self.0.probe()
    }
    /// Drops one count, waking the waiter at zero.
    pub fn decrement(&self) {
        // SAFETY: `self` is borrowed for the whole call, so it stays valid.
        unsafe { crate::fork_join::latch::CountLatch::decrement(&self.0) }
    }
}

/// The shared state of one `LoopWatch`: the loop's poll and the watcher's
/// tick (src/observe/watch.rs), with times given by the model.
#[derive(Clone)]
pub struct LoopWatchState(crate::sync::StdArc<crate::observe::watch::Watched>);

impl std::fmt::Debug for LoopWatchState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoopWatchState")
    }
}

impl LoopWatchState {
    /// A watch with this threshold and period (in nanoseconds of the
    /// model's clock) and a reporter that does nothing.
    pub fn new(threshold: u64, period: u64) -> Self {
        Self(crate::sync::StdArc::new(
            crate::observe::watch::Watched::new(
                std::time::Duration::from_nanos(threshold),
                std::time::Duration::from_nanos(period),
                crate::observe::watch::silent_reporter(),
            ),
        ))
    }

    /// The loop polls the watch at time `now`: the lag, if this poll
    /// answers a wake-up.
    pub fn poll(&self, now: u64, waker: &std::task::Waker) -> Option<u64> {
        self.0.on_poll(now, waker)
    }

    /// The watcher's tick at `now`: `None` if it woke the loop, else when
    /// the unanswered wake-up was.
    pub fn tick(&self, now: u64) -> Option<u64> {
        self.0.on_tick(now)
    }

    /// How many lag samples were recorded.
    pub fn samples(&self) -> u64 {
        self.0.samples()
    }
}

/// The slot a stalled thread's signal handler writes its stack into
/// (src/observe/capture.rs).
pub struct CaptureSlot(crate::observe::capture::CaptureSlot);

impl std::fmt::Debug for CaptureSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaptureSlot")
    }
}

impl CaptureSlot {
    /// An idle slot.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(crate::observe::capture::CaptureSlot::new())
    }
    /// The requester arms it for thread `tid`.
    pub fn request(&self, tid: usize) {
        self.0.request(tid, 0..usize::MAX)
    }
    /// The requester's check: the words the handler copied, once it is
    /// done.
    pub fn poll(&self) -> Option<Vec<usize>> {
        self.0.poll().map(|captured| {
            captured
                .stack
                .chunks_exact(std::mem::size_of::<usize>())
                .map(|word| usize::from_ne_bytes(word.try_into().unwrap()))
                .collect()
        })
    }
    /// The requester stops waiting: `false` if a handler is writing.
    pub fn give_up(&self) -> bool {
        self.0.give_up()
    }
    /// A handler on thread `tid` copies `words` (its "stack") if the slot
    /// is armed for it.
    pub fn answer(&self, tid: usize, words: &[usize]) {
        self.0.answer(tid, |buffer, _stack| {
            for (i, word) in words.iter().enumerate() {
                let at = i * std::mem::size_of::<usize>();
                buffer.stack[at..at + std::mem::size_of::<usize>()]
                    .copy_from_slice(&word.to_ne_bytes());
            }
            buffer.len = std::mem::size_of_val(words);
        })
    }
}
