//! The OpenAPI document of the REST API, served at `/openapi.json` with
//! Swagger UI at `/docs`, and checked in as `openapi/openapi.json`.
//!
//! Handlers with fixed paths describe themselves with `#[utoipa::path]`.
//! The object endpoints are one set of handlers for every kind, so their
//! paths are generated here from the kinds, each with its own schema and
//! operation ids (`list_deployments`, `create_deployment`, …,
//! `update_deployment_scale`), so that a generated SDK gets typed methods
//! per kind.

use berth_api::objects::Kind;
use utoipa::OpenApi as _;
use utoipa::openapi::path::{HttpMethod, Operation, Parameter, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Required};

use super::error::ErrorBody;

/// The document, as the server serves it.
pub fn document() -> OpenApi {
    let mut doc = FixedPaths::openapi();
    doc.merge(super::tenants::TenantsApi::openapi());
    doc.merge(super::users::UsersApi::openapi());
    doc.merge(super::tokens::TokensApi::openapi());
    doc.merge(super::join_tokens::JoinTokensApi::openapi());
    doc.merge(super::rollouts::RolloutsApi::openapi());
    doc.merge(super::logs::LogsApi::openapi());
    doc.merge(super::exec::ExecApi::openapi());
    doc.merge(super::metrics::MetricsApi::openapi());
    doc.info.title = "Berth".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "Berth's REST API: tenants, accounts and Kubernetes-shaped objects. \
         Errors use one envelope: {\"error\": {\"code\", \"message\", \"details\"}}."
            .into(),
    );
    doc.info.license = None;
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT or berth_ API token")
                .build(),
        ),
    );
    // The kinds' schemas come closed (`additionalProperties: false`), as
    // the server refuses unknown fields.
    for (name, schema) in berth_api::objects::schema::schemas() {
        components.schemas.insert(name, schema);
    }
    for kind in Kind::all() {
        components
            .schemas
            .insert(kind.list_kind().into(), list_schema(*kind));
    }
    components
        .schemas
        .insert("WatchEvent".into(), watch_event_schema());
    for kind in Kind::all() {
        add_object_paths(&mut doc, *kind);
    }
    doc
}

/// The endpoints with fixed paths.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        super::auth_routes::login,
        super::auth_routes::refresh,
        super::auth_routes::logout,
        super::resources::apply,
        super::audit_routes::list_audit,
    ),
    components(schemas(ErrorBody))
)]
struct FixedPaths;

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn string() -> RefOr<Schema> {
    RefOr::T(Schema::Object(Object::with_type(Type::String)))
}

fn list_schema(kind: Kind) -> RefOr<Schema> {
    ObjectBuilder::new()
        .description(Some(format!("A page of {}.", kind.plural())))
        .property("apiVersion", string())
        .required("apiVersion")
        .property("kind", string())
        .required("kind")
        .property(
            "metadata",
            ObjectBuilder::new()
                .property("resourceVersion", string())
                .required("resourceVersion")
                .property("continue", string()),
        )
        .required("metadata")
        .property("items", ArrayBuilder::new().items(schema_ref(kind.name())))
        .required("items")
        .into()
}

fn watch_event_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .description(Some(
            "One line of a watch stream: ADDED, MODIFIED and DELETED carry the object; \
             BOOKMARK carries only metadata.resourceVersion; ERROR carries a Status."
                .to_owned(),
        ))
        .property(
            "type",
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .enum_values(Some(["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"])),
        )
        .required("type")
        .property(
            "object",
            ObjectBuilder::new().schema_type(SchemaType::new(Type::Object)),
        )
        .required("object")
        .into()
}

fn path_param(name: &str, description: &str) -> Parameter {
    Parameter::builder()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(string()))
        .build()
}

fn query_param(name: &str, description: &str, schema: RefOr<Schema>) -> Parameter {
    Parameter::builder()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

fn integer() -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Integer))
            .minimum(Some(0))
            .build(),
    ))
}

