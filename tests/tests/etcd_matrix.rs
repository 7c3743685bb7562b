//! Every cell of `tests/data/etcd_matrix.txt` sent to a live server: each
//! etcd RPC as a viewer, an editor, an admin and an owner of tenant alpha,
//! against alpha's keys and leases, tenant beta's, the server's own
//! (the controllers' leadership key and lease) and ranges that straddle
//! tenants; on SQLite and on PostgreSQL.

use std::time::Duration;

use berth_api::etcd::etcdserverpb as pb;
use berth_server::controllers::leader::LEADER_KEY;
use berth_tests::db::{TestBackend, TestDb};
use berth_tests::etcd_grpc::EtcdCaller;
use berth_tests::process::TestServer;
use berth_tests::rest::Api;
use tonic::{Code, Status};

const MATRIX: &str = include_str!("../data/etcd_matrix.txt");
const ADMIN: &str = "admin@berth.local";
const ADMIN_PASSWORD: &str = "matrix-admin-password";
const ROLES: [&str; 4] = ["viewer", "editor", "admin", "owner"];
const PASSWORD: &str = "matrix-password";

const OWN_SEED: &str = "/registry/pods/alpha/seed";
const OTHER_SEED: &str = "/registry/pods/beta/seed";
const STRADDLE: (&str, &str) = ("/registry/pods/alpha/", "/registry/pods/beta0");

/// What a cell says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Allow,
    Deny,
    Absent,
}

impl Outcome {
    fn parse(cell: &str) -> Outcome {
        match cell {
            "allow" => Outcome::Allow,
            "deny" => Outcome::Deny,
            "absent" => Outcome::Absent,
            other => panic!("unknown cell {other}"),
        }
    }

    /// How the server answered a call that names a key or a lease.
    fn of<T>(answer: Result<T, Status>) -> Outcome {
        match answer {
            Ok(_) => Outcome::Allow,
            Err(status) if status.code() == Code::PermissionDenied => Outcome::Deny,
            Err(status)
                if status.code() == Code::NotFound
                    && status.message() == "etcdserver: requested lease not found" =>
            {
                Outcome::Absent
            }
            Err(status) => panic!("an answer outside the matrix: {status:?}"),
        }
    }
}

/// What a cell's call is aimed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Own,
    Other,
    Server,
    Straddle,
    None,
}

impl Target {
    fn parse(cell: &str) -> Target {
        match cell {
            "own" => Target::Own,
            "other" => Target::Other,
            "server" => Target::Server,
            "straddle" => Target::Straddle,
            "-" => Target::None,
            other => panic!("unknown target {other}"),
        }
    }
}

/// The leases and keys the cells aim at, and who can make more.
struct Fixture {
    endpoint: String,
    /// An editor of alpha, who grants alpha's leases.
    alpha_editor: EtcdCaller,
    /// A lease of tenant beta.
    other_lease: i64,
    /// The controllers' leadership lease.
    server_lease: i64,
    /// Numbers fresh keys.
    next: std::sync::atomic::AtomicU32,
}

impl Fixture {
    fn fresh_own_key(&self) -> Vec<u8> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("/registry/pods/alpha/cell-{n}").into_bytes()
    }

    /// A key (or range) a cell aims at; an own key is fresh when written.
    fn range(&self, target: Target, write: bool) -> (Vec<u8>, Vec<u8>) {
        match target {
            Target::Own if write => (self.fresh_own_key(), Vec::new()),
            Target::Own => (OWN_SEED.into(), Vec::new()),
            Target::Other => (OTHER_SEED.into(), Vec::new()),
            Target::Server => (LEADER_KEY.into(), Vec::new()),
            Target::Straddle => (STRADDLE.0.into(), STRADDLE.1.into()),
            Target::None => panic!("this row needs a target"),
        }
    }

    /// A lease a cell aims at: a fresh one of alpha's for `own`.
    async fn lease(&self, target: Target) -> i64 {
        match target {
            Target::Own => grant(&self.alpha_editor).await,
            Target::Other => self.other_lease,
            Target::Server => self.server_lease,
            _ => panic!("a lease row names own, other or server"),
        }
    }
}

