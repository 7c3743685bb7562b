//! The Lease service: Grant, Revoke, KeepAlive, TimeToLive, Leases.
//!
//! Every lease has an owner ([`LeaseOwner`]): the tenant of the member who
//! granted it, or the platform for the server's own leases (leadership,
//! events) and the platform admin's. A tenant's members reach only their
//! tenants' leases (viewers see them, editors grant, renew and revoke
//! them); another owner's lease is answered exactly as a lease that does not
//! exist, so that its existence is not even confirmed. Only the platform
//! admin (or everyone, with `--etcd-auth none`) reaches every lease.

use std::pin::Pin;

use berth_api::etcd::etcdserverpb as pb;
use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::Etcd;
use super::convert::status;
use crate::auth::Subject;
use crate::authz::{Target, Verb, authorize};
use crate::store::StoreError;
use crate::store::types::LeaseOwner;

/// etcd's shortest lease: 1.5 × its default election timeout, rounded up.
/// A shorter TTL is raised to it, as etcd does.
const MIN_LEASE_TTL: i64 = 2;

/// The request metadata that names the tenant a lease is granted to, for a
/// member who may write in several.
pub(crate) const LEASE_TENANT_METADATA: &str = "berth-tenant";

/// Whether the caller may do `verb` to a lease of `owner`. `None` is the
/// open API (`--etcd-auth none`).
fn reaches(subject: &Option<Subject>, owner: &LeaseOwner, verb: Verb) -> bool {
    match (subject, owner) {
        (None, _) => true,
        (Some(subject), _) if subject.platform_admin => true,
        (Some(_), LeaseOwner::Platform) => false,
        (Some(subject), LeaseOwner::Tenant(tenant)) => {
            authorize(subject, Some(tenant), Target::Leases, verb).allowed()
        }
    }
}

/// The owner a lease that this caller grants belongs to: the platform for
/// the platform admin and the open API, otherwise the one tenant in which
/// the caller may grant leases (named by `berth-tenant` metadata when there
/// are several).
fn grant_owner(subject: &Option<Subject>, named: Option<&str>) -> Result<LeaseOwner, Status> {
    let Some(subject) = subject else {
        return Ok(named.map_or(LeaseOwner::Platform, |t| LeaseOwner::Tenant(t.to_owned())));
    };
    let may_grant =
        |tenant: &str| authorize(subject, Some(tenant), Target::Leases, Verb::Create).allowed();
    if let Some(tenant) = named {
        return if may_grant(tenant) {
            Ok(LeaseOwner::Tenant(tenant.to_owned()))
        } else {
            Err(Status::permission_denied("etcdserver: permission denied"))
        };
    }
    if subject.platform_admin {
        return Ok(LeaseOwner::Platform);
    }
    let tenants: Vec<&str> = subject
        .tenants
        .iter()
        .map(|(tenant, _)| tenant.as_str())
        .filter(|tenant| may_grant(tenant))
        .collect();
    match tenants[..] {
        [tenant] => Ok(LeaseOwner::Tenant(tenant.to_owned())),
        [] => Err(Status::permission_denied("etcdserver: permission denied")),
        _ => Err(Status::failed_precondition(format!(
            "etcdserver: you may grant leases in several tenants ({}); name the lease's tenant \
             in the `{LEASE_TENANT_METADATA}` request metadata",
            tenants.join(", ")
        ))),
    }
}

/// etcd's answer for a lease that does not exist.
fn lease_not_found() -> Status {
    status(StoreError::LeaseNotFound(0))
}

#[tonic::async_trait]
impl pb::lease_server::Lease for Etcd {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let subject = self.subject(&request).await?;
        self.check_alarms(super::Write::Growing)?;
        let named = request
            .metadata()
            .get(LEASE_TENANT_METADATA)
            .map(|value| {
                value.to_str().map_err(|_| {
                    Status::invalid_argument(format!(
                        "etcdserver: `{LEASE_TENANT_METADATA}` is not text"
                    ))
                })
            })
            .transpose()?;
        let owner = grant_owner(&subject, named)?;
        let request = request.into_inner();
        if request.ttl > crate::store::MAX_LEASE_TTL {
            return Err(Status::out_of_range("etcdserver: too large lease TTL"));
        }
        let lease = self
            .store
            .lease_grant(request.id, request.ttl.max(MIN_LEASE_TTL), owner)
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
        let subject = self.subject(&request).await?;
        self.check_alarms(super::Write::Other)?;
        let id = request.into_inner().id;
        let owner = self.reachable_owner(&subject, id, Verb::Delete).await?;
        // The owner goes with the revoke, so that a lease ended and granted
        // anew to someone else in between is left alone.
        let revision = self
            .store
            .lease_revoke(id, owner.as_ref())
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
        let subject = self.subject(&request).await?;
        let mut inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(16);
        let etcd = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(request)) = inbound.message().await {
                let response = etcd.keep_alive_once(&subject, request.id).await;
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
        let subject = self.subject(&request).await?;
        let request = request.into_inner();
        let revision = self.current_revision().await?;
        let lease = match self
            .store
            .lease_time_to_live(request.id, request.keys)
            .await
        {
            Ok(lease) => Some(lease).filter(|lease| reaches(&subject, &lease.owner, Verb::Get)),
            Err(StoreError::LeaseNotFound(_)) => None,
            Err(error) => return Err(status(error)),
        };
        let response = match lease {
            Some(lease) => pb::LeaseTimeToLiveResponse {
                header: self.headers.at(revision),
                id: lease.id,
                ttl: lease.remaining_ttl,
                granted_ttl: lease.granted_ttl,
                keys: lease.keys,
            },
            // etcd answers an unknown lease with TTL -1, not an error.
            None => pb::LeaseTimeToLiveResponse {
                header: self.headers.at(revision),
                id: request.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        };
        Ok(Response::new(response))
    }

    async fn lease_leases(
        &self,
        request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let subject = self.subject(&request).await?;
        let leases = self.store.leases().await.map_err(status)?;
        let revision = self.current_revision().await?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: self.headers.at(revision),
            leases: leases
                .into_iter()
                .filter(|(_, owner)| reaches(&subject, owner, Verb::List))
                .map(|(id, _)| pb::LeaseStatus { id })
                .collect(),
        }))
    }
}

