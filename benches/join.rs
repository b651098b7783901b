//! Fork-join cost: fine-grained recursive parallelism, where a join sits at
//! every level of a recursion, against rayon and chili in the same run.
//!
//! ```text
//! cargo bench --bench join
//! ```
//!
//! Every group has four members: `sequential` (plain recursion, the
//! baseline), `offload` (`offload::join`), `rayon` (`rayon::join`) and
//! `chili` (`chili::Scope::join`). Each pool gets one thread per core (chili
//! counts the calling thread as one of them; `OFFLOAD_BENCH_THREADS=n` sets
//! another count, for a scaling table). Each measures the join itself:
//! the whole measurement loop runs inside the pool (`install` once around
//! criterion's loop for offload and rayon; one chili `Scope` reused, as
//! chili's own benchmark does), so no iteration pays a handoff from the
//! benchmark thread. `tree_sum_1023` adds `offload_install_each`, which
//! enters the pool from outside on every iteration, to show that cost.
//!
//! Groups:
//!
//! - `fib_30`: naive Fibonacci with a join at every call (1.3M joins, almost
//!   no work per join: pure overhead);
//! - `tree_sum_1023` and `tree_sum_16777215`: the sum of a balanced binary
//!   tree of boxed nodes, a join at every node (chili's benchmark, its tree
//!   built the same way). The big tree does not fit in cache, and the order
//!   in which a sum visits the nodes matters more than the joins: the tree
//!   is allocated in post-order (a node's subtrees, left one first, then
//!   the node), so visiting each node's *right* subtree first walks memory
//!   downwards in one stream, and left first jumps about (on the 2-core
//!   machine, 26 ms against 60 ms sequentially). chili's join runs its
//!   second closure first, so every member visits right first: the others
//!   get the right subtree as their first closure;
//! - `quicksort_1m`: a quicksort of 1M pseudo-random `u64`s joining both
//!   sides of every partition, down to 32-element slices.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_main, BatchSize, Bencher, BenchmarkGroup, Criterion};

struct Node {
    value: u64,
    left: Option<Box<Node>>,
    right: Option<Box<Node>>,
}

impl Node {
    fn tree(layers: u32) -> Node {
        Node {
            value: 1,
            left: (layers > 1).then(|| Box::new(Node::tree(layers - 1))),
            right: (layers > 1).then(|| Box::new(Node::tree(layers - 1))),
        }
    }
}

/// One recursion, written once per way of joining.
macro_rules! workloads {
    ($module:ident, |$a:ident, $b:ident| $join:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            pub fn fib(n: u64) -> u64 {
                if n < 2 {
                    return n;
                }
                let $a = || fib(n - 1);
                let $b = || fib(n - 2);
                let (x, y) = $join;
                x + y
            }

            /// Right subtree first (see the module docs).
            pub fn tree_sum(node: &Node) -> u64 {
                let $a = || node.right.as_deref().map_or(0, tree_sum);
                let $b = || node.left.as_deref().map_or(0, tree_sum);
                let (x, y) = $join;
                node.value + x + y
            }

            pub fn quicksort(v: &mut [u64]) {
                if v.len() <= 32 {
                    v.sort_unstable();
                    return;
                }
                let mid = super::partition(v);
                let (left, right) = v.split_at_mut(mid);
                #[allow(unused_mut)]
                let mut $a = || quicksort(left);
                #[allow(unused_mut)]
                let mut $b = || quicksort(&mut right[1..]);
                $join;
            }
        }
    };
}

workloads!(sequential, |a, b| (a(), b()));
workloads!(with_offload, |a, b| offload::join(a, b));
workloads!(with_rayon, |a, b| rayon::join(a, b));

/// chili passes its scope explicitly, so it gets its own copy.
mod with_chili {
    use super::*;
    use chili::Scope;

    pub fn fib(s: &mut Scope<'_>, n: u64) -> u64 {
        if n < 2 {
            return n;
        }
        let (x, y) = s.join(|s| fib(s, n - 1), |s| fib(s, n - 2));
        x + y
    }

    /// chili's own sum: its join runs the second closure (the right
    /// subtree) first.
    pub fn tree_sum(s: &mut Scope<'_>, node: &Node) -> u64 {
        let (x, y) = s.join(
            |s| node.left.as_deref().map_or(0, |n| tree_sum(s, n)),
            |s| node.right.as_deref().map_or(0, |n| tree_sum(s, n)),
        );
        node.value + x + y
    }

    pub fn quicksort(s: &mut Scope<'_>, v: &mut [u64]) {
        if v.len() <= 32 {
            v.sort_unstable();
            return;
        }
        let mid = super::partition(v);
        let (left, right) = v.split_at_mut(mid);
        s.join(|s| quicksort(s, left), |s| quicksort(s, &mut right[1..]));
    }
}

