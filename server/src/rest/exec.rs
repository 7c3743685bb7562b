//! `POST|GET /api/v1/tenants/{tenant}/pods/{name}/exec`: a command in a
//! container, attached over a WebSocket, as `kubectl exec -it` speaks it.
//!
//! The query is kubectl's (`container`, `command` repeated, `stdin`,
//! `stdout`, `stderr`, `tty`). Everything that can fail before the command
//! starts (authorization, the pod, the container, the node's tunnel)
//! answers the REST error envelope instead of the upgrade.
//!
//! Framing is Kubernetes' channel protocol, `v5.channel.k8s.io` (or
//! `v4.channel.k8s.io`): every binary message starts with its channel,
//! 0 stdin, 1 stdout, 2 stderr, 3 the outcome (a Kubernetes `Status` in
//! JSON, with the exit code), 4 a terminal size (`{"Width":..,"Height":..}`),
//! and in v5, 255 followed by 0 to close stdin. After the outcome the
//! server closes the WebSocket. The caller closing it detaches from the
//! command.

use actix_web::{HttpRequest, HttpResponse, route, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use berth_api::node::v1 as pb;
use berth_api::objects::Kind;
use serde_json::{Value, json};

use super::caller::Caller;
use super::error::{ApiError, ErrorBody};
use super::logs::{container_error, tunnel_error};
use super::resources::{audited, object_error, scope};
use crate::authz::Verb;
use crate::node_api::tunnels::{Piece, TunnelError, TunnelOutput};
use crate::pod_exec::{self, ExecOptions, PodExecError};
use crate::rest::state::AppState;

pub use berth_api::exec_channels::PROTOCOLS;
use berth_api::exec_channels::{CLOSE, RESIZE, STATUS, STDERR, STDIN, STDOUT};

/// The OpenAPI description of this route.
#[derive(utoipa::OpenApi)]
#[openapi(paths(exec_pod), components(schemas(ErrorBody)))]
pub struct ExecApi;

/// Mounts this route.
pub fn configure(config: &mut web::ServiceConfig) {
    config.service(exec_pod);
}

/// The query, as kubectl sends it.
#[derive(Debug, Default, PartialEq, Eq, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecQuery {
    /// The container; the pod's first when left out.
    container: Option<String>,
    /// The command and its arguments, one `command` parameter each, in
    /// order (not through a shell). Required.
    command: Vec<String>,
    /// Attach the command's standard input (channel 0).
    stdin: bool,
    /// Send its standard output (channel 1); default true.
    stdout: bool,
    /// Send its standard error (channel 2); default true.
    stderr: bool,
    /// Give it a terminal (its output then comes on channel 1 only).
    tty: bool,
}

impl ExecQuery {
    /// Reads the query string; repeated `command` parameters keep their
    /// order. Unknown parameters and values that are not booleans are
    /// refused, naming them.
    fn parse(query: &str) -> Result<ExecQuery, ApiError> {
        let mut parsed = ExecQuery {
            stdout: true,
            stderr: true,
            ..ExecQuery::default()
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let flag = |value: &str| match value {
                "true" | "1" | "" => Ok(true),
                "false" | "0" => Ok(false),
                other => Err(ApiError::field(
                    &key,
                    format!("must be true or false, not {other:?}"),
                )),
            };
            match &*key {
                "container" => {
                    parsed.container = Some(value.into_owned()).filter(|c| !c.is_empty())
                }
                "command" => parsed.command.push(value.into_owned()),
                "stdin" => parsed.stdin = flag(&value)?,
                "stdout" => parsed.stdout = flag(&value)?,
                "stderr" => parsed.stderr = flag(&value)?,
                "tty" => parsed.tty = flag(&value)?,
                other => {
                    return Err(ApiError::field(
                        other,
                        "unknown parameter; exec takes container, command, stdin, stdout, stderr and tty",
                    ));
                }
            }
        }
        if parsed.command.is_empty() {
            return Err(ApiError::field(
                "command",
                "at least one command parameter is required (the program, then each argument)",
            ));
        }
        Ok(parsed)
    }
}

/// A [`PodExecError`] as the API answers it.
fn exec_error(error: PodExecError) -> ApiError {
    match error {
        PodExecError::Object(error) => object_error(error),
        PodExecError::NoSuchContainer { .. } => container_error(error.to_string()),
        PodExecError::PodNotRunning { .. } | PodExecError::ContainerNotRunning { .. } => {
            ApiError::invalid(error.to_string(), Vec::new())
        }
        PodExecError::Unreadable { .. } => ApiError::Internal(error.to_string()),
        PodExecError::Tunnel(error) => tunnel_error(error),
    }
}

