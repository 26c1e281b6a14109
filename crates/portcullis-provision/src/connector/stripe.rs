//! Stripe customers. Email is not unique in Stripe, so the hub never creates
//! a customer before looking for one: by the id it stored, then by
//! `metadata.idp_user_id`, then by email (the list endpoint, which is
//! consistent; search lags and Stripe warns against it after writes). Every
//! POST carries an `Idempotency-Key` derived from the step, so a retry after
//! a timeout or a crash cannot create a second customer. Stripe has no
//! deactivation: the hub marks a deprovisioned customer in its metadata, and
//! deletes one (permanent) only after a person approved it.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::services::apps::Credentials;
use portcullis_store::model::App;
use serde_json::{Map, Value};

use super::http::{ConnectorError, Throttle, read_with_retries, retry_after};
use super::{AccountStatus, Applied, Desired, Job, Op, RemoteAccount, Request, fingerprint, text};

/// The API version the connector is written against; pinned per request so
/// an account's default version cannot change the shapes under us.
pub const API_VERSION: &str = "2025-03-31.basil";
/// Metadata the hub owns on customers.
pub const USER_KEY: &str = "idp_user_id";
const STATUS_KEY: &str = "idp_status";
const DEPROVISIONED_AT_KEY: &str = "idp_deprovisioned_at";
const DEPROVISIONED: &str = "deprovisioned";
const PAGE: usize = 100;

pub struct Stripe {
    base: String,
    secret_key: String,
    live: bool,
    client: reqwest::Client,
    throttle: Arc<Throttle>,
}

/// A successful answer's body.
struct Answer {
    body: Value,
}

impl Stripe {
    pub fn new(
        app: &App,
        credentials: Credentials,
        client: reqwest::Client,
        throttle: Arc<Throttle>,
    ) -> Result<Self, ConnectorError> {
        let secret_key = credentials
            .secret_key
            .ok_or_else(|| ConnectorError::permanent("the app has no Stripe secret key"))?;
        Ok(Stripe {
            base: format!("{}/v1", app.base_url),
            live: secret_key.starts_with("sk_live_") || secret_key.starts_with("rk_live_"),
            secret_key,
            client,
            throttle,
        })
    }

    /// Stays under Stripe's limits: 25 requests/s per endpoint, and 25/s in
    /// total in test mode (100/s live). One short of each, because Stripe
    /// counts arrivals and we count departures.
    async fn pace(&self, endpoint: &str) {
        let account = format!("stripe:{}", fingerprint(&self.secret_key));
        let second = Duration::from_millis(1_000);
        let total = if self.live { 95 } else { 24 };
        self.throttle
            .acquire(&[(format!("{account}:{endpoint}"), second, 24), (account, second, total)])
            .await;
    }

