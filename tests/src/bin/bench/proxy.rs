//! `bench proxy`: what the agent's service proxy costs a Service's
//! clients, measured with `wrk` against one `httpd` endpoint reached by
//! several paths in turn, once over kept-alive connections and once with a
//! new connection per request (`Connection: close`), since setting up a
//! connection is the proxy's hot path.
//!
//! A `berth server` on a fresh SQLite database with its controllers, one
//! Docker agent on a loopback address of its own, a Deployment `web` of one
//! `httpd` pod and a NodePort Service `web` in front of it, and a
//! Deployment `client` of one sleeping pod created after the Service (so
//! that it has `WEB_SERVICE_HOST`). The paths, one after another:
//!
//! - direct: the pod's published host port on the node's address, the
//!   reference every other path is compared with;
//! - the pod's address, from the host: the floor beneath both, without
//!   Docker's port publishing;
//! - the node port, through the proxy;
//! - the pod's address from inside the client container (`wrk` run in its
//!   network namespace with `nsenter`): the floor of the next path;
//! - the Service's virtual address from inside the client container,
//!   through the proxy.
//!
//! `wrk` times a request from when it writes it: a client's own connection
//! setup is outside its latency, but a proxy's connection to the endpoint,
//! made once it has accepted the client's, is inside.
//!
//! Each run starts once the host holds no connection toward the pod in
//! `TIME_WAIT` ([`drain_time_wait`]), so that no path pays for the ports an
//! earlier one left behind.
//!
//! Every `wrk` run ends within its duration plus [`WRK_GRACE`], every wait
//! at `--timeout-seconds`; the containers, networks, server and agent are
//! removed on the way out.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_tests::db::TestBackend;
use berth_tests::docker::{EngineCleanup, TEST_IMAGE, docker, ensure_test_image};
use berth_tests::docker_cluster::{node_ready, tenant_path, unique};
use berth_tests::process::AgentProcess;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::process_stats::{CpuTimes, cpu_model};
use super::server_under_test::ServerUnderTest;

/// The tenant of both Deployments.
const TENANT: &str = "bench";
/// The endpoint's limits: generous, so that `httpd` is held back by the
/// machine rather than by its quota.
const LIMIT_CPU: &str = "1";
const LIMIT_MEMORY: &str = "64Mi";
/// The port `httpd` listens on in its container, and the Service's port.
const HTTP_PORT: u16 = 8080;
/// How long a `wrk` run may overrun its duration before it is killed.
const WRK_GRACE: Duration = Duration::from_secs(30);
/// The pause between two runs, so that one run's closing connections are
/// not the next one's load.
const SETTLE: Duration = Duration::from_secs(2);
/// The longest a run waits for the host's `TIME_WAIT` connections toward
/// the pod to expire (Linux keeps them 60 s).
const TIME_WAIT_DRAIN: Duration = Duration::from_secs(75);
/// The paths, as the table names them.
const DIRECT: &str = "direct (host port)";
const POD_FROM_HOST: &str = "pod address, from the host";
const NODE_PORT: &str = "node port";
const POD_FROM_CONTAINER: &str = "pod address, from a container";
const VIRTUAL_ADDRESS: &str = "virtual address";
/// Each proxied path against what it is held to the goals against, and
/// the node port against the floor beneath it, for reference.
const COMPARISONS: [Comparison; 3] = [
    Comparison {
        path: NODE_PORT,
        reference: DIRECT,
        held_to_goals: true,
    },
    Comparison {
        path: VIRTUAL_ADDRESS,
        reference: POD_FROM_CONTAINER,
        held_to_goals: true,
    },
    Comparison {
        path: NODE_PORT,
        reference: POD_FROM_HOST,
        held_to_goals: false,
    },
];
/// The goals the proxied paths are held to.
const GOAL_THROUGHPUT_RATIO: f64 = 0.9;
const GOAL_P99_ADDED: Duration = Duration::from_micros(500);

/// One path's figures set against another's.
struct Comparison {
    path: &'static str,
    reference: &'static str,
    /// Whether the goals apply, or the line is for reference only.
    held_to_goals: bool,
}

/// How a run is sized.
pub struct Plan {
    /// How long each `wrk` run lasts.
    pub duration: Duration,
    /// `wrk`'s connections.
    pub connections: u32,
    /// `wrk`'s threads.
    pub threads: u32,
    /// The longest any wait for the cluster lasts.
    pub timeout: Duration,
}

