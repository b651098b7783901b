//! A request that is one query to a real synchronous driver (SQLite, through
//! rusqlite), under CPU load: how long does it take, submitted each way?
//!
//! ```text
//! cargo run --release --example sqlite_request
//! cargo run --release --example sqlite_request -- --requests 400 --threads 2
//! ```
//!
//! A database file of `--rows` rows is made in a temporary directory; each
//! thread that runs a query opens its own connection to it (a
//! thread-local, as a service with a connection per thread does). The
//! query reads a range of rows from a fresh random offset and sums them,
//! with a `sleep` of `--io-us` before it standing for the round trip of a
//! database over the network (0 for a local file only).
//!
//! The CPU load: jobs of `--cpu-ms` each keep every worker busy (four per
//! worker always in flight). Meanwhile a loop sends `--requests` requests,
//! one at a time, each timed from its submission to its answer. The
//! variants, in one run, take turns in runs of [`RUN`] requests (the first
//! [`SETTLE`] of each run not counted), so that each variant meets the pool
//! as its own requests leave it: taking turns request by request charged
//! each variant with what the one before it did to the shared CPU queue (a
//! helper started for a marked call drains it for a few milliseconds more,
//! and the next request, whatever its variant, starts sooner). The
//! variants:
//!
//! - **offload spawn_blocking**: `Pool::spawn_blocking(query)`;
//! - **offload unmarked**: `Pool::spawn(query)`, the blocking call not
//!   marked (blocking detection on, the default);
//! - **offload blocking()**: `Pool::spawn(|| offload::blocking(query))`;
//! - **tokio spawn_blocking**: a multi-thread runtime of `--threads`
//!   workers, its CPU load as `tokio::spawn`ed computing tasks, the query
//!   by `spawn_blocking`;
//! - **blocking::unblock**: smol's blocking pool, with the CPU load on the
//!   offload pool.
//!
//! It prints the median, p90 and p99 latency of each, and the ratios the
//! goals name: `blocking()` against unmarked, and offload's
//! `spawn_blocking` against tokio's. Timings need a quiet machine.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rusqlite::Connection;

struct Config {
    requests: usize,
    threads: usize,
    rows: u64,
    cpu_ms: u64,
    io_us: u64,
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| {
            v.parse().unwrap_or_else(|_| panic!("{name} N"))
        })
}

fn config() -> Config {
    let args: Vec<String> = std::env::args().collect();
    Config {
        requests: arg(&args, "--requests", 300) as usize,
        threads: arg(&args, "--threads", 2) as usize,
        rows: arg(&args, "--rows", 100_000),
        cpu_ms: arg(&args, "--cpu-ms", 5),
        io_us: arg(&args, "--io-us", 500),
    }
}

thread_local! {
    static CONNECTION: RefCell<Option<Connection>> = const { RefCell::new(None) };
}

static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);

/// The request: one query on this thread's connection.
fn query(path: &Path, rows: u64, io: Duration) -> i64 {
    if !io.is_zero() {
        thread::sleep(io);
    }
    let seed = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    let start = (seed >> 11) % rows.saturating_sub(1000).max(1);
    CONNECTION.with(|connection| {
        let mut connection = connection.borrow_mut();
        let connection =
            connection.get_or_insert_with(|| Connection::open(path).expect("open the database"));
        let mut statement = connection
            .prepare_cached("SELECT sum(v) FROM t WHERE k BETWEEN ?1 AND ?1 + 1000")
            .expect("prepare");
        let sum: i64 = statement
            .query_row([start as i64], |row| row.get(0))
            .expect("query");
        sum
    })
}

fn make_database(dir: &Path, rows: u64) -> PathBuf {
    let path = dir.join("bench.sqlite");
    let mut connection = Connection::open(&path).expect("create the database");
    connection
        .execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER NOT NULL);")
        .expect("create the table");
    let transaction = connection.transaction().expect("a transaction");
    {
        let mut insert = transaction
            .prepare("INSERT INTO t (k, v) VALUES (?1, ?2)")
            .expect("prepare");
        for k in 0..rows {
            insert
                .execute([k as i64, (k * 7 % 1000) as i64])
                .expect("insert");
        }
    }
    transaction.commit().expect("commit");
    path
}

fn cpu_job(ms: u64) -> u64 {
    let until = Instant::now() + Duration::from_millis(ms);
    let mut x = 1u64;
    while Instant::now() < until {
        for _ in 0..1000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        }
    }
    x
}

/// Requests in a row of one variant (module docs).
const RUN: usize = 12;

/// The requests at the start of each run that are not counted.
const SETTLE: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    SpawnBlocking,
    Unmarked,
    Blocking,
    Tokio,
    Unblock,
}

