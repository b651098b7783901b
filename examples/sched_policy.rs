//! How the workers' (or the loop's) scheduling policy trades the event
//! loop's wake-up latency against the pool's share of the CPU: the options
//! side by side in one run, for a quiet machine to decide between (Linux).
//!
//! ```text
//! cargo run --release --example sched_policy
//! cargo run --release --example sched_policy -- --rounds 5 --markdown
//! ```
//!
//! Variants (each a pool of one worker per core):
//!
//! - `Inherit` — the default: workers at the builder's priority;
//! - `Nice(10)` — `WorkerPriority::Nice(10)`;
//! - `SCHED_BATCH` — each worker sets `SCHED_BATCH` for itself
//!   (`sched_setscheduler`, from `Builder::on_thread_start`): the
//!   scheduler treats it as CPU-bound and does not let its wake-ups
//!   preempt;
//! - `worker slice 20 ms` — each worker asks EEVDF for a 20 ms slice
//!   (`sched_setattr`, `sched_runtime`; Linux 6.12 or later): a later
//!   virtual deadline, so a woken loop with the default slice preempts it
//!   sooner;
//! - `loop slice 0.1 ms` — the workers at `Inherit`, the loop thread asks
//!   for a 0.1 ms slice: an earlier deadline each time it wakes.
//!
//! Two measurements per variant, `--rounds` each (3), variants taking
//! turns:
//!
//! - **ticker**: a 1 ms `timerfd` ticker on a current-thread tokio loop
//!   (`enable_all`), while the loop submits 8 jobs per core of 10 ms of
//!   calibrated work and awaits them: p99 and worst lateness of the ticks;
//! - **starvation**: 16 jobs of 10 ms submitted beside two threads of the
//!   same program that compute all along (at the default policy): the time
//!   until all 16 are done, and its ratio to `Inherit`'s. Goal: ≤ 1.3×.
//!
//! A variant whose system call fails (an older kernel, a seccomp filter)
//! says so in its row and runs as `Inherit`.

#[path = "support/mod.rs"]
mod support;

#[cfg(target_os = "linux")]
mod linux {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::support::args::Args;
    use super::support::machine;
    use super::support::stats::worst_and_p99;
    use super::support::table;
    use super::support::work::{calibrate, hash_job};
    use offload::WorkerPriority;

    const USAGE: &str = "usage: sched_policy [--rounds N] [--markdown]";

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Variant {
        Inherit,
        Nice10,
        Batch,
        WorkerSlice,
        LoopSlice,
    }

    impl Variant {
        const ALL: [Variant; 5] = [
            Variant::Inherit,
            Variant::Nice10,
            Variant::Batch,
            Variant::WorkerSlice,
            Variant::LoopSlice,
        ];

