//! Request bodies: `{"data": {"type", "id"?, "attributes", "relationships"}}`.
//! Attribute errors carry a JSON pointer to the offending member.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

use crate::ApiError;

/// To-one relationship linkage from a request body: name → (type, id).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Relationships(HashMap<String, (String, String)>);

impl Relationships {
    /// The id of a required to-one relationship of the given type.
    pub fn required(&self, name: &str, kind: &str) -> Result<String, ApiError> {
        self.optional(name, kind)?.ok_or_else(|| {
            ApiError::required(
                format!("/data/relationships/{name}"),
                format!("relationship `{name}` is required"),
            )
        })
    }

    pub fn optional(&self, name: &str, kind: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some((found, _)) if found != kind => Err(ApiError::invalid_attribute(
                format!("/data/relationships/{name}/data/type"),
                format!("relationship `{name}` must reference a `{kind}`, not `{found}`"),
            )),
            Some((_, id)) => Ok(Some(id.clone())),
        }
    }
}

fn parse_envelope(body: &[u8], expected_type: &str) -> Result<serde_json::Map<String, Value>, ApiError> {
    let document: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_body(format!("request body is not valid JSON: {e}")))?;
    let Some(Value::Object(data)) = document.get("data").cloned() else {
        return Err(ApiError::invalid_body("request body must be an object with a `data` object")
            .with_pointer("/data"));
    };
    match data.get("type") {
        Some(Value::String(kind)) if kind == expected_type => Ok(data),
        Some(Value::String(kind)) => Err(ApiError::conflict(format!(
            "resource type `{kind}` does not match this endpoint's type `{expected_type}`"
        ))
        .with_pointer("/data/type")),
        _ => Err(ApiError::invalid_body(format!("`data.type` must be \"{expected_type}\""))
            .with_pointer("/data/type")),
    }
}

fn parse_attributes<A: DeserializeOwned>(data: &serde_json::Map<String, Value>) -> Result<A, ApiError> {
    let attributes = match data.get("attributes") {
        None => Value::Object(Default::default()),
        Some(value @ Value::Object(_)) => value.clone(),
        Some(_) => {
            return Err(ApiError::invalid_body("`data.attributes` must be an object")
                .with_pointer("/data/attributes"));
        }
    };
    serde_path_to_error::deserialize(attributes).map_err(|error| {
        let tokens: Vec<String> = error.path().iter().filter_map(pointer_token).collect();
        let inner = error.into_inner().to_string();
        let pointer = if tokens.is_empty() {
            // serde reports unknown and missing fields at the parent.
            field_from_message(&inner)
                .map_or("/data/attributes".to_owned(), |f| format!("/data/attributes/{}", escape(f)))
        } else {
            format!("/data/attributes/{}", tokens.join("/"))
        };
        if inner.starts_with("missing field") {
            ApiError::required(pointer, inner)
        } else {
            ApiError::invalid_attribute(pointer, inner)
        }
    })
}

/// One JSON Pointer reference token (RFC 6901) for a step of a serde path.
fn pointer_token(segment: &Segment) -> Option<String> {
    match segment {
        Segment::Seq { index } => Some(index.to_string()),
        Segment::Map { key } | Segment::Enum { variant: key } => Some(escape(key)),
        Segment::Unknown => None,
    }
}

