//! Differential tests: the same etcdctl scenarios against a real etcd 3.4 and
//! against Berth (on SQLite and on PostgreSQL), answer for answer, after
//! removing what legitimately differs (cluster and member ids, raft terms,
//! lease ids chosen at random).

use std::collections::HashMap;
use std::time::Duration;

use berth_tests::db::{TestBackend, TestDb};
use berth_tests::etcd::{Output, RealEtcd, etcdctl_with_timeout, normalize_json};
use berth_tests::process::TestServer;

/// One etcdctl call. `{lease}` in an argument is replaced by the (hex) id of
/// the last lease granted in the scenario.
struct Step {
    args: &'static [&'static str],
    stdin: Option<&'static str>,
    /// For `watch`: how long to let it print before ending it.
    watch_for: Option<Duration>,
}

const fn ctl(args: &'static [&'static str]) -> Step {
    Step {
        args,
        stdin: None,
        watch_for: None,
    }
}

const fn txn(stdin: &'static str) -> Step {
    Step {
        args: &["txn", "-w", "json"],
        stdin: Some(stdin),
        watch_for: None,
    }
}

const fn watch(args: &'static [&'static str]) -> Step {
    Step {
        args,
        stdin: None,
        watch_for: Some(Duration::from_millis(1500)),
    }
}

/// Runs the steps in order against one endpoint; returns each step's answer
/// in a comparable form.
fn run(endpoint: &str, steps: &[Step]) -> Vec<String> {
    let mut lease_hex = String::new();
    let mut lease_names: HashMap<i64, String> = HashMap::new();
    steps
        .iter()
        .map(|step| {
            let args: Vec<String> = step
                .args
                .iter()
                .map(|a| a.replace("{lease}", &lease_hex))
                .collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = etcdctl_with_timeout(endpoint, &args, step.stdin, step.watch_for);
            if args.starts_with(&["lease", "grant"]) {
                let answer: serde_json::Value = serde_json::from_str(&output.stdout)
                    .unwrap_or_else(|e| panic!("lease grant answered {output:?}: {e}"));
                let id = answer["ID"].as_i64().expect("a lease id");
                lease_hex = format!("{id:x}");
                let name = format!("lease-{}", lease_names.len() + 1);
                lease_names.insert(id, name);
            }
            // The command as written: the lease ids substituted differ.
            // So do the endpoints' ports, which some answers name.
            let mut output = output;
            output.stdout = output.stdout.replace(endpoint, "<endpoint>");
            output.stderr = output.stderr.replace(endpoint, "<endpoint>");
            format!(
                "$ etcdctl {}\n{}",
                step.args.join(" "),
                comparable(&output, &lease_names, step.watch_for.is_some())
            )
        })
        .collect()
}

/// The parts of an answer that must match: success, the JSON answers with
/// server identities and lease ids replaced, and the error line.
fn comparable(output: &Output, leases: &HashMap<i64, String>, is_watch: bool) -> String {
    let mut text = String::new();
    if !is_watch {
        text.push_str(if output.success { "ok\n" } else { "failed\n" });
    }
    for line in output.stdout.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(mut value) => {
                normalize_json(&mut value);
                rename_leases(&mut value, leases);
                hide_hashes(&mut value);
                if is_watch {
                    // Events are compared one by one: how a server groups
                    // revisions into responses is its own business.
                    for event in value["Events"].as_array().cloned().unwrap_or_default() {
                        text.push_str(&format!("event {event}\n"));
                    }
                    if value["Canceled"].as_bool() == Some(true) {
                        text.push_str(&format!(
                            "canceled compact_revision={}\n",
                            value["CompactRevision"]
                        ));
                    }
                } else {
                    text.push_str(&format!("{value}\n"));
                }
            }
            Err(_) => text.push_str(&format!("{line}\n")),
        }
    }
    for line in output.stderr.lines().filter(|l| l.starts_with("Error:")) {
        text.push_str(&format!("{line}\n"));
    }
    text
}

/// A key space's hash is each server's own (etcd hashes its database's
/// pages, Berth its keys and values): the answers must have one, equal or
/// not.
fn hide_hashes(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (field, inner) in map.iter_mut() {
                if field == "hash" && inner.is_u64() {
                    *inner = serde_json::Value::String("<hash>".into());
                } else {
                    hide_hashes(inner);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(hide_hashes),
        _ => {}
    }
}

/// Lease ids are chosen at random by each server: name them by order of
/// grant. A lease's remaining TTL depends on timing: keep only whether it is
/// still alive.
fn rename_leases(value: &mut serde_json::Value, leases: &HashMap<i64, String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (field, inner) in map.iter_mut() {
                if matches!(field.as_str(), "ID" | "id" | "lease")
                    && let Some(name) = inner.as_i64().and_then(|id| leases.get(&id))
                {
                    *inner = serde_json::Value::String(name.clone());
                } else {
                    rename_leases(inner, leases);
                }
            }
            // etcd lists a lease's keys in no particular order.
            if map.contains_key("granted-ttl")
                && let Some(serde_json::Value::Array(keys)) = map.get_mut("keys")
            {
                keys.sort_by_key(|k| k.to_string());
            }
            if map.contains_key("granted-ttl")
                && let Some(ttl) = map.get_mut("ttl")
                && ttl.as_i64().is_some_and(|t| t > 0)
            {
                *ttl = serde_json::Value::String("alive".into());
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|i| rename_leases(i, leases)),
        _ => {}
    }
}

