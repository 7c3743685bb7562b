//! A pod's volumes on this node, made before its containers:
//!
//! - `configMap` and `secret`: files under the agent's state directory
//!   (`<state-dir>/pods/<uid>/volumes/<name>`), written by
//!   [`projection`](super::projection) and bind-mounted read-only; a
//!   Secret's directory is a tmpfs of its own, so its values never reach
//!   the node's disk. A changed object is written again in place
//!   ([`NodeVolumes::refresh`]), without restarting anything.
//! - `emptyDir`: a directory there (mode 0777, as kubelet makes it), or a
//!   tmpfs with `medium: Memory` (of `sizeLimit`, when given); shared by the
//!   pod's containers and gone with the pod.
//! - `persistentVolumeClaim`: a Docker named volume per node, tenant and
//!   claim (`berth_claim_<node>_<tenant>_<claim>`, labelled), which outlives
//!   the pod: the agent never removes one.
//!
//! `hostPath` needs nothing made here (`container_spec` binds it).
//! Each pod's directory holds `pod.json` (tenant, name, uid, node), so that
//! the directories of pods deleted while the agent was down are found and
//! removed like their containers.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_api::objects::pod::PodVolume;
use berth_api::quantity::Quantity;
use bollard::Docker;
use bollard::models::VolumeCreateRequest;

use super::container_spec::ConfigError;
use super::labels;
use super::projection::{self, Payload};
use crate::runtime::{AssignedPod, OwnedPod, PodKey};

/// The most a Secret volume's tmpfs holds: two versions of the largest
/// Secret the API takes, with room to spare.
const SECRET_TMPFS_BYTES: u64 = 16 << 20;

/// Where one volume of a pod is on this node, ready to mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreparedVolume {
    /// A directory of the node, bind-mounted.
    Directory {
        /// The directory.
        path: String,
        /// Always mounted read-only (ConfigMap and Secret files).
        read_only: bool,
    },
    /// A Docker named volume.
    Named {
        /// Its name.
        name: String,
        /// Mounted read-only (`persistentVolumeClaim.readOnly`).
        read_only: bool,
    },
}

/// A pod's prepared volumes by name (`hostPath` ones are not here).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodVolumes(pub BTreeMap<String, PreparedVolume>);

/// What one volume needs on the node's file system.
enum Plan {
    /// Projected files, on a tmpfs of their own when `tmpfs` is set.
    Files {
        dir: PathBuf,
        payload: Payload,
        tmpfs: bool,
    },
    /// An emptyDir: a directory, or a tmpfs (of a size, when given).
    Scratch {
        dir: PathBuf,
        memory: Option<Option<u64>>,
    },
}

/// What `pod.json` in a pod's directory says.
#[derive(Debug)]
struct PodRecord {
    tenant: String,
    name: String,
    uid: String,
    node: String,
}

impl PodRecord {
    fn to_json(&self) -> String {
        serde_json::json!({
            "tenant": self.tenant,
            "name": self.name,
            "uid": self.uid,
            "node": self.node,
        })
        .to_string()
    }

    fn from_json(text: &str) -> Option<PodRecord> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let field = |name: &str| value[name].as_str().map(str::to_owned);
        Some(PodRecord {
            tenant: field("tenant")?,
            name: field("name")?,
            uid: field("uid")?,
            node: field("node")?,
        })
    }
}

/// The volumes of this node's pods, under the agent's state directory.
#[derive(Debug)]
pub struct NodeVolumes {
    pods: PathBuf,
    node: String,
}

impl NodeVolumes {
    /// Volumes under `state_dir` (made if missing) for node `node`.
    pub fn new(state_dir: &Path, node: &str) -> io::Result<NodeVolumes> {
        let pods = state_dir.join("pods");
        std::fs::create_dir_all(&pods)?;
        // As the kernel names mount points, so that the pods' mounts are
        // found again under it.
        let pods = std::fs::canonicalize(pods)?;
        // The engine (root) reaches the volumes; other users of the host
        // have no business reading ConfigMap files or Secret names.
        std::fs::set_permissions(&pods, std::fs::Permissions::from_mode(0o700))?;
        Ok(NodeVolumes {
            pods,
            node: node.to_owned(),
        })
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods.join(uid)
    }

