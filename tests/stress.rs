//! Randomised stress: under faults and load nothing is lost.
//!
//! Each round builds a pool of 1, 2 or 4 threads (in turn), bounded
//! (`max_queued` 1, 4 or 16) in three rounds of four, with blocking
//! detection in half the rounds (helpers then run jobs beside the
//! workers whenever a job blocks), and lets 8 driver
//! threads issue a random mix of: spawn, `try_spawn`, `reserve` (resolved by
//! `Reserve::wait`, `futures::executor::block_on` or `Reserve::wait_timeout`,
//! or `try_reserve`;
//! the permit used, or dropped unused, sometimes on another thread),
//! `.await` (`futures::executor::block_on`), a single poll, `Task::wait`,
//! `Task::wait_timeout` (zero or short), `Task::cancel` (the Task kept),
//! drop of a Task (cancel), `detach`, bursts of spawns dropped or detached
//! at once, `join` / `scope` / `install` from outside the pool, and
//! `shutdown` / `shutdown_now` (from a driver or from inside a job) at
//! random points; one spawn in ten (of a job that does not fork) is a
//! `spawn_blocking`. Every submission goes through a handle of a random
//! priority (`Pool::with_priority`). The jobs are
//! plain (some long, polling `is_cancelled` to stop early, by returning or
//! through `stop_if_cancelled`, some inside
//! `offload::blocking`), panicking, `join`ing (one kind with a panicking
//! half, some with a half inside `offload::blocking`),
//! `scope`d, or spawn further jobs of their own pool (by `spawn` or
//! `try_spawn`) and then wait on (with or without a timeout, maybe after a
//! `cancel`), drop or detach them. The round ends with `shutdown`,
//! `shutdown_now` or the drop of the last handle.
//!
//! A ledger entry per job then checks that:
//! - every job ran at most once, on one of the round's threads (a worker,
//!   or a spare thread: a stand-in or a blocking job's);
//! - a job ran unless its Task was dropped or cancelled, the pool was shut
//!   down now, or the spawn was refused (a shutdown had started when it
//!   returned); a `try_spawn` refused as full happened on a bounded pool,
//!   one refused as shut down (and a `reserve` that failed) after a
//!   shutdown started, and the refused job never ran;
//! - a job (or a `join` half or `scope` job it started) saw
//!   `is_cancelled()` only if its Task was cancelled or dropped, or the
//!   pool was shut down now; a job that called `stop_if_cancelled` then
//!   unwound there, produced nothing, and its Task resolved as cancelled;
//!   a `try_reserve` refused as full happened on a bounded pool, one
//!   refused as shut down after a shutdown started;
//! - every closure, output and panic payload was dropped exactly once;
//! - every Task resolved (`Ok`, or a `JoinError` that is a panic of the
//!   right job or a cancellation), and every Task still held is finished as
//!   soon as `shutdown`/`shutdown_now` returns;
//! - the pool's thread count never dropped while it ran: no
//!   `on_thread_stop` and no worker thread exit before a shutdown started,
//!   and exactly one start, one stop and one thread exit per worker;
//! - `Pool::metrics` agrees with the ledger (rounds that keep a handle to
//!   the end): its `spawned`, `completed`, `panicked`, `cancelled` and
//!   `refused` are the ledger's Tasks, returns, panics, jobs that never
//!   ran, and `try_spawn` refusals (plus the round's own: the jobs that
//!   shut the pool down and those of the slot check), and nothing is
//!   queued or running;
//! - on a bounded pool, no queue slot leaked or was given back twice: in a
//!   round without a shutdown before its end and without detection (whose
//!   helpers would run the jobs behind the gates), once every job has finished
//!   and every worker is held by a gate job, exactly `max_queued`
//!   `try_spawn`s are admitted and the next is refused as full; after a
//!   round's `shutdown` / `shutdown_now`, the count the pool's `Debug`
//!   output shows (through a `Reserve`'s) is zero.
//!
//! A watchdog (the test's own thread) fails the test with a dump of what is
//! still pending if nothing progresses for 20 s.
//!
//! The seed is printed at the start and in every failure message.
//! `OFFLOAD_STRESS_SEED=<seed>` (decimal or 0x-hex) replays the same random
//! choices (the thread interleavings still vary); `OFFLOAD_STRESS_SECS=<n>`
//! runs rounds for `n` seconds instead of the default 25.
//!
//! Synchronisation is by barriers, channels, condition variables and joins
//! only; the only timed waits are the watchdog's and the `wait_timeout`s
//! under test.

mod common;

use std::cell::RefCell;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::task::Context;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{panic_message, spin_work, Gate};
use offload::{JoinError, Pool, Priority, Task};

/// Threads issuing operations in each round.
const DRIVERS: usize = 8;
/// The pool sizes, one per round in turn.
const POOL_SIZES: [usize; 3] = [1, 2, 4];
/// How long rounds are started for, by default.
const DEFAULT_SECS: u64 = 25;
/// The watchdog fails the test after this long without progress.
const STALL: Duration = Duration::from_secs(20);
/// Operations per driver per round.
const OPS: usize = 250;
/// Tasks a driver holds at most.
const MAX_HELD: usize = 24;
/// Jobs spawned by jobs spawned by a driver's job, at most.
const MAX_DEPTH: u32 = 2;
/// The `max_queued` of the bounded rounds.
const BOUNDS: [usize; 3] = [1, 4, 16];
/// The share of a driver's operations that are flow control (`try_spawn`,
/// `reserve`, `cancel`, `wait_timeout`), in percent.
const FLOW_PERCENT: usize = 25;
/// Whether jobs also reserve slots of their own pool (`Reserve::wait` on a
/// worker, possibly nested on one worker: the wait above takes over a slot
/// granted to the one it buries; `tests/flow.rs`,
/// `reserve_waits_nested_on_a_worker_do_not_deadlock`).
const RESERVE_IN_JOBS: bool = true;

const SC: Ordering = Ordering::SeqCst;

// ---- a small PRNG ------------------------------------------------------

/// SplitMix64: tiny, and good enough to pick operations.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

// ---- the ledger --------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Panics,
    Spawner,
    Joiner,
    JoinPanics,
    Scoper,
}

impl Kind {
    fn panics(self) -> bool {
        matches!(self, Kind::Panics | Kind::JoinPanics)
    }
}

/// What became of a job's Task.
const HELD: u8 = 0;
const WAITING: u8 = 1;
const GOT_OK: u8 = 2;
const GOT_PANIC: u8 = 3;
const GOT_CANCELLED: u8 = 4;
const DROPPED: u8 = 5;
const DETACHED: u8 = 6;
/// `try_spawn` refused it; its closure came back and was dropped unrun.
const REFUSED: u8 = 7;
const FATES: [&str; 8] = [
    "held",
    "being waited on",
    "Ok",
    "panicked",
    "cancelled",
    "dropped",
    "detached",
    "refused",
];

