//! Apps: the SaaS applications the lifecycle hub provisions accounts in.
//!
//! An app names its kind (which connector talks to it), where it lives, its
//! credentials (sealed under the master key, write-only), kind-specific
//! settings, which roles give a user an account, how user attributes map to
//! the app's, and whether deprovisioning deactivates (`soft`) or deletes
//! (`hard`, always after approval).

use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{App, Event, Role};
use portcullis_store::types::JsonText;
use portcullis_store::{new_id, now_micros, record};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Changes, Patch, attrs, fetch_in, finish, require_text, target, timestamp, unique};
use crate::authz::{Family, Guarded, Verb};
use crate::error::{Field, conflict_on};
use crate::{Core, Ctx, Result, ServiceError};

pub const KIND: &str = "app";

impl Guarded for App {
    const FAMILY: Family = Family::Apps;
}
const NAME_TAKEN: &str = "an app with this name already exists";

/// The connectors the hub has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    Expensify,
    Stripe,
    /// Any SCIM 2.0 service provider (RFC 7643/7644).
    Scim,
    /// Payhawk users (employees), account-scoped, `X-Payhawk-ApiKey`.
    Payhawk,
    /// TravelPerk, through its SCIM API (`/scim`, `Api-Version: 1`,
    /// `Authorization: ApiKey`) with its User extension.
    TravelPerk,
    /// Stripe Dashboard team members, through Stripe's SCIM API: the email
    /// is the member and cannot change; removing a member deletes them.
    StripeDashboard,
    /// An app with no API: people make every change, from manual tasks.
    Manual,
}

/// The SCIM core User attributes an operator may map (sub-attributes of
/// `name` with a dot), as RFC 7643 §4.1 names them.
pub const SCIM_CORE_ATTRIBUTES: [&str; 14] = [
    "displayName",
    "nickName",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "profileUrl",
    "name.formatted",
    "name.givenName",
    "name.familyName",
    "name.middleName",
    "name.honorificPrefix",
    "name.honorificSuffix",
];
/// The Enterprise User extension (RFC 7643 §4.3); mapped with its URN as
/// the prefix, as SCIM paths write it: `urn:…:enterprise:2.0:User:department`.
pub const SCIM_ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const SCIM_ENTERPRISE_ATTRIBUTES: [&str; 5] =
    ["employeeNumber", "costCenter", "organization", "division", "department"];
/// TravelPerk's User extension [T].
pub const TRAVELPERK_EXTENSION: &str = "urn:ietf:params:scim:schemas:extension:travelperk:2.0:User";
/// Its single-valued attributes the hub may map (`travelPolicy` by name).
pub const TRAVELPERK_EXTENSION_ATTRIBUTES: [&str; 3] = ["gender", "dateOfBirth", "travelPolicy"];
/// The core attributes TravelPerk keeps [T].
pub const TRAVELPERK_CORE_ATTRIBUTES: [&str; 6] =
    ["name.givenName", "name.familyName", "name.middleName", "title", "locale", "preferredLanguage"];

impl AppKind {
    pub fn parse(kind: &str) -> Result<Self> {
        match kind {
            "expensify" => Ok(AppKind::Expensify),
            "stripe" => Ok(AppKind::Stripe),
            "scim" => Ok(AppKind::Scim),
            "stripe_dashboard" => Ok(AppKind::StripeDashboard),
            "travelperk" => Ok(AppKind::TravelPerk),
            "payhawk" => Ok(AppKind::Payhawk),
            "manual" => Ok(AppKind::Manual),
            _ => Err(ServiceError::invalid(
                "kind",
                "kind must be one of: expensify, stripe, stripe_dashboard, travelperk, payhawk, scim, manual",
            )),
        }
    }

