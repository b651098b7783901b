//! Blocking compensation left on for weeks holds no descriptor for a
//! thread that is gone: across a thousand generations of spare threads
//! (helpers for unmarked blocking calls, stand-ins for marked ones, each
//! exiting at once: `blocking_keep_alive(0)`), the process's open file
//! descriptors stay flat.
//!
//! Alone in its test binary: no other test opens files meanwhile.

#![cfg(target_os = "linux")]

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::thread_name;
use offload::Pool;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The index `k` of a spare thread named `offload-blocking-k`.
fn spare_index(name: &str) -> Option<usize> {
    name.strip_prefix("offload-blocking-")?.parse().ok()
}

#[test]
fn descriptors_stay_flat_across_a_thousand_helper_and_stand_in_generations() {
    common::with_timeout(120, || {
        let pool = Pool::builder()
            .threads(1)
            .blocking_keep_alive(Duration::ZERO)
            .build()
            .unwrap();
        // One round of each kind: a job blocked unmarked (a helper runs the
        // jobs behind it) and one blocked in `offload::blocking` (a stand-in
        // runs them). Returns the highest spare index a job ran on.
        let round = || {
            let mut highest = None;
            let unmarked = pool.spawn(|| thread::sleep(Duration::from_millis(2)));
            let behind: Vec<_> = (0..3).map(|_| pool.spawn(thread_name)).collect();
            let marked =
                pool.spawn(|| offload::blocking(|| thread::sleep(Duration::from_millis(1))));
            let behind_marked: Vec<_> = (0..3).map(|_| pool.spawn(thread_name)).collect();
            unmarked.wait().unwrap();
            marked.wait().unwrap();
            for name in behind.into_iter().chain(behind_marked) {
                highest = highest.max(spare_index(&name.wait().unwrap()));
            }
            highest
        };
        // Warm up: the detector's file for the worker, the test harness's.
        for _ in 0..20 {
            round();
        }
        let baseline = open_fds();
        let mut samples = vec![baseline];
        let start = Instant::now();
        let mut generations = 0;
        // A thousand spare threads, each started for one turn and gone; on
        // a slow machine, as many as 60 s allow (but at least 100).
        while generations < 1000 && start.elapsed() < Duration::from_secs(60) {
            for _ in 0..50 {
                if let Some(k) = round() {
                    generations = generations.max(k + 1);
                }
            }
            samples.push(open_fds());
        }
        assert!(
            generations >= 100,
            "only {generations} spare threads started in 60 s"
        );
        let (min, max) = (
            *samples.iter().min().unwrap(),
            *samples.iter().max().unwrap(),
        );
        assert!(
            max <= baseline + 2 && min + 2 >= baseline,
            "open descriptors over {generations} spare generations: {samples:?}"
        );
    });
}
