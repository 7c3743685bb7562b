//! The host's Docker engine for end-to-end tests: the test image, made
//! once per machine from Debian's static busybox (the engine here has no
//! images and no registry, and tests never pull), and a guard that removes
//! what a test's agent left on the engine.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};

/// The test image: busybox (`sh`, `httpd`, `nc`, `sleep`, `wget`, `cat`,
/// `env`, …) in an otherwise empty root filesystem, with a page to serve
/// in `/www`, and a way to become root that works unless the container is
/// hardened: `/suid/su`, a setuid-root busybox, and `root` without a
/// password.
pub const TEST_IMAGE: &str = "berth-test/busybox:2";

/// Where Debian's `busybox-static` puts the binary.
const BUSYBOX: &str = "/bin/busybox";

/// What `/www/index.html` holds, for tests that fetch it.
pub const INDEX_HTML: &str = "berth test page\n";

/// Runs `docker` with `args`; panics with its output when it fails.
pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running docker {args:?} (is the Docker CLI installed?): {e}"));
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Makes [`TEST_IMAGE`] unless the engine has it. Safe against other test
/// processes doing the same at once (a lock file); fails the test when the
/// engine or busybox is missing.
pub fn ensure_test_image() {
    docker(&["version", "--format", "{{.Server.Version}}"]);
    let lock_path = std::env::temp_dir().join("berth-test-image.lock");
    let lock = fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", lock_path.display()));
    lock.lock().expect("locking the test image's lock file");
    if has_image(TEST_IMAGE) {
        return;
    }
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: install Debian's busybox-static (scripts/test does)"
    );
    let rootfs = tempfile::tempdir().expect("a directory for the root filesystem");
    build_rootfs(rootfs.path());
    let mut tar = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(rootfs.path())
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .expect("running tar");
    let status = Command::new("docker")
        .args(["import", "--change", "CMD [\"sh\"]", "-", TEST_IMAGE])
        .stdin(tar.stdout.take().expect("tar's output"))
        .stdout(Stdio::null())
        .status()
        .expect("running docker import");
    let packed = tar.wait().expect("waiting for tar");
    assert!(packed.success(), "tar of the test image's rootfs failed");
    assert!(status.success(), "docker import of {TEST_IMAGE} failed");
    drop(lock);
}

fn has_image(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// busybox, a link per applet, `/tmp`, `/www`, the files `httpd` and `id`
/// look for, and the setuid `/suid/su`.
fn build_rootfs(root: &Path) {
    let bin = root.join("bin");
    for dir in ["bin", "etc", "tmp", "www", "proc", "sys", "dev"] {
        fs::create_dir_all(root.join(dir)).expect("a rootfs directory");
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("/tmp's mode");
    fs::copy(BUSYBOX, bin.join("busybox")).expect("copying busybox");
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if !applet.is_empty() && applet != "busybox" {
            symlink("busybox", bin.join(applet)).expect("an applet link");
        }
    }
    fs::create_dir_all(root.join("usr")).expect("/usr");
    symlink("../bin", root.join("usr/bin")).expect("/usr/bin");
    symlink("bin", root.join("sbin")).expect("/sbin");
    let write = |path: &str, text: &str| {
        let mut file = fs::File::create(root.join(path)).expect("a rootfs file");
        file.write_all(text.as_bytes())
            .expect("writing a rootfs file");
    };
    // root has no password, so that `/suid/su` becomes root for anyone
    // whose container lets the setuid bit work.
    write(
        "etc/passwd",
        "root::0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    );
    fs::create_dir_all(root.join("suid")).expect("/suid");
    fs::copy(BUSYBOX, root.join("suid/busybox")).expect("copying busybox");
    fs::set_permissions(
        root.join("suid/busybox"),
        fs::Permissions::from_mode(0o4755),
    )
    .expect("the setuid bit");
    symlink("busybox", root.join("suid/su")).expect("/suid/su");
    write("etc/group", "root:x:0:\nnogroup:x:65534:\n");
    write("www/index.html", INDEX_HTML);
}

/// Removes, when dropped, every container and claim volume the agent of
/// node `node` made, the tenant networks of `tenants`, and what is still
/// mounted under the agent's state directory, so that a test leaves the
/// engine and the host as it found them.
pub struct EngineCleanup {
    /// The test's node name (a label on its containers).
    pub node: String,
    /// The test's tenants (each has a `berth-<node>-<tenant>` network).
    pub tenants: Vec<String>,
    /// The agent's `--state-dir`, when the test gave one.
    pub state_dir: Option<std::path::PathBuf>,
}

impl EngineCleanup {
    /// A guard for `node` and `tenants`.
    pub fn new(node: &str, tenants: &[&str]) -> EngineCleanup {
        EngineCleanup {
            node: node.to_owned(),
            tenants: tenants.iter().map(|t| (*t).to_owned()).collect(),
            state_dir: None,
        }
    }

    /// Also unmounts what the agent left mounted under `state_dir`.
    pub fn with_state_dir(mut self, state_dir: &Path) -> EngineCleanup {
        self.state_dir = Some(state_dir.to_owned());
        self
    }

    /// The names of the node's Docker volumes (its claims).
    pub fn volumes(&self) -> Vec<String> {
        docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label=berth.dev/node={}", self.node),
        ])
        .lines()
        .map(str::to_owned)
        .collect()
    }

    /// The ids of the node's containers (all of them, running or not).
    pub fn containers(&self) -> Vec<String> {
        containers_with_label(&format!("berth.dev/node={}", self.node))
    }
}

/// The ids of the containers carrying `label` (`key=value`).
pub fn containers_with_label(label: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label={label}"),
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

impl Drop for EngineCleanup {
    fn drop(&mut self) {
        let ids = self.containers();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .stdout(Stdio::null())
                .status();
        }
        for tenant in &self.tenants {
            let _ = Command::new("docker")
                .args(["network", "rm", &network_name(&self.node, tenant)])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        remove_isolation_rules(&self.node);
        let volumes = self.volumes();
        if !volumes.is_empty() {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f"])
                .args(&volumes)
                .stdout(Stdio::null())
                .status();
        }
        if let Some(state_dir) = &self.state_dir {
            for point in mounts_under(state_dir) {
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(&point)
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// The name of `tenant`'s bridge network on node `node`.
pub fn network_name(node: &str, tenant: &str) -> String {
    format!("berth-{node}-{tenant}")
}

/// Removes the host's `INPUT` rules that the agent of `node` added to
/// isolate its tenant networks (the jump to its chain), and the chain.
pub fn remove_isolation_rules(node: &str) {
    let Ok(listed) = Command::new("iptables")
        .args(["-w", "-S", "INPUT"])
        .output()
    else {
        return;
    };
    let marker = format!("\"berth:{node}");
    let mut chains = Vec::new();
    for rule in String::from_utf8_lossy(&listed.stdout).lines() {
        if let Some(rule) = rule.strip_prefix("-A INPUT ")
            && rule.contains(&marker)
        {
            let words: Vec<String> = rule
                .split_whitespace()
                .map(|w| w.trim_matches('"').to_owned())
                .collect();
            if let Some(target) = words.iter().skip_while(|w| *w != "-j").nth(1)
                && target.starts_with("BERTH-ISO-")
            {
                chains.push(target.clone());
            }
            let _ = Command::new("iptables")
                .args(["-w", "-D", "INPUT"])
                .args(&words)
                .status();
        }
    }
    for chain in chains {
        for action in ["-F", "-X"] {
            let _ = Command::new("iptables")
                .args(["-w", action, &chain])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// What is mounted under `dir` on this host, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    points
}
