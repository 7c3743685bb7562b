//! The server's end of the `Streams` tunnels: which node's agent holds a
//! tunnel to this process, and the requests running through each.
//!
//! A request (a container's logs, an exec) gets an id, goes to the agent
//! as a `ServerFrame`, and its answer comes back as frames of that id,
//! which [`Tunnels::deliver`] hands to the one waiting [`TunnelOutput`].
//! An exec's input goes the other way through [`TunnelOutput::send`].
//! Dropping the output cancels the request on the agent.
//!
//! A tunnel lives in the process the agent dialled. With several replicas
//! on one database, a request that reaches another replica finds no tunnel
//! here and fails with [`TunnelError::NotConnected`]; forwarding between
//! replicas is not built.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use berth_api::node::v1 as pb;
use futures::Stream;
use tokio::sync::mpsc;
use tonic::Status;

/// How many chunks of one request wait for its reader.
const OUTPUT_BUFFER: usize = 64;

/// How many requests wait to be sent to one agent.
const REQUEST_BUFFER: usize = 64;

/// Why a request through a tunnel failed.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// No agent of this node holds a tunnel to this server process.
    #[error(
        "the agent of node {node} is not connected to this server replica; it may be connected to another replica (requests are not forwarded between replicas) or be down"
    )]
    NotConnected {
        /// The node.
        node: String,
    },
    /// The tunnel closed before the answer was complete.
    #[error("the agent of node {node} went away")]
    Closed {
        /// The node.
        node: String,
    },
    /// The agent could not do it: `NotFound`, `Unsupported` or `Failed`.
    #[error("node {node}: {message}")]
    Agent {
        /// The node.
        node: String,
        /// The agent's code.
        code: String,
        /// The agent's words.
        message: String,
    },
}

/// Every open tunnel of this process, by node; cheap to clone.
#[derive(Clone, Default)]
pub struct Tunnels {
    inner: Arc<TunnelsInner>,
}

#[derive(Default)]
struct TunnelsInner {
    links: Mutex<HashMap<String, Arc<Link>>>,
    next_id: AtomicU64,
}

/// One agent's tunnel.
struct Link {
    /// Tells this tunnel from the one that replaced it.
    generation: u64,
    to_agent: mpsc::Sender<Result<pb::ServerFrame, Status>>,
    /// The readers of the running requests, by id.
    waiting: Mutex<HashMap<u64, mpsc::Sender<Chunk>>>,
    /// The tunnel closed: its readers end with [`TunnelError::Closed`].
    closed: AtomicBool,
}

/// One piece of an agent's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// The agent accepted the request.
    Started,
    /// Output (an exec's stdout).
    Data(Vec<u8>),
    /// An exec's stderr.
    Stderr(Vec<u8>),
    /// An exec's command ended with this code; nothing follows.
    Exit(i32),
}

/// What a reader gets: a piece of the answer, or the failure.
type Chunk = Result<Piece, TunnelError>;

/// An open tunnel, as the RPC that serves it holds it.
pub struct Attached {
    /// The node.
    pub node: String,
    generation: u64,
}

/// The frames a tunnel sends to its agent.
pub type ToAgent = mpsc::Receiver<Result<pb::ServerFrame, Status>>;

impl Tunnels {
    /// A tunnel from `node`'s agent, replacing any it held before (an
    /// agent that reconnects wins over its stale tunnel).
    pub fn attach(&self, node: &str) -> (Attached, ToAgent) {
        let (to_agent, frames) = mpsc::channel(REQUEST_BUFFER);
        let generation = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let link = Arc::new(Link {
            generation,
            to_agent,
            waiting: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        });
        if let Some(replaced) = self.links().insert(node.to_owned(), link) {
            replaced.close();
        }
        let attached = Attached {
            node: node.to_owned(),
            generation,
        };
        (attached, frames)
    }

    /// Forgets `attached`'s tunnel (unless a newer one replaced it); its
    /// running requests end with [`TunnelError::Closed`].
    pub fn detach(&self, attached: &Attached) {
        let mut links = self.links();
        if links
            .get(&attached.node)
            .is_some_and(|link| link.generation == attached.generation)
            && let Some(link) = links.remove(&attached.node)
        {
            link.close();
        }
    }

