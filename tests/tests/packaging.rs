//! The packaging files: `docker-compose.yml` is valid Compose (checked
//! with `docker-compose config`, since images cannot be pulled here) with
//! PostgreSQL, two server replicas and an agent, and refuses to start
//! without the settings `.env` must give.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds the tests crate")
        .to_owned()
}

/// `docker-compose -f docker-compose.yml --env-file ENV ARGS…`: its exit
/// status and what it printed.
fn compose(env: &str, args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("a directory for the env file");
    let env_file = dir.path().join(".env");
    std::fs::write(&env_file, env).expect("writing the env file");
    let output = Command::new("docker-compose")
        .arg("-f")
        .arg(workspace().join("docker-compose.yml"))
        .arg("--env-file")
        .arg(&env_file)
        .args(args)
        // Only the env file speaks.
        .env_remove("POSTGRES_PASSWORD")
        .env_remove("BERTH_ADMIN_PASSWORD")
        .env_remove("BERTH_ENCRYPTION_KEY")
        .output()
        .expect("running docker-compose (Debian's docker-compose package)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn the_compose_file_runs_postgres_two_servers_and_an_agent_from_the_env_example() {
    let example =
        std::fs::read_to_string(workspace().join(".env.example")).expect("reading .env.example");
    let (ok, services) = compose(&example, &["config", "--services"]);
    assert!(ok, "{services}");
    let mut services: Vec<&str> = services.lines().collect();
    services.sort();
    assert_eq!(services, ["agent", "postgres", "server-1", "server-2"]);
    let (ok, config) = compose(&example, &["config"]);
    assert!(ok, "{config}");
    assert!(
        config.contains("postgres://berth:change-this-database-password@postgres:5432/berth"),
        "{config}"
    );
    assert!(config.contains("/var/run/docker.sock"), "{config}");
}

#[test]
fn the_compose_file_names_each_setting_missing_from_the_env_file() {
    let (ok, text) = compose(
        "POSTGRES_PASSWORD=x\nBERTH_ENCRYPTION_KEY=00\n",
        &["config", "-q"],
    );
    assert!(!ok, "{text}");
    assert!(text.contains("set BERTH_ADMIN_PASSWORD in .env"), "{text}");
}
