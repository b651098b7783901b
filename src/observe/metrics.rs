//! [`Metrics`]: what a pool has done and is doing, from counters that cost
//! the hot paths next to nothing.
//!
//! # Where the counts live
//!
//! - **Per worker place** ([`Place`], cache-padded): the spawns made on it,
//!   the Tasks' jobs it started, completed, saw panic or cancelled, the
//!   `try_spawn` refusals on it, its steals, its time asleep and its
//!   timing histograms. Only the thread that holds the place writes them
//!   (its worker thread, or a stand-in while the worker is away in
//!   `blocking`: see [`crate::blocking::baton`], whose hand-overs
//!   synchronise), so an increment is a relaxed load and store, with no
//!   locked instruction. Two exceptions keep that true: a thread back
//!   early from `blocking` counts the end of its job on the place before
//!   it holds it again, so a stand-in counts the ends (and run times) of
//!   its jobs in its thread's block ([`PoolStats::stand_in`]); and the
//!   thread back early counts nothing else there (its spawns go to its
//!   thread's block, as off a worker).
//! - **Per thread slot** (cache-padded): the same job counts for threads
//!   that are not workers of this pool (an event loop spawning, a spare
//!   thread running a blocking job, a thread cancelling at shutdown),
//!   indexed by [`thread_slot`](crate::sync::thread_slot), which no two
//!   live threads share: a load and a store again.
//! - **Shared** ([`PoolStats::shared`]): for a thread without a slot (more
//!   than [`THREAD_SLOTS`] at once, loom), and the timings of threads that
//!   are not workers: `fetch_add`s. The timings are sampled, so those are
//!   rare.
//!
//! A snapshot sums every block with relaxed loads. Nothing here is a
//! protocol: no thread waits on a count and nothing is published through
//! one, so there is no loom model; the exclusivity of the single-writer
//! blocks rests on the baton's hand-overs (which loom checks) and on a
//! mutex (the thread slots). The counters are std atomics in both builds
//! (see [`StatCounter`]).
//!
//! # What a job costs
//!
//! Only Tasks' jobs count (`spawn`, `try_spawn`, `Permit::spawn`,
//! `spawn_blocking`): not `join` halves, `scope` jobs or `install` bodies,
//! whose paths are untouched. Per Task: one counted spawn, one start, one
//! end (three load/store pairs), and one job in [`SAMPLE_EVERY`] per
//! counter block carries a spawn timestamp (taken from the count the spawn
//! bumps anyway): only that one reads the clock, at its spawn, its start
//! and its end, and feeds the queue-wait and run-time histograms.
//!
//! Time asleep is measured where a worker's holder parks in the sleep
//! protocol, which already pays a futex call there.

use std::fmt;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::histogram::{bump, Histogram, Recorder};
use crate::job_priority::Priority;
use crate::sync::{thread_slot, Ordering, StatCounter, THREAD_SLOTS};

/// By default one Task in this many carries a spawn timestamp, per counter
/// block (a worker's place, a thread's slot): the first one, then every
/// 64th (`Builder::metrics_sample_every` changes it).
pub(crate) const SAMPLE_EVERY: u64 = 64;

/// Which spawns carry a timestamp: those whose count (per block, from
/// zero) is a multiple of `every`. A power of two is tested with a mask,
/// so the default costs no division.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    every: u64,
    /// `every - 1` if `every` is a power of two, else `u64::MAX`.
    mask: u64,
}

impl Sample {
    /// One spawn in `every` (at least 1).
    pub(crate) fn every(every: u64) -> Self {
        let every = every.max(1);
        let mask = if every.is_power_of_two() {
            every - 1
        } else {
            u64::MAX
        };
        Self { every, mask }
    }

    #[inline]
    fn takes(self, count: u64) -> bool {
        if self.mask != u64::MAX {
            count & self.mask == 0
        } else {
            count % self.every == 0
        }
    }
}

/// The job counts of one block.
#[derive(Default)]
pub(crate) struct Counts {
    spawned: StatCounter,
    started: StatCounter,
    completed: StatCounter,
    panicked: StatCounter,
    cancelled: StatCounter,
    stopped: StatCounter,
    refused: StatCounter,
    /// The `High` and `Low` lanes' share of `spawned`, `started` and
    /// `cancelled` (`Normal`'s is the rest): only jobs of those lanes pay
    /// for them.
    lanes: [LaneCounts; 2],
}

/// A lane's job counts in one block (see `Counts::lanes`).
#[derive(Default)]
pub(crate) struct LaneCounts {
    spawned: StatCounter,
    started: StatCounter,
    cancelled: StatCounter,
}

/// The sampled timings of one block.
pub(crate) struct Timing {
    wait: Recorder,
    run: Recorder,
    /// The `High` and `Low` lanes' share of `wait`.
    lane_wait: [Recorder; 2],
}

impl Timing {
    fn new() -> Self {
        Self {
            wait: Recorder::new(),
            run: Recorder::new(),
            lane_wait: [Recorder::new(), Recorder::new()],
        }
    }
}

/// A worker place's counters: written only by the place's holder.
pub(crate) struct Place {
    counts: Counts,
    steals: StatCounter,
    /// Nanoseconds asleep, over the sleeps that ended.
    asleep: StatCounter,
    /// When the current sleep began, in nanoseconds since the epoch plus
    /// one; zero while awake.
    asleep_since: StatCounter,
    timing: Timing,
}

