//! The etcd v3 API over the store, so that `etcdctl` and etcd client
//! libraries work against Berth unchanged.
//!
//! - `convert`: wire messages ↔ store types, store errors → etcd's statuses.
//! - `kv`: KV (Range, Put, DeleteRange, Txn, Compact).
//! - `watch`: the Watch stream.
//! - `lease`: Lease (Grant, Revoke, KeepAlive, TimeToLive, Leases), each
//!   lease owned by a tenant or the platform.
//! - `admin`: Maintenance, Cluster and Auth: what any signed-in user may
//!   ask (status, members, sign-in) and what only the platform admin may.
//! - this module: the access check every call passes, and the gRPC server
//!   that serves them all.

mod admin;
mod callers;
mod convert;
mod kv;
mod lease;
mod watch;

use std::net::SocketAddr;
use std::time::Duration;

use berth_api::etcd::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status};

use crate::auth::{Access, Subject, Tokens};
use crate::store::Store;
use crate::store::types::{KeyRange, MemberInfo};
use convert::Headers;

/// Who may use the etcd API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EtcdAuth {
    /// Every call carries a token from `Auth.Authenticate` with a Berth
    /// user's email and password.
    Users,
    /// No authentication: every call reaches every key. For local
    /// development only.
    None,
}

/// How the etcd API is served.
#[derive(Clone, Copy, Debug)]
pub struct EtcdOptions {
    /// Who may use it.
    pub auth: EtcdAuth,
    /// How long an idle watch that asked for progress notifications waits
    /// before one (etcd's default: 10 minutes).
    pub progress_notify_interval: Duration,
}

/// What every etcd service shares.
#[derive(Clone)]
pub(crate) struct Etcd {
    store: Store,
    headers: Headers,
    auth: EtcdAuth,
    tokens: Tokens,
    /// How long an idle watch with `progress_notify` waits before a progress
    /// response.
    progress_every: Duration,
    /// The alarms raised, as etcd acts on them ([`Alarms`]). Set by
    /// `Maintenance.Alarm` here and read from the store with every member
    /// heartbeat, for alarms raised through another server process.
    alarms: std::sync::Arc<RaisedAlarms>,
    /// Who calls, cached until the accounts change.
    callers: callers::Callers,
}

/// How often a server process refreshes its member row.
const MEMBER_HEARTBEAT: Duration = Duration::from_secs(2);

/// A member whose row is older than this is gone (crashed without removing
/// it).
pub(super) const MEMBER_TIMEOUT: Duration = Duration::from_secs(10);

/// The user a request's token names, put there by [`authorize`].
#[derive(Clone, Copy, Debug)]
struct TokenUser(i64);

/// What the raised alarms stop, as etcd's appliers do: nothing; puts,
/// writing transactions and lease grants (NOSPACE); or every write
/// (CORRUPT, which wins). Reads go on under both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Alarms {
    /// No alarm.
    None = 0,
    /// A NOSPACE alarm.
    NoSpace = 1,
    /// A CORRUPT alarm.
    Corrupt = 2,
}

impl Alarms {
    /// What a list of `(member, alarm)` stops.
    pub(crate) fn of(raised: &[(i64, i32)]) -> Alarms {
        use berth_api::etcd::etcdserverpb::AlarmType;
        raised
            .iter()
            .map(|(_, alarm)| match AlarmType::try_from(*alarm) {
                Ok(AlarmType::Corrupt) => Alarms::Corrupt,
                Ok(AlarmType::Nospace) => Alarms::NoSpace,
                _ => Alarms::None,
            })
            .max()
            .unwrap_or(Alarms::None)
    }
}

/// What the raised alarms stop, shared by a process's etcd services.
#[derive(Debug, Default)]
pub(crate) struct RaisedAlarms(std::sync::atomic::AtomicU8);

