//! offload against every peer, in one run, on what criterion measures badly:
//! how an event loop fares while the pool is saturated, what an idle or
//! sparsely used pool costs in CPU, and how many heap allocations one spawn
//! makes, and how a pool fares when blocking calls and CPU jobs come together.
//! Prints one table, checks the goals, and writes `docs/compare.svg`.
//!
//! ```text
//! cargo run --release --example compare                 # table + goals + chart
//! cargo run --release --example compare -- --markdown   # the same, as markdown
//! cargo run --release --example compare -- --priority-sweep # ticker per WorkerPriority
//! ```
//!
//! Takes about a minute. Every peer gets the same jobs, driven the same way:
//!
//! - **offload** — [`offload::Pool::spawn`], awaiting the returned `Task`
//!   (workers at the caller's priority, `Inherit`, the default
//!   [`offload::WorkerPriority`]); the same pool with workers at nice +10
//!   (`Nice(10)`) and with `Idle` (`SCHED_IDLE`), for the ticker only
//!   (nothing else depends on the priority while the process has the
//!   machine to itself);
//! - **offload + oneshot** — the same pool, the result sent back through a
//!   `futures-channel` oneshot, the Task detached: the handoff offload's own
//!   single-allocation Task must beat;
//! - **rayon + oneshot** — `rayon::ThreadPool::spawn` plus a oneshot (what
//!   tokio's docs recommend for CPU work);
//! - **tokio spawn_blocking**, **blocking::unblock** — the blocking-I/O pools
//!   of tokio and smol, which grow a thread per waiting job.
//!
//! offload and rayon get one worker per core (the mixed load excepted).
//!
//! # Columns
//!
//! - **round trip**: one task on a current-thread tokio runtime built with
//!   `enable_all()` (a server's loop: it parks in `epoll_wait` and is woken
//!   through an eventfd) awaits trivial submissions one after another; time
//!   per submission (median of batches). **(no drivers)**: the same on a
//!   current-thread runtime without drivers, which parks on a futex (what
//!   `cargo bench --bench handoff`'s `round_trip_tokio` measures with
//!   criterion). An offload `Task`'s first poll watches the result for up
//!   to 10 µs before it registers its waker (`src/task/poll_spin.rs`), so a
//!   trivial job's answer is there before the loop parks; the peers' loops
//!   park at once, and `offload + oneshot` shows offload without that spin.
//! - **burst**: 100 000 trivial jobs submitted from the loop, then all
//!   awaited; time per job (median of runs).
//! - **ticker worst / p99**: a 1 ms ticker on the same current-thread runtime
//!   records how late each tick is while the loop submits 8 jobs per core of
//!   calibrated spin work (10 ms each) and awaits them. The ticker is a Linux
//!   `timerfd` registered with tokio's reactor (`AsyncFd`), so lateness is
//!   measured to the nanosecond: a wake-up of the loop by the kernel, exactly
//!   like a socket becoming readable. (`tokio::time::interval` has a 1 ms
//!   resolution of its own: `examples/loop_lag.rs` shows that floor.)
//! - **makespan ×ideal**: time until the last of those jobs is done, over the
//!   ideal total work / cores (median of rounds). 1.00 is perfect.
//! - **sparse CPU**: CPU seconds per wall second of the whole process
//!   (`getrusage(RUSAGE_SELF)`) while a thread submits one trivial job every
//!   500 µs and waits for it, for 2 s. **quiet CPU**: the same in the 2 s
//!   right after that, with nothing submitted (how fast the pool stops
//!   spinning, and whether it stays asleep).
//! - **allocs/spawn**: heap allocations of the whole process (a counting
//!   `#[global_allocator]`) during 10 000 sequential spawn+await round trips,
//!   divided by 10 000; **(burst)**: the same over one 100 000-job burst.
//! - **mixed CPU / sleepers ms**: the mixed load of blocking calls and CPU
//!   jobs, smaller
//!   (`examples/blocking_mix.rs` runs the full one, with more variants):
//!   100 jobs that each sleep 20 ms (a blocking call, such as a sync HTTP
//!   request) and 32 CPU jobs of 5 ms of the calibrated spin work,
//!   interleaved (about 3 sleepers, then 1 CPU job), submitted at once from
//!   the loop, then all awaited; on a fresh pool of 2 threads per round
//!   (spare threads start cold; `blocking`'s pool is global and keeps its
//!   threads). The time from the first submission to the end of the last
//!   CPU job, and of the last sleeper (median of rounds; ideal: 32 × 5 ms /
//!   2 = 80 ms, and 20 ms). Each peer runs the sleepers its own way: offload
//!   (and offload + oneshot) by `spawn_blocking`, on spare threads, and the
//!   CPU jobs by `spawn`; tokio's and `blocking`'s pools run both alike, as
//!   their users would (neither has a CPU pool); rayon runs both on its 2
//!   threads, which the sleepers hold while the CPU jobs wait.
//!
//! # Floors
//!
//! Rows marked *floor* are not peers: they measure what bounds a column.
//!
//! - `no jobs`: the ticker with an idle process (the machine's own noise);
//! - `job inline`: the job runs on the caller, no handoff at all (for the
//!   sparse load: the cost of the submitting thread's own sleeps);
//! - `spinning thread + atomic`: the fastest possible cross-core handoff, a
//!   dedicated thread spinning on an atomic, the caller spinning for the
//!   answer; `… awaited on the loop`: the same, awaited on the tokio loop
//!   (the answer often comes before the loop has gone to sleep; the loop
//!   does not spin for it);
//! - `loop woken after 5 µs / 50 µs asleep`: the same server answering
//!   that late, minus the delay: the loop is asleep by then, and this is
//!   what waking it costs. Every peer pays it once per round trip unless
//!   its answer beats the loop to sleep. It grows with the time asleep
//!   (an idle core sleeps deeper; in a virtual machine, waking an idle
//!   virtual CPU goes through the hypervisor);
//! - `Box + Injector, 1 thread`: allocate, queue (crossbeam `Injector`),
//!   run and free each job on one thread, the software cost of a handoff
//!   without any cross-core traffic.
//!
//! The machine's load matters: on a shared machine, run it twice and read
//! the numbers with `uptime` beside them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::error::Error;
use std::fmt::{Debug, Write as _};
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Steal};
use futures::task::AtomicWaker;
use futures_channel::oneshot;
use offload::WorkerPriority;

#[path = "support/mod.rs"]
mod support;

use support::machine::load_average;
use support::stats::worst_and_p99;
use support::svg::escape;
use support::work::hash_job;

type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

// ---- what is measured, and how much -------------------------------------

