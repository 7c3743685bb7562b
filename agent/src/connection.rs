//! The agent's link to the server: one gRPC channel for every node the
//! process runs (HTTP/2 multiplexes their calls), the node credential on
//! every call, and the back-off between reconnects.

use std::time::Duration;

use berth_api::node::v1::node_service_client::NodeServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::AgentError;

/// A client that sends a node credential with every call.
pub type NodeClient = NodeServiceClient<InterceptedService<Channel, Bearer>>;

/// A channel to `server` that connects on first use and reconnects by
/// itself after the server went away.
pub fn channel(server: &str) -> Result<Channel, AgentError> {
    let endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|e| AgentError::ServerUrl(format!("{server:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        // A thousand pod watches share the connection: wide windows keep
        // one slow stream from holding up the others.
        .initial_connection_window_size(Some(16 * 1024 * 1024))
        .initial_stream_window_size(Some(1024 * 1024));
    Ok(endpoint.connect_lazy())
}

/// A client for the calls before registration (no credential).
pub fn anonymous(channel: Channel) -> NodeServiceClient<Channel> {
    NodeServiceClient::new(channel)
}

/// A client that presents `credential` on every call.
pub fn authenticated(channel: Channel, credential: &str) -> Result<NodeClient, tonic::Status> {
    let value: MetadataValue<Ascii> = format!("Bearer {credential}")
        .parse()
        .map_err(|_| tonic::Status::internal("the node credential is not ASCII"))?;
    Ok(NodeServiceClient::with_interceptor(channel, Bearer(value)))
}

/// Puts `authorization: Bearer …` on each call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Exponential back-off with full jitter, from 200 ms up to 10 s.
#[derive(Clone, Debug)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// A fresh back-off.
    pub fn new() -> Backoff {
        Backoff { attempt: 0 }
    }

    /// How long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = (200u64 << self.attempt.min(6)).min(10_000);
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(rand::random_range(ceiling / 2..=ceiling))
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_grows_to_its_ceiling_and_starts_over_after_a_reset() {
        let mut backoff = Backoff::new();
        let first = backoff.next_delay();
        assert!(first <= Duration::from_millis(200));
        for _ in 0..20 {
            assert!(backoff.next_delay() <= Duration::from_secs(10));
        }
        assert!(backoff.next_delay() >= Duration::from_secs(5));
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(200));
    }
}
