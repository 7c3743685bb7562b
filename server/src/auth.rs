//! Who is calling and what they may touch: password hashes (argon2id),
//! access tokens (JWT, HS256, signed with the store's shared secret), the
//! platform admin created at first start, and the one decision over keys.

use std::path::Path;
use std::time::Duration;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use crate::store::identity::User;
use crate::store::types::{KeyRange, prefix_end};
use crate::store::{Store, StoreError};

/// How long an access token is good for unless `--access-token-ttl` says
/// otherwise.
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// Why a caller was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong email or password (never says which).
    #[error("authentication failed, invalid user ID or password")]
    BadCredentials,
    /// The token is missing, malformed, expired, of another algorithm, signed
    /// with another key, or names a user who no longer exists.
    #[error("invalid auth token: {0}")]
    InvalidToken(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// A password's argon2id hash, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| AuthError::Hashing(e.to_string()))
}

/// Whether `password` matches `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// What an access token says.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Claims {
    /// The user's id.
    sub: i64,
    /// Expiry, seconds since the epoch.
    exp: u64,
    /// Issued at, seconds since the epoch.
    iat: u64,
}

/// Issues and checks access tokens.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl Tokens {
    /// Token handling with the store's shared signing secret.
    pub async fn from_store(store: &Store) -> Result<Tokens, AuthError> {
        let secret = store.signing_secret().await?;
        Ok(Tokens {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            ttl: ACCESS_TOKEN_TTL,
        })
    }

    /// The same, issuing tokens good for `ttl`.
    pub fn with_ttl(self, ttl: Duration) -> Tokens {
        Tokens { ttl, ..self }
    }

    /// How long a token [`Tokens::issue`] makes is good for.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `user`, good for [`Tokens::ttl`].
    pub fn issue(&self, user: &User) -> Result<String, AuthError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            sub: user.id,
            iat: now,
            exp: now + self.ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))
    }

    /// The user id a token names, if its signature, algorithm and expiry
    /// hold. Only HS256 is accepted (never `none`).
    pub fn verify(&self, token: &str) -> Result<i64, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims.sub)
            .map_err(|e| AuthError::InvalidToken(token_problem(&e)))
    }
}

/// Why a token was refused, in words a person acts on.
fn token_problem(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "the token has expired; sign in again".into(),
        ErrorKind::InvalidSignature => "the token was not issued by this server".into(),
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => "it is not a token this server issues".into(),
        ErrorKind::InvalidAlgorithm => "the token is signed with another algorithm".into(),
        _ => error.to_string(),
    }
}

/// The user an email and password name. Callers go through
/// [`crate::sign_in::sign_in`], which throttles failures.
pub(crate) async fn authenticate(
    store: &Store,
    email: &str,
    password: &str,
) -> Result<User, AuthError> {
    let user = store.user_by_email(email).await?;
    // Hash even for an unknown email, so the answer's timing does not tell
    // whether the account exists.
    let hash = user
        .as_ref()
        .map_or(unknown_user_hash(), |u| u.password_hash.as_str());
    let matches = verify_password(password, hash);
    match user {
        Some(user) if matches => Ok(user),
        _ => Err(AuthError::BadCredentials),
    }
}

/// The hash of a random password nobody knows, checked against for unknown
/// emails.
fn unknown_user_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&generate_password()).unwrap_or_default())
}

/// A role in a tenant, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads everything in the tenant but secret values.
    Viewer,
    /// Also writes workloads, services, configmaps and secrets.
    Editor,
    /// Also manages members and API tokens.
    Admin,
    /// Also deletes the tenant.
    Owner,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Editor, Role::Admin, Role::Owner];

    /// The role's name, as memberships and tokens store it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// The role a membership row names.
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// Reading or changing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Range, watch, compare.
    Read,
    /// Put, delete.
    Write,
}

/// The caller, as loaded for one request.
#[derive(Clone, Debug)]
pub struct Subject {
    /// Who.
    pub user_id: i64,
    /// Their email, for the audit log.
    pub email: String,
    /// The API token the request came with, if it did not come with a
    /// session: such a subject acts only in the token's tenant.
    pub api_token: Option<i64>,
    /// Whether they administer the platform (every key, every tenant).
    pub platform_admin: bool,
    /// Their tenants and roles.
    pub tenants: Vec<(String, Role)>,
}

impl Subject {
    /// Loads the user a verified token names; a deleted user is refused.
    pub async fn load(store: &Store, user_id: i64) -> Result<Subject, AuthError> {
        let user = store
            .user_by_id(user_id)
            .await?
            .ok_or_else(|| AuthError::InvalidToken("the token's user no longer exists".into()))?;
        let tenants = store
            .memberships(user.id)
            .await?
            .into_iter()
            .filter_map(|m| Role::parse(&m.role).map(|role| (m.tenant, role)))
            .collect();
        Ok(Subject {
            user_id: user.id,
            email: user.email,
            api_token: None,
            platform_admin: user.platform_admin,
            tenants,
        })
    }

    /// The subject's role in `tenant`, if they are a member.
    pub fn role_in(&self, tenant: &str) -> Option<Role> {
        self.tenants
            .iter()
            .find(|(t, _)| t == tenant)
            .map(|(_, role)| *role)
    }

