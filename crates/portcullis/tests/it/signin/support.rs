//! A cookie-keeping "browser" over plain HTTP (no redirects followed, so
//! each step can be checked), and helpers that drive the hosted sign-in
//! pages to a code.

use std::collections::HashMap;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{PASSWORD, create_user, id_of};
use crate::harness::{Creds, TestServer};

pub const REDIRECT_URI: &str = "https://rp.example.test/callback";
pub const LOGOUT_URI: &str = "https://rp.example.test/signed-out";

/// A page or redirect as the browser received it.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    /// The redirect target, asserting that this is a redirect.
    #[track_caller]
    pub fn redirect(&self) -> &str {
        assert!(self.status.is_redirection(), "expected a redirect, got {}: {}", self.status, self.body);
        self.location().expect("Location")
    }

    /// A hidden form field's value (HTML-unescaped).
    pub fn hidden(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(unescape(&self.body[start..end]))
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The query parameters of a URL.
pub fn query_of(url: &str) -> HashMap<String, String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

pub struct Browser<'s> {
    server: &'s TestServer,
    http: reqwest::Client,
    pub cookies: HashMap<String, String>,
    /// Where relative paths go: the default host, or a custom domain.
    base: Option<String>,
}

impl<'s> Browser<'s> {
    pub fn new(server: &'s TestServer) -> Browser<'s> {
        Browser { server, http: browser_client(&[]), cookies: HashMap::new(), base: None }
    }

    /// A browser at `host` (a custom domain, resolved to loopback): relative
    /// paths go to `http://{host}:{port}`.
    pub fn at_host(server: &'s TestServer, host: &str) -> Browser<'s> {
        let base = Some(format!("http://{host}:{}", server.port));
        Browser { server, http: browser_client(&[host]), cookies: HashMap::new(), base }
    }

    /// `path` on acme-test (or this browser's host), or an absolute URL.
    fn url(&self, path: &str) -> String {
        match &self.base {
            _ if path.starts_with("http") => path.to_owned(),
            Some(base) => format!("{base}{path}"),
            None => self.server.url(path),
        }
    }

    pub async fn request(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut request = self.http.request(method, self.url(path));
        if !self.cookies.is_empty() {
            let header: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", header.join("; "));
        }
        if let Some(form) = form {
            request = request.form(form);
        }
        let response = request.send().await.expect("browser request");
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let expired = attributes.to_ascii_lowercase().contains("max-age=0");
            if expired || value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap_or_default(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.request(Method::POST, path, Some(form)).await
    }

    /// Submits the login form shown at `login_path` (a `/login?flow=...` URL).
    pub async fn log_in(&mut self, login_path: &str, email: &str, password: &str) -> Page {
        let page = self.get(login_path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let csrf = page.hidden("csrf").expect("csrf field");
        let flow = page.hidden("flow");
        let mut form = vec![("csrf", csrf.as_str()), ("email", email), ("password", password)];
        if let Some(flow) = flow.as_deref() {
            form.push(("flow", flow));
        }
        self.post("/login", &form).await
    }

    /// Answers the consent page at `consent_path`.
    pub async fn consent(&mut self, consent_path: &str, decision: &str) -> Page {
        let page = self.get(consent_path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let csrf = page.hidden("csrf").expect("csrf field");
        let flow = page.hidden("flow").expect("flow field");
        self.post("/consent", &[("csrf", &csrf), ("flow", &flow), ("decision", decision)]).await
    }

    /// Follows an authorization request through login (and consent, when
    /// asked) to the redirect back to the client; returns that URL.
    pub async fn authorize(&mut self, authorize_url: &str, email: &str) -> String {
        let mut page = self.get(authorize_url).await;
        if page.redirect().starts_with("/login") {
            let login = page.redirect().to_owned();
            page = self.log_in(&login, email, PASSWORD).await;
        }
        if page.redirect().starts_with("/consent") {
            let consent = page.redirect().to_owned();
            page = self.consent(&consent, "allow").await;
        }
        page.redirect().to_owned()
    }
}

/// A registered client for sign-in tests.
/// A client that follows no redirects and resolves the test hosts (and
/// `extra` ones) to loopback.
fn browser_client(extra: &[&str]) -> reqwest::Client {
    let loopback: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .resolve("acme-test.localhost", loopback)
        .resolve("beta.localhost", loopback)
        .user_agent("portcullis-tests/1.0");
    for host in extra {
        builder = builder.resolve(host, loopback);
    }
    builder.build().unwrap()
}

pub struct TestClient {
    pub id: String,
    pub creds: Creds,
}

/// Registers a client for the code flow with refresh tokens.
pub async fn create_client(server: &TestServer, token: &str, attributes: Value) -> TestClient {
    let mut body = json!({
        "name": "Test RP",
        "redirect_uris": [REDIRECT_URI],
        "post_logout_redirect_uris": [LOGOUT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
    });
    for (k, v) in attributes.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    let document = server.create(token, "/api/clients", "client", body, Value::Null).await;
    TestClient {
        id: id_of(&document),
        creds: Creds {
            client_id: document["data"]["attributes"]["client_id"].as_str().unwrap().to_owned(),
            client_secret: document["meta"]["client_secret"].as_str().unwrap_or_default().to_owned(),
        },
    }
}

/// A user with the test password; returns its id.
pub async fn create_person(server: &TestServer, token: &str, email: &str) -> String {
    create_user(server, token, json!({"email": email, "first_name": "Ada", "last_name": "Lovelace"})).await
}

/// A PKCE pair (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    let verifier = portcullis_crypto::secret::random_token::<32>();
    (verifier.clone(), portcullis_crypto::secret::sha256_b64url(verifier.as_bytes()))
}

/// `/oauth/authorize?...` with `params` (URL-encoded).
pub fn authorize_path(params: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    format!("/oauth/authorize?{}", query.finish())
}

/// The standard parameters for `client` with a PKCE challenge.
pub fn code_request<'a>(
    client: &'a TestClient,
    scope: &'a str,
    challenge: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", &client.creds.client_id),
        ("redirect_uri", REDIRECT_URI),
        ("scope", scope),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// Redeems a code at the token endpoint (Basic auth for confidential clients).
pub async fn redeem(
    server: &TestServer,
    client: &TestClient,
    code: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", verifier),
    ];
    token_call(server, client, &form).await
}

pub async fn token_call(
    server: &TestServer,
    client: &TestClient,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = server.http.post(server.url("/oauth/token"));
    let mut form: Vec<(&str, &str)> = form.to_vec();
    if client.creds.client_secret.is_empty() {
        form.push(("client_id", &client.creds.client_id));
    } else {
        request = request.basic_auth(&client.creds.client_id, Some(&client.creds.client_secret));
    }
    let response = request.form(&form).send().await.expect("token request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A UserInfo call with `access`: status, body, and the `WWW-Authenticate`
/// challenge (empty when there is none).
pub async fn userinfo(server: &TestServer, access: &str) -> (StatusCode, Value, String) {
    let response =
        server.http.get(server.url("/oauth/userinfo")).bearer_auth(access).send().await.expect("userinfo");
    let status = response.status();
    let challenge =
        response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    (status, response.json().await.unwrap_or_default(), challenge)
}

/// The claims of a JWT, unverified (tests verify signatures elsewhere).
pub fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
        .unwrap()
}

// ---- self-service account pages: forms, client IPs, the dev outbox ----------

/// A plain HTTP client whose connections come from `ip` (any 127.x.y.z
/// address reaches the loopback server), so tests can act as several
/// client IPs.
pub fn http_from(ip: &str) -> reqwest::Client {
    let loopback: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip.parse::<std::net::IpAddr>().expect("an IP address"))
        .resolve("acme-test.localhost", loopback)
        .user_agent("portcullis-tests/1.0")
        .build()
        .unwrap()
}

impl<'s> Browser<'s> {
    /// A browser whose requests come from the client IP `ip` (127.0.0.1
    /// is what [`Browser::new`] uses).
    pub fn from_ip(server: &'s TestServer, ip: &str) -> Browser<'s> {
        Browser { server, http: http_from(ip), cookies: HashMap::new(), base: None }
    }

    /// This browser's CSRF token, read from the form at `path` (which sets
    /// the cookie on the first visit).
    pub async fn csrf(&mut self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "GET {path}: {}", page.body);
        page.hidden("csrf").unwrap_or_else(|| panic!("no csrf field on {path}"))
    }

    /// Opens the form at `path` and submits it to `action` with `fields`,
    /// its CSRF token and its sign-in `flow` (when it carries one).
    pub async fn fill(&mut self, path: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let page = self.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "GET {path}: {}", page.body);
        let csrf = page.hidden("csrf").unwrap_or_else(|| panic!("no csrf field on {path}"));
        let flow = page.hidden("flow");
        let mut form = vec![("csrf", csrf.as_str())];
        if let Some(flow) = flow.as_deref() {
            form.push(("flow", flow));
        }
        form.extend_from_slice(fields);
        self.post(action, &form).await
    }
}

/// A message from the dev outbox.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
}

impl Mail {
    /// The first link in the text to `{issuer}{prefix}…` (e.g. `/confirm/`),
    /// as a full URL.
    #[track_caller]
    pub fn link(&self, server: &TestServer, prefix: &str) -> String {
        let start = format!("{}{prefix}", server.issuer("acme-test"));
        let at = self.text.find(&start).unwrap_or_else(|| panic!("no {start} link in {:?}", self.text));
        let end = self.text[at..].find(char::is_whitespace).map_or(self.text.len(), |n| at + n);
        self.text[at..end].to_owned()
    }
}

/// Every message in the outbox, oldest first (file names start with the
/// time sent, in microseconds).
pub fn outbox(server: &TestServer) -> Vec<Mail> {
    let Ok(entries) = std::fs::read_dir(server.outbox_dir()) else { return Vec::new() };
    let mut names: Vec<std::path::PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|path| {
            let body: Value =
                serde_json::from_slice(&std::fs::read(path).expect("outbox file")).expect("JSON mail");
            let text =
                |key: &str| body[key].as_str().unwrap_or_else(|| panic!("no {key} in {body}")).to_owned();
            assert!(body["sent_at"].as_str().is_some_and(|t| !t.is_empty()), "sent_at: {body}");
            Mail { from: text("from"), to: text("to"), subject: text("subject"), text: text("text") }
        })
        .collect()
}

/// The messages sent to `to` (compared case-insensitively), oldest first.
pub fn mails_to(server: &TestServer, to: &str) -> Vec<Mail> {
    outbox(server).into_iter().filter(|mail| mail.to.eq_ignore_ascii_case(to)).collect()
}

/// Waits (up to 15 s: mail is sent in the background) until `to` has
/// received `count` messages, and returns the `count`th.
pub async fn wait_for_mail(server: &TestServer, to: &str, count: usize) -> Mail {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let mut mails = mails_to(server, to);
        if mails.len() >= count {
            return mails.swap_remove(count - 1);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{to} received {} message(s), expected {count}: {:?}",
            mails.len(),
            outbox(server)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Runs a SQL statement (white-box setup, e.g. expiring a link).
pub async fn execute(server: &TestServer, sql: &str) -> u64 {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(server.core.db.pool())
        .await
        .expect("SQL statement")
        .rows_affected()
}

/// The user with `email`, through the Management API (`None` if absent).
pub async fn find_user(server: &TestServer, token: &str, email: &str) -> Option<Value> {
    let query: String = url::form_urlencoded::byte_serialize(email.as_bytes()).collect();
    let (status, body) =
        server.api(Method::GET, &format!("/api/users?filter[email]={query}"), token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let users = body["data"].as_array().expect("data");
    assert!(users.len() <= 1, "{body}");
    users.first().cloned()
}
