//! Priorities inside one pool: latency-critical requests beside a big
//! background batch, against one FIFO pool and against the two-pool
//! workaround, in the same run.
//!
//! ```text
//! cargo run --release --example priorities
//! cargo run --release --example priorities -- --runs 5 --background 1000 --markdown
//! ```
//!
//! The load, on 2 workers: `--background` jobs (1,000) of `--bg-ms` (1 ms)
//! of calibrated CPU work (a hash loop, not a sleep) are queued at once;
//! then a current-thread tokio loop sends `--requests` requests (50, about
//! as many as fit while the batch runs) of `--req-ms` (2 ms) each, one
//! every `--every-ms` (10 ms), on an open-loop schedule: request `i` is due
//! at `start + i × every`, its wake-up comes from a `timerfd` (to the
//! microsecond; tokio's own timer rounds to milliseconds), and its **queue
//! wait** runs from that due time to the first line of its job, so a late
//! loop counts against the pool, never in its favour.
//!
//! Contenders, each on pools built for the run, taking turns `--runs` times:
//!
//! - **offload priorities**: one pool of 2 workers; the batch through
//!   `pool.with_priority(Priority::Low)`, the requests through
//!   `pool.with_priority(Priority::High)`;
//! - **offload FIFO**: one pool of 2 workers, every job `Normal`: the
//!   requests queue behind the batch (about half a second);
//! - **rayon two pools**: the workaround seen in services, a
//!   `rayon::ThreadPool` per class, both sized to the cores (4 threads on
//!   2 cores); the kernel's scheduler shares the cores between them.
//!
//! Figures per contender:
//!
//! - request queue wait: p50, p99 and max over every request of every run
//!   (an `hdrhistogram`); goal for offload priorities: p99 ≤ 1.5 ms (about
//!   one background job: a request arrives while both workers run one);
//!   beside it, the p99 of how late the loop itself sent the requests
//!   (part of their wait: the loop's thread shares the 2 cores with the 2
//!   busy workers, and on a loaded machine with everything else) and the
//!   p99 of the wait from the actual send to the job's start (the pool's
//!   own part);
//! - background throughput beside the requests, as a ratio to the batch's
//!   throughput alone on the same contender (the median of the runs'
//!   ratios): **raw**, which the requests' own 2 ms jobs lower by about
//!   their share of the workers (100 ms of 1 s of worker time here), and
//!   **net of the requests**, the batch's time minus the request work
//!   that ran while it did (divided by the 2 workers), which is what
//!   scheduling itself costs the batch; goal ≥ 0.97 net;
//! - CPU time of the whole process from the first submission to the last
//!   request's answer (median of the runs), as a ratio to offload FIFO's:
//!   the same jobs, so the difference is what scheduling costs; goal ≤ 1.
//!
//! Prints the load average before and after: on a shared machine the
//! figures are indicative only.

#[path = "support/mod.rs"]
mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use offload::Priority;
use support::args::Args;
use support::machine::{cpu_time, load_average};
use support::work::{calibrate, hash_job};

const WORKERS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Priorities,
    Fifo,
    TwoPools,
}

const KINDS: [Kind; 3] = [Kind::Priorities, Kind::Fifo, Kind::TwoPools];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Priorities => "offload priorities",
            Kind::Fifo => "offload FIFO",
            Kind::TwoPools => "rayon two pools",
        }
    }
}

struct Config {
    background: usize,
    bg_iters: u64,
    req_iters: u64,
    requests: usize,
    every: Duration,
}

/// The pools of one contender.
enum Pools {
    Offload {
        background: offload::Pool,
        requests: offload::Pool,
    },
    Rayon {
        background: rayon::ThreadPool,
        requests: rayon::ThreadPool,
    },
}

type Answer = Pin<Box<dyn Future<Output = (Instant, Instant)> + Send>>;

impl Pools {
    fn new(kind: Kind) -> Pools {
        let offload = || {
            offload::Pool::builder()
                .threads(WORKERS)
                .build()
                .expect("offload pool")
        };
        let rayon = || {
            rayon::ThreadPoolBuilder::new()
                .num_threads(WORKERS)
                .build()
                .expect("rayon pool")
        };
        match kind {
            Kind::Priorities => {
                let pool = offload();
                Pools::Offload {
                    background: pool.with_priority(Priority::Low),
                    requests: pool.with_priority(Priority::High),
                }
            }
            Kind::Fifo => {
                let pool = offload();
                Pools::Offload {
                    background: pool.clone(),
                    requests: pool,
                }
            }
            Kind::TwoPools => Pools::Rayon {
                background: rayon(),
                requests: rayon(),
            },
        }
    }

