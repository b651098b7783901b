//! The injector: the FIFO queue of jobs submitted from outside the pool.
//!
//! An intrusive multi-producer queue after Dmitry Vyukov's "intrusive MPSC
//! node-based queue": jobs are linked through the `next` field of their
//! [`JobHeader`], so a push allocates nothing and a spawn from outside the
//! pool costs exactly its handoff cell. (crossbeam's `Injector`, used
//! before, allocates a block per 63 jobs.) Producers never wait for each
//! other or for a consumer; consumers take turns.
//!
//! # Protocol
//!
//! The queue is a singly linked list from `front` (oldest) to `back`
//! (newest). A *stub* header, owned by the injector, stands in whenever
//! no job is queued, so the list is never empty.
//!
//! - **Push** (any thread): `prev = back.swap(job)`; `prev.next = job`.
//!   (`job.next` is null: its header was made with a null link, or
//!   `push_again` cleared the stale one of a job taken and pushed again.) The swap is the push's linearization point: from it
//!   on, `back != stub` and [`Injector::is_empty`] is false. The job becomes
//!   reachable from `front` once the link is written; between the two the
//!   push is *in flight*.
//! - **Pop** (one consumer at a time, the holder of `consuming`, which owns
//!   `front`): skip the stub if it is at the front; take the front job once
//!   its `next` is set. If the front job is the last one linked, the
//!   consumer puts the stub behind it with a **compare-exchange** on `back`
//!   (`front` → `stub`) and takes the job. The exchange fails only if a push
//!   is in flight behind the job; the consumer then waits for its link,
//!   which is that producer's very next store. So a pop returns `None` only
//!   for an empty queue.
//!
//! # Invariants
//!
//! 1. A job is taken only once its `next` is non-null, or after the stub
//!    replaced it as `back`: so a producer never links to a job that has
//!    been taken, run and freed (it links to `prev` while `prev.next` is
//!    null and `prev` is still in the queue).
//! 2. The stub is pushed only by the consumer, only when it is not in the
//!    queue, and only behind the one job left: `back == stub` therefore
//!    means every job pushed before the stub's push was taken (the last one
//!    by that consumer). Hence `is_empty()` is exact, not a snapshot that
//!    misses linked jobs, which the sleep protocol needs: a sleeper that
//!    reads `back == stub` after its `fence(SeqCst)` either saw every push
//!    ordered before the fence taken, or the pusher's own fence-ordered
//!    load sees the sleeper (see [`crate::sched::sleep`]).
//! 3. Producers never wait. A consumer holding its turn waits only for a
//!    producer between its two stores (a few instructions, unless that
//!    producer was preempted right there).
//!
//! Drains that must not miss a job (the last worker's, a submitter's after
//! every worker exited: see [`crate::sched::registry`]) wait for their turn as
//! consumer ([`Injector::pop_waiting`]); a worker looking for work only
//! tries it ([`Injector::try_pop_batch`]) and looks elsewhere if another
//! thread is consuming (`is_empty` stays false, so it does not sleep).

use std::fmt;
use std::ptr::{self, NonNull};

use crossbeam_utils::CachePadded;

use crate::sched::deque::Worker;
use crate::sync::{mutant, spin_loop, thread, AtomicBool, AtomicPtr, Ordering, UnsafeCell};
use crate::task::job::{JobHeader, JobRef, Mode};

/// Most jobs a worker moves from the injector to its deque at once (as
/// crossbeam's `Injector::steal_batch_and_pop`), the one it runs included;
/// a worker asks for fewer when its jobs are long (see
/// `WorkerThread::injector_batch`).
pub(crate) const MAX_BATCH: usize = if cfg!(loom) { 2 } else { 32 };

/// The consumer's side: the turn flag and the position it guards.
struct ConsumerEnd {
    /// Held by the one thread that consumes.
    consuming: AtomicBool,
    /// The oldest node in the queue (a job, or the stub). Only the holder of
    /// `consuming` reads or writes it.
    front: UnsafeCell<NonNull<JobHeader>>,
}

/// The pool's queue of jobs from outside (see the module docs).
pub(crate) struct Injector {
    /// The newest node: producers swap themselves in here. Padded: it is
    /// written by every producer, and the consumer end by every consumer.
    back: CachePadded<AtomicPtr<JobHeader>>,
    consumer: CachePadded<ConsumerEnd>,
    /// Boxed so that its address is stable; freed by `Drop`.
    stub: NonNull<JobHeader>,
}

// SAFETY: the raw pointers are to jobs (`Send`, see `JobRef`) and to the
// stub, which the injector owns; shared access follows the protocol above.
unsafe impl Send for Injector {}
// SAFETY: as above: `back` and the links are atomics, and `front` is only
// touched by the holder of `consuming`.
unsafe impl Sync for Injector {}