/// One job's ledger entry.
#[derive(Debug)]
struct Rec {
    id: u64,
    kind: Kind,
    depth: u32,
    runs: AtomicU32,
    closure_drops: AtomicU32,
    outputs: AtomicU32,
    output_drops: AtomicU32,
    payloads: AtomicU32,
    payload_drops: AtomicU32,
    fate: AtomicU8,
    /// A shutdown had started when the spawn returned: it may be refused.
    shutdown_seen_at_spawn: AtomicBool,
    /// `Task::cancel` was called (before the call).
    cancel_requested: AtomicBool,
    /// The job (or a part it started) saw `offload::is_cancelled()`.
    saw_cancel: AtomicBool,
    /// The job called `offload::stop_if_cancelled()` after it saw its
    /// cancellation: it must have unwound there.
    stopped: AtomicBool,
}

impl Rec {
    /// Records what `offload::is_cancelled` says now, on the job's behalf;
    /// returns it.
    fn look_for_cancel(&self) -> bool {
        let cancelled = offload::is_cancelled();
        if cancelled {
            self.saw_cancel.store(true, SC);
        }
        cancelled
    }
}

/// Picks ledger entries for the watchdog's dump.
type RecFilter = fn(&Rec) -> bool;

/// The value every job returns; counts its drop.
struct Out {
    rec: Arc<Rec>,
    value: u64,
}

impl Drop for Out {
    fn drop(&mut self) {
        self.rec.output_drops.fetch_add(1, SC);
    }
}

/// The panic payload of the panicking kinds; counts its drop.
struct Payload(Arc<Rec>);

impl Drop for Payload {
    fn drop(&mut self) {
        self.0.payload_drops.fetch_add(1, SC);
    }
}

/// Captured by every job's closure; counts the closure's drop.
struct ClosureGuard {
    rec: Arc<Rec>,
    round: Arc<Round>,
}

impl Drop for ClosureGuard {
    fn drop(&mut self) {
        self.rec.closure_drops.fetch_add(1, SC);
        let mut live = self.round.live_closures.lock().unwrap();
        *live -= 1;
        if *live == 0 {
            self.round.no_live_closures.notify_all();
        }
    }
}

fn expected_value(id: u64) -> u64 {
    id.wrapping_mul(0x0100_0000_01B3) ^ 0x5555
}

/// What a thread of the round is doing, for the watchdog's dump.
#[derive(Debug, Default)]
struct Status {
    op: AtomicUsize,
    id: AtomicU64,
}

const STATUS_NAMES: [&str; 23] = [
    "starting",
    "spawn",
    "await",
    "poll once",
    "wait",
    "drop",
    "detach",
    "join from outside",
    "scope from outside",
    "install from outside",
    "burst",
    "shutdown",
    "shutdown_now",
    "shutdown from a job",
    "done",
    "closer: ending the round",
    "closer: waiting for thread exits",
    "try_spawn",
    "reserve",
    "cancel",
    "wait_timeout",
    "closer: waiting for every job to finish",
    "closer: checking the slots",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Shutdown,
    ShutdownNow,
    DropLastHandle,
}

/// Everything one round shares.
#[derive(Debug)]
struct Round {
    index: usize,
    base_seed: u64,
    seed: u64,
    threads: usize,
    /// `Builder::max_queued`, or `None` for an unbounded pool.
    max_queued: Option<usize>,
    /// `Builder::detect_blocking`.
    detect: bool,
    end: End,
    name: String,
    recs: Mutex<Vec<Arc<Rec>>>,
    /// Job closures not dropped yet (queued, running, or not yet submitted).
    live_closures: Mutex<usize>,
    no_live_closures: Condvar,
    /// `check_slots_free` ran.
    slots_checked: AtomicBool,
    next_id: AtomicU64,
    shutdown_started: AtomicBool,
    shutdown_now_started: AtomicBool,
    progress: Arc<AtomicU64>,
    failures: Mutex<Vec<String>>,
    /// One per driver, then the closer's.
    status: Vec<Status>,
    starts: Vec<AtomicU32>,
    stops: Vec<AtomicU32>,
    /// Where spare threads report their exit (see `note_spare_thread`),
    /// and how many registered.
    spare_exits: Mutex<Option<mpsc::Sender<usize>>>,
    spares_seen: AtomicUsize,
    /// The round's own Tasks, which have no ledger entry (the jobs that
    /// shut the pool down, the slot check's), by `Pool::metrics` figure.
    extra: Extra,
}

/// Tasks (and refusals) outside the ledger, for the metrics check.
#[derive(Debug, Default)]
struct Extra {
    spawned: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    refused: AtomicU64,
}

impl Extra {
    /// One more Task outside the ledger, which resolved to `result`.
    fn resolved<T>(&self, result: &Result<T, JoinError>) {
        self.spawned.fetch_add(1, SC);
        match result {
            Ok(_) => self.completed.fetch_add(1, SC),
            Err(_) => self.cancelled.fetch_add(1, SC),
        };
    }
}

impl Round {
    fn context(&self) -> String {
        format!(
            "OFFLOAD_STRESS_SEED={} (round {}, round seed {:#x}, pool of {}, max_queued {:?}, \
             detect_blocking {}, ends with {:?})",
            self.base_seed,
            self.index,
            self.seed,
            self.threads,
            self.max_queued,
            self.detect,
            self.end
        )
    }

    fn fail(&self, message: String) {
        self.failures.lock().unwrap().push(message);
    }

    fn tick(&self) {
        self.progress.fetch_add(1, SC);
    }

    fn set_status(&self, who: usize, op: usize, id: u64) {
        self.status[who].op.store(op, SC);
        self.status[who].id.store(id, SC);
    }

    fn new_rec(&self, kind: Kind, depth: u32) -> Arc<Rec> {
        let rec = Arc::new(Rec {
            id: self.next_id.fetch_add(1, SC),
            kind,
            depth,
            runs: AtomicU32::new(0),
            closure_drops: AtomicU32::new(0),
            outputs: AtomicU32::new(0),
            output_drops: AtomicU32::new(0),
            payloads: AtomicU32::new(0),
            payload_drops: AtomicU32::new(0),
            fate: AtomicU8::new(HELD),
            shutdown_seen_at_spawn: AtomicBool::new(false),
            cancel_requested: AtomicBool::new(false),
            saw_cancel: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        });
        self.recs.lock().unwrap().push(Arc::clone(&rec));
        *self.live_closures.lock().unwrap() += 1;
        rec
    }

