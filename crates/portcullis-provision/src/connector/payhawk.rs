//! Payhawk users (employees), as `../shared/spec/connectors.md` §4 and §7
//! record them: everything under `/api/v3/accounts/{account_id}`, the key in
//! `X-Payhawk-ApiKey` [T], 15 requests/s per account with `Retry-After` on
//! 429 [D]. The user API's paths and fields come from a client generated
//! from Payhawk's Swagger [T]: `GET/POST …/users`, `PATCH/DELETE
//! …/users/{id}`, `{items, total}` lists filtered by `$filter`, and an
//! update that takes only `role` and `externalId`.
//!
//! - An invite is preceded by a lookup by email, and a 409 after a retried
//!   invite is looked up and linked: Payhawk has no idempotency keys.
//! - Names are set on the invite only; a name change the API cannot make
//!   fails its step with what to change in the portal, rather than loop.
//! - There is no deactivation: removal (with the app's `card_action`, the
//!   portal's "block reassignable cards and close the rest" by default [D])
//!   is the only deprovisioning, so it always waits for approval.
//! - A roster read also reads expenses newest first: each user's latest is
//!   recorded as `last_expense_at`, a "last seen" signal in the graph.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::services::apps::Credentials;
use portcullis_store::model::App;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::http::{ConnectorError, Throttle, read_with_retries, retry_after};
use super::{AccountStatus, Applied, Desired, Job, Op, RemoteAccount, fingerprint, text};

/// One short of the published 15/s: Payhawk counts arrivals, we departures.
const REQUESTS_PER_SECOND: usize = 14;
const PAGE: usize = 100;
/// Expense pages read for the last-seen signal (newest first), at most.
const EXPENSE_PAGES: usize = 10;
const EXPENSE_PAGE: usize = 1000;
const DEFAULT_ROLE: &str = "employee";
const DEFAULT_CARD_ACTION: &str = "block_reassignable_close_rest";
/// The attribute the roster records each user's latest expense in.
pub const LAST_EXPENSE: &str = "last_expense_at";

/// A failed call and the status it was answered with, if any.
struct Failure {
    status: Option<u16>,
    error: ConnectorError,
}

impl From<Failure> for ConnectorError {
    fn from(failure: Failure) -> Self {
        failure.error
    }
}

impl From<ConnectorError> for Failure {
    fn from(error: ConnectorError) -> Self {
        Failure { status: None, error }
    }
}

pub struct Payhawk {
    base: String,
    api_key: String,
    bucket: String,
    role: String,
    card_action: String,
    requests_per_second: usize,
    client: reqwest::Client,
    throttle: Arc<Throttle>,
}

impl Payhawk {
    pub fn new(
        app: &App,
        credentials: Credentials,
        client: reqwest::Client,
        throttle: Arc<Throttle>,
    ) -> Result<Self, ConnectorError> {
        let api_key =
            credentials.api_key.ok_or_else(|| ConnectorError::permanent("the app has no Payhawk API key"))?;
        let settings = &app.settings.0;
        let account = settings
            .get("account_id")
            .and_then(Value::as_str)
            .ok_or_else(|| ConnectorError::permanent("the app has no Payhawk account_id"))?;
        let setting = |name: &str, default: &str| {
            settings.get(name).and_then(Value::as_str).unwrap_or(default).to_owned()
        };
        Ok(Payhawk {
            base: format!("{}/api/v3/accounts/{}", app.base_url.trim_end_matches('/'), encode(account)),
            // Payhawk limits per account, whoever's key.
            bucket: format!("payhawk:{}", fingerprint(&format!("{}\n{account}", app.base_url))),
            api_key,
            role: setting("employee_role", DEFAULT_ROLE),
            card_action: setting("card_action", DEFAULT_CARD_ACTION),
            requests_per_second: settings
                .get("requests_per_second")
                .and_then(Value::as_u64)
                .map_or(REQUESTS_PER_SECOND, |n| (n as usize).min(REQUESTS_PER_SECOND)),
            client,
            throttle,
        })
    }

