//! Raw etcd v3 gRPC clients that act as one Berth user, for tests that must
//! reach every RPC with exact requests (etcd's client libraries wrap only
//! some of them, and hide what they do not wrap).

use berth_api::etcd::etcdserverpb as pb;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// Adds the caller's `token` metadata, as etcd's clients do.
#[derive(Clone, Debug)]
pub struct Token(Option<AsciiMetadataValue>);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("token", token.clone());
        }
        Ok(request)
    }
}

/// A channel under this token.
pub type Signed = InterceptedService<Channel, Token>;

/// One caller of the etcd API: a channel and, once signed in, a token.
#[derive(Clone, Debug)]
pub struct EtcdCaller {
    channel: Channel,
    token: Token,
}

impl EtcdCaller {
    /// A caller without a token, on `endpoint` (`HOST:PORT`).
    pub async fn anonymous(endpoint: &str) -> EtcdCaller {
        let channel = Channel::from_shared(format!("http://{endpoint}"))
            .expect("an endpoint URL")
            .connect()
            .await
            .expect("connecting to the etcd API");
        EtcdCaller {
            channel,
            token: Token(None),
        }
    }

    /// Signs in with `Auth.Authenticate`; the status when refused.
    pub async fn sign_in(
        endpoint: &str,
        email: &str,
        password: &str,
    ) -> Result<EtcdCaller, Status> {
        let mut caller = Self::anonymous(endpoint).await;
        let token = caller.authenticate(email, password).await?;
        caller.token = Token(Some(token.parse().expect("a token is ASCII")));
        Ok(caller)
    }

    /// One `Auth.Authenticate` call; the token it answers.
    pub async fn authenticate(&self, email: &str, password: &str) -> Result<String, Status> {
        self.auth()
            .authenticate(pb::AuthenticateRequest {
                name: email.to_owned(),
                password: password.to_owned(),
            })
            .await
            .map(|response| response.into_inner().token)
    }

    fn signed(&self) -> Signed {
        InterceptedService::new(self.channel.clone(), self.token.clone())
    }

    /// The KV service.
    pub fn kv(&self) -> pb::kv_client::KvClient<Signed> {
        pb::kv_client::KvClient::new(self.signed())
    }

    /// The Watch service.
    pub fn watch(&self) -> pb::watch_client::WatchClient<Signed> {
        pb::watch_client::WatchClient::new(self.signed())
    }

    /// The Lease service.
    pub fn lease(&self) -> pb::lease_client::LeaseClient<Signed> {
        pb::lease_client::LeaseClient::new(self.signed())
    }

    /// The Maintenance service.
    pub fn maintenance(&self) -> pb::maintenance_client::MaintenanceClient<Signed> {
        pb::maintenance_client::MaintenanceClient::new(self.signed())
    }

    /// The Cluster service.
    pub fn cluster(&self) -> pb::cluster_client::ClusterClient<Signed> {
        pb::cluster_client::ClusterClient::new(self.signed())
    }

    /// The Auth service.
    pub fn auth(&self) -> pb::auth_client::AuthClient<Signed> {
        pb::auth_client::AuthClient::new(self.signed())
    }

    /// Puts `value` at `key`; answers the revision it was written at.
    pub async fn put(&self, key: &str, value: &str) -> Result<i64, Status> {
        self.kv()
            .put(pb::PutRequest {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().header.map_or(0, |h| h.revision))
    }
}
