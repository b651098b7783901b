//! `Metrics::record` (feature `metrics`): a Prometheus text page, through
//! `metrics-exporter-prometheus`, holds every figure of the pool under its
//! documented name.

#![cfg(feature = "metrics")]

mod common;

use common::{timed, Gate};
use metrics_exporter_prometheus::PrometheusBuilder;
use offload::Pool;

#[test]
fn a_prometheus_page_holds_the_pools_figures() {
    timed(|| {
        let pool = Pool::builder()
            .threads(2)
            .detect_blocking(false)
            .metrics_sample_every(1)
            .build()
            .unwrap();
        for i in 0..5 {
            pool.spawn(move || i).wait().unwrap();
        }
        common::silence_expected_panics();
        let _ = pool.spawn(|| panic!("{}", common::EXPECTED)).wait();
        let gate = Gate::hold(&pool);
        let recorder = PrometheusBuilder::new().build_recorder();
        let page = recorder.handle();
        metrics::with_local_recorder(&recorder, || pool.metrics().record("svc_pool"));
        let text = page.render();
        for line in [
            "svc_pool_threads 2",
            "svc_pool_spawned_total 7",
            "svc_pool_completed_total 5",
            "svc_pool_panicked_total 1",
            "svc_pool_cancelled_total 0",
            "svc_pool_stopped_total 0",
            "svc_pool_refused_total 0",
            "svc_pool_running 1",
            "svc_pool_queued 0",
            "svc_pool_run_time_samples_total 6",
            "svc_pool_queue_wait_samples_total 7",
            "svc_pool_detected_total 0",
            "svc_pool_blocked 0",
            "svc_pool_reserve_waiters 0",
            "svc_pool_queued_by_priority{priority=\"high\"} 0",
            "svc_pool_queued_by_priority{priority=\"normal\"} 0",
            "svc_pool_queued_by_priority{priority=\"low\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        for name in [
            "svc_pool_uptime_seconds ",
            "svc_pool_steals_total ",
            "svc_pool_busy_microseconds_total{worker=\"0\"} ",
            "svc_pool_busy_microseconds_total{worker=\"1\"} ",
            "svc_pool_spare_threads ",
            "svc_pool_detected_blocked ",
            "svc_pool_queue_wait_seconds{quantile=\"0.99\"} ",
            "svc_pool_run_time_seconds{quantile=\"0.5\"} ",
            "svc_pool_run_time_seconds{quantile=\"1\"} ",
            "svc_pool_run_time_mean_seconds ",
            "svc_pool_queue_wait_by_priority_seconds{priority=\"normal\",quantile=\"0.99\"} ",
            "svc_pool_queue_wait_by_priority_seconds{priority=\"high\",quantile=\"0.5\"} ",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "missing {name:?} in\n{text}"
            );
        }
        // Recording the same snapshot again counts nothing twice.
        let snapshot = pool.metrics();
        metrics::with_local_recorder(&recorder, || {
            snapshot.record("svc_pool");
            snapshot.record("svc_pool");
        });
        assert!(page
            .render()
            .lines()
            .any(|l| l == "svc_pool_spawned_total 7"));
        gate.release();
    });
}
