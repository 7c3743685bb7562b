//! The RBAC matrix (`tests/data/rbac_matrix.txt`) against a live server:
//! for every object kind and verb (and the workload subresources and node
//! join tokens), each role in its own tenant, the
//! platform admin, and each role in a foreign tenant gets what the matrix
//! says: allow (2xx), deny (403) or hidden (404). The foreign tenant holds
//! objects of the same names, so a 404 there means hidden, not absent.

use berth_tests::db::{TestBackend, TestDb, create_user};
use berth_tests::process::TestServer;
use berth_tests::rest::Api;
use serde_json::{Value, json};

const MATRIX: &str = include_str!("../data/rbac_matrix.txt");
const ADMIN: &str = "admin@berth.local";
const ADMIN_PASSWORD: &str = "admin-secret-1";
const ROLES: [&str; 4] = ["viewer", "editor", "admin", "owner"];

/// A valid object of `kind` named `name`, with its plural.
fn object(kind: &str, name: &str) -> (&'static str, Value) {
    let meta = json!({"name": name, "labels": {"app": "web"}});
    let pod_spec = json!({"containers": [{"name": "c", "image": "busybox:1"}]});
    match kind {
        "Deployment" | "ReplicaSet" => (
            if kind == "Deployment" {
                "deployments"
            } else {
                "replicasets"
            },
            json!({"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec},
            }}),
        ),
        "Pod" => (
            "pods",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}),
        ),
        "Service" => (
            "services",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": meta,
                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        ),
        "EndpointSlice" => (
            "endpointslices",
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": kind, "metadata": meta,
                   "addressType": "IPv4", "ports": [{"port": 8080}],
                   "endpoints": [{"addresses": ["10.0.0.5"], "conditions": {"ready": true}}]}),
        ),
        "ConfigMap" => (
            "configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"a": "b"}}),
        ),
        "Secret" => (
            "secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": {"a": "Yg=="}}),
        ),
        "Volume" => (
            "volumes",
            json!({"apiVersion": "berth.dev/v1", "kind": "Volume", "metadata": meta, "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            }}),
        ),
        "HorizontalPodAutoscaler" => (
            "horizontalpodautoscalers",
            json!({"apiVersion": "autoscaling/v2", "kind": kind, "metadata": meta, "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 3,
                "metrics": [{"type": "Resource", "resource": {
                    "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50},
                }}],
            }}),
        ),
        "Event" => (
            "events",
            json!({"apiVersion": "v1", "kind": "Event", "metadata": meta,
                   "involvedObject": {"kind": "Pod", "name": "web"},
                   "reason": "Tested", "message": "a test event", "type": "Normal"}),
        ),
        "Node" => (
            "nodes",
            json!({"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": {}}),
        ),
        other => panic!("no sample object for {other}"),
    }
}

/// A row's kind without its subresource, and the subresource:
/// `Deployment/scale` → (`Deployment`, `scale`).
fn split_kind(kind: &str) -> (&str, Option<&str>) {
    match kind.split_once('/') {
        Some((kind, subresource)) => (kind, Some(subresource)),
        None => (kind, None),
    }
}

/// Rows whose targets belong to no tenant.
fn is_cluster_scoped(kind: &str) -> bool {
    matches!(kind, "Node" | "NodeJoinToken")
}

/// Two ReplicaSets owned by the Deployment `deployment` (its uid given),
/// revisions 1 (an older image) and 2 (its template), so that it has a
/// revision to roll back to.
fn history(deployment: &str, uid: &str) -> [Value; 2] {
    [(1, "busybox:0"), (2, "busybox:1")].map(|(revision, image)| {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
            "name": format!("{deployment}-{revision}"),
            "labels": {"app": "web"},
            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                 "name": deployment, "uid": uid, "controller": true}],
        }, "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": image}]}},
        }})
    })
}

fn collection(tenant: Option<&str>, plural: &str) -> String {
    match tenant {
        Some(tenant) => format!("/api/v1/tenants/{tenant}/{plural}"),
        None => format!("/api/v1/{plural}"),
    }
}

