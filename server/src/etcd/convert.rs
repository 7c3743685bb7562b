//! Between etcd's wire messages and the store's types, and from store errors
//! to the gRPC statuses etcd answers with (clients match on their messages).

use berth_api::etcd::etcdserverpb as pb;
use berth_api::etcd::mvccpb;
use tonic::{Code, Status};

use crate::store::StoreError;
use crate::store::types::*;

/// The status etcd answers a store error with.
pub(crate) fn status(error: StoreError) -> Status {
    match error {
        StoreError::EmptyKey => Status::invalid_argument("etcdserver: key is not provided"),
        StoreError::NotFound { .. } => Status::invalid_argument("etcdserver: key not found"),
        StoreError::Compacted { .. } => {
            Status::out_of_range("etcdserver: mvcc: required revision has been compacted")
        }
        StoreError::FutureRevision { .. } => {
            Status::out_of_range("etcdserver: mvcc: required revision is a future revision")
        }
        StoreError::LeaseNotFound(_) => Status::not_found("etcdserver: requested lease not found"),
        StoreError::LeaseExists(_) => {
            Status::failed_precondition("etcdserver: lease already exists")
        }
        StoreError::DuplicateKey { .. } => {
            Status::invalid_argument("etcdserver: duplicate key given in txn request")
        }
        StoreError::TooManyOps { .. } => {
            Status::invalid_argument("etcdserver: too many operations in txn request")
        }
        StoreError::ValueTooLarge { .. } => {
            Status::invalid_argument("etcdserver: request is too large")
        }
        StoreError::InvalidRequest(message) if message.starts_with("value is provided") => {
            Status::invalid_argument("etcdserver: value is provided")
        }
        StoreError::InvalidRequest(message) if message.starts_with("lease is provided") => {
            Status::invalid_argument("etcdserver: lease is provided")
        }
        StoreError::InvalidRequest(message) => Status::invalid_argument(message),
        StoreError::Conflict { .. } => Status::new(Code::Aborted, error.to_string()),
        StoreError::WatchCancelled(message) => Status::cancelled(message),
        StoreError::Unavailable(message) => Status::unavailable(message),
        StoreError::Database(message) => Status::internal(message),
    }
}

