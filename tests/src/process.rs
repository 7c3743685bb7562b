//! Berth's binaries as real processes.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The `berth` binary, built (once per test run) from the current sources
/// with the same cargo and profile as the tests, so it is never stale.
pub fn berth_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["build", "--quiet", "-p", "berth", "--bin", "berth"]);
            // Cargo hands a test the variables of the tests' own package;
            // passed on, they would differ from the outer build's (askama
            // and build scripts read them) and rebuild the binary's crates
            // twice per run.
            for (name, _) in std::env::vars_os() {
                let name = name.to_string_lossy().into_owned();
                if name.starts_with("CARGO_PKG_")
                    || [
                        "CARGO_MANIFEST_DIR",
                        "CARGO_MANIFEST_PATH",
                        "CARGO_CRATE_NAME",
                        "CARGO_PRIMARY_PACKAGE",
                        "CARGO_TARGET_TMPDIR",
                    ]
                    .contains(&name.as_str())
                {
                    build.env_remove(name);
                }
            }
            if !cfg!(debug_assertions) {
                build.arg("--release");
            }
            let status = build
                .status()
                .expect("running cargo to build the berth binary");
            assert!(status.success(), "building the berth binary failed");
            // Test binaries live in target/<profile>/deps; the berth binary
            // one level up.
            let exe = std::env::current_exe().expect("locating the test binary");
            let profile_dir = exe
                .parent()
                .and_then(|deps| {
                    if deps.ends_with("deps") {
                        deps.parent()
                    } else {
                        Some(deps)
                    }
                })
                .expect("the test binary has a parent directory");
            let binary = profile_dir.join("berth");
            assert!(binary.exists(), "{} was not built", binary.display());
            binary
        })
        .clone()
}

/// A running `berth server`, stopped (SIGKILL) when dropped.
pub struct ServerProcess {
    /// The process.
    pub child: std::process::Child,
    /// Where its HTTP listener is.
    pub http_addr: std::net::SocketAddr,
    /// Where its gRPC listener (the etcd API) is.
    pub grpc_addr: std::net::SocketAddr,
}

