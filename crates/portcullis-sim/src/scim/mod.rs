//! A generic SCIM 2.0 server (RFC 7643 and 7644) under `/scim/v2`, with
//! dialect profiles that reproduce how real SCIM servers and the clients
//! they were built for bend the standard, as `../shared/spec/connectors.md`
//! §3, §2, §5 and §6 record it.
//!
//! Users and Groups support create, get, list and `.search` (filter,
//! paging, sorting, `attributes`/`excludedAttributes`), PUT, atomic PATCH,
//! DELETE, ETags and Bulk; the discovery endpoints advertise exactly the
//! switches that are on. A [`Profile`] picks the switches of [`Config`];
//! each one can also be set alone. Every request is answered under one
//! state lock, so a Bulk request or a PATCH applies as a unit.
//!
//! Another simulator can embed this one (TravelPerk serves its SCIM API
//! under `/scim` next to OAuth and a REST API): [`Config::base_path`] moves
//! the API, and [`ScimSim::serve_embedded`] answers a request whose caller
//! the embedding simulator has already authenticated its own way.
//!
//! Faults ([`FaultRule::operation`]) name operations `users.create`,
//! `users.get`, `users.list`, `users.search`, `users.replace`,
//! `users.patch`, `users.delete` (and `groups.*` alike), `search` (the root
//! `/.search`), `bulk` and `discovery`.
//!
//! Choices the RFCs leave open that no switch covers:
//! - ids are unique across resource types;
//! - a PUT keeps immutable values and the password when the client leaves
//!   them out (it cannot read the password back to resend it);
//! - deleting a user or group removes it from every group's members;
//! - `members[].value` must name an existing user or group;
//! - immutability is enforced per attribute, not inside the elements of a
//!   multi-valued one (replacing `members` replaces whole members);
//! - `sortBy` on an unknown attribute is refused (400 `invalidValue`), and
//!   `sortBy` is ignored when sorting is switched off;
//! - a filter may put a sub-attribute comparison after a value path
//!   (`emails[type eq "work"].value eq "x"`), as Entra sends it [T].

mod bulk;
mod discovery;
mod filter;
mod patch;
mod resources;
pub mod schema;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::common::{self, Clock, Fault, Faults, LoggedRequest, RequestLog, Running, WindowLimiter};
use resources::{Change, ListQuery, Projection, Store};
use schema::Model;

/// Where the API lives on the simulator by default ([`Config::base_path`]).
pub const BASE_PATH: &str = "/scim/v2";
/// The bearer token accepted by default.
pub const DEFAULT_TOKEN: &str = "scim-portcullis-token";
/// Large Bulk requests must reach the `maxPayloadSize` check (413) rather
/// than axum's 2 MB default.
const BODY_LIMIT: usize = 64 << 20;
/// The detail AWS answers when a PATCH changes too many members [T].
const AWS_UNPARSABLE: &str = "Request is unparsable, syntactically incorrect, or violates schema.";

// ---------------------------------------------------------------------------
// Configuration

/// A dialect: a preset of [`Config`] switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Everything per RFC 7643/7644: patch, bulk, etag, filter and sort are
    /// advertised and on; malformed requests are refused.
    StrictRfc,
    /// Accepts what Microsoft Entra sends (§5 "Microsoft Entra as a SCIM
    /// client").
    EntraTolerant,
    /// Accepts what Okta sends (§5 "Okta as a SCIM client").
    OktaTolerant,
    /// AWS IAM Identity Center's limits.
    AwsIdentityCenter,
    /// Stripe's Dashboard team members (§3 "Stripe SCIM").
    StripeDashboard,
    /// TravelPerk's SCIM schema rules (§2). TravelPerk's own host layout
    /// (`/scim`, `Api-Version`, `ApiKey` auth) belongs to the TravelPerk
    /// simulator, which embeds this profile; alone it serves under
    /// `/scim/v2` with Bearer auth.
    TravelPerk,
}

impl Profile {
    pub const ALL: [Profile; 6] = [
        Profile::StrictRfc,
        Profile::EntraTolerant,
        Profile::OktaTolerant,
        Profile::AwsIdentityCenter,
        Profile::StripeDashboard,
        Profile::TravelPerk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Profile::StrictRfc => "strict-rfc",
            Profile::EntraTolerant => "entra-tolerant",
            Profile::OktaTolerant => "okta-tolerant",
            Profile::AwsIdentityCenter => "aws-identity-center",
            Profile::StripeDashboard => "stripe-dashboard",
            Profile::TravelPerk => "travelperk",
        }
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Profile::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<_> = Profile::ALL.iter().map(|p| p.name()).collect();
            format!("unknown SCIM profile `{s}` ({})", names.join(", "))
        })
    }
}

/// Which attributes the schemas hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeSet {
    /// RFC 7643's User and Group plus the Enterprise User extension.
    Rfc,
    /// Only `id`, `userName`, `displayName`, `active` and `meta` [D].
    StripeDashboard,
    /// TravelPerk's core subset, `costCenter`/`manager` and the TravelPerk
    /// extension [T].
    TravelPerk,
}

