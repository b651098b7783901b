//! The point of offload: CPU work awaited through Tasks leaves the event
//! loop free. A current-thread tokio runtime with a 1 ms ticker keeps
//! ticking while the pool is saturated with CPU jobs.
//!
//! No performance claim is made here: the bounds only tell "the loop kept
//! running" from "the loop was blocked by a job", with a wide margin for a
//! shared 2-core CI machine.

mod common;

use std::cell::RefCell;
use std::pin::pin;
use std::time::{Duration, Instant};

use common::{spin_work, with_timeout};
use futures::future::{self, Either};
use offload::Pool;

/// Iterations of `spin_work` that take about `target` on this thread.
fn calibrate(target: Duration) -> u64 {
    let mut iterations = 1u64 << 16;
    loop {
        let start = Instant::now();
        std::hint::black_box(spin_work(iterations));
        let elapsed = start.elapsed();
        if elapsed >= Duration::from_millis(10) {
            let scale = target.as_secs_f64() / elapsed.as_secs_f64();
            return ((iterations as f64 * scale) as u64).max(1);
        }
        iterations *= 2;
    }
}

struct Run {
    /// When the ticker ticked.
    ticks: Vec<Instant>,
    start: Instant,
    end: Instant,
}

impl Run {
    /// The longest stretch without a tick, run start and end included.
    fn max_gap(&self) -> Duration {
        let mut points = vec![self.start];
        points.extend(&self.ticks);
        points.push(self.end);
        points
            .windows(2)
            .map(|w| w[1].saturating_duration_since(w[0]))
            .max()
            .unwrap()
    }
}

/// Runs `jobs` CPU jobs of `iterations` each on `pool`, awaited from a
/// current-thread runtime that also runs a 1 ms ticker.
fn run_with_ticker(pool: &Pool, jobs: usize, iterations: u64) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let expected = spin_work(iterations);
    rt.block_on(async {
        let ticks = RefCell::new(Vec::with_capacity(4096));
        let ticker = async {
            let mut interval = tokio::time::interval(Duration::from_millis(1));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                ticks.borrow_mut().push(Instant::now());
            }
        };
        let start = Instant::now();
        let tasks: Vec<_> = (0..jobs)
            .map(|_| pool.spawn(move || spin_work(iterations)))
            .collect();
        let work = future::join_all(tasks);
        let results = match future::select(pin!(work), pin!(ticker)).await {
            Either::Left((results, _ticker)) => results,
            Either::Right(_) => unreachable!("the ticker never ends"),
        };
        let end = Instant::now();
        for r in results {
            assert_eq!(r.expect("CPU job"), expected);
        }
        Run {
            ticks: ticks.into_inner(),
            start,
            end,
        }
    })
}

#[test]
fn event_loop_keeps_ticking_while_the_pool_is_saturated() {
    with_timeout(120, || {
        let pool = Pool::new();
        let threads = pool.threads();
        let iterations = calibrate(Duration::from_millis(60));
        // One job alone on the pool.
        let start = Instant::now();
        pool.spawn(move || spin_work(iterations)).wait().unwrap();
        let one_job = start.elapsed();

        let run = run_with_ticker(&pool, 4 * threads, iterations);
        let total = run.end - run.start;
        let max_gap = run.max_gap();
        let summary = format!(
            "{threads} threads, one job {one_job:?}, run {total:?}, {} ticks, max gap {max_gap:?}",
            run.ticks.len()
        );
        eprintln!("{summary}");

        // The loop ran throughout: a loop blocked by the work would tick
        // (almost) never, and its worst gap would be at least one job.
        assert!(run.ticks.len() >= 10, "too few ticks: {summary}");
        // On average at least one tick per 25 ms (ideally one per ms).
        let min_ticks = (total.as_millis() / 25) as usize;
        assert!(run.ticks.len() >= min_ticks, "too few ticks: {summary}");
        let bound = (one_job * 3).max(Duration::from_millis(100));
        assert!(max_gap < bound, "the loop stalled: {summary}");
        assert!(max_gap < total, "no tick during the run: {summary}");
    });
}

#[test]
fn ticker_runs_while_a_task_is_pending_on_a_held_pool() {
    // Deterministic variant: the only worker is held by a gate, so the
    // awaited Task stays pending while the loop ticks; no timing involved.
    with_timeout(60, || {
        let pool = common::pool(1, "held");
        let gate = common::Gate::hold(&pool);
        let task = pool.spawn(|| 99u32);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let value = rt.block_on(async move {
            let mut gate = Some(gate);
            let mut task = pin!(task);
            let mut interval = tokio::time::interval(Duration::from_millis(1));
            let mut ticks = 0u32;
            loop {
                tokio::select! {
                    r = &mut task => break r.unwrap(),
                    _ = interval.tick() => {
                        ticks += 1;
                        // Release the worker only after the loop has ticked
                        // a few times with the Task pending.
                        if ticks == 5 {
                            drop(gate.take().unwrap().open());
                        }
                    }
                }
            }
        });
        assert_eq!(value, 99);
    });
}