const KV_SCENARIO: &[Step] = &[
    ctl(&["put", "/a", "1", "-w", "json"]),
    ctl(&["put", "/a", "2", "--prev-kv", "-w", "json"]),
    ctl(&["put", "/b", "3", "-w", "json"]),
    ctl(&["put", "/c/x", "4", "-w", "json"]),
    ctl(&["put", "/c/y", "5", "-w", "json"]),
    ctl(&["put", "/d", "", "-w", "json"]),
    ctl(&["get", "/a", "-w", "json"]),
    ctl(&["get", "/", "--prefix", "-w", "json"]),
    ctl(&["get", "/", "--prefix", "--limit=2", "-w", "json"]),
    ctl(&[
        "get",
        "/",
        "--prefix",
        "--sort-by=MODIFY",
        "--order=DESCEND",
        "-w",
        "json",
    ]),
    ctl(&["get", "/", "--prefix", "--sort-by=VERSION", "-w", "json"]),
    ctl(&[
        "get",
        "/",
        "--prefix",
        "--sort-by=VALUE",
        "--order=DESCEND",
        "--limit=3",
        "-w",
        "json",
    ]),
    ctl(&["get", "/a", "--rev=2", "-w", "json"]),
    ctl(&["get", "/", "--prefix", "--rev=4", "-w", "json"]),
    ctl(&["get", "/", "--prefix", "--keys-only", "-w", "json"]),
    ctl(&["get", "/", "--prefix", "--count-only", "-w", "json"]),
    ctl(&["get", "/missing", "-w", "json"]),
    ctl(&["get", "/b", "--from-key", "-w", "json"]),
    ctl(&["get", "/a", "/c/y", "-w", "json"]),
    ctl(&["get", "/a", "--rev=1000", "-w", "json"]),
    ctl(&["del", "/nothing", "-w", "json"]),
    ctl(&["del", "/c", "--prefix", "--prev-kv", "-w", "json"]),
    ctl(&["del", "/a", "--prev-kv", "-w", "json"]),
    ctl(&["get", "/", "--prefix", "-w", "json"]),
    txn("value(\"/b\") = \"3\"\n\nput /t ok\nget /b\n\nput /t no\n\n"),
    txn("value(\"/b\") = \"x\"\n\nput /t yes\n\nput /t else\ndel /d\n\n"),
    txn("version(\"/missing\") = \"0\"\n\nput /m created\n\n\n"),
    txn("create(\"/missing2\") > \"0\"\n\nput /m2 wrong\n\nput /m2 right\n\n"),
    txn("mod(\"/b\") < \"100\"\nvalue(\"/t\") != \"no\"\n\ndel /t --prev-kv\n\n\n"),
    txn("value(\"/nope\") = \"\"\n\nput /n empty-matched\n\nput /n missing-key\n\n"),
    ctl(&["get", "/", "--prefix", "-w", "json"]),
    ctl(&["put", "/b", "--ignore-value", "-w", "json"]),
    ctl(&["put", "/nope", "--ignore-value", "-w", "json"]),
    ctl(&["put", "/b", "v2", "--ignore-lease", "-w", "json"]),
    ctl(&["put", "/nope", "v", "--ignore-lease", "-w", "json"]),
    ctl(&["get", "/b", "-w", "json"]),
];

