//! Manual tasks: plan steps handed to a person because the app has no API
//! (kind `manual`) or the hub may only read it (`provisioning: manual`).
//! The hub opens them (`portcullis-provision`), people complete them, and a
//! later reconciliation verifies them where the app can be read. Here: how
//! they are shown and reassigned.

use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Event, ManualTask};
use portcullis_store::{now_micros, record};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Changes, Patch, attrs, fetch_in, finish, target, timestamp};
use crate::authz::{Family, Guarded, Verb};
use crate::{Core, Ctx, Result, ServiceError};

pub const KIND: &str = "manual_task";

impl Guarded for ManualTask {
    const FAMILY: Family = Family::Apps;
}

pub fn present(task: &ManualTask) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &task.id,
        attrs(json!({
            "action": task.action,
            "title": task.title,
            "instructions": task.instructions.0,
            "assignee": task.assignee,
            "due_at": timestamp(task.due_at),
            "status": task.status,
            "completed_by": task.completed_by,
            "completed_at": task.completed_at.map(timestamp),
            "note": task.note,
            "verified_at": task.verified_at.map(timestamp),
            "verification": task.verification,
            "inserted_at": timestamp(task.inserted_at),
            "updated_at": timestamp(task.updated_at),
        })),
    )
    .to_one("app", "app", Some(&task.app_id))
    .to_one("plan", "provisioning_plan", Some(&task.plan_id))
    .to_one("step", "provisioning_step", Some(&task.step_id))
    .to_one("user", "user", task.user_id.as_deref())
}

pub fn name(task: &ManualTask) -> Option<&str> {
    Some(&task.title)
}

/// What a person may change on a task: who does it and by when.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskChanges {
    #[serde(default)]
    pub assignee: Patch<String>,
    #[serde(default)]
    pub due_at: Patch<String>,
}

pub async fn update(core: &Core, ctx: &Ctx, id: &str, input: TaskChanges) -> Result<ManualTask> {
    ctx.require(Family::Apps, Verb::Write)?;
    let mut tx = core.db.write().await?;
    let before: ManualTask = fetch_in(&mut tx, ctx, KIND, id).await?;
    let mut task = before.clone();
    match input.assignee {
        Patch::Absent => {}
        Patch::Null => task.assignee = None,
        Patch::Value(assignee) => {
            let assignee = assignee.trim();
            if assignee.is_empty() || assignee.len() > 200 {
                return Err(ServiceError::invalid("assignee", "assignee must be 1 to 200 characters"));
            }
            task.assignee = Some(assignee.to_owned());
        }
    }
    if let Some(due_at) = input.due_at.required("due_at")? {
        let at = OffsetDateTime::parse(&due_at, &Rfc3339)
            .map_err(|_| ServiceError::invalid("due_at", "due_at must be an RFC 3339 date-time"))?;
        task.due_at = (at.unix_timestamp_nanos() / 1_000) as i64;
    }
    task.updated_at = now_micros();
    record::update(tx.conn(), ctx.environment_id(), &task).await?;
    let mut changes = Changes::default();
    changes.track("assignee", &before.assignee, &task.assignee);
    changes.track("due_at", &before.due_at, &task.due_at);
    let event = Event {
        action: "manual_task.updated",
        targets: vec![target(KIND, &task.id, Some(&task.title)), target("app", &task.app_id, None)],
        changes: changes.into_value(),
        data: serde_json::to_value(present(&task)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(task)
}
