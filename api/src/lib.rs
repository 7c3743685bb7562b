//! Berth's protocol definitions and, as they land, its resource types and
//! their validation. This crate does no I/O.
//!
//! - [`etcd`]: the etcd v3 API (messages and gRPC services), generated from
//!   `proto/etcd` with etcd's own field numbers.
//! - [`node`]: the node API (agent ↔ server), generated from
//!   `proto/berth/node.proto`.
//! - [`quantity`]: resource quantities (`500m`, `128Mi`).
//! - [`duration`]: durations as Kubernetes' flags write them (`40s`, `5m`).
//! - [`exec_channels`]: the exec WebSocket's channels (Kubernetes').
//! - [`labels`]: label selectors and the name rules (DNS-1123) of keys,
//!   values and object names.
//! - [`pod_security`]: Kubernetes' Pod Security Standards (the levels
//!   `privileged`, `baseline`, `restricted` and their checks).
//! - [`objects`]: the resource kinds (Kubernetes-shaped types), their
//!   defaults and validation, and [`objects::decode()`], which turns submitted
//!   JSON into what is stored.

pub mod duration;
pub mod exec_channels;
pub mod labels;
pub mod objects;
pub mod pod_security;
pub mod quantity;

pub mod etcd {
    //! The etcd v3 API as Berth serves it.

    /// `etcdserverpb`: requests, answers and the services.
    #[expect(missing_docs, reason = "generated from the .proto files")]
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }

    /// `mvccpb`: keys, values and events.
    #[expect(missing_docs, reason = "generated from the .proto files")]
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }

    /// `authpb`: the permissions of etcd's auth API.
    #[expect(missing_docs, reason = "generated from the .proto files")]
    pub mod authpb {
        tonic::include_proto!("authpb");
    }
}

pub mod node {
    //! The node API, which agents speak to the server.

    /// `berth.node.v1`: messages, the `NodeService` server and its client.
    #[expect(missing_docs, reason = "generated from the .proto files")]
    pub mod v1 {
        tonic::include_proto!("berth.node.v1");
    }
}