/// Sorts inside ranges and transactions, and the maintenance calls that
/// etcdctl makes.
const MAINTENANCE_SCENARIO: &[Step] = &[
    ctl(&["put", "/s/a", "3", "-w", "json"]),
    ctl(&["put", "/s/b", "1", "-w", "json"]),
    ctl(&["put", "/s/c", "2", "-w", "json"]),
    ctl(&["put", "/s/a", "4", "-w", "json"]),
    ctl(&[
        "get",
        "/s/",
        "--prefix",
        "--sort-by=VALUE",
        "--keys-only",
        "-w",
        "json",
    ]),
    ctl(&[
        "get",
        "/s/",
        "--prefix",
        "--sort-by=VALUE",
        "--order=DESCEND",
        "--keys-only",
        "--limit=2",
        "-w",
        "json",
    ]),
    txn(
        "\nget /s/ --prefix --sort-by=VALUE --order=DESCEND --limit=2\nget /s/ --prefix --max-mod-rev=3\nget /s/ --prefix --sort-by=CREATE --order=DESCEND --keys-only\n\n",
    ),
    txn("value(\"/s/a\") = \"nope\"\n\n\nget /s/ --prefix --sort-by=MODIFY --order=DESCEND\n\n"),
    ctl(&["alarm", "list", "-w", "json"]),
    ctl(&["alarm", "disarm", "-w", "json"]),
    ctl(&["endpoint", "hashkv", "-w", "json"]),
    ctl(&["compact", "3", "-w", "json"]),
    ctl(&["endpoint", "hashkv", "-w", "json"]),
    ctl(&["defrag"]),
    ctl(&["get", "/s/", "--prefix", "-w", "json"]),
];

const WATCH_SCENARIO: &[Step] = &[
    ctl(&["put", "/w/a", "1", "-w", "json"]),
    ctl(&["put", "/w/b", "1", "-w", "json"]),
    ctl(&["put", "/w/a", "2", "-w", "json"]),
    ctl(&["del", "/w/b", "-w", "json"]),
    ctl(&["put", "/other", "x", "-w", "json"]),
    ctl(&["put", "/w/a", "3", "-w", "json"]),
    watch(&["watch", "/w/a", "--rev=2", "-w", "json"]),
    watch(&["watch", "/w", "--prefix", "--rev=1", "-w", "json"]),
    watch(&[
        "watch",
        "/w/",
        "--prefix",
        "--rev=3",
        "--prev-kv",
        "-w",
        "json",
    ]),
    ctl(&["compact", "5", "-w", "json"]),
    ctl(&["get", "/w/a", "--rev=3", "-w", "json"]),
    ctl(&["get", "/w/a", "--rev=5", "-w", "json"]),
    watch(&["watch", "/w", "--prefix", "--rev=4", "-w", "json"]),
    watch(&["watch", "/w", "--prefix", "--rev=5", "-w", "json"]),
    ctl(&["compact", "4", "-w", "json"]),
];

const LEASE_SCENARIO: &[Step] = &[
    ctl(&["lease", "grant", "100", "-w", "json"]),
    ctl(&["put", "/l/1", "v", "--lease={lease}", "-w", "json"]),
    ctl(&["put", "/l/2", "v", "--lease={lease}", "-w", "json"]),
    ctl(&["put", "/l/3", "v", "-w", "json"]),
    ctl(&["get", "/l/", "--prefix", "-w", "json"]),
    ctl(&["lease", "timetolive", "{lease}", "--keys", "-w", "json"]),
    ctl(&["lease", "keep-alive", "--once", "{lease}", "-w", "json"]),
    ctl(&["lease", "list", "-w", "json"]),
    ctl(&["lease", "revoke", "{lease}", "-w", "json"]),
    ctl(&["get", "/l/", "--prefix", "-w", "json"]),
    ctl(&["lease", "timetolive", "{lease}", "-w", "json"]),
    ctl(&["lease", "revoke", "{lease}", "-w", "json"]),
    ctl(&["put", "/l/4", "v", "--lease=123456", "-w", "json"]),
    ctl(&["lease", "grant", "1", "-w", "json"]),
    ctl(&["put", "/l/5", "v", "--lease={lease}", "-w", "json"]),
];

/// Runs a scenario on real etcd and on Berth over both backends, and
/// compares the answers step by step.
async fn compare(scenario: &'static [Step]) {
    let etcd = RealEtcd::start();
    let endpoint = etcd.endpoint.clone();
    let expected = tokio::task::spawn_blocking(move || run(&endpoint, scenario))
        .await
        .unwrap();
    drop(etcd);
    for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
        let db = TestDb::new(backend).await;
        let berth = TestServer::open(&db.url);
        let endpoint = berth.etcd_endpoint();
        let actual = tokio::task::spawn_blocking(move || run(&endpoint, scenario))
            .await
            .unwrap();
        for (want, got) in expected.iter().zip(&actual) {
            assert_eq!(
                got, want,
                "Berth on {backend:?} answered differently from etcd"
            );
        }
        assert_eq!(actual.len(), expected.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_and_txn_answers_match_etcd() {
    compare(KV_SCENARIO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_compaction_answers_match_etcd() {
    compare(WATCH_SCENARIO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_answers_match_etcd() {
    compare(LEASE_SCENARIO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_ranges_and_maintenance_answers_match_etcd() {
    compare(MAINTENANCE_SCENARIO).await;
}
