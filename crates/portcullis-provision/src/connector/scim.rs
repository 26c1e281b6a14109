//! Any SCIM 2.0 service provider (RFC 7643/7644), written to the RFCs and to
//! what `../shared/spec/connectors.md` §5 and §7 record of real servers:
//!
//! - discovery: `/ServiceProviderConfig` is read once per app (cached) for
//!   PATCH, ETag and `filter.maxResults` support; a server that does not
//!   serve it is taken to have PATCH and no ETags;
//! - no create without a lookup: `externalId eq` (the Portcullis user id,
//!   which the hub writes) and then `userName eq`, and a 409 `uniqueness`
//!   after a retried create is looked up and linked, never a failure;
//! - updates as path-ful PATCH `replace`/`remove` operations in the RFC's
//!   lower-case dialect, or GET-then-PUT (with `If-Match` where the server
//!   has ETags, re-read on 412) when PATCH is not supported, keeping what
//!   the hub does not manage;
//! - roster reads page by `startIndex` until `totalResults`, never trusting
//!   that the server honoured `count`; a page that ends early fails the read;
//! - DELETE answered 404 is the goal reached.
//!
//! `userName` is the user's email, `externalId` the Portcullis user id,
//! `emails` one primary work address; the mapped attributes are SCIM paths
//! (`name.givenName`, `urn:…:enterprise:2.0:User:department`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use portcullis_core::services::apps::{
    Credentials, SCIM_CORE_ATTRIBUTES, SCIM_ENTERPRISE, SCIM_ENTERPRISE_ATTRIBUTES, TRAVELPERK_EXTENSION,
    TRAVELPERK_EXTENSION_ATTRIBUTES,
};
use portcullis_store::model::App;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::http::{ConnectorError, Throttle, read_with_retries, retry_after};
use super::{AccountStatus, Applied, Desired, Job, Op, RemoteAccount, text};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The attribute the hub renders an app's managed groups into (their names,
/// sorted), from `settings.group_roles`.
pub const GROUPS: &str = "groups";
/// Member changes per group PATCH: AWS IAM Identity Center refuses more [T].
const MEMBERS_PER_PATCH: usize = 100;
const MEDIA_TYPE: &str = "application/scim+json";
/// The page size asked for; servers may answer with less.
const PAGE: usize = 100;
/// How long a server's advertised capabilities are trusted.
const DISCOVERY_TTL: Duration = Duration::from_secs(600);
/// Reads and writes of one GET-then-PUT that lost a race (412).
const PRECONDITION_ATTEMPTS: u32 = 3;
const DEFAULT_RPS: usize = 10;
/// The attribute the hub renders a user's manager into (their email), for
/// apps that take the manager by reference (TravelPerk).
pub const MANAGER: &str = "manager";
const TRAVELPERK_RPS: usize = 5;

/// What the server advertises in `/ServiceProviderConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Capabilities {
    patch: bool,
    etag: bool,
    /// `filter.maxResults`: the largest page worth asking for.
    max_results: usize,
}

impl Capabilities {
    /// For a server without discovery: PATCH is the RFC's and every client's
    /// way to change a user; ETags are optional.
    const ASSUMED: Capabilities = Capabilities { patch: true, etag: false, max_results: PAGE };

    fn parse(config: &Value) -> Capabilities {
        let supported =
            |feature: &str| config.pointer(&format!("/{feature}/supported")).and_then(Value::as_bool);
        let max_results = config
            .pointer("/filter/maxResults")
            .and_then(Value::as_u64)
            .filter(|n| *n > 0)
            .map_or(PAGE, |n| (n as usize).min(PAGE));
        Capabilities {
            patch: supported("patch").unwrap_or(true),
            etag: supported("etag").unwrap_or(false),
            max_results,
        }
    }
}

/// Discovery answers per app, base URL and token, for [`DISCOVERY_TTL`].
static DISCOVERED: LazyLock<Mutex<HashMap<String, (Instant, Capabilities)>>> =
    LazyLock::new(Default::default);

/// How the connector signs its requests.
enum Authorization {
    /// RFC 7644's usual scheme: `Bearer <token>`.
    Bearer(String),
    /// TravelPerk's: `ApiKey <key>` [T].
    ApiKey(String),
}

pub struct Scim {
    base: String,
    authorization: Authorization,
    /// Sent on every request (TravelPerk's `Api-Version: 1` [T]).
    headers: &'static [(&'static str, &'static str)],
    /// The wait after a 429 that names none (TravelPerk: 60 s, as Payhawk's
    /// production client waits [T]).
    default_retry_after: Option<Duration>,
    /// TravelPerk: the manager, rendered as an email, is set by the
    /// manager's own id once both exist (two-phase, managers first [D]).
    managers: bool,
    /// Names the app's cache entry and throttle bucket without the token.
    bucket: String,
    requests_per_second: usize,
    pathless_deactivate: bool,
    /// Stripe's Dashboard: `userName` (the email) cannot change and only
    /// `displayName` and `active` are kept [D], so updates send just those.
    fixed_identity: bool,
    /// The groups the hub keeps (the names in `settings.group_roles`);
    /// every other group is the app's own and never touched.
    managed_groups: Option<BTreeSet<String>>,
    client: reqwest::Client,
    throttle: Arc<Throttle>,
}

