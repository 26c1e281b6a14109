use portcullis_core::services::roles::{self, NewRole, RoleChanges};
use portcullis_core::{Core, Ctx, ServiceError};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, Relationships, ResourceObject};
use portcullis_store::model::Role;
use serde_json::json;

use super::{Access, CRUD, Resource, ResourceDef, Routes, Writable, attr, required, to_many};
use crate::error::ApiResult;
use portcullis_core::authz::Family;

pub struct Roles;

impl Resource for Roles {
    type Model = Role;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "role",
        path: "roles",
        family: Family::Roles,
        summary: "Named sets of permissions, assigned to users.",
        query: QuerySpec {
            filters: &[("name", FieldKind::Text)],
            sorts: &[
                ("name", FieldKind::Text),
                ("inserted_at", FieldKind::Timestamp),
                ("updated_at", FieldKind::Timestamp),
            ],
            includes: &["permissions"],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[("name", "name"), ("inserted_at", "inserted_at"), ("updated_at", "updated_at")],
        attributes: &[
            required("name", "string", Access::ReadWrite, "Unique in the environment."),
            attr("description", "string", Access::ReadWrite, "What the role is for.").nullable(),
            attr("user_count", "integer", Access::ReadOnly, "Users holding the role (single GET only)."),
            attr(
                "permission_count",
                "integer",
                Access::ReadOnly,
                "Permissions in the role (single GET only).",
            ),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[to_many("permissions", "permission").through(
            "role_permissions",
            "role_id",
            "permission_id",
        )],
        ops: CRUD,
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::crud::<Self>()
    }

    fn present(_: &Ctx, role: &Role) -> ResourceObject {
        roles::present(role)
    }

    async fn detail(
        core: &Core,
        _: &Ctx,
        mut object: ResourceObject,
    ) -> Result<ResourceObject, ServiceError> {
        let (users, permissions) = roles::counts(core, &object.id).await?;
        object.attributes.insert("user_count".into(), json!(users));
        object.attributes.insert("permission_count".into(), json!(permissions));
        Ok(object)
    }
}

impl Writable for Roles {
    type New = NewRole;
    type Changes = RoleChanges;

    async fn create(core: &Core, ctx: &Ctx, input: NewRole, _: &Relationships) -> ApiResult<Self::Model> {
        Ok(roles::create(core, ctx, input).await?)
    }

    async fn update(core: &Core, ctx: &Ctx, id: &str, input: RoleChanges) -> ApiResult<Self::Model> {
        Ok(roles::update(core, ctx, id, input).await?)
    }

    async fn delete(core: &Core, ctx: &Ctx, id: &str) -> ApiResult<()> {
        Ok(roles::delete(core, ctx, id).await?)
    }
}
