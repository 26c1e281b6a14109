//! The Management API's view of browser sessions (`/api/sessions`): what a
//! login records, sessions started by the API, touch, revoke and delete, and
//! that ending a session (or blocking its user) stops its tokens at once.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::*;
use crate::common::{assert_error, assert_not_found, id_of};
use crate::db_test;
use crate::harness::TestServer;

const EMAIL: &str = "ada@example.com";
const USER_AGENT: &str = "portcullis-tests/1.0";

/// A first-party confidential client (no consent page).
async fn first_party(server: &TestServer, admin: &str) -> TestClient {
    create_client(server, admin, json!({"first_party": true})).await
}

/// Signs in through `browser` with `scope` and redeems the code; returns
/// the token response.
async fn sign_in(server: &TestServer, browser: &mut Browser<'_>, client: &TestClient, scope: &str) -> Value {
    let (verifier, challenge) = pkce();
    let redirect = browser.authorize(&authorize_path(&code_request(client, scope, &challenge)), EMAIL).await;
    let code = query_of(&redirect).remove("code").unwrap_or_else(|| panic!("no code in {redirect}"));
    let (status, tokens) = redeem(server, client, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "code redemption failed: {tokens}");
    tokens
}

fn token_of<'a>(tokens: &'a Value, name: &str) -> &'a str {
    tokens[name].as_str().unwrap_or_else(|| panic!("no {name} in {tokens}"))
}

#[track_caller]
fn assert_token_refused((status, _, challenge): (StatusCode, Value, String), what: &str) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: UserInfo should refuse the access token");
    assert!(challenge.contains("error=\"invalid_token\""), "{what}: challenge {challenge}");
}

