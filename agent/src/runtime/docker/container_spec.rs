//! How a pod's container becomes a Docker container: labels, command,
//! environment (with ConfigMap and Secret references), limits, ports and
//! the hardening every tenant container gets. Pure: no engine calls.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use base64::Engine as _;
use berth_api::objects::pod::{Container, ContainerPort, EnvVar, KeySelector, Protocol};
use berth_api::objects::security_context::SeccompProfileType;
use berth_api::quantity::Quantity;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, PortBinding};

use super::labels;
use super::volumes::{PodVolumes, PreparedVolume};
use crate::runtime::AssignedPod;

/// What every container on this node is held to.
#[derive(Clone, Debug)]
pub struct Hardening {
    /// The memory limit of a container whose pod sets none, in bytes.
    pub default_memory_bytes: i64,
    /// The most processes a container may have.
    pub pids_limit: i64,
}

/// Where a container is created: its node, network and published address.
#[derive(Clone, Debug)]
pub struct Placement<'a> {
    /// The node's name (a label).
    pub node: &'a str,
    /// The tenant's bridge network.
    pub network: &'a str,
    /// Where ports are published.
    pub address: IpAddr,
    /// The pod's volumes as made on the node.
    pub volumes: &'a PodVolumes,
}

/// Which container of the pod, and which run of it.
#[derive(Clone, Copy, Debug)]
pub struct Incarnation<'a> {
    /// The container spec.
    pub container: &'a Container,
    /// An init container.
    pub init: bool,
    /// How often it was restarted before this run.
    pub restart_count: i32,
}

/// A reference the container needs that the node was not sent: the
/// container waits in `CreateContainerConfigError` with this message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The Docker container for `which` of `pod`.
pub fn container_body(
    pod: &AssignedPod,
    which: Incarnation<'_>,
    placement: &Placement<'_>,
    hardening: &Hardening,
) -> Result<ContainerCreateBody, ConfigError> {
    let container = which.container;
    let (binds, mounts) = volume_mounts(pod, container, placement.volumes)?;
    let security = security(pod, container)?;
    let env = environment(pod, container)?;
    let limits = container
        .resources
        .as_ref()
        .map(|r| &r.limits)
        .cloned()
        .unwrap_or_default();
    let memory = limits
        .get("memory")
        .and_then(|q| Quantity::parse(q).ok())
        .and_then(|q| i64::try_from(q.value()).ok())
        .filter(|bytes| *bytes > 0)
        .unwrap_or(hardening.default_memory_bytes);
    let nano_cpus = limits
        .get("cpu")
        .and_then(|q| Quantity::parse(q).ok())
        .and_then(|q| i64::try_from(q.nano_value()).ok())
        .filter(|nanos| *nanos > 0);
    let mut exposed = Vec::new();
    let mut bindings = HashMap::new();
    for port in &container.ports {
        let key = port_key(port);
        exposed.push(key.clone());
        bindings.insert(
            key,
            Some(vec![PortBinding {
                host_ip: Some(placement.address.to_string()),
                // Empty: Docker picks a free ephemeral port.
                host_port: Some(
                    port.host_port
                        .filter(|p| *p > 0)
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                ),
            }]),
        );
    }
    let grace = pod.pod.termination_grace_seconds();
    Ok(ContainerCreateBody {
        image: Some(container.image.clone()),
        entrypoint: (!container.command.is_empty()).then(|| container.command.clone()),
        cmd: (!container.args.is_empty()).then(|| container.args.clone()),
        working_dir: container.working_dir.clone(),
        env: Some(env),
        hostname: Some(
            pod.pod
                .spec
                .hostname
                .clone()
                .unwrap_or_else(|| pod.pod.metadata.name.clone()),
        ),
        labels: Some(labels::of_container(pod, which, placement.node, grace)),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        tty: container.tty,
        open_stdin: container.stdin,
        stop_timeout: Some(grace),
        host_config: Some(HostConfig {
            network_mode: Some(placement.network.to_owned()),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            memory: Some(memory),
            // No swap beyond the limit: an over-limit process is killed,
            // as in Kubernetes.
            memory_swap: Some(memory),
            nano_cpus,
            pids_limit: Some(hardening.pids_limit),
            security_opt: Some(security.options),
            privileged: Some(security.privileged),
            readonly_rootfs: security.read_only_root,
            cap_add: (!security.cap_add.is_empty()).then_some(security.cap_add),
            cap_drop: (!security.cap_drop.is_empty()).then_some(security.cap_drop),
            sysctls: (!security.sysctls.is_empty()).then_some(security.sysctls),
            group_add: (!security.groups.is_empty()).then_some(security.groups),
            // Only host paths, which only a `privileged` tenant's pods get
            // past admission with; so never the Docker socket otherwise.
            binds: (!binds.is_empty()).then_some(binds),
            mounts: (!mounts.is_empty()).then_some(mounts),
            pid_mode: pod
                .pod
                .spec
                .host_pid
                .unwrap_or(false)
                .then(|| "host".to_owned()),
            ipc_mode: pod
                .pod
                .spec
                .host_ipc
                .unwrap_or(false)
                .then(|| "host".to_owned()),
            ..HostConfig::default()
        }),
        user: security.user,
        ..ContainerCreateBody::default()
    })
}

