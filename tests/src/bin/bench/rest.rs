//! `bench rest`: the REST API's latency under load. For each backend a real
//! `berth server` on a fresh database answers `--clients` concurrent clients
//! (tokio tasks sharing one keep-alive `reqwest::Client`, as SDKs do), phase
//! after phase: create Deployments, get them back by name, and list a
//! collection of exactly 100. Two reference phases come first, to show where
//! the time goes: `/healthz` (HTTP alone) and `/api/v1/users/me` (HTTP plus
//! per-request authentication, no object store).
//!
//! Every request's latency is the time from sending it to having read its
//! whole answer; every answer's status is checked, and one wrong status ends
//! the run.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_tests::db::{TestBackend, TestDb};
use berth_tests::process::TestServer;
use berth_tests::rest::Api;
use reqwest::Method;
use serde_json::{Value, json};

use super::{ms, percentile};

const ADMIN_EMAIL: &str = "admin@berth.local";
const ADMIN_PASSWORD: &str = "bench-admin-password";
/// The goal for create and get, on both backends.
const GOAL_P99: Duration = Duration::from_millis(25);
/// Where the create and get phases work.
const WORK_TENANT: &str = "bench";
/// A tenant holding exactly [`LIST_SIZE`] Deployments and nothing else.
const LIST_TENANT: &str = "list100";
/// How many objects the listed collection holds.
const LIST_SIZE: usize = 100;

/// Which backends `bench rest` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// An SQLite file in a temp dir.
    Sqlite,
    /// A fresh database on the PostgreSQL server named by `DATABASE_URL`.
    Postgres,
    /// SQLite, then PostgreSQL.
    Both,
}

impl BackendChoice {
    fn backends(self) -> Vec<(&'static str, TestBackend)> {
        let sqlite = ("SQLite", TestBackend::Sqlite);
        let postgres = ("PostgreSQL", TestBackend::Postgres);
        match self {
            BackendChoice::Sqlite => vec![sqlite],
            BackendChoice::Postgres => vec![postgres],
            BackendChoice::Both => vec![sqlite, postgres],
        }
    }
}

/// One phase's figures.
struct Figures {
    requests: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// CPU time per request, in seconds, while the phase ran.
    cpu: CpuSplit,
}

/// One row of the final table.
struct Row {
    backend: &'static str,
    phase: &'static str,
    figures: Figures,
    /// Whether the goal applies to this phase.
    has_goal: bool,
}

/// Runs the benchmark on `backends` with `clients` concurrent clients,
/// `run_for` per phase, and prints a Markdown table.
pub async fn run(backends: BackendChoice, clients: usize, run_for: Duration) -> anyhow::Result<()> {
    println!(
        "berth REST benchmark: {} cores shared by server and load client, {clients} clients \
         on one keep-alive reqwest::Client, {} s per phase",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        run_for.as_secs()
    );
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build measures a debug server; use --release for figures");
    }
    let mut rows = Vec::new();
    for (name, backend) in backends.backends() {
        let db = TestDb::new(backend).await;
        let server = TestServer::start(&db.url, &["--admin-password", ADMIN_PASSWORD]);
        let api = Api::new(server.process.url(""))
            .login(ADMIN_EMAIL, ADMIN_PASSWORD)
            .await;
        eprintln!("{name}: berth server at {}", server.process.url(""));
        let load = Load {
            clients,
            run_for,
            server_pid: server.process.child.id(),
        };
        rows.extend(measure(name, &api, &load).await?);
    }
    println!();
    println!(
        "| backend | phase | requests/s | p50 | p99 | max | requests \
         | CPU ms/request: server / load client / rest of machine | goal: p99 ≤ 25 ms |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in &rows {
        let f = &row.figures;
        let goal = if !row.has_goal {
            "—"
        } else if f.p99 <= GOAL_P99 {
            "met"
        } else {
            "**missed**"
        };
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {:.3} / {:.3} / {:.3} | {goal} |",
            row.backend,
            row.phase,
            f.per_second,
            ms(f.p50),
            ms(f.p99),
            ms(f.max),
            f.requests,
            f.cpu.server * 1000.0,
            f.cpu.client * 1000.0,
            f.cpu.rest * 1000.0,
        );
    }
    Ok(())
}

