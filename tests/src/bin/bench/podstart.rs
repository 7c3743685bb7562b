//! `bench podstart`: how fast a pod of an image already on the node runs,
//! on one real `berth agent` over the host's Docker engine, next to
//! `docker run` alone (the floor), with the same CPU and memory limits;
//! then what the agent costs while idle.
//!
//! A `berth server` on a fresh SQLite database and one Docker agent. Pods
//! are the test image running `sleep` (no pull: the image is present, as
//! kubelet's 1–2 s figure assumes). Two shapes, each measured the same way
//! for Berth and for `docker run -d`:
//!
//! - one at a time: each pod is created once the previous one runs;
//! - a burst: every pod created at once, as a Deployment scaled up does.
//!
//! A pod's startup is from just before its create request to the first
//! moment a REST watch on the tenant's pods (opened before the first
//! create) shows it `Running`. A `docker run -d`'s is the command's wall
//! time: it returns once the container is started.
//!
//! With every pod of the burst running, the agent's CPU use and resident
//! set are read over `--idle-seconds`.
//!
//! Every wait ends at `--timeout-seconds`; the containers, the server and
//! the agent are removed on the way out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_tests::db::TestBackend;
use berth_tests::docker::{EngineCleanup, TEST_IMAGE, ensure_test_image};
use berth_tests::process::AgentProcess;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::process_stats::{CpuTimes, Memory};
use super::server_under_test::{ServerUnderTest, exchange};
use super::{ms, percentile};

/// The tenant the pods run in.
const TENANT: &str = "bench";
/// Each pod's limits, and the same for `docker run`: a container starts
/// inside its CPU quota, so a tiny one (10m) alone adds over a second to
/// any start, Berth's or `docker run`'s.
const LIMIT_CPU: &str = "100m";
const LIMIT_MEMORY: &str = "64Mi";
const FLOOR_CPUS: &str = "0.1";
const FLOOR_MEMORY: &str = "64m";
/// The goals the figures are compared with.
const GOAL_P50: Duration = Duration::from_secs(1);
const GOAL_P99: Duration = Duration::from_secs(2);
const GOAL_OVER_DOCKER: Duration = Duration::from_millis(300);
const GOAL_IDLE_CPU: f64 = 0.01;
const GOAL_IDLE_RSS: u64 = 40 << 20;

/// How a run is sized.
pub struct Plan {
    /// Pods in each shape.
    pub pods: usize,
    /// How long the idle agent is watched.
    pub idle: Duration,
    /// The longest any wait lasts.
    pub timeout: Duration,
}

/// When the watch first saw each pod Running, by name.
type SeenRunning = Arc<Mutex<HashMap<String, Instant>>>;

