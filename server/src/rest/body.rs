//! Request bodies of the object endpoints: read with a size limit, then
//! parsed by content type (JSON, YAML, or a JSON merge patch). Every failure
//! is a 4xx in the envelope: 413 over the limit, 415 for a type the
//! endpoint does not read, 400 for a body that does not parse.

use actix_web::{HttpRequest, web};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;

use super::MAX_BODY_BYTES;
use super::error::ApiError;

/// How the body is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `application/yaml` (also `application/x-yaml`, `text/yaml`).
    Yaml,
    /// `application/merge-patch+json`.
    MergePatch,
}

/// The body's format, from its Content-Type. `accepted` lists what this
/// endpoint reads.
pub fn format_of(request: &HttpRequest, accepted: &[Format]) -> Result<Format, ApiError> {
    let content_type = request
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let format = match essence.as_str() {
        "application/json" => Some(Format::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
            Some(Format::Yaml)
        }
        "application/merge-patch+json" => Some(Format::MergePatch),
        _ => None,
    };
    match format {
        Some(format) if accepted.contains(&format) => Ok(format),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {:?} is not accepted here; send one of: {}",
            content_type,
            accepted
                .iter()
                .map(|f| match f {
                    Format::Json => "application/json",
                    Format::Yaml => "application/yaml",
                    Format::MergePatch => "application/merge-patch+json",
                })
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] (413).
pub async fn read(request: &HttpRequest, mut payload: web::Payload) -> Result<Vec<u8>, ApiError> {
    let declared = request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest {
            message: format!("reading the body failed: {e}"),
            details: vec![],
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The body of an object endpoint as one JSON object: its content type
/// among `accepted` (415 otherwise), at most [`MAX_BODY_BYTES`] (413), and
/// parsing (400).
pub async fn read_object(
    request: &HttpRequest,
    payload: web::Payload,
    accepted: &[Format],
) -> Result<Value, ApiError> {
    let format = format_of(request, accepted)?;
    let bytes = read(request, payload).await?;
    parse_object(&bytes, format)
}

/// One JSON or YAML document as a JSON value; it must be an object.
pub fn parse_object(body: &[u8], format: Format) -> Result<Value, ApiError> {
    let value: Value = match format {
        Format::Json | Format::MergePatch => {
            serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
                message: format!("the body is not valid JSON: {e}"),
                details: vec![],
            })?
        }
        Format::Yaml => yaml_serde::from_slice(body).map_err(|e| ApiError::BadRequest {
            message: format!("the body is not valid YAML: {e}"),
            details: vec![],
        })?,
    };
    if !value.is_object() {
        return Err(ApiError::BadRequest {
            message: "the body must be one object".into(),
            details: vec![],
        });
    }
    Ok(value)
}

/// Every document of a body: a YAML stream (`---` between documents), one
/// JSON object, a JSON array of objects, or a `List` with `items`. Each
/// document parses on its own, so one bad document does not hide the
/// others; a body that cannot be split into documents at all is a 400.
pub fn parse_documents(
    body: &[u8],
    format: Format,
) -> Result<Vec<Result<Value, String>>, ApiError> {
    let documents = match format {
        Format::Json | Format::MergePatch => {
            let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
                message: format!("the body is not valid JSON: {e}"),
                details: vec![],
            })?;
            match value {
                Value::Array(items) => items.into_iter().map(Ok).collect(),
                other => vec![Ok(other)],
            }
        }
        Format::Yaml => {
            let text = std::str::from_utf8(body).map_err(|_| ApiError::BadRequest {
                message: "the body is not UTF-8 text".into(),
                details: vec![],
            })?;
            let mut documents = Vec::new();
            for document in yaml_serde::Deserializer::from_str(text) {
                match Value::deserialize(document) {
                    // `---` at the start or end makes an empty document.
                    Ok(Value::Null) => {}
                    Ok(value) => documents.push(Ok(value)),
                    Err(error) => {
                        documents.push(Err(format!("not valid YAML: {error}")));
                        // The parser cannot resynchronise after a syntax
                        // error; what follows is not read.
                        break;
                    }
                }
            }
            documents
        }
    };
    let mut flattened = Vec::new();
    for document in documents {
        match document {
            Ok(Value::Object(mut object))
                if object.get("kind").and_then(Value::as_str) == Some("List") =>
            {
                match object.remove("items") {
                    Some(Value::Array(items)) => flattened.extend(items.into_iter().map(Ok)),
                    _ => flattened.push(Err("a List needs an items array".into())),
                }
            }
            Ok(Value::Object(object)) => flattened.push(Ok(Value::Object(object))),
            Ok(_) => flattened.push(Err("a document must be an object".into())),
            Err(error) => flattened.push(Err(error)),
        }
    }
    if flattened.is_empty() {
        return Err(ApiError::BadRequest {
            message: "the body holds no documents".into(),
            details: vec![],
        });
    }
    Ok(flattened)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_yaml_stream_splits_into_its_documents() {
        let body = b"---\nkind: ConfigMap\n---\nkind: Secret\n---\n";
        let documents = parse_documents(body, Format::Yaml).unwrap();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[1].as_ref().unwrap()["kind"], "Secret");
    }

    #[test]
    fn a_list_and_an_array_give_their_items() {
        let body = br#"{"kind": "List", "items": [{"kind": "A"}, {"kind": "B"}]}"#;
        assert_eq!(parse_documents(body, Format::Json).unwrap().len(), 2);
        let body = br#"[{"kind": "A"}, 3]"#;
        let documents = parse_documents(body, Format::Json).unwrap();
        assert!(documents[0].is_ok() && documents[1].is_err());
    }
}
