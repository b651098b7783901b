//! `LoopWatch` beside a hostile neighbour (Linux): what a stall report must
//! survive in a program that is not offload's.
//!
//! - unwind info registered at run time (as JITs do) while the loop panics
//!   and catches between stalls: every stall reported, no hang (the signal
//!   handler unwinds nothing, so it takes no unwinder lock);
//! - the program resets offload's signal to `SIG_DFL`: the next stall is
//!   reported without a stack, with the reason, and the process lives;
//! - a loop thread that blocks real-time signals: every stall reported,
//!   without a stack and with the reason, and no signal left pending;
//! - a loop stalled in a system call with a timeout: the call is never
//!   interrupted (no `EINTR`), and the stack names its caller;
//! - a loop stalled with about 1.5 KiB of stack left: a stack or a reason,
//!   and std's `SIGSEGV` handler still installed;
//! - a loop starved of CPU: the report says so, with the run-queue time;
//! - a reporter that blocks does not hold up another watch's report.
//!
//! Tests that change process-wide state (the signal's action, registered
//! unwind info) run in a child process: the test re-runs its own binary
//! with a filter and an environment variable naming it. Each stall is
//! waited for through channels or flags the reporter sets, never by
//! sleeping; every test has a timeout.

#![cfg(target_os = "linux")]

mod common;

use std::future::Future;
use std::pin::pin;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use common::{timed, with_timeout};
use futures::future::{self, Either};
use offload::{LoopWatch, Stall, StallCause};

/// The tests of this file run one at a time: they share the process's one
/// watcher thread, and their loops spin on the CPU while they stall.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
}

/// The environment variable that tells a child which test body to run.
const CHILD: &str = "OFFLOAD_LOOP_WATCH_CHILD";

/// Runs `body` in a child process (this binary, filtered to test `name`),
/// and fails if the child fails or takes more than 60 s. In the child,
/// runs `body` itself.
fn in_child(name: &str, body: impl FnOnce()) {
    if std::env::var(CHILD).as_deref() == Ok(name) {
        body();
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .spawn()
        .expect("start the child");
    let id = child.id();
    let (tx, exited) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match exited.recv_timeout(Duration::from_secs(common::TIMEOUT)) {
        Ok(status) => {
            let status = status.unwrap();
            assert!(
                status.success(),
                "the child running {name} failed: {status}"
            );
            waiter.join().unwrap();
        }
        Err(_) => {
            // SAFETY: kill only sends a signal, to the child we started.
            unsafe { libc::kill(id as libc::pid_t, libc::SIGKILL) };
            panic!(
                "the child running {name} did not finish within {} s",
                common::TIMEOUT
            );
        }
    }
}

/// Runs `body` on a loop on this thread, with `watch` polled by the same
/// loop (a futures executor).
fn run_watched<T>(watch: LoopWatch, body: impl Future<Output = T>) -> T {
    futures::executor::block_on(async move {
        match future::select(watch, pin!(body)).await {
            Either::Left(((), _)) => unreachable!("a LoopWatch never completes"),
            Either::Right((value, _)) => value,
        }
    })
}

/// Yields to the executor once (so the watch is polled again).
async fn yield_once() {
    let mut yielded = false;
    future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// A reporter that sends every stall to the returned receiver.
fn reporting_to() -> (impl Fn(&Stall) + Send + Sync + 'static, Receiver<Stall>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    (
        move |stall: &Stall| drop(tx.lock().unwrap().send(stall.clone())),
        rx,
    )
}

/// Runs user code on the loop (the thread stays runnable, so a capture
/// signals it) until the ongoing report of the stall arrives.
#[inline(never)]
fn spin_until_reported(reported: &Receiver<Stall>) -> Stall {
    loop {
        if let Some(stall) = reported.try_iter().find(Stall::is_ongoing) {
            return stall;
        }
        std::hint::spin_loop();
    }
}

/// Keeps the loop turning until the report that the stall is over;
/// returns the reports received.
async fn until_the_end(reported: &Receiver<Stall>) -> Vec<Stall> {
    let mut reports = Vec::new();
    while !reports.iter().any(|stall: &Stall| !stall.is_ongoing()) {
        reports.extend(reported.try_iter());
        yield_once().await;
    }
    reports
}

fn frames(stall: &Stall) -> Vec<String> {
    stall
        .stack()
        .unwrap_or_default()
        .iter()
        .filter_map(|frame| frame.function().map(str::to_owned))
        .collect()
}

/// The real-time signal whose action is a handler (offload's: nothing else
/// in this child installs one).
fn offload_signal() -> Option<libc::c_int> {
    (libc::SIGRTMIN()..=libc::SIGRTMAX()).find(|&signal| {
        // SAFETY: sigaction only reads the action into a valid pointer.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction != libc::SIG_DFL
                && old.sa_sigaction != libc::SIG_IGN
        }
    })
}

