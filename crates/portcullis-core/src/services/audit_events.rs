use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::AuditEvent;
use serde_json::json;

use super::{attrs, timestamp};
use crate::authz::{Family, Guarded};

pub const KIND: &str = "audit_event";

impl Guarded for AuditEvent {
    const FAMILY: Family = Family::AuditEvents;
}

pub fn present(event: &AuditEvent) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &event.id,
        attrs(json!({
            "action": event.action,
            "actor": {"type": event.actor_type, "id": event.actor_id, "name": event.actor_name},
            "targets": event.targets.0,
            "changes": event.changes.0,
            "ip_address": event.ip_address,
            "user_agent": event.user_agent,
            "occurred_at": timestamp(event.occurred_at),
        })),
    )
}
