//! Runs the control plane: opens the store, serves HTTP, and stops cleanly on
//! SIGINT or SIGTERM.

use std::net::TcpListener;

use anyhow::Context;
use prometheus::Registry;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::auth;
use crate::etcd;
use crate::http::{self, AppState};
use crate::settings::{ServerSettings, SettingsError, redact_url};
use crate::store::Store;

/// Why the server could not start: a setting (exit code 2) or anything else.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting cannot be used.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// Something else failed.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Starts the server, with `extra_routes` beside the REST API (the
/// dashboard, which the binary brings), and runs it until a shutdown signal.
pub async fn run(
    settings: ServerSettings,
    extra_routes: http::ExtraRoutes,
) -> Result<(), StartError> {
    let registry = Registry::new();
    let store = Store::open(&settings.database_url, &registry)
        .await
        .map_err(|e| {
            SettingsError::new(
                "--database-url",
                format!("{}: {e}", redact_url(&settings.database_url)),
            )
        })?;
    let generated = auth::bootstrap_admin(
        &store,
        &settings.admin_email,
        settings.admin_password.as_ref().map(|p| p.0.as_str()),
        &settings.data_dir,
    )
    .await
    .context("creating the platform admin")?;
    if let Some(password) = generated {
        // Shown once; the file keeps it for whoever runs the server.
        eprintln!(
            "berth: created the platform admin {} with password {password} (also in {})",
            settings.admin_email,
            settings.data_dir.join("admin-password").display()
        );
    }
    let encryption_key =
        crate::secrets::EncryptionKey::load_or_create(&settings.encryption_key_file)
            .map_err(|e| SettingsError::new("--encryption-key-file", e.to_string()))?;
    crate::node_api::credentials::ensure_bootstrap_join_token(&store, &settings.data_dir)
        .await
        .context("setting up the node join token")?;
    let audit_shutdown = CancellationToken::new();
    let (audit, audit_task) = crate::audit::AuditLog::start(store.clone(), audit_shutdown.clone());
    let listener = TcpListener::bind(settings.http_addr).map_err(|e| {
        SettingsError::new(
            "--http-addr",
            format!("cannot listen on {}: {e}", settings.http_addr),
        )
    })?;
    let http_addr = listener.local_addr().context("reading the HTTP address")?;
    let grpc_listener = tokio::net::TcpListener::bind(settings.grpc_addr)
        .await
        .map_err(|e| {
            SettingsError::new(
                "--grpc-addr",
                format!("cannot listen on {}: {e}", settings.grpc_addr),
            )
        })?;
    let grpc_addr = grpc_listener
        .local_addr()
        .context("reading the gRPC address")?;
    let tunnels = crate::node_api::tunnels::Tunnels::default();
    let pod_metrics = crate::pod_metrics::PodMetricsStore::default();
    let (http_server, http_handle) = http::serve(
        listener,
        AppState {
            store: store.clone(),
            registry: registry.clone(),
            tokens: auth::Tokens::from_store(&store)
                .await
                .context("reading the token signing key")?
                .with_ttl(settings.access_token_ttl),
            objects: crate::objects::Objects::new(store.clone(), encryption_key.clone())
                .with_service_ranges(settings.service_ranges),
            audit,
            watch_bookmark_interval: settings.watch_bookmark_interval,
            tunnels: tunnels.clone(),
            pod_metrics: pod_metrics.clone(),
            session_idle_timeout: settings.session_idle_timeout,
        },
        extra_routes,
    )
    .context("starting HTTP")?;
    let grpc_shutdown = CancellationToken::new();
    let objects = crate::objects::Objects::new(store.clone(), encryption_key)
        .with_service_ranges(settings.service_ranges);
    // One reflector decodes each pod once for the node API, the
    // controllers and the scheduler.
    let pods_shutdown = CancellationToken::new();
    let pods = crate::controllers::start_pod_informer(store.clone(), pods_shutdown.clone());
    let node_api = crate::node_api::NodeApi::start(
        objects.clone(),
        &pods,
        tunnels,
        pod_metrics,
        grpc_shutdown.clone(),
    );
    let grpc_task = tokio::spawn(etcd::serve(
        store.clone(),
        grpc_listener,
        etcd::EtcdOptions {
            auth: settings.etcd_auth,
            progress_notify_interval: settings.etcd_progress_notify,
        },
        node_api,
        grpc_shutdown.clone(),
    ));
    let controllers_shutdown = CancellationToken::new();
    let controllers = crate::controllers::ControllerManager::new(
        objects,
        pods,
        &registry,
        crate::controllers::ControllerSettings {
            lease_ttl: settings.leader_lease_ttl,
            node_lifecycle: crate::controllers::nodelifecycle::NodeLifecycleSettings {
                monitor_grace: settings.node_monitor_grace,
                eviction_timeout: settings.pod_eviction_timeout,
            },
        },
    )
    .context("setting up the controllers")?;
    // Without controllers this process only serves the APIs (another
    // replica, or nobody, runs the control loops).
    let controllers_task = settings
        .controllers
        .then(|| tokio::spawn(controllers.run(controllers_shutdown.clone())));
    // Signal handlers go in before the server announces itself, so that a
    // SIGTERM sent right after the announcement still shuts down cleanly.
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    tracing::info!(%http_addr, %grpc_addr, backend = ?store.backend(), "berth server started");
    // The one line scripts wait for.
    println!("berth server listening on http://{http_addr} and grpc://{grpc_addr}");

    let http_task = tokio::spawn(http_server);
    let reason = tokio::select! {
        _ = terminate.recv() => "SIGTERM".to_owned(),
        _ = interrupt.recv() => "SIGINT".to_owned(),
        result = http_task => format!("the HTTP server stopped: {result:?}"),
        result = grpc_task => format!("the gRPC server stopped: {result:?}"),
    };
    tracing::info!(%reason, "shutting down");
    // Controllers stop first and release leadership, so that a standby
    // takes over while this process finishes shutting down.
    controllers_shutdown.cancel();
    if let Some(task) = controllers_task {
        let _ = task.await;
    }
    grpc_shutdown.cancel();
    pods_shutdown.cancel();
    http_handle.stop(true).await;
    // The audit log writes what is queued before the store closes.
    audit_shutdown.cancel();
    let _ = audit_task.await;
    store.close().await;
    Ok(())
}
