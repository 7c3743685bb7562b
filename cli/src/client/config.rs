//! The CLI's own file, `~/.config/berth/config`: named contexts, each a
//! server, a tenant and the session signed in to it, and which context is
//! current. It holds credentials, so it is written 0600 in a 0700
//! directory, whole (a temporary file renamed over the old one), so that a
//! crash never leaves half a file.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::CliError;

/// The file's contents.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigFile {
    /// The context commands use unless `--context` names another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    /// Every context, by name.
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// A server, a tenant on it, and the session signed in to it.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Context {
    /// The server's HTTP URL (`http://127.0.0.1:8080`).
    pub server: String,
    /// The tenant commands act in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Who signed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The access token (or an API token given to `berth login --token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// When the access token expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The refresh token that renews the access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("server", &self.server)
            .field("tenant", &self.tenant)
            .field("email", &self.email)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("expires_at", &self.expires_at)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The context a login creates when none is named.
pub const DEFAULT_CONTEXT: &str = "default";

/// Where the file is: `$BERTH_CONFIG`, else
/// `$XDG_CONFIG_HOME/berth/config`, else `~/.config/berth/config`.
pub fn path() -> Result<PathBuf, CliError> {
    if let Some(path) = std::env::var_os("BERTH_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(dir).join("berth/config"));
    }
    match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config/berth/config")),
        None => Err(CliError::Failed(
            "cannot find the CLI's config file: neither HOME nor BERTH_CONFIG is set".into(),
        )),
    }
}

impl ConfigFile {
    /// Reads the file; an absent file is an empty one.
    pub fn load() -> Result<(PathBuf, ConfigFile), CliError> {
        let path = path()?;
        let file = Self::read(&path)?;
        Ok((path, file))
    }

    fn read(path: &Path) -> Result<ConfigFile, CliError> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Ok(ConfigFile::default()),
            Ok(text) => yaml_serde::from_str(&text).map_err(|e| CliError::File {
                path: path.display().to_string(),
                reason: format!("not a Berth CLI config: {e}"),
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
            Err(error) => Err(CliError::File {
                path: path.display().to_string(),
                reason: error.to_string(),
            }),
        }
    }

    /// Writes the file whole, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), CliError> {
        let failed = |error: std::io::Error| CliError::File {
            path: path.display().to_string(),
            reason: error.to_string(),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(failed)?;
        let text = yaml_serde::to_string(self).map_err(|e| CliError::Failed(e.to_string()))?;
        let temporary = dir.join(format!(
            ".{}.{}",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("config"),
            std::process::id()
        ));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(failed)?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(failed)?;
        std::fs::rename(&temporary, path).map_err(failed)
    }

    /// The context named `name`, else the current one.
    pub fn context(&self, name: Option<&str>) -> Option<(&str, &Context)> {
        let name = name.or(self.current_context.as_deref())?;
        self.contexts
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_written_whole_and_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("berth/config");
        let mut file = ConfigFile::default();
        file.contexts.insert(
            "local".into(),
            Context {
                server: "http://127.0.0.1:8080".into(),
                tenant: Some("acme".into()),
                token: Some("secret".into()),
                ..Context::default()
            },
        );
        file.current_context = Some("local".into());
        file.save(&path).expect("saving");
        let mode = std::fs::metadata(&path)
            .expect("the file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let read = ConfigFile::read(&path).expect("reading");
        let (name, context) = read.context(None).expect("the current context");
        assert_eq!(name, "local");
        assert_eq!(context.tenant.as_deref(), Some("acme"));
        assert!(!format!("{context:?}").contains("secret"));
    }

    #[test]
    fn a_file_that_is_not_a_config_names_itself_and_the_problem() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("config");
        std::fs::write(&path, "contexts: [1, 2]\n").expect("writing");
        let error = ConfigFile::read(&path).expect_err("refused").to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("contexts"), "{error}");
    }
}
