//! `/ServiceProviderConfig`, `/ResourceTypes` and `/Schemas` (RFC 7644 §4),
//! advertising exactly what the configuration switches on.

use serde_json::{Value, json};

use super::schema::{self, Schema};
use super::{Answer, Kind, ScimError, ScimSim};

impl ScimSim {
    pub(super) fn service_provider_config(&self) -> Value {
        let c = &self.config;
        let (max_operations, max_payload_size) =
            c.bulk.map_or((0, 0), |b| (b.max_operations, b.max_payload_size));
        json!({
            "schemas": [schema::SERVICE_PROVIDER_CONFIG],
            "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
            "patch": {"supported": c.patch},
            "bulk": {"supported": c.bulk.is_some(), "maxOperations": max_operations, "maxPayloadSize": max_payload_size},
            "filter": {"supported": true, "maxResults": c.max_results},
            "changePassword": {"supported": c.change_password},
            "sort": {"supported": c.sort},
            "etag": {"supported": c.etag},
            "authenticationSchemes": [{
                "type": "oauthbearertoken", "name": "OAuth Bearer Token",
                "description": "Authentication with a bearer token.",
                "specUri": "https://www.rfc-editor.org/info/rfc6750", "primary": true
            }],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": format!("{}/ServiceProviderConfig", self.base_url())
            }
        })
    }

    fn resource_type(&self, kind: Kind, core: &Schema) -> Value {
        let extensions: Vec<Value> =
            self.model.extensions(kind).iter().map(|s| json!({"schema": s.id, "required": false})).collect();
        json!({
            "schemas": [schema::RESOURCE_TYPE], "id": kind.name(), "name": kind.name(),
            "endpoint": format!("/{}", kind.endpoint()), "description": core.description, "schema": core.id,
            "schemaExtensions": extensions,
            "meta": {"resourceType": "ResourceType", "location": format!("{}/ResourceTypes/{}", self.base_url(), kind.name())}
        })
    }

    /// The list, or the one named `id`. A filter is refused with 403, so no
    /// client believes it was applied (RFC 7644 §4).
    pub(super) fn resource_types(&self, filtered: bool, id: Option<&str>) -> Result<Answer, ScimError> {
        let all: Vec<(Kind, Value)> = [Kind::User, Kind::Group]
            .into_iter()
            .filter_map(|kind| Some((kind, self.resource_type(kind, self.model.core(kind)?))))
            .collect();
        discovery_answer(filtered, id, all.into_iter().map(|(kind, v)| (kind.name().to_owned(), v)).collect())
    }

    pub(super) fn schemas(&self, filtered: bool, id: Option<&str>) -> Result<Answer, ScimError> {
        let base = self.base_url();
        let all = self.model.schemas().map(|s| (s.id.to_owned(), s.to_json(&base))).collect();
        discovery_answer(filtered, id, all)
    }
}

fn discovery_answer(
    filtered: bool,
    id: Option<&str>,
    all: Vec<(String, Value)>,
) -> Result<Answer, ScimError> {
    if filtered {
        return Err(ScimError::new(403, None, "Discovery endpoints do not support filtering."));
    }
    match id {
        Some(id) => all
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(id))
            .map(|(_, v)| Answer::json(200, v))
            .ok_or_else(|| ScimError::not_found(id)),
        None => {
            let resources: Vec<Value> = all.into_iter().map(|(_, v)| v).collect();
            Ok(Answer::json(
                200,
                json!({"schemas": [schema::LIST], "totalResults": resources.len(),
                       "itemsPerPage": resources.len(), "startIndex": 1, "Resources": resources}),
            ))
        }
    }
}