    /// Makes every volume of `pod` (idempotent: what is there already and
    /// up to date is left alone). A missing ConfigMap or Secret, or a
    /// volume that cannot be made, is a [`ConfigError`] naming it.
    pub async fn prepare(
        &self,
        docker: &Docker,
        pod: &AssignedPod,
    ) -> Result<PodVolumes, ConfigError> {
        let mut prepared = PodVolumes::default();
        let mut plans = Vec::new();
        let dir = self.pod_dir(pod.uid());
        for volume in &pod.pod.spec.volumes {
            if let Some(claim) = &volume.persistent_volume_claim {
                let name = self.ensure_claim(docker, pod, &claim.claim_name).await?;
                prepared.0.insert(
                    volume.name.clone(),
                    PreparedVolume::Named {
                        name,
                        read_only: claim.read_only == Some(true),
                    },
                );
                continue;
            }
            let Some(plan) = plan_of(pod, volume, &dir)? else {
                continue;
            };
            let (path, read_only) = match &plan {
                Plan::Files { dir, .. } => (dir, true),
                Plan::Scratch { dir, .. } => (dir, false),
            };
            prepared.0.insert(
                volume.name.clone(),
                PreparedVolume::Directory {
                    path: path.to_string_lossy().into_owned(),
                    read_only,
                },
            );
            plans.push((volume.name.clone(), plan));
        }
        if plans.is_empty() {
            return Ok(prepared);
        }
        let record = PodRecord {
            tenant: pod.key().tenant,
            name: pod.key().name,
            uid: pod.uid().to_owned(),
            node: self.node.clone(),
        };
        let written = tokio::task::spawn_blocking(move || {
            write_record(&dir, &record).map_err(|error| {
                format!("the pod's volume directory could not be made: {error}")
            })?;
            for (name, plan) in plans {
                carry_out(plan).map_err(|error| {
                    format!("volume {name:?} could not be made on this node: {error}")
                })?;
            }
            Ok::<(), String>(())
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(prepared),
            Ok(Err(message)) => Err(ConfigError(message)),
            Err(error) => Err(ConfigError(format!(
                "the pod's volumes could not be made: {error}"
            ))),
        }
    }

    /// Writes the ConfigMap and Secret volumes of `pod` again from the
    /// objects it came with now, when it has a directory here already: the
    /// running containers see the new files through the `..data` swap. A
    /// volume whose object is now missing keeps its files, as kubelet's do.
    pub async fn refresh(&self, pod: &AssignedPod) {
        let dir = self.pod_dir(pod.uid());
        if !dir.join("pod.json").exists() {
            return;
        }
        let mut plans = Vec::new();
        for volume in &pod.pod.spec.volumes {
            if volume.config_map.is_none() && volume.secret.is_none() {
                continue;
            }
            match plan_of(pod, volume, &dir) {
                Ok(Some(plan)) => plans.push(plan),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(pod = %pod.key(), volume = volume.name, %error, "the volume keeps its files");
                }
            }
        }
        let key = pod.key();
        let refreshed = tokio::task::spawn_blocking(move || {
            plans
                .into_iter()
                .map(carry_out)
                .collect::<io::Result<Vec<bool>>>()
        })
        .await;
        match refreshed {
            Ok(Ok(changed)) if changed.contains(&true) => {
                tracing::info!(pod = %key, "wrote changed ConfigMap or Secret files");
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(pod = %key, %error, "writing ConfigMap or Secret files failed");
            }
            Err(error) => tracing::warn!(pod = %key, %error, "writing volume files failed"),
        }
    }

    /// Unmounts and removes the directory of the pod `uid` (its emptyDir,
    /// ConfigMap and Secret volumes); claims stay.
    pub async fn remove_pod(&self, uid: &str) {
        let dir = self.pod_dir(uid);
        if uid.is_empty() || !dir.exists() {
            return;
        }
        let removed = tokio::task::spawn_blocking(move || remove_tree(&dir)).await;
        match removed {
            Ok(Ok(())) => tracing::info!(uid, "removed the pod's volumes"),
            Ok(Err(error)) => tracing::warn!(uid, %error, "removing the pod's volumes failed"),
            Err(error) => tracing::warn!(uid, %error, "removing the pod's volumes failed"),
        }
    }

