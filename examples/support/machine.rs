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
