//! Expensify through its Integration Server: one form-encoded endpoint whose
//! `requestJobDescription` names the job. Employees are written with the
//! Advanced Employee Updater (an upsert keyed by email and `employeeID`, so a
//! replayed feed is harmless), read from the policy roster (`get` / `policy`
//! with `fields: ["employees"]`), and deprovisioned with `isTerminated`,
//! which removes them from the policy: Expensify has no API to close an
//! account. Outcomes are in the body's `responseCode`, not the HTTP status,
//! and per-employee failures come back as 200 with `skippedEmployees`.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::services::apps::Credentials;
use portcullis_store::model::App;
use serde_json::{Map, Value, json};

use super::http::{ConnectorError, Throttle, read_with_retries, retry_after};
use super::{AccountStatus, Applied, Job, Op, RemoteAccount, text};

/// Employees per updater feed: one call carries many steps, which matters
/// at 5 calls per 10 s.
pub const FEED_ROWS: usize = 500;
const PATH: &str = "/Integration-Server/ExpensifyIntegrations";
/// The attributes of a roster entry we keep and compare.
const ROSTER_ATTRIBUTES: [&str; 8] = [
    "firstName",
    "lastName",
    "customField1",
    "customField2",
    "workerStatus",
    "employeeID",
    "role",
    "managerEmail",
];

pub struct Expensify {
    url: String,
    partner_user_id: String,
    partner_user_secret: String,
    policy_id: String,
    /// Sent on creates (default `user`), and on updates only when the app
    /// sets it: a feed must not demote an admin the hub did not make one.
    role: Option<String>,
    client: reqwest::Client,
    throttle: Arc<Throttle>,
}

impl Expensify {
    pub fn new(
        app: &App,
        credentials: Credentials,
        client: reqwest::Client,
        throttle: Arc<Throttle>,
    ) -> Result<Self, ConnectorError> {
        let settings = app.settings.0.as_object().cloned().unwrap_or_default();
        let missing = || ConnectorError::permanent("the app's Expensify credentials are incomplete");
        Ok(Expensify {
            url: format!("{}{PATH}", app.base_url),
            partner_user_id: credentials.partner_user_id.ok_or_else(missing)?,
            partner_user_secret: credentials.partner_user_secret.ok_or_else(missing)?,
            policy_id: text(&settings, "policy_id")
                .ok_or_else(|| ConnectorError::permanent("the app has no settings.policy_id"))?,
            role: text(&settings, "employee_role"),
            client,
            throttle,
        })
    }

    fn credentials(&self) -> Value {
        json!({"partnerUserID": self.partner_user_id, "partnerUserSecret": self.partner_user_secret})
    }

    /// Runs one job; the parsed envelope if `responseCode` is 200.
    async fn call(&self, job: Value, data: Option<String>) -> Result<Map<String, Value>, ConnectorError> {
        // Published limits: 5 per 10 s and 20 per 60 s per credential. The
        // slack keeps our window a little wider than theirs.
        let key = format!("expensify:{}", self.partner_user_id);
        self.throttle
            .acquire(&[
                (key.clone(), Duration::from_millis(10_050), 5),
                (key, Duration::from_millis(60_050), 20),
            ])
            .await;
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("requestJobDescription", &job.to_string());
            if let Some(data) = &data {
                form.append_pair("data", data);
            }
            form.finish()
        };
        let response = self
            .client
            .post(&self.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(ConnectorError::from_reqwest)?;
        let status = response.status();
        let after = retry_after(response.headers());
        let body = response.bytes().await.map_err(ConnectorError::from_reqwest)?;
        // Content-Type is unreliable (text/plain for JSON): parse by shape.
        let parsed: Option<Map<String, Value>> = serde_json::from_slice(&body).ok();
        if status.as_u16() == 429 {
            return Err(ConnectorError::transient("Expensify rate-limited the request", after));
        }
        let Some(envelope) = parsed else {
            return Err(if status.is_server_error() || status.is_success() {
                ConnectorError::transient(
                    format!("Expensify answered HTTP {status} without a JSON envelope"),
                    after,
                )
            } else {
                ConnectorError::permanent(format!("Expensify answered HTTP {status} without a JSON envelope"))
            });
        };
        let code = envelope.get("responseCode").and_then(Value::as_i64).unwrap_or(status.as_u16() as i64);
        let message = text(&envelope, "responseMessage").unwrap_or_default();
        match code {
            200 => Ok(envelope),
            // In-band rate limits and generic errors are worth retrying.
            429 => Err(ConnectorError::transient("Expensify rate-limited the request", after)),
            500..=599 => Err(ConnectorError::transient(format!("Expensify error {code}: {message}"), after)),
            _ if message.eq_ignore_ascii_case("Authentication error") => {
                Err(ConnectorError::permanent("Expensify rejected the app's credentials"))
            }
            _ => Err(ConnectorError::permanent(format!("Expensify error {code}: {message}"))),
        }
    }

