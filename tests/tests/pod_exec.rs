//! `kubectl exec` end to end against the host's real Docker engine: a real
//! server and a real `berth agent --runtime docker`, a WebSocket client
//! speaking Kubernetes' `v5.channel.k8s.io` framing. Output and exit codes
//! come back, stdin goes in and its end reaches the command, viewers are
//! refused and every exec lands in the audit log. These tests fail, never
//! skip, without the engine.

use std::time::Duration;

use berth_tests::cluster::items;
use berth_tests::docker_cluster::{DockerCluster, one_container};
use berth_tests::rest::Api;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long one exec may take, start to exit.
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What an exec said.
#[derive(Debug, Default)]
struct Outcome {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The status message of channel 3.
    status: Value,
}

impl Outcome {
    /// The exit code the status gives: 0 for Success.
    fn exit_code(&self) -> i64 {
        if self.status["status"] == "Success" {
            return 0;
        }
        assert_eq!(self.status["reason"], "NonZeroExitCode", "{}", self.status);
        self.status["details"]["causes"][0]["message"]
            .as_str()
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no exit code in {}", self.status))
    }
}

/// The exec URL of `pod` with `command` (and `extra` query).
fn exec_url(
    api: &Api,
    cluster: &DockerCluster,
    pod: &str,
    command: &[&str],
    extra: &str,
) -> String {
    let mut query: Vec<String> = command
        .iter()
        .map(|part| format!("command={}", url_escape(part)))
        .collect();
    if !extra.is_empty() {
        query.push(extra.to_owned());
    }
    api.url(&format!("{}/exec?{}", cluster.pod(pod), query.join("&")))
        .replacen("http://", "ws://", 1)
}

/// Percent-encodes a query value.
fn url_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Opens the exec WebSocket as `api`; the HTTP status and body of a
/// refusal otherwise.
async fn open(api: &Api, url: &str) -> Result<Socket, (u16, String)> {
    let mut request = url.into_client_request().expect("a WebSocket request");
    let headers = request.headers_mut();
    headers.insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io, v4.channel.k8s.io"
            .parse()
            .expect("a header"),
    );
    if let Some(token) = api.token() {
        headers.insert(
            "Authorization",
            format!("Bearer {token}").parse().expect("a header"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, response)) => {
            assert_eq!(
                response
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|v| v.to_str().ok()),
                Some("v5.channel.k8s.io"),
                "the server speaks the protocol offered first"
            );
            Ok(socket)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((status, body))
        }
        Err(other) => panic!("opening {url}: {other}"),
    }
}

