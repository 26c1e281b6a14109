//! Organizations: the customer companies of a B2B app, each with a name, a
//! URL-safe `slug` unique in the environment (derived from the name when
//! omitted) and the customer's own `metadata`.

use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::Event;
use portcullis_store::types::JsonText;
use portcullis_store::{new_id, now_micros, record};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Changes, Patch, attrs, fetch_in, finish, metadata_object, require_text, target, timestamp};
use crate::authz::{Family, Guarded, Verb};
use crate::error::{Field, conflict_on};
use crate::{Core, Ctx, Result, ServiceError};

pub const KIND: &str = "organization";

portcullis_store::record! {
    /// A customer company of a B2B app (`/api/organizations`).
    pub struct Organization in "organizations" {
        pub id: String,
        pub environment_id: String,
        pub name: String,
        pub slug: String,
        #[sqlx(try_from = "String")]
        pub metadata: JsonText<Value>,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}
pub const SLUG_MAX: usize = 64;
const NAME_MAX: usize = 100;
const SLUG_TAKEN: &str = "an organization with this slug already exists";
const SLUG_INDEX: &[&str] = &["organizations_slug_key", "organizations.slug"];

impl Guarded for Organization {
    const FAMILY: Family = Family::Organizations;
}

pub fn present(organization: &Organization) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &organization.id,
        attrs(json!({
            "name": organization.name,
            "slug": organization.slug,
            "metadata": organization.metadata.0,
            "inserted_at": timestamp(organization.inserted_at),
            "updated_at": timestamp(organization.updated_at),
        })),
    )
}

pub fn name(organization: &Organization) -> Option<&str> {
    Some(&organization.name)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrganization {
    pub name: String,
    /// Derived from `name` when absent.
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationChanges {
    #[serde(default)]
    pub name: Patch<String>,
    #[serde(default)]
    pub slug: Patch<String>,
    #[serde(default)]
    pub metadata: Patch<Value>,
}

/// A slug as given: 1–64 lowercase letters, digits and inner hyphens.
fn check_slug(slug: &str) -> Result<String> {
    let well_formed = !slug.is_empty()
        && slug.len() <= SLUG_MAX
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if !well_formed {
        return Err(ServiceError::invalid(
            "slug",
            format!(
                "slug must be 1 to {SLUG_MAX} lowercase letters, digits and hyphens, \
                 not starting or ending with a hyphen"
            ),
        ));
    }
    Ok(slug.to_owned())
}

/// The slug of a name: ASCII letters and digits lowercased, every other run
/// of characters one hyphen (`Acme, Inc.` → `acme-inc`).
pub fn slug_of(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    let cut = slug.len().min(SLUG_MAX);
    slug[..cut].trim_end_matches('-').to_owned()
}

pub async fn create(core: &Core, ctx: &Ctx, input: NewOrganization) -> Result<Organization> {
    ctx.require(Family::Organizations, Verb::Write)?;
    let name = require_text("name", &input.name, NAME_MAX)?;
    let slug = match input.slug {
        Some(slug) => check_slug(&slug)?,
        None => {
            let derived = slug_of(&name);
            if derived.is_empty() {
                return Err(ServiceError::invalid(
                    "slug",
                    "the name has no letters or digits to make a slug of; give a slug",
                ));
            }
            derived
        }
    };
    let now = now_micros();
    let organization = Organization {
        id: new_id(),
        environment_id: ctx.environment_id().to_owned(),
        name,
        slug,
        metadata: JsonText(metadata_object(input.metadata.unwrap_or_else(|| json!({})))?),
        inserted_at: now,
        updated_at: now,
    };
    let mut tx = core.db.write().await?;
    record::insert(tx.conn(), &organization).await.map_err(conflict_on(
        SLUG_INDEX,
        Field::Attribute("slug"),
        SLUG_TAKEN,
    ))?;
    let event = Event {
        action: "organization.created",
        targets: vec![target(KIND, &organization.id, Some(&organization.name))],
        changes: json!({
            "name": {"from": null, "to": organization.name},
            "slug": {"from": null, "to": organization.slug},
        }),
        data: serde_json::to_value(present(&organization)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(organization)
}

pub async fn update(core: &Core, ctx: &Ctx, id: &str, input: OrganizationChanges) -> Result<Organization> {
    ctx.require(Family::Organizations, Verb::Write)?;
    let mut tx = core.db.write().await?;
    let before: Organization = fetch_in(&mut tx, ctx, KIND, id).await?;
    let mut organization = before.clone();
    if let Some(name) = input.name.required("name")? {
        organization.name = require_text("name", &name, NAME_MAX)?;
    }
    if let Some(slug) = input.slug.required("slug")? {
        organization.slug = check_slug(&slug)?;
    }
    if let Some(metadata) = input.metadata.required("metadata")? {
        organization.metadata = JsonText(metadata_object(metadata)?);
    }
    organization.updated_at = now_micros();
    record::update(tx.conn(), ctx.environment_id(), &organization).await.map_err(conflict_on(
        SLUG_INDEX,
        Field::Attribute("slug"),
        SLUG_TAKEN,
    ))?;
    let mut changes = Changes::default();
    changes.track("name", &before.name, &organization.name);
    changes.track("slug", &before.slug, &organization.slug);
    changes.track("metadata", &before.metadata.0, &organization.metadata.0);
    let event = Event {
        action: "organization.updated",
        targets: vec![target(KIND, &organization.id, Some(&organization.name))],
        changes: changes.into_value(),
        data: serde_json::to_value(present(&organization)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(organization)
}

pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::Organizations, Verb::Delete)?;
    super::delete::<Organization>(core, ctx, "organization.deleted", id, present, name, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_derived_from_names() {
        for (name, slug) in [
            ("Acme", "acme"),
            ("Acme, Inc.", "acme-inc"),
            ("  Globex   Corporation ", "globex-corporation"),
            ("Müller & Söhne GmbH", "m-ller-s-hne-gmbh"),
            ("42", "42"),
            ("日本", ""),
            ("---", ""),
        ] {
            assert_eq!(slug_of(name), slug, "{name}");
        }
        let long = slug_of(&"ab-".repeat(40));
        assert!(long.len() <= SLUG_MAX && !long.ends_with('-'), "{long}");
        for slug in slug_of("Acme, Inc.").split('-') {
            assert!(check_slug(slug).is_ok());
        }
    }

    #[test]
    fn given_slugs_are_checked() {
        for good in ["acme", "acme-inc", "a", "0-9"] {
            assert_eq!(check_slug(good).unwrap(), good);
        }
        for bad in ["", "Acme", "acme inc", "-acme", "acme-", "acme_inc", "ac/me", &"a".repeat(65)] {
            assert!(check_slug(bad).is_err(), "{bad}");
        }
    }
}
