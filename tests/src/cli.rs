//! The `berth` CLI as a user runs it: a real process with a config file of
//! its own (in a temporary directory, never the tester's), no `BERTH_*`
//! variables but the ones a test sets, and its output and exit code kept.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::process::berth_binary;

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct Run {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// A user's terminal: a home and a config file of their own.
pub struct Terminal {
    home: tempfile::TempDir,
    envs: Vec<(String, String)>,
    dir: PathBuf,
}

impl Default for Terminal {
    fn default() -> Self {
        Self::new()
    }
}

impl Terminal {
    /// A new terminal, working in the workspace's root (where `examples/`
    /// is).
    pub fn new() -> Terminal {
        Terminal {
            home: tempfile::tempdir().expect("a home directory"),
            envs: Vec::new(),
            dir: workspace_root(),
        }
    }

    /// The config file `berth` keeps contexts in.
    pub fn config_path(&self) -> PathBuf {
        self.home.path().join(".config/berth/config")
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Sets an environment variable for every later command.
    pub fn env(&mut self, name: &str, value: &str) {
        self.envs.push((name.to_owned(), value.to_owned()));
    }

    /// `berth ARGS` as a command, ready to run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(berth_binary());
        command.args(args);
        self.prepare(&mut command);
        command
    }

    /// Sets up `command`'s environment as this terminal's.
    pub fn prepare(&self, command: &mut Command) {
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("BERTH_")
                || ["XDG_CONFIG_HOME", "EDITOR", "VISUAL", "DOCKER_HOST"].contains(&name.as_str())
            {
                command.env_remove(name);
            }
        }
        command
            .env("HOME", self.home.path())
            .env("NO_COLOR", "1")
            .current_dir(&self.dir);
        for (name, value) in &self.envs {
            command.env(name, value);
        }
    }

    /// Runs `berth ARGS` with `input` on standard input.
    pub fn run_with_input(&self, args: &[&str], input: &str) -> Run {
        let mut command = self.command(args);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("starting berth");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.as_bytes());
        }
        let output = child.wait_with_output().expect("waiting for berth");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs `berth ARGS` with nothing on standard input.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_input(args, "")
    }

    /// Runs `berth ARGS`, which must succeed; answers its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(
            run.code,
            0,
            "berth {} failed:\n{}{}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        run.stdout
    }

    /// Runs `berth ARGS`, which must fail; answers what it printed.
    pub fn fails(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_ne!(
            run.code,
            0,
            "berth {} should have failed:\n{}",
            args.join(" "),
            run.stdout
        );
        assert_one_plain_line(&run.stderr);
        run
    }

    /// Signs in as `email` on `server`, the password on standard input.
    pub fn login(&self, server: &str, email: &str, password: &str) -> String {
        let run = self.run_with_input(
            &[
                "login",
                "--server",
                server,
                "--email",
                email,
                "--password-stdin",
            ],
            &format!("{password}\n"),
        );
        assert_eq!(run.code, 0, "login failed: {}{}", run.stdout, run.stderr);
        run.stdout
    }
}

/// An error as a user must see it: one line, no panic, no backtrace, no
/// debug dump.
pub fn assert_one_plain_line(stderr: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no error was printed");
    for forbidden in [
        "panicked",
        "RUST_BACKTRACE",
        "stack backtrace",
        "Error {",
        "kind:",
    ] {
        assert!(
            !stderr.contains(forbidden),
            "the error shows {forbidden:?}: {stderr}"
        );
    }
    for line in &lines {
        assert!(
            line.starts_with("error: ") || line.starts_with("warning: "),
            "not an error line: {line:?} in {stderr}"
        );
    }
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_owned()
}

/// The lines of a table whose first cell is `name`.
pub fn row<'a>(table: &'a str, name: &str) -> Option<Vec<&'a str>> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&name))
}

/// A table's header cells, split on runs of two or more spaces (headers
/// such as `ACCESS MODES` hold one).
pub fn header(table: &str) -> Vec<String> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A running `berth up`, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Up {
    /// The process.
    pub child: std::process::Child,
    /// What it printed on standard output up to "Berth is up.".
    pub banner: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its data directory.
    pub data_dir: tempfile::TempDir,
}

impl Up {
    /// Starts `berth up` in `terminal` with `args` (beside a data
    /// directory and free loopback ports of its own) and waits up to 60 s
    /// for its "Berth is up." line.
    pub fn start(terminal: &Terminal, args: &[&str]) -> Up {
        use std::io::BufRead;
        let data_dir = tempfile::tempdir().expect("a data directory");
        let http = format!("127.0.0.1:{}", crate::process::free_port());
        let grpc = format!("127.0.0.1:{}", crate::process::free_port());
        let mut command = terminal.command(&["up"]);
        command
            .args([
                "--data-dir",
                data_dir.path().to_str().expect("a UTF-8 path"),
                "--http-addr",
                &http,
                "--grpc-addr",
                &grpc,
            ])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn().expect("starting berth up");
        let stdout = child.stdout.take().expect("stdout");
        let (lines_tx, lines_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut banner = String::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    banner.push_str(&line);
                    banner.push('\n');
                    if line == "Berth is up." {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("berth up did not come up: {banner} {:?}", child.wait());
                }
            }
        }
        // The rest of the banner, then keep draining.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while let Ok(line) =
            lines_rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Stop with") {
                break;
            }
        }
        std::thread::spawn(move || lines_rx.iter().for_each(drop));
        Up {
            child,
            banner,
            url: format!("http://{http}"),
            data_dir,
        }
    }

    /// Stops it with SIGTERM, as Ctrl-C would, and answers its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}