    /// The pods of this node that have a directory here.
    pub fn pods_with_volumes(&self) -> Vec<OwnedPod> {
        let Ok(entries) = std::fs::read_dir(&self.pods) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let text = std::fs::read_to_string(entry.path().join("pod.json")).ok()?;
                let record = PodRecord::from_json(&text)?;
                (record.node == self.node).then_some(OwnedPod {
                    key: PodKey {
                        tenant: record.tenant,
                        name: record.name,
                    },
                    uid: record.uid,
                })
            })
            .collect()
    }

    /// The Docker volume of `claim` in `pod`'s tenant on this node, made
    /// (labelled) on first use.
    async fn ensure_claim(
        &self,
        docker: &Docker,
        pod: &AssignedPod,
        claim: &str,
    ) -> Result<String, ConfigError> {
        let tenant = pod.key().tenant;
        let name = claim_volume_name(&self.node, &tenant, claim);
        if docker.inspect_volume(&name).await.is_ok() {
            return Ok(name);
        }
        let request = VolumeCreateRequest {
            name: Some(name.clone()),
            driver: Some("local".into()),
            labels: Some(HashMap::from([
                (labels::MANAGED_BY.to_owned(), labels::AGENT.to_owned()),
                (labels::NODE.to_owned(), self.node.clone()),
                (labels::TENANT.to_owned(), tenant),
                (labels::CLAIM.to_owned(), claim.to_owned()),
            ])),
            ..VolumeCreateRequest::default()
        };
        docker.create_volume(request).await.map_err(|error| {
            ConfigError(format!(
                "the Docker volume of claim {claim:?} could not be made: {error}"
            ))
        })?;
        tracing::info!(volume = name, claim, "created a claim's volume");
        Ok(name)
    }
}

/// The Docker volume that holds `claim` of `tenant` on `node`.
pub fn claim_volume_name(node: &str, tenant: &str, claim: &str) -> String {
    format!("berth_claim_{node}_{tenant}_{claim}")
}

/// What `volume` of `pod` needs under the pod's directory `dir`; `None`
/// for kinds that need nothing there.
fn plan_of(pod: &AssignedPod, volume: &PodVolume, dir: &Path) -> Result<Option<Plan>, ConfigError> {
    let at = dir.join("volumes").join(&volume.name);
    let fs_group = pod
        .pod
        .spec
        .security_context
        .as_ref()
        .and_then(|c| c.fs_group);
    if let Some(source) = &volume.config_map {
        let object = pod.config_maps.get(&source.name);
        let payload = projection::config_map_payload(&volume.name, source, object, fs_group)?;
        return Ok(Some(Plan::Files {
            dir: at,
            payload,
            tmpfs: false,
        }));
    }
    if let Some(source) = &volume.secret {
        let object = pod.secrets.get(&source.secret_name);
        let payload = projection::secret_payload(&volume.name, source, object, fs_group)?;
        return Ok(Some(Plan::Files {
            dir: at,
            payload,
            tmpfs: true,
        }));
    }
    if let Some(source) = &volume.empty_dir {
        let memory = match source.medium.as_deref().unwrap_or_default() {
            "" => None,
            "Memory" => {
                let size = match &source.size_limit {
                    None => None,
                    Some(limit) => Some(
                        Quantity::parse(limit)
                            .ok()
                            .and_then(|q| u64::try_from(q.value()).ok())
                            .filter(|bytes| *bytes > 0)
                            .ok_or_else(|| {
                                ConfigError(format!(
                                    "volume {:?}: sizeLimit {limit:?} is not a size",
                                    volume.name
                                ))
                            })?,
                    ),
                };
                Some(size)
            }
            other => {
                return Err(ConfigError(format!(
                    "volume {:?}: emptyDir medium {other:?} is not supported (\"\" or \"Memory\")",
                    volume.name
                )));
            }
        };
        return Ok(Some(Plan::Scratch { dir: at, memory }));
    }
    Ok(None)
}

fn write_record(dir: &Path, record: &PodRecord) -> io::Result<()> {
    let path = dir.join("pod.json");
    if path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir.join("volumes"))?;
    let text = record.to_json();
    let next = dir.join("pod.json.tmp");
    std::fs::write(&next, text)?;
    std::fs::rename(next, path)
}