/// What a pod's and a container's `securityContext` become in Docker.
/// The API and the agent's own check have already held them to the
/// tenant's Pod Security level; this only carries them out.
#[derive(Debug, Default)]
struct Security {
    user: Option<String>,
    groups: Vec<String>,
    /// `no-new-privileges` always; a seccomp profile only when the pod
    /// asks for none (Docker's default profile applies otherwise).
    options: Vec<String>,
    privileged: bool,
    read_only_root: Option<bool>,
    cap_add: Vec<String>,
    cap_drop: Vec<String>,
    sysctls: HashMap<String, String>,
}

fn security(pod: &AssignedPod, container: &Container) -> Result<Security, ConfigError> {
    let pod_context = pod.pod.spec.security_context.clone().unwrap_or_default();
    let own = container.security_context.clone().unwrap_or_default();
    // The container's own fields win over the pod's, as in Kubernetes.
    let run_as_user = own.run_as_user.or(pod_context.run_as_user);
    let run_as_group = own.run_as_group.or(pod_context.run_as_group);
    let run_as_non_root = own.run_as_non_root.or(pod_context.run_as_non_root);
    if run_as_non_root == Some(true) {
        match run_as_user {
            Some(0) => {
                return Err(ConfigError(format!(
                    "container {:?} has runAsNonRoot and runAsUser 0: it would run as root",
                    container.name
                )));
            }
            // The image's own user is not known here, so a non-root pod
            // must name its user, as kubelet requires for images whose
            // user is not numeric.
            None => {
                return Err(ConfigError(format!(
                    "container {:?} has runAsNonRoot but no runAsUser: set runAsUser to a \
                     non-zero user id",
                    container.name
                )));
            }
            Some(_) => {}
        }
    }
    let user = run_as_user.map(|uid| match run_as_group {
        Some(gid) => format!("{uid}:{gid}"),
        None => uid.to_string(),
    });
    let groups = pod_context
        .fs_group
        .into_iter()
        .chain(pod_context.supplemental_groups.iter().copied())
        .map(|gid| gid.to_string())
        .collect();
    let mut options = vec!["no-new-privileges:true".to_owned()];
    let seccomp = own
        .seccomp_profile
        .as_ref()
        .or(pod_context.seccomp_profile.as_ref())
        .and_then(|profile| profile.type_);
    match seccomp {
        None | Some(SeccompProfileType::RuntimeDefault) => {}
        Some(SeccompProfileType::Unconfined) => options.push("seccomp=unconfined".to_owned()),
        Some(SeccompProfileType::Localhost) => {
            return Err(ConfigError(format!(
                "container {:?}: Localhost seccomp profiles are not supported on this node",
                container.name
            )));
        }
    }
    let capabilities = own.capabilities.unwrap_or_default();
    Ok(Security {
        user,
        groups,
        options,
        privileged: own.privileged.unwrap_or(false),
        read_only_root: own.read_only_root_filesystem,
        cap_add: capabilities.add,
        cap_drop: capabilities.drop,
        sysctls: pod_context
            .sysctls
            .into_iter()
            .map(|sysctl| (sysctl.name, sysctl.value))
            .collect(),
    })
}