    /// Where the vendor's API lives; a SCIM app has no default (its base
    /// URL is the service provider's SCIM root, e.g. `…/scim/v2`).
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            AppKind::Expensify => Some("https://integrations.expensify.com"),
            AppKind::Stripe => Some("https://api.stripe.com"),
            // The sandbox hosts in the wild disagree [T]: set base_url for one.
            AppKind::TravelPerk => Some("https://api.travelperk.com"),
            AppKind::Payhawk => Some("https://api.payhawk.io"),
            // Stripe documents the SCIM API but not its host [I].
            AppKind::Scim | AppKind::StripeDashboard | AppKind::Manual => None,
        }
    }

    fn base_url(self, given: Option<&str>, allow_private: bool) -> Result<String> {
        match given.or(self.default_base_url()) {
            Some(url) => validate_base_url(url, allow_private),
            // A manual app's base URL is only its admin console, for the
            // tasks' instructions.
            None if self == AppKind::Manual => Ok(String::new()),
            None => Err(ServiceError::invalid(
                "base_url",
                "base_url (the service provider's SCIM root, e.g. https://app.example/scim/v2) is required",
            )),
        }
    }

    /// App attributes an operator may map, besides the fixed ones the
    /// connector always sends (email, the user id, the manager).
    fn mappable(self, attribute: &str) -> bool {
        match self {
            AppKind::Expensify => {
                matches!(
                    attribute,
                    "firstName" | "lastName" | "customField1" | "customField2" | "workerStatus"
                )
            }
            AppKind::Stripe => {
                matches!(attribute, "name" | "description" | "phone")
                    || attribute
                        .strip_prefix("metadata.")
                        .is_some_and(|k| !k.is_empty() && !k.starts_with("idp_"))
            }
            AppKind::Scim => {
                SCIM_CORE_ATTRIBUTES.contains(&attribute)
                    || attribute
                        .strip_prefix(SCIM_ENTERPRISE)
                        .and_then(|a| a.strip_prefix(':'))
                        .is_some_and(|a| SCIM_ENTERPRISE_ATTRIBUTES.contains(&a))
            }
            // TravelPerk's subset of the core User, `costCenter`, and its own
            // extension [T]; the manager is rendered by the hub itself.
            AppKind::TravelPerk => {
                TRAVELPERK_CORE_ATTRIBUTES.contains(&attribute)
                    || attribute == format!("{SCIM_ENTERPRISE}:costCenter")
                    || attribute
                        .strip_prefix(TRAVELPERK_EXTENSION)
                        .and_then(|a| a.strip_prefix(':'))
                        .is_some_and(|a| TRAVELPERK_EXTENSION_ATTRIBUTES.contains(&a))
            }
            // Names are set on the invite; Payhawk's user update takes only
            // the role and the external id [T].
            AppKind::Payhawk => matches!(attribute, "firstName" | "lastName"),
            // Stripe keeps only id, userName, displayName, active and meta [D].
            AppKind::StripeDashboard => attribute == "displayName",
            // Named only in the tasks' instructions.
            AppKind::Manual => {
                !attribute.trim().is_empty()
                    && attribute.len() <= 64
                    && !attribute.chars().any(char::is_control)
            }
        }
    }

    /// The mappings every app of this kind starts from.
    pub fn default_mappings(self) -> Map<String, Value> {
        let defaults = match self {
            AppKind::Expensify => json!({"firstName": "first_name", "lastName": "last_name"}),
            AppKind::Stripe => json!({"name": "name"}),
            AppKind::Scim => {
                json!({"name.givenName": "first_name", "name.familyName": "last_name", "displayName": "name"})
            }
            AppKind::StripeDashboard => json!({"displayName": "name"}),
            AppKind::TravelPerk => json!({"name.givenName": "first_name", "name.familyName": "last_name"}),
            AppKind::Payhawk => json!({"firstName": "first_name", "lastName": "last_name"}),
            AppKind::Manual => json!({"name": "name"}),
        };
        attrs(defaults)
    }
}

/// Credentials as stored (sealed). Which fields a kind needs is checked on write.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Expensify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_user_secret: Option<String>,
    /// Stripe: `sk_…` or `rk_…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// Stripe: the `whsec_…` secret that signs webhooks to `/hooks/apps/:id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// TravelPerk (`Authorization: ApiKey`) and Payhawk (`X-Payhawk-ApiKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// SCIM: the service provider's API token, sent as `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
}