/// A resourceVersion in a query: the decimal revision the server wrote.
fn revision() -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .pattern(Some("^[0-9]{0,18}$"))
            .build(),
    ))
}

fn boolean() -> RefOr<Schema> {
    RefOr::T(Schema::Object(Object::with_type(Type::Boolean)))
}

fn json_content(schema: RefOr<Schema>) -> Content {
    Content::new(Some(schema))
}

fn error_response(description: &str) -> Response {
    Response::builder()
        .description(description)
        .content("application/json", json_content(schema_ref("ErrorBody")))
        .build()
}

fn object_response(description: &str, kind: Kind) -> Response {
    Response::builder()
        .description(description)
        .content("application/json", json_content(schema_ref(kind.name())))
        .build()
}

/// snake_case of a kind's name: `HorizontalPodAutoscaler` →
/// `horizontal_pod_autoscaler`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn operation(id: String, kind: Kind, summary: String) -> utoipa::openapi::path::OperationBuilder {
    Operation::builder()
        .operation_id(Some(id))
        .tag(kind.plural())
        .summary(Some(summary))
        .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
}

fn with_errors(
    builder: utoipa::openapi::path::OperationBuilder,
    codes: &[(&str, &str)],
) -> utoipa::openapi::path::OperationBuilder {
    codes.iter().fold(builder, |builder, (code, description)| {
        builder.response(*code, error_response(description))
    })
}

const READ_ERRORS: &[(&str, &str)] = &[
    ("400", "The query is invalid."),
    ("401", "Not signed in."),
    ("403", "The role does not allow this."),
    ("404", "No such object or tenant."),
];

const WRITE_ERRORS: &[(&str, &str)] = &[
    ("400", "The body is invalid: every problem with its field."),
    ("401", "Not signed in."),
    ("403", "The role does not allow this."),
    ("404", "No such object or tenant."),
    (
        "409",
        "The object exists already, or changed since it was read.",
    ),
    ("413", "The body is larger than 1.5 MiB."),
    ("415", "The body's Content-Type is not accepted."),
];

/// The errors a write of `kind` may answer: a Service's allocations add
/// 422.
fn write_errors(kind: Kind) -> Vec<(&'static str, &'static str)> {
    let mut errors = WRITE_ERRORS.to_vec();
    if kind == Kind::Service {
        errors.push((
            "422",
            "An address or node port outside the server's ranges, or a change to the allocated address.",
        ));
        errors.sort_by_key(|(code, _)| *code);
    }
    errors
}

fn body_of(kind: Kind) -> RequestBody {
    let content = || {
        Content::builder()
            .schema(Some(schema_ref(kind.name())))
            .example(Some(example(kind)))
            .build()
    };
    RequestBody::builder()
        .required(Some(Required::True))
        .content("application/json", content())
        .content("application/yaml", content())
        .build()
}

/// The name of every kind's example object.
const EXAMPLE_NAME: &str = "web";

