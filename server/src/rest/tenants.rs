//! `/api/v1/tenants`: tenants and their members. A person who creates a
//! tenant owns it; owners delete it (with every object in it); admins manage
//! its members, never handing out or taking away more than their own rank.

use actix_web::{HttpResponse, delete, get, post, put, web};
use berth_api::objects::Kind;
use berth_api::pod_security::Level;

use super::caller::Caller;
use super::error::{ApiError, Detail, ErrorBody, allowed};
use crate::auth::{Role, Subject};
use crate::authz::{Target, Verb, authorize};
use crate::events::{DEFAULT_EVENT_TTL, EventRecorder};
use crate::rest::state::AppState;
use crate::store::StoreError;
use crate::store::identity::{MemberWrite, TenantMember};
use crate::store::types::{DeleteRequest, KeyRange, Op, TxnRequest};

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_tenants,
        create_tenant,
        get_tenant,
        delete_tenant,
        set_pod_security,
        list_members,
        add_member,
        remove_member
    ),
    components(schemas(
        CreateTenantRequest,
        TenantCreated,
        TenantSummary,
        TenantList,
        TenantDetails,
        SetPodSecurityRequest,
        PodSecurityChanged,
        ViolatingWorkload,
        berth_api::pod_security::Level,
        AddMemberRequest,
        Member,
        MemberList,
        ErrorBody
    ))
)]
pub struct TenantsApi;

/// `POST /tenants`'s body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateTenantRequest {
    /// A DNS-1123 label: at most 63 lower-case letters, digits or `-`,
    /// starting and ending with a letter or digit.
    #[schema(example = "acme")]
    name: String,
}

/// A tenant just created.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantCreated {
    /// The tenant's name.
    name: String,
    /// When it was created (RFC 3339).
    created_at: String,
}

/// One tenant as `GET /tenants` lists it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantSummary {
    /// The tenant's name.
    name: String,
    /// The caller's role there; `null` where the platform admin sees a
    /// tenant they are not a member of.
    role: Option<String>,
    /// When it was created (RFC 3339).
    created_at: String,
}

/// The tenants the caller may see.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TenantList {
    /// By name.
    items: Vec<TenantSummary>,
}

/// One tenant in full.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantDetails {
    /// The tenant's name.
    name: String,
    /// When it was created (RFC 3339).
    created_at: String,
    /// The caller's role there; `null` for the platform admin when not a
    /// member.
    role: Option<String>,
    /// How many members it has.
    member_count: usize,
    /// The Pod Security level its pods and pod templates are checked
    /// against.
    pod_security: Level,
}

/// `PUT /tenants/{tenant}/pod-security`'s body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetPodSecurityRequest {
    /// `baseline` (the default), `restricted`, or `privileged` (platform
    /// admin only).
    #[schema(example = "restricted")]
    level: Level,
}

/// A tenant's new Pod Security level and the workloads that fail it; they
/// keep running, and each got a Warning event.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityChanged {
    /// The tenant.
    tenant: String,
    /// Its level now.
    level: Level,
    /// The Pods, Deployments and ReplicaSets that fail it.
    violations: Vec<ViolatingWorkload>,
}

/// A workload that fails the tenant's new level.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ViolatingWorkload {
    /// `Pod`, `Deployment` or `ReplicaSet`.
    kind: String,
    /// Its name.
    name: String,
    /// As Kubernetes words it: `violates PodSecurity "restricted:latest": …`.
    message: String,
    /// Each offending field with the check it fails.
    details: Vec<Detail>,
}

/// `POST /tenants/{tenant}/members`'s body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddMemberRequest {
    /// The email of an existing user.
    #[schema(example = "dev@example.com")]
    email: String,
    /// `owner`, `admin`, `editor` or `viewer`.
    #[schema(example = "viewer")]
    role: String,
}

/// A member of a tenant.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The member's user id.
    user_id: i64,
    /// The member's email.
    email: String,
    /// `owner`, `admin`, `editor` or `viewer`.
    role: String,
}

impl From<TenantMember> for Member {
    fn from(member: TenantMember) -> Self {
        Member {
            user_id: member.user_id,
            email: member.email,
            role: member.role,
        }
    }
}