async fn grant(caller: &EtcdCaller) -> i64 {
    caller
        .lease()
        .lease_grant(pb::LeaseGrantRequest { ttl: 600, id: 0 })
        .await
        .expect("granting a lease")
        .into_inner()
        .id
}

fn range_request(key: Vec<u8>, range_end: Vec<u8>) -> pb::RangeRequest {
    pb::RangeRequest {
        key,
        range_end,
        ..Default::default()
    }
}

fn put_request(key: Vec<u8>, lease: i64) -> pb::PutRequest {
    pb::PutRequest {
        key,
        value: b"matrix".to_vec(),
        lease,
        ..Default::default()
    }
}

fn op(request: pb::request_op::Request) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(request),
    }
}

/// One of alpha's members, signed in.
struct Member {
    email: String,
    caller: EtcdCaller,
}

/// Sends one cell's call as `member` and says how the server answered.
async fn run(rpc: &str, target: Target, member: &Member, fixture: &Fixture) -> Outcome {
    let caller = &member.caller;
    use pb::request_op::Request as Op;
    match rpc {
        "KV.Range" => {
            let (key, end) = fixture.range(target, false);
            Outcome::of(caller.kv().range(range_request(key, end)).await)
        }
        "KV.Put" => {
            let (key, _) = fixture.range(target, true);
            Outcome::of(caller.kv().put(put_request(key, 0)).await)
        }
        "KV.DeleteRange" => {
            let (key, range_end) = fixture.range(target, true);
            let request = pb::DeleteRangeRequest {
                key,
                range_end,
                ..Default::default()
            };
            Outcome::of(caller.kv().delete_range(request).await)
        }
        "KV.Compact" => {
            let request = pb::CompactionRequest {
                revision: 1,
                physical: false,
            };
            Outcome::of(caller.kv().compact(request).await)
        }
        "Txn.Compare" => {
            let (key, range_end) = fixture.range(target, false);
            let request = pb::TxnRequest {
                compare: vec![pb::Compare {
                    result: pb::compare::CompareResult::Equal as i32,
                    target: pb::compare::CompareTarget::Value as i32,
                    key,
                    range_end,
                    target_union: Some(pb::compare::TargetUnion::Value(b"x".to_vec())),
                }],
                success: vec![op(Op::RequestRange(range_request(
                    OWN_SEED.into(),
                    Vec::new(),
                )))],
                failure: vec![],
            };
            Outcome::of(caller.kv().txn(request).await)
        }
        "Txn.SuccessRange" => {
            let (key, end) = fixture.range(target, false);
            let request = pb::TxnRequest {
                compare: vec![],
                success: vec![op(Op::RequestRange(range_request(key, end)))],
                failure: vec![],
            };
            Outcome::of(caller.kv().txn(request).await)
        }
        "Txn.FailurePut" => {
            let (key, _) = fixture.range(target, true);
            // The compare holds, so the failure branch never runs; it is
            // checked all the same.
            let request = pb::TxnRequest {
                compare: vec![],
                success: vec![],
                failure: vec![op(Op::RequestPut(put_request(key, 0)))],
            };
            Outcome::of(caller.kv().txn(request).await)
        }
        "Txn.NestedDelete" => {
            let (key, range_end) = fixture.range(target, true);
            let nested = pb::TxnRequest {
                compare: vec![],
                success: vec![op(Op::RequestDeleteRange(pb::DeleteRangeRequest {
                    key,
                    range_end,
                    ..Default::default()
                }))],
                failure: vec![],
            };
            let request = pb::TxnRequest {
                compare: vec![],
                success: vec![op(Op::RequestTxn(nested))],
                failure: vec![],
            };
            Outcome::of(caller.kv().txn(request).await)
        }
        "KV.PutWithLease" => {
            let lease = fixture.lease(target).await;
            let put = put_request(fixture.fresh_own_key(), lease);
            Outcome::of(caller.kv().put(put).await)
        }
        "Txn.PutWithLease" => {
            let lease = fixture.lease(target).await;
            let request = pb::TxnRequest {
                compare: vec![],
                success: vec![op(Op::RequestPut(put_request(
                    fixture.fresh_own_key(),
                    lease,
                )))],
                failure: vec![],
            };
            Outcome::of(caller.kv().txn(request).await)
        }
        "Watch.Create" => {
            let (key, range_end) = fixture.range(target, false);
            let create = pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                    pb::WatchCreateRequest {
                        key,
                        range_end,
                        ..Default::default()
                    },
                )),
            };
            let first = first_watch_response(caller, create).await;
            if first.canceled {
                assert_eq!(first.cancel_reason, "etcdserver: permission denied");
                Outcome::Deny
            } else {
                assert!(first.created, "{first:?}");
                Outcome::Allow
            }
        }
        "Watch.Progress" => {
            let progress = pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
                    pb::WatchProgressRequest {},
                )),
            };
            let first = first_watch_response(caller, progress).await;
            assert!(first.header.is_some_and(|h| h.revision > 0));
            Outcome::Allow
        }
        "Lease.LeaseGrant" => Outcome::of(
            caller
                .lease()
                .lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 0 })
                .await,
        ),
        "Lease.LeaseRevoke" => {
            let id = fixture.lease(target).await;
            Outcome::of(
                caller
                    .lease()
                    .lease_revoke(pb::LeaseRevokeRequest { id })
                    .await,
            )
        }
        "Lease.LeaseKeepAlive" => {
            let id = fixture.lease(target).await;
            let requests = futures::stream::iter([pb::LeaseKeepAliveRequest { id }]);
            let answer = match caller.lease().lease_keep_alive(requests).await {
                Ok(stream) => stream
                    .into_inner()
                    .message()
                    .await
                    .map(|m| m.expect("a keep-alive answer")),
                Err(status) => Err(status),
            };
            match answer {
                Ok(answer) if answer.ttl == 0 => Outcome::Absent,
                other => Outcome::of(other),
            }
        }
        "Lease.LeaseTimeToLive" => {
            let id = fixture.lease(target).await;
            let request = pb::LeaseTimeToLiveRequest { id, keys: true };
            match caller.lease().lease_time_to_live(request).await {
                Ok(answer) if answer.get_ref().ttl == -1 => {
                    assert!(answer.get_ref().keys.is_empty());
                    Outcome::Absent
                }
                other => Outcome::of(other),
            }
        }
        "Lease.LeaseLeases" => {
            let id = fixture.lease(target).await;
            let listed = caller
                .lease()
                .lease_leases(pb::LeaseLeasesRequest {})
                .await
                .expect("listing leases")
                .into_inner()
                .leases;
            if listed.iter().any(|lease| lease.id == id) {
                Outcome::Allow
            } else {
                Outcome::Absent
            }
        }
        "Maintenance.Status" => {
            Outcome::of(caller.maintenance().status(pb::StatusRequest {}).await)
        }
        "Maintenance.Alarm" => {
            let request = pb::AlarmRequest::default();
            Outcome::of(caller.maintenance().alarm(request).await)
        }
        "Maintenance.Defragment" => Outcome::of(
            caller
                .maintenance()
                .defragment(pb::DefragmentRequest {})
                .await,
        ),
        "Maintenance.Hash" => Outcome::of(caller.maintenance().hash(pb::HashRequest {}).await),
        "Maintenance.HashKV" => Outcome::of(
            caller
                .maintenance()
                .hash_kv(pb::HashKvRequest { revision: 0 })
                .await,
        ),
        "Maintenance.Snapshot" => {
            Outcome::of(caller.maintenance().snapshot(pb::SnapshotRequest {}).await)
        }
        "Maintenance.MoveLeader" => Outcome::of(
            caller
                .maintenance()
                .move_leader(pb::MoveLeaderRequest { target_id: 1 })
                .await,
        ),
        "Cluster.MemberList" => Outcome::of(
            caller
                .cluster()
                .member_list(pb::MemberListRequest::default())
                .await,
        ),
        "Cluster.MemberAdd" => Outcome::of(
            caller
                .cluster()
                .member_add(pb::MemberAddRequest {
                    peer_ur_ls: vec!["http://127.0.0.1:1".into()],
                    is_learner: false,
                })
                .await,
        ),
        "Cluster.MemberRemove" => Outcome::of(
            caller
                .cluster()
                .member_remove(pb::MemberRemoveRequest { id: 1 })
                .await,
        ),
        "Cluster.MemberUpdate" => Outcome::of(
            caller
                .cluster()
                .member_update(pb::MemberUpdateRequest {
                    id: 1,
                    peer_ur_ls: vec![],
                })
                .await,
        ),
        "Cluster.MemberPromote" => Outcome::of(
            caller
                .cluster()
                .member_promote(pb::MemberPromoteRequest { id: 1 })
                .await,
        ),
        rpc if rpc.starts_with("Auth.") => run_auth(rpc, member, fixture).await,
        other => panic!("the matrix names an RPC the test does not know: {other}"),
    }
}

