//! Tenants, their members and API tokens: `berth tenant create|list|use`,
//! `berth member add|list|remove`, `berth token create|list|revoke`.

use reqwest::Method;
use serde_json::{Value, json};

use super::GlobalArgs;
use super::api::{Body, Client};
use super::config::ConfigFile;
use super::error::CliError;
use super::output::table;
use super::resources::percent;

/// `berth tenant`'s verbs.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (you become its owner); it becomes the context's
    /// tenant if the context has none.
    Create {
        /// Its name (lowercase letters, digits and '-').
        name: String,
    },
    /// List the tenants you belong to; `*` marks the context's.
    List,
    /// Act in this tenant from now on (kept in the context).
    Use {
        /// The tenant.
        name: String,
    },
}

/// `berth member`'s verbs (in the context's tenant).
#[derive(Clone, Debug, clap::Subcommand)]
pub enum MemberCommand {
    /// Give a user a role in the tenant.
    Add {
        /// The user's email.
        email: String,
        /// `owner`, `admin`, `editor` or `viewer`.
        #[arg(long)]
        role: String,
    },
    /// List the tenant's members.
    List,
    /// Take a user out of the tenant.
    Remove {
        /// The user's email.
        email: String,
    },
}

/// `berth token`'s verbs (in the context's tenant).
#[derive(Clone, Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create an API token for scripts and CI; it is shown once.
    Create {
        /// What it is for (`ci deploys`).
        name: String,
        /// `admin`, `editor` or `viewer` (never more than your own).
        #[arg(long, default_value = "editor")]
        role: String,
        /// How long it lasts (`720h`, `12h`); forever when not given.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List the tenant's API tokens.
    List,
    /// Revoke a token, by its id or its name.
    Revoke {
        /// The id or the name.
        token: String,
    },
}

/// Sets the tenant of the context in use.
fn use_tenant(global: &GlobalArgs, tenant: &str) -> Result<String, CliError> {
    let (path, mut file) = ConfigFile::load()?;
    let Some((name, _)) = file.context(global.context.as_deref()) else {
        return Err(CliError::Usage(
            "there is no context to keep the tenant in: sign in with `berth login` first, \
             or set BERTH_TENANT"
                .into(),
        ));
    };
    let name = name.to_owned();
    if let Some(context) = file.contexts.get_mut(&name) {
        context.tenant = Some(tenant.to_owned());
    }
    file.save(&path)?;
    Ok(name)
}

fn age(time: &Value) -> String {
    berth_web::view::age_since(time.as_str().unwrap_or_default(), chrono::Utc::now())
}