/// Lomuto partition around the middle element; returns the pivot's index.
fn partition(v: &mut [u64]) -> usize {
    let last = v.len() - 1;
    v.swap(v.len() / 2, last);
    let mut store = 0;
    for i in 0..last {
        if v[i] < v[last] {
            v.swap(i, store);
            store += 1;
        }
    }
    v.swap(store, last);
    store
}

fn random_u64s(n: usize) -> Vec<u64> {
    let mut x = 0x2545_F491_4F6C_DD1D_u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect()
}

struct Pools {
    offload: offload::Pool,
    rayon: rayon::ThreadPool,
    chili: chili::ThreadPool,
}

impl Pools {
    fn new(threads: usize) -> Pools {
        Pools {
            offload: offload::Pool::builder()
                .threads(threads)
                .build()
                .expect("offload pool"),
            rayon: rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("rayon pool"),
            chili: chili::ThreadPool::with_config(chili::Config {
                thread_count: std::num::NonZeroUsize::new(threads),
                ..chili::Config::default()
            }),
        }
    }
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>, slow: bool) {
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(if slow { 5 } else { 3 }));
    group.sample_size(if slow { 10 } else { 30 });
}

fn fib(c: &mut Criterion, pools: &Pools) {
    const N: u64 = 30;
    let mut group = c.benchmark_group("fib_30");
    configure(&mut group, false);
    group.bench_function("sequential", |b| b.iter(|| sequential::fib(black_box(N))));
    group.bench_function("offload", |b| {
        pools
            .offload
            .install(|| b.iter(|| with_offload::fib(black_box(N))))
    });
    group.bench_function("rayon", |b| {
        pools
            .rayon
            .install(|| b.iter(|| with_rayon::fib(black_box(N))))
    });
    group.bench_function("chili", |b| {
        let mut scope = pools.chili.scope();
        b.iter(|| with_chili::fib(&mut scope, black_box(N)))
    });
    group.finish();
}

fn tree_sum(c: &mut Criterion, pools: &Pools, layers: u32) {
    let tree = Node::tree(layers);
    let nodes = (1u64 << layers) - 1;
    let mut group = c.benchmark_group(format!("tree_sum_{nodes}"));
    configure(&mut group, layers > 20);
    let check = |sum: u64| assert_eq!(sum, nodes);
    group.bench_function("sequential", |b| {
        b.iter(|| check(sequential::tree_sum(black_box(&tree))))
    });
    group.bench_function("offload", |b| {
        pools
            .offload
            .install(|| b.iter(|| check(with_offload::tree_sum(black_box(&tree)))))
    });
    if layers <= 20 {
        group.bench_function("offload_install_each", |b| {
            b.iter(|| {
                check(
                    pools
                        .offload
                        .install(|| with_offload::tree_sum(black_box(&tree))),
                )
            })
        });
    }
    group.bench_function("rayon", |b| {
        pools
            .rayon
            .install(|| b.iter(|| check(with_rayon::tree_sum(black_box(&tree)))))
    });
    group.bench_function("chili", |b| {
        let mut scope = pools.chili.scope();
        b.iter(|| check(with_chili::tree_sum(&mut scope, black_box(&tree))))
    });
    group.finish();
}

fn quicksort(c: &mut Criterion, pools: &Pools) {
    let input = random_u64s(1 << 20);
    let mut group = c.benchmark_group("quicksort_1m");
    configure(&mut group, true);
    // Each iteration sorts a fresh copy of the input, made outside the clock.
    let sort = |b: &mut Bencher<'_>, sort: &mut dyn FnMut(&mut [u64])| {
        b.iter_batched(
            || input.clone(),
            |mut v| {
                sort(&mut v);
                debug_assert!(v.windows(2).all(|w| w[0] <= w[1]));
            },
            BatchSize::LargeInput,
        )
    };
    group.bench_function("sequential", |b| sort(b, &mut sequential::quicksort));
    group.bench_function("offload", |b| {
        pools
            .offload
            .install(|| sort(b, &mut with_offload::quicksort))
    });
    group.bench_function("rayon", |b| {
        pools.rayon.install(|| sort(b, &mut with_rayon::quicksort))
    });
    group.bench_function("chili", |b| {
        let mut scope = pools.chili.scope();
        sort(b, &mut |v| with_chili::quicksort(&mut scope, v))
    });
    group.finish();
}

/// Threads per pool: `OFFLOAD_BENCH_THREADS` (for a scaling table, see
/// BENCHMARKS.md), else one per core.
fn threads() -> usize {
    std::env::var("OFFLOAD_BENCH_THREADS")
        .ok()
        .map(|n| n.parse().expect("OFFLOAD_BENCH_THREADS: a thread count"))
        .unwrap_or_else(num_cpus::get)
}

fn benches() {
    let threads = threads();
    let pools = Pools::new(threads);
    let mut c = Criterion::default().configure_from_args();
    fib(&mut c, &pools);
    tree_sum(&mut c, &pools, 10);
    tree_sum(&mut c, &pools, 24);
    quicksort(&mut c, &pools);
}

criterion_main!(benches);