/// The container's volume mounts: `host:container[:ro]` binds for
/// `hostPath` volumes, and mounts of what the agent made for the others.
/// `subPath` is refused except on `hostPath`: a path inside a volume the
/// pod itself can write to may be a symbolic link out of it.
fn volume_mounts(
    pod: &AssignedPod,
    container: &Container,
    volumes: &PodVolumes,
) -> Result<(Vec<String>, Vec<Mount>), ConfigError> {
    let mut binds = Vec::new();
    let mut mounts = Vec::new();
    for mount in &container.volume_mounts {
        let read_only = mount.read_only.unwrap_or(false);
        let volume = pod.pod.spec.volumes.iter().find(|v| v.name == mount.name);
        if let Some(host_path) = volume.and_then(|v| v.host_path.as_ref()) {
            let source = match mount.sub_path.as_deref().filter(|p| !p.is_empty()) {
                Some(sub_path) => format!("{}/{sub_path}", host_path.path.trim_end_matches('/')),
                None => host_path.path.clone(),
            };
            let suffix = if read_only { ":ro" } else { "" };
            binds.push(format!("{source}:{}{suffix}", mount.mount_path));
            continue;
        }
        if mount.sub_path.as_deref().is_some_and(|p| !p.is_empty()) {
            return Err(ConfigError(format!(
                "volume {:?}: subPath mounts are supported only for hostPath volumes on this node",
                mount.name
            )));
        }
        let Some(prepared) = volumes.0.get(&mount.name) else {
            return Err(ConfigError(format!(
                "volume {:?} is not a volume of the pod",
                mount.name
            )));
        };
        let (typ, source, volume_read_only) = match prepared {
            PreparedVolume::Directory { path, read_only } => (MountType::BIND, path, *read_only),
            PreparedVolume::Named { name, read_only } => (MountType::VOLUME, name, *read_only),
        };
        mounts.push(Mount {
            target: Some(mount.mount_path.clone()),
            source: Some(source.clone()),
            typ: Some(typ),
            read_only: Some(read_only || volume_read_only),
            ..Mount::default()
        });
    }
    Ok((binds, mounts))
}

/// `8080/tcp`, as Docker names a container port.
pub fn port_key(port: &ContainerPort) -> String {
    let protocol = match port.protocol.unwrap_or_default() {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    };
    format!("{}/{protocol}", port.container_port)
}

/// The container's environment as `NAME=value`: `envFrom` first, then
/// `env` (which wins), with `$(NAME)` expanded from what came before.
pub fn environment(pod: &AssignedPod, container: &Container) -> Result<Vec<String>, ConfigError> {
    let tenant = pod.pod.metadata.tenant.as_deref().unwrap_or_default();
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, name: String, value: String| {
        if let Some(existing) = vars.iter_mut().find(|(n, _)| *n == name) {
            existing.1 = value;
        } else {
            vars.push((name, value));
        }
    };
    for source in &container.env_from {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        if let Some(reference) = &source.config_map_ref {
            match pod.config_maps.get(&reference.name) {
                Some(config_map) => {
                    for (key, value) in &config_map.data {
                        set(&mut vars, format!("{prefix}{key}"), value.clone());
                    }
                }
                None if reference.optional == Some(true) => {}
                None => {
                    return Err(ConfigError(format!(
                        "configmap \"{}\" not found",
                        reference.name
                    )));
                }
            }
        }
        if let Some(reference) = &source.secret_ref {
            match pod.secrets.get(&reference.name) {
                Some(secret) => {
                    for (key, value) in secret_values(secret) {
                        set(&mut vars, format!("{prefix}{key}"), value);
                    }
                }
                None if reference.optional == Some(true) => {}
                None => {
                    return Err(ConfigError(format!(
                        "secret \"{}\" not found",
                        reference.name
                    )));
                }
            }
        }
    }
    for var in &container.env {
        if let Some(value) = env_value(pod, tenant, var, &vars)? {
            set(&mut vars, var.name.clone(), value);
        }
    }
    Ok(vars
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect())
}

