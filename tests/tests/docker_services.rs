//! Services end to end on the host's Docker engine: two agents on the one
//! engine as two nodes (each with its own name, loopback address and
//! tenant networks), `httpd` pods behind NodePort Services, and clients
//! inside containers of the Service's tenant and of another.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_tests::cluster::{admin_with_tenant, create, items, ready_status, server};
use berth_tests::db::{TestBackend, TestDb};
use berth_tests::docker::{EngineCleanup, TEST_IMAGE, docker, ensure_test_image};
use berth_tests::docker_cluster::{TwoNodes, agent_flags, node_ready, tenant_path, unique};
use berth_tests::process::AgentProcess;
use berth_tests::rest::Api;
use serde_json::{Value, json};
use tokio::time::Instant;

/// A container that serves its pod's name on 8080 while `/tmp/ready`
/// exists (its readiness probe), and on SIGTERM goes on serving for 2 s
/// before it exits, as a server that drains does.
fn web_container() -> Value {
    let script = "mkdir -p /tmp/www; hostname > /tmp/www/index.html; touch /tmp/ready; \
                  httpd -f -p 8080 -h /tmp/www & pid=$!; \
                  trap 'sleep 2; kill $pid; exit 0' TERM; wait $pid";
    json!({
        "name": "web",
        "image": TEST_IMAGE,
        "command": ["sh", "-c", script],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {
            "exec": {"command": ["cat", "/tmp/ready"]},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
        "resources": {"limits": {"memory": "32Mi", "cpu": "100m"}},
    })
}

fn deployment(name: &str, replicas: i64, container: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 10},
            },
        },
    })
}

/// A client container that only waits.
fn idle_container() -> Value {
    json!({
        "name": "main",
        "image": TEST_IMAGE,
        "command": ["sleep", "3600"],
        "resources": {"limits": {"memory": "16Mi", "cpu": "100m"}},
    })
}

/// Deployment `web` of `replicas` pods and a NodePort Service `web` on
/// port 8080 in front of them; answers the node port once all the pods
/// are ready endpoints.
async fn web_service(cluster: &TwoNodes, replicas: usize) -> u16 {
    create(
        &cluster.admin,
        &cluster.path("deployments"),
        deployment("web", replicas as i64, web_container()),
    )
    .await;
    let service = create(
        &cluster.admin,
        &cluster.path("services"),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 8080, "targetPort": "http"}],
            },
        }),
    )
    .await;
    ready_endpoints(cluster, replicas).await;
    service["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no node port in {service}"))
}

