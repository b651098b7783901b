//! Platform code of the stall detector (Linux): taking a copy of a stalled
//! thread's registers and of the top of its stack, from the watcher thread.
//!
//! Two paths, chosen by the thread's state in `/proc`:
//! - **Sleeping in the kernel** (`S`, `D`): no signal. The watcher reads
//!   the thread's user stack pointer and program counter from
//!   `/proc/self/task/<tid>/syscall`, copies the stack window itself with
//!   `process_vm_readv` (memory unmapped meanwhile is an error, not a
//!   fault), and reads `syscall` again: if the thread is no longer in the
//!   same call, the copy may be torn, and it tries once more, then gives
//!   up. So a capture never interrupts a system call of the user's (no
//!   `EINTR`).
//! - **Running user code** (`R`): a real-time signal, sent with `tgkill`
//!   after these checks, each of which, failing, gives a stall without a
//!   stack and the reason: offload's handler is still the signal's action
//!   (`sigaction` query: a program may reset it, or a library take it);
//!   the thread neither blocks the signal nor has one pending (`status`:
//!   `SigBlk`, `SigPnd`, `ShdPnd`; a program reading it with `signalfd`
//!   blocks it, and signals sent to it would pile up); and the thread is
//!   the one that registered (its start time, field 22 of `stat`, so a
//!   reused id is never signalled). The watcher then arms the
//!   [capture slot](super::capture) and polls it.
//!
//! The handler only copies: the interrupted registers from the kernel's
//! `ucontext` and the bytes from the interrupted stack pointer upwards,
//! clamped to the thread's stack bounds (which the loop thread recorded
//! when it first polled its watch, and the request carries), into the
//! preallocated slot. It calls `gettid` (a raw system call), reads and
//! restores `errno` and does atomics and plain copies: no unwinder, lock,
//! allocation or thread-local. The watcher unwinds the copy afterwards
//! ([`super::unwind`]). It is installed with `SA_SIGINFO | SA_RESTART |
//! SA_ONSTACK`: on the thread's alternate signal stack where it has one (a
//! thread near the end of its stack still answers), and a call the signal
//! interrupts restarts where the kernel can restart it. A thread that
//! enters a system call between the state check and the signal's delivery
//! is the one case a signal reaches a call; the window is a few
//! microseconds.
//!
//! The signal: the highest real-time signal with no handler when the first
//! capture is made (real-time signals are queued and have no default use).
//! If none is free, stalls are reported without stacks.

use std::ffi::c_void;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::capture::{Buffer, CaptureSlot, Captured, STACK_WINDOW};
use super::proc::{self, OsThread};
use crate::sync::{lock, Mutex};

static SLOT: CaptureSlot = CaptureSlot::new();

/// Serialises requests: the slot takes one at a time.
static REQUESTS: Mutex<()> = Mutex::new(());

/// The signal the handler is installed on, once; `None` if none was free.
static SIGNAL: OnceLock<Option<libc::c_int>> = OnceLock::new();

/// How often the watcher looks at the slot while it waits.
const POLL_EVERY: Duration = Duration::from_micros(50);

/// Copies the registers and stack window of `thread` (of this process),
/// waiting at most about `patience` for a signalled thread to answer, and
/// says which way (`"signal"` or `"/proc"`); or says why it could not.
pub(crate) fn capture(
    thread: &OsThread,
    patience: Duration,
) -> Result<(Captured, &'static str), String> {
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return Err("stacks are taken on x86_64 and aarch64 only".into());
    }
    if thread.stack.is_empty() {
        return Err("the loop thread's stack bounds are unknown".into());
    }
    for _ in 0..2 {
        let stat = proc::stat(thread.tid).ok_or("the loop thread has exited")?;
        if stat.start_time != thread.start_time {
            return Err(format!(
                "thread id {} now belongs to another thread (the loop thread has exited)",
                thread.tid
            ));
        }
        match stat.state {
            'R' => return by_signal(thread, patience).map(|captured| (captured, "signal")),
            'S' | 'D' => {
                if let Some(captured) = from_proc(thread)? {
                    return Ok((captured, "/proc"));
                }
                // It moved on while it was copied: look again.
            }
            other => return Err(format!("the loop thread is in state '{other}'")),
        }
    }
    Err("the loop thread kept moving between system calls while it was copied".into())
}