/// One `env` entry's value; `None` for an optional reference that is
/// missing (the variable is left out).
fn env_value(
    pod: &AssignedPod,
    tenant: &str,
    var: &EnvVar,
    earlier: &[(String, String)],
) -> Result<Option<String>, ConfigError> {
    let Some(source) = &var.value_from else {
        return Ok(Some(expand(
            var.value.as_deref().unwrap_or_default(),
            earlier,
        )));
    };
    if let Some(selector) = &source.config_map_key_ref {
        let values = pod.config_maps.get(&selector.name).map(|c| c.data.clone());
        return key_value("ConfigMap", tenant, selector, values);
    }
    if let Some(selector) = &source.secret_key_ref {
        let values = pod.secrets.get(&selector.name).map(secret_values);
        return key_value("Secret", tenant, selector, values);
    }
    if let Some(field) = &source.field_ref {
        let meta = &pod.pod.metadata;
        let value = match field.field_path.as_str() {
            "metadata.name" => meta.name.clone(),
            "metadata.namespace" | "metadata.tenant" => tenant.to_owned(),
            "metadata.uid" => meta.uid.clone().unwrap_or_default(),
            "spec.nodeName" => pod.pod.spec.node_name.clone().unwrap_or_default(),
            other => {
                return Err(ConfigError(format!(
                    "field {other:?} cannot be read into an environment variable"
                )));
            }
        };
        return Ok(Some(value));
    }
    Ok(Some(String::new()))
}

/// The value `selector` names among `values` (the keys of the ConfigMap
/// or Secret, `None` when the object is missing), as kubelet words what is
/// missing.
fn key_value(
    kind: &str,
    tenant: &str,
    selector: &KeySelector,
    values: Option<BTreeMap<String, String>>,
) -> Result<Option<String>, ConfigError> {
    let optional = selector.optional == Some(true);
    match values {
        Some(mut values) => match values.remove(&selector.key) {
            Some(value) => Ok(Some(value)),
            None if optional => Ok(None),
            None => Err(ConfigError(format!(
                "couldn't find key {} in {kind} {tenant}/{}",
                selector.key, selector.name
            ))),
        },
        None if optional => Ok(None),
        None => Err(ConfigError(format!(
            "{} \"{}\" not found",
            kind.to_lowercase(),
            selector.name
        ))),
    }
}

/// A Secret's values, decoded (`data` is base64; `stringData` is plain).
fn secret_values(secret: &berth_api::objects::Secret) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = secret
        .data
        .iter()
        .map(|(key, encoded)| {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_else(|_| encoded.clone());
            (key.clone(), decoded)
        })
        .collect();
    for (key, value) in &secret.string_data {
        values.insert(key.clone(), value.clone());
    }
    values
}

