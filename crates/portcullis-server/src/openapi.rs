//! The OpenAPI 3.1 document, generated from the same [`ResourceDef`]s that
//! drive the JSON:API layer, so the description cannot drift from the code.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use portcullis_core::authz::management_scopes;
use portcullis_core::webhooks::catalogue::CATALOGUE;
use serde_json::{Map, Value, json};

use portcullis_jsonapi::FieldKind;

use crate::api::{Access, ActionMethod, Attr, REGISTRY, Relationship, ResourceDef};
use crate::env::Env;

const MEDIA: &str = "application/vnd.api+json";

fn attribute_schema(attr: &Attr) -> Value {
    let mut schema = match attr.ty {
        "date-time" => json!({"type": "string", "format": "date-time"}),
        "array" => json!({"type": "array", "items": {"type": "string"}}),
        "array<object>" => json!({"type": "array", "items": {"type": "object"}}),
        other => json!({"type": other}),
    };
    if !attr.values.is_empty() {
        let target = if attr.ty == "array" { &mut schema["items"] } else { &mut schema };
        target["enum"] = json!(attr.values);
    }
    if attr.nullable {
        let ty = schema["type"].clone();
        schema["type"] = json!([ty, "null"]);
        if let Some(values) = schema.get_mut("enum").and_then(Value::as_array_mut) {
            values.push(Value::Null);
        }
    }
    schema["description"] = json!(attr.description);
    schema
}

/// The attributes as read (`for_write: None`), as created (`Some(true)`) or
/// as updated (`Some(false)`). Writes name every member the server accepts:
/// any other is refused.
pub(crate) fn attributes_schema(attributes: &[Attr], for_write: Option<bool>) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for attr in attributes {
        let shown = match (for_write, attr.access) {
            (None, Access::WriteOnly) => false,
            (None, _) => true,
            (Some(_), Access::ReadOnly) => false,
            // Immutable: some resources accept the current value back, but
            // the document does not offer what cannot change.
            (Some(false), Access::CreateOnly) => false,
            (Some(_), _) => true,
        };
        if !shown {
            continue;
        }
        let mut schema = attribute_schema(attr);
        if attr.access == Access::ReadOnly {
            schema["readOnly"] = json!(true);
        }
        if attr.access == Access::WriteOnly {
            schema["writeOnly"] = json!(true);
        }
        if for_write != Some(false) && attr.required {
            required.push(attr.name);
        }
        properties.insert(attr.name.to_owned(), schema);
    }
    let mut schema = json!({"type": "object", "properties": properties, "required": required});
    if for_write.is_some() {
        schema["additionalProperties"] = json!(false);
    }
    schema
}

fn linkage(kind: &str) -> Value {
    json!({
        "type": "object",
        "properties": {"type": {"const": kind}, "id": {"type": "string"}},
        "required": ["type", "id"],
    })
}

/// Relationships as read: every one, to-many as arrays (present with
/// `include`).
fn relationships_schema(def: &ResourceDef) -> Value {
    let mut properties = Map::new();
    for rel in def.relationships {
        let data = if rel.to_many {
            json!({"type": "array", "items": linkage(rel.kind)})
        } else {
            linkage(rel.kind)
        };
        properties.insert(rel.name.to_owned(), json!({"type": "object", "properties": {"data": data}}));
    }
    json!({"type": "object", "properties": properties})
}

/// Relationships as created: the to-one ones, each required.
fn create_relationships(def: &ResourceDef) -> Option<Value> {
    let links: Vec<&Relationship> = def.relationships.iter().filter(|r| !r.to_many && !r.read_only).collect();
    if links.is_empty() {
        return None;
    }
    let mut properties = Map::new();
    for rel in &links {
        properties.insert(
            rel.name.to_owned(),
            json!({"type": "object", "properties": {"data": linkage(rel.kind)}, "required": ["data"]}),
        );
    }
    let names: Vec<&str> = links.iter().map(|r| r.name).collect();
    Some(
        json!({"type": "object", "properties": properties, "required": names, "additionalProperties": false}),
    )
}

fn resource_schema(def: &ResourceDef) -> Value {
    json!({
        "type": "object",
        "properties": {
            "type": {"const": def.kind},
            "id": {"type": "string"},
            "attributes": attributes_schema(def.attributes, None),
            "relationships": relationships_schema(def),
        },
        "required": ["type", "id", "attributes"],
    })
}

