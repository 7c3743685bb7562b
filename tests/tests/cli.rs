//! The `berth` CLI end to end, as a user types it, against a live server
//! whose pods run on sim nodes: sign in, apply every example, read,
//! change and roll back what runs, and the errors a user meets.

use std::time::{Duration, Instant};

use berth_tests::cli::{Terminal, assert_one_plain_line, header, row};
use berth_tests::cluster::{ADMIN, ADMIN_PASSWORD, SimCluster, TENANT};

/// Runs `berth ARGS` until `done` holds for its output (30 s at most).
fn until(terminal: &Terminal, args: &[&str], what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = terminal.run(args);
        if run.code == 0 && done(&run.stdout) {
            return run.stdout;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: `berth {}` still says\n{}{}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn lines_with(text: &str, word: &str) -> usize {
    text.lines().filter(|l| l.contains(word)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_applies_every_example_and_works_with_it_as_with_kubectl() {
    let cluster = SimCluster::start(&[]).await;
    let server = cluster.server.process.url("");
    let terminal = Terminal::new();

    // A wrong password says so, and keeps nothing.
    let wrong = terminal.run_with_input(
        &[
            "login",
            "--server",
            &server,
            "--email",
            ADMIN,
            "--password-stdin",
        ],
        "not-the-password\n",
    );
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert_one_plain_line(&wrong.stderr);
    assert!(
        wrong.stderr.contains("wrong email or password"),
        "{}",
        wrong.stderr
    );
    assert!(!terminal.config_path().exists());

    // Signing in chooses the admin's only tenant and keeps the session in
    // a file only its owner reads.
    let signed_in = terminal.login(&server, ADMIN, ADMIN_PASSWORD);
    assert!(
        signed_in.contains(&format!("tenant {TENANT:?}")),
        "{signed_in}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(terminal.config_path())
        .expect("the config file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Every example, a line per object; again, every line unchanged.
    let applied = terminal.ok(&["apply", "-f", "examples/"]);
    assert_eq!(
        lines_with(&applied, " created"),
        applied.lines().count(),
        "{applied}"
    );
    for object in [
        "configmap/web-settings",
        "deployment/web",
        "service/web",
        "secret/queue-credentials",
        "deployment/worker",
        "volume/notes-data",
        "deployment/notes",
        "deployment/nginx-deployment",
        "service/my-service",
    ] {
        assert!(
            applied.contains(&format!("{object} created")),
            "{object}: {applied}"
        );
    }
    let again = terminal.ok(&["apply", "-f", "examples/"]);
    assert_eq!(
        lines_with(&again, " unchanged"),
        applied.lines().count(),
        "{again}"
    );

    // rollout status follows the rollout to its end.
    let status = terminal.ok(&["rollout", "status", "deployment/web", "--timeout", "60s"]);
    assert!(
        status.contains("deployment \"web\" successfully rolled out"),
        "{status}"
    );

    // get: kubectl's columns.
    let deployments = terminal.ok(&["get", "deployments"]);
    assert_eq!(
        header(&deployments),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    let web = row(&deployments, "web").expect("web is listed");
    assert_eq!(&web[1..4], ["3/3", "3", "3"], "{deployments}");
    let pods = terminal.ok(&["get", "po", "-l", "app=web", "-o", "wide"]);
    assert_eq!(
        header(&pods),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    );
    assert_eq!(lines_with(&pods, " Running "), 3, "{pods}");
    let services = terminal.ok(&["get", "svc"]);
    assert_eq!(
        header(&services),
        ["NAME", "TYPE", "VIRTUAL-IP", "PORT(S)", "AGE"]
    );
    let service = row(&services, "web").expect("the web service");
    assert_eq!(service[1], "NodePort");
    assert!(
        service[3].starts_with("80:") && service[3].ends_with("/TCP"),
        "{services}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&terminal.ok(&["get", "service", "web", "-o", "json"]))
            .expect("-o json prints JSON");
    assert_eq!(json["kind"], "Service");
    let yaml = terminal.ok(&["get", "deploy/web", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Deployment") && yaml.contains("name: web"),
        "{yaml}"
    );
    let names = terminal.ok(&["get", "deployments", "-o", "name"]);
    assert!(names.lines().any(|l| l == "deployment/web"), "{names}");
    let none = terminal.run(&["get", "pods", "-l", "app=nothing"]);
    assert_eq!(none.code, 0);
    assert!(
        none.stderr.contains("No resources found in tenant acme."),
        "{none:?}"
    );

    // describe: spec, status, conditions, events.
    let described = terminal.ok(&["describe", "deployment", "web"]);
    for expected in [
        "Name:",
        "3 desired | 3 updated | 3 total | 3 available | 0 unavailable",
        "Image:",
        "busybox:1.36",
        "Conditions:",
        "Available",
        "Events:",
        "ScalingReplicaSet",
    ] {
        assert!(
            described.contains(expected),
            "{expected:?} missing from\n{described}"
        );
    }

    // A pod that fits no node: describe gives the scheduler's reasons.
    let hungry = terminal.home().join("hungry.yaml");
    std::fs::write(
        &hungry,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hungry\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n    resources:\n      requests:\n        cpu: \"64\"\n",
    )
    .expect("writing a manifest");
    terminal.ok(&["apply", "-f", hungry.to_str().expect("a path")]);
    let pending = until(
        &terminal,
        &["describe", "pod", "hungry"],
        "the scheduler's reasons",
        |out| out.contains("Scheduling:"),
    );
    assert!(pending.contains("Insufficient cpu"), "{pending}");
    assert!(
        pending.contains("Status:") && pending.contains("Pending"),
        "{pending}"
    );

    // scale.
    assert_eq!(
        terminal.ok(&["scale", "deployment", "web", "--replicas", "5"]),
        "deployment/web scaled\n"
    );
    until(
        &terminal,
        &["get", "deployment", "web"],
        "5 of 5 ready",
        |out| row(out, "web").is_some_and(|r| r[1] == "5/5"),
    );

    // A new revision, then back.
    assert_eq!(
        terminal.ok(&["rollout", "restart", "deployment/web"]),
        "deployment/web restarted\n"
    );
    terminal.ok(&["rollout", "status", "deployment/web", "--timeout", "60s"]);
    let history = terminal.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history
            .lines()
            .any(|l| l.starts_with("2 ") && l.ends_with("(current)")),
        "{history}"
    );
    assert_eq!(
        terminal.ok(&["rollout", "undo", "deployment/web"]),
        "deployment/web rolled back\n"
    );
    terminal.ok(&["rollout", "status", "deployment/web", "--timeout", "60s"]);
    let history = terminal.ok(&["rollout", "history", "deployment/web"]);
    // The first revision's template came back as revision 3.
    assert!(
        history
            .lines()
            .any(|l| l.starts_with("3 ") && l.ends_with("(current)")),
        "{history}"
    );
    assert!(!history.lines().any(|l| l.starts_with("1 ")), "{history}");

    // logs: a Deployment's pods, each line tagged with its pod; one pod's.
    let logs = until(
        &terminal,
        &["logs", "deployment/web", "--tail", "1"],
        "log lines",
        |out| !out.is_empty(),
    );
    assert!(logs.lines().all(|l| l.starts_with("[pod/web-")), "{logs}");
    let pod = terminal
        .ok(&["get", "pods", "-l", "app=web", "-o", "name"])
        .lines()
        .next()
        .expect("a web pod")
        .trim_start_matches("pod/")
        .to_owned();
    let one = terminal.ok(&["logs", &pod, "--tail", "1"]);
    assert_eq!(one.lines().count(), 1, "{one}");

    // events.
    let events = terminal.ok(&["events"]);
    assert_eq!(
        header(&events),
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert!(events.contains("deployment/web"), "{events}");

    // delete: by name (the pods go with it) and by manifest.
    assert_eq!(
        terminal.ok(&["delete", "deployment", "web"]),
        "deployment/web deleted\n"
    );
    let gone = terminal.fails(&["get", "deployment", "web"]);
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);
    until(
        &terminal,
        &["get", "pods", "-l", "app=web", "-o", "name"],
        "web's pods gone",
        |out| out.trim().is_empty(),
    );
    let deleted = terminal.ok(&["delete", "-f", "examples/worker.yaml"]);
    assert_eq!(
        deleted,
        "secret/queue-credentials deleted\ndeployment/worker deleted\n"
    );

    // A bad manifest: the file, the document and the field, and exit 1;
    // the good document beside it is applied.
    let bad = terminal.home().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\ndata:\n  a: b\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: broken\nspec:\n  replicas: two\n  selector:\n    matchLabels: {app: broken}\n  template:\n    metadata:\n      labels: {app: broken}\n    spec:\n      containers:\n      - name: c\n        image: busybox:1.36\n",
    )
    .expect("writing a manifest");
    let run = terminal.run(&["apply", "-f", bad.to_str().expect("a path")]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout, "configmap/fine created\n");
    assert_one_plain_line(&run.stderr);
    assert!(
        run.stderr
            .contains("bad.yaml: document 2 (Deployment broken)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("spec.replicas"), "{}", run.stderr);
    let syntax = terminal.home().join("syntax.yaml");
    std::fs::write(&syntax, "kind: ConfigMap\nmetadata: {name: [x\n").expect("writing");
    let run = terminal.fails(&["apply", "-f", syntax.to_str().expect("a path")]);
    assert!(
        run.stderr
            .contains("syntax.yaml: document 1: not valid YAML"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("line 2"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_prunes_what_the_selector_matches_and_the_files_no_longer_hold() {
    let cluster = SimCluster::start(&[]).await;
    let terminal = Terminal::new();
    terminal.login(&cluster.server.process.url(""), ADMIN, ADMIN_PASSWORD);
    let dir = terminal.home().join("app");
    std::fs::create_dir(&dir).expect("a directory");
    let config = |name: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{app: shop}}\ndata:\n  k: v\n"
        )
    };
    std::fs::write(dir.join("a.yaml"), config("one")).expect("writing");
    std::fs::write(dir.join("b.yaml"), config("two")).expect("writing");
    let dir_arg = dir.to_str().expect("a path");
    terminal.ok(&["apply", "-f", dir_arg]);
    // Another object the selector does not match stays whatever happens.
    terminal.ok(&["apply", "-f", "examples/web-app.yaml"]);
    let refused = terminal.run(&["apply", "-f", dir_arg, "--prune"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("--prune needs -l"),
        "{}",
        refused.stderr
    );
    std::fs::remove_file(dir.join("b.yaml")).expect("removing");
    let pruned = terminal.ok(&["apply", "-f", dir_arg, "--prune", "-l", "app=shop"]);
    assert_eq!(pruned, "configmap/one unchanged\nconfigmap/two pruned\n");
    let left = terminal.ok(&["get", "configmaps", "-o", "name"]);
    assert_eq!(left, "configmap/one\nconfigmap/web-settings\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_saves_a_valid_change_and_shows_the_servers_errors_back_in_the_editor() {
    let cluster = SimCluster::start(&[]).await;
    let mut terminal = Terminal::new();
    terminal.login(&cluster.server.process.url(""), ADMIN, ADMIN_PASSWORD);
    terminal.ok(&["apply", "-f", "examples/kubernetes-nginx.yaml"]);
    // An editor that logs what it was shown and makes one change.
    let log = terminal.home().join("editor.log");
    let editor = terminal.home().join("editor.sh");
    std::fs::write(
        &editor,
        format!(
            "#!/bin/sh\ncat \"$1\" >> {log}\necho ===== >> {log}\nsed -i \"$SED\" \"$1\"\n",
            log = log.display()
        ),
    )
    .expect("writing the editor");
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("making it executable");
    terminal.env("EDITOR", editor.to_str().expect("a path"));

    terminal.env("SED", "s/replicas: 3/replicas: two/");
    let run = terminal.run(&["edit", "deployment", "nginx-deployment"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_one_plain_line(&run.stderr);
    assert!(
        run.stderr.contains("no valid changes were saved"),
        "{}",
        run.stderr
    );
    let shown = std::fs::read_to_string(&log).expect("the editor's log");
    let second = shown
        .split("=====")
        .nth(1)
        .expect("the editor opened twice");
    assert!(second.contains("# * spec.replicas:"), "{second}");
    assert!(second.contains("replicas: two"), "{second}");

    terminal.env("SED", "s/replicas: 3/replicas: 1/");
    assert_eq!(
        terminal.ok(&["edit", "deploy/nginx-deployment"]),
        "deployment/nginx-deployment edited\n"
    );
    let deployment = terminal.ok(&["get", "deployment", "nginx-deployment", "-o", "json"]);
    let deployment: serde_json::Value = serde_json::from_str(&deployment).expect("JSON");
    assert_eq!(deployment["spec"]["replicas"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_renews_itself_and_an_ended_or_expired_one_says_so_plainly() {
    let cluster = SimCluster::start(&["--access-token-ttl", "1s"]).await;
    let server = cluster.server.process.url("");
    let terminal = Terminal::new();

    // Not signed in at all.
    let run = terminal.fails(&["get", "pods"]);
    assert!(
        run.stderr.contains("berth login --server"),
        "{}",
        run.stderr
    );

    // Past the access token's life, the refresh token renews it.
    terminal.login(&server, ADMIN, ADMIN_PASSWORD);
    std::thread::sleep(Duration::from_millis(2_100));
    terminal.ok(&["get", "pods"]);
    std::thread::sleep(Duration::from_millis(2_100));
    terminal.ok(&["get", "deployments"]);

    // A session ended elsewhere (its refresh token revoked).
    let config = std::fs::read_to_string(terminal.config_path()).expect("the config file");
    let refresh = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("refreshToken: "))
        .expect("a refresh token")
        .trim_matches('\'')
        .to_owned();
    let response = reqwest::Client::new()
        .post(format!("{server}/api/v1/auth/logout"))
        .json(&serde_json::json!({"refreshToken": refresh}))
        .send()
        .await
        .expect("signing the session out");
    assert_eq!(response.status(), 204);
    std::thread::sleep(Duration::from_millis(2_100));
    let run = terminal.fails(&["get", "pods"]);
    assert!(
        run.stderr
            .contains("has expired or was signed out: sign in again with `berth login`"),
        "{}",
        run.stderr
    );

    // An expired token in BERTH_TOKEN.
    let signed_in = berth_tests::rest::Api::new(server.clone())
        .login(ADMIN, ADMIN_PASSWORD)
        .await;
    std::thread::sleep(Duration::from_millis(2_100));
    let mut expired = Terminal::new();
    expired.env("BERTH_SERVER", &server);
    expired.env("BERTH_TENANT", TENANT);
    expired.env("BERTH_TOKEN", signed_in.token().expect("a token"));
    let run = expired.fails(&["get", "pods"]);
    assert!(
        run.stderr.contains("the token in BERTH_TOKEN was refused")
            && run.stderr.contains("the token has expired"),
        "{}",
        run.stderr
    );

    // Other mistakes: each one plain line, and a non-zero exit.
    let unknown = terminal.fails(&["get", "gadgets"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown
            .stderr
            .contains("there is no resource type \"gadgets\""),
        "{}",
        unknown.stderr
    );
    let mut nowhere = Terminal::new();
    nowhere.env("BERTH_SERVER", "http://127.0.0.1:1");
    nowhere.env("BERTH_TENANT", TENANT);
    let run = nowhere.fails(&["get", "pods"]);
    assert!(
        run.stderr
            .contains("cannot reach the Berth server at http://127.0.0.1:1"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_members_tokens_and_contexts_are_managed_from_the_terminal() {
    let cluster = SimCluster::start(&[]).await;
    let server = cluster.server.process.url("");
    let (status, body) = cluster
        .admin
        .post(
            "/api/v1/users",
            serde_json::json!({"email": "dev@example.com", "password": "dev-secret-1"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let terminal = Terminal::new();
    terminal.login(&server, ADMIN, ADMIN_PASSWORD);

    assert_eq!(
        terminal.ok(&["tenant", "create", "shop"]),
        "tenant/shop created\n"
    );
    let tenants = terminal.ok(&["tenant", "list"]);
    assert_eq!(header(&tenants), ["CURRENT", "NAME", "ROLE", "AGE"]);
    assert!(
        row(&tenants, "*").is_some_and(|r| r[1] == TENANT),
        "{tenants}"
    );
    terminal.ok(&["tenant", "use", "shop"]);
    let tenants = terminal.ok(&["tenant", "list"]);
    assert!(
        row(&tenants, "*").is_some_and(|r| r[1] == "shop"),
        "{tenants}"
    );
    let missing = terminal.fails(&["tenant", "use", "nowhere"]);
    assert!(missing.stderr.contains("nowhere"), "{}", missing.stderr);

    terminal.ok(&["member", "add", "dev@example.com", "--role", "viewer"]);
    let members = terminal.ok(&["member", "list"]);
    assert_eq!(
        row(&members, "dev@example.com").map(|r| r[1]),
        Some("viewer"),
        "{members}"
    );

    // An API token works as BERTH_TOKEN, in its tenant, until revoked.
    let created = terminal.run(&["token", "create", "ci", "--role", "editor"]);
    assert_eq!(created.code, 0, "{created:?}");
    assert!(
        created.stderr.contains("shown this once"),
        "{}",
        created.stderr
    );
    let token = created.stdout.trim().to_owned();
    let mut ci = Terminal::new();
    ci.env("BERTH_SERVER", &server);
    ci.env("BERTH_TENANT", "shop");
    ci.env("BERTH_TOKEN", &token);
    assert_eq!(
        ci.ok(&["apply", "-f", "examples/worker.yaml"]),
        "secret/queue-credentials created\ndeployment/worker created\n"
    );
    let tokens = terminal.ok(&["token", "list"]);
    assert!(
        row(&tokens, "1").is_some_and(|r| r[1] == "ci" && r.contains(&"active")),
        "{tokens}"
    );
    assert_eq!(terminal.ok(&["token", "revoke", "ci"]), "token 1 revoked\n");
    let refused = ci.fails(&["get", "pods"]);
    assert!(
        refused
            .stderr
            .contains("the token in BERTH_TOKEN was refused"),
        "{}",
        refused.stderr
    );

    terminal.ok(&["member", "remove", "dev@example.com"]);
    assert!(row(&terminal.ok(&["member", "list"]), "dev@example.com").is_none());

    // A second context, and switching between them.
    let run = terminal.run_with_input(
        &[
            "login",
            "--context",
            "dev",
            "--server",
            &server,
            "--email",
            "dev@example.com",
            "--password-stdin",
        ],
        "dev-secret-1\n",
    );
    assert_eq!(run.code, 0, "{run:?}");
    let contexts = terminal.ok(&["context", "list"]);
    assert!(
        row(&contexts, "*").is_some_and(|r| r[1] == "dev"),
        "{contexts}"
    );
    assert!(row(&contexts, "default").is_some(), "{contexts}");
    let none = terminal.fails(&["get", "pods"]);
    assert!(none.stderr.contains("no tenant chosen"), "{}", none.stderr);
    terminal.ok(&["context", "use", "default"]);
    terminal.ok(&["get", "pods"]);

    // Cordoning, and a completion script.
    terminal.ok(&["nodes", "cordon", "sim-1"]);
    let nodes = terminal.ok(&["get", "nodes"]);
    assert_eq!(
        row(&nodes, "sim-1").map(|r| r[1]),
        Some("Ready,SchedulingDisabled"),
        "{nodes}"
    );
    assert_eq!(
        terminal.ok(&["nodes", "uncordon", "sim-1"]),
        "node/sim-1 uncordoned\n"
    );
    let completion = terminal.ok(&["completion", "bash"]);
    assert!(
        completion.contains("_berth") && completion.contains("rollout"),
        "bash completion"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_prints_each_change_after_the_list() {
    use std::io::BufRead;
    let cluster = SimCluster::start(&[]).await;
    let terminal = Terminal::new();
    terminal.login(&cluster.server.process.url(""), ADMIN, ADMIN_PASSWORD);
    terminal.ok(&["apply", "-f", "examples/kubernetes-nginx.yaml"]);
    terminal.ok(&[
        "rollout",
        "status",
        "deployment/nginx-deployment",
        "--timeout",
        "60s",
    ]);
    let mut watch = terminal
        .command(&["get", "deployments", "-w"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting berth get -w");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("the header");
    assert!(first.starts_with("NAME "), "{first}");
    let listed = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("the list");
    assert!(
        listed.starts_with("nginx-deployment ") && listed.contains(" 3/3 "),
        "{listed}"
    );
    terminal.ok(&["scale", "deployment", "nginx-deployment", "--replicas", "1"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a row for the change");
        if line.starts_with("nginx-deployment ") && line.contains(" 1/1 ") {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
}
