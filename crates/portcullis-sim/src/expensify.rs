//! The Expensify Integration Server, as `shared/spec/connectors.md` §1 and §6
//! describe it.
//!
//! One endpoint takes every job: a form with a `requestJobDescription` JSON
//! string (job `type`, `credentials`, `inputSettings`) and sometimes a `data`
//! field. Errors are answered in band (HTTP 200, `responseCode` in the body),
//! which is exactly what connectors get wrong, so that is the default.
//!
//! The model: policies (owner, type, roster, categories, tags, report fields),
//! accounts (logins, names, employeeID) shared by all policies, and a small
//! report store for `reportStatus`. Roster entries hold the per-policy facts
//! (role, approver chain, custom fields); names and employeeID live on the
//! account, because Expensify keeps them per person, not per policy.
//!
//! Inferred ([I]/[T]) behaviour sits behind [`Config`] switches. Choices the
//! contract leaves open and that no switch covers:
//! - emails are compared case-insensitively (stored lower-cased);
//! - an updater row without `role` keeps an existing member's role (new
//!   members get `user`), and other optional fields are only changed when sent,
//!   except `customField1`, which always follows `employeeID` unless sent;
//! - an auto-invited manager joins as `user` submitting to the policy owner
//!   (their own manager is unknown until their own row arrives);
//! - a row whose new email is already a login of another account is skipped
//!   rather than merging two accounts;
//! - the policy owner cannot be terminated from their own policy;
//! - the legacy CSV updater does not auto-invite managers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::common::{Clock, Fault, Faults, LoggedRequest, RequestLog, Running, WindowLimiter, serve};

pub const ENDPOINT: &str = "/Integration-Server/ExpensifyIntegrations";
pub const RATE_LIMIT_MESSAGE: &str =
    "You have been rate-limited. Please try again later or contact help@expensify.com for assistance.";
const DEFAULT_POLICY_ID: &str = "F0E1D2C3B4A59687";
/// A 10k-employee feed is a few MB of urlencoded JSON; axum's 2 MB default
/// would reject the hub's benchmark.
const BODY_LIMIT: usize = 64 << 20;

// ---------------------------------------------------------------- config ---

#[derive(Debug, Clone)]
pub struct Config {
    /// Seeds the ids of policies created without one.
    pub seed: u64,
    pub partners: Vec<Partner>,
    pub policies: Vec<PolicySeed>,
    /// 5 per 10 s and 20 per 60 s per partnerUserID [D].
    pub rate_limits: bool,
    /// [D] says "may result in an error with status code 429" without saying
    /// where; false: HTTP 429, true: HTTP 200 with `responseCode` 429.
    pub rate_limit_in_band: bool,
    /// [I] the auth failure code is undocumented; fixtures assume 401.
    pub auth_error_code: u16,
    /// [I] errors answer HTTP 200 [D], but some may carry the HTTP status.
    pub errors_with_http_status: bool,
    /// [T] success envelopes arrive as `text/plain;charset=utf-8` for some
    /// jobs; true answers `application/json` instead.
    pub json_content_type: bool,
    /// [T] observed: tags with `action:"merge"` dropped the unlisted tags.
    pub tag_merge_deletes_unlisted: bool,
    /// [I] `policyList` with `userEmail` (no domain granted in the simulator).
    pub user_email_error_code: u16,
}

/// Integration credentials and the account they act as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    pub partner_user_id: String,
    pub partner_user_secret: String,
    pub email: String,
}

impl Default for Config {
    fn default() -> Self {
        let email = "admin@example.com";
        Config {
            seed: 1,
            partners: vec![Partner {
                partner_user_id: "aa_portcullis_test".into(),
                partner_user_secret: "expensify-secret".into(),
                email: email.into(),
            }],
            policies: vec![PolicySeed {
                id: Some(DEFAULT_POLICY_ID.into()),
                name: "Portcullis Test".into(),
                owner: email.into(),
                employees: vec![Employee { submits_to: Some(email.into()), ..Employee::new(email, "admin") }],
                ..PolicySeed::default()
            }],
            rate_limits: true,
            rate_limit_in_band: false,
            auth_error_code: 401,
            errors_with_http_status: false,
            json_content_type: false,
            tag_merge_deletes_unlisted: true,
            user_email_error_code: 500,
        }
    }
}

/// A policy to create. An empty `owner` means the first partner's account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicySeed {
    pub id: Option<String>,
    pub name: String,
    pub owner: String,
    /// `corporate` or `team`.
    pub policy_type: String,
    pub output_currency: String,
    pub employees: Vec<Employee>,
}

impl Default for PolicySeed {
    fn default() -> Self {
        PolicySeed {
            id: None,
            name: "Policy".into(),
            owner: String::new(),
            policy_type: "corporate".into(),
            output_currency: "USD".into(),
            employees: Vec::new(),
        }
    }
}

/// One roster entry in the vendor's JSON shape (`get`/`policy` employees).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Employee {
    pub email: String,
    /// `user`, `auditor` or `admin`.
    #[serde(default = "user_role")]
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submits_to: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub first_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_name: String,
    #[serde(rename = "employeeID", default, skip_serializing_if = "Option::is_none")]
    pub employee_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_field1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_field2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_limit_approver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approves_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_status: Option<String>,
}

fn user_role() -> String {
    "user".into()
}

impl Employee {
    pub fn new(email: &str, role: &str) -> Self {
        Employee { email: email.into(), role: role.into(), ..Employee::default() }
    }
}

/// A person's Expensify account, shared by every policy they belong to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Account {
    pub primary_login: String,
    pub secondary_logins: Vec<String>,
    pub first_name: String,
    pub last_name: String,
    pub employee_id: Option<String>,
    /// The user edited their own name; the updater must leave it alone [D].
    pub names_set_by_user: bool,
}

/// An expense report, only as much as `update`/`reportStatus` needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    #[serde(rename = "reportID")]
    pub report_id: String,
    #[serde(rename = "policyID")]
    pub policy_id: String,
    /// `OPEN`, `SUBMITTED`, `APPROVED`, `REIMBURSED`, ...
    pub status: String,
}