/// Runs one request of `verb` on `kind` as `api` and says what happened.
/// `join_token` is the id of the node join token this caller's delete
/// revokes.
async fn attempt(
    api: &Api,
    tenant: Option<&str>,
    kind: &str,
    verb: &str,
    caller: &str,
    join_token: i64,
) -> String {
    let target_name = format!("t-{caller}");
    let (kind, subresource) = split_kind(kind);
    let (status, answer) = if kind == "PodSecurity" {
        let level = subresource.unwrap_or("baseline");
        let tenant = tenant.expect("the level belongs to a tenant");
        let path = format!("/api/v1/tenants/{tenant}/pod-security");
        match verb {
            "update" => api.put(&path, json!({"level": level})).await,
            other => panic!("no request for verb {other} of the Pod Security level"),
        }
    } else if kind == "NodeJoinToken" {
        let base = "/api/v1/nodes/join-tokens";
        match verb {
            "list" => api.get(base).await,
            "create" => api.post(base, json!({"description": caller})).await,
            "delete" => api.delete(&format!("{base}/{join_token}")).await,
            other => panic!("no request for verb {other} of join tokens"),
        }
    } else if let Some(subresource) = subresource {
        let (plural, _) = object(kind, &target_name);
        let path = format!("{}/{target_name}/{subresource}", collection(tenant, plural));
        match (subresource, verb) {
            ("scale" | "revisions", "get") => api.get(&path).await,
            ("scale", "update") => {
                api.put(
                    &path,
                    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                           "metadata": {"name": target_name}, "spec": {"replicas": 1}}),
                )
                .await
            }
            ("rollback", "update") => api.post(&path, json!({})).await,
            ("log", "get") => match api.get(&path).await {
                // No node runs the pod: the caller got past authorization
                // to the pod itself.
                (400, answer)
                    if answer["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("is waiting to start")) =>
                {
                    (200, answer)
                }
                other => other,
            },
            ("exec", "exec") => match api.post(&format!("{path}?command=true"), json!({})).await {
                // No node runs the pod: the caller got past authorization
                // to the pod itself.
                (400, answer)
                    if answer["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("is not running")) =>
                {
                    (200, answer)
                }
                other => other,
            },
            ("metrics", "get") => api.get(&path).await,
            ("metrics", "list") => {
                api.get(&format!("{}/metrics", collection(tenant, plural)))
                    .await
            }
            other => panic!("no request for {other:?}"),
        }
    } else {
        plain_attempt(api, tenant, kind, verb, caller).await
    };
    match status {
        200..=299 if verb == "reveal" => {
            let revealed = answer["data"]["a"] == "Yg==";
            let redacted = answer["data"]["a"] == "";
            assert!(revealed || redacted, "{kind} {verb}: {answer}");
            if revealed { "allow" } else { "deny" }.into()
        }
        200..=299 => "allow".into(),
        403 => "deny".into(),
        404 => "hidden".into(),
        other => format!("status {other}: {answer}"),
    }
}

