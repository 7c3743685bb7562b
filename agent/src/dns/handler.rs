//! How one query is answered: the client is checked against its
//! listener's subnet, the name resolved for the listener's tenant, and the
//! reply (records, NXDOMAIN, or an upstream's answer relayed) sent back
//! with EDNS and truncation as the client can take them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, Message, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::Record;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::sync::Semaphore;

use super::names::Resolution;
use super::{Outcome, Scope, Shared, Snapshot, upstream};

/// The smallest UDP payload every DNS client takes (RFC 1035).
const MIN_UDP_PAYLOAD: u16 = 512;

/// Answers the queries that reach one listener.
pub(super) struct QueryHandler {
    shared: Arc<Shared>,
    listen: SocketAddr,
    /// One permit per query waiting on the upstream servers.
    forwards: Arc<Semaphore>,
}

impl QueryHandler {
    pub(super) fn new(shared: Arc<Shared>, listen: SocketAddr) -> QueryHandler {
        let forwards = Arc::new(Semaphore::new(shared.max_forwards));
        QueryHandler {
            shared,
            listen,
            forwards,
        }
    }

    /// The reply to `request` and what it counts as.
    #[tracing::instrument(skip_all, fields(tenant = scope.tenant, client = %request.src()))]
    async fn reply(
        &self,
        snapshot: &Snapshot,
        scope: &Scope,
        request: &Request,
    ) -> (Reply, Outcome) {
        if !may_ask(scope, request.src()) {
            tracing::debug!("client outside the listener's subnet; refused");
            return (
                Reply::empty(request, ResponseCode::Refused, None),
                Outcome::Refused,
            );
        }
        let edns = match reply_edns(request) {
            Ok(edns) => edns,
            Err(badvers) => return (badvers, Outcome::Failed),
        };
        if request.metadata.op_code != OpCode::Query {
            return (
                Reply::empty(request, ResponseCode::NotImp, edns),
                Outcome::Failed,
            );
        }
        let Ok(info) = request.request_info() else {
            // Not exactly one question.
            return (
                Reply::empty(request, ResponseCode::FormErr, edns),
                Outcome::Failed,
            );
        };
        let query = info.query.original();
        let ttl = self.shared.settings.ttl;
        match snapshot
            .index
            .resolve(&scope.tenant, &query.name, query.query_type, ttl)
        {
            Resolution::Records {
                answers,
                additionals,
            } => (
                Reply {
                    answers,
                    additionals,
                    ..Reply::authoritative(request, ResponseCode::NoError, edns)
                },
                Outcome::Answered,
            ),
            Resolution::NxDomain => (
                Reply::authoritative(request, ResponseCode::NXDomain, edns),
                Outcome::NxDomain,
            ),
            Resolution::Forward => self.forward(request, edns).await,
        }
    }

    /// The upstream servers' answer to `request`, or SERVFAIL when none
    /// answers or too many queries wait on them already.
    async fn forward(&self, request: &Request, edns: Option<Edns>) -> (Reply, Outcome) {
        let Ok(_waiting) = self.forwards.try_acquire() else {
            tracing::debug!("too many queries wait on the upstream servers; SERVFAIL");
            return (
                Reply::empty(request, ResponseCode::ServFail, edns),
                Outcome::Failed,
            );
        };
        match upstream::forward(
            &self.shared.settings,
            &self.shared.metrics,
            request.as_slice(),
            request.protocol().is_datagram(),
        )
        .await
        {
            Some(answer) => (Reply::relayed(request, answer, edns), Outcome::Forwarded),
            None => (
                Reply::empty(request, ResponseCode::ServFail, edns),
                Outcome::Failed,
            ),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for QueryHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        let snapshot = self.shared.snapshot();
        let Some(scope) = snapshot.listeners.get(&self.listen) else {
            // The listener was removed from the table and is closing.
            return send(
                request,
                response,
                Reply::empty(request, ResponseCode::Refused, None),
            )
            .await;
        };
        let (reply, outcome) = self.reply(&snapshot, scope, request).await;
        scope.metrics.count(outcome);
        send(request, response, reply).await
    }
}

/// Whether `client` is in the listener's tenant network. Docker's
/// embedded DNS forwards with the container's own address as the source.
fn may_ask(scope: &Scope, client: SocketAddr) -> bool {
    let ip = match client.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(ip) => ip.to_ipv4_mapped(),
    };
    ip.is_some_and(|ip| scope.clients.contains(ip))
}

/// The OPT record of every reply to `request`: present when the request
/// had one (RFC 6891), advertising the client's own payload size, which
/// is what hickory truncates a UDP reply to. A request of an EDNS version
/// above 0 gets its BADVERS reply instead.
fn reply_edns(request: &Request) -> Result<Option<Edns>, Reply> {
    let Some(asked) = &request.edns else {
        return Ok(None);
    };
    let mut edns = Edns::new();
    edns.set_max_payload(asked.max_payload().max(MIN_UDP_PAYLOAD));
    edns.set_version(0);
    if asked.version() > 0 {
        return Err(Reply::empty(request, ResponseCode::BADVERS, Some(edns)));
    }
    Ok(Some(edns))
}

/// A reply's header, sections and OPT record.
struct Reply {
    metadata: Metadata,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    edns: Option<Edns>,
}

impl Reply {
    /// A reply with `code` and no records.
    fn empty(request: &Request, code: ResponseCode, edns: Option<Edns>) -> Reply {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = code;
        // Other names are resolved upstream on the client's behalf.
        metadata.recursion_available = true;
        Reply {
            metadata,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            edns,
        }
    }

    /// An answer for a name the agent owns, with no records yet.
    fn authoritative(request: &Request, code: ResponseCode, edns: Option<Edns>) -> Reply {
        let mut reply = Reply::empty(request, code, edns);
        reply.metadata.authoritative = true;
        reply
    }

    /// An upstream's `answer` as the client's reply: its header and
    /// records as they came, its EDNS options with the client's payload
    /// size.
    fn relayed(request: &Request, answer: Message, edns: Option<Edns>) -> Reply {
        let mut metadata = answer.metadata;
        metadata.id = request.metadata.id;
        let edns = edns.map(|ours| match answer.edns {
            Some(mut theirs) => {
                theirs.set_max_payload(ours.max_payload());
                theirs
            }
            None => ours,
        });
        Reply {
            metadata,
            answers: answer.answers,
            authorities: answer.authorities,
            additionals: answer.additionals,
            edns,
        }
    }
}

/// Sends `reply` to the client of `request`.
async fn send<R: ResponseHandler>(
    request: &Request,
    mut response: R,
    reply: Reply,
) -> ResponseInfo {
    let message = MessageResponseBuilder::new(&request.queries, reply.edns.as_ref()).build(
        reply.metadata,
        &reply.answers,
        &reply.authorities,
        std::iter::empty(),
        &reply.additionals,
    );
    match response.send_response(message).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(client = %request.src(), %error, "a DNS reply could not be sent");
            ResponseInfo::from(Header {
                metadata: reply.metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}