/// Where an Advanced Employee Updater request put its feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedShape {
    /// `data` form field holding a bare JSON array.
    BareArray,
    /// `data` form field holding `{"Employees":[...]}`.
    EmployeesObject,
    /// `inputSettings.data` (the Okta Workflows guide).
    InputSettingsData,
}

// ----------------------------------------------------------------- state ---

#[derive(Clone)]
struct Policy {
    id: String,
    name: String,
    owner: String,
    policy_type: String,
    output_currency: String,
    /// Keyed by primary login, so listings come out sorted. Entries keep
    /// names and employeeID empty: those are read from the account.
    roster: BTreeMap<String, Employee>,
    categories: Vec<Value>,
    tags: Vec<Value>,
    report_fields: Vec<Value>,
}

#[derive(Clone)]
struct Db {
    seed: u64,
    minted: u64,
    policies: BTreeMap<String, Policy>,
    /// Keyed by primary login.
    accounts: HashMap<String, Account>,
    /// Every login (primary or secondary) to its primary login.
    logins: HashMap<String, String>,
    by_employee_id: HashMap<String, String>,
    reports: BTreeMap<String, Report>,
}

fn norm(email: &str) -> String {
    email.trim().to_lowercase()
}

impl Db {
    fn new(config: &Config) -> Self {
        let mut db = Db {
            seed: config.seed,
            minted: 0,
            policies: BTreeMap::new(),
            accounts: HashMap::new(),
            logins: HashMap::new(),
            by_employee_id: HashMap::new(),
            reports: BTreeMap::new(),
        };
        for partner in &config.partners {
            db.ensure_account(&norm(&partner.email));
        }
        let default_owner = config.partners.first().map(|p| p.email.clone()).unwrap_or_default();
        for seed in &config.policies {
            db.add_policy(seed.clone(), &default_owner);
        }
        db
    }

    fn primary(&self, login: &str) -> String {
        let login = norm(login);
        self.logins.get(&login).cloned().unwrap_or(login)
    }

    /// Policy ids are 16 upper-case hex characters, derived from the seed.
    fn mint_policy_id(&mut self) -> String {
        loop {
            self.minted += 1;
            let mut x = self.seed ^ self.minted.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let id = format!("{:016X}", x ^ (x >> 31));
            if !self.policies.contains_key(&id) {
                return id;
            }
        }
    }

    /// Creates (or replaces) a policy; its owner is always an admin member.
    fn add_policy(&mut self, seed: PolicySeed, default_owner: &str) -> String {
        let id = seed.id.clone().unwrap_or_else(|| self.mint_policy_id());
        let owner = self.primary(if seed.owner.is_empty() { default_owner } else { &seed.owner });
        self.ensure_account(&owner);
        let policy = Policy {
            id: id.clone(),
            name: seed.name,
            owner: owner.clone(),
            policy_type: seed.policy_type,
            output_currency: seed.output_currency,
            roster: BTreeMap::new(),
            categories: Vec::new(),
            tags: Vec::new(),
            report_fields: Vec::new(),
        };
        self.policies.insert(id.clone(), policy);
        for employee in seed.employees {
            self.upsert_member(&id, employee);
        }
        let roster = &mut self.policies.get_mut(&id).unwrap().roster;
        let entry = roster.entry(owner.clone()).or_insert_with(|| Employee {
            submits_to: Some(owner.clone()),
            ..Employee::new(&owner, "admin")
        });
        entry.role = "admin".into();
        id
    }

    /// Returns whether the account is new.
    fn ensure_account(&mut self, login: &str) -> bool {
        if self.accounts.contains_key(login) {
            return false;
        }
        let account = Account { primary_login: login.into(), ..Account::default() };
        self.accounts.insert(login.into(), account);
        self.logins.insert(login.into(), login.into());
        true
    }

    fn set_employee_id(&mut self, login: &str, id: &str) -> bool {
        let account = self.accounts.get_mut(login).expect("account exists");
        if account.employee_id.as_deref() == Some(id) {
            return false;
        }
        if let Some(old) = account.employee_id.replace(id.into()) {
            self.by_employee_id.remove(&old);
        }
        // An id moves between accounts only by an admin's say-so (back door).
        if let Some(previous) = self.by_employee_id.insert(id.into(), login.into())
            && let Some(other) = self.accounts.get_mut(&previous)
        {
            other.employee_id = None;
        }
        true
    }

    fn set_names(&mut self, login: &str, first: Option<&str>, last: Option<&str>, by_user: bool) -> bool {
        let account = self.accounts.get_mut(login).expect("account exists");
        if account.names_set_by_user && !by_user {
            return false;
        }
        account.names_set_by_user |= by_user;
        let mut changed = false;
        for (slot, value) in [(&mut account.first_name, first), (&mut account.last_name, last)] {
            if let Some(value) = value
                && slot != value
            {
                *slot = value.into();
                changed = true;
            }
        }
        changed
    }

    /// The account's primary login becomes `new`; `old` stays as a secondary
    /// login, and every roster entry and approver reference follows.
    fn rename(&mut self, old: &str, new: &str) {
        let Some(mut account) = self.accounts.remove(old) else { return };
        account.secondary_logins.retain(|l| l != new);
        account.secondary_logins.push(old.into());
        account.primary_login = new.into();
        for login in account.secondary_logins.iter().chain([&account.primary_login]) {
            self.logins.insert(login.clone(), new.into());
        }
        if let Some(id) = &account.employee_id {
            self.by_employee_id.insert(id.clone(), new.into());
        }
        self.accounts.insert(new.into(), account);
        let follow = |slot: &mut Option<String>| {
            if slot.as_deref() == Some(old) {
                *slot = Some(new.into());
            }
        };
        // O(all members), but renames are rare next to everything else.
        for policy in self.policies.values_mut() {
            if policy.owner == old {
                policy.owner = new.into();
            }
            if let Some(mut entry) = policy.roster.remove(old) {
                entry.email = new.into();
                policy.roster.insert(new.into(), entry);
            }
            for entry in policy.roster.values_mut() {
                follow(&mut entry.submits_to);
                follow(&mut entry.approves_to);
                follow(&mut entry.over_limit_approver);
            }
        }
    }

