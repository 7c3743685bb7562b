//! The Docker runtime in process, through the `Runtime` trait alone (no
//! server): a pod runs, its status comes from the engine's events, and
//! logs, exec, stats, inspect and list answer for it; stopping it removes
//! its containers. Needs the host's Docker engine: fails without it.

use std::sync::Arc;
use std::time::Duration;

use berth_agent::AgentArgs;
use berth_agent::runtime::docker::DockerRuntime;
use berth_agent::runtime::{AssignedPod, Change, LogRequest, OwnedPod, PodKey, Runtime};
use berth_api::objects::pod::{Container, Pod, PodPhase, ResourceRequirements};
use berth_tests::docker::{EngineCleanup, TEST_IMAGE, ensure_test_image};
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    agent: AgentArgs,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand::random::<u32>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_and_answers_logs_exec_stats_inspect_and_list_then_stops() {
    ensure_test_image();
    let node = unique("runtime-");
    let tenant = unique("rt");
    let cleanup = EngineCleanup::new(&node, &[&tenant]);
    let settings = Flags::parse_from([
        "agent",
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "unused",
        "--name",
        &node,
        "--address",
        "127.0.0.1",
    ])
    .agent
    .resolve()
    .expect("valid flags");
    let shutdown = CancellationToken::new();
    let mut runtime = DockerRuntime::connect(&settings, None, shutdown.clone())
        .await
        .expect("the Docker engine answers");

    let mut pod = Pod::default();
    pod.metadata.name = "echo".into();
    pod.metadata.tenant = Some(tenant.clone());
    pod.metadata.uid = Some(format!("uid-{node}"));
    pod.spec.termination_grace_period_seconds = Some(1);
    pod.spec.containers = vec![Container {
        name: "main".into(),
        image: TEST_IMAGE.into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            "echo hello from berth; exec sleep 3600".into(),
        ],
        resources: Some(ResourceRequirements {
            limits: [("memory".to_owned(), "32Mi".to_owned())].into(),
            ..ResourceRequirements::default()
        }),
        ..Container::default()
    }];
    let key = PodKey::of(&pod);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    runtime
        .start(Arc::new(AssignedPod {
            pod,
            ..AssignedPod::default()
        }))
        .await;
    let running = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Change::Status(report) = runtime.next_change().await
                && report.status.phase == Some(PodPhase::Running)
            {
                return report;
            }
        }
    })
    .await
    .expect("the pod runs within a minute");
    assert_eq!(running.key, key);
    assert_eq!(running.uid, uid);

    let inspected = runtime
        .inspect(&key)
        .await
        .expect("inspect")
        .expect("a status");
    assert_eq!(inspected.phase, Some(PodPhase::Running));
    let owned = runtime.list().await.expect("list");
    assert_eq!(
        owned,
        [OwnedPod {
            key: key.clone(),
            uid: uid.clone()
        }]
    );

    // Running does not mean the process has written its line yet: the log
    // is followed until it has.
    let request = LogRequest {
        container: "main".into(),
        follow: true,
        ..LogRequest::default()
    };
    let mut stream = runtime.logs(&key, request).await.expect("logs");
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !text.ends_with('\n') {
            let Some(chunk) = futures::StreamExt::next(&mut stream).await else {
                break;
            };
            text.push_str(&String::from_utf8_lossy(&chunk.expect("log output")));
        }
    })
    .await
    .expect("the container writes its line within 10 s");
    drop(stream);
    assert_eq!(text, "hello from berth\n");
    let hostname = runtime
        .exec(&key, "main", vec!["cat".into(), "/etc/hostname".into()])
        .await
        .expect("exec");
    assert_eq!(hostname.exit_code, 0);
    assert_eq!(String::from_utf8_lossy(&hostname.output).trim(), "echo");
    let failing = runtime
        .exec(
            &key,
            "main",
            vec!["sh".into(), "-c".into(), "exit 3".into()],
        )
        .await
        .expect("exec");
    assert_eq!(failing.exit_code, 3);
    let stats = runtime.stats(&key).await.expect("stats");
    assert_eq!(stats.len(), 1, "{stats:?}");
    assert_eq!(stats[0].container, "main");
    assert!(stats[0].memory_bytes > 0, "{stats:?}");

    let owned = OwnedPod {
        key: key.clone(),
        uid,
    };
    runtime
        .stop(owned.clone(), Some(Duration::from_secs(1)))
        .await;
    // The runtime says when nothing is left of the pod; then nothing is.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Change::Stopped(stopped) = runtime.next_change().await {
                assert_eq!(stopped, owned);
                break;
            }
        }
    })
    .await
    .expect("the runtime says the pod is stopped");
    assert!(
        cleanup.containers().is_empty(),
        "the pod's container is gone once the runtime says so"
    );
    assert!(runtime.list().await.expect("list").is_empty());
    shutdown.cancel();
    let tasks = runtime.tasks();
    tasks.close();
    tasks.wait().await;
}
