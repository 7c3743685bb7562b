//! What pods are given: ConfigMaps (keys and values), Secrets (keys, with
//! values masked and revealed one at a time, through the REST API, to
//! those who may read them) and Volumes (size, phase, the node that holds
//! their data and the pods that mount them).

use actix_web::{HttpResponse, web};
use askama::Template;
use berth_api::objects::Kind;
use berth_server::authz::{Target, Verb};
use serde_json::Value;

use crate::page::{self, Chrome, PageError, Permission, Viewer};
use crate::view;

/// Mounts the ConfigMap, Secret and Volume pages.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/configmaps", web::get().to(configmaps))
        .route("/t/{tenant}/configmaps/{name}", web::get().to(configmap))
        .route("/t/{tenant}/secrets", web::get().to(secrets))
        .route("/t/{tenant}/secrets/{name}", web::get().to(secret))
        .route("/t/{tenant}/volumes", web::get().to(volumes))
        .route("/t/{tenant}/volumes/{name}", web::get().to(volume));
}

/// The keys of the map at `path`, sorted.
fn keys(object: &Value, path: &str) -> Vec<String> {
    let mut keys: Vec<String> = object
        .pointer(path)
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// One ConfigMap or Secret in a list.
struct KeysRow {
    name: String,
    /// The Secret's type, or empty.
    kind: String,
    keys: Vec<String>,
    immutable: bool,
    age: String,
}

fn keys_row(object: &Value) -> KeysRow {
    let mut keys = keys(object, "/data");
    keys.extend(keys_of_binary(object));
    KeysRow {
        name: view::name(object),
        kind: view::text(object, "/type"),
        keys,
        immutable: object.pointer("/immutable").and_then(Value::as_bool) == Some(true),
        age: view::age(object),
    }
}

fn keys_of_binary(object: &Value) -> Vec<String> {
    keys(object, "/binaryData")
}

/// A list of ConfigMaps or Secrets.
#[derive(Template)]
#[template(path = "configmaps.html")]
struct KeysListPage {
    chrome: Chrome,
    live: String,
    rv: i64,
    /// `ConfigMap` or `Secret`.
    kind: &'static str,
    /// `configmaps` or `secrets`.
    plural: &'static str,
    rows: Vec<KeysRow>,
}

async fn keys_list(viewer: Viewer, tenant: String, kind: Kind) -> Result<HttpResponse, PageError> {
    viewer.open(&tenant)?;
    let t = Some(tenant.as_str());
    let (items, rv) = viewer.list(kind, t).await?;
    let mut rows: Vec<KeysRow> = items.iter().map(keys_row).collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let plural = kind.plural();
    page::render(&KeysListPage {
        chrome: viewer
            .chrome(t, plural, format!("{tenant} · {}s", kind.name()))
            .await?,
        live: format!("/live?tenant={tenant}&kinds={plural}"),
        rv,
        kind: kind.name(),
        plural,
        rows,
    })
}

async fn configmaps(viewer: Viewer, tenant: web::Path<String>) -> Result<HttpResponse, PageError> {
    keys_list(viewer, tenant.into_inner(), Kind::ConfigMap).await
}

async fn secrets(viewer: Viewer, tenant: web::Path<String>) -> Result<HttpResponse, PageError> {
    keys_list(viewer, tenant.into_inner(), Kind::Secret).await
}

/// One key of a ConfigMap.
struct Entry {
    key: String,
    /// The text, or what stands for binary data.
    value: String,
    binary: bool,
}

#[derive(Template)]
#[template(path = "configmap.html")]
struct ConfigMapPage {
    chrome: Chrome,
    live: String,
    rv: i64,
    row: KeysRow,
    entries: Vec<Entry>,
    api: String,
    delete: Permission,
}

/// A ConfigMap's entries: text values as they are, binary ones by size.
fn entries(configmap: &Value) -> Vec<Entry> {
    let mut entries: Vec<Entry> = keys(configmap, "/data")
        .into_iter()
        .map(|key| Entry {
            value: view::text(configmap, &format!("/data/{}", pointer_token(&key))),
            key,
            binary: false,
        })
        .collect();
    for key in keys_of_binary(configmap) {
        let encoded = view::text(configmap, &format!("/binaryData/{}", pointer_token(&key)));
        // Base64: three bytes in four characters, less the padding.
        let padding = encoded.chars().rev().take_while(|c| *c == '=').count();
        let bytes = (encoded.len() / 4 * 3).saturating_sub(padding);
        entries.push(Entry {
            key,
            value: format!("binary, {bytes} bytes"),
            binary: true,
        });
    }
    entries
}

/// `key` as one JSON pointer token (`a/b` → `a~1b`).
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// What each page about one object starts with: the object, the revision
/// its live stream follows on from, its API address and whether the
/// viewer may delete it.
struct Detail {
    object: Value,
    rv: i64,
    api: String,
    delete: Permission,
}

async fn detail(
    viewer: &Viewer,
    tenant: &str,
    kind: Kind,
    name: &str,
) -> Result<Detail, PageError> {
    viewer.open(tenant)?;
    let t = Some(tenant);
    let (_, rv) = viewer.list(kind, t).await?;
    let object = viewer.get(kind, t, name).await?;
    let plural = kind.plural();
    Ok(Detail {
        object,
        rv,
        api: format!("/api/v1/tenants/{tenant}/{plural}/{name}"),
        delete: viewer.permission(
            t,
            Target::Object(kind),
            Verb::Delete,
            &format!("delete {plural}"),
        ),
    })
}

async fn configmap(
    viewer: Viewer,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (tenant, name) = path.into_inner();
    let detail = detail(&viewer, &tenant, Kind::ConfigMap, &name).await?;
    page::render(&ConfigMapPage {
        chrome: viewer
            .chrome(Some(&tenant), "configmaps", format!("{name} · ConfigMap"))
            .await?,
        live: format!("/live?tenant={tenant}&kinds=configmaps"),
        rv: detail.rv,
        row: keys_row(&detail.object),
        entries: entries(&detail.object),
        api: detail.api,
        delete: detail.delete,
    })
}

#[derive(Template)]
#[template(path = "secret.html")]
struct SecretPage {
    chrome: Chrome,
    live: String,
    rv: i64,
    row: KeysRow,
    api: String,
    reveal: Permission,
    delete: Permission,
}

async fn secret(
    viewer: Viewer,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (tenant, name) = path.into_inner();
    // Values redacted: the page never holds them; the script asks the API
    // for one when the viewer reveals it.
    let detail = detail(&viewer, &tenant, Kind::Secret, &name).await?;
    let t = Some(tenant.as_str());
    page::render(&SecretPage {
        chrome: viewer
            .chrome(t, "secrets", format!("{name} · Secret"))
            .await?,
        live: format!("/live?tenant={tenant}&kinds=secrets"),
        rv: detail.rv,
        row: keys_row(&detail.object),
        api: detail.api,
        reveal: viewer.permission(
            t,
            Target::Object(Kind::Secret),
            Verb::Reveal,
            "reveal secret values",
        ),
        delete: detail.delete,
    })
}

/// One Volume.
struct VolumeRow {
    name: String,
    phase: String,
    tone: &'static str,
    /// The size asked for.
    requested: String,
    /// The size provided.
    capacity: String,
    access_modes: String,
    storage_class: String,
    /// The node that holds its data, once a pod has used it.
    node: String,
    /// The pods that mount it.
    pods: Vec<String>,
    age: String,
}

/// The names of `pods` that mount the Volume `claim`.
fn pods_mounting(pods: &[Value], claim: &str) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .filter(|pod| {
            pod.pointer("/spec/volumes")
                .and_then(Value::as_array)
                .is_some_and(|volumes| {
                    volumes
                        .iter()
                        .any(|v| view::text(v, "/persistentVolumeClaim/claimName") == claim)
                })
        })
        .map(view::name)
        .collect();
    names.sort();
    names
}

