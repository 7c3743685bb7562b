//! `bench`: Berth's benchmarks. They print figures; they assert nothing.
//!
//! `bench store [--postgres-url URL] [--seconds N]` measures the store on
//! SQLite and on PostgreSQL (a fresh database on the server at
//! `--postgres-url`, default `$DATABASE_URL`): writes/s at 1, 16 and 64
//! concurrent writers, single-key reads/s at 64 readers, and watch delivery
//! latency within the process and, on PostgreSQL, in a second process.
//!
//! `bench etcd [--seconds N]` drives the etcd API with `etcd-client` against
//! a real etcd 3.4 and against `berth server` on SQLite and PostgreSQL.
//!
//! `bench etcd-load --endpoint HOST:PORT [--shape inserts|updates]
//! [--seconds N]` runs one of those put shapes against a server already
//! running, so that a profiler can watch it.
//!
//! `bench rest [--backend sqlite|postgres|both] [--clients 32] [--seconds N]`
//! measures REST API latency under load against `berth server` on a fresh
//! database: create, get and a 100-object list from concurrent clients, with
//! p50, p99, max and requests/s per phase.
//!
//! `bench schedule [--backend sqlite|postgres|both] [--nodes 1000]
//! [--deployments 300] [--replicas 100] [--timeout-seconds 600]` measures
//! how fast Deployments become running pods: a `berth server` with its
//! controllers and scheduler on a fresh database, one `berth agent --runtime
//! sim` with `--nodes` nodes, and `--deployments` Deployments of
//! `--replicas` pods created at once; it prints the create time, scheduling
//! throughput from the bind times one watch saw, create→bind and
//! create→Running latencies, the time until every pod is Running, and the
//! server's and agent's peak RSS, next to their goals.
//!
//! `bench podstart [--pods 50] [--idle-seconds 30]` measures pod startup
//! (create to Running, through the REST watch) on one real Docker agent,
//! one at a time and all at once, beside `docker run -d` alone, and the
//! idle agent's CPU and resident set.
//!
//! `bench dashboard [--pods 1000] [--renders 200] [--changes 100]` measures
//! the dashboard for a tenant of 1,000 sim pods: the server's answer time
//! for the Deployment list, a Deployment's page and a pod's page; a page's
//! bytes on the wire with its assets; and the time from a pod's change to
//! an open page showing it through the live channel.
//!
//! `bench proxy [--seconds 10] [--connections 64]` measures the agent's
//! service proxy with `wrk` against one `httpd` endpoint: directly on its
//! host port, through the node port and through the Service's virtual
//! address from inside a container, kept alive and with a new connection
//! per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use berth_server::store::Store;
use berth_server::store::types::{KeyRange, PutRequest, RangeRequest, WatchRequest};
use berth_tests::db::{TestBackend, TestDb};
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// The revision-log store on SQLite and PostgreSQL.
    Store {
        /// Seconds each throughput figure runs for.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Watch-latency samples per figure.
        #[arg(long, default_value_t = 2000)]
        samples: usize,
        /// Only this backend (`sqlite` or `postgres`).
        #[arg(long)]
        only: Option<String>,
    },
    /// The etcd API against a real etcd and against Berth on both backends.
    Etcd {
        /// Seconds each throughput figure runs for.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Watch-latency samples per target (paced at 200 puts/s).
        #[arg(long, default_value_t = 2000)]
        samples: usize,
        /// Also run `etcdctl check perf` against every target (a minute
        /// each).
        #[arg(long)]
        check_perf: bool,
        /// The load `--check-perf` asks for: `s`, `m`, `l` or `xl`.
        #[arg(long, default_value = "s")]
        check_perf_load: String,
    },
    /// One put shape of `bench etcd` (`inserts`: 64 clients, a connection
    /// and new keys each; `updates`: 64 clients over 8 connections on a
    /// 10,000-key space) against an etcd API already running at
    /// `--endpoint`, to profile the server under it.
    EtcdLoad {
        #[arg(long)]
        endpoint: String,
        #[arg(long, default_value = "updates")]
        shape: String,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// REST API latency under load: create, get and list from concurrent
    /// clients against `berth server` on SQLite and PostgreSQL.
    Rest {
        /// Which backend(s) to measure.
        #[arg(long, value_enum, default_value = "both")]
        backend: server_under_test::BackendChoice,
        /// Concurrent clients.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Seconds each phase runs for.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Scheduling throughput: Deployments to running pods on simulated
    /// nodes, against `berth server` on SQLite and PostgreSQL.
    Schedule {
        /// Which backend(s) to measure.
        #[arg(long, value_enum, default_value = "both")]
        backend: server_under_test::BackendChoice,
        /// Simulated nodes (4 CPU, 16 GiB, 110 pods each).
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// Deployments created.
        #[arg(long, default_value_t = 300)]
        deployments: usize,
        /// Replicas of each Deployment.
        #[arg(long, default_value_t = 100)]
        replicas: u32,
        /// The longest each wait lasts: for the nodes to be Ready, and from
        /// the first create until every pod is Running.
        #[arg(long, default_value_t = 600)]
        timeout_seconds: u64,
    },
    /// Pod startup on one real Docker agent next to `docker run`, and the
    /// idle agent's CPU and memory.
    Podstart {
        /// Pods in each shape (one at a time, all at once).
        #[arg(long, default_value_t = 50)]
        pods: usize,
        /// Seconds the idle agent is watched.
        #[arg(long, default_value_t = 30)]
        idle_seconds: u64,
        /// The longest any wait lasts.
        #[arg(long, default_value_t = 300)]
        timeout_seconds: u64,
    },
    /// The dashboard for a tenant of 1,000 pods: page answer times, bytes
    /// on the wire, and a change's way to an open page.
    Dashboard {
        /// Pods in the tenant.
        #[arg(long, default_value_t = 1000)]
        pods: u32,
        /// Requests per page for the answer-time figures.
        #[arg(long, default_value_t = 200)]
        renders: usize,
        /// Changes for the live figure.
        #[arg(long, default_value_t = 100)]
        changes: usize,
        /// The longest wait for the pods to run.
        #[arg(long, default_value_t = 300)]
        timeout_seconds: u64,
    },
    /// `berth get pods` for a tenant of 1,000 pods: from starting the CLI
    /// to its exit with the table printed.
    Cli {
        /// Pods in the tenant.
        #[arg(long, default_value_t = 1000)]
        pods: u32,
        /// Runs of each command.
        #[arg(long, default_value_t = 50)]
        runs: usize,
        /// The longest wait for the pods to run.
        #[arg(long, default_value_t = 300)]
        timeout_seconds: u64,
    },
    /// The agent's service proxy under `wrk`: an endpoint directly, through
    /// its node port and through its virtual address from a container.
    Proxy {
        /// Seconds each `wrk` run lasts.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// `wrk`'s connections.
        #[arg(long, default_value_t = 64)]
        connections: u32,
        /// `wrk`'s threads.
        #[arg(long, default_value_t = 2)]
        threads: u32,
        /// The longest any wait for the cluster lasts.
        #[arg(long, default_value_t = 120)]
        timeout_seconds: u64,
    },
    /// (internal) The second process of the cross-process latency figure:
    /// watches `--database-url`, prints `ready`, then one JSON line of
    /// latencies in microseconds once `--samples` events have arrived.
    WatchPeer {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        samples: usize,
    },
}

mod cli;
mod dashboard;
mod etcd_api;
mod podstart;
mod process_stats;
mod proxy;
mod rest;
mod schedule;
mod server_metrics;
mod server_under_test;

const VALUE_BYTES: usize = 256;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Bench::Store {
            seconds,
            samples,
            only,
        } => store_bench(Duration::from_secs(seconds), samples, only.as_deref()).await,
        Bench::Etcd {
            seconds,
            samples,
            check_perf,
            check_perf_load,
        } => {
            let check_perf = check_perf.then_some(check_perf_load);
            etcd_api::run(Duration::from_secs(seconds), samples, check_perf).await
        }
        Bench::EtcdLoad {
            endpoint,
            shape,
            seconds,
        } => etcd_api::load(&endpoint, &shape, Duration::from_secs(seconds)).await,
        Bench::Rest {
            backend,
            clients,
            seconds,
        } => rest::run(backend, clients, Duration::from_secs(seconds)).await,
        Bench::Schedule {
            backend,
            nodes,
            deployments,
            replicas,
            timeout_seconds,
        } => {
            let scale = schedule::Scale {
                nodes,
                deployments,
                replicas,
                timeout: Duration::from_secs(timeout_seconds),
            };
            schedule::run(backend, scale).await
        }
        Bench::Podstart {
            pods,
            idle_seconds,
            timeout_seconds,
        } => {
            podstart::run(podstart::Plan {
                pods,
                idle: Duration::from_secs(idle_seconds),
                timeout: Duration::from_secs(timeout_seconds),
            })
            .await
        }
        Bench::Dashboard {
            pods,
            renders,
            changes,
            timeout_seconds,
        } => {
            dashboard::run(dashboard::Plan {
                pods,
                renders,
                changes,
                timeout: Duration::from_secs(timeout_seconds),
            })
            .await
        }
        Bench::Cli {
            pods,
            runs,
            timeout_seconds,
        } => {
            cli::run(cli::Plan {
                pods,
                runs,
                timeout: Duration::from_secs(timeout_seconds),
            })
            .await
        }
        Bench::Proxy {
            seconds,
            connections,
            threads,
            timeout_seconds,
        } => {
            proxy::run(proxy::Plan {
                duration: Duration::from_secs(seconds),
                connections,
                threads,
                timeout: Duration::from_secs(timeout_seconds),
            })
            .await
        }
        Bench::WatchPeer {
            database_url,
            samples,
        } => watch_peer(&database_url, samples).await,
    }
}

