//! The handoff cell and [`Task`], the future every submission returns.
//! (`Task::wait` and `wait_timeout`, which block a thread: `sched/block_on.rs`.)
//!
//! # One allocation
//!
//! A spawn allocates one [`HandoffCell`]: a [`Header`] (the atomic `state`, the
//! awaiting waker, a vtable) followed by the *stage*, which holds first the
//! closure, then its output. Two handles point at it: the [`JobRef`] in a
//! queue (the *job side*) and the [`Task`] (the *task side*). Each owns one
//! reference bit; whoever clears the last one frees the cell.
//!
//! # State bits
//!
//! | bit         | set by    | meaning                                                    |
//! |-------------|-----------|------------------------------------------------------------|
//! | `RUNNING`   | job side  | the job side claimed the closure (to run or to cancel it)  |
//! | `COMPLETE`  | job side  | the output is in the stage                                 |
//! | `CANCELLED` | task side | the Task was cancelled or dropped: the closure must not    |
//! |             |           | start, and a running job sees the request                  |
//! | `TASK_GONE` | task side | the Task was dropped or detached: the job side owns output |
//! | `WAKER`     | task side | the waker slot holds a waker the job side may read         |
//! | `JOB_REF`   | creation  | the job side's reference (cleared when it is done)         |
//! | `TASK_REF`  | creation  | the task side's reference                                  |
//!
//! # Who may touch what
//!
//! - **Closure and slot.** Exactly one side takes the closure, decided by
//!   the order of two read-modify-writes on `state`: the job side's claim
//!   (a CAS that sets `RUNNING` only while `CANCELLED` is clear) and the
//!   task side's cancel (a `fetch_or` of `CANCELLED`, which takes the
//!   closure only if neither `RUNNING` nor `CANCELLED` was set). Both read
//!   a closure written before the cell was shared. The queue slot of a
//!   bounded pool (`slot`, in the header) goes with the closure: whoever
//!   takes one takes the other and frees the slot, so a job holds its slot
//!   until it starts or is cancelled, and never longer.
//! - **Cancellation of a running job.** The `CANCELLED` bit stays set; the
//!   running job reads it through [`crate::is_cancelled`] (a Relaxed load:
//!   a request, which publishes nothing). A cancel that takes the closure
//!   resolves the Task itself: it writes the cancelled output and sets
//!   `COMPLETE`, and the job side, which then sees `CANCELLED` at its
//!   claim, touches neither the stage nor the waker.
//! - **Output.** The job side writes it, then sets `COMPLETE` (Release). From
//!   then on it belongs to the task side, unless `TASK_GONE` was already set
//!   in the value that RMW returned: then the job side takes it back and
//!   drops it. The task side's `fetch_or(TASK_GONE)` returns whether
//!   `COMPLETE` was set first, so exactly one side drops each output.
//! - **Waker.** While `WAKER` is clear only the task side touches the slot
//!   (writes it). The task side sets `WAKER` (Release) after writing it; the
//!   job side reads it (`wake_by_ref`) only if its `COMPLETE` RMW returned
//!   `WAKER` set. To replace a waker the task side first clears `WAKER`; if
//!   that RMW returns `COMPLETE`, the job side may be reading the slot, so
//!   the task side leaves it alone and takes the output instead. The waker is
//!   dropped with the cell.
//!
//! Every value (closure, output, waker, panic payload) is dropped exactly
//! once, on the worker or on the Task's thread, and a panicking `Drop` is
//! contained (see [`crate::unwind`]).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};

use crate::error::JoinError;
use crate::flow::cancel;
use crate::flow::slots::Slot;
use crate::job_priority::Priority;
use crate::observe::metrics::Tally;
use crate::sync::{fence, mutant, AtomicUsize, Ordering, UnsafeCell};
use crate::task::job::{JobHeader, JobRef, Mode};
use crate::task::poll_spin::{self, Seen};
use crate::unwind::drop_quietly;

const RUNNING: usize = 1 << 0;
const COMPLETE: usize = 1 << 1;
/// `cancel::STOP`, which the running job's `is_cancelled` reads.
const CANCELLED: usize = cancel::STOP;
const TASK_GONE: usize = 1 << 3;
const WAKER: usize = 1 << 4;
const JOB_REF: usize = 1 << 5;
const TASK_REF: usize = 1 << 6;