/// Escapes `~` and `/` in a JSON Pointer reference token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Pulls the field name out of serde's "missing field `x`" / "unknown field `x`".
fn field_from_message(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

fn parse_relationships(data: &serde_json::Map<String, Value>) -> Result<Relationships, ApiError> {
    let mut out = HashMap::new();
    let Some(rels) = data.get("relationships") else { return Ok(Relationships::default()) };
    let Value::Object(rels) = rels else {
        return Err(ApiError::invalid_body("`data.relationships` must be an object")
            .with_pointer("/data/relationships"));
    };
    for (name, rel) in rels {
        let pointer = format!("/data/relationships/{name}/data");
        let linkage = rel.get("data").ok_or_else(|| {
            ApiError::invalid_body(format!("relationship `{name}` needs a `data` member"))
                .with_pointer(pointer.clone())
        })?;
        match (linkage.get("type").and_then(Value::as_str), linkage.get("id").and_then(Value::as_str)) {
            (Some(kind), Some(id)) => {
                out.insert(name.clone(), (kind.to_owned(), id.to_owned()));
            }
            _ => {
                return Err(ApiError::invalid_body(format!(
                    "relationship `{name}` must be {{\"data\": {{\"type\", \"id\"}}}}"
                ))
                .with_pointer(pointer));
            }
        }
    }
    Ok(Relationships(out))
}

/// Parses a create request: attributes into `A`, plus to-one relationships.
pub fn parse_create<A: DeserializeOwned>(
    body: &[u8],
    expected_type: &str,
) -> Result<(A, Relationships), ApiError> {
    let data = parse_envelope(body, expected_type)?;
    if data.get("id").is_some_and(|id| !id.is_null()) {
        return Err(ApiError::forbidden("client-generated ids are not supported; omit `data.id`")
            .with_pointer("/data/id"));
    }
    let relationships = parse_relationships(&data)?;
    Ok((parse_attributes(&data)?, relationships))
}

/// Parses an update request; a `data.id`, when present, must match the URL.
pub fn parse_update<A: DeserializeOwned>(
    body: &[u8],
    expected_type: &str,
    id: &str,
) -> Result<(A, Relationships), ApiError> {
    let data = parse_envelope(body, expected_type)?;
    match data.get("id") {
        None => {}
        Some(Value::String(body_id)) if body_id == id => {}
        Some(_) => {
            return Err(ApiError::conflict("`data.id` does not match the resource in the URL")
                .with_pointer("/data/id"));
        }
    }
    let relationships = parse_relationships(&data)?;
    Ok((parse_attributes(&data)?, relationships))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Attrs {
        name: String,
        #[serde(default)]
        size: Option<u32>,
    }

    #[test]
    fn parses_attributes_and_relationships() {
        let body = br#"{"data":{"type":"role","attributes":{"name":"a"},"relationships":{"user":{"data":{"type":"user","id":"u1"}}}}}"#;
        let (attrs, rels): (Attrs, _) = parse_create(body, "role").unwrap();
        assert_eq!((attrs.name.as_str(), attrs.size), ("a", None));
        assert_eq!(rels.required("user", "user").unwrap(), "u1");
        assert!(rels.required("role", "role").is_err());
        assert_eq!(rels.optional("user", "role").unwrap_err().status, 422);
    }

    #[test]
    fn errors_point_at_the_member() {
        let wrong_type = br#"{"data":{"type":"role","attributes":{"name":"a","size":"big"}}}"#;
        let err = parse_create::<Attrs>(wrong_type, "role").unwrap_err();
        assert_eq!(err.status, 422);
        assert_eq!(err.pointer().unwrap(), "/data/attributes/size");

        let missing = br#"{"data":{"type":"role","attributes":{}}}"#;
        let err = parse_create::<Attrs>(missing, "role").unwrap_err();
        assert_eq!((err.code, err.pointer().unwrap()), ("required", "/data/attributes/name"));

        let unknown = br#"{"data":{"type":"role","attributes":{"name":"a","colour":1}}}"#;
        let err = parse_create::<Attrs>(unknown, "role").unwrap_err();
        assert_eq!(err.pointer().unwrap(), "/data/attributes/colour");

        #[derive(Debug, Deserialize)]
        struct Nested {
            #[allow(dead_code)]
            tags: Vec<String>,
        }
        let nested = br#"{"data":{"type":"role","attributes":{"tags":["a",5]}}}"#;
        let err = parse_create::<Nested>(nested, "role").unwrap_err();
        assert_eq!(err.pointer().unwrap(), "/data/attributes/tags/1");

        let malformed_links = br#"{"data":{"type":"role","attributes":{},"relationships":[]}}"#;
        let err = parse_create::<Attrs>(malformed_links, "role").unwrap_err();
        assert_eq!((err.status, err.pointer().unwrap()), (400, "/data/relationships"));

        // JSON:API: attributes, when present, are an object, never null.
        let null_attributes = br#"{"data":{"type":"role","attributes":null}}"#;
        let err = parse_create::<Attrs>(null_attributes, "role").unwrap_err();
        assert_eq!((err.status, err.pointer().unwrap()), (400, "/data/attributes"));

        let client_id = br#"{"data":{"type":"role","id":"mine","attributes":{"name":"a"}}}"#;
        let err = parse_create::<Attrs>(client_id, "role").unwrap_err();
        assert_eq!((err.status, err.pointer().unwrap()), (403, "/data/id"));

        assert_eq!(parse_create::<Attrs>(b"{", "role").unwrap_err().status, 400);
        assert_eq!(parse_create::<Attrs>(br#"{"data":{"type":"user"}}"#, "role").unwrap_err().status, 409);
        let mismatch = br#"{"data":{"type":"role","id":"x","attributes":{"name":"a"}}}"#;
        assert_eq!(parse_update::<Attrs>(mismatch, "role", "y").unwrap_err().status, 409);
    }
}

/// Request bodies are attacker input: any bytes, any JSON, end in the typed
/// attributes or a 4xx pointing into the document, never a panic.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Attrs {
        name: String,
        #[serde(default)]
        size: Option<u32>,
        #[serde(default)]
        tags: Vec<String>,
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop::sample::select(vec!["role", "user", "name", "size", "tags", "id", "data", ""])
                .prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "data",
                        "type",
                        "id",
                        "attributes",
                        "relationships",
                        "name",
                        "size",
                        "tags",
                        "user",
                        "links",
                        "meta",
                        "x",
                    ])
                    .prop_map(str::to_owned),
                    inner,
                    0..6,
                )
                .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn check(result: Result<(Attrs, Relationships), ApiError>) -> Result<(), TestCaseError> {
        if let Err(err) = result {
            prop_assert!([400, 403, 409, 422].contains(&err.status), "status {}", err.status);
            if let Some(pointer) = err.pointer() {
                prop_assert!(pointer.is_empty() || pointer.starts_with("/data"), "pointer {pointer}");
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_bytes_are_refused_cleanly(body in prop::collection::vec(any::<u8>(), 0..256)) {
            check(parse_create(&body, "role"))?;
            check(parse_update(&body, "role", "r1"))?;
        }

        #[test]
        fn any_document_is_parsed_or_refused_cleanly(data in any_json(), attributes in any_json()) {
            for document in [
                json!({"data": data}),
                json!({"data": {"type": "role", "attributes": attributes}}),
                json!({"data": {"type": "role", "id": "r1", "attributes": attributes, "relationships": data}}),
            ] {
                let body = serde_json::to_vec(&document).unwrap();
                check(parse_create(&body, "role"))?;
                check(parse_update(&body, "role", "r1"))?;
            }
        }

        #[test]
        fn valid_attributes_read_back_exactly(
            name in any::<String>(),
            size in any::<Option<u32>>(),
            tags in prop::collection::vec(any::<String>(), 0..4),
            user in any::<String>(),
        ) {
            let document = json!({"data": {
                "type": "role",
                "attributes": {"name": name, "size": size, "tags": tags},
                "relationships": {"user": {"data": {"type": "user", "id": user}}},
            }});
            let (attrs, rels) = parse_create::<Attrs>(&serde_json::to_vec(&document).unwrap(), "role").unwrap();
            prop_assert_eq!(attrs, Attrs { name, size, tags });
            prop_assert_eq!(rels.required("user", "user").unwrap(), user);
        }
    }
}
