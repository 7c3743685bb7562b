//! `berth restore FILE`: a new store made from a snapshot (`etcdctl
//! snapshot save`, or the etcd API's `Maintenance.Snapshot`): its
//! revisions, leases and accounts. The store must be new; Secrets' values
//! stay sealed with the encryption key of the server that took the
//! snapshot, so that key goes with it.

use std::path::PathBuf;
use std::process::ExitCode;

/// `berth restore`'s options.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The snapshot file.
    pub file: PathBuf,
    /// Where the new store's files go (the SQLite database by default).
    #[arg(long, env = "BERTH_DATA_DIR", default_value = "./berth-data")]
    pub data_dir: PathBuf,
    /// The new store: `sqlite://PATH` or `postgres://…` (an empty
    /// database); `sqlite://<data-dir>/berth.db` by default.
    #[arg(long, env = "BERTH_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// Runs `berth restore`.
pub async fn run(args: RestoreArgs) -> ExitCode {
    let file = match std::fs::read(&args.file) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("berth: {}: {error}", args.file.display());
            return ExitCode::from(2);
        }
    };
    let url = match &args.database_url {
        Some(url) => url.clone(),
        None => {
            if let Err(error) = std::fs::create_dir_all(&args.data_dir) {
                eprintln!("berth: --data-dir {}: {error}", args.data_dir.display());
                return ExitCode::from(2);
            }
            format!("sqlite://{}", args.data_dir.join("berth.db").display())
        }
    };
    match berth_server::store::snapshot::restore(&url, &file).await {
        Ok(restored) => {
            println!(
                "Restored {} at revision {} ({} rows) into {}.",
                args.file.display(),
                restored.revision,
                restored.rows,
                berth_server::settings::redact_url(&url)
            );
            println!(
                "Start the server on it with the encryption key file of the server the snapshot \
                 came from: Secrets stay sealed with that key."
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("berth: restoring {}: {error}", args.file.display());
            ExitCode::FAILURE
        }
    }
}
