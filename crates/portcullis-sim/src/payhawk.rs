//! The Payhawk simulator: users (invite, update, remove with card side
//! effects), cards, expenses, teams with member roles, webhook subscriptions
//! and the legacy v2 invoice upload, as `../shared/spec/connectors.md` §4
//! and §6 record Payhawk's contract.
//!
//! Beyond the spec, two [T] sources shaped the wire details: a Kiota client
//! generated from Payhawk's Swagger (github.com/stefan-d-p/PayhawkSDK:
//! `{code, message}` errors, `{items, total}` lists, `$skip`/`$take`/
//! `$filter` query parameters, card statuses, webhook event types, team
//! member roles), and webhook signature checks written against Payhawk
//! (Payhawk's own integrations and github.com/NikolayBa/odc-payhawk-library:
//! `X-Payhawk-Timestamp`, `X-Payhawk-Signature`, RSA-SHA256 over
//! `{timestamp}:{url}:{body}`, the key at `/api/v3/rsa-public-key`).
//!
//! Everything is account-scoped under `/api/v3/accounts/{accountId}`; an
//! API key belongs to one account. The user API is the least certain part,
//! so its wire format sits behind [`users::UserAdapter`] (see that module).
//!
//! Faults ([`FaultRule::operation`]) name operations `users.list`,
//! `users.get`, `users.invite`, `users.update`, `users.remove`,
//! `cards.list`, `expenses.list`, `teams.list`, `teams.members.list`,
//! `teams.members.add`, `teams.members.remove`, `webhooks.list`,
//! `webhooks.create`, `webhooks.delete`, `invoices.list`, `invoices.upload`
//! and `rsa_public_key`.
//!
//! Choices the contract leaves open that no switch covers:
//! - an invite answers 200 with the new user (the Swagger's response type
//!   for it looks like a generator slip);
//! - emails are unique per account among users not removed, compared
//!   case-insensitively; a removed user's email can be invited again;
//! - a removed user leaves every team and cannot be updated (404);
//! - removal changes only cards that are not already closed, and blocked
//!   reassignable cards keep their holder's `userId`;
//! - lists return creation order unless `$orderBy` says otherwise
//!   (expenses only: `{"createdAt":"asc"|"desc"}`);
//! - a `$take` above 1000 is capped, not refused (the Swagger says at most
//!   1000 are returned);
//! - unauthenticated requests (401) carry no rate-limit headers: there is no
//!   account to count them against;
//! - webhook deliveries are retried 3 times with 100 ms doubling backoff.

pub mod users;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;

use crate::common::{
    self, Clock, Fault, Faults, IdSequence, LoggedRequest, RequestLog, Running, WindowLimiter,
};
pub use users::{Reply, UserAdapter, UserQuery, UserRoute, V3Users};

/// The account in Payhawk's help-centre example [D].
pub const DEFAULT_ACCOUNT: &str = "payhawk_demo_6fc0db9a";
pub const DEFAULT_API_KEY: &str = "payhawk-test-api-key";
/// The key header [T].
pub const API_KEY_HEADER: &str = "x-payhawk-apikey";
/// The most any list returns at once [T].
pub const MAX_TAKE: usize = 1000;
/// What a webhook subscription can subscribe to [T].
pub const EVENT_TYPES: &[&str] = &[
    "expense.created",
    "expense.reviewed",
    "expense.approved",
    "expense.deleted",
    "expense.payment-details.updated",
    "payment.authorized",
    "payment.reverted",
    "payment.settled",
    "payment.failed",
    "deposit.received",
    "supplier.created",
    "supplier.updated",
    "purchase-order.status.changed",
];
/// Roles of a team member [T].
pub const TEAM_ROLES: &[&str] = &["employee", "manager"];
pub const TIMESTAMP_HEADER: &str = "x-payhawk-timestamp";
pub const SIGNATURE_HEADER: &str = "x-payhawk-signature";
const WEBHOOK_ATTEMPTS: u32 = 3;
const WEBHOOK_FIRST_BACKOFF: Duration = Duration::from_millis(100);
const RATE_WINDOW: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// Config

/// How the simulator behaves. Documented behaviour is the default; every
/// inferred (`[I]`) behaviour of the spec is a switch.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Seeds the ids, so a run produces the same ids every time.
    pub seed: u64,
    /// Accounts and the API keys bound to each [D: keys are per account].
    pub accounts: Vec<AccountSeed>,
    /// [I] Also accept `Authorization: Bearer <key>` (Stitchflow's claim);
    /// Payhawk's own code sends `X-Payhawk-ApiKey` [T].
    pub accept_bearer: bool,
    /// [I] Status for a key used with another account's id: 403 answers
    /// `PERMISSION_DENIED`, 404 `RESOURCE_NOT_FOUND`.
    pub wrong_account_status: u16,
    pub rate_limits: bool,
    /// Per account, over a sliding one-second window [D: 15].
    pub requests_per_second: u32,
    /// [I] The rate-limit header names ([D] says every response carries
    /// them but not their names); `None` sends none.
    pub rate_limit_headers: Option<RateLimitHeaders>,
    /// [I] Whether the reset header is a Unix time or seconds from now.
    pub reset_header: ResetStyle,
    /// [I] Whether a 429 from the limiter carries `Retry-After` (seconds).
    pub retry_after: bool,
    /// Built-in user roles: `admin`, `accounting`, `employee` [T: Swagger
    /// enum]. Torii's UI labels (`administrator`) are not wire values.
    pub roles: Vec<String>,
    /// [T] Custom roles an account defined (Torii: "or a custom role").
    pub custom_roles: Vec<String>,
    /// [I] Accept user fields the Swagger does not list: `externalId` and
    /// `department` on invite, `firstName`, `lastName` and `department` on
    /// update. Off: they are refused with 400, so connectors cannot come to
    /// depend on them.
    pub extended_user_fields: bool,
    /// [I] Whether removed users still appear in lists and `GET` (with
    /// status `removed`); off, they are gone (404).
    pub show_removed_users: bool,
    /// The card side effect of a removal without `cardAction` [D: the
    /// portal's "Block reassignable cards and close the rest"].
    pub default_card_action: CardAction,
    /// How webhook deliveries are signed [T]; see [`WebhookSigning`].
    pub webhook_signing: WebhookSigning,
    /// Subscriptions need an `https` callback URL [T: "valid HTTPS uri"].
    pub webhook_require_https: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 1,
            accounts: vec![AccountSeed {
                id: DEFAULT_ACCOUNT.into(),
                api_keys: vec![DEFAULT_API_KEY.into()],
            }],
            accept_bearer: false,
            wrong_account_status: 403,
            rate_limits: true,
            requests_per_second: 15,
            rate_limit_headers: Some(RateLimitHeaders::default()),
            reset_header: ResetStyle::EpochSeconds,
            retry_after: true,
            roles: ["admin", "accounting", "employee"].map(String::from).to_vec(),
            custom_roles: Vec::new(),
            extended_user_fields: false,
            show_removed_users: false,
            default_card_action: CardAction::BlockReassignableCloseRest,
            webhook_signing: WebhookSigning::Rsa,
            webhook_require_https: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSeed {
    pub id: String,
    #[serde(default)]
    pub api_keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitHeaders {
    pub limit: String,
    pub remaining: String,
    pub reset: String,
}

impl Default for RateLimitHeaders {
    /// The names a third-party catalogue lists [I].
    fn default() -> Self {
        RateLimitHeaders {
            limit: "X-RateLimit-Limit".into(),
            remaining: "X-RateLimit-Remaining".into(),
            reset: "X-RateLimit-Reset".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetStyle {
    /// Unix seconds (simulated clock) when a request is next allowed.
    EpochSeconds,
    /// Seconds until a request is next allowed.
    DeltaSeconds,
}

/// What a removal does to the user's cards [D: the portal's choice; the API
/// parameter and its values are I].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardAction {
    /// Reassignable cards become `blocked`, the others `closed`.
    BlockReassignableCloseRest,
    CloseAll,
    Keep,
}

impl CardAction {
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "block_reassignable_close_rest" => CardAction::BlockReassignableCloseRest,
            "close_all" => CardAction::CloseAll,
            "keep" => CardAction::Keep,
            _ => return None,
        })
    }
}

/// How deliveries are signed. Both RSA variants send `X-Payhawk-Timestamp`
/// (RFC 3339 with milliseconds) and `X-Payhawk-Signature` (base64 RSA
/// PKCS#1 v1.5 SHA-256 by the key served at `/api/v3/rsa-public-key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookSigning {
    /// [I] No signature headers.
    Unsigned,
    /// [T] Signs `{timestamp}:{callbackUrl}:{body}` (a webhook verifier).
    Rsa,
    /// [T] Signs `{timestamp}:{path?query}:{body}` (Payhawk's own
    /// integration checks its inbound calls this way).
    RsaPath,
}