/// The real-time signals pending for this thread or the process.
fn pending_realtime_signals() -> u64 {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    let realtime = !0u64 << (libc::SIGRTMIN() - 1);
    ["SigPnd:", "ShdPnd:"]
        .iter()
        .map(|key| {
            let line = status.lines().find(|line| line.starts_with(key)).unwrap();
            u64::from_str_radix(line[key.len()..].trim(), 16).unwrap()
        })
        .fold(0, |all, mask| all | (mask & realtime))
}

// ---------------------------------------------------------------------------
// Unwind info registered at run time.

#[cfg(target_env = "gnu")]
extern "C" {
    fn __register_frame_info(begin: *const u8, object: *mut u8);
    fn __deregister_frame_info(begin: *const u8) -> *mut u8;
}

/// A small valid `.eh_frame` (one CIE, one FDE covering `code`, the
/// terminator), as a JIT registers for the code it emits.
#[cfg(target_env = "gnu")]
fn eh_frame_for(code: &'static [u8]) -> Vec<u8> {
    let (sp, ra) = if cfg!(target_arch = "aarch64") {
        (31, 30)
    } else {
        (7, 16)
    };
    fn pad(entry: &mut Vec<u8>) {
        while (entry.len() + 4) % 8 != 0 {
            entry.push(0); // DW_CFA_nop
        }
    }
    let mut cie = vec![0, 0, 0, 0, 1, b'z', b'R', 0, 1, 0x78, ra, 1, 0x00];
    cie.extend([0x0c, sp, 8]); // DW_CFA_def_cfa sp, 8
    pad(&mut cie);
    let mut out = Vec::new();
    out.extend((cie.len() as u32).to_ne_bytes());
    out.extend(&cie);
    let fde_at = out.len();
    let mut fde = Vec::new();
    fde.extend(((fde_at + 4) as u32).to_ne_bytes()); // back to the CIE
    fde.extend((code.as_ptr() as u64).to_ne_bytes());
    fde.extend((code.len() as u64).to_ne_bytes());
    fde.push(0); // no augmentation data
    pad(&mut fde);
    out.extend((fde.len() as u32).to_ne_bytes());
    out.extend(&fde);
    out.extend(0u32.to_ne_bytes());
    out
}

/// Panics and catches without pause until `done`: each panic runs the
/// unwinder, which takes its lock once unwind info is registered.
#[inline(never)]
fn panicking_loop(mut done: impl FnMut() -> bool) {
    while !done() {
        let caught = std::panic::catch_unwind(|| panic!("{}", common::EXPECTED));
        assert!(caught.is_err());
    }
}

