//! A real image registry on loopback for the image tests: Debian's
//! `docker-registry` (the CNCF distribution registry) with a password file,
//! holding the test image under a private name. The Docker engine accepts
//! a `127.0.0.1:PORT` registry without TLS.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::docker::{TEST_IMAGE, docker};
use crate::process::free_port;

/// A registry process, stopped and its data removed when dropped, with
/// the images it was given untagged from the engine.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// The one user.
    pub username: String,
    /// Its password.
    pub password: String,
    dir: tempfile::TempDir,
    pushed: Vec<String>,
}

impl Registry {
    /// Starts a registry that asks for `username`/`password` (bcrypt, as
    /// the registry requires) and waits until it answers.
    pub fn start(username: &str, password: &str) -> Registry {
        let dir = tempfile::tempdir().expect("a directory for the registry");
        let htpasswd = dir.path().join("htpasswd");
        let output = Command::new("htpasswd")
            .args(["-Bbn", username, password])
            .output()
            .expect("running htpasswd (apache2-utils; scripts/test installs it)");
        assert!(output.status.success(), "htpasswd failed");
        std::fs::write(&htpasswd, &output.stdout).expect("writing the password file");
        let address = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {address}\n\
                 auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                dir.path().join("data").display(),
                htpasswd.display()
            ),
        )
        .expect("writing the registry's config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .expect("starting docker-registry (scripts/test installs it)");
        let registry = Registry {
            child,
            address,
            username: username.to_owned(),
            password: password.to_owned(),
            dir,
            pushed: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not listen on {}",
                registry.address
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    /// Pushes the test image as `name` (`repo:tag`) into the registry,
    /// signed in with a Docker client configuration of its own (the
    /// machine's is left alone), then untags it from the engine so that a
    /// pod must pull it. Answers the full reference.
    pub fn push_test_image(&mut self, name: &str) -> String {
        let reference = format!("{}/{name}", self.address);
        docker(&["tag", TEST_IMAGE, &reference]);
        let config = self.client_config();
        let login = Command::new("docker")
            .args(["--config", &config, "login", "--username", &self.username])
            .arg("--password-stdin")
            .arg(&self.address)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .expect("login's stdin")
                    .write_all(self.password.as_bytes())?;
                child.wait_with_output()
            })
            .expect("running docker login");
        assert!(
            login.status.success(),
            "docker login {}: {}",
            self.address,
            String::from_utf8_lossy(&login.stderr)
        );
        docker(&["--config", &config, "push", &reference]);
        docker(&["rmi", &reference]);
        self.pushed.push(reference.clone());
        reference
    }

    fn client_config(&self) -> String {
        let path: PathBuf = self.dir.path().join("docker-client");
        std::fs::create_dir_all(&path).expect("a Docker client directory");
        path.to_str().expect("a UTF-8 path").to_owned()
    }

    /// A `kubernetes.io/dockerconfigjson` Secret `name` that signs in to
    /// this registry, as REST JSON.
    pub fn pull_secret(&self, name: &str) -> serde_json::Value {
        use base64::Engine as _;
        let config = serde_json::json!({
            "auths": {
                self.address.clone(): {
                    "username": self.username,
                    "password": self.password,
                },
            },
        });
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {
                ".dockerconfigjson":
                    base64::engine::general_purpose::STANDARD.encode(config.to_string()),
            },
        })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reference in &self.pushed {
            let _ = Command::new("docker")
                .args(["rmi", reference])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
