//! `bench etcd`: the etcd API driven by the same client (`etcd-client`),
//! side by side, against a real etcd 3.4 and against Berth on SQLite and on
//! PostgreSQL, with Berth/etcd ratios.
//!
//! Two load shapes for puts: one connection per client and a key of its
//! own per put (inserts), and 64 clients multiplexed over 8 shared
//! connections writing at random over a 10,000-key space that is written
//! once before (updates). Each put figure also has its p99 and its worst
//! latency. The watch figure paces puts at 200/s. With `--check-perf`,
//! `etcdctl check perf` runs against each target too, at the load
//! `--check-perf-load` names (`s` by default).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_tests::db::{TestBackend, TestDb};
use berth_tests::etcd::RealEtcd;
use berth_tests::process::ServerProcess;
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, WatchOptions};

use super::{ms, now_micros, percentile};

/// One figure for every target.
struct Figures {
    puts_1: Rate,
    puts_64: Rate,
    shared_updates: Rate,
    ranges_64: f64,
    cas_16: f64,
    watch_p50: Duration,
    watch_p99: Duration,
}

/// Operations per second, and the latencies of those operations.
#[derive(Clone, Copy, Debug, Default)]
struct Rate {
    per_second: f64,
    p99: Duration,
    max: Duration,
}

pub async fn run(
    run_for: Duration,
    samples: usize,
    check_perf: Option<String>,
) -> anyhow::Result<()> {
    println!(
        "berth etcd API benchmark: etcd-client, {}, {} cores, {} s per figure, 256-byte values",
        crate::process_stats::cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        run_for.as_secs()
    );
    let mut perf = Vec::new();
    let etcd = RealEtcd::start();
    let etcd_figures = measure("etcd 3.4", &etcd.endpoint, run_for, samples).await?;
    if let Some(load) = &check_perf {
        perf.push(("etcd 3.4".to_owned(), run_check_perf(&etcd.endpoint, load)));
    }
    drop(etcd);
    let mut rows = vec![("etcd 3.4".to_owned(), etcd_figures)];
    for (name, backend) in [
        ("berth sqlite", TestBackend::Sqlite),
        ("berth postgres", TestBackend::Postgres),
    ] {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir()?;
        let server = ServerProcess::start(
            &[
                "--data-dir",
                dir.path().to_str().context("utf-8 path")?,
                "--database-url",
                &db.url,
                "--etcd-auth",
                "none",
            ],
            &[],
        );
        let endpoint = server.grpc_addr.to_string();
        let figures = measure(name, &endpoint, run_for, samples).await?;
        if let Some(load) = &check_perf {
            perf.push((name.to_owned(), run_check_perf(&endpoint, load)));
        }
        rows.push((name.to_owned(), figures));
    }
    println!();
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>12} {:>12} {:>10} {:>10}",
        "target",
        "put/s 1",
        "put/s 64",
        "shared/s",
        "range/s 64",
        "cas txn/s 16",
        "watch p50",
        "watch p99"
    );
    for (name, f) in &rows {
        println!(
            "{name:<16} {:>9.0} {:>9.0} {:>9.0} {:>12.0} {:>12.0} {:>10} {:>10}",
            f.puts_1.per_second,
            f.puts_64.per_second,
            f.shared_updates.per_second,
            f.ranges_64,
            f.cas_16,
            ms(f.watch_p50),
            ms(f.watch_p99)
        );
    }
    let base = &rows[0].1;
    for (name, f) in &rows[1..] {
        println!(
            "{name:<16} {:>8.2}x {:>8.2}x {:>8.2}x {:>11.2}x {:>11.2}x {:>9.2}x {:>9.2}x   (Berth/etcd; latency: lower is better)",
            f.puts_1.per_second / base.puts_1.per_second,
            f.puts_64.per_second / base.puts_64.per_second,
            f.shared_updates.per_second / base.shared_updates.per_second,
            f.ranges_64 / base.ranges_64,
            f.cas_16 / base.cas_16,
            f.watch_p50.as_secs_f64() / base.watch_p50.as_secs_f64(),
            f.watch_p99.as_secs_f64() / base.watch_p99.as_secs_f64(),
        );
    }
    println!();
    println!("put latency: p99 / max");
    println!(
        "{:<16} {:>22} {:>22} {:>22}",
        "target", "1 client", "64 clients", "64 over 8 connections"
    );
    for (name, f) in &rows {
        let both = |r: Rate| format!("{} / {}", ms(r.p99), ms(r.max));
        println!(
            "{name:<16} {:>22} {:>22} {:>22}",
            both(f.puts_1),
            both(f.puts_64),
            both(f.shared_updates)
        );
    }
    if let Some(load) = &check_perf {
        println!();
        println!("etcdctl check perf --load={load}");
        for (name, output) in perf {
            println!("{name}:");
            for line in output.lines() {
                println!("  {line}");
            }
        }
    }
    Ok(())
}

