//! Platform code of the stall detector (Linux): the loop thread's OS id,
//! and taking its stack from the watcher thread with a signal.
//!
//! This is the one module with a signal handler. The watcher arms the
//! [capture slot](super::capture), sends a real-time signal to the stalled
//! thread with `tgkill`, and polls the slot. The handler runs on the stalled
//! thread, walks its own stack and stores the return addresses; the watcher
//! symbolizes them afterwards ([`super::stack`]), never the handler.
//!
//! Why the handler is async-signal-safe (it may interrupt the thread
//! anywhere, inside `malloc` or while it holds any lock):
//! - it calls `gettid` (a raw system call), reads and writes `errno` (its
//!   own thread's, restored before it returns), touches only atomics and
//!   the preallocated slot buffer ([`super::capture`]), and never allocates,
//!   locks or formats;
//! - it walks the stack with `backtrace::trace_unsynchronized`, which on
//!   Linux is libgcc's `_Unwind_Backtrace`. With glibc 2.35 or later and
//!   libgcc 12 or later, the unwinder finds each frame's unwind table with
//!   `_dl_find_object`, which is lock-free and async-signal-safe (glibc's
//!   manual says so), instead of `dl_iterate_phdr` and its loader lock; it
//!   allocates nothing. Its one-time set-up (a `pthread_once` in libgcc)
//!   is done by a first walk on the watcher thread before the handler is
//!   installed, so the handler never runs it. This is how sampling
//!   profilers (pprof-rs) walk stacks in a signal handler; the test
//!   `tests/loop_watch.rs::capture_while_the_loop_allocates` takes stacks
//!   while the loop thread is inside `malloc`, where a lock in the handler's
//!   path would deadlock.
//!
//! The signal: the highest real-time signal with no handler when the first
//! capture is made (real-time signals are queued and have no default use).
//! If none is free, stalls are reported without stacks. The handler is
//! installed with `SA_RESTART`, so a system call it interrupts restarts (or
//! returns `EINTR` where the kernel never restarts it, as every caller of
//! such calls must already handle).

use std::ffi::c_void;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::capture::{CaptureSlot, Captured};
use crate::sync::{lock, Mutex};

static SLOT: CaptureSlot = CaptureSlot::new();

/// Serialises requests: the slot takes one at a time.
static REQUESTS: Mutex<()> = Mutex::new(());

/// The signal the handler is installed on, once; `None` if none was free.
static SIGNAL: OnceLock<Option<libc::c_int>> = OnceLock::new();

/// How often the watcher looks at the slot while it waits.
const POLL_EVERY: Duration = Duration::from_micros(100);

/// Takes the stack of thread `tid` (of this process), waiting at most about
/// `patience` for it to answer. `None` if it did not (blocked signals, an
/// uninterruptible sleep) or no signal was free.
pub(crate) fn capture(tid: usize, patience: Duration) -> Option<Captured> {
    let signal = (*SIGNAL.get_or_init(install))?;
    let _one_at_a_time = lock(&REQUESTS);
    SLOT.request(tid);
    // SAFETY: tgkill only sends a signal; the target is a thread of our own
    // process (a stale id fails with ESRCH, or reaches a thread whose
    // handler sees the id mismatch and ignores it).
    let sent =
        unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid as libc::pid_t, signal) } == 0;
    let deadline = Instant::now() + patience;
    loop {
        if let Some(captured) = SLOT.poll() {
            return Some(captured);
        }
        if (!sent || Instant::now() >= deadline) && SLOT.give_up() {
            return None;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Picks a free real-time signal and installs the handler on it.
fn install() -> Option<libc::c_int> {
    // The unwinder's one-time set-up runs here, never in the handler.
    backtrace::trace(|_| true);
    for signal in (libc::SIGRTMIN()..=libc::SIGRTMAX()).rev() {
        // SAFETY: sigaction is given valid pointers; a zeroed `sigaction` is a
        // valid "no handler" value to read into. The handler installed is an
        // `extern "C"` function with the SA_SIGINFO signature.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0
                || old.sa_sigaction != libc::SIG_DFL
            {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) == 0 {
                return Some(signal);
            }
        }
    }
    None
}

/// The handler: see the module docs for why each step is async-signal-safe.
extern "C" fn on_signal(_signal: libc::c_int, _info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: `__errno_location` returns this thread's errno, always valid.
    let errno = unsafe { *libc::__errno_location() };
    let tid = crate::priority::current_tid() as usize;
    SLOT.answer(tid, |frames| {
        let mut len = 0;
        // SAFETY: `trace_unsynchronized` is unsafe because it takes no lock
        // against concurrent traces, which matters only for unwinders that
        // are not thread-safe (Windows' dbghelp); libgcc's is. The walk is
        // async-signal-safe (module docs), and the closure only stores into
        // the slot's preallocated buffer, within its bounds.
        unsafe {
            backtrace::trace_unsynchronized(|frame| {
                frames[len] = frame.ip() as usize;
                len += 1;
                len < frames.len()
            });
        }
        (len, interrupted_pc(context))
    });
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The program counter where the signal interrupted the thread, from the
/// kernel's saved context; 0 where we do not know the layout.
fn interrupted_pc(context: *mut c_void) -> usize {
    let context = context as *const libc::ucontext_t;
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: for an SA_SIGINFO handler the kernel passes a valid
        // ucontext_t as the third argument, alive for the handler's run.
        unsafe { (*context).uc_mcontext.gregs[libc::REG_RIP as usize] as usize }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: as above.
        unsafe { (*context).uc_mcontext.pc as usize }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = context;
        0
    }
}