/// One request of `verb` on an object of `kind` (no subresource).
async fn plain_attempt(
    api: &Api,
    tenant: Option<&str>,
    kind: &str,
    verb: &str,
    caller: &str,
) -> (u16, Value) {
    let target_name = format!("t-{caller}");
    let (plural, body) = object(kind, &target_name);
    let base = collection(tenant, plural);
    match verb {
        "get" | "reveal" => api.get(&format!("{base}/{target_name}")).await,
        "list" => api.get(&base).await,
        "watch" => {
            let response = api
                .request(
                    reqwest::Method::GET,
                    &format!("{base}?watch=true&resourceVersion=1"),
                )
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            drop(response);
            (status, Value::Null)
        }
        "create" => {
            api.post(&base, object(kind, &format!("new-{caller}")).1)
                .await
        }
        "update" => api.put(&format!("{base}/{target_name}"), body).await,
        "patch" => {
            api.patch(
                &format!("{base}/{target_name}"),
                json!({"metadata": {"labels": {"patched": "yes"}}}),
            )
            .await
        }
        "delete" => api.delete(&format!("{base}/d-{caller}")).await,
        other => panic!("no request for verb {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_gets_what_the_rbac_matrix_says_for_every_kind_and_verb() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = TestServer::start(&db.url, &["--admin-password", ADMIN_PASSWORD]);
    let platform = Api::new(server.process.url(""))
        .login(ADMIN, ADMIN_PASSWORD)
        .await;
    for tenant in ["own", "foreign"] {
        let (status, body) = platform
            .post("/api/v1/tenants", json!({"name": tenant}))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let store = db.open().await;
    let mut callers = Vec::new();
    for role in ROLES {
        let email = format!("{role}@own.test");
        create_user(&store, &email, "role-password-1", Some(("own", role))).await;
        let api = Api::new(server.process.url(""))
            .login(&email, "role-password-1")
            .await;
        callers.push((role, api));
    }
    store.close().await;
    callers.push(("platform", platform.clone()));

    let rows: Vec<Vec<&str>> = MATRIX
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    // The objects every row works on: the same names in both tenants.
    let kinds: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r[0])
        .filter(|k| !matches!(*k, "Member" | "Token" | "Tenant" | "AuditEntry"))
        .collect();
    let object_kinds: std::collections::BTreeSet<&str> = kinds
        .iter()
        .map(|k| split_kind(k).0)
        .filter(|k| !matches!(*k, "NodeJoinToken" | "PodSecurity"))
        .collect();
    for kind in &object_kinds {
        let tenants: Vec<Option<&str>> = if is_cluster_scoped(kind) {
            vec![None]
        } else {
            vec![Some("own"), Some("foreign")]
        };
        for tenant in tenants {
            for (caller, _) in &callers {
                for prefix in ["t", "d"] {
                    let (plural, body) = object(kind, &format!("{prefix}-{caller}"));
                    let (status, answer) = platform.post(&collection(tenant, plural), body).await;
                    assert_eq!(status, 201, "creating a {kind}: {answer}");
                    if *kind == "Deployment" && prefix == "t" && tenant == Some("own") {
                        let name = format!("t-{caller}");
                        let uid = answer["metadata"]["uid"].as_str().expect("a uid");
                        for replica_set in history(&name, uid) {
                            let (status, answer) = platform
                                .post("/api/v1/tenants/own/replicasets", replica_set)
                                .await;
                            assert_eq!(status, 201, "creating a revision: {answer}");
                        }
                    }
                }
            }
        }
    }
    // A node join token per caller, for that caller's delete.
    let mut join_tokens = std::collections::BTreeMap::new();
    for (caller, _) in &callers {
        let (status, answer) = platform
            .post("/api/v1/nodes/join-tokens", json!({"description": caller}))
            .await;
        assert_eq!(status, 201, "creating a join token: {answer}");
        join_tokens.insert(*caller, answer["id"].as_i64().expect("an id"));
    }

    let mut mismatches = Vec::new();
    let mut checked = 0;
    for row in rows.iter().filter(|r| kinds.contains(r[0])) {
        let (kind, verb) = (row[0], row[1]);
        let cluster_scoped = is_cluster_scoped(kind);
        for (column, (caller, api)) in callers.iter().enumerate() {
            let expected = row[2 + column];
            let own = if cluster_scoped { None } else { Some("own") };
            let join_token = join_tokens[caller];
            let got = attempt(api, own, kind, verb, caller, join_token).await;
            checked += 1;
            if got != expected {
                mismatches.push(format!(
                    "{kind} {verb} as {caller}: expected {expected}, got {got}"
                ));
            }
            if !cluster_scoped && *caller != "platform" {
                let expected = row[7];
                let got = attempt(api, Some("foreign"), kind, verb, caller, join_token).await;
                checked += 1;
                if got != expected {
                    mismatches.push(format!(
                        "{kind} {verb} as {caller} in a foreign tenant: expected {expected}, got {got}"
                    ));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {checked} cells differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(checked > 500, "only {checked} cells were checked");
}
