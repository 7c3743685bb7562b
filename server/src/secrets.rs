//! Secret values sealed at rest: the server's AES-256-GCM key, kept in a file
//! beside the database, and the sealed-value format the store holds instead
//! of plaintext.
//!
//! A sealed value reads `berth:aes256gcm:v1:` followed by the standard base64
//! of a 12-byte random nonce, the ciphertext and the 16-byte tag. The caller's
//! context (the object's storage key and the data key's name) is the
//! associated data, so a sealed value copied to another object or key does
//! not open.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// What every sealed value starts with; the version leaves room for another
/// algorithm or key later.
pub const SEALED_PREFIX: &str = "berth:aes256gcm:v1:";

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// What a key file must hold, for error messages.
const KEY_FILE_FORMATS: &str =
    "32 raw bytes, 64 hex characters, or the standard base64 of 32 bytes";

/// How long a server waits for another process that has just created the key
/// file to finish writing it.
const KEY_FILE_WRITE_WAIT: Duration = Duration::from_secs(2);

/// Everything loading a key or opening a sealed value can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The key file exists but could not be read.
    #[error("reading the encryption key file {path}: {source}")]
    KeyFileUnreadable {
        /// The key file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The key file could not be created.
    #[error("creating the encryption key file {path}: {source}")]
    KeyFileNotCreated {
        /// The key file.
        path: PathBuf,
        /// Why creating failed.
        source: std::io::Error,
    },
    /// The key file holds something other than a key.
    #[error("the encryption key file {path} holds {found}; expected {KEY_FILE_FORMATS}")]
    KeyFileInvalid {
        /// The key file.
        path: PathBuf,
        /// What it holds instead, without its content.
        found: String,
    },
    /// The value does not start with [`SEALED_PREFIX`]: it is plaintext, or
    /// sealed in a format this server does not know.
    #[error("the value is not sealed: it does not start with {SEALED_PREFIX:?}")]
    NotSealed,
    /// The part after the prefix is not standard base64.
    #[error("the sealed value is not valid base64: {0}")]
    BadEncoding(#[from] base64::DecodeError),
    /// The decoded value cannot even hold a nonce and a tag.
    #[error(
        "the sealed value is {len} bytes long, shorter than the {} bytes of a nonce and a tag",
        NONCE_LEN + TAG_LEN
    )]
    TooShort {
        /// The decoded length.
        len: usize,
    },
    /// The tag did not match: another key, another context, or a changed
    /// value.
    #[error(
        "the sealed value failed authentication: it was sealed with another key or for another \
         object, or it was altered"
    )]
    AuthenticationFailed,
}

/// The key that seals and opens secret values.
#[derive(Clone)]
pub struct EncryptionKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for EncryptionKey {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(<redacted>)")
    }
}

impl EncryptionKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> EncryptionKey {
        EncryptionKey {
            cipher: Aes256Gcm::new(&bytes.into()),
        }
    }

    /// Reads the key from `path`, or, when there is no such file, makes a
    /// random key and writes it there (base64, readable by the owner only).
    /// When several servers start at once, the first to create the file wins
    /// and the others read its key.
    pub fn load_or_create(path: &Path) -> Result<EncryptionKey, SecretsError> {
        match std::fs::read(path) {
            Ok(content) => return parse_key_file(path, &content),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SecretsError::KeyFileUnreadable {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let bytes: [u8; KEY_LEN] = rand::random();
        match create_key_file(path, &bytes) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "created a new encryption key");
                Ok(EncryptionKey::from_bytes(bytes))
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => read_key_file_being_written(path),
            Err(source) => Err(SecretsError::KeyFileNotCreated {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Seals `plaintext` for `context`; only [`open`](Self::open) with the
    /// same key and the same context gives it back. Sealing the same
    /// plaintext twice gives different values.
    ///
    /// # Panics
    ///
    /// When `plaintext` is larger than AES-GCM allows (64 GiB).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let payload = Payload {
            msg: plaintext,
            aad: context.as_bytes(),
        };
        let ciphertext = match self.cipher.encrypt(&Nonce::from(nonce), payload) {
            Ok(ciphertext) => ciphertext,
            // AES-GCM refuses only plaintexts over 64 GiB, far past any value
            // the store accepts.
            Err(_) => panic!("AES-GCM refused a plaintext of {} bytes", plaintext.len()),
        };
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", BASE64.encode(sealed))
    }

    /// Opens a value that [`seal`](Self::seal) made with this key and
    /// `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, SecretsError> {
        let encoded = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SecretsError::NotSealed)?;
        let decoded = BASE64.decode(encoded)?;
        if decoded.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretsError::TooShort { len: decoded.len() });
        }
        let (nonce, ciphertext) = decoded.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| SecretsError::TooShort { len: decoded.len() })?;
        let payload = Payload {
            msg: ciphertext,
            aad: context.as_bytes(),
        };
        self.cipher
            .decrypt(&Nonce::from(nonce), payload)
            .map_err(|_| SecretsError::AuthenticationFailed)
    }
}