/// Every counter of a pool.
pub(crate) struct PoolStats {
    epoch: Instant,
    sample: Sample,
    /// Blocked runners the detector noticed (its thread only).
    detected: CachePadded<StatCounter>,
    places: Box<[CachePadded<Place>]>,
    threads: Box<[CachePadded<Counts>]>,
    shared: CachePadded<Counts>,
    shared_timing: Timing,
}

impl PoolStats {
    /// The counters of a pool of `workers` workers, starting now.
    #[cfg_attr(not(loom), allow(dead_code))] // for the loom models
    pub(crate) fn new(workers: usize) -> Self {
        Self::sampling(workers, SAMPLE_EVERY)
    }

    /// [`new`](Self::new), timing one Task in `every` per block.
    pub(crate) fn sampling(workers: usize, every: u64) -> Self {
        Self {
            epoch: Instant::now(),
            sample: Sample::every(every),
            detected: CachePadded::new(StatCounter::new(0)),
            places: (0..workers)
                .map(|_| {
                    CachePadded::new(Place {
                        counts: Counts::default(),
                        steals: StatCounter::new(0),
                        asleep: StatCounter::new(0),
                        asleep_since: StatCounter::new(0),
                        timing: Timing::new(),
                    })
                })
                .collect(),
            threads: (0..THREAD_SLOTS)
                .map(|_| CachePadded::new(Counts::default()))
                .collect(),
            shared: CachePadded::new(Counts::default()),
            shared_timing: Timing::new(),
        }
    }

