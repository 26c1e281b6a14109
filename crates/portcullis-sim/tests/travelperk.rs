//! The TravelPerk simulator over real HTTP, against the contract in
//! `../shared/spec/connectors.md` §2, §6 and §7.

use std::sync::Arc;
use std::time::Duration;

use portcullis_sim::common::{Fault, FaultRule, Running};
use portcullis_sim::scim::RateLimit;
use portcullis_sim::travelperk::{
    Config, DEFAULT_API_KEY, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DeleteMode, OAuthClient, TokenSet,
    TravelPerkSim,
};
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{Value, json};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const TRAVELPERK: &str = "urn:ietf:params:scim:schemas:extension:travelperk:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const REDIRECT: &str = "https://hub.example/callback";

struct Api {
    sim: Arc<TravelPerkSim>,
    running: Running,
    http: Client,
}

impl Api {
    async fn start(config: Config) -> Api {
        let (sim, running) = TravelPerkSim::start(config, 0).await.unwrap();
        // Redirects are what the authorize endpoint answers; look at them.
        let http = Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Api { sim, running, http }
    }

    async fn default() -> Api {
        Api::start(Config::default()).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base_url())
    }

    /// A request with `Api-Version: 1` and no credential.
    fn bare(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path)).header("api-version", "1")
    }

    /// A request as the hub sends it with the default API key.
    fn keyed(&self, method: Method, path: &str) -> RequestBuilder {
        self.bare(method, path).header("authorization", format!("ApiKey {DEFAULT_API_KEY}"))
    }

    fn bearer(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.bare(method, path).bearer_auth(token)
    }

    fn get(&self, path: &str) -> RequestBuilder {
        self.keyed(Method::GET, path)
    }

    fn post(&self, path: &str, body: &Value) -> RequestBuilder {
        with_json(self.keyed(Method::POST, path), body)
    }

    fn patch(&self, path: &str, operations: Value) -> RequestBuilder {
        with_json(self.keyed(Method::PATCH, path), &json!({"schemas": [PATCH_OP], "Operations": operations}))
    }

    fn delete(&self, path: &str) -> RequestBuilder {
        self.keyed(Method::DELETE, path)
    }

    /// Creates a SCIM user and returns it.
    async fn user(&self, body: Value) -> Value {
        let mut body = body;
        body["schemas"] = json!([USER]);
        let (status, user) = send(self.post("/scim/Users", &body)).await;
        assert_eq!(status, 201, "{user}");
        user
    }

    async fn filter(&self, filter: &str) -> (u16, Value) {
        send(self.get(&format!("/scim/Users?{}", encode(&[("filter", filter)])))).await
    }

    fn fault(&self, operation: &str, fault: Fault) {
        self.sim.faults().add(FaultRule { operation: operation.into(), fault, times: 1 });
    }

    /// Runs the authorize endpoint and returns the redirect's query.
    async fn authorize(&self, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let response = self
            .http
            .get(format!("{}?{}", self.url("/oauth2/authorize"), encode(pairs)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302, "{:?}", response.text().await);
        let location = header(&response, "location").unwrap().to_owned();
        let (base, query) = location.split_once('?').unwrap();
        assert_eq!(base, REDIRECT);
        form_urlencoded::parse(query.as_bytes()).into_owned().collect()
    }

    /// A code for the default client with these scopes.
    async fn code(&self, scope: &str) -> String {
        let query = self
            .authorize(&[
                ("client_id", DEFAULT_CLIENT_ID),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", scope),
                ("state", "xyz"),
            ])
            .await;
        param(&query, "code").unwrap()
    }

    fn token_request(&self, form: &[(&str, &str)]) -> RequestBuilder {
        self.http.post(self.url("/accounts/oauth2/token/")).form(form)
    }

    async fn exchange(&self, code: &str) -> (u16, Value) {
        send(self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ]))
        .await
    }

    async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        send(self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ]))
        .await
    }

    fn back_door(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(&format!("/_sim{path}")))
    }
}

fn with_json(request: RequestBuilder, body: &Value) -> RequestBuilder {
    request.header("content-type", "application/scim+json").body(body.to_string())
}