/// The type-independent part of a cell, at its start (`repr(C)`, and
/// itself starting with the [`JobHeader`], so a pointer to the cell is a
/// pointer to both).
#[repr(C)]
struct Header {
    job: JobHeader,
    state: AtomicUsize,
    waker: UnsafeCell<Option<Waker>>,
    /// The queue slot of a bounded pool, held until the job starts or is
    /// cancelled; it goes with the closure (module docs).
    slot: UnsafeCell<Option<Slot>>,
    /// When the job was spawned, for a job whose timings are sampled
    /// (see [`crate::observe::metrics`]), else zero. Written before the
    /// cell is shared, never changed.
    spawned_at: u64,
    vtable: &'static VTable,
}

/// Operations on a cell that need to know the closure type `F`; the task
/// side knows only `T`.
struct VTable {
    /// Moves the output into `*dst`, a `Option<Result<T, JoinError>>`.
    take_output: unsafe fn(NonNull<Header>, *mut ()),
    /// Drops what the stage holds (closure or output) in place.
    drop_stage: unsafe fn(NonNull<Header>),
    /// Drops the closure and puts a cancelled output in its place.
    cancel_stage: unsafe fn(NonNull<Header>),
    /// Frees the cell.
    dealloc: unsafe fn(NonNull<Header>),
}

enum Stage<F, T> {
    Closure(F),
    Output(Result<T, JoinError>),
    Empty,
}

#[repr(C)]
struct HandoffCell<F, T> {
    header: Header,
    stage: UnsafeCell<Stage<F, T>>,
}