/// A refused or failed call, with what the caller may act on.
struct Failure {
    status: Option<u16>,
    scim_type: Option<String>,
    error: ConnectorError,
}

impl From<Failure> for ConnectorError {
    fn from(failure: Failure) -> Self {
        failure.error
    }
}

/// A successful answer: its body (none for 204) and its `ETag`.
struct Answer {
    body: Option<Value>,
    etag: Option<String>,
}

impl Scim {
    pub fn new(
        app: &App,
        credentials: Credentials,
        client: reqwest::Client,
        throttle: Arc<Throttle>,
    ) -> Result<Self, ConnectorError> {
        let travelperk = app.kind == "travelperk";
        let (authorization, secret) = if travelperk {
            let key = credentials
                .api_key
                .ok_or_else(|| ConnectorError::permanent("the app has no TravelPerk API key"))?;
            (Authorization::ApiKey(key.clone()), key)
        } else {
            let token = credentials
                .bearer_token
                .ok_or_else(|| ConnectorError::permanent("the app has no SCIM bearer token"))?;
            (Authorization::Bearer(token.clone()), token)
        };
        let settings = &app.settings.0;
        let base = app.base_url.trim_end_matches('/');
        let bucket = format!("scim:{}:{}", app.id, super::fingerprint(&format!("{base}\n{secret}")));
        Ok(Scim {
            // TravelPerk's SCIM API is `/scim` on the API host [T].
            base: if travelperk { format!("{base}/scim") } else { base.to_owned() },
            authorization,
            headers: if travelperk { &[("api-version", "1")] } else { &[] },
            default_retry_after: travelperk.then_some(Duration::from_secs(60)),
            managers: travelperk,
            bucket,
            requests_per_second: settings.get("requests_per_second").and_then(Value::as_u64).map_or(
                // TravelPerk publishes no numbers: start conservatively [spec §7].
                if travelperk { TRAVELPERK_RPS } else { DEFAULT_RPS },
                |n| n as usize,
            ),
            pathless_deactivate: settings.get("deactivate_style").and_then(Value::as_str) == Some("pathless"),
            fixed_identity: app.kind == "stripe_dashboard",
            managed_groups: settings
                .get("group_roles")
                .and_then(Value::as_object)
                .map(|roles| roles.values().filter_map(Value::as_str).map(str::to_owned).collect()),
            client,
            throttle,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Answer, Failure> {
        self.throttle
            .acquire(&[(self.bucket.clone(), Duration::from_secs(1), self.requests_per_second)])
            .await;
        let mut request =
            self.client.request(method, format!("{}{path}", self.base)).header("accept", MEDIA_TYPE);
        request = match &self.authorization {
            Authorization::Bearer(token) => request.bearer_auth(token),
            Authorization::ApiKey(key) => request.header("authorization", format!("ApiKey {key}")),
        };
        for (name, value) in self.headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.header("content-type", MEDIA_TYPE).body(body.to_string());
        }
        if let Some(version) = if_match {
            request = request.header("if-match", version);
        }
        let failed = |error: ConnectorError| Failure { status: None, scim_type: None, error };
        let response = request.send().await.map_err(|e| failed(ConnectorError::from_reqwest(e)))?;
        let status = response.status().as_u16();
        let after =
            retry_after(response.headers()).or(if status == 429 { self.default_retry_after } else { None });
        let etag = response.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = response.bytes().await.map_err(|e| failed(ConnectorError::from_reqwest(e)))?;
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        if (200..300).contains(&status) {
            if body.is_none() && status != 204 && !bytes.is_empty() {
                // A proxy's page with a 200, or a truncated body.
                return Err(failed(ConnectorError::transient(
                    "the SCIM server answered without JSON",
                    after,
                )));
            }
            return Ok(Answer { body, etag });
        }
        // RFC 7644 §3.12: `status` (a string), `scimType`, `detail`.
        let object = body.as_ref().and_then(Value::as_object);
        let scim_type = object.and_then(|e| text(e, "scimType"));
        let detail = object.and_then(|e| text(e, "detail")).unwrap_or_else(|| format!("HTTP {status}"));
        let described = match &scim_type {
            Some(kind) => format!("SCIM {status} {kind}: {detail}"),
            None => format!("SCIM {status}: {detail}"),
        };
        let error = match status {
            404 => ConnectorError::not_found(described),
            429 | 500 | 502 | 503 | 504 => {
                let mut error = ConnectorError::transient(described, after);
                error.answered_server_error = status >= 500;
                error
            }
            _ => ConnectorError::permanent(described),
        };
        Err(Failure { status: Some(status), scim_type, error })
    }

    /// The server's capabilities, from the cache or `/ServiceProviderConfig`.
    async fn capabilities(&self) -> Result<Capabilities, ConnectorError> {
        if let Some((at, known)) = DISCOVERED.lock().unwrap().get(&self.bucket)
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(*known);
        }
        let found = match self.send(Method::GET, "/ServiceProviderConfig", None, None).await {
            Ok(Answer { body: Some(config), .. }) => Capabilities::parse(&config),
            Ok(Answer { body: None, .. }) => Capabilities::ASSUMED,
            // Not served (404, 501, 403 for a token scoped to Users).
            Err(failure) if failure.error.retry == super::Retry::Never => Capabilities::ASSUMED,
            Err(failure) => return Err(failure.error),
        };
        DISCOVERED.lock().unwrap().insert(self.bucket.clone(), (Instant::now(), found));
        Ok(found)
    }

    pub async fn roster(
        &self,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<RemoteAccount>, ConnectorError> {
        let count = self.capabilities().await?.max_results;
        let mut accounts: Vec<RemoteAccount> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut start = 1usize;
        loop {
            let path = format!("/Users?startIndex={start}&count={count}");
            let page = read_with_retries(|| async {
                let answer = self.send(Method::GET, &path, None, None).await?;
                answer
                    .body
                    .ok_or_else(|| ConnectorError::transient("a SCIM list answer without a body", None))
            })
            .await?;
            let total =
                page.get("totalResults").and_then(Value::as_u64).ok_or_else(|| {
                    ConnectorError::transient("a SCIM list answer without totalResults", None)
                })? as usize;
            let resources =
                page.get("Resources").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            for resource in resources {
                let Some(mut account) = remote(resource) else { continue };
                self.keep_managed_groups(&mut account.attributes);
                // A user that moved between pages while we read is kept once.
                match seen.get(&account.external_id) {
                    Some(&at) => accounts[at] = account,
                    None => {
                        seen.insert(account.external_id.clone(), accounts.len());
                        accounts.push(account);
                    }
                }
            }
            progress(accounts.len());
            start += resources.len();
            if start > total {
                // Managers are held by id; the hub compares logins.
                let logins: HashMap<String, String> = accounts
                    .iter()
                    .filter_map(|a| Some((a.external_id.clone(), a.login.clone()?.to_lowercase())))
                    .collect();
                for account in &mut accounts {
                    if let Some(login) =
                        account.attributes.get(MANAGER).and_then(Value::as_str).and_then(|id| logins.get(id))
                    {
                        account.attributes.insert(MANAGER.into(), json!(login));
                    }
                }
                return Ok(accounts);
            }
            if resources.is_empty() {
                // Short of totalResults with nothing more to read: a partial
                // roster, from which no deactivation may be derived.
                return Err(ConnectorError::transient(
                    format!("the SCIM server listed {} of {total} users and then an empty page", start - 1),
                    None,
                ));
            }
        }
    }

    pub async fn apply(&self, jobs: &[Job<'_>]) -> Vec<Result<Applied, ConnectorError>> {
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            let mut result = self.apply_one(&job.request.op).await;
            if let Ok(applied) = &mut result {
                self.keep_managed_groups(&mut applied.attributes);
            }
            results.push(result);
        }
        let Some(managed) = &self.managed_groups else { return results };
        // Membership after the users exist: the batch's changes per group,
        // in as few PATCHes as the server takes.
        let mut wanted: Vec<(usize, String, BTreeSet<String>)> = Vec::new();
        for (at, (job, result)) in jobs.iter().zip(&results).enumerate() {
            let (
                Ok(applied),
                Op::Create { desired } | Op::Update { desired, .. } | Op::Replace { desired, .. },
            ) = (result, &job.request.op)
            else {
                continue;
            };
            let names = desired.attributes.get(GROUPS).and_then(Value::as_array).map(|names| {
                names.iter().filter_map(Value::as_str).map(str::to_owned).collect::<BTreeSet<_>>()
            });
            if let Some(names) = names {
                wanted.push((at, applied.external_id.clone(), names));
            }
        }
        if wanted.is_empty() {
            return results;
        }
        let members: Vec<(&str, &BTreeSet<String>)> =
            wanted.iter().map(|(_, id, names)| (id.as_str(), names)).collect();
        match self.sync_memberships(managed, &members).await {
            Ok(()) => {
                for (at, _, names) in &wanted {
                    if let Ok(applied) = &mut results[*at] {
                        applied.attributes.insert(GROUPS.into(), json!(names));
                    }
                }
            }
            // The users' steps are retried: their writes are idempotent and
            // the membership is worked out again from the groups.
            Err(error) => {
                for (at, _, _) in &wanted {
                    results[*at] = Err(error.clone());
                }
            }
        }
        results
    }

    /// Brings each managed group's membership, for these users only, to
    /// what they should have: adds and removes in chunks the server takes.
    async fn sync_memberships(
        &self,
        managed: &BTreeSet<String>,
        users: &[(&str, &BTreeSet<String>)],
    ) -> Result<(), ConnectorError> {
        for name in managed {
            let joining: Vec<&str> =
                users.iter().filter(|(_, g)| g.contains(name)).map(|(id, _)| *id).collect();
            let group = match self.group_named(name).await? {
                Some(group) => group,
                None if joining.is_empty() => continue,
                None => self.create_group(name).await?,
            };
            let id = text_at(&group, "id")
                .ok_or_else(|| ConnectorError::transient("a SCIM group without an id", None))?;
            let present: HashSet<&str> = group
                .get("members")
                .and_then(Value::as_array)
                .map(|m| m.iter().filter_map(|m| text_at(m, "value")).collect())
                .unwrap_or_default();
            let add: Vec<&str> = joining.iter().copied().filter(|u| !present.contains(u)).collect();
            let remove: Vec<&str> = users
                .iter()
                .filter(|(user, groups)| !groups.contains(name) && present.contains(user))
                .map(|(user, _)| *user)
                .collect();
            for operations in member_operations(&add, &remove, MEMBERS_PER_PATCH) {
                if !self.capabilities().await?.patch {
                    return Err(ConnectorError::permanent(
                        "the SCIM server has no PATCH, which group membership needs",
                    ));
                }
                let body = json!({"schemas": [PATCH_SCHEMA], "Operations": operations});
                self.send(Method::PATCH, &format!("/Groups/{}", encode(id)), Some(&body), None).await?;
            }
        }
        Ok(())
    }

    async fn group_named(&self, name: &str) -> Result<Option<Value>, ConnectorError> {
        let filter = format!("displayName eq \"{}\"", escape_filter(name));
        let answer =
            self.send(Method::GET, &format!("/Groups?filter={}", encode(&filter)), None, None).await?;
        Ok(answer
            .body
            .and_then(|b| b.get("Resources").and_then(Value::as_array).cloned())
            .unwrap_or_default()
            .into_iter()
            .find(|g| text_at(g, "displayName") == Some(name)))
    }

    async fn create_group(&self, name: &str) -> Result<Value, ConnectorError> {
        let body = json!({"schemas": [GROUP_SCHEMA], "displayName": name});
        match self.send(Method::POST, "/Groups", Some(&body), None).await {
            Ok(Answer { body: Some(group), .. }) => Ok(group),
            Ok(_) => {
                Err(ConnectorError::transient("the SCIM server created a group without answering it", None))
            }
            // Made meanwhile (or by an attempt whose answer was lost).
            Err(failure) if failure.status == Some(409) => self.group_named(name).await?.ok_or_else(|| {
                ConnectorError::transient(format!("the group {name} exists but cannot be found"), None)
            }),
            Err(failure) => Err(failure.error),
        }
    }

    /// Keeps only the hub's groups in an account's attributes (or none,
    /// where the app has no `group_roles`), so the app's own groups are
    /// never drift.
    fn keep_managed_groups(&self, attributes: &mut Map<String, Value>) {
        let Some(managed) = &self.managed_groups else {
            attributes.remove(GROUPS);
            return;
        };
        let names: BTreeSet<&str> = attributes
            .get(GROUPS)
            .and_then(Value::as_array)
            .map(|g| g.iter().filter_map(Value::as_str).filter(|n| managed.contains(*n)).collect())
            .unwrap_or_default();
        attributes.insert(GROUPS.into(), json!(names));
    }

    /// How many jobs one `apply` takes: more where groups are managed, so
    /// a large change reaches each group in few PATCHes.
    pub fn batch_size(&self) -> usize {
        if self.managed_groups.is_some() { 200 } else { 50 }
    }

    async fn apply_one(&self, op: &Op) -> Result<Applied, ConnectorError> {
        match op {
            Op::Create { desired } => {
                let applied = self.create(desired).await?;
                self.set_manager(applied, desired).await
            }
            Op::Update { external_id, desired } => {
                let applied = self.update(external_id, desired).await?;
                self.set_manager(applied, desired).await
            }
            Op::Replace { external_id, desired } => {
                // The old account goes first: the new one must not be found
                // by a lookup and "adopted" as the old one.
                match self.send(Method::DELETE, &user_path(external_id), None, None).await {
                    Ok(_) => {}
                    Err(failure) if failure.error.not_found => {}
                    Err(failure) => return Err(failure.error),
                }
                let applied = self.create(desired).await?;
                self.set_manager(applied, desired).await
            }
            Op::Manual { .. } => Err(ConnectorError::permanent("a manual step is a person's to do")),
            Op::Deactivate { external_id, .. } => self.deactivate(external_id).await,
            Op::Delete { external_id } => {
                match self.send(Method::DELETE, &user_path(external_id), None, None).await {
                    Ok(_) => {}
                    Err(failure) if failure.error.not_found => {}
                    Err(failure) => return Err(failure.error),
                }
                Ok(Applied {
                    external_id: external_id.clone(),
                    login: None,
                    status: AccountStatus::Deleted,
                    attributes: Map::new(),
                })
            }
        }
    }

    async fn create(&self, desired: &Desired) -> Result<Applied, ConnectorError> {
        if let Some(existing) = self.find(desired).await? {
            // Made by an earlier attempt whose answer was lost, or out of
            // band: link it and bring it to the desired state.
            return self.update(&existing, desired).await;
        }
        match self.send(Method::POST, "/Users", Some(&user_resource(desired)), None).await {
            Ok(answer) => applied_from(answer.body.as_ref(), desired, None),
            Err(failure) if failure.status == Some(409) => {
                // The user exists after all (a create that timed out, then
                // committed): find it and link it.
                let existing = self.find(desired).await?.ok_or_else(|| {
                    ConnectorError::permanent(format!(
                        "the SCIM server says {} exists but no lookup finds it: {}",
                        desired.email, failure.error
                    ))
                })?;
                self.update(&existing, desired).await
            }
            Err(failure) => Err(failure.error),
        }
    }

    /// The user's existing account: the one whose `externalId` is this user,
    /// else the one whose `userName` is the email, unless another identity
    /// claims it.
    async fn find(&self, desired: &Desired) -> Result<Option<String>, ConnectorError> {
        let by_external_id = self.lookup("externalId", &desired.user_id).await?;
        if let Some(user) = by_external_id.iter().find(|u| text_at(u, "externalId") == Some(&desired.user_id))
        {
            return Ok(text_at(user, "id").map(str::to_owned));
        }
        let by_user_name = self.lookup("userName", &desired.email).await?;
        let Some(user) = by_user_name
            .iter()
            .find(|u| text_at(u, "userName").is_some_and(|n| n.eq_ignore_ascii_case(&desired.email)))
        else {
            return Ok(None);
        };
        match text_at(user, "externalId") {
            Some(other) if other != desired.user_id => Err(ConnectorError::permanent(format!(
                "the SCIM user {} belongs to another identity (externalId {other}); link or remove it by hand",
                desired.email
            ))),
            _ => Ok(text_at(user, "id").map(str::to_owned)),
        }
    }

    async fn lookup(&self, attribute: &str, value: &str) -> Result<Vec<Value>, ConnectorError> {
        let filter = format!("{attribute} eq \"{}\"", escape_filter(value));
        let path = format!("/Users?filter={}", encode(&filter));
        match self.send(Method::GET, &path, None, None).await {
            Ok(answer) => Ok(answer
                .body
                .and_then(|b| b.get("Resources").and_then(Value::as_array).cloned())
                .unwrap_or_default()),
            // A server that cannot filter on this attribute (400
            // invalidFilter) has no match to offer by it.
            Err(failure) if failure.scim_type.as_deref() == Some("invalidFilter") => Ok(Vec::new()),
            Err(failure) => Err(failure.error),
        }
    }

    async fn update(&self, external_id: &str, desired: &Desired) -> Result<Applied, ConnectorError> {
        if self.capabilities().await?.patch {
            let body = json!({"schemas": [PATCH_SCHEMA], "Operations": update_operations(desired, self.fixed_identity)});
            match self.send(Method::PATCH, &user_path(external_id), Some(&body), None).await {
                Ok(answer) => return applied_from(answer.body.as_ref(), desired, Some(external_id)),
                // Advertised but not implemented after all.
                Err(failure) if failure.status == Some(501) => self.forget_patch(),
                Err(failure) => return Err(failure.error),
            }
        }
        let fixed = self.fixed_identity;
        let answer = self.replace(external_id, |user| merge_desired(user, desired, fixed)).await?;
        applied_from(answer.body.as_ref(), desired, Some(external_id))
    }

    async fn deactivate(&self, external_id: &str) -> Result<Applied, ConnectorError> {
        let gone = || Applied {
            external_id: external_id.to_owned(),
            login: None,
            status: AccountStatus::Deleted,
            attributes: Map::new(),
        };
        let result = if self.capabilities().await?.patch {
            let operation = if self.pathless_deactivate {
                json!({"op": "replace", "value": {"active": false}})
            } else {
                json!({"op": "replace", "path": "active", "value": false})
            };
            let body = json!({"schemas": [PATCH_SCHEMA], "Operations": [operation]});
            match self.send(Method::PATCH, &user_path(external_id), Some(&body), None).await {
                Err(failure) if failure.status == Some(501) => {
                    self.forget_patch();
                    self.replace(external_id, |user| {
                        user.insert("active".into(), Value::Bool(false));
                    })
                    .await
                }
                other => other.map_err(ConnectorError::from),
            }
        } else {
            self.replace(external_id, |user| {
                user.insert("active".into(), Value::Bool(false));
            })
            .await
        };
        match result {
            Ok(answer) => match answer.body.as_ref().and_then(remote) {
                Some(account) => Ok(Applied {
                    external_id: account.external_id,
                    login: account.login,
                    status: account.status,
                    attributes: account.attributes,
                }),
                None => Ok(Applied { status: AccountStatus::Deactivated, ..gone() }),
            },
            // Already gone: nothing is left to deactivate.
            Err(error) if error.not_found => Ok(gone()),
            Err(error) => Err(error),
        }
    }

    /// GET-then-PUT: the whole user as the server has it, changed by `edit`,
    /// written back; with `If-Match` where the server has ETags, and read
    /// again when someone else wrote in between (412).
    async fn replace(
        &self,
        external_id: &str,
        edit: impl Fn(&mut Map<String, Value>),
    ) -> Result<Answer, ConnectorError> {
        let path = user_path(external_id);
        let etag = self.capabilities().await?.etag;
        let mut attempt = 1;
        loop {
            let current = self.send(Method::GET, &path, None, None).await?;
            let mut user = current.body.and_then(|b| b.as_object().cloned()).ok_or_else(|| {
                ConnectorError::transient("the SCIM server answered a user without a body", None)
            })?;
            let version = current
                .etag
                .or_else(|| user.get("meta").and_then(|m| text_at(m, "version")).map(str::to_owned));
            // Read-only attributes are the server's; PUT ignores or refuses them.
            user.remove("meta");
            user.remove("groups");
            edit(&mut user);
            let if_match = if etag { version.as_deref() } else { None };
            match self.send(Method::PUT, &path, Some(&Value::Object(user)), if_match).await {
                Err(failure) if failure.status == Some(412) && attempt < PRECONDITION_ATTEMPTS => {
                    attempt += 1
                }
                other => return other.map_err(ConnectorError::from),
            }
        }
    }

    /// The second phase for apps that take the manager by reference: the
    /// manager must exist first [D], so a manager the app does not have yet
    /// is a transient failure (their own create usually lands first, since
    /// plans order managers before reports) and the step is tried again.
    async fn set_manager(&self, mut applied: Applied, desired: &Desired) -> Result<Applied, ConnectorError> {
        let Some(wanted) = desired.attributes.get(MANAGER).filter(|_| self.managers) else {
            return Ok(applied);
        };
        let manager_id = match wanted.as_str() {
            Some(email) => {
                let found = self.lookup("userName", email).await?;
                let id = found
                    .iter()
                    .find(|u| text_at(u, "userName").is_some_and(|n| n.eq_ignore_ascii_case(email)))
                    .and_then(|u| text_at(u, "id"))
                    .ok_or_else(|| {
                        ConnectorError::transient(
                            format!("the manager {email} has no account in the app yet"),
                            None,
                        )
                    })?;
                Some(id.to_owned())
            }
            None => None,
        };
        let path = format!("{SCIM_ENTERPRISE}:manager");
        let operation = match &manager_id {
            Some(id) => json!({"op": "replace", "path": path, "value": {"value": id}}),
            None => json!({"op": "remove", "path": path}),
        };
        let user = user_path(&applied.external_id);
        let patched = if self.capabilities().await?.patch {
            let body = json!({"schemas": [PATCH_SCHEMA], "Operations": [operation]});
            self.send(Method::PATCH, &user, Some(&body), None).await.map(|_| ()).map_err(ConnectorError::from)
        } else {
            self.replace(&applied.external_id, |resource| {
                let extension = resource.entry(SCIM_ENTERPRISE).or_insert_with(|| json!({}));
                if let Some(extension) = extension.as_object_mut() {
                    match &manager_id {
                        Some(id) => extension.insert("manager".into(), json!({"value": id})),
                        None => extension.remove("manager"),
                    };
                }
            })
            .await
            .map(|_| ())
        };
        patched?;
        applied.attributes.insert(MANAGER.into(), wanted.clone());
        Ok(applied)
    }

    fn forget_patch(&self) {
        let mut discovered = DISCOVERED.lock().unwrap();
        let entry = discovered.entry(self.bucket.clone()).or_insert((Instant::now(), Capabilities::ASSUMED));
        entry.1.patch = false;
    }
}

fn user_path(id: &str) -> String {
    format!("/Users/{}", encode(id))
}

/// A SCIM user as a roster entry.
fn remote(user: &Value) -> Option<RemoteAccount> {
    let id = text_at(user, "id")?.to_owned();
    // Absent means active; some servers send the string "False".
    let active = match user.get("active") {
        Some(Value::Bool(active)) => *active,
        Some(Value::String(s)) => !s.eq_ignore_ascii_case("false"),
        _ => true,
    };
    Some(RemoteAccount {
        external_id: id,
        login: text_at(user, "userName").map(str::to_owned),
        status: if active { AccountStatus::Active } else { AccountStatus::Deactivated },
        attributes: snapshot(user),
        claimed_user_id: text_at(user, "externalId").map(str::to_owned),
        protected: false,
    })
}

/// The mappable attributes the user has, keyed by their SCIM paths.
fn snapshot(user: &Value) -> Map<String, Value> {
    let mut attributes = Map::new();
    for path in SCIM_CORE_ATTRIBUTES {
        let pointer = format!("/{}", path.replace('.', "/"));
        if let Some(value) = user.pointer(&pointer).filter(|v| !v.is_null()) {
            attributes.insert(path.to_owned(), value.clone());
        }
    }
    for (urn, names) in [
        (SCIM_ENTERPRISE, &SCIM_ENTERPRISE_ATTRIBUTES[..]),
        (TRAVELPERK_EXTENSION, &TRAVELPERK_EXTENSION_ATTRIBUTES[..]),
    ] {
        if let Some(extension) = user.get(urn) {
            for name in names {
                if let Some(value) = extension.get(name).filter(|v| !v.is_null()) {
                    attributes.insert(format!("{urn}:{name}"), value.clone());
                }
            }
        }
    }
    // The groups' names; the connector keeps the ones it manages.
    if let Some(groups) = user.get("groups").and_then(Value::as_array) {
        let mut names: Vec<&str> = groups.iter().filter_map(|g| text_at(g, "display")).collect();
        names.sort_unstable();
        attributes.insert(GROUPS.into(), json!(names));
    }
    // The manager's id in the app; a roster read turns it into the
    // manager's login, which is what the hub renders.
    if let Some(id) = user.pointer(&format!("/{SCIM_ENTERPRISE}/manager/value")).and_then(Value::as_str) {
        attributes.insert(MANAGER.into(), json!(id));
    }
    attributes
}

/// Where a mapped attribute lives in a user resource: the extension's URN
/// and the name, or the core path split at the dot.
enum Place<'a> {
    Core(&'a str, Option<&'a str>),
    Extension(&'static str, &'a str),
}

fn place(path: &str) -> Place<'_> {
    for urn in [SCIM_ENTERPRISE, TRAVELPERK_EXTENSION] {
        if let Some(name) = path.strip_prefix(urn).and_then(|p| p.strip_prefix(':')) {
            return Place::Extension(urn, name);
        }
    }
    match path.split_once('.') {
        Some((parent, sub)) => Place::Core(parent, Some(sub)),
        None => Place::Core(path, None),
    }
}

