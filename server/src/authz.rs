//! The one authorization decision: may this subject do this verb to this
//! kind in this tenant? Every REST handler and every etcd call asks
//! [`authorize`]; none decides for itself.
//!
//! The rules, as tenants see them:
//! - viewer: get, list and watch everything in the tenant except secret
//!   values (a viewer sees a Secret's name and keys, never its values);
//! - editor: also create, update, patch and delete objects, and exec into
//!   pods' containers;
//! - admin: also members and API tokens, and the tenant's audit log;
//! - owner: also deleting the tenant;
//! - admins and owners set the tenant's Pod Security level to `baseline`
//!   or `restricted`; only the platform admin sets `privileged`, which
//!   lets pods reach the node;
//! - the platform admin: everything, everywhere.
//!
//! Nodes are cluster-scoped: anyone signed in reads them, only the platform
//! admin (and, later, node credentials) writes them; node join tokens are
//! the platform admin's alone. Someone who is not a
//! member of a tenant is told that its objects do not exist ([`Decision::Hidden`]),
//! so that names in other tenants cannot be probed.

use berth_api::objects::Kind;
use berth_api::pod_security::Level;

use crate::auth::{Role, Subject};

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    /// Read one.
    Get,
    /// Read many.
    List,
    /// Follow changes.
    Watch,
    /// Make a new one.
    Create,
    /// Replace one.
    Update,
    /// Change part of one.
    Patch,
    /// Remove one.
    Delete,
    /// Read a Secret's values (not only its keys).
    Reveal,
    /// Write an object's status (controllers and agents, never users).
    UpdateStatus,
    /// Run a command in a pod's container (editors and up).
    Exec,
}

impl Verb {
    /// Every verb, for tables and tests.
    pub const ALL: [Verb; 10] = [
        Verb::Get,
        Verb::List,
        Verb::Watch,
        Verb::Create,
        Verb::Update,
        Verb::Patch,
        Verb::Delete,
        Verb::Reveal,
        Verb::UpdateStatus,
        Verb::Exec,
    ];

    /// Whether the verb only reads.
    pub fn reads(self) -> bool {
        matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }
}

/// What a request touches: an object kind, or one of the tenant's own
/// records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Objects of one kind.
    Object(Kind),
    /// The tenant itself.
    Tenant,
    /// The tenant's members and their roles.
    Members,
    /// The tenant's API tokens.
    Tokens,
    /// The tenant's audit log.
    Audit,
    /// The tenant's Pod Security level, set to this level.
    PodSecurity(berth_api::pod_security::Level),
    /// User accounts (platform-wide).
    Users,
    /// The join tokens agents register with (platform-wide).
    NodeJoinTokens,
    /// Keys of the etcd API outside any known kind.
    RawKeys,
    /// The tenant's etcd leases: viewers see them and their keys, editors
    /// grant, renew and revoke them.
    Leases,
}

impl Target {
    /// The name used in tables, errors and the audit log.
    pub fn name(self) -> &'static str {
        match self {
            Target::Object(kind) => kind.name(),
            Target::Tenant => "Tenant",
            Target::Members => "Member",
            Target::Tokens => "Token",
            Target::Audit => "AuditEntry",
            Target::PodSecurity(_) => "PodSecurity",
            Target::Users => "User",
            Target::NodeJoinTokens => "NodeJoinToken",
            Target::RawKeys => "Key",
            Target::Leases => "Lease",
        }
    }
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// The caller may see the target but not do this (403).
    Forbidden(String),
    /// The caller may not even know the target exists (404).
    Hidden,
}

impl Decision {
    /// Whether the request may go ahead.
    pub fn allowed(&self) -> bool {
        *self == Decision::Allow
    }
}