/// Runs a command in a container of the pod, attached over a WebSocket
/// (Kubernetes' `v5.channel.k8s.io` or `v4.channel.k8s.io` framing; `GET`
/// upgrades too). Needs the `exec` verb on pods: editors and up. Recorded
/// in the audit log with the container and command.
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/pods/{name}/exec",
    operation_id = "exec_pod",
    tag = "pods",
    params(
        ("tenant" = String, Path, description = "The tenant."),
        ("name" = String, Path, description = "The pod's name.", example = "web-7d4b9-x2x8q"),
        ExecQuery,
    ),
    responses(
        (status = 101, description = "Switched to a WebSocket: binary messages whose first byte is the channel (0 stdin, 1 stdout, 2 stderr, 3 the outcome as a Kubernetes Status with the exit code, 4 terminal size, 255 then 0 closes stdin in v5)."),
        (status = 400, description = "No command, an unknown parameter, no such container (the message names the pod's containers), the pod or container is not running, or not a WebSocket request.", body = ErrorBody),
        (status = 401, description = "Not signed in.", body = ErrorBody),
        (status = 403, description = "The role does not allow exec (viewers).", body = ErrorBody),
        (status = 404, description = "No such pod or tenant.", body = ErrorBody),
        (status = 503, description = "The pod's node is offline or not connected to this server replica.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[route(
    "/api/v1/tenants/{tenant}/pods/{name}/exec",
    method = "GET",
    method = "POST"
)]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id))]
pub async fn exec_pod(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    request: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (tenant, name) = path.into_inner();
    let scope = scope(&caller, Some(&tenant), Kind::Pod, Verb::Exec)?;
    let query = ExecQuery::parse(request.query_string())?;
    let options = ExecOptions {
        container: query.container.clone(),
        command: query.command.clone(),
        stdin: query.stdin,
        tty: query.tty,
    };
    let mut what = format!("{name} -- {}", options.command.join(" "));
    let result = async {
        let target = pod_exec::target(&state.objects, &scope.at(&name), &options)
            .await
            .map_err(exec_error)?;
        what = format!(
            "{name} -c {} -- {}",
            target.container,
            options.command.join(" ")
        );
        let protocol = protocol_of(&request)?;
        let (response, session, messages) =
            actix_ws::handle_with_protocols(&request, body, &PROTOCOLS).map_err(|e| {
                ApiError::invalid(format!("exec needs a WebSocket upgrade: {e}"), Vec::new())
            })?;
        let output = pod_exec::start(&state.tunnels, &tenant, &target, &options)
            .await
            .map_err(exec_error)?;
        let bridge = Bridge {
            output,
            session,
            v5: protocol != Some(PROTOCOLS[1]),
            stdout: query.stdout,
            stderr: query.stderr || query.tty,
            command: options.command.clone(),
        };
        actix_web::rt::spawn(bridge.run(messages.aggregate_continuations()));
        Ok::<HttpResponse, ApiError>(response)
    }
    .await;
    audited(&state, &caller, &scope, "exec", &what, result)
}

/// The subprotocol the caller offered that this server speaks; `None`
/// when it offered none. Offering only others is a 400 naming these.
fn protocol_of(request: &HttpRequest) -> Result<Option<&'static str>, ApiError> {
    let offered: Vec<&str> = request
        .headers()
        .get_all(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(None);
    }
    offered
        .iter()
        .find_map(|p| PROTOCOLS.into_iter().find(|ours| ours == p))
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(
                format!(
                    "none of the offered subprotocols [{}] is spoken here; use one of [{}]",
                    offered.join(" "),
                    PROTOCOLS.join(" ")
                ),
                Vec::new(),
            )
        })
}

/// Carries one exec between the caller's WebSocket and the agent.
struct Bridge {
    output: TunnelOutput,
    session: actix_ws::Session,
    v5: bool,
    stdout: bool,
    stderr: bool,
    command: Vec<String>,
}