    async fn send(
        &self,
        endpoint: &str,
        method: reqwest::Method,
        path: &str,
        form: Option<String>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, ConnectorError> {
        self.pace(endpoint).await;
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.secret_key)
            .header("Stripe-Version", API_VERSION);
        if let Some(form) = form {
            request = request.header("content-type", "application/x-www-form-urlencoded").body(form);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.map_err(ConnectorError::from_reqwest)?;
        let status = response.status().as_u16();
        let after = retry_after(response.headers());
        let should_retry = response
            .headers()
            .get("stripe-should-retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.eq_ignore_ascii_case("true"));
        let bytes = response.bytes().await.map_err(ConnectorError::from_reqwest)?;
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        if (200..300).contains(&status) {
            return body
                .map(|body| Answer { body })
                .ok_or_else(|| ConnectorError::transient("Stripe answered without a JSON body", after));
        }
        let error = body.as_ref().and_then(|b| b.get("error")).and_then(Value::as_object);
        let code = error.and_then(|e| text(e, "code")).unwrap_or_default();
        let message = error.and_then(|e| text(e, "message")).unwrap_or_else(|| format!("HTTP {status}"));
        let described = format!("Stripe {status} {code}: {message}");
        // Stripe-Should-Retry overrides everything else; then the error code;
        // then the status.
        let retry = match should_retry {
            Some(flag) => flag,
            None => {
                matches!(code.as_str(), "lock_timeout" | "rate_limit" | "idempotency_key_in_use")
                    || status == 429
                    || status == 409 && code.is_empty()
                    || status >= 500
            }
        };
        if code == "resource_missing" && status == 404 {
            return Err(ConnectorError::not_found(described));
        }
        let mut error = if retry {
            ConnectorError::transient(described, after)
        } else {
            ConnectorError::permanent(described)
        };
        // Stripe stores a 5xx under the idempotency key and replays it.
        error.answered_server_error = status >= 500;
        Err(error)
    }

    pub async fn roster(
        &self,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<RemoteAccount>, ConnectorError> {
        let mut accounts = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = format!("/customers?limit={PAGE}");
            if let Some(id) = &after {
                query.push_str("&starting_after=");
                query.push_str(&encode(id));
            }
            let page =
                read_with_retries(|| self.send("customers.list", reqwest::Method::GET, &query, None, None))
                    .await?
                    .body;
            let data = page
                .get("data")
                .and_then(Value::as_array)
                .ok_or_else(|| ConnectorError::transient("Stripe's list answer has no data", None))?;
            accounts.extend(data.iter().filter_map(remote));
            progress(accounts.len());
            let has_more = page.get("has_more").and_then(Value::as_bool).unwrap_or(false);
            match data.last().and_then(|c| c.get("id")).and_then(Value::as_str) {
                Some(last) if has_more => after = Some(last.to_owned()),
                // `has_more` with an empty page would loop forever: a broken
                // answer, so the read fails rather than end short.
                None if has_more => {
                    return Err(ConnectorError::transient("Stripe said has_more on an empty page", None));
                }
                _ => return Ok(accounts),
            }
        }
    }

    /// One customer as it is now; `None` once deleted (Stripe answers with a
    /// tombstone, or 404 for an id it never had).
    pub async fn account(&self, external_id: &str) -> Result<Option<RemoteAccount>, ConnectorError> {
        let path = format!("/customers/{}", encode(external_id));
        match self.send("customers.retrieve", reqwest::Method::GET, &path, None, None).await {
            Ok(answer) => Ok(remote(&answer.body)),
            Err(error) if error.not_found => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub async fn apply(&self, jobs: &[Job<'_>]) -> Vec<Result<Applied, ConnectorError>> {
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            results.push(self.apply_one(job.step_id, job.request).await);
        }
        results
    }

    async fn apply_one(&self, step_id: &str, request: &Request) -> Result<Applied, ConnectorError> {
        let key = |what: &str| format!("portcullis-{step_id}-{what}-{}", request.generation);
        match &request.op {
            Op::Create { desired } => {
                if let Some(existing) = self.find(desired).await? {
                    // Found by a previous attempt's create or made out of band:
                    // link it and bring it to the desired state.
                    return self.update(&existing, desired, &key("adopt")).await;
                }
                let form = customer_form(desired, false);
                let answer = self
                    .send(
                        "customers.create",
                        reqwest::Method::POST,
                        "/customers",
                        Some(form),
                        Some(&key("create")),
                    )
                    .await?;
                applied(&answer.body)
            }
            Op::Update { external_id, desired } => self.update(external_id, desired, &key("update")).await,
            Op::Deactivate { external_id, at, .. } => {
                let form = form_urlencoded::Serializer::new(String::new())
                    .append_pair(&format!("metadata[{STATUS_KEY}]"), DEPROVISIONED)
                    .append_pair(&format!("metadata[{DEPROVISIONED_AT_KEY}]"), &at.to_string())
                    .finish();
                let path = format!("/customers/{}", encode(external_id));
                let answer = self
                    .send(
                        "customers.update",
                        reqwest::Method::POST,
                        &path,
                        Some(form),
                        Some(&key("deactivate")),
                    )
                    .await?;
                applied(&answer.body)
            }
            Op::Replace { .. } | Op::Manual { .. } => {
                Err(ConnectorError::permanent("Stripe customers are changed in place"))
            }
            Op::Delete { external_id } => {
                let path = format!("/customers/{}", encode(external_id));
                match self
                    .send("customers.delete", reqwest::Method::DELETE, &path, None, Some(&key("delete")))
                    .await
                {
                    Ok(_) => {}
                    // Already gone: the goal is reached.
                    Err(error) if error.not_found => {}
                    Err(error) => return Err(error),
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

    async fn update(
        &self,
        external_id: &str,
        desired: &Desired,
        idempotency_key: &str,
    ) -> Result<Applied, ConnectorError> {
        let path = format!("/customers/{}", encode(external_id));
        let form = customer_form(desired, true);
        let answer = self
            .send("customers.update", reqwest::Method::POST, &path, Some(form), Some(idempotency_key))
            .await?;
        applied(&answer.body)
    }

    /// The customer this user already has, if any: the one whose metadata
    /// names the user, else the only unclaimed one with the email. Several
    /// unclaimed customers with the email is a question for a person.
    async fn find(&self, desired: &Desired) -> Result<Option<String>, ConnectorError> {
        let query = format!("/customers?limit={PAGE}&email={}", encode(&desired.email));
        let page = self.send("customers.list", reqwest::Method::GET, &query, None, None).await?.body;
        let customers: Vec<&Value> =
            page.get("data").and_then(Value::as_array).map(|d| d.iter().collect()).unwrap_or_default();
        let claimed_by = |c: &Value| {
            c.pointer(&format!("/metadata/{USER_KEY}")).and_then(Value::as_str).map(str::to_owned)
        };
        if let Some(mine) =
            customers.iter().find(|c| claimed_by(c).as_deref() == Some(desired.user_id.as_str()))
        {
            return Ok(mine.get("id").and_then(Value::as_str).map(str::to_owned));
        }
        let unclaimed: Vec<&&Value> = customers.iter().filter(|c| claimed_by(c).is_none()).collect();
        match unclaimed.as_slice() {
            [] => Ok(None),
            [one] => Ok(one.get("id").and_then(Value::as_str).map(str::to_owned)),
            many => Err(ConnectorError::permanent(format!(
                "{} Stripe customers have the email {} and none is linked; set metadata.{USER_KEY} on the right one",
                many.len(),
                desired.email
            ))),
        }
    }
}

/// The form for a create or an update: email, the mapped attributes, the
/// user link, and (on update) clearing any deprovisioning mark.
fn customer_form(desired: &Desired, clear_mark: bool) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("email", &desired.email);
    for (key, value) in &desired.attributes {
        let value = match value {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match key.strip_prefix("metadata.") {
            Some(meta) => form.append_pair(&format!("metadata[{meta}]"), &value),
            None => form.append_pair(key, &value),
        };
    }
    form.append_pair(&format!("metadata[{USER_KEY}]"), &desired.user_id);
    if clear_mark {
        // An empty value unsets a metadata key.
        form.append_pair(&format!("metadata[{STATUS_KEY}]"), "");
        form.append_pair(&format!("metadata[{DEPROVISIONED_AT_KEY}]"), "");
    }
    form.finish()
}

/// A customer as a roster entry; tombstones are skipped (lists exclude them).
fn remote(customer: &Value) -> Option<RemoteAccount> {
    if customer.get("deleted").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let id = customer.get("id")?.as_str()?.to_owned();
    let (status, attributes) = snapshot(customer);
    Some(RemoteAccount {
        external_id: id,
        login: customer.get("email").and_then(Value::as_str).map(str::to_owned),
        status,
        claimed_user_id: customer
            .pointer(&format!("/metadata/{USER_KEY}"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        attributes,
        protected: false,
    })
}

/// The attributes the hub compares: top-level fields and `metadata.*`,
/// without the hub's own markers.
fn snapshot(customer: &Value) -> (AccountStatus, Map<String, Value>) {
    let mut attributes = Map::new();
    for key in ["name", "description", "phone"] {
        if let Some(value) = customer.get(key).filter(|v| !v.is_null()) {
            attributes.insert(key.to_owned(), value.clone());
        }
    }
    let mut status = AccountStatus::Active;
    if let Some(metadata) = customer.get("metadata").and_then(Value::as_object) {
        for (key, value) in metadata {
            match key.as_str() {
                STATUS_KEY if value.as_str() == Some(DEPROVISIONED) => status = AccountStatus::Deactivated,
                USER_KEY | STATUS_KEY | DEPROVISIONED_AT_KEY => {}
                _ => {
                    attributes.insert(format!("metadata.{key}"), value.clone());
                }
            }
        }
    }
    (status, attributes)
}

fn applied(customer: &Value) -> Result<Applied, ConnectorError> {
    let remote =
        remote(customer).ok_or_else(|| ConnectorError::permanent("Stripe returned a deleted customer"))?;
    Ok(Applied {
        external_id: remote.external_id,
        login: remote.login,
        status: remote.status,
        attributes: remote.attributes,
    })
}

/// Percent-encodes a path segment or query value, leaving RFC 3986's
/// unreserved characters (ids like `cus_…` stay as they are).
fn encode(value: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(value, UNRESERVED).to_string()
}

/// Checks a `Stripe-Signature` header: `t=<unix>,v1=<hex>[,v1=…]`, HMAC-SHA256
/// of `"{t}.{body}"` under the endpoint secret, compared in constant time,
/// with the timestamp within `tolerance` of `now`. Any `v1` may match (Stripe
/// sends several while a secret rotates).
pub fn verify_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<(), &'static str> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or("the signature header has no timestamp")?;
    if signatures.is_empty() {
        return Err("the signature header has no v1 signature");
    }
    if (now - timestamp).abs() > tolerance {
        return Err("the signature's timestamp is outside the tolerance");
    }
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    if signatures.iter().any(|s| aws_lc_rs::hmac::verify(&key, &signed, s).is_ok()) {
        Ok(())
    } else {
        Err("no signature matches")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sign(secret: &str, t: i64, body: &str) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
        hex::encode(aws_lc_rs::hmac::sign(&key, format!("{t}.{body}").as_bytes()).as_ref())
    }

    #[test]
    fn signatures_verify_and_fail_for_the_right_reasons() {
        let body = r#"{"id":"evt_1"}"#;
        let good = sign("whsec_a", 1000, body);
        let header = format!("t=1000,v1={good}");
        assert_eq!(verify_signature("whsec_a", &header, body.as_bytes(), 1100, 300), Ok(()));
        // Rotation: any v1 may match.
        let rotated = format!("t=1000,v1={},v1={good}", sign("whsec_old", 1000, body));
        assert_eq!(verify_signature("whsec_a", &rotated, body.as_bytes(), 1000, 300), Ok(()));
        assert!(verify_signature("whsec_b", &header, body.as_bytes(), 1000, 300).is_err());
        assert!(verify_signature("whsec_a", &header, b"{}", 1000, 300).is_err());
        assert_eq!(
            verify_signature("whsec_a", &header, body.as_bytes(), 1400, 300),
            Err("the signature's timestamp is outside the tolerance")
        );
        assert!(verify_signature("whsec_a", "v1=00", body.as_bytes(), 1000, 300).is_err());
    }

    #[test]
    fn the_form_carries_the_link_and_mapped_metadata() {
        let mut attributes = Map::new();
        attributes.insert("name".into(), json!("Ada Lovelace"));
        attributes.insert("metadata.department".into(), json!("R&D"));
        let desired = Desired { user_id: "u1".into(), email: "ada@example.com".into(), attributes };
        let form = customer_form(&desired, true);
        let pairs: Vec<(String, String)> = form_urlencoded::parse(form.as_bytes()).into_owned().collect();
        assert!(pairs.contains(&("metadata[idp_user_id]".into(), "u1".into())));
        assert!(pairs.contains(&("metadata[department]".into(), "R&D".into())));
        assert!(pairs.contains(&("metadata[idp_status]".into(), String::new())));
        assert!(pairs.contains(&("name".into(), "Ada Lovelace".into())));
    }
}
