//! Load generators for the sign-in grants, which wrk cannot drive: a
//! refresh token rotates on every use (each worker must chain the token its
//! last response gave it), and a code can be redeemed only once (each must
//! be minted first, outside the timed run).
//!
//! Both sign in once through the hosted login form, then take codes from
//! `/oauth/authorize` with that session (the client is first-party, so no
//! consent page) and redeem them at `/oauth/token` with Basic auth, as a
//! confidential web application would. Any answer but the expected one
//! fails the run.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Args;
use portcullis_crypto::secret;
use reqwest::header::{COOKIE, HOST, LOCATION, SET_COOKIE};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use tokio::task::JoinSet;

/// Where the server is, who signs in, and through which client.
#[derive(Args)]
pub struct Target {
    /// The address to connect to, e.g. `http://127.0.0.1:18080`.
    #[arg(long)]
    url: String,
    /// The `Host` header that names the environment, e.g.
    /// `bench-es256.localhost:18080`.
    #[arg(long)]
    host: String,
    /// A confidential, first-party client with the `authorization_code` and
    /// `refresh_token` grants.
    #[arg(long)]
    client_id: String,
    #[arg(long)]
    client_secret: String,
    /// One of the client's registered redirect URIs.
    #[arg(long)]
    redirect_uri: String,
    /// The API the tokens are for (it must allow offline access); none for
    /// tokens for UserInfo.
    #[arg(long)]
    resource: Option<String>,
    #[arg(long, default_value = "openid offline_access")]
    scope: String,
    /// A user of the environment, and the password to sign in with.
    #[arg(long)]
    email: String,
    #[arg(long)]
    password: String,
    /// Concurrent requests (tokio tasks over keep-alive connections).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Length of the timed run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// The figures a run prints: requests per second and latency percentiles,
/// formatted as wrk formats them.
pub struct Report {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} {} {}", self.rate, latency(self.p50), latency(self.p99))
    }
}

/// `796.00us`, `3.55ms`, `1.20s`, as in wrk's `--latency` table.
fn latency(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1e3 {
        format!("{us:.2}us")
    } else if us < 1e6 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

fn report(done: usize, span: Duration, mut latencies: Vec<Duration>) -> anyhow::Result<Report> {
    ensure!(done > 0 && !latencies.is_empty(), "no request completed in the timed run");
    latencies.sort_unstable();
    let at = |percent: usize| latencies[(latencies.len() * percent / 100).min(latencies.len() - 1)];
    Ok(Report { rate: done as f64 / span.as_secs_f64(), p50: at(50), p99: at(99) })
}

/// One HTTP client (a keep-alive pool) for the environment.
struct Server {
    http: reqwest::Client,
    target: Target,
    /// `portcullis_session=...`, once signed in.
    session: String,
    /// The PKCE pair every code is minted with.
    verifier: String,
    challenge: String,
}

/// The value of the `name` cookie a response sets.
fn cookie_set(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get_all(SET_COOKIE).iter().find_map(|value| {
        let pair = value.to_str().ok()?.split(';').next()?;
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name && !value.is_empty()).then(|| value.to_owned())
    })
}

/// A hidden form field's value (tokens are base64url: nothing to unescape).
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// Reads a failed response into an error.
async fn unexpected(what: &str, response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(600).collect();
    anyhow::anyhow!("{what}: unexpected {status}: {body}")
}

impl Server {
    async fn sign_in(target: Target) -> anyhow::Result<Server> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .user_agent("portcullis-bench/1.0")
            .build()?;
        let verifier = secret::random_token::<32>();
        let challenge = secret::sha256_b64url(verifier.as_bytes());
        let mut server = Server { http, target, session: String::new(), verifier, challenge };

