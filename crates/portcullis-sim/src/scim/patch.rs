//! PATCH operations (RFC 7644 §3.5.2) on a resource's stored attributes.
//! The caller applies them to a copy and keeps it only if every operation
//! and the checks after them succeed, which makes a PATCH atomic.

use serde_json::{Map, Value};

use super::filter::{self, Filter};
use super::schema::{AttrRef, Checks, Model, Mutability, Target, Type};
use super::{Config, Kind, ScimError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Add,
    Remove,
    Replace,
}

pub struct Patcher<'a> {
    pub config: &'a Config,
    pub model: &'a Model,
    pub kind: Kind,
}

impl Patcher<'_> {
    fn checks(&self) -> Checks {
        Checks {
            string_booleans: self.config.string_booleans,
            reject_unknown: self.config.reject_unknown_attributes,
        }
    }

    /// Applies `operations` in order.
    pub fn apply(&self, attrs: &mut Map<String, Value>, operations: &[Value]) -> Result<(), ScimError> {
        for operation in operations {
            self.operation(attrs, operation)?;
            tidy(attrs);
        }
        Ok(())
    }

    fn operation(&self, attrs: &mut Map<String, Value>, operation: &Value) -> Result<(), ScimError> {
        let fields = operation
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("Each operation must be an object."))?;
        let written = fields
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| ScimError::invalid_syntax("Each operation needs an 'op'."))?;
        let lowered = written.to_ascii_lowercase();
        // RFC 7644 spells ops in lower case; Entra capitalises them [D].
        let op = if self.config.case_insensitive_ops { lowered.as_str() } else { written };
        let verb = match op {
            "add" => Verb::Add,
            "remove" => Verb::Remove,
            "replace" => Verb::Replace,
            _ => return Err(ScimError::invalid_syntax(format!("Unknown op '{written}'."))),
        };
        let value = fields.get("value").unwrap_or(&Value::Null);
        if verb == Verb::Add && value.is_null() {
            return Err(ScimError::invalid_value("An add operation needs a 'value'."));
        }
        match fields.get("path") {
            None | Some(Value::Null) => self.pathless(attrs, verb, value),
            Some(Value::String(path)) => self.with_path(attrs, verb, path, value),
            Some(_) => Err(ScimError::invalid_path("'path' must be a string.")),
        }
    }

    /// Add or replace without a path: `value` is a resource fragment.
    fn pathless(&self, attrs: &mut Map<String, Value>, verb: Verb, value: &Value) -> Result<(), ScimError> {
        if verb == Verb::Remove {
            return Err(ScimError::bad("noTarget", "A remove operation needs a 'path'."));
        }
        if !self.config.pathless_patch {
            return Err(ScimError::invalid_path("Every operation needs a 'path' here."));
        }
        let Value::Object(fields) = value else {
            return Err(ScimError::invalid_value("Without a path, 'value' must be an object."));
        };
        for (key, value) in fields {
            if ["schemas", "id", "meta"].iter().any(|k| k.eq_ignore_ascii_case(key)) {
                continue;
            }
            // Keys are attribute names or extension URNs; Entra also sends
            // paths such as `name.givenName` [D].
            let target = if self.config.dotted_pathless_keys || !key.contains(['.', ':']) {
                self.model.resolve(self.kind, key).ok()
            } else {
                self.model.extension(self.kind, key).map(Target::Extension)
            };
            let Some(target) = target else {
                if self.config.reject_unknown_attributes {
                    return Err(ScimError::invalid_path(format!("Unknown attribute '{key}'.")));
                }
                continue;
            };
            // Read-only attributes in a fragment are ignored, as in POST and PUT.
            if let Target::Attr(r) = target
                && !(r.attr.writable() && r.sub.is_none_or(|s| s.writable()))
            {
                continue;
            }
            self.set(attrs, verb, target, None, value)?;
        }
        Ok(())
    }

    fn with_path(
        &self,
        attrs: &mut Map<String, Value>,
        verb: Verb,
        path: &str,
        value: &Value,
    ) -> Result<(), ScimError> {
        let raw = filter::parse_path(path).map_err(ScimError::invalid_path)?;
        let target = match self.model.resolve(self.kind, &raw.attr) {
            Ok(target) => target,
            Err(detail) if self.config.reject_unknown_attributes => {
                return Err(ScimError::invalid_path(detail));
            }
            // Tolerant servers ignore what they do not store.
            Err(_) => return Ok(()),
        };
        let (target, filter) = match (&raw.filter, target) {
            (None, target) => (target, None),
            (Some(expr), Target::Attr(r))
                if r.sub.is_none() && r.attr.multi && r.attr.ty == Type::Complex =>
            {
                let filter = filter::resolve_within(expr, r.attr).map_err(ScimError::invalid_path)?;
                let sub = match &raw.sub {
                    Some(name) => Some(r.attr.sub(name).ok_or_else(|| {
                        ScimError::invalid_path(format!("'{}' has no sub-attribute '{name}'.", r.attr.name))
                    })?),
                    None => None,
                };
                (Target::Attr(AttrRef { sub, ..r }), Some(filter))
            }
            (Some(_), _) => {
                let detail = format!("'{path}': a value filter needs a multi-valued complex attribute.");
                return Err(ScimError::invalid_path(detail));
            }
        };
        if let Target::Attr(r) = target
            && !(r.attr.writable() && r.sub.is_none_or(|s| s.writable()))
        {
            return Err(ScimError::mutability(format!("'{path}' is read-only.")));
        }
        match verb {
            Verb::Remove => self.remove(attrs, target, filter.as_ref(), value, path),
            _ => self.set(attrs, verb, target, filter.as_ref(), value),
        }
    }

    fn set(
        &self,
        attrs: &mut Map<String, Value>,
        verb: Verb,
        target: Target,
        filter: Option<&Filter>,
        value: &Value,
    ) -> Result<(), ScimError> {
        let r = match target {
            Target::Extension(schema) => {
                let Value::Object(fields) = value else {
                    return Err(ScimError::invalid_value(format!("'{}' takes an object.", schema.id)));
                };
                // Clients serialising an extension model add its `schemas`.
                for (key, value) in fields.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("schemas")) {
                    let Some(attr) = schema.attr(key) else {
                        if self.config.reject_unknown_attributes {
                            return Err(ScimError::invalid_path(format!(
                                "Unknown attribute '{}:{key}'.",
                                schema.id
                            )));
                        }
                        continue;
                    };
                    if attr.writable() {
                        let target = Target::Attr(AttrRef { ext: Some(schema.id), attr, sub: None });
                        self.set(attrs, verb, target, None, value)?;
                    }
                }
                return Ok(());
            }
            Target::Attr(r) => r,
        };
        let checks = self.checks();
        let container = container(attrs, r.ext);
        let attr = r.attr;
        match (filter, r.sub) {
            (None, None) if attr.multi => {
                let new = match attr.check(value, checks, true)? {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                let items = array(container, attr.name);
                if verb == Verb::Replace {
                    items.clear();
                }
                let mut added = Vec::new();
                for item in new {
                    match items.iter().position(|i| same_element(attr, i, &item)) {
                        // Adding a value that is there changes nothing (§3.5.2.1).
                        Some(at) if verb == Verb::Add => added.push(at),
                        _ => {
                            items.push(item);
                            added.push(items.len() - 1);
                        }
                    }
                }
                one_primary(items, &added);
            }
            (None, None) => match attr.check_one(value, checks)? {
                // A complex value merges: sub-attributes not given stay (§3.5.2.3).
                Some(Value::Object(new)) => object(container, attr.name).extend(new),
                Some(new) => {
                    container.insert(attr.name.to_owned(), new);
                }
                None => {
                    container.remove(attr.name);
                }
            },
            (None, Some(sub)) if attr.multi => {
                let new = sub.check_one(value, checks)?;
                let items = array(container, attr.name);
                if items.is_empty() {
                    if !self.config.add_creates_filtered_element {
                        return Err(no_target(attr.name));
                    }
                    items.push(Value::Object(Map::new()));
                }
                let all: Vec<usize> = (0..items.len()).collect();
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    put(item, sub.name, new.clone());
                }
                if sub.name == "primary" {
                    one_primary(items, &all);
                }
            }
            (None, Some(sub)) => {
                let new = sub.check_one(value, checks)?;
                put(object(container, attr.name), sub.name, new);
            }
            (Some(filter), sub) => {
                let items = array(container, attr.name);
                let mut matched = matching(items, filter);
                if matched.is_empty() {
                    // RFC 7644 §3.5.2.3 answers noTarget; Entra expects the
                    // element to be created from the filter [D].
                    if !self.config.add_creates_filtered_element {
                        return Err(no_target(attr.name));
                    }
                    let mut element = Map::new();
                    filter::equalities(filter, &mut element);
                    items.push(Value::Object(element));
                    matched.push(items.len() - 1);
                }
                match sub {
                    Some(sub) => {
                        let new = sub.check_one(value, checks)?;
                        for &i in &matched {
                            if let Some(item) = items[i].as_object_mut() {
                                put(item, sub.name, new.clone());
                            }
                        }
                    }
                    None => {
                        let new = attr.check_one(value, checks)?;
                        for &i in &matched {
                            match (&new, verb, items[i].as_object_mut()) {
                                (Some(Value::Object(new)), Verb::Add, Some(item)) => item.extend(new.clone()),
                                (Some(new), _, _) => items[i] = new.clone(),
                                (None, _, _) => items[i] = Value::Null,
                            }
                        }
                    }
                }
                one_primary(items, &matched);
            }
        }
        Ok(())
    }

    fn remove(
        &self,
        attrs: &mut Map<String, Value>,
        target: Target,
        filter: Option<&Filter>,
        value: &Value,
        path: &str,
    ) -> Result<(), ScimError> {
        let r = match target {
            Target::Extension(schema) => {
                attrs.remove(schema.id);
                return Ok(());
            }
            Target::Attr(r) => r,
        };
        let container = container(attrs, r.ext);
        let attr = r.attr;
        match (filter, r.sub) {
            // Entra removes members with `path: "members"` and the values to
            // drop [I]; the RFC reading drops the whole attribute.
            (None, None) if attr.multi && self.config.remove_by_value && !value.is_null() => {
                let gone = match attr.check(value, self.checks(), true)? {
                    Some(Value::Array(gone)) => gone,
                    _ => Vec::new(),
                };
                array(container, attr.name).retain(|item| !gone.iter().any(|g| same_element(attr, item, g)));
            }
            (None, None) => {
                container.remove(attr.name);
            }
            (None, Some(sub)) => match container.get_mut(attr.name) {
                Some(Value::Array(items)) => {
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        item.remove(sub.name);
                    }
                }
                Some(Value::Object(item)) => {
                    item.remove(sub.name);
                }
                _ => {}
            },
            (Some(filter), sub) => {
                let items = array(container, attr.name);
                let matched = matching(items, filter);
                if matched.is_empty() {
                    if self.config.lenient_remove {
                        return Ok(());
                    }
                    return Err(no_target(path));
                }
                for &i in &matched {
                    match sub {
                        Some(sub) => {
                            if let Some(item) = items[i].as_object_mut() {
                                item.remove(sub.name);
                            }
                        }
                        None => items[i] = Value::Null,
                    }
                }
            }
        }
        Ok(())
    }
}