    /// The back door's "admin edits the roster": names and employeeID go to
    /// the account (names only if the user never set them).
    fn upsert_member(&mut self, policy_id: &str, mut e: Employee) -> bool {
        if !self.policies.contains_key(policy_id) {
            return false;
        }
        e.email = self.primary(&e.email);
        self.ensure_account(&e.email);
        if let Some(id) = e.employee_id.take() {
            self.set_employee_id(&e.email, &id);
        }
        let (first, last) = (std::mem::take(&mut e.first_name), std::mem::take(&mut e.last_name));
        let some = |s: &str| (!s.is_empty()).then_some(s.to_owned());
        self.set_names(&e.email, some(&first).as_deref(), some(&last).as_deref(), false);
        for slot in [&mut e.submits_to, &mut e.approves_to, &mut e.over_limit_approver] {
            *slot = slot.as_deref().map(|m| self.primary(m));
        }
        if e.role.is_empty() {
            e.role = user_role();
        }
        self.policies.get_mut(policy_id).unwrap().roster.insert(e.email.clone(), e);
        true
    }

    /// The roster with names and employeeID filled in from the accounts.
    fn employees(&self, policy_id: &str) -> Vec<Employee> {
        let Some(policy) = self.policies.get(policy_id) else { return Vec::new() };
        policy
            .roster
            .values()
            .map(|entry| {
                let mut e = entry.clone();
                if let Some(account) = self.accounts.get(&e.email) {
                    e.first_name.clone_from(&account.first_name);
                    e.last_name.clone_from(&account.last_name);
                    e.employee_id.clone_from(&account.employee_id);
                }
                e
            })
            .collect()
    }
}

// ------------------------------------------------------------- simulator ---

pub struct ExpensifySim {
    config: Config,
    db: Mutex<Db>,
    last_feed_shape: Mutex<Option<FeedShape>>,
    log: RequestLog,
    faults: Faults,
    clock: Clock,
    limiter: WindowLimiter,
}

impl ExpensifySim {
    pub fn new(config: Config) -> Arc<Self> {
        Arc::new(ExpensifySim {
            db: Mutex::new(Db::new(&config)),
            config,
            last_feed_shape: Mutex::new(None),
            log: RequestLog::default(),
            faults: Faults::default(),
            clock: Clock::default(),
            limiter: WindowLimiter::new(&[(Duration::from_secs(10), 5), (Duration::from_secs(60), 20)]),
        })
    }

    pub async fn start(config: Config, port: u16) -> std::io::Result<(Arc<Self>, Running)> {
        let sim = Self::new(config);
        let running = serve(sim.router(), port).await?;
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

    /// The feed shape of the last Advanced Employee Updater request.
    pub fn last_feed_shape(&self) -> Option<FeedShape> {
        *self.last_feed_shape.lock().unwrap()
    }

    /// Creates (or replaces, for an existing id) a policy; returns its id.
    pub fn create_policy(&self, seed: PolicySeed) -> String {
        let default_owner = self.config.partners.first().map(|p| p.email.clone()).unwrap_or_default();
        self.db.lock().unwrap().add_policy(seed, &default_owner)
    }

    /// Adds or changes one roster entry; does nothing for an unknown policy.
    pub fn upsert_employee(&self, policy_id: &str, e: Employee) {
        if !self.db.lock().unwrap().upsert_member(policy_id, e) {
            tracing::warn!(policy_id, "upsert_employee: no such policy");
        }
    }

    pub fn remove_employee(&self, policy_id: &str, email: &str) -> bool {
        let mut db = self.db.lock().unwrap();
        let email = db.primary(email);
        db.policies.get_mut(policy_id).is_some_and(|p| p.roster.remove(&email).is_some())
    }

    /// The roster sorted by email (empty for an unknown policy).
    pub fn employees(&self, policy_id: &str) -> Vec<Employee> {
        self.db.lock().unwrap().employees(policy_id)
    }

    pub fn has_policy(&self, policy_id: &str) -> bool {
        self.db.lock().unwrap().policies.contains_key(policy_id)
    }

    /// The account any of its logins belongs to.
    pub fn account(&self, email: &str) -> Option<Account> {
        let db = self.db.lock().unwrap();
        db.accounts.get(&db.primary(email)).cloned()
    }

    /// The user edits their own name (creating the account if needed).
    pub fn set_names_by_user(&self, email: &str, first: &str, last: &str) {
        let mut db = self.db.lock().unwrap();
        let login = db.primary(email);
        db.ensure_account(&login);
        db.set_names(&login, Some(first), Some(last), true);
    }

    pub fn add_report(&self, report: Report) {
        self.db.lock().unwrap().reports.insert(report.report_id.clone(), report);
    }

    pub fn report(&self, report_id: &str) -> Option<Report> {
        self.db.lock().unwrap().reports.get(report_id).cloned()
    }

    /// Back to the configured seed data; clears the log, faults and rate
    /// limiters (the clock keeps its offset: `Clock` has no reset).
    pub fn reset(&self) {
        *self.db.lock().unwrap() = Db::new(&self.config);
        *self.last_feed_shape.lock().unwrap() = None;
        self.log.clear();
        self.faults.clear();
        self.limiter.clear();
    }

    pub fn router(self: &Arc<Self>) -> Router {
        type Sim = State<Arc<ExpensifySim>>;
        #[derive(Deserialize)]
        struct Names {
            first_name: String,
            last_name: String,
        }
        let not_found = || (StatusCode::NOT_FOUND, Json(json!({"error": "no such policy"}))).into_response();
        Router::new()
            .route(ENDPOINT, post(integrations))
            .merge(crate::common::back_door::<ExpensifySim>())
            .route(
                "/_sim/policies",
                post(|State(sim): Sim, Json(seed): Json<PolicySeed>| async move {
                    Json(json!({"id": sim.create_policy(seed)}))
                }),
            )
            .route(
                "/_sim/policies/{id}/employees",
                get(move |State(sim): Sim, Path(id): Path<String>| async move {
                    if sim.has_policy(&id) { Json(sim.employees(&id)).into_response() } else { not_found() }
                })
                .put(
                    move |State(sim): Sim, Path(id): Path<String>, Json(e): Json<Employee>| async move {
                        if sim.db.lock().unwrap().upsert_member(&id, e) {
                            StatusCode::NO_CONTENT.into_response()
                        } else {
                            not_found()
                        }
                    },
                ),
            )
            .route(
                "/_sim/policies/{id}/employees/{email}",
                axum::routing::delete(
                    |State(sim): Sim, Path((id, email)): Path<(String, String)>| async move {
                        if sim.remove_employee(&id, &email) {
                            StatusCode::NO_CONTENT
                        } else {
                            StatusCode::NOT_FOUND
                        }
                    },
                ),
            )
            .route(
                "/_sim/accounts/{email}",
                get(|State(sim): Sim, Path(email): Path<String>| async move {
                    sim.account(&email).map(Json).ok_or(StatusCode::NOT_FOUND)
                }),
            )
            .route(
                "/_sim/accounts/{email}/names",
                post(|State(sim): Sim, Path(email): Path<String>, Json(n): Json<Names>| async move {
                    sim.set_names_by_user(&email, &n.first_name, &n.last_name)
                }),
            )
            .route(
                "/_sim/reports",
                post(|State(sim): Sim, Json(r): Json<Report>| async move { sim.add_report(r) }),
            )
            .route(
                "/_sim/feed-shape",
                get(|State(sim): Sim| async move { Json(json!({"last": sim.last_feed_shape()})) }),
            )
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(self.clone())
    }
}

// ------------------------------------------------------------- transport ---

async fn integrations(
    State(sim): State<Arc<ExpensifySim>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The job runs (and commits) before anything is awaited, so a client
    // that gives up during a TimeoutAfterCommit delay still changed state.
    let answer = sim.answer(&headers, &body);
    let entry = LoggedRequest::new("POST", &uri, &headers, &body);
    sim.log.record(entry, answer.status, answer.fault.clone(), answer.delay).await;
    answer.into_response()
}

struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
    retry_after: Option<u64>,
    delay: Option<Duration>,
    fault: Option<String>,
}