const VARIANTS: [Variant; 5] = [
    Variant::SpawnBlocking,
    Variant::Unmarked,
    Variant::Blocking,
    Variant::Tokio,
    Variant::Unblock,
];

fn name(variant: Variant) -> &'static str {
    match variant {
        Variant::SpawnBlocking => "offload spawn_blocking",
        Variant::Unmarked => "offload unmarked",
        Variant::Blocking => "offload blocking()",
        Variant::Tokio => "tokio spawn_blocking",
        Variant::Unblock => "blocking::unblock",
    }
}

fn main() {
    let config = config();
    let dir = std::env::temp_dir().join(format!("offload-sqlite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = Arc::new(make_database(&dir, config.rows));
    let io = Duration::from_micros(config.io_us);
    let pool = offload::Pool::builder()
        .threads(config.threads)
        .build()
        .expect("a pool");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .enable_time()
        .build()
        .expect("a runtime");
    let mut histograms: Vec<Histogram<u64>> = VARIANTS
        .iter()
        .map(|_| Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds"))
        .collect();

    // The CPU load: four jobs per worker in flight on the pool, and as many
    // tasks on the runtime, for the whole run.
    let stop = Arc::new(AtomicBool::new(false));
    let feeders: Vec<_> = (0..config.threads * 4)
        .map(|_| {
            let (pool, stop) = (pool.clone(), Arc::clone(&stop));
            let ms = config.cpu_ms;
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(pool.spawn(move || cpu_job(ms)).wait().ok());
                }
            })
        })
        .collect();
    for _ in 0..config.threads * 4 {
        let stop = Arc::clone(&stop);
        let ms = config.cpu_ms;
        runtime.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                std::hint::black_box(cpu_job(ms));
                tokio::task::yield_now().await;
            }
        });
    }

    // Runs of `RUN` requests per variant, in turn; the first `SETTLE` of
    // each run warm up its threads and connections and let the pool settle
    // from the variant before.
    let rows = config.rows;
    let per_variant = (config.requests / VARIANTS.len()).max(1) as u64;
    let mut round = 0usize;
    while histograms.iter().any(|h| h.len() < per_variant) {
        let index = (round / RUN) % VARIANTS.len();
        let variant = VARIANTS[index];
        let counted = round % RUN >= SETTLE && histograms[index].len() < per_variant;
        round += 1;
        let path = Arc::clone(&path);
        let started = Instant::now();
        let sum = match variant {
            Variant::SpawnBlocking => pool
                .spawn_blocking(move || query(&path, rows, io))
                .wait()
                .expect("a query"),
            Variant::Unmarked => pool
                .spawn(move || query(&path, rows, io))
                .wait()
                .expect("a query"),
            Variant::Blocking => pool
                .spawn(move || offload::blocking(|| query(&path, rows, io)))
                .wait()
                .expect("a query"),
            Variant::Tokio => runtime
                .block_on(runtime.spawn_blocking(move || query(&path, rows, io)))
                .expect("a query"),
            Variant::Unblock => {
                futures::executor::block_on(blocking::unblock(move || query(&path, rows, io)))
            }
        };
        let took = started.elapsed();
        std::hint::black_box(sum);
        if counted {
            let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            histograms[index].record(micros.max(1)).expect("in bounds");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for feeder in feeders {
        feeder.join().expect("a feeder");
    }
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "{} requests of one SQLite query ({} rows, {} µs of I/O sleep) under CPU load \
         ({} ms jobs, {} threads), {} cores",
        config.requests,
        config.rows,
        config.io_us,
        config.cpu_ms,
        config.threads,
        num_cpus::get()
    );
    println!(
        "{:<24} {:>7} {:>9} {:>9} {:>9}",
        "variant", "n", "p50 ms", "p90 ms", "p99 ms"
    );
    let ms = |micros: u64| micros as f64 / 1000.0;
    for (variant, h) in VARIANTS.iter().zip(&histograms) {
        println!(
            "{:<24} {:>7} {:>9.2} {:>9.2} {:>9.2}",
            name(*variant),
            h.len(),
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.9)),
            ms(h.value_at_quantile(0.99))
        );
    }
    let p50 = |variant: Variant| {
        let index = VARIANTS
            .iter()
            .position(|v| *v == variant)
            .expect("a variant");
        histograms[index].value_at_quantile(0.5) as f64
    };
    println!(
        "p50 ratios: blocking() / unmarked = {:.2} (goal <= 1); \
         offload spawn_blocking / tokio spawn_blocking = {:.2} (goal <= 1.2)",
        p50(Variant::Blocking) / p50(Variant::Unmarked),
        p50(Variant::SpawnBlocking) / p50(Variant::Tokio)
    );
}
