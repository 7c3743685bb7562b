//! Signing in and out, and the contexts of the config file:
//! `berth login`, `berth logout`, `berth context list|use|delete`.

use std::io::{BufRead, IsTerminal};

use serde_json::{Value, json};

use super::GlobalArgs;
use super::api::{SessionTokens, http_client, json_of, normalize_server};
use super::config::{ConfigFile, Context, DEFAULT_CONTEXT};
use super::error::CliError;
use super::output::table;

/// `berth login`'s options (`--server`, `--tenant` and `--context` are
/// the global ones).
#[derive(Clone, Debug, clap::Args)]
pub struct LoginArgs {
    /// The email to sign in with (asked when not given).
    #[arg(long)]
    pub email: Option<String>,
    /// Read the password from standard input (its first line) instead of
    /// asking for it.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `berth context`'s verbs.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ContextCommand {
    /// List the contexts; `*` marks the current one.
    List,
    /// Make a context the current one.
    Use {
        /// The context.
        name: String,
    },
    /// Forget a context (without signing out on the server).
    Delete {
        /// The context.
        name: String,
    },
}

fn ask(prompt: &str) -> Result<String, CliError> {
    use std::io::Write;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Failed(format!("reading standard input: {e}")))?;
    Ok(line.trim().to_owned())
}

/// Signs a user in and keeps the session in a context.
pub async fn login(args: LoginArgs, global: &GlobalArgs) -> Result<(), CliError> {
    let (_, file) = ConfigFile::load()?;
    let name = global
        .context
        .clone()
        .or_else(|| file.current_context.clone())
        .unwrap_or_else(|| DEFAULT_CONTEXT.to_owned());
    let previous = file.contexts.get(&name).cloned();
    let server = match (&global.server, &previous) {
        (Some(server), _) => normalize_server(server),
        (None, Some(previous)) => normalize_server(&previous.server),
        (None, None) => {
            return Err(CliError::Usage(
                "which server? `berth login --server http://HOST:8080`".into(),
            ));
        }
    };
    let same_server = previous
        .as_ref()
        .is_some_and(|p| normalize_server(&p.server) == server);
    let email = match args.email.clone().or_else(|| {
        previous
            .as_ref()
            .filter(|_| same_server)
            .and_then(|p| p.email.clone())
    }) {
        Some(email) => email,
        None if std::io::stdin().is_terminal() => ask("Email: ")?,
        None => {
            return Err(CliError::Usage(
                "no email: pass --email (standard input is not a terminal to ask on)".into(),
            ));
        }
    };
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::Failed(format!("reading the password: {e}")))?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Password for {email}: "))
            .map_err(|e| CliError::Failed(format!("reading the password: {e}")))?
    } else {
        return Err(CliError::Usage(
            "no terminal to ask the password on: pipe it in with --password-stdin".into(),
        ));
    };
    let http = http_client()?;
    let unreachable = |e: reqwest::Error| CliError::Unreachable {
        server: server.clone(),
        reason: e.to_string(),
    };
    let session = open_session(&http, &server, &email, &password).await?;
    let me = http
        .get(format!("{server}/api/v1/users/me"))
        .bearer_auth(&session.token)
        .send()
        .await
        .map_err(unreachable)?;
    let me = json_of(me).await?;
    let tenants: Vec<String> = me["tenants"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|t| t["name"].as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let tenant = global
        .tenant
        .clone()
        .or_else(|| {
            previous
                .as_ref()
                .filter(|_| same_server)
                .and_then(|p| p.tenant.clone())
                .filter(|t| tenants.contains(t) || me["platformAdmin"] == Value::Bool(true))
        })
        .or_else(|| (tenants.len() == 1).then(|| tenants[0].clone()));
    keep_session(&name, &server, tenant.clone(), &email, session)?;
    match tenant {
        Some(tenant) => {
            println!("Signed in to {server} as {email} (context {name:?}, tenant {tenant:?}).")
        }
        None => println!(
            "Signed in to {server} as {email} (context {name:?}). Choose a tenant: \
             `berth tenant list`, then `berth tenant use NAME` (or `berth tenant create NAME`)."
        ),
    }
    Ok(())
}