    /// The counters of worker place `index`, for its holder only.
    #[inline]
    pub(crate) fn place(&self, index: usize) -> Tally<'_> {
        let place = &self.places[index];
        Tally {
            epoch: &self.epoch,
            sample: self.sample,
            counts: &place.counts,
            own: true,
            timing: &place.timing,
            own_timing: true,
            ends: &place.counts,
            own_ends: true,
            ends_timing: &place.timing,
            own_ends_timing: true,
        }
    }

    /// The counters of a stand-in holding worker place `index`: the
    /// place's, but for the ends of the jobs it runs (and their run times),
    /// which go to its thread's. The thread it stands in for may finish
    /// its own job, counted on the place, while the stand-in still runs
    /// one (see [`crate::blocking`](mod@crate::blocking)): the two must
    /// not write the same single-writer counter.
    pub(crate) fn stand_in(&self, index: usize) -> Tally<'_> {
        let own = self.this_thread();
        Tally {
            ends: own.counts,
            own_ends: own.own,
            ends_timing: own.timing,
            own_ends_timing: own.own_timing,
            ..self.place(index)
        }
    }

    /// The counters of the calling thread, which is not a worker of this
    /// pool: its slot's, or the shared ones.
    #[inline]
    pub(crate) fn this_thread(&self) -> Tally<'_> {
        let (counts, own) = match thread_slot() {
            Some(slot) => (&*self.threads[slot], true),
            None => (&*self.shared, false),
        };
        Tally {
            epoch: &self.epoch,
            sample: self.sample,
            counts,
            own,
            timing: &self.shared_timing,
            own_timing: false,
            ends: counts,
            own_ends: own,
            ends_timing: &self.shared_timing,
            own_ends_timing: false,
        }
    }

    /// The blocking detector noticed a blocked runner (its thread only).
    #[cold]
    pub(crate) fn detected(&self) {
        bump(&self.detected, true, 1);
    }

    /// Worker place `index` stole a batch from another worker (its holder
    /// only).
    #[inline]
    pub(crate) fn stole(&self, index: usize) {
        bump(&self.places[index].steals, true, 1);
    }

    /// The holder of place `index` is about to sleep (`asleep`) or is back
    /// from a sleep (its holder only).
    pub(crate) fn sleeping(&self, index: usize, asleep: bool) {
        let place = &self.places[index];
        let now = self.nanos();
        if asleep {
            // Relaxed: a statistic, one writer (see `bump`).
            place.asleep_since.store(now + 1, Ordering::Relaxed);
        } else {
            // Relaxed: as above.
            let since = place.asleep_since.load(Ordering::Relaxed);
            if since != 0 {
                bump(&place.asleep, true, now.saturating_sub(since - 1));
                // Relaxed: as above.
                place.asleep_since.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Tasks started on place `index` so far (a snapshot: the blocking
    /// detector's measure of a place's progress).
    pub(crate) fn started_on(&self, index: usize) -> u64 {
        // Relaxed: compared with the previous value, nothing more.
        self.places[index].counts.started.load(Ordering::Relaxed)
    }

    /// Whether the holder of place `index` sleeps for want of work now (a
    /// snapshot, for the blocking detector).
    pub(crate) fn is_asleep(&self, index: usize) -> bool {
        // Relaxed: a hint, which the detector's next look revisits.
        self.places[index].asleep_since.load(Ordering::Relaxed) != 0
    }

    /// Nanoseconds since the epoch.
    fn nanos(&self) -> u64 {
        nanos_since(&self.epoch, Instant::now())
    }

    /// Sums every block into a snapshot; `pool` brings the figures the
    /// registry reads elsewhere.
    pub(crate) fn snapshot(&self, pool: PoolFigures) -> Metrics {
        let now = self.nanos();
        let mut metrics = Metrics {
            threads: self.places.len(),
            uptime: Duration::from_nanos(now),
            spawned: 0,
            started: 0,
            completed: 0,
            panicked: 0,
            cancelled: 0,
            stopped: 0,
            refused: 0,
            // Relaxed: a snapshot.
            detected_total: self.detected.load(Ordering::Relaxed),
            busy: Vec::with_capacity(self.places.len()),
            steals: 0,
            queue_wait: Histogram::new(),
            run_time: Histogram::new(),
            lanes: Default::default(),
            blocked: pool.blocked,
            detected_blocked: pool.detected_blocked,
            spare_threads: pool.spare_threads,
            reserve_waiters: pool.reserve_waiters,
        };
        let blocks = self
            .places
            .iter()
            .map(|place| &place.counts)
            .chain(self.threads.iter().map(|counts| &**counts))
            .chain([&*self.shared]);
        for counts in blocks {
            // Relaxed, all: a snapshot. The ends are read before the
            // starts and the starts before the spawns, so that a job that
            // moves on meanwhile is more likely counted at its later
            // stage than missed; `queued` and `running` clamp at zero.
            metrics.completed += counts.completed.load(Ordering::Relaxed);
            metrics.panicked += counts.panicked.load(Ordering::Relaxed);
            metrics.cancelled += counts.cancelled.load(Ordering::Relaxed);
            metrics.stopped += counts.stopped.load(Ordering::Relaxed);
            metrics.started += counts.started.load(Ordering::Relaxed);
            metrics.spawned += counts.spawned.load(Ordering::Relaxed);
            metrics.refused += counts.refused.load(Ordering::Relaxed);
            for (figures, lane) in metrics.lanes.iter_mut().zip(&counts.lanes) {
                // Relaxed, all: a snapshot, in the same order as above.
                figures.cancelled += lane.cancelled.load(Ordering::Relaxed);
                figures.started += lane.started.load(Ordering::Relaxed);
                figures.spawned += lane.spawned.load(Ordering::Relaxed);
            }
        }
        for place in self.places.iter() {
            // Relaxed, all: a snapshot.
            metrics.steals += place.steals.load(Ordering::Relaxed);
            let since = place.asleep_since.load(Ordering::Relaxed);
            let asleep = place.asleep.load(Ordering::Relaxed);
            let current = if since == 0 {
                0
            } else {
                now.saturating_sub(since - 1)
            };
            let busy = now.saturating_sub(asleep.saturating_add(current));
            metrics.busy.push(Duration::from_nanos(busy));
            place.timing.merge_into(&mut metrics);
        }
        self.shared_timing.merge_into(&mut metrics);
        metrics
    }
}

impl Timing {
    /// Adds these timings to a snapshot's histograms.
    fn merge_into(&self, metrics: &mut Metrics) {
        self.wait.merge_into(&mut metrics.queue_wait);
        self.run.merge_into(&mut metrics.run_time);
        for (figures, wait) in metrics.lanes.iter_mut().zip(&self.lane_wait) {
            wait.merge_into(&mut figures.queue_wait);
        }
    }
}

/// Nanoseconds from `epoch` to `now` (zero if `now` is earlier).
fn nanos_since(epoch: &Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(*epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// The figures of a snapshot that do not come from the counters.
pub(crate) struct PoolFigures {
    pub(crate) blocked: usize,
    pub(crate) detected_blocked: usize,
    pub(crate) spare_threads: usize,
    pub(crate) reserve_waiters: usize,
}

/// The counters that the calling thread writes for a pool: its place's if
/// it holds one of the pool's places, else its thread slot's (see the
/// module docs).
#[derive(Clone, Copy)]
pub(crate) struct Tally<'a> {
    epoch: &'a Instant,
    sample: Sample,
    counts: &'a Counts,
    /// Whether this thread is the only writer of `counts`.
    own: bool,
    timing: &'a Timing,
    /// Whether this thread is the only writer of `timing`.
    own_timing: bool,
    /// Where the jobs' ends (completed, panicked, stopped) and run times
    /// go: `counts` and `timing`, but for a stand-in (see
    /// [`PoolStats::stand_in`]).
    ends: &'a Counts,
    own_ends: bool,
    ends_timing: &'a Timing,
    own_ends_timing: bool,
}

impl Tally<'_> {
    /// Counts a Task's spawn at `priority`. Returns its stamp for the
    /// cell: zero, or for one spawn in [`SAMPLE_EVERY`], when it was
    /// spawned (nanoseconds since the epoch, plus one).
    #[inline]
    pub(crate) fn spawned(&self, priority: Priority) -> u64 {
        if let Some(lane) = priority.lane() {
            bump(&self.counts.lanes[lane].spawned, self.own, 1);
        }
        if !self.sample.takes(bump(&self.counts.spawned, self.own, 1)) {
            return 0;
        }
        nanos_since(self.epoch, Instant::now()).saturating_add(1)
    }

    /// Counts a `try_spawn` refusal.
    #[cold]
    pub(crate) fn refused(&self) {
        bump(&self.counts.refused, self.own, 1);
    }

    /// Counts a Task's job discarded without running (cancelled by its
    /// Task before it started, or by a shutdown).
    pub(crate) fn cancelled(&self, priority: Priority) {
        if let Some(lane) = priority.lane() {
            bump(&self.counts.lanes[lane].cancelled, self.own, 1);
        }
        bump(&self.counts.cancelled, self.own, 1);
    }

    /// Counts the start of a Task's job whose cell carries `stamp`; for a
    /// sampled job, records its queue wait and returns when it started.
    #[inline]
    pub(crate) fn started(&self, stamp: u64, priority: Priority) -> Option<Instant> {
        bump(&self.counts.started, self.own, 1);
        let lane = priority.lane();
        if let Some(lane) = lane {
            bump(&self.counts.lanes[lane].started, self.own, 1);
        }
        if stamp == 0 {
            return None;
        }
        let now = Instant::now();
        let waited = nanos_since(self.epoch, now).saturating_sub(stamp - 1);
        self.timing.wait.record(waited, self.own_timing);
        if let Some(lane) = lane {
            self.timing.lane_wait[lane].record(waited, self.own_timing);
        }
        Some(now)
    }

    /// Counts the end of a Task's job that stopped itself
    /// ([`stop_if_cancelled`](crate::stop_if_cancelled)); records the run
    /// time of a sampled one.
    #[cold]
    pub(crate) fn stopped(&self, start: Option<Instant>) {
        if let Some(start) = start {
            self.ends_timing
                .run
                .record(nanos_since(&start, Instant::now()), self.own_ends_timing);
        }
        bump(&self.ends.stopped, self.own_ends, 1);
    }

    /// Counts the end of a Task's job, which panicked or not; records the
    /// run time of a sampled one (`start` from [`started`](Self::started)).
    #[inline]
    pub(crate) fn finished(&self, panicked: bool, start: Option<Instant>) {
        if let Some(start) = start {
            self.ends_timing
                .run
                .record(nanos_since(&start, Instant::now()), self.own_ends_timing);
        }
        let counter = if panicked {
            &self.ends.panicked
        } else {
            &self.ends.completed
        };
        bump(counter, self.own_ends, 1);
    }
}

/// A snapshot of a pool's activity: [`Pool::metrics`](crate::Pool::metrics).
///
/// Counts are totals since the pool was built, or figures of the moment
/// the snapshot was taken. Only Tasks count as jobs (from
/// [`spawn`](crate::Pool::spawn), [`try_spawn`](crate::Pool::try_spawn),
/// [`Permit::spawn`](crate::Permit::spawn) and
/// [`spawn_blocking`](crate::Pool::spawn_blocking), and the free functions
/// of the same names): the halves of a [`join`](crate::join), the jobs of
/// a [`scope`](crate::scope) and the bodies of an
/// [`install`](crate::Pool::install) do not.
///
/// Each Task ends in one of `completed`, `panicked` or `cancelled`, so
/// `spawned() == queued() + running() + completed() + panicked() +
/// cancelled()`; exactly so once the pool is idle, or after
/// [`shutdown`](crate::Pool::shutdown). While jobs come and go the counts
/// are read one after the other, so a job that moves on meanwhile can be
/// seen at two stages; `queued` and `running` never go below zero.
///
/// The timings are **sampled**: one Task in 64 (per worker, and per
/// submitting thread outside the pool: the first, then every 64th)
/// carries a spawn timestamp, and only those read the clock, at their
/// spawn, start and end.
///
/// ```
/// let pool = offload::Pool::builder().threads(2).build().unwrap();
/// let tasks: Vec<_> = (0..100u64).map(|i| pool.spawn(move || i * i)).collect();
/// for task in tasks {
///     task.wait().unwrap();
/// }
/// let metrics = pool.metrics();
/// assert_eq!(metrics.spawned(), 100);
/// assert_eq!(metrics.completed(), 100);
/// assert_eq!(metrics.queued() + metrics.running(), 0);
/// assert_eq!(metrics.queue_wait().count(), 2); // the 1st and the 65th
/// assert_eq!(metrics.run_time().count(), 2);
/// let failed = metrics.panicked() + metrics.cancelled() + metrics.stopped();
/// assert_eq!(failed + metrics.refused(), 0);
/// assert_eq!(metrics.threads(), 2);
/// assert_eq!(metrics.reserve_waiters(), 0); // an unbounded pool
/// // Figures that depend on the scheduling: read, not asserted.
/// println!("up {:?}, busy {:?}", metrics.uptime(), metrics.busy());
/// println!("{} steals, {} blocked now", metrics.steals(), metrics.blocked());
/// println!("{} found blocked, {} now", metrics.detected_total(), metrics.detected_blocked());
/// println!("{} spare threads", metrics.spare_threads());
/// println!("{metrics}");
/// pool.shutdown();
/// ```
#[derive(Clone)]
pub struct Metrics {
    threads: usize,
    uptime: Duration,
    spawned: u64,
    started: u64,
    completed: u64,
    panicked: u64,
    cancelled: u64,
    stopped: u64,
    refused: u64,
    detected_total: u64,
    busy: Vec<Duration>,
    steals: u64,
    queue_wait: Histogram,
    run_time: Histogram,
    /// The `High` and `Low` lanes' share of the job counts and of
    /// `queue_wait`; `Normal`'s is the rest.
    lanes: [LaneFigures; 2],
    blocked: usize,
    detected_blocked: usize,
    spare_threads: usize,
    reserve_waiters: usize,
}

impl Metrics {
    /// What happened between `earlier` and this snapshot, both of the same
    /// pool, for a service that exports rates and recent latencies: every
    /// count ([`spawned`](Metrics::spawned), [`completed`](Metrics::completed),
    /// [`detected_total`](Metrics::detected_total), ...), the per-worker
    /// [`busy`](Metrics::busy) times and the [`queue_wait`](Metrics::queue_wait)
    /// and [`run_time`](Metrics::run_time) histograms cover the interval
    /// only, [`uptime`](Metrics::uptime) is the interval's length (so
    /// `busy / uptime` is each worker's utilisation over it), and the
    /// gauges ([`queued`](Metrics::queued), [`running`](Metrics::running),
    /// [`blocked`](Metrics::blocked), [`detected_blocked`](Metrics::detected_blocked),
    /// [`spare_threads`](Metrics::spare_threads),
    /// [`reserve_waiters`](Metrics::reserve_waiters)) are as of `self`.
    ///
    /// An interval histogram's [`max`](Histogram::max) is the upper edge of
    /// its highest non-empty bucket (at most the maximum so far), since the
    /// exact maximum of an interval is not kept; its mean is exact. A
    /// count that went down (snapshots of different pools, or swapped)
    /// gives zero, never a wrapped value.
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(2).build().unwrap();
    /// let earlier = pool.metrics();
    /// let tasks: Vec<_> = (0..100).map(|i| pool.spawn(move || i)).collect();
    /// for task in tasks {
    ///     task.wait().unwrap();
    /// }
    /// let interval = pool.metrics().since(&earlier);
    /// assert_eq!(interval.spawned(), 100);
    /// assert_eq!(interval.completed(), 100);
    /// assert!(interval.uptime() <= pool.metrics().uptime());
    /// ```
    #[must_use]
    pub fn since(&self, earlier: &Metrics) -> Metrics {
        Metrics {
            threads: self.threads,
            uptime: self.uptime.saturating_sub(earlier.uptime),
            spawned: self.spawned.saturating_sub(earlier.spawned),
            started: self.started.saturating_sub(earlier.started),
            completed: self.completed.saturating_sub(earlier.completed),
            panicked: self.panicked.saturating_sub(earlier.panicked),
            cancelled: self.cancelled.saturating_sub(earlier.cancelled),
            stopped: self.stopped.saturating_sub(earlier.stopped),
            refused: self.refused.saturating_sub(earlier.refused),
            detected_total: self.detected_total.saturating_sub(earlier.detected_total),
            busy: self
                .busy
                .iter()
                .enumerate()
                .map(|(i, busy)| {
                    busy.saturating_sub(earlier.busy.get(i).copied().unwrap_or_default())
                })
                .collect(),
            steals: self.steals.saturating_sub(earlier.steals),
            queue_wait: self.queue_wait.since(&earlier.queue_wait),
            run_time: self.run_time.since(&earlier.run_time),
            lanes: [0, 1].map(|lane| self.lanes[lane].since(&earlier.lanes[lane])),
            blocked: self.blocked,
            detected_blocked: self.detected_blocked,
            spare_threads: self.spare_threads,
            reserve_waiters: self.reserve_waiters,
        }
    }

    /// The number of worker threads ([`Pool::threads`](crate::Pool::threads)).
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The time since the pool was built.
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn uptime(&self) -> Duration {
        self.uptime
    }

    /// Jobs waiting to start now: spawned, and neither started nor
    /// discarded. Includes `spawn_blocking` jobs waiting for a spare
    /// thread, and jobs whose Task was cancelled while they were queued
    /// until a worker reaches them (they are counted as
    /// [`cancelled`](Metrics::cancelled) then).
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn queued(&self) -> u64 {
        self.spawned
            .saturating_sub(self.started)
            .saturating_sub(self.cancelled)
    }

    /// Jobs of `priority` waiting to start now (see [`queued`](Metrics::queued);
    /// the three add up to it, give or take the jobs that move on while the
    /// snapshot is taken).
    ///
    /// ```
    /// use offload::Priority;
    ///
    /// // Detection off: otherwise a helper would run the queued jobs while
    /// // `busy` sits in `recv`.
    /// let pool = offload::Pool::builder().threads(1).detect_blocking(false).build().unwrap();
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// let (started_tx, started) = std::sync::mpsc::channel();
    /// let busy = pool.spawn(move || {
    ///     started_tx.send(()).unwrap();
    ///     gate.recv().unwrap();
    /// });
    /// started.recv().unwrap();
    /// let low = pool.with_priority(Priority::Low);
    /// let tasks: Vec<_> = (0..3).map(|i| low.spawn(move || i)).collect();
    /// let urgent = pool.with_priority(Priority::High).spawn(|| 7);
    /// let now = pool.metrics();
    /// assert_eq!(now.queued_at(Priority::Low), 3);
    /// assert_eq!(now.queued_at(Priority::High), 1);
    /// assert_eq!(now.queued_at(Priority::Normal), 0);
    /// release.send(()).unwrap();
    /// assert_eq!(urgent.wait().unwrap(), 7);
    /// # busy.wait().unwrap();
    /// # for task in tasks { task.wait().unwrap(); }
    /// ```
    #[must_use]
    pub fn queued_at(&self, priority: Priority) -> u64 {
        let (spawned, started, cancelled) = match priority.lane() {
            Some(lane) => {
                let lane = &self.lanes[lane];
                (lane.spawned, lane.started, lane.cancelled)
            }
            None => {
                let others = |f: fn(&LaneFigures) -> u64| self.lanes.iter().map(f).sum::<u64>();
                (
                    self.spawned.saturating_sub(others(|l| l.spawned)),
                    self.started.saturating_sub(others(|l| l.started)),
                    self.cancelled.saturating_sub(others(|l| l.cancelled)),
                )
            }
        };
        spawned.saturating_sub(started).saturating_sub(cancelled)
    }

    /// The sampled queue waits of the jobs of `priority`: the part of
    /// [`queue_wait`](Metrics::queue_wait) that they make up.
    ///
    /// ```
    /// use offload::Priority;
    ///
    /// let pool = offload::Pool::builder().threads(1).metrics_sample_every(1).build().unwrap();
    /// pool.with_priority(Priority::High).spawn(|| ()).wait().unwrap();
    /// pool.spawn(|| ()).wait().unwrap();
    /// let metrics = pool.metrics();
    /// assert_eq!(metrics.queue_wait_at(Priority::High).count(), 1);
    /// assert_eq!(metrics.queue_wait_at(Priority::Normal).count(), 1);
    /// assert_eq!(metrics.queue_wait_at(Priority::Low).count(), 0);
    /// assert_eq!(metrics.queue_wait().count(), 2);
    /// ```
    #[must_use]
    pub fn queue_wait_at(&self, priority: Priority) -> Histogram {
        match priority.lane() {
            Some(lane) => self.lanes[lane].queue_wait.clone(),
            None => self
                .queue_wait
                .since(&self.lanes[0].queue_wait)
                .since(&self.lanes[1].queue_wait),
        }
    }

    /// Jobs running now: started and not finished. Includes jobs on spare
    /// threads (`spawn_blocking`), and jobs that wait (on a Task, a
    /// `join`) while their worker runs other jobs.
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn running(&self) -> u64 {
        self.started
            .saturating_sub(self.completed)
            .saturating_sub(self.panicked)
            .saturating_sub(self.stopped)
    }

    /// Tasks spawned since the pool was built, including those spawned
    /// after a shutdown (which are cancelled at once). Refused
    /// `try_spawn`s are not: see [`refused`](Metrics::refused).
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn spawned(&self) -> u64 {
        self.spawned
    }

    /// Jobs that ran and returned (also those that returned early after
    /// seeing [`is_cancelled`](crate::is_cancelled)).
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Jobs that ran and panicked (their Task resolved to a panic
    /// [`JoinError`](crate::JoinError)).
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn panicked(&self) -> u64 {
        self.panicked
    }

    /// Jobs discarded without running: cancelled by their Task (dropped or
    /// [`cancel`](crate::Task::cancel)led) before they started, or by a
    /// shutdown. A Task cancelled while its job is queued counts when a
    /// worker reaches the job (at the latest at shutdown).
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn cancelled(&self) -> u64 {
        self.cancelled
    }

    /// Jobs that started and then stopped themselves through
    /// [`stop_if_cancelled`](crate::stop_if_cancelled) (their Tasks
    /// resolved as cancelled). Once every job has ended, `spawned =
    /// completed + panicked + cancelled + stopped`.
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn stopped(&self) -> u64 {
        self.stopped
    }

    /// [`try_spawn`](crate::Pool::try_spawn) and
    /// [`try_reserve`](crate::Pool::try_reserve) calls refused, as full or
    /// after shutdown.
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Per worker (by index), the time its place was awake since the pool
    /// was built: [`uptime`](Metrics::uptime) minus the time its thread
    /// spent parked, asleep for want of work. Running jobs, looking for
    /// work and the short spin before a sleep all count as awake; so does
    /// a job blocked without [`blocking`](crate::blocking). Measured where
    /// a worker falls asleep and wakes up, not per job.
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn busy(&self) -> &[Duration] {
        &self.busy
    }

    /// Successful steals: batches that a worker took from another
    /// worker's deque (each is the job it runs next and up to half of
    /// what the other worker had queued). Batches taken from the queue of
    /// submissions from outside the pool do not count.
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn steals(&self) -> u64 {
        self.steals
    }

    /// Queue wait of the sampled jobs (see above): from the spawn to the
    /// start of the job.
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn queue_wait(&self) -> &Histogram {
        &self.queue_wait
    }

    /// Run time of the sampled jobs (see above): from the start of the job
    /// to its end, waits inside it included.
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn run_time(&self) -> &Histogram {
        &self.run_time
    }

    /// Threads away from their worker's place now: blocked in
    /// [`blocking`](crate::blocking) while another thread stands in, or
    /// back from it and finishing their job (a job's Task may resolve
    /// before its thread has its place again), or waiting to take their
    /// place again. A call that the blocking detector compensates (a
    /// marked call, the default on Linux) keeps its place and counts in
    /// [`detected_blocked`](Metrics::detected_blocked) instead.
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn blocked(&self) -> usize {
        self.blocked
    }

    /// Blocked runners the detector has noticed since the pool was built
    /// (see [`Builder::detect_blocking`](crate::Builder::detect_blocking)):
    /// the cumulative count behind [`detected_blocked`](Metrics::detected_blocked),
    /// so that blocking that came and went between two snapshots
    /// leaves a trace (compare with [`since`](Metrics::since)). Each time a
    /// worker (or a helper) is found blocked inside a job counts once.
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn detected_total(&self) -> u64 {
        self.detected_total
    }

    /// Threads that the blocking detector sees blocked inside a job now,
    /// in a call that was not marked, or marked with
    /// [`blocking`](crate::blocking) (see
    /// [`Builder::detect_blocking`](crate::Builder::detect_blocking)):
    /// each has a spare thread running the pool's other jobs meanwhile
    /// while jobs wait.
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn detected_blocked(&self) -> usize {
        self.detected_blocked
    }

    /// Spare threads alive now (running `spawn_blocking` jobs, standing in
    /// for workers in `blocking`, or idle until
    /// [`blocking_keep_alive`](crate::Builder::blocking_keep_alive)).
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn spare_threads(&self) -> usize {
        self.spare_threads
    }

    /// [`reserve`](crate::Pool::reserve) waiters in line for a queue slot
    /// now (zero on an unbounded pool).
    ///
    /// See the example on [`Metrics`].
    #[must_use]
    pub fn reserve_waiters(&self) -> usize {
        self.reserve_waiters
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("threads", &self.threads)
            .field("uptime", &self.uptime)
            .field("queued", &self.queued())
            .field("running", &self.running())
            .field("spawned", &self.spawned)
            .field("completed", &self.completed)
            .field("panicked", &self.panicked)
            .field("cancelled", &self.cancelled)
            .field("stopped", &self.stopped)
            .field("refused", &self.refused)
            .field("detected_total", &self.detected_total)
            .field("busy", &self.busy)
            .field("steals", &self.steals)
            .field("queue_wait", &self.queue_wait)
            .field("run_time", &self.run_time)
            .field("high", &self.lanes[0])
            .field("low", &self.lanes[1])
            .field("blocked", &self.blocked)
            .field("detected_blocked", &self.detected_blocked)
            .field("spare_threads", &self.spare_threads)
            .field("reserve_waiters", &self.reserve_waiters)
            .finish()
    }
}

/// A compact summary on five lines:
///
/// ```text
/// 2 threads, up 1.2s, busy 41%: 1 running, 3 queued, 12 steals
/// jobs: 1000 spawned, 990 completed, 3 panicked, 3 cancelled, 0 refused
/// queue wait: p50 1.2µs, p99 40.0µs, max 1.1ms (n = 16)
/// run time:   p50 7.0µs, p99 9.0µs, max 12.0µs (n = 16)
/// blocking: 0 blocked, 0 detected, 0 spare threads; 0 reserve waiters
/// ```
/// Writing a snapshot to the [`metrics`] facade (feature `metrics`).
#[cfg(feature = "metrics")]
impl Metrics {
    /// Writes every figure of this snapshot to the [`metrics`] crate's
    /// facade, under names that start with `prefix` (say `"offload"`), so
    /// that whatever `metrics` exporter the program installed (Prometheus,
    /// StatsD, OpenTelemetry) publishes them. Call it on each scrape, or
    /// from a timer; it only sets values, so calling it often is harmless.
    /// With no recorder installed it does nothing. Needs the `metrics`
    /// feature.
    ///
    /// | name | kind | labels | figure |
    /// |---|---|---|---|
    /// | `{prefix}_threads` | gauge | | [`threads`](Metrics::threads) |
    /// | `{prefix}_uptime_seconds` | gauge | | [`uptime`](Metrics::uptime) |
    /// | `{prefix}_queued` | gauge | | [`queued`](Metrics::queued) |
    /// | `{prefix}_running` | gauge | | [`running`](Metrics::running) |
    /// | `{prefix}_spawned_total` | counter | | [`spawned`](Metrics::spawned) |
    /// | `{prefix}_completed_total` | counter | | [`completed`](Metrics::completed) |
    /// | `{prefix}_panicked_total` | counter | | [`panicked`](Metrics::panicked) |
    /// | `{prefix}_cancelled_total` | counter | | [`cancelled`](Metrics::cancelled) |
    /// | `{prefix}_stopped_total` | counter | | [`stopped`](Metrics::stopped) |
    /// | `{prefix}_refused_total` | counter | | [`refused`](Metrics::refused) |
    /// | `{prefix}_steals_total` | counter | | [`steals`](Metrics::steals) |
    /// | `{prefix}_busy_microseconds_total` | counter | `worker` (its index) | [`busy`](Metrics::busy) (microseconds: the facade's counters are integers) |
    /// | `{prefix}_detected_total` | counter | | [`detected_total`](Metrics::detected_total) |
    /// | `{prefix}_blocked` | gauge | | [`blocked`](Metrics::blocked) |
    /// | `{prefix}_detected_blocked` | gauge | | [`detected_blocked`](Metrics::detected_blocked) |
    /// | `{prefix}_spare_threads` | gauge | | [`spare_threads`](Metrics::spare_threads) |
    /// | `{prefix}_reserve_waiters` | gauge | | [`reserve_waiters`](Metrics::reserve_waiters) |
    /// | `{prefix}_queued_by_priority` | gauge | `priority`: `high`, `normal`, `low` | [`queued_at`](Metrics::queued_at) |
    /// | `{prefix}_queue_wait_seconds` | gauge | `quantile`: `0.5`, `0.9`, `0.99`, `1` | [`queue_wait`](Metrics::queue_wait)'s quantiles (`1` is the max) |
    /// | `{prefix}_queue_wait_by_priority_seconds` | gauge | `priority` as above, `quantile`: `0.5`, `0.99` | [`queue_wait_at`](Metrics::queue_wait_at)'s quantiles |
    /// | `{prefix}_queue_wait_samples_total` | counter | | its [`count`](Histogram::count) |
    /// | `{prefix}_queue_wait_mean_seconds` | gauge | | its [`mean`](Histogram::mean) |
    /// | `{prefix}_run_time_seconds` | gauge | `quantile` as above | [`run_time`](Metrics::run_time)'s quantiles |
    /// | `{prefix}_run_time_samples_total` | counter | | its count |
    /// | `{prefix}_run_time_mean_seconds` | gauge | | its mean |
    ///
    /// The pool's histograms are already aggregated (and sampled: see
    /// [`Builder::metrics_sample_every`](crate::Builder::metrics_sample_every)),
    /// so they are published as quantile gauges with their sample count and
    /// mean, the shape of a Prometheus summary, rather than fed again into
    /// the facade's histograms, which take single observations. Counters
    /// are set with `absolute`, so a snapshot recorded twice counts once.
    ///
    /// ```
    /// use metrics_exporter_prometheus::PrometheusBuilder;
    ///
    /// let recorder = PrometheusBuilder::new().build_recorder();
    /// let page = recorder.handle();
    /// let pool = offload::Pool::builder().threads(2).build().unwrap();
    /// pool.spawn(|| 6 * 7).wait().unwrap();
    /// metrics::with_local_recorder(&recorder, || pool.metrics().record("offload"));
    /// let text = page.render(); // what GET /metrics serves
    /// assert!(text.contains("offload_spawned_total 1"), "{text}");
    /// assert!(text.contains("offload_threads 2"), "{text}");
    /// ```
    pub fn record(&self, prefix: &str) {
        use metrics::{counter, gauge};

        let name = |suffix: &str| format!("{prefix}_{suffix}");
        let set = |suffix: &str, value: f64| gauge!(name(suffix)).set(value);
        let count = |suffix: &str, value: u64| counter!(name(suffix)).absolute(value);

        set("threads", self.threads as f64);
        set("uptime_seconds", self.uptime.as_secs_f64());
        set("queued", self.queued() as f64);
        set("running", self.running() as f64);
        count("spawned_total", self.spawned);
        count("completed_total", self.completed);
        count("panicked_total", self.panicked);
        count("cancelled_total", self.cancelled);
        count("stopped_total", self.stopped);
        count("refused_total", self.refused);
        count("steals_total", self.steals);
        count("detected_total", self.detected_total);
        for (worker, busy) in self.busy.iter().enumerate() {
            let micros = u64::try_from(busy.as_micros()).unwrap_or(u64::MAX);
            counter!(name("busy_microseconds_total"), "worker" => worker.to_string())
                .absolute(micros);
        }
        set("blocked", self.blocked as f64);
        set("detected_blocked", self.detected_blocked as f64);
        set("spare_threads", self.spare_threads as f64);
        set("reserve_waiters", self.reserve_waiters as f64);
        for (label, priority) in [
            ("high", Priority::High),
            ("normal", Priority::Normal),
            ("low", Priority::Low),
        ] {
            gauge!(name("queued_by_priority"), "priority" => label)
                .set(self.queued_at(priority) as f64);
            let waits = self.queue_wait_at(priority);
            for (quantile, q) in [("0.5", 0.5), ("0.99", 0.99)] {
                gauge!(
                    name("queue_wait_by_priority_seconds"),
                    "priority" => label,
                    "quantile" => quantile
                )
                .set(waits.quantile(q).as_secs_f64());
            }
        }
        for (what, histogram) in [
            ("queue_wait", &self.queue_wait),
            ("run_time", &self.run_time),
        ] {
            for (label, q) in [("0.5", 0.5), ("0.9", 0.9), ("0.99", 0.99), ("1", 1.0)] {
                gauge!(name(&format!("{what}_seconds")), "quantile" => label)
                    .set(histogram.quantile(q).as_secs_f64());
            }
            count(&format!("{what}_samples_total"), histogram.count());
            set(
                &format!("{what}_mean_seconds"),
                histogram.mean().as_secs_f64(),
            );
        }
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let busy: Duration = self.busy.iter().sum();
        let possible = self.uptime.as_secs_f64() * self.threads as f64;
        let percent = if possible > 0.0 {
            100.0 * busy.as_secs_f64() / possible
        } else {
            0.0
        };
        writeln!(
            f,
            "{} threads, up {:.1?}, busy {percent:.0}%: {} running, {} queued, {} steals",
            self.threads,
            self.uptime,
            self.running(),
            self.queued(),
            self.steals
        )?;
        writeln!(
            f,
            "jobs: {} spawned, {} completed, {} panicked, {} cancelled, {} stopped, {} refused",
            self.spawned, self.completed, self.panicked, self.cancelled, self.stopped, self.refused
        )?;
        writeln!(f, "queue wait: {}", self.queue_wait)?;
        writeln!(f, "run time:   {}", self.run_time)?;
        write!(
            f,
            "blocking: {} blocked, {} detected ({} in all), {} spare threads; {} reserve waiters",
            self.blocked,
            self.detected_blocked,
            self.detected_total,
            self.spare_threads,
            self.reserve_waiters
        )
    }
}

/// A lane's share of a snapshot (see `Metrics::lanes`).
#[derive(Debug, Clone)]
struct LaneFigures {
    spawned: u64,
    started: u64,
    cancelled: u64,
    queue_wait: Histogram,
}

impl Default for LaneFigures {
    fn default() -> Self {
        LaneFigures {
            spawned: 0,
            started: 0,
            cancelled: 0,
            queue_wait: Histogram::new(),
        }
    }
}

impl LaneFigures {
    fn since(&self, earlier: &LaneFigures) -> LaneFigures {
        LaneFigures {
            spawned: self.spawned.saturating_sub(earlier.spawned),
            started: self.started.saturating_sub(earlier.started),
            cancelled: self.cancelled.saturating_sub(earlier.cancelled),
            queue_wait: self.queue_wait.since(&earlier.queue_wait),
        }
    }
}