impl Etcd {
    /// The owner to require of lease `id` when the caller does `verb` to it:
    /// `None` (any owner) for callers who reach every lease. A lease the
    /// caller may not even see is answered as not found; one they see but
    /// may not change (a viewer's) is refused.
    async fn reachable_owner(
        &self,
        subject: &Option<Subject>,
        id: i64,
        verb: Verb,
    ) -> Result<Option<LeaseOwner>, Status> {
        if subject.as_ref().is_none_or(|s| s.platform_admin) {
            return Ok(None);
        }
        let owner = match self.store.lease_time_to_live(id, false).await {
            Ok(lease) => lease.owner,
            Err(StoreError::LeaseNotFound(_)) => return Err(lease_not_found()),
            Err(error) => return Err(status(error)),
        };
        if !reaches(subject, &owner, Verb::Get) {
            return Err(lease_not_found());
        }
        if !reaches(subject, &owner, verb) {
            return Err(Status::permission_denied("etcdserver: permission denied"));
        }
        Ok(Some(owner))
    }

    /// One keep-alive answer. An unknown, ended or unreachable lease
    /// answers TTL 0, as etcd does for a lease that does not exist.
    async fn keep_alive_once(
        &self,
        subject: &Option<Subject>,
        id: i64,
    ) -> Result<pb::LeaseKeepAliveResponse, Status> {
        let renewed = match self.reachable_owner(subject, id, Verb::Update).await {
            Ok(owner) => self.store.lease_keep_alive(id, owner.as_ref()).await,
            Err(refused) if refused.code() == tonic::Code::NotFound => {
                Err(StoreError::LeaseNotFound(id))
            }
            Err(refused) => return Err(refused),
        };
        let ttl = match renewed {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn member(tenants: &[(&str, Role)]) -> Option<Subject> {
        Some(Subject {
            user_id: 1,
            email: "m@example.com".into(),
            api_token: None,
            platform_admin: false,
            tenants: tenants.iter().map(|(t, r)| ((*t).to_owned(), *r)).collect(),
        })
    }

    #[test]
    fn a_members_lease_belongs_to_the_one_tenant_they_may_write_in() {
        let subject = member(&[("acme", Role::Editor), ("globex", Role::Viewer)]);
        assert_eq!(
            grant_owner(&subject, None).unwrap(),
            LeaseOwner::Tenant("acme".into())
        );
        let viewer = member(&[("acme", Role::Viewer)]);
        assert_eq!(
            grant_owner(&viewer, None).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        let both = member(&[("acme", Role::Editor), ("globex", Role::Owner)]);
        let ambiguous = grant_owner(&both, None).unwrap_err();
        assert_eq!(ambiguous.code(), tonic::Code::FailedPrecondition);
        assert!(ambiguous.message().contains("acme, globex"));
        assert_eq!(
            grant_owner(&both, Some("globex")).unwrap(),
            LeaseOwner::Tenant("globex".into())
        );
        assert_eq!(
            grant_owner(&both, Some("initech")).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn members_never_reach_the_platforms_leases_and_viewers_only_read_their_own() {
        let viewer = member(&[("acme", Role::Viewer)]);
        let acme = LeaseOwner::Tenant("acme".into());
        let globex = LeaseOwner::Tenant("globex".into());
        assert!(reaches(&viewer, &acme, Verb::Get));
        assert!(reaches(&viewer, &acme, Verb::List));
        assert!(!reaches(&viewer, &acme, Verb::Delete));
        assert!(!reaches(&viewer, &acme, Verb::Update));
        assert!(!reaches(&viewer, &globex, Verb::Get));
        let owner = member(&[("acme", Role::Owner)]);
        assert!(reaches(&owner, &acme, Verb::Delete));
        assert!(!reaches(&owner, &LeaseOwner::Platform, Verb::Get));
        assert!(reaches(&None, &LeaseOwner::Platform, Verb::Delete));
    }
}
