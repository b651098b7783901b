//! A stalled loop thread's stack: taken by [`super::signal`] where the
//! platform allows, symbolized here on the watcher thread.

use std::fmt;
use std::path::{Path, PathBuf};

/// One frame of a stalled thread's stack (see [`Stall::stack`]), innermost
/// first. A function inlined into another gets a frame of its own.
///
/// Names come from the binary's debug info or symbol table; a stripped
/// binary shows addresses only.
///
/// [`Stall::stack`]: crate::Stall::stack
///
/// See the example on [`Stall`](crate::Stall).
#[derive(Clone, Debug)]
pub struct Frame {
    address: usize,
    function: Option<String>,
    file: Option<PathBuf>,
    line: Option<u32>,
}

impl Frame {
    /// The instruction address (for the innermost frame, where the thread
    /// was interrupted; for the others, the return address).
    ///
    /// See the example on [`Stall`](crate::Stall).
    pub fn address(&self) -> usize {
        self.address
    }

    /// The function's demangled name, without Rust's hash suffix.
    ///
    /// See the example on [`Stall`](crate::Stall).
    pub fn function(&self) -> Option<&str> {
        self.function.as_deref()
    }

    /// The source file, where debug info tells.
    ///
    /// See the example on [`Stall`](crate::Stall).
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The source line, where debug info tells.
    ///
    /// See the example on [`Stall`](crate::Stall).
    pub fn line(&self) -> Option<u32> {
        self.line
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.function {
            Some(name) => write!(f, "{name}")?,
            None => write!(f, "{:#x}", self.address)?,
        }
        if let Some(file) = &self.file {
            write!(f, "\n             at {}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
        }
        Ok(())
    }
}

/// What taking a stack cost the watcher thread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StackCost {
    /// How the copy was taken: `"signal"` or `"/proc"`.
    pub(crate) via: &'static str,
    /// From the first check to the copy in hand.
    pub(crate) copy: std::time::Duration,
    /// Unwinding and symbolizing the copy.
    pub(crate) unwind: std::time::Duration,
}

/// How long the watcher waits for a stalled thread to answer the signal.
#[cfg(all(target_os = "linux", not(loom)))]
const PATIENCE: std::time::Duration = std::time::Duration::from_millis(100);

/// The calling thread as the OS knows it (recorded by a loop thread when
/// it first polls its watch), and its scheduler figures.
#[cfg(all(target_os = "linux", not(loom)))]
pub(crate) use super::proc::{OsThread, SchedStat};

/// Why a stall of a thread not known to the OS layer has no stack.
pub(crate) const NO_THREAD: &str = "stacks are taken on Linux only";

/// The OS id of a thread.
#[cfg(all(target_os = "linux", not(loom)))]
pub(crate) fn tid_of(thread: &OsThread) -> usize {
    thread.tid
}

/// Where stacks are not taken, nothing is known of a thread.
#[cfg(not(all(target_os = "linux", not(loom))))]
pub(crate) fn tid_of(_thread: &OsThread) -> usize {
    0
}

/// Where the scheduler's figures are not read.
#[cfg(not(all(target_os = "linux", not(loom))))]
#[derive(Debug)]
pub(crate) struct SchedStat;

#[cfg(not(all(target_os = "linux", not(loom))))]
impl SchedStat {
    pub(crate) fn open(_tid: usize) -> Option<SchedStat> {
        None
    }
    pub(crate) fn tid(&self) -> usize {
        0
    }
    pub(crate) fn read(&self) -> Option<(u64, u64)> {
        None
    }
}

/// Where stacks are not taken, nothing is known of a thread.
#[cfg(not(all(target_os = "linux", not(loom))))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OsThread;

#[cfg(not(all(target_os = "linux", not(loom))))]
impl OsThread {
    pub(crate) fn current() -> Option<OsThread> {
        None
    }
}

/// The stack of `thread`, symbolized; or why there is none.
#[cfg(all(
    target_os = "linux",
    not(loom),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub(crate) fn stack_of(thread: &OsThread) -> Result<(Vec<Frame>, StackCost), String> {
    let started = std::time::Instant::now();
    let (captured, via) = super::signal::capture(thread, PATIENCE)?;
    let copied = started.elapsed();
    let addresses = super::unwind::unwind(&captured);
    if addresses.is_empty() {
        return Err("the stack could not be unwound".into());
    }
    let frames = symbolize(&addresses);
    Ok((
        frames,
        StackCost {
            via,
            copy: copied,
            unwind: started.elapsed() - copied,
        },
    ))
}

/// Not on this architecture: say why.
#[cfg(all(
    target_os = "linux",
    not(loom),
    not(any(target_arch = "x86_64", target_arch = "aarch64"))
))]
pub(crate) fn stack_of(_thread: &OsThread) -> Result<(Vec<Frame>, StackCost), String> {
    Err("stacks are taken on x86_64 and aarch64 only".into())
}

/// No way to take another thread's stack here.
#[cfg(not(all(target_os = "linux", not(loom))))]
pub(crate) fn stack_of(_thread: &OsThread) -> Result<(Vec<Frame>, StackCost), String> {
    Err("stacks are taken on Linux only".into())
}

/// Names the addresses of a stack (innermost first: the interrupted
/// program counter, then return addresses).
#[cfg(all(target_os = "linux", not(loom)))]
fn symbolize(addresses: &[usize]) -> Vec<Frame> {
    let mut stack = Vec::with_capacity(addresses.len());
    for (i, &ip) in addresses.iter().enumerate() {
        // A return address points after the call: look up the call itself.
        let lookup = if i == 0 { ip } else { ip.saturating_sub(1) };
        let before = stack.len();
        backtrace::resolve(lookup as *mut std::ffi::c_void, |symbol| {
            stack.push(Frame {
                address: ip,
                function: symbol.name().map(|name| format!("{name:#}")),
                file: symbol.filename().map(Path::to_path_buf),
                line: symbol.lineno(),
            });
        });
        if stack.len() == before {
            stack.push(Frame {
                address: ip,
                function: None,
                file: None,
                line: None,
            });
        }
    }
    stack
}

/// Whether `frame` is the application's own: a Rust function (a path with
/// `::`; the C library's and the loader's frames have none) outside the
/// standard library, the executors and offload.
pub(crate) fn is_application(frame: &Frame) -> bool {
    // The runtimes, executors and server frameworks a loop's stack passes
    // through on its way to the application's handler.
    const NOT_APPLICATION: [&str; 17] = [
        "std::",
        "core::",
        "alloc::",
        "tokio::",
        "smol::",
        "async_executor::",
        "async_task::",
        "async_io::",
        "futures::",
        "futures_",
        "offload::",
        "hyper::",
        "hyper_util::",
        "h2::",
        "tower::",
        "axum::",
        "tracing::",
    ];
    let Some(name) = frame.function() else {
        return false;
    };
    // `<T as Trait>::f` names the type first.
    let name = name.trim_start_matches('<');
    name.contains("::")
        && !NOT_APPLICATION
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// The calling thread's OS id, where the platform can signal it.
#[cfg(all(target_os = "linux", not(loom)))]
pub(crate) fn current_tid() -> Option<usize> {
    Some(crate::sync::current_tid() as usize)
}

/// The calling thread's OS id, where the platform can signal it.
#[cfg(not(all(target_os = "linux", not(loom))))]
pub(crate) fn current_tid() -> Option<usize> {
    None
}
