//! The Stripe simulator: customers (create, retrieve, update, delete, list,
//! search), idempotency keys, rate limits, faults and signed webhooks, as
//! `../shared/spec/connectors.md` §3 and §6 record Stripe's contract.
//!
//! Every request is answered synchronously under one state lock, so
//! idempotency checks, the write and the events it emits happen atomically
//! and in order. The only asynchronous parts are a withheld answer (the
//! `TimeoutAfterCommit` fault) and webhook delivery, which runs on a
//! background queue.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::common::{
    self, Clock, Fault, Faults, IdSequence, LoggedRequest, RequestLog, Running, WindowLimiter,
};

/// The version events are rendered in (the simulated account's pinned version).
pub const API_VERSION: &str = "2025-03-31.basil";
/// Search rejects older versions [D].
const SEARCH_MIN_VERSION: &str = "2020-08-27";
/// Stripe may prune idempotency keys once they are 24 hours old [D].
const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;
const IDEMPOTENCY_KEY_MAX: usize = 255;
/// Global limits per mode [D]; per-endpoint and search limits are in [`Config`].
const TEST_GLOBAL_RPS: usize = 25;
const LIVE_GLOBAL_RPS: usize = 100;
/// Stripe retries for days; the simulator compresses that into ~1.5 s.
const WEBHOOK_ATTEMPTS: u32 = 5;
const WEBHOOK_FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How long `webhook_shuffle` holds back every other event.
const SHUFFLE_DELAY: Duration = Duration::from_millis(150);
/// Older than the SDKs' default 300 s tolerance.
const STALE_SIGNATURE_SECS: i64 = 600;

const RATE_LIMIT_MESSAGE: &str =
    "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.";
const LOCK_TIMEOUT_MESSAGE: &str = "This object cannot be accessed right now because another API request or \
     Stripe process is currently accessing it. If you see this error intermittently, retry the request.";
const SERVER_ERROR_MESSAGE: &str = "Sorry, something went wrong. We've already been notified of the problem. \
     If you need any help, you can contact support at https://support.stripe.com/.";
const NO_KEY_MESSAGE: &str = "You did not provide an API key. You need to provide your API key in the \
     Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See \
     https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.";

/// How the simulator behaves. Documented behaviour is the default; every
/// inferred (`[I]`) behaviour of the spec is a switch.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Seeds the ids, so a run produces the same ids every time.
    pub seed: u64,
    /// Accepted secret keys: `sk_live_*` is live mode (100 req/s global),
    /// anything else test mode (25 req/s).
    pub api_keys: Vec<String>,
    pub rate_limits: bool,
    pub per_endpoint_rps: u32,
    pub search_rps: u32,
    /// Requests in flight at once per key. Stripe has a concurrency limiter
    /// but publishes no number [D], so it is off by default.
    pub concurrency_limit: Option<usize>,
    /// A customer becomes visible to search this many simulated seconds
    /// after its last write (Stripe: under a minute, up to an hour [D]).
    pub search_lag_secs: i64,
    /// [I] Status for updating a deleted customer: 404 answers
    /// `resource_missing`, any other status an `invalid_request_error`.
    pub update_deleted_status: u16,
    /// [I] Whether list returns deleted customers (as tombstones).
    pub list_includes_deleted: bool,
    /// [I/T] Whether a replay carries `Idempotent-Replayed: true`.
    pub replayed_header: bool,
    /// Whether `Idempotency-Key` applies to DELETE. Stripe documents that it
    /// has no effect on GET and DELETE [D], so off by default.
    pub idempotent_deletes: bool,
    pub webhook_endpoints: Vec<WebhookEndpoint>,
    /// Deliver every event twice (same event id).
    pub webhook_duplicates: bool,
    /// Hold back every other event so the next one overtakes it.
    pub webhook_shuffle: bool,
    pub webhook_tamper: Option<Tamper>,
    /// A simulated secret rotation: a second `v1` signature with this secret.
    pub extra_signing_secret: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 1,
            api_keys: vec!["sk_test_portcullis".into()],
            rate_limits: true,
            per_endpoint_rps: 25,
            search_rps: 20,
            concurrency_limit: None,
            search_lag_secs: 5,
            update_deleted_status: 404,
            list_includes_deleted: false,
            replayed_header: true,
            idempotent_deletes: false,
            webhook_endpoints: Vec::new(),
            webhook_duplicates: false,
            webhook_shuffle: false,
            webhook_tamper: None,
            extra_signing_secret: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub url: String,
    /// `whsec_...`
    pub secret: String,
}

/// How webhook signatures are spoiled, to test the receiver's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tamper {
    /// Signed with a secret the endpoint does not know.
    BadSignature,
    /// Correctly signed, but `t` is 10 minutes old.
    StaleTimestamp,
}

/// A customer, live or deleted. Serializes to Stripe's JSON: the full
/// object, or the tombstone `{"id","object","deleted":true}` once deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: String,
    pub created: i64,
    pub email: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub phone: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub livemode: bool,
    pub deleted: bool,
    /// Simulated time of the last write; search sees it `search_lag_secs` later.
    pub last_write: i64,
}

impl Customer {
    /// The full object, also for a deleted customer (its `customer.deleted` event).
    fn to_json(&self) -> Value {
        let invoice_prefix: String =
            self.id.trim_start_matches("cus_").chars().take(8).collect::<String>().to_ascii_uppercase();
        json!({
            "id": self.id, "object": "customer", "address": null, "balance": 0, "created": self.created,
            "currency": null, "default_source": null, "delinquent": false, "description": self.description,
            "discount": null, "email": self.email, "invoice_prefix": invoice_prefix,
            "invoice_settings": {
                "custom_fields": null, "default_payment_method": null, "footer": null, "rendering_options": null
            },
            "livemode": self.livemode, "metadata": self.metadata, "name": self.name,
            "next_invoice_sequence": 1, "phone": self.phone, "preferred_locales": [], "shipping": null,
            "tax_exempt": "none", "test_clock": null
        })
    }
}

impl Serialize for Customer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.deleted {
            json!({"id": self.id, "object": "customer", "deleted": true}).serialize(serializer)
        } else {
            self.to_json().serialize(serializer)
        }
    }
}

/// A customer created out of band (as in the Dashboard). Empty strings and
/// empty metadata values are treated as absent, as the API does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewCustomer {
    pub email: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub phone: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Defaults to now (simulated).
    pub created: Option<i64>,
}