#[cfg(target_env = "gnu")]
#[test]
fn registered_unwind_info_and_panics_between_stalls_never_hang() {
    let _serial = one_at_a_time();
    in_child(
        "registered_unwind_info_and_panics_between_stalls_never_hang",
        || {
            common::silence_expected_panics(); // quiet: 10 000s of panics
            static CODE: [u8; 64] = [0xc3; 64];
            let eh_frame: &'static [u8] = Vec::leak(eh_frame_for(&CODE));
            let object: &'static mut [usize; 16] = Box::leak(Box::new([0; 16]));
            // SAFETY: a valid, terminated .eh_frame and libgcc's object
            // storage, both leaked (alive until deregistered below).
            unsafe { __register_frame_info(eh_frame.as_ptr(), object.as_mut_ptr().cast()) };
            let stalls = timed(|| {
                let (report, reported) = reporting_to();
                let watch = LoopWatch::new(Duration::from_millis(2))
                    .period(Duration::from_millis(1))
                    .on_stall(report);
                let stats = watch.stats();
                run_watched(watch, async {
                    yield_once().await;
                    for _ in 0..200 {
                        let mut seen = false;
                        panicking_loop(|| {
                            seen = seen || reported.try_iter().any(|stall| stall.is_ongoing());
                            seen
                        });
                        until_the_end(&reported).await;
                    }
                });
                stats.stalls()
            });
            // SAFETY: registered above with this address.
            unsafe { __deregister_frame_info(eh_frame.as_ptr()) };
            assert!(stalls >= 200, "{stalls}"); // and every one was reported
        },
    );
}

// ---------------------------------------------------------------------------
// The signal's action changed by the program.

#[test]
fn a_program_that_resets_the_signal_survives_the_next_stall() {
    let _serial = one_at_a_time();
    in_child(
        "a_program_that_resets_the_signal_survives_the_next_stall",
        || {
            timed(|| {
                let (report, reported) = reporting_to();
                let watch = LoopWatch::new(Duration::from_millis(10))
                    .period(Duration::from_millis(2))
                    .on_stall(report);
                let (first, second) = run_watched(watch, async {
                    yield_once().await;
                    let first = spin_until_reported(&reported);
                    until_the_end(&reported).await;
                    let signal = offload_signal().expect("offload installed its handler");
                    // SAFETY: resets one real-time signal's action, as a
                    // program may.
                    unsafe { libc::signal(signal, libc::SIG_DFL) };
                    let second = spin_until_reported(&reported);
                    until_the_end(&reported).await;
                    (first, second)
                });
                assert!(
                    frames(&first)
                        .iter()
                        .any(|f| f.contains("spin_until_reported")),
                    "{first:#}"
                );
                assert!(second.stack().is_none(), "{second:#}");
                let why = second.no_stack_reason().unwrap();
                assert!(why.contains("no longer offload's handler"), "{why}");
                assert!(second.summary().contains(why), "{}", second.summary());
            });
        },
    );
}

// ---------------------------------------------------------------------------
// A loop thread that blocks real-time signals (signalfd users do).

