//! The scheduler: a pool's shared state, its workers and their loop, the
//! queues they take jobs from, and how idle and blocked threads wait.
//!
//! Read in this order:
//! 1. [`registry`]: [`Registry`](registry::Registry), the state a pool's
//!    handles and threads share, submission, termination and the count of
//!    live threads that shutdown waits for.
//! 2. [`worker`]: [`WorkerThread`](worker::WorkerThread), a worker's place
//!    (its deque, its join stack, its runner), which pool the thread is on
//!    or away from, and the ways code on a worker waits.
//! 3. [`worker_loop`]: the loop every worker (and every loom model of one)
//!    runs over the [`Queues`](worker_loop::Queues) trait: find work, run
//!    it, spin a little, sleep.
//! 4. [`sleep`]: the sleep protocol that loses no wake-up, the spinners, and
//!    the detector's `Dormancy`, which a notifier pokes.
//!
//! Then the parts they use: [`injector`] (the FIFO of submissions from
//! outside), [`deque`] (the workers' deques), [`parker`] (what every
//! blocked thread waits on), [`spin_budget`] (how long an idle worker
//! spins), [`priority`] (applied when a worker or a spare thread starts)
//! and [`block_on`] (`Task::wait` and `wait_timeout`: a thread blocked on
//! a future, which on a worker runs other jobs meanwhile).
//!
//! # What it may import
//!
//! `task/` and the ground (`sync.rs`, `unwind.rs`, `error.rs`, `flow/`,
//! `observe/`). It owns blocking/'s state: `blocking/baton.rs`,
//! `blocking/runner.rs` and `blocking/spares.rs` are fields of the
//! registry and of a worker. Nothing here imports `fork_join/`, `pool.rs`
//! or `blocking/detect.rs`.
//!
//! # The one circle: the pool's threads
//!
//! `registry.rs`, `worker.rs` and `blocking/spares.rs` import each other.
//! They are one protocol in three files: the registry counts every live
//! thread (workers, spares, the detector) so that shutdown waits for all of
//! them, and a worker's place has one holder. `Registry::push` routes to
//! `WorkerThread::push` when the caller is one of its workers;
//! `wait_until_exited` runs the worker loop while it waits, and the last
//! worker out runs `run_until_idle`. `Spares::dispatch` and `spare_main`
//! count their threads through `Registry::add_live_thread` and
//! `workers_exited`, and a refused spare falls back on `inject`.
//! `WorkerThread::blocking` lends its place through `Spares::stand_in`, and
//! `spare_main` runs `WorkerThread::stand_in`. Cutting the circle would
//! take a host trait of five or six methods over `Registry` and a
//! type-erased place: no cost at run time, but more to read than the
//! circle (rayon-core keeps its `Registry` and `WorkerThread` in one
//! file).

pub(crate) mod block_on;
pub(crate) mod deque;
pub(crate) mod injector;
pub(crate) mod parker;
pub(crate) mod priority;
pub(crate) mod registry;
pub(crate) mod sleep;
pub(crate) mod spin_budget;
pub(crate) mod worker;
pub(crate) mod worker_loop;