/// A request body: `data` with the type, the attributes and, on create, the
/// relationships; an update also carries the id.
pub(crate) fn body(kind: &str, attributes: &[Attr], relationships: Option<Value>, create: bool) -> Value {
    let attributes = attributes_schema(attributes, Some(create));
    let mut data = json!({
        "type": "object",
        "properties": {"type": {"const": kind}, "attributes": attributes},
        "required": ["type"],
    });
    if !create {
        data["properties"]["id"] = json!({"type": "string"});
    }
    let mut required = vec!["type"];
    if attributes["required"].as_array().is_some_and(|r| !r.is_empty()) {
        required.push("attributes");
    }
    if let Some(relationships) = relationships {
        data["properties"]["relationships"] = relationships;
        required.push("relationships");
    }
    data["required"] = json!(required);
    json!({"required": true, "content": {MEDIA: {"schema": {
        "type": "object",
        "properties": {"data": data},
        "required": ["data"],
    }}}})
}

/// An action's request body: a document of `meta` members alone. The server
/// refuses members of `meta` it does not know (a misspelt `token` must not
/// read as a missing one), so the schema says so.
fn meta_body(members: &[(&str, &str)]) -> Value {
    let properties: Map<String, Value> = members
        .iter()
        .map(|(name, description)| {
            ((*name).to_owned(), json!({"type": "string", "minLength": 1, "description": description}))
        })
        .collect();
    let names: Vec<&str> = members.iter().map(|(name, _)| *name).collect();
    json!({"required": true, "content": {MEDIA: {"schema": {
        "type": "object",
        "properties": {"meta": {
            "type": "object", "properties": properties, "required": names, "additionalProperties": false,
        }},
        "required": ["meta"],
    }}}})
}

fn one(def: &ResourceDef, description: &str) -> Value {
    json!({"description": description, "content": {MEDIA: {"schema": {
        "type": "object",
        "properties": {"data": {"$ref": format!("#/components/schemas/{}", def.kind)}, "meta": {"type": "object"}},
    }}}})
}

fn error_ref() -> Value {
    json!({"$ref": "#/components/responses/Error"})
}

fn operation(def: &ResourceDef, summary: String, verb: &str, mut responses: Map<String, Value>) -> Value {
    for status in ["400", "401", "403", "404", "409", "422"] {
        responses.entry(status.to_owned()).or_insert_with(error_ref);
    }
    json!({
        "tags": [def.path],
        "summary": summary,
        "security": [{"bearer": [format!("{}:{verb}", def.family.name())]}],
        "responses": responses,
    })
}

/// An operation with a request body may also answer 415 (not JSON:API).
fn with_body(mut op: Value, body: Value) -> Value {
    op["requestBody"] = body;
    op["responses"]["415"] = error_ref();
    op
}

/// OpenAPI links from a response carrying resources to the operations on
/// one of them, so clients (and schemathesis) can follow ids.
fn member_links(def: &ResourceDef, id: &str) -> Value {
    let mut links = Map::new();
    for (verb, present) in [("get", def.ops.get), ("update", def.ops.update), ("delete", def.ops.delete)] {
        if present {
            links.insert(
                format!("{verb}_{}", def.kind),
                json!({"operationId": format!("{verb}_{}", def.kind), "parameters": {"id": id}}),
            );
        }
    }
    Value::Object(links)
}

fn filter_schema(kind: FieldKind) -> Value {
    match kind {
        FieldKind::Bool => json!({"type": "boolean"}),
        FieldKind::Int => json!({"type": "integer"}),
        FieldKind::Timestamp => json!({"type": "string", "format": "date-time"}),
        FieldKind::Text | FieldKind::TextCi | FieldKind::Id => json!({"type": "string"}),
    }
}