impl<F, T> HandoffCell<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    const VTABLE: VTable = VTable {
        take_output: Self::take_output,
        drop_stage: Self::drop_stage,
        cancel_stage: Self::cancel_stage,
        dealloc: Self::dealloc,
    };

    /// Allocates a cell for `func`, holding `slot`, stamped `spawned_at`,
    /// queued at `priority`: the job to queue, and its Task.
    fn allocate(
        func: F,
        slot: Option<Slot>,
        spawned_at: u64,
        priority: Priority,
    ) -> (JobRef, Task<T>) {
        let cell = Box::new(HandoffCell {
            header: Header {
                job: JobHeader::new_task(Self::execute).with_priority(priority),
                state: AtomicUsize::new(JOB_REF | TASK_REF),
                waker: UnsafeCell::new(None),
                slot: UnsafeCell::new(slot),
                spawned_at,
                vtable: &Self::VTABLE,
            },
            stage: UnsafeCell::new(Stage::<F, T>::Closure(func)),
        });
        let header = NonNull::from(Box::leak(cell)).cast::<Header>();
        // SAFETY: the job header starts the cell; `execute` is the job side's
        // single use of its reference.
        let job = unsafe { JobRef::new(header.cast()) };
        (job, Task::from_header(header))
    }

    /// # Safety
    /// `header` is the header of a live `HandoffCell<F, T>`.
    unsafe fn from_header<'a>(header: NonNull<Header>) -> &'a Self {
        // SAFETY: `HandoffCell` is repr(C) with the header first, and it is live.
        unsafe { header.cast::<Self>().as_ref() }
    }

    /// The job side: claims the closure, runs (or cancels) it, hands the
    /// output over and drops its reference. Counts the job in `tally`
    /// (before `COMPLETE`, so a resolved Task's job is counted).
    ///
    /// # Safety
    /// Called once, through the `JobRef` of a live cell of this type.
    unsafe fn execute(job: NonNull<JobHeader>, mode: Mode, tally: &Tally<'_>) {
        // The job header starts the cell's header (both `repr(C)`).
        let header = job.cast::<Header>();
        // SAFETY: the job side's reference keeps the cell alive until `release`.
        let cell = unsafe { Self::from_header(header) };
        let state = &cell.header.state;
        // SAFETY: the job header is live while the cell is.
        let priority = unsafe { job.as_ref() }.priority();

        // 1. Claim the closure unless the Task cancelled it.
        // Relaxed: ownership is decided by the RMW order on `state` alone; the
        // closure itself was published to us by the queue.
        let mut current = state.load(Ordering::Relaxed);
        loop {
            if current & CANCELLED != 0 {
                // The Task took the closure; nothing to run or to hand over.
                tally.cancelled(priority);
                // SAFETY: our reference, released once.
                unsafe { release(header, JOB_REF) };
                return;
            }
            match state.compare_exchange_weak(
                current,
                current | RUNNING,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }

        // 2. Run it. SAFETY: we claimed the closure; the task side will not
        // touch the stage until it sees COMPLETE.
        let stage = cell
            .stage
            .with_mut(|stage| unsafe { mem::replace(&mut *stage, Stage::Empty) });
        let Stage::Closure(func) = stage else {
            unreachable!("closure claimed twice")
        };
        // The job leaves the queue: its slot is free for the next one.
        // SAFETY: the slot goes with the closure, which we claimed.
        drop(unsafe { cell.header.take_slot() });
        let output = match mode {
            Mode::Run => {
                let start = tally.started(cell.header.spawned_at, priority);
                let result = {
                    // SAFETY: `state` lives until our `release` below, after
                    // the guard has put the previous scope back.
                    let _scope = (!mutant!("job_scope_not_entered"))
                        .then(|| unsafe { cancel::enter_task(state) });
                    panic::catch_unwind(AssertUnwindSafe(func))
                };
                match result {
                    Ok(value) => {
                        tally.finished(false, start);
                        Ok(value)
                    }
                    // The job stopped itself (`stop_if_cancelled`): a
                    // cancellation, not a panic.
                    Err(payload) if payload.is::<cancel::Stop>() => {
                        tally.stopped(start);
                        drop_quietly(payload);
                        Err(JoinError::cancelled())
                    }
                    Err(payload) => {
                        tally.finished(true, start);
                        Err(JoinError::panic(payload))
                    }
                }
            }
            Mode::Cancel => {
                drop_quietly(func);
                tally.cancelled(priority);
                Err(JoinError::cancelled())
            }
        };

        // 3. Hand the output over.
        // Relaxed: a hint only; if the Task is already gone, nobody will read
        // the output, and TASK_GONE is never cleared.
        if state.load(Ordering::Relaxed) & TASK_GONE != 0 {
            drop_quietly(output);
        } else {
            // SAFETY: RUNNING is set and COMPLETE is not: the stage is ours.
            cell.stage
                .with_mut(|stage| unsafe { *stage = Stage::Output(output) });
            // AcqRel: Release publishes the output to the task side; Acquire
            // makes the task side's waker write (Release) visible to us.
            let order = if mutant!("complete_relaxed") {
                Ordering::Relaxed
            } else {
                Ordering::AcqRel
            };
            let prev = state.fetch_or(COMPLETE, order);
            if prev & TASK_GONE != 0 {
                // The Task went away before COMPLETE: the output is ours to drop.
                // SAFETY: the task side saw no COMPLETE, so it never touches it.
                let stage = cell
                    .stage
                    .with_mut(|stage| unsafe { mem::replace(&mut *stage, Stage::Empty) });
                drop_quietly(stage);
            } else if prev & WAKER != 0 {
                cell.header.waker.with(|waker| {
                    // SAFETY: WAKER was set when we completed: the slot holds
                    // a waker and the task side no longer writes it.
                    if let Some(waker) = unsafe { &*waker } {
                        // A user's waker may panic; the worker must not.
                        // A worker may hold the wake-up back while jobs
                        // wait (see `crate::task::completions`).
                        let wake = || crate::task::completions::wake_completed(waker);
                        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(wake)) {
                            drop_quietly(payload);
                        }
                    }
                });
            }
        }
        // SAFETY: our reference, released once; `cell` is not used below.
        unsafe { release(header, JOB_REF) };
    }

    /// # Safety
    /// `COMPLETE` was observed with Acquire and the Task owns the output.
    unsafe fn take_output(header: NonNull<Header>, dst: *mut ()) {
        // SAFETY: the caller's contract: live cell of this type.
        let cell = unsafe { Self::from_header(header) };
        // SAFETY: after COMPLETE the stage belongs to the task side.
        let stage = cell
            .stage
            .with_mut(|stage| unsafe { mem::replace(&mut *stage, Stage::Empty) });
        let Stage::Output(output) = stage else {
            panic!("Task polled after it returned Ready");
        };
        // SAFETY: `dst` is the caller's `Option<Result<T, JoinError>>`.
        unsafe { *dst.cast::<Option<Result<T, JoinError>>>() = Some(output) };
    }

    /// # Safety
    /// The caller owns the stage (the closure after a successful cancel, or
    /// the output after COMPLETE).
    unsafe fn drop_stage(header: NonNull<Header>) {
        // SAFETY: the caller's contract: live cell, stage owned by the caller.
        let cell = unsafe { Self::from_header(header) };
        // SAFETY: as above.
        let stage = cell
            .stage
            .with_mut(|stage| unsafe { mem::replace(&mut *stage, Stage::Empty) });
        drop_quietly(stage);
    }

    /// # Safety
    /// The caller took the closure by cancelling (it owns the stage), and
    /// the job side will not touch the stage.
    unsafe fn cancel_stage(header: NonNull<Header>) {
        // SAFETY: the caller's contract: live cell, stage owned by the caller.
        let cell = unsafe { Self::from_header(header) };
        // SAFETY: as above.
        let stage = cell.stage.with_mut(|stage| unsafe {
            mem::replace(&mut *stage, Stage::Output(Err(JoinError::cancelled())))
        });
        drop_quietly(stage);
    }

    /// # Safety
    /// Both references are released; nobody else can reach the cell.
    unsafe fn dealloc(header: NonNull<Header>) {
        // SAFETY: allocated by `allocate` as a Box<Self>, now unreachable.
        let cell = unsafe { Box::from_raw(header.cast::<Self>().as_ptr()) };
        drop_quietly(cell);
    }
}

