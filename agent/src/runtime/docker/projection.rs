//! ConfigMap and Secret volumes as files: which files a volume holds
//! ([`config_map_payload`], [`secret_payload`]: `items`, modes, `optional`,
//! pure) and how they are written ([`write_atomically`]), the way kubelet's
//! atomic writer does it, so that a container reading the volume while it
//! changes sees either the old files or the new ones, never a mix:
//!
//! ```text
//! volume/
//!   ..2026_12_06_03_10_00.123456789/   the files of one version
//!   ..data -> ..2026_12_06_03_10_00.123456789
//!   key -> ..data/key                  one link per top-level name
//! ```
//!
//! A new version is written into a fresh directory, then `..data` is
//! swapped to it with one `rename` of a symbolic link, then the old
//! directory goes.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path};

use base64::Engine as _;
use berth_api::objects::pod::{ConfigMapVolumeSource, KeyToPath, SecretVolumeSource};
use berth_api::objects::{ConfigMap, Secret};

use super::container_spec::ConfigError;

/// Kubernetes' default mode of a ConfigMap volume's files.
pub const CONFIG_MAP_DEFAULT_MODE: u32 = 0o644;

/// The default mode of a Secret volume's files: readable by their owner
/// only (Kubernetes has 0644).
pub const SECRET_DEFAULT_MODE: u32 = 0o400;

/// The link that names the current version.
const DATA_LINK: &str = "..data";

/// Where the next link is made before it replaces [`DATA_LINK`].
const DATA_LINK_NEXT: &str = "..data_tmp";

/// One file of a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileContent {
    /// What it holds.
    pub bytes: Vec<u8>,
    /// Its permission bits.
    pub mode: u32,
}

/// Every file of a volume by its path relative to the volume.
pub type Payload = BTreeMap<String, FileContent>;

/// The files of a ConfigMap volume; `config_map` is `None` when the node
/// was not sent it (it does not exist).
pub fn config_map_payload(
    volume: &str,
    source: &ConfigMapVolumeSource,
    config_map: Option<&ConfigMap>,
    fs_group: Option<i64>,
) -> Result<Payload, ConfigError> {
    let optional = source.optional == Some(true);
    let Some(config_map) = config_map else {
        return absent("configmap", &source.name, optional);
    };
    let mut values: BTreeMap<String, Vec<u8>> = config_map
        .data
        .iter()
        .map(|(key, value)| (key.clone(), value.as_bytes().to_vec()))
        .collect();
    for (key, encoded) in &config_map.binary_data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|error| {
                ConfigError(format!(
                    "configmap \"{}\": binaryData[{key}] is not base64: {error}",
                    source.name
                ))
            })?;
        values.insert(key.clone(), bytes);
    }
    let default_mode =
        mode_of(volume, "defaultMode", source.default_mode)?.unwrap_or(CONFIG_MAP_DEFAULT_MODE);
    let shape = Shape {
        volume,
        kind: "configmap",
        default_mode,
        items: &source.items,
        optional,
        fs_group,
    };
    shape.payload(values)
}

/// The files of a Secret volume; `secret` is `None` when the node was not
/// sent it (it does not exist).
pub fn secret_payload(
    volume: &str,
    source: &SecretVolumeSource,
    secret: Option<&Secret>,
    fs_group: Option<i64>,
) -> Result<Payload, ConfigError> {
    let optional = source.optional == Some(true);
    let Some(secret) = secret else {
        return absent("secret", &source.secret_name, optional);
    };
    let values = secret
        .decoded_data()
        .map_err(|error| ConfigError(format!("secret \"{}\": {error}", source.secret_name)))?;
    let default_mode =
        mode_of(volume, "defaultMode", source.default_mode)?.unwrap_or(SECRET_DEFAULT_MODE);
    let shape = Shape {
        volume,
        kind: "secret",
        default_mode,
        items: &source.items,
        optional,
        fs_group,
    };
    shape.payload(values)
}

