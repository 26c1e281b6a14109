//! Helpers shared by the OAuth tests: raw form posts, JWT decoding, clients
//! with grants, custom APIs, introspection and revocation calls.

use std::time::Duration;

use base64::Engine;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{create_scope, id_of, system_api};
use crate::harness::{Creds, TestServer};

/// How a request authenticates its client.
#[derive(Clone, Copy)]
pub enum ClientAuth<'a> {
    None,
    /// `client_secret_basic`.
    Basic(&'a Creds),
    /// `client_secret_post`.
    Post(&'a Creds),
}

/// A response's status, headers and parsed JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn from(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body expected, got: {text}"))
        };
        Reply { status, headers, body }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The OAuth `error` code of an error response.
    pub fn error(&self) -> Option<&str> {
        self.body["error"].as_str()
    }

    /// Asserts an RFC 6749 §5.2 error with its status and no-store headers.
    #[track_caller]
    pub fn assert_oauth_error(&self, status: StatusCode, code: &str) {
        assert_eq!((self.status, self.error()), (status, Some(code)), "{:?}", self.body);
        self.assert_no_store();
        assert!(self.body["error_description"].is_string(), "{}", self.body);
    }

    #[track_caller]
    pub fn assert_no_store(&self) {
        assert_eq!(self.header("cache-control"), Some("no-store"), "{:?}", self.headers);
        assert_eq!(self.header("pragma"), Some("no-cache"), "{:?}", self.headers);
    }

    /// Asserts a JSON:API error document with a `Bearer` challenge.
    #[track_caller]
    pub fn assert_bearer_failure(&self, status: StatusCode) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.header("content-type"), Some("application/vnd.api+json"));
        assert_eq!(self.body["errors"][0]["status"], status.as_u16().to_string(), "{}", self.body);
        assert!(self.body["errors"][0]["detail"].is_string(), "{}", self.body);
        let challenge = self.header("www-authenticate").expect("WWW-Authenticate");
        assert!(challenge.starts_with("Bearer realm=\""), "{challenge}");
    }
}

/// POSTs a form to `path` on `handle`'s host.
pub async fn post_form(
    server: &TestServer,
    handle: &str,
    path: &str,
    auth: ClientAuth<'_>,
    form: &[(&str, &str)],
) -> Reply {
    let mut pairs: Vec<(&str, &str)> = form.to_vec();
    let mut request = server.http.post(format!("{}{path}", server.issuer(handle)));
    match auth {
        ClientAuth::None => {}
        ClientAuth::Basic(creds) => {
            request = request.basic_auth(&creds.client_id, Some(&creds.client_secret));
        }
        ClientAuth::Post(creds) => {
            pairs.push(("client_id", &creds.client_id));
            pairs.push(("client_secret", &creds.client_secret));
        }
    }
    Reply::from(request.form(&pairs).send().await.expect("form post")).await
}

/// A `client_credentials` token request.
pub async fn token(server: &TestServer, handle: &str, auth: ClientAuth<'_>, form: &[(&str, &str)]) -> Reply {
    let mut full = vec![("grant_type", "client_credentials")];
    full.extend_from_slice(form);
    post_form(server, handle, "/oauth/token", auth, &full).await
}

pub async fn introspect(server: &TestServer, handle: &str, creds: &Creds, token: &str) -> Reply {
    post_form(server, handle, "/oauth/introspect", ClientAuth::Basic(creds), &[("token", token)]).await
}

/// Introspects and asserts the response is exactly `{"active": false}`.
#[track_caller]
pub fn assert_inactive(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, json!({"active": false}));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

pub async fn revoke(server: &TestServer, handle: &str, creds: &Creds, token: &str) -> Reply {
    post_form(server, handle, "/oauth/revoke", ClientAuth::Basic(creds), &[("token", token)]).await
}

/// A Management API call with a raw `Authorization` header (or none).
pub async fn api_with_authorization(
    server: &TestServer,
    handle: &str,
    method: Method,
    path: &str,
    authorization: Option<&str>,
) -> Reply {
    let mut request = server.http.request(method, format!("{}{path}", server.issuer(handle)));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    Reply::from(request.send().await.expect("api request")).await
}

/// GET with a Bearer token; returns the full reply.
pub async fn api_get(server: &TestServer, handle: &str, path: &str, token: &str) -> Reply {
    api_with_authorization(server, handle, Method::GET, path, Some(&format!("Bearer {token}"))).await
}