/// An update: absent fields stay, `""` unsets a field; metadata merges and a
/// `""` value unsets its key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomerChange {
    pub email: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub phone: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`, as Stripe
/// signs webhooks.
pub fn signature_header(secret: &str, timestamp: i64, body: &str) -> String {
    format!("t={timestamp},v1={}", sign(secret, timestamp, body))
}

fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, format!("{timestamp}.{body}").as_bytes());
    tag.as_ref().iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// The simulated Stripe account, shared as `Arc<StripeSim>`.
pub struct StripeSim {
    config: Config,
    /// For the webhook queue, which must not keep the simulator alive.
    me: Weak<StripeSim>,
    state: Mutex<Store>,
    endpoints: Mutex<Vec<WebhookEndpoint>>,
    outbox: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    log: RequestLog,
    faults: Faults,
    clock: Clock,
    limits: Limits,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
    http: reqwest::Client,
}

struct Limits {
    test: WindowLimiter,
    live: WindowLimiter,
    endpoint: WindowLimiter,
    search: WindowLimiter,
}

impl StripeSim {
    pub fn new(config: Config) -> Arc<Self> {
        let per_second = |n: usize| WindowLimiter::new(&[(Duration::from_secs(1), n)]);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("the webhook HTTP client builds");
        Arc::new_cyclic(|me| StripeSim {
            me: me.clone(),
            state: Mutex::new(Store::new(config.seed)),
            endpoints: Mutex::new(config.webhook_endpoints.clone()),
            outbox: Mutex::default(),
            log: RequestLog::default(),
            faults: Faults::default(),
            clock: Clock::default(),
            limits: Limits {
                test: per_second(TEST_GLOBAL_RPS),
                live: per_second(LIVE_GLOBAL_RPS),
                endpoint: per_second(config.per_endpoint_rps as usize),
                search: per_second(config.search_rps as usize),
            },
            in_flight: Arc::default(),
            http,
            config,
        })
    }

    /// The Stripe API under `/v1` plus the `/_sim` back door.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .merge(common::back_door::<StripeSim>())
            .route("/_sim/customers", get(sim_customers).post(sim_seed))
            .route("/_sim/customers/{id}", post(sim_update).delete(sim_delete))
            .route("/_sim/webhook_endpoints", post(sim_add_endpoint))
            .fallback(api)
            .with_state(self.clone())
    }

    /// Serves on `127.0.0.1:port` (0 picks a free port).
    pub async fn start(config: Config, port: u16) -> std::io::Result<(Arc<Self>, Running)> {
        let sim = Self::new(config);
        let running = common::serve(sim.router(), port).await?;
        Ok((sim, running))
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

    /// Creates a customer as the Dashboard would (emits `customer.created`).
    pub fn seed_customer(&self, new: NewCustomer) -> Customer {
        let mut st = self.state();
        let origin = Origin::dashboard(&mut st);
        self.create(&mut st, new, false, &origin)
    }

    /// Updates a live customer as the Dashboard would; `None` if it is
    /// unknown or deleted.
    pub fn update_customer(&self, id: &str, change: CustomerChange) -> Option<Customer> {
        let mut st = self.state();
        let origin = Origin::dashboard(&mut st);
        self.change(&mut st, id, &change, false, &origin).ok()
    }

    /// Deletes a live customer as the Dashboard would; false if unknown or
    /// already deleted.
    pub fn delete_customer(&self, id: &str) -> bool {
        let mut st = self.state();
        let origin = Origin::dashboard(&mut st);
        self.remove(&mut st, id, &origin)
    }

    /// Live customers, newest first.
    pub fn customers(&self) -> Vec<Customer> {
        self.state().rows.iter().rev().map(|r| &r.customer).filter(|c| !c.deleted).cloned().collect()
    }

    /// A customer, deleted ones included.
    pub fn customer(&self, id: &str) -> Option<Customer> {
        self.state().get(id).cloned()
    }

    pub fn add_webhook_endpoint(&self, url: String, secret: String) {
        self.endpoints.lock().unwrap_or_else(PoisonError::into_inner).push(WebhookEndpoint { url, secret });
    }

    /// Forgets customers, idempotency keys, the log, faults and rate-limit
    /// history, and restarts the id sequences. Webhook endpoints stay.
    pub fn reset(&self) {
        *self.state() = Store::new(self.config.seed);
        self.log.clear();
        self.faults.clear();
        for limiter in [&self.limits.test, &self.limits.live, &self.limits.endpoint, &self.limits.search] {
            limiter.clear();
        }
    }

    fn state(&self) -> MutexGuard<'_, Store> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// ---------------------------------------------------------------------------
// Data

struct Store {
    customer_ids: IdSequence,
    event_ids: IdSequence,
    request_ids: IdSequence,
    /// Every customer ever created, tombstones included, ascending by
    /// (created, insertion order): list pages walk it backwards from a cursor
    /// found by binary search, so a page costs O(log n + limit).
    rows: Vec<Row>,
    keys: HashMap<String, (i64, u64)>,
    next_seq: u64,
    idempotency: HashMap<(String, String), Saved>,
}

struct Row {
    key: (i64, u64),
    customer: Customer,
}

/// A stored idempotent result.
struct Saved {
    fingerprint: Fingerprint,
    first_used: i64,
    /// Until then the original request is still "executing" (its answer is
    /// withheld by a `TimeoutAfterCommit` fault): retries get 409.
    in_flight_until: Option<Instant>,
    answer: Answer,
}

/// What must match for a replay: method, path and the sorted parameters.
type Fingerprint = (String, Vec<(String, String)>);

impl Store {
    fn new(seed: u64) -> Self {
        Store {
            customer_ids: IdSequence::new(seed),
            // Separate sequences, so customer ids do not depend on how many
            // requests or events came before.
            event_ids: IdSequence::new(seed ^ 0x0e0e_0e0e),
            request_ids: IdSequence::new(seed ^ 0x5eed_5eed),
            rows: Vec::new(),
            keys: HashMap::new(),
            next_seq: 0,
            idempotency: HashMap::new(),
        }
    }

    fn position(&self, id: &str) -> Option<usize> {
        let key = self.keys.get(id)?;
        self.rows.binary_search_by_key(key, |r| r.key).ok()
    }

    fn get(&self, id: &str) -> Option<&Customer> {
        self.position(id).map(|i| &self.rows[i].customer)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Customer> {
        self.position(id).map(|i| &mut self.rows[i].customer)
    }

    fn insert(&mut self, customer: Customer) {
        let key = (customer.created, self.next_seq);
        self.next_seq += 1;
        // Usually the end; seeded customers with an old `created` go earlier.
        let at = self.rows.partition_point(|r| r.key < key);
        self.keys.insert(customer.id.clone(), key);
        self.rows.insert(at, Row { key, customer });
    }
}

/// What caused a write, for the event's `request` field.
#[derive(Default)]
struct Origin {
    request_id: Option<String>,
    idempotency_key: Option<String>,
}

impl Origin {
    /// Dashboard actions have a request id too, but never an idempotency key.
    fn dashboard(st: &mut Store) -> Self {
        Origin { request_id: Some(st.request_ids.next("req_")), idempotency_key: None }
    }
}

enum Gone {
    Missing,
    Deleted,
}

impl StripeSim {
    fn create(&self, st: &mut Store, new: NewCustomer, livemode: bool, origin: &Origin) -> Customer {
        let now = self.clock.now();
        let present = |v: Option<String>| v.filter(|s| !s.is_empty());
        let customer = Customer {
            id: st.customer_ids.next("cus_"),
            created: new.created.unwrap_or(now),
            email: present(new.email),
            name: present(new.name),
            description: present(new.description),
            phone: present(new.phone),
            metadata: new.metadata.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
            livemode,
            deleted: false,
            last_write: now,
        };
        st.insert(customer.clone());
        self.emit(st, "customer.created", &customer, None, origin);
        customer
    }

    fn change(
        &self,
        st: &mut Store,
        id: &str,
        change: &CustomerChange,
        clear_metadata: bool,
        origin: &Origin,
    ) -> Result<Customer, Gone> {
        let now = self.clock.now();
        let customer = st.get_mut(id).ok_or(Gone::Missing)?;
        if customer.deleted {
            return Err(Gone::Deleted);
        }
        let mut previous = Map::new();
        let fields = [
            ("email", &mut customer.email, &change.email),
            ("name", &mut customer.name, &change.name),
            ("description", &mut customer.description, &change.description),
            ("phone", &mut customer.phone, &change.phone),
        ];
        for (name, field, new) in fields {
            let Some(new) = new else { continue };
            let new = Some(new.clone()).filter(|s| !s.is_empty());
            if *field != new {
                previous.insert(name.into(), json!(std::mem::replace(field, new)));
            }
        }
        // previous_attributes lists each changed key with its old value
        // (null for a key that did not exist).
        let old_metadata = customer.metadata.clone();
        if clear_metadata {
            customer.metadata.clear();
        }
        for (key, value) in &change.metadata {
            if value.is_empty() {
                customer.metadata.remove(key);
            } else {
                customer.metadata.insert(key.clone(), value.clone());
            }
        }
        let mut changed = Map::new();
        for key in old_metadata.keys().chain(customer.metadata.keys()) {
            if old_metadata.get(key) != customer.metadata.get(key) {
                changed.insert(key.clone(), json!(old_metadata.get(key)));
            }
        }
        if !changed.is_empty() {
            previous.insert("metadata".into(), Value::Object(changed));
        }
        if previous.is_empty() {
            // Stripe emits no event for a no-op update.
            return Ok(customer.clone());
        }
        customer.last_write = now;
        let customer = customer.clone();
        self.emit(st, "customer.updated", &customer, Some(Value::Object(previous)), origin);
        Ok(customer)
    }

    fn remove(&self, st: &mut Store, id: &str, origin: &Origin) -> bool {
        let now = self.clock.now();
        let Some(customer) = st.get_mut(id).filter(|c| !c.deleted) else { return false };
        customer.deleted = true;
        customer.last_write = now;
        let customer = customer.clone();
        self.emit(st, "customer.deleted", &customer, None, origin);
        true
    }
}

// ---------------------------------------------------------------------------
// The API

/// Every request outside `/_sim`: answered synchronously, logged, and (for a
/// `TimeoutAfterCommit` fault) withheld before it is sent.
async fn api(
    State(sim): State<Arc<StripeSim>>,
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
    into_response(answer, handling)
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

    /// Query parameters, plus the form body of a POST.
    fn params(&self) -> Vec<(String, String)> {
        let mut params: Vec<_> =
            form_urlencoded::parse(self.query.unwrap_or("").as_bytes()).into_owned().collect();
        if self.method == Method::POST {
            params.extend(form_urlencoded::parse(self.body).into_owned());
        }
        params
    }
}

/// Who asked and when, for error bodies.
struct Ctx {
    request_id: String,
    /// Whether the key was accepted (so the request belongs to an account).
    authenticated: bool,
    live: bool,
    now: i64,
}

/// A response before it becomes HTTP; idempotency stores these.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: String,
    /// A proxy's page rather than Stripe's answer: no Stripe headers.
    html: bool,
    request_id: String,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn json(status: u16, body: &Value, ctx: &Ctx) -> Self {
        Answer {
            status,
            // Stripe pretty-prints its bodies.
            body: serde_json::to_string_pretty(body).unwrap_or_default(),
            html: false,
            request_id: ctx.request_id.clone(),
            headers: Vec::new(),
        }
    }
}

/// What happened besides the answer, for the log and the response headers.
#[derive(Default)]
struct Handling {
    replayed: bool,
    /// The request's `Stripe-Version`, echoed.
    version: Option<String>,
    fault: Option<Fault>,
    hold: Option<Duration>,
    _slot: Option<Slot>,
}

fn into_response(answer: Answer, handling: Handling) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, answer.body).into_response();
    let headers = response.headers_mut();
    let content_type = if answer.html { "text/html" } else { "application/json" };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if answer.html {
        // A proxy's page carries none of Stripe's headers.
        return response;
    }
    let replayed = handling.replayed.then(|| "true".to_owned());
    let extra = [
        ("request-id", Some(answer.request_id)),
        ("stripe-version", handling.version),
        ("idempotent-replayed", replayed),
    ];
    let extra = extra.into_iter().filter_map(|(name, value)| Some((name, value?))).chain(answer.headers);
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

/// One request counted against the concurrency limit until dropped.
struct Slot {
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(n) = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner).get_mut(&self.key) {
            *n = n.saturating_sub(1);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Create,
    Retrieve,
    Update,
    Delete,
    List,
    Search,
}

impl Operation {
    /// The fault and rate-limit name.
    fn name(self) -> &'static str {
        match self {
            Operation::Create => "customers.create",
            Operation::Retrieve => "customers.retrieve",
            Operation::Update => "customers.update",
            Operation::Delete => "customers.delete",
            Operation::List => "customers.list",
            Operation::Search => "customers.search",
        }
    }
}

fn route(method: &Method, path: &str) -> Option<(Operation, String)> {
    let rest = path.strip_prefix("/v1/customers")?;
    let id = match rest {
        "" | "/" => None,
        _ => Some(rest.strip_prefix('/').filter(|id| !id.contains('/'))?),
    };
    let operation = match (method.as_str(), id) {
        ("GET", None) => Operation::List,
        ("POST", None) => Operation::Create,
        ("GET", Some("search")) => Operation::Search,
        ("GET", Some(_)) => Operation::Retrieve,
        ("POST", Some(_)) => Operation::Update,
        ("DELETE", Some(_)) => Operation::Delete,
        _ => return None,
    };
    Some((operation, id.unwrap_or_default().to_owned()))
}

/// A validated request, ready to execute.
enum Action {
    Create(NewCustomer),
    Retrieve(String),
    Update(String, CustomerChange, bool),
    Delete(String),
    List(ListQuery),
    Search(SearchQuery),
}

impl Action {
    fn parse(operation: Operation, id: String, params: &[(String, String)]) -> Result<Self, StripeError> {
        Ok(match operation {
            Operation::Create => {
                let (c, _) = customer_fields(params)?;
                let (email, name, description, phone) = (c.email, c.name, c.description, c.phone);
                Action::Create(NewCustomer {
                    email,
                    name,
                    description,
                    phone,
                    metadata: c.metadata,
                    created: None,
                })
            }
            Operation::Update => {
                let (change, clear_metadata) = customer_fields(params)?;
                Action::Update(id, change, clear_metadata)
            }
            Operation::Retrieve | Operation::Delete => {
                if let Some((name, _)) = params.iter().find(|(name, _)| !is_expand(name)) {
                    return Err(StripeError::unknown_param(name));
                }
                if operation == Operation::Retrieve { Action::Retrieve(id) } else { Action::Delete(id) }
            }
            Operation::List => Action::List(ListQuery::parse(params)?),
            Operation::Search => Action::Search(SearchQuery::parse(params)?),
        })
    }
}

fn is_expand(name: &str) -> bool {
    name.strip_prefix("expand[")
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|index| index.chars().all(|c| c.is_ascii_digit()))
}

/// The create/update parameters; the flag says `metadata=` (clear all) was sent.
fn customer_fields(params: &[(String, String)]) -> Result<(CustomerChange, bool), StripeError> {
    let mut change = CustomerChange::default();
    let mut clear_metadata = false;
    for (name, value) in params {
        let slot = match name.as_str() {
            "email" => &mut change.email,
            "name" => &mut change.name,
            "description" => &mut change.description,
            "phone" => &mut change.phone,
            "metadata" if value.is_empty() => {
                clear_metadata = true;
                continue;
            }
            "metadata" => return Err(StripeError::invalid("Invalid hash").param("metadata")),
            _ if is_expand(name) => continue,
            _ => {
                let key = name.strip_prefix("metadata[").and_then(|k| k.strip_suffix(']'));
                let Some(key) = key.filter(|k| !k.is_empty() && !k.contains(['[', ']'])) else {
                    return Err(StripeError::unknown_param(name));
                };
                // Stripe's documented metadata limits.
                if key.chars().count() > 40 || value.chars().count() > 500 {
                    let message = "Metadata keys can be up to 40 characters long and values up to 500.";
                    return Err(StripeError::invalid(message).param(name));
                }
                change.metadata.insert(key.to_owned(), value.clone());
                continue;
            }
        };
        *slot = Some(value.clone());
    }
    if change.metadata.len() > 50 {
        return Err(StripeError::invalid("You can specify up to 50 metadata keys.").param("metadata"));
    }
    Ok((change, clear_metadata))
}

/// `Stripe-Version` must start with a date; search needs 2020-08-27 or later [D].
fn check_version(version: &str, operation: Operation) -> Result<(), StripeError> {
    let date = version.get(..10).unwrap_or("");
    let well_formed = date.len() == 10
        && date.char_indices().all(|(i, c)| if i == 4 || i == 7 { c == '-' } else { c.is_ascii_digit() });
    if !well_formed {
        return Err(StripeError::invalid(format!("Invalid Stripe API version: {version}")));
    }
    if operation == Operation::Search && date < SEARCH_MIN_VERSION {
        return Err(StripeError::invalid(format!(
            "Search is not supported on api version {version}. Update your API version, or set the API \
             Version of this request to {SEARCH_MIN_VERSION} or greater."
        )));
    }
    Ok(())
}

/// `limit`: 1 to 100 [D].
fn parse_limit(value: &str) -> Result<usize, StripeError> {
    let n: i64 = value.parse().map_err(|_| {
        StripeError::invalid(format!("Invalid integer: {value}"))
            .code("parameter_invalid_integer")
            .param("limit")
    })?;
    match n {
        ..1 => Err(StripeError::invalid("This value must be greater than or equal to 1.").param("limit")),
        101.. => Err(StripeError::invalid("This value must be less than or equal to 100.").param("limit")),
        _ => Ok(n as usize),
    }
}

impl StripeSim {
    fn handle(&self, req: &Request) -> (Answer, Handling) {
        let mut st = self.state();
        let now = self.clock.now();
        let mut ctx = Ctx { request_id: st.request_ids.next("req_"), authenticated: false, live: false, now };
        let mut handling =
            Handling { version: req.header("stripe-version").map(str::to_owned), ..Handling::default() };
        let answer = self.serve(&mut st, req, &mut ctx, &mut handling).unwrap_or_else(|e| e.answer(&ctx));
        (answer, handling)
    }

    /// The pipeline: auth, routing, version, limits, idempotency lookup,
    /// validation, fault, execution, idempotency store. `Err` answers are
    /// never stored.
    fn serve(
        &self,
        st: &mut Store,
        req: &Request,
        ctx: &mut Ctx,
        out: &mut Handling,
    ) -> Result<Answer, StripeError> {
        let key = self.authenticate(req)?;
        ctx.live = key.starts_with("sk_live_") || key.starts_with("rk_live_");
        ctx.authenticated = true;
        let (operation, id) = route(req.method, req.path).ok_or_else(|| {
            let message = format!(
                "Unrecognized request URL ({}: {}). Please see https://stripe.com/docs or we can help at \
                 https://support.stripe.com/.",
                req.method, req.path
            );
            StripeError::new(404, "invalid_request_error", message)
        })?;
        if let Some(version) = &out.version {
            check_version(version, operation)?;
        }
        out._slot = self.admit(&key, ctx.live, operation)?;

        let params = req.params();
        let idempotent =
            req.method == Method::POST || (req.method == Method::DELETE && self.config.idempotent_deletes);
        let idempotency = match req.header("idempotency-key") {
            Some(k) if idempotent => {
                let mut sorted = params.clone();
                sorted.sort();
                let fingerprint = (format!("{} {}", req.method, req.path), sorted);
                if let Some(answer) = self.replay(st, (key.clone(), k.to_owned()), &fingerprint, ctx.now)? {
                    out.replayed = self.config.replayed_header;
                    return Ok(answer);
                }
                Some((k, fingerprint))
            }
            _ => None,
        };

        let action = Action::parse(operation, id, &params)?;
        // From here on "execution has begun": the answer is stored, except
        // for faults that stand for a request turned away before executing.
        out.fault = self.faults.take(operation.name());
        let origin = Origin {
            request_id: Some(ctx.request_id.clone()),
            idempotency_key: idempotency.as_ref().map(|(k, _)| (*k).to_owned()),
        };
        let (answer, store) = match out.fault.clone() {
            Some(Fault::RateLimited { retry_after }) => {
                let mut error = StripeError::rate_limit();
                error.retry_after = retry_after;
                (error.answer(ctx), false)
            }
            Some(Fault::InBand { code, message }) => {
                // Contention answers 429 and invites a retry; other codes are 400s.
                let lock_timeout = code == "lock_timeout";
                let message = message.unwrap_or_else(|| match lock_timeout {
                    true => LOCK_TIMEOUT_MESSAGE.into(),
                    false => format!("Simulated error: {code}"),
                });
                let status = if lock_timeout { 429 } else { 400 };
                let error = StripeError::new(status, "invalid_request_error", message)
                    .code(&code)
                    .retry(lock_timeout);
                (error.answer(ctx), false)
            }
            Some(Fault::Malformed { status }) => {
                let page = Fault::PROXY_PAGE.to_owned();
                let request_id = ctx.request_id.clone();
                (Answer { status, body: page, html: true, request_id, headers: Vec::new() }, false)
            }
            Some(Fault::ServerError { status }) => {
                (StripeError::new(status, "api_error", SERVER_ERROR_MESSAGE).retry(true).answer(ctx), true)
            }
            Some(Fault::TimeoutAfterCommit { secs }) => {
                out.hold = Some(Duration::from_secs(secs));
                (self.execute(st, action, ctx, &origin), true)
            }
            None => (self.execute(st, action, ctx, &origin), true),
        };
        if let (Some((k, fingerprint)), true) = (idempotency, store) {
            let in_flight_until = out.hold.map(|hold| Instant::now() + hold);
            let saved = Saved { fingerprint, first_used: ctx.now, in_flight_until, answer: answer.clone() };
            st.idempotency.insert((key, k.to_owned()), saved);
        }
        Ok(answer)
    }

    /// The stored answer for an idempotency key, if any; an error if the key
    /// is too long, still in flight, or was used with other parameters.
    /// Keys older than 24 h (simulated) are forgotten.
    fn replay(
        &self,
        st: &mut Store,
        scope: (String, String),
        fingerprint: &Fingerprint,
        now: i64,
    ) -> Result<Option<Answer>, StripeError> {
        let key = &scope.1;
        if key.len() > IDEMPOTENCY_KEY_MAX {
            let message = format!("Idempotency keys can be at most {IDEMPOTENCY_KEY_MAX} characters long.");
            return Err(StripeError::invalid(message));
        }
        if st.idempotency.get(&scope).is_some_and(|s| s.first_used + IDEMPOTENCY_TTL_SECS <= now) {
            st.idempotency.remove(&scope);
        }
        let Some(saved) = st.idempotency.get(&scope) else { return Ok(None) };
        if saved.in_flight_until.is_some_and(|t| Instant::now() < t) {
            let message = format!(
                "There is currently another in-progress request using this Idempotent Key (that probably \
                 means you submitted twice, and the other request is still going through): {key}. Please \
                 try again later."
            );
            let error = StripeError::new(409, "idempotency_error", message);
            return Err(error.code("idempotency_key_in_use").retry(true));
        }
        if saved.fingerprint != *fingerprint {
            let message = format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used \
                 with. Try using a key other than '{key}' if you meant to execute a different request."
            );
            return Err(StripeError::new(400, "idempotency_error", message));
        }
        Ok(Some(saved.answer.clone()))
    }

    /// `Authorization: Bearer <key>` or HTTP Basic with the key as username [D].
    fn authenticate(&self, req: &Request) -> Result<String, StripeError> {
        let unauthorized = |message: String| StripeError::new(401, "invalid_request_error", message);
        let Some(authorization) = req.header("authorization") else {
            return Err(unauthorized(NO_KEY_MESSAGE.into()));
        };
        let (scheme, credentials) = authorization.split_once(' ').unwrap_or((authorization, ""));
        let key = if scheme.eq_ignore_ascii_case("bearer") {
            credentials.trim().to_owned()
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64_decode(credentials.trim()).unwrap_or_default();
            let decoded = String::from_utf8_lossy(&decoded).into_owned();
            decoded.split_once(':').map_or(decoded.clone(), |(user, _)| user.to_owned())
        } else {
            String::new()
        };
        if key.is_empty() {
            return Err(unauthorized(NO_KEY_MESSAGE.into()));
        }
        if !self.config.api_keys.contains(&key) {
            return Err(unauthorized(format!("Invalid API Key provided: {}", mask_key(&key))));
        }
        Ok(key)
    }

    /// Global, per-endpoint and search limits over 1 s windows, then the
    /// optional concurrency limit; all per API key.
    fn admit(&self, key: &str, live: bool, operation: Operation) -> Result<Option<Slot>, StripeError> {
        if self.config.rate_limits {
            let global = if live { &self.limits.live } else { &self.limits.test };
            let limited = global.check(key).is_err()
                || self.limits.endpoint.check(&format!("{key} {}", operation.name())).is_err()
                || (operation == Operation::Search && self.limits.search.check(key).is_err());
            if limited {
                return Err(StripeError::rate_limit());
            }
        }
        let Some(max) = self.config.concurrency_limit else { return Ok(None) };
        let mut in_flight = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        let count = in_flight.entry(key.to_owned()).or_default();
        if *count >= max {
            return Err(StripeError::rate_limit());
        }
        *count += 1;
        Ok(Some(Slot { in_flight: self.in_flight.clone(), key: key.to_owned() }))
    }

    fn execute(&self, st: &mut Store, action: Action, ctx: &Ctx, origin: &Origin) -> Answer {
        let missing = |id: &str| StripeError::missing(id, "id");
        let result = match action {
            Action::Create(new) => Ok(json!(self.create(st, new, ctx.live, origin))),
            Action::Retrieve(id) => st.get(&id).map(|c| json!(c)).ok_or_else(|| missing(&id)),
            Action::Update(id, change, clear) => match self.change(st, &id, &change, clear, origin) {
                Ok(customer) => Ok(json!(customer)),
                Err(Gone::Missing) => Err(missing(&id)),
                Err(Gone::Deleted) if self.config.update_deleted_status == 404 => Err(missing(&id)),
                Err(Gone::Deleted) => {
                    let message = format!("You cannot update the deleted customer '{id}'.");
                    let status = self.config.update_deleted_status;
                    Err(StripeError::new(status, "invalid_request_error", message).param("id"))
                }
            },
            Action::Delete(id) => match self.remove(st, &id, origin) {
                true => Ok(json!({"id": id, "object": "customer", "deleted": true})),
                false => Err(missing(&id)),
            },
            Action::List(query) => self.list(st, &query),
            Action::Search(query) => Ok(self.search(st, &query, ctx.now)),
        };
        match result {
            Ok(body) => Answer::json(200, &body, ctx),
            Err(error) => error.answer(ctx),
        }
    }
}

fn mask_key(key: &str) -> String {
    // Stripe shows the mode prefix and the last four characters.
    let prefix_len = key.match_indices('_').nth(1).map_or(0, |(i, _)| i + 1);
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < prefix_len + 8 {
        return "*".repeat(chars.len());
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{}****{tail}", &key[..prefix_len])
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Errors

/// An error answer: `{"error":{type,code,message,param,doc_url,request_log_url}}`
/// with null keys left out, as Stripe does.
#[derive(Debug, Clone)]
struct StripeError {
    status: u16,
    kind: &'static str,
    code: Option<String>,
    message: String,
    param: Option<String>,
    should_retry: Option<bool>,
    retry_after: Option<u64>,
}

impl StripeError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        StripeError {
            status,
            kind,
            code: None,
            message: message.into(),
            param: None,
            should_retry: None,
            retry_after: None,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", message)
    }

    fn code(mut self, code: &str) -> Self {
        self.code = Some(code.to_owned());
        self
    }

    fn param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    /// `Stripe-Should-Retry`, which overrides status-based retry logic.
    fn retry(mut self, should: bool) -> Self {
        self.should_retry = Some(should);
        self
    }

    fn missing(id: &str, param: &str) -> Self {
        Self::new(404, "invalid_request_error", format!("No such customer: '{id}'"))
            .code("resource_missing")
            .param(param)
    }

    fn unknown_param(name: &str) -> Self {
        Self::invalid(format!("Received unknown parameter: {name}")).code("parameter_unknown").param(name)
    }

    fn rate_limit() -> Self {
        Self::new(429, "invalid_request_error", RATE_LIMIT_MESSAGE).code("rate_limit")
    }

    fn answer(&self, ctx: &Ctx) -> Answer {
        let mut error = Map::new();
        error.insert("type".into(), json!(self.kind));
        if let Some(code) = &self.code {
            error.insert("code".into(), json!(code));
            // Stripe's doc URLs spell codes with hyphens.
            let doc_url = format!("https://stripe.com/docs/error-codes/{}", code.replace('_', "-"));
            error.insert("doc_url".into(), json!(doc_url));
        }
        error.insert("message".into(), json!(self.message));
        if let Some(param) = &self.param {
            error.insert("param".into(), json!(param));
        }
        // Only a request tied to an account has a log in its Dashboard.
        if ctx.authenticated {
            let mode = if ctx.live { "" } else { "test/" };
            let url = format!("https://dashboard.stripe.com/{mode}logs/{}?t={}", ctx.request_id, ctx.now);
            error.insert("request_log_url".into(), json!(url));
        }
        let mut answer = Answer::json(self.status, &json!({ "error": error }), ctx);
        if let Some(should) = self.should_retry {
            answer.headers.push(("stripe-should-retry", should.to_string()));
        }
        if let Some(secs) = self.retry_after {
            answer.headers.push(("retry-after", secs.to_string()));
        }
        if self.status == 401 {
            answer.headers.push(("www-authenticate", "Basic realm=\"Stripe\"".into()));
        }
        answer
    }
}

// ---------------------------------------------------------------------------
// List

struct ListQuery {
    limit: usize,
    starting_after: Option<String>,
    ending_before: Option<String>,
    email: Option<String>,
    /// `created` bounds, inclusive.
    created: (i64, i64),
}

impl ListQuery {
    fn parse(params: &[(String, String)]) -> Result<Self, StripeError> {
        let mut q = ListQuery {
            limit: 10,
            starting_after: None,
            ending_before: None,
            email: None,
            created: (i64::MIN, i64::MAX),
        };
        for (name, value) in params.iter().filter(|(_, v)| !v.is_empty()) {
            let integer = || {
                value.parse::<i64>().map_err(|_| {
                    StripeError::invalid(format!("Invalid integer: {value}"))
                        .code("parameter_invalid_integer")
                        .param(name)
                })
            };
            match name.as_str() {
                "limit" => q.limit = parse_limit(value)?,
                "starting_after" => q.starting_after = Some(value.clone()),
                "ending_before" => q.ending_before = Some(value.clone()),
                "email" => q.email = Some(value.clone()),
                "created" => q.created = (integer()?, integer()?),
                "created[gt]" => q.created.0 = q.created.0.max(integer()?.saturating_add(1)),
                "created[gte]" => q.created.0 = q.created.0.max(integer()?),
                "created[lt]" => q.created.1 = q.created.1.min(integer()?.saturating_sub(1)),
                "created[lte]" => q.created.1 = q.created.1.min(integer()?),
                _ if is_expand(name) => {}
                _ => return Err(StripeError::unknown_param(name)),
            }
        }
        if q.starting_after.is_some() && q.ending_before.is_some() {
            let message = "You may only specify one of these parameters: ending_before, starting_after.";
            return Err(StripeError::invalid(message));
        }
        Ok(q)
    }
}

impl StripeSim {
    /// Newest first. `starting_after` pages towards older customers,
    /// `ending_before` towards newer ones (the page nearest the cursor).
    fn list(&self, st: &Store, q: &ListQuery) -> Result<Value, StripeError> {
        let keep = |c: &&Customer| {
            (self.config.list_includes_deleted || !c.deleted)
                && q.email.as_ref().is_none_or(|e| c.email.as_ref() == Some(e))
                && (q.created.0..=q.created.1).contains(&c.created)
        };
        let position = |id: &str, param| st.position(id).ok_or_else(|| StripeError::missing(id, param));
        let mut page: Vec<&Customer> = if let Some(id) = &q.ending_before {
            let at = position(id, "ending_before")?;
            st.rows[at + 1..].iter().map(|r| &r.customer).filter(keep).take(q.limit + 1).collect()
        } else {
            let end = match &q.starting_after {
                Some(id) => position(id, "starting_after")?,
                None => st.rows.len(),
            };
            st.rows[..end].iter().rev().map(|r| &r.customer).filter(keep).take(q.limit + 1).collect()
        };
        let has_more = page.len() > q.limit;
        page.truncate(q.limit);
        if q.ending_before.is_some() {
            page.reverse();
        }
        Ok(json!({"object": "list", "url": "/v1/customers", "has_more": has_more, "data": page}))
    }
}

// ---------------------------------------------------------------------------
// Search

struct SearchQuery {
    clauses: Vec<Clause>,
    /// OR-joined (else AND).
    any: bool,
    limit: usize,
    /// Continue below this row key.
    page: Option<(i64, u64)>,
    total_count: bool,
}

#[derive(Debug)]
struct Clause {
    negate: bool,
    field: Field,
    cmp: Cmp,
    value: Term,
}

#[derive(Debug)]
enum Field {
    Email,
    Name,
    Phone,
    Created,
    Metadata(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Contains,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug)]
enum Term {
    /// Lower-cased: `:` and `~` are case-insensitive [D].
    Text(String),
    Number(i64),
    Null,
}

impl SearchQuery {
    fn parse(params: &[(String, String)]) -> Result<Self, StripeError> {
        let mut query = None;
        let mut q =
            SearchQuery { clauses: Vec::new(), any: false, limit: 10, page: None, total_count: false };
        for (name, value) in params.iter().filter(|(_, v)| !v.is_empty()) {
            match name.as_str() {
                "query" => query = Some(value.as_str()),
                "limit" => q.limit = parse_limit(value)?,
                "page" => {
                    let key = value.strip_prefix("page_").and_then(|rest| {
                        let (created, seq) = rest.split_once('_')?;
                        Some((created.parse().ok()?, seq.parse().ok()?))
                    });
                    q.page =
                        Some(key.ok_or_else(|| StripeError::invalid("Invalid page cursor.").param("page"))?);
                }
                _ if is_expand(name) => q.total_count |= value == "total_count",
                _ => return Err(StripeError::unknown_param(name)),
            }
        }
        let query = query.ok_or_else(|| {
            StripeError::invalid("Missing required param: query.").code("parameter_missing").param("query")
        })?;
        (q.clauses, q.any) =
            parse_query(query).map_err(|message| StripeError::invalid(message).param("query"))?;
        Ok(q)
    }

    fn matches(&self, c: &Customer) -> bool {
        if self.any {
            self.clauses.iter().any(|clause| clause.matches(c))
        } else {
            self.clauses.iter().all(|clause| clause.matches(c))
        }
    }
}

impl Clause {
    fn matches(&self, c: &Customer) -> bool {
        let text = match &self.field {
            Field::Email => c.email.as_deref(),
            Field::Name => c.name.as_deref(),
            Field::Phone => c.phone.as_deref(),
            Field::Metadata(key) => c.metadata.get(key).map(String::as_str),
            Field::Created => None,
        };
        let hit = match (&self.value, self.cmp) {
            (Term::Number(n), cmp) => match cmp {
                Cmp::Eq => c.created == *n,
                Cmp::Gt => c.created > *n,
                Cmp::Ge => c.created >= *n,
                Cmp::Lt => c.created < *n,
                Cmp::Le => c.created <= *n,
                Cmp::Contains => false,
            },
            (Term::Null, _) => text.is_none(),
            (Term::Text(want), Cmp::Contains) => {
                text.is_some_and(|t| t.to_lowercase().contains(want.as_str()))
            }
            (Term::Text(want), _) => text.is_some_and(|t| t.to_lowercase() == *want),
        };
        hit != self.negate
    }
}

/// Parses Stripe's query language [D]: clauses `[-]field op value` joined by
/// spaces or `AND` (implicit AND) or `OR`, never mixed, no parentheses, at
/// most 10 clauses. Returns the clauses and whether they are OR-joined.
fn parse_query(query: &str) -> Result<(Vec<Clause>, bool), String> {
    let mut lexer = Lexer { rest: query.trim_start() };
    let mut clauses = Vec::new();
    let mut join: Option<bool> = None;
    loop {
        clauses.push(lexer.clause()?);
        let spaced = lexer.skip_space();
        if lexer.rest.is_empty() {
            break;
        }
        if !spaced {
            return Err(format!("Unexpected `{}` in the query.", lexer.rest));
        }
        let or = lexer.keyword().unwrap_or(false);
        if join.is_some_and(|j| j != or) {
            return Err("AND and OR cannot be combined in one query.".into());
        }
        join = Some(or);
        lexer.skip_space();
    }
    if clauses.len() > 10 {
        return Err("A query can have at most 10 clauses.".into());
    }
    Ok((clauses, join == Some(true)))
}

struct Lexer<'a> {
    rest: &'a str,
}

impl<'a> Lexer<'a> {
    fn skip_space(&mut self) -> bool {
        let trimmed = self.rest.trim_start();
        let skipped = trimmed.len() != self.rest.len();
        self.rest = trimmed;
        skipped
    }

    fn eat(&mut self, token: &str) -> bool {
        self.rest.strip_prefix(token).map(|rest| self.rest = rest).is_some()
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let end = self.rest.find(|c| !keep(c)).unwrap_or(self.rest.len());
        let (taken, rest) = self.rest.split_at(end);
        self.rest = rest;
        taken
    }

    /// `AND` or `OR` (any case) followed by a space; Some(true) for OR.
    fn keyword(&mut self) -> Option<bool> {
        for (word, or) in [("and", false), ("or", true)] {
            let n = word.len();
            let found = self.rest.get(..n).is_some_and(|w| w.eq_ignore_ascii_case(word))
                && self.rest[n..].starts_with(char::is_whitespace);
            if found {
                self.rest = &self.rest[n..];
                return Some(or);
            }
        }
        None
    }

    /// A single- or double-quoted string; `\` escapes the next character.
    fn quoted(&mut self) -> Result<String, String> {
        let quote = self.rest.chars().next().filter(|c| matches!(c, '\'' | '"'));
        let quote = quote.ok_or_else(|| format!("Expected a quoted string at `{}`.", self.rest))?;
        let mut out = String::new();
        let mut chars = self.rest.char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => out.extend(chars.next().map(|(_, c)| c)),
                c if c == quote => {
                    self.rest = &self.rest[i + 1..];
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        Err("Unterminated string in the query.".into())
    }

    fn clause(&mut self) -> Result<Clause, String> {
        let negate = self.eat("-");
        let name = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        let field = match name {
            "email" => Field::Email,
            "name" => Field::Name,
            "phone" => Field::Phone,
            "created" => Field::Created,
            "metadata" => {
                let key = if self.eat("[") { self.quoted()? } else { String::new() };
                if key.is_empty() || !self.eat("]") {
                    return Err("Metadata fields are written metadata['key'].".into());
                }
                Field::Metadata(key)
            }
            "" => return Err(format!("Expected a field at `{}`.", self.rest)),
            other => {
                return Err(format!(
                    "Field `{other}` is an unsupported search field for resource `customers`. See \
                     http://stripe.com/docs/search#query-fields-for-customers for a list of supported fields."
                ));
            }
        };
        let operators = [
            (">=", Cmp::Ge),
            ("<=", Cmp::Le),
            (":", Cmp::Eq),
            ("~", Cmp::Contains),
            (">", Cmp::Gt),
            ("<", Cmp::Lt),
        ];
        let cmp = operators.into_iter().find(|(token, _)| self.eat(token)).map(|(_, cmp)| cmp);
        let cmp = cmp.ok_or_else(|| format!("Expected an operator after `{name}`."))?;
        let value = if self.rest.starts_with(['\'', '"']) {
            Term::Text(self.quoted()?.to_lowercase())
        } else {
            match self.take_while(|c| c.is_ascii_alphanumeric() || c == '-') {
                "null" => Term::Null,
                word => word
                    .parse()
                    .map(Term::Number)
                    .map_err(|_| format!("String values must be quoted: `{word}`."))?,
            }
        };
        let range = matches!(cmp, Cmp::Gt | Cmp::Ge | Cmp::Lt | Cmp::Le);
        match (&field, cmp, &value) {
            (Field::Created, Cmp::Contains, _) | (Field::Created, _, Term::Text(_) | Term::Null) => {
                return Err("`created` takes a number with :, >, >=, < or <=.".into());
            }
            (Field::Created, ..) => {}
            _ if range => return Err(format!("`{name}` does not support range operators.")),
            (_, _, Term::Number(_)) => return Err("String values must be quoted.".into()),
            (Field::Metadata(_), Cmp::Contains, _) | (_, Cmp::Contains, Term::Null) => {
                return Err(format!("`{name}` does not support substring matching here."));
            }
            (_, Cmp::Contains, Term::Text(text)) if text.chars().count() < 3 => {
                return Err("Substring matching requires at least 3 characters.".into());
            }
            _ => {}
        }
        Ok(Clause { negate, field, cmp, value })
    }
}

impl StripeSim {
    /// Newest first, over customers whose last write the index has caught up
    /// with; `next_page` resumes below the last row returned.
    fn search(&self, st: &Store, q: &SearchQuery, now: i64) -> Value {
        let lag = self.config.search_lag_secs;
        let visible = |row: &&Row| {
            let c = &row.customer;
            !c.deleted && now - c.last_write >= lag && q.matches(c)
        };
        let end = q.page.map_or(st.rows.len(), |key| st.rows.partition_point(|r| r.key < key));
        let mut hits = st.rows[..end].iter().rev().filter(visible);
        let page: Vec<&Row> = hits.by_ref().take(q.limit).collect();
        let has_more = hits.next().is_some();
        let next_page = page.last().filter(|_| has_more).map(|r| format!("page_{}_{}", r.key.0, r.key.1));
        let data: Vec<&Customer> = page.iter().map(|r| &r.customer).collect();
        let mut body = json!({
            "object": "search_result", "url": "/v1/customers/search", "has_more": has_more,
            "data": data, "next_page": next_page
        });
        if q.total_count {
            body["total_count"] = json!(st.rows.iter().filter(visible).count());
        }
        body
    }
}

// ---------------------------------------------------------------------------
// Webhooks

struct Job {
    event: Value,
    endpoints: Vec<WebhookEndpoint>,
}

impl StripeSim {
    /// Queues an event for the endpoints registered now. Called under the
    /// state lock, so events queue in the order of the writes.
    fn emit(
        &self,
        st: &mut Store,
        kind: &str,
        customer: &Customer,
        previous: Option<Value>,
        origin: &Origin,
    ) {
        let endpoints = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if endpoints.is_empty() {
            return;
        }
        let mut data = json!({ "object": customer.to_json() });
        if let Some(previous) = previous {
            data["previous_attributes"] = previous;
        }
        let event = json!({
            "id": st.event_ids.next("evt_"), "object": "event", "api_version": API_VERSION,
            "created": self.clock.now(), "data": data, "livemode": customer.livemode,
            "pending_webhooks": endpoints.len(),
            "request": {"id": origin.request_id, "idempotency_key": origin.idempotency_key},
            "type": kind
        });
        let job = Job { event, endpoints };
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
            tracing::warn!(kind, "no Tokio runtime to deliver webhooks on; event dropped");
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        runtime.spawn(deliver_events(self.me.clone(), rx));
        let _ = tx.send(job);
        *outbox = Some(tx);
    }

    /// One attempt now; on failure, retries with doubling backoff in the
    /// background so later events are not held up (and may overtake it).
    async fn deliver(self: &Arc<Self>, endpoint: &WebhookEndpoint, body: &Arc<str>) {
        if self.post_event(endpoint, body).await {
            return;
        }
        let (sim, endpoint, body) = (self.clone(), endpoint.clone(), body.clone());
        tokio::spawn(async move {
            let mut backoff = WEBHOOK_FIRST_BACKOFF;
            for _ in 1..WEBHOOK_ATTEMPTS {
                tokio::time::sleep(backoff).await;
                if sim.post_event(&endpoint, &body).await {
                    return;
                }
                backoff *= 2;
            }
            tracing::warn!(url = %endpoint.url, "webhook not delivered after {WEBHOOK_ATTEMPTS} attempts");
        });
    }

    /// Signs (fresh timestamp per attempt, as Stripe does) and posts; true on 2xx.
    async fn post_event(&self, endpoint: &WebhookEndpoint, body: &str) -> bool {
        let now = self.clock.now();
        let (timestamp, secret) = match self.config.webhook_tamper {
            Some(Tamper::StaleTimestamp) => (now - STALE_SIGNATURE_SECS, endpoint.secret.as_str()),
            Some(Tamper::BadSignature) => (now, "whsec_not_the_endpoint_secret"),
            None => (now, endpoint.secret.as_str()),
        };
        let mut signature = signature_header(secret, timestamp, body);
        if let Some(extra) = &self.config.extra_signing_secret {
            let _ = write!(signature, ",v1={}", sign(extra, timestamp, body));
        }
        let sent = self
            .http
            .post(&endpoint.url)
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .header(header::USER_AGENT, "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
            .header("stripe-signature", signature)
            .body(body.to_owned())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => true,
            Ok(response) => {
                tracing::debug!(url = %endpoint.url, status = %response.status(), "webhook refused");
                false
            }
            Err(error) => {
                tracing::debug!(url = %endpoint.url, %error, "webhook not delivered");
                false
            }
        }
    }
}

/// The delivery queue: events in order, each to its endpoints, with the
/// duplicate and shuffle switches applied. Holds the simulator only weakly,
/// so it ends when the simulator is dropped.
async fn deliver_events(sim: Weak<StripeSim>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut count = 0u64;
    while let Some(job) = jobs.recv().await {
        let Some(sim) = sim.upgrade() else { return };
        count += 1;
        let body: Arc<str> = job.event.to_string().into();
        let copies = if sim.config.webhook_duplicates { 2 } else { 1 };
        let late = sim.config.webhook_shuffle && count % 2 == 1;
        for endpoint in job.endpoints {
            let (sim, body) = (sim.clone(), body.clone());
            let send = async move {
                for _ in 0..copies {
                    sim.deliver(&endpoint, &body).await;
                }
            };
            if late {
                tokio::spawn(async move {
                    tokio::time::sleep(SHUFFLE_DELAY).await;
                    send.await;
                });
            } else {
                send.await;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The /_sim back door (JSON, no auth: the simulator binds to loopback)

type Sim = State<Arc<StripeSim>>;

/// All customers, newest first, deleted ones as tombstones.
async fn sim_customers(State(sim): Sim) -> Json<Vec<Customer>> {
    Json(sim.state().rows.iter().rev().map(|r| r.customer.clone()).collect())
}

async fn sim_seed(State(sim): Sim, Json(new): Json<NewCustomer>) -> Json<Customer> {
    Json(sim.seed_customer(new))
}

async fn sim_update(State(sim): Sim, Path(id): Path<String>, Json(change): Json<CustomerChange>) -> Response {
    match sim.update_customer(&id, change) {
        Some(customer) => Json(customer).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn sim_delete(State(sim): Sim, Path(id): Path<String>) -> StatusCode {
    if sim.delete_customer(&id) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

async fn sim_add_endpoint(State(sim): Sim, Json(endpoint): Json<WebhookEndpoint>) -> StatusCode {
    sim.add_webhook_endpoint(endpoint.url, endpoint.secret);
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_reject_like_stripe() {
        let (clauses, any) = parse_query("email:'a@b.c' metadata['k']:\"v\" AND -name~'ali'").unwrap();
        assert_eq!(clauses.len(), 3);
        assert!(!any);
        assert!(clauses[2].negate);
        assert!(parse_query("email:'a' OR name:'b'").unwrap().1);
        for bad in [
            "email:'a' AND name:'b' OR phone:'c'",
            "email:'a' name:'b' OR phone:'c'",
            "emial:'a'",
            "email:a",
            "name~'ab'",
            "(email:'a')",
            "email:'a",
            "created>'x'",
            "",
        ] {
            assert!(parse_query(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn keys_are_masked_and_basic_credentials_decode() {
        assert_eq!(mask_key("sk_test_portcullis"), "sk_test_****llis");
        assert_eq!(base64_decode("c2tfdGVzdF94Og==").unwrap(), b"sk_test_x:");
    }
}