/// Round trips per batch, and batches per peer.
const RT_JOBS: u64 = 5_000;
const RT_BATCHES: usize = 5;
/// How long the `loop woken` floors' server waits before it answers: the
/// loop is asleep by then (briefly, or long enough for an idle core to
/// have gone into a deeper sleep).
const LOOP_WAKE_SHORT: Duration = Duration::from_micros(5);
const LOOP_WAKE_LONG: Duration = Duration::from_micros(50);
/// Jobs per burst, and bursts per peer.
const BURST: u64 = 100_000;
const BURST_RUNS: usize = 3;
/// Sequential round trips over which allocations are counted.
const ALLOC_JOBS: u64 = 10_000;
/// The ticker's period, the work per saturating job, jobs per core, rounds.
const TICK: Duration = Duration::from_millis(1);
const JOB_TIME: Duration = Duration::from_millis(10);
const JOBS_PER_CORE: usize = 8;
const TICKER_ROUNDS: usize = 10;
/// The mixed load: threads of each pool, jobs that sleep (a blocking call
/// each) and how long, CPU jobs and their work, rounds per row.
const MIXED_THREADS: usize = 2;
const MIXED_SLEEPERS: usize = 100;
const MIXED_SLEEP: Duration = Duration::from_millis(20);
const MIXED_CPU_JOBS: usize = 32;
const MIXED_CPU_TIME: Duration = Duration::from_millis(5);
const MIXED_ROUNDS: usize = 3;
/// Sparse load: one trivial job per period, for this long; then quiet.
const SPARSE_PERIOD: Duration = Duration::from_micros(500);
const SPARSE_TIME: Duration = Duration::from_secs(2);
const QUIET_TIME: Duration = Duration::from_secs(2);
/// Rounds per row of `--priority-sweep`: more than the table's, since its
/// rows differ less than the peers do.
const SWEEP_ROUNDS: usize = 3 * TICKER_ROUNDS;
/// The priorities `--priority-sweep` compares.
const PRIORITY_SWEEP: [WorkerPriority; 6] = [
    WorkerPriority::Inherit,
    WorkerPriority::Nice(3),
    WorkerPriority::Nice(10),
    WorkerPriority::Nice(15),
    WorkerPriority::Nice(19),
    WorkerPriority::Idle,
];

// ---- counting allocator -------------------------------------------------

/// The system allocator, counting allocations while [`COUNTING`] is set.
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

impl CountingAlloc {
    #[inline]
    fn count() {
        // Relaxed: a statistic, read after the counted work was awaited.
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments,
// so `System`'s guarantees hold; counting touches no allocator state.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count();
        // SAFETY: the caller's contract is `GlobalAlloc::alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count();
        // SAFETY: as above; `ptr` came from this allocator, i.e. `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Runs `f` and returns the allocations the whole process made meanwhile.
fn count_allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::Relaxed)
}

// ---- the peers ------------------------------------------------------------

/// One way to hand a job to other threads and get a future of its result.
trait Peer {
    type Fut: Future<Output = u64> + Unpin;
    fn submit<F: FnOnce() -> u64 + Send + 'static>(&self, job: F) -> Self::Fut;

    /// Hands over a job that is one blocking call, the way this peer's
    /// users would: by default as any other job.
    fn submit_blocking<F: FnOnce() -> u64 + Send + 'static>(&self, job: F) -> Self::Fut {
        self.submit(job)
    }
}

/// A future of a `Result` that a correct run never fails.
struct Expect<F>(F);

impl<F, E> Future for Expect<F>
where
    F: Future<Output = Result<u64, E>> + Unpin,
    E: Debug,
{
    type Output = u64;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.expect("the job failed"))
    }
}

struct OffloadTask(offload::Pool);

impl Peer for OffloadTask {
    type Fut = Expect<offload::Task<u64>>;
    fn submit<F: FnOnce() -> u64 + Send + 'static>(&self, job: F) -> Self::Fut {
        Expect(self.0.spawn(job))
    }
    fn submit_blocking<F: FnOnce() -> u64 + Send + 'static>(&self, job: F) -> Self::Fut {
        Expect(self.0.spawn_blocking(job))
    }
}

struct OffloadOneshot(offload::Pool);

impl Peer for OffloadOneshot {
    type Fut = Expect<oneshot::Receiver<u64>>;
    fn submit<F: FnOnce() -> u64 + Send + 'static>(&self, job: F) -> Self::Fut {
        let (tx, rx) = oneshot::channel();
        self.0
            .spawn(move || {
                let _ = tx.send(job());
            })
            .detach();
        Expect(rx)
    }
    fn submit_blocking<F: FnOnce() -> u64 + Send + 'static>(&self, job: F) -> Self::Fut {
        let (tx, rx) = oneshot::channel();
        self.0
            .spawn_blocking(move || {
                let _ = tx.send(job());
            })
            .detach();
        Expect(rx)
    }
}

struct RayonOneshot(rayon::ThreadPool);

impl Peer for RayonOneshot {
    type Fut = Expect<oneshot::Receiver<u64>>;
    fn submit<F: FnOnce() -> u64 + Send + 'static>(&self, job: F) -> Self::Fut {
        let (tx, rx) = oneshot::channel();
        self.0.spawn(move || {
            let _ = tx.send(job());
        });
        Expect(rx)
    }
}

struct SpawnBlocking(tokio::runtime::Handle);

impl Peer for SpawnBlocking {
    type Fut = Expect<tokio::task::JoinHandle<u64>>;
    fn submit<F: FnOnce() -> u64 + Send + 'static>(&self, job: F) -> Self::Fut {
        Expect(self.0.spawn_blocking(job))
    }
}

struct Unblock;

impl Peer for Unblock {
    type Fut = blocking::Task<u64>;
    fn submit<F: FnOnce() -> u64 + Send + 'static>(&self, job: F) -> Self::Fut {
        blocking::unblock(job)
    }
}

/// Floor: no handoff, the job runs on the caller.
struct Inline;

impl Peer for Inline {
    type Fut = std::future::Ready<u64>;
    fn submit<F: FnOnce() -> u64 + Send + 'static>(&self, job: F) -> Self::Fut {
        std::future::ready(job())
    }
}

/// The table's rows: the peers, then the floors.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Row {
    Offload,
    OffloadNice,
    OffloadIdle,
    OffloadOneshot,
    Rayon,
    SpawnBlocking,
    Unblock,
    FloorNoJobs,
    FloorInline,
    FloorSpin,
    FloorSpinWaker,
    FloorLoopWakeShort,
    FloorLoopWakeLong,
    FloorInjector,
}

impl Row {
    const ALL: [Row; 14] = [
        Row::Offload,
        Row::OffloadNice,
        Row::OffloadIdle,
        Row::OffloadOneshot,
        Row::Rayon,
        Row::SpawnBlocking,
        Row::Unblock,
        Row::FloorNoJobs,
        Row::FloorInline,
        Row::FloorSpin,
        Row::FloorSpinWaker,
        Row::FloorLoopWakeShort,
        Row::FloorLoopWakeLong,
        Row::FloorInjector,
    ];
    /// The rows that hand jobs to a pool through [`Peer`].
    const PEERS: [Row; 5] = [
        Row::Offload,
        Row::OffloadOneshot,
        Row::Rayon,
        Row::SpawnBlocking,
        Row::Unblock,
    ];
    /// The peers offload is compared with (its own oneshot baseline too).
    const OTHERS: [Row; 4] = [
        Row::OffloadOneshot,
        Row::Rayon,
        Row::SpawnBlocking,
        Row::Unblock,
    ];
    /// The rows of the ticker and sparse-load sections.
    const TICKER: [Row; 8] = [
        Row::FloorNoJobs,
        Row::Offload,
        Row::OffloadNice,
        Row::OffloadIdle,
        Row::OffloadOneshot,
        Row::Rayon,
        Row::SpawnBlocking,
        Row::Unblock,
    ];
    const SPARSE: [Row; 6] = [
        Row::FloorInline,
        Row::Offload,
        Row::OffloadOneshot,
        Row::Rayon,
        Row::SpawnBlocking,
        Row::Unblock,
    ];