/// How `wrk` uses its connections.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// HTTP keep-alive: connections are opened once.
    KeepAlive,
    /// `Connection: close`: a new connection for every request.
    Close,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keep-alive",
            Mode::Close => "close",
        }
    }
}

/// One way to the endpoint.
struct Route {
    name: &'static str,
    url: String,
    /// The process whose network namespace `wrk` runs in; `None`: the
    /// host's.
    namespace_of: Option<u32>,
}

/// What one `wrk` run printed.
#[derive(Clone, Copy, Debug, PartialEq)]
struct WrkFigures {
    requests_per_second: f64,
    p50: Duration,
    p99: Duration,
    /// Socket errors (connect, read, write, timeout) and answers that were
    /// not 2xx or 3xx.
    errors: u64,
}

/// One row of the table.
struct Measured {
    route: &'static str,
    mode: Mode,
    figures: WrkFigures,
    /// Cores the agent (the proxy) used while `wrk` ran.
    agent_cores: f64,
    /// Connections dropped while `wrk` ran because a listener's accept
    /// queue was full: `httpd`'s, in the pod, and the host's listeners
    /// (the proxy's, docker-proxy's). A dropped SYN is sent again after a
    /// second, which is what a p99 near 1 s means.
    listen_overflows: ListenOverflows,
}

/// `TcpExt: ListenOverflows` of two network namespaces.
#[derive(Clone, Copy, Default)]
struct ListenOverflows {
    pod: u64,
    host: u64,
}

impl ListenOverflows {
    /// The counts now, of the namespace of process `pod_pid` and of this
    /// process's.
    fn now(pod_pid: u32) -> anyhow::Result<ListenOverflows> {
        Ok(ListenOverflows {
            pod: listen_overflows(&format!("/proc/{pod_pid}/net/netstat"))?,
            host: listen_overflows("/proc/self/net/netstat")?,
        })
    }

    fn since(self, before: ListenOverflows) -> ListenOverflows {
        ListenOverflows {
            pod: self.pod.saturating_sub(before.pod),
            host: self.host.saturating_sub(before.host),
        }
    }
}

