//! Forwarding: a query for a name outside the cluster goes, as the client
//! sent it, to the node's upstream servers in turn.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_server::proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{DnsMetrics, DnsSettings};

/// Asks each upstream in turn with `query`, the client's message as it
/// came (its id kept), over UDP for a UDP client and TCP for a TCP one;
/// the first answer that reads as a DNS message is returned. `None` when
/// there is no upstream or none answered within the timeout.
pub(super) async fn forward(
    settings: &DnsSettings,
    metrics: &DnsMetrics,
    query: &[u8],
    over_udp: bool,
) -> Option<Message> {
    for upstream in &settings.upstreams {
        let asked =
            tokio::time::timeout(settings.upstream_timeout, ask(*upstream, query, over_udp));
        let error = match asked.await {
            Ok(Ok(answer)) => return Some(answer),
            Ok(Err(error)) => error,
            Err(_) => io::Error::new(io::ErrorKind::TimedOut, "no answer in time"),
        };
        metrics
            .upstream_failures
            .with_label_values(&[&upstream.to_string()])
            .inc();
        tracing::debug!(%upstream, %error, "upstream DNS server failed; trying the next");
    }
    None
}

async fn ask(upstream: SocketAddr, query: &[u8], over_udp: bool) -> io::Result<Message> {
    let answer = if over_udp {
        ask_over_udp(upstream, query).await?
    } else {
        ask_over_tcp(upstream, query).await?
    };
    Message::from_vec(&answer).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// Whether `answer` is a response to `query` (its id, the QR bit set).
fn answers(query: &[u8], answer: &[u8]) -> bool {
    answer.len() >= 12 && query.get(..2) == answer.get(..2) && answer[2] & 0x80 != 0
}

async fn ask_over_udp(upstream: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected: datagrams from anyone else are not received, and an
    // upstream that is down fails at once with "connection refused".
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buffer = vec![0; usize::from(u16::MAX)];
    loop {
        let len = socket.recv(&mut buffer).await?;
        if answers(query, &buffer[..len]) {
            buffer.truncate(len);
            return Ok(buffer);
        }
    }
}

async fn ask_over_tcp(upstream: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let len = u16::try_from(query.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
    let mut stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    // Length and message in one write, so that they leave in one segment.
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut answer = vec![0; usize::from(len)];
    stream.read_exact(&mut answer).await?;
    if !answers(query, &answer) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the answer is not for the query",
        ));
    }
    Ok(answer)
}
