//! The TravelPerk simulator: the SCIM API under `/scim`, the legacy REST
//! `GET /users`, `ApiKey` and OAuth 2.0 (authorization code, refresh)
//! authentication with scopes, `Api-Version` and per-credential rate limits,
//! as `../shared/spec/connectors.md` §2, §6 and §7 record TravelPerk's
//! contract.
//!
//! The SCIM part is the generic engine ([`crate::scim`]) in its
//! `travelperk` profile, embedded: this simulator checks `Api-Version`, the
//! credential, its scopes and its rate limit, then hands the request to the
//! engine ([`ScimSim::serve_embedded`]). The engine's request log, faults
//! and clock are this simulator's too, so one log shows OAuth, SCIM and REST
//! calls in order, one fault list covers every operation, and moving the
//! clock expires tokens and dates SCIM writes alike.
//!
//! Faults ([`FaultRule::operation`]) name the engine's operations for SCIM
//! (`users.create`, `users.get`, `users.list`, `users.replace`,
//! `users.patch`, `users.delete`, `discovery`) plus `users.legacy_list`,
//! `oauth.authorize` and `oauth.token`.
//!
//! Choices the contract leaves open that no switch covers:
//! - REST and OAuth-endpoint errors are Django REST Framework style
//!   `{"detail": "…"}` (the spec calls that a plausible guess [I]); OAuth
//!   token errors are RFC 6749 `{"error", "error_description"}`; SCIM errors
//!   are RFC 7644 bodies, including the 400/401/403/429 this simulator
//!   decides before the engine sees the request;
//! - checks run in the order `Api-Version`, credential, rate limit, scope,
//!   so a request refused for its scope still counts against the limit;
//! - OAuth tokens of one client share one rate-limit budget (refreshing does
//!   not reset it); each API key has its own;
//! - `/users` takes `limit`/`offset` the way Django REST Framework's
//!   limit-offset paging does: an unusable `limit` means the default, one
//!   above the maximum means the maximum, an unusable `offset` means 0;
//! - a reused authorization code is refused (`invalid_grant`) but the tokens
//!   it produced stay valid, and a refresh leaves the old access token valid
//!   until it expires;
//! - `Api-Version` is not required on the OAuth endpoints (a browser visits
//!   the authorize page; the token endpoint lives on the app host).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::common::{
    self, Clock, Fault, Faults, IdSequence, LoggedRequest, RequestLog, Running, WindowLimiter,
};
use crate::scim::{self, Kind, Profile, RateLimit, Refusal, ScimError, ScimSim, schema};

/// The only version there is; every API request must name it [T].
pub const API_VERSION: &str = "1";
/// The API key accepted by default.
pub const DEFAULT_API_KEY: &str = "travelperk-portcullis-key";
/// The OAuth client known by default.
pub const DEFAULT_CLIENT_ID: &str = "portcullis-client";
pub const DEFAULT_CLIENT_SECRET: &str = "portcullis-secret";
/// The scopes TravelPerk is known to grant [T].
pub const SCOPES: [&str; 4] = ["scim:read", "scim:write", "scim:delete", "expenses:read"];
/// Where the older API lived; SCIM `meta.location` values still point there [T].
pub const LEGACY_PREFIX: &str = "/api/v2";
pub const AUTHORIZE_PATH: &str = "/oauth2/authorize";
/// With the trailing slash, as the clients send it [T].
pub const TOKEN_PATH: &str = "/accounts/oauth2/token/";

/// What `DELETE /scim/Users/{id}` does: undocumented [I].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// The user is gone: later reads answer 404.
    Hard,
    /// The user stays, visible with `active: false` (RoboMQ's account of
    /// TravelPerk deprovisioning [T]).
    Deactivate,
}

/// A registered OAuth application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: String,
    /// Where the authorize endpoint may send the user back; empty accepts
    /// any URI (convenient locally, laxer than TravelPerk [I]).
    pub redirect_uris: Vec<String>,
    /// What the client may ask for; an authorize request without `scope`
    /// gets all of them [I].
    pub scopes: Vec<String>,
}

impl OAuthClient {
    fn default_client() -> Self {
        OAuthClient {
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
            redirect_uris: Vec::new(),
            scopes: SCOPES.map(String::from).to_vec(),
        }
    }
}

