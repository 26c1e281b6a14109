//! What every simulator shares: the request log, fault injection, the clock,
//! sliding-window rate limiters and the server that runs a simulator.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A simulator listening on loopback. Dropping it stops the server.
pub struct Running {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Running {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runs until the server stops (for the CLI).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` on `127.0.0.1:port` (0 picks a free port).
pub async fn serve(router: Router, port: u16) -> std::io::Result<Running> {
    serve_on(router, SocketAddr::from(([127, 0, 0, 1], port))).await
}

pub async fn serve_on(router: Router, addr: SocketAddr) -> std::io::Result<Running> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "simulator stopped");
        }
    });
    Ok(Running { addr, task })
}

/// One request as the simulator received it, for contract assertions.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    /// Position in the log, from 0.
    pub seq: usize,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names lower-cased; credentials are kept as sent, because tests
    /// assert on them (the log never leaves the simulator's process).
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// What the simulator answered (0 if it never answered, e.g. a hang).
    pub status: u16,
    /// The fault injected into this request, if any.
    pub fault: Option<String>,
}

impl LoggedRequest {
    /// A request as received, before it is answered.
    pub fn new(method: &str, uri: &axum::http::Uri, headers: &axum::http::HeaderMap, body: &[u8]) -> Self {
        LoggedRequest {
            seq: 0,
            method: method.to_owned(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
            status: 0,
            fault: None,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub struct RequestLog(Mutex<Vec<LoggedRequest>>);

impl RequestLog {
    /// Appends and returns the entry's position.
    pub fn push(&self, mut entry: LoggedRequest) -> usize {
        let mut log = self.0.lock().unwrap();
        entry.seq = log.len();
        log.push(entry);
        log.len() - 1
    }

    /// Logs a request with its answer's `status` and `fault`. An answer
    /// withheld for `hold` (a `TimeoutAfterCommit`: the change is committed
    /// already) is logged with status 0 and completed once the wait is
    /// over; a client that gives up first drops this future, and the entry
    /// keeps 0: it never got an answer.
    pub async fn record(
        &self,
        mut entry: LoggedRequest,
        status: u16,
        fault: Option<String>,
        hold: Option<Duration>,
    ) {
        entry.status = if hold.is_some() { 0 } else { status };
        entry.fault = fault;
        let seq = self.push(entry);
        if let Some(hold) = hold {
            tokio::time::sleep(hold).await;
            self.answered(seq, status);
        }
    }

    /// Records the answer of an earlier entry.
    pub fn answered(&self, seq: usize, status: u16) {
        if let Some(entry) = self.0.lock().unwrap().get_mut(seq) {
            entry.status = status;
        }
    }

    pub fn entries(&self) -> Vec<LoggedRequest> {
        self.0.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// A fault to inject instead of (or after) the normal handling of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// HTTP 429, with `Retry-After: secs` when given.
    RateLimited { retry_after: Option<u64> },
    /// An HTTP 5xx with the vendor's error body.
    ServerError { status: u16 },
    /// A vendor-specific in-band error: Expensify answers HTTP 200 with this
    /// `responseCode`; Stripe answers with this `error.code` (e.g.
    /// `lock_timeout`) and the status the vendor uses for it.
    InBand { code: String, message: Option<String> },
    /// The change is committed, then the answer is withheld for `secs`
    /// (longer than the client waits), as when a proxy times out after the
    /// origin did the work.
    TimeoutAfterCommit { secs: u64 },
    /// An HTML page from a proxy instead of the API's body, with this status.
    Malformed { status: u16 },
}

impl Fault {
    pub fn label(&self) -> String {
        match self {
            Fault::RateLimited { retry_after: Some(s) } => format!("rate_limited(retry_after={s})"),
            Fault::RateLimited { retry_after: None } => "rate_limited".into(),
            Fault::ServerError { status } => format!("server_error({status})"),
            Fault::InBand { code, .. } => format!("in_band({code})"),
            Fault::TimeoutAfterCommit { secs } => format!("timeout_after_commit({secs}s)"),
            Fault::Malformed { status } => format!("malformed({status})"),
        }
    }

    /// The proxy page a `Malformed` fault answers with.
    pub const PROXY_PAGE: &'static str = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>";
}

/// Injects `fault` into the next `times` requests that match `operation`
/// (each simulator names its operations, e.g. `customers.create`,
/// `employees.update`; `*` matches every operation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    pub operation: String,
    pub fault: Fault,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

#[derive(Default)]
pub struct Faults(Mutex<Vec<FaultRule>>);

impl Faults {
    pub fn add(&self, rule: FaultRule) {
        self.0.lock().unwrap().push(rule);
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    /// Takes the first armed fault for `operation`, if any.
    pub fn take(&self, operation: &str) -> Option<Fault> {
        let mut rules = self.0.lock().unwrap();
        let index =
            rules.iter().position(|r| r.times > 0 && (r.operation == operation || r.operation == "*"))?;
        let rule = &mut rules[index];
        rule.times -= 1;
        let fault = rule.fault.clone();
        if rule.times == 0 {
            rules.remove(index);
        }
        Some(fault)
    }
}

/// Wall-clock time plus an offset tests can move, so "24 hours later" or
/// "after the search index caught up" need no sleeping.
#[derive(Default)]
pub struct Clock {
    offset_secs: AtomicI64,
}

impl Clock {
    pub fn now(&self) -> i64 {
        let real = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        real + self.offset_secs.load(Ordering::Relaxed)
    }

    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }
}

/// Sliding-window limits per key (a credential): at most `limit` requests in
/// any `window`. Several windows apply together, as Expensify's "5 per 10 s
/// and 20 per 60 s". Real time, not the simulated clock: rate limits are
/// about how fast the client really calls.
pub struct WindowLimiter {
    windows: Vec<(Duration, usize)>,
    hits: Mutex<HashMap<String, VecDeque<std::time::Instant>>>,
}

impl WindowLimiter {
    pub fn new(windows: &[(Duration, usize)]) -> Self {
        WindowLimiter { windows: windows.to_vec(), hits: Mutex::new(HashMap::new()) }
    }

    /// Counts a request for `key`, or says how long until one would be allowed.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = std::time::Instant::now();
        let longest = self.windows.iter().map(|(w, _)| *w).max().unwrap_or_default();
        let mut hits = self.hits.lock().unwrap();
        let queue = hits.entry(key.to_owned()).or_default();
        while queue.front().is_some_and(|t| now.duration_since(*t) >= longest) {
            queue.pop_front();
        }
        let mut wait = Duration::ZERO;
        for (window, limit) in &self.windows {
            let inside: Vec<_> = queue.iter().filter(|t| now.duration_since(**t) < *window).collect();
            if inside.len() >= *limit {
                // The oldest hit inside the window must leave it first.
                let oldest = inside[inside.len() - limit];
                wait = wait.max(*window - now.duration_since(*oldest));
            }
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        queue.push_back(now);
        Ok(())
    }

    /// What `key` has left in its tightest window, for `RateLimit-*` style
    /// headers: that window's limit, the requests left in it, and how long
    /// until its oldest counted request leaves it (zero if none is counted).
    pub fn headroom(&self, key: &str) -> (usize, usize, Duration) {
        let now = std::time::Instant::now();
        let hits = self.hits.lock().unwrap();
        let queue = hits.get(key);
        let mut tightest: Option<(usize, usize, Duration)> = None;
        for (window, limit) in &self.windows {
            let inside: Vec<_> =
                queue.into_iter().flatten().filter(|t| now.duration_since(**t) < *window).collect();
            let left = limit.saturating_sub(inside.len());
            let reset =
                inside.first().map_or(Duration::ZERO, |oldest| *window - now.duration_since(**oldest));
            if tightest.is_none_or(|(_, best, _)| left < best) {
                tightest = Some((*limit, left, reset));
            }
        }
        tightest.unwrap_or((0, 0, Duration::ZERO))
    }

    pub fn clear(&self) {
        self.hits.lock().unwrap().clear();
    }
}

/// Deterministic ids: a prefix, the seed and a counter, so a seeded run
/// produces the same ids every time.
pub struct IdSequence {
    seed: u64,
    next: std::sync::atomic::AtomicU64,
}

impl IdSequence {
    pub fn new(seed: u64) -> Self {
        IdSequence { seed, next: std::sync::atomic::AtomicU64::new(1) }
    }

    /// `prefix` + 14 base-62 characters derived from the seed and counter.
    pub fn next(&self, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // splitmix64 of (seed, n): unique per counter value, stable per seed.
        let mut x = self.seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        let mut out = String::from(prefix);
        // The counter keeps ids unique even if two hashes collided.
        let mut v = (x as u128) << 24 | (n as u128 & 0xFF_FFFF);
        for _ in 0..14 {
            out.push(ALPHABET[(v % 62) as usize] as char);
            v /= 62;
        }
        out
    }
}

/// What the `/_sim` back door needs of a simulator.
pub trait BackDoor: Send + Sync + 'static {
    fn request_log(&self) -> &RequestLog;
    fn fault_rules(&self) -> &Faults;
    fn sim_clock(&self) -> &Clock;
    /// Back to the configured start: seeded data, no log, no faults.
    fn reset_all(&self);
}

/// The back-door routes every simulator shares: the request log (`GET` and
/// `DELETE /_sim/requests`), faults (`POST` a [`FaultRule`], `DELETE`
/// `/_sim/faults`), the clock (`POST /_sim/clock {"advance_secs": n}`) and
/// `POST /_sim/reset`. No auth: simulators bind to loopback.
pub fn back_door<S: BackDoor>() -> Router<std::sync::Arc<S>> {
    use axum::Json;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    type Sim<S> = State<std::sync::Arc<S>>;
    #[derive(Deserialize)]
    struct Advance {
        advance_secs: i64,
    }
    Router::new()
        .route(
            "/_sim/requests",
            get(|State(sim): Sim<S>| async move { Json(sim.request_log().entries()) }).delete(
                |State(sim): Sim<S>| async move {
                    sim.request_log().clear();
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/_sim/faults",
            post(|State(sim): Sim<S>, Json(rule): Json<FaultRule>| async move {
                sim.fault_rules().add(rule);
                StatusCode::NO_CONTENT
            })
            .delete(|State(sim): Sim<S>| async move {
                sim.fault_rules().clear();
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/_sim/clock",
            post(|State(sim): Sim<S>, Json(advance): Json<Advance>| async move {
                sim.sim_clock().advance(advance.advance_secs);
                Json(serde_json::json!({"now": sim.sim_clock().now()}))
            }),
        )
        .route(
            "/_sim/reset",
            post(|State(sim): Sim<S>| async move {
                sim.reset_all();
                StatusCode::NO_CONTENT
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_apply_together() {
        let limiter = WindowLimiter::new(&[(Duration::from_secs(10), 2), (Duration::from_secs(60), 3)]);
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_ok());
        let wait = limiter.check("a").unwrap_err();
        assert!(wait > Duration::from_secs(9) && wait <= Duration::from_secs(10));
        // Another credential has its own budget.
        assert!(limiter.check("b").is_ok());
    }

    #[test]
    fn faults_fire_the_given_number_of_times_for_their_operation() {
        let faults = Faults::default();
        faults.add(FaultRule { operation: "x".into(), fault: Fault::ServerError { status: 503 }, times: 2 });
        assert_eq!(faults.take("y"), None);
        assert_eq!(faults.take("x"), Some(Fault::ServerError { status: 503 }));
        assert_eq!(faults.take("x"), Some(Fault::ServerError { status: 503 }));
        assert_eq!(faults.take("x"), None);
    }

    #[test]
    fn ids_are_stable_per_seed_and_unique() {
        let a = IdSequence::new(7);
        let b = IdSequence::new(7);
        let ids: Vec<_> = (0..1000).map(|_| a.next("cus_")).collect();
        assert_eq!(ids[0], b.next("cus_"));
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), 1000);
        assert_ne!(IdSequence::new(8).next("cus_"), ids[0]);
    }
}