/// Bulk limits advertised in `/ServiceProviderConfig` and enforced (413).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkLimits {
    pub max_operations: usize,
    pub max_payload_size: usize,
}

/// Which filters are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterSupport {
    /// The whole RFC 7644 §3.4.2.2 grammar.
    Full,
    /// Only one `attr eq "value"` on one of these attributes; anything else
    /// is 400 `invalidFilter`.
    Equality(Vec<String>),
}

/// A per-token sliding window: at most `requests` per `per_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub requests: usize,
    pub per_secs: u64,
}

/// How the server behaves. [`Config::default`] is the `strict-rfc` profile.
/// Marks follow the spec: [D] documented by the vendor or the RFCs, [T]
/// third-party evidence, [I] inferred.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seeds the generated ids; numeric ids count up from it (at least 1).
    pub seed: u64,
    /// Accepted `Authorization: Bearer` tokens; anything else is 401.
    /// Unused when an embedding simulator authenticates
    /// ([`ScimSim::serve_embedded`]).
    pub tokens: Vec<String>,
    /// Where the API is served: [`BASE_PATH`] by default; TravelPerk's is
    /// `/scim` [T].
    pub base_path: String,
    /// Further prefixes the same API answers under, such as TravelPerk's
    /// legacy `/api/v2/scim` [T].
    pub extra_base_paths: Vec<String>,
    /// The base URL in `meta.location` and `Location`; by default
    /// `http://<bound address><base_path>`.
    pub base_url: Option<String>,
    pub attributes: AttributeSet,
    /// Whether `/Groups` is served. TravelPerk documents only `/Users` [T].
    pub groups: bool,

    // Capabilities: advertised in /ServiceProviderConfig exactly as set.
    /// PATCH; off answers 501 [D RFC 7644 §3.12].
    pub patch: bool,
    /// `/Bulk`; None answers 501. On only in strict-rfc, entra- and
    /// okta-tolerant: AWS has no Bulk [I], and Stripe documents only the
    /// per-resource operations [D].
    pub bulk: Option<BulkLimits>,
    /// `meta.version`, `ETag`, `If-Match` (412) and `If-None-Match` (304).
    /// Off for AWS, Stripe and TravelPerk, which document none [I].
    pub etag: bool,
    /// `sortBy`/`sortOrder`. Off for AWS, Stripe and TravelPerk [I].
    pub sort: bool,
    /// Whether `password` exists and can be set. Off for AWS [I].
    pub change_password: bool,
    /// AWS accepts only `eq` on a few attributes [I: the brief, not in the spec].
    pub filter: FilterSupport,
    /// A filter on `emails.value` (or `emails`) compares `userName`.
    /// TravelPerk's schema has no `emails` and its userName is the email
    /// [T], yet the spec (§6) asks for `emails.value eq` [I].
    pub emails_filter_on_user_name: bool,
    /// `filter.maxResults`: the largest page, also the page size when the
    /// client sends no `count`. TravelPerk: 100 [I, spec §6].
    pub max_results: usize,
    /// Answer 400 `tooMany` when a query matches more than this [D RFC
    /// 7644 §3.12]; None never does.
    pub too_many_above: Option<usize>,
    /// Serve at most this many resources per page whatever `count` says:
    /// some servers do, and clients must not trust `count` [D spec §7].
    pub short_pages: Option<usize>,

    // Strictness about what clients send.
    /// Bodies must list their schema URN in `schemas` (400 `invalidSyntax`
    /// otherwise) [D RFC]. On only in strict-rfc and aws-identity-center [I].
    pub require_schemas: bool,
    /// Unknown attributes are 400 (`invalidSyntax`, `invalidPath` in PATCH)
    /// instead of being dropped. On only in strict-rfc and
    /// aws-identity-center [I]; Stripe drops what it does not keep [D].
    pub reject_unknown_attributes: bool,
    /// PATCH add/replace without `path` (a resource fragment in `value`).
    /// RFC 7644 allows it and Okta deactivates this way [T]; turn it off to
    /// reproduce servers that break on Okta [T, spec §9].
    pub pathless_patch: bool,

    // Entra's PATCH dialect [D, Microsoft's compatibility page, spec §5].
    /// `"op": "Replace"`, `"Add"`, `"Remove"`.
    pub case_insensitive_ops: bool,
    /// `"True"`/`"False"` for booleans.
    pub string_booleans: bool,
    /// Path-less values with keys such as `name.givenName` or
    /// `urn:…:enterprise:2.0:User:employeeNumber`.
    pub dotted_pathless_keys: bool,
    /// add/replace on a filtered path that matches nothing creates the
    /// element (`emails[type eq "work"].value`); RFC answers `noTarget`.
    pub add_creates_filtered_element: bool,
    /// remove with `path: "members"` and a `value` list removes just those
    /// values; the RFC reading removes all members [I: Microsoft's request
    /// examples, not in the spec].
    pub remove_by_value: bool,
    /// remove on a filter that matches nothing succeeds instead of 400
    /// `noTarget`, so a repeated Group Push removal does not fail. Off only
    /// in strict-rfc and aws-identity-center [I].
    pub lenient_remove: bool,

    // Vendor rules.
    /// At most this many member changes per Group PATCH, else 400 "Request
    /// is unparsable…". AWS: 100 [T, spec §6 and idp-scim-sync #62].
    pub max_patch_member_changes: Option<usize>,
    /// `userName` cannot change (400 `mutability`). Stripe [D].
    pub immutable_user_name: bool,
    /// Group `displayName` cannot change (400 `mutability`). Stripe [D].
    pub immutable_group_name: bool,
    /// A PUT or PATCH that leaves a user `active: false` deletes it. Stripe [D].
    pub deactivate_deletes: bool,
    /// DELETE keeps the user with `active: false` instead of removing it.
    /// TravelPerk's DELETE semantics are undocumented [I]; off (hard delete).
    pub delete_deactivates: bool,
    /// Numeric string ids ("29"), as TravelPerk's [T].
    pub numeric_ids: bool,
    /// `manager.value` must name an existing user. TravelPerk [D, Entra tutorial].
    pub manager_must_exist: bool,
    /// TravelPerk's travel policies and invoice profiles, which
    /// `travelPolicy` and `invoiceProfiles[].value` must name [I, spec §6]:
    /// the ones that exist at start and after a reset (the back door adds
    /// and removes more).
    pub travel_policies: Vec<String>,
    pub invoice_profiles: Vec<String>,
    /// Off by default: the spec gives no SCIM numbers.
    pub rate_limit: Option<RateLimit>,
}

