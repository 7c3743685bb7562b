//! What every kind's type offers generically: its [`Kind`], its metadata,
//! and the hooks decoding runs (defaults, validation, normalisation).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::field::FieldError;
use super::kind::Kind;
use super::meta::ObjectMeta;
use super::{
    ConfigMap, Deployment, EndpointSlice, Event, HorizontalPodAutoscaler, Node, Pod, ReplicaSet,
    Secret, Service, Volume,
};
use super::{defaults, validate};

/// A kind's top-level type.
pub trait Resource:
    Clone + std::fmt::Debug + Default + PartialEq + Serialize + DeserializeOwned + utoipa::ToSchema
{
    /// The kind this type stores.
    const KIND: Kind;

    /// A new object named `name`, with the canonical `apiVersion` and `kind`.
    fn named(name: &str) -> Self;

    /// Its `metadata`.
    fn metadata(&self) -> &ObjectMeta;

    /// Its `metadata`, to change.
    fn metadata_mut(&mut self) -> &mut ObjectMeta;

    /// Fills in what was left out (see [`defaults`]).
    fn apply_defaults(&mut self);

    /// Every problem, with field paths; empty when valid.
    fn validate(&self) -> Vec<FieldError>;

    /// Rewrites write-only conveniences into their stored form, after
    /// validation.
    fn normalise(&mut self) {}

    /// How many seconds a deletion leaves whoever runs the object to stop
    /// it (a pod's node; see [`super::pod::Pod::deletion_grace`]); 0 for
    /// kinds nothing runs.
    fn deletion_grace(&self) -> i64 {
        0
    }
}

macro_rules! resource {
    ($type:ident, $kind:ident, $defaults:expr, $validate:path $(, normalise = $normalise:expr)? $(, grace = $grace:expr)?) => {
        impl Resource for $type {
            const KIND: Kind = Kind::$kind;

            fn named(name: &str) -> Self {
                $type {
                    api_version: Kind::$kind.api_version().to_owned(),
                    kind: Kind::$kind.name().to_owned(),
                    metadata: ObjectMeta {
                        name: name.to_owned(),
                        ..ObjectMeta::default()
                    },
                    ..$type::default()
                }
            }

            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }

            fn apply_defaults(&mut self) {
                let apply: fn(&mut $type) = $defaults;
                apply(self);
            }

            fn validate(&self) -> Vec<FieldError> {
                $validate(self)
            }

            $(fn normalise(&mut self) {
                let normalise: fn(&mut $type) = $normalise;
                normalise(self);
            })?

            $(fn deletion_grace(&self) -> i64 {
                let grace: fn(&$type) -> i64 = $grace;
                grace(self)
            })?
        }
    };
}

resource!(
    Deployment,
    Deployment,
    defaults::deployment,
    validate::deployment
);
resource!(
    ReplicaSet,
    ReplicaSet,
    defaults::replica_set,
    validate::replica_set
);
resource!(
    Pod,
    Pod,
    |pod| defaults::pod_spec(&mut pod.spec),
    validate::pod,
    grace = |pod| pod.deletion_grace(None)
);
resource!(Service, Service, defaults::service, validate::service);
resource!(
    EndpointSlice,
    EndpointSlice,
    |_| {},
    validate::endpoint_slice
);
resource!(ConfigMap, ConfigMap, |_| {}, validate::config_map);
resource!(
    Secret,
    Secret,
    defaults::secret,
    validate::secret,
    normalise = Secret::merge_string_data
);
resource!(Volume, Volume, defaults::volume, validate::volume);
resource!(
    HorizontalPodAutoscaler,
    HorizontalPodAutoscaler,
    defaults::horizontal_pod_autoscaler,
    validate::horizontal_pod_autoscaler
);
resource!(Event, Event, |_| {}, validate::event);
resource!(Node, Node, |_| {}, validate::node);
