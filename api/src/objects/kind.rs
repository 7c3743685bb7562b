//! The registry of kinds: the one place that knows each kind's names,
//! plural, apiVersion and scope.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The `apiVersion` Berth accepts for every kind besides Kubernetes' own.
pub const BERTH_API_VERSION: &str = "berth.dev/v1";

/// Every kind of object Berth stores.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum Kind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` ReplicaSet.
    ReplicaSet,
    /// `v1` Pod.
    Pod,
    /// `v1` Service.
    Service,
    /// `discovery.k8s.io/v1` EndpointSlice: a Service's pods, kept by the
    /// server.
    EndpointSlice,
    /// `v1` ConfigMap.
    ConfigMap,
    /// `v1` Secret.
    Secret,
    /// Berth's volume claim (`v1` PersistentVolumeClaim in Kubernetes).
    Volume,
    /// `autoscaling/v2` HorizontalPodAutoscaler.
    HorizontalPodAutoscaler,
    /// `v1` Event.
    Event,
    /// `v1` Node (cluster-scoped).
    Node,
}

impl Kind {
    /// Every kind, in the order the API documents them.
    pub fn all() -> &'static [Kind] {
        &[
            Kind::Deployment,
            Kind::ReplicaSet,
            Kind::Pod,
            Kind::Service,
            Kind::EndpointSlice,
            Kind::ConfigMap,
            Kind::Secret,
            Kind::Volume,
            Kind::HorizontalPodAutoscaler,
            Kind::Event,
            Kind::Node,
        ]
    }

    /// The `kind` field's value.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::Volume => "Volume",
            Kind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            Kind::Event => "Event",
            Kind::Node => "Node",
        }
    }

    /// The URL segment (`deployments`) and the store key segment.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Deployment => "deployments",
            Kind::ReplicaSet => "replicasets",
            Kind::Pod => "pods",
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::ConfigMap => "configmaps",
            Kind::Secret => "secrets",
            Kind::Volume => "volumes",
            Kind::HorizontalPodAutoscaler => "horizontalpodautoscalers",
            Kind::Event => "events",
            Kind::Node => "nodes",
        }
    }

    /// The kind a URL segment names.
    pub fn from_plural(plural: &str) -> Option<Kind> {
        Kind::all().iter().copied().find(|k| k.plural() == plural)
    }

    /// The kind a `kind` field names; `PersistentVolumeClaim` is Berth's
    /// `Volume`, so that Kubernetes manifests apply.
    pub fn from_kind_name(name: &str) -> Option<Kind> {
        if name == "PersistentVolumeClaim" {
            return Some(Kind::Volume);
        }
        Kind::all().iter().copied().find(|k| k.name() == name)
    }

    /// Kubernetes' `apiVersion` for the kind.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Deployment | Kind::ReplicaSet => "apps/v1",
            Kind::HorizontalPodAutoscaler => "autoscaling/v2",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::Pod
            | Kind::Service
            | Kind::ConfigMap
            | Kind::Secret
            | Kind::Volume
            | Kind::Event
            | Kind::Node => "v1",
        }
    }

    /// Whether a manifest may name the kind with this `apiVersion`:
    /// Kubernetes' own or Berth's.
    pub fn accepts_api_version(self, api_version: &str) -> bool {
        api_version == self.api_version() || api_version == BERTH_API_VERSION
    }

    /// Whether objects of the kind live in a tenant (all but Node).
    pub fn namespaced(self) -> bool {
        self != Kind::Node
    }

    /// Whether the kind has a `status` that controllers or agents write.
    pub fn has_status(self) -> bool {
        !matches!(
            self,
            Kind::ConfigMap | Kind::Secret | Kind::Event | Kind::EndpointSlice
        )
    }

    /// Whether the kind has the scale subresource (`.../{name}/scale`).
    pub fn has_scale(self) -> bool {
        matches!(self, Kind::Deployment | Kind::ReplicaSet)
    }

    /// The `kind` of a list answer (`DeploymentList`).
    pub fn list_kind(self) -> &'static str {
        match self {
            Kind::Deployment => "DeploymentList",
            Kind::ReplicaSet => "ReplicaSetList",
            Kind::Pod => "PodList",
            Kind::Service => "ServiceList",
            Kind::EndpointSlice => "EndpointSliceList",
            Kind::ConfigMap => "ConfigMapList",
            Kind::Secret => "SecretList",
            Kind::Volume => "VolumeList",
            Kind::HorizontalPodAutoscaler => "HorizontalPodAutoscalerList",
            Kind::Event => "EventList",
            Kind::Node => "NodeList",
        }
    }
}

impl Kind {
    /// kubectl's short names for the kind (`deploy`, `po`, `svc`), which
    /// the CLI accepts too.
    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Kind::Deployment => &["deploy"],
            Kind::ReplicaSet => &["rs"],
            Kind::Pod => &["po"],
            Kind::Service => &["svc"],
            Kind::EndpointSlice => &["eps"],
            Kind::ConfigMap => &["cm"],
            Kind::Secret => &[],
            Kind::Volume => &[
                "vol",
                "pvc",
                "persistentvolumeclaim",
                "persistentvolumeclaims",
            ],
            Kind::HorizontalPodAutoscaler => &["hpa"],
            Kind::Event => &["ev"],
            Kind::Node => &["no"],
        }
    }

    /// The kind a user's word names, as kubectl reads it: the plural
    /// (`deployments`), the singular (`deployment`, `Deployment`), or a
    /// short name (`deploy`); case does not matter.
    pub fn from_word(word: &str) -> Option<Kind> {
        let word = word.to_ascii_lowercase();
        Kind::all().iter().copied().find(|kind| {
            kind.plural() == word
                || kind.name().eq_ignore_ascii_case(&word)
                || kind.short_names().contains(&word.as_str())
        })
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_names_a_kind_by_plural_singular_or_short_name_in_any_case() {
        for kind in Kind::all() {
            assert_eq!(Kind::from_word(kind.plural()), Some(*kind));
            assert_eq!(Kind::from_word(kind.name()), Some(*kind));
            assert_eq!(Kind::from_word(&kind.name().to_lowercase()), Some(*kind));
            for short in kind.short_names() {
                assert_eq!(Kind::from_word(short), Some(*kind), "{short}");
            }
        }
        assert_eq!(Kind::from_word("SVC"), Some(Kind::Service));
        assert_eq!(Kind::from_word("gadgets"), None);
    }

    #[test]
    fn every_kind_is_found_again_by_its_plural_and_its_name() {
        for kind in Kind::all() {
            assert_eq!(Kind::from_plural(kind.plural()), Some(*kind));
            assert_eq!(Kind::from_kind_name(kind.name()), Some(*kind));
            assert!(kind.accepts_api_version(kind.api_version()));
            assert!(kind.accepts_api_version(BERTH_API_VERSION));
        }
        assert_eq!(
            Kind::from_kind_name("PersistentVolumeClaim"),
            Some(Kind::Volume)
        );
        assert!(!Kind::Deployment.accepts_api_version("v1"));
        assert!(!Kind::Node.namespaced() && Kind::Pod.namespaced());
        assert_eq!(
            Kind::HorizontalPodAutoscaler.list_kind(),
            "HorizontalPodAutoscalerList"
        );
    }
}