/// Makes what `plan` says; answers whether files changed.
fn carry_out(plan: Plan) -> io::Result<bool> {
    match plan {
        Plan::Files {
            dir,
            payload,
            tmpfs,
        } => {
            if tmpfs {
                mount_tmpfs(&dir, &format!("mode=0755,size={SECRET_TMPFS_BYTES}"))?;
            }
            projection::write_atomically(&dir, &payload, None)
        }
        Plan::Scratch { dir, memory } => {
            match memory {
                Some(size) => {
                    let options = match size {
                        Some(bytes) => format!("mode=0777,size={bytes}"),
                        None => "mode=0777".to_owned(),
                    };
                    mount_tmpfs(&dir, &options)?;
                }
                None if !dir.exists() => {
                    std::fs::create_dir_all(&dir)?;
                    // Writable by any user the containers run as, as
                    // kubelet makes an emptyDir.
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
                }
                None => {}
            }
            Ok(false)
        }
    }
}

/// Mounts a tmpfs on `dir` unless one is there already.
fn mount_tmpfs(dir: &Path, options: &str) -> io::Result<()> {
    use nix::mount::{MsFlags, mount};
    std::fs::create_dir_all(dir)?;
    if is_mount_point(dir)? {
        return Ok(());
    }
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options),
    )
    .map_err(|errno| io::Error::other(format!("mounting a tmpfs on {}: {errno}", dir.display())))
}

/// Whether something is mounted on `dir` (its device differs from its
/// parent's).
fn is_mount_point(dir: &Path) -> io::Result<bool> {
    let parent = dir.parent().unwrap_or(dir);
    Ok(std::fs::metadata(dir)?.dev() != std::fs::metadata(parent)?.dev())
}

