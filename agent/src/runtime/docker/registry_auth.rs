//! Credentials for a pull, from a pod's `imagePullSecrets`, as kubelet
//! finds them: the Secrets of type `kubernetes.io/dockerconfigjson` (or
//! the older `kubernetes.io/dockercfg`), in the pod's order, the first
//! whose registry matches the image's.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use berth_api::objects::Secret;
use bollard::auth::DockerCredentials;
use serde::Deserialize;

/// Docker Hub, as image references imply it and as config files name it.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_ALIASES: &[&str] = &["index.docker.io", "registry-1.docker.io", "docker.io"];

/// One registry's entry of a Docker config file.
#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// `base64(username:password)`.
    #[serde(default)]
    auth: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

/// `.dockerconfigjson`: `{"auths": {registry: entry}}`.
#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

/// The registry an image reference pulls from: its first path component
/// when that names a host (a dot, a port or `localhost`), else Docker Hub.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => DOCKER_HUB,
    }
}

/// A config file's registry key, as a bare host (`https://h:5000/v1/` is
/// `h:5000`), with Docker Hub's names as one.
fn normalize(key: &str) -> &str {
    let host = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = host.split('/').next().unwrap_or(host);
    if DOCKER_HUB_ALIASES.contains(&host) {
        DOCKER_HUB
    } else {
        host
    }
}

/// The credentials for pulling `image` from the pod's pull Secrets
/// (`secrets`, in the pod's order); `None` when none of them has an entry
/// for its registry (the pull goes without, as kubelet's does). A pull
/// Secret that cannot be read is an error naming it.
pub fn credentials_for(
    image: &str,
    secrets: &[&Secret],
) -> Result<Option<DockerCredentials>, String> {
    let registry = normalize(registry_of(image));
    for secret in secrets {
        let name = &secret.metadata.name;
        let auths = match secret.type_.as_deref() {
            Some("kubernetes.io/dockerconfigjson") => {
                let text = decoded(secret, ".dockerconfigjson")?;
                serde_json::from_slice::<ConfigJson>(&text)
                    .map_err(|e| {
                        format!("secret \"{name}\": .dockerconfigjson is not a Docker config: {e}")
                    })?
                    .auths
            }
            Some("kubernetes.io/dockercfg") => {
                let text = decoded(secret, ".dockercfg")?;
                serde_json::from_slice::<BTreeMap<String, AuthEntry>>(&text).map_err(|e| {
                    format!("secret \"{name}\": .dockercfg is not a Docker config: {e}")
                })?
            }
            other => {
                return Err(format!(
                    "secret \"{name}\" is of type {}, not kubernetes.io/dockerconfigjson",
                    other.unwrap_or("Opaque")
                ));
            }
        };
        if let Some((key, entry)) = auths
            .into_iter()
            .find(|(key, _)| normalize(key) == registry)
        {
            return credentials(name, &key, entry).map(Some);
        }
    }
    Ok(None)
}

fn decoded(secret: &Secret, key: &str) -> Result<Vec<u8>, String> {
    let name = &secret.metadata.name;
    let value = secret
        .data
        .get(key)
        .ok_or_else(|| format!("secret \"{name}\" has no {key}"))?;
    STANDARD
        .decode(value)
        .map_err(|e| format!("secret \"{name}\": {key} is not base64: {e}"))
}

fn credentials(secret: &str, key: &str, entry: AuthEntry) -> Result<DockerCredentials, String> {
    let (username, password) = match (entry.username, entry.password, entry.auth) {
        (Some(username), Some(password), _) => (username, password),
        (_, _, Some(auth)) => {
            let pair = STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    format!("secret \"{secret}\": the auth of {key} is not base64 text")
                })?;
            let (username, password) = pair.split_once(':').ok_or_else(|| {
                format!("secret \"{secret}\": the auth of {key} is not username:password")
            })?;
            (username.to_owned(), password.to_owned())
        }
        _ if entry.identity_token.is_some() => (String::new(), String::new()),
        _ => {
            return Err(format!(
                "secret \"{secret}\": the entry for {key} has neither username and password nor auth"
            ));
        }
    };
    Ok(DockerCredentials {
        username: Some(username).filter(|u| !u.is_empty()),
        password: Some(password).filter(|p| !p.is_empty()),
        identitytoken: entry.identity_token,
        serveraddress: Some(key.to_owned()),
        ..DockerCredentials::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull_secret(name: &str, config: &str) -> Secret {
        Secret {
            metadata: berth_api::objects::ObjectMeta {
                name: name.into(),
                ..Default::default()
            },
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            data: [(".dockerconfigjson".to_owned(), STANDARD.encode(config))].into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_registry_is_the_first_component_when_it_names_a_host() {
        assert_eq!(registry_of("127.0.0.1:5000/team/app:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("registry.example/app"), "registry.example");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(registry_of("team/app:1"), "docker.io");
        assert_eq!(registry_of("busybox"), "docker.io");
    }

    #[test]
    fn the_first_secret_with_the_images_registry_gives_the_credentials() {
        let other = pull_secret(
            "other",
            r#"{"auths":{"other:5000":{"username":"o","password":"p"}}}"#,
        );
        let mine = pull_secret(
            "mine",
            &format!(
                r#"{{"auths":{{"http://127.0.0.1:5000/v2/":{{"auth":"{}"}}}}}}"#,
                STANDARD.encode("alice:s3cret")
            ),
        );
        let found = credentials_for("127.0.0.1:5000/app:1", &[&other, &mine])
            .unwrap()
            .unwrap();
        assert_eq!(found.username.as_deref(), Some("alice"));
        assert_eq!(found.password.as_deref(), Some("s3cret"));
        assert_eq!(
            credentials_for("elsewhere:1/app", &[&other, &mine]).unwrap(),
            None
        );
    }

    #[test]
    fn docker_hubs_names_are_one_registry() {
        let hub = pull_secret(
            "hub",
            r#"{"auths":{"https://index.docker.io/v1/":{"username":"u","password":"p"}}}"#,
        );
        let found = credentials_for("team/app", &[&hub]).unwrap().unwrap();
        assert_eq!(found.username.as_deref(), Some("u"));
    }

    #[test]
    fn an_unreadable_pull_secret_is_named() {
        let mut opaque = pull_secret("plain", "{}");
        opaque.type_ = None;
        let error = credentials_for("app", &[&opaque]).unwrap_err();
        assert_eq!(
            error,
            "secret \"plain\" is of type Opaque, not kubernetes.io/dockerconfigjson"
        );
        let broken = pull_secret("broken", "not json");
        assert!(
            credentials_for("app", &[&broken])
                .unwrap_err()
                .starts_with("secret \"broken\": .dockerconfigjson is not a Docker config")
        );
    }
}
