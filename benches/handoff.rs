//! Handoff cost: getting a trivial job from async code to a pool thread and
//! its result back, against the usual ways of doing the same.
//!
//! ```text
//! cargo bench --bench handoff
//! ```
//!
//! Peers (each group has all five):
//!
//! - `offload_task`: [`offload::Pool::spawn`], awaiting the returned `Task`;
//! - `offload_oneshot`: the same pool, but the result comes back through a
//!   `futures-channel` oneshot and the Task is detached. This is the handoff
//!   offload's single-allocation Task cell has to beat;
//! - `rayon_oneshot`: `rayon::ThreadPool::spawn` plus a oneshot;
//! - `tokio_spawn_blocking`: `spawn_blocking` on the benchmark's tokio
//!   runtime (through its `Handle`, so that it works from any thread);
//! - `blocking_unblock`: `blocking::unblock` (smol's blocking pool).
//!
//! offload and rayon get one thread per core (or `OFFLOAD_BENCH_THREADS`,
//! for a scaling table); tokio's and `blocking`'s pools grow on demand (up
//! to 512 and 500 threads).
//!
//! Groups:
//!
//! - `round_trip_tokio`: one task on a current-thread tokio runtime submits
//!   a job, awaits it, and repeats: time per submission;
//! - `round_trip_block_on`: the same from `futures::executor::block_on`;
//! - `burst`: the tokio task submits 100 000 jobs, then awaits them all:
//!   time per burst (throughput in jobs per second);
//! - `burst_from_N_threads`: N threads at once (N = 2 and N = cores, once if
//!   equal) each submit their share of the 100 000 jobs, then await them,
//!   each in its own `futures::executor::block_on`: the clock runs from
//!   their common start until the last one is done.
//!
//! Sample sizes and times are short so that the whole run takes a few
//! minutes; the bursts of the thread-growing pools take longest.
//! `examples/compare.rs` measures what criterion cannot (event-loop
//! lateness, idle CPU, allocations).

use std::fmt::Debug;
use std::future::Future;
use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput};
use futures_channel::oneshot;

/// Jobs per burst, whatever the number of submitting threads.
const BURST: u64 = 100_000;

/// What one measured iteration does.
#[derive(Clone, Copy)]
enum Shape {
    /// Submit one job and await it, on the tokio runtime.
    RoundTripTokio,
    /// Submit one job and await it, in `futures::executor::block_on`.
    RoundTripBlockOn,
    /// `submitters` threads submit [`BURST`] jobs between them, then await
    /// each of theirs. One submitter: the tokio runtime's task.
    Burst { submitters: usize },
}

/// The pools, built once and shared by every benchmark.
struct Pools {
    runtime: tokio::runtime::Runtime,
    offload: offload::Pool,
    rayon: rayon::ThreadPool,
}

impl Pools {
    fn new() -> Pools {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime");
        let mut offload = offload::Pool::builder();
        if let Ok(threads) = std::env::var("OFFLOAD_BENCH_THREADS") {
            offload = offload.threads(threads.parse().expect("OFFLOAD_BENCH_THREADS: a count"));
        }
        let offload = offload.build().expect("offload pool");
        let rayon = rayon::ThreadPoolBuilder::new()
            .num_threads(offload.threads())
            .build()
            .expect("rayon pool");
        Pools {
            runtime,
            offload,
            rayon,
        }
    }
}

/// Submits `iters` jobs one after another, awaiting each; the time taken.
async fn round_trips<F, Fut, E>(submit: &F, iters: u64) -> Duration
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<u64, E>>,
    E: Debug,
{
    let start = Instant::now();
    for i in 0..iters {
        black_box(submit(black_box(i)).await.expect("job failed"));
    }
    start.elapsed()
}

