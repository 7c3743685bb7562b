//! `store-probe`: a process that opens Berth's store and writes or watches,
//! so that tests can run several store processes on one database and kill
//! them mid-write.
//!
//! - `write`: writes `--count` distinct keys from `--concurrency` tasks and
//!   prints `ack REVISION KEY` for each acknowledged write.
//! - `watch-write`: watches every key from `--from`, prints `ready`, waits
//!   for a line on stdin, writes like `write`, then waits until `--expect`
//!   events have arrived and prints one JSON line
//!   `{"acked": [...], "watched": [...]}` of revisions.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_server::store::Store;
use berth_server::store::types::{KeyRange, PutRequest, WatchRequest};
use clap::{Parser, Subcommand};
use tokio::sync::Mutex;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(clap::Args, Clone)]
struct WriteArgs {
    #[arg(long)]
    database_url: String,
    /// Keys are PREFIX followed by a number.
    #[arg(long)]
    prefix: String,
    #[arg(long)]
    count: usize,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

#[derive(Subcommand)]
enum Mode {
    Write(WriteArgs),
    WatchWrite {
        #[command(flatten)]
        write: WriteArgs,
        /// The first revision to watch.
        #[arg(long)]
        from: i64,
        /// How many events to wait for.
        #[arg(long)]
        expect: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Mode::Write(args) => {
            let store = open(&args.database_url).await?;
            write_keys(&store, &args, true).await?;
            store.close().await;
        }
        Mode::WatchWrite {
            write,
            from,
            expect,
        } => {
            let store = open(&write.database_url).await?;
            let mut watch = store
                .watch(WatchRequest {
                    range: KeyRange::prefix("/"),
                    start_revision: from,
                    prev_kv: false,
                })
                .await?;
            println!("ready");
            std::io::stdout().flush()?;
            let mut go = String::new();
            std::io::stdin().lock().read_line(&mut go)?;
            let watcher = tokio::spawn(async move {
                let mut watched = Vec::with_capacity(expect);
                while watched.len() < expect {
                    match tokio::time::timeout(Duration::from_secs(60), watch.next()).await {
                        Ok(Some(Ok(events))) => watched.extend(events.iter().map(|e| e.revision())),
                        Ok(Some(Err(error))) => bail!("watch failed: {error}"),
                        Ok(None) => bail!("watch ended"),
                        Err(_) => bail!("no event for 60 s after {} events", watched.len()),
                    }
                }
                Ok(watched)
            });
            let acked = write_keys(&store, &write, false).await?;
            let watched = watcher.await??;
            println!(
                "{}",
                serde_json::json!({ "acked": acked, "watched": watched })
            );
            store.close().await;
        }
    }
    Ok(())
}

async fn open(url: &str) -> anyhow::Result<Store> {
    Store::open(url, &prometheus::Registry::new())
        .await
        .context("opening the store")
}

/// Writes the keys; returns the acknowledged revisions, and prints an `ack`
/// line for each when `print` is set.
async fn write_keys(store: &Store, args: &WriteArgs, print: bool) -> anyhow::Result<Vec<i64>> {
    let acked = Arc::new(Mutex::new(Vec::with_capacity(args.count)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (store, acked, next, args) =
                (store.clone(), acked.clone(), next.clone(), args.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= args.count {
                        return anyhow::Ok(());
                    }
                    let key = format!("{}{i:08}", args.prefix);
                    let put = PutRequest {
                        key: key.clone().into_bytes(),
                        value: i.to_string().into_bytes(),
                        ..Default::default()
                    };
                    let revision = store.put(put).await?.revision;
                    let mut acked = acked.lock().await;
                    acked.push(revision);
                    if print {
                        // Printed only after the commit was acknowledged.
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack {revision} {key}")?;
                        out.flush()?;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let acked = acked.lock().await.clone();
    Ok(acked)
}