/// The files of a volume whose object the node was not sent: none when
/// optional, else kubelet's error (`configmap "x" not found`).
fn absent(kind: &str, name: &str, optional: bool) -> Result<Payload, ConfigError> {
    if optional {
        Ok(Payload::new())
    } else {
        Err(ConfigError(format!("{kind} \"{name}\" not found")))
    }
}

/// What a ConfigMap and a Secret volume have alike.
struct Shape<'a> {
    volume: &'a str,
    /// `configmap` or `secret`, as kubelet words its errors.
    kind: &'a str,
    default_mode: u32,
    items: &'a [KeyToPath],
    optional: bool,
    fs_group: Option<i64>,
}

impl Shape<'_> {
    /// Every key under its own name, or with `items` only those keys under
    /// their paths.
    fn payload(&self, mut values: BTreeMap<String, Vec<u8>>) -> Result<Payload, ConfigError> {
        let mut payload = Payload::new();
        if self.items.is_empty() {
            for (key, bytes) in values {
                self.add(&mut payload, &key, bytes, self.default_mode)?;
            }
            return Ok(payload);
        }
        for item in self.items {
            let Some(bytes) = values.remove(&item.key) else {
                if self.optional {
                    continue;
                }
                return Err(ConfigError(format!(
                    "volume {:?}: {} references non-existent config key: {}",
                    self.volume, self.kind, item.key
                )));
            };
            let mode =
                mode_of(self.volume, "items[].mode", item.mode)?.unwrap_or(self.default_mode);
            self.add(&mut payload, &item.path, bytes, mode)?;
        }
        Ok(payload)
    }

    fn add(
        &self,
        payload: &mut Payload,
        path: &str,
        bytes: Vec<u8>,
        mode: u32,
    ) -> Result<(), ConfigError> {
        check_path(self.volume, path)?;
        // As kubelet does with an fsGroup: the group may read what the
        // owner may.
        let mode = if self.fs_group.is_some() {
            mode | 0o440
        } else {
            mode
        };
        if payload
            .insert(path.to_owned(), FileContent { bytes, mode })
            .is_some()
        {
            return Err(ConfigError(format!(
                "volume {:?}: the path {path:?} is given twice",
                self.volume
            )));
        }
        Ok(())
    }
}

/// A mode as given (`None` when not given); Kubernetes allows 0 to 0777.
fn mode_of(volume: &str, field: &str, mode: Option<i32>) -> Result<Option<u32>, ConfigError> {
    match mode {
        None => Ok(None),
        Some(mode) => u32::try_from(mode)
            .ok()
            .filter(|mode| *mode <= 0o777)
            .map(Some)
            .ok_or_else(|| {
                ConfigError(format!(
                    "volume {volume:?}: {field} {mode} is not a file mode between 0 and 0777 (511)"
                ))
            }),
    }
}

/// A file's path in a volume: relative, no `..` element, and not starting
/// with `..` (those names are the writer's own).
fn check_path(volume: &str, path: &str) -> Result<(), ConfigError> {
    let relative = Path::new(path)
        .components()
        .all(|part| matches!(part, Component::Normal(_)));
    if path.is_empty() || !relative || path.starts_with("..") {
        return Err(ConfigError(format!(
            "volume {volume:?}: the file path {path:?} must be relative, without '..', and \
             not start with '..'"
        )));
    }
    Ok(())
}

