//! An organization-level role of a member (`/api/membership-roles`); see
//! [`super::links`].

use super::links::Link;
use crate::authz::{Family, Guarded};

pub const KIND: &str = "membership_role";

portcullis_store::record! {
    /// An organization-level role of a member (`/api/membership-roles`).
    pub struct MembershipRole in "membership_roles" {
        pub id: String,
        pub environment_id: String,
        pub membership_id: String,
        pub role_id: String,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

impl Guarded for MembershipRole {
    const FAMILY: Family = Family::Memberships;
}

impl Link for MembershipRole {
    const KIND: &'static str = KIND;
    const FROM: &'static str = "membership";
    const TO: &'static str = "role";
    const UNIQUE: &'static [&'static str] = &["membership_roles_pair_key", "membership_roles.role_id"];
    const TAKEN: &'static str = "the member already has this role";
    const CREATED: &'static str = "membership_role.created";
    const DELETED: &'static str = "membership_role.deleted";
    const INVALIDATES: bool = false;
    type From = super::memberships::Membership;
    type To = portcullis_store::model::Role;

    fn new(id: String, environment_id: String, from: &str, to: &str, now: i64) -> Self {
        MembershipRole {
            id,
            environment_id,
            membership_id: from.to_owned(),
            role_id: to.to_owned(),
            inserted_at: now,
            updated_at: now,
        }
    }

    fn ends(&self) -> (&str, &str) {
        (&self.membership_id, &self.role_id)
    }

    fn inserted_at(&self) -> i64 {
        self.inserted_at
    }

    fn updated_at(&self) -> i64 {
        self.updated_at
    }
}