fn no_target(path: &str) -> ScimError {
    ScimError::bad("noTarget", format!("'{path}' matched no value."))
}

/// The object an attribute lives in: the resource, or its extension object.
fn container<'a>(attrs: &'a mut Map<String, Value>, ext: Option<&str>) -> &'a mut Map<String, Value> {
    match ext {
        Some(urn) => object(attrs, urn),
        None => attrs,
    }
}

/// `map[key]` as an object, created (or replacing a non-object) if needed.
fn object<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(object) => object,
        _ => unreachable!("just made an object"),
    }
}

fn array<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = map.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(items) => items,
        _ => unreachable!("just made an array"),
    }
}

fn put(object: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    match value {
        Some(value) => object.insert(key.to_owned(), value),
        None => object.remove(key),
    };
}

fn matching(items: &[Value], filter: &Filter) -> Vec<usize> {
    (0..items.len()).filter(|&i| items[i].as_object().is_some_and(|o| filter.matches(o))).collect()
}

/// Whether two elements are the same value: by `value` where it is
/// immutable (a group member is who it points at), else by content.
fn same_element(attr: &super::schema::Attr, a: &Value, b: &Value) -> bool {
    let by_value = attr.sub("value").is_some_and(|v| v.mutability == Mutability::Immutable);
    match (a.get("value"), b.get("value")) {
        (Some(x), Some(y)) if by_value => x == y,
        _ => a == b,
    }
}

