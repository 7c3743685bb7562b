//! `bench cli`: how soon `berth get pods` has printed a tenant of 1,000
//! pods, from the moment the process is started to the moment it exits
//! (its whole table written to a pipe), as a user at a terminal waits for
//! it. Beside it, the same with `-o wide` and `-o json`, a small list
//! (`get deployments`), and `get pods` again with the machine's other core
//! kept busy by a spinning process, the shape of a laptop that is doing
//! something else.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;
use berth_tests::cli::Terminal;

use crate::process_stats::cpu_model;
use crate::server_under_test::{ADMIN_EMAIL, ADMIN_PASSWORD, tenant_of_pods};
use crate::{ms, percentile};

const TENANT: &str = "shop";

/// What to measure.
pub struct Plan {
    /// Pods in the tenant.
    pub pods: u32,
    /// Runs of each command.
    pub runs: usize,
    /// The longest wait for the pods to run.
    pub timeout: Duration,
}

/// Runs `berth ARGS` `runs` times; answers the wall times and the last
/// run's output size in lines.
fn time(terminal: &Terminal, args: &[&str], runs: usize) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut times = Vec::with_capacity(runs);
    let mut lines = 0;
    for _ in 0..runs {
        let mut command = terminal.command(args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let begun = Instant::now();
        let output = command.spawn()?.wait_with_output()?;
        times.push(begun.elapsed());
        if !output.status.success() {
            bail!(
                "berth {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        lines = output.stdout.iter().filter(|b| **b == b'\n').count();
    }
    times.sort();
    Ok((times, lines))
}

/// A process that spins on one core until killed.
struct Spinner(std::process::Child);

impl Spinner {
    fn start() -> anyhow::Result<Spinner> {
        Ok(Spinner(
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdout(Stdio::null())
                .spawn()?,
        ))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the benchmark and prints its figures.
pub async fn run(plan: Plan) -> anyhow::Result<()> {
    println!(
        "berth CLI benchmark: {}; a tenant of {} pods on 20 sim nodes, SQLite, release build",
        cpu_model(),
        plan.pods
    );
    let (server, _agent, _) = tenant_of_pods(TENANT, plan.pods, plan.timeout).await?;
    let terminal = Terminal::new();
    terminal.login(&server.server.process.url(""), ADMIN_EMAIL, ADMIN_PASSWORD);
    terminal.ok(&["tenant", "use", TENANT]);
    // One run first, so that the binary is in the page cache.
    terminal.ok(&["get", "pods"]);
    println!(
        "\nfrom starting `berth` to its exit with everything printed, {} runs each (goal: `get pods` ≤ 300 ms)",
        plan.runs
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>7}",
        "command", "p50", "p99", "max", "lines"
    );
    let shapes: [(&str, &[&str], bool); 5] = [
        ("get pods", &["get", "pods"], false),
        ("get pods -o wide", &["get", "pods", "-o", "wide"], false),
        ("get pods -o json", &["get", "pods", "-o", "json"], false),
        ("get deployments", &["get", "deployments"], false),
        ("get pods, other core busy", &["get", "pods"], true),
    ];
    for (label, args, busy) in shapes {
        let _spinner = if busy { Some(Spinner::start()?) } else { None };
        let (times, lines) = time(&terminal, args, plan.runs)?;
        println!(
            "{label:<34} {:>9} {:>9} {:>9} {lines:>7}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(*times.last().unwrap_or(&Duration::ZERO)),
        );
    }
    Ok(())
}