/// How the simulator behaves. Marks follow the spec: [D] documented, [T]
/// third-party evidence, [I] inferred; every [I] is a switch whose default
/// is the best-evidenced variant.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seeds authorization codes and tokens; SCIM user ids are numeric and
    /// count up from it (at least 1).
    pub seed: u64,
    /// Accepted `Authorization: ApiKey <key>` keys [T]. A key carries every
    /// scope [I: keys are created by admins and have no scope list].
    pub api_keys: Vec<String>,
    pub clients: Vec<OAuthClient>,
    /// The authorize endpoint consents for the user at once; false answers
    /// `error=access_denied`, as a user refusing would.
    pub auto_consent: bool,
    /// Access-token lifetime in simulated seconds [I: 3600, the common
    /// OAuth default; TravelPerk publishes none].
    pub access_token_ttl_secs: i64,
    /// Authorization-code lifetime [I: RFC 6749 §4.1.2 recommends at most
    /// 10 minutes].
    pub code_ttl_secs: i64,
    /// A refresh returns a new refresh token and retires the old one [I].
    pub rotate_refresh_tokens: bool,
    /// The refresh grant must carry the client's id and secret. Payhawk's
    /// client sends them [T]; RFC 6749 §6 requires it of confidential
    /// clients [D]; whether TravelPerk insists is [I].
    pub refresh_requires_client_secret: bool,
    /// The status for a missing `Api-Version` (or one other than `1`) [I];
    /// None accepts requests without it.
    pub api_version_status: Option<u16>,
    /// Per credential; None turns limiting off. TravelPerk publishes no
    /// numbers [T/I]: 60 requests per 60 s by default.
    pub rate_limit: Option<RateLimit>,
    /// A 429 carries `Retry-After` in seconds [T: Payhawk's client reads it].
    pub retry_after: bool,
    /// `RateLimit-Limit`/`-Remaining`/`-Reset` on every API answer; off
    /// because TravelPerk documents no such headers [I].
    pub rate_limit_headers: bool,
    /// Where SCIM is served: `/scim` [T]. Stitchflow's `/api/scim/v2` [I] is
    /// a setting away.
    pub scim_base_path: String,
    /// The base of SCIM `meta.location`; by default
    /// `http://<bound address><scim_base_path>`. TravelPerk's own still
    /// point at `https://app.travelperk.com/api/v2/scim` [T].
    pub scim_base_url: Option<String>,
    /// Also answer under the legacy `/api/v2` prefix (`/api/v2/scim/…`,
    /// `/api/v2/users`) [T, spec §6].
    pub legacy_prefix: bool,
    /// The largest SCIM page, also the page size without `count` [I: 100].
    pub max_results: usize,
    pub delete: DeleteMode,
    /// Travel policies and invoice profiles that exist at start and after a
    /// reset; SCIM writes must name existing ones [I, spec §6].
    pub travel_policies: Vec<String>,
    pub invoice_profiles: Vec<String>,
    /// `filter=emails.value eq "…"` compares userName (the email; there is
    /// no `emails` attribute [T]); false answers 400 `invalidFilter` [I].
    pub emails_filter_on_user_name: bool,
    /// `GET /users` page size without `limit` [T: the clients' sample shows 10].
    pub users_default_limit: usize,
    /// The largest `limit` [I: Stitchflow claims 200].
    pub users_max_limit: usize,
    /// `GET /users` lists the newest user first [T: the sample lists id 8
    /// before 7]; false lists in creation order.
    pub users_newest_first: bool,
    /// The scope `GET /users` needs [I: TravelPerk names none for it;
    /// Stitchflow's `users:read` is unconfirmed].
    pub users_scope: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 1,
            api_keys: vec![DEFAULT_API_KEY.into()],
            clients: vec![OAuthClient::default_client()],
            auto_consent: true,
            access_token_ttl_secs: 3600,
            code_ttl_secs: 600,
            rotate_refresh_tokens: true,
            refresh_requires_client_secret: true,
            api_version_status: Some(400),
            rate_limit: Some(RateLimit { requests: 60, per_secs: 60 }),
            retry_after: true,
            rate_limit_headers: false,
            scim_base_path: "/scim".into(),
            scim_base_url: None,
            legacy_prefix: true,
            max_results: 100,
            delete: DeleteMode::Hard,
            travel_policies: vec!["Standard".into()],
            invoice_profiles: vec!["Main".into()],
            emails_filter_on_user_name: true,
            users_default_limit: 10,
            users_max_limit: 200,
            users_newest_first: true,
            users_scope: "scim:read".into(),
        }
    }
}

impl Config {
    /// The generic engine's `travelperk` profile with this configuration's
    /// SCIM switches.
    fn scim(&self) -> scim::Config {
        let base_path = self.scim_base_path.trim_end_matches('/').to_owned();
        let extra_base_paths =
            if self.legacy_prefix { vec![format!("{LEGACY_PREFIX}{base_path}")] } else { Vec::new() };
        scim::Config {
            seed: self.seed,
            tokens: Vec::new(),
            base_path,
            extra_base_paths,
            base_url: self.scim_base_url.clone(),
            max_results: self.max_results,
            delete_deactivates: self.delete == DeleteMode::Deactivate,
            travel_policies: self.travel_policies.clone(),
            invoice_profiles: self.invoice_profiles.clone(),
            emails_filter_on_user_name: self.emails_filter_on_user_name,
            rate_limit: None,
            ..scim::Config::profile(Profile::TravelPerk)
        }
    }
}

/// What the token endpoint answers (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub refresh_token: String,
    /// Space-separated.
    pub scope: String,
}

/// A token as the simulator holds it, for tests that look inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub client_id: String,
    pub scopes: Vec<String>,
    /// Simulated time after which it is refused.
    pub expires_at: i64,
}

/// The simulated TravelPerk account, shared as `Arc<TravelPerkSim>`.
pub struct TravelPerkSim {
    config: Config,
    scim: Arc<ScimSim>,
    auth: Mutex<Auth>,
    limiter: Option<WindowLimiter>,
}

/// Credentials: API keys and what the OAuth flow handed out.
struct Auth {
    ids: IdSequence,
    api_keys: BTreeSet<String>,
    codes: HashMap<String, Code>,
    access: HashMap<String, TokenInfo>,
    refresh: HashMap<String, Grant>,
}

