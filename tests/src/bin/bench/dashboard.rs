//! `bench dashboard`: the dashboard for a tenant of 1,000 pods (10
//! Deployments of 100, on sim nodes): how long the server takes to answer
//! the Deployment list, a Deployment's page and a pod's page; how many
//! bytes a page and its assets weigh on the wire; and how long a pod's
//! change takes to reach an open page through the live channel.
//!
//! The live figure replays what the page's script does: it holds the
//! page's event stream (`/live`), and on an event waits the script's 40 ms
//! debounce and reads the page again; the figure is from just before the
//! change is written to the moment the page that shows it has been read.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::json;

use crate::process_stats::cpu_model;
use crate::server_under_test::{ADMIN_EMAIL, ADMIN_PASSWORD, exchange, tenant_of_pods};
use crate::{ms, percentile};

const TENANT: &str = "shop";
/// The script's debounce between an event and reading the page again.
const DEBOUNCE: Duration = Duration::from_millis(40);

/// What to measure.
pub struct Plan {
    /// Pods in the tenant (in Deployments of 100).
    pub pods: u32,
    /// Requests per page for the render figures.
    pub renders: usize,
    /// Changes for the live figure.
    pub changes: usize,
    /// The longest wait for the pods to run.
    pub timeout: Duration,
}

/// Runs the benchmark and prints its figures.
pub async fn run(plan: Plan) -> anyhow::Result<()> {
    let deployments = plan.pods.div_ceil(100).max(1);
    println!(
        "berth dashboard benchmark: {}; {} pods in {deployments} Deployments on 20 sim nodes, SQLite",
        cpu_model(),
        plan.pods
    );
    let (server, _agent, pod_name) = tenant_of_pods(TENANT, plan.pods, plan.timeout).await?;

    let base = server.server.process.url("");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let cookie = sign_in(&client, &base).await?;

    println!(
        "\nserver answer time, {} sequential requests per page (goal: p99 ≤ 20 ms)",
        plan.renders
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10}",
        "page", "p50", "p99", "max", "HTML"
    );
    let pages = [
        ("Deployment list", format!("/t/{TENANT}/deployments")),
        (
            "a Deployment (100 pods)",
            format!("/t/{TENANT}/deployments/web-0"),
        ),
        ("a pod", format!("/t/{TENANT}/pods/{pod_name}")),
        ("overview", format!("/t/{TENANT}")),
        ("pod list", format!("/t/{TENANT}/pods")),
    ];
    for (label, path) in &pages {
        let mut times = Vec::with_capacity(plan.renders);
        let mut size = 0;
        for _ in 0..plan.renders {
            let begun = Instant::now();
            let response = client
                .get(format!("{base}{path}"))
                .header("Cookie", &cookie)
                .send()
                .await?;
            let status = response.status();
            let body = response.bytes().await?;
            times.push(begun.elapsed());
            if status != 200 {
                bail!(
                    "{path} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            size = body.len();
        }
        times.sort();
        println!(
            "{label:<28} {:>10} {:>10} {:>10} {:>7} KB",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(*times.last().unwrap_or(&Duration::ZERO)),
            size / 1024
        );
    }

    println!("\nbytes on the wire for a Deployment's page (goal: ≤ 100 KB compressed)");
    let html = wire_size(
        &client,
        &base,
        &cookie,
        &format!("/t/{TENANT}/deployments/web-0"),
    )
    .await?;
    let page_text = client
        .get(format!("{base}/t/{TENANT}/deployments/web-0"))
        .header("Cookie", &cookie)
        .send()
        .await?
        .text()
        .await?;
    let mut total = html.0;
    println!("{:<40} {:>8} B  (sent as is: {} B)", "HTML", html.0, html.1);
    for asset in assets_of(&page_text) {
        let (wire, raw) = wire_size(&client, &base, &cookie, &asset).await?;
        println!("{asset:<40} {wire:>8} B  gzip (raw {raw} B)");
        total += wire;
    }
    println!("{:<40} {:>8} B", "total", total);

    println!(
        "\nlive: a pod's change until an open pod page shows it ({} changes; goal: p99 ≤ 200 ms)",
        plan.changes
    );
    let (_, list) = server
        .api
        .get(&format!("/api/v1/tenants/{TENANT}/pods"))
        .await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_owned();
    let live = client
        .get(format!(
            "{base}/live?tenant={TENANT}&kinds=pods,events&rv={rv}"
        ))
        .header("Cookie", &cookie)
        .send()
        .await?;
    if live.status() != 200 {
        bail!("/live answered {}", live.status());
    }
    let mut events = live.bytes_stream();
    let pod_path = format!("/api/v1/tenants/{TENANT}/pods/{pod_name}");
    let page = format!("{base}/t/{TENANT}/pods/{pod_name}");
    let (mut delivered, mut shown) = (Vec::new(), Vec::new());
    for n in 0..plan.changes {
        let marker = format!("bench-{n}");
        let begun = Instant::now();
        exchange(
            server
                .api
                .request(reqwest::Method::PATCH, &pod_path)
                .header("Content-Type", "application/merge-patch+json")
                .json(&json!({"metadata": {"labels": {"bench": marker}}})),
            200,
        )
        .await?;
        // The change's event (other pods' events may come first).
        loop {
            let chunk = tokio::time::timeout(Duration::from_secs(5), events.next())
                .await
                .context("no event within 5 s")?
                .context("the live stream ended")??;
            if String::from_utf8_lossy(&chunk).contains("event: change") {
                break;
            }
        }
        delivered.push(begun.elapsed());
        tokio::time::sleep(DEBOUNCE).await;
        let body = client
            .get(&page)
            .header("Cookie", &cookie)
            .send()
            .await?
            .text()
            .await?;
        if !body.contains(&marker) {
            bail!("the pod page does not show the label {marker} after its event");
        }
        shown.push(begun.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    delivered.sort();
    shown.sort();
    println!("{:<40} {:>10} {:>10} {:>10}", "", "p50", "p99", "max");
    for (label, times) in [
        ("event on the live stream", &delivered),
        ("page read again and showing it", &shown),
    ] {
        println!(
            "{label:<40} {:>10} {:>10} {:>10}",
            ms(percentile(times, 0.5)),
            ms(percentile(times, 0.99)),
            ms(*times.last().unwrap_or(&Duration::ZERO))
        );
    }
    Ok(())
}

/// Signs in through the sign-in form and answers the session's cookies.
async fn sign_in(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/login"))
        .form(&[
            ("email", ADMIN_EMAIL),
            ("password", ADMIN_PASSWORD),
            ("next", "/"),
        ])
        .send()
        .await?;
    if response.status() != 303 {
        bail!("signing in answered {}", response.status());
    }
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_owned)
        .collect();
    Ok(cookies.join("; "))
}

/// The bytes `path` takes on the wire when the client takes gzip, and
/// its size as served.
async fn wire_size(
    client: &reqwest::Client,
    base: &str,
    cookie: &str,
    path: &str,
) -> anyhow::Result<(usize, usize)> {
    let wire = client
        .get(format!("{base}{path}"))
        .header("Cookie", cookie)
        .header("Accept-Encoding", "gzip")
        .send()
        .await?
        .bytes()
        .await?
        .len();
    let raw = client
        .get(format!("{base}{path}"))
        .header("Cookie", cookie)
        .send()
        .await?
        .bytes()
        .await?
        .len();
    Ok((wire, raw))
}

/// The stylesheet and script URLs a page links.
fn assets_of(html: &str) -> Vec<String> {
    html.split('"')
        .filter(|part| part.starts_with("/assets/"))
        .map(str::to_owned)
        .collect()
}