impl Credentials {
    fn validate(&self, kind: AppKind) -> Result<()> {
        let missing = |name: &str| {
            ServiceError::invalid(
                "credentials",
                format!("credentials.{name} is required for this kind of app"),
            )
        };
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|v| v.trim().is_empty());
        match kind {
            AppKind::Expensify => {
                if blank(&self.partner_user_id) {
                    return Err(missing("partner_user_id"));
                }
                if blank(&self.partner_user_secret) {
                    return Err(missing("partner_user_secret"));
                }
            }
            AppKind::Stripe => {
                let key = self.secret_key.as_deref().unwrap_or_default();
                if !(key.starts_with("sk_") || key.starts_with("rk_")) {
                    return Err(ServiceError::invalid(
                        "credentials",
                        "credentials.secret_key must be a Stripe secret (sk_…) or restricted (rk_…) key",
                    ));
                }
                if self.webhook_secret.as_deref().is_some_and(|s| !s.starts_with("whsec_")) {
                    return Err(ServiceError::invalid(
                        "credentials",
                        "credentials.webhook_secret must be a Stripe endpoint secret (whsec_…)",
                    ));
                }
            }
            AppKind::Scim | AppKind::StripeDashboard => {
                if blank(&self.bearer_token) {
                    return Err(missing("bearer_token"));
                }
            }
            AppKind::TravelPerk | AppKind::Payhawk => {
                if blank(&self.api_key) {
                    return Err(missing("api_key"));
                }
            }
            AppKind::Manual => {}
        }
        if self.partner_user_id.is_some() && kind != AppKind::Expensify
            || (self.secret_key.is_some() || self.webhook_secret.is_some()) && kind != AppKind::Stripe
            || self.bearer_token.is_some() && !matches!(kind, AppKind::Scim | AppKind::StripeDashboard)
            || self.api_key.is_some() && !matches!(kind, AppKind::TravelPerk | AppKind::Payhawk)
        {
            return Err(ServiceError::invalid(
                "credentials",
                "credentials hold a field this kind of app does not use",
            ));
        }
        Ok(())
    }
}

/// The credentials of an app, unsealed.
pub fn credentials(core: &Core, app: &App) -> Result<Credentials> {
    let Some(sealed) = &app.credentials else { return Ok(Credentials::default()) };
    let plain = core.master_key.open(sealed, &app.id)?;
    serde_json::from_slice(&plain).map_err(|e| ServiceError::Internal(format!("stored credentials: {e}")))
}

fn seal(core: &Core, app_id: &str, credentials: &Credentials) -> Result<String> {
    let plain = serde_json::to_vec(credentials).map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(core.master_key.seal(&plain, app_id)?)
}

fn validate_settings(kind: AppKind, settings: Value) -> Result<Value> {
    let Value::Object(map) = settings else {
        return Err(ServiceError::invalid("settings", "settings must be an object"));
    };
    let invalid = |message: &str| ServiceError::invalid("settings", message.to_owned());
    for (key, value) in &map {
        let ok = match (kind, key.as_str()) {
            // Manual tasks, for any app provisioned by hand: who gets them
            // (an email or a team's name) and how many days they have.
            (_, "task_assignee") => value.as_str().is_some_and(|v| !v.trim().is_empty() && v.len() <= 200),
            (_, "task_due_days") => value.as_u64().is_some_and(|n| (1..=90).contains(&n)),
            // Expensify policy IDs are 16 hex characters (examples show 17 and
            // 18 too), so accept 8–32 hex characters.
            (AppKind::Expensify, "policy_id") => value
                .as_str()
                .is_some_and(|v| (8..=32).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_hexdigit())),
            (AppKind::Expensify, "employee_role") => {
                matches!(value.as_str(), Some("user" | "auditor" | "admin"))
            }
            (AppKind::Expensify, "default_manager_email") => value.as_str().is_some_and(|v| v.contains('@')),
            // How a deactivation is sent: a PATCH with `path: "active"`
            // (RFC 7644's usual form), or path-less as Okta sends it, for
            // servers only ever tested against Okta.
            (AppKind::Scim, "deactivate_style") => matches!(value.as_str(), Some("path" | "pathless")),
            // Role id → SCIM group name: holders of the role are the
            // group's members. Groups not named here are never touched.
            (AppKind::Scim, "group_roles") => value.as_object().is_some_and(|map| {
                !map.is_empty()
                    && map.iter().all(|(role, group)| {
                        !role.is_empty()
                            && group.as_str().is_some_and(|g| !g.trim().is_empty() && g.len() <= 255)
                    })
            }),
            // SCIM publishes no rate limits: the hub's own pace, per app.
            (AppKind::Payhawk, "account_id") => value.as_str().is_some_and(|v| {
                !v.is_empty()
                    && v.len() <= 100
                    && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            }),
            // Payhawk's roles [T]; a custom role by its name.
            (AppKind::Payhawk, "employee_role") => {
                value.as_str().is_some_and(|v| !v.trim().is_empty() && v.len() <= 100)
            }
            // What removing a user does to their cards (the portal's default
            // blocks reassignable cards and closes the rest [D]).
            (AppKind::Payhawk, "card_action") => {
                matches!(value.as_str(), Some("block_reassignable_close_rest" | "close_all" | "keep"))
            }
            (
                AppKind::Scim | AppKind::StripeDashboard | AppKind::TravelPerk | AppKind::Payhawk,
                "requests_per_second",
            ) => value.as_u64().is_some_and(|n| (1..=100).contains(&n)),
            _ => return Err(invalid(&format!("settings.{key} is not a setting of this kind of app"))),
        };
        if !ok {
            return Err(invalid(&format!("settings.{key} has an invalid value")));
        }
    }
    if kind == AppKind::Payhawk && !map.contains_key("account_id") {
        return Err(invalid(
            "settings.account_id (the Payhawk account, as in the portal's ?account=) is required",
        ));
    }
    if kind == AppKind::Expensify && !map.contains_key("policy_id") {
        return Err(invalid("settings.policy_id (the Expensify policy to provision into) is required"));
    }
    Ok(Value::Object(map))
}

