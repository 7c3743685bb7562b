//! `bench schedule`: how fast Deployments become running pods. For each
//! backend: a fresh database, one `berth server` running its controllers
//! and scheduler, and one `berth agent --runtime sim` standing in for
//! `--nodes` nodes of 4 CPU, 16 GiB and 110 pods. Once every node is Ready,
//! concurrent clients create `--deployments` Deployments of `--replicas`
//! pods over a few tenants, and one watch opened before the first create
//! records when each pod was first seen, first seen bound (`spec.nodeName`)
//! and first seen `Running`.
//!
//! The watch is the etcd API's on `/registry/pods/`: it forwards stored
//! values as they are, so the server spends nothing on it beyond what any
//! watch costs (a REST watch would turn every event into its own JSON), and
//! the recorder parses two fields of each value and no value of a pod it
//! has already seen Running.
//!
//! Every wait ends at `--timeout-seconds`; the server and the agent are
//! stopped on every way out (done, timeout, error or Ctrl-C).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_tests::process::{AgentProcess, berth_binary};
use berth_tests::rest::{Api, ready_node_names};
use etcd_client::{Client, ConnectOptions, EventType, WatchOptions, WatchStream};
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::process_stats::{CpuTimes, Memory, check_process_is};
use super::server_metrics::{MetricsPage, StoreWrites};
use super::server_under_test::{
    ADMIN_EMAIL, ADMIN_PASSWORD, BackendChoice, PodRequests, ServerUnderTest, deployment, exchange,
};
use super::{ms, percentile};

/// Each simulated node's capacity.
const NODE_CPU: &str = "4";
const NODE_MEMORY: &str = "16Gi";
const NODE_PODS: u32 = 110;
/// A heartbeat as real nodes send them, so that heartbeats do not dominate.
const HEARTBEAT_MS: u64 = 10_000;
/// How long a simulated pod takes to start.
const START_DELAY_MS: u64 = 500;
/// What every pod asks for: 110 of them fit on a node with room to spare.
const REQUESTS: PodRequests = PodRequests {
    cpu: "10m",
    memory: "16Mi",
};
/// Deployments are spread round-robin over this many tenants.
const TENANTS: usize = 3;
/// Concurrent clients creating Deployments.
const CREATE_CLIENTS: usize = 8;
/// Where the store keeps pods.
const PODS_PREFIX: &str = "/registry/pods/";
/// How often a run reports its progress on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How often the node list is read while waiting for Ready nodes.
const NODE_POLL: Duration = Duration::from_secs(1);
/// The longest a single exchange with the server outside the timed phases
/// (opening the watch, reading `/metrics`) may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The goals the figures are compared with.
const GOAL_PODS_PER_SECOND: f64 = 1000.0;
const GOAL_ALL_RUNNING: Duration = Duration::from_secs(90);
const GOAL_SERVER_RSS: u64 = 1 << 30;

/// How big a run is.
pub struct Scale {
    /// Simulated nodes.
    pub nodes: usize,
    /// Deployments created.
    pub deployments: usize,
    /// Replicas of each.
    pub replicas: u32,
    /// The longest any wait may last.
    pub timeout: Duration,
}

impl Scale {
    /// Pods the Deployments ask for.
    fn pods(&self) -> usize {
        self.deployments * self.replicas as usize
    }
}