// ---------------------------------------------------------------------------
// Model

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// Invited, has not accepted yet.
    Invited,
    Active,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: String,
    pub status: UserStatus,
    pub external_id: Option<String>,
    pub department: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An invite, or (back door) a user seeded in any status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NewUser {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: String,
    pub external_id: Option<String>,
    pub department: Option<String>,
    /// Back door only: defaults to `active` when seeded (an invite is always
    /// `invited`).
    pub status: Option<UserStatus>,
    /// Back door only: defaults to now (simulated).
    pub created_at: Option<i64>,
}

/// Absent fields stay; `""` clears `externalId` and `department`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UserChange {
    pub role: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub external_id: Option<String>,
    pub department: Option<String>,
    /// Back door only (drift): the API cannot change an email.
    pub email: Option<String>,
    /// Back door only (drift).
    pub status: Option<UserStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    Active,
    Blocked,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub status: CardStatus,
    /// [I] Whether the card can be handed to someone else (a company card);
    /// the Swagger's card has no such field.
    pub reassignable: bool,
    pub currency: String,
    pub limit: f64,
    pub is_physical: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NewCard {
    pub user_id: String,
    pub name: Option<String>,
    pub status: Option<CardStatus>,
    pub reassignable: bool,
    pub currency: Option<String>,
    pub limit: Option<f64>,
    pub is_physical: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Expense {
    /// Numeric strings, as in Payhawk's webhook payloads [T].
    pub id: String,
    /// The owner (`createdBy` on the wire).
    pub user_id: String,
    pub title: String,
    pub note: Option<String>,
    pub amount: f64,
    pub currency: String,
    pub created_at: i64,
    /// The document date, `YYYY-MM-DD`.
    pub date: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NewExpense {
    pub user_id: String,
    pub title: Option<String>,
    pub note: Option<String>,
    pub amount: f64,
    pub currency: Option<String>,
    /// Defaults to now (simulated).
    pub created_at: Option<i64>,
    /// Defaults to the day of `created_at`.
    pub date: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Team {
    pub id: String,
    pub name: String,
    pub external_id: Option<String>,
    pub parent_id: Option<String>,
    pub members: Vec<TeamMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamMember {
    pub member_id: String,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NewTeam {
    pub name: String,
    pub external_id: Option<String>,
    pub parent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    pub event_type: String,
    pub callback_url: String,
    pub created_at: i64,
}

/// A document uploaded to the legacy `/api/v2/…/invoices` [T].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    pub id: String,
    /// The `X-Payhawk-Invoice-*` headers, by suffix (`Id`, `Provider`, …).
    pub fields: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub size: usize,
    pub created_at: i64,
}

/// One webhook delivery attempt, for assertions.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub event_id: String,
    pub event_type: String,
    pub url: String,
    pub attempt: u32,
    /// `None`: no HTTP answer (connection refused, timeout).
    pub status: Option<u16>,
}

// ---------------------------------------------------------------------------
// Errors

/// An error answer. Its body shape is [`error_body`]'s alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    retry_after: Option<u64>,
}

/// The one place error bodies are shaped: `{code, message}` [T: Swagger's
/// `IError`]. The code strings themselves are [I].
pub fn error_body(code: &str, message: &str) -> Value {
    json!({ "code": code, "message": message })
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, code: code.to_owned(), message: message.into(), retry_after: None }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "VALIDATION_ERROR", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "RESOURCE_NOT_FOUND", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "CONFLICT", message)
    }

    fn unauthorized(message: &str) -> Self {
        Self::new(401, "AUTHENTICATION_FAILED", message)
    }

    fn rate_limited(retry_after: Option<u64>) -> Self {
        let mut error = Self::new(429, "RATE_LIMIT_EXCEEDED", "Too many requests");
        error.retry_after = retry_after;
        error
    }

    fn answer(&self) -> Answer {
        let mut answer = Answer::json(self.status, &error_body(&self.code, &self.message));
        if let Some(secs) = self.retry_after {
            answer.headers.push((header::RETRY_AFTER.to_string(), secs.to_string()));
        }
        answer
    }
}

// ---------------------------------------------------------------------------
// The simulator

/// The simulated Payhawk, shared as `Arc<PayhawkSim>`.
pub struct PayhawkSim {
    config: Config,
    adapter: Box<dyn UserAdapter>,
    /// For the webhook queue, which must not keep the simulator alive.
    me: Weak<PayhawkSim>,
    state: Mutex<Store>,
    log: RequestLog,
    faults: Faults,
    clock: Clock,
    limiter: AccountLimiter,
    /// Generated on first use: key generation takes a moment.
    signer: OnceLock<Option<Signer>>,
    outbox: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    deliveries: Mutex<Vec<Delivery>>,
    http: reqwest::Client,
}

impl PayhawkSim {
    pub fn new(config: Config) -> Arc<Self> {
        Self::with_adapter(config, Box::new(V3Users))
    }