/// A mapping source: where a user attribute comes from.
pub fn valid_source(source: &str) -> bool {
    matches!(source, "email" | "first_name" | "last_name" | "name" | "id" | "manager.email")
        || source.strip_prefix("metadata.").is_some_and(|k| !k.is_empty())
}

fn validate_mappings(kind: AppKind, mappings: Value) -> Result<Value> {
    let Value::Object(map) = mappings else {
        return Err(ServiceError::invalid("attribute_mappings", "attribute_mappings must be an object"));
    };
    for (attribute, source) in &map {
        if !kind.mappable(attribute) {
            return Err(ServiceError::invalid(
                "attribute_mappings",
                format!("attribute_mappings.{attribute} is not an attribute this app accepts"),
            ));
        }
        if !source.as_str().is_some_and(valid_source) {
            return Err(ServiceError::invalid(
                "attribute_mappings",
                format!(
                    "attribute_mappings.{attribute} must name a user attribute: email, first_name, \
                     last_name, name, id, manager.email or metadata.<key>"
                ),
            ));
        }
    }
    Ok(Value::Object(map))
}

/// Who makes the changes: the connector (`automatic`) or people, from
/// manual tasks (`manual`); an app with no API is always manual.
fn validate_provisioning(kind: AppKind, provisioning: &str) -> Result<String> {
    match (kind, provisioning) {
        (AppKind::Manual, "automatic") => Err(ServiceError::invalid(
            "provisioning",
            "a manual app has no API: its provisioning can only be manual",
        )),
        (_, "automatic" | "manual") => Ok(provisioning.to_owned()),
        _ => Err(ServiceError::invalid("provisioning", "provisioning must be automatic or manual")),
    }
}

fn validate_mode(kind: AppKind, mode: &str) -> Result<String> {
    match (kind, mode) {
        (AppKind::StripeDashboard, "soft") => Err(ServiceError::invalid(
            "deprovision_mode",
            "Stripe's Dashboard has no deactivation (an inactive member is deleted): its deprovision_mode is hard",
        )),
        (AppKind::Payhawk, "soft") => Err(ServiceError::invalid(
            "deprovision_mode",
            "Payhawk's API has no deactivation, only removal (with its card side effects): its deprovision_mode is hard",
        )),
        (_, "soft" | "hard") => Ok(mode.to_owned()),
        _ => Err(ServiceError::invalid("deprovision_mode", "deprovision_mode must be soft or hard")),
    }
}

/// An app's API root: an absolute URL without query or fragment, held to
/// the rules of every customer-given URL (`outbound::check_url`: https and
/// a public address, unless the installation allows private targets).
fn validate_base_url(url: &str, allow_private: bool) -> Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let ok = (trimmed.starts_with("https://") || trimmed.starts_with("http://"))
        && trimmed.len() > "https://".len()
        && !trimmed.contains(['?', '#', ' ']);
    if !ok {
        return Err(ServiceError::invalid(
            "base_url",
            "base_url must be an absolute http(s) URL without query or fragment",
        ));
    }
    crate::outbound::check_url(trimmed, allow_private)
        .map_err(|why| ServiceError::invalid("base_url", format!("base_url {why}")))?;
    Ok(trimmed.to_owned())
}

