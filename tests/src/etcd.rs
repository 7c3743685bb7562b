//! A real etcd to compare Berth with, and `etcdctl` to drive either.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("finding a free port")
}

/// A throwaway etcd (Debian's `etcd-server`) on free loopback ports, stopped
/// and deleted when dropped.
pub struct RealEtcd {
    child: Child,
    /// `127.0.0.1:PORT` of its client listener.
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl RealEtcd {
    /// Starts etcd and waits until it answers. A missing `etcd` binary fails
    /// the test: the test command installs it.
    pub fn start() -> RealEtcd {
        let dir = tempfile::tempdir().expect("a temp dir for etcd");
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "default", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .args(["--log-level", "error", "--logger", "zap"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting etcd (Debian's etcd-server package; scripts/test installs it)");
        let etcd = RealEtcd {
            child,
            endpoint: format!("127.0.0.1:{client}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !etcdctl(&etcd.endpoint, &["endpoint", "health"], None).success {
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        etcd
    }
}

impl Drop for RealEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one `etcdctl` run printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Whether it exited 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `etcdctl --endpoints=ENDPOINT ARGS` (API v3), with `stdin` fed in.
pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    etcdctl_with_timeout(endpoint, args, stdin, None)
}

/// Like [`etcdctl`], but ends the command after `timeout` (for `watch`,
/// which never ends by itself); what it printed until then is kept.
pub fn etcdctl_with_timeout(
    endpoint: &str,
    args: &[&str],
    stdin: Option<&str>,
    timeout: Option<Duration>,
) -> Output {
    use std::io::Write;
    let mut command = match timeout {
        Some(t) => {
            let mut c = Command::new("timeout");
            c.arg(format!("{:.1}", t.as_secs_f64())).arg("etcdctl");
            c
        }
        None => Command::new("etcdctl"),
    };
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["--dial-timeout=5s", "--command-timeout=10s"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .expect("running etcdctl (Debian's etcd-client package)");
    if let Some(input) = stdin {
        child
            .stdin
            .as_mut()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("writing to etcdctl");
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().expect("waiting for etcdctl");
    Output {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Removes what legitimately differs between two etcd servers from a JSON
/// answer: cluster and member ids and raft terms.
pub fn normalize_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for field in ["cluster_id", "member_id", "raft_term"] {
                map.remove(field);
            }
            for inner in map.values_mut() {
                normalize_json(inner);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(normalize_json),
        _ => {}
    }
}