    /// What is still pending: for the watchdog.
    fn dump(&self) -> String {
        let mut out = format!("{}\n", self.context());
        for (who, status) in self.status.iter().enumerate() {
            let name = if who < DRIVERS {
                format!("driver {who}")
            } else {
                "closer".to_owned()
            };
            out += &format!(
                "  {name}: {} (job #{})\n",
                STATUS_NAMES[status.op.load(SC)],
                status.id.load(SC)
            );
        }
        out += &format!(
            "  shutdown started: {}, shutdown_now started: {}\n  starts {:?}, stops {:?}\n",
            self.shutdown_started.load(SC),
            self.shutdown_now_started.load(SC),
            self.starts.iter().map(|s| s.load(SC)).collect::<Vec<_>>(),
            self.stops.iter().map(|s| s.load(SC)).collect::<Vec<_>>(),
        );
        let recs = self.recs.lock().unwrap();
        let mut by_fate = [0usize; FATES.len()];
        for rec in recs.iter() {
            by_fate[usize::from(rec.fate.load(SC))] += 1;
        }
        out += &format!("  {} jobs by fate:", recs.len());
        for (fate, count) in FATES.iter().zip(by_fate) {
            out += &format!(" {fate} {count},");
        }
        out += "\n";
        let lists: [(&str, RecFilter); 3] = [
            ("started and not finished", |rec| {
                rec.runs.load(SC) == 1 && rec.outputs.load(SC) + rec.payloads.load(SC) == 0
            }),
            ("being waited on", |rec| rec.fate.load(SC) == WAITING),
            ("held and not started", |rec| {
                rec.fate.load(SC) == HELD && rec.runs.load(SC) == 0
            }),
        ];
        for (title, keep) in lists {
            out += &format!("  jobs {title} (first 10):\n");
            for rec in recs.iter().filter(|rec| keep(rec)).take(10) {
                out += &format!(
                    "    #{} {:?} depth {}: {}, runs {}\n",
                    rec.id,
                    rec.kind,
                    rec.depth,
                    FATES[usize::from(rec.fate.load(SC))],
                    rec.runs.load(SC),
                );
            }
        }
        out
    }

    /// The end-of-round checks on every ledger entry.
    fn check_ledger(&self) {
        let now = self.shutdown_now_started.load(SC);
        let recs = self.recs.lock().unwrap();
        for rec in recs.iter() {
            let id = rec.id;
            let runs = rec.runs.load(SC);
            let fate = rec.fate.load(SC);
            let refused = rec.shutdown_seen_at_spawn.load(SC);
            let cancel = rec.cancel_requested.load(SC);
            let (outputs, output_drops) = (rec.outputs.load(SC), rec.output_drops.load(SC));
            let (payloads, payload_drops) = (rec.payloads.load(SC), rec.payload_drops.load(SC));
            let mut problems = Vec::new();
            if runs > 1 {
                problems.push(format!("ran {runs} times"));
            }
            let closure_drops = rec.closure_drops.load(SC);
            if closure_drops != 1 {
                problems.push(format!("closure dropped {closure_drops} times"));
            }
            if outputs != output_drops {
                problems.push(format!("{outputs} outputs, {output_drops} output drops"));
            }
            if payloads != payload_drops {
                problems.push(format!(
                    "{payloads} payloads, {payload_drops} payload drops"
                ));
            }
            let stopped = rec.stopped.load(SC);
            if runs == 1 && (outputs + payloads) != 1 && !(stopped && outputs + payloads == 0) {
                problems.push(format!(
                    "ran, but produced {outputs} outputs and {payloads} payloads"
                ));
            }
            if rec.saw_cancel.load(SC) && !(cancel || fate == DROPPED || now) {
                problems.push(
                    "saw is_cancelled(), but its Task was neither cancelled nor dropped, \
                     and no shutdown_now"
                        .to_owned(),
                );
            }
            match fate {
                HELD | WAITING => problems.push("its Task never resolved".to_owned()),
                REFUSED if runs != 0 || outputs != 0 => {
                    problems.push(format!("refused by try_spawn, but ran {runs} times"));
                }
                GOT_OK | GOT_PANIC if runs != 1 || stopped => {
                    problems.push(format!(
                        "resolved {} with {runs} runs (stopped: {stopped})",
                        FATES[usize::from(fate)]
                    ));
                }
                GOT_CANCELLED if runs != 0 && !stopped => {
                    problems.push(format!("cancelled with {runs} runs, but never stopped"));
                }
                GOT_CANCELLED if !(now || refused || cancel) => {
                    problems.push(format!(
                        "cancelled with {runs} runs; shutdown_now {now}, refused {refused}, \
                         cancel() {cancel}"
                    ));
                }
                DETACHED if runs == 0 && !(now || refused || cancel) => problems.push(
                    "detached and never ran, with no shutdown_now, not refused, not cancelled"
                        .to_owned(),
                ),
                _ => {}
            }
            if !problems.is_empty() {
                self.fail(format!(
                    "job #{id} ({:?}, depth {}, {}): {}",
                    rec.kind,
                    rec.depth,
                    FATES[usize::from(fate)],
                    problems.join("; ")
                ));
            }
        }
        for (i, (starts, stops)) in self.starts.iter().zip(&self.stops).enumerate() {
            let (starts, stops) = (starts.load(SC), stops.load(SC));
            if (starts, stops) != (1, 1) {
                self.fail(format!(
                    "worker {i}: on_thread_start ran {starts} times, on_thread_stop {stops}"
                ));
            }
        }
    }
}

/// Resolves `rec`'s Task result in the ledger and checks it.
fn record(round: &Round, rec: &Rec, result: Result<Out, JoinError>) {
    let id = rec.id;
    let fate = match result {
        Ok(out) => {
            if out.rec.id != id || out.value != expected_value(id) {
                round.fail(format!(
                    "job #{id}: Task gave the output of job #{} ({})",
                    out.rec.id, out.value
                ));
            }
            if rec.kind.panics() {
                round.fail(format!("job #{id} ({:?}) returned Ok", rec.kind));
            }
            GOT_OK
        }
        Err(err) if err.is_panic() => {
            match err.into_panic().downcast::<Payload>() {
                Ok(payload) if payload.0.id == id && rec.kind.panics() => {}
                Ok(payload) => round.fail(format!(
                    "job #{id} ({:?}): panicked with the payload of job #{}",
                    rec.kind, payload.0.id
                )),
                Err(other) => round.fail(format!(
                    "job #{id} ({:?}): unexpected panic: {}",
                    rec.kind,
                    panic_message(&*other)
                )),
            }
            GOT_PANIC
        }
        Err(err) => {
            if !err.is_cancelled() {
                round.fail(format!("job #{id}: a JoinError neither panic nor cancel"));
            }
            GOT_CANCELLED
        }
    };
    rec.fate.store(fate, SC);
}

// ---- jobs --------------------------------------------------------------