impl Auth {
    fn new(config: &Config) -> Auth {
        Auth {
            ids: IdSequence::new(config.seed),
            api_keys: config.api_keys.iter().cloned().collect(),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
        }
    }
}

/// An authorization code waiting to be exchanged.
struct Code {
    client_id: String,
    /// As sent to the authorize endpoint; the exchange must repeat it.
    redirect_uri: Option<String>,
    scopes: Vec<String>,
    expires_at: i64,
}

/// What a refresh token stands for.
#[derive(Clone)]
struct Grant {
    client_id: String,
    scopes: Vec<String>,
}

impl TravelPerkSim {
    pub fn new(config: Config) -> Arc<Self> {
        let limiter =
            config.rate_limit.map(|l| WindowLimiter::new(&[(Duration::from_secs(l.per_secs), l.requests)]));
        Arc::new(TravelPerkSim {
            scim: ScimSim::new(config.scim()),
            auth: Mutex::new(Auth::new(&config)),
            limiter,
            config,
        })
    }

    /// The API, the OAuth endpoints and the `/_sim` back door.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .merge(common::back_door::<TravelPerkSim>())
            .route("/_sim/users", get(sim_users).post(sim_seed_user))
            .route("/_sim/users/{id}", axum::routing::patch(sim_change_user).delete(sim_remove_user))
            .route("/_sim/travel_policies", get(sim_travel_policies).post(sim_add_travel_policy))
            .route("/_sim/travel_policies/{name}", delete(sim_remove_travel_policy))
            .route("/_sim/invoice_profiles", get(sim_invoice_profiles).post(sim_add_invoice_profile))
            .route("/_sim/invoice_profiles/{name}", delete(sim_remove_invoice_profile))
            .route("/_sim/api_keys", post(sim_add_api_key))
            .route("/_sim/api_keys/{key}", delete(sim_revoke_api_key))
            .route("/_sim/tokens", post(sim_issue_token).delete(sim_revoke_tokens))
            .fallback(api)
            .with_state(self.clone())
    }

    /// Serves on `127.0.0.1:port` (0 picks a free port).
    pub async fn start(config: Config, port: u16) -> std::io::Result<(Arc<Self>, Running)> {
        let sim = Self::new(config);
        let running = common::serve(sim.router(), port).await?;
        if sim.config.scim_base_url.is_none() {
            sim.scim.set_base_url(&format!("{}{}", running.base_url(), sim.scim.config().base_path));
        }
        Ok((sim, running))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The embedded SCIM engine, for what this type does not wrap.
    pub fn scim(&self) -> &Arc<ScimSim> {
        &self.scim
    }

    /// Every request: OAuth, SCIM and REST, in arrival order.
    pub fn log(&self) -> &RequestLog {
        self.scim.log()
    }

    pub fn faults(&self) -> &Faults {
        self.scim.faults()
    }

    /// Token expiry and SCIM timestamps both follow it.
    pub fn clock(&self) -> &Clock {
        self.scim.clock()
    }

    /// Creates a user out of band, as an admin in TravelPerk would; the same
    /// checks as SCIM apply (uniqueness, travel policy, manager).
    pub fn seed_user(&self, user: &Value) -> Result<Value, ScimError> {
        self.scim.seed(Kind::User, user)
    }

    /// Changes a user out of band: each key replaces that attribute, `null`
    /// removes it.
    pub fn change_user(&self, id: &str, changes: &Value) -> Result<Value, ScimError> {
        self.scim.change(Kind::User, id, changes)
    }

    /// Deletes a user out of band; false if there was none.
    pub fn remove_user(&self, id: &str) -> bool {
        self.scim.remove(Kind::User, id)
    }

    /// Every user as SCIM shows it, oldest first.
    pub fn users(&self) -> Vec<Value> {
        self.scim.resources(Kind::User)
    }

    pub fn user(&self, id: &str) -> Option<Value> {
        self.scim.resource(Kind::User, id)
    }

    pub fn travel_policies(&self) -> Vec<String> {
        self.scim.travel_policies()
    }

    pub fn add_travel_policy(&self, name: &str) -> bool {
        self.scim.add_travel_policy(name)
    }

    pub fn remove_travel_policy(&self, name: &str) -> bool {
        self.scim.remove_travel_policy(name)
    }

    pub fn invoice_profiles(&self) -> Vec<String> {
        self.scim.invoice_profiles()
    }

    pub fn add_invoice_profile(&self, name: &str) -> bool {
        self.scim.add_invoice_profile(name)
    }

    pub fn remove_invoice_profile(&self, name: &str) -> bool {
        self.scim.remove_invoice_profile(name)
    }

    /// Creates an API key, as an admin would under Developers.
    pub fn add_api_key(&self, key: &str) {
        self.auth().api_keys.insert(key.to_owned());
    }

    /// Revokes an API key; false if there was none.
    pub fn revoke_api_key(&self, key: &str) -> bool {
        self.auth().api_keys.remove(key)
    }

    /// Issues tokens without the browser round trip, as if `client_id` had
    /// completed the flow for `scopes`.
    pub fn issue_token(&self, client_id: &str, scopes: &[&str]) -> TokenSet {
        let grant =
            Grant { client_id: client_id.to_owned(), scopes: scopes.iter().map(|s| s.to_string()).collect() };
        self.tokens(&mut self.auth(), grant, None)
    }

    /// What an access token stands for, expired or not.
    pub fn token(&self, access_token: &str) -> Option<TokenInfo> {
        self.auth().access.get(access_token).cloned()
    }

    /// Revokes every access and refresh token (as a user disconnecting the
    /// app would); API keys stay.
    pub fn revoke_tokens(&self) {
        let mut auth = self.auth();
        auth.access.clear();
        auth.refresh.clear();
        auth.codes.clear();
    }

    /// Forgets users, tokens, the log, faults and rate-limit history;
    /// restores the configured keys, travel policies and invoice profiles,
    /// and restarts the id sequences (the clock keeps its offset).
    pub fn reset(&self) {
        self.scim.reset();
        *self.auth() = Auth::new(&self.config);
        if let Some(limiter) = &self.limiter {
            limiter.clear();
        }
    }

    fn auth(&self) -> MutexGuard<'_, Auth> {
        self.auth.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Mints an access token (and a refresh token, unless `keep_refresh`
    /// names the one to hand back again).
    fn tokens(&self, auth: &mut Auth, grant: Grant, keep_refresh: Option<String>) -> TokenSet {
        let ttl = self.config.access_token_ttl_secs;
        let access_token = format!("{}{}", auth.ids.next("tpat_"), auth.ids.next(""));
        let info = TokenInfo {
            client_id: grant.client_id.clone(),
            scopes: grant.scopes.clone(),
            expires_at: self.clock().now() + ttl,
        };
        auth.access.insert(access_token.clone(), info);
        let scope = grant.scopes.join(" ");
        let refresh_token = keep_refresh.unwrap_or_else(|| {
            let token = format!("{}{}", auth.ids.next("tprt_"), auth.ids.next(""));
            auth.refresh.insert(token.clone(), grant);
            token
        });
        TokenSet { access_token, token_type: "Bearer".into(), expires_in: ttl, refresh_token, scope }
    }
}

// ---------------------------------------------------------------------------
// Admission: Api-Version, credential, rate limit, scope

/// Why a request may not proceed, before any surface renders it.
struct Denial {
    status: u16,
    message: String,
    headers: Vec<(&'static str, String)>,
}

impl Denial {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Denial { status, message: message.into(), headers: Vec::new() }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn into_refusal(self) -> Refusal {
        Refusal { error: ScimError::new(self.status, None, self.message), headers: self.headers }
    }

    fn into_reply(self) -> Reply {
        Reply { headers: self.headers, ..Reply::json(self.status, json!({ "detail": self.message })) }
    }
}

/// The outcome of the checks, and whose budget the request counted against.
struct Verdict {
    result: Result<(), Denial>,
    credential: Option<String>,
}

/// A caller the credential check accepted.
struct Caller {
    /// The rate-limit key.
    key: String,
    /// A token's scopes; None for an API key, which has every scope.
    scopes: Option<Vec<String>>,
}

impl TravelPerkSim {
    fn admit(&self, headers: &HeaderMap, scope: &str) -> Verdict {
        if let Some(status) = self.config.api_version_status
            && header_text(headers, "api-version").map(str::trim) != Some(API_VERSION)
        {
            let denial =
                Denial::new(status, "The Api-Version header is missing or unsupported; send Api-Version: 1.");
            return Verdict { result: Err(denial), credential: None };
        }
        let caller = match self.caller(headers) {
            Ok(caller) => caller,
            Err(denial) => return Verdict { result: Err(denial), credential: None },
        };
        let credential = Some(caller.key.clone());
        if let Some(limiter) = &self.limiter
            && let Err(wait) = limiter.check(&caller.key)
        {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut denial =
                Denial::new(429, format!("Request was throttled. Expected available in {secs} seconds."));
            if self.config.retry_after {
                denial = denial.header("retry-after", secs.to_string());
            }
            return Verdict { result: Err(denial), credential };
        }
        if let Some(scopes) = &caller.scopes
            && !scopes.iter().any(|s| s == scope)
        {
            let message = format!(
                "You do not have permission to perform this action: the token lacks the `{scope}` scope."
            );
            let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"");
            let denial = Denial::new(403, message).header("www-authenticate", challenge);
            return Verdict { result: Err(denial), credential };
        }
        Verdict { result: Ok(()), credential }
    }

    fn caller(&self, headers: &HeaderMap) -> Result<Caller, Denial> {
        let authorization = header_text(headers, "authorization").unwrap_or("").trim();
        let (scheme, value) = authorization.split_once(' ').unwrap_or((authorization, ""));
        let value = value.trim();
        let auth = self.auth();
        if scheme.eq_ignore_ascii_case("apikey") {
            return if auth.api_keys.contains(value) {
                Ok(Caller { key: format!("apikey:{value}"), scopes: None })
            } else {
                Err(Denial::new(401, "Invalid API key."))
            };
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            let invalid = |why: &str| {
                let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{why}\"");
                Denial::new(401, format!("Invalid token: {why}.")).header("www-authenticate", challenge)
            };
            let token = auth.access.get(value).ok_or_else(|| invalid("unknown or revoked access token"))?;
            if self.clock().now() >= token.expires_at {
                return Err(invalid("the access token expired"));
            }
            return Ok(Caller {
                key: format!("client:{}", token.client_id),
                scopes: Some(token.scopes.clone()),
            });
        }
        Err(Denial::new(401, "Authentication credentials were not provided.")
            .header("www-authenticate", "ApiKey realm=\"api\", Bearer realm=\"api\""))
    }

    /// `RateLimit-*` headers for the credential, when switched on.
    fn rate_headers(&self, credential: Option<&str>) -> Vec<(&'static str, String)> {
        let (Some(limiter), Some(key), true) = (&self.limiter, credential, self.config.rate_limit_headers)
        else {
            return Vec::new();
        };
        let (limit, remaining, reset) = limiter.headroom(key);
        vec![
            ("ratelimit-limit", limit.to_string()),
            ("ratelimit-remaining", remaining.to_string()),
            ("ratelimit-reset", (reset.as_secs_f64().ceil() as u64).to_string()),
        ]
    }
}