impl Header {
    /// Takes the queue slot out of the cell.
    ///
    /// # Safety
    /// The caller took the closure (the slot goes with it, module docs).
    unsafe fn take_slot(&self) -> Option<Slot> {
        // SAFETY: the caller's contract: nobody else touches the slot.
        self.slot.with_mut(|slot| unsafe { (*slot).take() })
    }
}

/// Clears `bit` (one side's reference); the side that clears the last one
/// frees the cell.
///
/// # Safety
/// The caller holds reference `bit` of a live cell, and does not use the
/// cell after this call.
unsafe fn release(header: NonNull<Header>, bit: usize) {
    // SAFETY: live until the last reference is released, which is below.
    let (state, vtable) = unsafe {
        let header = header.as_ref();
        (&header.state, header.vtable)
    };
    // Release: our accesses to the cell happen before its deallocation by
    // the other side, which synchronises through the fence below.
    let prev = state.fetch_and(!bit, Ordering::Release);
    if prev & (JOB_REF | TASK_REF) == bit {
        // Acquire fence: the other side's accesses happen before the free.
        if !mutant!("release_no_acquire") {
            fence(Ordering::Acquire);
        }
        // SAFETY: both references are gone; we are the only user.
        unsafe { (vtable.dealloc)(header) };
    }
}

/// Creates the cell for `func`, holding `slot` if the pool is bounded and
/// stamped `spawned_at` (see [`Tally::spawned`]), and returns the job to
/// queue and its Task.
pub(crate) fn new_task<F, T>(
    func: F,
    slot: Option<Slot>,
    spawned_at: u64,
    priority: Priority,
) -> (JobRef, Task<T>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    HandoffCell::allocate(func, slot, spawned_at, priority)
}