/// A job of a random kind, not submitted yet: its ledger entry and closure.
fn new_job(
    round: &Arc<Round>,
    pool: &Pool,
    rng: &mut Rng,
    depth: u32,
) -> (Arc<Rec>, impl FnOnce() -> Out + Send + 'static) {
    let kind = loop {
        let kind = match rng.below(100) {
            0..=39 => Kind::Plain,
            40..=51 => Kind::Panics,
            52..=69 => Kind::Spawner,
            70..=81 => Kind::Joiner,
            82..=87 => Kind::JoinPanics,
            _ => Kind::Scoper,
        };
        if kind != Kind::Spawner || depth < MAX_DEPTH {
            break kind;
        }
    };
    let rec = round.new_rec(kind, depth);
    let guard = ClosureGuard {
        rec: Arc::clone(&rec),
        round: Arc::clone(round),
    };
    let job_pool = (kind == Kind::Spawner).then(|| pool.clone());
    let seed = rng.next();
    let job = move || {
        let guard = guard;
        run_job(&guard.round, &guard.rec, job_pool.as_ref(), seed)
    };
    (rec, job)
}

/// Notes whether a shutdown had started when `task`'s submission returned.
fn submitted(round: &Round, rec: Arc<Rec>, task: Task<Out>) -> (Arc<Rec>, Task<Out>) {
    if round.shutdown_started.load(SC) {
        rec.shutdown_seen_at_spawn.store(true, SC);
    }
    (rec, task)
}

/// A handle to `pool` with a random priority: every submission of a
/// driver or a job goes through one, so that the lanes, the starvation
/// bound and the inheritance of priorities by join halves, scope jobs and
/// spawns on a worker are all exercised.
fn with_random_priority(pool: &Pool, rng: &mut Rng) -> Pool {
    pool.with_priority([Priority::High, Priority::Normal, Priority::Low][rng.below(3)])
}

/// Spawns a job of a random kind and returns its ledger entry and Task.
/// One in ten is a `spawn_blocking` job, which runs on a spare thread,
/// unless it forks and joins: off the workers, `join` and `scope` go to
/// the pool from outside, which panics once a shutdown has started.
fn spawn_job(round: &Arc<Round>, pool: &Pool, rng: &mut Rng, depth: u32) -> (Arc<Rec>, Task<Out>) {
    let (rec, job) = new_job(round, pool, rng, depth);
    let forks = matches!(rec.kind, Kind::Joiner | Kind::JoinPanics | Kind::Scoper);
    let pool = &with_random_priority(pool, rng);
    let task = if rng.chance(10) && !forks {
        pool.spawn_blocking(job)
    } else {
        pool.spawn(job)
    };
    submitted(round, rec, task)
}

/// `try_spawn`s a job of a random kind; `None` if it was refused (then its
/// closure, handed back, is dropped unrun).
fn try_spawn_job(
    round: &Arc<Round>,
    pool: &Pool,
    rng: &mut Rng,
    depth: u32,
) -> Option<(Arc<Rec>, Task<Out>)> {
    let (rec, job) = new_job(round, pool, rng, depth);
    match with_random_priority(pool, rng).try_spawn(job) {
        Ok(task) => Some(submitted(round, rec, task)),
        Err(err) => {
            if err.is_full() && round.max_queued.is_none() {
                round.fail(format!("job #{}: an unbounded pool was full", rec.id));
            }
            if err.is_shutdown() && !round.shutdown_started.load(SC) {
                round.fail(format!(
                    "job #{}: try_spawn refused as shut down before any shutdown",
                    rec.id
                ));
            }
            rec.fate.store(REFUSED, SC);
            drop(err.into_inner());
            None
        }
    }
}

/// Reserves a slot (blocking, on an executor, or with a timeout) and uses
/// it for a job of a random kind, or drops it unused; the job's entry and
/// Task if one was spawned. `on_worker`: called from a job, which must not
/// park its worker in an executor's `block_on`.
fn reserve_job(
    round: &Arc<Round>,
    pool: &Pool,
    rng: &mut Rng,
    depth: u32,
    on_worker: bool,
) -> Option<(Arc<Rec>, Task<Out>)> {
    let handle = with_random_priority(pool, rng);
    let outcome = match rng.below(4) {
        3 => match handle.try_reserve() {
            Ok(permit) => Some(Ok(permit)),
            Err(err) => {
                if err.is_full() && round.max_queued.is_none() {
                    round.fail("try_reserve: an unbounded pool was full".to_owned());
                }
                if err.is_shutdown() && !round.shutdown_started.load(SC) {
                    round.fail("try_reserve refused as shut down before any shutdown".to_owned());
                }
                // Counted by `Metrics::refused`, as `try_spawn`'s are.
                round.extra.refused.fetch_add(1, SC);
                return None;
            }
        },
        0 => Some(handle.reserve().wait()),
        1 if !on_worker => Some(futures::executor::block_on(handle.reserve())),
        1 => Some(handle.reserve().wait()),
        _ => {
            let timeout = Duration::from_micros(rng.below(500) as u64);
            handle.reserve().wait_timeout(timeout)
        }
    };
    match outcome {
        None => None,
        Some(Err(err)) => {
            if !round.shutdown_started.load(SC) {
                round.fail(format!("reserve failed before any shutdown: {err}"));
            }
            None
        }
        Some(Ok(permit)) if rng.chance(10) => {
            // Unused: its slot is freed where it is dropped.
            if on_worker || rng.chance(50) {
                drop(permit);
            } else {
                thread::spawn(move || drop(permit))
                    .join()
                    .expect("drop a permit on another thread");
            }
            None
        }
        Some(Ok(permit)) => {
            let (rec, job) = new_job(round, pool, rng, depth);
            let task = permit.spawn(job);
            Some(submitted(round, rec, task))
        }
    }
}