/// Waits (90 s at most) until Service `web` has `count` endpoints, all
/// ready; answers them by pod name with their node.
async fn ready_endpoints(cluster: &TwoNodes, count: usize) -> BTreeMap<String, String> {
    let path = format!(
        "{}?labelSelector=kubernetes.io/service-name%3Dweb",
        cluster.path("endpointslices")
    );
    let list = cluster
        .admin
        .eventually(&path, 90, "every pod of web is a ready endpoint", |list| {
            let endpoints = endpoints(list);
            endpoints.len() == count && endpoints.iter().all(|e| e["conditions"]["ready"] == true)
        })
        .await;
    endpoints(&list)
        .iter()
        .map(|e| {
            (
                e["targetRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                e["nodeName"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn endpoints(list: &Value) -> Vec<Value> {
    items(list)
        .iter()
        .flat_map(|slice| slice["endpoints"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// A client that opens a new connection for every request.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .expect("an HTTP client")
}

/// GET `/` on `address:port`; the body (a pod's name), or what failed.
async fn ask(client: &reqwest::Client, address: &str, port: u16) -> Result<String, String> {
    let url = format!("http://{address}:{port}/");
    match client.get(&url).send().await {
        Ok(response) if response.status().is_success() => response
            .text()
            .await
            .map(|body| body.trim().to_owned())
            .map_err(|e| e.to_string()),
        Ok(response) => Err(format!("GET {url}: {}", response.status())),
        Err(error) => {
            let mut why = format!("GET {url}: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                why.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            Err(why)
        }
    }
}

/// The running container of `tenant`'s pod `pod`.
fn container_of(tenant: &str, pod: &str) -> String {
    let output = Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!("label=berth.dev/tenant={tenant}"))
        .arg("--filter")
        .arg(format!("label=berth.dev/pod={pod}"))
        .output()
        .expect("docker ps");
    let ids = String::from_utf8_lossy(&output.stdout);
    ids.lines()
        .next()
        .unwrap_or_else(|| panic!("no running container of {tenant}/{pod}"))
        .to_owned()
}

/// Runs `script` with `sh -c` in `container`: success, and stdout or
/// stderr.
fn sh(container: &str, script: &str) -> Result<String, String> {
    let output = Command::new("docker")
        .args(["exec", container, "sh", "-c", script])
        .output()
        .expect("docker exec");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(format!(
            "exit {:?}: {}{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// `wget` of `url` from `container`, within 5 s.
fn wget(container: &str, url: &str) -> Result<String, String> {
    sh(container, &format!("timeout 5 wget -qO- {url}"))
}

/// The pods of Deployment `app` in `tenant`, Running and Ready (waits up
/// to 60 s for `count` of them): name and node.
async fn running_pods(admin: &Api, tenant: &str, app: &str, count: usize) -> Vec<(String, String)> {
    let path = format!("{}?labelSelector=app%3D{app}", tenant_path(tenant, "pods"));
    let list = admin
        .eventually(&path, 60, "the pods run and are ready", |list| {
            let pods = items(list);
            pods.len() == count
                && pods.iter().all(|pod| {
                    pod["status"]["phase"] == "Running"
                        && ready_status(pod).as_deref() == Some("True")
                })
        })
        .await;
    items(&list)
        .iter()
        .map(|pod| {
            (
                pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                pod["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

/// An answer (a pod's name) or what failed, with when it was asked.
type Answer = (Instant, Result<String, String>);

/// Requests every 20 ms through `address:port`, each on a new connection,
/// until stopped; each answer with when it was sent.
struct Prober {
    answers: Arc<Mutex<Vec<Answer>>>,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Prober {
    fn start(address: &str, port: u16) -> Prober {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = tokio_util::sync::CancellationToken::new();
        let (address, recorded, stopped) = (address.to_owned(), answers.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let client = fresh_client();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while !stopped.is_cancelled() {
                tick.tick().await;
                let sent = Instant::now();
                let answer = ask(&client, &address, port).await;
                recorded.lock().unwrap().push((sent, answer));
            }
        });
        Prober {
            answers,
            stop,
            task,
        }
    }

    async fn finish(self) -> Vec<Answer> {
        self.stop.cancel();
        self.task.await.expect("the prober");
        Arc::try_unwrap(self.answers)
            .expect("the prober's answers")
            .into_inner()
            .unwrap()
    }
}

fn failures(answers: &[Answer]) -> Vec<&String> {
    answers
        .iter()
        .filter_map(|(_, a)| a.as_ref().err())
        .collect()
}

#[tokio::test]
async fn a_node_port_balances_over_pods_on_both_nodes_and_names_resolve_in_their_tenant_only() {
    let cluster = TwoNodes::start().await;
    let node_port = web_service(&cluster, 4).await;
    let endpoints = ready_endpoints(&cluster, 4).await;
    for node in &cluster.nodes {
        assert!(
            endpoints.values().any(|n| *n == node.name),
            "pods on both nodes: {endpoints:?}"
        );
    }

    // Balancing: 200 requests through either node's node port.
    let client = fresh_client();
    for node in &cluster.nodes {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..200 {
            let pod = ask(&client, &node.address, node_port)
                .await
                .unwrap_or_else(|e| panic!("through {}: {e}", node.name));
            *seen.entry(pod).or_default() += 1;
        }
        let pods: Vec<&String> = seen.keys().collect();
        let expected: Vec<&String> = endpoints.keys().collect();
        assert_eq!(pods, expected, "all 4 pods answer through {}", node.name);
        assert!(
            seen.values().all(|count| *count <= 70),
            "none more than 70 times: {seen:?}"
        );
    }

    // Discovery, from a pod of another deployment of the tenant.
    create(
        &cluster.admin,
        &cluster.path("deployments"),
        deployment("client", 1, idle_container()),
    )
    .await;
    let (client_pod, _) =
        running_pods(&cluster.admin, &cluster.tenant, "client", 1).await[0].clone();
    let inside = container_of(&cluster.tenant, &client_pod);
    let address = sh(&inside, "echo $WEB_SERVICE_HOST:$WEB_SERVICE_PORT").expect("env");
    let (virtual_ip, port) = address.split_once(':').expect("WEB_SERVICE_HOST:PORT");
    assert_eq!(port, "8080", "{address}");
    assert!(
        virtual_ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "{address}"
    );
    for url in [
        "http://web:8080/".to_owned(),
        format!("http://web.{}:8080/", cluster.tenant),
        format!("http://web.{}.svc.cluster.local:8080/", cluster.tenant),
        format!("http://{virtual_ip}:8080/"),
    ] {
        let answer = wget(&inside, &url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(endpoints.contains_key(&answer), "{url} answered {answer:?}");
    }

    // From pods of another tenant, on both nodes: the names do not
    // resolve and the address refuses.
    let (status, body) = cluster
        .admin
        .post(
            &tenant_path(&cluster.other, "deployments"),
            deployment("intruder", 2, idle_container()),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let intruders = running_pods(&cluster.admin, &cluster.other, "intruder", 2).await;
    for (pod, _) in &intruders {
        let outside = container_of(&cluster.other, pod);
        for name in ["web".to_owned(), format!("web.{}", cluster.tenant)] {
            let url = format!("http://{name}:8080/");
            let error = wget(&outside, &url).expect_err("another tenant's name resolves");
            assert!(error.contains("bad address"), "{url} from {pod}: {error}");
        }
        let url = format!("http://{virtual_ip}:8080/");
        let error = wget(&outside, &url).expect_err("another tenant's address answers");
        assert!(error.contains("refused"), "{url} from {pod}: {error}");
        assert_eq!(
            sh(&outside, "echo ${WEB_SERVICE_HOST:-none}").as_deref(),
            Ok("none"),
            "no other tenant's Services in the environment"
        );
    }
}

#[tokio::test]
async fn a_deleted_or_unready_pod_leaves_the_rotation_without_a_failed_request() {
    let cluster = TwoNodes::start().await;
    let node_port = web_service(&cluster, 4).await;
    let endpoints = ready_endpoints(&cluster, 4).await;
    let entry = &cluster.nodes[0].address;

    // Deletion: a replica on the other node goes while requests flow.
    let victim = endpoints
        .iter()
        .find(|(_, node)| **node == cluster.nodes[1].name)
        .map(|(pod, _)| pod.clone())
        .expect("a pod on the second node");
    let prober = Prober::start(entry, node_port);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deleted_at = Instant::now();
    let (status, body) = cluster
        .admin
        .delete(&format!("{}/{victim}", cluster.path("pods")))
        .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let answers = prober.finish().await;
    assert!(answers.len() > 150, "{} requests", answers.len());
    assert!(failures(&answers).is_empty(), "{:?}", failures(&answers));
    let late: Vec<_> = answers
        .iter()
        .filter(|(sent, answer)| {
            *sent > deleted_at + Duration::from_secs(1) && answer.as_deref() == Ok(victim.as_str())
        })
        .collect();
    assert!(
        late.is_empty(),
        "{victim} still got {} new connections a second after its deletion",
        late.len()
    );

    // Readiness: a failing probe takes a pod out without restarting it.
    let replaced = ready_endpoints(&cluster, 4).await;
    let unready = replaced
        .keys()
        .find(|pod| **pod != victim)
        .expect("a pod")
        .clone();
    let container = container_of(&cluster.tenant, &unready);
    sh(&container, "rm /tmp/ready").expect("removing the readiness file");
    let pod_path = format!("{}/{unready}", cluster.path("pods"));
    cluster
        .admin
        .eventually(&pod_path, 20, "the pod is not Ready", |pod| {
            ready_status(pod).as_deref() == Some("False")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let client = fresh_client();
    for _ in 0..40 {
        let answer = ask(&client, entry, node_port).await.expect("a request");
        assert_ne!(answer, unready, "an unready pod got a new connection");
    }
    let (_, pod) = cluster.admin.get(&pod_path).await;
    assert_eq!(
        pod["status"]["containerStatuses"][0]["restartCount"], 0,
        "{pod}"
    );
    assert_eq!(
        container_of(&cluster.tenant, &unready),
        container,
        "the same container"
    );

    sh(&container, "touch /tmp/ready").expect("restoring the readiness file");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if ask(&client, entry, node_port).await.as_deref() == Ok(unready.as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "{unready} never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn after_an_agent_restart_services_answer_within_two_seconds_and_the_other_node_never_stops()
{
    let mut cluster = TwoNodes::start().await;
    let node_port = web_service(&cluster, 4).await;
    create(
        &cluster.admin,
        &cluster.path("deployments"),
        deployment("client", 1, idle_container()),
    )
    .await;
    let (client_pod, _) =
        running_pods(&cluster.admin, &cluster.tenant, "client", 1).await[0].clone();
    let inside = container_of(&cluster.tenant, &client_pod);
    wget(&inside, "http://web:8080/").expect("the name answers");

    let through_other = Prober::start(&cluster.nodes[1].address, node_port);
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.nodes[0]
        .agent
        .take()
        .expect("the first agent")
        .kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let back = Instant::now();
    cluster.start_agent(0);
    let client = fresh_client();
    let entry = cluster.nodes[0].address.clone();
    loop {
        if ask(&client, &entry, node_port).await.is_ok() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "the node port does not answer 2 s after the agent started again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answered_after = back.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answers = through_other.finish().await;
    let started = answers.first().map(|(sent, _)| *sent).unwrap_or(back);
    let failed: Vec<String> = answers
        .iter()
        .filter_map(|(sent, answer)| {
            let error = answer.as_ref().err()?;
            Some(format!(
                "{:?} after the prober started ({:?} before the agent was back): {error}",
                *sent - started,
                back.saturating_duration_since(*sent)
            ))
        })
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    node_ready(&cluster.admin, &cluster.nodes[0].name).await;
    // The names and addresses of the restarted node answer as before.
    for pod in running_pods(&cluster.admin, &cluster.tenant, "client", 1).await {
        let inside = container_of(&cluster.tenant, &pod.0);
        wget(&inside, "http://web:8080/").expect("the name answers after the restart");
    }
    println!("node port answered {answered_after:?} after the agent started again");
}

/// An `apps/v1` Deployment and a `v1` NodePort Service as Kubernetes'
/// documentation writes them; only the image is the test image.
const PEER_MANIFEST: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  labels:
    app: hello
spec:
  replicas: 2
  selector:
    matchLabels:
      app: hello
  template:
    metadata:
      labels:
        app: hello
    spec:
      containers:
      - name: hello
        image: IMAGE
        command: [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: hello
spec:
  type: NodePort
  selector:
    app: hello
  ports:
  - protocol: TCP
    port: 80
    targetPort: 8080
";

#[tokio::test]
async fn an_unmodified_deployment_and_node_port_service_manifest_works_as_written() {
    let cluster = TwoNodes::start().await;
    let manifest = PEER_MANIFEST.replace("IMAGE", TEST_IMAGE);
    let mut node_port = None;
    for (document, plural) in manifest.split("---\n").zip(["deployments", "services"]) {
        let response = cluster
            .admin
            .request(reqwest::Method::POST, &cluster.path(plural))
            .header("content-type", "application/yaml")
            .body(document.to_owned())
            .send()
            .await
            .expect("a POST");
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON answer");
        assert_eq!(status, 201, "{body}");
        if plural == "services" {
            node_port = body["spec"]["ports"][0]["nodePort"].as_u64();
        }
    }
    let node_port = u16::try_from(node_port.expect("a node port")).unwrap();
    let path = format!(
        "{}?labelSelector=kubernetes.io/service-name%3Dhello",
        cluster.path("endpointslices")
    );
    cluster
        .admin
        .eventually(&path, 90, "both pods are ready endpoints", |list| {
            let endpoints = endpoints(list);
            endpoints.len() == 2 && endpoints.iter().all(|e| e["conditions"]["ready"] == true)
        })
        .await;
    // The same pods behind a LoadBalancer: its own port on every node, and
    // every node's address in its status.
    let balancer = create(
        &cluster.admin,
        &cluster.path("services"),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "hello-lb"},
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": "hello"},
                "ports": [{"port": 18080, "targetPort": 8080}],
            },
        }),
    )
    .await;
    let addresses: Vec<Value> = cluster
        .nodes
        .iter()
        .map(|n| json!({"ip": n.address}))
        .collect();
    cluster
        .admin
        .eventually(
            &format!("{}/hello-lb", cluster.path("services")),
            30,
            "every node's address is an ingress",
            |service| service["status"]["loadBalancer"]["ingress"] == json!(addresses),
        )
        .await;
    let client = fresh_client();
    for port in [node_port, 18080] {
        for node in &cluster.nodes {
            answers_index(&client, &node.address, port).await;
        }
    }
    assert!(
        balancer["spec"]["ports"][0]["nodePort"].is_u64(),
        "{balancer}"
    );
}

/// Waits (10 s at most) until `address:port` answers the test image's
/// page.
async fn answers_index(client: &reqwest::Client, address: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ask(client, address, port).await {
            Ok(body) => {
                assert_eq!(body, berth_tests::docker::INDEX_HTML.trim());
                return;
            }
            Err(error) => assert!(Instant::now() < deadline, "{error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_agent_without_net_admin_says_so_in_one_line_and_runs_pods_without_services() {
    ensure_test_image();
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = server(&db.url, &[]);
    let tenant = unique("sx");
    let node = unique("svc-plain-");
    let state_dir = tempfile::tempdir().expect("a state directory");
    let _cleanup = EngineCleanup::new(&node, &[&tenant]).with_state_dir(state_dir.path());
    let admin = admin_with_tenant(&server, &tenant).await;
    let log = tempfile::NamedTempFile::new().expect("a log file");
    let address = format!(
        "127.{}.{}.9",
        rand::random_range(1..=254u8),
        rand::random_range(1..=254u8)
    );
    let mut flags = agent_flags(state_dir.path());
    flags.extend(["--address", &address]);
    let mut agent = AgentProcess::docker_under(
        &["setpriv", "--bounding-set", "-net_admin", "--"],
        &server,
        &node,
        &flags,
        log.reopen().expect("the log file"),
    );
    node_ready(&admin, &node).await;
    create(
        &admin,
        &tenant_path(&tenant, "deployments"),
        deployment("web", 1, web_container()),
    )
    .await;
    let (pod, _) = running_pods(&admin, &tenant, "web", 1).await[0].clone();
    let service = create(
        &admin,
        &tenant_path(&tenant, "services"),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 8080}]},
        }),
    )
    .await;
    let node_port = service["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u16;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused = ask(&fresh_client(), &address, node_port).await;
    assert!(
        refused.is_err(),
        "no node port without Services: {refused:?}"
    );
    let container = container_of(&tenant, &pod);
    let dns = docker(&["inspect", "-f", "{{json .HostConfig.Dns}}", &container]);
    assert!(
        matches!(dns.trim(), "null" | "[]"),
        "no DNS server of the agent's: {dns}"
    );
    agent.kill();
    let text = std::fs::read_to_string(log.path()).expect("the agent's log");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("without Services"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("NET_ADMIN"), "{}", lines[0]);
}