/// Runs the benchmark and prints its figures.
pub async fn run(plan: Plan) -> anyhow::Result<()> {
    ensure_test_image();
    let cpu = super::process_stats::cpu_model();
    println!(
        "berth pod startup benchmark: {} pods of {TEST_IMAGE} per shape, one Docker agent, \
         SQLite; CPU: {cpu}",
        plan.pods
    );
    println!("{:<30} {:>10} {:>10} {:>10}", "shape", "p50", "p99", "max");

    let floor_serial = docker_runs(plan.pods, false).await?;
    print_row("docker run -d, one at a time", &floor_serial);
    let floor_burst = docker_runs(plan.pods, true).await?;
    print_row("docker run -d, all at once", &floor_burst);

    let server = ServerUnderTest::start(TestBackend::Sqlite, &["--controllers=true"]).await;
    server.create_tenant(TENANT).await?;
    let node = format!("bench-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let _cleanup = EngineCleanup::new(&node, &[TENANT]);
    let agent = AgentProcess::docker(&server.server, &node, &["--heartbeat-ms", "10000"]);
    wait_ready(&server, &node, plan.timeout).await?;

    let seen: SeenRunning = Arc::default();
    let watch = tokio::spawn(record_running(server.api.clone(), seen.clone()));

    let serial = berth_serial(&server, &seen, plan.pods, plan.timeout).await?;
    print_row("berth, one at a time", &serial);
    let burst = berth_burst(&server, &seen, plan.pods, plan.timeout).await?;
    print_row("berth, all at once", &burst);
    watch.abort();

    // The agent with the burst's pods running and nothing to do.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = CpuTimes::now(&[agent.id()])?;
    let started = Instant::now();
    tokio::time::sleep(plan.idle).await;
    let used = CpuTimes::now(&[agent.id()])?.since(&before);
    let idle_cpu = used.processes[0] / started.elapsed().as_secs_f64();
    let memory = Memory::of(agent.id())?;
    println!(
        "idle agent with {} pods over {} s: {:.2} % of a core, RSS {:.1} MiB (peak {:.1} MiB)",
        plan.pods,
        plan.idle.as_secs(),
        idle_cpu * 100.0,
        memory.current as f64 / (1 << 20) as f64,
        memory.peak as f64 / (1 << 20) as f64
    );

    println!();
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    let p50 = percentile(&serial, 0.5);
    let p99 = percentile(&serial, 0.99);
    let floor_p50 = percentile(&floor_serial, 0.5);
    println!(
        "goal p50 ≤ 1 s (one at a time): {} ({}); all at once: {}",
        verdict(p50 <= GOAL_P50),
        ms(p50),
        ms(percentile(&burst, 0.5))
    );
    println!(
        "goal p99 ≤ 2 s (one at a time): {} ({}); all at once: {}",
        verdict(p99 <= GOAL_P99),
        ms(p99),
        ms(percentile(&burst, 0.99))
    );
    println!(
        "goal p50 within 0.3 s of docker run's: {} (berth {} vs docker {}, one at a time)",
        verdict(p50 <= floor_p50 + GOAL_OVER_DOCKER),
        ms(p50),
        ms(floor_p50)
    );
    println!(
        "goal idle agent ≤ 1 % of a core and ≤ 40 MiB: {} ({:.2} %, {:.1} MiB)",
        verdict(idle_cpu <= GOAL_IDLE_CPU && memory.current <= GOAL_IDLE_RSS),
        idle_cpu * 100.0,
        memory.current as f64 / (1 << 20) as f64
    );
    drop(agent);
    Ok(())
}

fn print_row(shape: &str, sorted: &[Duration]) {
    println!(
        "{shape:<30} {:>10} {:>10} {:>10}",
        ms(percentile(sorted, 0.5)),
        ms(percentile(sorted, 0.99)),
        ms(sorted.last().copied().unwrap_or_default())
    );
}

/// `docker run -d` of `count` sleeping containers of the test image, one
/// at a time or all at once: each command's wall time, sorted. The
/// containers are removed afterwards.
async fn docker_runs(count: usize, at_once: bool) -> anyhow::Result<Vec<Duration>> {
    let label = format!("berth.bench.floor={:08x}", rand::random::<u32>());
    let run = |label: String| async move {
        let started = Instant::now();
        let output = tokio::process::Command::new("docker")
            .args(["run", "-d", "--label", &label])
            .args(["--cpus", FLOOR_CPUS, "--memory", FLOOR_MEMORY])
            .args([TEST_IMAGE, "sleep", "3600"])
            .output()
            .await
            .context("running docker run")?;
        if !output.status.success() {
            bail!(
                "docker run failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        anyhow::Ok(started.elapsed())
    };
    let mut times = Vec::with_capacity(count);
    let result = if at_once {
        let mut runs = JoinSet::new();
        for _ in 0..count {
            runs.spawn(run(label.clone()));
        }
        let mut result = Ok(());
        while let Some(done) = runs.join_next().await {
            match done.context("a docker run task")? {
                Ok(time) => times.push(time),
                Err(error) => result = Err(error),
            }
        }
        result
    } else {
        let mut result = Ok(());
        for _ in 0..count {
            match run(label.clone()).await {
                Ok(time) => times.push(time),
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
        }
        result
    };
    remove_labelled(&label).await;
    result?;
    times.sort();
    Ok(times)
}

/// Removes every container with `label`.
async fn remove_labelled(label: &str) {
    let listed = tokio::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={label}")])
        .output()
        .await;
    let Ok(listed) = listed else { return };
    let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if !ids.is_empty() {
        let _ = tokio::process::Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output()
            .await;
    }
}

async fn wait_ready(server: &ServerUnderTest, node: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let response = server
            .api
            .request(reqwest::Method::GET, &format!("/api/v1/nodes/{node}"))
            .send()
            .await;
        if let Ok(response) = response
            && let Ok(node) = response.json::<Value>().await
            && berth_tests::cluster::ready_status(&node).as_deref() == Some("True")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("node {node} was not Ready within {} s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Follows the REST watch of the tenant's pods and notes when each is
/// first seen Running.
async fn record_running(api: berth_tests::rest::Api, seen: SeenRunning) -> anyhow::Result<()> {
    let response = api
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/tenants/{TENANT}/pods?watch=true"),
        )
        .send()
        .await
        .context("opening the pod watch")?;
    let mut body = response.bytes_stream();
    let mut pending = Vec::new();
    while let Some(chunk) = body.next().await {
        pending.extend_from_slice(&chunk.context("reading the pod watch")?);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            let pod = &event["object"];
            if pod["status"]["phase"] == "Running"
                && let Some(name) = pod["metadata"]["name"].as_str()
            {
                let now = Instant::now();
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(name.to_owned())
                    .or_insert(now);
            }
        }
    }
    Ok(())
}

fn sleeping_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [{
                "name": "main",
                "image": TEST_IMAGE,
                "command": ["sleep", "3600"],
                "resources": {"limits": {"cpu": LIMIT_CPU, "memory": LIMIT_MEMORY}},
            }],
            "terminationGracePeriodSeconds": 0,
        },
    })
}