/// The body of every job.
fn run_job(round: &Arc<Round>, rec: &Arc<Rec>, pool: Option<&Pool>, seed: u64) -> Out {
    note_spare_thread(round);
    let id = rec.id;
    if rec.runs.fetch_add(1, SC) != 0 {
        round.fail(format!("job #{id} started twice"));
    }
    let on_worker = thread::current()
        .name()
        .is_some_and(|name| name.starts_with(&round.name));
    if !on_worker {
        round.fail(format!(
            "job #{id} ran on {:?}, not a worker of the round",
            thread::current().name()
        ));
    }
    let mut rng = Rng(seed);
    rec.look_for_cancel();
    match rec.kind {
        Kind::Plain if rng.chance(10) => {
            // A long one, which stops early once cancelled: by returning,
            // or (one in two) by `stop_if_cancelled`, which unwinds.
            let unwind = rng.chance(50);
            for _ in 0..8 {
                if rec.look_for_cancel() {
                    if unwind {
                        rec.stopped.store(true, SC);
                        offload::stop_if_cancelled();
                        round.fail(format!(
                            "job #{id}: stop_if_cancelled returned after is_cancelled()"
                        ));
                    }
                    break;
                }
                std::hint::black_box(spin_work(2_000));
            }
        }
        Kind::Plain if rng.chance(15) => {
            // A "blocking call": the worker lends its place meanwhile.
            std::hint::black_box(offload::blocking(|| {
                thread::yield_now();
                rec.look_for_cancel();
                spin_work(rng.below(300) as u64)
            }));
        }
        Kind::Plain => {
            std::hint::black_box(spin_work(rng.below(300) as u64));
        }
        Kind::Panics => {
            rec.payloads.fetch_add(1, SC);
            panic::panic_any(Payload(Arc::clone(rec)));
        }
        Kind::Joiner => {
            let block = rng.chance(25);
            let (a, (b, c)) = offload::join(
                || {
                    rec.look_for_cancel();
                    if block {
                        // Lends the place with the other half waiting.
                        offload::blocking(|| spin_work(64))
                    } else {
                        spin_work(64)
                    }
                },
                || {
                    offload::join(
                        || {
                            rec.look_for_cancel();
                            3
                        },
                        || {
                            rec.look_for_cancel();
                            4
                        },
                    )
                },
            );
            if (a, b, c) != (spin_work(64), 3, 4) {
                round.fail(format!("job #{id}: join returned {:?}", (a, b, c)));
            }
        }
        Kind::JoinPanics => {
            let _ = offload::join(
                || spin_work(32),
                || -> u64 {
                    rec.payloads.fetch_add(1, SC);
                    panic::panic_any(Payload(Arc::clone(rec)))
                },
            );
            round.fail(format!("job #{id}: join returned though a half panicked"));
        }
        Kind::Scoper => {
            let mut parts = [0u64; 5];
            offload::scope(|s| {
                for (i, part) in parts.iter_mut().enumerate() {
                    s.spawn(move |_| {
                        rec.look_for_cancel();
                        *part = i as u64 + 1;
                    });
                }
            });
            if parts != [1, 2, 3, 4, 5] {
                round.fail(format!("job #{id}: scope left {parts:?}"));
            }
        }
        Kind::Spawner => {
            let pool = pool.expect("a spawner job carries its pool");
            for _ in 0..1 + rng.below(3) {
                let depth = rec.depth + 1;
                let child = match rng.below(if RESERVE_IN_JOBS { 4 } else { 3 }) {
                    0 | 1 => Some(spawn_job(round, pool, &mut rng, depth)),
                    2 => try_spawn_job(round, pool, &mut rng, depth),
                    _ => reserve_job(round, pool, &mut rng, depth, true),
                };
                let Some((child, mut task)) = child else {
                    continue;
                };
                // Waiting on a Task of the worker's own pool: the worker runs
                // other jobs meanwhile, so this cannot deadlock.
                match rng.below(4) {
                    0 => {
                        child.fate.store(WAITING, SC);
                        record(round, &child, task.wait());
                    }
                    1 => {
                        child.fate.store(DROPPED, SC);
                        drop(task);
                    }
                    2 => {
                        child.fate.store(DETACHED, SC);
                        task.detach();
                    }
                    _ => {
                        if rng.chance(30) {
                            child.cancel_requested.store(true, SC);
                            task.cancel();
                        }
                        child.fate.store(WAITING, SC);
                        let timeout = Duration::from_micros(rng.below(200) as u64);
                        match task.wait_timeout(timeout) {
                            Some(result) => record(round, &child, result),
                            None => record(round, &child, task.wait()),
                        }
                    }
                }
            }
        }
    }
    rec.look_for_cancel();
    rec.outputs.fetch_add(1, SC);
    round.tick();
    Out {
        rec: Arc::clone(rec),
        value: expected_value(id),
    }
}

// ---- drivers -----------------------------------------------------------

/// A shutdown a driver performs at a given operation.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Graceful,
    Now,
    FromJob { now: bool },
}

/// Checks the outcome of a `join`/`scope`/`install` called from outside:
/// it returned, or panicked because the pool had been shut down.
fn check_outside(round: &Round, what: &str, result: std::thread::Result<bool>) {
    match result {
        Ok(true) => {}
        Ok(false) => round.fail(format!("{what} from outside returned a wrong result")),
        Err(payload) => {
            let message = panic_message(&*payload);
            if !message.contains("shut down") || !round.shutdown_started.load(SC) {
                round.fail(format!(
                    "{what} from outside panicked: {message:?} (shutdown started: {})",
                    round.shutdown_started.load(SC)
                ));
            }
        }
    }
}

/// Takes one of `held` at random.
fn pick(rng: &mut Rng, held: &mut Vec<(Arc<Rec>, Task<Out>)>) -> (Arc<Rec>, Task<Out>) {
    let i = rng.below(held.len());
    held.swap_remove(i)
}

/// A flow-control operation of a driver: `try_spawn`, `reserve`, `cancel`
/// or `wait_timeout`. Returns `false` if the one drawn does not apply now
/// (no Task held, or too many).
fn flow_op(
    round: &Arc<Round>,
    pool: &Pool,
    who: usize,
    rng: &mut Rng,
    held: &mut Vec<(Arc<Rec>, Task<Out>)>,
) -> bool {
    match rng.below(4) {
        0 if held.len() < MAX_HELD => {
            round.set_status(who, 17, 0);
            held.extend(try_spawn_job(round, pool, rng, 0));
        }
        1 if held.len() < MAX_HELD => {
            round.set_status(who, 18, 0);
            held.extend(reserve_job(round, pool, rng, 0, false));
        }
        2 if !held.is_empty() => {
            // Cancelled, and kept: resolved later like any other.
            let (rec, task) = pick(rng, held);
            round.set_status(who, 19, rec.id);
            rec.cancel_requested.store(true, SC);
            task.cancel();
            held.push((rec, task));
        }
        3 if !held.is_empty() => {
            let (rec, mut task) = pick(rng, held);
            round.set_status(who, 20, rec.id);
            let timeout = match rng.below(3) {
                0 => Duration::ZERO,
                1 => Duration::from_micros(50),
                _ => Duration::from_millis(1),
            };
            rec.fate.store(WAITING, SC);
            match task.wait_timeout(timeout) {
                Some(result) => record(round, &rec, result),
                None => {
                    rec.fate.store(HELD, SC);
                    held.push((rec, task));
                }
            }
        }
        _ => return false,
    }
    true
}

