//! The OpenAPI schemas of every kind, closed against unknown fields.
//!
//! utoipa 6 writes `additionalProperties: false` only for types with
//! `#[serde(deny_unknown_fields)]`, which would make serde stop at the first
//! unknown field; decoding wants to report them all instead. So the schemas
//! are closed here, after derivation.

use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, Schema};

use super::field::FieldError;
use super::kind::Kind;
use super::{
    ConfigMap, Deployment, EndpointSlice, Event, HorizontalPodAutoscaler, Node, Pod, ReplicaSet,
    Secret, Service, Volume,
};

/// Every schema the kinds use (each kind, everything it contains,
/// [`Kind`] and [`FieldError`]) and their subresources' (`Scale`, a
/// Deployment's revisions and rollback), by name, with `additionalProperties: false`
/// on every struct. Maps keep their `additionalProperties`.
pub fn schemas() -> Vec<(String, RefOr<Schema>)> {
    let mut all = Vec::new();
    add::<Deployment>(&mut all);
    add::<ReplicaSet>(&mut all);
    add::<Pod>(&mut all);
    add::<Service>(&mut all);
    add::<EndpointSlice>(&mut all);
    add::<ConfigMap>(&mut all);
    add::<Secret>(&mut all);
    add::<Volume>(&mut all);
    add::<HorizontalPodAutoscaler>(&mut all);
    add::<Event>(&mut all);
    add::<Node>(&mut all);
    add::<Kind>(&mut all);
    add::<FieldError>(&mut all);
    add::<super::scale::Scale>(&mut all);
    add::<super::rollout::RollbackRequest>(&mut all);
    add::<super::rollout::DeploymentRevisionList>(&mut all);
    let mut seen = std::collections::BTreeSet::new();
    all.retain(|(name, _)| seen.insert(name.clone()));
    for (_, schema) in &mut all {
        if let RefOr::T(Schema::Object(object)) = schema
            && !object.properties.is_empty()
            && object.additional_properties.is_none()
        {
            object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        }
    }
    all
}

fn add<T: ToSchema>(all: &mut Vec<(String, RefOr<Schema>)>) {
    all.push((T::name().into_owned(), T::schema()));
    T::schemas(all);
}