    /// A simulator whose user API speaks `adapter`'s wire format.
    pub fn with_adapter(config: Config, adapter: Box<dyn UserAdapter>) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("the webhook HTTP client builds");
        Arc::new_cyclic(|me| PayhawkSim {
            adapter,
            me: me.clone(),
            state: Mutex::new(Store::new(&config)),
            log: RequestLog::default(),
            faults: Faults::default(),
            clock: Clock::default(),
            limiter: AccountLimiter::new(config.requests_per_second as usize),
            signer: OnceLock::new(),
            outbox: Mutex::default(),
            deliveries: Mutex::default(),
            http,
            config,
        })
    }

    /// The Payhawk API under `/api` plus the `/_sim` back door.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .merge(common::back_door::<PayhawkSim>())
            .route("/_sim/accounts", post(sim_add_account))
            .route("/_sim/accounts/{account}/users", get(sim_users).post(sim_seed_user))
            .route(
                "/_sim/accounts/{account}/users/{id}",
                axum::routing::patch(sim_update_user).delete(sim_remove_user),
            )
            .route("/_sim/accounts/{account}/users/{id}/accept", post(sim_accept))
            .route("/_sim/accounts/{account}/cards", get(sim_cards).post(sim_seed_card))
            .route("/_sim/accounts/{account}/cards/{id}", axum::routing::patch(sim_card_status))
            .route("/_sim/accounts/{account}/expenses", get(sim_expenses).post(sim_seed_expense))
            .route("/_sim/accounts/{account}/teams", get(sim_teams).post(sim_seed_team))
            .route("/_sim/webhook_deliveries", get(sim_deliveries))
            .fallback(api)
            .with_state(self.clone())
    }

    /// Serves on `127.0.0.1:port` (0 picks a free port).
    pub async fn start(config: Config, port: u16) -> std::io::Result<(Arc<Self>, Running)> {
        Self::start_with(config, Box::new(V3Users), port).await
    }

    /// [`Self::start`] with another user adapter.
    pub async fn start_with(
        config: Config,
        adapter: Box<dyn UserAdapter>,
        port: u16,
    ) -> std::io::Result<(Arc<Self>, Running)> {
        let sim = Self::with_adapter(config, adapter);
        let running = common::serve(sim.router(), port).await?;
        Ok((sim, running))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn log(&self) -> &RequestLog {
        &self.log
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Adds an account (if new) and binds `api_keys` to it.
    pub fn add_account(&self, id: &str, api_keys: &[String]) {
        let mut st = self.state();
        st.accounts.entry(id.to_owned()).or_default();
        for key in api_keys {
            st.keys.insert(key.clone(), id.to_owned());
        }
    }

    /// Creates a user out of band (as the portal or an HRIS sync would),
    /// `active` unless `new.status` says otherwise. No role or duplicate
    /// checks: drift is the point. `None` if the account is unknown.
    pub fn seed_user(&self, account: &str, new: NewUser) -> Option<User> {
        let mut st = self.state();
        let now = self.clock.now();
        let id = st.user_ids.next("");
        let user = User {
            id,
            email: new.email,
            first_name: new.first_name,
            last_name: new.last_name,
            role: if new.role.is_empty() { "employee".into() } else { new.role },
            status: new.status.unwrap_or(UserStatus::Active),
            external_id: new.external_id.filter(|s| !s.is_empty()),
            department: new.department.filter(|s| !s.is_empty()),
            created_at: new.created_at.unwrap_or(now),
            updated_at: now,
        };
        st.accounts.get_mut(account)?.users.push(user.clone());
        Some(user)
    }

    /// The invited user accepts: `invited` becomes `active`. False if the
    /// user is unknown or not `invited`.
    pub fn accept_invite(&self, account: &str, id: &str) -> bool {
        let now = self.clock.now();
        let mut st = self.state();
        let user = st.user_mut(account, id).filter(|u| u.status == UserStatus::Invited);
        user.map(|u| {
            u.status = UserStatus::Active;
            u.updated_at = now;
        })
        .is_some()
    }

    /// Changes a user out of band, any field and status included.
    pub fn update_user(&self, account: &str, id: &str, change: UserChange) -> Option<User> {
        let now = self.clock.now();
        let mut st = self.state();
        let user = st.user_mut(account, id)?;
        apply_change(user, &change, now);
        if let Some(email) = change.email {
            user.email = email;
        }
        if let Some(status) = change.status {
            user.status = status;
        }
        Some(user.clone())
    }

    /// Removes a user out of band, with the card side effect of `action`.
    /// False if unknown or already removed.
    pub fn remove_user(&self, account: &str, id: &str, action: CardAction) -> bool {
        let now = self.clock.now();
        let mut st = self.state();
        st.accounts.get_mut(account).is_some_and(|acc| acc.remove_user(id, action, now).is_some())
    }

    /// Every user of the account, removed ones included, in creation order.
    pub fn users(&self, account: &str) -> Vec<User> {
        self.state().accounts.get(account).map(|a| a.users.clone()).unwrap_or_default()
    }

    pub fn user(&self, account: &str, id: &str) -> Option<User> {
        self.state().accounts.get(account)?.user(id).cloned()
    }

    /// Issues a card out of band. `None` if the account is unknown.
    pub fn seed_card(&self, account: &str, new: NewCard) -> Option<Card> {
        let mut st = self.state();
        let id = st.card_ids.next("");
        let card = Card {
            id,
            name: new.name.unwrap_or_else(|| "Card".into()),
            user_id: new.user_id,
            status: new.status.unwrap_or(CardStatus::Active),
            reassignable: new.reassignable,
            currency: new.currency.unwrap_or_else(|| "EUR".into()),
            limit: new.limit.unwrap_or(1000.0),
            is_physical: new.is_physical,
            created_at: self.clock.now(),
        };
        st.accounts.get_mut(account)?.cards.push(card.clone());
        Some(card)
    }

    /// Sets a card's status out of band.
    pub fn set_card_status(&self, account: &str, id: &str, status: CardStatus) -> Option<Card> {
        let mut st = self.state();
        let card = st.accounts.get_mut(account)?.cards.iter_mut().find(|c| c.id == id)?;
        card.status = status;
        Some(card.clone())
    }

    pub fn cards(&self, account: &str) -> Vec<Card> {
        self.state().accounts.get(account).map(|a| a.cards.clone()).unwrap_or_default()
    }

    /// Records an expense (as a card payment or an upload would) and
    /// delivers `expense.created` to the account's subscribers. `None` if
    /// the account is unknown or the date is not `YYYY-MM-DD`.
    pub fn seed_expense(&self, account: &str, new: NewExpense) -> Option<Expense> {
        let now = self.clock.now();
        let mut st = self.state();
        let created_at = new.created_at.unwrap_or(now);
        let date = match new.date {
            Some(date) => parse_day(&date).map(|_| date)?,
            None => OffsetDateTime::from_unix_timestamp(created_at).ok()?.date().to_string(),
        };
        st.next_expense += 1;
        let expense = Expense {
            id: st.next_expense.to_string(),
            user_id: new.user_id,
            title: new.title.unwrap_or_else(|| "Expense".into()),
            note: new.note,
            amount: new.amount,
            currency: new.currency.unwrap_or_else(|| "EUR".into()),
            created_at,
            date,
        };
        let acc = st.accounts.get_mut(account)?;
        acc.expenses.push(expense.clone());
        let urls: Vec<String> = acc
            .webhooks
            .iter()
            .filter(|s| s.event_type == "expense.created")
            .map(|s| s.callback_url.clone())
            .collect();
        for url in urls {
            st.next_event += 1;
            let event_id = st.next_event.to_string();
            // The payload Payhawk sends [T]: the event names the expense only.
            let body = json!({
                "id": event_id, "accountId": account, "eventType": "expense.created",
                "payload": {"expenseId": expense.id}
            });
            self.enqueue(Job { event_id, event_type: "expense.created".into(), url, body: body.to_string() });
        }
        Some(expense)
    }

    pub fn expenses(&self, account: &str) -> Vec<Expense> {
        self.state().accounts.get(account).map(|a| a.expenses.clone()).unwrap_or_default()
    }

    /// Creates a team out of band. `None` if the account is unknown.
    pub fn seed_team(&self, account: &str, new: NewTeam) -> Option<Team> {
        let mut st = self.state();
        let id = st.team_ids.next("");
        let team = Team {
            id,
            name: new.name,
            external_id: new.external_id,
            parent_id: new.parent_id,
            members: Vec::new(),
        };
        st.accounts.get_mut(account)?.teams.push(team.clone());
        Some(team)
    }

    pub fn teams(&self, account: &str) -> Vec<Team> {
        self.state().accounts.get(account).map(|a| a.teams.clone()).unwrap_or_default()
    }

    pub fn webhooks(&self, account: &str) -> Vec<Subscription> {
        self.state().accounts.get(account).map(|a| a.webhooks.clone()).unwrap_or_default()
    }

    pub fn invoices(&self, account: &str) -> Vec<Invoice> {
        self.state().accounts.get(account).map(|a| a.invoices.clone()).unwrap_or_default()
    }

    /// Every webhook delivery attempt so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The webhook signing key as Payhawk serves it: OpenSSH `ssh-rsa …`
    /// [T]. `None` if key generation failed.
    pub fn webhook_public_key(&self) -> Option<String> {
        self.signer().map(|s| s.openssh.clone())
    }

    /// Forgets all data, the log, faults, rate-limit history and
    /// deliveries, restarts the id sequences and re-creates the configured
    /// accounts. The signing key stays.
    pub fn reset(&self) {
        *self.state() = Store::new(&self.config);
        self.log.clear();
        self.faults.clear();
        self.limiter.clear();
        self.deliveries.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    fn state(&self) -> MutexGuard<'_, Store> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn signer(&self) -> Option<&Signer> {
        self.signer.get_or_init(Signer::generate).as_ref()
    }
}

struct Store {
    accounts: BTreeMap<String, Account>,
    /// API key to account id.
    keys: HashMap<String, String>,
    // One sequence per kind, so user ids do not depend on how many cards
    // came before.
    user_ids: IdSequence,
    card_ids: IdSequence,
    team_ids: IdSequence,
    webhook_ids: IdSequence,
    invoice_ids: IdSequence,
    next_expense: u64,
    next_event: u64,
}

impl Store {
    fn new(config: &Config) -> Self {
        let seed = config.seed;
        let mut store = Store {
            accounts: BTreeMap::new(),
            keys: HashMap::new(),
            user_ids: IdSequence::new(seed),
            card_ids: IdSequence::new(seed ^ 0xca7d_ca7d),
            team_ids: IdSequence::new(seed ^ 0x7ea3_7ea3),
            webhook_ids: IdSequence::new(seed ^ 0x40b4_40b4),
            invoice_ids: IdSequence::new(seed ^ 0x1a0c_1a0c),
            next_expense: 0,
            next_event: 0,
        };
        for account in &config.accounts {
            store.accounts.entry(account.id.clone()).or_default();
            for key in &account.api_keys {
                store.keys.insert(key.clone(), account.id.clone());
            }
        }
        store
    }

    fn user_mut(&mut self, account: &str, id: &str) -> Option<&mut User> {
        self.accounts.get_mut(account)?.users.iter_mut().find(|u| u.id == id)
    }
}

#[derive(Default)]
struct Account {
    users: Vec<User>,
    cards: Vec<Card>,
    expenses: Vec<Expense>,
    teams: Vec<Team>,
    webhooks: Vec<Subscription>,
    invoices: Vec<Invoice>,
}

impl Account {
    fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    /// Marks the user removed, takes them out of every team and applies
    /// `action` to their cards that are not closed yet.
    fn remove_user(&mut self, id: &str, action: CardAction, now: i64) -> Option<User> {
        let user = self.users.iter_mut().find(|u| u.id == id && u.status != UserStatus::Removed)?;
        user.status = UserStatus::Removed;
        user.updated_at = now;
        let user = user.clone();
        for team in &mut self.teams {
            team.members.retain(|m| m.member_id != id);
        }
        let cards = self.cards.iter_mut().filter(|c| c.user_id == id && c.status != CardStatus::Closed);
        for card in cards {
            card.status = match action {
                CardAction::BlockReassignableCloseRest if card.reassignable => CardStatus::Blocked,
                CardAction::BlockReassignableCloseRest | CardAction::CloseAll => CardStatus::Closed,
                CardAction::Keep => card.status,
            };
        }
        Some(user)
    }
}

fn apply_change(user: &mut User, change: &UserChange, now: i64) {
    for (slot, value) in [
        (&mut user.role, &change.role),
        (&mut user.first_name, &change.first_name),
        (&mut user.last_name, &change.last_name),
    ] {
        if let Some(value) = value {
            *slot = value.clone();
        }
    }
    for (slot, value) in
        [(&mut user.external_id, &change.external_id), (&mut user.department, &change.department)]
    {
        if let Some(value) = value {
            *slot = Some(value.clone()).filter(|v| !v.is_empty());
        }
    }
    user.updated_at = now;
}

// ---------------------------------------------------------------------------
// Rate limiting

/// 15 per second per account. The shared [`WindowLimiter`] decides; the hit
/// times kept beside it (under one lock, so both see the same requests)
/// give the remaining budget the headers report, which the shared limiter
/// does not expose.
struct AccountLimiter {
    limit: usize,
    window: WindowLimiter,
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// The outcome of counting a request, for the rate-limit headers.
#[derive(Debug, Clone, Copy)]
struct Budget {
    allowed: bool,
    limit: usize,
    remaining: usize,
    /// Until the next request would be allowed.
    reset: Duration,
}

impl AccountLimiter {
    fn new(limit: usize) -> Self {
        AccountLimiter { limit, window: WindowLimiter::new(&[(RATE_WINDOW, limit)]), hits: Mutex::default() }
    }

    fn admit(&self, account: &str) -> Budget {
        let mut hits = self.hits.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let queue = hits.entry(account.to_owned()).or_default();
        while queue.front().is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW) {
            queue.pop_front();
        }
        match self.window.check(account) {
            Ok(()) => {
                queue.push_back(now);
                let remaining = self.limit.saturating_sub(queue.len());
                let reset = match remaining {
                    0 => queue.front().map_or(RATE_WINDOW, |t| RATE_WINDOW.saturating_sub(now - *t)),
                    _ => Duration::ZERO,
                };
                Budget { allowed: true, limit: self.limit, remaining, reset }
            }
            Err(wait) => Budget { allowed: false, limit: self.limit, remaining: 0, reset: wait },
        }
    }

    fn clear(&self) {
        self.window.clear();
        self.hits.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

/// Whole seconds, rounded up; at least 1 when there is any wait.
fn ceil_secs(wait: Duration) -> u64 {
    if wait.is_zero() { 0 } else { wait.as_secs() + u64::from(wait.subsec_nanos() > 0) }
}

// ---------------------------------------------------------------------------
// The API

/// Every request outside `/_sim`: answered synchronously, logged, and (for a
/// `TimeoutAfterCommit` fault) withheld before it is sent.
async fn api(
    State(sim): State<Arc<PayhawkSim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request =
        Request { method: &method, path: uri.path(), query: uri.query(), headers: &headers, body: &body };
    let (answer, handling) = sim.handle(&request);
    let status = answer.status;
    let entry = LoggedRequest::new(method.as_str(), &uri, &headers, &body);
    sim.log.record(entry, status, handling.fault.as_ref().map(Fault::label), handling.hold).await;
    answer.into_response()
}

struct Request<'a> {
    method: &'a Method,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl Request<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn params(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query.unwrap_or("").as_bytes()).into_owned().collect()
    }

    /// The JSON body; an empty body reads as `{}`.
    fn json(&self) -> Result<Value, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        serde_json::from_slice(self.body)
            .map_err(|e| ApiError::validation(format!("The request body is not valid JSON: {e}")))
    }
}

