//! The controllers' Prometheus figures, one series per controller.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Queue depth, reconciles, errors and reconcile time, labelled by
/// controller. Registered once per process; every leadership term reuses
/// them.
#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    /// `berth_controller_queue_depth`: keys waiting to be reconciled.
    pub queue_depth: IntGaugeVec,
    /// `berth_controller_reconcile_total`: reconciles run.
    pub reconciles: IntCounterVec,
    /// `berth_controller_reconcile_errors_total`: reconciles that failed.
    pub errors: IntCounterVec,
    /// `berth_controller_reconcile_duration_seconds`: how long each took.
    pub duration: HistogramVec,
    /// `berth_nodes`: nodes by condition and status (`Ready`, `True`), as
    /// the leader sees them.
    pub nodes: IntGaugeVec,
}

impl ControllerMetrics {
    /// Creates the figures and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<ControllerMetrics, prometheus::Error> {
        let labels = &["controller"];
        let metrics = ControllerMetrics {
            queue_depth: IntGaugeVec::new(
                Opts::new(
                    "berth_controller_queue_depth",
                    "Keys waiting in a controller's work queue.",
                ),
                labels,
            )?,
            reconciles: IntCounterVec::new(
                Opts::new(
                    "berth_controller_reconcile_total",
                    "Reconciles a controller has run.",
                ),
                labels,
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "berth_controller_reconcile_errors_total",
                    "Reconciles that failed and were retried with back-off.",
                ),
                labels,
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "berth_controller_reconcile_duration_seconds",
                    "How long one reconcile took.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
                labels,
            )?,
            nodes: IntGaugeVec::new(
                Opts::new(
                    "berth_nodes",
                    "Nodes by condition and its status, as the controller leader sees them.",
                ),
                &["condition", "status"],
            )?,
        };
        registry.register(Box::new(metrics.nodes.clone()))?;
        registry.register(Box::new(metrics.queue_depth.clone()))?;
        registry.register(Box::new(metrics.reconciles.clone()))?;
        registry.register(Box::new(metrics.errors.clone()))?;
        registry.register(Box::new(metrics.duration.clone()))?;
        Ok(metrics)
    }
}
