//! The Lease service: Grant, Revoke, KeepAlive, TimeToLive, Leases.

use std::pin::Pin;

use berth_api::etcd::etcdserverpb as pb;
use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::Etcd;
use super::convert::status;
use crate::store::StoreError;

/// etcd's shortest lease: 1.5 × its default election timeout, rounded up.
/// A shorter TTL is raised to it, as etcd does.
const MIN_LEASE_TTL: i64 = 2;

#[tonic::async_trait]
impl pb::lease_server::Lease for Etcd {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        self.subject(&request).await?;
        let request = request.into_inner();
        if request.ttl > crate::store::MAX_LEASE_TTL {
            return Err(Status::out_of_range("etcdserver: too large lease TTL"));
        }
        let lease = self
            .store
            .lease_grant(request.id, request.ttl.max(MIN_LEASE_TTL))
            .await
            .map_err(status)?;
        let revision = self.current_revision().await?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: self.headers.at(revision),
            id: lease.id,
            ttl: lease.granted_ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        self.subject(&request).await?;
        let revision = self
            .store
            .lease_revoke(request.into_inner().id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: self.headers.at(revision),
        }))
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        self.subject(&request).await?;
        let mut inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(16);
        let etcd = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(request)) = inbound.message().await {
                let response = etcd.keep_alive_once(request.id).await;
                if sender.send(response).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        self.subject(&request).await?;
        let request = request.into_inner();
        let revision = self.current_revision().await?;
        let response = match self
            .store
            .lease_time_to_live(request.id, request.keys)
            .await
        {
            Ok(lease) => pb::LeaseTimeToLiveResponse {
                header: self.headers.at(revision),
                id: lease.id,
                ttl: lease.remaining_ttl,
                granted_ttl: lease.granted_ttl,
                keys: lease.keys,
            },
            // etcd answers an unknown lease with TTL -1, not an error.
            Err(StoreError::LeaseNotFound(id)) => pb::LeaseTimeToLiveResponse {
                header: self.headers.at(revision),
                id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
            Err(error) => return Err(status(error)),
        };
        Ok(Response::new(response))
    }

    async fn lease_leases(
        &self,
        request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        self.subject(&request).await?;
        let ids = self.store.leases().await.map_err(status)?;
        let revision = self.current_revision().await?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: self.headers.at(revision),
            leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
        }))
    }
}

impl Etcd {
    /// One keep-alive answer. An unknown or ended lease answers TTL 0, as
    /// etcd does.
    async fn keep_alive_once(&self, id: i64) -> Result<pb::LeaseKeepAliveResponse, Status> {
        let ttl = match self.store.lease_keep_alive(id).await {
            Ok(ttl) => ttl,
            Err(StoreError::LeaseNotFound(_)) => 0,
            Err(error) => return Err(status(error)),
        };
        let revision = self.current_revision().await?;
        Ok(pb::LeaseKeepAliveResponse {
            header: self.headers.at(revision),
            id,
            ttl,
        })
    }
}