async fn refresh(server: &TestServer, client: &TestClient, refresh_token: &str) -> (StatusCode, Value) {
    token_call(server, client, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
}

#[track_caller]
fn assert_invalid_grant((status, body): (StatusCode, Value), what: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    assert_eq!(body["error"], "invalid_grant", "{what}: {body}");
}

/// Whether introspection (by `client`) reports `access` active.
async fn active(server: &TestServer, client: &TestClient, access: &str) -> bool {
    let response = server
        .http
        .post(server.url("/oauth/introspect"))
        .basic_auth(&client.creds.client_id, Some(&client.creds.client_secret))
        .form(&[("token", access)])
        .send()
        .await
        .expect("introspection");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    body["active"].as_bool().unwrap_or_else(|| panic!("no active in {body}"))
}

/// The user's sessions, by `filter[user_id]`.
async fn sessions_of(server: &TestServer, admin: &str, user_id: &str) -> Vec<Value> {
    let (status, body) =
        server.api(Method::GET, &format!("/api/sessions?filter[user_id]={user_id}"), admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap_or_else(|| panic!("no data array: {body}")).clone()
}

async fn get_session(server: &TestServer, admin: &str, id: &str) -> Value {
    let (status, body) = server.api(Method::GET, &format!("/api/sessions/{id}"), admin, None).await;
    assert_eq!(status, StatusCode::OK, "GET session {id}: {body}");
    body["data"].clone()
}

async fn action(server: &TestServer, admin: &str, id: &str, name: &str) -> (StatusCode, Value) {
    server.api(Method::PATCH, &format!("/api/sessions/{id}/{name}"), admin, None).await
}

fn new_session(user_id: &str) -> Value {
    json!({"data": {"type": "session", "relationships": {"user": {"data": {"type": "user", "id": user_id}}}}})
}

/// POST /api/sessions for `user_id`; returns the document (201 asserted).
async fn create_session(server: &TestServer, admin: &str, user_id: &str) -> Value {
    let (status, body) = server.api(Method::POST, "/api/sessions", admin, Some(new_session(user_id))).await;
    assert_eq!(status, StatusCode::CREATED, "creating a session: {body}");
    body
}

/// The single session a browser sign-in started for `user_id`.
async fn the_session(server: &TestServer, admin: &str, user_id: &str) -> Value {
    let sessions = sessions_of(server, admin, user_id).await;
    assert_eq!(sessions.len(), 1, "expected one session for the user: {sessions:?}");
    sessions[0].clone()
}

db_test!(a_browser_login_creates_a_session_visible_in_the_api, |server| {
    let admin = server.admin_token().await;
    let user_id = create_person(&server, &admin, EMAIL).await;
    let other_id = create_person(&server, &admin, "grace@example.com").await;
    let client = first_party(&server, &admin).await;
    assert!(sessions_of(&server, &admin, &user_id).await.is_empty(), "no session before login");

    let mut browser = Browser::new(&server);
    let tokens = sign_in(&server, &mut browser, &client, "openid").await;

    let session = the_session(&server, &admin, &user_id).await;
    let attributes = &session["attributes"];
    assert_eq!(session["type"], "session");
    assert_eq!(attributes["status"], "active", "{session}");
    assert_eq!(attributes["ip_address"], "127.0.0.1", "{session}");
    assert_eq!(attributes["user_agent"], USER_AGENT, "{session}");
    assert_eq!(attributes["revoked_at"], Value::Null, "{session}");
    for field in ["authenticated_at", "last_active_at", "expires_at", "inserted_at", "updated_at"] {
        assert!(attributes[field].is_string(), "{field} missing: {session}");
    }
    assert!(attributes["expires_at"].as_str() > attributes["authenticated_at"].as_str(), "{session}");
    assert_eq!(session["relationships"]["user"]["data"]["id"], user_id.as_str(), "{session}");
    assert!(session["meta"].get("session_token").is_none(), "the token is never listed: {session}");

    // The ID token's sid names this session; GET by id shows the same.
    let id = session["id"].as_str().unwrap();
    assert_eq!(claims_of(token_of(&tokens, "id_token"))["sid"], id);
    assert_eq!(get_session(&server, &admin, id).await, session);
    // The filter really filters.
    assert!(sessions_of(&server, &admin, &other_id).await.is_empty(), "another user's sessions");
});

db_test!(an_api_created_session_token_works_as_the_session_cookie, |server| {
    let admin = server.admin_token().await;
    let user_id = create_person(&server, &admin, EMAIL).await;
    let client = first_party(&server, &admin).await;

    let created = create_session(&server, &admin, &user_id).await;
    let id = id_of(&created);
    let token = created["meta"]["session_token"]
        .as_str()
        .unwrap_or_else(|| panic!("meta.session_token is returned on create: {created}"))
        .to_owned();
    assert_eq!(created["data"]["attributes"]["status"], "active", "{created}");
    assert_eq!(created["data"]["relationships"]["user"]["data"]["id"], user_id.as_str(), "{created}");
    // Shown once: not on a later GET.
    let (_, fetched) = server.api(Method::GET, &format!("/api/sessions/{id}"), &admin, None).await;
    assert!(fetched.get("meta").and_then(|m| m.get("session_token")).is_none(), "{fetched}");

    // That token is a signed-in browser: straight back with a code, no login.
    let mut browser = Browser::new(&server);
    browser.cookies.insert("portcullis_session".into(), token);
    let (verifier, challenge) = pkce();
    let page = browser.get(&authorize_path(&code_request(&client, "openid", &challenge))).await;
    let redirect = page.redirect();
    assert!(
        redirect.starts_with(&format!("{REDIRECT_URI}?")),
        "expected a code, not a login page: {redirect}"
    );
    let code = query_of(redirect).remove("code").unwrap_or_else(|| panic!("no code in {redirect}"));
    let (status, tokens) = redeem(&server, &client, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let claims = claims_of(token_of(&tokens, "id_token"));
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["sid"], id.as_str(), "the code was issued under the API-created session");

    // A made-up cookie is no session.
    let mut stranger = Browser::new(&server);
    stranger.cookies.insert("portcullis_session".into(), "not-a-session-token".into());
    let page = stranger.get(&authorize_path(&code_request(&client, "openid", &challenge))).await;
    assert!(page.redirect().starts_with("/login"), "a bogus cookie must lead to the login page");
});

db_test!(touch_records_activity, |server| {
    let admin = server.admin_token().await;
    let user_id = create_person(&server, &admin, EMAIL).await;
    let created = create_session(&server, &admin, &user_id).await;
    let id = id_of(&created);
    let before = created["data"]["attributes"].clone();

    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (status, touched) = action(&server, &admin, &id, "touch").await;
    assert_eq!(status, StatusCode::OK, "{touched}");
    let after = &touched["data"]["attributes"];
    assert!(
        after["last_active_at"].as_str() > before["last_active_at"].as_str(),
        "last_active_at should move forward: {before} -> {after}"
    );
    assert_eq!(after["authenticated_at"], before["authenticated_at"], "touch is not a new login");
    assert_eq!(after["status"], "active");
    assert_eq!(
        get_session(&server, &admin, &id).await["attributes"]["last_active_at"],
        after["last_active_at"]
    );

    // A revoked session cannot be touched.
    let (status, _) = action(&server, &admin, &id, "revoke").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = action(&server, &admin, &id, "touch").await;
    assert_error(status, &body, 422, "invalid_attribute", Some("/data/attributes/status"));
});

db_test!(revoking_a_session_stops_its_tokens_at_once, |server| {
    let admin = server.admin_token().await;
    let user_id = create_person(&server, &admin, EMAIL).await;
    let client = first_party(&server, &admin).await;
    let mut browser = Browser::new(&server);
    let tokens = sign_in(&server, &mut browser, &client, "openid email offline_access").await;
    let access = token_of(&tokens, "access_token");
    let refresh_token = token_of(&tokens, "refresh_token");
    assert_eq!(userinfo(&server, access).await.0, StatusCode::OK, "the access token works before");
    let id = the_session(&server, &admin, &user_id).await["id"].as_str().unwrap().to_owned();

    let (status, revoked) = action(&server, &admin, &id, "revoke").await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    let attributes = revoked["data"]["attributes"].clone();
    assert_eq!(attributes["status"], "revoked", "{revoked}");
    assert!(attributes["revoked_at"].is_string(), "{revoked}");

    // At once: no waiting for the access token to expire.
    assert_invalid_grant(refresh(&server, &client, refresh_token).await, "refresh after session revoke");
    assert_token_refused(userinfo(&server, access).await, "access token after session revoke");
    assert!(!active(&server, &client, access).await, "introspection after session revoke");

    // Revoking again is fine and changes nothing.
    let (status, again) = action(&server, &admin, &id, "revoke").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["data"]["attributes"], attributes, "a second revoke changes nothing");
    assert_eq!(get_session(&server, &admin, &id).await["attributes"]["status"], "revoked");

    // The browser is signed out: the next authorization asks for a login.
    let (_, challenge) = pkce();
    let page = browser.get(&authorize_path(&code_request(&client, "openid", &challenge))).await;
    assert!(page.redirect().starts_with("/login"), "a revoked session must not sign in: {}", page.redirect());
});

db_test!(revoking_a_session_stops_access_tokens_issued_without_a_refresh_token, |server| {
    let admin = server.admin_token().await;
    let user_id = create_person(&server, &admin, EMAIL).await;
    let client = first_party(&server, &admin).await;
    let mut browser = Browser::new(&server);
    // No offline_access: an access token with no refresh token behind it.
    let tokens = sign_in(&server, &mut browser, &client, "openid email").await;
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    let access = token_of(&tokens, "access_token");
    assert_eq!(userinfo(&server, access).await.0, StatusCode::OK);
    let id = the_session(&server, &admin, &user_id).await["id"].as_str().unwrap().to_owned();

    let (status, body) = action(&server, &admin, &id, "revoke").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_token_refused(userinfo(&server, access).await, "an access token of a revoked session");
    assert!(!active(&server, &client, access).await, "introspection of a revoked session's access token");
});

db_test!(revoking_a_session_stops_opaque_access_tokens, |server| {
    let admin = server.admin_token().await;
    let user_id = create_person(&server, &admin, EMAIL).await;
    let client = create_client(&server, &admin, json!({"first_party": true, "token_format": "opaque"})).await;
    let mut browser = Browser::new(&server);
    let tokens = sign_in(&server, &mut browser, &client, "openid offline_access").await;
    let access = token_of(&tokens, "access_token");
    assert_eq!(access.matches('.').count(), 0, "an opaque access token: {access}");
    assert_eq!(userinfo(&server, access).await.0, StatusCode::OK, "the opaque token works before");
    let id = the_session(&server, &admin, &user_id).await["id"].as_str().unwrap().to_owned();

    let (status, body) = action(&server, &admin, &id, "revoke").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_invalid_grant(refresh(&server, &client, token_of(&tokens, "refresh_token")).await, "refresh");
    assert_token_refused(userinfo(&server, access).await, "an opaque access token of a revoked session");
    assert!(!active(&server, &client, access).await, "introspection of a revoked session's opaque token");
});

db_test!(deleting_a_session, |server| {
    let admin = server.admin_token().await;
    let user_id = create_person(&server, &admin, EMAIL).await;
    let client = first_party(&server, &admin).await;
    let mut browser = Browser::new(&server);
    let tokens = sign_in(&server, &mut browser, &client, "openid offline_access").await;
    let id = the_session(&server, &admin, &user_id).await["id"].as_str().unwrap().to_owned();

    let (status, body) = server.api(Method::DELETE, &format!("/api/sessions/{id}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(body, Value::Null, "204 has no body");
    let (status, body) = server.api(Method::GET, &format!("/api/sessions/{id}"), &admin, None).await;
    assert_not_found(status, &body);
    let (status, body) = server.api(Method::DELETE, &format!("/api/sessions/{id}"), &admin, None).await;
    assert_not_found(status, &body);
    assert!(sessions_of(&server, &admin, &user_id).await.is_empty());

    // Its tokens went with it.
    assert_invalid_grant(
        refresh(&server, &client, token_of(&tokens, "refresh_token")).await,
        "refresh after session delete",
    );
    assert_token_refused(userinfo(&server, token_of(&tokens, "access_token")).await, "after session delete");
});

db_test!(session_requests_are_validated, |server| {
    let admin = server.admin_token().await;
    let user_id = create_person(&server, &admin, EMAIL).await;

    // An unknown user.
    let missing = "00000000-0000-0000-0000-000000000000";
    let (status, body) = server.api(Method::POST, "/api/sessions", &admin, Some(new_session(missing))).await;
    assert_error(status, &body, 422, "invalid_attribute", Some("/data/relationships/user"));
    // No user at all.
    let (status, body) =
        server.api(Method::POST, "/api/sessions", &admin, Some(json!({"data": {"type": "session"}}))).await;
    assert_error(status, &body, 422, "required", Some("/data/relationships/user"));
    // Attributes are read-only.
    let mut with_attributes = new_session(&user_id);
    with_attributes["data"]["attributes"] = json!({"status": "revoked"});
    let (status, body) = server.api(Method::POST, "/api/sessions", &admin, Some(with_attributes)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "attributes cannot be set: {body}");
    // A blocked user cannot be given a session.
    let (status, body) = server
        .api(
            Method::PATCH,
            &format!("/api/users/{user_id}"),
            &admin,
            Some(json!({"data": {"type": "user", "id": user_id, "attributes": {"blocked": true}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.api(Method::POST, "/api/sessions", &admin, Some(new_session(&user_id))).await;
    assert_error(status, &body, 422, "invalid_attribute", Some("/data/relationships/user"));
    assert!(sessions_of(&server, &admin, &user_id).await.is_empty(), "nothing was created");

    // A token without the sessions scopes.
    let reader = server.management_token("acme-test", &server.admin, Some("users:read")).await;
    for (method, path, needed) in [
        (Method::GET, "/api/sessions".to_owned(), "sessions:read"),
        (Method::POST, "/api/sessions".to_owned(), "sessions:write"),
        (Method::PATCH, format!("/api/sessions/{missing}/revoke"), "sessions:write"),
        (Method::DELETE, format!("/api/sessions/{missing}"), "sessions:delete"),
    ] {
        let body = (method == Method::POST).then(|| new_session(&user_id));
        let mut request = server.http.request(method.clone(), server.url(&path)).bearer_auth(&reader);
        if let Some(body) = body {
            request = request.header("content-type", "application/vnd.api+json").body(body.to_string());
        }
        let response = request.send().await.expect("api request");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path} without {needed}");
        let challenge =
            response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(challenge.contains("error=\"insufficient_scope\""), "{method} {path}: {challenge}");
        assert!(challenge.contains(&format!("scope=\"{needed}\"")), "{method} {path}: {challenge}");
    }
});

db_test!(blocking_a_user_ends_their_sessions_and_tokens, |server| {
    let admin = server.admin_token().await;
    let user_id = create_person(&server, &admin, EMAIL).await;
    let client = first_party(&server, &admin).await;
    let mut browser = Browser::new(&server);
    let tokens = sign_in(&server, &mut browser, &client, "openid offline_access").await;
    let id = the_session(&server, &admin, &user_id).await["id"].as_str().unwrap().to_owned();

    let (status, body) = server
        .api(
            Method::PATCH,
            &format!("/api/users/{user_id}"),
            &admin,
            Some(json!({"data": {"type": "user", "id": user_id, "attributes": {"blocked": true}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "blocking the user: {body}");

    let session = get_session(&server, &admin, &id).await;
    assert_eq!(session["attributes"]["status"], "revoked", "blocking revokes the session: {session}");
    assert!(session["attributes"]["revoked_at"].is_string(), "{session}");
    assert_invalid_grant(
        refresh(&server, &client, token_of(&tokens, "refresh_token")).await,
        "refresh for a blocked user",
    );
    assert_token_refused(
        userinfo(&server, token_of(&tokens, "access_token")).await,
        "a blocked user's token",
    );
    let (_, challenge) = pkce();
    let page = browser.get(&authorize_path(&code_request(&client, "openid", &challenge))).await;
    assert!(page.redirect().starts_with("/login"), "a blocked user's cookie must not sign in");
});