/// One driver thread's round: random operations; returns the Tasks it
/// still holds.
fn drive(
    round: &Arc<Round>,
    pool: Pool,
    who: usize,
    mut rng: Rng,
    stops: &[(usize, usize, Stop)],
) -> Vec<(Arc<Rec>, Task<Out>)> {
    let mut held: Vec<(Arc<Rec>, Task<Out>)> = Vec::new();
    for op in 0..OPS {
        round.tick();
        for &(_, _, stop) in stops.iter().filter(|(d, o, _)| (*d, *o) == (who, op)) {
            shut_down(round, &pool, who, stop, &held);
        }
        if rng.chance(FLOW_PERCENT) && flow_op(round, &pool, who, &mut rng, &mut held) {
            continue;
        }
        let mut choice = rng.below(100);
        if held.is_empty() && choice < 84 {
            choice = 0;
        }
        match choice {
            0..=34 if held.len() < MAX_HELD => {
                let (rec, task) = spawn_job(round, &pool, &mut rng, 0);
                round.set_status(who, 1, rec.id);
                held.push((rec, task));
            }
            0..=49 if !held.is_empty() => {
                let (rec, task) = pick(&mut rng, &mut held);
                round.set_status(who, 2, rec.id);
                rec.fate.store(WAITING, SC);
                record(round, &rec, futures::executor::block_on(task));
            }
            50..=55 if !held.is_empty() => {
                let (rec, mut task) = pick(&mut rng, &mut held);
                round.set_status(who, 3, rec.id);
                let waker = futures::task::noop_waker();
                match Pin::new(&mut task).poll(&mut Context::from_waker(&waker)) {
                    std::task::Poll::Ready(result) => {
                        // Ready: the Task must not be polled again; keep
                        // the result, drop the spent Task.
                        record(round, &rec, result);
                        drop(task);
                    }
                    std::task::Poll::Pending => held.push((rec, task)),
                }
            }
            56..=65 if !held.is_empty() => {
                let (rec, task) = pick(&mut rng, &mut held);
                round.set_status(who, 4, rec.id);
                rec.fate.store(WAITING, SC);
                record(round, &rec, task.wait());
            }
            66..=75 if !held.is_empty() => {
                let (rec, task) = pick(&mut rng, &mut held);
                round.set_status(who, 5, rec.id);
                rec.fate.store(DROPPED, SC);
                drop(task);
            }
            76..=83 if !held.is_empty() => {
                let (rec, task) = pick(&mut rng, &mut held);
                round.set_status(who, 6, rec.id);
                rec.fate.store(DETACHED, SC);
                task.detach();
            }
            84..=88 => {
                round.set_status(who, 7, 0);
                let result = panic::catch_unwind(AssertUnwindSafe(|| {
                    let (a, (b, c)) = pool.join(|| spin_work(40), || offload::join(|| 5u8, || 6u8));
                    (a, b, c) == (spin_work(40), 5, 6)
                }));
                check_outside(round, "join", result);
            }
            89..=92 => {
                round.set_status(who, 8, 0);
                let result = panic::catch_unwind(AssertUnwindSafe(|| {
                    let mut parts = [0u8; 4];
                    pool.scope(|s| {
                        for (i, part) in parts.iter_mut().enumerate() {
                            s.spawn(move |_| *part = i as u8 + 1);
                        }
                    });
                    parts == [1, 2, 3, 4]
                }));
                check_outside(round, "scope", result);
            }
            93..=95 => {
                round.set_status(who, 9, 0);
                let result = panic::catch_unwind(AssertUnwindSafe(|| {
                    pool.install(|| {
                        let (a, b) = offload::join(|| 7u8, || 8u8);
                        let mut c = 0u8;
                        offload::scope(|s| s.spawn(|_| c = 9));
                        (a, b, c) == (7, 8, 9)
                    })
                }));
                check_outside(round, "install", result);
            }
            _ => {
                // A burst, dropped or detached at once while still queued.
                round.set_status(who, 10, 0);
                let detach = rng.chance(50);
                for _ in 0..12 {
                    let (rec, task) = spawn_job(round, &pool, &mut rng, 0);
                    if detach {
                        rec.fate.store(DETACHED, SC);
                        task.detach();
                    } else {
                        rec.fate.store(DROPPED, SC);
                        drop(task);
                    }
                }
            }
        }
    }
    round.set_status(who, 14, 0);
    held
}

/// A driver's shutdown; after one that waits, every Task it holds must have
/// resolved.
fn shut_down(
    round: &Arc<Round>,
    pool: &Pool,
    who: usize,
    stop: Stop,
    held: &[(Arc<Rec>, Task<Out>)],
) {
    round.shutdown_started.store(true, SC);
    let waited = match stop {
        Stop::Graceful => {
            round.set_status(who, 11, 0);
            pool.shutdown();
            true
        }
        Stop::Now => {
            round.set_status(who, 12, 0);
            round.shutdown_now_started.store(true, SC);
            pool.shutdown_now();
            true
        }
        Stop::FromJob { now } => {
            round.set_status(who, 13, 0);
            if now {
                round.shutdown_now_started.store(true, SC);
            }
            let p = pool.clone();
            let task = pool.spawn(move || {
                if now {
                    p.shutdown_now();
                } else {
                    p.shutdown();
                }
            });
            // Only starts the shutdown (it runs on a worker of the pool) and
            // returns; cancelled if another shutdown came first.
            let result = task.wait();
            round.extra.resolved(&result);
            if let Err(err) = result {
                if !err.is_cancelled() {
                    round.fail(format!("shutdown from a job: {err}"));
                }
            }
            false
        }
    };
    if waited {
        let unfinished: Vec<u64> = held
            .iter()
            .filter(|(_, task)| !task.is_finished())
            .map(|(rec, _)| rec.id)
            .collect();
        if !unfinished.is_empty() {
            round.fail(format!(
                "driver {who}: after {stop:?} returned, Tasks still unfinished: {unfinished:?}"
            ));
        }
    }
}

// ---- workers' lives ----------------------------------------------------

/// Set on each worker by `on_thread_start`; its drop at thread exit reports
/// the exit.
struct ExitGuard {
    round: Arc<Round>,
    index: usize,
    exits: mpsc::Sender<usize>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        // A spare thread may retire at any time (its keep-alive).
        if self.index < self.round.threads && !self.round.shutdown_started.load(SC) {
            self.round.fail(format!(
                "worker {} exited while the pool was running",
                self.index
            ));
        }
        let _ = self.exits.send(self.index);
    }
}

thread_local! {
    static EXIT_GUARD: RefCell<Option<ExitGuard>> = const { RefCell::new(None) };
}

/// On a spare thread of the round (named from index `threads` on), which
/// runs no `on_thread_start` hook: registers its exit once, so that the
/// closer can wait for it (after the last handle is dropped, nothing else
/// waits for the spare threads).
fn note_spare_thread(round: &Arc<Round>) {
    let index = thread::current()
        .name()
        .and_then(|name| name.strip_prefix(&round.name)?.parse::<usize>().ok());
    let Some(index) = index.filter(|&index| index >= round.threads) else {
        return;
    };
    EXIT_GUARD.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            let exits = round.spare_exits.lock().unwrap().clone();
            let exits = exits.expect("the round's spare exit channel");
            round.spares_seen.fetch_add(1, SC);
            *slot = Some(ExitGuard {
                round: Arc::clone(round),
                index,
                exits,
            });
        }
    });
}

