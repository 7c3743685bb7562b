//! What a benchmark reads about processes from `/proc` (Linux): CPU time
//! and peak memory, and which program a process id really is.

use anyhow::{Context, bail};

/// `/proc`'s unit of CPU time (`USER_HZ`), 100 on Linux everywhere.
const TICKS_PER_SECOND: f64 = 100.0;

/// Process `pid`'s user plus system time so far, in seconds, every thread
/// included.
fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat_path = format!("/proc/{pid}/stat");
    let stat =
        std::fs::read_to_string(&stat_path).with_context(|| format!("reading {stat_path}"))?;
    // The command name may hold spaces; the fields after it are plain.
    // utime and stime are fields 14 and 15; the third comes first here.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .with_context(|| format!("{stat_path} is shorter than expected"))?
            .parse()?)
    };
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
}

/// Every core's busy time so far (all but idle and iowait), in seconds,
/// from `/proc/stat`.
fn machine_cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat has no cpu line")?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already
    // in user).
    let busy: f64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Ok(busy / TICKS_PER_SECOND)
}

/// CPU seconds used so far by some processes, by this one and by the whole
/// machine.
pub struct CpuTimes {
    /// Each process's, in the order asked for.
    pub processes: Vec<f64>,
    /// This process's: the benchmark's own clients.
    pub this_process: f64,
    /// Every core's busy time.
    pub machine: f64,
}

impl CpuTimes {
    /// The times of processes `pids`, of this one and of the machine now.
    pub fn now(pids: &[u32]) -> anyhow::Result<CpuTimes> {
        Ok(CpuTimes {
            processes: pids
                .iter()
                .map(|pid| process_cpu_seconds(*pid))
                .collect::<anyhow::Result<_>>()?,
            this_process: process_cpu_seconds(std::process::id())?,
            machine: machine_cpu_seconds()?,
        })
    }

    /// What was used between `before` and `self`.
    pub fn since(&self, before: &CpuTimes) -> CpuTimes {
        CpuTimes {
            processes: self
                .processes
                .iter()
                .zip(&before.processes)
                .map(|(now, then)| now - then)
                .collect(),
            this_process: self.this_process - before.this_process,
            machine: self.machine - before.machine,
        }
    }

    /// The machine's time beyond these processes and this one: a database
    /// server, and anything else that ran (a busy machine shows here).
    pub fn rest(&self) -> f64 {
        (self.machine - self.processes.iter().sum::<f64>() - self.this_process).max(0.0)
    }
}

/// A process's resident set, in bytes.
#[derive(Clone, Copy)]
pub struct Memory {
    /// Now (`VmRSS`).
    pub current: u64,
    /// The most it has been so far (`VmHWM`).
    pub peak: u64,
}

impl Memory {
    /// Process `pid`'s, from `/proc/<pid>/status`.
    pub fn of(pid: u32) -> anyhow::Result<Memory> {
        let status_path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&status_path)
            .with_context(|| format!("reading {status_path}"))?;
        let bytes = |field: &str| -> anyhow::Result<u64> {
            let kib: u64 = status
                .lines()
                .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|rest| rest.trim().strip_suffix("kB"))
                .with_context(|| format!("{status_path} has no {field} line in kB"))?
                .trim()
                .parse()
                .with_context(|| format!("{status_path}'s {field} is not a number"))?;
            Ok(kib * 1024)
        };
        Ok(Memory {
            current: bytes("VmRSS")?,
            peak: bytes("VmHWM")?,
        })
    }
}

/// Fails unless process `pid` runs `program` with `subcommand` as its first
/// argument: figures read from `/proc/<pid>` must be those of the process
/// meant, not of a wrapper that started it.
pub fn check_process_is(
    pid: u32,
    program: &std::path::Path,
    subcommand: &str,
) -> anyhow::Result<()> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .with_context(|| format!("reading /proc/{pid}/exe"))?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .with_context(|| format!("reading /proc/{pid}/cmdline"))?;
    let argument = cmdline.split(|b| *b == 0).nth(1).unwrap_or_default();
    let program = program
        .canonicalize()
        .with_context(|| format!("resolving {}", program.display()))?;
    if exe != program || argument != subcommand.as_bytes() {
        bail!(
            "process {pid} is {} {:?}, not {} {subcommand}",
            exe.display(),
            String::from_utf8_lossy(argument),
            program.display()
        );
    }
    Ok(())
}

/// The machine's CPU model, from `/proc/cpuinfo`, to print beside figures.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}