/// After elements at `changed` were written: if one of them is primary, no
/// other is (RFC 7644 §3.5.2).
fn one_primary(items: &mut [Value], changed: &[usize]) {
    let is_primary = |v: &Value| v.get("primary") == Some(&Value::Bool(true));
    let Some(&winner) = changed.iter().rev().find(|&&i| items.get(i).is_some_and(is_primary)) else { return };
    for (i, item) in items.iter_mut().enumerate() {
        if i != winner && is_primary(item) {
            item["primary"] = Value::Bool(false);
        }
    }
}

/// Drops nulls, empty objects and empty arrays, which RFC 7643 §2.5
/// treats as unassigned.
pub fn tidy(map: &mut Map<String, Value>) {
    for value in map.values_mut() {
        tidy_value(value);
    }
    map.retain(|_, v| !unassigned(v));
}

fn tidy_value(value: &mut Value) {
    match value {
        Value::Object(map) => tidy(map),
        Value::Array(items) => {
            items.iter_mut().for_each(tidy_value);
            items.retain(|v| !unassigned(v));
        }
        _ => {}
    }
}

fn unassigned(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

/// How many group memberships the operations change, for AWS's limit of
/// 100 per PATCH [T].
pub fn member_changes(operations: &[Value]) -> usize {
    let count = |value: Option<&Value>| match value {
        Some(Value::Array(items)) => items.len(),
        _ => 1,
    };
    operations
        .iter()
        .map(|op| match op.get("path").and_then(Value::as_str) {
            Some(path) if path.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("members")) => {
                count(op.get("value"))
            }
            Some(_) => 0,
            None => match op.get("value") {
                Some(Value::Object(fields)) => fields
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("members"))
                    .map_or(0, |(_, v)| count(Some(v))),
                _ => 0,
            },
        })
        .sum()
}