/// Writes `payload` into the volume directory `dir` as one version, unless
/// that is what it holds already; answers whether anything changed. With
/// `group`, files and directories belong to that group.
pub fn write_atomically(dir: &Path, payload: &Payload, group: Option<u32>) -> io::Result<bool> {
    fs::create_dir_all(dir)?;
    let data = dir.join(DATA_LINK);
    let previous = fs::read_link(&data).ok();
    if previous.is_some() && read_version(&data)? == *payload {
        return Ok(false);
    }
    let stamp = chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S%.9f");
    let version = format!("..{stamp}");
    let version_dir = dir.join(&version);
    fs::create_dir(&version_dir)?;
    own(&version_dir, 0o755, group)?;
    for (path, file) in payload {
        let target = version_dir.join(path);
        if let Some(parent) = target.parent()
            && parent != version_dir
        {
            fs::create_dir_all(parent)?;
            own(parent, 0o755, group)?;
        }
        fs::write(&target, &file.bytes)?;
        own(&target, file.mode, group)?;
    }
    let next = dir.join(DATA_LINK_NEXT);
    match fs::remove_file(&next) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    symlink(&version, &next)?;
    // The swap: one rename, atomic for every reader.
    fs::rename(&next, &data)?;
    let wanted: Vec<String> = payload
        .keys()
        .filter_map(|path| path.split('/').next().map(str::to_owned))
        .collect();
    for name in &wanted {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_LINK).join(name), &link)?;
        }
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !wanted.contains(&name) {
            fs::remove_file(entry.path())?;
        }
    }
    if let Some(previous) = previous
        && previous != Path::new(&version)
    {
        fs::remove_dir_all(dir.join(previous))?;
    }
    Ok(true)
}