    /// The answer's status and JSON body (none for 204), or why it failed.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Option<Value>), Failure> {
        self.throttle
            .acquire(&[(self.bucket.clone(), Duration::from_secs(1), self.requests_per_second)])
            .await;
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("x-payhawk-apikey", &self.api_key)
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.map_err(ConnectorError::from_reqwest)?;
        let status = response.status().as_u16();
        let after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(ConnectorError::from_reqwest)?;
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        if (200..300).contains(&status) {
            if body.is_none() && status != 204 && !bytes.is_empty() {
                return Err(ConnectorError::transient("Payhawk answered without JSON", after).into());
            }
            return Ok((status, body));
        }
        // `{code, message}` [T].
        let object = body.as_ref().and_then(Value::as_object);
        let message = object.and_then(|e| text(e, "message")).unwrap_or_else(|| format!("HTTP {status}"));
        let code = object.and_then(|e| text(e, "code")).unwrap_or_default();
        let described = format!("Payhawk {status} {code}: {message}");
        let error = match status {
            404 => ConnectorError::not_found(described),
            429 | 500 | 502 | 503 | 504 => ConnectorError::transient(described, after),
            _ => ConnectorError::permanent(described),
        };
        Err(Failure { status: Some(status), error })
    }

    /// One page of a list, tried again after a transient failure: a 429
    /// deep into a roster must not throw away the pages before it.
    async fn list_page(&self, path: &str) -> Result<Value, ConnectorError> {
        read_with_retries(|| async {
            self.send(Method::GET, path, None)
                .await?
                .1
                .ok_or_else(|| ConnectorError::transient("a Payhawk list without a body", None))
        })
        .await
    }

    pub async fn roster(
        &self,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<RemoteAccount>, ConnectorError> {
        let mut accounts: Vec<RemoteAccount> = Vec::new();
        let mut skip = 0;
        loop {
            let path = format!("/users?$skip={skip}&$take={PAGE}");
            let page = self.list_page(&path).await?;
            let items = page.get("items").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let total = page
                .get("total")
                .and_then(Value::as_u64)
                .ok_or_else(|| ConnectorError::transient("a Payhawk list without a total", None))?
                as usize;
            accounts.extend(items.iter().filter_map(remote));
            skip += items.len();
            progress(accounts.len());
            if skip >= total {
                break;
            }
            if items.is_empty() {
                return Err(ConnectorError::transient(
                    format!("Payhawk listed {skip} of {total} users and then an empty page"),
                    None,
                ));
            }
        }
        self.record_last_expenses(&mut accounts).await?;
        Ok(accounts)
    }

    /// Each user's latest expense, newest first, for as many pages as it
    /// takes to see everyone (at most [`EXPENSE_PAGES`]).
    async fn record_last_expenses(&self, accounts: &mut [RemoteAccount]) -> Result<(), ConnectorError> {
        let mut latest: HashMap<String, String> = HashMap::new();
        for page_number in 0..EXPENSE_PAGES {
            let order = encode(r#"{"createdAt":"desc"}"#);
            let path = format!(
                "/expenses?$orderBy={order}&$skip={}&$take={EXPENSE_PAGE}",
                page_number * EXPENSE_PAGE
            );
            let page = self.list_page(&path).await?;
            let items = page.get("items").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            for expense in items {
                let user = expense.pointer("/createdBy/id").and_then(Value::as_str);
                let at = expense.get("createdAt").and_then(Value::as_str);
                if let (Some(user), Some(at)) = (user, at) {
                    latest.entry(user.to_owned()).or_insert_with(|| at.to_owned());
                }
            }
            if items.len() < EXPENSE_PAGE || latest.len() >= accounts.len() {
                break;
            }
        }
        for account in accounts {
            if let Some(at) = latest.get(&account.external_id) {
                account.attributes.insert(LAST_EXPENSE.into(), json!(at));
            }
        }
        Ok(())
    }

    pub async fn apply(&self, jobs: &[Job<'_>]) -> Vec<Result<Applied, ConnectorError>> {
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            results.push(self.apply_one(&job.request.op).await);
        }
        results
    }

    async fn apply_one(&self, op: &Op) -> Result<Applied, ConnectorError> {
        match op {
            Op::Create { desired } => self.invite(desired).await,
            Op::Update { external_id, desired } => self.update(external_id, desired).await,
            Op::Delete { external_id } | Op::Deactivate { external_id, .. } => {
                let path = format!("/users/{}?cardAction={}", encode(external_id), encode(&self.card_action));
                match self.send(Method::DELETE, &path, None).await {
                    Ok(_) => {}
                    // Removed already: the goal is reached.
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
            Op::Replace { .. } | Op::Manual { .. } => {
                Err(ConnectorError::permanent("Payhawk users change in place"))
            }
        }
    }

    async fn invite(&self, desired: &Desired) -> Result<Applied, ConnectorError> {
        if let Some(existing) = self.find(&desired.email).await? {
            return self.update(&text_of(&existing, "id"), desired).await;
        }
        let mut body = Map::new();
        body.insert("email".into(), json!(desired.email));
        body.insert("role".into(), json!(self.role));
        for (name, fallback) in [("firstName", desired.email.as_str()), ("lastName", "-")] {
            // Payhawk requires both names [T].
            let value = desired.attributes.get(name).and_then(Value::as_str).filter(|v| !v.trim().is_empty());
            body.insert(name.into(), json!(value.unwrap_or(fallback)));
        }
        match self.send(Method::POST, "/users", Some(&Value::Object(body))).await {
            Ok((_, Some(user))) => {
                let id = text_of(&user, "id");
                // The link, which the invite cannot carry [T].
                self.send(
                    Method::PATCH,
                    &format!("/users/{}", encode(&id)),
                    Some(&json!({"externalId": desired.user_id})),
                )
                .await?;
                let mut applied = applied(&user);
                applied.attributes = names(&user);
                Ok(applied)
            }
            Ok((_, None)) => {
                Err(ConnectorError::transient("Payhawk answered an invite without the user", None))
            }
            Err(failure) if failure.status == Some(409) => {
                // Invited by an attempt whose answer was lost.
                let existing = self.find(&desired.email).await?.ok_or_else(|| {
                    ConnectorError::permanent(format!(
                        "Payhawk says {} exists but no lookup finds it",
                        desired.email
                    ))
                })?;
                self.update(&text_of(&existing, "id"), desired).await
            }
            Err(failure) => Err(failure.error),
        }
    }

    /// The user with this email, unless removed (compared without case).
    async fn find(&self, email: &str) -> Result<Option<Value>, ConnectorError> {
        let filter = encode(&json!({"email": email}).to_string());
        let (_, page) = self.send(Method::GET, &format!("/users?$filter={filter}"), None).await?;
        let items =
            page.as_ref().and_then(|p| p.get("items")).and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(items.into_iter().find(|u| {
            u.get("email").and_then(Value::as_str).is_some_and(|e| e.eq_ignore_ascii_case(email))
                && u.get("status").and_then(Value::as_str) != Some("removed")
        }))
    }

    async fn update(&self, id: &str, desired: &Desired) -> Result<Applied, ConnectorError> {
        let path = format!("/users/{}", encode(id));
        self.send(Method::PATCH, &path, Some(&json!({"role": self.role, "externalId": desired.user_id})))
            .await?;
        let (_, user) = self.send(Method::GET, &path, None).await?;
        let user =
            user.ok_or_else(|| ConnectorError::transient("Payhawk answered a user without a body", None))?;
        // Names are the invite's to set; say what a person must change.
        let have = names(&user);
        let differs: Vec<String> = ["firstName", "lastName"]
            .into_iter()
            .filter_map(|name| {
                let want = desired.attributes.get(name).filter(|v| !v.is_null())?;
                (have.get(name) != Some(want)).then(|| format!("{name} to {want}"))
            })
            .collect();
        if !differs.is_empty() {
            return Err(ConnectorError::permanent(format!(
                "Payhawk's API cannot rename a user: change {} in the Payhawk portal",
                differs.join(" and ")
            )));
        }
        let mut applied = applied(&user);
        applied.attributes = have;
        Ok(applied)
    }
}

fn text_of(value: &Value, key: &str) -> String {
    value.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// The attributes the hub compares: the names and the role.
fn names(user: &Value) -> Map<String, Value> {
    ["firstName", "lastName", "role"]
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), user.get(name).filter(|v| !v.is_null())?.clone())))
        .collect()
}

fn remote(user: &Value) -> Option<RemoteAccount> {
    if user.get("status").and_then(Value::as_str) == Some("removed") {
        return None;
    }
    Some(RemoteAccount {
        external_id: user.get("id")?.as_str()?.to_owned(),
        login: user.get("email").and_then(Value::as_str).map(str::to_owned),
        status: AccountStatus::Active,
        attributes: names(user),
        claimed_user_id: user
            .get("externalId")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .map(str::to_owned),
        protected: false,
    })
}

fn applied(user: &Value) -> Applied {
    Applied {
        external_id: text_of(user, "id"),
        login: user.get("email").and_then(Value::as_str).map(str::to_owned),
        status: AccountStatus::Active,
        attributes: Map::new(),
    }
}

/// Percent-encodes a path segment or query value, leaving RFC 3986's
/// unreserved characters (account ids like `payhawk_demo_6fc0db9a`).
fn encode(value: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(value, UNRESERVED).to_string()
}
