//! The server under test, as a child process: `examples/server`, started
//! on an ephemeral port, watched through `/proc`, stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::Result;

/// How long the server may take to print `listening on ADDR`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long it may take to exit after SIGTERM, before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// `examples/server` beside this executable (`target/<profile>/examples/`).
pub fn default_path() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or("this executable has no parent directory")?;
    Ok(dir.join(format!("server{}", std::env::consts::EXE_SUFFIX)))
}

/// The error for a server binary that is not there.
pub fn missing(path: &Path) -> String {
    let release = if cfg!(debug_assertions) {
        ""
    } else {
        " --release"
    };
    format!(
        "no server binary at {}: build it first with `cargo build{release} --example server` \
         (or point --server at one)",
        path.display()
    )
}

/// A running server.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `path` with `args` and waits for its `listening on ADDR` line.
    pub fn start(path: &Path, args: &[String]) -> Result<Server> {
        let mut child = Command::new(path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let stdout = child.stdout.take().ok_or("the server's stdout")?;
        let (tx, rx) = mpsc::channel();
        // Reads the first line, then passes the rest on to stderr (the
        // pipe must be drained, or a chatty server would block on it).
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for line in lines.map_while(std::io::Result::ok) {
                eprintln!("server: {line}");
            }
        });
        let fail = |child: &mut Child, why: String| -> Result<Server> {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("server {} {}: {why}", path.display(), args.join(" ")).into())
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(Some(Err(e))) => return fail(&mut child, format!("reading its stdout: {e}")),
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                return fail(&mut child, format!("exited before listening ({status})"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return fail(
                    &mut child,
                    format!("no `listening on` line within {START_TIMEOUT:?}"),
                )
            }
        };
        let addr = match line
            .trim()
            .strip_prefix("listening on ")
            .map(|a| a.trim().parse::<SocketAddr>())
        {
            Some(Ok(addr)) => addr,
            _ => return fail(&mut child, format!("unexpected first line {line:?}")),
        };
        Ok(Server { child, addr })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running (`Some(status)` once it exited).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]; waits for the exit.
    pub fn stop(mut self) -> Result<()> {
        if self.exited().is_some() {
            return Ok(());
        }
        #[cfg(unix)]
        {
            let pid = libc::pid_t::try_from(self.child.id())?;
            // SAFETY: plain system call on our own, not yet reaped, child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if self.exited().is_some() {
                    return Ok(());
                }
                thread::sleep(Duration::from_millis(10));
            }
            eprintln!("server {} ignored SIGTERM; killing it", self.child.id());
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// A process's memory from `/proc/PID/status`, KiB: resident now (`VmRSS`),
/// and its peak (`VmHWM`).
#[derive(Clone, Copy, Default, Debug)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// CPU time a process has used (user + system), from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    #[cfg(unix)]
    // SAFETY: plain library call without side effects.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    #[cfg(not(unix))]
    let per_sec = 100;
    let per_sec = u64::try_from(per_sec).ok().filter(|&t| t > 0)?;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / per_sec))
}

/// CPU time this process has used (user + system).
pub fn own_cpu_time() -> Option<Duration> {
    cpu_time(std::process::id())
}
