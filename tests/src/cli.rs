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