impl Bridge {
    /// Runs until the command ends (its outcome sent, the socket closed)
    /// or the caller goes (the command is detached from).
    async fn run(mut self, mut messages: actix_ws::AggregatedMessageStream) {
        loop {
            tokio::select! {
                piece = self.output.next_piece() => {
                    let outcome = match piece {
                        Some(Ok(Piece::Data(data))) if self.stdout => {
                            self.send(STDOUT, &data).await
                        }
                        Some(Ok(Piece::Stderr(data))) if self.stderr => {
                            self.send(STDERR, &data).await
                        }
                        Some(Ok(Piece::Data(_) | Piece::Stderr(_) | Piece::Started)) => true,
                        Some(Ok(Piece::Exit(code))) => {
                            let status = exit_status(code, &self.command);
                            self.finish(status).await;
                            return;
                        }
                        Some(Err(error)) => {
                            self.finish(failure_status(&error)).await;
                            return;
                        }
                        None => {
                            let ended = TunnelError::Agent {
                                node: String::new(),
                                code: "Failed".into(),
                                message: "the agent ended the exec without an exit code".into(),
                            };
                            self.finish(failure_status(&ended)).await;
                            return;
                        }
                    };
                    if !outcome {
                        return;
                    }
                }
                message = messages.recv() => {
                    let going_on = match message {
                        Some(Ok(AggregatedMessage::Binary(bytes))) => self.take(&bytes).await,
                        Some(Ok(AggregatedMessage::Ping(bytes))) => {
                            self.session.pong(&bytes).await.is_ok()
                        }
                        Some(Ok(AggregatedMessage::Text(_) | AggregatedMessage::Pong(_))) => true,
                        Some(Ok(AggregatedMessage::Close(_)) | Err(_)) | None => false,
                    };
                    if !going_on {
                        // Dropping the output detaches from the command.
                        let _ = self.session.close(None).await;
                        return;
                    }
                }
            }
        }
    }

    /// Takes one message of the caller's; false when the exec should end.
    async fn take(&mut self, message: &[u8]) -> bool {
        use pb::server_frame::Kind;
        let Some((&channel, data)) = message.split_first() else {
            return true;
        };
        let kind = match channel {
            STDIN if !data.is_empty() => Kind::Stdin(data.to_vec()),
            RESIZE => match terminal_size(data) {
                Some(size) => Kind::Resize(size),
                None => return true,
            },
            CLOSE if self.v5 && data.first() == Some(&STDIN) => Kind::StdinEnd(pb::StdinEnd {}),
            _ => return true,
        };
        self.output.send(kind).await.is_ok()
    }

    /// Sends `data` on `channel`; false when the caller is gone.
    async fn send(&mut self, channel: u8, data: &[u8]) -> bool {
        let mut message = Vec::with_capacity(data.len() + 1);
        message.push(channel);
        message.extend_from_slice(data);
        self.session.binary(message).await.is_ok()
    }

    /// Sends the outcome and closes the socket.
    async fn finish(mut self, status: Value) {
        let _ = self.send(STATUS, status.to_string().as_bytes()).await;
        let _ = self
            .session
            .close(Some(CloseReason {
                code: CloseCode::Normal,
                description: None,
            }))
            .await;
    }
}

/// A terminal size message (`{"Width": 80, "Height": 24}`).
fn terminal_size(data: &[u8]) -> Option<pb::TerminalSize> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u32,
        height: u32,
    }
    let size: Size = serde_json::from_slice(data).ok()?;
    Some(pb::TerminalSize {
        width: size.width,
        height: size.height,
    })
}

/// The outcome of a command that ended with `code`, as Kubernetes words it.
fn exit_status(code: i32, command: &[String]) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The outcome of an exec that failed without an exit code.
fn failure_status(error: &TunnelError) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": error.to_string(),
        "reason": "InternalError",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_keeps_the_commands_order_and_refuses_what_it_does_not_know() {
        let query =
            ExecQuery::parse("command=sh&command=-c&command=echo%20hi&stdin=true&tty=false")
                .expect("a valid query");
        assert_eq!(query.command, ["sh", "-c", "echo hi"]);
        assert!(query.stdin && query.stdout && query.stderr && !query.tty);
        let error = ExecQuery::parse("container=app").expect_err("no command");
        assert!(error.to_string().starts_with("command: "), "{error}");
        let error = ExecQuery::parse("command=ls&input=1").expect_err("unknown");
        assert!(
            error.to_string().starts_with("input: unknown parameter"),
            "{error}"
        );
        let error = ExecQuery::parse("command=ls&tty=yes").expect_err("not a boolean");
        assert_eq!(error.to_string(), "tty: must be true or false, not \"yes\"");
    }

    #[test]
    fn a_non_zero_exit_is_reported_as_kubernetes_does() {
        let status = exit_status(3, &["sh".into(), "-c".into(), "exit 3".into()]);
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        assert_eq!(
            exit_status(0, &[]),
            json!({"metadata": {}, "status": "Success"})
        );
    }
}