/// A tenant's members.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct MemberList {
    /// By email.
    items: Vec<Member>,
}

/// Mounts these routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(list_tenants)
        .service(create_tenant)
        .service(get_tenant)
        .service(delete_tenant)
        .service(set_pod_security)
        .service(list_members)
        .service(add_member)
        .service(remove_member);
}

/// Milliseconds since the epoch as RFC 3339, the form every REST timestamp
/// takes.
pub(super) fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// [`crate::authz::may_grant`] as a handler acts on it.
pub(super) fn may_grant(
    subject: &Subject,
    tenant: &str,
    role: Role,
    what: &str,
) -> Result<(), ApiError> {
    allowed(crate::authz::may_grant(subject, tenant, role, what))
}

/// The tenant, or 404 (the platform admin passes every authorization,
/// also for tenants that do not exist).
async fn existing_tenant(
    state: &AppState,
    tenant: &str,
) -> Result<crate::store::identity::Tenant, ApiError> {
    state
        .store
        .tenant(tenant)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no tenant {tenant}")))
}

/// Why a role in a request was refused.
fn unknown_role() -> Detail {
    Detail {
        field: "role".into(),
        reason: "must be one of owner, admin, editor, viewer".into(),
    }
}

/// A stored membership's role (the schema's CHECK allows only these).
fn stored_role(member: &TenantMember) -> Result<Role, ApiError> {
    Role::parse(&member.role).ok_or_else(|| {
        ApiError::Internal(format!(
            "user {} has the unknown role {:?}",
            member.user_id, member.role
        ))
    })
}

/// Lists the caller's tenants with their role in each; the platform admin
/// sees every tenant.
#[utoipa::path(
    get,
    path = "/api/v1/tenants",
    operation_id = "list_tenants",
    tag = "tenants",
    responses(
        (status = 200, description = "The caller's tenants", body = TenantList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        (status = 500, description = "An unexpected failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/api/v1/tenants")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id))]
pub async fn list_tenants(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let subject = &caller.subject;
    allowed(authorize(subject, None, Target::Tenant, Verb::List))?;
    let items = if subject.platform_admin {
        state
            .store
            .tenants()
            .await?
            .into_iter()
            .map(|tenant| TenantSummary {
                role: subject.role_in(&tenant.name).map(|r| r.name().to_owned()),
                created_at: timestamp(tenant.created_at_ms),
                name: tenant.name,
            })
            .collect()
    } else {
        // The subject's own list, not the memberships table: an API token
        // sees only its tenant, with its own role.
        let mut items = Vec::with_capacity(subject.tenants.len());
        for (name, role) in &subject.tenants {
            if let Some(tenant) = state.store.tenant(name).await? {
                items.push(TenantSummary {
                    name: tenant.name,
                    role: Some(role.name().to_owned()),
                    created_at: timestamp(tenant.created_at_ms),
                });
            }
        }
        items
    };
    Ok(HttpResponse::Ok().json(TenantList { items }))
}

