//! Where objects live in the store: the one module that knows the key
//! layout, `/registry/{plural}/{tenant}/{name}` for a tenant's objects and
//! `/registry/{plural}/{name}` for cluster-scoped ones (nodes), as
//! Kubernetes lays out etcd.

use berth_api::objects::Kind;

/// The root of every object's key.
pub const ROOT: &str = "/registry/";

/// The key prefix of every object of `kind` in `tenant` (of every object
/// of the kind, when `tenant` is `None` or the kind is cluster-scoped).
pub fn collection(kind: Kind, tenant: Option<&str>) -> String {
    match tenant {
        Some(tenant) if kind.namespaced() => format!("{ROOT}{}/{tenant}/", kind.plural()),
        _ => format!("{ROOT}{}/", kind.plural()),
    }
}

/// The key of the object `name` of `kind` in `tenant`.
pub fn object(kind: Kind, tenant: Option<&str>, name: &str) -> String {
    format!("{}{name}", collection(kind, tenant))
}

/// The tenant (for a namespaced kind) and the name of the object of `kind`
/// stored at `key`; `None` for a key outside the kind's prefix.
pub fn parse(kind: Kind, key: &[u8]) -> Option<(Option<String>, String)> {
    let key = std::str::from_utf8(key).ok()?;
    let rest = key.strip_prefix(&collection(kind, None))?;
    if kind.namespaced() {
        let (tenant, name) = rest.split_once('/')?;
        (!tenant.is_empty() && !name.is_empty()).then(|| (Some(tenant.to_owned()), name.to_owned()))
    } else {
        (!rest.is_empty()).then(|| (None, rest.to_owned()))
    }
}

/// `/registry/{plural}/{tenant}/` at the start of a key, of any plural
/// (also ones Berth has no kind for, which tenants' etcd clients may use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantPrefix {
    /// The whole prefix, with its final slash.
    pub prefix: String,
    /// The plural.
    pub plural: String,
    /// The tenant.
    pub tenant: String,
}

/// The tenant prefix at the start of `key`, when there is one.
pub fn tenant_prefix(key: &[u8]) -> Option<TenantPrefix> {
    let key = std::str::from_utf8(key).ok()?;
    let rest = key.strip_prefix(ROOT)?;
    let (plural, rest) = rest.split_once('/')?;
    let (tenant, _) = rest.split_once('/')?;
    if plural.is_empty() || tenant.is_empty() {
        return None;
    }
    Some(TenantPrefix {
        prefix: format!("{ROOT}{plural}/{tenant}/"),
        plural: plural.to_owned(),
        tenant: tenant.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_laid_out_as_kubernetes_lays_out_etcd_and_read_back() {
        let key = object(Kind::Pod, Some("acme"), "web-1");
        assert_eq!(key, "/registry/pods/acme/web-1");
        assert_eq!(
            parse(Kind::Pod, key.as_bytes()),
            Some((Some("acme".into()), "web-1".into()))
        );
        assert_eq!(
            object(Kind::Node, Some("ignored"), "n1"),
            "/registry/nodes/n1"
        );
        assert_eq!(
            parse(Kind::Node, b"/registry/nodes/n1"),
            Some((None, "n1".into()))
        );
        assert_eq!(parse(Kind::Pod, b"/registry/pods/acme"), None);
        assert_eq!(
            tenant_prefix(b"/registry/widgets/acme/x").map(|p| p.prefix),
            Some("/registry/widgets/acme/".into())
        );
        assert_eq!(tenant_prefix(b"/registry/widgets"), None);
    }
}