/// Whether `value` is in the sealed format (it may still fail to open).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

/// Creates the key file, failing with `AlreadyExists` rather than replacing
/// a key another process has just written.
fn create_key_file(path: &Path, bytes: &[u8; KEY_LEN]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // One write, so a process that loses the race sees the whole key soon.
    file.write_all(format!("{}\n", BASE64.encode(bytes)).as_bytes())?;
    file.sync_all()
}

/// Reads a key file another process has just created, giving it a moment to
/// finish writing: between its create and its write the file is empty.
fn read_key_file_being_written(path: &Path) -> Result<EncryptionKey, SecretsError> {
    let deadline = std::time::Instant::now() + KEY_FILE_WRITE_WAIT;
    loop {
        let content = std::fs::read(path).map_err(|source| SecretsError::KeyFileUnreadable {
            path: path.to_owned(),
            source,
        })?;
        match parse_key_file(path, &content) {
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

/// The key in a key file's content, in any of the accepted forms.
fn parse_key_file(path: &Path, content: &[u8]) -> Result<EncryptionKey, SecretsError> {
    // Raw bytes first: 32 random bytes may well look like text with a
    // trailing space, which trimming would cut.
    if let Ok(bytes) = <[u8; KEY_LEN]>::try_from(content) {
        warn_if_readable_by_others(path);
        return Ok(EncryptionKey::from_bytes(bytes));
    }
    let invalid = |found: String| SecretsError::KeyFileInvalid {
        path: path.to_owned(),
        found,
    };
    let text = std::str::from_utf8(content)
        .map_err(|_| invalid(format!("{} bytes that are not a key", content.len())))?
        .trim();
    let decoded = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|e| invalid(format!("invalid hex ({e})")))?
    } else {
        BASE64.decode(text).map_err(|_| {
            invalid(format!(
                "{} characters that are neither hex nor base64",
                text.len()
            ))
        })?
    };
    let bytes = <[u8; KEY_LEN]>::try_from(decoded.as_slice())
        .map_err(|_| invalid(format!("base64 of {} bytes", decoded.len())))?;
    warn_if_readable_by_others(path);
    Ok(EncryptionKey::from_bytes(bytes))
}

/// A key others can read is not secret; say so, but keep serving (the
/// operator may have reasons, such as a mounted secret volume).
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the encryption key file is readable by others than its owner"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> EncryptionKey {
        EncryptionKey::from_bytes([7; KEY_LEN])
    }

    #[test]
    fn a_sealed_value_opens_to_the_plaintext() {
        let sealed = key().seal(b"hunter2", "/registry/secrets/t/db#password");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("hunter2"));
        let opened = key()
            .open(&sealed, "/registry/secrets/t/db#password")
            .unwrap();
        assert_eq!(opened, b"hunter2");
    }

    #[test]
    fn an_empty_plaintext_round_trips() {
        let sealed = key().seal(b"", "ctx");
        assert_eq!(key().open(&sealed, "ctx").unwrap(), b"");
    }

    #[test]
    fn a_sealed_value_does_not_open_for_another_context() {
        let sealed = key().seal(b"hunter2", "/registry/secrets/t/db#password");
        let error = key()
            .open(&sealed, "/registry/secrets/t/other#password")
            .unwrap_err();
        assert!(matches!(error, SecretsError::AuthenticationFailed));
    }

    #[test]
    fn a_sealed_value_does_not_open_with_another_key() {
        let sealed = key().seal(b"hunter2", "ctx");
        let other = EncryptionKey::from_bytes([8; KEY_LEN]);
        assert!(matches!(
            other.open(&sealed, "ctx"),
            Err(SecretsError::AuthenticationFailed)
        ));
    }

    #[test]
    fn a_tampered_sealed_value_fails_authentication() {
        let sealed = key().seal(b"hunter2", "ctx");
        let mut bytes = BASE64
            .decode(sealed.strip_prefix(SEALED_PREFIX).unwrap())
            .unwrap();
        bytes[NONCE_LEN] ^= 1;
        let tampered = format!("{SEALED_PREFIX}{}", BASE64.encode(&bytes));
        assert!(matches!(
            key().open(&tampered, "ctx"),
            Err(SecretsError::AuthenticationFailed)
        ));
    }

    #[test]
    fn sealing_the_same_plaintext_twice_gives_different_values() {
        let first = key().seal(b"hunter2", "ctx");
        let second = key().seal(b"hunter2", "ctx");
        assert_ne!(first, second);
    }

    #[test]
    fn opening_refuses_values_that_are_not_sealed() {
        assert!(matches!(
            key().open("hunter2", "ctx"),
            Err(SecretsError::NotSealed)
        ));
        assert!(matches!(
            key().open("berth:aes256gcm:v2:AAAA", "ctx"),
            Err(SecretsError::NotSealed)
        ));
        assert!(matches!(
            key().open(&format!("{SEALED_PREFIX}not base64!"), "ctx"),
            Err(SecretsError::BadEncoding(_))
        ));
        assert!(matches!(
            key().open(&format!("{SEALED_PREFIX}{}", BASE64.encode([0; 27])), "ctx"),
            Err(SecretsError::TooShort { len: 27 })
        ));
        assert!(!is_sealed("hunter2"));
    }

    #[test]
    fn debug_does_not_show_the_key() {
        assert_eq!(format!("{:?}", key()), "EncryptionKey(<redacted>)");
    }

    #[cfg(unix)]
    #[test]
    fn a_created_key_file_is_private_and_reloads_to_the_same_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("encryption.key");
        let created = EncryptionKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let content = std::fs::read_to_string(&path).unwrap();
        assert!(content.ends_with('\n'));
        assert_eq!(BASE64.decode(content.trim()).unwrap().len(), KEY_LEN);

        let reloaded = EncryptionKey::load_or_create(&path).unwrap();
        let sealed = created.seal(b"hunter2", "ctx");
        assert_eq!(reloaded.open(&sealed, "ctx").unwrap(), b"hunter2");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
    }

    #[test]
    fn a_key_file_in_raw_or_hex_form_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let sealed = EncryptionKey::from_bytes([0xab; KEY_LEN]).seal(b"hunter2", "ctx");
        for (name, content) in [
            ("raw", vec![0xab; KEY_LEN]),
            ("hex", format!("{}\n", "ab".repeat(KEY_LEN)).into_bytes()),
            (
                "b64",
                format!("  {}\n", BASE64.encode([0xab; KEY_LEN])).into_bytes(),
            ),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            let key = EncryptionKey::load_or_create(&path).unwrap();
            assert_eq!(key.open(&sealed, "ctx").unwrap(), b"hunter2", "{name}");
        }
    }

    #[test]
    fn a_key_file_of_31_bytes_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.key");
        std::fs::write(&path, [1; 31]).unwrap();
        let error = EncryptionKey::load_or_create(&path).unwrap_err();
        assert!(matches!(error, SecretsError::KeyFileInvalid { .. }));
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("32 raw bytes"), "{message}");
    }

    #[test]
    fn base64_of_the_wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.key");
        std::fs::write(&path, BASE64.encode([1; 16])).unwrap();
        let message = EncryptionKey::load_or_create(&path)
            .unwrap_err()
            .to_string();
        assert!(message.contains("base64 of 16 bytes"), "{message}");
    }
}