impl RaisedAlarms {
    /// Takes the alarms raised now, as `(member, alarm)` pairs.
    pub(crate) fn set(&self, raised: &[(i64, i32)]) {
        self.0.store(
            Alarms::of(raised) as u8,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// What they stop.
    pub(crate) fn get(&self) -> Alarms {
        const CORRUPT: u8 = Alarms::Corrupt as u8;
        const NO_SPACE: u8 = Alarms::NoSpace as u8;
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            CORRUPT => Alarms::Corrupt,
            NO_SPACE => Alarms::NoSpace,
            _ => Alarms::None,
        }
    }
}

/// A write as the alarms judge it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    /// A put, a transaction with a put, a lease grant: stopped by NOSPACE.
    Growing,
    /// A delete, a compaction, a lease revoke, a transaction that only
    /// deletes: stopped by CORRUPT only.
    Other,
}

impl Etcd {
    /// Refuses a write that a raised alarm stops, with etcd's words.
    fn check_alarms(&self, write: Write) -> Result<(), Status> {
        match self.alarms.get() {
            Alarms::Corrupt => Err(Status::data_loss("etcdserver: corrupt cluster")),
            Alarms::NoSpace if write == Write::Growing => Err(Status::resource_exhausted(
                "etcdserver: mvcc: database space exceeded",
            )),
            _ => Ok(()),
        }
    }

    async fn current_revision(&self) -> Result<i64, Status> {
        self.store.current_revision().await.map_err(convert::status)
    }

    /// The caller of a request; `None` when the API is open
    /// (`--etcd-auth=none`) and every key is reachable.
    async fn subject<T>(&self, request: &Request<T>) -> Result<Option<Subject>, Status> {
        match request.extensions().get::<TokenUser>() {
            None => match self.auth {
                EtcdAuth::None => Ok(None),
                EtcdAuth::Users => Err(Status::unauthenticated("etcdserver: invalid auth token")),
            },
            Some(TokenUser(user_id)) => self
                .callers
                .subject(&self.store, *user_id)
                .await
                .map(Some)
                .map_err(|e| Status::unauthenticated(format!("etcdserver: {e}"))),
        }
    }
}

/// Refuses what the caller may not do to `range`.
fn check(subject: &Option<Subject>, access: Access, range: &KeyRange) -> Result<(), Status> {
    match subject {
        Some(subject) if !subject.may(access, range) => {
            Err(Status::permission_denied("etcdserver: permission denied"))
        }
        _ => Ok(()),
    }
}

/// Refuses a call only the platform admin may make.
fn check_admin(subject: &Option<Subject>) -> Result<(), Status> {
    match subject {
        Some(subject) if !subject.platform_admin => {
            Err(Status::permission_denied("etcdserver: permission denied"))
        }
        _ => Ok(()),
    }
}

/// Serves the etcd API, and the node API beside it, on `listener` until
/// `shutdown`.
pub async fn serve(
    store: Store,
    listener: tokio::net::TcpListener,
    options: EtcdOptions,
    node_api: crate::node_api::NodeApi,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let auth = options.auth;
    let addr: SocketAddr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    // One member per server process; the cluster is the database.
    let member = MemberInfo {
        id: rand::random_range(1..i64::MAX),
        name: format!("berth-{}", std::process::id()),
        client_url: format!("http://{addr}"),
    };
    let tokens = Tokens::from_store(&store)
        .await
        .map_err(|e| ServeError::Tokens(e.to_string()))?;
    let etcd = Etcd {
        store: store.clone(),
        headers: Headers {
            cluster_id: 0x6265_7274_6800_0001,
            member_id: member.id as u64,
        },
        auth,
        tokens: tokens.clone(),
        progress_every: options.progress_notify_interval,
        alarms: Default::default(),
        callers: callers::Callers::default(),
    };
    let following = tokio::spawn(etcd.callers.clone().follow(store.clone(), shutdown.clone()));
    let heartbeat = tokio::spawn(run_member_heartbeat(
        store,
        member,
        etcd.alarms.clone(),
        shutdown.clone(),
    ));
    let check = {
        let tokens = tokens.clone();
        move |request: Request<()>| authorize(auth, &tokens, request)
    };
    // Auth.Authenticate needs no token, and a client may still send the one
    // that has just expired; the other Auth calls check theirs themselves.
    let identify = move |request: Request<()>| Ok(identify(auth, &tokens, request));
    let served = tonic::transport::Server::builder()
        .add_service(KvServer::with_interceptor(etcd.clone(), check.clone()))
        .add_service(WatchServer::with_interceptor(etcd.clone(), check.clone()))
        .add_service(LeaseServer::with_interceptor(etcd.clone(), check.clone()))
        .add_service(ClusterServer::with_interceptor(etcd.clone(), check.clone()))
        .add_service(MaintenanceServer::with_interceptor(etcd.clone(), check))
        .add_service(AuthServer::with_interceptor(etcd, identify))
        .add_service(node_api.service())
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled_owned())
        .await;
    let _ = heartbeat.await;
    let _ = following.await;
    served.map_err(ServeError::Transport)
}

