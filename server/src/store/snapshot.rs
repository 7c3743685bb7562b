//! Snapshots: the whole store in one file, read in one transaction, and a
//! new store made from one. Berth's own format: a first line naming it,
//! then a JSON line per row of the revision log (every revision since the
//! last compaction), the live keys, the leases, and the accounts (users,
//! tenants, memberships, API tokens, node credentials and the key that
//! signs access tokens); padded with newlines to a multiple of 512 bytes
//! and ended by the SHA-256 of everything before it, as etcd ends its
//! snapshots, so that a file cut short or changed is refused.

use sha2::{Digest, Sha256};

use super::Store;
use super::db::Db;
use super::error::{StoreError, StoreResult};

/// The first line of every snapshot.
/// (Format 2 added where each row sits in its revision: `prev_sub`,
/// `mod_sub`.)
pub const SNAPSHOT_MAGIC: &[u8] = b"berth-snapshot 2\n";

/// What a restore brought back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The store's revision.
    pub revision: i64,
    /// The rows written.
    pub rows: usize,
}

impl Store {
    /// The whole store as a snapshot file, read as one consistent view
    /// while writes go on.
    pub async fn snapshot(&self) -> StoreResult<Vec<u8>> {
        let mut content = SNAPSHOT_MAGIC.to_vec();
        content.extend(self.db()?.dump().await?);
        while !content.len().is_multiple_of(512) {
            content.push(b'\n');
        }
        let digest = Sha256::digest(&content);
        content.extend_from_slice(&digest);
        Ok(content)
    }
}

/// The rows of a snapshot file, once its trailer and first line check out.
pub fn snapshot_rows(file: &[u8]) -> StoreResult<&[u8]> {
    let invalid =
        |reason: &str| StoreError::InvalidRequest(format!("not a Berth snapshot: {reason}"));
    if file.len() < SNAPSHOT_MAGIC.len() + 32 {
        return Err(invalid("too short"));
    }
    let (content, trailer) = file.split_at(file.len() - 32);
    if Sha256::digest(content)[..] != *trailer {
        return Err(invalid(
            "its SHA-256 does not match its trailer (cut short or changed)",
        ));
    }
    if let Some(rest) = content.strip_prefix(SNAPSHOT_MAGIC) {
        return Ok(rest);
    }
    let first_line = content.split(|b| *b == b'\n').next().unwrap_or_default();
    Err(match first_line.strip_prefix(b"berth-snapshot ") {
        Some(format) => invalid(&format!(
            "it is in format {}, and this Berth reads format 2",
            String::from_utf8_lossy(format)
        )),
        None => invalid("it does not start with \"berth-snapshot 2\""),
    })
}

/// Makes the store at `url` (which must be new: no revision, user or
/// tenant yet) hold what the snapshot `file` holds, all or nothing.
pub async fn restore(url: &str, file: &[u8]) -> StoreResult<Restored> {
    let rows = snapshot_rows(file)?;
    let db = Db::connect(url, 2).await?;
    let result = async {
        if !db.is_empty().await? {
            return Err(StoreError::Conflict {
                key: url.to_owned(),
                reason:
                    "the store already holds data; restore into a new data directory or database"
                        .into(),
            });
        }
        let rows = db.load(rows).await?;
        let revision = db.meta().await?.revision;
        Ok(Restored { revision, rows })
    }
    .await;
    db.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_snapshot_restores_into_a_new_store_and_a_damaged_one_is_refused() {
        let (_dir, store) = super::super::temporary().await;
        store
            .put(crate::store::types::PutRequest {
                key: b"/a".to_vec(),
                value: b"1".to_vec(),
                lease: 0,
                prev_kv: false,
                ignore_value: false,
                ignore_lease: false,
                lease_owner: None,
            })
            .await
            .expect("a put");
        let file = store.snapshot().await.expect("a snapshot");
        assert_eq!(file.len() % 512, 32, "etcd's trailer rule");
        let target = tempfile::tempdir().expect("a directory");
        let url = format!("sqlite://{}", target.path().join("berth.db").display());
        let restored = restore(&url, &file).await.expect("restored");
        assert_eq!(
            restored.revision,
            store.current_revision().await.expect("a revision")
        );
        let again = restore(&url, &file)
            .await
            .expect_err("not into a store with data");
        assert!(again.to_string().contains("already holds data"), "{again}");

        let mut damaged = file.clone();
        damaged[40] ^= 1;
        let other = tempfile::tempdir().expect("a directory");
        let url = format!("sqlite://{}", other.path().join("berth.db").display());
        let refused = restore(&url, &damaged).await.expect_err("refused");
        assert!(refused.to_string().contains("SHA-256"), "{refused}");
        store.close().await;
    }
}
