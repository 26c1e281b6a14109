//! Top-level documents and resource objects.

use serde::Serialize;
use serde_json::{Map, Value};

/// One resource object: `type`, `id`, `attributes`, `relationships`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResourceObject {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub attributes: Map<String, Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub relationships: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<Value>,
    /// Non-standard facts about this resource in this answer (JSON:API
    /// §7.2's resource `meta`), e.g. how an account compares with the directory.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub meta: Map<String, Value>,
}

impl ResourceObject {
    pub fn new(kind: &'static str, id: impl Into<String>, attributes: Map<String, Value>) -> Self {
        ResourceObject {
            kind,
            id: id.into(),
            attributes,
            relationships: Map::new(),
            links: None,
            meta: Map::new(),
        }
    }

    pub fn with_meta(mut self, key: &str, value: Value) -> Self {
        self.meta.insert(key.to_owned(), value);
        self
    }

    /// Adds a to-one relationship (`null` when `id` is `None`).
    pub fn to_one(mut self, name: &str, kind: &str, id: Option<&str>) -> Self {
        let data = match id {
            Some(id) => serde_json::json!({"type": kind, "id": id}),
            None => Value::Null,
        };
        self.relationships.insert(name.to_owned(), serde_json::json!({"data": data}));
        self
    }

    /// Adds a to-many relationship with its linkage.
    pub fn to_many<'a>(mut self, name: &str, kind: &str, ids: impl IntoIterator<Item = &'a str>) -> Self {
        self.set_to_many(name, kind, ids);
        self
    }

    pub fn set_to_many<'a>(&mut self, name: &str, kind: &str, ids: impl IntoIterator<Item = &'a str>) {
        let data: Vec<Value> =
            ids.into_iter().map(|id| serde_json::json!({"type": kind, "id": id})).collect();
        self.relationships.insert(name.to_owned(), serde_json::json!({"data": data}));
    }

    /// Keeps only the named attributes (sparse fieldsets).
    pub fn retain_fields(&mut self, fields: &[String]) {
        self.attributes.retain(|name, _| fields.iter().any(|f| f == name));
        self.relationships.retain(|name, _| fields.iter().any(|f| f == name));
    }

    /// The `type`/`id` pair that identifies this resource.
    pub fn identity(&self) -> (&'static str, &str) {
        (self.kind, &self.id)
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Links {
    #[serde(rename = "self", skip_serializing_if = "Option::is_none")]
    pub self_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A top-level document with primary data.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Document {
    pub data: Value,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub included: Vec<ResourceObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<Links>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub meta: Map<String, Value>,
    pub jsonapi: Value,
}

impl Document {
    fn with_data(data: Value) -> Self {
        Document {
            data,
            included: Vec::new(),
            links: None,
            meta: Map::new(),
            jsonapi: serde_json::json!({"version": "1.1"}),
        }
    }

    pub fn one(resource: ResourceObject) -> Self {
        Self::with_data(serde_json::to_value(resource).expect("resource objects serialize"))
    }

    pub fn many(resources: Vec<ResourceObject>) -> Self {
        Self::with_data(serde_json::to_value(resources).expect("resource objects serialize"))
    }

    pub fn with_meta(mut self, key: &str, value: Value) -> Self {
        self.meta.insert(key.to_owned(), value);
        self
    }

    /// Adds included resources, skipping duplicates and primary data.
    pub fn include(&mut self, resources: Vec<ResourceObject>) {
        for resource in resources {
            let duplicate = self.included.iter().any(|r| r.identity() == resource.identity())
                || self.is_primary(resource.kind, &resource.id);
            if !duplicate {
                self.included.push(resource);
            }
        }
    }

    fn is_primary(&self, kind: &str, id: &str) -> bool {
        let matches = |v: &Value| v["type"] == kind && v["id"] == id;
        match &self.data {
            Value::Array(items) => items.iter().any(matches),
            other => matches(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_serialize_per_spec() {
        let mut attrs = Map::new();
        attrs.insert("name".into(), json!("Admin"));
        let role = ResourceObject::new("role", "r1", attrs).to_many("permissions", "permission", ["p1"]);
        let mut doc = Document::many(vec![role.clone()]);
        doc.include(vec![role, ResourceObject::new("permission", "p1", Map::new())]);
        let value = serde_json::to_value(&doc).unwrap();
        assert_eq!(value["data"][0]["type"], "role");
        assert_eq!(value["data"][0]["relationships"]["permissions"]["data"][0]["id"], "p1");
        assert_eq!(value["included"].as_array().unwrap().len(), 1, "primary data must not be included again");
        assert_eq!(value["jsonapi"]["version"], "1.1");
    }
}