    /// Hands an agent's frame to the request it answers.
    pub async fn deliver(&self, attached: &Attached, frame: pb::AgentFrame) {
        use pb::agent_frame::Kind;
        let Some(link) = self.link(&attached.node) else {
            return;
        };
        if link.generation != attached.generation {
            return;
        }
        let (chunk, last) = match frame.kind {
            Some(Kind::Started(_)) => (Ok(Piece::Started), false),
            Some(Kind::Data(data)) => (Ok(Piece::Data(data)), false),
            Some(Kind::Stderr(data)) => (Ok(Piece::Stderr(data)), false),
            Some(Kind::Exit(exit)) => (Ok(Piece::Exit(exit.exit_code)), true),
            Some(Kind::End(_)) | None => {
                link.forget(frame.id);
                return;
            }
            Some(Kind::Error(error)) => (
                Err(TunnelError::Agent {
                    node: attached.node.clone(),
                    code: error.code,
                    message: error.message,
                }),
                true,
            ),
        };
        let reader = link
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&frame.id)
            .cloned();
        // A slow reader holds up this tunnel's other answers, as TCP
        // would; a reader that went away gets nothing more.
        if let Some(reader) = reader
            && reader.send(chunk).await.is_err()
        {
            link.forget(frame.id);
        }
        if last {
            link.forget(frame.id);
        }
    }

    /// Asks `node`'s agent for a container's logs; answers once the agent
    /// accepted the request (or refused it).
    pub async fn logs(
        &self,
        node: &str,
        request: pb::LogRequest,
    ) -> Result<TunnelOutput, TunnelError> {
        self.open(node, pb::server_frame::Kind::Log(request)).await
    }

    /// Starts a command in a container on `node`, attached; answers once
    /// the agent started it (or refused). Its input goes through
    /// [`TunnelOutput::send`], its output and exit code come as
    /// [`TunnelOutput::next_piece`].
    pub async fn exec(
        &self,
        node: &str,
        request: pb::ExecRequest,
    ) -> Result<TunnelOutput, TunnelError> {
        self.open(node, pb::server_frame::Kind::Exec(request)).await
    }

    /// Sends request `kind` to `node`'s agent and waits for its acceptance.
    async fn open(
        &self,
        node: &str,
        kind: pb::server_frame::Kind,
    ) -> Result<TunnelOutput, TunnelError> {
        let not_connected = || TunnelError::NotConnected {
            node: node.to_owned(),
        };
        let link = self.link(node).ok_or_else(not_connected)?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (reader, chunks) = mpsc::channel(OUTPUT_BUFFER);
        link.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, reader);
        let mut output = TunnelOutput {
            node: node.to_owned(),
            id,
            link: link.clone(),
            chunks,
        };
        let frame = pb::ServerFrame {
            id,
            kind: Some(kind),
        };
        if link.to_agent.send(Ok(frame)).await.is_err() {
            return Err(not_connected());
        }
        match output.chunks.recv().await {
            Some(Ok(Piece::Started)) => Ok(output),
            Some(Ok(_)) => Err(TunnelError::Agent {
                node: node.to_owned(),
                code: "Failed".into(),
                message: "the agent sent output before accepting the request".into(),
            }),
            Some(Err(error)) => Err(error),
            None => Err(TunnelError::Closed {
                node: node.to_owned(),
            }),
        }
    }

    fn link(&self, node: &str) -> Option<Arc<Link>> {
        self.links().get(node).cloned()
    }

    fn links(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Link>>> {
        self.inner
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Link {
    /// Ends every running request: their readers see the senders drop.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn forget(&self, id: u64) {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
}

/// The output of one accepted request, chunk by chunk; it ends when the
/// agent's output ends. Dropping it cancels the request on the agent.
pub struct TunnelOutput {
    node: String,
    id: u64,
    link: Arc<Link>,
    chunks: mpsc::Receiver<Chunk>,
}

impl TunnelOutput {
    /// The next piece of the answer; `None` when it ended (after an
    /// `exit`, or the agent's `end`). A tunnel that closed first is an
    /// error.
    pub async fn next_piece(&mut self) -> Option<Result<Piece, TunnelError>> {
        std::future::poll_fn(|cx| self.poll_piece(cx)).await
    }

    /// Sends `kind` (an exec's stdin, resize or stdin end) to the agent as
    /// part of this request.
    pub async fn send(&self, kind: pb::server_frame::Kind) -> Result<(), TunnelError> {
        let frame = pb::ServerFrame {
            id: self.id,
            kind: Some(kind),
        };
        self.link
            .to_agent
            .send(Ok(frame))
            .await
            .map_err(|_| TunnelError::Closed {
                node: self.node.clone(),
            })
    }

    fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Piece, TunnelError>>> {
        loop {
            return match self.chunks.poll_recv(cx) {
                Poll::Ready(Some(Ok(Piece::Started))) => continue,
                Poll::Ready(Some(piece)) => Poll::Ready(Some(piece)),
                Poll::Ready(None) => {
                    // Ended by `end` or `exit`, or by the tunnel closing.
                    let closed = self.link.closed.load(Ordering::SeqCst);
                    Poll::Ready(closed.then(|| {
                        Err(TunnelError::Closed {
                            node: self.node.clone(),
                        })
                    }))
                }
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

impl Stream for TunnelOutput {
    type Item = Result<Vec<u8>, TunnelError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match self.poll_piece(cx) {
                Poll::Ready(Some(Ok(Piece::Data(data) | Piece::Stderr(data)))) => {
                    Poll::Ready(Some(Ok(data)))
                }
                Poll::Ready(Some(Ok(Piece::Started | Piece::Exit(_)))) => continue,
                Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

impl Drop for TunnelOutput {
    fn drop(&mut self) {
        let running = self
            .link
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id)
            .is_some();
        if running {
            let cancel = pb::ServerFrame {
                id: self.id,
                kind: Some(pb::server_frame::Kind::Cancel(pb::Cancel {})),
            };
            // Best effort: a full queue means a stuck agent, whose tunnel
            // will be replaced.
            let _ = self.link.to_agent.try_send(Ok(cancel));
        }
    }
}