/// A small object of `kind` that the server accepts, named
/// [`EXAMPLE_NAME`]: Swagger UI offers it, and schemathesis sends it, so
/// that a create answers 201 and its object is checked against the schema.
fn example(kind: Kind) -> serde_json::Value {
    use serde_json::json;
    let metadata = json!({"name": EXAMPLE_NAME, "labels": {"app": EXAMPLE_NAME}});
    let pod_spec = json!({"containers": [{"name": "web", "image": "nginx:1.27",
                                           "ports": [{"containerPort": 80}]}]});
    let workload_spec = json!({
        "replicas": 2,
        "selector": {"matchLabels": {"app": EXAMPLE_NAME}},
        "template": {"metadata": {"labels": {"app": EXAMPLE_NAME}}, "spec": pod_spec},
    });
    let (rest, body) = match kind {
        Kind::Deployment | Kind::ReplicaSet => ("spec", workload_spec),
        Kind::Pod => ("spec", pod_spec),
        Kind::Service => (
            "spec",
            json!({"selector": {"app": EXAMPLE_NAME}, "ports": [{"port": 80}]}),
        ),
        Kind::EndpointSlice => (
            "endpoints",
            json!([{"addresses": ["172.18.0.5"],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "nodeName": "node-1",
                    "targetRef": {"kind": "Pod", "name": "web-5d8f7c-x2x9q"},
                    "hostIP": "192.168.1.10",
                    "hostPorts": [{"port": 32768, "protocol": "TCP"}]}]),
        ),
        Kind::ConfigMap => ("data", json!({"LOG_LEVEL": "info"})),
        // `czNjcjN0` is base64 for `s3cr3t`.
        Kind::Secret => ("data", json!({"password": "czNjcjN0"})),
        Kind::Volume => (
            "spec",
            json!({"accessModes": ["ReadWriteOnce"],
                   "resources": {"requests": {"storage": "1Gi"}}}),
        ),
        Kind::HorizontalPodAutoscaler => (
            "spec",
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": EXAMPLE_NAME},
                   "minReplicas": 1, "maxReplicas": 5}),
        ),
        Kind::Event => (
            "involvedObject",
            json!({"kind": "Pod", "name": EXAMPLE_NAME}),
        ),
        Kind::Node => ("spec", json!({"podCIDR": "10.244.1.0/24"})),
    };
    let mut object = json!({
        "apiVersion": kind.api_version(),
        "kind": kind.name(),
        "metadata": metadata,
    });
    object[rest] = body;
    if kind == Kind::EndpointSlice {
        object["addressType"] = json!("IPv4");
        object["ports"] = json!([{"port": 80, "protocol": "TCP"}]);
        object["metadata"]["labels"] = json!({"kubernetes.io/service-name": EXAMPLE_NAME});
    }
    if kind == Kind::Event {
        object["reason"] = json!("Scheduled");
        object["message"] = json!("assigned to node-1");
    }
    object
}

