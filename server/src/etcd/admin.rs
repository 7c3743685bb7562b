//! Maintenance, Cluster and Auth: every method of etcd 3.4, so that each
//! passes the same access check.
//!
//! Any signed-in user may ask for the server's status, the member list and
//! the auth status, and anyone may sign in. Everything else here acts on
//! the whole cluster (alarms, hashes, snapshots, defragmentation, members,
//! etcd's own users and roles), so only the platform admin may call it, as
//! only etcd's root may; a tenant's member is refused before anything is
//! done. Of those, the methods Berth does not carry out answer
//! UNIMPLEMENTED, and only to the platform admin.

use std::pin::Pin;

use berth_api::etcd::etcdserverpb as pb;
use futures::Stream;
use tonic::{Request, Response, Status};

use super::{Etcd, EtcdAuth, MEMBER_TIMEOUT, check_admin, convert};
use crate::sign_in::{self, SignInError};

impl Etcd {
    /// The answer to a method only the platform admin may call and Berth
    /// does not carry out: refused for everyone else, UNIMPLEMENTED for the
    /// admin.
    async fn admin_only<T>(&self, request: &Request<T>, method: &str) -> Status {
        let subject = match self.subject(request).await {
            Ok(subject) => subject,
            Err(refused) => return refused,
        };
        match check_admin(&subject) {
            Err(refused) => refused,
            Ok(()) => Status::unimplemented(format!("etcdserver: Berth does not serve {method}")),
        }
    }
}

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for Etcd {
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        Err(self.admin_only(&request, "Maintenance.Alarm").await)
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.subject(&request).await?;
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

    async fn defragment(
        &self,
        request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        Err(self.admin_only(&request, "Maintenance.Defragment").await)
    }

    async fn hash(
        &self,
        request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        Err(self.admin_only(&request, "Maintenance.Hash").await)
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        Err(self.admin_only(&request, "Maintenance.HashKV").await)
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(self.admin_only(&request, "Maintenance.Snapshot").await)
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        Err(self.admin_only(&request, "Maintenance.MoveLeader").await)
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for Etcd {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        Err(self.admin_only(&request, "Cluster.MemberAdd").await)
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        Err(self.admin_only(&request, "Cluster.MemberRemove").await)
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(self.admin_only(&request, "Cluster.MemberUpdate").await)
    }

    async fn member_list(
        &self,
        request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        self.subject(&request).await?;
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

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        Err(self.admin_only(&request, "Cluster.MemberPromote").await)
    }
}

#[tonic::async_trait]
impl pb::auth_server::Auth for Etcd {
    async fn auth_enable(
        &self,
        request: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        Err(self.admin_only(&request, "Auth.AuthEnable").await)
    }

    async fn auth_disable(
        &self,
        request: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        Err(self.admin_only(&request, "Auth.AuthDisable").await)
    }

    async fn auth_status(
        &self,
        _: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        let revision = self.current_revision().await?;
        Ok(Response::new(pb::AuthStatusResponse {
            header: self.headers.at(revision),
            enabled: self.auth == EtcdAuth::Users,
            auth_revision: 1,
        }))
    }

    /// Signs in through the same throttle as the REST API: failures count
    /// against the account and the client's address in the database, and
    /// a locked account is refused here too, even with the right password.
    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let address = request
            .remote_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let request = request.into_inner();
        let user =
            match sign_in::sign_in(&self.store, &request.name, &request.password, &address).await {
                Ok(user) => user,
                Err(SignInError::BadCredentials) => {
                    return Err(Status::invalid_argument(
                        "etcdserver: authentication failed, invalid user ID or password",
                    ));
                }
                Err(SignInError::Locked { retry_after }) => {
                    let secs = retry_after.as_secs().max(1);
                    let mut status = Status::resource_exhausted(format!(
                        "etcdserver: too many failed authentication attempts; retry in {secs} s"
                    ));
                    if let Ok(value) = secs.to_string().parse() {
                        status.metadata_mut().insert("retry-after", value);
                    }
                    return Err(status);
                }
                Err(error) => return Err(Status::unavailable(error.to_string())),
            };
        let token = self
            .tokens
            .issue(&user)
            .map_err(|e| Status::internal(e.to_string()))?;
        let revision = self.current_revision().await?;
        Ok(Response::new(pb::AuthenticateResponse {
            header: self.headers.at(revision),
            token,
        }))
    }

    async fn user_add(
        &self,
        request: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        Err(self.admin_only(&request, "Auth.UserAdd").await)
    }

    async fn user_get(
        &self,
        request: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        Err(self.admin_only(&request, "Auth.UserGet").await)
    }

    async fn user_list(
        &self,
        request: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        Err(self.admin_only(&request, "Auth.UserList").await)
    }

    async fn user_delete(
        &self,
        request: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        Err(self.admin_only(&request, "Auth.UserDelete").await)
    }

    async fn user_change_password(
        &self,
        request: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        Err(self.admin_only(&request, "Auth.UserChangePassword").await)
    }

    async fn user_grant_role(
        &self,
        request: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        Err(self.admin_only(&request, "Auth.UserGrantRole").await)
    }

    async fn user_revoke_role(
        &self,
        request: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        Err(self.admin_only(&request, "Auth.UserRevokeRole").await)
    }

    async fn role_add(
        &self,
        request: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        Err(self.admin_only(&request, "Auth.RoleAdd").await)
    }

    async fn role_get(
        &self,
        request: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        Err(self.admin_only(&request, "Auth.RoleGet").await)
    }

    async fn role_list(
        &self,
        request: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        Err(self.admin_only(&request, "Auth.RoleList").await)
    }

    async fn role_delete(
        &self,
        request: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        Err(self.admin_only(&request, "Auth.RoleDelete").await)
    }

    async fn role_grant_permission(
        &self,
        request: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        Err(self.admin_only(&request, "Auth.RoleGrantPermission").await)
    }

    async fn role_revoke_permission(
        &self,
        request: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        Err(self.admin_only(&request, "Auth.RoleRevokePermission").await)
    }
}
