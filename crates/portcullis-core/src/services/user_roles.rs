//! A role assigned to a user (`/api/user-roles`); see [`super::links`].

use portcullis_store::model::UserRole;

use super::links::Link;
use crate::authz::{Family, Guarded};

pub const KIND: &str = "user_role";

impl Guarded for UserRole {
    const FAMILY: Family = Family::Users;
}

impl Link for UserRole {
    const KIND: &'static str = KIND;
    const FROM: &'static str = "user";
    const TO: &'static str = "role";
    const UNIQUE: &'static [&'static str] = &["user_roles"];
    const TAKEN: &'static str = "the user already has this role";
    const CREATED: &'static str = "user_role.created";
    const DELETED: &'static str = "user_role.deleted";
    const INVALIDATES: bool = true;
    type From = portcullis_store::model::User;
    type To = portcullis_store::model::Role;

    fn new(id: String, environment_id: String, from: &str, to: &str, now: i64) -> Self {
        UserRole {
            id,
            environment_id,
            user_id: from.to_owned(),
            role_id: to.to_owned(),
            inserted_at: now,
            updated_at: now,
        }
    }

    fn ends(&self) -> (&str, &str) {
        (&self.user_id, &self.role_id)
    }

    fn inserted_at(&self) -> i64 {
        self.inserted_at
    }

    fn updated_at(&self) -> i64 {
        self.updated_at
    }
}