fn add_object_paths(doc: &mut OpenApi, kind: Kind) {
    let singular = snake(kind.name());
    let plural = kind.plural();
    let name = kind.name();
    let (collection, mut scope_params) = if kind.namespaced() {
        (
            format!("/api/v1/tenants/{{tenant}}/{plural}"),
            vec![path_param("tenant", "The tenant.")],
        )
    } else {
        (format!("/api/v1/{plural}"), vec![])
    };
    let list = with_errors(
        operation(
            format!("list_{singular}s"),
            kind,
            format!("List or watch {plural}"),
        )
        .parameters(Some(scope_params.clone()))
        .parameter(query_param(
            "labelSelector",
            "Kubernetes label selector: `app=web,tier in (a,b),!canary`.",
            string(),
        ))
        .parameter(query_param(
            "limit",
            "At most this many items (0: all).",
            integer(),
        ))
        .parameter(query_param(
            "continue",
            "The continue token of the previous page.",
            string(),
        ))
        .parameter(query_param(
            "watch",
            "Stream changes as newline-delimited JSON events instead of listing.",
            boolean(),
        ))
        .parameter(query_param(
            "resourceVersion",
            "With watch: deliver changes after this resourceVersion (410 when compacted).",
            revision(),
        ))
        .parameter(query_param(
            "timeoutSeconds",
            "With watch: end the stream after this many seconds.",
            integer(),
        ))
        .response(
            "200",
            Response::builder()
                .description("The page, or (with watch) a stream of WatchEvent lines.")
                .content(
                    "application/json",
                    json_content(schema_ref(kind.list_kind())),
                )
                .content(
                    "application/x-ndjson",
                    json_content(schema_ref("WatchEvent")),
                )
                .build(),
        ),
        READ_ERRORS,
    )
    .response(
        "410",
        error_response("The resourceVersion or continue token is too old."),
    );
    let create = with_errors(
        operation(
            format!("create_{singular}"),
            kind,
            format!("Create a {name}"),
        )
        .parameters(Some(scope_params.clone()))
        .request_body(Some(body_of(kind)))
        .response("201", object_response("Created.", kind)),
        &write_errors(kind),
    );
    let mut collection_item = PathItem::new(HttpMethod::Get, list);
    collection_item.merge_operations(PathItem::new(HttpMethod::Post, create));
    doc.paths.paths.insert(collection.clone(), collection_item);

    scope_params.push(
        Parameter::builder()
            .name("name")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("The object's name."))
            .schema(Some(string()))
            .example(Some(EXAMPLE_NAME.into()))
            .build(),
    );
    let get = with_errors(
        operation(format!("get_{singular}"), kind, format!("Read a {name}"))
            .parameters(Some(scope_params.clone()))
            .response("200", object_response("The object.", kind)),
        READ_ERRORS,
    );
    let update = with_errors(
        operation(
            format!("update_{singular}"),
            kind,
            format!("Replace a {name} (a resourceVersion in the body must be current)"),
        )
        .parameters(Some(scope_params.clone()))
        .request_body(Some(body_of(kind)))
        .response("200", object_response("Replaced.", kind)),
        &write_errors(kind),
    );
    let patch = with_errors(
        operation(
            format!("patch_{singular}"),
            kind,
            format!("Change part of a {name} with a JSON merge patch"),
        )
        .parameters(Some(scope_params.clone()))
        .request_body(Some(
            RequestBody::builder()
                .required(Some(Required::True))
                .content(
                    "application/merge-patch+json",
                    json_content(RefOr::T(Schema::Object(Object::with_type(Type::Object)))),
                )
                .build(),
        ))
        .response("200", object_response("Patched.", kind)),
        &write_errors(kind),
    );
    let delete = with_errors(
        operation(
            format!("delete_{singular}"),
            kind,
            format!("Delete a {name}"),
        )
        .parameters(Some(scope_params.clone()))
        .parameter(query_param(
            "resourceVersion",
            "Delete only if the object is still at this resourceVersion.",
            revision(),
        ))
        .parameter(query_param(
            "propagationPolicy",
            "What becomes of the objects it owns: Background (the default: deleted after it), \
             Orphan (kept; the object goes once none names it) or Foreground (the object goes \
             once they are deleted).",
            RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::String))
                    .enum_values(Some(["Background", "Orphan", "Foreground"]))
                    .build(),
            )),
        ))
        .parameter(query_param(
            "gracePeriodSeconds",
            "A pod that a node runs: how long its containers get between SIGTERM and SIGKILL \
             (the pod's own terminationGracePeriodSeconds when absent). The pod stays, \
             terminating, until its node has stopped them; 0 removes it at once.",
            revision(),
        ))
        .response(
            "200",
            object_response(
                "Deleted; the object as it was, or marked with its deletionTimestamp while \
                 finalizers hold it.",
                kind,
            ),
        ),
        WITH_CONFLICT,
    );
    let mut item = PathItem::new(HttpMethod::Get, get);
    item.merge_operations(PathItem::new(HttpMethod::Put, update));
    item.merge_operations(PathItem::new(HttpMethod::Patch, patch));
    item.merge_operations(PathItem::new(HttpMethod::Delete, delete));
    doc.paths
        .paths
        .insert(format!("{collection}/{{name}}"), item);

    if kind.has_status() {
        let status = with_errors(
            operation(
                format!("update_{singular}_status"),
                kind,
                format!("Replace a {name}'s status (controllers and agents)"),
            )
            .parameters(Some(scope_params.clone()))
            .request_body(Some(body_of(kind)))
            .response(
                "200",
                object_response("The object with its new status.", kind),
            ),
            WRITE_ERRORS,
        );
        doc.paths.paths.insert(
            format!("{collection}/{{name}}/status"),
            PathItem::new(HttpMethod::Put, status),
        );
    }

    if kind.has_scale() {
        add_scale_path(doc, kind, &collection, scope_params);
    }
}

