//! Kubernetes' exec channel protocol (`v5.channel.k8s.io`, and
//! `v4.channel.k8s.io` before it), which the server's exec WebSocket and
//! the CLI both speak: every binary message starts with its channel.

/// The subprotocols spoken, preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// What the caller types.
pub const STDIN: u8 = 0;
/// What the command writes.
pub const STDOUT: u8 = 1;
/// What the command writes to standard error.
pub const STDERR: u8 = 2;
/// The outcome: a Kubernetes `Status` in JSON, with the exit code.
pub const STATUS: u8 = 3;
/// A terminal size, `{"Width":..,"Height":..}`.
pub const RESIZE: u8 = 4;
/// v5 only: 255 followed by the channel to close.
pub const CLOSE: u8 = 255;
