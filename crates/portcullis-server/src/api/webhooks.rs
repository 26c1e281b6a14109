//! `/api/webhooks` and their deliveries: endpoints that hear of committed
//! changes, signed per Standard Webhooks; the event catalogue they
//! subscribe from; the delivery log, retry and a test message.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use portcullis_core::authz::{Family, Verb};
use portcullis_core::services::webhooks::{self, NewWebhook, Webhook, WebhookChanges};
use portcullis_core::webhooks::catalogue::CATALOGUE;
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{
    Direction, Document, FieldKind, QuerySpec, ResourceObject, parse_create, parse_update,
};
use portcullis_store::model::WebhookDelivery;
use portcullis_store::{CondOp, Condition, SqlValue};
use serde_json::json;

use super::{
    Access, Action, CRUD, JsonApiBody, Ops, Resource, ResourceDef, Routes, accepted, attr, created_with_meta,
    list_within, no_content, ok, ok_with_meta, required, respond, to_one,
};
use crate::error::ApiResult;

pub const EVENT_TYPES_PATH: &str = "/api/webhooks/event-types";
pub const DELIVERIES_PATH: &str = "/api/webhooks/{id}/deliveries";
pub const RETRY_PATH: &str = "/api/webhooks/{id}/deliveries/{delivery_id}/retry";
pub const TEST_PATH: &str = "/api/webhooks/{id}/test";
pub const EVENT_TYPE_KIND: &str = "webhook_event_type";

pub struct Webhooks;

