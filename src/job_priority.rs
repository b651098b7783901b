//! [`Priority`]: how urgent a job is. It is carried in every job's header
//! (see [`crate::task::job`]) and decides the lane the job is queued in;
//! the lanes, the order in which workers look at them and the starvation
//! bound are the scheduler's (see [`crate::sched::lanes`]).
//!
//! Imports nothing: the counters of `observe/` and the jobs of `task/`
//! name it.

/// How urgent a job is: a free worker starts the most urgent job it can
/// find first, with a bounded exception so that lower-priority jobs are
/// never starved (see [`Pool::with_priority`](crate::Pool::with_priority)
/// for the rules).
///
/// Ordered by urgency: `Low < Normal < High`. `Normal` is the default and
/// what every job of a pool that never uses priorities runs at.
///
/// ```
/// use offload::Priority;
///
/// assert!(Priority::High > Priority::Normal && Priority::Normal > Priority::Low);
/// assert_eq!(Priority::default(), Priority::Normal);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    /// Background work: runs when no `Normal` or `High` job waits, and
    /// still gets a bounded share of the starts when they always do.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Latency-critical work: starts before every `Normal` and `Low` job
    /// queued with it (save the starvation bound's share).
    High,
}

impl Priority {
    /// Every priority, most urgent first: the order in which a worker
    /// looks at the lanes.
    pub(crate) const URGENT_FIRST: [Priority; 3] =
        [Priority::High, Priority::Normal, Priority::Low];

    /// The index of this priority's extra lane in [`Lanes`] (and in a
    /// worker's `lane_deques`); `None` for `Normal`, whose lane is the
    /// pool's original queues.
    #[inline]
    pub(crate) fn lane(self) -> Option<usize> {
        match self {
            Priority::High => Some(0),
            Priority::Normal => None,
            Priority::Low => Some(1),
        }
    }
}