    /// Queues the batch; `done` receives the time its last job ended.
    fn background(&self, config: &Config, done: mpsc::Sender<Instant>) {
        let left = Arc::new(AtomicUsize::new(config.background));
        for i in 0..config.background {
            let (left, done, iters) = (Arc::clone(&left), done.clone(), config.bg_iters);
            let job = move || {
                std::hint::black_box(hash_job(i as u64, iters));
                if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    let _ = done.send(Instant::now());
                }
            };
            match self {
                Pools::Offload { background, .. } => background.spawn(job).detach(),
                Pools::Rayon { background, .. } => background.spawn(job),
            }
        }
    }

    /// Sends one request; the answer is when its job started and ended.
    fn request(&self, iters: u64) -> Answer {
        let job = move || {
            let start = Instant::now();
            std::hint::black_box(hash_job(start.elapsed().as_nanos() as u64, iters));
            (start, Instant::now())
        };
        match self {
            Pools::Offload { requests, .. } => {
                let task = requests.spawn(job);
                Box::pin(async move { task.await.expect("the request ran") })
            }
            Pools::Rayon { requests, .. } => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                requests.spawn(move || {
                    let _ = tx.send(job());
                });
                Box::pin(async move { rx.await.expect("the request ran") })
            }
        }
    }
}

/// The batch alone: how long it takes.
fn alone(kind: Kind, config: &Config) -> Duration {
    let pools = Pools::new(kind);
    let (done_tx, done) = mpsc::channel();
    let start = Instant::now();
    pools.background(config, done_tx);
    done.recv().expect("the batch ends") - start
}

/// One mixed run's figures.
struct Mixed {
    waits: Vec<Duration>,
    /// How late the loop sent each request (part of its wait), and the
    /// wait from the send on (the pool's part).
    late: Vec<Duration>,
    from_send: Vec<Duration>,
    /// The batch's time, and the request work that ran during it.
    batch: Duration,
    overlap: Duration,
    cpu: Duration,
}