/// The `ListenOverflows` counter of a `/proc/<pid>/net/netstat` file: a
/// line of `TcpExt:` names, then one of their values.
fn listen_overflows(path: &str) -> anyhow::Result<u64> {
    let netstat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let mut tcp_ext = netstat.lines().filter(|line| line.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (tcp_ext.next(), tcp_ext.next()) else {
        bail!("{path} has no TcpExt lines");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "ListenOverflows")
        .with_context(|| format!("{path} has no ListenOverflows"))?
        .1
        .parse()
        .with_context(|| format!("{path}'s ListenOverflows"))
}

/// Runs the benchmark and prints its figures.
pub async fn run(plan: Plan) -> anyhow::Result<()> {
    require_program("wrk", "wrk")?;
    require_program("nsenter", "util-linux")?;
    ensure_test_image();
    let docker_version = docker(&["version", "--format", "{{.Server.Version}}"]);
    println!(
        "berth service proxy benchmark: wrk -t{} -c{} -d{}s --latency against one httpd \
         endpoint (limits cpu {LIMIT_CPU}, memory {LIMIT_MEMORY}), one Docker agent, SQLite",
        plan.threads,
        plan.connections,
        plan.duration.as_secs()
    );
    println!(
        "CPU: {}, {} cores; Docker {}",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        docker_version.trim()
    );

    let server = ServerUnderTest::start(TestBackend::Sqlite, &["--controllers=true"]).await;
    server.create_tenant(TENANT).await?;
    let node = unique("bench-proxy-");
    let address = format!(
        "127.{}.{}.2",
        rand::random_range(1..=254u8),
        rand::random_range(1..=254u8)
    );
    let state_dir = tempfile::tempdir().context("a state directory for the agent")?;
    let state_path = state_dir
        .path()
        .to_str()
        .context("a UTF-8 temporary path")?;
    let _cleanup = EngineCleanup::new(&node, &[TENANT]).with_state_dir(state_dir.path());
    let agent = AgentProcess::docker_at(
        &server.server,
        &node,
        &[
            "--address",
            &address,
            "--state-dir",
            state_path,
            "--heartbeat-ms",
            "10000",
        ],
    );
    node_ready(&server.api, &node).await;

    let node_port = create_web_service(&server).await?;
    create(&server, "deployments", client_deployment()).await?;
    let web = running_pod(&server, "web", plan.timeout).await?;
    let client = running_pod(&server, "client", plan.timeout).await?;
    let pod_ip: Ipv4Addr = web["status"]["podIP"]
        .as_str()
        .context("the web pod has no podIP")?
        .parse()
        .context("the web pod's podIP")?;
    let web_container = container_of(&node, web["metadata"]["name"].as_str().unwrap_or_default())?;
    let httpd_pid = process_of(&web_container)?;
    let binding = &web["status"]["containerStatuses"][0]["portBindings"][0];
    let host_port = binding["hostPort"]
        .as_u64()
        .with_context(|| format!("the web pod publishes no port: {web}"))?;
    let host_ip = binding["hostIP"].as_str().unwrap_or(&address).to_owned();
    let client_name = client["metadata"]["name"].as_str().unwrap_or_default();
    let container = container_of(&node, client_name)?;
    let container_pid = process_of(&container)?;
    let virtual_address = docker(&["exec", &container, "sh", "-c", "echo $WEB_SERVICE_HOST"])
        .trim()
        .to_owned();
    if virtual_address.is_empty() {
        bail!("the client container has no WEB_SERVICE_HOST");
    }

    let on_host = |name, url| Route {
        name,
        url,
        namespace_of: None,
    };
    let in_client = |name, url| Route {
        name,
        url,
        namespace_of: Some(container_pid),
    };
    let routes = [
        on_host(DIRECT, format!("http://{host_ip}:{host_port}/")),
        on_host(POD_FROM_HOST, format!("http://{pod_ip}:{HTTP_PORT}/")),
        on_host(NODE_PORT, format!("http://{address}:{node_port}/")),
        in_client(POD_FROM_CONTAINER, format!("http://{pod_ip}:{HTTP_PORT}/")),
        in_client(
            VIRTUAL_ADDRESS,
            format!("http://{virtual_address}:{HTTP_PORT}/"),
        ),
    ];
    let published_by = if docker_proxy_serves(host_port) {
        "docker-proxy, a userspace copy"
    } else {
        "Docker's NAT rules"
    };
    println!(
        "node {address}: direct {host_ip}:{host_port} (published by {published_by}); \
         node port {node_port}; pod {pod_ip}:{HTTP_PORT}; virtual address \
         {virtual_address}:{HTTP_PORT}"
    );
    for route in &routes {
        warm_up(route, plan.timeout).await?;
    }
    if closes_every_connection(&routes[0].url).await? {
        println!(
            "httpd answers `Connection: close`: it keeps no connection alive, so every request \
             opens a new connection in both modes"
        );
    }

    println!();
    println!(
        "{:<30} {:<10} {:>10} {:>8} {:>9} {:>10} {:>11} {:>9} {:>6} {:>18}",
        "path",
        "mode",
        "requests/s",
        "× direct",
        "p50",
        "p99",
        "p99 added",
        "agent CPU",
        "errors",
        "overflows pod/host"
    );
    let mut rows: Vec<Measured> = Vec::new();
    for mode in [Mode::KeepAlive, Mode::Close] {
        for route in &routes {
            tokio::time::sleep(SETTLE).await;
            drain_time_wait(pod_ip, HTTP_PORT).await?;
            let before = CpuTimes::now(&[agent.id()])?;
            let overflows_before = ListenOverflows::now(httpd_pid)?;
            let started = Instant::now();
            let figures = wrk(route, mode, &plan).await?;
            let used = CpuTimes::now(&[agent.id()])?.since(&before);
            let row = Measured {
                route: route.name,
                mode,
                figures,
                agent_cores: used.processes[0] / started.elapsed().as_secs_f64(),
                listen_overflows: ListenOverflows::now(httpd_pid)?.since(overflows_before),
            };
            let direct = find(&rows, DIRECT, mode).map_or(row.figures, |direct| direct.figures);
            print_row(&row, &direct);
            rows.push(row);
        }
    }

    println!();
    if rows.iter().any(|row| row.listen_overflows.pod > 0) {
        println!(
            "httpd's accept queue overflowed (busybox httpd listens with a backlog of 9): a \
             dropped SYN is sent again after 1 s, which is what a p99 near 1 s is"
        );
    }
    print_verdicts(&rows);
    drop(agent);
    Ok(())
}

/// The row of `route` in `mode`, once measured.
fn find<'a>(rows: &'a [Measured], route: &str, mode: Mode) -> Option<&'a Measured> {
    rows.iter()
        .find(|row| row.route == route && row.mode == mode)
}