/// The `/proc` path: `Ok(None)` if the thread left its call during the
/// copy.
fn from_proc(thread: &OsThread) -> Result<Option<Captured>, String> {
    let unreadable = |error| format!("cannot read the loop thread's /proc syscall file: {error}");
    let Some(before) = proc::syscall(thread.tid).map_err(unreadable)? else {
        return Ok(None); // running again
    };
    if !thread.stack.contains(&before.sp) {
        return Err("the stack pointer is outside the loop thread's stack".into());
    }
    let len = (thread.stack.end - before.sp).min(STACK_WINDOW);
    let stack = proc::read_memory(before.sp, len)
        .map_err(|error| format!("cannot read the loop thread's stack: {error}"))?;
    if proc::syscall(thread.tid).map_err(unreadable)?.as_ref() != Some(&before) {
        return Ok(None);
    }
    Ok(Some(Captured {
        regs: [before.pc, before.sp, 0, 0],
        stack_start: before.sp,
        stack,
        missing: None,
    }))
}

/// The signal path, after its checks (module docs).
fn by_signal(thread: &OsThread, patience: Duration) -> Result<Captured, String> {
    let signal = (*SIGNAL.get_or_init(install)).ok_or("no real-time signal was free")?;
    if !handler_installed(signal) {
        return Err(format!(
            "signal {signal}'s action is no longer offload's handler (the program changed it)"
        ));
    }
    let state = proc::signal_state(thread.tid, signal).ok_or("the loop thread has exited")?;
    if state.blocked {
        return Err(format!("the loop thread blocks signal {signal}"));
    }
    if state.pending {
        return Err(format!(
            "signal {signal} is already pending for the loop thread"
        ));
    }
    let _one_at_a_time = lock(&REQUESTS);
    SLOT.request(thread.tid, thread.stack.clone());
    // SAFETY: tgkill only sends a signal to a thread of our own process,
    // checked above to be the registered one (a thread that exited since
    // makes it fail with ESRCH, and a handler on another thread with the id
    // reused within these microseconds sees the slot armed for its id but
    // copies only within the registered stack's bounds, which its stack
    // pointer is not in).
    let sent = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            thread.tid as libc::pid_t,
            signal,
        )
    } == 0;
    let deadline = Instant::now() + patience;
    loop {
        if let Some(captured) = SLOT.poll() {
            return match captured.missing {
                Some(why) => Err(why.into()),
                None => Ok(captured),
            };
        }
        if (!sent || Instant::now() >= deadline) && SLOT.give_up() {
            return Err(if sent {
                format!("the loop thread did not answer signal {signal} within {patience:?}")
            } else {
                "the signal could not be sent".into()
            });
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Whether `signal`'s action is still our handler.
fn handler_installed(signal: libc::c_int) -> bool {
    // SAFETY: sigaction only reads the action into `old`, a valid pointer.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == on_signal as *const () as usize
    }
}

/// Picks a free real-time signal and installs the handler on it.
fn install() -> Option<libc::c_int> {
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
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
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
    let tid = crate::sync::current_tid() as usize;
    SLOT.answer(tid, |buffer, stack| copy(buffer, stack, context));
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The handler's copy into the slot's buffer.
fn copy(buffer: &mut Buffer, stack: std::ops::Range<usize>, context: *mut c_void) {
    let Some(regs) = registers(context) else {
        buffer.missing = Some("the interrupted registers are not read on this architecture");
        return;
    };
    buffer.regs = regs;
    let sp = regs[1];
    if !stack.contains(&sp) {
        buffer.missing = Some("the stack pointer is outside the loop thread's stack");
        return;
    }
    let len = (stack.end - sp).min(STACK_WINDOW);
    // SAFETY: [sp, sp + len) lies within the interrupted thread's stack
    // (this thread's: the slot was armed for its id, and `stack` is the
    // bounds it recorded), between its stack pointer and its top, which is
    // mapped; the buffer holds STACK_WINDOW bytes, and the two never
    // overlap (the buffer is a static).
    unsafe { std::ptr::copy_nonoverlapping(sp as *const u8, buffer.stack.as_mut_ptr(), len) };
    buffer.stack_start = sp;
    buffer.len = len;
}

/// The interrupted pc, sp, frame pointer and link register, from the
/// kernel's saved context; `None` where we do not know its layout.
fn registers(context: *mut c_void) -> Option<[usize; 4]> {
    let context = context as *const libc::ucontext_t;
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: for an SA_SIGINFO handler the kernel passes a valid
        // ucontext_t as the third argument, alive for the handler's run.
        let gregs = unsafe { &(*context).uc_mcontext.gregs };
        Some([
            gregs[libc::REG_RIP as usize] as usize,
            gregs[libc::REG_RSP as usize] as usize,
            gregs[libc::REG_RBP as usize] as usize,
            0,
        ])
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: as above.
        let mcontext = unsafe { &(*context).uc_mcontext };
        Some([
            mcontext.pc as usize,
            mcontext.sp as usize,
            mcontext.regs[29] as usize,
            mcontext.regs[30] as usize,
        ])
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = context;
        None
    }
}