    fn label(self) -> &'static str {
        match self {
            Row::Offload => "offload Task (default: Inherit)",
            Row::OffloadNice => "offload Task, priority Nice(10)",
            Row::OffloadIdle => "offload Task, priority Idle",
            Row::OffloadOneshot => "offload + oneshot",
            Row::Rayon => "rayon::spawn + oneshot",
            Row::SpawnBlocking => "tokio spawn_blocking",
            Row::Unblock => "blocking::unblock",
            Row::FloorNoJobs => "floor: no jobs",
            Row::FloorInline => "floor: job inline",
            Row::FloorSpin => "floor: spinning thread + atomic",
            Row::FloorSpinWaker => "floor: … awaited on the loop",
            Row::FloorLoopWakeShort => "floor: loop woken after 5 µs asleep",
            Row::FloorLoopWakeLong => "floor: loop woken after 50 µs asleep",
            Row::FloorInjector => "floor: Box + Injector, 1 thread",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Row::OffloadOneshot => "offload+oneshot",
            Row::Rayon => "rayon+oneshot",
            Row::SpawnBlocking => "spawn_blocking",
            Row::Unblock => "unblock",
            _ => self.label(),
        }
    }

    fn index(self) -> usize {
        Row::ALL.iter().position(|&r| r == self).expect("a row")
    }
}

/// Every pool, built once.
struct Peers {
    offload: OffloadTask,
    offload_nice: OffloadTask,
    offload_idle: OffloadTask,
    oneshot: OffloadOneshot,
    rayon: RayonOneshot,
    tokio: SpawnBlocking,
    unblock: Unblock,
    inline: Inline,
}

/// Runs `$body` with `$p` bound to the peer of row `$row` (a generic call
/// per peer type; the floors that are no `Peer` are not accepted).
macro_rules! with_peer {
    ($peers:expr, $row:expr, $p:ident => $body:expr) => {
        with_peer!(@match $peers, $row, $p, $body,
            Offload => offload,
            OffloadNice => offload_nice,
            OffloadIdle => offload_idle,
            OffloadOneshot => oneshot,
            Rayon => rayon,
            SpawnBlocking => tokio,
            Unblock => unblock,
            FloorInline => inline)
    };
    (@match $peers:expr, $row:expr, $p:ident, $body:expr, $($row_name:ident => $field:ident),*) => {
        match $row {
            $(Row::$row_name => {
                let $p = &$peers.$field;
                $body
            })*
            other => unreachable!("{other:?} is not a peer"),
        }
    };
}

// ---- round trip and burst -----------------------------------------------

/// `jobs` sequential round trips from the loop; time per job.
fn round_trip<P: Peer>(rt: &tokio::runtime::Runtime, peer: &P, jobs: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..jobs {
            black_box(peer.submit(move || black_box(i)).await);
        }
        start.elapsed() / jobs as u32
    })
}

/// One burst of [`BURST`] jobs from the loop; time per job. `pending` is a
/// reused buffer, so that the burst itself allocates only what the peer does.
fn burst<P: Peer>(rt: &tokio::runtime::Runtime, peer: &P, pending: &mut Vec<P::Fut>) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        pending.extend((0..BURST).map(|i| peer.submit(move || black_box(i))));
        for job in pending.drain(..) {
            black_box(job.await);
        }
        start.elapsed() / BURST as u32
    })
}

/// Allocations per spawn: over sequential round trips, and over one burst.
fn allocations<P: Peer>(rt: &tokio::runtime::Runtime, peer: &P) -> (f64, f64) {
    round_trip(rt, peer, 1_000); // warm: threads started, queues grown
    let sequential = count_allocations(|| {
        round_trip(rt, peer, ALLOC_JOBS);
    });
    let mut pending = Vec::with_capacity(BURST as usize);
    burst(rt, peer, &mut pending);
    let in_burst = count_allocations(|| {
        burst(rt, peer, &mut pending);
    });
    (
        sequential as f64 / ALLOC_JOBS as f64,
        in_burst as f64 / BURST as f64,
    )
}

/// How the caller of [`spin_floor`] waits for the answer.
#[derive(Clone, Copy)]
enum Wait {
    /// Spins on the answer: pure cross-core transfer, no system call.
    Spin,
    /// Awaits it on the tokio loop; the server answers (and wakes the loop)
    /// `delay` after the request, and the delay is subtracted. With a zero
    /// delay the answer usually comes before the loop has gone to sleep;
    /// with a long one the loop always sleeps, and the figure is the cost
    /// of waking it, which every peer pays once per round trip.
    Loop { delay: Duration },
}

/// Floor: a dedicated thread spins on `request` and answers in `response`.
/// Time per round trip (less the server's delay).
fn spin_floor(rt: &tokio::runtime::Runtime, jobs: u64, wait: Wait) -> Duration {
    struct Slot {
        request: AtomicU64,
        response: AtomicU64,
        waker: AtomicWaker,
        stop: AtomicBool,
    }
    /// Resolves once `response` reaches `seq`.
    struct Answer<'a>(&'a Slot, u64);
    impl Future for Answer<'_> {
        type Output = u64;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
            // Acquire: pairs with the server's Release store.
            if self.0.response.load(Ordering::Acquire) == self.1 {
                return Poll::Ready(self.1);
            }
            self.0.waker.register(cx.waker());
            if self.0.response.load(Ordering::Acquire) == self.1 {
                Poll::Ready(self.1)
            } else {
                Poll::Pending
            }
        }
    }

    let slot = Slot {
        request: AtomicU64::new(0),
        response: AtomicU64::new(0),
        waker: AtomicWaker::new(),
        stop: AtomicBool::new(false),
    };
    let delay = match wait {
        Wait::Spin => Duration::ZERO,
        Wait::Loop { delay } => delay,
    };
    thread::scope(|s| {
        s.spawn(|| {
            let (mut seen, mut spins) = (0, 0);
            while !slot.stop.load(Ordering::Relaxed) {
                // Acquire/Release: the "job" and its "result" are the counters.
                let request = slot.request.load(Ordering::Acquire);
                if request == seen {
                    relax(&mut spins);
                    continue;
                }
                spins = 0;
                seen = request;
                let start = Instant::now();
                while start.elapsed() < delay {
                    std::hint::spin_loop();
                }
                slot.response.store(black_box(request), Ordering::Release);
                slot.waker.wake();
            }
        });
        let elapsed = match wait {
            Wait::Loop { .. } => rt.block_on(async {
                let start = Instant::now();
                for seq in 1..=jobs {
                    slot.request.store(seq, Ordering::Release);
                    black_box(Answer(&slot, seq).await);
                }
                start.elapsed()
            }),
            Wait::Spin => {
                let start = Instant::now();
                for seq in 1..=jobs {
                    slot.request.store(seq, Ordering::Release);
                    let mut spins = 0;
                    while slot.response.load(Ordering::Acquire) != seq {
                        relax(&mut spins);
                    }
                }
                start.elapsed()
            }
        };
        slot.stop.store(true, Ordering::Relaxed);
        (elapsed / jobs as u32).saturating_sub(delay)
    })
}