/// Runs the benchmark on `backends` and prints each backend's figures as a
/// Markdown table as soon as its run ends.
pub async fn run(backends: BackendChoice, scale: Scale) -> anyhow::Result<()> {
    println!(
        "berth scheduling benchmark: {} cores; {} sim nodes ({NODE_CPU} CPU, {NODE_MEMORY}, \
         {NODE_PODS} pods, heartbeat {} s, pod start {START_DELAY_MS} ms); {} Deployments × {} \
         replicas = {} pods (requests {} CPU, {}) over {TENANTS} tenants from {CREATE_CLIENTS} \
         clients; timeout {} s",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        scale.nodes,
        HEARTBEAT_MS / 1000,
        scale.deployments,
        scale.replicas,
        scale.pods(),
        REQUESTS.cpu,
        REQUESTS.memory,
        scale.timeout.as_secs(),
    );
    // Registered before anything starts: from here on SIGINT and SIGTERM
    // end the run through the `select!` below, which drops the server and
    // the agent (SIGKILL) instead of leaving them behind.
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    for (name, backend) in backends.backends() {
        let one_run = async {
            let target = ServerUnderTest::start(backend, &["--controllers=true"]).await;
            eprintln!("{name}: berth server at {}", target.server.process.url(""));
            measure(name, &target, &scale).await
        };
        let report = tokio::select! {
            report = one_run => report.with_context(|| format!("the {name} run"))?,
            _ = interrupt.recv() => bail!(stopped_by("SIGINT", name)),
            _ = terminate.recv() => bail!(stopped_by("SIGTERM", name)),
        };
        report.print(name, &scale);
    }
    Ok(())
}

/// Why a run ended early, once its processes are gone.
fn stopped_by(signal: &str, backend: &str) -> String {
    format!("{signal} during the {backend} run: stopped its server and agent")
}

/// One backend's run against `target`.
async fn measure(name: &str, target: &ServerUnderTest, scale: &Scale) -> anyhow::Result<Report> {
    for t in 0..TENANTS {
        target.create_tenant(&tenant(t)).await?;
    }
    let agent_started = Instant::now();
    let agent = AgentProcess::sim(
        &target.server,
        "sim",
        scale.nodes,
        &[
            "--sim-cpu",
            NODE_CPU,
            "--sim-memory",
            NODE_MEMORY,
            "--sim-pods",
            &NODE_PODS.to_string(),
            "--sim-start-delay-ms",
            &START_DELAY_MS.to_string(),
            "--heartbeat-ms",
            &HEARTBEAT_MS.to_string(),
        ],
    );
    let nodes_deadline = agent_started + scale.timeout;
    tokio::time::timeout_at(
        nodes_deadline,
        wait_for_ready_nodes(&target.api, scale.nodes, nodes_deadline),
    )
    .await
    .context("the node list did not answer before the timeout")??;
    let nodes_ready = agent_started.elapsed();
    eprintln!(
        "{name}: {} nodes Ready after {:.1} s",
        scale.nodes,
        nodes_ready.as_secs_f64()
    );

    let mut recorder = PodRecorder::start(&target.server.etcd_endpoint(), scale.pods()).await?;
    let metrics_before = scrape(&target.api).await?;
    let cpu_before = CpuTimes::now(&[target.pid(), agent.id()])?;
    let server_before = Memory::of(target.pid())?;
    let first_create = Instant::now();
    let deadline = first_create + scale.timeout;
    let creates = create_deployments(&target.api, scale, deadline).await?;
    eprintln!(
        "{name}: {} Deployments created in {:.2} s",
        scale.deployments,
        creates.elapsed.as_secs_f64()
    );
    let log = recorder.wait(name, first_create, deadline).await?;
    let timed_out = log.running < scale.pods() && log.ended.is_none();
    let ended = Instant::now();

    let cpu = CpuTimes::now(&[target.pid(), agent.id()])?.since(&cpu_before);
    // The figures read from /proc must be the server's and the agent's own,
    // not those of something that started them.
    let berth = berth_binary();
    check_process_is(target.pid(), &berth, "server")?;
    check_process_is(agent.id(), &berth, "agent")?;
    let server_memory = Memory::of(target.pid())?;
    let agent_memory = Memory::of(agent.id())?;
    let metrics_after = scrape(&target.api).await?;
    Ok(Report {
        nodes_ready,
        creates,
        pods: PodFigures::from_log(&log, first_create),
        watch_ended: log.ended,
        timed_out,
        run_time: ended - first_create,
        server_before_creates: server_before.current,
        server_memory,
        agent_memory,
        cpu,
        server: ServerCounters::between(&metrics_before, &metrics_after)?,
    })
}