/// Fails with one line naming the Debian package to install unless
/// `program` is on the `PATH`.
fn require_program(program: &str, package: &str) -> anyhow::Result<()> {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
    });
    if !found {
        bail!("`{program}` is not installed: install Debian's `{package}` package");
    }
    Ok(())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

async fn create(server: &ServerUnderTest, plural: &str, body: Value) -> anyhow::Result<Value> {
    let response = server
        .api
        .request(reqwest::Method::POST, &tenant_path(TENANT, plural))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("creating {plural}"))?;
    let status = response.status().as_u16();
    let created: Value = response.json().await.context("reading an answer")?;
    if status != 201 {
        bail!("creating {plural} answered {status}: {created}");
    }
    Ok(created)
}

fn deployment(name: &str, container: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 0},
            },
        },
    })
}

fn client_deployment() -> Value {
    deployment(
        "client",
        json!({
            "name": "main",
            "image": TEST_IMAGE,
            "command": ["sleep", "3600"],
            "resources": {"limits": {"cpu": "100m", "memory": "16Mi"}},
        }),
    )
}

/// Deployment `web` of one `httpd` pod and NodePort Service `web` on port
/// [`HTTP_PORT`] in front of it; answers the node port.
async fn create_web_service(server: &ServerUnderTest) -> anyhow::Result<u16> {
    let web = json!({
        "name": "web",
        "image": TEST_IMAGE,
        "command": ["httpd", "-f", "-p", HTTP_PORT.to_string(), "-h", "/www"],
        "ports": [{"name": "http", "containerPort": HTTP_PORT}],
        "resources": {"limits": {"cpu": LIMIT_CPU, "memory": LIMIT_MEMORY}},
    });
    create(server, "deployments", deployment("web", web)).await?;
    let service = create(
        server,
        "services",
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http"}],
            },
        }),
    )
    .await?;
    service["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .and_then(|port| u16::try_from(port).ok())
        .with_context(|| format!("no node port in {service}"))
}

/// The pod of Deployment `app`, once it is Running and Ready.
async fn running_pod(
    server: &ServerUnderTest,
    app: &str,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let path = format!("{}?labelSelector=app%3D{app}", tenant_path(TENANT, "pods"));
    let deadline = Instant::now() + timeout;
    loop {
        let (status, list) = server.api.get(&path).await;
        let pods = list["items"].as_array().cloned().unwrap_or_default();
        if status == 200
            && let [pod] = pods.as_slice()
            && pod["status"]["phase"] == "Running"
            && berth_tests::cluster::ready_status(pod).as_deref() == Some("True")
        {
            return Ok(pod.clone());
        }
        if Instant::now() > deadline {
            bail!(
                "the pod of {app} was not Running and Ready within {} s",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The running container of pod `pod` on node `node`.
fn container_of(node: &str, pod: &str) -> anyhow::Result<String> {
    docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=berth.dev/node={node}"),
        "--filter",
        &format!("label=berth.dev/pod={pod}"),
    ])
    .lines()
    .next()
    .map(str::to_owned)
    .with_context(|| format!("no running container of pod {pod}"))
}

/// The process id of `container`'s first process.
fn process_of(container: &str) -> anyhow::Result<u32> {
    docker(&["inspect", "--format", "{{.State.Pid}}", container])
        .trim()
        .parse()
        .with_context(|| format!("the process id of container {container}"))
}

/// Whether a `docker-proxy` process forwards host port `port`: then a
/// connection to the published port is copied in userspace, as through
/// Berth's proxy, rather than rewritten by the kernel.
fn docker_proxy_serves(port: u64) -> bool {
    let wanted = format!("-host-port\0{port}\0");
    std::fs::read_dir("/proc").is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| {
                let cmdline = String::from_utf8_lossy(&cmdline);
                cmdline.contains("docker-proxy") && cmdline.contains(&wanted)
            })
        })
    })
}