/// A response before it becomes HTTP.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: String,
    content_type: Option<&'static str>,
    headers: Vec<(String, String)>,
}

impl Answer {
    fn json(status: u16, body: &Value) -> Self {
        Answer { status, body: body.to_string(), content_type: Some("application/json"), headers: Vec::new() }
    }

    fn reply(reply: Reply) -> Self {
        match reply.body {
            Some(body) => Answer::json(reply.status, &body),
            None => {
                Answer { status: reply.status, body: String::new(), content_type: None, headers: Vec::new() }
            }
        }
    }

    /// A proxy's HTML page instead of Payhawk's answer: no Payhawk headers.
    fn proxy(status: u16) -> Self {
        let body = Fault::PROXY_PAGE.to_owned();
        Answer { status, body, content_type: Some("text/html"), headers: Vec::new() }
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, self.body).into_response();
        let headers = response.headers_mut();
        match self.content_type {
            Some(content_type) => {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type))
            }
            None => headers.remove(header::CONTENT_TYPE),
        };
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// What happened besides the answer, for the log.
#[derive(Default)]
struct Handling {
    fault: Option<Fault>,
    hold: Option<Duration>,
}

/// An API request, routed.
#[derive(Debug, Clone, PartialEq)]
enum Route {
    PublicKey,
    /// Under `/api/v{2,3}/accounts/{account}`; `None` if no such endpoint.
    Account {
        account: String,
        resource: Option<Resource>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Resource {
    Users(UserRoute),
    Cards,
    Expenses,
    Teams,
    Members(String),
    AddMember(String),
    RemoveMember(String, String),
    Webhooks,
    Subscribe,
    Unsubscribe(String),
    Invoices,
    UploadInvoice,
}

impl Resource {
    /// The fault name.
    fn operation(&self) -> &'static str {
        match self {
            Resource::Users(route) => route.operation(),
            Resource::Cards => "cards.list",
            Resource::Expenses => "expenses.list",
            Resource::Teams => "teams.list",
            Resource::Members(_) => "teams.members.list",
            Resource::AddMember(_) => "teams.members.add",
            Resource::RemoveMember(..) => "teams.members.remove",
            Resource::Webhooks => "webhooks.list",
            Resource::Subscribe => "webhooks.create",
            Resource::Unsubscribe(_) => "webhooks.delete",
            Resource::Invoices => "invoices.list",
            Resource::UploadInvoice => "invoices.upload",
        }
    }
}

impl PayhawkSim {
    /// `None` for paths outside the API.
    fn route(&self, method: &Method, path: &str) -> Option<Route> {
        if matches!(path, "/api/v3/rsa-public-key" | "/api/v2/rsa-public-key") && method == Method::GET {
            return Some(Route::PublicKey);
        }
        let (v2, rest) =
            match (path.strip_prefix("/api/v2/accounts/"), path.strip_prefix("/api/v3/accounts/")) {
                (Some(rest), _) => (true, rest),
                (_, Some(rest)) => (false, rest),
                _ => return None,
            };
        let (account, rest) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if account.is_empty() {
            return None;
        }
        let resource = if v2 {
            // Only invoices remain on v2 [T].
            match (method.as_str(), rest) {
                ("GET", "/invoices") => Some(Resource::Invoices),
                ("POST", "/invoices") => Some(Resource::UploadInvoice),
                _ => None,
            }
        } else {
            self.adapter.route(method, rest).map(Resource::Users).or_else(|| v3_resource(method, rest))
        };
        Some(Route::Account { account: account.to_owned(), resource })
    }
}

fn v3_resource(method: &Method, path: &str) -> Option<Resource> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Some(match (method.as_str(), segments.as_slice()) {
        ("GET", ["cards"]) => Resource::Cards,
        ("GET", ["expenses"]) => Resource::Expenses,
        ("GET", ["teams"]) => Resource::Teams,
        ("GET", ["teams", team, "members"]) => Resource::Members((*team).to_owned()),
        ("POST", ["teams", team, "members"]) => Resource::AddMember((*team).to_owned()),
        ("DELETE", ["teams", team, "members", member]) => {
            Resource::RemoveMember((*team).to_owned(), (*member).to_owned())
        }
        ("GET", ["webhooks"]) => Resource::Webhooks,
        ("POST", ["webhooks"]) => Resource::Subscribe,
        ("DELETE", ["webhooks", id]) => Resource::Unsubscribe((*id).to_owned()),
        ("GET", ["invoices"]) => Resource::Invoices,
        ("POST", ["invoices"]) => Resource::UploadInvoice,
        _ => return None,
    })
}

/// A validated request, ready to execute.
enum Action {
    ListUsers(UserQuery),
    GetUser(String),
    Invite(NewUser),
    UpdateUser(String, UserChange),
    RemoveUser(String, CardAction),
    ListCards(CardQuery),
    ListExpenses(ExpenseQuery),
    ListTeams(Paging),
    ListMembers(String),
    AddMember(String, TeamMember),
    RemoveMember(String, String),
    ListWebhooks,
    Subscribe(String, String),
    Unsubscribe(String),
    ListInvoices(Paging),
    UploadInvoice(BTreeMap<String, String>, Option<String>, usize),
}

