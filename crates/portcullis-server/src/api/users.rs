use portcullis_core::services::users::{self, NewUser, UserChanges};
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, Relationships, ResourceObject};
use portcullis_store::model::User;

use super::{Access, CRUD, Resource, ResourceDef, Routes, Writable, attr, required, to_many};
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
            includes: &["roles", "roles.permissions"],
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
        relationships: &[to_many("roles", "role").through("user_roles", "user_id", "role_id")],
        ops: CRUD,
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::crud::<Self>()
    }

    fn present(_: &Ctx, user: &User) -> ResourceObject {
        users::present(user)
    }
}

impl Writable for Users {
    type New = NewUser;
    type Changes = UserChanges;

    async fn create(core: &Core, ctx: &Ctx, input: NewUser, _: &Relationships) -> ApiResult<Self::Model> {
        Ok(users::create(core, ctx, input).await?)
    }

    async fn update(core: &Core, ctx: &Ctx, id: &str, input: UserChanges) -> ApiResult<Self::Model> {
        Ok(users::update(core, ctx, id, input).await?)
    }

    async fn delete(core: &Core, ctx: &Ctx, id: &str) -> ApiResult<()> {
        Ok(users::delete(core, ctx, id).await?)
    }
}
