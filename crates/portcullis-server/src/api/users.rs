use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use portcullis_core::services::users::{self, NewUser, UserChanges};
use portcullis_core::{Core, Ctx, ServiceError, services};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject, parse_create, parse_update};
use portcullis_store::model::User;

use super::{
    Access, CRUD, JsonApiBody, Resource, ResourceDef, Routes, add_to_many, attr, created, no_content, ok,
    required, to_many,
};
use crate::error::ApiResult;
use portcullis_core::authz::Family;

pub struct Users;

impl Resource for Users {
    type Model = User;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "user",
        path: "users",
        family: Family::Users,
        summary: "People who can sign in to this environment.",
        query: QuerySpec {
            filters: &[
                ("email", FieldKind::TextCi),
                ("first_name", FieldKind::Text),
                ("last_name", FieldKind::Text),
                ("email_verified", FieldKind::Bool),
                ("blocked", FieldKind::Bool),
                ("manager_id", FieldKind::Text),
            ],
            sorts: &[
                ("email", FieldKind::TextCi),
                ("first_name", FieldKind::Text),
                ("last_name", FieldKind::Text),
                ("inserted_at", FieldKind::Timestamp),
                ("updated_at", FieldKind::Timestamp),
            ],
            includes: &["roles"],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[
            ("email", "email"),
            ("first_name", "COALESCE(first_name, '')"),
            ("last_name", "COALESCE(last_name, '')"),
            ("email_verified", "email_verified"),
            ("blocked", "blocked"),
            ("manager_id", "manager_id"),
            ("inserted_at", "inserted_at"),
            ("updated_at", "updated_at"),
        ],
        attributes: &[
            required(
                "email",
                "string",
                Access::ReadWrite,
                "Unique in the environment, compared case-insensitively.",
            ),
            required(
                "password",
                "string",
                Access::WriteOnly,
                "8 to 128 characters; stored as an Argon2id hash.",
            ),
            required("password_confirmation", "string", Access::WriteOnly, "Must equal `password`."),
            attr("first_name", "string", Access::ReadWrite, "Given name.").nullable(),
            attr("last_name", "string", Access::ReadWrite, "Family name.").nullable(),
            attr("email_verified", "boolean", Access::ReadWrite, "Whether the email address is confirmed."),
            attr("blocked", "boolean", Access::ReadWrite, "A blocked user can get no tokens."),
            attr(
                "manager_id",
                "string",
                Access::ReadWrite,
                "The user's manager (another user); apps receive them as manager or approver.",
            )
            .nullable(),
            attr("metadata", "object", Access::ReadWrite, "Free-form JSON object."),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[to_many("roles", "role")],
        ops: CRUD,
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::default().create(create).update(update).delete(delete)
    }

    fn present(_: &Ctx, user: &User) -> ResourceObject {
        users::present(user)
    }

    async fn link_many(
        core: &Core,
        _: &Ctx,
        objects: &mut [ResourceObject],
        include: &[String],
    ) -> Result<(), ServiceError> {
        if include.iter().any(|i| i == "roles") {
            let ids: Vec<String> = objects.iter().map(|o| o.id.clone()).collect();
            let pairs = services::linked_ids(core, "user_roles", "user_id", "role_id", &ids).await?;
            add_to_many(objects, "roles", "role", &pairs);
        }
        Ok(())
    }
}

async fn create(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_create::<NewUser>(&body, Users::DEF.kind)?;
    Ok(created(users::present(&users::create(&core, &ctx, input).await?)))
}

async fn update(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_update::<UserChanges>(&body, Users::DEF.kind, &id)?;
    Ok(ok(users::present(&users::update(&core, &ctx, &id, input).await?)))
}

async fn delete(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    users::delete(&core, &ctx, &id).await?;
    Ok(no_content())
}