/// Never called: the stub is skipped, never popped.
unsafe fn stub_execute(_: NonNull<JobHeader>, _: Mode, _: &crate::observe::metrics::Tally<'_>) {
    unreachable!("the injector's stub was executed");
}

impl Injector {
    pub(crate) fn new() -> Self {
        let stub = NonNull::from(Box::leak(Box::new(JobHeader::new(stub_execute))));
        Self {
            back: CachePadded::new(AtomicPtr::new(stub.as_ptr())),
            consumer: CachePadded::new(ConsumerEnd {
                consuming: AtomicBool::new(false),
                front: UnsafeCell::new(stub),
            }),
            stub,
        }
    }

    /// Queues `job` at the back. Never blocks, never allocates.
    ///
    /// A job is pushed once in its life, so its `next` is still the null
    /// that [`JobHeader::new`] wrote (published by the swap in `link`).
    pub(crate) fn push(&self, job: JobRef) {
        self.link(job.header());
    }

    /// Pushes `job` again after it was taken from a queue (this one's or a
    /// deque, where it may have arrived in an injector batch): its `next`
    /// still holds the link it had here, so it is cleared first. The
    /// thread that took the job owns its header's link from then on
    /// (invariant 1: no producer links to a job that has been taken).
    pub(crate) fn push_again(&self, job: JobRef) {
        // SAFETY: a JobRef's header is live while it is held (see
        // `JobRef::new`).
        let header = unsafe { job.header().as_ref() };
        if !mutant!("push_again_keeps_link") {
            // Relaxed: published by the swap in `link`, as a new header's null.
            header.next.store(ptr::null_mut(), Ordering::Relaxed);
        }
        self.link(job.header());
    }

    /// Whether no job is queued or being pushed (exact, see invariant 2).
    pub(crate) fn is_empty(&self) -> bool {
        // Relaxed: callers order this load with `fence(SeqCst)` (the sleep
        // and exit protocols); the value alone decides.
        self.back.load(Ordering::Relaxed) == self.stub.as_ptr()
    }

    /// Pops the oldest job and moves up to `limit - 1` more (at most
    /// `MAX_BATCH - 1`) to `dest`, keeping their order; `None` if the queue
    /// is empty or another thread is consuming.
    pub(crate) fn try_pop_batch(&self, dest: &Worker<JobRef>, limit: usize) -> Option<JobRef> {
        let limit = limit.clamp(1, MAX_BATCH);
        if self.is_empty() {
            return None;
        }
        if !self.try_lock() {
            // Another consumer has the turn: look elsewhere (a spin, which
            // must let others run).
            spin_loop();
            return None;
        }
        let mut batch = [None::<JobRef>; MAX_BATCH];
        let mut taken = 0;
        while taken < limit {
            // SAFETY: we hold `consuming`.
            match unsafe { self.pop_locked() } {
                Some(job) => batch[taken] = Some(job),
                None => break,
            }
            taken += 1;
        }
        self.unlock();
        if taken == 0 {
            // Another consumer took the last job since `is_empty` looked (or
            // that look was stale): a spin, which must let others run.
            spin_loop();
            return None;
        }
        // The deque's owner end is LIFO: push newest first, so the oldest
        // is popped first.
        for job in batch[1..taken].iter().rev().flatten() {
            dest.push(*job);
        }
        batch[0]
    }

    /// Pops the oldest job, waiting for a concurrent consumer to finish
    /// first; `None` if the queue is empty.
    pub(crate) fn pop_waiting(&self) -> Option<JobRef> {
        self.lock();
        // SAFETY: we hold `consuming`.
        let job = unsafe { self.pop_locked() };
        self.unlock();
        job
    }

    /// Takes the consumer's turn, waiting while another thread has it (for
    /// at most one batch of pops, unless the holder was preempted: then,
    /// after a bounded spin, it yields so that the holder can run, as
    /// [`wait_for_link`] does).
    fn lock(&self) {
        let mut spins = 0u32;
        while !self.try_lock() {
            backoff(&mut spins);
        }
    }

