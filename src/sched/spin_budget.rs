//! How long an idle worker spins before it sleeps: learnt, per worker, from
//! the gaps between its going idle and the push of the job that ended its
//! idleness.
//!
//! A spin pays off only if the next job comes before it ends; otherwise it
//! burns CPU and the worker sleeps anyway. A gap is measured from the
//! moment the worker went idle to the push that ended the idleness: by the
//! worker itself when its spin caught the job, or from the stamp the
//! notifier left when it had to wake the worker (it takes the clock only
//! then, when a futex call follows anyway), so the worker's own wake-up
//! latency is never counted. The worker spins for as long as its recent
//! gaps say a spin would have caught the next job (up to [`CAP`]), and not
//! at all when they are longer than that.
//!
//! Only the worker reads and writes its history (a hint: any budget is
//! correct, since a spin's end goes through the sleep protocol's fence and
//! re-check). Loom has no clock: there a model that asks for a spin gets
//! one round (loom model `a_spinning_waiter_passes_wakeup_on`, mutant
//! `spin_round_leaks_token`), and the pool's workers do not spin.

use std::cell::Cell;
use std::time::Duration;

/// The longest spin: past this, sleeping and being woken is cheaper than
/// the CPU a spin burns.
pub(crate) const CAP: Duration = Duration::from_micros(100);

/// The spin of a worker with too little history: about what a fixed spin
/// of 127 hints and 9 yields took on the reference VM.
const DEFAULT: Duration = Duration::from_micros(20);

/// Gaps remembered.
const HISTORY: usize = 8;

/// A worker's recent gaps (see the module docs).
#[derive(Default)]
pub(crate) struct SpinLearner {
    /// Nanoseconds, saturated; `u32::MAX` for a gap that no spin could
    /// have caught.
    gaps: Cell<[u32; HISTORY]>,
    /// How many gaps were recorded (saturates at `HISTORY`), and where the
    /// next one goes.
    recorded: Cell<usize>,
    next: Cell<usize>,
}

impl SpinLearner {
    /// Records a gap.
    pub(crate) fn record(&self, gap: Duration) {
        let mut gaps = self.gaps.get();
        gaps[self.next.get()] = u32::try_from(gap.as_nanos()).unwrap_or(u32::MAX);
        self.gaps.set(gaps);
        self.next.set((self.next.get() + 1) % HISTORY);
        self.recorded.set((self.recorded.get() + 1).min(HISTORY));
    }

    /// How long to spin now: long enough to catch three in four of the
    /// recent gaps that a spin up to [`CAP`] would have caught, if at least
    /// half of them were that short; else not at all.
    pub(crate) fn budget(&self) -> Duration {
        let recorded = self.recorded.get();
        if recorded < HISTORY / 2 {
            return DEFAULT;
        }
        let mut gaps = self.gaps.get();
        let gaps = &mut gaps[..recorded];
        gaps.sort_unstable();
        let cap = CAP.as_nanos() as u32;
        let short = gaps.iter().take_while(|&&gap| gap <= cap).count();
        if short * 2 < recorded {
            return Duration::ZERO;
        }
        let p75 = gaps[(short * 3).div_ceil(4).saturating_sub(1)];
        // Half as much again, for the jitter of the next one, and never
        // less than the default: a gap of a microsecond (the loop answered
        // before it slept) must not teach a spin that one hiccup outlasts.
        Duration::from_nanos(u64::from(p75) * 3 / 2).clamp(DEFAULT, CAP)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn learnt(gaps_us: &[u64]) -> Duration {
        let learner = SpinLearner::default();
        for &gap in gaps_us {
            learner.record(Duration::from_micros(gap));
        }
        learner.budget()
    }

    #[test]
    fn too_little_history_spins_the_default() {
        assert_eq!(learnt(&[]), DEFAULT);
        assert_eq!(learnt(&[5_000, 5_000, 5_000]), DEFAULT);
    }

    #[test]
    fn short_gaps_teach_a_spin_that_catches_most_of_them() {
        // A loop that takes 30-40 µs to come back: spin past most of it.
        let budget = learnt(&[30, 32, 35, 31, 40, 33, 36, 34]);
        assert!(budget >= Duration::from_micros(40), "{budget:?}");
        assert!(budget <= CAP);
        // Tiny gaps never teach less than the default.
        assert_eq!(learnt(&[1, 1, 2, 1, 1, 1, 2, 1]), DEFAULT);
        // Gaps near the cap are capped.
        assert_eq!(learnt(&[90, 95, 99, 98, 97, 96, 94, 93]), CAP);
    }

    #[test]
    fn long_gaps_teach_no_spin() {
        // A job every 500 µs: a spin would never catch the next one.
        assert_eq!(learnt(&[500; 8]), Duration::ZERO);
        // Mostly long, a few short: still none.
        assert_eq!(
            learnt(&[500, 500, 500, 500, 500, 10, 10, 10]),
            Duration::ZERO
        );
        // Only the last `HISTORY` gaps count.
        assert!(learnt(&[500, 500, 500, 500, 30, 30, 30, 30, 30, 30, 30, 30]) > Duration::ZERO);
    }
}
