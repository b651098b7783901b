//! Helpers shared by the loom models: drop-counting values, a waker whose
//! clones loom tracks, and a `block_on` that deadlocks (which loom reports)
//! if a wake-up is lost.
//!
//! Everything here is built from loom primitives, so loom checks it too:
//! - a [`Counted`] value holds a loom `Arc`, so a value that is never dropped
//!   is reported by loom as a leak at the end of the execution;
//! - each clone of a [`TrackedWaker`] is its own allocation with a loom
//!   `UnsafeCell` that `wake_by_ref` reads and `drop` writes, so a waker
//!   read on one thread and dropped on another without a happens-before
//!   edge between the two is a loom causality violation (this is what makes
//!   a missing Acquire before the cell's deallocation visible).
//!
//! Loom reports a causality violation by panicking at the offending access.
//! offload runs user code (closures, `Drop` of outputs and wakers, `wake`)
//! under `catch_unwind` so that a worker never unwinds, which would swallow
//! such a panic. So every helper that user code calls runs its loom accesses
//! through [`checked`], which records a panic before letting it unwind, and
//! [`model`] fails the execution at its end if one was recorded.

#![allow(dead_code)]

use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use offload::loom_api::Parker;

std::thread_local! {
    /// Panics raised by loom inside [`checked`] code during the current
    /// execution. Loom runs every thread of a model as a coroutine on the
    /// test's OS thread, so a thread-local sees all of them (and only them).
    static SWALLOWED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f`; if it panics (a loom causality violation, an assertion of a
/// helper), records the message for [`model`] before unwinding on, so that a
/// `catch_unwind` in the library cannot hide it.
pub fn checked<R>(what: &str, f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "<non-string panic>".to_string());
            SWALLOWED.with(|s| s.borrow_mut().push(format!("{what}: {message}")));
            std::panic::resume_unwind(payload)
        }
    }
}

/// Runs `f` as a loom model and prints how many executions loom explored
/// and how long it took (visible with `--nocapture`). An execution fails if
/// a [`checked`] helper panicked, even if the library caught the panic.
pub fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    model_bounded(name, None, f);
}

/// [`model`] with the preemption bound capped at `cap` (unless
/// `OFFLOAD_LOOM_FULL` is set in the environment): for the few models
/// whose state space at `LOOM_MAX_PREEMPTIONS=3` takes minutes.
pub fn model_bounded(name: &str, cap: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
    let iterations = std::sync::Arc::new(StdAtomicUsize::new(0));
    let counter = iterations.clone();
    let start = std::time::Instant::now();
    let mut builder = loom::model::Builder::new();
    if std::env::var_os("OFFLOAD_LOOM_FULL").is_none() {
        if let Some(cap) = cap {
            builder.preemption_bound = Some(builder.preemption_bound.map_or(cap, |b| b.min(cap)));
        }
    }
    let bound = builder.preemption_bound;
    builder.check(move || {
        counter.fetch_add(1, StdOrdering::Relaxed);
        SWALLOWED.with(|s| s.borrow_mut().clear());
        f();
        let swallowed = SWALLOWED.with(|s| std::mem::take(&mut *s.borrow_mut()));
        assert!(
            swallowed.is_empty(),
            "a panic in user code was caught by the library: {swallowed:#?}"
        );
    });
    eprintln!(
        "loom model {name}: {} executions in {:.2?} (preemption bound {})",
        iterations.load(StdOrdering::Relaxed),
        start.elapsed(),
        bound.map_or_else(|| "none".to_string(), |b| b.to_string())
    );
}

/// Counts drops of [`Counted`] values.
#[derive(Clone, Debug)]
pub struct DropCount(Arc<AtomicUsize>);

impl DropCount {
    pub fn new() -> Self {
        Self(Arc::new(AtomicUsize::new(0)))
    }

    /// A value whose drop this counter records.
    pub fn value(&self, payload: u32) -> Counted {
        Counted {
            payload,
            drops: self.0.clone(),
        }
    }

    /// Drops so far (Acquire: the caller has joined the dropping threads,
    /// or the drop happened on its own thread).
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// A value whose drop is counted; leaking it leaks a loom `Arc`, which loom
/// reports.
#[derive(Debug)]
pub struct Counted {
    pub payload: u32,
    drops: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        checked("Counted::drop", || {
            self.drops.fetch_add(1, Ordering::Release)
        });
    }
}

/// What the wakers of one [`TrackedWaker`] family share.
#[derive(Debug)]
struct WakeLog {
    wakes: AtomicUsize,
    parker: Parker,
}

/// One clone of a tracked waker: its own allocation.
struct WakerClone {
    /// `true` while this clone is alive: read by `wake_by_ref`, written by
    /// `drop`. A loom cell, so those accesses must be ordered.
    alive: UnsafeCell<bool>,
    log: std::sync::Arc<WakeLog>,
    /// Leak detection: a clone that is never dropped leaks this loom Arc.
    _token: Arc<()>,
}

/// A waker family: each `Waker` made from it counts its wakes, unparks the
/// family's [`Parker`], and is checked by loom (see the module docs).
#[derive(Clone, Debug)]
pub struct TrackedWaker {
    log: std::sync::Arc<WakeLog>,
}

impl TrackedWaker {
    pub fn new() -> Self {
        Self {
            log: std::sync::Arc::new(WakeLog {
                wakes: AtomicUsize::new(0),
                parker: Parker::new(),
            }),
        }
    }

    /// A fresh `Waker` of this family.
    pub fn waker(&self) -> Waker {
        let clone = Box::new(WakerClone {
            alive: UnsafeCell::new(true),
            log: self.log.clone(),
            _token: Arc::new(()),
        });
        // SAFETY: the vtable below implements the RawWaker contract for a
        // leaked `Box<WakerClone>`.
        unsafe { Waker::from_raw(RawWaker::new(Box::into_raw(clone).cast(), &VTABLE)) }
    }

    /// How many times a waker of this family was woken.
    pub fn wakes(&self) -> usize {
        self.log.wakes.load(Ordering::Acquire)
    }

    /// The parker that a wake unparks.
    pub fn parker(&self) -> &Parker {
        &self.log.parker
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_raw, wake_raw, wake_by_ref_raw, drop_raw);

unsafe fn clone_raw(data: *const ()) -> RawWaker {
    // SAFETY: `data` is a live `WakerClone` (RawWaker contract).
    let this = unsafe { &*data.cast::<WakerClone>() };
    checked("Waker::clone", || {
        this.alive.with(|alive| {
            // SAFETY: the loom cell checks that this read is ordered with `drop`.
            assert!(unsafe { *alive }, "cloned a dropped waker");
        });
        let clone = Box::new(WakerClone {
            alive: UnsafeCell::new(true),
            log: this.log.clone(),
            _token: this._token.clone(),
        });
        RawWaker::new(Box::into_raw(clone).cast(), &VTABLE)
    })
}

unsafe fn wake_raw(data: *const ()) {
    // SAFETY: forwarded contract.
    unsafe {
        wake_by_ref_raw(data);
        drop_raw(data);
    }
}

unsafe fn wake_by_ref_raw(data: *const ()) {
    // SAFETY: `data` is a live `WakerClone` (RawWaker contract).
    let this = unsafe { &*data.cast::<WakerClone>() };
    checked("Waker::wake_by_ref", || {
        this.alive.with(|alive| {
            // SAFETY: the loom cell checks that this read is ordered with `drop`.
            assert!(unsafe { *alive }, "woke a dropped waker");
        });
        this.log.wakes.fetch_add(1, Ordering::Release);
        this.log.parker.unpark();
    });
}

unsafe fn drop_raw(data: *const ()) {
    // SAFETY: `data` came from `Box::into_raw` and is dropped once.
    let this = unsafe { Box::from_raw(data.cast_mut().cast::<WakerClone>()) };
    checked("Waker::drop", || {
        this.alive.with_mut(|alive| {
            // SAFETY: the loom cell checks that this write is ordered with
            // every other access of this clone.
            unsafe {
                assert!(*alive, "dropped a waker twice");
                *alive = false;
            }
        });
    });
}

/// Polls `fut` once with `waker`.
pub fn poll_once<F: std::future::Future + Unpin>(fut: &mut F, waker: &Waker) -> Poll<F::Output> {
    let mut cx = Context::from_waker(waker);
    std::pin::Pin::new(fut).poll(&mut cx)
}

/// Drives `fut` to completion with a fresh waker of `family`, parking
/// between polls. A lost wake-up leaves this thread parked for ever, which
/// loom reports as a deadlock.
pub fn block_on<F: std::future::Future + Unpin>(family: &TrackedWaker, mut fut: F) -> F::Output {
    let waker = family.waker();
    loop {
        if let Poll::Ready(output) = poll_once(&mut fut, &waker) {
            return output;
        }
        family.parker().park();
    }
}

/// A one-way signal without spinning: a flag and the parker of the one
/// thread that waits for it.
#[derive(Clone)]
pub struct Signal {
    flag: Arc<AtomicBool>,
    parker: Parker,
}

impl Signal {
    pub fn new() -> Self {
        Self {
            flag: Arc::new(AtomicBool::new(false)),
            parker: Parker::new(),
        }
    }

    pub fn set(&self) {
        // Relaxed: the parker's token orders it (see loom-tests/tests/parker.rs).
        self.flag.store(true, Ordering::Relaxed);
        self.parker.unpark();
    }

    pub fn wait(&self) {
        while !self.flag.load(Ordering::Relaxed) {
            self.parker.park();
        }
    }
}