        // The login page sets the CSRF cookie and puts the same token in
        // the form (double submit).
        let page = server.request(Method::GET, "/login").send().await.context("GET /login")?;
        if page.status() != StatusCode::OK {
            return Err(unexpected("GET /login", page).await);
        }
        let cookie = cookie_set(&page, "portcullis_csrf").context("GET /login set no CSRF cookie")?;
        let field = hidden(&page.text().await?, "csrf").context("the login page has no csrf field")?;
        let form = [
            ("csrf", field.as_str()),
            ("email", &server.target.email),
            ("password", &server.target.password),
        ];
        let response = server
            .request(Method::POST, "/login")
            .header(COOKIE, format!("portcullis_csrf={cookie}"))
            .form(&form)
            .send()
            .await
            .context("POST /login")?;
        if response.status() != StatusCode::OK {
            return Err(unexpected("POST /login", response).await);
        }
        let session =
            cookie_set(&response, "portcullis_session").context("POST /login set no session cookie")?;
        server.session = format!("portcullis_session={session}");
        Ok(server)
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.target.url)).header(HOST, &self.target.host)
    }

    fn token_request(&self) -> RequestBuilder {
        self.request(Method::POST, "/oauth/token")
            .basic_auth(&self.target.client_id, Some(&self.target.client_secret))
    }

    /// A code from `/oauth/authorize` for the signed-in user.
    async fn mint_code(&self) -> anyhow::Result<String> {
        let t = &self.target;
        let mut url = Url::parse(&format!("{}/oauth/authorize", t.url))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &t.client_id)
            .append_pair("redirect_uri", &t.redirect_uri)
            .append_pair("scope", &t.scope)
            .append_pair("state", "x")
            .append_pair("code_challenge", &self.challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(resource) = &t.resource {
            url.query_pairs_mut().append_pair("resource", resource);
        }
        let response = self
            .http
            .get(url)
            .header(HOST, &t.host)
            .header(COOKIE, &self.session)
            .send()
            .await
            .context("GET /oauth/authorize")?;
        let location = response.headers().get(LOCATION).and_then(|l| l.to_str().ok()).map(str::to_owned);
        let Some(location) = location.filter(|_| response.status().is_redirection()) else {
            return Err(unexpected("GET /oauth/authorize", response).await);
        };
        ensure!(
            location.starts_with(&t.redirect_uri),
            "/oauth/authorize sent the browser to {location}, not back to the client \
             (a first-party client with a live session should get a code at once)"
        );
        let url = Url::parse(&location).with_context(|| format!("redirect {location}"))?;
        let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        match param("code") {
            Some(code) => Ok(code),
            None => bail!(
                "/oauth/authorize answered {}: {}",
                param("error").unwrap_or_default(),
                param("error_description").unwrap_or_default()
            ),
        }
    }

    /// Redeems a code; returns the token response.
    async fn redeem(&self, code: &str) -> anyhow::Result<Vec<u8>> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.target.redirect_uri),
            ("code_verifier", &self.verifier),
        ];
        let response = self.token_request().form(&form).send().await.context("POST /oauth/token")?;
        if response.status() != StatusCode::OK {
            return Err(unexpected("authorization_code grant", response).await);
        }
        Ok(response.bytes().await?.to_vec())
    }

    /// Uses a refresh token; returns the one that replaces it.
    async fn refresh(&self, token: &str) -> anyhow::Result<String> {
        let form = [("grant_type", "refresh_token"), ("refresh_token", token)];
        let response = self.token_request().form(&form).send().await.context("POST /oauth/token")?;
        if response.status() != StatusCode::OK {
            return Err(unexpected("refresh_token grant", response).await);
        }
        refresh_token_of(&response.bytes().await?)
    }
}

