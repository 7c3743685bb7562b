//! What a benchmark reads from the server's `/metrics` (Prometheus text).

use anyhow::Context;
use berth_tests::rest::Api;
use reqwest::Method;

/// One scrape of `/metrics`.
pub struct MetricsPage {
    text: String,
}

impl MetricsPage {
    /// Reads the server's `/metrics` now.
    pub async fn scrape(api: &Api) -> anyhow::Result<MetricsPage> {
        let text = api
            .request(Method::GET, "/metrics")
            .send()
            .await
            .context("scraping /metrics")?
            .text()
            .await
            .context("reading /metrics")?;
        Ok(MetricsPage { text })
    }

    /// The value of one series, named as the page writes it, labels
    /// included: `berth_scheduler_attempts_total{result="scheduled"}`;
    /// `None` when the page does not have it (a labelled series appears at
    /// its first observation).
    pub fn get(&self, series: &str) -> Option<f64> {
        self.text
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))?
            .trim()
            .parse()
            .ok()
    }

    /// Like [`MetricsPage::get`], but the series must be there.
    pub fn value(&self, series: &str) -> anyhow::Result<f64> {
        self.get(series)
            .with_context(|| format!("/metrics has no number for {series}"))
    }

    /// The sum of every series of metric `name`, whatever its labels (0
    /// when it has none yet).
    pub fn sum(&self, name: &str) -> f64 {
        self.text
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(name)?;
                let value = match rest.strip_prefix('{') {
                    Some(labelled) => labelled.split_once("} ")?.1,
                    None => rest.strip_prefix(' ')?,
                };
                value.trim().parse::<f64>().ok()
            })
            .sum()
    }
}

/// The store writer's counters.
pub struct StoreWrites {
    /// Writes committed.
    pub writes: f64,
    /// Their summed time from batch start to commit (one observation per
    /// write, so a batch of n counts n times).
    pub seconds: f64,
    /// Transactions (batches) committed.
    pub batches: f64,
    /// Writes in those batches.
    pub batched: f64,
}

impl StoreWrites {
    /// The counters as `page` shows them.
    pub fn read(page: &MetricsPage) -> anyhow::Result<StoreWrites> {
        Ok(StoreWrites {
            writes: page.value("berth_store_write_duration_seconds_count")?,
            seconds: page.value("berth_store_write_duration_seconds_sum")?,
            batches: page.value("berth_store_write_batch_size_count")?,
            batched: page.value("berth_store_write_batch_size_sum")?,
        })
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &StoreWrites) -> StoreWrites {
        StoreWrites {
            writes: self.writes - before.writes,
            seconds: self.seconds - before.seconds,
            batches: self.batches - before.batches,
            batched: self.batched - before.batched,
        }
    }

    /// Writes per transaction.
    pub fn mean_batch(&self) -> f64 {
        self.batched / self.batches.max(1.0)
    }

    /// Mean time from a batch's start to its commit, per write.
    pub fn mean_commit_wait(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.seconds / self.writes.max(1.0))
    }
}