impl Default for Config {
    fn default() -> Self {
        Config::profile(Profile::StrictRfc)
    }
}

impl Config {
    /// The switches of a profile. Relative to strict-rfc:
    /// - okta-tolerant: `schemas` not required, unknown attributes dropped,
    ///   unmatched removes succeed [I];
    /// - entra-tolerant: the same, plus Entra's PATCH dialect [D];
    /// - aws-identity-center: no Bulk, ETags, sorting or password, `eq`-only
    ///   filters [I]; at most 100 member changes per PATCH [T];
    /// - stripe-dashboard: tolerant and without Bulk, ETags, sorting or
    ///   password [I]; five attributes, immutable userName and group name,
    ///   inactive means deleted [D];
    /// - travelperk: tolerant and without Bulk, ETags, sorting or password
    ///   [I]; TravelPerk's schema, numeric ids and no Groups [T]; managers
    ///   must exist [D]; pages of at most 100, and only `userName`,
    ///   `externalId` and `emails.value` (on userName) `eq` filters [I,
    ///   spec §6].
    pub fn profile(profile: Profile) -> Config {
        let strict = Config {
            seed: 1,
            tokens: vec![DEFAULT_TOKEN.into()],
            base_path: BASE_PATH.into(),
            extra_base_paths: Vec::new(),
            base_url: None,
            attributes: AttributeSet::Rfc,
            groups: true,
            patch: true,
            bulk: Some(BulkLimits { max_operations: 1000, max_payload_size: 1 << 20 }),
            etag: true,
            sort: true,
            change_password: true,
            filter: FilterSupport::Full,
            emails_filter_on_user_name: false,
            max_results: 1000,
            too_many_above: None,
            short_pages: None,
            require_schemas: true,
            reject_unknown_attributes: true,
            pathless_patch: true,
            case_insensitive_ops: false,
            string_booleans: false,
            dotted_pathless_keys: false,
            add_creates_filtered_element: false,
            remove_by_value: false,
            lenient_remove: false,
            max_patch_member_changes: None,
            immutable_user_name: false,
            immutable_group_name: false,
            deactivate_deletes: false,
            delete_deactivates: false,
            numeric_ids: false,
            manager_must_exist: false,
            travel_policies: Vec::new(),
            invoice_profiles: Vec::new(),
            rate_limit: None,
        };
        let tolerant = Config {
            require_schemas: false,
            reject_unknown_attributes: false,
            lenient_remove: true,
            ..strict.clone()
        };
        let vendor =
            Config { bulk: None, etag: false, sort: false, change_password: false, ..tolerant.clone() };
        match profile {
            Profile::StrictRfc => strict,
            Profile::OktaTolerant => tolerant,
            Profile::EntraTolerant => Config {
                case_insensitive_ops: true,
                string_booleans: true,
                dotted_pathless_keys: true,
                add_creates_filtered_element: true,
                remove_by_value: true,
                ..tolerant
            },
            Profile::AwsIdentityCenter => Config {
                filter: FilterSupport::Equality(
                    ["userName", "externalId", "displayName", "id"].map(String::from).to_vec(),
                ),
                max_patch_member_changes: Some(100),
                require_schemas: true,
                reject_unknown_attributes: true,
                lenient_remove: false,
                ..vendor
            },
            Profile::StripeDashboard => Config {
                attributes: AttributeSet::StripeDashboard,
                immutable_user_name: true,
                immutable_group_name: true,
                deactivate_deletes: true,
                ..vendor
            },
            Profile::TravelPerk => Config {
                attributes: AttributeSet::TravelPerk,
                filter: FilterSupport::Equality(
                    ["userName", "externalId", "emails.value"].map(String::from).to_vec(),
                ),
                emails_filter_on_user_name: true,
                groups: false,
                numeric_ids: true,
                manager_must_exist: true,
                max_results: 100,
                travel_policies: vec!["Standard".into()],
                invoice_profiles: vec!["Main".into()],
                ..vendor
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Errors

/// A SCIM error (RFC 7644 §3.12): answered as
/// `{"schemas":[Error],"status":"400","scimType":…,"detail":…}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError { status, scim_type, detail: detail.into() }
    }

    fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type), detail)
    }

    fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::bad("invalidSyntax", detail)
    }

    fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad("invalidValue", detail)
    }

    fn invalid_path(detail: impl Into<String>) -> Self {
        Self::bad("invalidPath", detail)
    }

    fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::bad("invalidFilter", detail)
    }

    fn mutability(detail: impl Into<String>) -> Self {
        Self::bad("mutability", detail)
    }

    fn not_found(what: impl fmt::Display) -> Self {
        Self::new(404, None, format!("Resource {what} not found."))
    }

    pub fn to_json(&self) -> Value {
        let mut body =
            json!({"schemas": [schema::ERROR], "status": self.status.to_string(), "detail": self.detail});
        if let Some(scim_type) = self.scim_type {
            body["scimType"] = json!(scim_type);
        }
        body
    }
}