/// A spin-wait step: spin hints at first, then `yield_now`, so that on a
/// machine with more runnable threads than cores the thread waited for can
/// run (pure spinning then measures the scheduler's time slice instead).
fn relax(spins: &mut u32) {
    *spins += 1;
    if *spins < 1_000 {
        std::hint::spin_loop();
    } else {
        thread::yield_now();
    }
}

/// Floor: allocate a boxed job, push it on a crossbeam `Injector`, steal
/// it, run it, free it, all on one thread. Time per job over a burst.
fn injector_floor() -> Duration {
    let injector: Injector<Box<dyn FnOnce() -> u64 + Send>> = Injector::new();
    let start = Instant::now();
    for i in 0..BURST {
        injector.push(Box::new(move || black_box(i)));
    }
    loop {
        match injector.steal() {
            Steal::Success(job) => {
                black_box(job());
            }
            Steal::Empty => break,
            Steal::Retry => {}
        }
    }
    start.elapsed() / BURST as u32
}

// ---- the ticker -----------------------------------------------------------

/// CPU time of the calling thread (wall-clock time where there is no
/// such clock): calibration must not count time the thread was preempted.
fn thread_time() -> Duration {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to write; the clock exists.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        }
    }
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// The iteration count of a [`JOB_TIME`] job, and its time on one core
/// (the median of 5, in thread CPU time).
fn calibrate() -> (u64, Duration) {
    let time = |iters| {
        let start = thread_time();
        black_box(hash_job(black_box(0), iters));
        thread_time() - start
    };
    let mut iters: u64 = 1 << 16;
    let mut elapsed = time(iters);
    while elapsed < Duration::from_millis(5) {
        iters *= 2;
        elapsed = time(iters);
    }
    let iters = (iters as f64 * JOB_TIME.as_secs_f64() / elapsed.as_secs_f64()) as u64;
    let mut samples: Vec<Duration> = (0..5).map(|_| time(iters)).collect();
    samples.sort();
    (iters, samples[2])
}

/// Ticks every [`TICK`] until `stop` is set; returns each tick's lateness.
/// A `timerfd` in tokio's reactor: nanosecond deadlines, and the loop is
/// woken by the kernel as for any I/O event. Missed ticks count each, as
/// late as they are.
#[cfg(target_os = "linux")]
async fn ticker(stop: Arc<AtomicBool>) -> std::io::Result<Vec<Duration>> {
    use support::clock::{arm, expirations, monotonic_ns, timerfd};

    let fd = timerfd()?;
    let period = TICK.as_nanos() as u64;
    let start = monotonic_ns();
    arm(&fd, start + period, period)?;

    let mut lateness = Vec::with_capacity(1024);
    let mut ticks = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let expirations = expirations(&fd).await?;
        let now = monotonic_ns();
        for _ in 0..expirations {
            ticks += 1;
            let due = start + ticks * period;
            lateness.push(Duration::from_nanos(now.saturating_sub(due)));
        }
    }
    Ok(lateness)
}

/// Elsewhere: tokio's own interval (1 ms resolution, so a coarser floor).
#[cfg(not(target_os = "linux"))]
async fn ticker(stop: Arc<AtomicBool>) -> std::io::Result<Vec<Duration>> {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut lateness = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        lateness.push(interval.tick().await.elapsed());
    }
    Ok(lateness)
}

/// What one ticker round measured.
struct TickerRound {
    lateness: Vec<Duration>,
    makespan: Duration,
    checksum: u64,
}

/// One round: the ticker runs while the loop submits `jobs` spin jobs to
/// `peer` (none if `None`: then it idles for `idle`) and awaits them.
fn ticker_round<P: Peer>(
    rt: &tokio::runtime::Runtime,
    peer: Option<&P>,
    jobs: u64,
    iters: u64,
    idle: Duration,
) -> Result<TickerRound> {
    rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn(ticker(Arc::clone(&stop)));
        tokio::task::yield_now().await;
        let start = Instant::now();
        let mut checksum = 0;
        match peer {
            Some(peer) => {
                let pending: Vec<_> = (0..jobs)
                    .map(|seed| peer.submit(move || hash_job(seed, iters)))
                    .collect();
                for job in pending {
                    checksum ^= job.await;
                }
            }
            None => tokio::time::sleep(idle).await,
        }
        let makespan = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        Ok(TickerRound {
            lateness: ticker.await??,
            makespan,
            checksum,
        })
    })
}

/// Worst and 99th-percentile lateness, and the median makespan.
fn ticker_summary(rounds: &[TickerRound]) -> (Duration, Duration, Duration) {
    let (worst, p99) = worst_and_p99(rounds.iter().flat_map(|r| r.lateness.iter().copied()));
    let makespan = median(rounds.iter().map(|r| r.makespan).collect());
    (worst, p99, makespan)
}

// ---- the mixed load -----------------------------------------------------------

/// One round of the mixed load on `peer`: the sleepers (by
/// [`Peer::submit_blocking`]) and the CPU jobs of `iters` (by
/// [`Peer::submit`]), interleaved, submitted at once from the loop, then
/// all awaited. The CPU jobs' makespan and the sleepers'.
fn mixed_round<P: Peer>(
    rt: &tokio::runtime::Runtime,
    peer: &P,
    iters: u64,
) -> (Duration, Duration) {
    rt.block_on(async {
        let start = Instant::now();
        // What each job returns: the time it ended, in ns from the start.
        let ended = move || start.elapsed().as_nanos() as u64;
        let total = MIXED_SLEEPERS + MIXED_CPU_JOBS;
        let pending: Vec<(bool, P::Fut)> = (0..total)
            .map(|k| {
                // Spread evenly: job `k` is a CPU job when `k × cpu / total`
                // crosses an integer.
                let cpu = (k + 1) * MIXED_CPU_JOBS / total > k * MIXED_CPU_JOBS / total;
                let job = if cpu {
                    peer.submit(move || {
                        black_box(hash_job(k as u64, iters));
                        ended()
                    })
                } else {
                    peer.submit_blocking(move || {
                        thread::sleep(MIXED_SLEEP);
                        ended()
                    })
                };
                (cpu, job)
            })
            .collect();
        let (mut cpu_end, mut sleepers_end) = (0, 0);
        for (cpu, job) in pending {
            let end = job.await;
            if cpu {
                cpu_end = cpu_end.max(end);
            } else {
                sleepers_end = sleepers_end.max(end);
            }
        }
        (
            Duration::from_nanos(cpu_end),
            Duration::from_nanos(sleepers_end),
        )
    })
}

