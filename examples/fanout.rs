//! What an event loop pays, in its own CPU, per job it offloads under
//! fan-out, against every peer in the same run.
//!
//! ```text
//! cargo run --release --example fanout
//! cargo run --release --example fanout -- --jobs 20000 --in-flight 256 --job-us 50 --rounds 3
//! ```
//!
//! A current-thread tokio runtime built with `enable_all()` (a server's
//! loop, with its I/O and time drivers) runs `--jobs` requests (20 000),
//! `--in-flight` (256) at a time (`buffer_unordered`); each awaits one
//! job of `--job-us` (50 µs) of calibrated CPU work on the pool of the
//! member:
//!
//! - **offload** — `Pool::spawn` (one worker per core), the Task awaited;
//! - **rayon + oneshot** — `ThreadPool::spawn` and a oneshot channel;
//! - **tokio spawn_blocking** — the loop's own runtime's blocking pool;
//! - **blocking::unblock** — smol's blocking pool.
//!
//! Per member, the median of `--rounds` rounds (3), members taking turns:
//! the loop thread's CPU time per job (`CLOCK_THREAD_CPUTIME_ID`), its
//! voluntary context switches per job (`RUSAGE_THREAD`: how often it
//! parked), and the makespan against the ideal (jobs × job time / cores).
//! Goal: offload's loop CPU per job ≤ 1.5× the best peer's and its makespan
//! ≤ the best peer's.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use support::args::Args;
use support::machine;
use support::table;
use support::work::{calibrate, hash_job};

const USAGE: &str = "usage: fanout [--jobs N] [--in-flight N] [--job-us US] [--rounds N] \
                     [--only NAME] [--markdown]";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Member {
    Offload,
    RayonOneshot,
    SpawnBlocking,
    Unblock,
}

impl Member {
    const ALL: [Member; 4] = [
        Member::Offload,
        Member::RayonOneshot,
        Member::SpawnBlocking,
        Member::Unblock,
    ];

    fn name(self) -> &'static str {
        match self {
            Member::Offload => "offload",
            Member::RayonOneshot => "rayon + oneshot",
            Member::SpawnBlocking => "tokio spawn_blocking",
            Member::Unblock => "blocking::unblock",
        }
    }
}

/// The calling thread's CPU time, and its voluntary context switches.
fn thread_usage() -> (Duration, u64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `usage` is a valid, writable `rusage`, filled in on success.
    let switches = unsafe {
        if libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) == 0 {
            usage.assume_init().ru_nvcsw as u64
        } else {
            0
        }
    };
    (Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32), switches)
}

struct Round {
    cpu_per_job: Duration,
    switches_per_job: f64,
    makespan: Duration,
}

struct Pools {
    offload: offload::Pool,
    rayon: rayon::ThreadPool,
}

fn round(member: Member, pools: &Pools, jobs: usize, in_flight: usize, iters: u64) -> Round {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let offload = pools.offload.clone();
    let rayon = &pools.rayon;
    runtime.block_on(async move {
        let (cpu0, sw0) = thread_usage();
        let start = Instant::now();
        let sum = stream::iter(0..jobs as u64)
            .map(|i| {
                let offload = offload.clone();
                async move {
                    match member {
                        Member::Offload => offload.spawn(move || hash_job(i, iters)).await.unwrap(),
                        Member::RayonOneshot => {
                            let (tx, rx) = futures::channel::oneshot::channel();
                            rayon.spawn(move || {
                                let _ = tx.send(hash_job(i, iters));
                            });
                            rx.await.unwrap()
                        }
                        Member::SpawnBlocking => {
                            tokio::task::spawn_blocking(move || hash_job(i, iters))
                                .await
                                .unwrap()
                        }
                        Member::Unblock => blocking::unblock(move || hash_job(i, iters)).await,
                    }
                }
            })
            .buffer_unordered(in_flight)
            .fold(0u64, |acc, x| async move { acc.wrapping_add(x) })
            .await;
        std::hint::black_box(sum);
        let makespan = start.elapsed();
        let (cpu1, sw1) = thread_usage();
        Round {
            cpu_per_job: (cpu1 - cpu0) / jobs as u32,
            switches_per_job: (sw1 - sw0) as f64 / jobs as f64,
            makespan,
        }
    })
}