impl ServerProcess {
    /// Starts `berth server` with `args` (plus `--http-addr 127.0.0.1:0`
    /// unless given) and waits for its "listening" line.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> ServerProcess {
        use std::io::BufRead;
        let mut command = Command::new(berth_binary());
        command.arg("server").args(args);
        if !args.contains(&"--http-addr") {
            command.args(["--http-addr", "127.0.0.1:0"]);
        }
        if !args.contains(&"--grpc-addr") {
            command.args(["--grpc-addr", "127.0.0.1:0"]);
        }
        command
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::piped());
        let mut child = command.spawn().expect("starting berth server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("berth server exited before listening: {:?}", child.wait()))
            .expect("reading berth server's output");
        let (http_addr, grpc_addr) = line
            .strip_prefix("berth server listening on http://")
            .and_then(|rest| rest.split_once(" and grpc://"))
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        let http_addr = http_addr.parse().expect("a socket address");
        let grpc_addr = grpc_addr.parse().expect("a socket address");
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        ServerProcess {
            child,
            http_addr,
            grpc_addr,
        }
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `berth server` on a given database with a data dir of its own, which
/// lives as long as the value.
pub struct TestServer {
    /// The process.
    pub process: ServerProcess,
    /// Its data dir.
    pub data_dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server on `database_url` with `extra` arguments; without
    /// `--controllers=true` among them it runs no control loops.
    pub fn start(database_url: &str, extra: &[&str]) -> TestServer {
        Self::start_in(
            tempfile::tempdir().expect("a data dir"),
            database_url,
            extra,
        )
    }

    /// Starts a server in an existing data dir (a restart).
    pub fn start_in(data_dir: tempfile::TempDir, database_url: &str, extra: &[&str]) -> TestServer {
        let dir = data_dir
            .path()
            .to_str()
            .expect("a UTF-8 temp path")
            .to_owned();
        let mut args = vec!["--data-dir", dir.as_str(), "--database-url", database_url];
        args.extend_from_slice(extra);
        // The control loops write to the store on their own (the leader
        // key, pods); tests of the APIs count revisions, so they run without
        // them unless they ask.
        if !extra.iter().any(|a| a.starts_with("--controllers")) {
            args.push("--controllers=false");
        }
        TestServer {
            process: ServerProcess::start(&args, &[]),
            data_dir,
        }
    }

    /// A server with the etcd API open to every caller.
    pub fn open(database_url: &str) -> TestServer {
        Self::start(database_url, &["--etcd-auth", "none"])
    }

    /// `HOST:PORT` of its etcd API.
    pub fn etcd_endpoint(&self) -> String {
        self.process.grpc_addr.to_string()
    }
}

/// A running `berth agent`, killed when dropped.
pub struct AgentProcess(std::process::Child);

/// Runs `berth agent` with `args` (beside a server address nobody listens
/// on and an unused token), which it must refuse at start: exit code 2 and
/// one line on stderr, which is answered.
pub fn agent_refusal(args: &[&str]) -> String {
    let output = Command::new(berth_binary())
        .arg("agent")
        .args(["--server", "http://127.0.0.1:9", "--token", "unused"])
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("running berth agent");
    assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    stderr
}

impl AgentProcess {
    /// `berth agent --runtime sim --sim-nodes nodes --name name` against
    /// `server`, with its join token, plus `extra` arguments.
    pub fn sim(server: &TestServer, name: &str, nodes: usize, extra: &[&str]) -> AgentProcess {
        let token = std::fs::read_to_string(server.data_dir.path().join("node-token"))
            .expect("the server writes <data-dir>/node-token at first start");
        Self::sim_with_token(server, &token, name, nodes, extra)
    }

    /// Like [`AgentProcess::sim`], registering with `token` instead of the
    /// server's bootstrap join token.
    pub fn sim_with_token(
        server: &TestServer,
        token: &str,
        name: &str,
        nodes: usize,
        extra: &[&str],
    ) -> AgentProcess {
        let nodes = nodes.to_string();
        let runtime = ["--runtime", "sim", "--sim-nodes", nodes.as_str()];
        Self::spawn(server, token, name, &runtime, extra)
    }

    /// `berth agent --runtime docker --name name --address 127.0.0.1`
    /// against `server`, with its join token, plus `extra` arguments.
    ///
    /// Unless `extra` sets its own `--eviction-hard`, only kubelet's memory
    /// threshold applies: the disk is the test machine's, shared with build
    /// artefacts, and how full it is says nothing about what a test checks
    /// (kubelet's 15 % for images would taint a node on a disk 86 % full).
    pub fn docker(server: &TestServer, name: &str, extra: &[&str]) -> AgentProcess {
        let mut flags = vec!["--address", "127.0.0.1"];
        flags.extend_from_slice(extra);
        Self::docker_at(server, name, &flags)
    }

    /// Like [`AgentProcess::docker`], with the node's `--address` among
    /// `extra`.
    pub fn docker_at(server: &TestServer, name: &str, extra: &[&str]) -> AgentProcess {
        let token = std::fs::read_to_string(server.data_dir.path().join("node-token"))
            .expect("the server writes <data-dir>/node-token at first start");
        let mut runtime = vec!["--runtime", "docker"];
        if !extra.contains(&"--eviction-hard") {
            runtime.extend(["--eviction-hard", "memory.available<100Mi"]);
        }
        Self::spawn(server, &token, name, &runtime, extra)
    }

    /// Like [`AgentProcess::docker_at`], started through `wrapper` (a
    /// command and its arguments, such as `setpriv …`), with its standard
    /// error written to `stderr`.
    pub fn docker_under(
        wrapper: &[&str],
        server: &TestServer,
        name: &str,
        extra: &[&str],
        stderr: std::fs::File,
    ) -> AgentProcess {
        let token = std::fs::read_to_string(server.data_dir.path().join("node-token"))
            .expect("the server writes <data-dir>/node-token at first start");
        let (program, arguments) = wrapper.split_first().expect("a wrapper command");
        let child = Command::new(program)
            .args(arguments)
            .arg(berth_binary())
            .args(["agent", "--name", name, "--runtime", "docker"])
            .args(["--eviction-hard", "memory.available<100Mi"])
            .args(["--server", &format!("http://{}", server.process.grpc_addr)])
            .args(["--token", token.trim()])
            .args(extra)
            .stderr(stderr)
            .spawn()
            .expect("starting berth agent");
        AgentProcess(child)
    }

    fn spawn(
        server: &TestServer,
        token: &str,
        name: &str,
        runtime: &[&str],
        extra: &[&str],
    ) -> AgentProcess {
        let child = Command::new(berth_binary())
            .args(["agent", "--name", name])
            .args(runtime)
            .args(["--server", &format!("http://{}", server.process.grpc_addr)])
            .args(["--token", token.trim()])
            .args(extra)
            .spawn()
            .expect("starting berth agent");
        AgentProcess(child)
    }

    /// The agent's process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Freezes the agent (SIGSTOP), as a host cut off from the network
    /// falls silent without its pods stopping.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a paused agent go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signalling berth agent");
    }

    /// Kills the agent at once (SIGKILL), as a crashed host would stop.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