/// Runs `berth tenant …`.
pub async fn tenant(command: TenantCommand, global: &GlobalArgs) -> Result<(), CliError> {
    let client = Client::new(global)?;
    match command {
        TenantCommand::Create { name } => {
            client
                .json(
                    Method::POST,
                    "/api/v1/tenants",
                    &Body::Json(json!({"name": name})),
                )
                .await?;
            println!("tenant/{name} created");
            if client.tenant().is_err()
                && ConfigFile::load()?
                    .1
                    .context(global.context.as_deref())
                    .is_some()
            {
                let context = use_tenant(global, &name)?;
                println!("Context {context:?} now acts in tenant {name:?}.");
            }
        }
        TenantCommand::List => {
            let list = client.get("/api/v1/tenants").await?;
            let current = client.tenant().ok();
            let mut rows = vec![
                ["CURRENT", "NAME", "ROLE", "AGE"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            for item in list["items"].as_array().into_iter().flatten() {
                let name = item["name"].as_str().unwrap_or_default();
                rows.push(vec![
                    if current == Some(name) {
                        "*".into()
                    } else {
                        String::new()
                    },
                    name.to_owned(),
                    item["role"]
                        .as_str()
                        .unwrap_or("(platform admin)")
                        .to_owned(),
                    age(&item["createdAt"]),
                ]);
            }
            if rows.len() == 1 {
                eprintln!("You belong to no tenant yet: `berth tenant create NAME`.");
            } else {
                print!("{}", table(&rows));
            }
        }
        TenantCommand::Use { name } => {
            // Refused (404) when it does not exist or is not the caller's.
            client
                .get(&format!("/api/v1/tenants/{}", percent(&name)))
                .await?;
            let context = use_tenant(global, &name)?;
            println!("Context {context:?} now acts in tenant {name:?}.");
        }
    }
    Ok(())
}

/// Runs `berth member …`.
pub async fn member(command: MemberCommand, global: &GlobalArgs) -> Result<(), CliError> {
    let client = Client::new(global)?;
    let members = client.tenant_path("/members")?;
    match command {
        MemberCommand::Add { email, role } => {
            client
                .json(
                    Method::POST,
                    &members,
                    &Body::Json(json!({"email": email, "role": role})),
                )
                .await?;
            println!("{email} is now {role} in {}", client.tenant()?);
        }
        MemberCommand::List => {
            let list = client.get(&members).await?;
            let mut rows = vec![["EMAIL", "ROLE"].map(str::to_owned).to_vec()];
            for item in list["items"].as_array().into_iter().flatten() {
                rows.push(vec![
                    item["email"].as_str().unwrap_or_default().to_owned(),
                    item["role"].as_str().unwrap_or_default().to_owned(),
                ]);
            }
            print!("{}", table(&rows));
        }
        MemberCommand::Remove { email } => {
            let list = client.get(&members).await?;
            let id = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| {
                    m["email"]
                        .as_str()
                        .is_some_and(|e| e.eq_ignore_ascii_case(&email))
                })
                .and_then(|m| m["userId"].as_i64())
                .ok_or_else(|| {
                    CliError::Failed(format!(
                        "{email} is not a member of {}",
                        client.tenant().unwrap_or("")
                    ))
                })?;
            client
                .json(Method::DELETE, &format!("{members}/{id}"), &Body::Empty)
                .await?;
            println!("{email} removed from {}", client.tenant()?);
        }
    }
    Ok(())
}

/// Runs `berth token …`.
pub async fn token(command: TokenCommand, global: &GlobalArgs) -> Result<(), CliError> {
    let client = Client::new(global)?;
    let tenant = client.tenant()?.to_owned();
    match command {
        TokenCommand::Create {
            name,
            role,
            expires_in,
        } => {
            let mut body = json!({"tenant": tenant, "role": role, "name": name});
            if let Some(text) = expires_in {
                let duration = berth_api::duration::parse_duration(&text).map_err(|reason| {
                    CliError::Usage(format!("--expires-in {text:?}: {reason}"))
                })?;
                body["expiresInSeconds"] = json!(duration.as_secs());
            }
            let created = client
                .json(Method::POST, "/api/v1/tokens", &Body::Json(body))
                .await?;
            eprintln!(
                "Token {:?} (id {}) for tenant {tenant}, role {role}. It is shown this once; \
                 use it as BERTH_TOKEN or `Authorization: Bearer …`:",
                name, created["id"]
            );
            println!("{}", created["token"].as_str().unwrap_or_default());
        }
        TokenCommand::List => {
            let list = client
                .get(&format!("/api/v1/tokens?tenant={}", percent(&tenant)))
                .await?;
            let mut rows = vec![
                ["ID", "NAME", "ROLE", "AGE", "EXPIRES", "STATE"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            for item in list["items"].as_array().into_iter().flatten() {
                rows.push(vec![
                    item["id"].to_string(),
                    item["name"].as_str().unwrap_or_default().to_owned(),
                    item["role"].as_str().unwrap_or_default().to_owned(),
                    age(&item["createdAt"]),
                    item["expiresAt"].as_str().unwrap_or("never").to_owned(),
                    if item["revoked"] == Value::Bool(true) {
                        "revoked"
                    } else {
                        "active"
                    }
                    .into(),
                ]);
            }
            print!("{}", table(&rows));
        }
        TokenCommand::Revoke { token } => {
            let id = match token.parse::<i64>() {
                Ok(id) => id,
                Err(_) => {
                    let list = client
                        .get(&format!("/api/v1/tokens?tenant={}", percent(&tenant)))
                        .await?;
                    let matching: Vec<i64> = list["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|t| {
                            t["name"].as_str() == Some(token.as_str())
                                && t["revoked"] != Value::Bool(true)
                        })
                        .filter_map(|t| t["id"].as_i64())
                        .collect();
                    match matching.as_slice() {
                        [id] => *id,
                        [] => {
                            return Err(CliError::Failed(format!(
                                "no active token named {token:?} in {tenant}"
                            )));
                        }
                        _ => {
                            return Err(CliError::Usage(format!(
                                "{} active tokens are named {token:?}: revoke by id (`berth token list`)",
                                matching.len()
                            )));
                        }
                    }
                }
            };
            client
                .json(
                    Method::DELETE,
                    &format!("/api/v1/tokens/{id}"),
                    &Body::Empty,
                )
                .await?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}