impl fmt::Display for ScimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.scim_type.unwrap_or("-"), self.detail)
    }
}

impl std::error::Error for ScimError {}

// ---------------------------------------------------------------------------
// The simulator

/// A resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }

    /// `Users` or `Groups`.
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }

    /// The fault and log name of an operation, e.g. `users.create`.
    fn operation(self, verb: &str) -> String {
        format!("{}.{verb}", self.endpoint().to_ascii_lowercase())
    }
}

/// The SCIM server, shared as `Arc<ScimSim>`.
pub struct ScimSim {
    config: Config,
    model: Model,
    state: Mutex<Store>,
    base: Mutex<String>,
    log: RequestLog,
    faults: Faults,
    clock: Clock,
    limiter: Option<WindowLimiter>,
}

impl ScimSim {
    pub fn new(config: Config) -> Arc<Self> {
        let limiter =
            config.rate_limit.map(|l| WindowLimiter::new(&[(Duration::from_secs(l.per_secs), l.requests)]));
        let base = config.base_url.clone().unwrap_or_else(|| format!("http://localhost{}", config.base_path));
        Arc::new(ScimSim {
            model: Model::new(&config),
            state: Mutex::new(Store::new(&config)),
            base: Mutex::new(base.trim_end_matches('/').to_owned()),
            log: RequestLog::default(),
            faults: Faults::default(),
            clock: Clock::default(),
            limiter,
            config,
        })
    }

    /// Serves on `127.0.0.1:port` (0 picks a free port).
    pub async fn start(config: Config, port: u16) -> std::io::Result<(Arc<Self>, Running)> {
        let sim = Self::new(config);
        let running = common::serve(sim.router(), port).await?;
        if sim.config.base_url.is_none() {
            sim.set_base_url(&format!("{}{}", running.base_url(), sim.config.base_path));
        }
        Ok((sim, running))
    }

    /// The SCIM API under [`Config::base_path`] plus the `/_sim` back door.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .merge(common::back_door::<ScimSim>())
            .route("/_sim/{endpoint}", get(sim_list).post(sim_seed))
            .route("/_sim/{endpoint}/{id}", axum::routing::patch(sim_change).delete(sim_remove))
            .fallback(api)
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(self.clone())
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