impl PayhawkSim {
    fn handle(&self, req: &Request) -> (Answer, Handling) {
        let mut handling = Handling::default();
        let answer = match self.serve(req, &mut handling) {
            Ok(answer) => answer,
            Err((error, budget)) => {
                let mut answer = error.answer();
                if let Some(budget) = budget {
                    self.budget_headers(&mut answer, &budget);
                }
                answer
            }
        };
        (answer, handling)
    }

    /// The pipeline: route, auth, limit, account check, validation, fault,
    /// execution. Errors carry the budget when the request was counted.
    fn serve(&self, req: &Request, out: &mut Handling) -> Result<Answer, (ApiError, Option<Budget>)> {
        let no_budget = |e: ApiError| (e, None);
        let not_found = || ApiError::not_found(format!("Cannot {} {}", req.method, req.path));
        let route = self.route(req.method, req.path).ok_or_else(|| no_budget(not_found()))?;
        let (account, resource) = match route {
            Route::PublicKey => return self.public_key(out),
            Route::Account { account, resource } => (account, resource),
        };
        let key_account = self.authenticate(req).map_err(no_budget)?;
        let budget = self.config.rate_limits.then(|| self.limiter.admit(&key_account));
        let with_budget = |e: ApiError| (e, budget);
        if budget.is_some_and(|b| !b.allowed) {
            let wait = budget.map_or(0, |b| ceil_secs(b.reset).max(1));
            return Err(with_budget(ApiError::rate_limited(self.config.retry_after.then_some(wait))));
        }
        if key_account != account {
            let error = match self.config.wrong_account_status {
                404 => ApiError::not_found(format!("Account {account} not found")),
                status => {
                    ApiError::new(status, "PERMISSION_DENIED", "The API key has no access to this account")
                }
            };
            return Err(with_budget(error));
        }
        let resource = resource.ok_or_else(|| with_budget(not_found()))?;
        let action = self.parse(&resource, req).map_err(with_budget)?;
        out.fault = self.faults.take(resource.operation());
        let mut answer = match out.fault.clone() {
            Some(Fault::RateLimited { retry_after }) => ApiError::rate_limited(retry_after).answer(),
            Some(Fault::ServerError { status }) => {
                ApiError::new(status, "INTERNAL_SERVER_ERROR", "Something went wrong").answer()
            }
            Some(Fault::InBand { code, message }) => {
                let message = message.unwrap_or_else(|| format!("Simulated error: {code}"));
                ApiError::new(400, &code, message).answer()
            }
            Some(Fault::Malformed { status }) => return Ok(Answer::proxy(status)),
            Some(Fault::TimeoutAfterCommit { secs }) => {
                out.hold = Some(Duration::from_secs(secs));
                self.execute(&account, action)
            }
            None => self.execute(&account, action),
        };
        if let Some(budget) = budget {
            self.budget_headers(&mut answer, &budget);
        }
        Ok(answer)
    }

    /// `X-Payhawk-ApiKey` [T], or `Authorization: Bearer` when allowed [I];
    /// the key's account.
    fn authenticate(&self, req: &Request) -> Result<String, ApiError> {
        let bearer = || {
            let authorization = req.header("authorization")?;
            let (scheme, key) = authorization.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        };
        let key = match req.header(API_KEY_HEADER) {
            Some(key) => Some(key.trim()),
            None if self.config.accept_bearer => bearer(),
            None => None,
        };
        let key = key.filter(|k| !k.is_empty()).ok_or_else(|| ApiError::unauthorized("Missing API key"))?;
        self.state().keys.get(key).cloned().ok_or_else(|| ApiError::unauthorized("Invalid API key"))
    }

    fn budget_headers(&self, answer: &mut Answer, budget: &Budget) {
        let Some(names) = &self.config.rate_limit_headers else { return };
        let reset = ceil_secs(budget.reset);
        let reset = match self.config.reset_header {
            ResetStyle::EpochSeconds => self.clock.now() + reset as i64,
            ResetStyle::DeltaSeconds => reset as i64,
        };
        answer.headers.push((names.limit.clone(), budget.limit.to_string()));
        answer.headers.push((names.remaining.clone(), budget.remaining.to_string()));
        answer.headers.push((names.reset.clone(), reset.to_string()));
    }

    /// Unauthenticated [T: Payhawk's own client fetches it without a key].
    fn public_key(&self, out: &mut Handling) -> Result<Answer, (ApiError, Option<Budget>)> {
        out.fault = self.faults.take("rsa_public_key");
        match out.fault.clone() {
            Some(Fault::Malformed { status }) => return Ok(Answer::proxy(status)),
            Some(Fault::ServerError { status }) => {
                return Err((ApiError::new(status, "INTERNAL_SERVER_ERROR", "Something went wrong"), None));
            }
            Some(Fault::RateLimited { retry_after }) => {
                return Err((ApiError::rate_limited(retry_after), None));
            }
            Some(Fault::InBand { code, message }) => {
                return Err((ApiError::new(400, &code, message.unwrap_or_default()), None));
            }
            Some(Fault::TimeoutAfterCommit { secs }) => out.hold = Some(Duration::from_secs(secs)),
            None => {}
        }
        let key = self.webhook_public_key().ok_or_else(|| {
            (ApiError::new(500, "INTERNAL_SERVER_ERROR", "No signing key could be generated"), None)
        })?;
        Ok(Answer { status: 200, body: key, content_type: Some("text/plain"), headers: Vec::new() })
    }

    fn roles_allow(&self, role: &str) -> bool {
        self.config.roles.iter().chain(&self.config.custom_roles).any(|r| r == role)
    }

    fn check_role(&self, role: Option<&str>) -> Result<(), ApiError> {
        match role {
            Some(role) if !self.roles_allow(role) => {
                let known: Vec<&str> =
                    self.config.roles.iter().chain(&self.config.custom_roles).map(String::as_str).collect();
                Err(ApiError::validation(format!("role must be one of {}; got {role}", known.join(", "))))
            }
            _ => Ok(()),
        }
    }

    fn parse(&self, resource: &Resource, req: &Request) -> Result<Action, ApiError> {
        let params = req.params();
        let extended = self.config.extended_user_fields;
        Ok(match resource {
            Resource::Users(UserRoute::List) => {
                Action::ListUsers(self.adapter.list_query(&params, MAX_TAKE)?)
            }
            Resource::Users(UserRoute::Get(id)) => Action::GetUser(id.clone()),
            Resource::Users(UserRoute::Invite) => {
                let new = self.adapter.invite(&req.json()?, extended)?;
                self.check_role(Some(&new.role))?;
                Action::Invite(new)
            }
            Resource::Users(UserRoute::Update(id)) => {
                let change = self.adapter.change(&req.json()?, extended)?;
                self.check_role(change.role.as_deref())?;
                Action::UpdateUser(id.clone(), change)
            }
            Resource::Users(UserRoute::Remove(id)) => {
                let action = self.adapter.card_action(&params)?.unwrap_or(self.config.default_card_action);
                Action::RemoveUser(id.clone(), action)
            }
            Resource::Cards => Action::ListCards(CardQuery::parse(&params)?),
            Resource::Expenses => Action::ListExpenses(ExpenseQuery::parse(&params)?),
            Resource::Teams => Action::ListTeams(paging(&params, MAX_TAKE, MAX_TAKE)?),
            Resource::Members(team) => Action::ListMembers(team.clone()),
            Resource::AddMember(team) => Action::AddMember(team.clone(), parse_member(&req.json()?)?),
            Resource::RemoveMember(team, member) => Action::RemoveMember(team.clone(), member.clone()),
            Resource::Webhooks => Action::ListWebhooks,
            Resource::Subscribe => {
                let (event_type, url) = self.parse_subscription(&req.json()?)?;
                Action::Subscribe(event_type, url)
            }
            Resource::Unsubscribe(id) => Action::Unsubscribe(id.clone()),
            Resource::Invoices => Action::ListInvoices(paging(&params, MAX_TAKE, MAX_TAKE)?),
            Resource::UploadInvoice => {
                // Payhawk's own client describes the document in headers [T].
                let fields = req
                    .headers
                    .iter()
                    .filter_map(|(name, value)| {
                        let suffix = name.as_str().strip_prefix("x-payhawk-invoice-")?;
                        Some((suffix.to_owned(), value.to_str().ok()?.to_owned()))
                    })
                    .collect();
                let content_type = req.header("content-type").map(str::to_owned);
                Action::UploadInvoice(fields, content_type, req.body.len())
            }
        })
    }

