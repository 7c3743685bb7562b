//! Maintenance, Cluster and Auth: every method of etcd 3.4, so that each
//! passes the same access check.
//!
//! Any signed-in user may ask for the server's status, the member list and
//! the auth status, and anyone may sign in. Everything else here acts on
//! the whole cluster (alarms, hashes, snapshots, defragmentation, members,
//! etcd's own users and roles), so only the platform admin may call it, as
//! only etcd's root may; a tenant's member is refused before anything is
//! done.
//!
//! Alarms are kept in the store. `Snapshot` streams the store in Berth's
//! own snapshot format (see [`crate::store::snapshot`]), which `berth
//! restore` reads. `Hash` and `HashKV` hash the key space at
//! a revision (keys, values, revisions and versions, in key order), so two
//! replicas on one database answer alike. `Defragment` gives SQLite's free
//! pages back. Berth's users are etcd's users for `UserList` and `UserGet`
//! (their roles are `root` for the platform admin and `TENANT:ROLE` per
//! membership); every other user and role call answers
//! FAILED_PRECONDITION naming the REST endpoint that does it. Moving the
//! leader and changing members answer UNIMPLEMENTED: members are the
//! server processes on one database and come and go with them.

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

impl Etcd {
    /// The answer to a user or role call that Berth's REST API does
    /// instead: refused for everyone but the platform admin, and
    /// FAILED_PRECONDITION naming the way for the admin.
    async fn managed_over_rest<T>(&self, request: &Request<T>, why: &str) -> Status {
        if let Err(refused) = self.subject(request).await.and_then(|s| check_admin(&s)) {
            return refused;
        }
        Status::failed_precondition(format!(
            "etcdserver: Berth does not change this over the etcd API: {why}"
        ))
    }