    /// The base URL resources are located under.
    pub fn base_url(&self) -> String {
        self.base.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Sets the base URL once the address is known, for an embedding
    /// simulator that binds its own listener.
    pub fn set_base_url(&self, url: &str) {
        *self.base.lock().unwrap_or_else(PoisonError::into_inner) = url.trim_end_matches('/').to_owned();
    }

    /// The travel policies `travelPolicy` may name, sorted.
    pub fn travel_policies(&self) -> Vec<String> {
        self.state().travel_policies.iter().cloned().collect()
    }

    /// Creates a travel policy out of band; false if it already existed.
    pub fn add_travel_policy(&self, name: &str) -> bool {
        self.state().travel_policies.insert(name.to_owned())
    }

    /// Deletes a travel policy out of band (users naming it keep the name,
    /// as drift); false if there was none.
    pub fn remove_travel_policy(&self, name: &str) -> bool {
        self.state().travel_policies.remove(name)
    }

    /// The invoice profiles `invoiceProfiles[].value` may name, sorted.
    pub fn invoice_profiles(&self) -> Vec<String> {
        self.state().invoice_profiles.iter().cloned().collect()
    }

    /// Creates an invoice profile out of band; false if it already existed.
    pub fn add_invoice_profile(&self, name: &str) -> bool {
        self.state().invoice_profiles.insert(name.to_owned())
    }

    /// Deletes an invoice profile out of band; false if there was none.
    pub fn remove_invoice_profile(&self, name: &str) -> bool {
        self.state().invoice_profiles.remove(name)
    }

    /// Creates a resource out of band (as an admin in the app's UI would):
    /// no schemas needed, unknown attributes dropped, uniqueness enforced.
    pub fn seed(&self, kind: Kind, resource: &Value) -> Result<Value, ScimError> {
        let mut st = self.state();
        self.served(kind)?;
        let id = self.create(&mut st, kind, resource, false)?;
        Ok(self.full(&st, &id))
    }

    /// Changes attributes out of band: each key of `changes` replaces that
    /// attribute, `null` removes it. Mutability rules do not apply.
    pub fn change(&self, kind: Kind, id: &str, changes: &Value) -> Result<Value, ScimError> {
        let mut st = self.state();
        self.served(kind)?;
        self.change_out_of_band(&mut st, kind, id, changes)?;
        Ok(self.full(&st, id))
    }

    /// Deletes out of band; false if there was no such resource.
    pub fn remove(&self, kind: Kind, id: &str) -> bool {
        let mut st = self.state();
        let found = st.get(kind, id).is_some();
        if found {
            self.delete_now(&mut st, id);
        }
        found
    }

    /// Every resource of `kind` as GET would show it, oldest first.
    pub fn resources(&self, kind: Kind) -> Vec<Value> {
        let st = self.state();
        st.iter(kind).map(|r| Value::Object(self.render(&st, r))).collect()
    }

    pub fn resource(&self, kind: Kind, id: &str) -> Option<Value> {
        let st = self.state();
        st.get(kind, id).map(|r| Value::Object(self.render(&st, r)))
    }

    /// Forgets every resource, the log, faults and rate-limit history,
    /// restores the configured travel policies and invoice profiles, and
    /// restarts the id sequence (the clock keeps its offset).
    pub fn reset(&self) {
        *self.state() = Store::new(&self.config);
        self.log.clear();
        self.faults.clear();
        if let Some(limiter) = &self.limiter {
            limiter.clear();
        }
    }

    fn state(&self) -> MutexGuard<'_, Store> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn served(&self, kind: Kind) -> Result<(), ScimError> {
        match self.model.core(kind) {
            Some(_) => Ok(()),
            None => Err(ScimError::not_found(format!("type {}", kind.endpoint()))),
        }
    }

    fn full(&self, st: &Store, id: &str) -> Value {
        st.by_id(id).map(|r| Value::Object(self.render(st, r))).unwrap_or(Value::Null)
    }
}

// ---------------------------------------------------------------------------
// The API

/// An embedding simulator's verdict that a request may not proceed: a SCIM
/// error, plus headers such as `Retry-After` or `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub error: ScimError,
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    pub fn new(error: ScimError) -> Self {
        Refusal { error, headers: Vec::new() }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// Who decides whether a caller may use the API.
enum Gate {
    /// This simulator: its Bearer tokens and its rate limit.
    Own,
    /// An embedding simulator, which has already decided.
    Decided(Result<(), Refusal>),
}

impl ScimSim {
    /// Answers a request for a simulator that embeds this one and
    /// authenticates callers itself: `admission` replaces the Bearer-token
    /// and rate-limit checks. Routing (under [`Config::base_path`]), faults,
    /// the work and the request log are as for [`ScimSim::router`], so a
    /// refused request is logged too.
    pub async fn serve_embedded(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
        admission: Result<(), Refusal>,
    ) -> Response {
        respond(self, method, uri, headers, body, Gate::Decided(admission)).await
    }

    /// Whether `path` is under the API's base path (or an extra one).
    pub fn serves(&self, path: &str) -> bool {
        self.base_paths().any(|base| under(path, base).is_some())
    }

    fn base_paths(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.config.base_path.as_str())
            .chain(self.config.extra_base_paths.iter().map(String::as_str))
    }
}

/// Every request outside `/_sim`.
async fn api(
    State(sim): State<Arc<ScimSim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(&sim, method, uri, headers, body, Gate::Own).await
}

/// Answers synchronously, logs, and (for a `TimeoutAfterCommit` fault)
/// withholds the answer after the change is committed.
async fn respond(
    sim: &ScimSim,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    gate: Gate,
) -> Response {
    let request =
        Request { method: &method, path: uri.path(), query: uri.query(), headers: &headers, body: &body };
    let (answer, fault) = sim.handle(&request, gate);
    let hold = match &fault {
        Some(Fault::TimeoutAfterCommit { secs }) => Some(Duration::from_secs(*secs)),
        _ => None,
    };
    let entry = LoggedRequest::new(method.as_str(), &uri, &headers, &body);
    sim.log.record(entry, answer.status, fault.as_ref().map(Fault::label), hold).await;
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

    /// The value of a query parameter; names are case-insensitive.
    fn param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.unwrap_or("").as_bytes())
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.into_owned())
    }

    fn json(&self) -> Result<Value, ScimError> {
        serde_json::from_slice(self.body)
            .map_err(|e| ScimError::invalid_syntax(format!("The body is not JSON: {e}.")))
    }
}