async fn store_bench(run_for: Duration, samples: usize, only: Option<&str>) -> anyhow::Result<()> {
    println!(
        "berth store benchmark: {} cores, puts of {VALUE_BYTES}-byte values, {} s per figure",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        run_for.as_secs()
    );
    println!(
        "{:<10} {:<34} {:>12}  detail",
        "backend", "figure", "result"
    );
    for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
        let name = match backend {
            TestBackend::Sqlite => "sqlite",
            TestBackend::Postgres => "postgres",
        };
        if only.is_some_and(|only| only != name) {
            continue;
        }
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        for writers in [1, 16, 64] {
            let (rate, latencies) = writes(&store, writers, run_for).await?;
            println!(
                "{name:<10} {:<34} {:>12}  write latency p50 {} p99 {}",
                format!("writes/s, {writers} writer(s)"),
                format!("{rate:.0}"),
                ms(percentile(&latencies, 0.50)),
                ms(percentile(&latencies, 0.99)),
            );
        }
        let rate = reads(&store, 64, run_for).await?;
        println!(
            "{name:<10} {:<34} {:>12}",
            "single-key reads/s, 64 readers",
            format!("{rate:.0}")
        );
        let latencies = watch_latency_in_process(&store, samples).await?;
        println!(
            "{name:<10} {:<34} {:>12}  p99 {}",
            "watch delivery p50, same process",
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99)),
        );
        if backend == TestBackend::Postgres {
            let latencies = watch_latency_cross_process(&store, &db.url, samples).await?;
            println!(
                "{name:<10} {:<34} {:>12}  p99 {}",
                "watch delivery p50, 2nd process",
                ms(percentile(&latencies, 0.50)),
                ms(percentile(&latencies, 0.99)),
            );
        }
        store.close().await;
    }
    Ok(())
}