    fn parse_subscription(&self, body: &Value) -> Result<(String, String), ApiError> {
        let field = |name: &str| {
            body.get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ApiError::validation(format!("{name} is required")))
        };
        let event_type = field("eventType")?;
        if !EVENT_TYPES.contains(&event_type) {
            return Err(ApiError::validation(format!("Unknown eventType: {event_type}")));
        }
        let url = field("callbackUrl")?;
        let parsed = reqwest::Url::parse(url)
            .map_err(|_| ApiError::validation(format!("callbackUrl is not a valid URL: {url}")))?;
        let scheme_ok = match self.config.webhook_require_https {
            true => parsed.scheme() == "https",
            false => matches!(parsed.scheme(), "https" | "http"),
        };
        if !scheme_ok {
            return Err(ApiError::validation(format!("callbackUrl must be a valid HTTPS URI: {url}")));
        }
        Ok((event_type.to_owned(), url.to_owned()))
    }

    fn execute(&self, account: &str, action: Action) -> Answer {
        let now = self.clock.now();
        let mut st = self.state();
        let Store { accounts, user_ids, webhook_ids, invoice_ids, .. } = &mut *st;
        let Some(acc) = accounts.get_mut(account) else {
            return ApiError::not_found(format!("Account {account} not found")).answer();
        };
        match self.run(acc, action, now, user_ids, webhook_ids, invoice_ids) {
            Ok(reply) => Answer::reply(reply),
            Err(error) => error.answer(),
        }
    }

    fn visible(&self, user: &User) -> bool {
        self.config.show_removed_users || user.status != UserStatus::Removed
    }

    fn run(
        &self,
        acc: &mut Account,
        action: Action,
        now: i64,
        user_ids: &IdSequence,
        webhook_ids: &IdSequence,
        invoice_ids: &IdSequence,
    ) -> Result<Reply, ApiError> {
        let user_missing = |id: &str| ApiError::not_found(format!("User {id} not found"));
        let team_missing = |id: &str| ApiError::not_found(format!("Team {id} not found"));
        match action {
            Action::ListUsers(q) => {
                let matches: Vec<&User> = acc
                    .users
                    .iter()
                    .filter(|u| self.visible(u))
                    .filter(|u| q.email.as_ref().is_none_or(|e| u.email.eq_ignore_ascii_case(e)))
                    .filter(|u| q.external_id.as_ref().is_none_or(|x| u.external_id.as_ref() == Some(x)))
                    .collect();
                let page = q.paging.slice(&matches);
                Ok(Reply::ok(self.adapter.list(page, matches.len())))
            }
            Action::GetUser(id) => {
                let user = acc.user(&id).filter(|u| self.visible(u)).ok_or_else(|| user_missing(&id))?;
                Ok(Reply::ok(self.adapter.user(user)))
            }
            Action::Invite(new) => {
                let taken = acc
                    .users
                    .iter()
                    .any(|u| u.status != UserStatus::Removed && u.email.eq_ignore_ascii_case(&new.email));
                if taken {
                    return Err(ApiError::conflict(format!(
                        "A user with email {} already exists",
                        new.email
                    )));
                }
                let user = User {
                    id: user_ids.next(""),
                    email: new.email,
                    first_name: new.first_name,
                    last_name: new.last_name,
                    role: new.role,
                    status: UserStatus::Invited,
                    external_id: new.external_id.filter(|s| !s.is_empty()),
                    department: new.department.filter(|s| !s.is_empty()),
                    created_at: now,
                    updated_at: now,
                };
                acc.users.push(user.clone());
                Ok(self.adapter.invited(&user))
            }
            Action::UpdateUser(id, change) => {
                let user = acc
                    .users
                    .iter_mut()
                    .find(|u| u.id == id && u.status != UserStatus::Removed)
                    .ok_or_else(|| user_missing(&id))?;
                apply_change(user, &change, now);
                let user = user.clone();
                Ok(self.adapter.updated(&user))
            }
            Action::RemoveUser(id, action) => {
                let user = acc.remove_user(&id, action, now).ok_or_else(|| user_missing(&id))?;
                Ok(self.adapter.removed(&user))
            }
            Action::ListCards(q) => {
                let matches: Vec<&Card> = acc.cards.iter().filter(|c| q.matches(c)).collect();
                let items: Vec<Value> = q.paging.slice(&matches).iter().map(|c| card_json(c)).collect();
                Ok(Reply::ok(json!({"items": items, "total": matches.len()})))
            }
            Action::ListExpenses(q) => {
                let mut matches: Vec<&Expense> = acc.expenses.iter().filter(|e| q.matches(e)).collect();
                // Stable, so equal times keep creation order.
                matches.sort_by_key(|e| e.created_at);
                if q.newest_first {
                    matches.reverse();
                }
                let page = q.paging.slice(&matches);
                let items: Vec<Value> = page.iter().map(|e| expense_json(e, acc.user(&e.user_id))).collect();
                Ok(Reply::ok(json!({"items": items, "total": matches.len()})))
            }
            Action::ListTeams(paging) => {
                let all: Vec<&Team> = acc.teams.iter().collect();
                let items: Vec<Value> = paging.slice(&all).iter().map(|t| team_json(t)).collect();
                Ok(Reply::ok(json!({"items": items, "total": all.len()})))
            }
            Action::ListMembers(team) => {
                let team = acc.teams.iter().find(|t| t.id == team).ok_or_else(|| team_missing(&team))?;
                Ok(Reply::ok(json!({"items": team.members, "total": team.members.len()})))
            }
            Action::AddMember(team_id, member) => {
                let active = acc.user(&member.member_id).is_some_and(|u| u.status != UserStatus::Removed);
                let team =
                    acc.teams.iter_mut().find(|t| t.id == team_id).ok_or_else(|| team_missing(&team_id))?;
                if !active {
                    return Err(user_missing(&member.member_id));
                }
                // Adding an existing member replaces their roles.
                match team.members.iter_mut().find(|m| m.member_id == member.member_id) {
                    Some(existing) => existing.roles = member.roles.clone(),
                    None => team.members.push(member.clone()),
                }
                Ok(Reply::ok(json!(member)))
            }
            Action::RemoveMember(team_id, member) => {
                let team =
                    acc.teams.iter_mut().find(|t| t.id == team_id).ok_or_else(|| team_missing(&team_id))?;
                let before = team.members.len();
                team.members.retain(|m| m.member_id != member);
                if team.members.len() == before {
                    return Err(ApiError::not_found(format!("Member {member} not found")));
                }
                Ok(Reply::no_content())
            }
            Action::ListWebhooks => {
                let items: Vec<Value> = acc.webhooks.iter().map(subscription_json).collect();
                Ok(Reply::ok(json!({"items": items, "total": items.len()})))
            }
            Action::Subscribe(event_type, callback_url) => {
                let subscription =
                    Subscription { id: webhook_ids.next(""), event_type, callback_url, created_at: now };
                acc.webhooks.push(subscription.clone());
                Ok(Reply::ok(subscription_json(&subscription)))
            }
            Action::Unsubscribe(id) => {
                let before = acc.webhooks.len();
                acc.webhooks.retain(|s| s.id != id);
                if acc.webhooks.len() == before {
                    return Err(ApiError::not_found(format!("Webhook subscription {id} not found")));
                }
                Ok(Reply::no_content())
            }
            Action::ListInvoices(paging) => {
                let all: Vec<&Invoice> = acc.invoices.iter().collect();
                let items: Vec<Value> = paging.slice(&all).iter().map(|i| invoice_json(i)).collect();
                Ok(Reply::ok(json!({"items": items, "total": all.len()})))
            }
            Action::UploadInvoice(fields, content_type, size) => {
                let id = fields.get("id").cloned().unwrap_or_else(|| invoice_ids.next(""));
                let invoice = Invoice { id, fields, content_type, size, created_at: now };
                acc.invoices.push(invoice.clone());
                Ok(Reply::ok(invoice_json(&invoice)))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Queries and rendering

/// `$skip`/`$take` [T for cards and expenses; I for users and teams].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub skip: usize,
    pub take: usize,
}

impl Default for Paging {
    fn default() -> Self {
        Paging { skip: 0, take: usize::MAX }
    }
}

impl Paging {
    pub fn slice<'a, T>(&self, all: &'a [T]) -> &'a [T] {
        let start = self.skip.min(all.len());
        let end = start.saturating_add(self.take).min(all.len());
        &all[start..end]
    }
}