/// Every phase against one server, signed in as `api`.
async fn measure(backend: &'static str, api: &Api, load: &Load) -> anyhow::Result<Vec<Row>> {
    for tenant in [WORK_TENANT, LIST_TENANT] {
        exchange(
            api.request(Method::POST, "/api/v1/tenants")
                .json(&json!({"name": tenant})),
            201,
        )
        .await
        .with_context(|| format!("creating tenant {tenant}"))?;
    }
    fill_list_tenant(api, load.clients).await?;
    // Every client's connection is open before the first figure.
    Load {
        run_for: Duration::from_millis(500),
        ..*load
    }
    .run({
        let api = api.clone();
        move |_| exchange(api.request(Method::GET, "/healthz"), 200)
    })
    .await?;

    let mut rows = Vec::new();
    let mut row = |phase: &'static str, figures: Figures, has_goal: bool| {
        eprintln!(
            "{backend} {phase}: {:.0}/s, p50 {}, p99 {}, max {}; CPU/request: \
             server {:.3} ms, client {:.3} ms, rest {:.3} ms",
            figures.per_second,
            ms(figures.p50),
            ms(figures.p99),
            ms(figures.max),
            figures.cpu.server * 1000.0,
            figures.cpu.client * 1000.0,
            figures.cpu.rest * 1000.0,
        );
        rows.push(Row {
            backend,
            phase,
            figures,
            has_goal,
        });
    };

    let figures = load
        .run({
            let api = api.clone();
            move |_| exchange(api.request(Method::GET, "/healthz"), 200)
        })
        .await?;
    row(
        "reference: GET /healthz (no auth, no store)",
        figures,
        false,
    );

    let figures = load
        .run({
            let api = api.clone();
            move |_| exchange(api.request(Method::GET, "/api/v1/users/me"), 200)
        })
        .await?;
    row(
        "reference: GET /api/v1/users/me (auth only)",
        figures,
        false,
    );

    let collection = format!("/api/v1/tenants/{WORK_TENANT}/deployments");
    let before = StoreWrites::scrape(api).await?;
    let next = Arc::new(AtomicU64::new(0));
    let figures = load
        .run({
            let (api, collection, next) = (api.clone(), collection.clone(), next.clone());
            move |_| {
                let name = format!("web-{}", next.fetch_add(1, Ordering::Relaxed));
                exchange(
                    api.request(Method::POST, &collection)
                        .json(&deployment(&name)),
                    201,
                )
            }
        })
        .await?;
    let writes = StoreWrites::scrape(api).await?.since(&before);
    // Every name handed out was created: a failed create ends the run.
    let created = next.load(Ordering::Relaxed);
    if created == 0 {
        bail!("the create phase created nothing");
    }
    eprintln!(
        "{backend} create: the store committed {:.0} writes in {:.0} transactions \
         (mean batch {:.1}), mean {} from batch start to commit",
        writes.writes,
        writes.batches,
        writes.batched / writes.batches.max(1.0),
        ms(Duration::from_secs_f64(
            writes.seconds / writes.writes.max(1.0)
        )),
    );
    row("create Deployment", figures, true);

    let figures = load
        .run({
            let (api, collection) = (api.clone(), collection.clone());
            move |_| {
                let name = format!("web-{}", rand::random_range(0..created));
                exchange(
                    api.request(Method::GET, &format!("{collection}/{name}")),
                    200,
                )
            }
        })
        .await?;
    row("get Deployment by name", figures, true);

    let list = format!("/api/v1/tenants/{LIST_TENANT}/deployments");
    let bytes = check_list(api, &list).await?;
    let figures = load
        .run({
            let (api, list) = (api.clone(), list.clone());
            move |_| exchange(api.request(Method::GET, &list), 200)
        })
        .await?;
    eprintln!("{backend} list: each answer is {bytes} bytes of JSON");
    row("list 100 Deployments (one page)", figures, false);
    Ok(rows)
}