/// `/metrics`, or an error after [`EXCHANGE_TIMEOUT`].
async fn scrape(api: &Api) -> anyhow::Result<MetricsPage> {
    tokio::time::timeout(EXCHANGE_TIMEOUT, MetricsPage::scrape(api))
        .await
        .context("/metrics did not answer within 30 s")?
}

fn tenant(i: usize) -> String {
    format!("bench-{i}")
}

/// Polls the node list until `nodes` nodes are Ready, or fails at
/// `deadline`.
async fn wait_for_ready_nodes(api: &Api, nodes: usize, deadline: Instant) -> anyhow::Result<()> {
    loop {
        let response = api
            .request(Method::GET, "/api/v1/nodes")
            .send()
            .await
            .context("listing nodes")?;
        let status = response.status().as_u16();
        let list: Value = response.json().await.context("reading the node list")?;
        if status != 200 {
            bail!("listing nodes answered {status}: {list}");
        }
        let ready = ready_node_names(&list).len();
        if ready >= nodes {
            return Ok(());
        }
        if Instant::now() + NODE_POLL > deadline {
            bail!("only {ready} of {nodes} nodes were Ready at the timeout");
        }
        tokio::time::sleep(NODE_POLL).await;
    }
}

/// How the creates went.
struct Creates {
    /// From sending the first to the answer of the last.
    elapsed: Duration,
    /// Each create's latency, sorted.
    latencies: Vec<Duration>,
}

/// Creates the Deployments from [`CREATE_CLIENTS`] clients; fails on the
/// first refusal or at `deadline`.
async fn create_deployments(
    api: &Api,
    scale: &Scale,
    deadline: Instant,
) -> anyhow::Result<Creates> {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = JoinSet::new();
    for _ in 0..CREATE_CLIENTS {
        let (api, next) = (api.clone(), next.clone());
        let (deployments, replicas) = (scale.deployments, scale.replicas);
        clients.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= deployments {
                    return anyhow::Ok(latencies);
                }
                let name = format!("app-{i}");
                let sent = Instant::now();
                exchange(
                    api.request(
                        Method::POST,
                        &format!("/api/v1/tenants/{}/deployments", tenant(i % TENANTS)),
                    )
                    .json(&deployment(&name, replicas, REQUESTS)),
                    201,
                )
                .await
                .with_context(|| format!("creating Deployment {name}"))?;
                latencies.push(sent.elapsed());
            }
        });
    }
    let mut latencies = Vec::with_capacity(scale.deployments);
    let all = async {
        while let Some(client) = clients.join_next().await {
            latencies.extend(client.context("a creating client panicked")??);
        }
        anyhow::Ok(())
    };
    tokio::time::timeout_at(deadline, all)
        .await
        .context("the Deployments were not all created within the timeout")??;
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Creates { elapsed, latencies })
}

/// The two fields of a stored pod the recorder needs; serde skips the rest
/// without building it.
#[derive(Deserialize)]
struct PodFields {
    #[serde(default)]
    spec: SpecFields,
    #[serde(default)]
    status: StatusFields,
}

#[derive(Default, Deserialize)]
struct SpecFields {
    #[serde(rename = "nodeName", default)]
    node_name: Option<String>,
}

#[derive(Default, Deserialize)]
struct StatusFields {
    #[serde(default)]
    phase: Option<String>,
}

/// When one pod was first seen, first seen bound and first seen Running.
struct PodTimes {
    seen: Instant,
    bound: Option<Instant>,
    running: Option<Instant>,
}

/// What the watch saw.
#[derive(Default)]
struct PodLog {
    /// By store key.
    pods: HashMap<Vec<u8>, PodTimes>,
    bound: usize,
    running: usize,
    /// Pods deleted while the run lasted (none are expected).
    deleted: usize,
    /// Why the watch ended before every pod was Running, if it did.
    ended: Option<String>,
}