/// The one decision. `tenant` is `None` for cluster-scoped targets (nodes,
/// users, creating a tenant).
pub fn authorize(subject: &Subject, tenant: Option<&str>, target: Target, verb: Verb) -> Decision {
    if subject.platform_admin {
        return Decision::Allow;
    }
    let Some(tenant) = tenant else {
        return cluster_scoped(subject, target, verb);
    };
    let Some(role) = subject.role_in(tenant) else {
        return Decision::Hidden;
    };
    let needed = match (target, verb) {
        (Target::Object(_), Verb::UpdateStatus) => None,
        // Running commands in containers is writing, not reading: a
        // viewer must not reach a pod's secrets through a shell.
        (Target::Object(Kind::Pod), Verb::Exec) => Some(Role::Editor),
        (_, Verb::Exec) => None,
        (Target::Object(Kind::Node), _) => None,
        // The endpoints controller keeps EndpointSlices: a member who wrote
        // one could send a Service's traffic anywhere.
        (Target::Object(Kind::EndpointSlice), verb) if !verb.reads() => {
            return Decision::Forbidden(format!(
                "EndpointSlices in tenant {tenant} are kept by the server's endpoints controller; {} is for the platform admin only",
                verb_name(verb)
            ));
        }
        (Target::Object(_) | Target::RawKeys | Target::Leases, verb) if verb.reads() => {
            Some(Role::Viewer)
        }
        (Target::Leases, Verb::Create | Verb::Update | Verb::Delete) => Some(Role::Editor),
        (Target::Leases, _) => None,
        (Target::Object(_) | Target::RawKeys, _) => Some(Role::Editor),
        (Target::Tenant, Verb::Get) => Some(Role::Viewer),
        (Target::Tenant, Verb::Delete) => Some(Role::Owner),
        (Target::Tenant, _) => None,
        (Target::Members, verb) if verb.reads() => Some(Role::Viewer),
        (Target::Members, Verb::Create | Verb::Update | Verb::Patch | Verb::Delete) => {
            Some(Role::Admin)
        }
        (Target::Tokens, Verb::Reveal | Verb::UpdateStatus) => None,
        // A token never mints tokens: a leaked one must not outlive its
        // own revocation through a successor.
        (Target::Tokens, Verb::Create) if subject.api_token.is_some() => None,
        (Target::Tokens, _) => Some(Role::Admin),
        (Target::Audit, Verb::Get | Verb::List) => Some(Role::Admin),
        (Target::PodSecurity(Level::Privileged), Verb::Update) => {
            return Decision::Forbidden(format!(
                "only the platform admin may set tenant {tenant}'s Pod Security level to privileged"
            ));
        }
        (Target::PodSecurity(_), Verb::Update) => Some(Role::Admin),
        _ => None,
    };
    match needed {
        Some(needed) if role >= needed => Decision::Allow,
        Some(needed) => Decision::Forbidden(format!(
            "{} {} in tenant {tenant} needs the {} role; you are {}",
            verb_name(verb),
            target.name(),
            needed.name(),
            role.name()
        )),
        None => Decision::Forbidden(format!(
            "{} {} is not allowed in tenant {tenant}",
            verb_name(verb),
            target.name()
        )),
    }
}

/// Whether `subject` may hand out `role` in `tenant` (to a member or an
/// API token), or change someone who holds it: never above their own role,
/// except the platform admin. `what` says what was attempted, for the
/// message.
pub fn may_grant(subject: &Subject, tenant: &str, role: Role, what: &str) -> Decision {
    if subject.platform_admin {
        return Decision::Allow;
    }
    match subject.role_in(tenant) {
        Some(own) if role <= own => Decision::Allow,
        Some(own) => Decision::Forbidden(format!(
            "you are {} in tenant {tenant}, so you cannot {what} {}",
            own.name(),
            role.name()
        )),
        None => Decision::Hidden,
    }
}

fn cluster_scoped(subject: &Subject, target: Target, verb: Verb) -> Decision {
    match (target, verb) {
        (Target::Object(Kind::Node), verb) if verb.reads() => Decision::Allow,
        // Any person may start a tenant (and owns it); an API token acts
        // only inside the tenant it was made for.
        (Target::Tenant, Verb::Create) if subject.api_token.is_none() => Decision::Allow,
        (Target::Tenant, Verb::List) => Decision::Allow,
        _ => Decision::Forbidden(format!(
            "{} {} needs the platform admin",
            verb_name(verb),
            target.name()
        )),
    }
}