/// One round of the mixed load for `row`, on a fresh pool of
/// [`MIXED_THREADS`] (a fresh runtime for tokio's blocking pool; `blocking`'s
/// pool is global), so that spare threads start cold.
fn mixed_peer_round(row: Row, iters: u64) -> Result<(Duration, Duration)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let offload = || offload::Pool::builder().threads(MIXED_THREADS).build();
    Ok(match row {
        Row::Offload => {
            let peer = OffloadTask(offload()?);
            let makespans = mixed_round(&rt, &peer, iters);
            peer.0.shutdown();
            makespans
        }
        Row::OffloadOneshot => {
            let peer = OffloadOneshot(offload()?);
            let makespans = mixed_round(&rt, &peer, iters);
            peer.0.shutdown();
            makespans
        }
        Row::Rayon => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(MIXED_THREADS)
                .build()?;
            mixed_round(&rt, &RayonOneshot(pool), iters)
        }
        Row::SpawnBlocking => mixed_round(&rt, &SpawnBlocking(rt.handle().clone()), iters),
        Row::Unblock => mixed_round(&rt, &Unblock, iters),
        other => unreachable!("{other:?} runs no mixed load"),
    })
}

// ---- sparse load and quiet --------------------------------------------------

/// User + system CPU time of the whole process so far.
#[cfg(unix)]
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `usage` is a valid, writable rusage; getrusage fills it in
    // completely when it returns 0 (it cannot fail for RUSAGE_SELF).
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[cfg(not(unix))]
fn cpu_time() -> Duration {
    Duration::ZERO
}

/// CPU cores used while one trivial job is submitted every
/// [`SPARSE_PERIOD`] from this thread (and waited for), then in the
/// [`QUIET_TIME`] right after.
fn sparse_and_quiet<P: Peer>(peer: &P) -> (f64, f64) {
    let cpu = cpu_time();
    let start = Instant::now();
    let mut next = start;
    let mut i = 0u64;
    while start.elapsed() < SPARSE_TIME {
        next += SPARSE_PERIOD;
        match next.checked_duration_since(Instant::now()) {
            Some(wait) => thread::sleep(wait),
            None => next = Instant::now(), // late: no catching up in a burst
        }
        i += 1;
        black_box(futures::executor::block_on(
            peer.submit(move || black_box(i)),
        ));
    }
    let sparse = (cpu_time() - cpu).as_secs_f64() / start.elapsed().as_secs_f64();

    let cpu = cpu_time();
    let start = Instant::now();
    thread::sleep(QUIET_TIME);
    let quiet = (cpu_time() - cpu).as_secs_f64() / start.elapsed().as_secs_f64();
    (sparse, quiet)
}

// ---- the table --------------------------------------------------------------

/// Everything measured; `None` where a row has no such figure.
#[derive(Default, Clone, Copy)]
struct Figures {
    round_trip: Option<Duration>,
    round_trip_plain: Option<Duration>,
    burst: Option<Duration>,
    worst: Option<Duration>,
    p99: Option<Duration>,
    makespan_ratio: Option<f64>,
    sparse_cpu: Option<f64>,
    quiet_cpu: Option<f64>,
    allocs: Option<f64>,
    allocs_burst: Option<f64>,
    mixed_cpu: Option<Duration>,
    mixed_sleepers: Option<Duration>,
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn us(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e6))
}
fn ns(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.0}", d.as_secs_f64() * 1e9))
}
fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.3}", d.as_secs_f64() * 1e3))
}
fn num(x: Option<f64>, decimals: usize) -> String {
    x.map_or("-".into(), |x| format!("{x:.decimals$}"))
}

const HEADERS: [&str; 13] = [
    "",
    "round trip µs",
    "(no drivers)",
    "burst ns/job",
    "ticker worst ms",
    "ticker p99 ms",
    "makespan ×ideal",
    "sparse CPU",
    "quiet CPU",
    "allocs/spawn",
    "(burst)",
    "mixed CPU ms",
    "mixed sleepers ms",
];

fn cells(row: Row, f: &Figures) -> [String; 13] {
    [
        row.label().to_string(),
        us(f.round_trip),
        us(f.round_trip_plain),
        ns(f.burst),
        ms(f.worst),
        ms(f.p99),
        num(f.makespan_ratio, 2),
        num(f.sparse_cpu, 3),
        num(f.quiet_cpu, 4),
        num(f.allocs, 3),
        num(f.allocs_burst, 3),
        num(f.mixed_cpu.map(|d| d.as_secs_f64() * 1e3), 1),
        num(f.mixed_sleepers.map(|d| d.as_secs_f64() * 1e3), 1),
    ]
}

fn print_table(figures: &[Figures], markdown: bool) {
    let rows: Vec<[String; 13]> = Row::ALL
        .iter()
        .map(|&row| cells(row, &figures[row.index()]))
        .collect();
    let headers = HEADERS.map(String::from);
    support::table::print(&headers, &rows, 1, markdown);
}

/// One goal: its wording, the measured figure, and whether it is met
/// (`None`: this run cannot tell, e.g. the ticker's no-jobs floor is above
/// the goal because other processes kept the loop's core busy).
struct Goal {
    name: &'static str,
    figure: String,
    met: Option<bool>,
}