/// Whether the endpoint at `url` closes its connection after an answer,
/// whatever the client asks.
async fn closes_every_connection(url: &str) -> anyhow::Result<bool> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    Ok(response
        .headers()
        .get(reqwest::header::CONNECTION)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close")))
}

/// Waits until the host holds no connection toward `pod_ip:port` in
/// `TIME_WAIT`, or [`TIME_WAIT_DRAIN`] has passed. The paths that connect
/// from the host (Docker's proxy, `wrk` to the pod's address) close first
/// and leave one per request; the proxy's own connections to the pod come
/// from the same address, and once about half the ephemeral port range
/// toward the pod is held, each of its `connect()`s spends milliseconds in
/// the kernel's search for a free port. Each run starts without them.
async fn drain_time_wait(pod_ip: Ipv4Addr, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + TIME_WAIT_DRAIN;
    while time_wait_toward(pod_ip, port)? > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// How many of this network namespace's IPv4 TCP connections toward
/// `address:port` are in `TIME_WAIT`, from `/proc/net/tcp`.
fn time_wait_toward(address: Ipv4Addr, port: u16) -> anyhow::Result<usize> {
    const TIME_WAIT: &str = "06";
    // The kernel prints the address as the integer its network-order bytes
    // make on this machine, and the port in hex.
    let wanted = format!("{:08X}:{port:04X}", u32::from_ne_bytes(address.octets()));
    let table = std::fs::read_to_string("/proc/net/tcp").context("reading /proc/net/tcp")?;
    Ok(table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace().skip(2);
            fields.next() == Some(wanted.as_str()) && fields.next() == Some(TIME_WAIT)
        })
        .count())
}