/// A response before it becomes HTTP.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Option<Value>,
    /// A proxy's HTML page instead of SCIM.
    html: bool,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Self {
        Answer { status, body: Some(body), html: false, headers: Vec::new() }
    }

    fn empty(status: u16) -> Self {
        Answer { status, body: None, html: false, headers: Vec::new() }
    }

    fn error(error: &ScimError) -> Self {
        Answer::json(error.status, error.to_json())
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = match (&self.body, self.html) {
            (_, true) => (status, [(header::CONTENT_TYPE, "text/html")], Fault::PROXY_PAGE).into_response(),
            (Some(body), false) => {
                let content_type = [(header::CONTENT_TYPE, "application/scim+json; charset=utf-8")];
                (status, content_type, body.to_string()).into_response()
            }
            (None, false) => status.into_response(),
        };
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// Where a request goes under the base path.
enum Route {
    ServiceProviderConfig,
    ResourceTypes(Option<String>),
    Schemas(Option<String>),
    Collection(Kind),
    Search(Option<Kind>),
    Resource(Kind, String),
    Bulk,
    Me,
}

/// The rest of `path` after `base` (empty or starting with `/`).
fn under<'p>(path: &'p str, base: &str) -> Option<&'p str> {
    let base = base.trim_end_matches('/');
    path.strip_prefix(base).filter(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn route(path: &str, base: &str) -> Option<Route> {
    let rest = under(path, base)?;
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let kind = |name: &str| match name {
        "Users" => Some(Kind::User),
        "Groups" => Some(Kind::Group),
        _ => None,
    };
    Some(match segments.as_slice() {
        ["ServiceProviderConfig"] => Route::ServiceProviderConfig,
        ["ResourceTypes"] => Route::ResourceTypes(None),
        ["ResourceTypes", id] => Route::ResourceTypes(Some(percent_decoded(id)?)),
        ["Schemas"] => Route::Schemas(None),
        ["Schemas", id] => Route::Schemas(Some(percent_decoded(id)?)),
        [".search"] => Route::Search(None),
        ["Bulk"] => Route::Bulk,
        ["Me", ..] => Route::Me,
        [name] => Route::Collection(kind(name)?),
        [name, ".search"] => Route::Search(Some(kind(name)?)),
        [name, id] if !id.is_empty() => Route::Resource(kind(name)?, percent_decoded(id)?),
        _ => return None,
    })
}

/// A path segment with `%XX` escapes decoded; None if not UTF-8.
fn percent_decoded(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%').then(|| segment.get(i + 1..i + 3)).flatten();
        match escaped.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A routed request, ready to execute.
enum Call {
    ServiceProviderConfig,
    ResourceTypes(Option<String>),
    Schemas(Option<String>),
    Create(Kind),
    Get(Kind, String),
    List(Kind),
    Search(Option<Kind>),
    Replace(Kind, String),
    Patch(Kind, String),
    Delete(Kind, String),
    Bulk,
}

impl ScimSim {
    fn handle(&self, req: &Request, gate: Gate) -> (Answer, Option<Fault>) {
        match self.admit(req, gate) {
            Ok((operation, call)) => {
                let fault = self.faults.take(&operation);
                (self.answer(req, call, fault.as_ref()), fault)
            }
            Err(answer) => (answer, None),
        }
    }

    /// Auth, rate limit and routing: the checks before any fault or work.
    fn admit(&self, req: &Request, gate: Gate) -> Result<(String, Call), Answer> {
        match gate {
            Gate::Own => self.authenticate(req)?,
            Gate::Decided(Ok(())) => {}
            Gate::Decided(Err(refusal)) => {
                let mut answer = Answer::error(&refusal.error);
                answer.headers.extend(refusal.headers);
                return Err(answer);
            }
        }
        let not_found = || Answer::error(&ScimError::new(404, None, format!("No endpoint at {}.", req.path)));
        let route = self.base_paths().find_map(|base| route(req.path, base)).ok_or_else(not_found)?;
        self.dispatch(req, route)
    }

    /// The Bearer token and this simulator's rate limit.
    fn authenticate(&self, req: &Request) -> Result<(), Answer> {
        let token = req
            .header("authorization")
            .and_then(|a| a.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| self.config.tokens.iter().any(|t| t == token));
        let Some(token) = token else {
            let error = ScimError::new(
                401,
                None,
                "Authorization failure. The authorization header is invalid or missing.",
            );
            return Err(Answer::error(&error).header("www-authenticate", "Bearer realm=\"scim\""));
        };
        if let Some(limiter) = &self.limiter
            && let Err(wait) = limiter.check(token)
        {
            let error = ScimError::new(429, None, "Too many requests.");
            return Err(Answer::error(&error).header("retry-after", wait.as_secs().max(1).to_string()));
        }
        Ok(())
    }

    /// Routes an admitted request to its operation.
    fn dispatch(&self, req: &Request, route: Route) -> Result<(String, Call), Answer> {
        let not_found = || Answer::error(&ScimError::new(404, None, format!("No endpoint at {}.", req.path)));
        let method = req.method.as_str();
        let not_allowed = || {
            let error = ScimError::new(405, None, format!("{method} is not allowed on {}.", req.path));
            Answer::error(&error)
        };
        let served = |kind: Kind| self.model.core(kind).map(|_| kind).ok_or_else(not_found);
        let discovery = |call: Call| {
            if method == "GET" { Ok(("discovery".to_owned(), call)) } else { Err(not_allowed()) }
        };
        match route {
            Route::ServiceProviderConfig => discovery(Call::ServiceProviderConfig),
            Route::ResourceTypes(id) => discovery(Call::ResourceTypes(id)),
            Route::Schemas(id) => discovery(Call::Schemas(id)),
            Route::Me => Err(Answer::error(&ScimError::new(501, None, "/Me is not supported."))),
            Route::Bulk if method == "POST" => Ok(("bulk".into(), Call::Bulk)),
            Route::Search(None) if method == "POST" => Ok(("search".into(), Call::Search(None))),
            Route::Search(Some(kind)) if method == "POST" => {
                let kind = served(kind)?;
                Ok((kind.operation("search"), Call::Search(Some(kind))))
            }
            Route::Collection(kind) => {
                let kind = served(kind)?;
                match method {
                    "GET" => Ok((kind.operation("list"), Call::List(kind))),
                    "POST" => Ok((kind.operation("create"), Call::Create(kind))),
                    _ => Err(not_allowed()),
                }
            }
            Route::Resource(kind, id) => {
                let kind = served(kind)?;
                let call = match method {
                    "GET" => (kind.operation("get"), Call::Get(kind, id)),
                    "PUT" => (kind.operation("replace"), Call::Replace(kind, id)),
                    "PATCH" if self.config.patch => (kind.operation("patch"), Call::Patch(kind, id)),
                    "PATCH" => {
                        return Err(Answer::error(&ScimError::new(501, None, "PATCH is not supported.")));
                    }
                    "DELETE" => (kind.operation("delete"), Call::Delete(kind, id)),
                    _ => return Err(not_allowed()),
                };
                Ok(call)
            }
            Route::Bulk | Route::Search(_) => Err(not_allowed()),
        }
    }

    /// The injected fault's answer, or the call's.
    fn answer(&self, req: &Request, call: Call, fault: Option<&Fault>) -> Answer {
        match fault {
            Some(Fault::RateLimited { retry_after }) => {
                let answer = Answer::error(&ScimError::new(429, None, "Too many requests."));
                match retry_after {
                    Some(secs) => answer.header("retry-after", secs.to_string()),
                    None => answer,
                }
            }
            Some(Fault::ServerError { status }) => {
                Answer::error(&ScimError::new(*status, None, "The service is temporarily unavailable."))
            }
            Some(Fault::InBand { code, message }) => {
                // A numeric code is a bare status; a word is a scimType.
                let detail = message.clone().unwrap_or_else(|| format!("Simulated error: {code}."));
                let error = match code.parse::<u16>() {
                    Ok(status) => ScimError::new(status, None, detail),
                    Err(_) => {
                        let status = if code == "uniqueness" { 409 } else { 400 };
                        ScimError::new(status, Some(scim_type(code)), detail)
                    }
                };
                Answer::error(&error)
            }
            Some(Fault::Malformed { status }) => Answer { html: true, ..Answer::empty(*status) },
            Some(Fault::TimeoutAfterCommit { .. }) | None => {
                let mut st = self.state();
                self.execute(&mut st, req, call).unwrap_or_else(|e| Answer::error(&e))
            }
        }
    }

    fn execute(&self, st: &mut Store, req: &Request, call: Call) -> Result<Answer, ScimError> {
        let projection = || Projection::from_params(req.param("attributes"), req.param("excludedAttributes"));
        let if_match = req.header("if-match");
        Ok(match call {
            Call::ServiceProviderConfig => Answer::json(200, self.service_provider_config()),
            Call::ResourceTypes(id) => self.resource_types(req.param("filter").is_some(), id.as_deref())?,
            Call::Schemas(id) => self.schemas(req.param("filter").is_some(), id.as_deref())?,
            Call::Create(kind) => {
                let projection = projection()?;
                let id = self.create(st, kind, &req.json()?, true)?;
                let answer = self.present(st, &id, 201, &projection);
                let location = format!("{}/{}/{id}", self.base_url(), kind.endpoint());
                answer.header("location", location)
            }
            Call::Get(kind, id) => {
                let projection = projection()?;
                let stored = st.get(kind, &id).ok_or_else(|| ScimError::not_found(&id))?;
                let current = resources::etag(stored.version);
                if self.config.etag
                    && req.header("if-none-match").is_some_and(|h| resources::etag_matches(h, &current))
                {
                    return Ok(Answer::empty(304).header("etag", current));
                }
                self.present(st, &id, 200, &projection)
            }
            Call::List(kind) => {
                let query = ListQuery::from_params(|name| req.param(name))?;
                Answer::json(200, self.list(st, &[kind], &query)?)
            }
            Call::Search(kind) => {
                let query = ListQuery::from_search(&req.json()?, self.config.require_schemas)?;
                let kinds: Vec<Kind> = match kind {
                    Some(kind) => vec![kind],
                    None => [Kind::User, Kind::Group]
                        .into_iter()
                        .filter(|k| self.model.core(*k).is_some())
                        .collect(),
                };
                Answer::json(200, self.list(st, &kinds, &query)?)
            }
            Call::Replace(kind, id) => {
                let projection = projection()?;
                match self.replace(st, kind, &id, &req.json()?, if_match, true)? {
                    Change::Kept => self.present(st, &id, 200, &projection),
                    Change::Deleted => Answer::empty(204),
                }
            }
            Call::Patch(kind, id) => {
                let projection = projection()?;
                match self.patch(st, kind, &id, &req.json()?, if_match, true)? {
                    Change::Kept => self.present(st, &id, 200, &projection),
                    Change::Deleted => Answer::empty(204),
                }
            }
            Call::Delete(kind, id) => {
                self.delete(st, kind, &id, if_match)?;
                Answer::empty(204)
            }
            Call::Bulk => self.bulk(st, req.body)?,
        })
    }

    /// One resource as the client asked to see it, with its ETag.
    fn present(&self, st: &Store, id: &str, status: u16, projection: &Projection) -> Answer {
        let Some(stored) = st.by_id(id) else { return Answer::error(&ScimError::not_found(id)) };
        let body = self.project(stored.kind, self.render(st, stored), projection);
        let answer = Answer::json(status, body);
        if self.config.etag { answer.header("etag", resources::etag(stored.version)) } else { answer }
    }
}

/// The RFC 7644 scimType a fault code names (unknown codes pass through
/// as `invalidValue`).
fn scim_type(code: &str) -> &'static str {
    const TYPES: [&str; 10] = [
        "invalidFilter",
        "tooMany",
        "uniqueness",
        "mutability",
        "invalidSyntax",
        "invalidPath",
        "noTarget",
        "invalidValue",
        "invalidVers",
        "sensitive",
    ];
    TYPES.into_iter().find(|t| *t == code).unwrap_or("invalidValue")
}

// ---------------------------------------------------------------------------
// The /_sim back door (JSON, no auth: the simulator binds to loopback)

type Sim = State<Arc<ScimSim>>;

fn kind_of(endpoint: &str) -> Option<Kind> {
    match endpoint {
        "users" => Some(Kind::User),
        "groups" => Some(Kind::Group),
        _ => None,
    }
}

fn sim_error(error: ScimError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(error.to_json())).into_response()
}

