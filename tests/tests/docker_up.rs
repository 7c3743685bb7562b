//! `berth up` on this host's Docker: one process serves `/readyz`, runs a
//! Docker node, and leaves the CLI signed in so that an example applied
//! with it reaches Running in real containers.

use berth_tests::cli::{Terminal, Up, header};

use berth_tests::docker::{EngineCleanup, TEST_IMAGE, docker, ensure_test_image};
use berth_tests::docker_cluster::unique;

/// The image `examples/web-app.yaml` names; this engine cannot pull, so
/// the test image (busybox, as the example expects) stands in for it.
const EXAMPLE_IMAGE: &str = "busybox:1.36";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_up_serves_runs_a_docker_node_and_signs_the_cli_in() {
    ensure_test_image();
    docker(&["tag", TEST_IMAGE, EXAMPLE_IMAGE]);
    let terminal = Terminal::new();
    let node = unique("up-");
    // As the other Docker tests' agents: a build machine's disk may be
    // fuller than the default thresholds allow.
    let mut up = Up::start(
        &terminal,
        &[
            "--node-name",
            &node,
            "--address",
            "127.0.0.1",
            "--eviction-hard",
            "memory.available<100Mi",
        ],
    );
    let _cleanup =
        EngineCleanup::new(&node, &["default"]).with_state_dir(&up.data_dir.path().join("agent"));
    for expected in [
        &format!("Dashboard   {}/", up.url),
        "Sign in as  admin@berth.local (password in ",
        &format!("Node        {node} (Docker)"),
        "CLI         signed in: context \"local\", tenant \"default\"",
    ] {
        assert!(
            up.banner.contains(expected),
            "{expected:?} missing from\n{}",
            up.banner
        );
    }
    let ready = reqwest::get(format!("{}/readyz", up.url))
        .await
        .expect("asking /readyz");
    assert_eq!(ready.status(), 200);

    // The CLI that `up` signed in.
    let nodes = terminal.ok(&["get", "nodes"]);
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with(&format!("{node} ")) && l.contains(" Ready ")),
        "{nodes}"
    );
    terminal.ok(&["apply", "-f", "examples/web-app.yaml"]);
    terminal.ok(&["rollout", "status", "deployment/web", "--timeout", "120s"]);
    let pods = terminal.ok(&["get", "pods", "-l", "app=web", "-o", "wide"]);
    assert_eq!(header(&pods)[2], "STATUS");
    let running: Vec<&str> = pods.lines().filter(|l| l.contains(" Running ")).collect();
    assert_eq!(running.len(), 3, "{pods}");
    assert!(running.iter().all(|l| l.contains(&node)), "{pods}");
    let containers = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=berth.dev/node={node}"),
    ]);
    assert!(
        containers.lines().count() >= 3,
        "the pods' containers: {containers}"
    );

    // exec: the command's output and its exit code; standard input with -i.
    let pod = running[0].split_whitespace().next().expect("a pod name");
    let run = terminal.run(&[
        "exec",
        pod,
        "--",
        "sh",
        "-c",
        "echo hello from $(hostname); exit 3",
    ]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stdout.starts_with("hello from "), "{run:?}");
    let run = terminal.run_with_input(&["exec", "-i", pod, "--", "cat"], "piped in\n");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "piped in\n"),
        "{run:?}"
    );
    let missing = terminal.fails(&["exec", pod, "-c", "nope", "--", "true"]);
    assert!(missing.stderr.contains("nope"), "{}", missing.stderr);

    assert_eq!(up.stop(), Some(0), "berth up stops cleanly on SIGTERM");
}

#[test]
fn berth_up_without_docker_says_so_and_offers_the_sim_runtime() {
    let terminal = Terminal::new();
    let data_dir = tempfile::tempdir().expect("a data directory");
    let run = terminal.run(&[
        "up",
        "--data-dir",
        data_dir.path().to_str().expect("a path"),
        "--docker-host",
        "unix:///nonexistent/docker.sock",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("Docker is not answering at unix:///nonexistent/docker.sock"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("berth up --runtime sim"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}