fn query_parameters(def: &ResourceDef) -> Vec<Value> {
    // Cursors are opaque: only ones the server issued (in links.next and
    // links.prev) are valid, and one request takes one of them.
    let cursor = |name: &str, link: &str| {
        json!({"name": name, "in": "query", "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
               "description": format!("Opaque keyset cursor from {link}; not with the other cursor or page[offset].")})
    };
    let mut params = vec![
        json!({"name": "page[limit]", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25}}),
        json!({"name": "page[offset]", "in": "query", "schema": {"type": "integer", "minimum": 0}}),
        cursor("page[after]", "links.next"),
        cursor("page[before]", "links.prev"),
        json!({"name": "page[count]", "in": "query", "schema": {"type": "boolean"}, "description": "Report meta.page.total."}),
    ];
    let names: Vec<&str> = def.query.sorts.iter().map(|(n, _)| *n).collect();
    let key = format!("-?({})", names.join("|"));
    params.push(json!({"name": "sort", "in": "query",
        "schema": {"type": "string", "pattern": format!("^{key}(,{key})*$")},
        "description": format!("Comma-separated, each at most once, `-` for descending: {}", names.join(", "))}));
    if !def.query.includes.is_empty() {
        // Dotted paths (`memberships.user`): a literal dot in the pattern.
        let names =
            def.query.includes.iter().map(|path| path.replace('.', "\\.")).collect::<Vec<_>>().join("|");
        params.push(json!({"name": "include", "in": "query",
            "schema": {"type": "string", "pattern": format!("^(({names})(,({names}))*)?$")},
            "description": format!("Comma-separated: {}. Each needs its own family's read scope.", def.query.includes.join(", "))}));
    }
    for (name, kind) in def.query.filters {
        params
            .push(json!({"name": format!("filter[{name}]"), "in": "query", "schema": filter_schema(*kind)}));
    }
    params
}

