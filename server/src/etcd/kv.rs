//! The KV service: Range, Put, DeleteRange, Txn, Compact.

use berth_api::etcd::etcdserverpb as pb;
use tonic::{Request, Response, Status};

use super::convert::{self, status};
use super::{Etcd, Write, check, check_admin};
use crate::auth::{self, Access, Subject};
use crate::store::types::{KeyRange, LeaseOwner, Op, PutRequest, TxnRequest};

#[tonic::async_trait]
impl pb::kv_server::Kv for Etcd {
    #[tracing::instrument(skip_all)]
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let subject = self.subject(&request).await?;
        let request = request.into_inner();
        let range = convert::range_from_pb(&request);
        check(&subject, Access::Read, &range.range)?;
        let post_process = convert::needs_post_processing(&request);
        let response = self.store.range(range).await.map_err(status)?;
        let response = if post_process {
            convert::post_process(&request, response)
        } else {
            response
        };
        Ok(Response::new(self.headers.range(response)))
    }

    #[tracing::instrument(skip_all)]
    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let subject = self.subject(&request).await?;
        self.check_alarms(Write::Growing)?;
        let mut put = convert::put_from_pb(request.into_inner());
        check_put(&subject, &mut put)?;
        let response = self.store.put(put).await.map_err(status)?;
        Ok(Response::new(self.headers.put(response)))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let subject = self.subject(&request).await?;
        self.check_alarms(Write::Other)?;
        let delete = convert::delete_from_pb(request.into_inner());
        check(&subject, Access::Write, &delete.range)?;
        let response = self.store.delete(delete).await.map_err(status)?;
        Ok(Response::new(self.headers.delete(response)))
    }

    #[tracing::instrument(skip_all)]
    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let subject = self.subject(&request).await?;
        let request = request.into_inner();
        // Sorts and filters inside are applied to the answer, as etcd does.
        let original = convert::txn_needs_post_processing(&request).then(|| request.clone());
        let mut txn = convert::txn_from_pb(request)?;
        if let Some(write) = writes(&txn) {
            self.check_alarms(write)?;
        }
        check_txn(&subject, &mut txn)?;
        let mut response = self.store.txn(txn).await.map_err(status)?;
        if let Some(original) = original {
            convert::post_process_txn(&original, &mut response);
        }
        Ok(Response::new(self.headers.txn(response)))
    }

    #[tracing::instrument(skip_all)]
    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        check_admin(&self.subject(&request).await?)?;
        self.check_alarms(Write::Other)?;
        let revision = self
            .store
            .compact(request.into_inner().revision)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CompactionResponse {
            header: self.headers.at(revision),
        }))
    }
}

/// The key a put writes must be the caller's, and so must the lease it
/// attaches: a tenant member's put takes only a lease of the key's tenant
/// (the store answers another's as a lease that does not exist).
fn check_put(subject: &Option<Subject>, put: &mut PutRequest) -> Result<(), Status> {
    check(subject, Access::Write, &KeyRange::single(put.key.clone()))?;
    if let Some(subject) = subject
        && !subject.platform_admin
    {
        // `check` let the key through, so it lies in a tenant's prefix;
        // were it not, no lease would match an empty tenant.
        put.lease_owner = Some(LeaseOwner::Tenant(
            auth::key_tenant(&put.key).unwrap_or_default(),
        ));
    }
    Ok(())
}

/// Every key a transaction compares, reads or writes must be the caller's,
/// and every lease it attaches too.
fn check_txn(subject: &Option<Subject>, txn: &mut TxnRequest) -> Result<(), Status> {
    for compare in &txn.compares {
        check(subject, Access::Read, &compare.range)?;
    }
    for op in txn.success.iter_mut().chain(txn.failure.iter_mut()) {
        match op {
            Op::Range(range) => check(subject, Access::Read, &range.range)?,
            Op::Put(put) => check_put(subject, put)?,
            Op::Delete(delete) => check(subject, Access::Write, &delete.range)?,
            Op::Txn(nested) => check_txn(subject, nested)?,
        }
    }
    Ok(())
}

/// How a transaction may write, in either branch and nested ones: growing
/// (a put), otherwise (only deletes), or not at all. etcd judges the whole
/// request, even if the branch that runs only reads.
fn writes(txn: &TxnRequest) -> Option<Write> {
    txn.success
        .iter()
        .chain(&txn.failure)
        .filter_map(|op| match op {
            Op::Put(_) => Some(Write::Growing),
            Op::Delete(_) => Some(Write::Other),
            Op::Txn(nested) => writes(nested),
            Op::Range(_) => None,
        })
        .min_by_key(|w| *w != Write::Growing)
}
