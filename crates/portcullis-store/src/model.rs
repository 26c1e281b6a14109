//! Row types, one per table, each declared once with [`record!`], which
//! derives decoding and the column list used by the generic CRUD in
//! [`crate::record`]. The tables the store's own queries read are here; a
//! newer resource family declares its row type in its service module
//! (organizations, memberships, membership roles, invitations), so adding a
//! family leaves this file alone.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::SqlValue;
use crate::types::JsonText;

/// Converts a field to the value bound for its column.
pub trait ToSqlValue {
    fn to_sql(&self) -> SqlValue;
}
impl ToSqlValue for String {
    fn to_sql(&self) -> SqlValue {
        SqlValue::Text(Some(self.clone()))
    }
}
impl ToSqlValue for Option<String> {
    fn to_sql(&self) -> SqlValue {
        SqlValue::Text(self.clone())
    }
}
impl ToSqlValue for i64 {
    fn to_sql(&self) -> SqlValue {
        SqlValue::Int(Some(*self))
    }
}
impl ToSqlValue for Option<i64> {
    fn to_sql(&self) -> SqlValue {
        SqlValue::Int(*self)
    }
}
impl ToSqlValue for bool {
    fn to_sql(&self) -> SqlValue {
        SqlValue::Bool(*self)
    }
}
impl<T: Serialize> ToSqlValue for JsonText<T> {
    fn to_sql(&self) -> SqlValue {
        SqlValue::Text(Some(serde_json::to_string(&self.0).expect("JSON columns serialize")))
    }
}

/// Declares a row type: the struct, its decoding (`sqlx::FromRow`, so the
/// calling crate depends on `sqlx`) and its [`Record`](crate::record::Record) impl. Exported so that
/// a resource family keeps its row type in its own module.
#[macro_export]
macro_rules! record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident in $table:literal {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, ::sqlx::FromRow)]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty ),*
        }

        impl $crate::record::Record for $name {
            const TABLE: &'static str = $table;
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];

            fn id(&self) -> &str {
                &self.id
            }

            fn values(&self) -> Vec<$crate::record::SqlValue> {
                vec![$( $crate::model::ToSqlValue::to_sql(&self.$field) ),*]
            }
        }
    };
}

/// An environment (not environment-scoped itself, so not a [`Record`](crate::record::Record)).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Environment {
    pub id: String,
    pub handle: String,
    pub name: String,
    pub session_ttl: i64,
    #[sqlx(try_from = "crate::DbBool")]
    pub registration_enabled: bool,
    pub default_audience: Option<String>,
    pub inserted_at: i64,
    pub updated_at: i64,
    /// A provisioning pass with more deprovisioning steps than this waits
    /// for approval.
    pub mass_change_threshold: i64,
    /// Password sign-in is refused until the user's address is confirmed.
    #[sqlx(try_from = "crate::DbBool")]
    pub require_email_verification: bool,
    /// How long an invitation link lives, in seconds.
    pub invitation_ttl: i64,
}

record! {
    pub struct User in "users" {
        pub id: String,
        pub environment_id: String,
        pub email: String,
        #[sqlx(try_from = "crate::DbBool")]
        pub email_verified: bool,
        pub first_name: Option<String>,
        pub last_name: Option<String>,
        pub password_hash: Option<String>,
        #[sqlx(try_from = "crate::DbBool")]
        pub blocked: bool,
        #[sqlx(try_from = "String")]
        pub metadata: JsonText<Value>,
        pub inserted_at: i64,
        pub updated_at: i64,
        /// Consecutive failed password logins (reset by a successful one).
        pub failed_logins: i64,
        /// Password logins are refused until then (exponential lockout).
        pub locked_until: Option<i64>,
        /// Who the user reports to; apps receive it as the manager/approver.
        pub manager_id: Option<String>,
    }
}

record! {
    /// A message waiting for the mail worker, sealed with the master key.
    pub struct QueuedMail in "queued_mails" {
        pub id: String,
        pub environment_id: String,
        pub sealed: String,
        pub attempts: i64,
        pub due_at: i64,
        pub inserted_at: i64,
    }
}

