//! `POST /Bulk` (RFC 7644 §3.7): operations in order, `bulkId:` references
//! resolved (a reference to a later operation waits for it), `failOnErrors`,
//! and the `maxOperations`/`maxPayloadSize` limits (413).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::resources::{self, Change, Store};
use super::schema;
use super::{Answer, Kind, ScimError, ScimSim};

/// What the `bulkId:` references of an operation come to.
enum Refs {
    /// Substituted; ready to run.
    Ready(Value),
    /// Names an operation that has not run yet.
    Waiting,
    Failed(ScimError),
}

impl ScimSim {
    pub(super) fn bulk(&self, st: &mut Store, body: &[u8]) -> Result<Answer, ScimError> {
        let Some(limits) = self.config.bulk else {
            return Err(ScimError::new(501, None, "Bulk is not supported."));
        };
        if body.len() > limits.max_payload_size {
            let detail = format!(
                "The size of the bulk operation exceeds the maxPayloadSize ({}).",
                limits.max_payload_size
            );
            return Err(ScimError::new(413, None, detail));
        }
        let request: Value = serde_json::from_slice(body)
            .map_err(|e| ScimError::invalid_syntax(format!("The body is not JSON: {e}.")))?;
        let Value::Object(fields) = &request else {
            return Err(ScimError::invalid_syntax("The body must be a BulkRequest object."));
        };
        if self.config.require_schemas && !resources::lists(fields.get("schemas"), schema::BULK_REQUEST) {
            return Err(ScimError::invalid_syntax(format!("'schemas' must list {}.", schema::BULK_REQUEST)));
        }
        let operations = fields
            .get("Operations")
            .and_then(Value::as_array)
            .ok_or_else(|| ScimError::invalid_syntax("'Operations' must be an array."))?;
        if operations.len() > limits.max_operations {
            let detail =
                format!("The number of operations exceeds maxOperations ({}).", limits.max_operations);
            return Err(ScimError::new(413, None, detail));
        }
        let fail_on_errors = match fields.get("failOnErrors") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| ScimError::invalid_value("'failOnErrors' must be a positive integer."))?,
            ),
        };
        let bulk_ids: Vec<Option<&str>> =
            operations.iter().map(|op| op.get("bulkId").and_then(Value::as_str)).collect();
        // bulkId → the id it created, or None if its operation failed.
        let mut created: HashMap<String, Option<String>> = HashMap::new();
        let mut results: Vec<Option<Value>> = vec![None; operations.len()];
        let mut pending: Vec<usize> = (0..operations.len()).collect();
        let mut errors = 0;
        'passes: while !pending.is_empty() {
            let mut waiting = Vec::new();
            for &i in &pending {
                if fail_on_errors.is_some_and(|max| errors >= max) {
                    break 'passes;
                }
                let outcome = match substitute(&operations[i], &created, &bulk_ids) {
                    Refs::Waiting => {
                        waiting.push(i);
                        continue;
                    }
                    Refs::Failed(error) => Err(error),
                    Refs::Ready(operation) => self.bulk_operation(st, &operation),
                };
                if outcome.is_err() {
                    errors += 1;
                }
                if let Some(bulk_id) = bulk_ids[i] {
                    created.insert(bulk_id.to_owned(), outcome.as_ref().ok().and_then(|(_, id)| id.clone()));
                }
                results[i] = Some(self.bulk_result(st, &operations[i], outcome));
            }
            if waiting.len() == pending.len() {
                // Only operations waiting on each other are left: a cycle.
                for i in waiting {
                    let error = ScimError::new(409, Some("invalidValue"), "Circular bulkId references.");
                    results[i] = Some(self.bulk_result(st, &operations[i], Err(error)));
                }
                break;
            }
            pending = waiting;
        }
        let operations: Vec<Value> = results.into_iter().flatten().collect();
        Ok(Answer::json(200, json!({"schemas": [schema::BULK_RESPONSE], "Operations": operations})))
    }

    /// Runs one operation; returns its status and the id of the resource.
    fn bulk_operation(&self, st: &mut Store, operation: &Value) -> Result<(u16, Option<String>), ScimError> {
        let method = operation.get("method").and_then(Value::as_str).unwrap_or("").to_ascii_uppercase();
        let path = operation.get("path").and_then(Value::as_str).unwrap_or("");
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (endpoint, id) = match segments.as_slice() {
            [endpoint] => (*endpoint, None),
            [endpoint, id] if !id.is_empty() => (*endpoint, Some(*id)),
            _ => return Err(ScimError::invalid_syntax(format!("Invalid path '{path}'."))),
        };
        let kind = [Kind::User, Kind::Group]
            .into_iter()
            .find(|k| k.endpoint() == endpoint && self.model.core(*k).is_some())
            .ok_or_else(|| ScimError::invalid_syntax(format!("Invalid path '{path}'.")))?;
        let data =
            || operation.get("data").ok_or_else(|| ScimError::invalid_syntax("The operation needs 'data'."));
        let version = operation.get("version").and_then(Value::as_str);
        let kept = |change: Change, id: &str| match change {
            Change::Kept => (200, Some(id.to_owned())),
            Change::Deleted => (204, None),
        };
        match (method.as_str(), id) {
            ("POST", None) => {
                if operation.get("bulkId").and_then(Value::as_str).is_none() {
                    return Err(ScimError::invalid_syntax("A POST operation needs a 'bulkId'."));
                }
                Ok((201, Some(self.create(st, kind, data()?, true)?)))
            }
            ("PUT", Some(id)) => Ok(kept(self.replace(st, kind, id, data()?, version, true)?, id)),
            ("PATCH", Some(id)) if self.config.patch => {
                Ok(kept(self.patch(st, kind, id, data()?, version, true)?, id))
            }
            ("DELETE", Some(id)) => {
                self.delete(st, kind, id, version)?;
                Ok((204, None))
            }
            _ => Err(ScimError::invalid_syntax(format!("'{method}' is not supported on '{path}'."))),
        }
    }

    fn bulk_result(
        &self,
        st: &Store,
        operation: &Value,
        outcome: Result<(u16, Option<String>), ScimError>,
    ) -> Value {
        let mut result = json!({"method": operation.get("method").cloned().unwrap_or(Value::Null)});
        if let Some(bulk_id) = operation.get("bulkId") {
            result["bulkId"] = bulk_id.clone();
        }
        match outcome {
            Ok((status, id)) => {
                result["status"] = json!(status.to_string());
                if let Some(stored) = id.as_deref().and_then(|id| st.by_id(id)) {
                    result["location"] =
                        json!(format!("{}/{}/{}", self.base_url(), stored.kind.endpoint(), stored.id));
                    if self.config.etag {
                        result["version"] = json!(resources::etag(stored.version));
                    }
                }
            }
            Err(error) => {
                result["status"] = json!(error.status.to_string());
                result["response"] = error.to_json();
            }
        }
        result
    }
}