#[test]
fn a_loop_that_blocks_the_signal_gets_reports_and_no_pending_signals() {
    let _serial = one_at_a_time();
    timed(|| {
        // SAFETY: blocks the real-time signals on this thread only (the
        // test body's own, which ends with the test).
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in libc::SIGRTMIN()..=libc::SIGRTMAX() {
                libc::sigaddset(&mut set, signal);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let (report, reported) = reporting_to();
        let watch = LoopWatch::new(Duration::from_millis(5))
            .period(Duration::from_millis(1))
            .on_stall(report);
        let stats = watch.stats();
        let stalls = run_watched(watch, async {
            yield_once().await;
            let mut stalls = Vec::new();
            for _ in 0..20 {
                stalls.push(spin_until_reported(&reported));
                until_the_end(&reported).await;
            }
            stalls
        });
        assert!(stats.stalls() >= 20, "{stats:?}"); // and more if the loop was late
        for stall in &stalls {
            let why = stall
                .no_stack_reason()
                .expect("no stack: the signal is blocked");
            assert!(why.contains("blocks signal"), "{why}");
        }
        assert_eq!(pending_realtime_signals(), 0, "no signal was sent");
    });
}

// ---------------------------------------------------------------------------
// A loop stalled in a system call.

#[inline(never)]
fn recv_under_watch(socket: &std::net::UdpSocket) -> (std::io::Result<usize>, Duration) {
    let started = Instant::now();
    let mut buffer = [0u8; 16];
    let result = socket.recv(&mut buffer);
    (result, started.elapsed())
}

#[test]
fn a_loop_stalled_in_recv_is_not_interrupted_and_names_its_caller() {
    let _serial = one_at_a_time();
    timed(|| {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let timeout = Duration::from_millis(500);
        socket.set_read_timeout(Some(timeout)).unwrap();
        let (report, reported) = reporting_to();
        let watch = LoopWatch::new(Duration::from_millis(20))
            .period(Duration::from_millis(5))
            .on_stall(report);
        let ongoing = run_watched(watch, async {
            yield_once().await;
            // Until a stall is reported while it lasts (a loaded machine
            // may hold the watcher off for a whole call).
            loop {
                let (result, took) = recv_under_watch(&socket);
                let error = result.expect_err("nothing was sent");
                assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock, "{error}");
                assert!(took >= timeout, "{took:?}");
                let reports = until_the_end(&reported).await;
                if let Some(ongoing) = reports.into_iter().find(Stall::is_ongoing) {
                    break ongoing;
                }
            }
        });
        assert!(
            frames(&ongoing)
                .iter()
                .any(|f| f.contains("recv_under_watch")),
            "{ongoing:#}"
        );
    });
}

// ---------------------------------------------------------------------------
// A loop stalled with little stack left.

/// The calling thread's lowest stack address.
fn stack_low() -> usize {
    // SAFETY: as in offload: attr initialised before use, destroyed once.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size = 0;
        libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        addr as usize
    }
}

/// Recurses until about `left` bytes of stack remain, then spins until
/// `reported` is set (an atomic load: no stack).
#[inline(never)]
fn deep(low: usize, left: usize, reported: &AtomicBool) -> usize {
    let pad = std::hint::black_box([0u8; 128]);
    let here = std::hint::black_box(&pad) as *const _ as usize;
    if here.saturating_sub(low) > left + 256 {
        return deep(low, left, reported) + std::hint::black_box(pad[0]) as usize;
    }
    while !reported.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
    here - low
}

fn segv_handler() -> libc::sighandler_t {
    // SAFETY: sigaction only reads the action into a valid pointer.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut old);
        old.sa_sigaction
    }
}

#[test]
fn a_loop_with_little_stack_left_gets_a_stack_or_a_reason() {
    let _serial = one_at_a_time();
    timed(|| {
        let before = segv_handler();
        let reported = Arc::new(AtomicBool::new(false));
        let (tx, stalls) = mpsc::channel();
        let tx = Mutex::new(tx);
        let flag = reported.clone();
        let watch = LoopWatch::new(Duration::from_millis(10))
            .period(Duration::from_millis(2))
            .on_stall(move |stall| {
                if stall.is_ongoing() {
                    let _ = tx.lock().unwrap().send(stall.clone());
                    flag.store(true, Ordering::Release);
                }
            });
        let low = stack_low();
        let left = run_watched(watch, async {
            yield_once().await;
            deep(low, 1536, &reported)
        });
        assert!(left < 4096, "{left}");
        let stall = stalls.recv().unwrap();
        assert!(
            stall.stack().is_some_and(|stack| !stack.is_empty())
                || stall.no_stack_reason().is_some(),
            "{stall:#}"
        );
        assert_eq!(
            segv_handler(),
            before,
            "std's SIGSEGV handler is still installed"
        );
        assert_ne!(before, libc::SIG_DFL);
    });
}

// ---------------------------------------------------------------------------
// A loop starved of CPU.