pub(crate) fn kv_to_pb(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub(crate) fn event_to_pb(event: Event) -> mvccpb::Event {
    let kind = match event.kind {
        EventKind::Put => mvccpb::event::EventType::Put,
        EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event {
        r#type: kind as i32,
        kv: Some(kv_to_pb(event.kv)),
        prev_kv: event.prev_kv.map(kv_to_pb),
    }
}

/// The store's read for a range. A range that [`needs_post_processing`]
/// reads every match with its value (a sort by value needs the values even
/// when the caller wants keys only); [`post_process`] then applies what the
/// caller asked.
pub(crate) fn range_from_pb(request: &pb::RangeRequest) -> RangeRequest {
    let whole = needs_post_processing(request);
    RangeRequest {
        range: KeyRange {
            key: request.key.clone(),
            range_end: request.range_end.clone(),
        },
        revision: request.revision.max(0),
        limit: if whole { 0 } else { request.limit.max(0) },
        keys_only: request.keys_only && !whole,
        count_only: request.count_only,
    }
}

pub(crate) fn put_from_pb(request: pb::PutRequest) -> PutRequest {
    PutRequest {
        key: request.key,
        value: request.value,
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
        lease_owner: None,
    }
}

pub(crate) fn delete_from_pb(request: pb::DeleteRangeRequest) -> DeleteRequest {
    DeleteRequest {
        range: KeyRange {
            key: request.key,
            range_end: request.range_end,
        },
        prev_kv: request.prev_kv,
    }
}

/// A range whose sort order or filters the store cannot apply itself: the
/// etcd layer reads everything in range, then filters, sorts and limits, as
/// etcd does.
pub(crate) fn needs_post_processing(request: &pb::RangeRequest) -> bool {
    request.sort_order != pb::range_request::SortOrder::None as i32
        || request.sort_target != pb::range_request::SortTarget::Key as i32
        || request.min_mod_revision != 0
        || request.max_mod_revision != 0
        || request.min_create_revision != 0
        || request.max_create_revision != 0
}

/// Filters, sorts and limits a range read in full, with etcd's rules: `count`
/// is the store's count before filtering; a target other than the key with
/// no order sorts ascending.
pub(crate) fn post_process(
    request: &pb::RangeRequest,
    mut response: RangeResponse,
) -> RangeResponse {
    use pb::range_request::{SortOrder, SortTarget};
    let keep = |kv: &KeyValue| {
        (request.min_mod_revision == 0 || kv.mod_revision >= request.min_mod_revision)
            && (request.max_mod_revision == 0 || kv.mod_revision <= request.max_mod_revision)
            && (request.min_create_revision == 0
                || kv.create_revision >= request.min_create_revision)
            && (request.max_create_revision == 0
                || kv.create_revision <= request.max_create_revision)
    };
    response.kvs.retain(keep);
    let target = SortTarget::try_from(request.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(request.sort_order).unwrap_or(SortOrder::None);
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
    if order != SortOrder::None {
        // The store returns key order; a stable sort keeps it among ties.
        response.kvs.sort_by(|a, b| {
            let ordering = match target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            };
            if order == SortOrder::Descend {
                ordering.reverse()
            } else {
                ordering
            }
        });
    }
    response.more = false;
    if request.limit > 0 && response.kvs.len() as i64 > request.limit {
        response.kvs.truncate(request.limit as usize);
        response.more = true;
    }
    if request.keys_only {
        for kv in &mut response.kvs {
            kv.value.clear();
        }
    }
    response
}

/// Applies [`post_process`] to every range of a transaction's answer that
/// needs it, nested transactions included: `request` is the transaction as
/// the caller sent it.
pub(crate) fn post_process_txn(request: &pb::TxnRequest, response: &mut TxnResponse) {
    let branch = if response.succeeded {
        &request.success
    } else {
        &request.failure
    };
    for (op, answer) in branch.iter().zip(response.responses.iter_mut()) {
        match (&op.request, answer) {
            (Some(pb::request_op::Request::RequestRange(range)), OpResponse::Range(read))
                if needs_post_processing(range) =>
            {
                *read = post_process(range, std::mem::take(read));
            }
            (Some(pb::request_op::Request::RequestTxn(txn)), OpResponse::Txn(nested)) => {
                post_process_txn(txn, nested);
            }
            _ => {}
        }
    }
}

/// Whether a transaction holds a range that [`needs_post_processing`].
pub(crate) fn txn_needs_post_processing(request: &pb::TxnRequest) -> bool {
    request
        .success
        .iter()
        .chain(&request.failure)
        .any(|op| match &op.request {
            Some(pb::request_op::Request::RequestRange(range)) => needs_post_processing(range),
            Some(pb::request_op::Request::RequestTxn(txn)) => txn_needs_post_processing(txn),
            _ => false,
        })
}

pub(crate) fn compare_from_pb(compare: pb::Compare) -> Result<Compare, Status> {
    use pb::compare::{CompareResult, CompareTarget as Target, TargetUnion};
    let op = match CompareResult::try_from(compare.result) {
        Ok(CompareResult::Equal) => CompareOp::Equal,
        Ok(CompareResult::NotEqual) => CompareOp::NotEqual,
        Ok(CompareResult::Greater) => CompareOp::Greater,
        Ok(CompareResult::Less) => CompareOp::Less,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "unknown compare result {}",
                compare.result
            )));
        }
    };
    let union = compare.target_union;
    let target = match Target::try_from(compare.target) {
        Ok(Target::Version) => CompareTarget::Version(match union {
            Some(TargetUnion::Version(v)) => v,
            _ => 0,
        }),
        Ok(Target::Create) => CompareTarget::CreateRevision(match union {
            Some(TargetUnion::CreateRevision(v)) => v,
            _ => 0,
        }),
        Ok(Target::Mod) => CompareTarget::ModRevision(match union {
            Some(TargetUnion::ModRevision(v)) => v,
            _ => 0,
        }),
        Ok(Target::Value) => CompareTarget::Value(match union {
            Some(TargetUnion::Value(v)) => v,
            _ => Vec::new(),
        }),
        Ok(Target::Lease) => CompareTarget::Lease(match union {
            Some(TargetUnion::Lease(v)) => v,
            _ => 0,
        }),
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "unknown compare target {}",
                compare.target
            )));
        }
    };
    Ok(Compare {
        range: KeyRange {
            key: compare.key,
            range_end: compare.range_end,
        },
        op,
        target,
    })
}

