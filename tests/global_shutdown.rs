//! What `shutdown` on `Pool::global()` means for the free functions: the
//! global pool is shut down for good. (Its own test binary, so no other
//! test shares the process's global pool.)

mod common;

use std::io;
use std::panic::{self, AssertUnwindSafe};

use common::timed;
use offload::Pool;

#[test]
fn shutting_down_the_global_pool_is_for_good() {
    assert!(Pool::builder().threads(2).build_global().is_ok());
    timed(|| {
        let global = Pool::global();
        let queued: Vec<_> = (0..100u64).map(|i| offload::spawn(move || i)).collect();
        global.shutdown();
        // Queued jobs ran first.
        let sum: u64 = queued.into_iter().map(|t| t.wait().unwrap()).sum();
        assert_eq!(sum, 4950);
        // Later spawns from outside any pool are cancelled at once.
        let err = pollster::block_on(offload::spawn(|| 1)).unwrap_err();
        assert!(err.is_cancelled());
        let err = offload::spawn_blocking(|| 1).wait().unwrap_err();
        assert!(err.is_cancelled());
        assert!(Pool::global().try_spawn(|| 1).unwrap_err().is_shutdown());
        assert!(Pool::global().try_reserve().unwrap_err().is_shutdown());
        // join and scope outside any pool panic.
        common::silence_expected_panics();
        let joined = panic::catch_unwind(AssertUnwindSafe(|| offload::join(|| 1, || 2)));
        assert!(joined.is_err());
        // It is not rebuilt.
        let err = Pool::builder().threads(1).build_global().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(format!("{:?}", Pool::global()).contains("terminating: true"));
    });
}