    fn try_lock(&self) -> bool {
        // Acquire: the previous consumer's writes of `front` (and what it
        // read through the links) happen before ours.
        self.consumer
            .consuming
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    fn unlock(&self) {
        // Release: hands `front` to the next consumer (see `try_lock`).
        let order = if mutant!("injector_unlock_relaxed") {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        self.consumer.consuming.store(false, order);
    }

    /// Swaps `node` in at the back and links it behind its predecessor.
    /// `node.next` must be null: a fresh job's, or the stub's after the
    /// consumer reset it.
    fn link(&self, node: NonNull<JobHeader>) {
        // AcqRel: Release publishes the job and its null `next` to the next
        // producer, whose link must come after that null in `next`'s
        // modification order; Acquire does the same for our predecessor.
        let prev = self.back.swap(node.as_ptr(), Ordering::AcqRel);
        let order = if mutant!("injector_link_relaxed") {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        // SAFETY: `prev` is still queued: its `next` is null until this
        // store, and a consumer takes a job only once its `next` is set or
        // after replacing it as `back`, which our swap prevents (invariant 1).
        // Release: the consumer that follows this link (Acquire) sees the job.
        unsafe { (*prev).next.store(node.as_ptr(), order) };
    }

    /// Takes the oldest job, or returns `None` if the queue is empty (see
    /// the module docs).
    ///
    /// # Safety
    /// The caller holds `consuming`.
    unsafe fn pop_locked(&self) -> Option<JobRef> {
        let stub = self.stub;
        // SAFETY: the caller holds `consuming`, which guards `front`.
        let mut front = self.consumer.front.with(|front| unsafe { *front });
        if front == stub {
            // SAFETY: the stub lives as long as the injector.
            // Acquire (here and below): pairs with the producer's link.
            let first = unsafe { stub.as_ref() }.next.load(Ordering::Acquire);
            front = match NonNull::new(first) {
                Some(first) => first,
                // Relaxed: a push this load misses is one that linearizes
                // after this pop.
                None if self.back.load(Ordering::Relaxed) == stub.as_ptr() => return None,
                // SAFETY: the stub is queued and lives as long as we do.
                None => unsafe { wait_for_link(stub) },
            };
            // SAFETY: as above.
            self.consumer
                .front
                .with_mut(|slot| unsafe { *slot = front });
        }
        // SAFETY: `front` is a queued job, so live (invariant 1).
        let next = unsafe { front.as_ref() }.next.load(Ordering::Acquire);
        let new_front = match NonNull::new(next) {
            Some(next) => next,
            // `front` is the newest linked job: put the stub behind it.
            None => {
                // SAFETY: the stub is not queued (it is not the front, and
                // only this consumer pushes it), so nobody else writes it.
                unsafe { stub.as_ref() }
                    .next
                    .store(ptr::null_mut(), Ordering::Relaxed);
                if mutant!("injector_stub_swapped") {
                    // Broken variant: Vyukov's original swap, which can put
                    // the stub behind jobs still being linked and so hide
                    // them from `is_empty` (invariant 2).
                    self.link(stub);
                    // SAFETY: `front` is still queued.
                    unsafe { wait_for_link(front) }
                } else if self
                    .back
                    // Release: publishes the stub's null `next` to the next
                    // producer (see `link`). Relaxed on failure: we only
                    // learn that a push is in flight behind `front`.
                    .compare_exchange(
                        front.as_ptr(),
                        stub.as_ptr(),
                        Ordering::Release,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    stub
                } else {
                    // SAFETY: `front` is still queued.
                    unsafe { wait_for_link(front) }
                }
            }
        };
        // SAFETY: as above.
        self.consumer
            .front
            .with_mut(|slot| unsafe { *slot = new_front });
        // SAFETY: `front` was queued by `push` from a `JobRef`.
        Some(unsafe { JobRef::new(front) })
    }
}

/// Waits until the push in flight behind `node` links itself (its producer
/// has swapped itself in as `back`; the link is its next store), and
/// returns the node it linked.
///
/// # Safety
/// `node` is queued, and the caller holds `consuming`, so it stays live.
unsafe fn wait_for_link(node: NonNull<JobHeader>) -> NonNull<JobHeader> {
    let mut spins = 0u32;
    loop {
        // SAFETY: the caller's contract.
        // Acquire: pairs with the link (Release), publishing the job.
        if let Some(next) = NonNull::new(unsafe { node.as_ref() }.next.load(Ordering::Acquire)) {
            return next;
        }
        // The producer is between two stores; only if it was preempted
        // there does this take long: then give it the CPU.
        backoff(&mut spins);
    }
}

/// One round of waiting for another thread that is a few instructions
/// from done: a spin hint for the first [`SPINS_BEFORE_YIELD`] rounds, then
/// `yield_now`, so that a waiter never burns a core while the thread it
/// waits for (preempted, perhaps at a lower priority) needs one.
fn backoff(spins: &mut u32) {
    if *spins < SPINS_BEFORE_YIELD {
        *spins += 1;
        spin_loop();
    } else {
        thread::yield_now();
    }
}

/// Spin hints before a waiter on the injector starts to yield.
const SPINS_BEFORE_YIELD: u32 = 64;

impl Drop for Injector {
    fn drop(&mut self) {
        debug_assert!(self.is_empty(), "a job was left on the injector");
        // SAFETY: allocated by `new` as a Box; no job links to it any more.
        drop(unsafe { Box::from_raw(self.stub.as_ptr()) });
    }
}

impl fmt::Debug for Injector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Injector")
            .field("is_empty", &self.is_empty())
            .finish_non_exhaustive()
    }
}
