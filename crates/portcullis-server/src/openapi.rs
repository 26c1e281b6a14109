//! The OpenAPI 3.1 document, generated from the same [`ResourceDef`]s that
//! drive the JSON:API layer, so the description cannot drift from the code.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use portcullis_core::services::resource_servers::management_scopes;
use serde_json::{Map, Value, json};

use crate::api::{Access, ResourceDef, definitions};
use crate::env::Env;

const MEDIA: &str = "application/vnd.api+json";

fn schema_type(ty: &str) -> Value {
    match ty {
        "date-time" => json!({"type": "string", "format": "date-time"}),
        "array" => json!({"type": "array", "items": {"type": "string"}}),
        other => json!({"type": other}),
    }
}

fn attributes_schema(def: &ResourceDef, for_write: Option<bool>) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for attr in def.attributes {
        let shown = match (for_write, attr.access) {
            (None, Access::WriteOnly) => false,
            (None, _) => true,
            (Some(_), Access::ReadOnly) => false,
            (Some(false), Access::CreateOnly) => true, // accepted if unchanged
            (Some(_), _) => true,
        };
        if !shown {
            continue;
        }
        let mut schema = schema_type(attr.ty);
        schema["description"] = json!(attr.description);
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
    json!({"type": "object", "properties": properties, "required": required})
}

fn relationships_schema(def: &ResourceDef) -> Value {
    let mut properties = Map::new();
    for (name, kind) in def.relationships {
        properties.insert(
            (*name).to_owned(),
            json!({"type": "object", "properties": {"data": {
                "type": "object",
                "properties": {"type": {"const": kind}, "id": {"type": "string"}},
                "required": ["type", "id"],
            }}}),
        );
    }
    json!({"type": "object", "properties": properties})
}

fn resource_schema(def: &ResourceDef) -> Value {
    json!({
        "type": "object",
        "properties": {
            "type": {"const": def.kind},
            "id": {"type": "string"},
            "attributes": attributes_schema(def, None),
            "relationships": relationships_schema(def),
        },
        "required": ["type", "id", "attributes"],
    })
}

fn body(def: &ResourceDef, create: bool) -> Value {
    json!({"required": true, "content": {MEDIA: {"schema": {
        "type": "object",
        "properties": {"data": {
            "type": "object",
            "properties": {
                "type": {"const": def.kind},
                "attributes": attributes_schema(def, Some(create)),
                "relationships": relationships_schema(def),
            },
            "required": ["type"],
        }},
        "required": ["data"],
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
        "security": [{"bearer": [format!("{}:{verb}", def.scope)]}],
        "responses": responses,
    })
}

fn query_parameters(def: &ResourceDef) -> Vec<Value> {
    let mut params = vec![
        json!({"name": "page[limit]", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25}}),
        json!({"name": "page[offset]", "in": "query", "schema": {"type": "integer", "minimum": 0}}),
        json!({"name": "page[after]", "in": "query", "schema": {"type": "string"}, "description": "Opaque keyset cursor (links.next)."}),
        json!({"name": "page[before]", "in": "query", "schema": {"type": "string"}, "description": "Opaque keyset cursor (links.prev)."}),
        json!({"name": "page[count]", "in": "query", "schema": {"type": "boolean"}, "description": "Report meta.page.total."}),
    ];
    let sorts: Vec<String> =
        def.query.sorts.iter().flat_map(|(n, _)| [n.to_string(), format!("-{n}")]).collect();
    params.push(json!({"name": "sort", "in": "query", "schema": {"type": "string"}, "description": format!("Comma-separated: {}", sorts.join(", "))}));
    if !def.query.includes.is_empty() {
        params.push(json!({"name": "include", "in": "query", "schema": {"type": "string"}, "description": format!("Comma-separated: {}", def.query.includes.join(", "))}));
    }
    for (name, _) in def.query.filters {
        params.push(json!({"name": format!("filter[{name}]"), "in": "query", "schema": {"type": "string"}}));
    }
    params
}

/// Builds the document for the environment's issuer.
pub fn document(issuer: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for def in definitions() {
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
            collection.insert("get".into(), op);
        }
        if def.ops.create {
            let mut op = operation(
                def,
                format!("Create a {}", def.kind),
                "write",
                Map::from_iter([("201".to_owned(), one(def, "Created"))]),
            );
            op["requestBody"] = body(def, true);
            collection.insert("post".into(), op);
        }
        if def.ops.get {
            member.insert(
                "get".into(),
                operation(
                    def,
                    format!("Get a {}", def.kind),
                    "read",
                    Map::from_iter([("200".to_owned(), one(def, "The resource"))]),
                ),
            );
        }
        if def.ops.update {
            let mut op = operation(
                def,
                format!("Update a {}", def.kind),
                "write",
                Map::from_iter([("200".to_owned(), one(def, "Updated"))]),
            );
            op["requestBody"] = body(def, false);
            member.insert("patch".into(), op);
        }
        if def.ops.delete {
            member.insert(
                "delete".into(),
                operation(
                    def,
                    format!("Delete a {}", def.kind),
                    "delete",
                    Map::from_iter([("204".to_owned(), json!({"description": "Deleted"}))]),
                ),
            );
        }
        let id_param = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
        if !collection.is_empty() {
            paths.insert(format!("/api/{}", def.path), Value::Object(collection));
        }
        if !member.is_empty() {
            member.insert("parameters".into(), id_param.clone());
            paths.insert(format!("/api/{}/{{id}}", def.path), Value::Object(member));
        }
        for (action, description) in def.actions {
            let mut op = operation(
                def,
                (*description).to_owned(),
                "write",
                Map::from_iter([("200".to_owned(), one(def, "Updated"))]),
            );
            op["parameters"] = id_param.clone();
            // Actions modify their resource (PATCH) unless documented as POST.
            let method = if description.starts_with("POST:") { "post" } else { "patch" };
            paths.insert(format!("/api/{}/{{id}}/{action}", def.path), json!({method: op}));
        }
    }
    let environment_op = |verb: &str, summary: &str| {
        json!({"tags": ["environment"], "summary": summary, "security": [{"bearer": [format!("environment:{verb}")]}],
               "responses": {"200": {"description": "The environment's settings"}, "401": error_ref(), "403": error_ref(), "422": error_ref()}})
    };
    paths.insert("/api/environment".into(), json!({
        "get": environment_op("read", "Get this environment's settings"),
        "patch": environment_op("write", "Update session_ttl, registration_enabled, require_email_verification, default_audience, mass_change_threshold or name"),
    }));
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

pub async fn serve(Env(env): Env) -> Response {
    let mut response = serde_json::to_vec(&document(&env.issuer)).unwrap_or_default().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