/// Unmounts every mount under `dir` (deepest first), then removes it.
fn remove_tree(dir: &Path) -> io::Result<()> {
    use nix::mount::{MntFlags, umount2};
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut mounted: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(dir))
        .collect();
    mounted.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    for point in mounted {
        // Detached: a container that still has it open cannot keep the
        // pod's directory from going.
        umount2(&point, MntFlags::MNT_DETACH).map_err(|errno| {
            io::Error::other(format!("unmounting {}: {errno}", point.display()))
        })?;
    }
    std::fs::remove_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::objects::ConfigMap;
    use berth_api::objects::pod::{
        ConfigMapVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource, Pod,
    };

    fn pod(volumes: Vec<PodVolume>) -> AssignedPod {
        let mut pod = Pod::default();
        pod.metadata.name = "web".into();
        pod.metadata.tenant = Some("acme".into());
        pod.metadata.uid = Some("uid-1".into());
        pod.spec.volumes = volumes;
        let mut config_map = ConfigMap::default();
        config_map.data.insert("a.conf".into(), "one".into());
        AssignedPod {
            pod,
            config_maps: [("settings".to_owned(), config_map)].into(),
            secrets: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn config_files_and_scratch_space_are_made_under_the_pods_directory_and_go_with_it() {
        let state = tempfile::tempdir().unwrap();
        let volumes = NodeVolumes::new(state.path(), "n1").unwrap();
        let assigned = pod(vec![
            PodVolume {
                name: "conf".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: "settings".into(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..PodVolume::default()
            },
            PodVolume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..PodVolume::default()
            },
            PodVolume {
                name: "host".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/srv".into(),
                    type_: None,
                }),
                ..PodVolume::default()
            },
        ]);
        // No engine call: no claim among these volumes.
        let docker =
            Docker::connect_with_http("http://127.0.0.1:9", 1, bollard::API_DEFAULT_VERSION)
                .unwrap();
        let prepared = volumes.prepare(&docker, &assigned).await.unwrap();
        let dir = state.path().join("pods/uid-1/volumes");
        assert_eq!(
            prepared.0["conf"],
            PreparedVolume::Directory {
                path: dir.join("conf").to_string_lossy().into_owned(),
                read_only: true
            }
        );
        assert!(
            !prepared.0.contains_key("host"),
            "hostPath is bound as it is"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("conf/a.conf")).unwrap(),
            "one"
        );
        let scratch = std::fs::metadata(dir.join("scratch")).unwrap();
        assert_eq!(scratch.permissions().mode() & 0o777, 0o777);
        assert_eq!(
            volumes.pods_with_volumes(),
            [OwnedPod {
                key: assigned.key(),
                uid: "uid-1".into()
            }]
        );
        assert!(
            NodeVolumes::new(state.path(), "n2")
                .unwrap()
                .pods_with_volumes()
                .is_empty(),
            "another node's agent on this host leaves them alone"
        );

        let mut changed = assigned.clone();
        changed
            .config_maps
            .get_mut("settings")
            .unwrap()
            .data
            .insert("a.conf".into(), "uno".into());
        volumes.refresh(&changed).await;
        assert_eq!(
            std::fs::read_to_string(dir.join("conf/a.conf")).unwrap(),
            "uno"
        );

        volumes.remove_pod("uid-1").await;
        assert!(!state.path().join("pods/uid-1").exists());
        assert!(volumes.pods_with_volumes().is_empty());
    }

    #[tokio::test]
    async fn a_secret_volume_is_a_tmpfs_of_its_own_and_is_unmounted_with_its_pod() {
        use berth_api::objects::Secret;
        use berth_api::objects::pod::SecretVolumeSource;
        let state = tempfile::tempdir().unwrap();
        let volumes = NodeVolumes::new(state.path(), "n1").unwrap();
        let mut assigned = pod(vec![PodVolume {
            name: "keys".into(),
            secret: Some(SecretVolumeSource {
                secret_name: "db".into(),
                ..SecretVolumeSource::default()
            }),
            ..PodVolume::default()
        }]);
        let mut secret = Secret::default();
        secret.data.insert("password".into(), "aHVudGVyMg==".into());
        assigned.secrets.insert("db".into(), secret);
        let docker =
            Docker::connect_with_http("http://127.0.0.1:9", 1, bollard::API_DEFAULT_VERSION)
                .unwrap();
        volumes.prepare(&docker, &assigned).await.unwrap();
        let dir = state.path().join("pods/uid-1/volumes/keys");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = mounts
            .lines()
            .find(|line| line.split(' ').nth(4) == Some(dir.to_str().unwrap()))
            .unwrap_or_else(|| panic!("nothing mounted on {}:\n{mounts}", dir.display()));
        assert!(line.contains(" - tmpfs "), "{line}");
        let file = std::fs::metadata(dir.join("password")).unwrap();
        assert_eq!(file.permissions().mode() & 0o777, 0o400);
        assert_eq!(std::fs::read(dir.join("password")).unwrap(), b"hunter2");
        // Preparing again mounts nothing more.
        volumes.prepare(&docker, &assigned).await.unwrap();
        let count = |text: &str| {
            text.lines()
                .filter(|l| l.contains("uid-1/volumes/keys"))
                .count()
        };
        assert_eq!(
            count(&std::fs::read_to_string("/proc/self/mountinfo").unwrap()),
            1
        );
        volumes.remove_pod("uid-1").await;
        assert_eq!(
            count(&std::fs::read_to_string("/proc/self/mountinfo").unwrap()),
            0
        );
        assert!(!state.path().join("pods/uid-1").exists());
    }

    #[tokio::test]
    async fn a_missing_config_map_is_named_and_an_unknown_medium_refused() {
        let state = tempfile::tempdir().unwrap();
        let volumes = NodeVolumes::new(state.path(), "n1").unwrap();
        let docker =
            Docker::connect_with_http("http://127.0.0.1:9", 1, bollard::API_DEFAULT_VERSION)
                .unwrap();
        let missing = pod(vec![PodVolume {
            name: "conf".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "absent".into(),
                ..ConfigMapVolumeSource::default()
            }),
            ..PodVolume::default()
        }]);
        assert_eq!(
            volumes.prepare(&docker, &missing).await.unwrap_err().0,
            "configmap \"absent\" not found"
        );
        let odd = pod(vec![PodVolume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("HugePages".into()),
                size_limit: None,
            }),
            ..PodVolume::default()
        }]);
        let error = volumes.prepare(&docker, &odd).await.unwrap_err();
        assert!(error.0.contains("medium \"HugePages\""), "{error}");
        assert!(volumes.pods_with_volumes().is_empty(), "nothing half-made");
    }
}