impl PodLog {
    /// Takes in one event that arrived at `now`.
    fn observe(&mut self, event: &etcd_client::Event, now: Instant) -> anyhow::Result<()> {
        let Some(kv) = event.kv() else {
            return Ok(());
        };
        if event.event_type() == EventType::Delete {
            self.deleted += 1;
            return Ok(());
        }
        let pod = match self.pods.get_mut(kv.key()) {
            Some(pod) if pod.running.is_some() => return Ok(()),
            Some(pod) => pod,
            None => self.pods.entry(kv.key().to_vec()).or_insert(PodTimes {
                seen: now,
                bound: None,
                running: None,
            }),
        };
        let fields: PodFields = serde_json::from_slice(kv.value()).with_context(|| {
            format!("{} does not hold a pod", String::from_utf8_lossy(kv.key()))
        })?;
        if pod.bound.is_none() && fields.spec.node_name.is_some_and(|n| !n.is_empty()) {
            pod.bound = Some(now);
            self.bound += 1;
        }
        if fields.status.phase.as_deref() == Some("Running") {
            pod.running = Some(now);
            self.running += 1;
        }
        Ok(())
    }
}

/// Counts the recorder publishes for progress lines.
#[derive(Default)]
struct Progress {
    seen: AtomicUsize,
    bound: AtomicUsize,
    running: AtomicUsize,
}

/// The watch on every pod, recording in a task of its own.
struct PodRecorder {
    task: JoinSet<PodLog>,
    stop: Option<oneshot::Sender<()>>,
    progress: Arc<Progress>,
}

impl PodRecorder {
    /// Opens the watch (signed in as the platform admin) and returns once
    /// the server has confirmed it, so that it sees every pod created after.
    async fn start(endpoint: &str, expected: usize) -> anyhow::Result<PodRecorder> {
        let open = async {
            let mut client = Client::connect(
                [endpoint],
                Some(ConnectOptions::new().with_user(ADMIN_EMAIL, ADMIN_PASSWORD)),
            )
            .await
            .context("connecting to the etcd API")?;
            let mut stream = client
                .watch(PODS_PREFIX, Some(WatchOptions::new().with_prefix()))
                .await
                .context("opening the pod watch")?;
            let created = stream
                .message()
                .await
                .context("opening the pod watch")?
                .context("the pod watch ended at once")?;
            if !created.created() || created.canceled() {
                bail!("the pod watch was refused: {}", created.cancel_reason());
            }
            anyhow::Ok((client, stream))
        };
        let (client, stream) = tokio::time::timeout(EXCHANGE_TIMEOUT, open)
            .await
            .context("the pod watch was not open within 30 s")??;
        let (stop, stopped) = oneshot::channel();
        let progress = Arc::new(Progress::default());
        let mut task = JoinSet::new();
        task.spawn(record(client, stream, expected, progress.clone(), stopped));
        Ok(PodRecorder {
            task,
            stop: Some(stop),
            progress,
        })
    }

    /// Waits until every expected pod is Running, the watch ends, or
    /// `deadline`; prints progress on the way.
    async fn wait(
        &mut self,
        name: &str,
        first_create: Instant,
        deadline: Instant,
    ) -> anyhow::Result<PodLog> {
        let mut progress = tokio::time::interval_at(first_create + PROGRESS_EVERY, PROGRESS_EVERY);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                log = self.task.join_next() => {
                    return log.context("the recorder is gone")?.context("the recorder panicked");
                }
                _ = tokio::time::sleep_until(deadline), if self.stop.is_some() => {
                    if let Some(stop) = self.stop.take() {
                        let _ = stop.send(());
                    }
                }
                _ = progress.tick() => {
                    let p = &self.progress;
                    eprintln!(
                        "{name} +{:.0} s: {} pods seen, {} bound, {} Running",
                        first_create.elapsed().as_secs_f64(),
                        p.seen.load(Ordering::Relaxed),
                        p.bound.load(Ordering::Relaxed),
                        p.running.load(Ordering::Relaxed),
                    );
                }
            }
        }
    }
}

