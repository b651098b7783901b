//! The work-stealing deques: one LIFO [`Worker`] deque per worker thread
//! and their [`Stealer`]s. (Submissions from outside go through the pool's
//! own [`Injector`](crate::sched::injector::Injector), which loom checks as it is.)
//!
//! Outside loom these are crossbeam-deque's types. Loom cannot see inside
//! crossbeam-deque, so under `cfg(loom)` they are stand-ins with the same
//! contract (linearizable push/pop/steal, LIFO owner end, FIFO steal end),
//! built from a loom `Mutex<VecDeque>`, and, where it matters to our
//! protocols, no stronger than crossbeam's:
//! - `is_empty` reads an atomic length with a Relaxed load and takes no
//!   lock (crossbeam's reads its indices with a Relaxed and a SeqCst load),
//!   so a lock cannot order a push before a sleeper's re-check: only the
//!   sleep protocol's fences do;
//! - `steal_batch_and_pop` takes half of the victim's jobs (rounded up, as
//!   crossbeam) and moves them to the thief's deque in a second step, so the
//!   window in which a stolen batch is in no deque exists here too.

#[cfg(not(loom))]
pub(crate) use crossbeam_deque::{Steal, Stealer, Worker};

#[cfg(loom)]
pub(crate) use self::loom_queue::{Steal, Stealer, Worker};

#[cfg(loom)]
mod loom_queue {
    use crate::sync::{lock, Arc, AtomicUsize, Mutex, MutexGuard, Ordering};
    use std::collections::VecDeque;

    /// The outcome of a steal; `Retry` never happens with a mutex.
    #[derive(Debug)]
    pub(crate) enum Steal<T> {
        Empty,
        Success(T),
        #[allow(dead_code)]
        Retry,
    }

    #[derive(Debug)]
    struct Deque<T> {
        jobs: Mutex<VecDeque<T>>,
        /// `jobs.len()`, written under the lock, read without it.
        len: AtomicUsize,
    }

    impl<T> Deque<T> {
        fn with<R>(&self, f: impl FnOnce(&mut MutexGuard<'_, VecDeque<T>>) -> R) -> R {
            let mut jobs = lock(&self.jobs);
            let result = f(&mut jobs);
            // Relaxed: as weak as crossbeam's index stores; readers rely on
            // the sleep protocol's fences, not on this store.
            self.len.store(jobs.len(), Ordering::Relaxed);
            result
        }

        fn is_empty(&self) -> bool {
            // Relaxed: see the module docs.
            self.len.load(Ordering::Relaxed) == 0
        }
    }

    #[derive(Debug)]
    pub(crate) struct Worker<T>(Arc<Deque<T>>);

    #[derive(Debug)]
    pub(crate) struct Stealer<T>(Arc<Deque<T>>);

    impl<T> Worker<T> {
        pub(crate) fn new_lifo() -> Self {
            Self(Arc::new(Deque {
                jobs: Mutex::new(VecDeque::new()),
                len: AtomicUsize::new(0),
            }))
        }
        pub(crate) fn push(&self, job: T) {
            self.0.with(|jobs| jobs.push_back(job));
        }
        pub(crate) fn pop(&self) -> Option<T> {
            self.0.with(|jobs| jobs.pop_back())
        }
        pub(crate) fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
        pub(crate) fn stealer(&self) -> Stealer<T> {
            Stealer(self.0.clone())
        }
    }

    impl<T> Stealer<T> {
        pub(crate) fn steal(&self) -> Steal<T> {
            match self.0.with(|jobs| jobs.pop_front()) {
                Some(job) => Steal::Success(job),
                None => Steal::Empty,
            }
        }
        pub(crate) fn steal_batch_and_pop(&self, dest: &Worker<T>) -> Steal<T> {
            let mut batch = self.0.with(|jobs| {
                let take = jobs.len().div_ceil(2);
                jobs.drain(..take).collect::<VecDeque<T>>()
            });
            let Some(first) = batch.pop_front() else {
                return Steal::Empty;
            };
            // The rest lands in `dest` only now (see the module docs).
            if !batch.is_empty() {
                dest.0.with(|jobs| jobs.extend(batch));
            }
            Steal::Success(first)
        }
        pub(crate) fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }
}