fn pin_to(cpu: usize) {
    // SAFETY: sets this thread's affinity from a valid, zeroed set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

fn current_cpus() -> Vec<usize> {
    // SAFETY: reads this thread's affinity into a valid set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

#[test]
fn a_loop_starved_of_cpu_is_reported_as_starved() {
    let _serial = one_at_a_time();
    timed(|| {
        let cpu = current_cpus()[0];
        let hogs = 3;
        let stop = Arc::new(AtomicBool::new(false));
        let pinned = Arc::new(Barrier::new(hogs + 1));
        let threads: Vec<_> = (0..hogs)
            .map(|_| {
                let (stop, pinned) = (stop.clone(), pinned.clone());
                std::thread::spawn(move || {
                    pin_to(cpu);
                    pinned.wait();
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        pin_to(cpu);
        pinned.wait();
        let (report, reported) = reporting_to();
        let watch = LoopWatch::new(Duration::from_millis(50))
            .period(Duration::from_millis(10))
            .on_stall(report);
        let stall = run_watched(watch, async {
            yield_once().await;
            let stall = spin_until_reported(&reported);
            stop.store(true, Ordering::Relaxed);
            until_the_end(&reported).await;
            stall
        });
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(stall.cause(), Some(StallCause::StarvedOfCpu), "{stall:#}");
        let waited = stall.waited_for_cpu().unwrap();
        assert!(waited > stall.on_cpu().unwrap(), "{stall:?}");
        let summary = stall.summary();
        assert!(summary.contains("starved of CPU"), "{summary}");
        assert!(
            summary.contains(&format!("waited {} ms", waited.as_millis())),
            "{summary}"
        );
    });
}

// ---------------------------------------------------------------------------
// A reporter that blocks.

#[test]
fn a_blocking_reporter_does_not_hold_up_another_watch() {
    let _serial = one_at_a_time();
    with_timeout(common::TIMEOUT, || {
        // Watch A: its reporter blocks until the test lets it go (after
        // B's report: were B's report held up by it, the test would time
        // out). `examples/stall.rs` measures the delay itself.
        let (a_blocked_tx, a_blocked) = mpsc::channel::<()>();
        let a_blocked_tx = Mutex::new(a_blocked_tx);
        let (let_a_go, a_waits) = mpsc::channel::<()>();
        let a_waits = Mutex::new(a_waits);
        let a_reports = Arc::new(AtomicBool::new(false));
        let a_flag = a_reports.clone();
        let watch_a = LoopWatch::new(Duration::from_millis(10))
            .period(Duration::from_millis(2))
            .on_stall(move |stall| {
                if stall.is_ongoing() {
                    a_flag.store(true, Ordering::Release);
                    let _ = a_blocked_tx.lock().unwrap().send(());
                    // The reporter under test: it blocks.
                    let _ = a_waits.lock().unwrap().recv();
                }
            });
        let release_a = Arc::new(AtomicBool::new(false));
        let release = release_a.clone();
        let loop_a = std::thread::spawn(move || {
            run_watched(watch_a, async {
                yield_once().await;
                while !a_reports.load(Ordering::Acquire) {
                    std::hint::spin_loop(); // A's stall
                }
                while !release.load(Ordering::Acquire) {
                    yield_once().await;
                }
            })
        });
        a_blocked.recv().unwrap(); // A's reporter is blocked now
                                   // Watch B on another loop: its stall is reported while A's
                                   // reporter blocks.
        let (report, reported) = reporting_to();
        let watch_b = LoopWatch::new(Duration::from_millis(10))
            .period(Duration::from_millis(2))
            .on_stall(report);
        let b_stats = watch_b.stats();
        let ongoing = run_watched(watch_b, async {
            yield_once().await;
            let ongoing = spin_until_reported(&reported);
            until_the_end(&reported).await;
            ongoing
        });
        assert!(ongoing.is_ongoing());
        assert!(b_stats.stalls() >= 1);
        drop(let_a_go); // A's reporter returns, now and for later reports
        release_a.store(true, Ordering::Release);
        loop_a.join().unwrap();
    });
}