/// What `etcdctl check perf --load=LOAD` prints (its verdicts and
/// figures).
fn run_check_perf(endpoint: &str, load: &str) -> String {
    let output = berth_tests::etcd::etcdctl_with_timeout(
        endpoint,
        &["check", "perf", &format!("--load={load}")],
        None,
        Some(Duration::from_secs(180)),
    );
    let text = format!("{}{}", output.stdout, output.stderr);
    text.lines()
        .filter(|l| {
            l.contains("PASS")
                || l.contains("FAIL")
                || l.contains("Slowest")
                || l.contains("Throughput")
                || l.contains("Stddev")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn measure(
    name: &str,
    endpoint: &str,
    run_for: Duration,
    samples: usize,
) -> anyhow::Result<Figures> {
    eprintln!("measuring {name} at {endpoint}");
    let puts_1 = rate(endpoint, 1, 1, run_for, |mut c, w, i| async move {
        c.put(format!("/bench/p1/{w}/{i}"), vec![b'v'; 256], None)
            .await
            .map(|_| ())
    })
    .await?;
    let puts_64 = inserts_64(endpoint, run_for).await?;
    let shared_updates = shared_updates(endpoint, run_for).await?;
    let ranges_64 = rate(endpoint, 64, 64, run_for, |mut c, w, i| async move {
        let answer = c.get(format!("/bench/p64/{w}/{}", i % 10), None).await?;
        assert_eq!(
            answer.kvs().len(),
            1,
            "the key was written by the put figure"
        );
        Ok(())
    })
    .await?
    .per_second;
    // Compare-and-swap: each client bumps its own key guarded by its
    // mod_revision; every round is a read and a txn whose compare holds.
    let cas_16 = rate(endpoint, 16, 16, run_for, |mut c, w, i| async move {
        let key = format!("/bench/cas/{w}");
        let current = c.get(key.clone(), None).await?;
        let revision = current.kvs().first().map_or(0, |kv| kv.mod_revision());
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::put(key, i.to_string(), None)]);
        let answer = c.txn(txn).await?;
        assert!(answer.succeeded(), "a lone client's compare-and-swap holds");
        Ok(())
    })
    .await?
    .per_second;
    let (watch_p50, watch_p99) = watch_latency(endpoint, samples).await?;
    Ok(Figures {
        puts_1,
        puts_64,
        shared_updates,
        ranges_64,
        cas_16,
        watch_p50,
        watch_p99,
    })
}

/// Keys in the shared shape's key space.
const SHARED_KEYS: u64 = 10_000;

/// 64 clients, a connection each, each put a key of its own.
async fn inserts_64(endpoint: &str, run_for: Duration) -> anyhow::Result<Rate> {
    rate(endpoint, 64, 64, run_for, |mut c, w, i| async move {
        c.put(format!("/bench/p64/{w}/{i}"), vec![b'v'; 256], None)
            .await
            .map(|_| ())
    })
    .await
}

/// 64 clients over 8 shared connections updating a 10,000-key space,
/// written once before so that the figure is of updates.
async fn shared_updates(endpoint: &str, run_for: Duration) -> anyhow::Result<Rate> {
    let mut filler = Client::connect([endpoint], None).await?;
    for key in 0..SHARED_KEYS {
        filler
            .put(format!("/bench/shared/{key:05}"), vec![b'v'; 256], None)
            .await?;
    }
    rate(endpoint, 64, 8, run_for, |mut c, w, i| async move {
        let key = (w as u64 * 7_919 + i * 104_729) % SHARED_KEYS;
        c.put(format!("/bench/shared/{key:05}"), vec![b'u'; 256], None)
            .await
            .map(|_| ())
    })
    .await
}

/// `bench etcd-load`: one put shape against an endpoint already running,
/// for `seconds`, so that a profiler can watch the server under it.
pub async fn load(endpoint: &str, shape: &str, run_for: Duration) -> anyhow::Result<()> {
    let figure = match shape {
        "inserts" => inserts_64(endpoint, run_for).await?,
        "updates" => shared_updates(endpoint, run_for).await?,
        other => anyhow::bail!("unknown shape {other:?}: inserts or updates"),
    };
    println!(
        "{shape} at {endpoint}: {:.0} puts/s, p99 {}, max {} ({})",
        figure.per_second,
        ms(figure.p99),
        ms(figure.max),
        crate::process_stats::cpu_model()
    );
    Ok(())
}

/// Runs `op` from `clients` clients sharing `connections` connections
/// (client `w` uses connection `w % connections`) for `run_for`; returns
/// operations/s and their latencies. Each rate counts the round trips the
/// clients complete.
async fn rate<F, Fut>(
    endpoint: &str,
    clients: usize,
    connections: usize,
    run_for: Duration,
    op: F,
) -> anyhow::Result<Rate>
where
    F: Fn(Client, usize, u64) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = Result<(), etcd_client::Error>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut shared = Vec::with_capacity(connections);
    for _ in 0..connections {
        shared.push(Client::connect([endpoint], None).await?);
    }
    let mut tasks = Vec::new();
    for w in 0..clients {
        let client = shared[w % connections].clone();
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                op(client.clone(), w, i).await?;
                latencies.push(started.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(run_for).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    latencies.sort();
    Ok(Rate {
        per_second: done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
    })
}

/// Paced puts, 200 a second, each carrying its send time; a watcher on
/// another connection measures when each arrives.
async fn watch_latency(endpoint: &str, samples: usize) -> anyhow::Result<(Duration, Duration)> {
    let mut watcher = Client::connect([endpoint], None).await?;
    let mut stream = watcher
        .watch("/bench/lat/", Some(WatchOptions::new().with_prefix()))
        .await?;
    let collector = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(samples);
        while latencies.len() < samples {
            let response = tokio::time::timeout(Duration::from_secs(30), stream.message())
                .await
                .context("no watch event for 30 s")??
                .context("the watch ended")?;
            let now = now_micros();
            for event in response.events() {
                let sent: u64 = event
                    .kv()
                    .context("an event without kv")?
                    .value_str()?
                    .parse()?;
                latencies.push(Duration::from_micros(now.saturating_sub(sent)));
            }
        }
        latencies.sort();
        anyhow::Ok(latencies)
    });
    let mut writer = Client::connect([endpoint], None).await?;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for i in 0..samples {
        tick.tick().await;
        writer
            .put(format!("/bench/lat/{i}"), now_micros().to_string(), None)
            .await?;
    }
    let latencies = collector.await??;
    Ok((percentile(&latencies, 0.50), percentile(&latencies, 0.99)))
}