/// Reads `$skip` and `$take`: non-negative integers; `$take` is capped at
/// `max_take` and defaults to `default_take`.
pub fn paging(params: &[(String, String)], max_take: usize, default_take: usize) -> Result<Paging, ApiError> {
    let number = |name: &str| -> Result<Option<usize>, ApiError> {
        let Some((_, value)) = params.iter().find(|(n, _)| n == name) else { return Ok(None) };
        value
            .parse::<usize>()
            .map(Some)
            .map_err(|_| ApiError::validation(format!("{name} must be a non-negative integer; got {value}")))
    };
    let skip = number("$skip")?.unwrap_or(0);
    let take = number("$take")?.map_or(default_take, |t| t.min(max_take));
    Ok(Paging { skip, take })
}

/// `$filter`: a JSON-stringified object [T]; absent is empty.
pub fn json_filter(params: &[(String, String)]) -> Result<Map<String, Value>, ApiError> {
    let Some((_, text)) = params.iter().find(|(n, _)| n == "$filter") else { return Ok(Map::new()) };
    match serde_json::from_str(text) {
        Ok(Value::Object(filter)) => Ok(filter),
        _ => Err(ApiError::validation(format!("$filter must be a JSON object; got {text}"))),
    }
}

/// A string filter value from `$filter` or a plain query parameter (the
/// plain `userId=` is [I]; Payhawk's lists filter through `$filter` [T]).
fn filter_text(
    filter: &Map<String, Value>,
    params: &[(String, String)],
    name: &str,
) -> Result<Option<String>, ApiError> {
    if let Some(value) = filter.get(name) {
        let text = value.as_str().ok_or_else(|| ApiError::validation(format!("{name} must be a string")))?;
        return Ok(Some(text.to_owned()));
    }
    Ok(params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
}

struct CardQuery {
    paging: Paging,
    user_id: Option<String>,
    status: Option<CardStatus>,
}

impl CardQuery {
    fn parse(params: &[(String, String)]) -> Result<Self, ApiError> {
        let filter = json_filter(params)?;
        let status = match filter_text(&filter, params, "status")? {
            Some(status) => Some(
                serde_json::from_value(json!(status))
                    .map_err(|_| ApiError::validation(format!("Unknown card status: {status}")))?,
            ),
            None => None,
        };
        Ok(CardQuery {
            paging: paging(params, MAX_TAKE, MAX_TAKE)?,
            user_id: filter_text(&filter, params, "userId")?,
            status,
        })
    }

    fn matches(&self, card: &Card) -> bool {
        self.user_id.as_ref().is_none_or(|id| &card.user_id == id)
            && self.status.is_none_or(|s| card.status == s)
    }
}

/// A date comparison; dates compare by day only [T: "Filtering by Date
/// fields ignores time data and compares by date part only"].
#[derive(Debug, Clone, Copy)]
enum DayCmp {
    Equal,
    Gt,
    Gte,
    Lt,
    Lte,
}

struct ExpenseQuery {
    paging: Paging,
    user_id: Option<String>,
    created: Vec<(DayCmp, time::Date)>,
    newest_first: bool,
}

impl ExpenseQuery {
    fn parse(params: &[(String, String)]) -> Result<Self, ApiError> {
        let filter = json_filter(params)?;
        let mut created = Vec::new();
        match filter.get("createdAt") {
            None => {}
            Some(Value::String(day)) => created.push((DayCmp::Equal, parse_day_or_time(day)?)),
            Some(Value::Object(ops)) => {
                for (op, value) in ops {
                    let cmp = match op.as_str() {
                        "$equal" => DayCmp::Equal,
                        "$gt" => DayCmp::Gt,
                        "$gte" => DayCmp::Gte,
                        "$lt" => DayCmp::Lt,
                        "$lte" => DayCmp::Lte,
                        _ => {
                            return Err(ApiError::validation(format!(
                                "Unsupported createdAt operator: {op}"
                            )));
                        }
                    };
                    let text = value
                        .as_str()
                        .ok_or_else(|| ApiError::validation("createdAt takes a date string"))?;
                    created.push((cmp, parse_day_or_time(text)?));
                }
            }
            Some(_) => {
                return Err(ApiError::validation("createdAt takes a date string or an operator object"));
            }
        }
        let newest_first = match params.iter().find(|(n, _)| n == "$orderBy") {
            None => false,
            Some((_, text)) => {
                match serde_json::from_str::<Value>(text).ok().as_ref().and_then(|v| v.get("createdAt")) {
                    Some(Value::String(dir)) if dir == "desc" => true,
                    Some(Value::String(dir)) if dir == "asc" => false,
                    _ => return Err(ApiError::validation(format!("Unsupported $orderBy: {text}"))),
                }
            }
        };
        Ok(ExpenseQuery {
            paging: paging(params, MAX_TAKE, MAX_TAKE)?,
            user_id: filter_text(&filter, params, "userId")?,
            created,
            newest_first,
        })
    }

    fn matches(&self, expense: &Expense) -> bool {
        let day = OffsetDateTime::from_unix_timestamp(expense.created_at).map(|t| t.date());
        let Ok(day) = day else { return false };
        self.user_id.as_ref().is_none_or(|id| &expense.user_id == id)
            && self.created.iter().all(|(cmp, bound)| match cmp {
                DayCmp::Equal => day == *bound,
                DayCmp::Gt => day > *bound,
                DayCmp::Gte => day >= *bound,
                DayCmp::Lt => day < *bound,
                DayCmp::Lte => day <= *bound,
            })
    }
}

fn parse_day(text: &str) -> Option<time::Date> {
    time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

/// `YYYY-MM-DD` or RFC 3339; a time is reduced to its UTC day.
fn parse_day_or_time(text: &str) -> Result<time::Date, ApiError> {
    parse_day(text)
        .or_else(|| {
            OffsetDateTime::parse(text, &Rfc3339).ok().map(|t| t.to_offset(time::UtcOffset::UTC).date())
        })
        .ok_or_else(|| ApiError::validation(format!("Not a date: {text}")))
}

fn parse_member(body: &Value) -> Result<TeamMember, ApiError> {
    let member_id = body
        .get("memberId")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::validation("memberId is required"))?;
    let roles = body
        .get("roles")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::validation("roles must be an array"))?;
    let roles: Vec<String> = roles
        .iter()
        .map(|r| match r.as_str() {
            Some(role) if TEAM_ROLES.contains(&role) => Ok(role.to_owned()),
            _ => Err(ApiError::validation(format!("roles must be employee or manager; got {r}"))),
        })
        .collect::<Result<_, _>>()?;
    if roles.is_empty() {
        return Err(ApiError::validation("roles cannot be empty"));
    }
    Ok(TeamMember { member_id: member_id.to_owned(), roles })
}

/// RFC 3339 in UTC, as Payhawk's `createdAt` fields.
pub fn iso(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

/// The Swagger's `ICard` fields [T] plus `reassignable` [I].
fn card_json(card: &Card) -> Value {
    json!({
        "id": card.id, "userId": card.user_id, "name": card.name, "status": card.status,
        "currency": card.currency, "limit": card.limit, "isPhysical": card.is_physical,
        "createdAt": iso(card.created_at), "reassignable": card.reassignable
    })
}

/// A subset of the Swagger's `IExpense` [T]: the owner is `createdBy`.
fn expense_json(expense: &Expense, owner: Option<&User>) -> Value {
    let created_by = match owner {
        Some(u) => json!({
            "id": u.id, "email": u.email, "firstName": u.first_name, "lastName": u.last_name,
            "externalId": u.external_id
        }),
        None => json!({ "id": expense.user_id }),
    };
    json!({
        "id": expense.id, "title": expense.title, "note": expense.note,
        "createdAt": iso(expense.created_at), "createdBy": created_by,
        "document": { "date": expense.date },
        "reconciliation": { "currency": expense.currency, "totalAmount": expense.amount }
    })
}

fn team_json(team: &Team) -> Value {
    json!({ "id": team.id, "name": team.name, "externalId": team.external_id, "parentId": team.parent_id })
}

fn subscription_json(subscription: &Subscription) -> Value {
    json!({
        "id": subscription.id, "eventType": subscription.event_type,
        "callbackUrl": subscription.callback_url, "status": "active",
        "createdAt": iso(subscription.created_at)
    })
}

fn invoice_json(invoice: &Invoice) -> Value {
    json!({
        "id": invoice.id, "fields": invoice.fields, "contentType": invoice.content_type,
        "size": invoice.size, "createdAt": iso(invoice.created_at)
    })
}

// ---------------------------------------------------------------------------
// Webhooks

struct Job {
    event_id: String,
    event_type: String,
    url: String,
    body: String,
}

/// The RSA key deliveries are signed with, and its OpenSSH public form.
struct Signer {
    key: RsaKeyPair,
    openssh: String,
}

impl Signer {
    fn generate() -> Option<Signer> {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).ok()?;
        let public = key.public_key();
        let openssh = openssh_rsa(
            public.exponent().big_endian_without_leading_zero(),
            public.modulus().big_endian_without_leading_zero(),
        );
        Some(Signer { key, openssh })
    }

    /// base64 RSA PKCS#1 v1.5 SHA-256.
    fn sign(&self, data: &[u8]) -> Option<String> {
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), data, &mut signature).ok()?;
        Some(base64(&signature))
    }
}