/// A handle to a job submitted to a [`Pool`](crate::Pool): a future of the
/// job's result.
///
/// `Task<T>` resolves to `Ok(T)` once the job has run, or to a [`JoinError`]
/// if it panicked or was cancelled. Await it from any executor (polling never
/// blocks, though its first poll may spin for a few microseconds: see
/// below), or call [`wait`](Task::wait) from synchronous code.
///
/// **The first poll may spin briefly.** A poll that finds the job
/// unfinished and no waker registered yet watches the result for up to
/// 10 µs (5 µs if the job has not started by then) before it registers the
/// waker and returns `Pending`: a short job's result usually arrives within
/// that time, and the executor then neither parks nor is woken (on the
/// reference VM, waking a parked loop costs 18–38 µs, and a round trip with
/// the spin takes about 1 µs). Each thread learns from its misses: after
/// `k` spins in a row that saw no result, it skips the next `2^k - 1` (down
/// to one spin in 1 024 polls), and a spin that sees one resets that. A
/// later poll of the same Task never spins, nor do [`wait`](Task::wait)
/// and [`wait_timeout`](Task::wait_timeout), which wait their own way. A
/// job of a few microseconds
/// costs the loop about as much awaited as run inline; offload pays off
/// for longer jobs (BENCHMARKS.md, *Round trip, burst, sparse load, the
/// ticker*).
///
/// **Wake-ups under a backlog.** While jobs queue behind the one that
/// completes a Task, its worker may hold the Task's wake-up back for up to
/// 250 µs (plus the short job it runs then), to wake an event loop that
/// awaits many Tasks once per batch instead of once per job (a loop's
/// park and wake-up cost it several microseconds of CPU each). Only
/// workers whose recent jobs are short do so, only in a pool with blocking
/// detection ([`Builder::detect_blocking`](crate::Builder::detect_blocking),
/// whose detector wakes what a blocked worker holds), and never for a
/// Task awaited alone behind a backlog for longer than one job.
///
/// **Dropping a Task cancels its job**: if the job has not started yet, it
/// will never run, and its closure is dropped at once; if it is running,
/// [`is_cancelled`](crate::is_cancelled) tells it so, and a job that looks
/// can stop early (cancellation is cooperative: one that does not look
/// finishes, and its output is dropped). [`cancel`](Task::cancel) does the
/// same and keeps the Task, to learn how the job ended. Use
/// [`detach`](Task::detach) to let the job run without awaiting it.
///
/// Inside a job of the same pool, use [`wait`](Task::wait), not an
/// executor's `block_on`: `wait` keeps the worker running other jobs until
/// the Task resolves, while a foreign `block_on` parks the worker, which
/// deadlocks a pool whose every worker does so.
///
/// ```
/// # pollster::block_on(async {
/// let pool = offload::Pool::new();
/// let task = pool.spawn(|| (1..=10u64).product::<u64>());
/// assert_eq!(task.await.unwrap(), 3_628_800);
/// # });
/// ```
#[must_use = "dropping a Task cancels its job; use `.detach()` to let it run"]
pub struct Task<T> {
    header: NonNull<Header>,
    _output: PhantomData<T>,
}

// SAFETY: the Task hands a `T` produced on another thread to this one, which
// needs `T: Send`; it holds no other thread-bound data.
unsafe impl<T: Send> Send for Task<T> {}
// SAFETY: `&Task` allows `is_finished` (an atomic load) and `cancel`, whose
// effects on the cell are decided by RMWs on `state` (module docs): of two
// racing cancels one takes the closure, and no `&mut` method can run
// meanwhile.
unsafe impl<T: Send> Sync for Task<T> {}

impl<T> Unpin for Task<T> {}