/// Builds the document for the environment's issuer.
pub fn document(issuer: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for def in REGISTRY.iter().map(|entry| entry.def) {
        schemas.insert(def.kind.to_owned(), resource_schema(def));
        let mut collection = Map::new();
        let mut member = Map::new();
        if def.ops.list {
            let mut op = operation(
                def,
                format!("List {}", def.path),
                "read",
                Map::from_iter([(
                    "200".to_owned(),
                    json!({"description": "A page of resources", "content": {MEDIA: {"schema": {"type": "object", "properties": {
                    "data": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}", def.kind)}},
                    "links": {"type": "object"}, "meta": {"type": "object"}, "included": {"type": "array"}}}}}}),
                )]),
            );
            op["parameters"] = json!(query_parameters(def));
            op["description"] = json!(def.summary);
            op["operationId"] = json!(format!("list_{}", def.kind));
            op["responses"]["200"]["links"] = member_links(def, "$response.body#/data/0/id");
            collection.insert("get".into(), op);
        }
        if def.ops.create {
            let mut op = operation(
                def,
                format!("Create a {}", def.kind),
                "write",
                Map::from_iter([("201".to_owned(), one(def, "Created"))]),
            );
            op["operationId"] = json!(format!("create_{}", def.kind));
            op["responses"]["201"]["links"] = member_links(def, "$response.body#/data/id");
            let op = with_body(op, body(def.kind, def.attributes, create_relationships(def), true));
            collection.insert("post".into(), op);
        }
        if def.ops.get {
            let mut op = operation(
                def,
                format!("Get a {}", def.kind),
                "read",
                Map::from_iter([("200".to_owned(), one(def, "The resource"))]),
            );
            op["operationId"] = json!(format!("get_{}", def.kind));
            member.insert("get".into(), op);
        }
        if def.ops.update {
            let mut op = operation(
                def,
                format!("Update a {}", def.kind),
                "write",
                Map::from_iter([("200".to_owned(), one(def, "Updated"))]),
            );
            op["operationId"] = json!(format!("update_{}", def.kind));
            member.insert("patch".into(), with_body(op, body(def.kind, def.attributes, None, false)));
        }
        if def.ops.delete {
            let mut op = operation(
                def,
                format!("Delete a {}", def.kind),
                "delete",
                Map::from_iter([("204".to_owned(), json!({"description": "Deleted"}))]),
            );
            op["operationId"] = json!(format!("delete_{}", def.kind));
            member.insert("delete".into(), op);
        }
        let id_param = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
        if !collection.is_empty() {
            paths.insert(format!("/api/{}", def.path), Value::Object(collection));
        }
        if !member.is_empty() {
            member.insert("parameters".into(), id_param.clone());
            paths.insert(format!("/api/{}/{{id}}", def.path), Value::Object(member));
        }
        for action in def.actions {
            let mut op = operation(
                def,
                action.description.to_owned(),
                "write",
                Map::from_iter([("200".to_owned(), one(def, "Updated"))]),
            );
            op["parameters"] = id_param.clone();
            op["operationId"] = json!(format!("{}_{}", action.name.replace('-', "_"), def.kind));
            if !action.meta.is_empty() {
                op = with_body(op, meta_body(action.meta));
            }
            let method = match action.method {
                ActionMethod::Post => "post",
                ActionMethod::Patch => "patch",
            };
            paths.insert(format!("/api/{}/{{id}}/{}", def.path, action.name), json!({method: op}));
        }
    }
    let environment = crate::api::environment::KIND;
    schemas.insert(
        environment.to_owned(),
        json!({
            "type": "object",
            "properties": {
                "type": {"const": environment},
                "id": {"type": "string"},
                "attributes": attributes_schema(crate::api::environment::ATTRIBUTES, None),
            },
            "required": ["type", "id", "attributes"],
        }),
    );
    let environment_op = |verb: &str, summary: &str| {
        json!({"tags": ["environment"], "summary": summary, "security": [{"bearer": [format!("environment:{verb}")]}],
               "responses": {"200": {"description": "The environment's settings", "content": {MEDIA: {"schema": {
                   "type": "object", "properties": {"data": {"$ref": format!("#/components/schemas/{environment}")}}}}}},
                   "400": error_ref(), "401": error_ref(), "403": error_ref(), "409": error_ref(), "422": error_ref()}})
    };
    let update = environment_op("write", "Update this environment's settings");
    paths.insert(
        "/api/environment".into(),
        json!({
            "get": environment_op("read", "Get this environment's settings"),
            "patch": with_body(update, body(environment, crate::api::environment::ATTRIBUTES, None, false)),
        }),
    );
    let accounts = <crate::api::app_accounts::AppAccounts as crate::api::Resource>::DEF;
    let mut of_user = operation(
        accounts,
        "One user's accounts in every app, each with `meta.graph` (`state`, `expected`, `changes`); `meta.missing` lists the apps where the user should have an account and has none".into(),
        "read",
        Map::from_iter([(
            "200".to_owned(),
            json!({"description": "The user's accounts", "content": {MEDIA: {"schema": {"type": "object", "properties": {
                "data": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}", accounts.kind)}},
                "meta": {"type": "object"}}}}}}),
        )]),
    );
    of_user["parameters"] =
        json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    paths.insert(crate::api::app_accounts::OF_USER_PATH.into(), json!({"get": of_user}));
    webhook_paths(&mut paths);
    let scopes: Map<String, Value> = management_scopes().into_iter().map(|s| (s, json!(""))).collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Portcullis Management API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "JSON:API Management API. Authenticate with a Bearer access token whose audience is this environment's Management API.",
        },
        "servers": [{"url": issuer}],
        "paths": paths,
        "webhooks": webhook_events(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {
                "type": "oauth2",
                "flows": {"clientCredentials": {"tokenUrl": format!("{issuer}/oauth/token"), "scopes": scopes}},
            }},
            "responses": {"Error": {"description": "JSON:API errors", "content": {MEDIA: {"schema": {
                "type": "object",
                "properties": {"errors": {"type": "array", "items": {"type": "object", "properties": {
                    "status": {"type": "string"}, "code": {"type": "string"}, "title": {"type": "string"},
                    "detail": {"type": "string"}, "source": {"type": "object"}}}}},
            }}}}},
        },
    })
}

