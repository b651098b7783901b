//! What the examples print about the machine they ran on.

/// The machine's load averages over 1, 5 and 15 minutes, as
/// `/proc/loadavg` gives them, or `n/a`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

/// The machine's 1-minute load average, if known.
pub fn load_average_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The cores this process may use (`available_parallelism`).
pub fn cores() -> std::io::Result<usize> {
    Ok(std::thread::available_parallelism()?.get())
}

/// User + system CPU time this process has used so far (`getrusage`).
#[cfg(unix)]
pub fn cpu_time() -> Option<std::time::Duration> {
    use std::time::Duration;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `usage` is a valid, writable `rusage`; getrusage fills it in
    // completely when it returns 0.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Some(tv(usage.ru_utime) + tv(usage.ru_stime))
}

/// No `getrusage` here.
#[cfg(not(unix))]
pub fn cpu_time() -> Option<std::time::Duration> {
    None
}
