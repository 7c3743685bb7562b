//! Interactive exec, as `kubectl exec -it` needs it: what a runtime is
//! asked ([`AttachRequest`]), what it answers ([`ExecSession`]: the
//! command's output as [`ExecEvent`]s, and a sender for its
//! [`ExecInput`]), and how an answer becomes the tunnel's frames.
//!
//! The session hands an accepted exec to the tunnel ([`crate::tunnel`]);
//! the server's stdin, resize and stdin-end frames for its id go to the
//! session's input sender, never through the session's own `select!`, so a
//! slow command holds up nothing else.

use berth_api::node::v1 as pb;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use crate::runtime::RuntimeError;

/// A command to run in a container, attached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachRequest {
    /// The container's name in the pod.
    pub container: String,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Attach the command's standard input.
    pub stdin: bool,
    /// Give it a terminal: its stdout and stderr come as one stream.
    pub tty: bool,
}

/// What an attached command says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecEvent {
    /// Bytes on its standard output (or its terminal).
    Stdout(Vec<u8>),
    /// Bytes on its standard error.
    Stderr(Vec<u8>),
    /// It ended with this exit code; nothing follows.
    Exit(i32),
}

/// What the caller sends an attached command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecInput {
    /// Bytes for its standard input.
    Stdin(Vec<u8>),
    /// Its terminal's new size, in characters.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// Its standard input ended.
    StdinEnd,
}

/// A running attached command. Dropping both halves detaches from it.
pub struct ExecSession {
    /// Its output, ending with [`ExecEvent::Exit`] (or an error).
    pub output: BoxStream<'static, Result<ExecEvent, RuntimeError>>,
    /// Where its input goes. Unbounded because the session must never wait
    /// on a command; the server's tunnel (64 frames) bounds what is in
    /// flight.
    pub input: mpsc::UnboundedSender<ExecInput>,
}

/// What the server's frame for a running exec asks, if it is one.
pub fn input_of(kind: &pb::server_frame::Kind) -> Option<ExecInput> {
    use pb::server_frame::Kind;
    match kind {
        Kind::Stdin(data) => Some(ExecInput::Stdin(data.clone())),
        Kind::Resize(size) => Some(ExecInput::Resize {
            width: u16::try_from(size.width).unwrap_or(u16::MAX),
            height: u16::try_from(size.height).unwrap_or(u16::MAX),
        }),
        Kind::StdinEnd(_) => Some(ExecInput::StdinEnd),
        Kind::Log(_) | Kind::Exec(_) | Kind::Cancel(_) => None,
    }
}

/// An exec's output as the kinds of the tunnel's frames.
pub fn frames_of(
    output: BoxStream<'static, Result<ExecEvent, RuntimeError>>,
) -> BoxStream<'static, Result<pb::agent_frame::Kind, RuntimeError>> {
    use pb::agent_frame::Kind;
    output
        .map(|event| {
            event.map(|event| match event {
                ExecEvent::Stdout(data) => Kind::Data(data),
                ExecEvent::Stderr(data) => Kind::Stderr(data),
                ExecEvent::Exit(exit_code) => Kind::Exit(pb::ExecExit { exit_code }),
            })
        })
        .boxed()
}