/// Reads the socket until the status message and the close, within
/// [`EXEC_TIMEOUT`].
async fn finish(mut socket: Socket) -> Outcome {
    let mut outcome = Outcome::default();
    let read = async {
        while let Some(message) = socket.next().await {
            match message.expect("a WebSocket message") {
                Message::Binary(bytes) => match bytes.split_first() {
                    Some((&1, data)) => outcome.stdout.extend_from_slice(data),
                    Some((&2, data)) => outcome.stderr.extend_from_slice(data),
                    Some((&3, data)) => {
                        outcome.status = serde_json::from_slice(data).expect("a JSON status");
                    }
                    other => panic!("a message on no known channel: {other:?}"),
                },
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(EXEC_TIMEOUT, read)
        .await
        .expect("the exec ended in time");
    assert!(outcome.status.is_object(), "no status before the close");
    outcome
}

/// Runs `command` in `pod` as `api` with no input.
async fn exec(api: &Api, cluster: &DockerCluster, pod: &str, command: &[&str]) -> Outcome {
    let url = exec_url(api, cluster, pod, command, "");
    let socket = open(api, &url)
        .await
        .unwrap_or_else(|(status, body)| panic!("exec refused: {status} {body}"));
    finish(socket).await
}

/// A cluster with a running pod `box` sleeping in the test image.
async fn cluster_with_a_pod() -> DockerCluster {
    let cluster = DockerCluster::start().await;
    cluster
        .create_pod(
            "box",
            json!({"containers": [one_container(&["sleep", "3600"])],
                   "terminationGracePeriodSeconds": 1}),
        )
        .await;
    cluster.running("box", 90).await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_returns_a_commands_output_and_exit_code_and_stdin_reaches_it() {
    let cluster = cluster_with_a_pod().await;
    let admin = &cluster.admin;

    let hostname = exec(admin, &cluster, "box", &["cat", "/etc/hostname"]).await;
    assert_eq!(hostname.exit_code(), 0, "{hostname:?}");
    assert!(
        !String::from_utf8_lossy(&hostname.stdout).trim().is_empty(),
        "{hostname:?}"
    );
    let container_hostname = berth_tests::docker::docker(&[
        "inspect",
        "--format",
        "{{.Config.Hostname}}",
        &cluster.cleanup.containers()[0],
    ]);
    assert_eq!(
        String::from_utf8_lossy(&hostname.stdout).trim(),
        container_hostname.trim()
    );

    let failing = exec(
        admin,
        &cluster,
        "box",
        &["sh", "-c", "echo to-stderr >&2; exit 3"],
    )
    .await;
    assert_eq!(failing.exit_code(), 3, "{failing:?}");
    assert_eq!(failing.stderr, b"to-stderr\n", "{failing:?}");
    assert!(failing.stdout.is_empty(), "{failing:?}");

    // stdin: `cat` echoes what is sent, and ends when stdin closes.
    let url = exec_url(admin, &cluster, "box", &["cat"], "stdin=true");
    let mut socket = open(admin, &url).await.expect("exec accepted");
    let mut sent = vec![0u8];
    sent.extend_from_slice(b"hello through stdin\n");
    socket
        .send(Message::binary(sent))
        .await
        .expect("sending stdin");
    let mut echoed = Vec::new();
    let read_echo = async {
        while !echoed.ends_with(b"hello through stdin\n") {
            match socket.next().await.expect("the socket stays open") {
                Ok(Message::Binary(bytes)) if bytes.first() == Some(&1) => {
                    echoed.extend_from_slice(&bytes[1..]);
                }
                Ok(Message::Binary(bytes)) => {
                    panic!("before stdin closed: {}", String::from_utf8_lossy(&bytes))
                }
                Ok(_) => {}
                Err(error) => panic!("reading the echo: {error}"),
            }
        }
    };
    tokio::time::timeout(EXEC_TIMEOUT, read_echo)
        .await
        .expect("cat echoed in time");
    socket
        .send(Message::binary(vec![255u8, 0]))
        .await
        .expect("closing stdin");
    let rest = finish(socket).await;
    assert_eq!(
        rest.exit_code(),
        0,
        "cat ends when its input does: {rest:?}"
    );
    assert!(rest.stdout.is_empty(), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_may_not_exec_an_editor_may_and_each_exec_is_audited() {
    let cluster = cluster_with_a_pod().await;
    let tenant = cluster.tenant.clone();
    let base = cluster.admin.url("");
    cluster
        .admin
        .add_member(&tenant, "viewer@exec.test", "viewer-secret-1", "viewer")
        .await;
    cluster
        .admin
        .add_member(&tenant, "editor@exec.test", "editor-secret-1", "editor")
        .await;
    let viewer = Api::new(&base)
        .login("viewer@exec.test", "viewer-secret-1")
        .await;
    let editor = Api::new(&base)
        .login("editor@exec.test", "editor-secret-1")
        .await;

    let url = exec_url(&viewer, &cluster, "box", &["id"], "");
    let (status, body) = match open(&viewer, &url).await {
        Ok(_) => panic!("a viewer's exec was accepted"),
        Err(refused) => refused,
    };
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("exec into Pod"), "{body}");

    let done = exec(
        &editor,
        &cluster,
        "box",
        &["sh", "-c", "echo editor-was-here"],
    )
    .await;
    assert_eq!(done.exit_code(), 0, "{done:?}");
    assert_eq!(done.stdout, b"editor-was-here\n");

    // Errors come as the REST envelope, before any upgrade.
    let url = exec_url(&editor, &cluster, "box", &["true"], "container=nope");
    let (status, body) = open(&editor, &url).await.expect_err("refused");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("container nope is not valid for pod box, choose one of: [main]"),
        "{body}"
    );
    let url = exec_url(&editor, &cluster, "gone", &["true"], "");
    let (status, _) = open(&editor, &url).await.expect_err("refused");
    assert_eq!(status, 404);

    let audit = cluster
        .admin
        .eventually(
            &format!("/api/v1/tenants/{tenant}/audit?kind=Pod"),
            10,
            "the editor's exec in the audit log",
            |page| {
                items(page).iter().any(|entry| {
                    entry["verb"] == "exec"
                        && entry["user"] == "editor@exec.test"
                        && entry["code"] == 101
                })
            },
        )
        .await;
    let entry = items(&audit)
        .into_iter()
        .find(|entry| entry["verb"] == "exec" && entry["code"] == 101)
        .expect("an entry");
    assert_eq!(
        entry["name"], "box -c main -- sh -c echo editor-was-here",
        "who, which pod and container, and what ran: {entry}"
    );
}