/// `ssh-rsa <base64 of string "ssh-rsa", mpint e, mpint n> payhawk`.
fn openssh_rsa(e: &[u8], n: &[u8]) -> String {
    fn put(out: &mut Vec<u8>, bytes: &[u8], mpint: bool) {
        let pad = mpint && bytes.first().is_some_and(|b| b & 0x80 != 0);
        out.extend(((bytes.len() + usize::from(pad)) as u32).to_be_bytes());
        if pad {
            out.push(0);
        }
        out.extend(bytes);
    }
    let mut blob = Vec::new();
    put(&mut blob, b"ssh-rsa", false);
    put(&mut blob, e, true);
    put(&mut blob, n, true);
    format!("ssh-rsa {} payhawk", base64(&blob))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl PayhawkSim {
    /// Queues a delivery; one background task delivers in order.
    fn enqueue(&self, job: Job) {
        let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        let job = match outbox.as_ref() {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        // First event, or the runtime that ran the queue is gone: start one.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(event = job.event_type, "no Tokio runtime to deliver webhooks on; event dropped");
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        runtime.spawn(deliver_events(self.me.clone(), rx));
        let _ = tx.send(job);
        *outbox = Some(tx);
    }

    /// Tries a few times with doubling backoff; each attempt is recorded.
    async fn deliver(&self, job: &Job) {
        let mut backoff = WEBHOOK_FIRST_BACKOFF;
        for attempt in 1..=WEBHOOK_ATTEMPTS {
            let status = self.post_event(job).await;
            self.deliveries.lock().unwrap_or_else(PoisonError::into_inner).push(Delivery {
                event_id: job.event_id.clone(),
                event_type: job.event_type.clone(),
                url: job.url.clone(),
                attempt,
                status,
            });
            if status.is_some_and(|s| (200..300).contains(&s)) {
                return;
            }
            if attempt < WEBHOOK_ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        tracing::warn!(url = %job.url, "webhook not delivered after {WEBHOOK_ATTEMPTS} attempts");
    }

    /// Signs (fresh timestamp per attempt) and posts; the answer's status.
    async fn post_event(&self, job: &Job) -> Option<u16> {
        let mut request =
            self.http.post(&job.url).header(header::CONTENT_TYPE, "application/json").body(job.body.clone());
        let signed = match self.config.webhook_signing {
            WebhookSigning::Unsigned => None,
            WebhookSigning::Rsa => Some(job.url.clone()),
            WebhookSigning::RsaPath => reqwest::Url::parse(&job.url).ok().map(|url| match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_owned(),
            }),
        };
        if let Some(signed) = signed {
            let timestamp = format!("{}.000Z", iso(self.clock.now()).trim_end_matches('Z'));
            let data = format!("{timestamp}:{signed}:{}", job.body);
            if let Some(signature) = self.signer().and_then(|s| s.sign(data.as_bytes())) {
                request = request.header(TIMESTAMP_HEADER, timestamp).header(SIGNATURE_HEADER, signature);
            }
        }
        match request.send().await {
            Ok(response) => Some(response.status().as_u16()),
            Err(error) => {
                tracing::debug!(url = %job.url, %error, "webhook not delivered");
                None
            }
        }
    }
}

/// The delivery queue, in event order. Holds the simulator only weakly, so
/// it ends when the simulator is dropped.
async fn deliver_events(sim: Weak<PayhawkSim>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = jobs.recv().await {
        let Some(sim) = sim.upgrade() else { return };
        sim.deliver(&job).await;
    }
}

// ---------------------------------------------------------------------------
// The /_sim back door (JSON, no auth: the simulator binds to loopback)

type Sim = State<Arc<PayhawkSim>>;

fn found<T: Serialize>(value: Option<T>) -> Response {
    match value {
        Some(value) => Json(value).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn sim_add_account(State(sim): Sim, Json(seed): Json<AccountSeed>) -> StatusCode {
    sim.add_account(&seed.id, &seed.api_keys);
    StatusCode::NO_CONTENT
}

/// Every user, removed ones included.
async fn sim_users(State(sim): Sim, Path(account): Path<String>) -> Json<Vec<User>> {
    Json(sim.users(&account))
}

async fn sim_seed_user(State(sim): Sim, Path(account): Path<String>, Json(new): Json<NewUser>) -> Response {
    found(sim.seed_user(&account, new))
}

async fn sim_update_user(
    State(sim): Sim,
    Path((account, id)): Path<(String, String)>,
    Json(change): Json<UserChange>,
) -> Response {
    found(sim.update_user(&account, &id, change))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemoveParams {
    card_action: Option<String>,
}

async fn sim_remove_user(
    State(sim): Sim,
    Path((account, id)): Path<(String, String)>,
    Query(params): Query<RemoveParams>,
) -> StatusCode {
    let action = match params.card_action.as_deref().map(CardAction::parse) {
        None => sim.config.default_card_action,
        Some(Some(action)) => action,
        Some(None) => return StatusCode::BAD_REQUEST,
    };
    if sim.remove_user(&account, &id, action) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

async fn sim_accept(State(sim): Sim, Path((account, id)): Path<(String, String)>) -> Response {
    match sim.accept_invite(&account, &id) {
        true => found(sim.user(&account, &id)),
        false => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn sim_cards(State(sim): Sim, Path(account): Path<String>) -> Json<Vec<Card>> {
    Json(sim.cards(&account))
}

async fn sim_seed_card(State(sim): Sim, Path(account): Path<String>, Json(new): Json<NewCard>) -> Response {
    found(sim.seed_card(&account, new))
}

#[derive(Deserialize)]
struct CardStatusChange {
    status: CardStatus,
}

async fn sim_card_status(
    State(sim): Sim,
    Path((account, id)): Path<(String, String)>,
    Json(change): Json<CardStatusChange>,
) -> Response {
    found(sim.set_card_status(&account, &id, change.status))
}

async fn sim_expenses(State(sim): Sim, Path(account): Path<String>) -> Json<Vec<Expense>> {
    Json(sim.expenses(&account))
}

async fn sim_seed_expense(
    State(sim): Sim,
    Path(account): Path<String>,
    Json(new): Json<NewExpense>,
) -> Response {
    found(sim.seed_expense(&account, new))
}

async fn sim_teams(State(sim): Sim, Path(account): Path<String>) -> Json<Vec<Team>> {
    Json(sim.teams(&account))
}

async fn sim_seed_team(State(sim): Sim, Path(account): Path<String>, Json(new): Json<NewTeam>) -> Response {
    found(sim.seed_team(&account, new))
}

async fn sim_deliveries(State(sim): Sim) -> Json<Vec<Delivery>> {
    Json(sim.deliveries())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn openssh_keys_pad_mpints_with_the_high_bit_set() {
        let key = openssh_rsa(&[1, 0, 1], &[0x80, 1]);
        let blob = key.strip_prefix("ssh-rsa ").and_then(|k| k.strip_suffix(" payhawk")).unwrap();
        // string "ssh-rsa" (4+7), mpint e (4+3), mpint n padded (4+1+2).
        let expected =
            [&[0, 0, 0, 7][..], b"ssh-rsa", &[0, 0, 0, 3, 1, 0, 1], &[0, 0, 0, 3, 0, 0x80, 1]].concat();
        assert_eq!(blob, base64(&expected));
    }

    #[test]
    fn paging_caps_take_and_slices_past_the_end() {
        let params = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
        };
        let page = paging(&params(&[("$skip", "2"), ("$take", "5000")]), 1000, 10).unwrap();
        assert_eq!(page, Paging { skip: 2, take: 1000 });
        assert_eq!(paging(&params(&[]), 1000, 10).unwrap(), Paging { skip: 0, take: 10 });
        assert_eq!(paging(&params(&[("$take", "-1")]), 1000, 10).unwrap_err().status, 400);
        let all = [1, 2, 3];
        assert_eq!(Paging { skip: 2, take: 5 }.slice(&all), &[3]);
        assert!(Paging { skip: 9, take: 5 }.slice(&all).is_empty());
    }
}
