//! The store's Prometheus metrics.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry};

/// Figures the store keeps about itself.
#[derive(Debug)]
pub struct StoreMetrics {
    /// Seconds from a write's batch start to its commit.
    pub write_seconds: Histogram,
    /// Requests per committed batch (group commit).
    pub batch_size: Histogram,
    /// The newest revision committed by this process.
    pub revision: IntGauge,
    /// Watches open in this process.
    pub open_watches: IntGauge,
    /// Events sent to watchers.
    pub watch_events_sent: IntCounter,
    /// Connections open in the database pool.
    pub pool_connections: IntGauge,
    /// Idle connections in the database pool.
    pub pool_idle: IntGauge,
}

impl StoreMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = StoreMetrics {
            write_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "berth_store_write_duration_seconds",
                    "Time from a write's batch start to its durable commit.",
                )
                .buckets(vec![
                    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )?,
            batch_size: Histogram::with_opts(
                HistogramOpts::new(
                    "berth_store_write_batch_size",
                    "Write requests committed per database transaction.",
                )
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ]),
            )?,
            revision: IntGauge::with_opts(Opts::new(
                "berth_store_revision",
                "The newest revision committed by this process.",
            ))?,
            open_watches: IntGauge::with_opts(Opts::new(
                "berth_store_open_watches",
                "Watches open in this process.",
            ))?,
            watch_events_sent: IntCounter::with_opts(Opts::new(
                "berth_store_watch_events_sent_total",
                "Events delivered to watchers.",
            ))?,
            pool_connections: IntGauge::with_opts(Opts::new(
                "berth_store_db_pool_connections",
                "Connections open in the database pool.",
            ))?,
            pool_idle: IntGauge::with_opts(Opts::new(
                "berth_store_db_pool_idle_connections",
                "Idle connections in the database pool.",
            ))?,
        };
        registry.register(Box::new(metrics.write_seconds.clone()))?;
        registry.register(Box::new(metrics.batch_size.clone()))?;
        registry.register(Box::new(metrics.revision.clone()))?;
        registry.register(Box::new(metrics.open_watches.clone()))?;
        registry.register(Box::new(metrics.watch_events_sent.clone()))?;
        registry.register(Box::new(metrics.pool_connections.clone()))?;
        registry.register(Box::new(metrics.pool_idle.clone()))?;
        Ok(metrics)
    }
}