/// Sets a file's mode and group.
fn own(path: &Path, mode: u32, group: Option<u32>) -> io::Result<()> {
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// The files of the version `data` links to.
fn read_version(data: &Path) -> io::Result<Payload> {
    let mut payload = Payload::new();
    let mut pending = vec![(data.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{prefix}{name}");
            let metadata = entry.metadata()?;
            if metadata.is_dir() {
                pending.push((entry.path(), format!("{path}/")));
            } else {
                let content = FileContent {
                    bytes: fs::read(entry.path())?,
                    mode: metadata.permissions().mode() & 0o7777,
                };
                payload.insert(path, content);
            }
        }
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_map(pairs: &[(&str, &str)]) -> ConfigMap {
        let mut config_map = ConfigMap::default();
        for (key, value) in pairs {
            config_map.data.insert((*key).into(), (*value).into());
        }
        config_map
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
        }
    }

    fn file(text: &str, mode: u32) -> FileContent {
        FileContent {
            bytes: text.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn every_key_becomes_a_file_with_the_default_modes() {
        let source = ConfigMapVolumeSource {
            name: "settings".into(),
            ..ConfigMapVolumeSource::default()
        };
        let object = config_map(&[("a.conf", "one"), ("b.conf", "two")]);
        let payload = config_map_payload("conf", &source, Some(&object), None).unwrap();
        assert_eq!(
            payload,
            Payload::from([
                ("a.conf".into(), file("one", 0o644)),
                ("b.conf".into(), file("two", 0o644)),
            ])
        );
        let mut secret = Secret::default();
        secret.data.insert("password".into(), "aHVudGVyMg==".into());
        let source = SecretVolumeSource {
            secret_name: "db".into(),
            ..SecretVolumeSource::default()
        };
        let payload = secret_payload("keys", &source, Some(&secret), None).unwrap();
        assert_eq!(
            payload,
            Payload::from([("password".into(), file("hunter2", 0o400))])
        );
        let payload = secret_payload("keys", &source, Some(&secret), Some(2000)).unwrap();
        assert_eq!(payload["password"].mode, 0o440, "the fsGroup may read");
    }

    #[test]
    fn items_pick_keys_paths_and_modes_and_a_missing_key_is_named() {
        let source = ConfigMapVolumeSource {
            name: "settings".into(),
            items: vec![
                item("a.conf", "nested/first.conf", Some(0o600)),
                item("b.conf", "second.conf", None),
            ],
            default_mode: Some(0o640),
            optional: None,
        };
        let object = config_map(&[("a.conf", "one"), ("b.conf", "two"), ("c.conf", "three")]);
        let payload = config_map_payload("conf", &source, Some(&object), None).unwrap();
        assert_eq!(
            payload,
            Payload::from([
                ("nested/first.conf".into(), file("one", 0o600)),
                ("second.conf".into(), file("two", 0o640)),
            ])
        );
        let absent = ConfigMapVolumeSource {
            items: vec![item("absent", "x", None)],
            ..source.clone()
        };
        assert_eq!(
            config_map_payload("conf", &absent, Some(&object), None)
                .unwrap_err()
                .0,
            "volume \"conf\": configmap references non-existent config key: absent"
        );
        let optional = ConfigMapVolumeSource {
            optional: Some(true),
            ..absent
        };
        assert!(
            config_map_payload("conf", &optional, Some(&object), None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_missing_object_is_named_unless_optional_and_bad_paths_and_modes_are_refused() {
        let source = ConfigMapVolumeSource {
            name: "x".into(),
            ..ConfigMapVolumeSource::default()
        };
        assert_eq!(
            config_map_payload("conf", &source, None, None)
                .unwrap_err()
                .0,
            "configmap \"x\" not found"
        );
        let optional = ConfigMapVolumeSource {
            optional: Some(true),
            ..source.clone()
        };
        assert!(
            config_map_payload("conf", &optional, None, None)
                .unwrap()
                .is_empty()
        );
        let secret = SecretVolumeSource {
            secret_name: "tls".into(),
            ..SecretVolumeSource::default()
        };
        assert_eq!(
            secret_payload("keys", &secret, None, None).unwrap_err().0,
            "secret \"tls\" not found"
        );
        let object = config_map(&[("k", "v")]);
        for path in ["../escape", "/abs", "a/../../b", "..data", ""] {
            let escaping = ConfigMapVolumeSource {
                items: vec![item("k", path, None)],
                ..source.clone()
            };
            let error = config_map_payload("conf", &escaping, Some(&object), None).unwrap_err();
            assert!(error.0.contains("must be relative"), "{path}: {error}");
        }
        let odd_mode = ConfigMapVolumeSource {
            default_mode: Some(0o1777),
            ..source
        };
        let error = config_map_payload("conf", &odd_mode, Some(&object), None).unwrap_err();
        assert!(error.0.contains("defaultMode 1023"), "{error}");
    }

    fn read(dir: &Path, path: &str) -> (String, u32) {
        let full = dir.join(path);
        let text = fs::read_to_string(&full).unwrap();
        let mode = fs::metadata(&full).unwrap().permissions().mode() & 0o7777;
        (text, mode)
    }

    #[test]
    fn a_new_version_is_swapped_in_whole_and_the_old_one_goes() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("conf");
        let first = Payload::from([
            ("a.conf".into(), file("one", 0o644)),
            ("nested/b.conf".into(), file("two", 0o600)),
        ]);
        assert!(write_atomically(&dir, &first, None).unwrap());
        assert_eq!(read(&dir, "a.conf"), ("one".into(), 0o644));
        assert_eq!(read(&dir, "nested/b.conf"), ("two".into(), 0o600));
        assert!(
            fs::symlink_metadata(dir.join("a.conf"))
                .unwrap()
                .file_type()
                .is_symlink(),
            "the visible names are links into ..data"
        );
        let first_version = fs::read_link(dir.join("..data")).unwrap();
        assert!(
            !write_atomically(&dir, &first, None).unwrap(),
            "the same files are not written again"
        );
        assert_eq!(fs::read_link(dir.join("..data")).unwrap(), first_version);

        let second = Payload::from([
            ("a.conf".into(), file("uno", 0o644)),
            ("c.conf".into(), file("three", 0o400)),
        ]);
        assert!(write_atomically(&dir, &second, None).unwrap());
        assert_eq!(read(&dir, "a.conf"), ("uno".into(), 0o644));
        assert_eq!(read(&dir, "c.conf"), ("three".into(), 0o400));
        assert!(
            fs::symlink_metadata(dir.join("nested")).is_err(),
            "a name no longer in the volume goes"
        );
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let current = fs::read_link(dir.join("..data")).unwrap();
        assert_ne!(current, first_version);
        let current = current.to_string_lossy().into_owned();
        assert_eq!(
            names,
            [current.as_str(), "..data", "a.conf", "c.conf"],
            "one version remains, and no temporary link"
        );
    }
}