/// Creates a tenant; the caller becomes its owner. API tokens cannot.
#[utoipa::path(
    post,
    path = "/api/v1/tenants",
    operation_id = "create_tenant",
    tag = "tenants",
    request_body = CreateTenantRequest,
    responses(
        (status = 201, description = "Created; the caller owns it", body = TenantCreated),
        (status = 400, description = "The name is not a DNS-1123 label", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "API tokens cannot create tenants", body = ErrorBody),
        (status = 409, description = "A tenant of this name exists", body = ErrorBody),
        (status = 413, description = "The body is larger than 1.5 MiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        (status = 500, description = "An unexpected failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/api/v1/tenants")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id, tenant = %body.name))]
pub async fn create_tenant(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateTenantRequest>,
) -> Result<HttpResponse, ApiError> {
    let CreateTenantRequest { name } = body.into_inner();
    allowed(authorize(
        &caller.subject,
        None,
        Target::Tenant,
        Verb::Create,
    ))?;
    if !berth_api::labels::is_dns_label(&name) {
        return Err(ApiError::field(
            "name",
            "must be a DNS-1123 label: at most 63 lower-case letters, digits or '-', \
             starting and ending with a letter or digit",
        ));
    }
    let tenant = match state
        .store
        .create_tenant_owned_by(&name, caller.subject.user_id)
        .await
    {
        Ok(tenant) => tenant,
        Err(StoreError::Conflict { .. }) => {
            return Err(ApiError::AlreadyExists(format!("tenant {name} exists")));
        }
        Err(error) => return Err(error.into()),
    };
    super::audit_routes::record(
        &state,
        super::audit_routes::who(&caller.subject),
        Some(&name),
        "create_tenant",
        Some("Tenant"),
        Some(&name),
        201,
        &caller.source,
    );
    Ok(HttpResponse::Created().json(TenantCreated {
        created_at: timestamp(tenant.created_at_ms),
        name: tenant.name,
    }))
}

/// One tenant: when it was made, the caller's role, how many members.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}",
    operation_id = "get_tenant",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses(
        (status = 200, description = "The tenant", body = TenantDetails),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such tenant, or the caller is not a member", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        (status = 500, description = "An unexpected failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/api/v1/tenants/{tenant}")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id, tenant = %tenant))]
pub async fn get_tenant(
    state: web::Data<AppState>,
    caller: Caller,
    tenant: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant.into_inner();
    let subject = &caller.subject;
    allowed(authorize(subject, Some(&tenant), Target::Tenant, Verb::Get))?;
    let found = existing_tenant(&state, &tenant).await?;
    let members = state.store.tenant_members(&tenant).await?;
    Ok(HttpResponse::Ok().json(TenantDetails {
        created_at: timestamp(found.created_at_ms),
        role: subject.role_in(&tenant).map(|r| r.name().to_owned()),
        member_count: members.len(),
        pod_security: Level::parse(&found.pod_security)
            .map_err(|error| ApiError::Internal(format!("tenant {tenant}: {error}")))?,
        name: found.name,
    }))
}

/// Deletes a tenant with every object in it, its members and its API
/// tokens (owners only).
#[utoipa::path(
    delete,
    path = "/api/v1/tenants/{tenant}",
    operation_id = "delete_tenant",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Only owners delete a tenant", body = ErrorBody),
        (status = 404, description = "No such tenant, or the caller is not a member", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        (status = 500, description = "An unexpected failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[delete("/api/v1/tenants/{tenant}")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id, tenant = %tenant))]
pub async fn delete_tenant(
    state: web::Data<AppState>,
    caller: Caller,
    tenant: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant.into_inner();
    allowed(authorize(
        &caller.subject,
        Some(&tenant),
        Target::Tenant,
        Verb::Delete,
    ))?;
    existing_tenant(&state, &tenant).await?;
    // Objects first, all at one revision: should the row's delete fail, the
    // owner retries, and nothing of the tenant outlives its row. Once the row
    // (and with it every membership and token) is gone, a second sweep takes
    // what members wrote in between; nobody but the platform admin writes
    // there any more.
    delete_objects(&state, &tenant).await?;
    match state.store.delete_tenant(&tenant).await {
        Ok(()) => {}
        Err(StoreError::NotFound { .. }) => {
            return Err(ApiError::NotFound(format!("no tenant {tenant}")));
        }
        Err(error) => return Err(error.into()),
    }
    delete_objects(&state, &tenant).await?;
    super::audit_routes::record(
        &state,
        super::audit_routes::who(&caller.subject),
        Some(&tenant),
        "delete_tenant",
        Some("Tenant"),
        Some(&tenant),
        204,
        &caller.source,
    );
    Ok(HttpResponse::NoContent().finish())
}

/// Sets the tenant's Pod Security level. Workloads that fail a raised
/// level keep running; the answer lists them and each gets a Warning
/// event. Admins and owners set `baseline` and `restricted`; only the
/// platform admin sets `privileged`.
#[utoipa::path(
    put,
    path = "/api/v1/tenants/{tenant}/pod-security",
    operation_id = "set_tenant_pod_security",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body = SetPodSecurityRequest,
    responses(
        (status = 200, description = "Set; the workloads that fail the new level", body = PodSecurityChanged),
        (status = 400, description = "Not a level", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not set this level", body = ErrorBody),
        (status = 404, description = "No such tenant, or the caller is not a member", body = ErrorBody),
        (status = 413, description = "The body is larger than 1.5 MiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        (status = 500, description = "An unexpected failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[put("/api/v1/tenants/{tenant}/pod-security")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id, tenant = %tenant))]
pub async fn set_pod_security(
    state: web::Data<AppState>,
    caller: Caller,
    tenant: web::Path<String>,
    body: web::Json<SetPodSecurityRequest>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant.into_inner();
    let SetPodSecurityRequest { level } = body.into_inner();
    allowed(authorize(
        &caller.subject,
        Some(&tenant),
        Target::PodSecurity(level),
        Verb::Update,
    ))?;
    existing_tenant(&state, &tenant).await?;
    let events = EventRecorder::new(
        state.objects.clone(),
        "pod-security-admission",
        DEFAULT_EVENT_TTL,
    );
    let violating = crate::pod_security::set_level(&state.objects, &events, &tenant, level)
        .await
        .map_err(|error| match error {
            crate::objects::ObjectError::Store(StoreError::NotFound { .. }) => {
                ApiError::NotFound(format!("no tenant {tenant}"))
            }
            other => super::resources::object_error(other),
        })?;
    super::audit_routes::record(
        &state,
        super::audit_routes::who(&caller.subject),
        Some(&tenant),
        "set_pod_security",
        Some("Tenant"),
        Some(&tenant),
        200,
        &caller.source,
    );
    let violations = violating
        .into_iter()
        .map(|workload| ViolatingWorkload {
            kind: workload.kind.name().to_owned(),
            message: berth_api::pod_security::message(level, &workload.violations),
            details: super::resources::violation_details(&workload.violations),
            name: workload.name,
        })
        .collect();
    Ok(HttpResponse::Ok().json(PodSecurityChanged {
        tenant,
        level,
        violations,
    }))
}

/// Deletes every object of `tenant`, of every namespaced kind, in one
/// transaction.
async fn delete_objects(state: &AppState, tenant: &str) -> Result<(), ApiError> {
    let success = Kind::all()
        .iter()
        .filter(|kind| kind.namespaced())
        .map(|kind| {
            Op::Delete(DeleteRequest {
                range: KeyRange::prefix(crate::keys::collection(*kind, Some(tenant))),
                prev_kv: false,
            })
        })
        .collect();
    state
        .store
        .txn(TxnRequest {
            compares: vec![],
            success,
            failure: vec![],
        })
        .await?;
    Ok(())
}

/// Lists a tenant's members and their roles (any member).
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/members",
    operation_id = "list_members",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses(
        (status = 200, description = "The members", body = MemberList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such tenant, or the caller is not a member", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        (status = 500, description = "An unexpected failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/api/v1/tenants/{tenant}/members")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id, tenant = %tenant))]
pub async fn list_members(
    state: web::Data<AppState>,
    caller: Caller,
    tenant: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant.into_inner();
    allowed(authorize(
        &caller.subject,
        Some(&tenant),
        Target::Members,
        Verb::List,
    ))?;
    existing_tenant(&state, &tenant).await?;
    let items = state
        .store
        .tenant_members(&tenant)
        .await?
        .into_iter()
        .map(Member::from)
        .collect();
    Ok(HttpResponse::Ok().json(MemberList { items }))
}

/// Adds an existing user to a tenant, or changes a member's role (admins
/// and owners). Nobody hands out a role above their own or changes the role
/// of someone who ranks above them; the last owner stays an owner.
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/members",
    operation_id = "add_member",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body = AddMemberRequest,
    responses(
        (status = 200, description = "The member's role was changed", body = Member),
        (status = 201, description = "The user was added", body = Member),
        (status = 400, description = "No user with this email, or an unknown role", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin of the tenant, or the role ranks above the caller's", body = ErrorBody),
        (status = 404, description = "No such tenant, or the caller is not a member", body = ErrorBody),
        (status = 409, description = "This would demote the last owner, or the membership changed meanwhile", body = ErrorBody),
        (status = 413, description = "The body is larger than 1.5 MiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        (status = 500, description = "An unexpected failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/api/v1/tenants/{tenant}/members")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id, tenant = %tenant))]
pub async fn add_member(
    state: web::Data<AppState>,
    caller: Caller,
    tenant: web::Path<String>,
    body: web::Json<AddMemberRequest>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant.into_inner();
    let AddMemberRequest { email, role } = body.into_inner();
    let subject = &caller.subject;
    allowed(authorize(
        subject,
        Some(&tenant),
        Target::Members,
        Verb::Create,
    ))?;
    existing_tenant(&state, &tenant).await?;
    let mut problems = Vec::new();
    let role = Role::parse(&role);
    if role.is_none() {
        problems.push(unknown_role());
    }
    let user = state.store.user_by_email(&email).await?;
    if user.is_none() {
        problems.push(Detail {
            field: "email".into(),
            reason: "no user with this email".into(),
        });
    }
    let (Some(role), Some(user)) = (role, user) else {
        return Err(ApiError::invalid(
            "the member cannot be added as asked",
            problems,
        ));
    };
    may_grant(subject, &tenant, role, "grant")?;
    let current = state.store.tenant_member(&tenant, user.id).await?;
    let previous = match &current {
        Some(member) => {
            allowed(authorize(
                subject,
                Some(&tenant),
                Target::Members,
                Verb::Update,
            ))?;
            let previous = stored_role(member)?;
            may_grant(
                subject,
                &tenant,
                previous,
                "change the role of a member who is",
            )?;
            Some(previous)
        }
        None => None,
    };
    let written = match state
        .store
        .put_tenant_member(&tenant, user.id, role.name(), previous.map(Role::name))
        .await
    {
        Ok(written) => written,
        Err(StoreError::Conflict { reason, .. }) => return Err(ApiError::Conflict(reason)),
        Err(error) => return Err(error.into()),
    };
    super::audit_routes::record(
        &state,
        super::audit_routes::who(&caller.subject),
        Some(&tenant),
        "add_member",
        Some("Member"),
        Some(&user.email),
        200,
        &caller.source,
    );
    let member = Member {
        user_id: user.id,
        email: user.email,
        role: role.name().to_owned(),
    };
    Ok(match written {
        MemberWrite::Added => HttpResponse::Created().json(member),
        MemberWrite::Changed => HttpResponse::Ok().json(member),
    })
}

/// Removes a member from a tenant (admins and owners; never someone who
/// ranks above the caller, never the last owner).
#[utoipa::path(
    delete,
    path = "/api/v1/tenants/{tenant}/members/{userId}",
    operation_id = "remove_member",
    tag = "tenants",
    params(
        ("tenant" = String, Path, description = "The tenant's name"),
        ("userId" = i64, Path, description = "The member's user id"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin of the tenant, or the member ranks above the caller", body = ErrorBody),
        (status = 404, description = "No such tenant or member, or the caller is not a member", body = ErrorBody),
        (status = 409, description = "The member is the last owner, or the membership changed meanwhile", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        (status = 500, description = "An unexpected failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[delete("/api/v1/tenants/{tenant}/members/{user_id}")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id, tenant = %path.0, member = %path.1))]
pub async fn remove_member(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, member_id) = path.into_inner();
    let subject = &caller.subject;
    allowed(authorize(
        subject,
        Some(&tenant),
        Target::Members,
        Verb::Delete,
    ))?;
    existing_tenant(&state, &tenant).await?;
    let not_a_member = || {
        ApiError::NotFound(format!(
            "user {member_id} is not a member of tenant {tenant}"
        ))
    };
    let user_id: i64 = member_id.parse().map_err(|_| not_a_member())?;
    let member = state
        .store
        .tenant_member(&tenant, user_id)
        .await?
        .ok_or_else(not_a_member)?;
    let role = stored_role(&member)?;
    may_grant(subject, &tenant, role, "remove a member who is")?;
    match state
        .store
        .remove_tenant_member(&tenant, user_id, role.name())
        .await
    {
        Ok(()) => {}
        Err(StoreError::NotFound { .. }) => return Err(not_a_member()),
        Err(StoreError::Conflict { reason, .. }) => return Err(ApiError::Conflict(reason)),
        Err(error) => return Err(error.into()),
    }
    super::audit_routes::record(
        &state,
        super::audit_routes::who(&caller.subject),
        Some(&tenant),
        "remove_member",
        Some("Member"),
        Some(&member.email),
        204,
        &caller.source,
    );
    Ok(HttpResponse::NoContent().finish())
}