fn goals(figures: &[Figures]) -> Vec<Goal> {
    let f = |row: Row| figures[row.index()];
    let offload = f(Row::Offload);
    let ratio = |a: Option<Duration>, b: Option<Duration>| {
        a.zip(b).map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
    };
    let best_other = |get: fn(&Figures) -> Option<Duration>, rows: &[Row]| {
        rows.iter()
            .filter_map(|&r| get(&f(r)).map(|d| (d, r)))
            .min_by_key(|&(d, _)| d)
    };
    let external = [Row::Rayon, Row::SpawnBlocking, Row::Unblock];
    let best_rt = best_other(|f| f.round_trip, &external);
    let rt_ratio = ratio(offload.round_trip, best_rt.map(|b| b.0));
    let plain_ratio = ratio(offload.round_trip_plain, f(Row::Rayon).round_trip_plain);
    let wake_floor = f(Row::FloorLoopWakeShort).round_trip;
    let floor_ratio = ratio(offload.round_trip, wake_floor);
    let best_burst = best_other(|f| f.burst, &external);
    let burst_ratio = ratio(offload.burst, best_burst.map(|b| b.0));
    let best_burst_all = best_other(|f| f.burst, &Row::OTHERS);
    let burst_ratio_all = ratio(offload.burst, best_burst_all.map(|b| b.0));
    let best_sparse = external
        .iter()
        .filter_map(|&r| f(r).sparse_cpu.map(|c| (c, r)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    vec![
        Goal {
            name: "round trip ≤ 0.8× the best peer's",
            figure: format!(
                "{}× {}",
                num(rt_ratio, 2),
                best_rt.map_or("-", |b| b.1.short())
            ),
            met: rt_ratio.map(|r| r <= 0.8),
        },
        Goal {
            name: "round trip, no drivers, ≤ 0.5× rayon's",
            figure: format!("{}×", num(plain_ratio, 2)),
            met: plain_ratio.map(|r| r <= 0.5),
        },
        Goal {
            name: "round trip ≤ 1.1× the floor of waking the loop",
            figure: format!(
                "{}× ({} µs, loop woken after 5 µs asleep)",
                num(floor_ratio, 2),
                us(wake_floor)
            ),
            met: floor_ratio.map(|r| r <= 1.1),
        },
        Goal {
            name: "burst ≤ 0.5× the best peer's time per job",
            figure: format!(
                "{}× {} ({}× {}, the oneshot baseline included)",
                num(burst_ratio, 2),
                best_burst.map_or("-", |b| b.1.short()),
                num(burst_ratio_all, 2),
                best_burst_all.map_or("-", |b| b.1.short()),
            ),
            met: burst_ratio.map(|r| r <= 0.5),
        },
        Goal {
            name: "ticker p99 ≤ 0.25 ms, every core saturated",
            figure: format!(
                "{} ms (Idle {} ms, Nice(10) {} ms; no-jobs floor {} ms)",
                ms(offload.p99),
                ms(f(Row::OffloadIdle).p99),
                ms(f(Row::OffloadNice).p99),
                ms(f(Row::FloorNoJobs).p99)
            ),
            // Above the goal while the machine's own floor is too: the run
            // cannot tell (another process kept the loop's core busy).
            met: offload
                .p99
                .zip(f(Row::FloorNoJobs).p99)
                .and_then(|(p, floor)| {
                    let goal = Duration::from_micros(250);
                    match (p <= goal, floor <= goal) {
                        (true, _) => Some(true),
                        (false, true) => Some(false),
                        (false, false) => None,
                    }
                }),
        },
        Goal {
            name: "sparse-load CPU ≤ the best peer's",
            figure: format!(
                "{} vs {} ({}); job-inline floor {}",
                num(offload.sparse_cpu, 3),
                num(best_sparse.map(|b| b.0), 3),
                best_sparse.map_or("-", |b| b.1.short()),
                num(f(Row::FloorInline).sparse_cpu, 3)
            ),
            met: offload
                .sparse_cpu
                .zip(best_sparse)
                .map(|(o, (b, _))| o <= b),
        },
        Goal {
            name: "quiet CPU ≤ 0.005 cores",
            figure: num(offload.quiet_cpu, 4),
            met: offload.quiet_cpu.map(|q| q <= 0.005),
        },
        Goal {
            name: "exactly 1 heap allocation per spawn",
            figure: format!(
                "{} sequential, {} in a burst",
                num(offload.allocs, 3),
                num(offload.allocs_burst, 3)
            ),
            met: offload.allocs.map(|a| (a - 1.0).abs() < 0.0005),
        },
    ]
}

fn print_goals(goals: &[Goal], markdown: bool) {
    let verdict = |met: Option<bool>| match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "undecided",
    };
    if markdown {
        println!("| goal | measured | |");
        println!("|---|---|---|");
        for g in goals {
            println!("| {} | {} | {} |", g.name, g.figure, verdict(g.met));
        }
    } else {
        for g in goals {
            println!("{:<48}{:<10}{}", g.name, verdict(g.met), g.figure);
        }
    }
}

// ---- the chart ----------------------------------------------------------------

/// Writes a horizontal bar chart of offload's figure over each peer's, per
/// metric, on a log scale (lower is better for offload).
fn write_svg(path: &std::path::Path, figures: &[Figures], subtitle: &str) -> std::io::Result<()> {
    /// A metric: its name, its value, how offload's value reads, its goal.
    type Metric = (
        &'static str,
        fn(&Figures) -> Option<f64>,
        fn(f64) -> String,
        Option<f64>,
    );
    fn secs(d: Option<Duration>) -> Option<f64> {
        d.map(|d| d.as_secs_f64())
    }
    let metrics: [Metric; 6] = [
        (
            "round trip",
            |f| secs(f.round_trip),
            |v| format!("{:.2} µs", v * 1e6),
            Some(0.8),
        ),
        (
            "burst, per job",
            |f| secs(f.burst),
            |v| format!("{:.0} ns", v * 1e9),
            Some(0.5),
        ),
        (
            "ticker p99 lateness",
            |f| secs(f.p99),
            |v| format!("{:.2} ms", v * 1e3),
            None,
        ),
        (
            "allocations per spawn",
            |f| f.allocs,
            |v| format!("{v:.3}"),
            None,
        ),
        (
            "mixed: CPU makespan",
            |f| secs(f.mixed_cpu),
            |v| format!("{:.1} ms", v * 1e3),
            None,
        ),
        (
            "mixed: sleepers makespan",
            |f| secs(f.mixed_sleepers),
            |v| format!("{:.1} ms", v * 1e3),
            None,
        ),
    ];
    let offload = figures[Row::Offload.index()];
    let mut bars: Vec<(usize, Row, f64)> = Vec::new();
    for (m, (_, get, _, _)) in metrics.iter().enumerate() {
        for row in Row::OTHERS {
            if let Some((o, p)) = get(&offload).zip(get(&figures[row.index()])) {
                if o > 0.0 && p > 0.0 {
                    bars.push((m, row, o / p));
                }
            }
        }
    }
    let (lo, hi) = bars.iter().fold((1.0 / 8.0, 2.0), |(lo, hi), b| {
        (f64::min(lo, b.2), f64::max(hi, b.2))
    });
    let (lo, hi) = (lo.log2().floor(), hi.log2().ceil());

    let (left, width, bar_h, gap, top) = (170.0, 480.0, 16.0, 26.0, 64.0);
    let x = |ratio: f64| left + (ratio.log2() - lo) / (hi - lo) * width;
    let group_h = Row::OTHERS.len() as f64 * bar_h + gap;
    let height = top + metrics.len() as f64 * group_h + 40.0;
    let colors = ["#7f7f7f", "#d62728", "#1f77b4", "#2ca02c"];

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}" font-family="sans-serif" font-size="12">"##,
        w = left + width + 190.0
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="10" y="20" font-size="15" font-weight="bold">offload ÷ peer (log scale; left of 1× = offload better)</text>"##
    );
    let _ = writeln!(
        svg,
        r##"<text x="10" y="38" fill="#555">{}</text>"##,
        escape(subtitle)
    );
    // Grid: one line per power of two, a label on every `step`-th.
    let axis_bottom = height - 30.0;
    let step = if hi - lo > 8.0 { 2 } else { 1 };
    for p in (lo as i32)..=(hi as i32) {
        let ratio = 2f64.powi(p);
        let gx = x(ratio);
        let (stroke, w) = if p == 0 { ("#000", 1.5) } else { ("#ddd", 1.0) };
        let _ = writeln!(
            svg,
            r##"<line x1="{gx:.1}" y1="{top}" x2="{gx:.1}" y2="{axis_bottom}" stroke="{stroke}" stroke-width="{w}"/>"##,
            top = top - 8.0
        );
        let label = if p >= 0 {
            format!("{}×", 1u64 << p)
        } else {
            format!("1/{}×", 1u64 << -p)
        };
        if p % step == 0 {
            let _ = writeln!(
                svg,
                r##"<text x="{gx:.1}" y="{y}" text-anchor="middle" fill="#555">{label}</text>"##,
                y = axis_bottom + 16.0
            );
        }
    }
    for (m, (name, get, show, goal)) in metrics.iter().enumerate() {
        let gy = top + m as f64 * group_h;
        let _ = writeln!(
            svg,
            r##"<text x="10" y="{y:.1}" font-weight="bold">{name}</text>"##,
            y = gy + bar_h * 1.5
        );
        if let Some(value) = get(&offload) {
            let _ = writeln!(
                svg,
                r##"<text x="10" y="{y:.1}" fill="#555">offload: {}</text>"##,
                show(value),
                y = gy + bar_h * 2.6
            );
        }
        if let Some(goal) = goal {
            let gx = x(*goal);
            let _ = writeln!(
                svg,
                r##"<line x1="{gx:.1}" y1="{y1:.1}" x2="{gx:.1}" y2="{y2:.1}" stroke="#ff7f0e" stroke-width="2" stroke-dasharray="4 3"/><text x="{tx:.1}" y="{y1:.1}" fill="#ff7f0e" font-size="10">goal</text>"##,
                y1 = gy - 4.0,
                y2 = gy + Row::OTHERS.len() as f64 * bar_h,
                tx = gx + 3.0
            );
        }
        for (i, row) in Row::OTHERS.iter().enumerate() {
            let y = gy + i as f64 * bar_h;
            let Some(&(_, _, ratio)) = bars.iter().find(|b| b.0 == m && b.1 == *row) else {
                continue;
            };
            let (x0, x1) = (x(1.0).min(x(ratio)), x(1.0).max(x(ratio)));
            let _ = writeln!(
                svg,
                r##"<rect x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{c}"/><text x="{lx:.1}" y="{ty:.1}" font-size="11">{ratio} vs {peer}</text>"##,
                ratio = show_ratio(ratio),
                w = (x1 - x0).max(1.0),
                h = bar_h - 3.0,
                c = colors[i % colors.len()],
                lx = x1 + 4.0,
                ty = y + bar_h - 5.0,
                peer = row.short()
            );
        }
    }
    svg.push_str("</svg>\n");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, svg)
}