/// Sets (or, for null, removes) one mapped attribute in a user resource.
fn set_attribute(user: &mut Map<String, Value>, path: &str, value: &Value) {
    if path == MANAGER || path == GROUPS {
        // Set by id in its own phase (`Scim::set_manager`).
        return;
    }
    let (container, name) = match place(path) {
        Place::Extension(urn, name) => (user.entry(urn).or_insert_with(|| json!({})), name),
        Place::Core(parent, Some(sub)) => (user.entry(parent).or_insert_with(|| json!({})), sub),
        Place::Core(name, None) => {
            if value.is_null() {
                user.remove(name);
            } else {
                user.insert(name.to_owned(), value.clone());
            }
            return;
        }
    };
    if let Some(object) = container.as_object_mut() {
        if value.is_null() {
            object.remove(name);
        } else {
            object.insert(name.to_owned(), value.clone());
        }
    }
}

/// The identity the hub always writes: login, link, address and access
/// (only access where the identity is fixed).
fn set_identity(user: &mut Map<String, Value>, desired: &Desired, fixed: bool) {
    user.insert("active".into(), json!(true));
    if fixed {
        return;
    }
    user.insert("userName".into(), json!(desired.email));
    user.insert("externalId".into(), json!(desired.user_id));
    user.insert("emails".into(), json!([{"value": desired.email, "type": "work", "primary": true}]));
}

