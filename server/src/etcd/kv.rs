//! The KV service: Range, Put, DeleteRange, Txn, Compact.

use berth_api::etcd::etcdserverpb as pb;
use tonic::{Request, Response, Status};

use super::Etcd;
use super::convert::{self, status};

#[tonic::async_trait]
impl pb::kv_server::Kv for Etcd {
    #[tracing::instrument(skip_all)]
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let request = request.into_inner();
        let mut range = convert::range_from_pb(&request);
        let post_process = convert::needs_post_processing(&request);
        if post_process {
            // Filters and sort orders other than by key need every match.
            range.limit = 0;
        }
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
        let response = self
            .store
            .put(convert::put_from_pb(request.into_inner()))
            .await
            .map_err(status)?;
        Ok(Response::new(self.headers.put(response)))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let response = self
            .store
            .delete(convert::delete_from_pb(request.into_inner()))
            .await
            .map_err(status)?;
        Ok(Response::new(self.headers.delete(response)))
    }

    #[tracing::instrument(skip_all)]
    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let txn = convert::txn_from_pb(request.into_inner())?;
        let response = self.store.txn(txn).await.map_err(status)?;
        Ok(Response::new(self.headers.txn(response)))
    }

    #[tracing::instrument(skip_all)]
    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
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
