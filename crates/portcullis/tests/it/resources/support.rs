//! Document builders and small helpers shared by the resource tests (the
//! helpers every area uses are in `crate::common`).

use serde_json::{Value, json};

/// `{"data": {"type": kind, "attributes": attributes}}`.
pub fn doc(kind: &str, attributes: Value) -> Value {
    json!({"data": {"type": kind, "attributes": attributes}})
}

/// `{"data": {"type": kind, "attributes": {}, "relationships": ...}}` with
/// to-one linkage for each `(name, type, id)`.
pub fn link_doc(kind: &str, attributes: Value, links: &[(&str, &str, &str)]) -> Value {
    let mut relationships = serde_json::Map::new();
    for (name, related, id) in links {
        relationships.insert((*name).to_owned(), json!({"data": {"type": related, "id": id}}));
    }
    json!({"data": {"type": kind, "attributes": attributes, "relationships": relationships}})
}

/// `{"data": {"type": kind, "id": id, "attributes": attributes}}`.
pub fn patch_doc(kind: &str, id: &str, attributes: Value) -> Value {
    json!({"data": {"type": kind, "id": id, "attributes": attributes}})
}

/// SQL string literal quoting for white-box checks on ids we generated.
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
