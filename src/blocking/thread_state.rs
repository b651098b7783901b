//! Platform code of blocking detection: is a thread of this process on a
//! CPU, or waiting in the kernel? (See [`super::detect`].)
//!
//! On Linux, the third field of `/proc/self/task/<tid>/stat` is the
//! thread's scheduler state: `R` running or runnable (waiting for a core is
//! not blocking), `S` interruptible sleep (a socket read, a futex, a
//! `nanosleep`), `D` uninterruptible sleep (disk I/O, some network file
//! systems), and others that a pool's thread never shows while it runs a
//! job (stopped, traced, zombie). Only `S` and `D` count as blocked.
//!
//! A worker thread's file is opened once and re-read with `pread` at
//! offset 0, which makes the kernel render it afresh: one system call per
//! look. Any other thread (a stand-in, a helper: spare threads come and go,
//! and their ids with them) is read through a file opened for that one
//! look and closed at once: a pool that lives for weeks never holds a
//! descriptor for a thread that is gone, and holds at most one per worker
//! (closed when the detector exits, after the workers). std's
//! `FileExt::read_at` is `pread`. Elsewhere there is no such file,
//! so nothing is ever blocked and `Builder::detect_blocking` has no effect.
//!
//! [`ThreadUsage`]: what the calling thread has used, its CPU time and
//! its voluntary context switches (`getrusage(RUSAGE_THREAD)`, the one
//! `unsafe` call here), which tell a call through `blocking` that blocked
//! from one that computed, even on a machine whose cores are all busy
//! (a computing thread is preempted, it does not switch voluntarily; see
//! `LONG_CALL` in `sched/worker.rs`).

// Read only by the detector thread, which loom builds do not have.
#![cfg_attr(loom, allow(dead_code))]

use std::collections::HashMap;
use std::fs::File;
use std::time::Duration;

/// What the calling thread has used so far (module docs): its CPU time
/// (user and system), and how many times it gave the CPU up to wait
/// (voluntary context switches: a sleep, a blocking read, a futex wait).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ThreadUsage {
    pub(crate) cpu: Duration,
    pub(crate) waits: u64,
}

impl ThreadUsage {
    /// The calling thread's usage, where the platform says.
    #[cfg(target_os = "linux")]
    pub(crate) fn now() -> Option<Self> {
        // SAFETY: `rusage` is plain old data, for which all zeroes is a
        // valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a valid, writable rusage, and getrusage writes
        // nothing else; RUSAGE_THREAD has existed since Linux 2.6.26, and
        // an older kernel's EINVAL is an answer (None).
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
        if rc != 0 {
            return None;
        }
        let time = |t: libc::timeval| {
            let secs = u64::try_from(t.tv_sec).unwrap_or(0);
            let micros = u64::try_from(t.tv_usec).unwrap_or(0);
            Duration::from_secs(secs) + Duration::from_micros(micros)
        };
        Some(Self {
            cpu: time(usage.ru_utime) + time(usage.ru_stime),
            waits: u64::try_from(usage.ru_nvcsw).unwrap_or(0),
        })
    }

    /// The calling thread's usage: unknown here.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn now() -> Option<Self> {
        None
    }
}

/// Cached `/proc` files of the worker threads looked at (module docs).
#[derive(Default)]
pub(crate) struct ThreadStates {
    /// Keyed by thread id; only threads that live as long as the pool's
    /// workers (the callers say which), so at most one per worker.
    files: HashMap<u64, File>,
}

impl ThreadStates {
    /// Whether thread `tid` of this process sleeps in the kernel (`S` or
    /// `D`); `None` if it cannot tell (no such thread any more, no `/proc`,
    /// tid 0). With `keep`, the thread is a worker, which lives as long as
    /// the pool: its file stays open for the next look; else it is closed
    /// before this returns.
    pub(crate) fn is_blocked(&mut self, tid: u64, keep: bool) -> Option<bool> {
        if tid == 0 {
            return None;
        }
        let state = self.read_state(tid, keep);
        if state.is_none() {
            self.files.remove(&tid);
        }
        state.map(|state| matches!(state, b'S' | b'D'))
    }

    #[cfg(target_os = "linux")]
    fn read_state(&mut self, tid: u64, keep: bool) -> Option<u8> {
        use std::collections::hash_map::Entry;
        use std::os::unix::fs::FileExt;

        let open = || File::open(format!("/proc/self/task/{tid}/stat")).ok();
        // A file opened for this look only is dropped (closed) on return.
        let once;
        let file = if keep {
            match self.files.entry(tid) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(open()?),
            }
        } else {
            once = open()?;
            &once
        };
        // `pid (comm) S ...`: comm may hold spaces and parentheses, so the
        // state follows the last `)`. 512 bytes hold the state: comm is at
        // most 16 bytes.
        let mut buf = [0u8; 512];
        let len = file.read_at(&mut buf, 0).ok()?;
        parse_state(&buf[..len])
    }

    #[cfg(not(target_os = "linux"))]
    fn read_state(&mut self, _tid: u64, _keep: bool) -> Option<u8> {
        None
    }

    /// Files held open now.
    #[cfg(test)]
    fn open_files(&self) -> usize {
        self.files.len()
    }
}

/// The state letter of a `stat` line.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&byte| byte == b')')?;
    stat.get(close + 2).copied()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_parentheses_in_the_name() {
        assert_eq!(parse_state(b"42 (a) b) c) S 1 2 3"), Some(b'S'));
        assert_eq!(parse_state(b"42 (x) R 1"), Some(b'R'));
        assert_eq!(parse_state(b"garbage"), None);
    }

    #[test]
    fn reads_this_thread_as_running_and_a_sleeper_as_blocked() {
        let mut states = ThreadStates::default();
        let me = crate::observe::stack::current_tid().unwrap() as u64;
        assert_eq!(states.is_blocked(me, true), Some(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let sleeper = std::thread::spawn(move || {
            tx.send(crate::observe::stack::current_tid().unwrap() as u64)
                .unwrap();
            done_rx.recv().unwrap();
        });
        let tid = rx.recv().unwrap();
        // It blocks in `recv` (a futex): poll until the state shows it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while states.is_blocked(tid, false) != Some(true) {
            assert!(std::time::Instant::now() < deadline, "never seen blocked");
            std::thread::yield_now();
        }
        done_tx.send(()).unwrap();
        sleeper.join().unwrap();
        assert_eq!(states.is_blocked(tid, false), None);
        assert_eq!(states.is_blocked(0, true), None);
        // Only the kept thread's file stays open.
        assert_eq!(states.open_files(), 1);
    }
}