impl<T> Task<T> {
    fn from_header(header: NonNull<Header>) -> Self {
        Self {
            header,
            _output: PhantomData,
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: the Task holds a reference to the cell until it is dropped.
        unsafe { self.header.as_ref() }
    }

    /// Whether the job has finished (run, panicked, or been cancelled by
    /// [`cancel`](Task::cancel) before it started or by a shutdown):
    /// awaiting the Task now returns at once.
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(1).build().unwrap();
    /// let task = pool.spawn(|| 7);
    /// let _ = pool.spawn(|| ()).wait(); // the pool is FIFO from outside
    /// assert!(task.is_finished());
    /// ```
    #[must_use]
    pub fn is_finished(&self) -> bool {
        // Acquire: a `true` here is followed by reading the output.
        self.header().state.load(Ordering::Acquire) & COMPLETE != 0
    }

    /// Lets the job run to completion without awaiting it; its output is
    /// dropped on the worker.
    ///
    /// ```
    /// let pool = offload::Pool::new();
    /// pool.spawn(|| println!("runs even though nobody awaits it")).detach();
    /// pool.shutdown(); // runs every queued job
    /// ```
    pub fn detach(self) {
        let this = mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used again (ManuallyDrop: no Drop either).
        unsafe { this.relinquish(TASK_GONE) };
    }

    /// Asks the job to stop and keeps the Task, to learn how the job ended.
    ///
    /// - Not started yet: the job will never run; its closure is dropped
    ///   now, its queue slot freed, and the Task resolves at once to a
    ///   cancelled [`JoinError`].
    /// - Running: [`is_cancelled`](crate::is_cancelled) returns `true` in
    ///   the job from now on. A job that looks and returns early resolves
    ///   the Task to what it returned; one that does not look runs to the
    ///   end.
    /// - Finished: nothing changes.
    ///
    /// ```
    /// // Detection off: otherwise a helper could run `queued` while `blocker`
    /// // sits in `recv`.
    /// let pool = offload::Pool::builder().threads(1).detect_blocking(false).build().unwrap();
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// let blocker = pool.spawn(move || gate.recv().unwrap());
    /// let queued = pool.spawn(|| "never runs");
    /// queued.cancel();
    /// assert!(queued.wait().unwrap_err().is_cancelled());
    /// release.send(()).unwrap();
    /// blocker.wait().unwrap();
    /// ```
    pub fn cancel(&self) {
        let header = self.header();
        // Relaxed: ownership of the closure is decided by the RMW order on
        // `state` alone (module docs), and the job side reads the request
        // without synchronising on it.
        let prev = header.state.fetch_or(CANCELLED, Ordering::Relaxed);
        if prev & (RUNNING | CANCELLED) != 0 && !mutant!("cancel_takes_running") {
            // Running or finished (the job sees the bit), or cancelled
            // before: nothing of the cell is ours to touch.
            return;
        }
        // We took the closure and its slot.
        // SAFETY: the job side saw or will see CANCELLED before claiming,
        // so it touches neither the stage nor the slot.
        unsafe {
            (header.vtable.cancel_stage)(self.header);
            drop(header.take_slot());
        }
        // Relaxed: only the task side reads the output, through `&mut self`
        // (or `drop`) on this thread or after the Task moved, which
        // synchronises; the job side never reads it after our claim.
        let prev = header.state.fetch_or(COMPLETE, Ordering::Relaxed);
        if prev & WAKER != 0 {
            header.waker.with(|waker| {
                // SAFETY: only the task side writes the slot, through
                // `&mut self`, which cannot run while we hold `&self`; the
                // job side never claimed, so it never reads it.
                if let Some(waker) = unsafe { &*waker } {
                    if let Err(payload) =
                        panic::catch_unwind(AssertUnwindSafe(|| waker.wake_by_ref()))
                    {
                        drop_quietly(payload);
                    }
                }
            });
        }
    }

    /// Gives up the task side's interest: `bits` is `TASK_GONE` (detach) or
    /// `TASK_GONE | CANCELLED` (drop). Drops what the task side then owns
    /// and releases its reference.
    ///
    /// # Safety
    /// Called once, as the last use of the Task.
    unsafe fn relinquish(&self, bits: usize) {
        let header = self.header;
        let vtable = self.header().vtable;
        // Acquire: if COMPLETE is set we are about to drop the output, which
        // the job side published with Release. Nothing we wrote needs
        // publishing: the job side only reads TASK_GONE/CANCELLED themselves.
        let prev = self.header().state.fetch_or(bits, Ordering::Acquire);
        let cancelled_before_start = bits & CANCELLED != 0
            && (prev & (RUNNING | CANCELLED) == 0
                || mutant!("cancel_ignores_running") && prev & COMPLETE == 0);
        if cancelled_before_start {
            // SAFETY: we took the closure (the job side saw or will see
            // CANCELLED before claiming it), and the slot with it.
            unsafe {
                (vtable.drop_stage)(header);
                drop(self.header().take_slot());
            }
        } else if prev & COMPLETE != 0 {
            // SAFETY: we own the output: COMPLETE was set before TASK_GONE,
            // by the job side (which handed it to us) or by `cancel`.
            unsafe { (vtable.drop_stage)(header) };
        }
        // SAFETY: the task side's reference, released once (caller's contract).
        unsafe { release(header, TASK_REF) };
    }

    /// Registers `waker` to be woken on completion. Returns `true` if the job
    /// completed meanwhile (the output can be taken).
    fn register_waker(&mut self, waker: &Waker, may_spin: bool) -> bool {
        let header = self.header();
        // Acquire: if COMPLETE is set, the output is read next.
        let state = header.state.load(Ordering::Acquire);
        if state & COMPLETE != 0 {
            return true;
        }
        // The first poll that would register a waker may spin a little
        // first (see `crate::task::poll_spin`): the same Acquire load, repeated.
        if may_spin
            && state & WAKER == 0
            && poll_spin::spin_until(|| {
                // Acquire: a `Done` here is followed by reading the output.
                let order = if mutant!("poll_spin_relaxed") {
                    // Broken variant: the output is read without the job
                    // side's writes having been acquired.
                    Ordering::Relaxed
                } else {
                    Ordering::Acquire
                };
                let state = header.state.load(order);
                if state & COMPLETE != 0 {
                    Seen::Done
                } else if state & RUNNING != 0 {
                    Seen::Started
                } else {
                    Seen::Queued
                }
            })
        {
            return true;
        }
        if state & WAKER != 0 && !mutant!("waker_no_handshake") {
            let same = header.waker.with(|slot| {
                // SAFETY: WAKER is set, so nobody writes the slot; the job
                // side may read it concurrently, and so may we.
                unsafe { &*slot }
                    .as_ref()
                    .is_some_and(|w| w.will_wake(waker))
            });
            if same {
                return false;
            }
            // Take the slot back before writing it.
            // Acquire: if COMPLETE was set first, the output is read next.
            let prev = header.state.fetch_and(!WAKER, Ordering::Acquire);
            if prev & COMPLETE != 0 {
                return true;
            }
        }
        // SAFETY: WAKER is clear and COMPLETE was not set when we cleared it
        // (or saw it clear), so the job side will not read the slot until we
        // set WAKER again: we have it to ourselves.
        header
            .waker
            .with_mut(|slot| unsafe { *slot = Some(waker.clone()) });
        // AcqRel: Release publishes the waker to the job side's COMPLETE RMW;
        // Acquire: if COMPLETE is set, the output is read next.
        let prev = header.state.fetch_or(WAKER, Ordering::AcqRel);
        prev & COMPLETE != 0
    }

    fn take_output(&mut self) -> Result<T, JoinError> {
        let mut output: Option<Result<T, JoinError>> = None;
        // SAFETY: COMPLETE was seen with Acquire and the Task still holds its
        // reference and its interest, so the output is ours; `output` has the
        // type `take_output` writes.
        unsafe {
            (self.header().vtable.take_output)(self.header, (&mut output as *mut Option<_>).cast())
        };
        output.expect("take_output wrote no output")
    }

    /// Polls without a waker: the output if the job has finished.
    pub(crate) fn try_take(&mut self) -> Option<Result<T, JoinError>> {
        self.is_finished().then(|| self.take_output())
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.register_waker(cx.waker(), true) {
            // The rest of a batch whose first wake-up may have been this
            // Task's: woken from this thread, which runs anyway (see
            // `crate::task::completions`).
            crate::task::completions::wake_handed();
            Poll::Ready(this.take_output())
        } else {
            Poll::Pending
        }
    }
}

/// A Task polled by [`wait`](Task::wait) and
/// [`wait_timeout`](Task::wait_timeout): without the first poll's spin,
/// since they wait their own way (a worker runs other jobs, another thread
/// spins and then parks).
pub(crate) struct WaitPoll<'a, T>(pub(crate) &'a mut Task<T>);

impl<T> Future for WaitPoll<'_, T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let task = &mut *self.get_mut().0;
        if task.register_waker(cx.waker(), false) {
            Poll::Ready(task.take_output())
        } else {
            Poll::Pending
        }
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        // SAFETY: drop is the last use of the Task.
        unsafe { self.relinquish(TASK_GONE | CANCELLED) };
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Relaxed: a snapshot for display only.
        let state = self.header().state.load(Ordering::Relaxed);
        let status = if state & COMPLETE != 0 {
            "finished"
        } else if state & RUNNING != 0 {
            "running"
        } else {
            "queued"
        };
        f.debug_struct("Task")
            .field("output", &std::any::type_name::<T>())
            .field("status", &status)
            .finish()
    }
}