/// The scope a SCIM request needs [T: read, write and delete scopes].
fn scim_scope(method: &Method) -> &'static str {
    match *method {
        Method::GET | Method::HEAD => "scim:read",
        Method::DELETE => "scim:delete",
        _ => "scim:write",
    }
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

// ---------------------------------------------------------------------------
// Answers outside the SCIM engine

/// A response before it becomes HTTP.
struct Reply {
    status: u16,
    body: Option<Value>,
    /// A proxy's HTML page.
    html: bool,
    /// A redirect target.
    location: Option<String>,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Reply { status, body: Some(body), html: false, location: None, headers: Vec::new() }
    }

    fn detail(status: u16, detail: impl Into<String>) -> Self {
        Reply::json(status, json!({ "detail": detail.into() }))
    }

    fn redirect(location: String) -> Self {
        Reply { status: 302, body: None, html: false, location: Some(location), headers: Vec::new() }
    }

    /// RFC 6749 §5.2: `invalid_client` is 401, the rest 400.
    fn oauth_error(error: &str, description: impl Into<String>) -> Self {
        let status = if error == "invalid_client" { 401 } else { 400 };
        Reply::json(status, json!({ "error": error, "error_description": description.into() }))
    }

    /// The answer an injected fault gives instead of the work; None when the
    /// work goes ahead (`TimeoutAfterCommit`).
    fn for_fault(fault: &Fault, oauth: bool) -> Option<Reply> {
        let (status, error, detail) = match fault {
            Fault::TimeoutAfterCommit { .. } => return None,
            Fault::Malformed { status } => {
                return Some(Reply { html: true, ..Reply::json(*status, Value::Null) });
            }
            Fault::RateLimited { retry_after } => return Some(Reply::throttled(oauth, *retry_after)),
            Fault::ServerError { status } => {
                (*status, "server_error".to_owned(), "A server error occurred.".to_owned())
            }
            Fault::InBand { code, message } => {
                let detail = message.clone().unwrap_or_else(|| format!("Simulated error: {code}."));
                match code.parse::<u16>() {
                    Ok(status) => (status, "server_error".to_owned(), detail),
                    Err(_) => (400, code.clone(), detail),
                }
            }
        };
        Some(if oauth {
            Reply::json(status, json!({ "error": error, "error_description": detail }))
        } else if error == "server_error" {
            Reply::detail(status, detail)
        } else {
            Reply::json(status, json!({ "detail": detail, "code": error }))
        })
    }

    fn throttled(oauth: bool, retry_after: Option<u64>) -> Reply {
        let mut reply = if oauth {
            Reply::json(
                429,
                json!({"error": "temporarily_unavailable", "error_description": "Too many requests."}),
            )
        } else {
            Reply::detail(429, "Request was throttled.")
        };
        if let Some(secs) = retry_after {
            reply.headers.push(("retry-after", secs.to_string()));
        }
        reply
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = if self.html {
            (status, [(header::CONTENT_TYPE, "text/html")], Fault::PROXY_PAGE).into_response()
        } else {
            match &self.body {
                Some(body) => {
                    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
                }
                None => status.into_response(),
            }
        };
        let location = self.location.map(|l| ("location", l));
        for (name, value) in self.headers.into_iter().chain(location) {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// A request as received, for the handlers outside the SCIM engine.
struct Incoming {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Incoming {
    fn params(&self) -> HashMap<String, String> {
        form_urlencoded::parse(self.uri.query().unwrap_or("").as_bytes()).into_owned().collect()
    }
}

impl TravelPerkSim {
    /// Logs a request the SCIM engine did not (it logs its own) and
    /// answers it, withholding the answer for a `TimeoutAfterCommit` fault.
    async fn finish(&self, req: &Incoming, reply: Reply, fault: Option<&Fault>) -> Response {
        let hold = match fault {
            Some(Fault::TimeoutAfterCommit { secs }) => Some(Duration::from_secs(*secs)),
            _ => None,
        };
        let entry = LoggedRequest::new(req.method.as_str(), &req.uri, &req.headers, &req.body);
        self.log().record(entry, reply.status, fault.map(Fault::label), hold).await;
        reply.into_response()
    }
}

// ---------------------------------------------------------------------------
// The API: SCIM, legacy REST, OAuth

/// Everything outside `/_sim`.
async fn api(
    State(sim): State<Arc<TravelPerkSim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    if sim.scim.serves(&path) {
        let verdict = sim.admit(&headers, scim_scope(&method));
        let rate_headers = sim.rate_headers(verdict.credential.as_deref());
        let admission = verdict.result.map_err(Denial::into_refusal);
        let mut response = sim.scim.serve_embedded(method, uri, headers, body, admission).await;
        for (name, value) in rate_headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        return response;
    }
    let req = Incoming { method, uri, headers, body };
    let legacy = path.strip_prefix(LEGACY_PREFIX).filter(|_| sim.config.legacy_prefix);
    let (reply, fault) = match legacy.unwrap_or(&path) {
        "/users" | "/users/" => sim.legacy_users(&req),
        AUTHORIZE_PATH | "/oauth2/authorize/" if legacy.is_none() => sim.authorize(&req),
        TOKEN_PATH if legacy.is_none() => sim.token_endpoint(&req),
        _ => (Reply::detail(404, "Not found."), None),
    };
    sim.finish(&req, reply, fault.as_ref()).await
}

impl TravelPerkSim {
    /// `GET /users?limit=&offset=` [T]: the same users as SCIM, snake_case.
    fn legacy_users(&self, req: &Incoming) -> (Reply, Option<Fault>) {
        let verdict = self.admit(&req.headers, &self.config.users_scope);
        let rate_headers = self.rate_headers(verdict.credential.as_deref());
        let with_rate = |mut reply: Reply| {
            reply.headers.extend(rate_headers.iter().cloned());
            reply
        };
        if let Err(denial) = verdict.result {
            return (with_rate(denial.into_reply()), None);
        }
        if req.method != Method::GET {
            return (with_rate(Reply::detail(405, format!("Method \"{}\" not allowed.", req.method))), None);
        }
        let fault = self.faults().take("users.legacy_list");
        if let Some(reply) = fault.as_ref().and_then(|f| Reply::for_fault(f, false)) {
            return (with_rate(reply), fault);
        }
        let (limit, offset) = self.page_params(&req.params());
        let mut users = self.users();
        if self.config.users_newest_first {
            users.reverse();
        }
        let total = users.len();
        let page: Vec<Value> = users.iter().skip(offset).take(limit).map(legacy_user).collect();
        let body = json!({ "users": page, "limit": limit, "offset": offset, "total": total });
        (with_rate(Reply::json(200, body)), fault)
    }

    /// `limit` and `offset` the way limit-offset paging reads them.
    fn page_params(&self, params: &HashMap<String, String>) -> (usize, usize) {
        let number = |name: &str| params.get(name).and_then(|v| v.trim().parse::<usize>().ok());
        let limit = number("limit")
            .filter(|l| *l > 0)
            .unwrap_or(self.config.users_default_limit)
            .min(self.config.users_max_limit);
        (limit, number("offset").unwrap_or(0))
    }

    /// `GET /oauth2/authorize`: consents at once and sends the user back
    /// with a code (RFC 6749 §4.1.1–4.1.2).
    fn authorize(&self, req: &Incoming) -> (Reply, Option<Fault>) {
        let fault = self.faults().take("oauth.authorize");
        if let Some(reply) = fault.as_ref().and_then(|f| Reply::for_fault(f, false)) {
            return (reply, fault);
        }
        let params = req.params();
        let param = |name: &str| params.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let Some(client) = param("client_id").and_then(|id| self.client(id)) else {
            // Never redirect to a URI no known client registered (§4.1.2.1);
            // the user's browser gets a plain 400.
            let error =
                json!({"error": "invalid_client", "error_description": "Unknown or missing client_id."});
            return (Reply::json(400, error), fault);
        };
        let redirect_uri = match (param("redirect_uri"), client.redirect_uris.as_slice()) {
            (Some(uri), []) => uri.to_owned(),
            (Some(uri), registered) if registered.iter().any(|r| r == uri) => uri.to_owned(),
            (None, [only]) => only.clone(),
            _ => {
                let reply = Reply::oauth_error("invalid_request", "Missing or unregistered redirect_uri.");
                return (reply, fault);
            }
        };
        let state = param("state");
        let back = |pairs: &[(&str, &str)]| {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.extend_pairs(pairs);
            if let Some(state) = state {
                query.append_pair("state", state);
            }
            let joiner = if redirect_uri.contains('?') { '&' } else { '?' };
            Reply::redirect(format!("{redirect_uri}{joiner}{}", query.finish()))
        };
        if param("response_type") != Some("code") {
            return (back(&[("error", "unsupported_response_type")]), fault);
        }
        let scopes: Vec<String> = match param("scope") {
            Some(scope) => scope.split_whitespace().map(str::to_owned).collect(),
            None => client.scopes.clone(),
        };
        if scopes.iter().any(|s| !client.scopes.contains(s)) {
            return (back(&[("error", "invalid_scope")]), fault);
        }
        if !self.config.auto_consent {
            return (back(&[("error", "access_denied")]), fault);
        }
        let mut auth = self.auth();
        let code = auth.ids.next("tpcode_");
        let expires_at = self.clock().now() + self.config.code_ttl_secs;
        let pending = Code {
            client_id: client.client_id.clone(),
            redirect_uri: param("redirect_uri").map(str::to_owned),
            scopes,
            expires_at,
        };
        auth.codes.insert(code.clone(), pending);
        (back(&[("code", &code)]), fault)
    }

    /// `POST /accounts/oauth2/token/` (RFC 6749 §4.1.3 and §6).
    fn token_endpoint(&self, req: &Incoming) -> (Reply, Option<Fault>) {
        let fault = self.faults().take("oauth.token");
        if let Some(reply) = fault.as_ref().and_then(|f| Reply::for_fault(f, true)) {
            return (reply, fault);
        }
        let reply = self.exchange(req).unwrap_or_else(|e| e);
        (reply, fault)
    }

    fn exchange(&self, req: &Incoming) -> Result<Reply, Reply> {
        if req.method != Method::POST {
            return Err(Reply::oauth_error("invalid_request", "The token endpoint takes POST."));
        }
        let form_type = header_text(&req.headers, "content-type")
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
        if !form_type {
            return Err(Reply::oauth_error(
                "invalid_request",
                "The body must be application/x-www-form-urlencoded.",
            ));
        }
        let form: HashMap<String, String> = form_urlencoded::parse(&req.body).into_owned().collect();
        let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let (client_id, secret) = match basic_credentials(&req.headers) {
            Some((id, secret)) => (Some(id), Some(secret)),
            None => (field("client_id").map(str::to_owned), field("client_secret").map(str::to_owned)),
        };
        // Some(client) once id and secret check out; Err if they were sent wrong.
        let authenticated = match (&client_id, &secret) {
            (Some(id), Some(secret)) => match self.client(id) {
                Some(client) if client.client_secret == *secret => Some(client),
                _ => return Err(Reply::oauth_error("invalid_client", "Client authentication failed.")),
            },
            _ => None,
        };
        let mut auth = self.auth();
        let set = match field("grant_type") {
            Some("authorization_code") => {
                let client = authenticated
                    .ok_or_else(|| Reply::oauth_error("invalid_client", "Client authentication failed."))?;
                let code =
                    field("code").ok_or_else(|| Reply::oauth_error("invalid_request", "Missing code."))?;
                let now = self.clock().now();
                let pending = auth
                    .codes
                    .remove(code)
                    .filter(|c| c.client_id == client.client_id && now < c.expires_at)
                    .ok_or_else(|| {
                        Reply::oauth_error(
                            "invalid_grant",
                            "The code is invalid, expired, used, or not this client's.",
                        )
                    })?;
                if pending.redirect_uri.as_deref().is_some_and(|uri| field("redirect_uri") != Some(uri)) {
                    return Err(Reply::oauth_error(
                        "invalid_grant",
                        "redirect_uri does not match the authorization.",
                    ));
                }
                let grant = Grant { client_id: pending.client_id, scopes: pending.scopes };
                self.tokens(&mut auth, grant, None)
            }
            Some("refresh_token") => {
                if self.config.refresh_requires_client_secret && authenticated.is_none() {
                    return Err(Reply::oauth_error("invalid_client", "Client authentication failed."));
                }
                let token = field("refresh_token")
                    .ok_or_else(|| Reply::oauth_error("invalid_request", "Missing refresh_token."))?;
                let mut grant = auth
                    .refresh
                    .get(token)
                    .filter(|g| client_id.as_deref().is_none_or(|id| id == g.client_id))
                    .cloned()
                    .ok_or_else(|| {
                        Reply::oauth_error(
                            "invalid_grant",
                            "The refresh token is invalid, revoked, or not this client's.",
                        )
                    })?;
                if let Some(scope) = field("scope") {
                    let narrower: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
                    if narrower.iter().any(|s| !grant.scopes.contains(s)) {
                        return Err(Reply::oauth_error(
                            "invalid_scope",
                            "The scope exceeds the original grant.",
                        ));
                    }
                    grant.scopes = narrower;
                }
                if self.config.rotate_refresh_tokens {
                    auth.refresh.remove(token);
                    self.tokens(&mut auth, grant, None)
                } else {
                    self.tokens(&mut auth, grant, Some(token.to_owned()))
                }
            }
            Some(_) => return Err(Reply::oauth_error("unsupported_grant_type", "Unsupported grant_type.")),
            None => return Err(Reply::oauth_error("invalid_request", "Missing grant_type.")),
        };
        let mut reply = Reply::json(200, json!(set));
        reply.headers.push(("cache-control", "no-store".into()));
        reply.headers.push(("pragma", "no-cache".into()));
        Ok(reply)
    }

    fn client(&self, id: &str) -> Option<OAuthClient> {
        self.config.clients.iter().find(|c| c.client_id == id).cloned()
    }
}

/// `Authorization: Basic base64(id:secret)` (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = header_text(headers, "authorization")?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape =
        |s: &str| form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Some((unescape(id)?, unescape(secret)?))
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in text.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|c| *c == byte)? as u32;
        buffer = buffer << 6 | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A SCIM user as the legacy REST API shows it [T: the clients' sample]:
/// absent name parts are `""`, other absent fields `null`, phone numbers
/// bare strings.
fn legacy_user(user: &Value) -> Value {
    let name = |part: &str| user["name"][part].as_str().unwrap_or("").to_owned();
    let phones: Vec<Value> = user["phoneNumbers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("value").cloned())
        .collect();
    json!({
        "id": user["id"],
        "user_name": user["userName"],
        "name": {
            "first_name": name("givenName"), "last_name": name("familyName"),
            "middle_name": name("middleName"), "title": name("honorificPrefix")
        },
        "preferred_language": user.get("preferredLanguage"),
        "locale": user.get("locale"),
        // A user nobody deactivated is active [I].
        "active": user.get("active").and_then(Value::as_bool).unwrap_or(true),
        "job_title": user.get("title"),
        "phone_numbers": phones,
        "emergency_contact": user[schema::TRAVELPERK].get("emergencyContact"),
    })
}

// ---------------------------------------------------------------------------
// The /_sim back door (JSON, no auth: the simulator binds to loopback)

type Sim = State<Arc<TravelPerkSim>>;

fn sim_error(error: ScimError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(error.to_json())).into_response()
}

async fn sim_users(State(sim): Sim) -> Json<Vec<Value>> {
    Json(sim.users())
}

async fn sim_seed_user(State(sim): Sim, Json(body): Json<Value>) -> Response {
    match sim.seed_user(&body) {
        Ok(user) => (StatusCode::CREATED, Json(user)).into_response(),
        Err(error) => sim_error(error),
    }
}

async fn sim_change_user(State(sim): Sim, Path(id): Path<String>, Json(body): Json<Value>) -> Response {
    match sim.change_user(&id, &body) {
        Ok(user) => Json(user).into_response(),
        Err(error) => sim_error(error),
    }
}

async fn sim_remove_user(State(sim): Sim, Path(id): Path<String>) -> StatusCode {
    if sim.remove_user(&id) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

async fn sim_travel_policies(State(sim): Sim) -> Json<Vec<String>> {
    Json(sim.travel_policies())
}

async fn sim_add_travel_policy(State(sim): Sim, Json(named): Json<Named>) -> StatusCode {
    if sim.add_travel_policy(&named.name) { StatusCode::CREATED } else { StatusCode::OK }
}

async fn sim_remove_travel_policy(State(sim): Sim, Path(name): Path<String>) -> StatusCode {
    if sim.remove_travel_policy(&name) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

async fn sim_invoice_profiles(State(sim): Sim) -> Json<Vec<String>> {
    Json(sim.invoice_profiles())
}

async fn sim_add_invoice_profile(State(sim): Sim, Json(named): Json<Named>) -> StatusCode {
    if sim.add_invoice_profile(&named.name) { StatusCode::CREATED } else { StatusCode::OK }
}

async fn sim_remove_invoice_profile(State(sim): Sim, Path(name): Path<String>) -> StatusCode {
    if sim.remove_invoice_profile(&name) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

#[derive(Deserialize)]
struct NewKey {
    key: String,
}

async fn sim_add_api_key(State(sim): Sim, Json(new): Json<NewKey>) -> StatusCode {
    sim.add_api_key(&new.key);
    StatusCode::NO_CONTENT
}

async fn sim_revoke_api_key(State(sim): Sim, Path(key): Path<String>) -> StatusCode {
    if sim.revoke_api_key(&key) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

#[derive(Deserialize)]
struct NewToken {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

/// Tokens for a client (the first configured one by default) with the given
/// scopes (all of the client's by default).
async fn sim_issue_token(State(sim): Sim, Json(new): Json<NewToken>) -> Response {
    let client_id = new.client_id.or_else(|| sim.config.clients.first().map(|c| c.client_id.clone()));
    let Some(client) = client_id.and_then(|id| sim.client(&id)) else {
        return (StatusCode::NOT_FOUND, Json(json!({"detail": "No such client."}))).into_response();
    };
    let scopes = new.scopes.unwrap_or(client.scopes);
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    Json(sim.issue_token(&client.client_id, &scopes)).into_response()
}

async fn sim_revoke_tokens(State(sim): Sim) -> StatusCode {
    sim.revoke_tokens();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode() {
        let mut headers = HeaderMap::new();
        // base64("id%3Ax:s3cret")
        headers.insert("authorization", HeaderValue::from_static("Basic aWQlM0F4OnMzY3JldA=="));
        assert_eq!(basic_credentials(&headers), Some(("id:x".into(), "s3cret".into())));
        headers.insert("authorization", HeaderValue::from_static("Bearer aWQ6cw=="));
        assert_eq!(basic_credentials(&headers), None);
    }

    #[test]
    fn scim_scopes_follow_the_method() {
        assert_eq!(scim_scope(&Method::GET), "scim:read");
        assert_eq!(scim_scope(&Method::PATCH), "scim:write");
        assert_eq!(scim_scope(&Method::PUT), "scim:write");
        assert_eq!(scim_scope(&Method::POST), "scim:write");
        assert_eq!(scim_scope(&Method::DELETE), "scim:delete");
    }

    #[test]
    fn legacy_users_are_snake_case_with_empty_name_parts() {
        let user = json!({"id": "8", "userName": "boss@test.com", "name": {"givenName": "Boss"},
            "phoneNumbers": [{"value": "+34 1", "type": "work"}], "title": "Boss",
            schema::TRAVELPERK: {"emergencyContact": {"name": "M", "phone": "+34 2"}}});
        assert_eq!(
            legacy_user(&user),
            json!({"id": "8", "user_name": "boss@test.com",
                "name": {"first_name": "Boss", "last_name": "", "middle_name": "", "title": ""},
                "preferred_language": null, "locale": null, "active": true, "job_title": "Boss",
                "phone_numbers": ["+34 1"], "emergency_contact": {"name": "M", "phone": "+34 2"}})
        );
    }
}