/// Why the etcd API stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The token signing secret could not be read.
    #[error("reading the token signing secret: {0}")]
    Tokens(String),
    /// The gRPC server failed.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

/// Keeps this process's member row fresh until `shutdown`, then removes it.
async fn run_member_heartbeat(
    store: Store,
    member: MemberInfo,
    raised: std::sync::Arc<RaisedAlarms>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(MEMBER_HEARTBEAT);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {
                if let Err(error) = store.heartbeat_member(&member).await {
                    tracing::warn!(%error, "refreshing this server's member row failed");
                }
                if let Ok(alarms) = store.alarms().await {
                    raised.set(&alarms);
                }
            }
        }
    }
    if let Err(error) = store.remove_member(member.id).await {
        tracing::warn!(%error, "removing this server's member row failed");
    }
}

/// The accepted connections, with Nagle's algorithm off: answers are small
/// and each one is awaited by a client, so holding them back for an ACK
/// costs a delayed-ACK timeout (tens of milliseconds) per call.
fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// The one authentication check of the etcd API: with `users`, every call
/// but `Auth.Authenticate` carries a valid token in its `token` metadata, as
/// etcd's clients send it. Which keys the caller may touch is decided per
/// call by [`check`].
fn authorize(
    auth: EtcdAuth,
    tokens: &Tokens,
    mut request: Request<()>,
) -> Result<Request<()>, Status> {
    if auth == EtcdAuth::None {
        return Ok(request);
    }
    let user_id = token_user(tokens, &request)?.ok_or_else(|| {
        Status::unauthenticated(
            "etcdserver: this server requires a token: authenticate first (etcdctl --user EMAIL:PASSWORD)",
        )
    })?;
    request.extensions_mut().insert(TokenUser(user_id));
    Ok(request)
}

/// Like [`authorize`], but a request without a valid token goes on without
/// a user, for [`Etcd::subject`] to refuse where one is needed.
fn identify(auth: EtcdAuth, tokens: &Tokens, mut request: Request<()>) -> Request<()> {
    if auth == EtcdAuth::Users
        && let Ok(Some(user_id)) = token_user(tokens, &request)
    {
        request.extensions_mut().insert(TokenUser(user_id));
    }
    request
}

/// The user the request's `token` metadata names: `None` without one, an
/// error for one that does not verify.
fn token_user(tokens: &Tokens, request: &Request<()>) -> Result<Option<i64>, Status> {
    let Some(token) = request.metadata().get("token") else {
        return Ok(None);
    };
    let token = token
        .to_str()
        .map_err(|_| Status::unauthenticated("etcdserver: invalid auth token"))?;
    tokens
        .verify(token)
        .map(Some)
        .map_err(|e| Status::unauthenticated(format!("etcdserver: invalid auth token: {e}")))
}