fn schemas(desired: &Desired) -> Value {
    let mut schemas = vec![USER_SCHEMA];
    for urn in [SCIM_ENTERPRISE, TRAVELPERK_EXTENSION] {
        if desired.attributes.iter().any(|(k, v)| !v.is_null() && k.starts_with(urn)) {
            schemas.push(urn);
        }
    }
    json!(schemas)
}

/// The user a create sends.
fn user_resource(desired: &Desired) -> Value {
    let mut user = Map::new();
    user.insert("schemas".into(), schemas(desired));
    set_identity(&mut user, desired, false);
    for (path, value) in &desired.attributes {
        if !value.is_null() {
            set_attribute(&mut user, path, value);
        }
    }
    Value::Object(user)
}

/// A PUT's body: the user as the server has it, with the hub's attributes
/// (and nothing else) changed.
fn merge_desired(user: &mut Map<String, Value>, desired: &Desired, fixed_identity: bool) {
    set_identity(user, desired, fixed_identity);
    for (path, value) in &desired.attributes {
        set_attribute(user, path, value);
    }
    let mut listed: Vec<Value> = user.get("schemas").and_then(Value::as_array).cloned().unwrap_or_default();
    for schema in schemas(desired).as_array().into_iter().flatten() {
        if !listed.contains(schema) {
            listed.push(schema.clone());
        }
    }
    user.insert("schemas".into(), Value::Array(listed));
}