async fn create_pod(server: &ServerUnderTest, name: &str) -> anyhow::Result<Instant> {
    let started = Instant::now();
    exchange(
        server
            .api
            .request(
                reqwest::Method::POST,
                &format!("/api/v1/tenants/{TENANT}/pods"),
            )
            .json(&sleeping_pod(name)),
        201,
    )
    .await
    .with_context(|| format!("creating pod {name}"))?;
    Ok(started)
}

/// Waits until the watch saw every one of `names` Running; answers each
/// one's startup, sorted.
async fn startups(
    seen: &SeenRunning,
    created: &[(String, Instant)],
    timeout: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let deadline = Instant::now() + timeout;
    loop {
        let times: Option<Vec<Duration>> = {
            let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            created
                .iter()
                .map(|(name, at)| seen.get(name).map(|running| running.duration_since(*at)))
                .collect()
        };
        if let Some(mut times) = times {
            times.sort();
            return Ok(times);
        }
        if Instant::now() > deadline {
            bail!("not every pod was Running within {} s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One pod at a time: each is created once the previous one runs.
async fn berth_serial(
    server: &ServerUnderTest,
    seen: &SeenRunning,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let mut all = Vec::with_capacity(count);
    for index in 0..count {
        let name = format!("serial-{index}");
        let at = create_pod(server, &name).await?;
        all.extend(startups(seen, &[(name, at)], timeout).await?);
    }
    all.sort();
    // They go before the burst, so that the burst starts on an idle node.
    for index in 0..count {
        exchange(
            server.api.request(
                reqwest::Method::DELETE,
                &format!("/api/v1/tenants/{TENANT}/pods/serial-{index}"),
            ),
            200,
        )
        .await?;
    }
    Ok(all)
}

/// Every pod created at once.
async fn berth_burst(
    server: &ServerUnderTest,
    seen: &SeenRunning,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Duration>> {
    // Let the serial pods' containers go first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut creates = JoinSet::new();
    for index in 0..count {
        let api = server.api.clone();
        let name = format!("burst-{index}");
        creates.spawn(async move {
            let started = Instant::now();
            exchange(
                api.request(
                    reqwest::Method::POST,
                    &format!("/api/v1/tenants/{TENANT}/pods"),
                )
                .json(&sleeping_pod(&name)),
                201,
            )
            .await
            .with_context(|| format!("creating pod {name}"))?;
            anyhow::Ok((name, started))
        });
    }
    let mut created = Vec::with_capacity(count);
    while let Some(done) = creates.join_next().await {
        created.push(done.context("a create task")??);
    }
    startups(seen, &created, timeout).await
}