/// A verb as people write it.
pub fn verb_name(verb: Verb) -> &'static str {
    match verb {
        Verb::Get => "get",
        Verb::List => "list",
        Verb::Watch => "watch",
        Verb::Create => "create",
        Verb::Update => "update",
        Verb::Patch => "patch",
        Verb::Delete => "delete",
        Verb::Reveal => "reveal",
        Verb::UpdateStatus => "update status of",
        Verb::Exec => "exec into",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    /// The matrix the REST tests also run against a live server.
    const MATRIX: &str = include_str!("../../tests/data/rbac_matrix.txt");

    /// A row's target: a subresource (`Deployment/scale`) is decided as
    /// its kind.
    fn target(name: &str) -> Target {
        match name {
            // Setting the level: `PodSecurity` to baseline or restricted,
            // `PodSecurity/privileged` to privileged.
            "PodSecurity" => return Target::PodSecurity(Level::Restricted),
            "PodSecurity/privileged" => return Target::PodSecurity(Level::Privileged),
            _ => {}
        }
        let name = name.split_once('/').map_or(name, |(kind, _)| kind);
        match name {
            "NodeJoinToken" => Target::NodeJoinTokens,
            "Member" => Target::Members,
            "Token" => Target::Tokens,
            "Tenant" => Target::Tenant,
            "AuditEntry" => Target::Audit,
            kind => Target::Object(
                Kind::from_kind_name(kind).unwrap_or_else(|| panic!("unknown kind {kind}")),
            ),
        }
    }

    fn verb(name: &str) -> Verb {
        Verb::ALL
            .into_iter()
            .find(|v| serde_json::to_value(v).ok() == Some(serde_json::json!(name)))
            .unwrap_or_else(|| panic!("unknown verb {name}"))
    }

    fn subject(platform_admin: bool, role: Option<Role>) -> Subject {
        Subject {
            user_id: 7,
            email: "someone@example.com".into(),
            api_token: None,
            platform_admin,
            tenants: role.map(|r| ("own".to_owned(), r)).into_iter().collect(),
        }
    }

    fn outcome(decision: Decision) -> &'static str {
        match decision {
            Decision::Allow => "allow",
            Decision::Forbidden(_) => "deny",
            Decision::Hidden => "hidden",
        }
    }

    #[test]
    fn every_role_verb_and_kind_is_decided_as_the_matrix_says() {
        let mut checked = 0;
        for line in MATRIX
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let cells: Vec<&str> = line.split_whitespace().collect();
            let [
                kind,
                verb_name,
                viewer,
                editor,
                admin,
                owner,
                platform,
                foreign,
            ] = cells[..]
            else {
                panic!("a matrix row has 8 cells: {line}");
            };
            let target = target(kind);
            let verb = verb(verb_name);
            let cluster_scoped =
                matches!(target, Target::Object(Kind::Node) | Target::NodeJoinTokens);
            let tenant = (!cluster_scoped).then_some("own");
            for (role, expected) in Role::ALL.into_iter().zip([viewer, editor, admin, owner]) {
                let got = outcome(authorize(&subject(false, Some(role)), tenant, target, verb));
                assert_eq!(got, expected, "{kind} {verb_name} as {}", role.name());
                if !cluster_scoped {
                    let foreign_got = outcome(authorize(
                        &subject(false, Some(role)),
                        Some("foreign"),
                        target,
                        verb,
                    ));
                    assert_eq!(
                        foreign_got,
                        foreign,
                        "{kind} {verb_name} as a foreign {}",
                        role.name()
                    );
                }
                checked += 1;
            }
            let got = outcome(authorize(&subject(true, None), tenant, target, verb));
            assert_eq!(got, platform, "{kind} {verb_name} as the platform admin");
        }
        assert!(checked > 300, "the matrix has {checked} cells");
    }

    #[test]
    fn an_api_token_cannot_start_a_tenant() {
        let mut token = subject(false, Some(Role::Owner));
        token.api_token = Some(1);
        assert!(!authorize(&token, None, Target::Tenant, Verb::Create).allowed());
        assert!(authorize(&subject(false, None), None, Target::Tenant, Verb::Create).allowed());
    }
}