/// Creates Deployments `web-000` … `web-099` in [`LIST_TENANT`], from
/// `clients` tasks.
async fn fill_list_tenant(api: &Api, clients: usize) -> anyhow::Result<()> {
    let collection = format!("/api/v1/tenants/{LIST_TENANT}/deployments");
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (api, collection, next) = (api.clone(), collection.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= LIST_SIZE as u64 {
                        return anyhow::Ok(());
                    }
                    exchange(
                        api.request(Method::POST, &collection)
                            .json(&deployment(&format!("web-{n:03}"))),
                        201,
                    )
                    .await?;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Checks that `list` answers exactly [`LIST_SIZE`] items on one page;
/// answers the size of the answer in bytes.
async fn check_list(api: &Api, list: &str) -> anyhow::Result<usize> {
    let response = api.request(Method::GET, list).send().await?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    if status != 200 {
        bail!("listing {list} answered {status}");
    }
    let value: Value = serde_json::from_slice(&body)?;
    let items = value["items"].as_array().map_or(0, Vec::len);
    if items != LIST_SIZE || value["metadata"]["continue"].is_string() {
        bail!("{list} lists {items} items (or more pages), not exactly {LIST_SIZE}");
    }
    Ok(body.len())
}

/// Sends `request`, reads the whole answer, and fails unless its status is
/// `expected`.
async fn exchange(request: reqwest::RequestBuilder, expected: u16) -> anyhow::Result<()> {
    let response = request.send().await.context("sending a request")?;
    let status = response.status().as_u16();
    let body = response.bytes().await.context("reading an answer")?;
    if status != expected {
        bail!(
            "answered {status}, not {expected}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

/// How a phase loads the server.
#[derive(Clone, Copy)]
struct Load {
    /// Concurrent clients, each with one request in flight.
    clients: usize,
    /// How long a phase lasts.
    run_for: Duration,
    /// The server's process id, for its CPU time.
    server_pid: u32,
}

impl Load {
    /// Runs `request` in a loop from every client for `run_for`; `request`
    /// gets the client's number. Requests/s counts the requests every
    /// client completed over the time until the last one finished.
    async fn run<F, Fut>(&self, request: F) -> anyhow::Result<Figures>
    where
        F: Fn(usize) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send,
    {
        let cpu_before = CpuTimes::now(self.server_pid)?;
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks: Vec<_> = (0..self.clients)
            .map(|client| {
                let (stop, request) = (stop.clone(), request.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        request(client).await?;
                        latencies.push(sent.elapsed());
                    }
                    anyhow::Ok(latencies)
                })
            })
            .collect();
        tokio::time::sleep(self.run_for).await;
        stop.store(true, Ordering::Relaxed);
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await??);
        }
        let elapsed = started.elapsed();
        let cpu = CpuTimes::now(self.server_pid)?.since(&cpu_before);
        latencies.sort();
        let requests = latencies.len().max(1) as f64;
        Ok(Figures {
            requests: latencies.len(),
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or_default(),
            cpu: CpuSplit {
                server: cpu.server / requests,
                client: cpu.client / requests,
                rest: (cpu.machine - cpu.server - cpu.client).max(0.0) / requests,
            },
        })
    }
}

/// CPU seconds (user and system) per request: the server process, this
/// process (the load client), and the rest of the machine (PostgreSQL, and
/// anything else that ran: a busy machine shows here).
struct CpuSplit {
    server: f64,
    client: f64,
    rest: f64,
}

/// CPU seconds used so far, from `/proc` (Linux).
struct CpuTimes {
    server: f64,
    client: f64,
    machine: f64,
}

/// `/proc`'s unit of CPU time (`USER_HZ`), 100 on Linux everywhere.
const TICKS_PER_SECOND: f64 = 100.0;

impl CpuTimes {
    fn now(server_pid: u32) -> anyhow::Result<CpuTimes> {
        Ok(CpuTimes {
            server: process_cpu(&format!("/proc/{server_pid}/stat"))?,
            client: process_cpu("/proc/self/stat")?,
            machine: machine_cpu()?,
        })
    }

    fn since(&self, before: &CpuTimes) -> CpuTimes {
        CpuTimes {
            server: self.server - before.server,
            client: self.client - before.client,
            machine: self.machine - before.machine,
        }
    }
}

/// A process's user plus system time, every thread included.
fn process_cpu(stat_path: &str) -> anyhow::Result<f64> {
    let stat =
        std::fs::read_to_string(stat_path).with_context(|| format!("reading {stat_path}"))?;
    // The command name may hold spaces; the fields after it are plain.
    // utime and stime are fields 14 and 15; the third comes first here.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .with_context(|| format!("{stat_path} is shorter than expected"))?
            .parse()?)
    };
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
}

/// Every core's busy time (all but idle and iowait), from `/proc/stat`.
fn machine_cpu() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat has no cpu line")?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already
    // in user).
    let busy: f64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Ok(busy / TICKS_PER_SECOND)
}

/// The store writer's counters, read from the server's `/metrics`.
struct StoreWrites {
    /// Writes committed.
    writes: f64,
    /// Their summed time from batch start to commit (one observation per
    /// write, so a batch of n counts n times).
    seconds: f64,
    /// Transactions (batches) committed.
    batches: f64,
    /// Writes in those batches.
    batched: f64,
}

impl StoreWrites {
    async fn scrape(api: &Api) -> anyhow::Result<StoreWrites> {
        let text = api
            .request(Method::GET, "/metrics")
            .send()
            .await?
            .text()
            .await?;
        let value = |name: &str| -> anyhow::Result<f64> {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .with_context(|| format!("/metrics has no {name}"))?
                .trim()
                .parse()
                .with_context(|| format!("{name} is not a number"))
        };
        Ok(StoreWrites {
            writes: value("berth_store_write_duration_seconds_count")?,
            seconds: value("berth_store_write_duration_seconds_sum")?,
            batches: value("berth_store_write_batch_size_count")?,
            batched: value("berth_store_write_batch_size_sum")?,
        })
    }

    fn since(&self, before: &StoreWrites) -> StoreWrites {
        StoreWrites {
            writes: self.writes - before.writes,
            seconds: self.seconds - before.seconds,
            batches: self.batches - before.batches,
            batched: self.batched - before.batched,
        }
    }
}

/// A Deployment as people write them: labels, a selector, one container
/// with a named port, requests and limits, and a readiness probe.
fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": {"app": name, "tier": "web", "team": "shop"},
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "web"}},
                "spec": {"containers": [{
                    "name": "web",
                    "image": "registry.example.com/shop/web:1.4.2",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "128Mi"},
                        "limits": {"cpu": "1", "memory": "256Mi"},
                    },
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http"},
                        "periodSeconds": 5,
                    },
                }]},
            },
        },
    })
}