    /// A hash of every key visible at `revision` (0: now) with its value,
    /// revisions and version, in key order; the revision read at and the
    /// compacted revision.
    async fn key_space_hash(&self, revision: i64) -> Result<(i64, u32, i64), Status> {
        use sha2::{Digest, Sha256};
        // etcd says -1 before its first compaction.
        let compact_revision = match self
            .store
            .compact_revision()
            .await
            .map_err(convert::status)?
        {
            0 => -1,
            revision => revision,
        };
        let response = self
            .store
            .range(crate::store::types::RangeRequest {
                range: crate::store::types::KeyRange {
                    key: vec![0],
                    range_end: vec![0],
                },
                revision,
                limit: 0,
                keys_only: false,
                count_only: false,
            })
            .await
            .map_err(convert::status)?;
        let mut hasher = Sha256::new();
        for kv in &response.kvs {
            for field in [&kv.key, &kv.value] {
                hasher.update((field.len() as u64).to_be_bytes());
                hasher.update(field);
            }
            for number in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
                hasher.update(number.to_be_bytes());
            }
        }
        let digest = hasher.finalize();
        let hash = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        Ok((response.revision, hash, compact_revision))
    }
}

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for Etcd {
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        use pb::alarm_request::AlarmAction;
        check_admin(&self.subject(&request).await?)?;
        let request = request.into_inner();
        let member = request.member_id as i64;
        let alarms = match AlarmAction::try_from(request.action) {
            Ok(AlarmAction::Get) => self.store.alarms().await,
            Ok(AlarmAction::Activate) => {
                if request.alarm == pb::AlarmType::None as i32 {
                    return Err(Status::invalid_argument(
                        "etcdserver: an alarm to activate must be NOSPACE or CORRUPT",
                    ));
                }
                self.store
                    .raise_alarm(member, request.alarm)
                    .await
                    .map(|()| vec![(member, request.alarm)])
            }
            Ok(AlarmAction::Deactivate) => self.store.disarm_alarms(member, request.alarm).await,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "etcdserver: unknown alarm action {}",
                    request.action
                )));
            }
        }
        .map_err(convert::status)?;
        let raised = self.store.alarms().await.map_err(convert::status)?;
        self.alarms.set(&raised);
        // etcd answers alarms without a header.
        Ok(Response::new(pb::AlarmResponse {
            header: None,
            alarms: alarms
                .into_iter()
                .map(|(member, alarm)| pb::AlarmMember {
                    member_id: member as u64,
                    alarm,
                })
                .collect(),
        }))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.subject(&request).await?;
        let revision = self.current_revision().await?;
        let (db_size, db_size_in_use) = self.store.size().await.map_err(convert::status)?;
        Ok(Response::new(pb::StatusResponse {
            header: self.headers.at(revision),
            version: format!("3.4.0-berth-{}", env!("CARGO_PKG_VERSION")),
            db_size,
            leader: self.headers.member_id,
            raft_index: revision as u64,
            raft_term: 1,
            raft_applied_index: revision as u64,
            errors: Vec::new(),
            db_size_in_use,
            is_learner: false,
        }))
    }

    async fn defragment(
        &self,
        request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        check_admin(&self.subject(&request).await?)?;
        self.store.defragment().await.map_err(convert::status)?;
        let revision = self.current_revision().await?;
        Ok(Response::new(pb::DefragmentResponse {
            header: self.headers.at(revision),
        }))
    }

    async fn hash(
        &self,
        request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        check_admin(&self.subject(&request).await?)?;
        let (revision, hash, _) = self.key_space_hash(0).await?;
        Ok(Response::new(pb::HashResponse {
            header: self.headers.at(revision),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        check_admin(&self.subject(&request).await?)?;
        let at = request.into_inner().revision;
        let (revision, hash, compact_revision) = self.key_space_hash(at).await?;
        Ok(Response::new(pb::HashKvResponse {
            header: self.headers.at(revision),
            hash,
            compact_revision,
        }))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

    /// The whole store in Berth's snapshot format
    /// ([`crate::store::snapshot`]), in chunks of 64 KiB; `berth restore`
    /// makes a new store from it.
    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        check_admin(&self.subject(&request).await?)?;
        let file = self.store.snapshot().await.map_err(convert::status)?;
        let revision = self.current_revision().await?;
        let header = self.headers.at(revision);
        let total = file.len();
        let chunks: Vec<Result<pb::SnapshotResponse, Status>> = file
            .chunks(64 * 1024)
            .scan(0usize, |sent, chunk| {
                *sent += chunk.len();
                Some(Ok(pb::SnapshotResponse {
                    header,
                    remaining_bytes: (total - *sent) as u64,
                    blob: chunk.to_vec(),
                }))
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
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
        Err(self
            .managed_over_rest(
                &request,
                "authentication is set by `berth server --etcd-auth`",
            )
            .await)
    }

    async fn auth_disable(
        &self,
        request: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        Err(self
            .managed_over_rest(
                &request,
                "authentication is set by `berth server --etcd-auth`",
            )
            .await)
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
        Err(self
            .managed_over_rest(&request, "users are made with POST /api/v1/users")
            .await)
    }

    async fn user_get(
        &self,
        request: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        check_admin(&self.subject(&request).await?)?;
        let name = request.into_inner().name;
        let user = self
            .store
            .user_by_email(&name)
            .await
            .map_err(convert::status)?
            .ok_or_else(|| Status::failed_precondition("etcdserver: user name not found"))?;
        let mut roles = Vec::new();
        if user.platform_admin {
            roles.push("root".to_owned());
        }
        roles.extend(
            self.store
                .memberships(user.id)
                .await
                .map_err(convert::status)?
                .into_iter()
                .map(|m| format!("{}:{}", m.tenant, m.role)),
        );
        let revision = self.current_revision().await?;
        Ok(Response::new(pb::AuthUserGetResponse {
            header: self.headers.at(revision),
            roles,
        }))
    }

    async fn user_list(
        &self,
        request: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        check_admin(&self.subject(&request).await?)?;
        let mut users: Vec<String> = self
            .store
            .users()
            .await
            .map_err(convert::status)?
            .into_iter()
            .map(|u| u.email)
            .collect();
        users.sort();
        let revision = self.current_revision().await?;
        Ok(Response::new(pb::AuthUserListResponse {
            header: self.headers.at(revision),
            users,
        }))
    }

    async fn user_delete(
        &self,
        request: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        Err(self
            .managed_over_rest(
                &request,
                "users are Berth's accounts, managed over the REST API (/api/v1/users)",
            )
            .await)
    }

    async fn user_change_password(
        &self,
        request: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        Err(self
            .managed_over_rest(
                &request,
                "passwords are Berth's accounts', managed over the REST API (/api/v1/users)",
            )
            .await)
    }

    async fn user_grant_role(
        &self,
        request: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        Err(self
            .managed_over_rest(
                &request,
                "roles are given per tenant with POST /api/v1/tenants/{tenant}/members",
            )
            .await)
    }

    async fn user_revoke_role(
        &self,
        request: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        Err(self
            .managed_over_rest(
                &request,
                "roles are taken away with DELETE /api/v1/tenants/{tenant}/members/{userId}",
            )
            .await)
    }

    async fn role_add(
        &self,
        request: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        Err(self.managed_over_rest(&request, "Berth's roles are fixed (owner, admin, editor, viewer) and given per tenant with POST /api/v1/tenants/{tenant}/members").await)
    }

    async fn role_get(
        &self,
        request: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        Err(self.managed_over_rest(&request, "Berth's roles are fixed (owner, admin, editor, viewer); GET /api/v1/tenants/{tenant}/members lists who has which").await)
    }

    async fn role_list(
        &self,
        request: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        Err(self.managed_over_rest(&request, "Berth's roles are fixed (owner, admin, editor, viewer); GET /api/v1/tenants/{tenant}/members lists who has which").await)
    }

    async fn role_delete(
        &self,
        request: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        Err(self
            .managed_over_rest(
                &request,
                "Berth's roles are fixed (owner, admin, editor, viewer)",
            )
            .await)
    }

    async fn role_grant_permission(
        &self,
        request: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        Err(self.managed_over_rest(&request, "a role's keys are its tenants' (/registry/{kind}/{tenant}/…); membership is set with POST /api/v1/tenants/{tenant}/members").await)
    }

    async fn role_revoke_permission(
        &self,
        request: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        Err(self.managed_over_rest(&request, "a role's keys are its tenants' (/registry/{kind}/{tenant}/…); membership is set with POST /api/v1/tenants/{tenant}/members").await)
    }
}
