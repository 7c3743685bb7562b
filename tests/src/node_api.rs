//! Calling the node API as an agent does: a client, the server's join
//! token, registering a node, and requests that carry a node credential.

use berth_api::node::v1 as pb;
use berth_api::node::v1::node_service_client::NodeServiceClient;
use tonic::Request;
use tonic::transport::Channel;

use crate::process::TestServer;

/// A node API client of `server`.
pub async fn client(server: &TestServer) -> NodeServiceClient<Channel> {
    NodeServiceClient::connect(format!("http://{}", server.process.grpc_addr))
        .await
        .expect("connecting to the node API")
}

/// The join token `server` wrote into its data directory at first start.
pub fn join_token(server: &TestServer) -> String {
    let token_file = server.data_dir.path().join("node-token");
    std::fs::read_to_string(&token_file)
        .expect("the server writes <data-dir>/node-token at first start")
        .trim()
        .to_owned()
}

/// The registration of `node`: 4 CPUs, 16 GiB, 110 pods, label `zone: a`,
/// InternalIP 192.0.2.10.
pub fn register_request(join_token: &str, node: &str) -> pb::RegisterRequest {
    pb::RegisterRequest {
        join_token: join_token.into(),
        node_name: node.into(),
        capacity: Some(pb::Capacity {
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: "110".into(),
            ..pb::Capacity::default()
        }),
        labels: [("zone".to_owned(), "a".to_owned())].into(),
        addresses: vec![pb::NodeAddress {
            r#type: "InternalIP".into(),
            address: "192.0.2.10".into(),
        }],
        // An agent that reports no allocatable and no conditions, as those
        // before they existed: allocatable is the capacity.
        ..pb::RegisterRequest::default()
    }
}

/// Registers as `request` asks; answers the node credential.
pub async fn register_as(server: &TestServer, request: pb::RegisterRequest) -> String {
    client(server)
        .await
        .register(request)
        .await
        .expect("registering with the join token")
        .into_inner()
        .node_credential
}

/// Registers `node` with [`register_request`]; answers its credential.
pub async fn register(server: &TestServer, join_token: &str, node: &str) -> String {
    register_as(server, register_request(join_token, node)).await
}

/// A request carrying `bearer` as its authorization.
pub fn with_bearer<T>(message: T, bearer: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {bearer}").parse().expect("an ASCII header"),
    );
    request
}
