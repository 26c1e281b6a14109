//! A permission in a role (`/api/role-permissions`); see [`super::links`].

use portcullis_store::model::RolePermission;

use super::links::Link;
use crate::authz::{Family, Guarded};

pub const KIND: &str = "role_permission";

impl Guarded for RolePermission {
    const FAMILY: Family = Family::Roles;
}

impl Link for RolePermission {
    const KIND: &'static str = KIND;
    const FROM: &'static str = "role";
    const TO: &'static str = "permission";
    const UNIQUE: &'static [&'static str] = &["role_permissions"];
    const TAKEN: &'static str = "the role already has this permission";
    const CREATED: &'static str = "role_permission.created";
    const DELETED: &'static str = "role_permission.deleted";
    const INVALIDATES: bool = true;
    type From = portcullis_store::model::Role;
    type To = portcullis_store::model::Permission;

    fn new(id: String, environment_id: String, from: &str, to: &str, now: i64) -> Self {
        RolePermission {
            id,
            environment_id,
            role_id: from.to_owned(),
            permission_id: to.to_owned(),
            inserted_at: now,
            updated_at: now,
        }
    }

    fn ends(&self) -> (&str, &str) {
        (&self.role_id, &self.permission_id)
    }

    fn inserted_at(&self) -> i64 {
        self.inserted_at
    }

    fn updated_at(&self) -> i64 {
        self.updated_at
    }
}
