//! Turning a submitted JSON object into a stored one: check `kind` and
//! `apiVersion`, read it strictly (every unknown field is an error, as with
//! Kubernetes' `fieldValidation=Strict`), apply defaults, validate, and
//! write it back out normalised.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::field::FieldError;
use super::kind::Kind;
use super::resource::Resource;
use super::{
    ConfigMap, Deployment, EndpointSlice, Event, HorizontalPodAutoscaler, Node, Pod, ReplicaSet,
    Secret, Service, Volume,
};

/// A submitted object that passed every check, as it is to be stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// Its kind.
    pub kind: Kind,
    /// The object with defaults applied, unknown-free and normalised
    /// (`PersistentVolumeClaim` is written as `Volume`, a Secret's
    /// `stringData` is merged into `data`).
    pub value: Value,
}

/// Decodes a submitted object of any kind, or of `expected` when the URL
/// names one. Every problem is reported at once, each with its field path.
pub fn decode(expected: Option<Kind>, mut value: Value) -> Result<Decoded, Vec<FieldError>> {
    let kind = check_type(expected, &mut value)?;
    let value = match kind {
        Kind::Deployment => normalised::<Deployment>(value),
        Kind::ReplicaSet => normalised::<ReplicaSet>(value),
        Kind::Pod => normalised::<Pod>(value),
        Kind::Service => normalised::<Service>(value),
        Kind::EndpointSlice => normalised::<EndpointSlice>(value),
        Kind::ConfigMap => normalised::<ConfigMap>(value),
        Kind::Secret => normalised::<Secret>(value),
        Kind::Volume => normalised::<Volume>(value),
        Kind::HorizontalPodAutoscaler => normalised::<HorizontalPodAutoscaler>(value),
        Kind::Event => normalised::<Event>(value),
        Kind::Node => normalised::<Node>(value),
    }?;
    Ok(Decoded { kind, value })
}

/// Like [`decode`] for a kind known at compile time, answering the typed
/// object.
pub fn decode_as<T: Resource>(mut value: Value) -> Result<T, Vec<FieldError>> {
    check_type(Some(T::KIND), &mut value)?;
    strip_nulls(&mut value);
    let mut object: T = from_value(value)?;
    object.apply_defaults();
    let errors = object.validate();
    if !errors.is_empty() {
        return Err(errors);
    }
    object.normalise();
    Ok(object)
}

fn normalised<T: Resource>(value: Value) -> Result<Value, Vec<FieldError>> {
    let object: T = decode_as(value)?;
    serde_json::to_value(&object).map_err(|error| {
        vec![FieldError::new(
            "",
            format!("cannot be written back: {error}"),
        )]
    })
}

/// Reads JSON into a typed value strictly: every unknown field is reported
/// (`spec.replicaz: unknown field`), and a wrong type with its path. No
/// defaults, no validation: for reading what the server stored itself.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, Vec<FieldError>> {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path| {
        unknown.push(FieldError::new(ignored_path(&path), "unknown field"));
    };
    // serde_ignored sits inside serde_path_to_error so that a type error
    // still carries its path while unknown fields are collected on the way.
    let result: Result<T, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut record));
    match result {
        Ok(object) if unknown.is_empty() => Ok(object),
        Ok(_) => Err(unknown),
        Err(error) => {
            unknown.push(FieldError::new(
                tracked_path(error.path()),
                error.inner().to_string(),
            ));
            Err(unknown)
        }
    }
}

/// Like [`from_value`], straight from JSON text: one pass over the bytes
/// and no intermediate [`Value`], for reading what the server stored
/// itself (the reflectors and the node API read every object this way).
/// Text that is not a well-formed `T` is read again through
/// [`from_value`], so the errors are the same, with their paths.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Vec<FieldError>> {
    let mut unknown = false;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let fast: Result<T, _> =
        serde_ignored::deserialize(&mut deserializer, |_: serde_ignored::Path| unknown = true);
    if let Ok(object) = fast
        && !unknown
        && deserializer.end().is_ok()
    {
        return Ok(object);
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|error| vec![FieldError::new("", format!("not JSON: {error}"))])?;
    from_value(value)
}

/// Drops object members that are `null`: Kubernetes reads them as absent,
/// and generated manifests are full of them (`creationTimestamp: null`).
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(object) => {
            object.retain(|_, member| !member.is_null());
            object.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// `kind` must name a kind (the one `expected`, if given) and `apiVersion`
/// must be one that kind accepts. On success the alias `PersistentVolumeClaim`
/// has been rewritten to `Volume`.
fn check_type(expected: Option<Kind>, value: &mut Value) -> Result<Kind, Vec<FieldError>> {
    let Some(object) = value.as_object_mut() else {
        return Err(vec![FieldError::new("", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    // The kind as written, right or wrong for this endpoint, decides which
    // apiVersions fit, so that one mistake is not reported twice.
    let written = object
        .get("kind")
        .and_then(Value::as_str)
        .and_then(Kind::from_kind_name);
    let kind = match object.get("kind") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new("kind", "required"));
            None
        }
        Some(Value::String(name)) => match Kind::from_kind_name(name) {
            None => {
                let known: Vec<&str> = Kind::all().iter().map(|k| k.name()).collect();
                errors.push(FieldError::new(
                    "kind",
                    format!("unknown kind {name:?}; Berth knows {}", known.join(", ")),
                ));
                None
            }
            Some(kind) => match expected {
                Some(expected) if expected != kind => {
                    errors.push(FieldError::new(
                        "kind",
                        format!("is {name:?}, but this endpoint takes {expected}"),
                    ));
                    None
                }
                _ => Some(kind),
            },
        },
        Some(_) => {
            errors.push(FieldError::new("kind", "must be a string"));
            None
        }
    };
    let hint = written.or(expected);
    match object.get("apiVersion") {
        None | Some(Value::Null) => errors.push(FieldError::new("apiVersion", "required")),
        Some(Value::String(version)) => {
            if let Some(kind) = hint
                && !kind.accepts_api_version(version)
            {
                errors.push(FieldError::new(
                    "apiVersion",
                    format!(
                        "{version:?} is not an apiVersion of {kind}: use {} or {}",
                        kind.api_version(),
                        super::kind::BERTH_API_VERSION
                    ),
                ));
            }
        }
        Some(_) => errors.push(FieldError::new("apiVersion", "must be a string")),
    }
    match kind {
        Some(kind) if errors.is_empty() => {
            object.insert("kind".to_owned(), Value::String(kind.name().to_owned()));
            Ok(kind)
        }
        _ => Err(errors),
    }
}

/// Appends a map key: `.field` for the names of fields, `[key]` for keys
/// that are not (label keys with dots and slashes).
fn push_key(out: &mut String, key: &str) {
    let field_like = key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && key.bytes().all(|b| b.is_ascii_alphanumeric());
    if field_like {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(key);
    } else {
        out.push('[');
        out.push_str(key);
        out.push(']');
    }
}

fn ignored_path(path: &serde_ignored::Path) -> String {
    fn walk(path: &serde_ignored::Path, out: &mut String) {
        match path {
            serde_ignored::Path::Root => {}
            serde_ignored::Path::Seq { parent, index } => {
                walk(parent, out);
                out.push_str(&format!("[{index}]"));
            }
            serde_ignored::Path::Map { parent, key } => {
                walk(parent, out);
                push_key(out, key);
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    let mut out = String::new();
    walk(path, &mut out);
    out
}

fn tracked_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key } => push_key(&mut out, key),
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}