fn build_pool(round: &Arc<Round>, exits: mpsc::Sender<usize>) -> Pool {
    let exits = Mutex::new(exits);
    let (on_start, on_stop) = (Arc::clone(round), Arc::clone(round));
    let name = round.name.clone();
    let mut builder = Pool::builder()
        .threads(round.threads)
        .detect_blocking(round.detect);
    if let Some(max) = round.max_queued {
        builder = builder.max_queued(max);
    }
    builder
        .thread_name(move |i| format!("{name}{i}"))
        .on_thread_start(move |i| {
            // Spare threads run the hooks too (from index `threads` on);
            // their lives are tracked by `note_spare_thread`.
            if i >= on_start.threads {
                return;
            }
            on_start.starts[i].fetch_add(1, SC);
            let guard = ExitGuard {
                round: Arc::clone(&on_start),
                index: i,
                exits: exits.lock().unwrap().clone(),
            };
            EXIT_GUARD.with(|slot| *slot.borrow_mut() = Some(guard));
        })
        .on_thread_stop(move |i| {
            if i >= on_stop.threads {
                return;
            }
            on_stop.stops[i].fetch_add(1, SC);
            if !on_stop.shutdown_started.load(SC) {
                on_stop.fail(format!(
                    "on_thread_stop({i}) ran while the pool was running"
                ));
            }
        })
        .build()
        .expect("build the pool")
}

// ---- one round ---------------------------------------------------------

/// Runs the drivers, ends the round and resolves every Task still held.
fn run_round(round: &Arc<Round>, mut rng: Rng) {
    let (exits_tx, exits_rx) = mpsc::channel();
    let pool = build_pool(round, exits_tx);
    let (spare_exits_tx, spare_exits_rx) = mpsc::channel();
    *round.spare_exits.lock().unwrap() = Some(spare_exits_tx);

    // Shutdowns at random points: none in about a third of the rounds.
    let mut stops = Vec::new();
    for _ in 0..rng.below(3) {
        let stop = match rng.below(4) {
            0 => Stop::Graceful,
            1 => Stop::Now,
            _ => Stop::FromJob {
                now: rng.chance(50),
            },
        };
        stops.push((rng.below(DRIVERS), OPS / 3 + rng.below(OPS - OPS / 3), stop));
    }
    let stops = Arc::new(stops);

    let barrier = Arc::new(Barrier::new(DRIVERS));
    let drivers: Vec<_> = (0..DRIVERS)
        .map(|who| {
            let (round, pool, barrier, stops) = (
                Arc::clone(round),
                pool.clone(),
                Arc::clone(&barrier),
                Arc::clone(&stops),
            );
            let driver_rng = Rng(rng.next());
            thread::Builder::new()
                .name(format!("driver-{who}"))
                .spawn(move || {
                    barrier.wait();
                    drive(&round, pool, who, driver_rng, &stops)
                })
                .expect("spawn a driver")
        })
        .collect();
    let mut held = Vec::new();
    for driver in drivers {
        match driver.join() {
            Ok(tasks) => held.extend(tasks),
            Err(payload) => panic::resume_unwind(payload),
        }
    }

    let closer = DRIVERS;
    if stops.is_empty() && round.max_queued.is_some() && !round.detect {
        check_slots_free(round, &pool);
    }
    round.set_status(closer, 15, 0);
    round.shutdown_started.store(true, SC);
    let pool = match round.end {
        End::Shutdown => {
            pool.shutdown();
            Some(pool)
        }
        End::ShutdownNow => {
            round.shutdown_now_started.store(true, SC);
            pool.shutdown_now();
            Some(pool)
        }
        // Jobs may still hold clones: the pool goes when the last one does.
        End::DropLastHandle => {
            drop(pool);
            None
        }
    };
    // Every worker thread ran to its end (after its last drain).
    round.set_status(closer, 16, 0);
    for _ in 0..round.threads {
        exits_rx.recv().expect("a worker's exit");
    }
    // And every spare thread that ran a job (after the last handle is
    // dropped, blocking jobs may outlive the workers): once every job has
    // ended, no spare registers any more.
    wait_for_every_job(round);
    drop(round.spare_exits.lock().unwrap().take());
    for _ in 0..round.spares_seen.load(SC) {
        spare_exits_rx.recv().expect("a spare thread's exit");
    }
    for (rec, task) in held {
        if !task.is_finished() {
            round.fail(format!(
                "job #{}: Task unfinished after every worker exited",
                rec.id
            ));
        }
        rec.fate.store(WAITING, SC);
        record(round, &rec, task.wait());
    }
    if let Some(pool) = &pool {
        check_metrics(round, pool);
    }
    // Every queued job has started or been cancelled, every permit and
    // reservation is gone: no slot is taken.
    if let Some(pool) = pool.filter(|_| round.max_queued.is_some()) {
        let slots = format!("{:?}", pool.reserve());
        if !slots.contains("held: 0,") {
            round.fail(format!(
                "slots still taken after every worker exited: {slots}"
            ));
        }
    }
    round.tick();
}

/// Once every Task of the round resolved and every thread exited: the
/// pool's metrics count what the ledger counted (module docs).
fn check_metrics(round: &Round, pool: &Pool) {
    let (mut spawned, mut refused, mut completed, mut panicked, mut never_ran, mut stopped) =
        (0, 0, 0, 0, 0, 0);
    for rec in round.recs.lock().unwrap().iter() {
        if rec.fate.load(SC) == REFUSED {
            refused += 1;
            continue;
        }
        spawned += 1;
        match (rec.runs.load(SC), rec.outputs.load(SC)) {
            (0, _) => never_ran += 1,
            (_, 1) => completed += 1,
            _ if rec.stopped.load(SC) => stopped += 1,
            _ => panicked += 1,
        }
    }
    let extra = &round.extra;
    let ledger = [
        spawned + extra.spawned.load(SC),
        completed + extra.completed.load(SC),
        panicked,
        never_ran + extra.cancelled.load(SC),
        refused + extra.refused.load(SC),
        stopped,
        0,
        0,
    ];
    let m = pool.metrics();
    let counted = [
        m.spawned(),
        m.completed(),
        m.panicked(),
        m.cancelled(),
        m.refused(),
        m.stopped(),
        m.queued(),
        m.running(),
    ];
    if counted != ledger {
        round.fail(format!(
            "Pool::metrics (spawned, completed, panicked, cancelled, refused, stopped, \
             queued, running) {counted:?}, the ledger {ledger:?}\n{m}"
        ));
    }
}

/// Waits until every job closure of the round is gone (run or cancelled).
fn wait_for_every_job(round: &Round) {
    let mut live = round.live_closures.lock().unwrap();
    while *live != 0 {
        // The watchdog reports a job that never ends.
        live = round
            .no_live_closures
            .wait_timeout(live, Duration::from_millis(250))
            .unwrap()
            .0;
    }
}

