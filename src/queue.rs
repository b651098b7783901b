//! The work-stealing deques: one LIFO [`Worker`] deque per worker thread
//! and their [`Stealer`]s. (Submissions from outside go through the pool's
//! own [`Injector`](crate::injector::Injector), which loom checks as it is.)
//!
//! Outside loom these are crossbeam-deque's types. Loom cannot see inside
//! crossbeam-deque, so under `cfg(loom)` they are stand-ins with the same
//! contract (linearizable push/pop/steal, LIFO owner end, FIFO steal end)
//! built from a loom `Mutex<VecDeque>`: the models then check our protocols
//! on top of a queue that is correct by construction, which is exactly what
//! crossbeam-deque promises.

#[cfg(not(loom))]
pub(crate) use crossbeam_deque::{Steal, Stealer, Worker};

#[cfg(loom)]
pub(crate) use self::loom_queue::{Steal, Stealer, Worker};

#[cfg(loom)]
mod loom_queue {
    use crate::sync::{lock, Arc, Mutex};
    use std::collections::VecDeque;

    /// The outcome of a steal; `Retry` never happens with a mutex.
    #[derive(Debug)]
    pub(crate) enum Steal<T> {
        Empty,
        Success(T),
        #[allow(dead_code)]
        Retry,
    }

    type Shared<T> = Arc<Mutex<VecDeque<T>>>;

    #[derive(Debug)]
    pub(crate) struct Worker<T>(Shared<T>);

    #[derive(Debug)]
    pub(crate) struct Stealer<T>(Shared<T>);

    fn pop_front<T>(queue: &Mutex<VecDeque<T>>) -> Steal<T> {
        match lock(queue).pop_front() {
            Some(job) => Steal::Success(job),
            None => Steal::Empty,
        }
    }

    impl<T> Worker<T> {
        pub(crate) fn new_lifo() -> Self {
            Self(Arc::new(Mutex::new(VecDeque::new())))
        }
        pub(crate) fn push(&self, job: T) {
            lock(&self.0).push_back(job);
        }
        pub(crate) fn pop(&self) -> Option<T> {
            lock(&self.0).pop_back()
        }
        pub(crate) fn is_empty(&self) -> bool {
            lock(&self.0).is_empty()
        }
        pub(crate) fn stealer(&self) -> Stealer<T> {
            Stealer(self.0.clone())
        }
    }

    impl<T> Stealer<T> {
        pub(crate) fn steal(&self) -> Steal<T> {
            pop_front(&self.0)
        }
        pub(crate) fn steal_batch_and_pop(&self, _dest: &Worker<T>) -> Steal<T> {
            self.steal()
        }
        pub(crate) fn is_empty(&self) -> bool {
            lock(&self.0).is_empty()
        }
    }
}
