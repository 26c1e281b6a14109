//! App accounts: the identity graph. One row per account the hub found or
//! created in an app, linked to the user it belongs to (or to no one: an
//! orphan). The hub writes them; the Management API reads them.

use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::AppAccount;
use serde_json::json;

use super::{attrs, timestamp};
use crate::authz::{Family, Guarded};

pub const KIND: &str = "app_account";

impl Guarded for AppAccount {
    const FAMILY: Family = Family::Apps;
}

pub fn present(account: &AppAccount) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &account.id,
        attrs(json!({
            "external_id": account.external_id,
            "login": account.login,
            "status": account.status,
            "orphaned": account.user_id.is_none(),
            "attributes": account.attributes.0,
            "last_seen_at": account.last_seen_at.map(timestamp),
            "inserted_at": timestamp(account.inserted_at),
            "updated_at": timestamp(account.updated_at),
        })),
    )
    .to_one("app", "app", Some(&account.app_id))
    .to_one("user", "user", account.user_id.as_deref())
}