/// The header and claims of a compact JWS, without verification.
pub fn decode_jwt(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token}");
    let decode = |part: &str| -> Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON")
    };
    (decode(parts[0]), decode(parts[1]))
}

pub fn kid_of(token: &str) -> String {
    decode_jwt(token).0["kid"].as_str().expect("kid").to_owned()
}

/// Registers a confidential client; returns its row id and credentials.
pub async fn new_client(server: &TestServer, admin: &str, attributes: Value) -> (String, Creds) {
    let created = server.create(admin, "/api/clients", "client", attributes, json!(null)).await;
    let id = id_of(&created);
    let creds = Creds {
        client_id: created["data"]["attributes"]["client_id"].as_str().expect("client_id").to_owned(),
        client_secret: created["meta"]["client_secret"].as_str().unwrap_or_default().to_owned(),
    };
    (id, creds)
}

/// A confidential client_credentials client.
pub async fn m2m_client(server: &TestServer, admin: &str, name: &str) -> (String, Creds) {
    new_client(server, admin, json!({"name": name, "grant_types": ["client_credentials"]})).await
}

/// Grants a client access to a resource server (`allowed_scopes` null = all).
pub async fn grant(server: &TestServer, admin: &str, client_row: &str, api_row: &str, allowed_scopes: Value) {
    server
        .create(
            admin,
            "/api/client-resource-server-grants",
            "client_resource_server_grant",
            json!({"allowed_scopes": allowed_scopes}),
            json!({"client": {"data": {"type": "client", "id": client_row}},
                   "resource_server": {"data": {"type": "resource_server", "id": api_row}}}),
        )
        .await;
}

/// A client_credentials client holding `scopes` on the Management API.
pub async fn management_client(
    server: &TestServer,
    admin: &str,
    name: &str,
    scopes: &[&str],
) -> (String, Creds) {
    let (row, creds) = m2m_client(server, admin, name).await;
    let api = system_api(server, admin).await;
    grant(server, admin, &row, &api, json!(scopes)).await;
    (row, creds)
}

/// Creates a custom API with `scopes`; returns its row id.
pub async fn custom_api(
    server: &TestServer,
    admin: &str,
    identifier: &str,
    ttl: i64,
    scopes: &[&str],
) -> String {
    let created = server
        .create(
            admin,
            "/api/resource-servers",
            "resource_server",
            json!({"name": format!("API {identifier}"), "identifier": identifier, "token_ttl": ttl}),
            json!(null),
        )
        .await;
    let id = id_of(&created);
    for scope in scopes {
        create_scope(server, admin, &id, scope).await;
    }
    id
}

/// Signs `claims` (a JSON object) with `handle`'s current primary key, as a
/// forger holding the key would (white-box).
pub async fn sign_with_primary(server: &TestServer, handle: &str, typ: &str, claims: &Value) -> String {
    let env = server.core.environment(handle).await.expect("environment").expect("exists");
    let keys = env.keys().await.expect("keys");
    let key = keys.primary.as_ref().expect("primary key");
    portcullis_crypto::jws::sign(key, typ, claims).expect("sign")
}

/// Valid-looking access-token claims for `handle`'s Management API.
pub fn claims_for(server: &TestServer, handle: &str, client_id: &str, exp_offset: i64, scope: &str) -> Value {
    let now = unix_now();
    json!({
        "iss": server.issuer(handle),
        "sub": client_id,
        "aud": format!("{}/api", server.issuer(handle)),
        "exp": now + exp_offset,
        "iat": now - 10,
        "jti": portcullis_crypto::secret::random_token::<16>(),
        "client_id": client_id,
        "scope": scope,
    })
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// Replaces one character in the middle of the signature part.
pub fn tamper_signature(token: &str) -> String {
    let dot = token.rfind('.').expect("signature");
    let index = dot + 1 + (token.len() - dot - 1) / 2;
    let mut bytes = token.as_bytes().to_vec();
    bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ascii")
}

/// Polls `check` until it returns `Some` (up to ~10 s); for cross-process
/// cache propagation, which is asynchronous by design.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..100 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The JWKS of `handle` as served over HTTP.
pub async fn jwks(server: &TestServer, handle: &str) -> Value {
    let response = server
        .http
        .get(format!("{}/.well-known/jwks.json", server.issuer(handle)))
        .send()
        .await
        .expect("jwks");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("jwks JSON")
}

pub fn jwks_kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}