impl Resource for Webhooks {
    type Model = Webhook;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: webhooks::KIND,
        path: "webhooks",
        family: Family::Webhooks,
        summary: "Endpoints that receive the environment's events, signed per Standard Webhooks. The signing secret is returned once, in `meta.signing_secret`.",
        query: QuerySpec {
            filters: &[("name", FieldKind::Text), ("active", FieldKind::Bool)],
            sorts: &[("name", FieldKind::Text), ("inserted_at", FieldKind::Timestamp)],
            includes: &[],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[("name", "name"), ("active", "active"), ("inserted_at", "inserted_at")],
        attributes: &[
            required("name", "string", Access::ReadWrite, "Display name (1 to 100 characters)."),
            required(
                "url",
                "string",
                Access::ReadWrite,
                "Where events are POSTed: https, and never to a loopback, private, link-local or other non-public address (the installation's `allow_private_targets` allows them and http, for development). Redirects are not followed.",
            ),
            required(
                "events",
                "array",
                Access::ReadWrite,
                "Event types from `GET /api/webhooks/event-types`, family wildcards such as `user.*`, or `*` for all. Subscribing reads what the events carry, so it needs the read scope of each family they belong to (`users:read` for `user.*`; every read scope for `*`).",
            ),
            attr("active", "boolean", Access::ReadWrite, "Whether events are delivered (default true). Setting it true again clears `disabled_reason`."),
            attr("description", "string", Access::ReadWrite, "Free text (up to 1,000 characters).").nullable(),
            attr(
                "disabled_reason",
                "string",
                Access::ReadOnly,
                "Why delivery disabled the webhook: its endpoint answered 410 Gone, or every delivery failed for days.",
            )
            .nullable(),
            attr(
                "failing_since",
                "date-time",
                Access::ReadOnly,
                "Since when deliveries have been failing for good, with none succeeding.",
            )
            .nullable(),
            attr(
                "previous_secret_expires_at",
                "date-time",
                Access::ReadOnly,
                "Until when deliveries are also signed with the secret before the last rotation.",
            )
            .nullable(),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[],
        ops: CRUD,
        actions: &[Action::patch(
            "rotate_secret",
            "Replaces the signing secret; the new one is in `meta.signing_secret`. For 24 hours deliveries carry signatures with both, so receivers can roll over.",
        )],
    };

    fn routes() -> Routes {
        Routes::default()
            .create(create)
            .update(update)
            .delete(delete)
            .action("rotate_secret", rotate_secret)
            .extra(EVENT_TYPES_PATH, get(event_types))
            .extra(DELIVERIES_PATH, get(deliveries))
            .extra(RETRY_PATH, post(retry))
            .extra(TEST_PATH, post(send_test))
    }

    fn present(_: &Ctx, webhook: &Webhook) -> ResourceObject {
        webhooks::present(webhook)
    }
}

pub struct WebhookDeliveries;

impl Resource for WebhookDeliveries {
    type Model = WebhookDelivery;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: webhooks::DELIVERY_KIND,
        path: "webhook-deliveries",
        family: Family::Webhooks,
        summary: "The delivery log: one message to one webhook, with its attempts. Settled ones are kept for the installation's retention (7 days by default).",
        query: QuerySpec {
            filters: &[
                ("webhook_id", FieldKind::Text),
                ("status", FieldKind::Text),
                ("event_type", FieldKind::Text),
                ("message_id", FieldKind::Text),
            ],
            sorts: &[("inserted_at", FieldKind::Timestamp), ("updated_at", FieldKind::Timestamp)],
            includes: &["webhook"],
            default_sort: &[("inserted_at", Direction::Desc)],
        },
        columns: &[
            ("webhook_id", "webhook_id"),
            ("status", "status"),
            ("event_type", "event_type"),
            ("message_id", "message_id"),
            ("inserted_at", "inserted_at"),
            ("updated_at", "updated_at"),
        ],
        attributes: &[
            attr("message_id", "string", Access::ReadOnly, "The `webhook-id` header: the same on every attempt, and for every webhook the event went to."),
            attr("event_type", "string", Access::ReadOnly, "The event's type."),
            attr("status", "string", Access::ReadOnly, "`pending` (due or between attempts), `delivered` (a 2xx) or `failed` (no attempts left, 410 Gone, or the webhook was disabled).")
                .one_of(&["pending", "delivered", "failed"]),
            attr("attempts", "integer", Access::ReadOnly, "Attempts made (one, then up to five retries)."),
            attr("next_attempt_at", "date-time", Access::ReadOnly, "When a pending delivery is next attempted.").nullable(),
            attr("response_status", "integer", Access::ReadOnly, "The last attempt's HTTP status.").nullable(),
            attr("response_excerpt", "string", Access::ReadOnly, "The start of the last response's body (512 bytes at most).").nullable(),
            attr("latency_ms", "integer", Access::ReadOnly, "How long the last attempt took.").nullable(),
            attr("last_error", "string", Access::ReadOnly, "Why the last attempt failed.").nullable(),
            attr("last_attempt_at", "date-time", Access::ReadOnly, "When the last attempt started.").nullable(),
            attr("delivered_at", "date-time", Access::ReadOnly, "When an attempt succeeded.").nullable(),
            attr("payload", "object", Access::ReadOnly, "The body as sent: `{type, timestamp, data, actor}`; null unless the token holds the read scope of the event's family.").nullable(),
            attr("inserted_at", "date-time", Access::ReadOnly, "When the event was committed."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[to_one("webhook", webhooks::KIND)],
        ops: Ops { list: true, get: true, create: false, update: false, delete: false },
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::default()
    }

    fn present(ctx: &Ctx, delivery: &WebhookDelivery) -> ResourceObject {
        webhooks::present_delivery(ctx, delivery)
    }
}

async fn create(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_create::<NewWebhook>(&body, webhooks::KIND)?;
    let (webhook, secret) = webhooks::create(&core, &ctx, input).await?;
    Ok(created_with_meta(webhooks::present(&webhook), "signing_secret", json!(secret)))
}

async fn update(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_update::<WebhookChanges>(&body, webhooks::KIND, &id)?;
    Ok(ok(webhooks::present(&webhooks::update(&core, &ctx, &id, input).await?)))
}

async fn delete(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    webhooks::delete(&core, &ctx, &id).await?;
    Ok(no_content())
}

async fn rotate_secret(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let (webhook, secret) = webhooks::rotate_secret(&core, &ctx, &id).await?;
    Ok(ok_with_meta(webhooks::present(&webhook), "signing_secret", json!(secret)))
}

/// `GET /api/webhooks/event-types`: the catalogue.
async fn event_types(Extension(ctx): Extension<Ctx>) -> ApiResult<Response> {
    ctx.require(Family::Webhooks, Verb::Read)?;
    let data = CATALOGUE
        .iter()
        .map(|event| {
            ResourceObject::new(
                EVENT_TYPE_KIND,
                event.name,
                serde_json::Map::from_iter([
                    ("description".to_owned(), json!(event.description)),
                    ("data".to_owned(), json!(event.data)),
                ]),
            )
        })
        .collect();
    Ok(respond(StatusCode::OK, &Document::many(data)))
}

/// `GET /api/webhooks/:id/deliveries`: one webhook's delivery log, with the
/// listing parameters of `/api/webhook-deliveries`.
async fn deliveries(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    portcullis_core::services::fetch::<Webhook>(&core, &ctx, webhooks::KIND, &id).await?;
    let within = vec![Condition { expr: "webhook_id", op: CondOp::Eq, value: SqlValue::from(id.as_str()) }];
    let path = format!("/api/webhooks/{id}/deliveries");
    list_within::<WebhookDeliveries>(&core, &ctx, query, &path, within).await
}

/// `POST /api/webhooks/:id/deliveries/:delivery_id/retry`: sends a settled
/// delivery once more, now.
async fn retry(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let delivery = webhooks::retry(&core, &ctx, &id, &delivery_id).await?;
    Ok(accepted(webhooks::present_delivery(&ctx, &delivery)))
}

/// `POST /api/webhooks/:id/test`: queues a `webhook.test` message now.
async fn send_test(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let delivery = webhooks::send_test(&core, &ctx, &id).await?;
    Ok(accepted(webhooks::present_delivery(&ctx, &delivery)))
}