/// `GET /_sim/users` or `/_sim/groups`: everything, oldest first.
async fn sim_list(State(sim): Sim, Path(endpoint): Path<String>) -> Response {
    match kind_of(&endpoint) {
        Some(kind) => Json(sim.resources(kind)).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn sim_seed(State(sim): Sim, Path(endpoint): Path<String>, Json(body): Json<Value>) -> Response {
    let Some(kind) = kind_of(&endpoint) else { return StatusCode::NOT_FOUND.into_response() };
    match sim.seed(kind, &body) {
        Ok(resource) => (StatusCode::CREATED, Json(resource)).into_response(),
        Err(error) => sim_error(error),
    }
}

async fn sim_change(
    State(sim): Sim,
    Path((endpoint, id)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let Some(kind) = kind_of(&endpoint) else { return StatusCode::NOT_FOUND.into_response() };
    match sim.change(kind, &id, &body) {
        Ok(resource) => Json(resource).into_response(),
        Err(error) => sim_error(error),
    }
}

async fn sim_remove(State(sim): Sim, Path((endpoint, id)): Path<(String, String)>) -> StatusCode {
    match kind_of(&endpoint) {
        Some(kind) if sim.remove(kind, &id) => StatusCode::NO_CONTENT,
        _ => StatusCode::NOT_FOUND,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_round_trip_their_names() {
        for profile in Profile::ALL {
            assert_eq!(profile.name().parse::<Profile>(), Ok(profile));
        }
        assert!("okta".parse::<Profile>().unwrap_err().contains("strict-rfc"));
    }

    #[test]
    fn routes_decode_ids_and_refuse_unknown_paths() {
        assert!(
            matches!(route("/scim/v2/Users/a%20b", BASE_PATH), Some(Route::Resource(Kind::User, id)) if id == "a b")
        );
        assert!(matches!(
            route("/scim/v2/Groups/.search", BASE_PATH),
            Some(Route::Search(Some(Kind::Group)))
        ));
        assert!(
            matches!(route("/scim/v2/Schemas/urn:x", BASE_PATH), Some(Route::Schemas(Some(id))) if id == "urn:x")
        );
        for path in ["/scim/v2/Things", "/scim/v2/Users/a/b", "/v2/Users", "/scim/v2/Users/", "/scim/v2Users"]
        {
            assert!(route(path, BASE_PATH).is_none(), "{path}");
        }
        assert!(matches!(route("/scim/Users", "/scim"), Some(Route::Collection(Kind::User))));
        assert!(route("/scim/v2/Users", "/scim").is_none());
    }
}
