//! `berth exec [-i] [-t] POD [-c C] -- COMMAND...`: a command in a pod's
//! container, over the exec WebSocket (Kubernetes' channel protocol,
//! `v5.channel.k8s.io`). With `-t` on a terminal, the terminal is put in
//! raw mode for the command's life and its size follows the window's.
//! The command's exit code becomes `berth`'s.

use std::io::{IsTerminal, Write};

use futures::{SinkExt, StreamExt};
use nix::sys::termios;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::GlobalArgs;
use super::api::{Client, api_error};
use super::error::CliError;
use super::resources::{self, Named};

/// `berth exec`'s options.
#[derive(Clone, Debug, clap::Args)]
#[command(trailing_var_arg = true)]
pub struct ExecArgs {
    /// Pass standard input to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Give the command a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The container (the pod's first otherwise).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// The pod (NAME or pod/NAME).
    pub pod: String,
    /// The command and its arguments, after `--`.
    #[arg(required = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

use berth_api::exec_channels::{CLOSE, PROTOCOLS, RESIZE, STATUS, STDERR, STDIN, STDOUT};

/// Puts the terminal in raw mode until dropped.
struct RawMode {
    saved: termios::Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), termios::SetArg::TCSANOW, &self.saved);
    }
}

fn resize_message() -> Option<Message> {
    let (terminal_size::Width(width), terminal_size::Height(height)) =
        terminal_size::terminal_size()?;
    let mut bytes = vec![RESIZE];
    bytes.extend_from_slice(
        json!({"Width": width, "Height": height})
            .to_string()
            .as_bytes(),
    );
    Some(Message::Binary(bytes.into()))
}

/// The exit code a Kubernetes `Status` reports.
fn exit_code(status: &Value) -> Result<i32, CliError> {
    if status["status"] == "Success" {
        return Ok(0);
    }
    if status["reason"] == "NonZeroExitCode" {
        let code = status["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse().ok())
            .unwrap_or(1);
        return Ok(code);
    }
    Err(CliError::Failed(
        status["message"]
            .as_str()
            .unwrap_or("the command failed")
            .to_owned(),
    ))
}

/// Runs `berth exec`.
pub async fn run(args: ExecArgs, global: &GlobalArgs) -> Result<(), CliError> {
    let pod = if args.pod.contains('/') {
        resources::one(std::slice::from_ref(&args.pod))?
    } else {
        Named {
            kind: berth_api::objects::Kind::Pod,
            name: args.pod.clone(),
        }
    };
    let client = Client::new(global)?;
    let tty = args.tty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let mut query: Vec<String> = args
        .command
        .iter()
        .map(|c| format!("command={}", resources::percent(c)))
        .collect();
    query.push(format!("stdin={}", args.stdin));
    query.push("stdout=true".into());
    query.push(format!("stderr={}", !tty));
    query.push(format!("tty={tty}"));
    if let Some(container) = &args.container {
        query.push(format!("container={}", resources::percent(container)));
    }
    let url = format!(
        "{}/exec?{}",
        client.url(&resources::object(&client, &pod)?),
        query.join("&")
    );
    let url = url
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    let mut request = url
        .into_client_request()
        .map_err(|e| CliError::Failed(format!("cannot make the exec request: {e}")))?;
    let headers = request.headers_mut();
    if let Some(bearer) = client.bearer().await? {
        headers.insert(
            "Authorization",
            bearer
                .parse()
                .map_err(|_| CliError::Failed("the token is not a valid header".into()))?,
        );
    }
    headers.insert(
        "Sec-WebSocket-Protocol",
        PROTOCOLS
            .join(", ")
            .parse()
            .map_err(|_| CliError::Failed("bad protocol header".into()))?,
    );
    let (socket, response) = match tokio_tungstenite::connect_async(request).await {
        Ok(connected) => connected,
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status();
            let body = response.body().clone().unwrap_or_default();
            return Err(api_error(
                reqwest::StatusCode::from_u16(status.as_u16())
                    .unwrap_or(reqwest::StatusCode::BAD_GATEWAY),
                &body,
            ));
        }
        Err(error) => {
            return Err(CliError::Unreachable {
                server: client.server().to_owned(),
                reason: error.to_string(),
            });
        }
    };
    let v5 = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        == Some(PROTOCOLS[0]);
    let (mut sink, mut stream) = socket.split();
    let (outgoing, mut queued) = tokio::sync::mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(message) = queued.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
    });
    let _raw = if tty { RawMode::enter() } else { None };
    if tty {
        if let Some(message) = resize_message() {
            let _ = outgoing.send(message);
        }
        let resizes = outgoing.clone();
        if let Ok(mut window) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        {
            tokio::spawn(async move {
                while window.recv().await.is_some() {
                    if let Some(message) = resize_message()
                        && resizes.send(message).is_err()
                    {
                        break;
                    }
                }
            });
        }
    }
    if args.stdin {
        let input = outgoing.clone();
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buffer = vec![0u8; 8192];
            loop {
                match stdin.read(&mut buffer).await {
                    Ok(0) | Err(_) => {
                        if v5 {
                            let _ = input.send(Message::Binary(vec![CLOSE, STDIN].into()));
                        }
                        break;
                    }
                    Ok(n) => {
                        let mut bytes = Vec::with_capacity(n + 1);
                        bytes.push(STDIN);
                        bytes.extend_from_slice(&buffer[..n]);
                        if input.send(Message::Binary(bytes.into())).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    let mut outcome = None;
    while let Some(message) = stream.next().await {
        let bytes = match message {
            Ok(Message::Binary(bytes)) => bytes,
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(error) => {
                return Err(CliError::Failed(format!(
                    "the exec connection broke off: {error}"
                )));
            }
        };
        let Some((channel, data)) = bytes.split_first() else {
            continue;
        };
        match *channel {
            STDOUT => {
                let mut out = std::io::stdout();
                let _ = out.write_all(data).and_then(|()| out.flush());
            }
            STDERR => {
                let mut err = std::io::stderr();
                let _ = err.write_all(data).and_then(|()| err.flush());
            }
            STATUS => {
                outcome = serde_json::from_slice::<Value>(data).ok();
            }
            _ => {}
        }
    }
    drop(outgoing);
    writer.abort();
    drop(_raw);
    match outcome {
        Some(status) => match exit_code(&status)? {
            0 => Ok(()),
            code => Err(CliError::Exit(code)),
        },
        None => Err(CliError::Failed(
            "the exec connection closed without the command's outcome".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_is_read_from_the_status() {
        assert_eq!(exit_code(&json!({"status": "Success"})).ok(), Some(0));
        let failed = json!({"status": "Failure", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}});
        assert_eq!(exit_code(&failed).ok(), Some(3));
        let broken = json!({"status": "Failure", "message": "the node is gone"});
        assert_eq!(
            exit_code(&broken).expect_err("an error").to_string(),
            "the node is gone"
        );
    }
}
