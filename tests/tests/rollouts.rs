//! Rollouts end to end, on a real server with its controllers and three sim
//! nodes: a rolling update that never leaves its budgets (checked at every
//! event of a recorded watch stream), rollback to the previous and to a
//! named revision, the revision history, and the scale subresource.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_tests::cluster::{SimCluster, TENANT, deployment};
use berth_tests::rest::Api;
use futures::StreamExt;
use serde_json::{Value, json};

const DEPLOYMENT: &str = "/api/v1/tenants/acme/deployments/web";
const PODS: &str = "/api/v1/tenants/acme/pods";

/// How long one rollout of ten pods may take.
const ROLLOUT_SECONDS: u64 = 60;

/// The image of a pod or of a Deployment's template.
fn image(object: &Value) -> &str {
    let spec = if object["kind"] == "Deployment" {
        &object["spec"]["template"]["spec"]
    } else {
        &object["spec"]
    };
    spec["containers"][0]["image"].as_str().unwrap_or_default()
}

/// Whether a pod's Ready condition is True (with minReadySeconds 0 that is
/// available).
fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Creates Deployment `web` of `replicas` pods running `image` and waits
/// until the rollout is complete.
async fn create_web(admin: &Api, replicas: i64, image: &str) {
    let (status, body) = admin
        .post(
            "/api/v1/tenants/acme/deployments",
            deployment("web", replicas, image),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    rollout_complete(admin, replicas, image).await;
}

/// Changes the image of `web`'s template (read, change, replace).
async fn set_image(admin: &Api, new_image: &str) {
    let (status, mut web) = admin.get(DEPLOYMENT).await;
    assert_eq!(status, 200, "{web}");
    web["spec"]["template"]["spec"]["containers"][0]["image"] = json!(new_image);
    let (status, body) = admin.put(DEPLOYMENT, web).await;
    assert_eq!(status, 200, "{body}");
}

/// Waits until `web`'s rollout to `image` is complete, as `kubectl rollout
/// status` sees it: the status describes the current generation, every one
/// of `replicas` pods is updated and available, no old ReplicaSet keeps a
/// pod or asks for one, and every pod runs `image`. Answers the Deployment.
async fn rollout_complete(admin: &Api, replicas: i64, image_wanted: &str) -> Value {
    let web = admin
        .eventually(
            DEPLOYMENT,
            ROLLOUT_SECONDS,
            &format!("the rollout to {image_wanted} completes"),
            |d| {
                image(d) == image_wanted
                    && d["status"]["observedGeneration"] == d["metadata"]["generation"]
                    && d["status"]["replicas"] == replicas
                    && d["status"]["updatedReplicas"] == replicas
                    && d["status"]["availableReplicas"] == replicas
            },
        )
        .await;
    let uid = web["metadata"]["uid"].clone();
    admin
        .eventually(
            "/api/v1/tenants/acme/replicasets",
            ROLLOUT_SECONDS,
            "every old ReplicaSet is scaled to 0",
            |list| {
                items(list)
                    .iter()
                    .filter(|rs| rs["metadata"]["ownerReferences"][0]["uid"] == uid)
                    .filter(|rs| image(&rs["spec"]["template"]) != image_wanted)
                    .all(|rs| rs["spec"]["replicas"] == 0 && rs["status"]["replicas"] == 0)
            },
        )
        .await;
    admin
        .eventually(
            PODS,
            ROLLOUT_SECONDS,
            &format!("{replicas} ready pods of {image_wanted}"),
            |list| {
                let pods = items(list);
                pods.len() as i64 == replicas
                    && pods.iter().all(|p| image(p) == image_wanted && is_ready(p))
            },
        )
        .await;
    web
}

/// Records a watch stream in the background: every event until the first
/// whose resourceVersion reaches the revision it is told to stop at.
struct Recorder {
    stop_at: tokio::sync::watch::Sender<Option<i64>>,
    task: tokio::task::JoinHandle<Vec<Value>>,
}

impl Recorder {
    /// Opens `path` (a watch) and starts recording.
    async fn start(api: &Api, path: &str) -> Recorder {
        let response = api
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("opening the watch");
        assert_eq!(response.status(), 200, "opening {path}");
        let (stop_at, mut stop) = tokio::sync::watch::channel(None::<i64>);
        let task = tokio::spawn(async move {
            let mut stream = response.bytes_stream();
            let mut pending = Vec::new();
            let mut events = Vec::new();
            loop {
                let chunk = tokio::time::timeout(Duration::from_secs(30), stream.next())
                    .await
                    .expect("the watch sends a line at least every bookmark interval")
                    .expect("the watch stream does not end")
                    .expect("reading the watch stream");
                pending.extend_from_slice(&chunk);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let event: Value = serde_json::from_slice(&line).expect("a JSON event");
                    assert_ne!(event["type"], "ERROR", "the watch failed: {event}");
                    let revision: i64 = event["object"]["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|rv| rv.parse().ok())
                        .expect("every event has a resourceVersion");
                    let stop_at = *stop.borrow_and_update();
                    if let Some(stop_at) = stop_at
                        && revision > stop_at
                    {
                        return events;
                    }
                    if event["type"] != "BOOKMARK" {
                        events.push(event);
                    }
                    if stop_at == Some(revision) {
                        return events;
                    }
                }
            }
        });
        Recorder { stop_at, task }
    }

    /// Stops at `revision`: answers every event up to and including it.
    async fn stop_at(self, revision: i64) -> Vec<Value> {
        self.stop_at.send_replace(Some(revision));
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the recorder reaches the revision within a bookmark interval")
            .expect("the recorder did not panic")
    }
}

/// The pods of a list, by name.
fn by_name(pods: &[Value]) -> BTreeMap<String, Value> {
    pods.iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_owned(),
                p.clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_never_has_more_than_13_pods_or_fewer_than_8_available_at_any_event() {
    let cluster = SimCluster::start(&["--watch-bookmark-ms", "300"]).await;
    let admin = &cluster.admin;
    create_web(admin, 10, "busybox:1").await;

    // The budgets of the default strategy for 10 replicas.
    let (max_surge, max_unavailable) = (3, 2);
    let (most, fewest_available) = (10 + max_surge, 10 - max_unavailable);

    let (status, list) = admin.get(PODS).await;
    assert_eq!(status, 200, "{list}");
    let start: i64 = list["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .expect("a list resourceVersion");
    let mut pods = by_name(&items(&list));
    let recorder =
        Recorder::start(admin, &format!("{PODS}?watch=true&resourceVersion={start}")).await;

    set_image(admin, "busybox:2").await;
    rollout_complete(admin, 10, "busybox:2").await;
    let (status, end_list) = admin.get(PODS).await;
    assert_eq!(status, 200, "{end_list}");
    let end: i64 = end_list["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .expect("a list resourceVersion");
    let events = recorder.stop_at(end).await;

    // Replay, from the list the watch started at, checking every moment.
    assert_eq!(pods.len(), 10);
    assert!(pods.values().all(is_ready), "every pod starts ready");
    let (mut added, mut deleted) = (0, 0);
    for (index, event) in events.iter().enumerate() {
        let pod = &event["object"];
        let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
        match event["type"].as_str() {
            Some("ADDED") => {
                added += 1;
                assert!(
                    pods.insert(name.clone(), pod.clone()).is_none(),
                    "event {index}: {name} added twice"
                );
            }
            Some("MODIFIED") => {
                assert!(
                    pods.insert(name.clone(), pod.clone()).is_some(),
                    "event {index}: {name} modified before it was added"
                );
            }
            Some("DELETED") => {
                deleted += 1;
                assert!(
                    pods.remove(&name).is_some(),
                    "event {index}: {name} deleted but never seen"
                );
            }
            other => panic!("event {index}: unexpected type {other:?}: {event}"),
        }
        let available = pods.values().filter(|p| is_ready(p)).count();
        assert!(
            pods.len() <= most,
            "event {index} ({} {name}): {} pods exist, more than replicas + maxSurge = {most}",
            event["type"],
            pods.len()
        );
        assert!(
            available >= fewest_available,
            "event {index} ({} {name}): {available} pods available, fewer than \
             replicas - maxUnavailable = {fewest_available}",
            event["type"]
        );
    }
    assert!(
        added >= 10 && deleted >= 10,
        "the stream shows the rollout: {added} ADDED and {deleted} DELETED in {} events",
        events.len()
    );
    // The replay ends where the list at the end stands.
    let at_end = by_name(&items(&end_list));
    assert_eq!(
        pods.keys().collect::<Vec<_>>(),
        at_end.keys().collect::<Vec<_>>(),
        "the replayed pods are the pods listed at the end"
    );
    assert!(pods.values().all(|p| image(p) == "busybox:2"));
}

/// `web`'s revisions.
async fn revisions(admin: &Api) -> Vec<Value> {
    let (status, body) = admin.get(&format!("{DEPLOYMENT}/revisions")).await;
    assert_eq!(status, 200, "{body}");
    items(&body)
}

/// The revision numbers and images, in order, and which one is current.
fn history(revisions: &[Value]) -> Vec<(i64, String, bool)> {
    revisions
        .iter()
        .map(|r| {
            (
                r["revision"].as_i64().unwrap(),
                image(&r["template"]).to_owned(),
                r["current"] == true,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_restores_the_previous_or_the_named_revision_and_a_missing_one_changes_nothing()
{
    let cluster = SimCluster::start(&[]).await;
    let admin = &cluster.admin;
    create_web(admin, 10, "busybox:1").await;
    set_image(admin, "busybox:2").await;
    rollout_complete(admin, 10, "busybox:2").await;
    let before = revisions(admin).await;
    assert_eq!(
        history(&before),
        [
            (1, "busybox:1".into(), false),
            (2, "busybox:2".into(), true)
        ]
    );
    assert_eq!(before[0]["replicas"], 0, "{before:?}");
    assert_eq!(before[1]["replicas"], 10, "{before:?}");
    let first_replica_set = before[0]["replicaSet"].clone();

    // No revision: back to the previous one, whose ReplicaSet comes back as
    // the newest revision.
    let (status, rolled_back) = admin
        .post(&format!("{DEPLOYMENT}/rollback"), json!({}))
        .await;
    assert_eq!(status, 200, "{rolled_back}");
    assert_eq!(image(&rolled_back), "busybox:1", "{rolled_back}");
    rollout_complete(admin, 10, "busybox:1").await;
    let after = revisions(admin).await;
    assert_eq!(
        history(&after),
        [
            (2, "busybox:2".into(), false),
            (3, "busybox:1".into(), true)
        ]
    );
    assert_eq!(
        after[1]["replicaSet"], first_replica_set,
        "the old ReplicaSet is used again"
    );

    // A named revision.
    let (status, rolled_back) = admin
        .post(&format!("{DEPLOYMENT}/rollback"), json!({"revision": 2}))
        .await;
    assert_eq!(status, 200, "{rolled_back}");
    assert_eq!(image(&rolled_back), "busybox:2", "{rolled_back}");
    rollout_complete(admin, 10, "busybox:2").await;
    assert_eq!(
        history(&revisions(admin).await),
        [
            (3, "busybox:1".into(), false),
            (4, "busybox:2".into(), true)
        ]
    );

    // A revision that does not exist (any more: 1 and 2 were renumbered).
    let (_, web) = admin.get(DEPLOYMENT).await;
    for (body, message) in [
        (
            json!({"revision": 7}),
            r#"revision 7 of deployment "web" does not exist"#,
        ),
        (
            json!({"revision": 1}),
            r#"revision 1 of deployment "web" does not exist"#,
        ),
    ] {
        let (status, answer) = admin
            .post(&format!("{DEPLOYMENT}/rollback"), body.clone())
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["message"], message, "{answer}");
        assert_eq!(
            answer["error"]["details"][0]["field"], "revision",
            "{answer}"
        );
    }
    // Bad bodies name the field.
    for body in [
        json!({"revision": -1}),
        json!({"revision": "2"}),
        json!({"to": 2}),
    ] {
        let (status, answer) = admin
            .post(&format!("{DEPLOYMENT}/rollback"), body.clone())
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"]["details"][0]["field"] == "revision"
                || answer["error"]["details"][0]["field"] == "to",
            "{body}: {answer}"
        );
    }
    let (_, unchanged) = admin.get(DEPLOYMENT).await;
    assert_eq!(
        unchanged["metadata"]["generation"],
        web["metadata"]["generation"]
    );
    assert_eq!(
        unchanged["spec"], web["spec"],
        "a failed rollback writes nothing"
    );

    // A Deployment with one revision has none to go back to.
    let (status, body) = admin
        .post(
            "/api/v1/tenants/acme/deployments",
            deployment("solo", 1, "busybox:1"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, answer) = admin
        .post("/api/v1/tenants/acme/deployments/solo/rollback", json!({}))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"]["message"],
        r#"deployment "solo" has no previous revision to roll back to"#
    );
    // A paused one is not rolled back.
    let (status, body) = admin
        .patch(
            "/api/v1/tenants/acme/deployments/solo",
            json!({"spec": {"paused": true}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, answer) = admin
        .post(
            "/api/v1/tenants/acme/deployments/solo/rollback",
            json!({"revision": 1}),
        )
        .await;
    assert_eq!(status, 409, "{answer}");

    // Every rollback, done or refused, is in the audit log.
    let (status, audit) = admin
        .get("/api/v1/tenants/acme/audit?kind=Deployment&limit=100")
        .await;
    assert_eq!(status, 200, "{audit}");
    let rollbacks: Vec<(String, i64)> = items(&audit)
        .iter()
        .filter(|e| e["verb"] == "rollback")
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rollbacks,
        [
            ("solo".to_owned(), 409),
            ("solo".to_owned(), 400),
            ("web".to_owned(), 400),
            ("web".to_owned(), 400),
            ("web".to_owned(), 400),
            ("web".to_owned(), 400),
            ("web".to_owned(), 400),
            ("web".to_owned(), 200),
            ("web".to_owned(), 200),
        ],
        "newest first"
    );

    // A viewer reads the revisions but cannot roll back.
    let viewer = cluster.member("viewer@acme.test", "viewer").await;
    let (status, _) = viewer.get(&format!("{DEPLOYMENT}/revisions")).await;
    assert_eq!(status, 200);
    let (status, answer) = viewer
        .post(&format!("{DEPLOYMENT}/rollback"), json!({}))
        .await;
    assert_eq!(status, 403, "{answer}");
}

/// `web`'s scale.
const SCALE: &str = "/api/v1/tenants/acme/deployments/web/scale";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scale_subresource_shows_and_sets_only_replicas_for_editors_and_not_viewers() {
    let cluster = SimCluster::start(&[]).await;
    let admin = &cluster.admin;
    create_web(admin, 2, "busybox:1").await;

    let (status, scale) = admin.get(SCALE).await;
    assert_eq!(status, 200, "{scale}");
    let (_, web) = admin.get(DEPLOYMENT).await;
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["metadata"]["name"], "web");
    assert_eq!(scale["metadata"]["tenant"], TENANT);
    assert_eq!(scale["metadata"]["uid"], web["metadata"]["uid"]);
    assert_eq!(scale["spec"], json!({"replicas": 2}));
    assert_eq!(
        scale["status"],
        json!({"replicas": 2, "selector": "app=web"})
    );

    // Bad input names the field and writes nothing.
    let generation = web["metadata"]["generation"].clone();
    let scale_of = |replicas: Value| {
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
               "metadata": {"name": "web"}, "spec": {"replicas": replicas}})
    };
    let mut wrong_kind = scale_of(json!(3));
    wrong_kind["kind"] = json!("Deployment");
    let mut wrong_version = scale_of(json!(3));
    wrong_version["apiVersion"] = json!("apps/v1");
    let mut wrong_name = scale_of(json!(3));
    wrong_name["metadata"]["name"] = json!("api");
    let mut unknown = scale_of(json!(3));
    unknown["spec"]["replicaz"] = json!(3);
    for (body, field) in [
        (scale_of(json!(-1)), "spec.replicas"),
        (scale_of(json!("three")), "spec.replicas"),
        (scale_of(json!(2.5)), "spec.replicas"),
        (scale_of(Value::Null), "spec.replicas"),
        (wrong_kind, "kind"),
        (wrong_version, "apiVersion"),
        (wrong_name, "metadata.name"),
        (unknown, "spec.replicaz"),
    ] {
        let (status, answer) = admin.put(SCALE, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "BadRequest", "{answer}");
        assert_eq!(
            answer["error"]["details"][0]["field"], field,
            "{body}: {answer}"
        );
    }
    // A stale resourceVersion or another uid is a conflict.
    let mut stale = scale_of(json!(3));
    stale["metadata"]["resourceVersion"] = json!("1");
    let (status, answer) = admin.put(SCALE, stale).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "Conflict", "{answer}");
    let mut other_uid = scale_of(json!(3));
    other_uid["metadata"]["uid"] = json!("not-the-uid");
    let (status, answer) = admin.put(SCALE, other_uid).await;
    assert_eq!(status, 409, "{answer}");
    let (_, unchanged) = admin.get(DEPLOYMENT).await;
    assert_eq!(unchanged["metadata"]["generation"], generation);
    assert_eq!(unchanged["spec"]["replicas"], 2);

    // A viewer reads the scale but cannot change it.
    let viewer = cluster.member("viewer@acme.test", "viewer").await;
    let (status, _) = viewer.get(SCALE).await;
    assert_eq!(status, 200);
    let (status, answer) = viewer.put(SCALE, scale_of(json!(4))).await;
    assert_eq!(status, 403, "{answer}");

    // An editor's PUT changes spec.replicas and nothing else, as a PATCH.
    let (status, scaled) = admin.put(SCALE, scale_of(json!(4))).await;
    assert_eq!(status, 200, "{scaled}");
    assert_eq!(scaled["spec"]["replicas"], 4);
    let (_, web) = admin.get(DEPLOYMENT).await;
    assert_eq!(web["spec"]["replicas"], 4);
    assert_eq!(
        web["metadata"]["generation"],
        generation.as_i64().unwrap() + 1
    );
    assert_eq!(web["spec"]["template"], unchanged["spec"]["template"]);
    rollout_complete(admin, 4, "busybox:1").await;
    let (_, scale) = admin.get(SCALE).await;
    assert_eq!(scale["status"]["replicas"], 4, "{scale}");

    // With the current resourceVersion, a PUT goes through (read again if
    // a status write came between).
    let mut attempts = 0;
    loop {
        let (_, mut current) = admin.get(SCALE).await;
        current["spec"]["replicas"] = json!(3);
        let (status, answer) = admin.put(SCALE, current).await;
        attempts += 1;
        if status == 200 {
            assert_eq!(answer["spec"]["replicas"], 3, "{answer}");
            break;
        }
        assert!(status == 409 && attempts < 5, "{answer}");
    }

    // A ReplicaSet's scale carries its narrower selector.
    let (_, replica_sets) = admin.get("/api/v1/tenants/acme/replicasets").await;
    let name = items(&replica_sets)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, scale) = admin
        .get(&format!("/api/v1/tenants/acme/replicasets/{name}/scale"))
        .await;
    assert_eq!(status, 200, "{scale}");
    let hash = name.strip_prefix("web-").unwrap();
    assert_eq!(
        scale["status"]["selector"],
        format!("app=web,pod-template-hash={hash}")
    );

    // Only Deployments and ReplicaSets scale; unknown names are 404.
    for path in [
        "/api/v1/tenants/acme/pods/web/scale",
        "/api/v1/tenants/acme/deployments/nothing/scale",
    ] {
        let (status, answer) = admin.get(path).await;
        assert_eq!(status, 404, "{path}: {answer}");
    }

    // Every change of scale is in the audit log.
    let (_, audit) = admin
        .get("/api/v1/tenants/acme/audit?kind=Deployment&limit=100")
        .await;
    let codes: Vec<i64> = items(&audit)
        .iter()
        .filter(|e| e["verb"] == "update_scale")
        .map(|e| e["code"].as_i64().unwrap())
        .collect();
    assert!(codes.contains(&200) && codes.contains(&400) && codes.contains(&409));
}