/// The batch, then the requests on their schedule (module docs).
fn mixed(kind: Kind, config: &Config) -> Mixed {
    let pools = Arc::new(Pools::new(kind));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (done_tx, done) = mpsc::channel();
    let cpu_before = cpu_time().unwrap_or_default();
    let start = Instant::now();
    pools.background(config, done_tx);
    let answers: Vec<(Instant, Instant, Instant, Instant)> = runtime.block_on(async {
        let fd = support::clock::timerfd().expect("timerfd");
        let every_ns = config.every.as_nanos() as u64;
        let (base_instant, base_ns) = (Instant::now(), support::clock::monotonic_ns());
        let first_ns = base_ns + every_ns;
        support::clock::arm(&fd, first_ns, every_ns).expect("arm the timer");
        let due = |i: usize| base_instant + Duration::from_nanos(every_ns * (i as u64 + 1));
        let collected = Arc::new(Mutex::new(Vec::with_capacity(config.requests)));
        let mut handles = Vec::with_capacity(config.requests);
        let mut sent = 0;
        while sent < config.requests {
            let expired = support::clock::expirations(&fd).await.expect("timer");
            for _ in 0..expired {
                if sent == config.requests {
                    break;
                }
                let (sent_at, due) = (Instant::now(), due(sent));
                let answer = pools.request(config.req_iters);
                let collected = Arc::clone(&collected);
                handles.push(tokio::spawn(async move {
                    let (started, ended) = answer.await;
                    collected
                        .lock()
                        .unwrap()
                        .push((due, sent_at, started, ended));
                }));
                sent += 1;
            }
        }
        for handle in handles {
            handle.await.expect("a request's task");
        }
        Arc::try_unwrap(collected).unwrap().into_inner().unwrap()
    });
    let batch_end = done.recv().expect("the batch ends");
    let cpu = cpu_time().unwrap_or_default().saturating_sub(cpu_before);
    let overlap = answers
        .iter()
        .map(|&(_, _, s, e)| e.min(batch_end).saturating_duration_since(s.max(start)))
        .sum();
    Mixed {
        waits: answers
            .iter()
            .map(|&(due, _, started, _)| started.saturating_duration_since(due))
            .collect(),
        late: answers
            .iter()
            .map(|&(due, sent_at, _, _)| sent_at.saturating_duration_since(due))
            .collect(),
        from_send: answers
            .iter()
            .map(|&(_, sent_at, started, _)| started.saturating_duration_since(sent_at))
            .collect(),
        batch: batch_end - start,
        overlap,
        cpu,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn main() {
    let mut args = Args::new(
        "cargo run --release --example priorities -- [--runs N] [--background N] \
         [--bg-ms F] [--req-ms F] [--every-ms N] [--requests N] [--markdown]",
    );
    let (mut runs, mut background, mut bg_ms, mut req_ms, mut every_ms) =
        (3usize, 1000usize, 1.0f64, 2.0f64, 10u64);
    let mut requests = None;
    let mut markdown = false;
    while let Some(arg) = args.next_arg() {
        if arg == "--markdown" {
            markdown = true;
            continue;
        }
        let flag = args.flag(arg).unwrap_or_else(|e| panic!("{e}"));
        let parsed = match flag.name.as_str() {
            "--runs" => flag.parse().map(|v| runs = v),
            "--background" => flag.parse().map(|v| background = v),
            "--bg-ms" => flag.parse().map(|v| bg_ms = v),
            "--req-ms" => flag.parse().map(|v| req_ms = v),
            "--every-ms" => flag.parse().map(|v| every_ms = v),
            "--requests" => flag.parse().map(|v| requests = Some(v)),
            _ => Err(flag.unknown()),
        };
        parsed.unwrap_or_else(|e| panic!("{e}"));
    }
    println!("load average before: {}", load_average());
    let config = Config {
        background,
        bg_iters: calibrate(Duration::from_secs_f64(bg_ms / 1e3)),
        req_iters: calibrate(Duration::from_secs_f64(req_ms / 1e3)),
        // As many as fit while the batch runs on the workers.
        requests: requests.unwrap_or(
            ((background as f64 * bg_ms / WORKERS as f64) / every_ms as f64).ceil() as usize,
        ),
        every: Duration::from_millis(every_ms),
    };
    println!(
        "{WORKERS} workers; {background} background jobs of {bg_ms} ms, then {} requests of \
         {req_ms} ms every {every_ms} ms; {runs} runs, contenders in turn",
        config.requests
    );

    let mut waits: Vec<Histogram<u64>> = KINDS
        .iter()
        .map(|_| Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap())
        .collect();
    let mut late: Vec<Histogram<u64>> = KINDS
        .iter()
        .map(|_| Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap())
        .collect();
    let mut from_send: Vec<Histogram<u64>> = KINDS
        .iter()
        .map(|_| Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap())
        .collect();
    let mut raw = vec![Vec::new(); KINDS.len()];
    let mut net = vec![Vec::new(); KINDS.len()];
    let mut cpu = vec![Vec::new(); KINDS.len()];
    for _ in 0..runs {
        for (k, &kind) in KINDS.iter().enumerate() {
            let alone = alone(kind, &config);
            let run = mixed(kind, &config);
            for wait in &run.waits {
                waits[k].saturating_record(wait.as_nanos().max(1) as u64);
            }
            for wait in &run.late {
                late[k].saturating_record(wait.as_nanos().max(1) as u64);
            }
            for wait in &run.from_send {
                from_send[k].saturating_record(wait.as_nanos().max(1) as u64);
            }
            raw[k].push(alone.as_secs_f64() / run.batch.as_secs_f64());
            let batch_net = run.batch.saturating_sub(run.overlap / WORKERS as u32);
            net[k].push(alone.as_secs_f64() / batch_net.as_secs_f64());
            cpu[k].push(run.cpu.as_secs_f64());
        }
    }
    let fifo_cpu = median(cpu[1].clone());
    let headers: Vec<String> = [
        "contender",
        "queue wait p50 ms",
        "p99 ms",
        "max ms",
        "loop late p99 ms",
        "from send p99 ms",
        "background raw",
        "background net",
        "CPU s",
        "CPU / FIFO",
    ]
    .iter()
    .map(|h| h.to_string())
    .collect();
    let rows: Vec<Vec<String>> = KINDS
        .iter()
        .enumerate()
        .map(|(k, kind)| {
            let q = |quantile: f64| ms(Duration::from_nanos(waits[k].value_at_quantile(quantile)));
            let cpu_median = median(cpu[k].clone());
            vec![
                kind.name().to_string(),
                q(0.5),
                q(0.99),
                ms(Duration::from_nanos(waits[k].max())),
                ms(Duration::from_nanos(late[k].value_at_quantile(0.99))),
                ms(Duration::from_nanos(from_send[k].value_at_quantile(0.99))),
                format!("{:.3}", median(raw[k].clone())),
                format!("{:.3}", median(net[k].clone())),
                format!("{cpu_median:.3}"),
                format!("{:.3}", cpu_median / fifo_cpu),
            ]
        })
        .collect();
    support::table::print(&headers, &rows, 1, markdown);
    println!("load average after: {}", load_average());

    let p99 = Duration::from_nanos(waits[0].value_at_quantile(0.99));
    let net_ratio = median(net[0].clone());
    let cpu_ratio = median(cpu[0].clone()) / fifo_cpu;
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "goal: priorities' request queue wait p99 {} ms <= 1.5 ms: {}",
        ms(p99),
        verdict(p99 <= Duration::from_micros(1500))
    );
    println!(
        "goal: background throughput net of the requests {net_ratio:.3} >= 0.97 x alone: {}",
        verdict(net_ratio >= 0.97)
    );
    println!(
        "goal: CPU time {cpu_ratio:.3} <= 1 x FIFO's: {}",
        verdict(cpu_ratio <= 1.0)
    );
}