/// Runs `wrk` for a second at a time against `route` until a run has
/// answers and no errors: the proxy listens and has its backend, and every
/// path has served before it is measured.
async fn warm_up(route: &Route, timeout: Duration) -> anyhow::Result<()> {
    let plan = Plan {
        duration: Duration::from_secs(1),
        connections: 4,
        threads: 1,
        timeout,
    };
    let deadline = Instant::now() + timeout;
    loop {
        let outcome = wrk(route, Mode::KeepAlive, &plan).await;
        match outcome {
            Ok(figures) if figures.errors == 0 && figures.requests_per_second > 0.0 => {
                return Ok(());
            }
            _ if Instant::now() > deadline => {
                let outcome = outcome.map(|figures| format!("{figures:?}"));
                bail!(
                    "{} ({}) did not answer cleanly within {} s: {outcome:?}",
                    route.name,
                    route.url,
                    timeout.as_secs()
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// One `wrk` run against `route` as `plan` sizes it.
async fn wrk(route: &Route, mode: Mode, plan: &Plan) -> anyhow::Result<WrkFigures> {
    let mut command = match route.namespace_of {
        Some(pid) => {
            let mut command = tokio::process::Command::new("nsenter");
            command.args(["-t", &pid.to_string(), "-n", "wrk"]);
            command
        }
        None => tokio::process::Command::new("wrk"),
    };
    command
        .arg(format!("-t{}", plan.threads))
        .arg(format!("-c{}", plan.connections))
        .arg(format!("-d{}s", plan.duration.as_secs()))
        .arg("--latency");
    if mode == Mode::Close {
        command.args(["-H", "Connection: close"]);
    }
    command.arg(&route.url).kill_on_drop(true);
    let output = tokio::time::timeout(plan.duration + WRK_GRACE, command.output())
        .await
        .with_context(|| format!("wrk against {} did not end", route.url))?
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk against {} failed: {stdout}{}",
            route.url,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&stdout).with_context(|| format!("reading wrk's output: {stdout}"))
}

/// The figures of `wrk --latency`'s report.
fn parse_wrk(report: &str) -> anyhow::Result<WrkFigures> {
    let mut requests_per_second = None;
    let (mut p50, mut p99) = (None, None);
    let mut errors = 0;
    for line in report.lines().map(str::trim) {
        if let Some(rate) = line.strip_prefix("Requests/sec:") {
            requests_per_second = Some(rate.trim().parse().context("Requests/sec")?);
        } else if let Some(latency) = line.strip_prefix("50%") {
            p50 = Some(parse_wrk_duration(latency.trim())?);
        } else if let Some(latency) = line.strip_prefix("99%") {
            p99 = Some(parse_wrk_duration(latency.trim())?);
        } else if let Some(counts) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for count in counts.split(',') {
                let number = count.split_whitespace().last().unwrap_or("0");
                errors += number.parse::<u64>().context("a socket error count")?;
            }
        } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += count.trim().parse::<u64>().context("non-2xx responses")?;
        }
    }
    Ok(WrkFigures {
        requests_per_second: requests_per_second.context("no Requests/sec line")?,
        p50: p50.context("no 50% line (was --latency given?)")?,
        p99: p99.context("no 99% line (was --latency given?)")?,
        errors,
    })
}

/// A duration as `wrk` prints it: `812.00us`, `1.23ms`, `2.01s`, `1.00m`.
fn parse_wrk_duration(text: &str) -> anyhow::Result<Duration> {
    let digits = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(digits);
    let number: f64 = number
        .parse()
        .with_context(|| format!("no number in {text:?}"))?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => bail!("unknown unit in {text:?}"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// `later - earlier` in milliseconds, signed.
fn added_ms(later: Duration, earlier: Duration) -> f64 {
    (later.as_secs_f64() - earlier.as_secs_f64()) * 1000.0
}

fn print_row(row: &Measured, direct: &WrkFigures) {
    let figures = &row.figures;
    println!(
        "{:<30} {:<10} {:>10.0} {:>7.2}× {:>6.2} ms {:>7.2} ms {:>+8.2} ms {:>7.0} % {:>6} {:>18}",
        row.route,
        row.mode.label(),
        figures.requests_per_second,
        figures.requests_per_second / direct.requests_per_second,
        figures.p50.as_secs_f64() * 1000.0,
        figures.p99.as_secs_f64() * 1000.0,
        added_ms(figures.p99, direct.p99),
        row.agent_cores * 100.0,
        figures.errors,
        format!("{}/{}", row.listen_overflows.pod, row.listen_overflows.host)
    );
}

/// Each proxied path against its reference, in both modes, with the goals'
/// verdicts.
fn print_verdicts(rows: &[Measured]) {
    println!(
        "goals: ≥ {GOAL_THROUGHPUT_RATIO}× the reference's requests/s, ≤ {:.1} ms added at p99",
        GOAL_P99_ADDED.as_secs_f64() * 1000.0
    );
    for Comparison {
        path,
        reference,
        held_to_goals,
    } in COMPARISONS
    {
        for mode in [Mode::KeepAlive, Mode::Close] {
            let (Some(measured), Some(floor)) =
                (find(rows, path, mode), find(rows, reference, mode))
            else {
                continue;
            };
            let ratio = measured.figures.requests_per_second / floor.figures.requests_per_second;
            let added = measured.figures.p99.saturating_sub(floor.figures.p99);
            let verdict = if !held_to_goals {
                "(for reference)"
            } else if ratio >= GOAL_THROUGHPUT_RATIO && added <= GOAL_P99_ADDED {
                "met"
            } else {
                "MISSED"
            };
            println!(
                "{path} against {reference}, {}: {ratio:.2}×, {:+.2} ms at p99: {verdict}",
                mode.label(),
                added_ms(measured.figures.p99, floor.figures.p99),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "\
Running 10s test @ http://127.0.0.1:30080/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms    1.02ms  31.20ms   90.00%
    Req/Sec    15.10k     1.20k   18.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    2.50ms
     90%    3.10ms
     99%    1.05s
  300000 requests in 10.00s, 60.00MB read
  Socket errors: connect 0, read 12, write 0, timeout 3
  Non-2xx or 3xx responses: 2
Requests/sec:  30001.50
Transfer/sec:      6.00MB
";

    #[test]
    fn a_wrk_report_gives_its_rate_percentiles_and_errors() {
        let figures = parse_wrk(REPORT).expect("a report");
        assert_eq!(
            figures,
            WrkFigures {
                requests_per_second: 30001.5,
                p50: Duration::from_micros(812),
                p99: Duration::from_millis(1050),
                errors: 17,
            }
        );
    }

    #[test]
    fn a_report_without_latency_percentiles_is_refused() {
        let without: String = REPORT
            .lines()
            .filter(|line| !line.contains('%') || line.contains("Stdev"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(parse_wrk(&without).is_err());
    }
}