/// Submits jobs `range` and then awaits each of them.
async fn submit_then_await<F, Fut, E>(submit: &F, range: std::ops::Range<u64>)
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<u64, E>>,
    E: Debug,
{
    let pending: Vec<Fut> = range.map(submit).collect();
    for job in pending {
        black_box(job.await.expect("job failed"));
    }
}

/// Benchmarks one peer: `submit(i)` must start job `i` at once and return a
/// future of its result.
fn bench_peer<F, Fut, E>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    shape: Shape,
    name: &str,
    submit: F,
) where
    F: Fn(u64) -> Fut + Sync,
    Fut: Future<Output = Result<u64, E>>,
    E: Debug,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| match shape {
            Shape::RoundTripTokio => runtime.block_on(round_trips(&submit, iters)),
            Shape::RoundTripBlockOn => futures::executor::block_on(round_trips(&submit, iters)),
            Shape::Burst { submitters: 1 } => runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    submit_then_await(&submit, 0..BURST).await;
                }
                start.elapsed()
            }),
            Shape::Burst { submitters } => (0..iters)
                .map(|_| burst_from_threads(&submit, submitters))
                .sum(),
        });
    });
}

/// One burst split between `submitters` threads that start together; the
/// time from their start until the last one has awaited all its jobs.
fn burst_from_threads<F, Fut, E>(submit: &F, submitters: usize) -> Duration
where
    F: Fn(u64) -> Fut + Sync,
    Fut: Future<Output = Result<u64, E>>,
    E: Debug,
{
    let share = BURST / submitters as u64;
    let barrier = Barrier::new(submitters + 1);
    let start = thread::scope(|s| {
        for t in 0..submitters as u64 {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                let range = t * share..(t + 1) * share;
                futures::executor::block_on(submit_then_await(submit, range));
            });
        }
        barrier.wait();
        Instant::now()
    });
    start.elapsed()
}

/// Registers every peer in `group`.
fn bench_peers(group: &mut BenchmarkGroup<'_, WallTime>, pools: &Pools, shape: Shape) {
    let rt = &pools.runtime;
    let handle = rt.handle();

    bench_peer(group, rt, shape, "offload_task", |i| {
        pools.offload.spawn(move || black_box(i))
    });
    bench_peer(group, rt, shape, "offload_oneshot", |i| {
        let (tx, rx) = oneshot::channel();
        pools
            .offload
            .spawn(move || {
                let _ = tx.send(black_box(i));
            })
            .detach();
        rx
    });
    bench_peer(group, rt, shape, "rayon_oneshot", |i| {
        let (tx, rx) = oneshot::channel();
        pools.rayon.spawn(move || {
            let _ = tx.send(black_box(i));
        });
        rx
    });
    bench_peer(group, rt, shape, "tokio_spawn_blocking", |i| {
        handle.spawn_blocking(move || black_box(i))
    });
    bench_peer(group, rt, shape, "blocking_unblock", |i| {
        blocking::unblock(move || Ok::<_, std::convert::Infallible>(black_box(i)))
    });
}

fn handoff(c: &mut Criterion) {
    let pools = Pools::new();

    for (name, shape) in [
        ("round_trip_tokio", Shape::RoundTripTokio),
        ("round_trip_block_on", Shape::RoundTripBlockOn),
    ] {
        let mut group = c.benchmark_group(name);
        bench_peers(&mut group, &pools, shape);
        group.finish();
    }

    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let mut submitters = vec![1, 2, cores.max(2)];
    submitters.dedup();
    for n in submitters {
        let name = match n {
            1 => "burst".to_string(),
            n => format!("burst_from_{n}_threads"),
        };
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(BURST));
        // One burst is 10–1000 ms: the fewest samples criterion takes, each
        // one burst long (Flat), however long that makes the group.
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(2));
        bench_peers(&mut group, &pools, Shape::Burst { submitters: n });
        group.finish();
    }
}

/// The benchmark group, with short timings so the whole run stays brief.
fn benches() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    handoff(&mut criterion);
}

criterion_main!(benches);