/// On a bounded pool still running: once every job of the round has
/// finished or been cancelled, and every worker is held by a gate job,
/// exactly `max_queued` `try_spawn`s are admitted and the next is refused
/// as full: no slot leaked, none was given back twice.
fn check_slots_free(round: &Arc<Round>, pool: &Pool) {
    let closer = DRIVERS;
    let max = round.max_queued.expect("a bounded pool");
    round.set_status(closer, 21, 0);
    wait_for_every_job(round);
    round.set_status(closer, 22, 0);
    let gates: Vec<Gate> = (0..round.threads).map(|_| Gate::hold(pool)).collect();
    let mut admitted = Vec::new();
    for i in 0..max {
        match pool.try_spawn(move || i) {
            Ok(task) => admitted.push(task),
            Err(err) => {
                round.extra.refused.fetch_add(1, SC);
                round.fail(format!(
                    "idle pool, workers gated: try_spawn {} of {max} refused ({err}): \
                     a slot leaked; {:?}",
                    i + 1,
                    pool.reserve()
                ));
                break;
            }
        }
    }
    if admitted.len() == max {
        match pool.try_spawn(move || max) {
            Ok(_) => round.fail(format!(
                "idle pool, workers gated: try_spawn {} of {max} admitted: \
                 a slot was given back twice; {:?}",
                max + 1,
                pool.reserve()
            )),
            Err(err) if !err.is_full() => {
                round.extra.refused.fetch_add(1, SC);
                round.fail(format!("the slot check's try_spawn refused: {err}"));
            }
            Err(_) => {
                round.extra.refused.fetch_add(1, SC);
            }
        }
    }
    for gate in gates {
        gate.release();
        round.extra.resolved(&Ok(()));
    }
    for (i, task) in admitted.into_iter().enumerate() {
        let result = task.wait();
        round.extra.resolved(&result);
        if result.ok() != Some(i) {
            round.fail(format!("the slot check's job {i} went wrong"));
        }
    }
    round.slots_checked.store(true, SC);
    round.tick();
}

// ---- the test ----------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={value:?} is not a number")))
}

/// Keeps the output readable: the panics this test causes on purpose (the
/// payloads, and the "shut down" panics of `join`/`scope`/`install` called
/// after a shutdown) are not printed; any other panic is.
fn quiet_expected_panics() {
    common::quiet_panics_where(|payload| {
        !panic_message(payload).starts_with("stress:")
            && (payload.is::<Payload>() || panic_message(payload).contains("shut down"))
            || panic_message(payload).contains(common::EXPECTED)
    });
}

#[test]
fn random_operations_lose_nothing() {
    quiet_expected_panics();
    let base_seed = env_u64("OFFLOAD_STRESS_SEED").unwrap_or_else(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        nanos as u64 ^ u64::from(std::process::id())
    });
    let budget = Duration::from_secs(env_u64("OFFLOAD_STRESS_SECS").unwrap_or(DEFAULT_SECS));
    eprintln!(
        "stress: OFFLOAD_STRESS_SEED={base_seed} replays this run; \
         {} s of rounds (OFFLOAD_STRESS_SECS)",
        budget.as_secs()
    );

    let progress = Arc::new(AtomicU64::new(0));
    let mut seeds = Rng(base_seed);
    let started = Instant::now();
    let mut index = 0;
    let mut jobs = 0;
    let mut ran = 0;
    let mut saw_cancel = 0;
    let mut slot_checks = 0;
    let mut by_fate = [0usize; FATES.len()];
    while index < POOL_SIZES.len() || started.elapsed() < budget {
        let seed = seeds.next();
        let mut rng = Rng(seed);
        let end = match rng.below(3) {
            0 => End::Shutdown,
            1 => End::ShutdownNow,
            _ => End::DropLastHandle,
        };
        let threads = POOL_SIZES[index % POOL_SIZES.len()];
        let max_queued = match rng.below(4) {
            0 => None,
            bound => Some(BOUNDS[bound - 1]),
        };
        let round = Arc::new(Round {
            index,
            base_seed,
            seed,
            threads,
            max_queued,
            detect: rng.below(2) == 0,
            end,
            name: format!("stress{index}-"),
            recs: Mutex::default(),
            live_closures: Mutex::new(0),
            no_live_closures: Condvar::new(),
            slots_checked: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            shutdown_started: AtomicBool::new(false),
            shutdown_now_started: AtomicBool::new(false),
            progress: Arc::clone(&progress),
            failures: Mutex::default(),
            status: (0..=DRIVERS).map(|_| Status::default()).collect(),
            starts: (0..threads).map(|_| AtomicU32::new(0)).collect(),
            stops: (0..threads).map(|_| AtomicU32::new(0)).collect(),
            spare_exits: Mutex::new(None),
            spares_seen: AtomicUsize::new(0),
            extra: Extra::default(),
        });

        // The round runs on its own thread; this one is the watchdog.
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let runner = {
            let round = Arc::clone(&round);
            thread::Builder::new()
                .name(format!("round-{index}"))
                .spawn(move || {
                    run_round(&round, rng);
                    let _ = done_tx.send(());
                })
                .expect("spawn the round")
        };
        let mut last = progress.load(SC);
        let mut last_change = Instant::now();
        loop {
            match done_rx.recv_timeout(Duration::from_millis(250)) {
                Ok(()) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let now = progress.load(SC);
                    if now != last {
                        last = now;
                        last_change = Instant::now();
                    } else if last_change.elapsed() > STALL {
                        panic!(
                            "stress: no progress for {} s (deadlock or lost wake-up?)\n{}",
                            STALL.as_secs(),
                            round.dump()
                        );
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let payload = runner.join().expect_err("the round thread panicked");
                    panic!(
                        "stress: {}: a driver panicked: {}",
                        round.context(),
                        panic_message(&*payload)
                    );
                }
            }
        }
        runner.join().expect("the round thread");
        round.check_ledger();
        let failures = round.failures.lock().unwrap();
        assert!(
            failures.is_empty(),
            "stress: {}\n{} failures, first 20:\n  {}",
            round.context(),
            failures.len(),
            failures
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        );
        for rec in round.recs.lock().unwrap().iter() {
            jobs += 1;
            ran += rec.runs.load(SC) as usize;
            saw_cancel += usize::from(rec.saw_cancel.load(SC));
            by_fate[usize::from(rec.fate.load(SC))] += 1;
        }
        slot_checks += usize::from(round.slots_checked.load(SC));
        index += 1;
    }
    let fates: Vec<String> = FATES
        .iter()
        .zip(by_fate)
        .skip(2)
        .map(|(fate, count)| format!("{fate} {count}"))
        .collect();
    eprintln!(
        "stress: seed {base_seed}: {index} rounds ({slot_checks} with the slot check), \
         {jobs} jobs ({ran} ran, {saw_cancel} saw is_cancelled; Tasks: {}) in {:.1} s",
        fates.join(", "),
        started.elapsed().as_secs_f64()
    );
}