fn main() {
    let mut args = Args::new(USAGE);
    let (mut jobs, mut in_flight, mut job_us, mut rounds) = (20_000usize, 256usize, 50u64, 3usize);
    let mut only: Option<String> = None;
    let mut markdown = false;
    let parsed: Result<(), String> = (|| {
        while let Some(arg) = args.next_arg() {
            if arg == "--markdown" {
                markdown = true;
                continue;
            }
            let flag = args.flag(arg)?;
            match flag.name.as_str() {
                "--jobs" => jobs = flag.parse()?,
                "--in-flight" => in_flight = flag.parse()?,
                "--job-us" => job_us = flag.parse()?,
                "--rounds" => rounds = flag.parse()?,
                "--only" => only = Some(flag.value.clone()),
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
    let iters = calibrate(Duration::from_micros(job_us));
    let pools = Pools {
        offload: offload::Pool::builder()
            .threads(cores)
            .build()
            .expect("offload pool"),
        rayon: rayon::ThreadPoolBuilder::new()
            .num_threads(cores)
            .build()
            .expect("rayon pool"),
    };
    let members: Vec<Member> = Member::ALL
        .into_iter()
        .filter(|m| only.as_deref().is_none_or(|o| m.name().contains(o)))
        .collect();
    let mut results: Vec<Vec<Round>> = members.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (m, &member) in members.iter().enumerate() {
            results[m].push(round(member, &pools, jobs, in_flight, iters));
        }
    }
    let ideal = Duration::from_micros(job_us) * jobs as u32 / cores as u32;
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut rows = Vec::new();
    let mut figures = Vec::new();
    for (m, &member) in members.iter().enumerate() {
        let mut cpu: Vec<f64> = results[m]
            .iter()
            .map(|r| r.cpu_per_job.as_secs_f64() * 1e6)
            .collect();
        let mut sw: Vec<f64> = results[m].iter().map(|r| r.switches_per_job).collect();
        let mut span: Vec<f64> = results[m]
            .iter()
            .map(|r| r.makespan.as_secs_f64() * 1e3)
            .collect();
        let (cpu, sw, span) = (med(&mut cpu), med(&mut sw), med(&mut span));
        figures.push((member, cpu, span));
        rows.push(vec![
            member.name().to_owned(),
            format!("{cpu:.2}"),
            format!("{sw:.2}"),
            format!("{span:.0}"),
            format!("{:.2}", span / (ideal.as_secs_f64() * 1e3)),
        ]);
    }
    let headers: Vec<String> = [
        "member",
        "loop CPU µs/job",
        "loop parks/job",
        "makespan ms",
        "×ideal",
    ]
    .map(String::from)
    .into();
    println!(
        "fan-out: {jobs} jobs of {job_us} µs, {in_flight} in flight, {cores} cores, \
         current-thread tokio loop (enable_all), median of {rounds} rounds"
    );
    table::print(&headers, &rows, 1, markdown);
    if let Some(&(_, cpu, span)) = figures.iter().find(|f| f.0 == Member::Offload) {
        let peers = figures.iter().filter(|f| f.0 != Member::Offload);
        let best_cpu = peers.clone().map(|f| f.1).fold(f64::INFINITY, f64::min);
        let best_span = peers.map(|f| f.2).fold(f64::INFINITY, f64::min);
        if best_cpu.is_finite() {
            println!(
                "goal: loop CPU ≤ 1.5× the best peer's ({:.2}×), makespan ≤ the best peer's ({:.2}×): {}",
                cpu / best_cpu,
                span / best_span,
                if cpu <= 1.5 * best_cpu && span <= best_span {
                    "met"
                } else {
                    "missed"
                }
            );
        }
    }
    println!("load average: {}", machine::load_average());
}