/// The refresh token of a token response.
fn refresh_token_of(body: &[u8]) -> anyhow::Result<String> {
    let body: serde_json::Value = serde_json::from_slice(body)?;
    match body["refresh_token"].as_str() {
        Some(token) => Ok(token.to_owned()),
        None => bail!(
            "the token response has no refresh_token (does the client have the refresh_token \
             grant, the scope offline_access, the API allow offline access?): {body}"
        ),
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = anyhow::Result<T>> + Send>>;

/// Runs `make(i)` for `i` in `0..count`, `concurrency` at a time.
async fn in_parallel<T: Send + 'static, F>(
    server: &Arc<Server>,
    count: usize,
    concurrency: usize,
    make: F,
) -> anyhow::Result<Vec<T>>
where
    F: Fn(Arc<Server>) -> BoxFuture<T> + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.min(count) {
        let (server, make, next) = (server.clone(), make.clone(), next.clone());
        tasks.spawn(async move {
            let mut made = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                made.push(make(server.clone()).await?);
            }
            anyhow::Ok(made)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(made) = tasks.join_next().await {
        all.extend(made??);
    }
    Ok(all)
}

/// What one timed worker measured.
#[derive(Default)]
struct Measured {
    done: usize,
    latencies: Vec<Duration>,
}

impl Measured {
    fn merge(runs: Vec<Measured>) -> Measured {
        let mut all = Measured::default();
        for run in runs {
            all.done += run.done;
            all.latencies.extend(run.latencies);
        }
        all
    }
}

async fn join_all(mut tasks: JoinSet<anyhow::Result<Measured>>) -> anyhow::Result<Measured> {
    let mut runs = Vec::new();
    while let Some(run) = tasks.join_next().await {
        runs.push(run??);
    }
    Ok(Measured::merge(runs))
}

/// `load-refresh`: `concurrency` workers, each chaining one refresh-token
/// family (the token each response returns is the next request's), for a
/// one-second warm-up and then `seconds`.
pub async fn refresh(target: Target) -> anyhow::Result<Report> {
    let concurrency = target.concurrency.max(1);
    let span = Duration::from_secs(target.seconds);
    let server = Arc::new(Server::sign_in(target).await?);
    let families = in_parallel(&server, concurrency, concurrency, |server| {
        Box::pin(async move {
            let code = server.mint_code().await?;
            refresh_token_of(&server.redeem(&code).await?)
        })
    })
    .await
    .context("cannot start the refresh-token families")?;
    eprintln!("   {} refresh-token families started, one per worker", families.len());

    let warm_until = Instant::now() + Duration::from_secs(1);
    let until = warm_until + span;
    let mut tasks = JoinSet::new();
    for mut token in families {
        let server = server.clone();
        tasks.spawn(async move {
            let mut measured = Measured::default();
            while Instant::now() < until {
                let sent = Instant::now();
                token = server.refresh(&token).await?;
                let received = Instant::now();
                if sent >= warm_until && received <= until {
                    measured.done += 1;
                    measured.latencies.push(received - sent);
                }
            }
            anyhow::Ok(measured)
        });
    }
    let measured = join_all(tasks).await?;
    report(measured.done, span, measured.latencies)
}

/// `load-code`: mints `codes` codes (not timed), then redeems each once
/// with `concurrency` workers until all are redeemed or `seconds` pass.
pub async fn code(target: Target, codes: usize) -> anyhow::Result<Report> {
    let concurrency = target.concurrency.max(1);
    let span = Duration::from_secs(target.seconds);
    let server = Arc::new(Server::sign_in(target).await?);
    let minting = Instant::now();
    let codes =
        in_parallel(&server, codes, concurrency, |server| Box::pin(async move { server.mint_code().await }))
            .await
            .context("cannot mint the codes")?;
    eprintln!("   {} codes minted in {:.1}s (not timed)", codes.len(), minting.elapsed().as_secs_f64());

    let codes = Arc::new(codes);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let until = started + span;
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        let (server, codes, next) = (server.clone(), codes.clone(), next.clone());
        tasks.spawn(async move {
            let mut measured = Measured::default();
            while Instant::now() < until {
                let Some(code) = codes.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                let sent = Instant::now();
                server.redeem(code).await?;
                let received = Instant::now();
                if received <= until {
                    measured.done += 1;
                    measured.latencies.push(received - sent);
                }
            }
            anyhow::Ok(measured)
        });
    }
    let measured = join_all(tasks).await?;
    let elapsed = started.elapsed().min(span);
    if measured.done == codes.len() {
        eprintln!(
            "   all {} codes redeemed in {:.1}s, before the {}s were up: mint more (--codes) for a longer run",
            codes.len(),
            elapsed.as_secs_f64(),
            span.as_secs()
        );
    }
    report(measured.done, elapsed, measured.latencies)
}