pub(crate) fn txn_from_pb(request: pb::TxnRequest) -> Result<TxnRequest, Status> {
    let ops = |ops: Vec<pb::RequestOp>| -> Result<Vec<Op>, Status> {
        ops.into_iter()
            .map(|op| match op.request {
                Some(pb::request_op::Request::RequestRange(range)) => {
                    Ok(Op::Range(range_from_pb(&range)))
                }
                Some(pb::request_op::Request::RequestPut(put)) => Ok(Op::Put(put_from_pb(put))),
                Some(pb::request_op::Request::RequestDeleteRange(delete)) => {
                    Ok(Op::Delete(delete_from_pb(delete)))
                }
                Some(pb::request_op::Request::RequestTxn(txn)) => Ok(Op::Txn(txn_from_pb(txn)?)),
                None => Err(Status::invalid_argument(
                    "etcdserver: a txn operation has no request",
                )),
            })
            .collect()
    };
    Ok(TxnRequest {
        compares: request
            .compare
            .into_iter()
            .map(compare_from_pb)
            .collect::<Result<_, _>>()?,
        success: ops(request.success)?,
        failure: ops(request.failure)?,
    })
}

/// Builds response headers for one server process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Headers {
    pub cluster_id: u64,
    pub member_id: u64,
}

impl Headers {
    pub(crate) fn at(&self, revision: Revision) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: 1,
        })
    }

    pub(crate) fn range(&self, response: RangeResponse) -> pb::RangeResponse {
        pb::RangeResponse {
            header: self.at(response.revision),
            kvs: response.kvs.into_iter().map(kv_to_pb).collect(),
            more: response.more,
            count: response.count,
        }
    }

    pub(crate) fn put(&self, response: PutResponse) -> pb::PutResponse {
        pb::PutResponse {
            header: self.at(response.revision),
            prev_kv: response.prev_kv.map(kv_to_pb),
        }
    }

    pub(crate) fn delete(&self, response: DeleteResponse) -> pb::DeleteRangeResponse {
        pb::DeleteRangeResponse {
            header: self.at(response.revision),
            deleted: response.deleted,
            prev_kvs: response.prev_kvs.into_iter().map(kv_to_pb).collect(),
        }
    }

    pub(crate) fn txn(&self, response: TxnResponse) -> pb::TxnResponse {
        let responses = response
            .responses
            .into_iter()
            .map(|op| pb::ResponseOp {
                response: Some(match op {
                    OpResponse::Range(r) => pb::response_op::Response::ResponseRange(self.range(r)),
                    OpResponse::Put(r) => pb::response_op::Response::ResponsePut(self.put(r)),
                    OpResponse::Delete(r) => {
                        pb::response_op::Response::ResponseDeleteRange(self.delete(r))
                    }
                    OpResponse::Txn(r) => pb::response_op::Response::ResponseTxn(self.txn(r)),
                }),
            })
            .collect();
        pb::TxnResponse {
            header: self.at(response.revision),
            succeeded: response.succeeded,
            responses,
        }
    }
}
