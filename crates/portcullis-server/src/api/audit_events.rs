use portcullis_core::Ctx;
use portcullis_core::services::audit_events;
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject};
use portcullis_store::model::AuditEvent;

use super::{Access, Ops, Resource, ResourceDef, Routes, attr};
use portcullis_core::authz::Family;

pub struct AuditEvents;

impl Resource for AuditEvents {
    type Model = AuditEvent;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "audit_event",
        path: "audit-events",
        family: Family::AuditEvents,
        summary: "The read-only record of every change, newest first.",
        query: QuerySpec {
            filters: &[
                ("action", FieldKind::Text),
                ("actor_type", FieldKind::Text),
                ("actor_id", FieldKind::Text),
                ("target_type", FieldKind::Text),
                ("target_id", FieldKind::Text),
            ],
            sorts: &[("occurred_at", FieldKind::Timestamp), ("action", FieldKind::Text)],
            includes: &[],
            default_sort: &[("occurred_at", Direction::Desc)],
        },
        columns: &[
            ("action", "action"),
            ("actor_type", "actor_type"),
            ("actor_id", "actor_id"),
            ("target_type", "target_type"),
            ("target_id", "target_id"),
            ("occurred_at", "occurred_at"),
        ],
        attributes: &[
            attr("action", "string", Access::ReadOnly, "`resource.verb`, e.g. `user.created`."),
            attr(
                "actor",
                "object",
                Access::ReadOnly,
                "`{type, id, name}` of who acted (`system` for automation).",
            ),
            attr("targets", "array<object>", Access::ReadOnly, "`[{type, id, name}]` the event is about."),
            attr("changes", "object", Access::ReadOnly, "`{field: {from, to}}` for tracked fields."),
            attr("ip_address", "string", Access::ReadOnly, "Client IP of the request.").nullable(),
            attr("user_agent", "string", Access::ReadOnly, "User agent of the request.").nullable(),
            attr("occurred_at", "date-time", Access::ReadOnly, "When it happened (UTC)."),
        ],
        relationships: &[],
        ops: Ops { list: true, get: true, create: false, update: false, delete: false },
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::default()
    }

    fn present(_: &Ctx, event: &AuditEvent) -> ResourceObject {
        audit_events::present(event)
    }
}
