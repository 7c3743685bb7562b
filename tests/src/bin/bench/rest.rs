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

use anyhow::bail;
use berth_tests::rest::Api;
use reqwest::Method;
use serde_json::Value;

use super::process_stats::CpuTimes;
use super::server_metrics::{MetricsPage, StoreWrites};
use super::server_under_test::{BackendChoice, PodRequests, ServerUnderTest, deployment, exchange};
use super::{ms, percentile};

/// The goal for create and get, on both backends.
const GOAL_P99: Duration = Duration::from_millis(25);
/// Where the create and get phases work.
const WORK_TENANT: &str = "bench";
/// A tenant holding exactly [`LIST_SIZE`] Deployments and nothing else.
const LIST_TENANT: &str = "list100";
/// How many objects the listed collection holds.
const LIST_SIZE: usize = 100;
/// What each Deployment's pods ask for (nothing runs them here).
const REQUESTS: PodRequests = PodRequests {
    cpu: "250m",
    memory: "128Mi",
};

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
    let mut rows = Vec::new();
    for (name, backend) in backends.backends() {
        let target = ServerUnderTest::start(backend, &[]).await;
        eprintln!("{name}: berth server at {}", target.server.process.url(""));
        let load = Load {
            clients,
            run_for,
            server_pid: target.pid(),
        };
        rows.extend(measure(name, &target, &load).await?);
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
async fn measure(
    backend: &'static str,
    target: &ServerUnderTest,
    load: &Load,
) -> anyhow::Result<Vec<Row>> {
    for tenant in [WORK_TENANT, LIST_TENANT] {
        target.create_tenant(tenant).await?;
    }
    let api = &target.api;
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
    let before = StoreWrites::read(&MetricsPage::scrape(api).await?)?;
    let next = Arc::new(AtomicU64::new(0));
    let figures = load
        .run({
            let (api, collection, next) = (api.clone(), collection.clone(), next.clone());
            move |_| {
                let name = format!("web-{}", next.fetch_add(1, Ordering::Relaxed));
                exchange(
                    api.request(Method::POST, &collection)
                        .json(&deployment(&name, 3, REQUESTS)),
                    201,
                )
            }
        })
        .await?;
    let writes = StoreWrites::read(&MetricsPage::scrape(api).await?)?.since(&before);
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
        writes.mean_batch(),
        ms(writes.mean_commit_wait()),
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
                        api.request(Method::POST, &collection).json(&deployment(
                            &format!("web-{n:03}"),
                            3,
                            REQUESTS,
                        )),
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
        let cpu_before = CpuTimes::now(&[self.server_pid])?;
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
        let cpu = CpuTimes::now(&[self.server_pid])?.since(&cpu_before);
        latencies.sort();
        let requests = latencies.len().max(1) as f64;
        Ok(Figures {
            requests: latencies.len(),
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or_default(),
            cpu: CpuSplit {
                server: cpu.processes[0] / requests,
                client: cpu.this_process / requests,
                rest: cpu.rest() / requests,
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