/// Records pod events until `expected` pods are Running, the watch ends,
/// or `stop` fires.
async fn record(
    _client: Client,
    mut stream: WatchStream,
    expected: usize,
    progress: Arc<Progress>,
    mut stop: oneshot::Receiver<()>,
) -> PodLog {
    let mut log = PodLog::default();
    loop {
        let message = tokio::select! {
            _ = &mut stop => return log,
            message = stream.message() => message,
        };
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => {
                log.ended = Some("the pod watch ended".into());
                return log;
            }
            Err(error) => {
                log.ended = Some(format!("the pod watch failed: {error}"));
                return log;
            }
        };
        if response.canceled() {
            log.ended = Some(format!(
                "the server canceled the pod watch: {}",
                response.cancel_reason()
            ));
            return log;
        }
        let now = Instant::now();
        for event in response.events() {
            if let Err(error) = log.observe(event, now) {
                log.ended = Some(format!("{error:#}"));
                return log;
            }
        }
        progress.seen.store(log.pods.len(), Ordering::Relaxed);
        progress.bound.store(log.bound, Ordering::Relaxed);
        progress.running.store(log.running, Ordering::Relaxed);
        if log.running >= expected {
            return log;
        }
    }
}

/// The pod figures, as offsets from the first create.
struct PodFigures {
    seen: usize,
    deleted: usize,
    last_seen: Option<Duration>,
    /// Sorted.
    binds: Vec<Duration>,
    /// Sorted.
    runs: Vec<Duration>,
    /// From first seen to first seen bound, sorted.
    to_bound: Vec<Duration>,
    /// From first seen to first seen Running, sorted.
    to_running: Vec<Duration>,
}

impl PodFigures {
    fn from_log(log: &PodLog, first_create: Instant) -> PodFigures {
        let since = |t: Instant| t.saturating_duration_since(first_create);
        let mut figures = PodFigures {
            seen: log.pods.len(),
            deleted: log.deleted,
            last_seen: log.pods.values().map(|p| since(p.seen)).max(),
            binds: log
                .pods
                .values()
                .filter_map(|p| p.bound)
                .map(since)
                .collect(),
            runs: log
                .pods
                .values()
                .filter_map(|p| p.running)
                .map(since)
                .collect(),
            to_bound: log
                .pods
                .values()
                .filter_map(|p| Some(p.bound? - p.seen))
                .collect(),
            to_running: log
                .pods
                .values()
                .filter_map(|p| Some(p.running? - p.seen))
                .collect(),
        };
        for times in [
            &mut figures.binds,
            &mut figures.runs,
            &mut figures.to_bound,
            &mut figures.to_running,
        ] {
            times.sort();
        }
        figures
    }
}

/// What the server's `/metrics` counted while the run lasted.
struct ServerCounters {
    scheduled: f64,
    unschedulable: f64,
    scheduling_errors: f64,
    /// Mean time from a pod's arrival in the scheduler's queue to its
    /// binding being written.
    mean_scheduling: Duration,
    /// Pods waiting for a node at the end.
    pending_at_end: f64,
    reconciles: f64,
    reconcile_errors: f64,
    writes: StoreWrites,
}