/// PATCH operations that bring a user to `desired`: path-ful `replace` for
/// each value and `remove` for each mapped attribute that should be empty.
fn update_operations(desired: &Desired, fixed_identity: bool) -> Vec<Value> {
    let mut operations = vec![json!({"op": "replace", "path": "active", "value": true})];
    if !fixed_identity {
        operations.extend([
            json!({"op": "replace", "path": "userName", "value": desired.email}),
            json!({"op": "replace", "path": "externalId", "value": desired.user_id}),
            json!({"op": "replace", "path": "emails", "value": [{"value": desired.email, "type": "work", "primary": true}]}),
        ]);
    }
    for (path, value) in desired.attributes.iter().filter(|(path, _)| *path != MANAGER && *path != GROUPS) {
        operations.push(if value.is_null() {
            json!({"op": "remove", "path": path})
        } else {
            json!({"op": "replace", "path": path, "value": value})
        });
    }
    operations
}

/// The account after a write: from the server's answer, else (204) from
/// what was sent.
fn applied_from(
    body: Option<&Value>,
    desired: &Desired,
    id: Option<&str>,
) -> Result<Applied, ConnectorError> {
    if let Some(account) = body.and_then(remote) {
        return Ok(Applied {
            external_id: account.external_id,
            login: account.login,
            status: account.status,
            attributes: account.attributes,
        });
    }
    let id = id.ok_or_else(|| {
        ConnectorError::permanent("the SCIM server created a user without answering its id")
    })?;
    Ok(Applied {
        external_id: id.to_owned(),
        login: Some(desired.email.clone()),
        status: AccountStatus::Active,
        attributes: desired.set_attributes(),
    })
}