/// Kubernetes' `$(NAME)` expansion from earlier variables; `$$` is a
/// literal `$`, and a name not defined earlier stays as written.
fn expand(value: &str, earlier: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        if let Some(after) = tail.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some((_, found)) = earlier.iter().find(|(n, _)| *n == inner[..end])
        {
            out.push_str(found);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::objects::pod::{
        EnvFromSource, EnvSourceReference, EnvVarSource, Pod, ResourceRequirements,
    };
    use berth_api::objects::{ConfigMap, Secret};

    fn pod_with(container: Container) -> AssignedPod {
        let mut pod = Pod::default();
        pod.metadata.name = "web".into();
        pod.metadata.tenant = Some("acme".into());
        pod.metadata.uid = Some("uid-1".into());
        pod.spec.containers = vec![container];
        let mut config_map = ConfigMap::default();
        config_map.data.insert("mode".into(), "fast".into());
        let mut secret = Secret::default();
        secret.data.insert("password".into(), "aHVudGVyMg==".into());
        AssignedPod {
            pod,
            config_maps: [("settings".to_owned(), config_map)].into(),
            secrets: [("db".to_owned(), secret)].into(),
        }
    }

    fn key_ref(name: &str, key: &str) -> KeySelector {
        KeySelector {
            name: name.into(),
            key: key.into(),
            optional: None,
        }
    }

    static NO_VOLUMES: PodVolumes = PodVolumes(BTreeMap::new());

    fn placement() -> Placement<'static> {
        Placement {
            node: "n1",
            network: "berth-n1-acme",
            address: "127.0.0.1".parse().unwrap(),
            volumes: &NO_VOLUMES,
        }
    }

    const HARDENING: Hardening = Hardening {
        default_memory_bytes: 512 * 1024 * 1024,
        pids_limit: 1024,
    };

    #[test]
    fn env_takes_literals_config_map_and_secret_keys_and_whole_objects() {
        let container = Container {
            name: "app".into(),
            env_from: vec![EnvFromSource {
                prefix: Some("CFG_".into()),
                config_map_ref: Some(EnvSourceReference {
                    name: "settings".into(),
                    optional: None,
                }),
                secret_ref: None,
            }],
            env: vec![
                EnvVar {
                    name: "GREETING".into(),
                    value: Some("hi $(CFG_mode) $$(x)".into()),
                    value_from: None,
                },
                EnvVar {
                    name: "PASSWORD".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(key_ref("db", "password")),
                        ..EnvVarSource::default()
                    }),
                },
                EnvVar {
                    name: "MODE".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        config_map_key_ref: Some(key_ref("settings", "mode")),
                        ..EnvVarSource::default()
                    }),
                },
            ],
            ..Container::default()
        };
        let pod = pod_with(container.clone());
        assert_eq!(
            environment(&pod, &container).unwrap(),
            [
                "CFG_mode=fast",
                "GREETING=hi fast $(x)",
                "PASSWORD=hunter2",
                "MODE=fast"
            ]
        );
    }

    #[test]
    fn a_missing_reference_names_what_is_missing_unless_optional() {
        let mut container = Container {
            name: "app".into(),
            env: vec![EnvVar {
                name: "X".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(key_ref("settings", "absent")),
                    ..EnvVarSource::default()
                }),
            }],
            ..Container::default()
        };
        let pod = pod_with(container.clone());
        assert_eq!(
            environment(&pod, &container).unwrap_err().0,
            "couldn't find key absent in ConfigMap acme/settings"
        );
        container.env[0].value_from = Some(EnvVarSource {
            secret_key_ref: Some(key_ref("nope", "k")),
            ..EnvVarSource::default()
        });
        assert_eq!(
            environment(&pod, &container).unwrap_err().0,
            "secret \"nope\" not found"
        );
        container.env[0].value_from = Some(EnvVarSource {
            secret_key_ref: Some(KeySelector {
                optional: Some(true),
                ..key_ref("nope", "k")
            }),
            ..EnvVarSource::default()
        });
        assert!(environment(&pod, &container).unwrap().is_empty());
    }

    #[test]
    fn every_container_is_hardened_and_limited() {
        let container = Container {
            name: "app".into(),
            image: "berth-test/busybox:1".into(),
            command: vec!["httpd".into()],
            args: vec!["-f".into()],
            working_dir: Some("/tmp".into()),
            ports: vec![ContainerPort {
                container_port: 8080,
                ..ContainerPort::default()
            }],
            resources: Some(ResourceRequirements {
                limits: [("cpu".to_owned(), "500m".to_owned())].into(),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        };
        let pod = pod_with(container.clone());
        let which = Incarnation {
            container: &container,
            init: false,
            restart_count: 2,
        };
        let body = container_body(&pod, which, &placement(), &HARDENING).unwrap();
        let host = body.host_config.unwrap();
        assert_eq!(
            host.security_opt.unwrap(),
            ["no-new-privileges:true".to_owned()]
        );
        assert_eq!(host.pids_limit, Some(1024));
        assert_eq!(host.memory, Some(512 * 1024 * 1024), "the default limit");
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.privileged, Some(false));
        assert!(host.binds.is_none());
        assert!(host.mounts.is_none());
        assert_eq!(host.network_mode.as_deref(), Some("berth-n1-acme"));
        let binding = &host.port_bindings.unwrap()["8080/tcp"].clone().unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(binding.host_port.as_deref(), Some(""), "ephemeral");
        assert_eq!(body.entrypoint.unwrap(), ["httpd"]);
        assert_eq!(body.cmd.unwrap(), ["-f"]);
        assert_eq!(body.working_dir.as_deref(), Some("/tmp"));
        let labels = body.labels.unwrap();
        assert_eq!(labels[labels::POD_UID], "uid-1");
        assert_eq!(labels[labels::RESTART_COUNT], "2");
        assert_eq!(labels[labels::NODE], "n1");
    }

    #[test]
    fn volumes_are_mounted_where_the_container_asks_read_only_when_either_side_says_so() {
        use berth_api::objects::pod::{
            PersistentVolumeClaimVolumeSource, PodVolume, SecretVolumeSource, VolumeMount,
        };
        let mount = |name: &str, path: &str, read_only: Option<bool>| VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            read_only,
            sub_path: None,
        };
        let container = Container {
            name: "app".into(),
            volume_mounts: vec![
                mount("keys", "/etc/keys", None),
                mount("data", "/data", Some(true)),
            ],
            ..Container::default()
        };
        let mut pod = pod_with(container.clone());
        pod.pod.spec.volumes = vec![
            PodVolume {
                name: "keys".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: "db".into(),
                    ..SecretVolumeSource::default()
                }),
                ..PodVolume::default()
            },
            PodVolume {
                name: "data".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: "data".into(),
                    read_only: None,
                }),
                ..PodVolume::default()
            },
        ];
        let volumes = PodVolumes(BTreeMap::from([
            (
                "keys".to_owned(),
                PreparedVolume::Directory {
                    path: "/state/pods/uid-1/volumes/keys".into(),
                    read_only: true,
                },
            ),
            (
                "data".to_owned(),
                PreparedVolume::Named {
                    name: "berth_claim_n1_acme_data".into(),
                    read_only: false,
                },
            ),
        ]));
        let placement = Placement {
            volumes: &volumes,
            ..placement()
        };
        let which = Incarnation {
            container: &container,
            init: false,
            restart_count: 0,
        };
        let body = container_body(&pod, which, &placement, &HARDENING).unwrap();
        let mounts = body.host_config.unwrap().mounts.unwrap();
        let summary: Vec<(Option<MountType>, &str, &str, Option<bool>)> = mounts
            .iter()
            .map(|m| {
                (
                    m.typ,
                    m.source.as_deref().unwrap_or_default(),
                    m.target.as_deref().unwrap_or_default(),
                    m.read_only,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    Some(MountType::BIND),
                    "/state/pods/uid-1/volumes/keys",
                    "/etc/keys",
                    Some(true)
                ),
                (
                    Some(MountType::VOLUME),
                    "berth_claim_n1_acme_data",
                    "/data",
                    Some(true)
                ),
            ]
        );
        let mut with_sub_path = container.clone();
        with_sub_path.volume_mounts[0].sub_path = Some("tls.key".into());
        let which = Incarnation {
            container: &with_sub_path,
            ..which
        };
        let error = container_body(&pod, which, &placement, &HARDENING).unwrap_err();
        assert_eq!(
            error.0,
            "volume \"keys\": subPath mounts are supported only for hostPath volumes on this node"
        );
    }
}
