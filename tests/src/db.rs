//! A fresh database per test, on either backend.

use berth_server::store::Store;
use sqlx::Connection;

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestBackend {
    /// An SQLite file in a temp directory.
    Sqlite,
    /// A new database on the PostgreSQL server named by `DATABASE_URL`.
    Postgres,
}

/// A database that lives as long as the value.
pub struct TestDb {
    /// The database URL.
    pub url: String,
    // Keeps the SQLite file's directory alive.
    _dir: Option<tempfile::TempDir>,
}

/// The PostgreSQL server the tests use. Its absence fails the test: the test
/// command always provides it, so a skip would only hide a broken setup.
pub fn postgres_admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: the PostgreSQL half of the tests needs a server. \
             Run the tests through scripts/test, which starts one."
        )
    })
}

impl TestDb {
    /// A new, empty database.
    pub async fn new(backend: TestBackend) -> TestDb {
        match backend {
            TestBackend::Sqlite => {
                let dir = tempfile::tempdir().expect("creating a temp dir");
                let url = format!("sqlite://{}", dir.path().join("berth.db").display());
                TestDb {
                    url,
                    _dir: Some(dir),
                }
            }
            TestBackend::Postgres => TestDb {
                url: fresh_postgres_database().await,
                _dir: None,
            },
        }
    }

    /// Opens the store on this database, with its own metrics registry.
    pub async fn open(&self) -> Store {
        Store::open(&self.url, &prometheus::Registry::new())
            .await
            .expect("opening the store")
    }
}

/// Creates an empty database on the `DATABASE_URL` server; returns its URL.
pub async fn fresh_postgres_database() -> String {
    let admin = postgres_admin_url();
    let name = format!("berth_test_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("connecting to DATABASE_URL ({admin}): {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("creating a test database");
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

/// Creates a user with `password` (hashed as the server hashes it) and, when
/// given, a `(tenant, role)` membership; the tenant must exist.
pub async fn create_user(
    store: &Store,
    email: &str,
    password: &str,
    membership: Option<(&str, &str)>,
) -> berth_server::store::identity::User {
    let hash = berth_server::auth::hash_password(password).expect("hashing a password");
    let user = store
        .create_user(email, &hash, false)
        .await
        .expect("creating a user");
    if let Some((tenant, role)) = membership {
        store
            .set_membership(tenant, user.id, role)
            .await
            .expect("adding a membership");
    }
    user
}