/// Puts distinct keys from `writers` tasks for `run_for`; returns writes/s
/// and every write's latency.
async fn writes(
    store: &Store,
    writers: usize,
    run_for: Duration,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let put = PutRequest {
                        key: format!("/bench/w{writers}/{w}/{i}").into_bytes(),
                        value: vec![b'v'; VALUE_BYTES],
                        ..PutRequest::default()
                    };
                    let t = Instant::now();
                    store.put(put).await?;
                    latencies.push(t.elapsed());
                    i += 1;
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    tokio::time::sleep(run_for).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort();
    Ok((rate, all))
}

/// Reads random keys written by the 64-writer run from `readers` tasks.
async fn reads(store: &Store, readers: usize, run_for: Duration) -> anyhow::Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..readers)
        .map(|r| {
            let (store, stop, done) = (store.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("/bench/w64/{}/{}", (r + i as usize) % 64, i % 50);
                    let response = store
                        .range(RangeRequest {
                            range: KeyRange::single(key),
                            ..RangeRequest::default()
                        })
                        .await?;
                    if response.kvs.is_empty() {
                        bail!("read a key that the write figure did not write");
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    tokio::time::sleep(run_for).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Writes `samples` keys under `/bench/lat/`, one every millisecond, each
/// value holding the wall-clock time it was sent.
async fn paced_writes(store: &Store, samples: usize) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    for i in 0..samples {
        tick.tick().await;
        let put = PutRequest {
            key: format!("/bench/lat/{i}").into_bytes(),
            value: now_micros().to_string().into_bytes(),
            ..PutRequest::default()
        };
        store.put(put).await?;
    }
    Ok(())
}

/// A watch on the keys the latency figures write.
async fn watch_latency_keys(store: &Store) -> anyhow::Result<berth_server::store::Watch> {
    Ok(store
        .watch(WatchRequest {
            range: KeyRange::prefix("/bench/lat/"),
            start_revision: 0,
            prev_kv: false,
        })
        .await?)
}

/// Collects `samples` latencies from a watch on `/bench/lat/`.
async fn collect_latencies(
    mut watch: berth_server::store::Watch,
    samples: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(samples);
    while latencies.len() < samples {
        let events = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .context("no watch event for 30 s")?
            .context("the watch ended")??;
        let now = now_micros();
        for event in events {
            let sent: u64 = std::str::from_utf8(&event.kv.value)?.parse()?;
            latencies.push(Duration::from_micros(now.saturating_sub(sent)));
        }
    }
    latencies.sort();
    Ok(latencies)
}

async fn watch_latency_in_process(store: &Store, samples: usize) -> anyhow::Result<Vec<Duration>> {
    store
        .delete(berth_server::store::types::DeleteRequest {
            range: KeyRange::prefix("/bench/lat/"),
            prev_kv: false,
        })
        .await?;
    let watch = watch_latency_keys(store).await?;
    let collector = tokio::spawn(collect_latencies(watch, samples));
    paced_writes(store, samples).await?;
    collector.await?
}

async fn watch_latency_cross_process(
    store: &Store,
    url: &str,
    samples: usize,
) -> anyhow::Result<Vec<Duration>> {
    use tokio::io::AsyncBufReadExt;
    store
        .delete(berth_server::store::types::DeleteRequest {
            range: KeyRange::prefix("/bench/lat/"),
            prev_kv: false,
        })
        .await?;
    let mut peer = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "watch-peer",
            "--database-url",
            url,
            "--samples",
            &samples.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the watch peer")?;
    let mut lines = tokio::io::BufReader::new(peer.stdout.take().context("peer stdout")?).lines();
    if lines.next_line().await?.as_deref() != Some("ready") {
        bail!("the watch peer did not start");
    }
    paced_writes(store, samples).await?;
    let line = lines
        .next_line()
        .await?
        .context("the watch peer ended without figures")?;
    let micros: Vec<u64> = serde_json::from_str(&line)?;
    peer.wait().await?;
    Ok(micros.into_iter().map(Duration::from_micros).collect())
}

async fn watch_peer(url: &str, samples: usize) -> anyhow::Result<()> {
    let store = Store::open(url, &prometheus::Registry::new()).await?;
    let watch = watch_latency_keys(&store).await?;
    println!("ready");
    let latencies = collect_latencies(watch, samples).await?;
    let micros: Vec<u64> = latencies.iter().map(|d| d.as_micros() as u64).collect();
    println!("{}", serde_json::to_string(&micros)?);
    store.close().await;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
