//! Interactive exec and usage sampling on the Docker engine.
//!
//! An attached exec is `create_exec` + `start_exec` on a hijacked
//! connection: one task writes the caller's input to it (stdin, then a
//! half-close for stdin's end; `resize_exec` for a new terminal size),
//! another reads its output and, when the output ends, asks
//! `inspect_exec` for the exit code. Dropping the session's halves ends
//! both tasks, which closes the connection (the engine cannot kill an
//! exec; a command that reads stdin sees it end).

use std::sync::Arc;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::{Engine, call};
use crate::exec::{AttachRequest, ExecEvent, ExecInput, ExecSession};
use crate::runtime::{PodKey, PodUsage, RuntimeError};

/// How many output chunks wait for the tunnel before the reader waits.
const OUTPUT_BUFFER: usize = 64;

/// Docker's non-streamed stats compare two samples about a second apart.
const DOCKER_USAGE_WINDOW_SECONDS: f64 = 1.0;

/// Starts `request.command` in the container `id`, attached.
pub(super) async fn attach(
    engine: &Arc<Engine>,
    id: &str,
    request: AttachRequest,
) -> Result<ExecSession, RuntimeError> {
    let docker = &engine.docker;
    let exec = docker
        .create_exec(
            id,
            CreateExecOptions {
                cmd: Some(request.command),
                attach_stdin: Some(request.stdin),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(request.tty),
                ..CreateExecOptions::default()
            },
        )
        .await
        .map_err(call("create exec"))?;
    let started = docker
        .start_exec(
            &exec.id,
            Some(StartExecOptions {
                detach: false,
                tty: request.tty,
                output_capacity: None,
            }),
        )
        .await
        .map_err(call("start exec"))?;
    let StartExecResults::Attached { output, input } = started else {
        return Err(RuntimeError::Docker(super::DockerError::Call {
            call: "start exec",
            source: bollard::errors::Error::DockerResponseServerError {
                status_code: 500,
                message: "the engine started the exec detached".into(),
            },
        }));
    };
    let (events, received) = mpsc::channel(OUTPUT_BUFFER);
    let (inputs, wanted) = mpsc::unbounded_channel();
    tokio::spawn(write_input(
        engine.clone(),
        exec.id.clone(),
        input,
        wanted,
        request.stdin,
    ));
    tokio::spawn(read_output(engine.clone(), exec.id, output, events));
    let output = futures::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|event| (event, received))
    });
    Ok(ExecSession {
        output: output.boxed(),
        input: inputs,
    })
}

/// Writes the caller's input to the exec until its stdin ends or the
/// caller goes.
async fn write_input(
    engine: Arc<Engine>,
    exec: String,
    mut stdin: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    mut wanted: mpsc::UnboundedReceiver<ExecInput>,
    attached: bool,
) {
    let mut open = attached;
    while let Some(input) = wanted.recv().await {
        match input {
            ExecInput::Stdin(data) if open => {
                if stdin.write_all(&data).await.is_err() || stdin.flush().await.is_err() {
                    open = false;
                }
            }
            ExecInput::Stdin(_) => {}
            ExecInput::StdinEnd => {
                if open {
                    // A half-close: the command reads the end of its input.
                    let _ = stdin.shutdown().await;
                    open = false;
                }
            }
            ExecInput::Resize { width, height } => {
                let resized = engine
                    .docker
                    .resize_exec(&exec, ResizeExecOptions { width, height })
                    .await;
                if let Err(error) = resized {
                    tracing::debug!(exec, %error, "resizing an exec's terminal failed");
                }
            }
        }
    }
}

/// Reads the exec's output into `events`, then its exit code.
async fn read_output(
    engine: Arc<Engine>,
    exec: String,
    mut output: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
    events: mpsc::Sender<Result<ExecEvent, RuntimeError>>,
) {
    loop {
        let next = tokio::select! {
            () = events.closed() => return,
            next = output.next() => next,
        };
        let event = match next {
            Some(Ok(LogOutput::StdErr { message })) => ExecEvent::Stderr(message.to_vec()),
            Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                ExecEvent::Stdout(message.to_vec())
            }
            Some(Ok(LogOutput::StdIn { .. })) => continue,
            Some(Err(error)) => {
                let _ = events.send(Err(call("exec output")(error).into())).await;
                return;
            }
            None => break,
        };
        if events.send(Ok(event)).await.is_err() {
            return;
        }
    }
    let ended = match engine.docker.inspect_exec(&exec).await {
        Ok(inspected) => Ok(ExecEvent::Exit(
            inspected
                .exit_code
                .and_then(|code| i32::try_from(code).ok())
                .unwrap_or(-1),
        )),
        Err(error) => Err(call("inspect exec")(error).into()),
    };
    let _ = events.send(ended).await;
}

/// The figures of every pod in `pods` (by its key and the uid its
/// containers carry), sampled at once.
pub(super) async fn usage(engine: Arc<Engine>, pods: Vec<(PodKey, String)>) -> Vec<PodUsage> {
    let sampled = pods.into_iter().map(|(key, uid)| {
        let engine = engine.clone();
        async move {
            match super::pod_stats(&engine, &uid).await {
                Ok(containers) if !containers.is_empty() => Some(PodUsage {
                    key,
                    containers,
                    window_seconds: DOCKER_USAGE_WINDOW_SECONDS,
                }),
                Ok(_) => None,
                Err(error) => {
                    tracing::debug!(pod = %key, %error, "sampling a pod's usage failed");
                    None
                }
            }
        }
    });
    futures::future::join_all(sampled)
        .await
        .into_iter()
        .flatten()
        .collect::<Vec<PodUsage>>()
}
