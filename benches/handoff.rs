//! Handoff cost: getting a trivial job from an async task to a pool thread
//! and its result back, against the usual ways of doing the same.
//!
//! ```text
//! cargo bench --bench handoff
//! ```
//!
//! The awaiting side is always a current-thread tokio runtime. Peers:
//!
//! - `offload_task`: [`offload::Pool::spawn`], awaiting the returned `Task`;
//! - `offload_oneshot`: the same pool, but the result comes back through a
//!   `futures-channel` oneshot and the Task is detached. This is the handoff
//!   offload's single-allocation Task cell has to beat;
//! - `rayon_oneshot`: `rayon::ThreadPool::spawn` plus a oneshot;
//! - `tokio_spawn_blocking`: `tokio::task::spawn_blocking` on the same runtime;
//! - `blocking_unblock`: `blocking::unblock` (smol's blocking pool).
//!
//! offload and rayon get one thread per core; tokio's and `blocking`'s pools
//! grow on demand (up to 512 and 500 threads).
//!
//! Groups:
//!
//! - `round_trip`: submit one job, await it, repeat: time per submission.
//! - `burst`: submit 10 000 jobs, then await them all: time per burst
//!   (throughput in jobs per second).

use std::fmt::Debug;
use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput};
use futures_channel::oneshot;

/// Jobs per burst.
const BURST: u64 = 10_000;

/// What one measured iteration does.
#[derive(Clone, Copy)]
enum Shape {
    /// Submit one job and await it.
    RoundTrip,
    /// Submit [`BURST`] jobs, then await each of them.
    Burst,
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
        let offload = offload::Pool::builder().build().expect("offload pool");
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

/// Benchmarks one peer: `submit(i)` must start job `i` at once and return a
/// future of its result.
fn bench_peer<F, Fut, E>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    shape: Shape,
    name: &str,
    submit: F,
) where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<u64, E>>,
    E: Debug,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    match shape {
                        Shape::RoundTrip => {
                            black_box(submit(black_box(i)).await.expect("job failed"));
                        }
                        Shape::Burst => {
                            let pending: Vec<Fut> = (0..BURST).map(&submit).collect();
                            for job in pending {
                                black_box(job.await.expect("job failed"));
                            }
                        }
                    }
                }
                start.elapsed()
            })
        });
    });
}

/// Registers every peer in `group`.
fn bench_peers(group: &mut BenchmarkGroup<'_, WallTime>, pools: &Pools, shape: Shape) {
    let rt = &pools.runtime;

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
        tokio::task::spawn_blocking(move || black_box(i))
    });
    bench_peer(group, rt, shape, "blocking_unblock", |i| {
        blocking::unblock(move || Ok::<_, std::convert::Infallible>(black_box(i)))
    });
}

fn handoff(c: &mut Criterion) {
    let pools = Pools::new();

    let mut group = c.benchmark_group("round_trip");
    bench_peers(&mut group, &pools, Shape::RoundTrip);
    group.finish();

    let mut group = c.benchmark_group("burst");
    group.throughput(Throughput::Elements(BURST));
    group.sampling_mode(SamplingMode::Flat);
    bench_peers(&mut group, &pools, Shape::Burst);
    group.finish();
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
