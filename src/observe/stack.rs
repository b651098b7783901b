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
    pub fn address(&self) -> usize {
        self.address
    }

    /// The function's demangled name, without Rust's hash suffix.
    pub fn function(&self) -> Option<&str> {
        self.function.as_deref()
    }

    /// The source file, where debug info tells.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The source line, where debug info tells.
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

/// How long the watcher waits for a stalled thread to answer the signal.
#[cfg(all(target_os = "linux", not(loom)))]
const PATIENCE: std::time::Duration = std::time::Duration::from_millis(100);

/// The stack of thread `tid`, symbolized; `None` where the platform gives
/// no way to take it, or the thread did not answer.
#[cfg(all(target_os = "linux", not(loom)))]
pub(crate) fn stack_of(tid: usize) -> Option<Vec<Frame>> {
    let captured = super::signal::capture(tid, PATIENCE)?;
    // Frames before the interrupted one are the handler's and the
    // unwinder's own.
    let start = captured.frames.iter().position(|&ip| ip == captured.pc);
    let frames = &captured.frames[start.unwrap_or(0)..];
    // The unwinder ends some stacks with a null return address.
    let frames = frames.strip_suffix(&[0]).unwrap_or(frames);
    let mut stack = Vec::with_capacity(frames.len());
    for (i, &ip) in frames.iter().enumerate() {
        // A return address points after the call: look up the call itself.
        let lookup = if i == 0 && start.is_some() {
            ip
        } else {
            ip.saturating_sub(1)
        };
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
    Some(stack)
}

/// No way to take another thread's stack here.
#[cfg(not(all(target_os = "linux", not(loom))))]
pub(crate) fn stack_of(_tid: usize) -> Option<Vec<Frame>> {
    None
}

/// The calling thread's OS id, where the platform can signal it.
#[cfg(all(target_os = "linux", not(loom)))]
pub(crate) fn current_tid() -> Option<usize> {
    Some(crate::priority::current_tid() as usize)
}

/// The calling thread's OS id, where the platform can signal it.
#[cfg(not(all(target_os = "linux", not(loom))))]
pub(crate) fn current_tid() -> Option<usize> {
    None
}
