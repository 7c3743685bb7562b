//! Join tokens and node credentials: the bootstrap join token in
//! `<data-dir>/node-token`, issuing a credential at registration, and
//! resolving a presented credential to its node (with a short cache, since a
//! thousand nodes heartbeat every few seconds).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::{hash_token_secret, new_token_secret};
use crate::store::{Store, StoreError};

/// What every node credential starts with.
pub const NODE_CREDENTIAL_PREFIX: &str = "bnode_";

/// What every join token made by the server starts with.
pub const JOIN_TOKEN_PREFIX: &str = "bjoin_";

/// The file in the data dir that holds the bootstrap join token.
pub const NODE_TOKEN_FILE: &str = "node-token";

/// How long a resolved credential is trusted without asking the database.
/// A credential replaced on another server replica keeps working here for
/// at most this long.
const CACHE_TTL: Duration = Duration::from_secs(10);

/// More cached credentials than this and the cache starts over.
const CACHE_LIMIT: usize = 100_000;

/// Why the bootstrap join token could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum JoinTokenError {
    /// Reading or writing `<data-dir>/node-token` failed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Makes sure `<data-dir>/node-token` holds a join token the database
/// accepts: at first start one is generated and written (mode 0600); on
/// every start its hash is stored (idempotently), so that every server
/// replica on the same database accepts it.
pub async fn ensure_bootstrap_join_token(
    store: &Store,
    data_dir: &Path,
) -> Result<(), JoinTokenError> {
    let path = data_dir.join(NODE_TOKEN_FILE);
    let file_error = |source| JoinTokenError::File {
        path: path.display().to_string(),
        source,
    };
    let token = match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
        Ok(_) => return Err(file_error(std::io::Error::other("the file is empty"))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let token = new_join_token();
            write_private(&path, &token).map_err(file_error)?;
            token
        }
        Err(error) => return Err(file_error(error)),
    };
    store
        .create_join_token(&hash_token_secret(&token), "bootstrap", None)
        .await?;
    Ok(())
}

/// A new join token's secret (`bjoin_…`); store its hash with
/// [`Store::create_join_token`].
pub fn new_join_token() -> String {
    format!("{JOIN_TOKEN_PREFIX}{}", new_token_secret())
}

/// Creates a join token named `name` that works until `expires_at_ms` (if
/// given): answers the secret, shown once, and its stored record. For the
/// platform admin's endpoint.
pub async fn create_join_token(
    store: &Store,
    name: &str,
    expires_at_ms: Option<i64>,
) -> Result<(String, crate::store::nodes::JoinToken), StoreError> {
    let secret = new_join_token();
    let record = store
        .create_join_token(&hash_token_secret(&secret), name, expires_at_ms)
        .await?;
    Ok((secret, record))
}

/// Writes `contents` to a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")
}

/// Node credentials: issuing and resolving them.
#[derive(Clone)]
pub struct Credentials {
    store: Store,
    /// Credential hash → (node, when it was looked up).
    cache: Arc<Mutex<HashMap<String, (String, Instant)>>>,
}

impl Credentials {
    /// Credentials kept in `store`.
    pub fn new(store: Store) -> Credentials {
        Credentials {
            store,
            cache: Arc::default(),
        }
    }

    /// Whether `join_token` is a live join token.
    pub async fn join_token_is_live(&self, join_token: &str) -> Result<bool, StoreError> {
        if join_token.is_empty() {
            return Ok(false);
        }
        self.store
            .join_token_is_live(&hash_token_secret(join_token))
            .await
    }

    /// Issues a new credential for `node`, replacing its earlier one.
    pub async fn issue(&self, node: &str) -> Result<String, StoreError> {
        let secret = format!("{NODE_CREDENTIAL_PREFIX}{}", new_token_secret());
        self.store
            .set_node_credential(node, &hash_token_secret(&secret))
            .await?;
        self.lock().retain(|_, (cached, _)| cached != node);
        Ok(secret)
    }

    /// The node a credential belongs to; `None` when it is not a current
    /// node credential.
    pub async fn node_of(&self, credential: &str) -> Result<Option<String>, StoreError> {
        if !credential.starts_with(NODE_CREDENTIAL_PREFIX) {
            return Ok(None);
        }
        let hash = hash_token_secret(credential);
        if let Some((node, at)) = self.lock().get(&hash)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(Some(node.clone()));
        }
        let node = self.store.node_for_credential(&hash).await?;
        let mut cache = self.lock();
        match &node {
            Some(node) => {
                if cache.len() >= CACHE_LIMIT {
                    cache.clear();
                }
                cache.insert(hash, (node.clone(), Instant::now()));
            }
            None => {
                cache.remove(&hash);
            }
        }
        Ok(node)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}