    /// Policy discovery: the app's policy as the caller sees it. Fails if the
    /// policy is missing or the credential is not one of its admins.
    async fn policy_owner(&self) -> Result<String, ConnectorError> {
        let job = json!({
            "type": "get",
            "credentials": self.credentials(),
            "inputSettings": {"type": "policyList", "adminOnly": true},
        });
        let envelope = self.call(job, None).await?;
        let policies = envelope.get("policyList").and_then(Value::as_array).ok_or_else(|| {
            ConnectorError::transient("Expensify's policy list answer has no policyList", None)
        })?;
        let policy = policies
            .iter()
            .filter_map(Value::as_object)
            .find(|p| text(p, "id").is_some_and(|id| id.eq_ignore_ascii_case(&self.policy_id)))
            .ok_or_else(|| {
                ConnectorError::permanent(format!(
                    "policy {} is not among the policies this credential administers",
                    self.policy_id
                ))
            })?;
        Ok(text(policy, "owner").unwrap_or_default().to_lowercase())
    }

    pub async fn roster(
        &self,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<RemoteAccount>, ConnectorError> {
        let owner = read_with_retries(|| self.policy_owner()).await?;
        let job = json!({
            "type": "get",
            "credentials": self.credentials(),
            "inputSettings": {"type": "policy", "policyIDList": [self.policy_id], "fields": ["employees"]},
        });
        let envelope = read_with_retries(|| self.call(job.clone(), None)).await?;
        let employees = envelope
            .get("policyInfo")
            .and_then(|p| p.get(&self.policy_id))
            .and_then(|p| p.get("employees"))
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ConnectorError::transient("Expensify's policy answer has no employee list", None)
            })?;
        let mut accounts = Vec::with_capacity(employees.len());
        for employee in employees {
            let Some(entry) = employee.as_object() else { continue };
            let Some(email) = text(entry, "email") else { continue };
            let mut attributes = Map::new();
            for key in ROSTER_ATTRIBUTES {
                let source = if key == "managerEmail" { "submitsTo" } else { key };
                if let Some(value) = entry.get(source).filter(|v| !v.is_null()) {
                    attributes.insert(key.to_owned(), value.clone());
                }
            }
            accounts.push(RemoteAccount {
                protected: email.eq_ignore_ascii_case(&owner),
                external_id: email.to_lowercase(),
                claimed_user_id: text(entry, "employeeID"),
                login: Some(email),
                status: AccountStatus::Active,
                attributes,
            });
        }
        progress(accounts.len());
        Ok(accounts)
    }

    /// One feed row per job: creates and updates are upserts; deactivation
    /// is `isTerminated`. Rows keep the jobs' order (managers first).
    fn row(&self, op: &Op) -> Result<Value, ConnectorError> {
        let mut row = Map::new();
        row.insert("policyID".into(), json!(self.policy_id));
        match op {
            Op::Create { desired } | Op::Update { desired, .. } => {
                row.insert("employeeEmail".into(), json!(desired.email));
                row.insert("employeeID".into(), json!(desired.user_id));
                match (&self.role, op) {
                    (Some(role), _) => row.insert("role".into(), json!(role)),
                    (None, Op::Create { .. }) => row.insert("role".into(), json!("user")),
                    (None, _) => None,
                };
                for (key, value) in &desired.attributes {
                    if !value.is_null() {
                        row.insert(key.clone(), value.clone());
                    }
                }
                if !row.contains_key("managerEmail") {
                    row.insert("managerEmail".into(), json!(desired.email));
                }
            }
            Op::Deactivate { external_id, login, desired, .. } => {
                let email = login.clone().unwrap_or_else(|| external_id.clone());
                let manager = desired.as_ref().and_then(|d| text(&d.attributes, "managerEmail"));
                row.insert("managerEmail".into(), json!(manager.unwrap_or_else(|| email.clone())));
                let id = desired.as_ref().map(|d| d.user_id.clone()).unwrap_or_else(|| email.clone());
                row.insert("employeeEmail".into(), json!(email));
                row.insert("employeeID".into(), json!(id));
                row.insert("isTerminated".into(), json!(true));
            }
            Op::Delete { .. } => {
                return Err(ConnectorError::permanent(
                    "Expensify has no API to close an account; deprovisioning removes the employee from the policy",
                ));
            }
            Op::Replace { .. } | Op::Manual { .. } => {
                return Err(ConnectorError::permanent("Expensify changes accounts in place"));
            }
        }
        Ok(Value::Object(row))
    }

    pub async fn apply(&self, jobs: &[Job<'_>]) -> Vec<Result<Applied, ConnectorError>> {
        let mut results: Vec<Option<Result<Applied, ConnectorError>>> = Vec::with_capacity(jobs.len());
        let mut rows = Vec::new();
        let mut in_feed = Vec::new();
        for (index, job) in jobs.iter().enumerate() {
            match self.row(&job.request.op) {
                Ok(row) => {
                    rows.push(row);
                    in_feed.push(index);
                    results.push(None);
                }
                Err(error) => results.push(Some(Err(error))),
            }
        }
        if !rows.is_empty() {
            let job = json!({
                "type": "update",
                "credentials": self.credentials(),
                "dataSource": "request",
                "dry-run": false,
                "inputSettings": {"type": "employees", "entity": "generic"},
            });
            match self.call(job, Some(Value::Array(rows.clone()).to_string())).await {
                Ok(envelope) => {
                    let skipped: Vec<(String, String)> = envelope
                        .get("skippedEmployees")
                        .and_then(Value::as_array)
                        .map(|list| {
                            list.iter()
                                .filter_map(|s| {
                                    let s = s.as_object()?;
                                    Some((
                                        text(s, "email")?.to_lowercase(),
                                        text(s, "reason").unwrap_or_default(),
                                    ))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    for (row, index) in rows.iter().zip(in_feed) {
                        let email = row["employeeEmail"].as_str().unwrap_or_default().to_owned();
                        let outcome = match skipped.iter().find(|(e, _)| *e == email.to_lowercase()) {
                            Some((_, reason)) => Err(ConnectorError::permanent(format!(
                                "Expensify skipped the employee: {reason}"
                            ))),
                            None => Ok(applied(&jobs[index].request.op, row, email)),
                        };
                        results[index] = Some(outcome);
                    }
                }
                Err(error) => {
                    for index in in_feed {
                        results[index] = Some(Err(error.clone()));
                    }
                }
            }
        }
        results.into_iter().map(|r| r.expect("every job has an outcome")).collect()
    }
}

/// The account as the feed row left it.
fn applied(op: &Op, row: &Value, email: String) -> Applied {
    let mut attributes = Map::new();
    for key in ROSTER_ATTRIBUTES {
        if let Some(value) = row.get(key).filter(|v| !v.is_null()) {
            attributes.insert(key.to_owned(), value.clone());
        }
    }
    let status =
        if matches!(op, Op::Deactivate { .. }) { AccountStatus::Deactivated } else { AccountStatus::Active };
    Applied { external_id: email.to_lowercase(), login: Some(email), status, attributes }
}