    /// Whether the etcd API may touch `range`: a platform admin reaches
    /// every key; anyone else only ranges that lie wholly inside
    /// `/registry/{plural}/{tenant}/`, as [`crate::authz::authorize`]
    /// decides for that kind and tenant.
    pub fn may(&self, access: Access, range: &KeyRange) -> bool {
        if self.platform_admin {
            return true;
        }
        let Some(prefix) = crate::keys::tenant_prefix(&range.key) else {
            return false;
        };
        let target = berth_api::objects::Kind::from_plural(&prefix.plural)
            .map_or(crate::authz::Target::RawKeys, crate::authz::Target::Object);
        let verb = match access {
            Access::Read => crate::authz::Verb::Get,
            Access::Write => crate::authz::Verb::Update,
        };
        if !crate::authz::authorize(self, Some(&prefix.tenant), target, verb).allowed() {
            return false;
        }
        let end = prefix_end(prefix.prefix.as_bytes());
        match range.end_bound() {
            Some(range_end) => range_end.as_slice() <= end.as_slice(),
            None => false,
        }
    }
}

/// What every API token starts with, so that it is told apart from a JWT
/// (and found by secret scanners).
pub const API_TOKEN_PREFIX: &str = "berth_";

/// A new random secret for an API or refresh token.
pub fn new_token_secret() -> String {
    hex::encode((0..32).map(|_| rand::random::<u8>()).collect::<Vec<u8>>())
}

/// How token secrets are stored: SHA-256, hex. (They are random and long, so
/// a fast hash is enough; passwords get argon2id.)
pub fn hash_token_secret(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// The caller a bearer token names: an API token (`berth_…`) or an access
/// token (JWT).
pub async fn subject_for_bearer(
    store: &Store,
    tokens: &Tokens,
    bearer: &str,
) -> Result<Subject, AuthError> {
    if !bearer.starts_with(API_TOKEN_PREFIX) {
        let user_id = tokens.verify(bearer)?;
        return Subject::load(store, user_id).await;
    }
    let token = store
        .live_api_token(&hash_token_secret(bearer))
        .await?
        .ok_or_else(|| {
            AuthError::InvalidToken("the API token is unknown, expired or revoked".into())
        })?;
    let user = Subject::load(store, token.user_id).await?;
    // A token never outranks its maker as they are now: a maker who lost
    // their role takes the token's power with them.
    let maker_role = if user.platform_admin {
        Some(Role::Owner)
    } else {
        user.role_in(&token.tenant)
    };
    let role = Role::parse(&token.role)
        .zip(maker_role)
        .map(|(token_role, maker_role)| token_role.min(maker_role))
        .ok_or_else(|| {
            AuthError::InvalidToken(format!(
                "the API token's user is no longer a member of tenant {}",
                token.tenant
            ))
        })?;
    Ok(Subject {
        user_id: user.user_id,
        email: user.email,
        api_token: Some(token.id),
        platform_admin: false,
        tenants: vec![(token.tenant, role)],
    })
}

/// The tenant whose `/registry/{kind}/{tenant}/` prefix `key` lies in.
pub fn key_tenant(key: &[u8]) -> Option<String> {
    crate::keys::tenant_prefix(key).map(|prefix| prefix.tenant)
}

/// Creates the platform admin at first start. With no password given, one is
/// generated, written to `<data-dir>/admin-password` (mode 0600) and
/// returned so it can be shown once. A restart never changes an existing
/// admin.
pub async fn bootstrap_admin(
    store: &Store,
    email: &str,
    password: Option<&str>,
    data_dir: &Path,
) -> Result<Option<String>, AuthError> {
    if store.platform_admin_exists().await? {
        return Ok(None);
    }
    let generated = password.is_none().then(generate_password);
    let password = password.or(generated.as_deref()).unwrap_or_default();
    let hash = hash_password(password)?;
    match store.create_user(email, &hash, true).await {
        Ok(_) => {}
        // Another server process on the same database got there first.
        Err(StoreError::Conflict { .. }) => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    if let Some(generated) = &generated {
        write_private(&data_dir.join("admin-password"), generated)
            .map_err(|e| AuthError::Hashing(format!("writing admin-password: {e}")))?;
    }
    Ok(generated)
}

fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..24)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Writes `contents` to a new file only its owner can read.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member_of(tenant: &str, role: Role) -> Subject {
        Subject {
            user_id: 1,
            email: "member@example.com".into(),
            api_token: None,
            platform_admin: false,
            tenants: vec![(tenant.into(), role)],
        }
    }

    #[test]
    fn a_member_reaches_only_ranges_inside_their_tenants_prefixes() {
        let editor = member_of("acme", Role::Editor);
        assert!(editor.may(Access::Write, &KeyRange::single("/registry/pods/acme/web")));
        assert!(editor.may(Access::Read, &KeyRange::prefix("/registry/pods/acme/")));
        assert!(!editor.may(Access::Read, &KeyRange::single("/registry/pods/globex/web")));
        // A prefix without the trailing slash would cover "acme2" too.
        assert!(!editor.may(Access::Read, &KeyRange::prefix("/registry/pods/acme")));
        assert!(!editor.may(Access::Read, &KeyRange::prefix("/registry/")));
        assert!(!editor.may(
            Access::Read,
            &KeyRange::between("/registry/pods/acme/a", vec![0])
        ));
        assert!(!editor.may(Access::Read, &KeyRange::single("/other")));
    }

    #[test]
    fn viewers_read_and_editors_write() {
        let viewer = member_of("acme", Role::Viewer);
        assert!(viewer.may(Access::Read, &KeyRange::single("/registry/pods/acme/web")));
        assert!(!viewer.may(Access::Write, &KeyRange::single("/registry/pods/acme/web")));
    }

    #[test]
    fn a_platform_admin_reaches_every_key() {
        let admin = Subject {
            user_id: 1,
            email: "admin@example.com".into(),
            api_token: None,
            platform_admin: true,
            tenants: vec![],
        };
        assert!(admin.may(Access::Write, &KeyRange::between(vec![0], vec![0])));
    }

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(unknown_user_hash().starts_with("$argon2id$"));
        assert!(!verify_password("anything", unknown_user_hash()));
    }
}
