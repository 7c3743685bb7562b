//! The README cannot rot: its five-minute tour is read out of README.md
//! and every command in it is run as written, in order, against `berth up`
//! (with the sim runtime, so that it needs no image), from the
//! repository's root with the built `berth` first on PATH.

use berth_tests::cli::{Terminal, Up, workspace_root};
use berth_tests::process::berth_binary;

/// The heading of the tour's section.
const TOUR: &str = "## A five-minute tour";

/// The commands of the tour's `sh` blocks: every line that is not blank
/// or a comment, with a `\` continuation joined.
fn tour_commands(readme: &str) -> Vec<String> {
    let start = readme
        .find(TOUR)
        .unwrap_or_else(|| panic!("README.md has no {TOUR:?} section"));
    let section = &readme[start + TOUR.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = line.trim() == "```sh";
            continue;
        }
        if !in_block || line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => pending.push_str(start),
            None => {
                pending.push_str(line);
                commands.push(std::mem::take(&mut pending).trim().to_owned());
            }
        }
    }
    commands
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_of_the_readmes_tour_runs_as_written() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let commands = tour_commands(&readme);
    assert!(commands.len() >= 8, "the tour has only {commands:?}");
    for word in ["apply", "rollout status", "scale", "rollout undo", "logs"] {
        assert!(
            commands.iter().any(|c| c.contains(word)),
            "the tour never runs `berth {word}`: {commands:?}"
        );
    }
    let terminal = Terminal::new();
    let _up = Up::start(&terminal, &["--runtime", "sim", "--sim-nodes", "2"]);
    let bin = berth_binary();
    let path = format!(
        "{}:{}",
        bin.parent().expect("the binary's directory").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for command in &commands {
        let mut shell = std::process::Command::new("sh");
        shell.args(["-c", command]);
        terminal.prepare(&mut shell);
        let output = shell.env("PATH", &path).output().expect("running sh");
        assert!(
            output.status.success(),
            "the README's `{command}` failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Where the tour leaves things.
    let deployment = terminal.ok(&["get", "deployment", "web", "-o", "json"]);
    let deployment: serde_json::Value = serde_json::from_str(&deployment).expect("JSON");
    assert_eq!(
        deployment["status"]["availableReplicas"], deployment["spec"]["replicas"],
        "{deployment}"
    );
}