/// The webhook routes beyond the resource's declaration: the catalogue,
/// one webhook's delivery log, a retry, a test message.
fn webhook_paths(paths: &mut Map<String, Value>) {
    use crate::api::webhooks::{
        DELIVERIES_PATH, EVENT_TYPE_KIND, EVENT_TYPES_PATH, RETRY_PATH, TEST_PATH, WebhookDeliveries,
        Webhooks,
    };
    let webhooks = <Webhooks as crate::api::Resource>::DEF;
    let deliveries = <WebhookDeliveries as crate::api::Resource>::DEF;
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let names: Vec<&str> = CATALOGUE.iter().map(|event| event.name).collect();
    let mut catalogue = operation(
        webhooks,
        "The event types a webhook can subscribe to".into(),
        "read",
        Map::from_iter([(
            "200".to_owned(),
            json!({"description": "Every event type", "content": {MEDIA: {"schema": {"type": "object", "properties": {
                "data": {"type": "array", "items": {"type": "object", "properties": {
                    "type": {"const": EVENT_TYPE_KIND}, "id": {"enum": names},
                    "attributes": {"type": "object", "properties": {
                        "description": {"type": "string"}, "data": {"type": "string"}}}}}}}}}}}),
        )]),
    );
    catalogue["operationId"] = json!("list_webhook_event_types");
    paths.insert(EVENT_TYPES_PATH.into(), json!({"get": catalogue}));
    let mut log = operation(
        deliveries,
        "One webhook's delivery log, newest first".into(),
        "read",
        Map::from_iter([(
            "200".to_owned(),
            json!({"description": "A page of deliveries", "content": {MEDIA: {"schema": {"type": "object", "properties": {
                "data": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}", deliveries.kind)}},
                "links": {"type": "object"}, "meta": {"type": "object"}, "included": {"type": "array"}}}}}}),
        )]),
    );
    let mut parameters = vec![id.clone()];
    parameters.extend(query_parameters(deliveries));
    log["parameters"] = json!(parameters);
    log["operationId"] = json!("list_deliveries_of_webhook");
    paths.insert(DELIVERIES_PATH.into(), json!({"get": log}));
    let mut retry = operation(
        deliveries,
        "Sends a delivered or failed message once more, now, with the same `webhook-id`".into(),
        "write",
        Map::from_iter([("202".to_owned(), one(deliveries, "The delivery, pending again"))]),
    );
    retry["parameters"] = json!([id.clone(),
        {"name": "delivery_id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    retry["operationId"] = json!("retry_webhook_delivery");
    paths.insert(RETRY_PATH.into(), json!({"post": retry}));
    let mut test = operation(
        deliveries,
        "Sends a `webhook.test` message to this webhook now".into(),
        "write",
        Map::from_iter([("202".to_owned(), one(deliveries, "The test message's delivery"))]),
    );
    test["parameters"] = json!([id]);
    test["operationId"] = json!("test_webhook");
    paths.insert(TEST_PATH.into(), json!({"post": test}));
}

/// OpenAPI 3.1 `webhooks`: what Portcullis POSTs to subscribers, one entry
/// per event type of the catalogue.
fn webhook_events() -> Value {
    let headers = json!([
        {"name": "webhook-id", "in": "header", "required": true, "schema": {"type": "string"},
         "description": "The message id: the same on every attempt; deduplicate on it."},
        {"name": "webhook-timestamp", "in": "header", "required": true, "schema": {"type": "integer"},
         "description": "Seconds since the epoch when this attempt was signed."},
        {"name": "webhook-signature", "in": "header", "required": true, "schema": {"type": "string"},
         "description": "Space-separated `v1,<base64 HMAC-SHA256>` of `{webhook-id}.{webhook-timestamp}.{body}` (Standard Webhooks); two during a secret rotation."},
    ]);
    let events = CATALOGUE.iter().chain(std::iter::once(&portcullis_core::webhooks::catalogue::TEST_EVENT));
    Value::Object(
        events
            .map(|event| {
                let data = if event.data == "object" {
                    json!({"type": "object"})
                } else {
                    json!({"$ref": format!("#/components/schemas/{}", event.data)})
                };
                let body = json!({"type": "object", "required": ["type", "timestamp", "data"], "properties": {
                    "type": {"const": event.name},
                    "timestamp": {"type": "string", "format": "date-time"},
                    "data": data,
                    "actor": {"type": "object", "properties": {
                        "type": {"type": "string"}, "id": {"type": ["string", "null"]}, "name": {"type": ["string", "null"]}}},
                }});
                let operation = json!({"post": {
                    "summary": event.description,
                    "parameters": headers,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": body}}},
                    "responses": {"2XX": {"description": "Delivered; anything else is retried (410 Gone disables the webhook)."}},
                }});
                (event.name.to_owned(), operation)
            })
            .collect(),
    )
}

pub async fn serve(Env(env): Env) -> Response {
    let mut response = serde_json::to_vec(&document(&env.issuer)).unwrap_or_default().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