/// A ratio as `0.48×`, or `1/330×` when small.
fn show_ratio(ratio: f64) -> String {
    if ratio < 0.095 {
        format!("1/{:.0}×", 1.0 / ratio)
    } else {
        format!("{ratio:.2}×")
    }
}

// ---- main ----------------------------------------------------------------------

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let markdown = args.iter().any(|a| a == "--markdown");
    let sweep = args.iter().any(|a| a == "--priority-sweep");

    let cores = std::thread::available_parallelism()?.get();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The loop of criterion's `round_trip_tokio`: no drivers, parks on a
    // futex.
    let rt_plain = tokio::runtime::Builder::new_current_thread().build()?;
    let offload = offload::Pool::new();
    let threads = offload.threads();
    let (iters, job_time) = calibrate();
    let jobs = (JOBS_PER_CORE * cores) as u64;
    let ideal = job_time * jobs as u32 / cores as u32;
    let load_at_start = load_average();
    println!(
        "machine: {cores} cores; offload and rayon: {threads} workers; load average at start: {load_at_start}"
    );
    println!(
        "ticker: {jobs} jobs of {:.1} ms per round ({:.1} M hash iterations), ideal makespan {:.1} ms, {TICKER_ROUNDS} rounds per row",
        job_time.as_secs_f64() * 1e3,
        iters as f64 / 1e6,
        ideal.as_secs_f64() * 1e3
    );

    if sweep {
        return priority_sweep(&rt, jobs, iters, ideal);
    }
    // The mixed load's CPU job: the ticker's, scaled.
    let mixed_iters = (iters as f64 * MIXED_CPU_TIME.as_secs_f64() / JOB_TIME.as_secs_f64()) as u64;
    let mixed_job_time = job_time.mul_f64(mixed_iters as f64 / iters as f64);
    println!(
        "mixed: {MIXED_SLEEPERS} sleepers of {} ms + {MIXED_CPU_JOBS} CPU jobs of {:.1} ms at once, fresh pools of {MIXED_THREADS} threads, ideal makespans: CPU {:.1} ms, sleepers {} ms; {MIXED_ROUNDS} rounds per row",
        MIXED_SLEEP.as_millis(),
        mixed_job_time.as_secs_f64() * 1e3,
        (mixed_job_time * MIXED_CPU_JOBS as u32 / MIXED_THREADS as u32).as_secs_f64() * 1e3,
        MIXED_SLEEP.as_millis()
    );

    let peers = Peers {
        offload: OffloadTask(offload.clone()),
        offload_nice: OffloadTask(
            offload::Pool::builder()
                .worker_priority(WorkerPriority::Nice(10))
                .build()?,
        ),
        offload_idle: OffloadTask(
            offload::Pool::builder()
                .worker_priority(WorkerPriority::Idle)
                .build()?,
        ),

        oneshot: OffloadOneshot(offload),
        rayon: RayonOneshot(
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?,
        ),
        tokio: SpawnBlocking(rt.handle().clone()),
        unblock: Unblock,
        inline: Inline,
    };
    let mut figures = vec![Figures::default(); Row::ALL.len()];
    let started = Instant::now();

    // Sparse load, then quiet, one row after another; first, while no pool
    // has grown threads that will exit later (tokio's and `blocking`'s
    // pools grow to hundreds of threads in a burst, and their exits, 0.5 s
    // and 10 s later, would count in another row's quiet CPU). The pools
    // that grow threads on demand come last.
    for row in Row::SPARSE {
        let (sparse, quiet) = with_peer!(peers, row, p => sparse_and_quiet(p));
        figures[row.index()].sparse_cpu = Some(sparse);
        figures[row.index()].quiet_cpu = Some(quiet);
    }

    // The ticker, rows taking turns round by round.
    let mut rounds: Vec<Vec<TickerRound>> = Row::ALL.iter().map(|_| Vec::new()).collect();
    for _ in 0..TICKER_ROUNDS {
        for row in Row::TICKER {
            let round = match row {
                Row::FloorNoJobs => ticker_round::<Inline>(&rt, None, jobs, iters, ideal)?,
                _ => with_peer!(peers, row, p => ticker_round(&rt, Some(p), jobs, iters, ideal)?),
            };
            rounds[row.index()].push(round);
        }
    }
    let checksums: Vec<u64> = Row::TICKER[1..]
        .iter()
        .flat_map(|r| rounds[r.index()].iter().map(|round| round.checksum))
        .collect();
    if checksums.windows(2).any(|w| w[0] != w[1]) {
        return Err("the peers computed different results".into());
    }
    for row in Row::TICKER {
        let (worst, p99, makespan) = ticker_summary(&rounds[row.index()]);
        let f = &mut figures[row.index()];
        f.worst = Some(worst);
        f.p99 = Some(p99);
        if row != Row::FloorNoJobs {
            f.makespan_ratio = Some(makespan.as_secs_f64() / ideal.as_secs_f64());
        }
    }

    // The mixed load, rows taking turns round by round.
    let mut mixed: Vec<Vec<(Duration, Duration)>> = Row::ALL.iter().map(|_| Vec::new()).collect();
    for _ in 0..MIXED_ROUNDS {
        for row in Row::PEERS {
            mixed[row.index()].push(mixed_peer_round(row, mixed_iters)?);
        }
    }
    for row in Row::PEERS {
        let rounds = &mixed[row.index()];
        let f = &mut figures[row.index()];
        f.mixed_cpu = Some(median(rounds.iter().map(|r| r.0).collect()));
        f.mixed_sleepers = Some(median(rounds.iter().map(|r| r.1).collect()));
    }

    // Allocations (and warm-up).
    for row in Row::PEERS.into_iter().chain([Row::FloorInline]) {
        let (seq, in_burst) = with_peer!(peers, row, p => allocations(&rt, p));
        figures[row.index()].allocs = Some(seq);
        figures[row.index()].allocs_burst = Some(in_burst);
    }
    figures[Row::FloorSpin.index()].allocs = Some(0.0);
    let injector_allocs = count_allocations(|| {
        injector_floor();
    });
    figures[Row::FloorInjector.index()].allocs = Some(injector_allocs as f64 / BURST as f64);

    // Round trips and bursts, the peers taking turns batch by batch so that
    // a change in the machine's load spreads over all of them.
    let mut rt_samples = vec![Vec::new(); Row::ALL.len()];
    let mut rt_plain_samples = vec![Vec::new(); Row::ALL.len()];
    for _ in 0..RT_BATCHES {
        for row in Row::PEERS.into_iter().chain([Row::FloorInline]) {
            let d = with_peer!(peers, row, p => round_trip(&rt, p, RT_JOBS));
            rt_samples[row.index()].push(d);
            let d = with_peer!(peers, row, p => round_trip(&rt_plain, p, RT_JOBS));
            rt_plain_samples[row.index()].push(d);
        }
        rt_samples[Row::FloorSpin.index()].push(spin_floor(&rt, RT_JOBS, Wait::Spin));
        let no_delay = Wait::Loop {
            delay: Duration::ZERO,
        };
        rt_samples[Row::FloorSpinWaker.index()].push(spin_floor(&rt, RT_JOBS, no_delay));
        for (row, delay) in [
            (Row::FloorLoopWakeShort, LOOP_WAKE_SHORT),
            (Row::FloorLoopWakeLong, LOOP_WAKE_LONG),
        ] {
            let wake = spin_floor(&rt, RT_JOBS / 5, Wait::Loop { delay });
            rt_samples[row.index()].push(wake);
        }
    }
    let mut burst_samples = vec![Vec::new(); Row::ALL.len()];
    for _ in 0..BURST_RUNS {
        for row in Row::PEERS.into_iter().chain([Row::FloorInline]) {
            let d = with_peer!(peers, row, p => {
                let mut pending = Vec::with_capacity(BURST as usize);
                burst(&rt, p, &mut pending)
            });
            burst_samples[row.index()].push(d);
        }
        burst_samples[Row::FloorInjector.index()].push(injector_floor());
    }
    for (i, ((rts, plain), bursts)) in rt_samples
        .into_iter()
        .zip(rt_plain_samples)
        .zip(burst_samples)
        .enumerate()
    {
        figures[i].round_trip = (!rts.is_empty()).then(|| median(rts));
        figures[i].round_trip_plain = (!plain.is_empty()).then(|| median(plain));
        figures[i].burst = (!bursts.is_empty()).then(|| median(bursts));
    }

    // The load at the end counts this run's own burst threads (tokio's and
    // `blocking`'s pools grow hundreds): the load at the start is the one
    // that tells how busy the machine was.
    println!(
        "measured in {:.0} s; load average at the end: {} (counts this run's own burst threads)",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    println!();
    print_table(&figures, markdown);
    println!();
    print_goals(&goals(&figures), markdown);

    let svg = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/compare.svg");
    let subtitle = format!(
        "examples/compare.rs, {cores} cores, load average at start {load_at_start}; bars: offload Task's figure ÷ the peer's"
    );
    write_svg(&svg, &figures, &subtitle)?;
    println!();
    println!("chart written to {}", svg.display());
    Ok(())
}