async fn run_auth(rpc: &str, member: &Member, fixture: &Fixture) -> Outcome {
    let mut auth = member.caller.auth();
    let name = || "someone@example.com".to_owned();
    let role = || "root".to_owned();
    match rpc {
        "Auth.AuthStatus" => Outcome::of(auth.auth_status(pb::AuthStatusRequest {}).await),
        "Auth.Authenticate" => {
            // A fresh, unsigned connection with the caller's own password.
            let fresh = EtcdCaller::anonymous(&fixture.endpoint).await;
            Outcome::of(fresh.authenticate(&member.email, PASSWORD).await)
        }
        "Auth.AuthEnable" => Outcome::of(auth.auth_enable(pb::AuthEnableRequest {}).await),
        "Auth.AuthDisable" => Outcome::of(auth.auth_disable(pb::AuthDisableRequest {}).await),
        "Auth.UserAdd" => Outcome::of(
            auth.user_add(pb::AuthUserAddRequest {
                name: name(),
                password: "x".into(),
                options: None,
            })
            .await,
        ),
        "Auth.UserGet" => Outcome::of(auth.user_get(pb::AuthUserGetRequest { name: name() }).await),
        "Auth.UserList" => Outcome::of(auth.user_list(pb::AuthUserListRequest {}).await),
        "Auth.UserDelete" => Outcome::of(
            auth.user_delete(pb::AuthUserDeleteRequest { name: name() })
                .await,
        ),
        "Auth.UserChangePassword" => Outcome::of(
            auth.user_change_password(pb::AuthUserChangePasswordRequest {
                name: ADMIN.into(),
                password: "taken-over".into(),
            })
            .await,
        ),
        "Auth.UserGrantRole" => Outcome::of(
            auth.user_grant_role(pb::AuthUserGrantRoleRequest {
                user: name(),
                role: role(),
            })
            .await,
        ),
        "Auth.UserRevokeRole" => Outcome::of(
            auth.user_revoke_role(pb::AuthUserRevokeRoleRequest {
                name: name(),
                role: role(),
            })
            .await,
        ),
        "Auth.RoleAdd" => Outcome::of(auth.role_add(pb::AuthRoleAddRequest { name: role() }).await),
        "Auth.RoleGet" => Outcome::of(auth.role_get(pb::AuthRoleGetRequest { role: role() }).await),
        "Auth.RoleList" => Outcome::of(auth.role_list(pb::AuthRoleListRequest {}).await),
        "Auth.RoleDelete" => Outcome::of(
            auth.role_delete(pb::AuthRoleDeleteRequest { role: role() })
                .await,
        ),
        "Auth.RoleGrantPermission" => Outcome::of(
            auth.role_grant_permission(pb::AuthRoleGrantPermissionRequest {
                name: role(),
                perm: None,
            })
            .await,
        ),
        "Auth.RoleRevokePermission" => Outcome::of(
            auth.role_revoke_permission(pb::AuthRoleRevokePermissionRequest {
                role: role(),
                key: b"/".to_vec(),
                range_end: vec![0],
            })
            .await,
        ),
        other => panic!("the matrix names an RPC the test does not know: {other}"),
    }
}