/// `.../{name}/scale` of a kind with the scale subresource: GET and PUT of
/// an `autoscaling/v1` `Scale`.
fn add_scale_path(doc: &mut OpenApi, kind: Kind, collection: &str, params: Vec<Parameter>) {
    let singular = snake(kind.name());
    let name = kind.name();
    let scale_response = |description: &str| {
        Response::builder()
            .description(description)
            .content("application/json", json_content(schema_ref("Scale")))
            .build()
    };
    let get = with_errors(
        operation(
            format!("get_{singular}_scale"),
            kind,
            format!("Read a {name}'s scale: its replicas, the pods it has, its selector"),
        )
        .parameters(Some(params.clone()))
        .response("200", scale_response("The scale.")),
        READ_ERRORS,
    );
    let content = || {
        Content::builder()
            .schema(Some(schema_ref("Scale")))
            .example(Some(serde_json::json!({
                "apiVersion": berth_api::objects::scale::SCALE_API_VERSION,
                "kind": berth_api::objects::scale::SCALE_KIND,
                "metadata": {"name": EXAMPLE_NAME},
                "spec": {"replicas": 3},
            })))
            .build()
    };
    let update = with_errors(
        operation(
            format!("update_{singular}_scale"),
            kind,
            format!(
                "Set a {name}'s spec.replicas, and nothing else (a resourceVersion or uid \
                 in the body must be current)"
            ),
        )
        .parameters(Some(params))
        .request_body(Some(
            RequestBody::builder()
                .required(Some(Required::True))
                .content("application/json", content())
                .content("application/yaml", content())
                .build(),
        ))
        .response("200", scale_response("The new scale.")),
        WRITE_ERRORS,
    );
    let mut item = PathItem::new(HttpMethod::Get, get);
    item.merge_operations(PathItem::new(HttpMethod::Put, update));
    doc.paths
        .paths
        .insert(format!("{collection}/{{name}}/scale"), item);
}

const WITH_CONFLICT: &[(&str, &str)] = &[
    ("400", "The query is invalid."),
    ("401", "Not signed in."),
    ("403", "The role does not allow this."),
    ("404", "No such object or tenant."),
    ("409", "The object changed since the given resourceVersion."),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_are_unique_and_verb_resource() {
        let doc = document();
        let mut seen = std::collections::BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for operation in [&item.get, &item.post, &item.put, &item.patch, &item.delete]
                .into_iter()
                .flatten()
            {
                let id = operation.operation_id.clone().unwrap_or_default();
                assert!(
                    id.contains('_'),
                    "{path}: operation id {id:?} is not verb_resource"
                );
                assert!(seen.insert(id.clone()), "{path}: operation id {id} twice");
            }
        }
        assert!(seen.contains("list_deployments"));
        assert!(seen.contains("create_horizontal_pod_autoscaler"));
        assert!(seen.contains("update_replica_set_scale"));
        assert!(seen.contains("rollback_deployment"));
        assert!(seen.contains("create_join_token"));
    }

    /// An example the server refused would still pass schemathesis (a 400
    /// is documented), but nothing made from the document would ever
    /// reach a 201.
    #[test]
    fn every_kinds_example_is_an_object_the_server_accepts() {
        for kind in Kind::all() {
            let decoded = berth_api::objects::decode(Some(*kind), example(*kind))
                .unwrap_or_else(|errors| panic!("the {kind:?} example is refused: {errors:?}"));
            assert_eq!(decoded.kind, *kind);
        }
    }
}

#[cfg(test)]
mod drift {
    /// The document checked in for SDK generators and reviewers.
    const CHECKED_IN: &str = include_str!("../../../openapi/openapi.json");

    #[test]
    fn the_checked_in_document_is_what_the_code_generates() {
        let generated = super::document()
            .to_pretty_json()
            .expect("rendering the document");
        assert!(
            generated.trim_end() == CHECKED_IN.trim_end(),
            "openapi/openapi.json is out of date; regenerate it with \
             `cargo run -p berth -- openapi > openapi/openapi.json`"
        );
    }
}