/// Signs `email` in at `server` (`POST /auth/login`): the session it
/// answers; a refusal names the server and the user.
pub async fn open_session(
    http: &reqwest::Client,
    server: &str,
    email: &str,
    password: &str,
) -> Result<SessionTokens, CliError> {
    let response = http
        .post(format!("{server}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .map_err(|e| CliError::Unreachable {
            server: server.to_owned(),
            reason: e.to_string(),
        })?;
    match json_of(response).await {
        Ok(value) => serde_json::from_value(value)
            .map_err(|e| CliError::Failed(format!("the server's session is unreadable: {e}"))),
        Err(CliError::Api {
            status: 401,
            message,
            ..
        }) => Err(CliError::NotSignedIn(format!(
            "cannot sign in to {server} as {email}: {message}"
        ))),
        Err(error) => Err(error),
    }
}

/// Keeps `session` in the config file as context `name` (replacing what
/// the context held) and makes that context the current one.
pub fn keep_session(
    name: &str,
    server: &str,
    tenant: Option<String>,
    email: &str,
    session: SessionTokens,
) -> Result<(), CliError> {
    let (path, mut file) = ConfigFile::load()?;
    file.contexts.insert(
        name.to_owned(),
        Context {
            server: server.to_owned(),
            tenant,
            email: Some(email.to_owned()),
            token: Some(session.token),
            expires_at: Some(session.expires_at),
            refresh_token: Some(session.refresh_token),
        },
    );
    file.current_context = Some(name.to_owned());
    file.save(&path)
}

/// Ends the context's session on the server and forgets its tokens.
pub async fn logout(global: &GlobalArgs) -> Result<(), CliError> {
    let (path, mut file) = ConfigFile::load()?;
    let Some((name, _)) = file.context(global.context.as_deref()) else {
        return Err(CliError::Usage("not signed in: there is no context".into()));
    };
    let name = name.to_owned();
    let Some(context) = file.contexts.get_mut(&name) else {
        return Ok(());
    };
    if let Some(refresh_token) = context.refresh_token.take() {
        let server = normalize_server(&context.server);
        let response = http_client()?
            .post(format!("{server}/api/v1/auth/logout"))
            .json(&json!({"refreshToken": refresh_token}))
            .send()
            .await;
        if let Err(error) = response {
            // The tokens are forgotten anyway; the refresh token expires
            // on its own.
            eprintln!("warning: could not reach {server} to end the session: {error}");
        }
    }
    context.token = None;
    context.expires_at = None;
    file.save(&path)?;
    println!("Signed out (context {name:?}).");
    Ok(())
}

/// Runs `berth context …`.
pub fn context(command: ContextCommand) -> Result<(), CliError> {
    let (path, mut file) = ConfigFile::load()?;
    match command {
        ContextCommand::List => {
            if file.contexts.is_empty() {
                eprintln!("No contexts: sign in with `berth login --server URL`.");
                return Ok(());
            }
            let mut rows = vec![
                ["CURRENT", "NAME", "SERVER", "TENANT", "USER"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            for (name, context) in &file.contexts {
                rows.push(vec![
                    if file.current_context.as_deref() == Some(name) {
                        "*".into()
                    } else {
                        String::new()
                    },
                    name.clone(),
                    context.server.clone(),
                    context.tenant.clone().unwrap_or_default(),
                    context.email.clone().unwrap_or_default(),
                ]);
            }
            print!("{}", table(&rows));
        }
        ContextCommand::Use { name } => {
            if !file.contexts.contains_key(&name) {
                return Err(CliError::Usage(format!(
                    "there is no context {name:?}; `berth context list` shows them"
                )));
            }
            file.current_context = Some(name.clone());
            file.save(&path)?;
            println!("Switched to context {name:?}.");
        }
        ContextCommand::Delete { name } => {
            if file.contexts.remove(&name).is_none() {
                return Err(CliError::Usage(format!("there is no context {name:?}")));
            }
            if file.current_context.as_deref() == Some(&name) {
                file.current_context = None;
            }
            file.save(&path)?;
            println!("Deleted context {name:?}.");
        }
    }
    Ok(())
}