/// `--priority-sweep`: the ticker with offload pools at each of
/// [`PRIORITY_SWEEP`], taking turns round by round, with the no-jobs floor.
fn priority_sweep(
    rt: &tokio::runtime::Runtime,
    jobs: u64,
    iters: u64,
    ideal: Duration,
) -> Result<()> {
    let pools: Vec<OffloadTask> = PRIORITY_SWEEP
        .iter()
        .map(|&p| {
            offload::Pool::builder()
                .worker_priority(p)
                .build()
                .map(OffloadTask)
        })
        .collect::<Result<_, _>>()?;
    let mut floor = Vec::new();
    let mut rounds: Vec<Vec<TickerRound>> = pools.iter().map(|_| Vec::new()).collect();
    for _ in 0..SWEEP_ROUNDS {
        floor.push(ticker_round::<Inline>(rt, None, jobs, iters, ideal)?);
        for (pool, rounds) in pools.iter().zip(&mut rounds) {
            rounds.push(ticker_round(rt, Some(pool), jobs, iters, ideal)?);
        }
    }
    println!(
        "{SWEEP_ROUNDS} rounds per row; load average at the end: {}",
        load_average()
    );
    println!(
        "{:<20}{:>16}{:>16}{:>18}",
        "worker priority", "ticker worst ms", "ticker p99 ms", "makespan ×ideal"
    );
    let (worst, p99, _) = ticker_summary(&floor);
    println!(
        "{:<20}{:>16}{:>16}{:>18}",
        "(no jobs: floor)",
        ms(Some(worst)),
        ms(Some(p99)),
        "-"
    );
    for (priority, rounds) in PRIORITY_SWEEP.iter().zip(&rounds) {
        let (worst, p99, makespan) = ticker_summary(rounds);
        println!(
            "{:<20}{:>16}{:>16}{:>18.2}",
            format!("{priority:?}"),
            ms(Some(worst)),
            ms(Some(p99)),
            makespan.as_secs_f64() / ideal.as_secs_f64()
        );
    }
    Ok(())
}