fn strings(object: &Value, path: &str) -> String {
    object
        .pointer(path)
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn volume_row(volume: &Value, pods: &[Value]) -> VolumeRow {
    let name = view::name(volume);
    let phase = view::text(volume, "/status/phase");
    let phase = if phase.is_empty() {
        "Pending".to_owned()
    } else {
        phase
    };
    let mut access_modes = strings(volume, "/status/accessModes");
    if access_modes.is_empty() {
        access_modes = strings(volume, "/spec/accessModes");
    }
    if access_modes.is_empty() {
        access_modes = "ReadWriteOnce".into();
    }
    VolumeRow {
        tone: view::tone(phase == "Bound", phase == "Lost"),
        phase,
        requested: view::text(volume, "/spec/resources/requests/storage"),
        capacity: view::text(volume, "/status/capacity/storage"),
        access_modes,
        storage_class: view::text(volume, "/spec/storageClassName"),
        node: view::text(volume, "/status/nodeName"),
        pods: pods_mounting(pods, &name),
        age: view::age(volume),
        name,
    }
}

#[derive(Template)]
#[template(path = "volumes.html")]
struct VolumesPage {
    chrome: Chrome,
    live: String,
    rv: i64,
    rows: Vec<VolumeRow>,
}

async fn volumes(viewer: Viewer, tenant: web::Path<String>) -> Result<HttpResponse, PageError> {
    let tenant = tenant.into_inner();
    viewer.open(&tenant)?;
    let t = Some(tenant.as_str());
    let (items, rv) = viewer.list(Kind::Volume, t).await?;
    let (pods, _) = viewer.list(Kind::Pod, t).await?;
    let mut rows: Vec<VolumeRow> = items.iter().map(|v| volume_row(v, &pods)).collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    page::render(&VolumesPage {
        chrome: viewer
            .chrome(t, "volumes", format!("{tenant} · Volumes"))
            .await?,
        live: format!("/live?tenant={tenant}&kinds=volumes,pods"),
        rv,
        rows,
    })
}

#[derive(Template)]
#[template(path = "volume.html")]
struct VolumePage {
    chrome: Chrome,
    live: String,
    rv: i64,
    row: VolumeRow,
    volume_mode: String,
    api: String,
    delete: Permission,
}

async fn volume(
    viewer: Viewer,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (tenant, name) = path.into_inner();
    let detail = detail(&viewer, &tenant, Kind::Volume, &name).await?;
    let t = Some(tenant.as_str());
    let (pods, _) = viewer.list(Kind::Pod, t).await?;
    let mode = view::text(&detail.object, "/spec/volumeMode");
    page::render(&VolumePage {
        chrome: viewer
            .chrome(t, "volumes", format!("{name} · Volume"))
            .await?,
        live: format!("/live?tenant={tenant}&kinds=volumes,pods"),
        rv: detail.rv,
        row: volume_row(&detail.object, &pods),
        volume_mode: if mode.is_empty() {
            "Filesystem".into()
        } else {
            mode
        },
        api: detail.api,
        delete: detail.delete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_configmap_shows_text_values_and_the_size_of_binary_ones() {
        let configmap = json!({
            "metadata": {"name": "settings"},
            "data": {"b.conf": "x = 1\n", "a/b": "slash"},
            "binaryData": {"logo.png": "iVBORw0KGgo="}
        });
        let entries = entries(&configmap);
        let shown: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("a/b", "slash"),
                ("b.conf", "x = 1\n"),
                ("logo.png", "binary, 8 bytes")
            ]
        );
        assert!(entries[2].binary);
    }

    #[test]
    fn a_volume_lists_the_pods_that_mount_it() {
        let pods = vec![
            json!({"metadata": {"name": "db-0"}, "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}),
            json!({"metadata": {"name": "web"}, "spec": {"volumes": [{"name": "tmp", "emptyDir": {}}]}}),
        ];
        let volume = json!({
            "metadata": {"name": "data"},
            "spec": {"resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "nodeName": "n1"}
        });
        let row = volume_row(&volume, &pods);
        assert_eq!(row.pods, ["db-0"]);
        assert_eq!(row.tone, "ok");
        assert_eq!(row.access_modes, "ReadWriteOnce");
        assert_eq!(row.node, "n1");
    }
}
