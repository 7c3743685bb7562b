//! The agent's end of the node API's `Streams` tunnel: the server sends
//! requests (a container's logs, an exec) with ids of its choosing, the
//! agent answers each with frames of that id (`data`, then `end`, `exit`
//! or `error`) and stops one when the server cancels it. An exec's input
//! frames go to its [`ExecSession`]'s input.
//!
//! The session opens the tunnel, reads its requests beside the pod watch
//! and asks its runtime for the streams; this module pumps each stream into
//! the tunnel from a task of its own, so a slow reader never holds up the
//! session.

use std::collections::HashMap;

use berth_api::node::v1 as pb;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use crate::connection::NodeClient;
use crate::exec::{ExecInput, ExecSession};
use crate::runtime::{LogStream, RuntimeError};

/// What a pump sends: the kinds of the frames of one request.
type FrameStream = futures::stream::BoxStream<'static, Result<Kind, RuntimeError>>;

use pb::agent_frame::Kind;

/// How many frames wait for the server before a pump waits too.
const OUTBOUND_BUFFER: usize = 64;

/// An open tunnel and the streams running through it. Dropping it stops
/// them all.
pub struct Tunnel {
    inbound: Streaming<pb::ServerFrame>,
    outbound: mpsc::Sender<pb::AgentFrame>,
    /// The running streams by request id; a finished one cancels its own
    /// token and is pruned at the next request.
    running: HashMap<u64, CancellationToken>,
    /// The inputs of the running execs, by request id.
    inputs: HashMap<u64, mpsc::UnboundedSender<ExecInput>>,
    closed: CancellationToken,
}

impl Tunnel {
    /// Opens the tunnel as the node `client` speaks for.
    pub async fn open(client: &mut NodeClient) -> Result<Tunnel, Status> {
        let (outbound, receiver) = mpsc::channel(OUTBOUND_BUFFER);
        let frames = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|frame| (frame, receiver))
        });
        let inbound = client.streams(frames).await?.into_inner();
        Ok(Tunnel {
            inbound,
            outbound,
            running: HashMap::new(),
            inputs: HashMap::new(),
            closed: CancellationToken::new(),
        })
    }

    /// The server's next frame; `None` when the server closed the tunnel.
    /// Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<pb::ServerFrame>, Status> {
        self.inbound.message().await
    }

    /// Streams `output` as the answer to request `id`.
    pub fn serve(&mut self, id: u64, output: LogStream) {
        self.spawn_pump(id, output.map(|chunk| chunk.map(Kind::Data)).boxed());
    }

    /// Streams an exec's output as the answer to request `id`, and takes
    /// its input frames from now on.
    pub fn serve_exec(&mut self, id: u64, session: ExecSession) {
        self.spawn_pump(id, crate::exec::frames_of(session.output));
        self.inputs.insert(id, session.input);
    }

    /// Hands `input` to exec `id`, if it still runs.
    pub fn exec_input(&mut self, id: u64, input: ExecInput) {
        if let Some(sender) = self.inputs.get(&id)
            && sender.send(input).is_err()
        {
            self.inputs.remove(&id);
        }
    }

    fn spawn_pump(&mut self, id: u64, frames: FrameStream) {
        self.running.retain(|_, token| !token.is_cancelled());
        let running = &self.running;
        self.inputs.retain(|id, _| running.contains_key(id));
        let token = self.closed.child_token();
        self.running.insert(id, token.clone());
        tokio::spawn(pump(id, frames, self.outbound.clone(), token));
    }

    /// Answers request `id` with `error`, and nothing else.
    pub fn fail(&self, id: u64, error: &RuntimeError) {
        let frame = error_frame(id, error);
        let outbound = self.outbound.clone();
        let closed = self.closed.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = closed.cancelled() => {}
                _ = outbound.send(frame) => {}
            }
        });
    }

    /// Stops request `id`, if it still runs.
    pub fn cancel(&mut self, id: u64) {
        if let Some(token) = self.running.remove(&id) {
            token.cancel();
        }
        // Dropping the input detaches from the command.
        self.inputs.remove(&id);
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// Sends `output` as frames of `id` until it ends (or sends an `exit`),
/// fails, or `token` is cancelled.
async fn pump(
    id: u64,
    mut output: FrameStream,
    outbound: mpsc::Sender<pb::AgentFrame>,
    token: CancellationToken,
) {
    let started = pb::AgentFrame {
        id,
        kind: Some(Kind::Started(pb::Started {})),
    };
    let sent = tokio::select! {
        () = token.cancelled() => return,
        sent = outbound.send(started) => sent,
    };
    if sent.is_err() {
        token.cancel();
        return;
    }
    loop {
        let next = tokio::select! {
            () = token.cancelled() => return,
            next = output.next() => next,
        };
        let (frame, last) = match next {
            Some(Ok(kind)) => {
                let last = matches!(kind, Kind::Exit(_));
                (
                    pb::AgentFrame {
                        id,
                        kind: Some(kind),
                    },
                    last,
                )
            }
            Some(Err(error)) => (error_frame(id, &error), true),
            None => (
                pb::AgentFrame {
                    id,
                    kind: Some(Kind::End(pb::End {})),
                },
                true,
            ),
        };
        let sent = tokio::select! {
            () = token.cancelled() => return,
            sent = outbound.send(frame) => sent,
        };
        if sent.is_err() || last {
            token.cancel();
            return;
        }
    }
}

/// The `error` frame of `id`.
fn error_frame(id: u64, error: &RuntimeError) -> pb::AgentFrame {
    let code = match error {
        RuntimeError::NotFound(_) => "NotFound",
        RuntimeError::Unsupported { .. } => "Unsupported",
        RuntimeError::Docker(_) => "Failed",
    };
    pb::AgentFrame {
        id,
        kind: Some(Kind::Error(pb::StreamError {
            code: code.to_owned(),
            message: error.to_string(),
        })),
    }
}