/// The PATCH operations for adding and removing members, packed so that no
/// PATCH carries more than `max` member changes.
fn member_operations(add: &[&str], remove: &[&str], max: usize) -> Vec<Vec<Value>> {
    let changes = add.iter().map(|id| (true, *id)).chain(remove.iter().map(|id| (false, *id)));
    let changes: Vec<(bool, &str)> = changes.collect();
    changes
        .chunks(max.max(1))
        .map(|chunk| {
            let added: Vec<Value> =
                chunk.iter().filter(|(add, _)| *add).map(|(_, id)| json!({"value": id})).collect();
            let mut operations = Vec::new();
            if !added.is_empty() {
                operations.push(json!({"op": "add", "path": "members", "value": added}));
            }
            for (_, id) in chunk.iter().filter(|(add, _)| !*add) {
                operations.push(
                    json!({"op": "remove", "path": format!("members[value eq \"{}\"]", escape_filter(id))}),
                );
            }
            operations
        })
        .collect()
}

fn text_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// A filter literal (RFC 7644 §3.4.2.2 uses JSON strings): `"` and `\` escaped.
fn escape_filter(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(attributes: Value) -> Desired {
        Desired {
            user_id: "usr_1".into(),
            email: "ada@example.com".into(),
            attributes: attributes.as_object().cloned().unwrap(),
        }
    }

    #[test]
    fn filter_literals_are_escaped() {
        assert_eq!(escape_filter(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(
            format!("userName eq \"{}\"", escape_filter(r#"x" or userName pr or """#)),
            r#"userName eq "x\" or userName pr or \"\"""#
        );
    }

    #[test]
    fn a_create_carries_identity_and_mapped_paths() {
        let enterprise = format!("{SCIM_ENTERPRISE}:department");
        let user = user_resource(&desired(json!({
            "name.givenName": "Ada", "displayName": "Ada Lovelace", "title": null, enterprise.clone(): "R&D"
        })));
        assert_eq!(user["userName"], "ada@example.com");
        assert_eq!(user["externalId"], "usr_1");
        assert_eq!(user["active"], true);
        assert_eq!(user["emails"][0]["primary"], true);
        assert_eq!(user["name"]["givenName"], "Ada");
        assert!(user.get("title").is_none(), "null values are left out of a create");
        assert_eq!(user[SCIM_ENTERPRISE]["department"], "R&D");
        assert_eq!(user["schemas"], json!([USER_SCHEMA, SCIM_ENTERPRISE]));
        // And reads back as the same attributes.
        let account = remote(&json!({"id": "9", "userName": "ada@example.com", "name": {"givenName": "Ada"},
            SCIM_ENTERPRISE: {"department": "R&D"}, "active": "False"}))
        .unwrap();
        assert_eq!(account.attributes["name.givenName"], "Ada");
        assert_eq!(account.attributes[&enterprise], "R&D");
        assert_eq!(account.status, AccountStatus::Deactivated);
    }

    #[test]
    fn updates_replace_values_and_remove_empty_ones() {
        let ops = update_operations(&desired(json!({"title": null, "name.familyName": "Lovelace"})), false);
        assert!(ops.contains(&json!({"op": "remove", "path": "title"})));
        assert!(ops.contains(&json!({"op": "replace", "path": "name.familyName", "value": "Lovelace"})));
        assert!(ops.contains(&json!({"op": "replace", "path": "active", "value": true})));
        assert!(ops.iter().all(|op| op["op"] == "replace" || op["op"] == "remove"), "lower-case ops");
        // Stripe's Dashboard: the email is the member and cannot change.
        let fixed = update_operations(&desired(json!({"displayName": "Ada L"})), true);
        assert!(fixed.iter().all(|op| op["path"] != "userName" && op["path"] != "emails"), "{fixed:?}");
        assert!(fixed.contains(&json!({"op": "replace", "path": "displayName", "value": "Ada L"})));
    }

    #[test]
    fn a_put_keeps_what_the_hub_does_not_manage() {
        let mut user = json!({"id": "7", "userName": "old@example.com", "nickName": "Countess",
            "phoneNumbers": [{"value": "+1"}], "name": {"givenName": "A", "familyName": "L"}, "title": "Dr"})
        .as_object()
        .cloned()
        .unwrap();
        merge_desired(&mut user, &desired(json!({"name.givenName": "Ada", "title": null})), false);
        assert_eq!(user["userName"], "ada@example.com");
        assert_eq!(user["nickName"], "Countess");
        assert_eq!(user["phoneNumbers"][0]["value"], "+1");
        assert_eq!(user["name"], json!({"givenName": "Ada", "familyName": "L"}));
        assert!(!user.contains_key("title"));
        assert_eq!(user["active"], true);
    }

    #[test]
    fn membership_changes_are_chunked_for_the_server() {
        let ids: Vec<String> = (0..230).map(|i| format!("u{i}")).collect();
        let add: Vec<&str> = ids[..150].iter().map(String::as_str).collect();
        let remove: Vec<&str> = ids[150..].iter().map(String::as_str).collect();
        let patches = member_operations(&add, &remove, 100);
        assert_eq!(patches.len(), 3);
        let changes = |ops: &[Value]| -> usize {
            ops.iter().map(|op| op["value"].as_array().map_or(1, Vec::len)).sum()
        };
        assert_eq!(patches.iter().map(|p| changes(p)).collect::<Vec<_>>(), [100, 100, 30]);
        // The second PATCH adds the last 50 and removes the first 50.
        assert_eq!(patches[1][0]["value"].as_array().unwrap().len(), 50);
        assert_eq!(patches[1][1], json!({"op": "remove", "path": "members[value eq \"u150\"]"}));
        assert!(member_operations(&[], &[], 100).is_empty());
    }

    #[test]
    fn discovery_reads_what_is_advertised() {
        let config = json!({"patch": {"supported": false}, "etag": {"supported": true},
            "filter": {"supported": true, "maxResults": 50}});
        assert_eq!(Capabilities::parse(&config), Capabilities { patch: false, etag: true, max_results: 50 });
        assert_eq!(Capabilities::parse(&json!({"filter": {"maxResults": 5000}})).max_results, PAGE);
        assert_eq!(Capabilities::parse(&json!({})), Capabilities::ASSUMED);
    }
}