impl ServerCounters {
    fn between(before: &MetricsPage, after: &MetricsPage) -> anyhow::Result<ServerCounters> {
        let delta =
            |series: &str| after.get(series).unwrap_or(0.0) - before.get(series).unwrap_or(0.0);
        let attempts = |result: &str| {
            delta(&format!(
                "berth_scheduler_attempts_total{{result=\"{result}\"}}"
            ))
        };
        let scheduling_count = delta("berth_scheduler_scheduling_duration_seconds_count");
        let scheduling_sum = delta("berth_scheduler_scheduling_duration_seconds_sum");
        Ok(ServerCounters {
            scheduled: attempts("scheduled"),
            unschedulable: attempts("unschedulable"),
            scheduling_errors: attempts("error"),
            mean_scheduling: Duration::from_secs_f64(scheduling_sum / scheduling_count.max(1.0)),
            pending_at_end: after.get("berth_scheduler_pending_pods").unwrap_or(0.0),
            reconciles: after.sum("berth_controller_reconcile_total")
                - before.sum("berth_controller_reconcile_total"),
            reconcile_errors: after.sum("berth_controller_reconcile_errors_total")
                - before.sum("berth_controller_reconcile_errors_total"),
            writes: StoreWrites::read(after)?.since(&StoreWrites::read(before)?),
        })
    }
}

/// One backend's figures.
struct Report {
    nodes_ready: Duration,
    creates: Creates,
    pods: PodFigures,
    watch_ended: Option<String>,
    timed_out: bool,
    /// From the first create to the end of recording.
    run_time: Duration,
    /// The server's resident set just before the first create.
    server_before_creates: u64,
    server_memory: Memory,
    agent_memory: Memory,
    /// The server's, then the agent's.
    cpu: CpuTimes,
    server: ServerCounters,
}

