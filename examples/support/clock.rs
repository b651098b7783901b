//! Linux's monotonic clock in nanoseconds, and a `timerfd` on it in tokio's
//! reactor: wake-ups to the microsecond, where tokio's own timer rounds to
//! whole milliseconds.

#[cfg(target_os = "linux")]
use std::os::fd::OwnedFd;

#[cfg(target_os = "linux")]
use tokio::io::unix::AsyncFd;

/// `CLOCK_MONOTONIC` in ns: the clock [`timerfd`]'s timers count on.
#[cfg(target_os = "linux")]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A new non-blocking `timerfd` on `CLOCK_MONOTONIC`, not armed yet,
/// registered for reads with the current tokio runtime's reactor (so it is
/// called inside a runtime); [`arm`] sets it.
#[cfg(target_os = "linux")]
pub fn timerfd() -> std::io::Result<AsyncFd<OwnedFd>> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain system call; the result is checked below.
    let raw = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor that nothing else owns; the OwnedFd
    // keeps it open, and returns it from `as_raw_fd`, as long as the AsyncFd
    // that owns the OwnedFd lives.
    let fd = unsafe {
        AsyncFd::register_with_interest(OwnedFd::from_raw_fd(raw), tokio::io::Interest::READABLE)?
    };
    Ok(fd)
}

/// Arms `fd` (a [`timerfd`]) to expire at `deadline_ns` of
/// [`monotonic_ns`]'s clock, and then every `period_ns` (0: once).
#[cfg(target_os = "linux")]
pub fn arm(fd: &AsyncFd<OwnedFd>, deadline_ns: u64, period_ns: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let timespec = |ns: u64| libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    let spec = libc::itimerspec {
        it_interval: timespec(period_ns),
        it_value: timespec(deadline_ns),
    };
    let raw = fd.get_ref().as_raw_fd();
    // SAFETY: `raw` is a timerfd (owned by `fd`), `spec` a valid itimerspec.
    let set =
        unsafe { libc::timerfd_settime(raw, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut()) };
    if set != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `fd` (a [`timerfd`]) has expired at least once, and returns
/// how many times it expired since the last read.
#[cfg(target_os = "linux")]
pub async fn expirations(fd: &AsyncFd<OwnedFd>) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    loop {
        let mut guard = fd.readable().await?;
        let read = guard.try_io(|fd| {
            let mut expirations = 0u64;
            // SAFETY: reads 8 bytes into `expirations` from our timerfd.
            let n = unsafe {
                libc::read(
                    fd.get_ref().as_raw_fd(),
                    (&mut expirations as *mut u64).cast(),
                    8,
                )
            };
            if n == 8 {
                Ok(expirations)
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
        if let Ok(expirations) = read {
            return expirations;
        }
    }
}