record! {
    pub struct Role in "roles" {
        pub id: String,
        pub environment_id: String,
        pub name: String,
        pub description: Option<String>,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

record! {
    pub struct Permission in "permissions" {
        pub id: String,
        pub environment_id: String,
        pub name: String,
        pub description: Option<String>,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

record! {
    pub struct RolePermission in "role_permissions" {
        pub id: String,
        pub environment_id: String,
        pub role_id: String,
        pub permission_id: String,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

record! {
    pub struct UserRole in "user_roles" {
        pub id: String,
        pub environment_id: String,
        pub user_id: String,
        pub role_id: String,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

record! {
    pub struct Client in "clients" {
        pub id: String,
        pub environment_id: String,
        pub client_id: String,
        pub name: String,
        pub client_type: String,
        pub secret_hash: Option<String>,
        #[sqlx(try_from = "String")]
        pub redirect_uris: JsonText<Vec<String>>,
        #[sqlx(try_from = "String")]
        pub grant_types: JsonText<Vec<String>>,
        pub token_format: String,
        #[sqlx(try_from = "crate::DbBool")]
        pub first_party: bool,
        pub inserted_at: i64,
        pub updated_at: i64,
        #[sqlx(try_from = "String")]
        pub post_logout_redirect_uris: JsonText<Vec<String>>,
        /// Authorization requests must carry a PKCE challenge; only
        /// confidential clients may be exempted.
        #[sqlx(try_from = "crate::DbBool")]
        pub require_pkce: bool,
        /// The API this client is the backend of: it may introspect tokens
        /// issued for that API.
        pub serves_resource_server_id: Option<String>,
        /// `deny`, `allow` or `require`: whether sign-ins name an
        /// organization (`/oauth/authorize?organization=`).
        pub organization_usage: String,
    }
}

impl Client {
    /// Whether the client is registered for an OAuth grant type.
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.0.iter().any(|g| g == grant_type)
    }
}

record! {
    pub struct ResourceServer in "resource_servers" {
        pub id: String,
        pub environment_id: String,
        pub name: String,
        pub identifier: String,
        pub token_ttl: i64,
        #[sqlx(try_from = "crate::DbBool")]
        pub allow_offline_access: bool,
        #[sqlx(try_from = "crate::DbBool")]
        pub system: bool,
        pub inserted_at: i64,
        pub updated_at: i64,
        /// User tokens carry only the API scopes the user holds as
        /// permissions (Auth0's "Enable RBAC").
        #[sqlx(try_from = "crate::DbBool")]
        pub enforce_rbac: bool,
    }
}

record! {
    pub struct Scope in "scopes" {
        pub id: String,
        pub environment_id: String,
        pub resource_server_id: String,
        pub name: String,
        pub description: Option<String>,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

record! {
    /// A client's access to a resource server; `None` scopes means all of them.
    pub struct Grant in "client_resource_server_grants" {
        pub id: String,
        pub environment_id: String,
        pub client_id: String,
        pub resource_server_id: String,
        #[sqlx(try_from = "String")]
        pub allowed_scopes: JsonText<Option<Vec<String>>>,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

record! {
    pub struct SigningKey in "signing_keys" {
        pub id: String,
        pub environment_id: String,
        pub kid: String,
        pub algorithm: String,
        pub key_size: Option<i64>,
        pub status: String,
        #[sqlx(try_from = "crate::DbBool")]
        pub is_primary: bool,
        /// PKCS#8, sealed with the master key.
        pub private_key: String,
        #[sqlx(try_from = "String")]
        pub public_jwk: JsonText<Value>,
        pub deactivated_at: Option<i64>,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

record! {
    pub struct AuditEvent in "audit_events" {
        pub id: String,
        pub environment_id: String,
        pub action: String,
        pub actor_type: String,
        pub actor_id: Option<String>,
        pub actor_name: Option<String>,
        pub target_type: Option<String>,
        pub target_id: Option<String>,
        #[sqlx(try_from = "String")]
        pub targets: JsonText<Vec<Target>>,
        #[sqlx(try_from = "String")]
        pub changes: JsonText<Value>,
        pub ip_address: Option<String>,
        pub user_agent: Option<String>,
        pub occurred_at: i64,
    }
}

record! {
    pub struct OutboxEvent in "outbox_events" {
        pub id: String,
        pub environment_id: String,
        pub event_type: String,
        #[sqlx(try_from = "String")]
        pub payload: JsonText<Value>,
        pub created_at: i64,
        pub published_at: Option<i64>,
    }
}

record! {
    /// One message to one webhook, and how sending it went
    /// (`repo::webhooks`; the delivery worker lives in `portcullis_core`).
    pub struct WebhookDelivery in "webhook_deliveries" {
        pub id: String,
        pub environment_id: String,
        pub webhook_id: String,
        /// The outbox event's id: the `webhook-id` header, the same on
        /// every attempt and for every webhook the event goes to.
        pub message_id: String,
        pub event_type: String,
        /// The body, exactly as signed.
        pub payload: String,
        /// `pending`, `delivered` or `failed`.
        pub status: String,
        pub attempts: i64,
        pub attempts_left: i64,
        pub next_attempt_at: i64,
        pub lease_owner: Option<String>,
        pub response_status: Option<i64>,
        pub response_excerpt: Option<String>,
        pub latency_ms: Option<i64>,
        pub last_error: Option<String>,
        pub last_attempt_at: Option<i64>,
        pub delivered_at: Option<i64>,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

record! {
    /// A server-side (opaque) access token; only its hash is kept.
    pub struct AccessToken in "access_tokens" {
        pub id: String,
        pub environment_id: String,
        pub token_hash: String,
        pub jti: String,
        pub client_id: String,
        pub subject: String,
        pub scope: String,
        pub audience: String,
        pub expires_at: i64,
        pub revoked_at: Option<i64>,
        pub inserted_at: i64,
        pub organization_id: Option<String>,
    }
}

record! {
    /// A browser login session; the cookie holds the token, the row its hash.
    pub struct Session in "sessions" {
        pub id: String,
        pub environment_id: String,
        pub user_id: String,
        pub token_hash: String,
        pub ip_address: Option<String>,
        pub user_agent: Option<String>,
        /// When the user last proved who they are (OIDC `auth_time`).
        pub authenticated_at: i64,
        pub last_active_at: i64,
        pub expires_at: i64,
        pub revoked_at: Option<i64>,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

record! {
    /// A single-use authorization code, bound to its client, redirect URI
    /// and PKCE challenge; only its hash is kept.
    pub struct AuthorizationCode in "authorization_codes" {
        pub id: String,
        pub environment_id: String,
        pub code_hash: String,
        /// The client's row id.
        pub client_id: String,
        pub user_id: String,
        pub session_id: Option<String>,
        pub redirect_uri: String,
        pub scope: String,
        pub audience: Option<String>,
        pub nonce: Option<String>,
        pub code_challenge: Option<String>,
        pub auth_time: i64,
        /// The access token issued when the code was redeemed, so a replay
        /// can revoke it.
        pub access_jti: Option<String>,
        pub access_expires_at: Option<i64>,
        pub expires_at: i64,
        pub used_at: Option<i64>,
        pub inserted_at: i64,
        /// The sign-in flow that issued it: one code per flow.
        pub flow_id: Option<String>,
        /// The organization the user signed in to, if any.
        pub organization_id: Option<String>,
    }
}

record! {
    /// A refresh token. Each use rotates it: the row is marked used and a new
    /// one joins the same family; presenting a used one revokes the family.
    pub struct RefreshToken in "refresh_tokens" {
        pub id: String,
        pub environment_id: String,
        pub token_hash: String,
        pub family_id: String,
        /// The client's row id.
        pub client_id: String,
        pub user_id: String,
        pub session_id: Option<String>,
        pub scope: String,
        pub audience: Option<String>,
        pub auth_time: i64,
        pub access_jti: Option<String>,
        pub access_expires_at: Option<i64>,
        pub expires_at: i64,
        pub used_at: Option<i64>,
        pub revoked_at: Option<i64>,
        pub inserted_at: i64,
        pub organization_id: Option<String>,
    }
}

record! {
    /// Scopes a user has allowed a client, remembered for later sign-ins.
    pub struct Consent in "consents" {
        pub id: String,
        pub environment_id: String,
        pub user_id: String,
        /// The client's row id.
        pub client_id: String,
        #[sqlx(try_from = "String")]
        pub scopes: JsonText<Vec<String>>,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

record! {
    /// A single-use emailed link (password reset, email confirmation).
    pub struct UserToken in "user_tokens" {
        pub id: String,
        pub environment_id: String,
        pub user_id: String,
        pub purpose: String,
        pub token_hash: String,
        pub expires_at: i64,
        pub used_at: Option<i64>,
        pub inserted_at: i64,
    }
}

/// Something an audit event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Who made a change: a client (machine token), a user, or the system.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    pub kind: &'static str,
    pub id: Option<String>,
    pub name: Option<String>,
}

impl Actor {
    pub fn system() -> Self {
        Actor { kind: "system", id: None, name: Some("System".into()) }
    }
}

/// The audit and domain event a write records in its own transaction.
#[derive(Debug, Clone)]
pub struct Event {
    /// `resource.verb`, e.g. `user.created`; also the outbox event type.
    pub action: &'static str,
    pub targets: Vec<Target>,
    /// Field-level changes: `{"field": {"from": .., "to": ..}}`.
    pub changes: Value,
    /// The domain event's data (the resource as the API shows it).
    pub data: Value,
}

/// Request context recorded with every audit event.
#[derive(Debug, Clone)]
pub struct Origin {
    pub environment_id: String,
    pub actor: Actor,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
}

record! {
    /// A SaaS app the lifecycle hub provisions accounts in.
    pub struct App in "apps" {
        pub id: String,
        pub environment_id: String,
        pub name: String,
        /// `expensify`, `stripe`, `scim` or `manual`.
        pub kind: String,
        pub base_url: String,
        /// Sealed JSON under the master key (AAD: the app id); never shown.
        pub credentials: Option<String>,
        #[sqlx(try_from = "String")]
        pub settings: JsonText<Value>,
        #[sqlx(try_from = "String")]
        pub access_role_ids: JsonText<Vec<String>>,
        #[sqlx(try_from = "String")]
        pub attribute_mappings: JsonText<Value>,
        /// `soft` (deactivate) or `hard` (delete, after approval).
        pub deprovision_mode: String,
        #[sqlx(try_from = "crate::DbBool")]
        pub enabled: bool,
        pub last_reconciled_at: Option<i64>,
        pub inserted_at: i64,
        pub updated_at: i64,
        /// `automatic` (the connector makes the changes) or `manual` (people
        /// do, from tasks; the connector, if any, only reads).
        pub provisioning: String,
    }
}

record! {
    /// A step of a plan handed to a person: an app with no API, or one the
    /// hub may only read.
    pub struct ManualTask in "manual_tasks" {
        pub id: String,
        pub environment_id: String,
        pub app_id: String,
        pub plan_id: String,
        pub step_id: String,
        pub user_id: Option<String>,
        /// The step's action: `create`, `update`, `deactivate` or `delete`.
        pub action: String,
        pub title: String,
        #[sqlx(try_from = "String")]
        pub instructions: JsonText<Vec<String>>,
        pub assignee: Option<String>,
        pub due_at: i64,
        /// `open`, `done`, `verified`, `verification_failed` or `cancelled`.
        pub status: String,
        pub completed_by: Option<String>,
        pub completed_at: Option<i64>,
        pub note: Option<String>,
        pub verified_at: Option<i64>,
        pub verification: Option<String>,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

record! {
    /// One account found or created in an app: a node of the identity graph.
    pub struct AppAccount in "app_accounts" {
        pub id: String,
        pub environment_id: String,
        pub app_id: String,
        /// The linked user, or none for an orphan.
        pub user_id: Option<String>,
        pub external_id: String,
        pub login: Option<String>,
        /// `active`, `deactivated` or `deleted`.
        pub status: String,
        #[sqlx(try_from = "String")]
        pub attributes: JsonText<Value>,
        pub last_seen_at: Option<i64>,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

record! {
    /// A set of steps for one app: draft → approved → applying → applied | failed (or rejected).
    pub struct ProvisioningPlan in "provisioning_plans" {
        pub id: String,
        pub environment_id: String,
        pub app_id: String,
        /// `event` (directory changes) or `reconcile`.
        pub source: String,
        pub status: String,
        /// Why the plan waits for a person, if it does.
        pub approval_reason: Option<String>,
        #[sqlx(try_from = "String")]
        pub summary: JsonText<Value>,
        pub decided_by: Option<String>,
        pub decided_at: Option<i64>,
        pub finished_at: Option<i64>,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

record! {
    /// One change to one account, applied by a worker holding its lease.
    pub struct ProvisioningStep in "provisioning_steps" {
        pub id: String,
        pub environment_id: String,
        pub plan_id: String,
        pub app_id: String,
        pub user_id: Option<String>,
        pub app_account_id: Option<String>,
        /// `create`, `update`, `deactivate`, `delete` or `manual`.
        pub action: String,
        /// Apply order inside the plan (managers before their reports).
        pub position: i64,
        /// `pending`, `running`, `waiting` (on a manual task), `succeeded`,
        /// `failed`, `skipped` or `cancelled`.
        pub status: String,
        pub reason: Option<String>,
        #[sqlx(try_from = "String")]
        pub changes: JsonText<Value>,
        /// The request body, fixed on the first attempt so retries resend it
        /// byte for byte (idempotency keys depend on it).
        pub request: Option<String>,
        pub result: Option<String>,
        pub attempts: i64,
        pub next_attempt_at: i64,
        pub lease_owner: Option<String>,
        pub lease_expires_at: Option<i64>,
        pub last_error: Option<String>,
        pub completed_at: Option<i64>,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}