/// PATCH operations come from the SCIM client: under every profile, any
/// list of operations applies or is refused with a 4xx SCIM error, never a
/// panic.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::json;

    use super::super::{Profile, schema::Model};
    use super::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            prop::sample::select(vec!["work", "a@b.c", "True", "x", ""]).prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "value",
                        "type",
                        "primary",
                        "display",
                        "givenName",
                        "userName",
                        "active",
                        "emails",
                        "name",
                        "members",
                        "$ref",
                    ])
                    .prop_map(str::to_owned),
                    inner,
                    0..4,
                )
                .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn operation() -> impl Strategy<Value = Value> {
        let op = prop::sample::select(vec!["add", "remove", "replace", "Replace", "ADD", "move"]);
        let path = prop_oneof![
            Just(None),
            prop::sample::select(vec![
                "userName",
                "active",
                "name.givenName",
                "emails",
                "emails[type eq \"work\"]",
                "emails[type eq \"work\"].value",
                "emails[primary eq true].display",
                "members",
                "members[value eq \"1\"]",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
                "meta.created",
                "id",
                "emails[",
                "nope",
            ])
            .prop_map(|p| Some(p.to_owned())),
            any::<String>().prop_map(Some),
        ];
        (op, path, value()).prop_map(|(op, path, value)| {
            let mut operation = json!({"op": op, "value": value});
            if let Some(path) = path {
                operation["path"] = Value::from(path);
            }
            operation
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_operations_apply_or_are_refused_with_a_scim_error(
            profile in prop::sample::select(Profile::ALL.to_vec()),
            group in any::<bool>(),
            operations in prop::collection::vec(prop_oneof![operation(), value()], 0..5),
        ) {
            let config = Config::profile(profile);
            let model = Model::new(&config);
            let kind = if group { Kind::Group } else { Kind::User };
            let mut attrs = json!({
                "userName": "ada",
                "displayName": "Ada",
                "emails": [{"value": "ada@example.test", "type": "work", "primary": true}],
                "members": [{"value": "1"}],
            })
            .as_object()
            .cloned()
            .unwrap();
            if let Err(err) = (Patcher { config: &config, model: &model, kind }).apply(&mut attrs, &operations) {
                prop_assert!((400..500).contains(&err.status), "{err:?}");
            }
        }
    }
}