/// Roles must exist in this environment.
async fn validate_roles(
    tx: &mut portcullis_store::WriteTx,
    ctx: &Ctx,
    ids: Vec<String>,
) -> Result<Vec<String>> {
    let ids = unique(ids);
    let found: Vec<Role> = record::find_in(tx.conn(), ctx.environment_id(), "id", &ids).await?;
    if found.len() != ids.len() {
        return Err(ServiceError::invalid(
            "access_role_ids",
            "access_role_ids must name roles of this environment",
        ));
    }
    Ok(ids)
}

pub fn present(app: &App) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &app.id,
        attrs(json!({
            "name": app.name,
            "kind": app.kind,
            "base_url": app.base_url,
            "credentials_set": app.credentials.is_some(),
            "settings": app.settings.0,
            "access_role_ids": app.access_role_ids.0,
            "attribute_mappings": app.attribute_mappings.0,
            "deprovision_mode": app.deprovision_mode,
            "provisioning": app.provisioning,
            "enabled": app.enabled,
            "last_reconciled_at": app.last_reconciled_at.map(timestamp),
            "inserted_at": timestamp(app.inserted_at),
            "updated_at": timestamp(app.updated_at),
        })),
    )
}

pub fn name(app: &App) -> Option<&str> {
    Some(&app.name)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub credentials: Credentials,
    #[serde(default)]
    pub settings: Option<Value>,
    #[serde(default)]
    pub access_role_ids: Vec<String>,
    #[serde(default)]
    pub attribute_mappings: Option<Value>,
    #[serde(default)]
    pub deprovision_mode: Option<String>,
    #[serde(default)]
    pub provisioning: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppChanges {
    #[serde(default)]
    pub name: Patch<String>,
    #[serde(default)]
    pub base_url: Patch<String>,
    #[serde(default)]
    pub credentials: Patch<Credentials>,
    #[serde(default)]
    pub settings: Patch<Value>,
    #[serde(default)]
    pub access_role_ids: Patch<Vec<String>>,
    #[serde(default)]
    pub attribute_mappings: Patch<Value>,
    #[serde(default)]
    pub deprovision_mode: Patch<String>,
    #[serde(default)]
    pub provisioning: Patch<String>,
    #[serde(default)]
    pub enabled: Patch<bool>,
}

fn event(action: &'static str, app: &App, changes: Value) -> Event {
    Event {
        action,
        targets: vec![target(KIND, &app.id, Some(&app.name))],
        changes,
        data: serde_json::to_value(present(app)).unwrap_or_default(),
    }
}

/// The app a reconciliation runs for: reconciling writes (a draft plan, the
/// graph), so it needs `apps:write`.
pub async fn reconcile_target(core: &Core, ctx: &Ctx, id: &str) -> Result<App> {
    ctx.require(Family::Apps, Verb::Write)?;
    super::find(core, ctx, KIND, id).await
}

pub async fn create(core: &Core, ctx: &Ctx, input: NewApp) -> Result<App> {
    ctx.require(Family::Apps, Verb::Write)?;
    let kind = AppKind::parse(&input.kind)?;
    input.credentials.validate(kind)?;
    let now = now_micros();
    let id = new_id();
    let mut mappings = kind.default_mappings();
    if let Some(extra) = input.attribute_mappings
        && let Value::Object(extra) = validate_mappings(kind, extra)?
    {
        mappings.extend(extra);
    }
    let mut app = App {
        credentials: Some(seal(core, &id, &input.credentials)?),
        id,
        environment_id: ctx.environment_id().to_owned(),
        name: require_text("name", &input.name, 100)?,
        kind: input.kind,
        base_url: kind.base_url(input.base_url.as_deref(), core.config.allow_private_targets)?,
        settings: JsonText(validate_settings(kind, input.settings.unwrap_or_else(|| json!({})))?),
        access_role_ids: JsonText(Vec::new()),
        attribute_mappings: JsonText(Value::Object(mappings)),
        deprovision_mode: validate_mode(
            kind,
            input.deprovision_mode.as_deref().unwrap_or(
                if matches!(kind, AppKind::StripeDashboard | AppKind::Payhawk) { "hard" } else { "soft" },
            ),
        )?,
        provisioning: validate_provisioning(
            kind,
            input.provisioning.as_deref().unwrap_or(if kind == AppKind::Manual {
                "manual"
            } else {
                "automatic"
            }),
        )?,
        enabled: input.enabled.unwrap_or(true),
        last_reconciled_at: None,
        inserted_at: now,
        updated_at: now,
    };
    let mut tx = core.db.write().await?;
    app.access_role_ids = JsonText(validate_roles(&mut tx, ctx, input.access_role_ids).await?);
    record::insert(tx.conn(), &app).await.map_err(conflict_on(
        &["apps_name_key", "apps.environment_id"],
        Field::Attribute("name"),
        NAME_TAKEN,
    ))?;
    let changes = json!({"name": {"from": null, "to": app.name}, "kind": {"from": null, "to": app.kind}});
    finish(tx, ctx, event("app.created", &app, changes)).await?;
    Ok(app)
}

pub async fn update(core: &Core, ctx: &Ctx, id: &str, input: AppChanges) -> Result<App> {
    ctx.require(Family::Apps, Verb::Write)?;
    let mut tx = core.db.write().await?;
    let before: App = fetch_in(&mut tx, ctx, KIND, id).await?;
    let kind = AppKind::parse(&before.kind)?;
    let mut app = before.clone();
    if let Some(name) = input.name.required("name")? {
        app.name = require_text("name", &name, 100)?;
    }
    match input.base_url {
        Patch::Absent => {}
        Patch::Null => app.base_url = kind.base_url(None, core.config.allow_private_targets)?,
        Patch::Value(url) => app.base_url = validate_base_url(&url, core.config.allow_private_targets)?,
    }
    let credentials_changed = match input.credentials.required("credentials")? {
        Some(credentials) => {
            credentials.validate(kind)?;
            app.credentials = Some(seal(core, &app.id, &credentials)?);
            true
        }
        None => false,
    };
    if let Some(settings) = input.settings.required("settings")? {
        app.settings = JsonText(validate_settings(kind, settings)?);
    }
    if let Some(roles) = input.access_role_ids.required("access_role_ids")? {
        app.access_role_ids = JsonText(validate_roles(&mut tx, ctx, roles).await?);
    }
    match input.attribute_mappings {
        Patch::Absent => {}
        Patch::Null => app.attribute_mappings = JsonText(Value::Object(kind.default_mappings())),
        Patch::Value(mappings) => app.attribute_mappings = JsonText(validate_mappings(kind, mappings)?),
    }
    if let Some(mode) = input.deprovision_mode.required("deprovision_mode")? {
        app.deprovision_mode = validate_mode(kind, &mode)?;
    }
    if let Some(provisioning) = input.provisioning.required("provisioning")? {
        app.provisioning = validate_provisioning(kind, &provisioning)?;
    }
    if let Some(enabled) = input.enabled.required("enabled")? {
        app.enabled = enabled;
    }
    app.updated_at = now_micros();
    record::update(tx.conn(), ctx.environment_id(), &app).await.map_err(conflict_on(
        &["apps_name_key", "apps.environment_id"],
        Field::Attribute("name"),
        NAME_TAKEN,
    ))?;
    let mut changes = Changes::default();
    changes.track("name", &before.name, &app.name);
    changes.track("base_url", &before.base_url, &app.base_url);
    changes.track("settings", &before.settings.0, &app.settings.0);
    changes.track("access_role_ids", &before.access_role_ids.0, &app.access_role_ids.0);
    changes.track("attribute_mappings", &before.attribute_mappings.0, &app.attribute_mappings.0);
    changes.track("deprovision_mode", &before.deprovision_mode, &app.deprovision_mode);
    changes.track("provisioning", &before.provisioning, &app.provisioning);
    changes.track("enabled", &before.enabled, &app.enabled);
    let mut changes = changes.into_value();
    if credentials_changed {
        // Say that they changed, never what they are.
        changes["credentials"] = json!({"from": "[redacted]", "to": "[redacted]"});
    }
    finish(tx, ctx, event("app.updated", &app, changes)).await?;
    Ok(app)
}

pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::Apps, Verb::Delete)?;
    super::delete::<App>(core, ctx, "app.deleted", id, present, name, false).await
}