impl Report {
    fn print(&self, backend: &str, scale: &Scale) {
        let expected = scale.pods();
        let pods = &self.pods;
        let row = |figure: &str, result: String, goal: &str| {
            println!("| {backend} | {figure} | {result} | {goal} |");
        };
        println!();
        println!("| backend | figure | result | goal |");
        println!("| --- | --- | --- | --- |");
        row(
            &format!("{} sim nodes Ready", scale.nodes),
            format!(
                "{:.0} s after the agent started (the node list is read every second)",
                self.nodes_ready.as_secs_f64()
            ),
            "—",
        );
        let creates = &self.creates;
        row(
            &format!(
                "create {} Deployments, {CREATE_CLIENTS} clients",
                scale.deployments
            ),
            format!(
                "{:.2} s ({:.0}/s; p50 {}, p99 {})",
                creates.elapsed.as_secs_f64(),
                scale.deployments as f64 / creates.elapsed.as_secs_f64(),
                ms(percentile(&creates.latencies, 0.50)),
                ms(percentile(&creates.latencies, 0.99)),
            ),
            "—",
        );
        row(
            "pods created by the controllers (seen by the watch)",
            format!(
                "{} of {expected}{}{}",
                pods.seen,
                pods.last_seen
                    .map(|t| format!(", the last at +{:.1} s", t.as_secs_f64()))
                    .unwrap_or_default(),
                if pods.deleted > 0 {
                    format!("; {} pod deletions", pods.deleted)
                } else {
                    String::new()
                },
            ),
            "—",
        );
        let goal_rate = |rate: Option<f64>| match rate {
            Some(rate) if rate >= GOAL_PODS_PER_SECOND => "≥ 1,000 pods/s: met",
            _ => "≥ 1,000 pods/s: **missed**",
        };
        let (first_bind, last_bind) = (pods.binds.first(), pods.binds.last());
        let window_rate = match (first_bind, last_bind) {
            (Some(first), Some(last)) if last > first => {
                Some(pods.binds.len() as f64 / (*last - *first).as_secs_f64())
            }
            _ => None,
        };
        row(
            "scheduling throughput: bound ÷ (last bind − first bind)",
            match (window_rate, first_bind, last_bind) {
                (Some(rate), Some(first), Some(last)) => format!(
                    "{rate:.0} pods/s ({} bound, +{:.2} s to +{:.2} s)",
                    pods.binds.len(),
                    first.as_secs_f64(),
                    last.as_secs_f64()
                ),
                _ => format!("{} bound: no interval to divide by", pods.binds.len()),
            },
            goal_rate(window_rate),
        );
        let overall_rate = last_bind
            .filter(|last| !last.is_zero())
            .map(|last| pods.binds.len() as f64 / last.as_secs_f64());
        row(
            "overall: bound ÷ (last bind − first create)",
            match overall_rate {
                Some(rate) => format!("{rate:.0} pods/s"),
                None => "nothing bound".into(),
            },
            goal_rate(overall_rate),
        );
        row(
            "pod created → bound (as the watch saw them)",
            latencies(&pods.to_bound),
            "—",
        );
        row(
            "pod created → Running (as the watch saw them)",
            latencies(&pods.to_running),
            "—",
        );
        let (result, goal) = match pods.runs.last() {
            Some(last) if pods.runs.len() >= expected => (
                format!("{:.1} s after the first create", last.as_secs_f64()),
                if *last <= GOAL_ALL_RUNNING {
                    "≤ 90 s: met"
                } else {
                    "≤ 90 s: **missed**"
                },
            ),
            _ => (
                format!(
                    "{} of {expected} Running when the run ended at +{:.1} s ({})",
                    pods.runs.len(),
                    self.run_time.as_secs_f64(),
                    match (&self.watch_ended, self.timed_out) {
                        (Some(why), _) => why.clone(),
                        (None, true) => "timeout".into(),
                        (None, false) => "unknown".into(),
                    }
                ),
                "≤ 90 s: **missed**",
            ),
        };
        row(&format!("all {expected} pods Running"), result, goal);
        let (server_rss, agent_rss) = (self.server_memory, self.agent_memory);
        row(
            "server peak RSS (VmHWM)",
            format!(
                "{} (RSS {} before the first create, {} at the end)",
                mib(server_rss.peak),
                mib(self.server_before_creates),
                mib(server_rss.current)
            ),
            if server_rss.peak <= GOAL_SERVER_RSS {
                "≤ 1 GiB: met"
            } else {
                "≤ 1 GiB: **missed**"
            },
        );
        row(
            "agent peak RSS (VmHWM)",
            format!(
                "{} ({} at the end)",
                mib(agent_rss.peak),
                mib(agent_rss.current)
            ),
            "—",
        );
        let cpu = &self.cpu;
        row(
            "CPU s from the first create: server / agent / bench / rest of machine",
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1} in {:.1} s of wall time",
                cpu.processes[0],
                cpu.processes[1],
                cpu.this_process,
                cpu.rest(),
                self.run_time.as_secs_f64()
            ),
            "—",
        );
        let server = &self.server;
        row(
            "scheduler: attempts scheduled / unschedulable / error; mean queue → bound",
            format!(
                "{:.0} / {:.0} / {:.0}; {}; {:.0} pending at the end",
                server.scheduled,
                server.unschedulable,
                server.scheduling_errors,
                ms(server.mean_scheduling),
                server.pending_at_end
            ),
            "—",
        );
        row(
            "controllers: reconciles / errors",
            format!("{:.0} / {:.0}", server.reconciles, server.reconcile_errors),
            "—",
        );
        let writes = &server.writes;
        row(
            "store: writes in transactions (mean batch, batch start → commit)",
            format!(
                "{:.0} in {:.0} ({:.1}, {})",
                writes.writes,
                writes.batches,
                writes.mean_batch(),
                ms(writes.mean_commit_wait())
            ),
            "—",
        );
    }
}

/// `p50 …, p99 …, max …` of sorted `times`.
fn latencies(times: &[Duration]) -> String {
    if times.is_empty() {
        return "none".into();
    }
    format!(
        "p50 {}, p99 {}, max {} ({} pods)",
        ms(percentile(times, 0.50)),
        ms(percentile(times, 0.99)),
        ms(times.last().copied().unwrap_or_default()),
        times.len()
    )
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}