impl Answer {
    fn new(status: u16, content_type: &'static str, body: String) -> Self {
        Answer { status, content_type, body, retry_after: None, delay: None, fault: None }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, [(CONTENT_TYPE, self.content_type)], self.body).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Every in-band failure: answered as `{"responseCode","responseMessage"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JobError {
    code: u16,
    message: String,
}

impl JobError {
    fn new(code: u16, message: impl Into<String>) -> Self {
        JobError { code, message: message.into() }
    }
    fn malformed(argument: &str) -> Self {
        Self::new(410, format!("Argument '{argument}' is missing or malformed"))
    }
    fn missing(parameter: &str) -> Self {
        Self::new(410, format!("Required parameter '{parameter}' is missing"))
    }
    fn no_feed() -> Self {
        Self::new(410, "Employee data missing")
    }
}

/// The form fields of a urlencoded or multipart body (the legacy CSV
/// updater's clients upload `data` as a file).
fn form_fields(headers: &HeaderMap, body: &[u8]) -> HashMap<String, String> {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let boundary = content_type
        .strip_prefix("multipart/form-data")
        .and_then(|rest| rest.split(';').find_map(|p| p.trim().strip_prefix("boundary=")))
        .map(|b| b.trim_matches('"'));
    match boundary {
        Some(boundary) => multipart_fields(&String::from_utf8_lossy(body), boundary),
        None => form_urlencoded::parse(body).into_owned().collect(),
    }
}

/// Just enough multipart/form-data for text fields and small files.
fn multipart_fields(body: &str, boundary: &str) -> HashMap<String, String> {
    body.split(&format!("--{boundary}"))
        .filter_map(|part| {
            // The preamble and the closing `--` part fail here.
            let (head, content) = part.strip_prefix("\r\n")?.split_once("\r\n\r\n")?;
            let disposition =
                head.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))?;
            let name = disposition.split(';').find_map(|p| p.trim().strip_prefix("name="))?.trim_matches('"');
            Some((name.to_owned(), content.strip_suffix("\r\n").unwrap_or(content).to_owned()))
        })
        .collect()
}

/// Equal-length secrets are compared without an early exit.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn default_message(code: &str) -> &'static str {
    match code {
        "401" => "Authentication error",
        "404" => "Policy not found",
        "410" => "Argument 'requestJobDescription' is missing or malformed",
        "429" => RATE_LIMIT_MESSAGE,
        _ => "Internal error",
    }
}

struct Job {
    json: Value,
    data: Option<String>,
}

impl Job {
    fn kind(&self) -> &str {
        self.json["type"].as_str().unwrap_or("")
    }
    fn input(&self) -> &Value {
        &self.json["inputSettings"]
    }
    fn input_str(&self, key: &str) -> Option<&str> {
        self.input()[key].as_str()
    }
}

impl ExpensifySim {
    fn content_type(&self) -> &'static str {
        if self.config.json_content_type { "application/json" } else { "text/plain;charset=utf-8" }
    }

    fn envelope(&self, result: Result<Value, JobError>) -> Answer {
        match result {
            Ok(body) => Answer::new(200, self.content_type(), body.to_string()),
            Err(e) => {
                let http = self.config.errors_with_http_status && (400..600).contains(&e.code);
                let body = json!({"responseCode": e.code, "responseMessage": e.message});
                Answer::new(if http { e.code } else { 200 }, self.content_type(), body.to_string())
            }
        }
    }

    fn rate_limited(&self, in_band: bool, retry_after: Option<u64>) -> Answer {
        let body = json!({"responseCode": 429, "responseMessage": RATE_LIMIT_MESSAGE}).to_string();
        Answer { retry_after, ..Answer::new(if in_band { 200 } else { 429 }, self.content_type(), body) }
    }

    fn answer(&self, headers: &HeaderMap, body: &[u8]) -> Answer {
        let mut fields = form_fields(headers, body);
        let json = fields
            .get("requestJobDescription")
            .and_then(|raw| serde_json::from_str::<Value>(raw).ok())
            .filter(Value::is_object);
        let Some(json) = json else {
            return self.envelope(Err(JobError::malformed("requestJobDescription")));
        };
        let job = Job { json, data: fields.remove("data") };
        if job.kind().is_empty() {
            return self.envelope(Err(JobError::malformed("type")));
        }
        let credentials = &job.json["credentials"];
        let (id, secret) = (credentials["partnerUserID"].as_str(), credentials["partnerUserSecret"].as_str());
        let partner = self.config.partners.iter().find(|p| {
            Some(p.partner_user_id.as_str()) == id
                && same_secret(&p.partner_user_secret, secret.unwrap_or(""))
        });
        let Some(partner) = partner else {
            return self.envelope(Err(JobError::new(self.config.auth_error_code, "Authentication error")));
        };
        // Only admitted requests count: the limiter records nothing on refusal.
        if self.config.rate_limits && self.limiter.check(&partner.partner_user_id).is_err() {
            return self.rate_limited(self.config.rate_limit_in_band, None);
        }
        let operation = format!("{}.{}", job.kind(), job.input_str("type").unwrap_or(""));
        let Some(fault) = self.faults.take(&operation) else { return self.envelope(self.run(&job, partner)) };
        let mut answer = match &fault {
            Fault::RateLimited { retry_after } => self.rate_limited(false, *retry_after),
            Fault::ServerError { status } => {
                let reason =
                    StatusCode::from_u16(*status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
                Answer::new(*status, "text/plain;charset=utf-8", format!("{status} {reason}"))
            }
            Fault::InBand { code, message } => {
                let response_code =
                    code.parse::<u64>().map(Value::from).unwrap_or_else(|_| code.as_str().into());
                let message = message.as_deref().unwrap_or(default_message(code));
                let body = json!({"responseCode": response_code, "responseMessage": message});
                Answer::new(200, self.content_type(), body.to_string())
            }
            Fault::TimeoutAfterCommit { secs } => {
                Answer { delay: Some(Duration::from_secs(*secs)), ..self.envelope(self.run(&job, partner)) }
            }
            Fault::Malformed { status } => Answer::new(*status, "text/html", Fault::PROXY_PAGE.into()),
        };
        answer.fault = Some(fault.label());
        answer
    }

    fn run(&self, job: &Job, partner: &Partner) -> Result<Value, JobError> {
        let mut db = self.db.lock().unwrap();
        let caller = db.primary(&partner.email);
        match (job.kind(), job.input_str("type").unwrap_or("")) {
            ("get", "policyList") => self.policy_list(&db, job, &caller),
            ("get", "policy") => get_policy(&db, job),
            ("update", "employees") if job.input_str("fileType") == Some("csv") => {
                csv_update(&mut db, job, &caller)
            }
            ("update", "employees") if job.input_str("entity") == Some("generic") => {
                let (shape, rows) = feed(job)?;
                *self.last_feed_shape.lock().unwrap() = Some(shape);
                // A dry run is the same job against a throwaway copy.
                if job.json["dry-run"].as_bool().unwrap_or(false) {
                    Ok(update_employees(&mut db.clone(), &rows, &caller, true))
                } else {
                    Ok(update_employees(&mut db, &rows, &caller, false))
                }
            }
            ("update", "employees") => Err(JobError::malformed("entity")),
            ("create", "policy") => create_policy(&mut db, job, &caller),
            ("update", "policy") => self.update_policy(&mut db, job),
            ("update", "reportStatus") => update_report_status(&mut db, job),
            (kind @ ("file" | "download" | "create" | "get" | "update" | "reconciliation"), input) => {
                Err(JobError::new(500, format!("Job '{kind}/{input}' is not supported by the simulator")))
            }
            _ => Err(JobError::malformed("type")),
        }
    }

    fn policy_list(&self, db: &Db, job: &Job, caller: &str) -> Result<Value, JobError> {
        if let Some(email) = job.input_str("userEmail") {
            let message = format!("Not authorized to authenticate as user {email}");
            return Err(JobError::new(self.config.user_email_error_code, message));
        }
        let admin_only = job.input()["adminOnly"].as_bool().unwrap_or(false);
        let list: Vec<Value> = db
            .policies
            .values()
            .filter_map(|p| {
                let role = &p.roster.get(caller)?.role;
                (!admin_only || role == "admin").then(|| {
                    json!({"id": p.id, "name": p.name, "owner": p.owner, "role": role,
                           "type": p.policy_type, "outputCurrency": p.output_currency})
                })
            })
            .collect();
        Ok(json!({"policyList": list, "responseCode": 200}))
    }

    fn update_policy(&self, db: &mut Db, job: &Job) -> Result<Value, JobError> {
        let id = job
            .input_str("policyID")
            .or_else(|| job.input()["policyIDList"][0].as_str())
            .ok_or_else(|| JobError::missing("policyIDList"))?;
        // Validate every section before changing any, so a malformed one
        // leaves the policy untouched.
        let mut changes = Vec::new();
        for key in ["categories", "tags", "reportFields"] {
            let Some(spec) = job.json.get(key) else { continue };
            let bad = || JobError::new(410, format!("'{key}' object malformed"));
            let action =
                spec["action"].as_str().filter(|a| matches!(*a, "merge" | "replace")).ok_or_else(bad)?;
            let data = spec["data"]
                .as_array()
                .filter(|d| d.iter().all(|e| e["name"].is_string()))
                .ok_or_else(bad)?;
            let replace = action == "replace" || (key == "tags" && self.config.tag_merge_deletes_unlisted);
            changes.push((key, replace, data.clone()));
        }
        let policy = db.policies.get_mut(id).ok_or_else(|| JobError::new(404, "Policy not found"))?;
        for (key, replace, data) in changes {
            let list = match key {
                "categories" => &mut policy.categories,
                "tags" => &mut policy.tags,
                _ => &mut policy.report_fields,
            };
            if replace {
                *list = data;
            } else {
                merge_named(list, data, key == "tags");
            }
        }
        Ok(json!({"responseCode": 200}))
    }
}

// ------------------------------------------------------------------ jobs ---

fn get_policy(db: &Db, job: &Job) -> Result<Value, JobError> {
    let ids = job.input()["policyIDList"].as_array().ok_or_else(|| JobError::missing("policyIDList"))?;
    let fields = job.input()["fields"].as_array().ok_or_else(|| JobError::missing("fields"))?;
    let mut info = Map::new();
    for id in ids.iter().filter_map(Value::as_str) {
        let policy = db.policies.get(id).ok_or_else(|| JobError::new(404, "Policy not found"))?;
        let mut out = Map::new();
        for field in fields.iter().filter_map(Value::as_str) {
            let value = match field {
                "employees" => json!(db.employees(id)),
                "categories" => json!(policy.categories),
                "tags" => json!(policy.tags),
                "reportFields" => json!(policy.report_fields),
                "tax" => json!({}),
                _ => continue,
            };
            out.insert(field.into(), value);
        }
        info.insert(id.into(), out.into());
    }
    Ok(json!({"policyInfo": info, "responseCode": 200}))
}

fn create_policy(db: &mut Db, job: &Job, caller: &str) -> Result<Value, JobError> {
    let name = job
        .input_str("policyName")
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| JobError::new(500, "Required parameter 'policyName' is missing"))?;
    let plan = job.input_str("plan").unwrap_or("team");
    if !matches!(plan, "team" | "corporate") {
        return Err(JobError::malformed("plan"));
    }
    let seed = PolicySeed {
        name: name.into(),
        owner: caller.into(),
        policy_type: plan.into(),
        ..PolicySeed::default()
    };
    let id = db.add_policy(seed, caller);
    Ok(json!({"policyID": id, "policyName": name, "responseCode": 200}))
}

/// Upserts `incoming` into `list` by `name`, keeping keys not sent; for tag
/// levels (`nested`) the level's own `tags` are merged the same way.
fn merge_named(list: &mut Vec<Value>, incoming: Vec<Value>, nested: bool) {
    for item in incoming {
        let Some(existing) = list.iter_mut().find(|e| e["name"] == item["name"]) else {
            list.push(item);
            continue;
        };
        let (Value::Object(existing), Value::Object(item)) = (existing, item) else { continue };
        for (key, value) in item {
            match (key.as_str(), existing.get_mut(&key)) {
                ("tags", Some(Value::Array(tags))) if nested => {
                    merge_named(tags, value.as_array().cloned().unwrap_or_default(), false)
                }
                _ => {
                    existing.insert(key, value);
                }
            }
        }
    }
}

fn update_report_status(db: &mut Db, job: &Job) -> Result<Value, JobError> {
    if job.input_str("status") != Some("REIMBURSED") {
        return Err(JobError::malformed("status"));
    }
    let list = &job.input()["filters"]["reportIDList"];
    let list = if list.is_null() { &job.input()["reportIDList"] } else { list };
    let ids: Vec<String> = match list {
        Value::String(s) => s.split(',').map(|id| id.trim().to_owned()).filter(|id| !id.is_empty()).collect(),
        Value::Array(a) => a.iter().filter_map(Value::as_str).map(Into::into).collect(),
        _ => Vec::new(),
    };
    if ids.is_empty() {
        return Err(JobError::missing("reportIDList"));
    }
    let (mut done, mut skipped, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for id in ids {
        match db.reports.get_mut(&id) {
            None => failed.push(json!({"reportID": id, "reason": "Report not found"})),
            Some(r) if r.status.eq_ignore_ascii_case("APPROVED") => {
                r.status = "REIMBURSED".into();
                done.push(id);
            }
            Some(r) => {
                let reason =
                    format!("Report is {}; only Approved reports can be marked as reimbursed", r.status);
                skipped.push(json!({"reportID": id, "reason": reason}));
            }
        }
    }
    let code = if skipped.is_empty() && failed.is_empty() { 200 } else { 207 };
    Ok(json!({"responseCode": code, "reportIDs": done, "skippedReports": skipped, "failedReports": failed}))
}

// ------------------------------------------------ advanced employee updater ---

/// The rows and where they came from (see [`FeedShape`]).
fn feed(job: &Job) -> Result<(FeedShape, Vec<Value>), JobError> {
    let (shape, rows) = match &job.input()["data"] {
        Value::Null => {
            let source = job.json["dataSource"].as_str().unwrap_or("request");
            if source != "request" {
                let message = format!("dataSource '{source}' is not supported by the simulator");
                return Err(JobError::new(500, message));
            }
            let raw = job.data.as_deref().filter(|d| !d.trim().is_empty()).ok_or_else(JobError::no_feed)?;
            match serde_json::from_str(raw).map_err(|_| JobError::malformed("data"))? {
                Value::Array(rows) => (FeedShape::BareArray, rows),
                Value::Object(mut o) => match o.remove("Employees") {
                    Some(Value::Array(rows)) => (FeedShape::EmployeesObject, rows),
                    _ => return Err(JobError::no_feed()),
                },
                _ => return Err(JobError::no_feed()),
            }
        }
        Value::Array(rows) => (FeedShape::InputSettingsData, rows.clone()),
        _ => return Err(JobError::malformed("data")),
    };
    if rows.is_empty() { Err(JobError::no_feed()) } else { Ok((shape, rows)) }
}

/// One feed row, validated on its own (state checks come in `plan`).
struct Row {
    email: String,
    manager: String,
    employee_id: String,
    policy_id: String,
    additional: Vec<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    role: Option<String>,
    custom_field1: Option<String>,
    custom_field2: Option<String>,
    approval_limit: Option<(i64, String)>,
    approves_to: Option<String>,
    worker_status: Option<String>,
    terminated: bool,
    domain_group: Option<String>,
}

/// (email, reason) for `skippedEmployees`.
type Skip = (String, String);

fn parse_row(value: &Value) -> Result<Row, Skip> {
    let text = |key: &str| match &value[key] {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let shown = text("employeeEmail").map(|e| norm(&e)).unwrap_or_default();
    let skip = |reason: String| (shown.clone(), reason);
    if !value.is_object() {
        return Err(skip("Malformed employee entry".into()));
    }
    let required = |key: &str| text(key).ok_or_else(|| skip(format!("Missing required field '{key}'")));
    let email = norm(&required("employeeEmail")?);
    let manager = norm(&required("managerEmail")?);
    let (employee_id, policy_id) = (required("employeeID")?, required("policyID")?);
    for address in [&email, &manager] {
        if !address.contains('@') {
            return Err(skip(format!("Invalid email address '{address}'")));
        }
    }
    let role = text("role").map(|r| r.to_lowercase());
    if let Some(role) = role.as_deref().filter(|r| !matches!(*r, "user" | "auditor" | "admin")) {
        return Err(skip(format!("Invalid role '{role}'")));
    }
    let limit = match &value["approvalLimit"] {
        Value::Null => None,
        Value::Number(n) => Some(n.as_i64().ok_or_else(|| skip("Invalid approvalLimit".into()))?),
        Value::String(s) => Some(s.trim().parse().map_err(|_| skip("Invalid approvalLimit".into()))?),
        _ => return Err(skip("Invalid approvalLimit".into())),
    };
    let over_limit = text("overLimitApprover").or_else(|| text("limitApprover")).map(|e| norm(&e));
    let approval_limit = match (limit, over_limit) {
        (Some(limit), Some(approver)) => Some((limit, approver)),
        (Some(_), None) => return Err(skip("approvalLimit requires overLimitApprover".into())),
        (None, _) => None,
    };
    let terminated = match &value["isTerminated"] {
        Value::Bool(b) => *b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    let additional = value["additionalPolicyIDs"]
        .as_array()
        .map(|ids| ids.iter().filter_map(Value::as_str).map(Into::into).collect())
        .unwrap_or_default();
    Ok(Row {
        email,
        manager,
        employee_id,
        policy_id,
        additional,
        first_name: text("firstName"),
        last_name: text("lastName"),
        role,
        custom_field1: text("customField1"),
        custom_field2: text("customField2"),
        approval_limit,
        approves_to: text("approvesTo").map(|e| norm(&e)),
        worker_status: text("workerStatus"),
        terminated,
        domain_group: text("domainGroupID"),
    })
}

#[derive(Default)]
struct Outcome {
    updated: usize,
    add: BTreeMap<String, Vec<String>>,
    remove: BTreeMap<String, Vec<String>>,
    groups: BTreeMap<String, Vec<String>>,
    skipped: Vec<Value>,
}

impl Row {
    fn policies(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.policy_id).chain(if self.terminated { &[][..] } else { &self.additional[..] })
    }
}

fn update_employees(db: &mut Db, rows: &[Value], caller: &str, dry_run: bool) -> Value {
    let mut out = Outcome::default();
    for value in rows {
        match parse_row(value).and_then(|row| plan(db, &row, caller).map(|login| (row, login))) {
            Ok((row, login)) => {
                if let Some(group) = &row.domain_group {
                    out.groups.entry(group.clone()).or_default().push(login.clone());
                }
                if apply(db, &row, &login, &mut out) {
                    out.updated += 1;
                }
            }
            Err((email, reason)) => out.skipped.push(json!({"email": email, "reason": reason})),
        }
    }
    json!({
        "responseCode": 200,
        "dry-run": dry_run,
        "updatedEmployeesCount": out.updated,
        "diff": {"diffToAdd": out.add, "diffToRemove": out.remove},
        "securityGroupEmployeesMap": out.groups,
        "skippedEmployees": out.skipped,
    })
}

/// Checks a row against the state and returns the primary login it will
/// have; nothing is changed, so a skipped row leaves no trace.
fn plan(db: &Db, row: &Row, caller: &str) -> Result<String, Skip> {
    let skip = |reason: String| (row.email.clone(), reason);
    if let Some(id) = row.policies().find(|id| !db.policies.contains_key(*id)) {
        return Err(skip(format!("No policy found for '{id}'")));
    }
    // Upsert keyed by employeeID first: a known id with a new email is the
    // same person under a new login.
    let login = match db.by_employee_id.get(&row.employee_id) {
        Some(current) if *current != row.email => match db.logins.get(&row.email) {
            Some(other) if other != current => {
                return Err(skip(format!("Email '{}' already belongs to another account", row.email)));
            }
            _ => row.email.clone(),
        },
        Some(current) => current.clone(),
        None => db.primary(&row.email),
    };
    let current_login = db.by_employee_id.get(&row.employee_id).unwrap_or(&login);
    for id in row.policies() {
        let policy = &db.policies[id];
        let is_owner = policy.owner == *current_login;
        if row.terminated && is_owner {
            return Err(skip(format!("Cannot remove the policy owner from policy '{id}'")));
        }
        let demoted = row.role.as_deref().is_some_and(|r| r != "admin");
        let admin_now = policy.roster.get(current_login).is_some_and(|e| e.role == "admin");
        if demoted && is_owner {
            return Err(skip(format!("Cannot change the role of the policy owner of policy '{id}'")));
        }
        if demoted && admin_now && current_login == caller {
            return Err(skip(format!("Cannot change the role of the calling account on policy '{id}'")));
        }
    }
    Ok(login)
}

/// Applies a planned row; returns whether anything changed.
fn apply(db: &mut Db, row: &Row, login: &str, out: &mut Outcome) -> bool {
    let mut changed = false;
    if let Some(old) = db.by_employee_id.get(&row.employee_id).cloned()
        && old != login
    {
        db.rename(&old, login);
        changed = true;
    }
    changed |= db.ensure_account(login);
    changed |= db.set_employee_id(login, &row.employee_id);
    changed |= db.set_names(login, row.first_name.as_deref(), row.last_name.as_deref(), false);
    if row.terminated {
        // Membership of this policy only; the account stays [D].
        if db.policies.get_mut(&row.policy_id).unwrap().roster.remove(login).is_some() {
            out.remove.entry(row.policy_id.clone()).or_default().push(login.into());
            changed = true;
        }
        return changed;
    }
    let manager = db.primary(&row.manager);
    let approves_to = row.approves_to.as_deref().map(|e| db.primary(e));
    let approval_limit = row.approval_limit.as_ref().map(|(limit, approver)| (*limit, db.primary(approver)));
    for id in row.policies() {
        // Managers are invited where they have subordinates [D].
        if manager != login && !db.policies[id].roster.contains_key(&manager) {
            db.ensure_account(&manager);
            let policy = db.policies.get_mut(id).unwrap();
            let entry =
                Employee { submits_to: Some(policy.owner.clone()), ..Employee::new(&manager, "user") };
            policy.roster.insert(manager.clone(), entry);
            out.add.entry(id.clone()).or_default().push(manager.clone());
            changed = true;
        }
        let policy = db.policies.get_mut(id).unwrap();
        let before = policy.roster.get(login);
        let mut entry = before.cloned().unwrap_or_else(|| Employee::new(login, "user"));
        if let Some(role) = &row.role {
            entry.role.clone_from(role);
        }
        entry.submits_to = Some(manager.clone());
        entry.custom_field1 = Some(row.custom_field1.clone().unwrap_or_else(|| row.employee_id.clone()));
        for (slot, value) in [
            (&mut entry.custom_field2, &row.custom_field2),
            (&mut entry.approves_to, &approves_to),
            (&mut entry.worker_status, &row.worker_status),
        ] {
            if value.is_some() {
                slot.clone_from(value);
            }
        }
        if let Some((limit, approver)) = &approval_limit {
            entry.approval_limit = Some(*limit);
            entry.over_limit_approver = Some(approver.clone());
        }
        if before != Some(&entry) {
            if before.is_none() {
                out.add.entry(id.clone()).or_default().push(login.into());
            }
            policy.roster.insert(login.into(), entry);
            changed = true;
        }
    }
    changed
}

// ------------------------------------------------ legacy CSV employee updater ---

fn csv_update(db: &mut Db, job: &Job, caller: &str) -> Result<Value, JobError> {
    let id = job.input_str("policyID").ok_or_else(|| JobError::missing("policyID"))?;
    if !db.policies.contains_key(id) {
        return Err(JobError::new(404, "Policy not found"));
    }
    let rows = parse_csv(job.data.as_deref().ok_or_else(JobError::no_feed)?);
    let header = rows.first().ok_or_else(JobError::no_feed)?;
    let column = |name: &str| header.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let required = |name: &str| {
        column(name).ok_or_else(|| JobError::new(500, format!("Column {name} not found in CSV header")))
    };
    let (email_at, manager_at, admin_at) =
        (required("EmployeeEmail")?, required("ManagerEmail")?, required("Admin")?);
    // Optional columns: absent leaves the value alone, a blank cell clears it [D].
    let optional = [column("EmployeeUserId"), column("EmployeePayrollId"), column("ForwardManagerEmail")];
    let mut count = 0;
    for row in &rows[1..] {
        let cell = |i: usize| row.get(i).map(|c| c.trim()).unwrap_or("");
        let email = db.primary(cell(email_at));
        if email.is_empty() {
            continue;
        }
        db.ensure_account(&email);
        let manager = Some(cell(manager_at)).filter(|m| !m.is_empty()).map(|m| db.primary(m));
        let forward = optional[2].map(|i| Some(cell(i)).filter(|m| !m.is_empty()).map(|m| db.primary(m)));
        let policy = db.policies.get_mut(id).unwrap();
        let protected = email == policy.owner || email == caller;
        let admin = matches!(cell(admin_at).to_ascii_lowercase().as_str(), "true" | "yes" | "1" | "y");
        let entry = policy.roster.entry(email.clone()).or_insert_with(|| Employee::new(&email, "user"));
        if admin {
            entry.role = "admin".into();
        } else if !(protected && entry.role == "admin") {
            entry.role = "user".into();
        }
        entry.submits_to = manager;
        let blank_clears = |i: Option<usize>| i.map(|i| Some(cell(i).to_owned()).filter(|v| !v.is_empty()));
        if let Some(v) = blank_clears(optional[0]) {
            entry.custom_field1 = v;
        }
        if let Some(v) = blank_clears(optional[1]) {
            entry.custom_field2 = v;
        }
        if let Some(v) = forward {
            entry.approves_to = v;
        }
        count += 1;
    }
    Ok(json!({"responseCode": 200, "nbEmployees": count}))
}

/// RFC 4180-ish: quoted fields may hold commas, newlines and `""`.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field, mut quoted) = (Vec::new(), Vec::new(), String::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (_, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows.retain(|r: &Vec<String>| r.iter().any(|c| !c.trim().is_empty()));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_handles_quotes_and_blank_lines() {
        let rows = parse_csv("A,B\r\n\"x, y\",\"say \"\"hi\"\"\"\n\n,z");
        assert_eq!(rows, vec![vec!["A", "B"], vec!["x, y", "say \"hi\""], vec!["", "z"]]);
    }

    #[test]
    fn multipart_fields_are_parsed() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"requestJobDescription\"\r\n\r\n{}\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"data\"; filename=\"e.csv\"\r\n\
                    Content-Type: text/csv\r\n\r\nA,B\r\n1,2\r\n--XyZ--\r\n";
        let fields = multipart_fields(body, "XyZ");
        assert_eq!(fields["requestJobDescription"], "{}");
        assert_eq!(fields["data"], "A,B\r\n1,2");
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