        fn name(self) -> &'static str {
            match self {
                Variant::Inherit => "Inherit",
                Variant::Nice10 => "Nice(10)",
                Variant::Batch => "SCHED_BATCH workers",
                Variant::WorkerSlice => "worker slice 20 ms",
                Variant::LoopSlice => "loop slice 0.1 ms",
            }
        }
    }

    /// `sched_setattr` for the calling thread: policy `SCHED_OTHER` at nice 0,
    /// with an EEVDF slice of `slice` (zero: the default slice back).
    fn set_slice(slice: Duration) -> std::io::Result<()> {
        #[repr(C)]
        #[derive(Default)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
            util_min: u32,
            util_max: u32,
        }
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: libc::SCHED_OTHER as u32,
            runtime: slice.as_nanos() as u64,
            ..SchedAttr::default()
        };
        // SAFETY: `attr` is a valid `struct sched_attr` of the size it states;
        // pid 0 is the calling thread; flags 0.
        let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// `SCHED_BATCH` for the calling thread.
    fn set_batch() -> std::io::Result<()> {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` is valid.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// The pool of a variant, and the first error its workers met setting
    /// their policy, if any.
    fn build(
        variant: Variant,
        cores: usize,
    ) -> (offload::Pool, Arc<std::sync::Mutex<Option<String>>>) {
        let error = Arc::new(std::sync::Mutex::new(None));
        let mut builder = offload::Pool::builder().threads(cores);
        match variant {
            Variant::Nice10 => builder = builder.worker_priority(WorkerPriority::Nice(10)),
            Variant::Batch | Variant::WorkerSlice => {
                let error = Arc::clone(&error);
                builder = builder.on_thread_start(move |_| {
                    let result = if variant == Variant::Batch {
                        set_batch()
                    } else {
                        set_slice(Duration::from_millis(20))
                    };
                    if let Err(e) = result {
                        error.lock().unwrap().get_or_insert(e.to_string());
                    }
                });
            }
            Variant::Inherit | Variant::LoopSlice => {}
        }
        (builder.build().expect("offload pool"), error)
    }

    /// A 1 ms ticker on the current runtime until `stop`: each tick's lateness.
    async fn ticker(stop: Arc<AtomicBool>) -> std::io::Result<Vec<Duration>> {
        use super::support::clock::{arm, expirations, monotonic_ns, timerfd};
        let fd = timerfd()?;
        let period = 1_000_000u64;
        let start = monotonic_ns();
        arm(&fd, start + period, period)?;
        let mut lateness = Vec::new();
        let mut ticks = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let expirations = expirations(&fd).await?;
            let now = monotonic_ns();
            for _ in 0..expirations {
                ticks += 1;
                lateness.push(Duration::from_nanos(
                    now.saturating_sub(start + ticks * period),
                ));
            }
        }
        Ok(lateness)
    }

    /// One ticker round on a loop thread of its own: the ticks' lateness.
    fn ticker_round(
        variant: Variant,
        pool: &offload::Pool,
        jobs: u64,
        iters: u64,
    ) -> Vec<Duration> {
        let pool = pool.clone();
        std::thread::spawn(move || {
            if variant == Variant::LoopSlice {
                if let Err(e) = set_slice(Duration::from_micros(100)) {
                    eprintln!("loop slice: {e}");
                }
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async {
                let stop = Arc::new(AtomicBool::new(false));
                let ticks = tokio::spawn(ticker(Arc::clone(&stop)));
                tokio::task::yield_now().await;
                let tasks: Vec<_> = (0..jobs)
                    .map(|seed| pool.spawn(move || hash_job(seed, iters)))
                    .collect();
                for task in tasks {
                    std::hint::black_box(task.await.unwrap());
                }
                stop.store(true, Ordering::Relaxed);
                ticks.await.unwrap().expect("ticker")
            })
        })
        .join()
        .expect("loop thread")
    }

    /// One starvation round: 16 jobs beside two busy threads; their makespan.
    fn starvation_round(pool: &offload::Pool, iters: u64) -> Duration {
        let stop = Arc::new(AtomicBool::new(false));
        let busy: Vec<_> = (0..2)
            .map(|i| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut h = i;
                    while !stop.load(Ordering::Relaxed) {
                        h = hash_job(h, 10_000);
                    }
                    std::hint::black_box(h);
                })
            })
            .collect();
        let start = Instant::now();
        let tasks: Vec<_> = (0..16)
            .map(|seed| pool.spawn(move || hash_job(seed, iters)))
            .collect();
        for task in tasks {
            std::hint::black_box(task.wait().unwrap());
        }
        let makespan = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        for thread in busy {
            thread.join().unwrap();
        }
        makespan
    }

    pub fn main() {
        let mut args = Args::new(USAGE);
        let (mut rounds, mut markdown) = (3usize, false);
        let parsed: Result<(), String> = (|| {
            while let Some(arg) = args.next_arg() {
                if arg == "--markdown" {
                    markdown = true;
                    continue;
                }
                let flag = args.flag(arg)?;
                match flag.name.as_str() {
                    "--rounds" => rounds = flag.parse()?,
                    _ => return Err(flag.unknown()),
                }
            }
            Ok(())
        })();
        if let Err(message) = parsed {
            eprintln!("{message}");
            std::process::exit(2);
        }
        let cores = machine::cores().expect("cores");
        println!("load average: {}", machine::load_average());
        let iters = calibrate(Duration::from_millis(10));
        let pools: Vec<_> = Variant::ALL.iter().map(|&v| build(v, cores)).collect();
        let mut ticks: Vec<Vec<Duration>> = vec![Vec::new(); Variant::ALL.len()];
        let mut spans: Vec<Vec<Duration>> = vec![Vec::new(); Variant::ALL.len()];
        for _ in 0..rounds {
            for (i, &variant) in Variant::ALL.iter().enumerate() {
                let pool = &pools[i].0;
                ticks[i].extend(ticker_round(variant, pool, 8 * cores as u64, iters));
                spans[i].push(starvation_round(pool, iters));
            }
        }
        let median = |v: &[Duration]| {
            let mut v = v.to_vec();
            v.sort();
            v[v.len() / 2]
        };
        let inherit = median(&spans[0]);
        let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
        let rows: Vec<Vec<String>> = Variant::ALL
            .iter()
            .enumerate()
            .map(|(i, &variant)| {
                let (worst, p99) = worst_and_p99(ticks[i].iter().copied());
                let span = median(&spans[i]);
                let note = pools[i].1.lock().unwrap().clone().unwrap_or_default();
                vec![
                    variant.name().to_owned(),
                    ms(p99),
                    ms(worst),
                    ms(span),
                    format!("{:.2}", span.as_secs_f64() / inherit.as_secs_f64()),
                    note,
                ]
            })
            .collect();
        let headers: Vec<String> = [
            "variant",
            "ticker p99 ms",
            "ticker worst ms",
            "16 jobs beside 2 busy threads, ms",
            "÷ Inherit",
            "error",
        ]
        .map(String::from)
        .into();
        println!(
            "{cores} cores; ticker: 1 ms timerfd on a current-thread loop while {} jobs of 10 ms run; \
             {rounds} rounds",
            8 * cores
        );
        table::print(&headers, &rows, 1, markdown);
        println!("load average: {}", machine::load_average());
    }
}

#[cfg(target_os = "linux")]
fn main() {
    linux::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("sched_policy: Linux only (timerfd, sched_setattr)");
}
