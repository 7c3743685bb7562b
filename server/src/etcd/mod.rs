//! The etcd v3 API over the store, so that `etcdctl` and etcd client
//! libraries work against Berth unchanged.
//!
//! - `convert`: wire messages ↔ store types, store errors → etcd's statuses.
//! - `kv`: KV (Range, Put, DeleteRange, Txn, Compact).
//! - `watch`: the Watch stream.
//! - `lease`: Lease (Grant, Revoke, KeepAlive, TimeToLive, Leases).
//! - this module: Maintenance.Status, Cluster.MemberList, Auth, the access
//!   check every call passes, and the gRPC server that serves them all.

mod convert;
mod kv;
mod lease;
mod watch;

use std::net::SocketAddr;
use std::time::Duration;

use berth_api::etcd::etcdserverpb as pb;
use berth_api::etcd::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::store::Store;
use crate::store::types::MemberInfo;
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

/// What every etcd service shares.
#[derive(Clone)]
pub(crate) struct Etcd {
    store: Store,
    headers: Headers,
}

/// How often a server process refreshes its member row.
const MEMBER_HEARTBEAT: Duration = Duration::from_secs(2);

/// A member whose row is older than this is gone (crashed without removing
/// it).
const MEMBER_TIMEOUT: Duration = Duration::from_secs(10);

impl Etcd {
    async fn current_revision(&self) -> Result<i64, Status> {
        self.store.current_revision().await.map_err(convert::status)
    }
}

/// Serves the etcd API on `listener` until `shutdown`.
pub async fn serve(
    store: Store,
    listener: tokio::net::TcpListener,
    auth: EtcdAuth,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let addr: SocketAddr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    // One member per server process; the cluster is the database.
    let member = MemberInfo {
        id: rand::random_range(1..i64::MAX),
        name: format!("berth-{}", std::process::id()),
        client_url: format!("http://{addr}"),
    };
    let etcd = Etcd {
        store: store.clone(),
        headers: Headers {
            cluster_id: 0x6265_7274_6800_0001,
            member_id: member.id as u64,
        },
    };
    let heartbeat = tokio::spawn(run_member_heartbeat(store, member, shutdown.clone()));
    let check = move |request: Request<()>| authorize(auth, request);
    let served = tonic::transport::Server::builder()
        .add_service(KvServer::with_interceptor(etcd.clone(), check))
        .add_service(WatchServer::with_interceptor(etcd.clone(), check))
        .add_service(LeaseServer::with_interceptor(etcd.clone(), check))
        .add_service(ClusterServer::with_interceptor(etcd.clone(), check))
        .add_service(MaintenanceServer::with_interceptor(etcd.clone(), check))
        .add_service(AuthServer::new(etcd))
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled_owned())
        .await;
    let _ = heartbeat.await;
    served
}

/// Keeps this process's member row fresh until `shutdown`, then removes it.
async fn run_member_heartbeat(store: Store, member: MemberInfo, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(MEMBER_HEARTBEAT);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {
                if let Err(error) = store.heartbeat_member(&member).await {
                    tracing::warn!(%error, "refreshing this server's member row failed");
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

/// The one access check of the etcd API.
fn authorize(auth: EtcdAuth, request: Request<()>) -> Result<Request<()>, Status> {
    match auth {
        EtcdAuth::None => Ok(request),
        EtcdAuth::Users => match request.metadata().get("token") {
            // Berth's accounts (and so the tokens Authenticate hands out)
            // arrive with the REST API; until then no token is valid.
            Some(_) => Err(Status::unauthenticated("etcdserver: invalid auth token")),
            None => Err(Status::unauthenticated(
                "etcdserver: this server requires a token: authenticate first, or run it with --etcd-auth=none",
            )),
        },
    }
}

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for Etcd {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let revision = self.current_revision().await?;
        Ok(Response::new(pb::StatusResponse {
            header: self.headers.at(revision),
            version: format!("3.4.0-berth-{}", env!("CARGO_PKG_VERSION")),
            db_size: 0,
            leader: self.headers.member_id,
            raft_index: revision as u64,
            raft_term: 1,
            raft_applied_index: revision as u64,
            errors: Vec::new(),
            db_size_in_use: 0,
            is_learner: false,
        }))
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for Etcd {
    async fn member_list(
        &self,
        _: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let revision = self.current_revision().await?;
        let members = self
            .store
            .members(MEMBER_TIMEOUT)
            .await
            .map_err(convert::status)?;
        Ok(Response::new(pb::MemberListResponse {
            header: self.headers.at(revision),
            members: members
                .into_iter()
                .map(|member| pb::Member {
                    id: member.id as u64,
                    name: member.name,
                    peer_ur_ls: Vec::new(),
                    client_ur_ls: vec![member.client_url],
                    is_learner: false,
                })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl pb::auth_server::Auth for Etcd {
    async fn auth_status(
        &self,
        _: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        let revision = self.current_revision().await?;
        Ok(Response::new(pb::AuthStatusResponse {
            header: self.headers.at(revision),
            enabled: true,
            auth_revision: 1,
        }))
    }

    async fn authenticate(
        &self,
        _: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        Err(Status::invalid_argument(
            "etcdserver: authentication failed, invalid user ID or password",
        ))
    }
}