/// Replaces every `bulkId:X` in the operation's path and data by the id
/// operation X created.
fn substitute(
    operation: &Value,
    created: &HashMap<String, Option<String>>,
    bulk_ids: &[Option<&str>],
) -> Refs {
    let mut operation = operation.clone();
    let mut outcome = None;
    let mut resolve = |reference: &str| -> Option<String> {
        match created.get(reference) {
            Some(Some(id)) => return Some(id.clone()),
            Some(None) => {
                let detail = format!("The operation with bulkId '{reference}' failed.");
                outcome.get_or_insert(Refs::Failed(ScimError::new(409, Some("invalidValue"), detail)));
            }
            None if bulk_ids.contains(&Some(reference)) => {
                outcome.get_or_insert(Refs::Waiting);
            }
            None => {
                let detail = format!("No operation has bulkId '{reference}'.");
                outcome.get_or_insert(Refs::Failed(ScimError::new(409, Some("invalidValue"), detail)));
            }
        }
        None
    };
    if let Some(Value::String(path)) = operation.get_mut("path")
        && let Some((before, reference)) = path.split_once("bulkId:")
    {
        let (reference, after) = reference.split_once('/').map_or((reference, ""), |(r, a)| (r, a));
        if let Some(id) = resolve(reference) {
            let slash = if after.is_empty() { "" } else { "/" };
            *path = format!("{before}{id}{slash}{after}");
        }
    }
    if let Some(data) = operation.get_mut("data") {
        replace_references(data, &mut resolve);
    }
    outcome.unwrap_or(Refs::Ready(operation))
}

fn replace_references(value: &mut Value, resolve: &mut impl FnMut(&str) -> Option<String>) {
    match value {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:").and_then(&mut *resolve) {
                *s = id;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| replace_references(v, resolve)),
        Value::Object(fields) => fields.values_mut().for_each(|v| replace_references(v, resolve)),
        _ => {}
    }
}