/// The first answer on a fresh watch stream to `request`.
async fn first_watch_response(caller: &EtcdCaller, request: pb::WatchRequest) -> pb::WatchResponse {
    use futures::StreamExt;
    // The request stream stays open, as a client's does while it watches.
    let requests = futures::stream::iter([request]).chain(futures::stream::pending());
    let mut responses = caller
        .watch()
        .watch(requests)
        .await
        .expect("opening a watch")
        .into_inner();
    tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .expect("a watch answer within 10 s")
        .expect("a watch answer")
        .expect("the watch stream stays open")
}

async fn every_etcd_rpc_is_decided_as_the_matrix_says(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(
        &db.url,
        &["--admin-password", ADMIN_PASSWORD, "--controllers=true"],
    );
    let endpoint = server.etcd_endpoint();
    let admin = Api::new(server.process.url(""))
        .login(ADMIN, ADMIN_PASSWORD)
        .await;
    let accounts = ROLES
        .iter()
        .map(|role| ("alpha", *role))
        .chain([("beta", "editor")]);
    for (tenant, role) in accounts {
        let email = format!("{role}@{tenant}.test");
        admin.add_member(tenant, &email, PASSWORD, role).await;
    }

    let root = EtcdCaller::sign_in(&endpoint, ADMIN, ADMIN_PASSWORD)
        .await
        .unwrap();
    for seed in [OWN_SEED, OTHER_SEED] {
        root.kv().put(put_request(seed.into(), 0)).await.unwrap();
    }
    // The leader's lease, once the controllers have elected one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let server_lease = loop {
        let found = root
            .kv()
            .range(range_request(LEADER_KEY.into(), Vec::new()))
            .await
            .unwrap()
            .into_inner()
            .kvs
            .first()
            .map(|kv| kv.lease);
        if let Some(lease) = found.filter(|lease| *lease != 0) {
            break lease;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let beta_editor = EtcdCaller::sign_in(&endpoint, "editor@beta.test", PASSWORD)
        .await
        .unwrap();
    let fixture = Fixture {
        endpoint: endpoint.clone(),
        alpha_editor: EtcdCaller::sign_in(&endpoint, "editor@alpha.test", PASSWORD)
            .await
            .unwrap(),
        other_lease: grant(&beta_editor).await,
        server_lease,
        next: Default::default(),
    };

    let mut members = Vec::new();
    for role in ROLES {
        let email = format!("{role}@alpha.test");
        let caller = EtcdCaller::sign_in(&endpoint, &email, PASSWORD)
            .await
            .unwrap();
        members.push(Member { email, caller });
    }
    let mut checked = 0;
    let mut wrong = Vec::new();
    for line in MATRIX
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cells: Vec<&str> = line.split_whitespace().collect();
        let [rpc, target, viewer, editor, admin_cell, owner] = cells[..] else {
            panic!("a matrix row has 6 cells: {line}");
        };
        let target = Target::parse(target);
        for (index, expected) in [viewer, editor, admin_cell, owner].into_iter().enumerate() {
            let got = run(rpc, target, &members[index], &fixture).await;
            if got != Outcome::parse(expected) {
                wrong.push(format!(
                    "{rpc} {target:?} as {}: expected {expected}, got {got:?}",
                    ROLES[index]
                ));
            }
            checked += 1;
        }
    }
    assert!(
        wrong.is_empty(),
        "cells the server decided otherwise:\n{}",
        wrong.join("\n")
    );
    assert!(checked >= 300, "the matrix has {checked} cells");

    // Nothing a tenant role did reached beyond alpha: beta's seed, the
    // leadership key and its lease are as they were.
    let beta = root
        .kv()
        .range(range_request(OTHER_SEED.into(), Vec::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(beta.kvs[0].value, b"matrix");
    assert_eq!(beta.kvs[0].version, 1);
    let leader = root
        .kv()
        .range(range_request(LEADER_KEY.into(), Vec::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(leader.kvs[0].lease, fixture.server_lease);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_etcd_rpc_is_decided_as_the_matrix_says_on_sqlite() {
    every_etcd_rpc_is_decided_as_the_matrix_says(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_etcd_rpc_is_decided_as_the_matrix_says_on_postgres() {
    every_etcd_rpc_is_decided_as_the_matrix_says(TestBackend::Postgres).await;
}
