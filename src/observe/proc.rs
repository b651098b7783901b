//! Platform code of the stall detector (Linux): what `/proc` says of a
//! thread of this process, and reading its stack from another thread.
//!
//! Everything here runs on the watcher thread (or, for [`OsThread::current`],
//! on the loop thread when it first polls its watch), never in a signal
//! handler: it opens files and allocates.

use std::fs;
use std::io;
use std::ops::Range;

/// A thread of this process as the OS knows it, recorded by the thread
/// itself: its id, when it started (so that a reused id is told apart) and
/// where its stack is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OsThread {
    pub(crate) tid: usize,
    /// Field 22 of `/proc/self/task/<tid>/stat`: the thread's start time in
    /// clock ticks since boot. Two threads with one id never share it
    /// unless the id is reused within one tick.
    pub(crate) start_time: u64,
    /// The thread's stack, lowest address to one past the highest; empty
    /// if unknown.
    pub(crate) stack: Range<usize>,
}

impl OsThread {
    /// The calling thread.
    pub(crate) fn current() -> Option<OsThread> {
        let tid = crate::sync::current_tid() as usize;
        Some(OsThread {
            tid,
            start_time: stat(tid)?.start_time,
            stack: current_stack().unwrap_or(0..0),
        })
    }
}

/// The calling thread's stack bounds, from the C library.
fn current_stack() -> Option<Range<usize>> {
    // SAFETY: `attr` is initialised by pthread_getattr_np before it is read
    // and destroyed once; pthread_attr_getstack writes two plain values.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let got = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (got == 0 && !addr.is_null()).then(|| addr as usize..addr as usize + size)
    }
}

fn task_file(tid: usize, name: &str) -> io::Result<String> {
    fs::read_to_string(format!("/proc/self/task/{tid}/{name}"))
}

/// The fields of `stat` the watcher uses.
pub(crate) struct Stat {
    /// `R` running or runnable, `S` sleeping, `D` uninterruptible, …
    pub(crate) state: char,
    pub(crate) start_time: u64,
}

/// A thread's `stat`; `None` if it has exited.
pub(crate) fn stat(tid: usize) -> Option<Stat> {
    parse_stat(&task_file(tid, "stat").ok()?)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The name (field 2) is in parentheses and may hold anything: the
    // fields after its last ')' are plain. Field 3 is the state; field 22
    // (the 20th after the name) the start time.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_time })
}

/// Signal `signal`'s bits in a thread's `status`: blocked, pending for the
/// thread, pending for the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SignalState {
    pub(crate) blocked: bool,
    pub(crate) pending: bool,
}

pub(crate) fn signal_state(tid: usize, signal: i32) -> Option<SignalState> {
    let text = task_file(tid, "status").ok()?;
    let bit = |key: &str| -> Option<bool> {
        let line = text.lines().find(|line| line.starts_with(key))?;
        let mask = u64::from_str_radix(line[key.len()..].trim(), 16).ok()?;
        Some(mask >> (signal - 1) & 1 == 1)
    };
    Some(SignalState {
        blocked: bit("SigBlk:")?,
        pending: bit("SigPnd:")? || bit("ShdPnd:")?,
    })
}

/// Where a thread sleeping in the kernel is, from `syscall`: the call's
/// number and arguments (to tell one call from the next), and the user
/// stack pointer and program counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InSyscall {
    pub(crate) call: Vec<u64>,
    pub(crate) sp: usize,
    pub(crate) pc: usize,
}

/// `Ok(None)` if the thread runs user code (or the line is not
/// understood); the call `-1` (blocked, not in a system call) is kept. An
/// error if the file cannot be read (the thread exited, or the kernel does
/// not offer it).
pub(crate) fn syscall(tid: usize) -> io::Result<Option<InSyscall>> {
    let text = task_file(tid, "syscall")?;
    Ok(parse_syscall(&text))
}

fn parse_syscall(text: &str) -> Option<InSyscall> {
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    if fields.len() < 3 {
        return None; // "running"
    }
    let hex = |field: &str| u64::from_str_radix(field.trim_start_matches("0x"), 16).ok();
    let (call, regs) = fields.split_at(fields.len() - 2);
    Some(InSyscall {
        call: call
            .iter()
            .map(|field| {
                field
                    .parse::<i64>()
                    .map(|n| n as u64)
                    .ok()
                    .or_else(|| hex(field))
            })
            .collect::<Option<_>>()?,
        sp: hex(regs[0])? as usize,
        pc: hex(regs[1])? as usize,
    })
}

/// Copies `len` bytes at `address` of this process's memory, as a debugger
/// would (`process_vm_readv`): memory unmapped meanwhile is an error or a
/// short read, never a fault.
pub(crate) fn read_memory(address: usize, len: usize) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; len];
    let local = libc::iovec {
        iov_base: bytes.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: address as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: the local iovec covers `bytes`, which we own and which lives
    // across the call; the remote one is only read by the kernel, which
    // checks it against our own address space.
    let read = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if read < 0 {
        return Err(io::Error::last_os_error());
    }
    bytes.truncate(read as usize);
    Ok(bytes)
}

/// A thread's `schedstat`, kept open and re-read from its start: the
/// watcher samples it at every answered wake-up.
#[derive(Debug)]
pub(crate) struct SchedStat {
    tid: usize,
    file: fs::File,
}

impl SchedStat {
    pub(crate) fn open(tid: usize) -> Option<SchedStat> {
        let file = fs::File::open(format!("/proc/self/task/{tid}/schedstat")).ok()?;
        Some(SchedStat { tid, file })
    }

    pub(crate) fn tid(&self) -> usize {
        self.tid
    }

    /// Nanoseconds on a CPU and waiting for one, since the thread started.
    pub(crate) fn read(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::FileExt;
        let mut buffer = [0u8; 96];
        let len = self.file.read_at(&mut buffer, 0).ok()?;
        let text = std::str::from_utf8(&buffer[..len]).ok()?;
        let mut fields = text.split_ascii_whitespace();
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_parentheses() {
        let line = "1234 (a) b) (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21\n";
        let stat = parse_stat(line).unwrap();
        assert_eq!((stat.state, stat.start_time), ('S', 987654));
    }

    #[test]
    fn syscall_lines() {
        assert_eq!(parse_syscall("running\n"), None);
        assert_eq!(
            parse_syscall("-1 0x7ffd1000 0x7f001234\n"),
            Some(InSyscall {
                call: vec![u64::MAX],
                sp: 0x7ffd1000,
                pc: 0x7f001234,
            })
        );
        let in_call = parse_syscall("7 0x0 0x0 0x1f4 0x0 0x0 0x0 0x7ffc2000 0x7f005678\n").unwrap();
        assert_eq!(
            (in_call.call.len(), in_call.sp, in_call.pc),
            (7, 0x7ffc2000, 0x7f005678)
        );
    }

    #[test]
    fn this_thread_is_known_to_proc() {
        let me = OsThread::current().unwrap();
        assert!(me.stack.contains(&(&me as *const OsThread as usize)));
        assert_eq!(stat(me.tid).unwrap().state, 'R');
        assert!(SchedStat::open(me.tid).unwrap().read().is_some());
    }
}