fn encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn param(query: &[(String, String)], name: &str) -> Option<String> {
    query.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

/// The status and the JSON body (null when there is none).
async fn send(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

fn id(resource: &Value) -> String {
    resource["id"].as_str().unwrap().to_owned()
}

fn user_names(list: &Value) -> Vec<String> {
    list["Resources"].as_array().unwrap().iter().map(|r| r["userName"].as_str().unwrap().to_owned()).collect()
}

fn assert_scim_error(status: u16, body: &Value, expected: u16, scim_type: Option<&str>) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["schemas"], json!([ERROR]), "{body}");
    assert_eq!(body["status"], json!(expected.to_string()), "{body}");
    assert_eq!(body["scimType"].as_str(), scim_type, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
}

fn assert_detail(status: u16, body: &Value, expected: u16) {
    assert_eq!(status, expected, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
}

fn token(body: &Value) -> TokenSet {
    serde_json::from_value(body.clone()).unwrap()
}

// ---------------------------------------------------------------------------
// Api-Version and authentication

#[tokio::test]
async fn every_api_request_needs_api_version_1() {
    let api = Api::default().await;
    let no_version =
        |path: &str| api.http.get(api.url(path)).header("authorization", format!("ApiKey {DEFAULT_API_KEY}"));
    let (status, body) = send(no_version("/scim/Users")).await;
    assert_scim_error(status, &body, 400, None);
    assert!(body["detail"].as_str().unwrap().contains("Api-Version"), "{body}");
    let (status, body) = send(no_version("/users")).await;
    assert_detail(status, &body, 400);
    let (status, _) = send(no_version("/scim/ServiceProviderConfig").header("api-version", "2")).await;
    assert_eq!(status, 400, "only version 1 exists");
    assert_eq!(send(api.get("/scim/Users")).await.0, 200);
    assert_eq!(send(api.get("/users")).await.0, 200);
    // The refusal is logged with what was (not) sent.
    let log = api.sim.log().entries();
    assert_eq!(log.iter().map(|e| e.status).collect::<Vec<_>>(), [400, 400, 400, 200, 200]);
    assert_eq!(log[0].header("api-version"), None);
    assert_eq!(log[3].header("api-version"), Some("1"));

    // The status is a switch, and so is the requirement.
    let api = Api::start(Config { api_version_status: Some(412), ..Config::default() }).await;
    let response =
        api.http.get(api.url("/scim/Users")).header("authorization", format!("ApiKey {DEFAULT_API_KEY}"));
    assert_eq!(send(response).await.0, 412);
    let api = Api::start(Config { api_version_status: None, ..Config::default() }).await;
    let response =
        api.http.get(api.url("/scim/Users")).header("authorization", format!("ApiKey {DEFAULT_API_KEY}"));
    assert_eq!(send(response).await.0, 200);
}

#[tokio::test]
async fn api_keys_and_bearer_tokens_authenticate_and_nothing_else() {
    let api = Api::default().await;
    let (status, body) = send(api.bare(Method::GET, "/scim/Users")).await;
    assert_scim_error(status, &body, 401, None);
    let (status, body) =
        send(api.bare(Method::GET, "/scim/Users").header("authorization", "ApiKey nope")).await;
    assert_scim_error(status, &body, 401, None);
    // The key under the wrong scheme is not a bearer token.
    let (status, _) = send(api.bearer(Method::GET, "/scim/Users", DEFAULT_API_KEY)).await;
    assert_eq!(status, 401);
    let (status, body) = send(api.bare(Method::GET, "/users")).await;
    assert_detail(status, &body, 401);
    assert_eq!(send(api.get("/scim/Users")).await.0, 200);

    let tokens = api.sim.issue_token(DEFAULT_CLIENT_ID, &["scim:read"]);
    assert_eq!(send(api.bearer(Method::GET, "/scim/Users", &tokens.access_token)).await.0, 200);
    let response = api.bearer(Method::GET, "/scim/Users", "tpat_forged").send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(header(&response, "www-authenticate").unwrap().contains("invalid_token"));

    // Keys are created and revoked out of band, as admins do.
    api.sim.add_api_key("second-key");
    let second = || api.bare(Method::GET, "/users").header("authorization", "ApiKey second-key");
    assert_eq!(send(second()).await.0, 200);
    assert!(api.sim.revoke_api_key("second-key"));
    assert_eq!(send(second()).await.0, 401);
    api.sim.revoke_tokens();
    assert_eq!(send(api.bearer(Method::GET, "/scim/Users", &tokens.access_token)).await.0, 401);
}

#[tokio::test]
async fn tokens_need_the_scope_of_the_method_and_api_keys_have_all() {
    let api = Api::default().await;
    let read = api.sim.issue_token(DEFAULT_CLIENT_ID, &["scim:read"]).access_token;
    let write = api.sim.issue_token(DEFAULT_CLIENT_ID, &["scim:write"]).access_token;
    let delete = api.sim.issue_token(DEFAULT_CLIENT_ID, &["scim:delete"]).access_token;
    let body = json!({"schemas": [USER], "userName": "ada@example.com"});

    assert_eq!(send(api.bearer(Method::GET, "/scim/Users", &read)).await.0, 200);
    let response = with_json(api.bearer(Method::POST, "/scim/Users", &read), &body).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let challenge = header(&response, "www-authenticate").unwrap().to_owned();
    assert!(challenge.contains("insufficient_scope") && challenge.contains("scim:write"), "{challenge}");
    assert_scim_error(403, &response.json().await.unwrap(), 403, None);
    assert!(api.sim.users().is_empty(), "a forbidden create changes nothing");

    let (status, created) = send(with_json(api.bearer(Method::POST, "/scim/Users", &write), &body)).await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/scim/Users/{}", id(&created));
    assert_eq!(send(api.bearer(Method::GET, &path, &write)).await.0, 403, "write does not include read");
    assert_eq!(send(api.bearer(Method::DELETE, &path, &write)).await.0, 403);
    assert_eq!(send(api.bearer(Method::DELETE, &path, &read)).await.0, 403);
    assert_eq!(api.sim.users().len(), 1);
    assert_eq!(send(api.bearer(Method::DELETE, &path, &delete)).await.0, 204);
    assert!(api.sim.users().is_empty());

    // The legacy list needs scim:read by default.
    let (status, body) = send(api.bearer(Method::GET, "/users", &write)).await;
    assert_detail(status, &body, 403);
    assert_eq!(send(api.bearer(Method::GET, "/users", &read)).await.0, 200);
    // An API key carries every scope.
    let (status, created) = send(api.post("/scim/Users", &json!({"userName": "bob@example.com"}))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(send(api.delete(&format!("/scim/Users/{}", id(&created)))).await.0, 204);
}

// ---------------------------------------------------------------------------
// OAuth

#[tokio::test]
async fn the_code_flow_issues_tokens_that_refresh_with_rotation_and_expire() {
    let api = Api::default().await;
    let query = api
        .authorize(&[
            ("client_id", DEFAULT_CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "scim:read scim:write"),
            ("state", "s-42"),
        ])
        .await;
    assert_eq!(param(&query, "state").as_deref(), Some("s-42"));
    let code = param(&query, "code").unwrap();

    // The exchange must repeat the redirect URI and authenticate the client.
    let wrong_secret = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", "wrong"),
    ];
    let (status, body) = send(api.token_request(&wrong_secret)).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
    let (status, body) = send(api.http.post(api.url("/accounts/oauth2/token/")).json(&json!({
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET})))
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "form-encoded only: {body}");

    let (status, body) = send(api.token_request(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", DEFAULT_CLIENT_SECRET),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    let first = token(&body);
    assert_eq!((first.token_type.as_str(), first.expires_in), ("Bearer", 3600));
    assert_eq!(first.scope, "scim:read scim:write");
    assert_eq!(send(api.bearer(Method::GET, "/scim/Users", &first.access_token)).await.0, 200);
    let (status, body) = api.exchange(&code).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "a code works once: {body}");

    // Refresh: a new pair; the old refresh token is retired.
    let (status, body) = api.refresh(&first.refresh_token).await;
    assert_eq!(status, 200, "{body}");
    let second = token(&body);
    assert_ne!(second.access_token, first.access_token);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(second.scope, first.scope);
    let (status, body) = api.refresh(&first.refresh_token).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let (status, body) =
        send(api.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", second.refresh_token.as_str()),
        ]))
        .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");

    // An hour of simulated time later the access token is refused; a
    // refresh brings a working one.
    api.sim.clock().advance(3590);
    assert_eq!(send(api.bearer(Method::GET, "/scim/Users", &second.access_token)).await.0, 200);
    api.sim.clock().advance(10);
    let response = api.bearer(Method::GET, "/scim/Users", &second.access_token).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(header(&response, "www-authenticate").unwrap().contains("expired"));
    let (status, body) = api.refresh(&second.refresh_token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(send(api.bearer(Method::GET, "/scim/Users", &token(&body).access_token)).await.0, 200);

    // Codes expire too.
    let code = api.code("scim:read").await;
    api.sim.clock().advance(601);
    let (status, body) = api.exchange(&code).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
}

#[tokio::test]
async fn without_rotation_the_refresh_token_stays_and_lifetimes_are_configurable() {
    let config = Config { rotate_refresh_tokens: false, access_token_ttl_secs: 60, ..Config::default() };
    let api = Api::start(config).await;
    let (status, body) = api.exchange(&api.code("scim:read").await).await;
    assert_eq!(status, 200, "{body}");
    let first = token(&body);
    assert_eq!(first.expires_in, 60);
    let (_, body) = api.refresh(&first.refresh_token).await;
    let second = token(&body);
    assert_eq!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    let (status, _) = api.refresh(&first.refresh_token).await;
    assert_eq!(status, 200, "the same refresh token keeps working");

    // A narrower scope may be asked for, a wider one not.
    let narrow = [
        ("grant_type", "refresh_token"),
        ("refresh_token", first.refresh_token.as_str()),
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", DEFAULT_CLIENT_SECRET),
        ("scope", "scim:read scim:write"),
    ];
    let (status, body) = send(api.token_request(&narrow)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")), "{body}");

    api.sim.clock().advance(60);
    assert_eq!(send(api.bearer(Method::GET, "/scim/Users", &second.access_token)).await.0, 401);
    let info = api.sim.token(&second.access_token).unwrap();
    assert_eq!(
        (info.client_id.as_str(), info.scopes.as_slice()),
        (DEFAULT_CLIENT_ID, &["scim:read".to_owned()][..])
    );
}

#[tokio::test]
async fn authorize_refuses_unknown_clients_redirects_and_scopes() {
    let client = OAuthClient {
        client_id: "registered".into(),
        client_secret: "s".into(),
        redirect_uris: vec![REDIRECT.into()],
        scopes: vec!["scim:read".into()],
    };
    let api = Api::start(Config { clients: vec![client], ..Config::default() }).await;
    let get =
        |pairs: &[(&str, &str)]| api.http.get(format!("{}?{}", api.url("/oauth2/authorize"), encode(pairs)));
    // Never redirected anywhere for an unknown client or an unregistered URI.
    let (status, body) =
        send(get(&[("client_id", "nobody"), ("redirect_uri", REDIRECT), ("response_type", "code")])).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client")), "{body}");
    let (status, body) = send(get(&[
        ("client_id", "registered"),
        ("redirect_uri", "https://evil.example/"),
        ("response_type", "code"),
    ]))
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");

    let query = api
        .authorize(&[("client_id", "registered"), ("response_type", "code"), ("scope", "scim:write")])
        .await;
    assert_eq!(param(&query, "error").as_deref(), Some("invalid_scope"));
    assert_eq!(param(&query, "code"), None);
    let query = api.authorize(&[("client_id", "registered"), ("response_type", "token")]).await;
    assert_eq!(param(&query, "error").as_deref(), Some("unsupported_response_type"));
    // Without a scope the client gets what it may have.
    let query = api.authorize(&[("client_id", "registered"), ("response_type", "code")]).await;
    let code = param(&query, "code").unwrap();
    let (status, body) = send(api.token_request(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("client_id", "registered"),
        ("client_secret", "s"),
    ]))
    .await;
    assert_eq!((status, body["scope"].as_str()), (200, Some("scim:read")), "{body}");

    let api = Api::start(Config { auto_consent: false, ..Config::default() }).await;
    let query = api
        .authorize(&[("client_id", DEFAULT_CLIENT_ID), ("redirect_uri", REDIRECT), ("response_type", "code")])
        .await;
    assert_eq!(param(&query, "error").as_deref(), Some("access_denied"));
}

// ---------------------------------------------------------------------------
// SCIM

#[tokio::test]
async fn scim_users_live_under_scim_with_numeric_ids_and_equality_filters() {
    let api = Api::default().await;
    let response = api
        .post(
            "/scim/Users",
            &json!({"schemas": [USER], "userName": "Ada@Example.com", "externalId": "hr-1",
                    "name": {"givenName": "Ada", "familyName": "Lovelace"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = header(&response, "location").unwrap().to_owned();
    let ada: Value = response.json().await.unwrap();
    assert_eq!(ada["id"], "1", "TravelPerk ids are numeric strings");
    assert_eq!(location, api.url("/scim/Users/1"));
    assert_eq!(ada["meta"]["location"], location);
    let bob = api.user(json!({"userName": "bob@example.com", "externalId": "hr-2"})).await;
    assert_eq!(bob["id"], "2");
    // Not under /scim/v2.
    assert_eq!(send(api.get("/scim/v2/Users")).await.0, 404);
    // The legacy prefix reaches the same users.
    let (status, legacy) = send(api.get("/api/v2/scim/Users/1")).await;
    assert_eq!((status, legacy["userName"].as_str()), (200, Some("Ada@Example.com")));

    let (_, list) = api.filter(r#"userName eq "ada@example.COM""#).await;
    assert_eq!(user_names(&list), ["Ada@Example.com"]);
    let (_, list) = api.filter(r#"externalId eq "hr-2""#).await;
    assert_eq!(user_names(&list), ["bob@example.com"]);
    let (_, list) = api.filter(r#"emails.value eq "BOB@example.com""#).await;
    assert_eq!(user_names(&list), ["bob@example.com"], "emails.value is the userName");
    let (_, list) = api.filter(r#"userName eq "nobody@example.com""#).await;
    assert_eq!((list["totalResults"].as_u64(), user_names(&list).len()), (Some(0), 0));
    for unsupported in [r#"userName co "ada""#, r#"name.givenName eq "Ada""#, "active eq true", "userName pr"]
    {
        let (status, body) = api.filter(unsupported).await;
        assert_scim_error(status, &body, 400, Some("invalidFilter"));
    }

    // startIndex and count page the list.
    for i in 3..=5 {
        api.user(json!({"userName": format!("u{i}@example.com")})).await;
    }
    let (_, page) = send(api.get("/scim/Users?startIndex=2&count=2")).await;
    assert_eq!(
        (page["totalResults"].as_u64(), page["itemsPerPage"].as_u64(), page["startIndex"].as_u64()),
        (Some(5), Some(2), Some(2))
    );
    assert_eq!(user_names(&page), ["bob@example.com", "u3@example.com"]);

    // Discovery.
    let (status, config) = send(api.get("/scim/ServiceProviderConfig")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (config["filter"]["maxResults"].as_u64(), config["patch"]["supported"].as_bool()),
        (Some(100), Some(true))
    );
    let (status, schema) = send(api.get(&format!("/scim/Schemas/{TRAVELPERK}"))).await;
    assert_eq!((status, schema["id"].as_str()), (200, Some(TRAVELPERK)));
    let (status, schema) = send(api.get(&format!("/scim/Schemas/{ENTERPRISE}"))).await;
    assert_eq!((status, schema["id"].as_str()), (200, Some(ENTERPRISE)));
    let (_, types) = send(api.get("/scim/ResourceTypes")).await;
    assert_eq!(types["totalResults"], 1, "Users only");
}

#[tokio::test]
async fn patch_takes_paths_and_path_less_values_atomically() {
    let api = Api::default().await;
    let ada = api.user(json!({"userName": "ada@example.com", "active": true, "title": "Analyst"})).await;
    let path = format!("/scim/Users/{}", id(&ada));
    let (status, patched) = send(api.patch(
        &path,
        json!([
            {"op": "replace", "path": "title", "value": "Countess"},
            {"op": "add", "path": format!("{TRAVELPERK}:gender"), "value": "F"}
        ]),
    ))
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        (patched["title"].as_str(), patched[TRAVELPERK]["gender"].as_str()),
        (Some("Countess"), Some("F"))
    );

    // One bad operation and nothing applies.
    let (status, body) = send(api.patch(
        &path,
        json!([
            {"op": "replace", "path": "title", "value": "Engineer"},
            {"op": "replace", "path": format!("{TRAVELPERK}:gender"), "value": "X"}
        ]),
    ))
    .await;
    assert_scim_error(status, &body, 400, Some("invalidValue"));
    let (_, current) = send(api.get(&path)).await;
    assert_eq!(current["title"], "Countess");

    // Okta's path-less deactivation.
    let (status, patched) =
        send(api.patch(&path, json!([{"op": "replace", "value": {"active": false}}]))).await;
    assert_eq!((status, patched["active"].as_bool()), (200, Some(false)), "{patched}");
    let (_, legacy) = send(api.get("/users")).await;
    assert_eq!(legacy["users"][0]["active"], false);
}

#[tokio::test]
async fn scim_writes_are_validated_like_travelperk() {
    let api = Api::default().await;
    let manager = api.user(json!({"userName": "boss@example.com"})).await;
    let good = json!({"schemas": [USER], "userName": "ada@example.com",
        ENTERPRISE: {"costCenter": "CC1", "manager": {"value": id(&manager)}},
        TRAVELPERK: {"gender": "F", "dateOfBirth": "1815-12-10", "travelPolicy": "Standard",
                     "invoiceProfiles": [{"value": "Main"}], "emergencyContact": {"name": "Byron", "phone": "+44 2"}}});
    for (urn, value, what) in [
        (TRAVELPERK, json!({"gender": "X"}), "gender"),
        (TRAVELPERK, json!({"travelPolicy": "Luxury"}), "travel policy"),
        (TRAVELPERK, json!({"invoiceProfiles": [{"value": "Other Ltd"}]}), "invoice profile"),
        (ENTERPRISE, json!({"manager": {"value": "99"}}), "manager"),
    ] {
        let mut bad = good.clone();
        bad[urn] = value;
        let (status, body) = send(api.post("/scim/Users", &bad)).await;
        assert_scim_error(status, &body, 400, Some("invalidValue"));
        assert!(
            body["detail"].as_str().unwrap().to_lowercase().contains(what.split(' ').next().unwrap()),
            "{body}"
        );
    }
    assert_eq!(api.sim.users().len(), 1, "no invalid user was stored");

    let created = api.user(good.clone()).await;
    assert_eq!(created[ENTERPRISE]["manager"]["value"], id(&manager));
    assert_eq!(created[TRAVELPERK]["travelPolicy"], "Standard");
    let mut clash = good.clone();
    clash["userName"] = json!("ADA@example.com");
    let (status, body) = send(api.post("/scim/Users", &clash)).await;
    assert_scim_error(status, &body, 409, Some("uniqueness"));

    // Travel policies exist or not out of band.
    assert!(api.sim.add_travel_policy("Luxury"));
    let mut luxury = good.clone();
    luxury["userName"] = json!("bob@example.com");
    luxury[TRAVELPERK]["travelPolicy"] = json!("Luxury");
    let bob = api.user(luxury).await;
    assert_eq!(bob[TRAVELPERK]["travelPolicy"], "Luxury");
    assert!(api.sim.remove_invoice_profile("Main"));
    let (status, body) = send(api.patch(
        &format!("/scim/Users/{}", id(&bob)),
        json!([{"op": "replace", "path": "title", "value": "Engineer"}]),
    ))
    .await;
    assert_scim_error(status, &body, 400, Some("invalidValue"));
}

#[tokio::test]
async fn delete_is_hard_by_default_and_can_deactivate() {
    let api = Api::default().await;
    let ada = api.user(json!({"userName": "ada@example.com", "active": true})).await;
    let path = format!("/scim/Users/{}", id(&ada));
    assert_eq!(send(api.delete(&path)).await.0, 204);
    let (status, body) = send(api.get(&path)).await;
    assert_scim_error(status, &body, 404, None);

    let api = Api::start(Config { delete: DeleteMode::Deactivate, ..Config::default() }).await;
    let ada = api.user(json!({"userName": "ada@example.com", "active": true})).await;
    let path = format!("/scim/Users/{}", id(&ada));
    assert_eq!(send(api.delete(&path)).await.0, 204);
    let (status, user) = send(api.get(&path)).await;
    assert_eq!((status, user["active"].as_bool()), (200, Some(false)));
}

#[tokio::test]
async fn the_page_size_is_capped_at_max_results() {
    let api = Api::start(Config { max_results: 2, ..Config::default() }).await;
    for i in 0..3 {
        api.user(json!({"userName": format!("u{i}@example.com")})).await;
    }
    let (_, page) = send(api.get("/scim/Users?count=50")).await;
    assert_eq!((page["totalResults"].as_u64(), page["itemsPerPage"].as_u64()), (Some(3), Some(2)));
    let (_, page) = send(api.get("/scim/Users")).await;
    assert_eq!(page["itemsPerPage"], 2, "also without count");
}

// ---------------------------------------------------------------------------
// Legacy REST

#[tokio::test]
async fn legacy_users_page_with_limit_and_offset_in_snake_case() {
    let api = Api::default().await;
    api.sim
        .seed_user(&json!({"userName": "boss@test.com", "title": "Boss", "locale": "en-gb", "preferredLanguage": "en",
            "name": {"givenName": "Boss", "familyName": "Morrison", "honorificPrefix": "MR"},
            "phoneNumbers": [{"value": "+34 123456789", "type": "work"}],
            TRAVELPERK: {"emergencyContact": {"name": "Mrs. Morrison", "phone": "+34 987654321"}}}))
        .unwrap();
    for name in ["manager@test.com", "ada@test.com"] {
        api.sim.seed_user(&json!({"userName": name})).unwrap();
    }
    let (status, page) = send(api.get("/users?limit=2&offset=0")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        (page["limit"].as_u64(), page["offset"].as_u64(), page["total"].as_u64()),
        (Some(2), Some(0), Some(3))
    );
    let ids: Vec<&str> =
        page["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["3", "2"], "newest first");
    let (_, page) = send(api.get("/users?limit=2&offset=2")).await;
    assert_eq!(
        page["users"],
        json!([{"id": "1", "user_name": "boss@test.com",
            "name": {"first_name": "Boss", "last_name": "Morrison", "middle_name": "", "title": "MR"},
            "preferred_language": "en", "locale": "en-gb", "active": true, "job_title": "Boss",
            "phone_numbers": ["+34 123456789"],
            "emergency_contact": {"name": "Mrs. Morrison", "phone": "+34 987654321"}}])
    );
    let (_, page) = send(api.get("/users")).await;
    assert_eq!((page["limit"].as_u64(), page["users"].as_array().unwrap().len()), (Some(10), 3));
    assert_eq!(page["users"][0]["emergency_contact"], Value::Null);
    let (_, page) = send(api.get("/users?limit=5000&offset=1")).await;
    assert_eq!((page["limit"].as_u64(), page["users"].as_array().unwrap().len()), (Some(200), 2));
    let (status, page) = send(api.get("/api/v2/users?limit=1")).await;
    assert_eq!((status, page["users"][0]["id"].as_str()), (200, Some("3")));
    let (status, body) = send(api.post("/users", &json!({}))).await;
    assert_detail(status, &body, 405);

    let api =
        Api::start(Config { users_newest_first: false, legacy_prefix: false, ..Config::default() }).await;
    for name in ["a@test.com", "b@test.com"] {
        api.sim.seed_user(&json!({"userName": name})).unwrap();
    }
    let (_, page) = send(api.get("/users")).await;
    assert_eq!(page["users"][0]["user_name"], "a@test.com");
    assert_eq!(send(api.get("/api/v2/users")).await.0, 404);
    assert_eq!(send(api.get("/api/v2/scim/Users")).await.0, 404);
}

// ---------------------------------------------------------------------------
// Rate limits, faults, determinism, back door

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_per_credential() {
    let config = Config { rate_limit: Some(RateLimit { requests: 3, per_secs: 60 }), ..Config::default() };
    let api = Api::start(config).await;
    for _ in 0..2 {
        let response = api.get("/scim/Users").send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit-remaining"), None, "RateLimit-* are off by default");
    }
    assert_eq!(send(api.get("/users")).await.0, 200, "REST and SCIM share the budget");
    let response = api.get("/scim/Users").send().await.unwrap();
    assert_eq!(response.status(), 429);
    let wait: u64 = header(&response, "retry-after").unwrap().parse().unwrap();
    assert!((50..=60).contains(&wait), "{wait}");
    assert_scim_error(429, &response.json().await.unwrap(), 429, None);
    let response = api.get("/users").send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(header(&response, "retry-after").is_some());
    assert_detail(429, &response.json().await.unwrap(), 429);
    // Another credential has its own budget; OAuth tokens count per client.
    let token = api.sim.issue_token(DEFAULT_CLIENT_ID, &["scim:read"]).access_token;
    assert_eq!(send(api.bearer(Method::GET, "/scim/Users", &token)).await.0, 200);

    let config = Config {
        rate_limit: Some(RateLimit { requests: 2, per_secs: 60 }),
        rate_limit_headers: true,
        retry_after: false,
        ..Config::default()
    };
    let api = Api::start(config).await;
    let remaining = |r: &Response| header(r, "ratelimit-remaining").map(str::to_owned);
    let first = api.get("/scim/Users").send().await.unwrap();
    assert_eq!((header(&first, "ratelimit-limit"), remaining(&first).as_deref()), (Some("2"), Some("1")));
    let reset: u64 = header(&first, "ratelimit-reset").unwrap().parse().unwrap();
    assert!((50..=60).contains(&reset), "{reset}");
    let second = api.get("/users").send().await.unwrap();
    assert_eq!(remaining(&second).as_deref(), Some("0"));
    let third = api.get("/scim/Users").send().await.unwrap();
    assert_eq!((third.status().as_u16(), header(&third, "retry-after")), (429, None));

    let api = Api::start(Config { rate_limit: None, ..Config::default() }).await;
    for _ in 0..70 {
        assert_eq!(send(api.get("/users?limit=1")).await.0, 200);
    }
}

#[tokio::test]
async fn faults_are_injected_per_operation_and_logged() {
    let api = Api::default().await;
    api.fault("users.legacy_list", Fault::RateLimited { retry_after: Some(7) });
    let response = api.get("/users").send().await.unwrap();
    assert_eq!((response.status().as_u16(), header(&response, "retry-after")), (429, Some("7")));
    api.fault("users.create", Fault::InBand { code: "uniqueness".into(), message: None });
    let (status, body) = send(api.post("/scim/Users", &json!({"userName": "ada@example.com"}))).await;
    assert_scim_error(status, &body, 409, Some("uniqueness"));
    assert!(api.sim.users().is_empty(), "faults before the work change nothing");
    api.fault("users.list", Fault::Malformed { status: 502 });
    let response = api.get("/scim/Users").send().await.unwrap();
    assert_eq!((response.status().as_u16(), header(&response, "content-type")), (502, Some("text/html")));
    api.fault("oauth.token", Fault::ServerError { status: 503 });
    let code = api.code("scim:read").await;
    let (status, body) = api.exchange(&code).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("server_error")), "{body}");

    // The token is issued, then the answer never comes: the code is spent.
    api.fault("oauth.token", Fault::TimeoutAfterCommit { secs: 5 });
    let sent = api
        .token_request(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ])
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout());
    let (status, body) = api.exchange(&code).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");

    let log = api.sim.log().entries();
    let faults: Vec<Option<&str>> = log.iter().map(|e| e.fault.as_deref()).collect();
    assert_eq!(
        faults,
        [
            Some("rate_limited(retry_after=7)"),
            Some("in_band(uniqueness)"),
            Some("malformed(502)"),
            None, // the authorize redirect
            Some("server_error(503)"),
            Some("timeout_after_commit(5s)"),
            None
        ]
    );
    assert_eq!(log[3].path, "/oauth2/authorize");
    assert_eq!(log[5].status, 0, "never answered");
    assert!(log[6].body.contains("grant_type=authorization_code"));
}

#[tokio::test]
async fn ids_and_tokens_are_deterministic_per_seed() {
    let run = |seed: u64| async move {
        let api = Api::start(Config { seed, ..Config::default() }).await;
        let user = api.user(json!({"userName": "ada@example.com"})).await;
        let (_, body) = api.exchange(&api.code("scim:read").await).await;
        let tokens = token(&body);
        (id(&user), tokens.access_token, tokens.refresh_token)
    };
    let first = run(7).await;
    assert_eq!(first, run(7).await);
    assert_eq!(first.0, "7", "numeric ids count up from the seed");
    let other = run(8).await;
    assert_eq!(other.0, "8");
    assert_ne!(first.1, other.1);
    assert_ne!(first.2, other.2);
}

#[tokio::test]
async fn the_back_door_seeds_changes_and_resets() {
    let api = Api::default().await;
    let (status, seeded) = send(
        api.back_door(Method::POST, "/users").json(&json!({"userName": "ada@example.com", "title": "A"})),
    )
    .await;
    assert_eq!(status, 201, "{seeded}");
    let ada = id(&seeded);
    let (status, _) =
        send(api.back_door(Method::POST, "/users").json(&json!({"userName": "ADA@example.com"}))).await;
    assert_eq!(status, 409);

    // Drift behind the client's back.
    let (status, changed) = send(
        api.back_door(Method::PATCH, &format!("/users/{ada}")).json(&json!({"title": null, "active": false})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    let (_, user) = send(api.get(&format!("/scim/Users/{ada}"))).await;
    assert_eq!((user.get("title"), user["active"].as_bool()), (None, Some(false)));

    let (status, _) =
        send(api.back_door(Method::POST, "/travel_policies").json(&json!({"name": "Luxury"}))).await;
    assert_eq!(status, 201);
    let (_, policies) = send(api.back_door(Method::GET, "/travel_policies")).await;
    assert_eq!(policies, json!(["Luxury", "Standard"]));
    let (status, _) = send(api.back_door(Method::DELETE, "/invoice_profiles/Main")).await;
    assert_eq!(status, 204);
    let (_, profiles) = send(api.back_door(Method::GET, "/invoice_profiles")).await;
    assert_eq!(profiles, json!([]));

    let (status, _) = send(api.back_door(Method::POST, "/api_keys").json(&json!({"key": "k2"}))).await;
    assert_eq!(status, 204);
    let keyed = || api.bare(Method::GET, "/users").header("authorization", "ApiKey k2");
    assert_eq!(send(keyed()).await.0, 200);
    let (status, minted) =
        send(api.back_door(Method::POST, "/tokens").json(&json!({"scopes": ["scim:delete"]}))).await;
    assert_eq!((status, minted["scope"].as_str()), (200, Some("scim:delete")));
    let minted = token(&minted);
    assert_eq!(send(api.bearer(Method::GET, "/users", &minted.access_token)).await.0, 403);
    let (_, now) = send(api.back_door(Method::POST, "/clock").json(&json!({"advance_secs": 3600}))).await;
    assert!(now["now"].as_i64().is_some());
    assert_eq!(send(api.bearer(Method::GET, "/users", &minted.access_token)).await.0, 401, "expired");

    let (_, requests) = send(api.back_door(Method::GET, "/requests")).await;
    assert_eq!(requests.as_array().unwrap().len(), 4, "the back door is not logged");
    let fault = json!({"operation": "users.get", "fault": {"kind": "server_error", "status": 500}});
    send(api.back_door(Method::POST, "/faults").json(&fault)).await;
    assert_eq!(send(api.get(&format!("/scim/Users/{ada}"))).await.0, 500);
    let (_, users) = send(api.back_door(Method::GET, "/users")).await;
    assert_eq!(users.as_array().unwrap().len(), 1);

    assert_eq!(send(api.back_door(Method::POST, "/reset")).await.0, 204);
    assert!(api.sim.users().is_empty());
    assert!(api.sim.log().entries().is_empty());
    assert_eq!(api.sim.travel_policies(), ["Standard"]);
    assert_eq!(api.sim.invoice_profiles(), ["Main"]);
    assert_eq!(send(keyed()).await.0, 401, "runtime keys are forgotten");
    assert_eq!(send(api.bearer(Method::GET, "/users", &minted.access_token)).await.0, 401);
    // Ids restart.
    let (_, again) =
        send(api.back_door(Method::POST, "/users").json(&json!({"userName": "x@example.com"}))).await;
    assert_eq!(id(&again), ada);
    assert_eq!(send(api.back_door(Method::DELETE, &format!("/users/{ada}"))).await.0, 204);
    assert_eq!(send(api.back_door(Method::DELETE, &format!("/users/{ada}"))).await.0, 404);
}
