//! Audit findings 3 and 5: what a user's token for an API may carry (the
//! API's scopes, as far as the client's grant and, under RBAC, the user's
//! permissions allow), and PKCE for every client unless exempted.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{assert_invalid, create_api, create_permission, create_role, create_scope, id_of};
use crate::db_test;
use crate::harness::TestServer;
use crate::signin::support::*;

const API: &str = "https://reports.example.com";

/// Grants `client` the API with `allowed_scopes`; returns the grant's id.
async fn grant(server: &TestServer, admin: &str, client: &TestClient, api: &str, allowed: Value) -> String {
    let relationships = json!({
        "client": {"data": {"type": "client", "id": client.id}},
        "resource_server": {"data": {"type": "resource_server", "id": api}},
    });
    let document = server
        .create(
            admin,
            "/api/client-resource-server-grants",
            "client_resource_server_grant",
            json!({"allowed_scopes": allowed}),
            relationships,
        )
        .await;
    id_of(&document)
}

/// Runs the code flow for `scope` on the API: the callback's query.
async fn authorize_for_api(
    server: &TestServer,
    client: &TestClient,
    scope: &str,
    challenge: &str,
) -> std::collections::HashMap<String, String> {
    let mut params = code_request(client, scope, challenge);
    params.push(("resource", API));
    let mut browser = Browser::new(server);
    query_of(&browser.authorize(&authorize_path(&params), "ada@example.com").await)
}

/// Runs the flow and redeems the code: the token response.
async fn user_tokens(server: &TestServer, client: &TestClient, scope: &str) -> Value {
    let (verifier, challenge) = pkce();
    let query = authorize_for_api(server, client, scope, &challenge).await;
    let code = query.get("code").unwrap_or_else(|| panic!("no code: {query:?}"));
    let (status, tokens) = redeem(server, client, code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens
}

fn scope_of(tokens: &Value) -> Value {
    let claims = claims_of(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], API, "{claims}");
    assert_eq!(claims["scope"].as_str().unwrap_or_default(), tokens["scope"].as_str().unwrap_or_default());
    claims["scope"].clone()
}

async fn setup(server: &TestServer, admin: &str) -> (String, TestClient) {
    create_person(server, admin, "ada@example.com").await;
    let api = create_api(server, admin, API).await;
    let offline =
        json!({"data": {"type": "resource_server", "id": api, "attributes": {"allow_offline_access": true}}});
    let (status, body) =
        server.api(Method::PATCH, &format!("/api/resource-servers/{api}"), admin, Some(offline)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for scope in ["read:reports", "write:reports"] {
        create_scope(server, admin, &api, scope).await;
    }
    let client = create_client(server, admin, json!({"first_party": true})).await;
    (api, client)
}

db_test!(a_user_token_needs_the_clients_grant_on_the_api, |server| {
    let admin = server.admin_token().await;
    let (api, client) = setup(&server, &admin).await;
    let (_, challenge) = pkce();

    // No grant on the API: no token for it at all.
    let query = authorize_for_api(&server, &client, "openid read:reports", &challenge).await;
    assert_eq!(query["error"], "invalid_target", "{query:?}");

    // A grant for read only: write is refused, unknown scopes too.
    let grant_id = grant(&server, &admin, &client, &api, json!(["read:reports"])).await;
    let query = authorize_for_api(&server, &client, "openid write:reports", &challenge).await;
    assert_eq!(query["error"], "invalid_scope", "{query:?}");
    assert!(query["error_description"].contains("write:reports"), "{query:?}");
    let query = authorize_for_api(&server, &client, "openid read:reports users:write", &challenge).await;
    assert_eq!(query["error"], "invalid_scope", "{query:?}");
    let tokens = user_tokens(&server, &client, "openid read:reports offline_access").await;
    assert_eq!(scope_of(&tokens), "openid read:reports offline_access");

    // A grant narrowed after consent narrows the next token.
    let (verifier, challenge) = pkce();
    let query = authorize_for_api(&server, &client, "openid read:reports", &challenge).await;
    let path = format!("/api/client-resource-server-grants/{grant_id}");
    let narrow = json!({"data": {"type": "client_resource_server_grant", "id": grant_id,
                                 "attributes": {"allowed_scopes": []}}});
    let (status, body) = server.api(Method::PATCH, &path, &admin, Some(narrow)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, narrowed) = redeem(&server, &client, &query["code"], &verifier).await;
    assert_eq!(status, StatusCode::OK, "{narrowed}");
    assert_eq!(scope_of(&narrowed), "openid");

    // A deleted grant: the refresh token no longer yields API tokens.
    let (status, _) = server.api(Method::DELETE, &path, &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let refresh = tokens["refresh_token"].as_str().expect("offline_access and the API allows refresh?");
    let (status, body) =
        token_call(&server, &client, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
});

db_test!(under_rbac_a_user_token_carries_only_the_users_permissions, |server| {
    let admin = server.admin_token().await;
    let (api, client) = setup(&server, &admin).await;
    grant(&server, &admin, &client, &api, Value::Null).await;
    let both = "openid read:reports write:reports";
    assert_eq!(scope_of(&user_tokens(&server, &client, both).await), both, "without RBAC: the grant decides");

    let path = format!("/api/resource-servers/{api}");
    let enforce =
        json!({"data": {"type": "resource_server", "id": api, "attributes": {"enforce_rbac": true}}});
    let (status, body) = server.api(Method::PATCH, &path, &admin, Some(enforce)).await;
    assert_eq!(
        (status, &body["data"]["attributes"]["enforce_rbac"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    assert_eq!(
        scope_of(&user_tokens(&server, &client, both).await),
        "openid",
        "no permissions, no API scopes"
    );

    // A role with the permission `read:reports`.
    let (status, users) = server.api(Method::GET, "/api/users", &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    let user = users["data"][0]["id"].as_str().unwrap().to_owned();
    let role = create_role(&server, &admin, "reader").await;
    let permission = create_permission(&server, &admin, "read:reports").await;
    let link = |kind: &str, id: &str| json!({"data": {"type": kind, "id": id}});
    server
        .create(
            &admin,
            "/api/role-permissions",
            "role_permission",
            json!({}),
            json!({"role": link("role", &role), "permission": link("permission", &permission)}),
        )
        .await;
    server
        .create(
            &admin,
            "/api/user-roles",
            "user_role",
            json!({}),
            json!({"user": link("user", &user), "role": link("role", &role)}),
        )
        .await;
    let tokens = user_tokens(&server, &client, both).await;
    assert_eq!(scope_of(&tokens), "openid read:reports");
    assert_eq!(claims_of(tokens["access_token"].as_str().unwrap())["permissions"], json!(["read:reports"]));
});

db_test!(pkce_is_required_of_every_client_unless_a_confidential_one_is_exempted, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let confidential = create_client(&server, &admin, json!({"first_party": true})).await;
    let document =
        server.create(&admin, "/api/clients", "client", json!({"name": "Default"}), Value::Null).await;
    assert_eq!(document["data"]["attributes"]["require_pkce"], true, "required by default");
    let without_pkce = |client: &TestClient| {
        let mut params = code_request(client, "openid", "");
        params.retain(|(k, _)| !k.starts_with("code_challenge"));
        authorize_path(&params)
    };

    let mut browser = Browser::new(&server);
    let query = query_of(&browser.authorize(&without_pkce(&confidential), "ada@example.com").await);
    assert_eq!(query["error"], "invalid_request", "{query:?}");
    assert!(query["error_description"].contains("PKCE"), "{query:?}");

    // Public clients cannot be exempted, on create or update.
    let (status, body) = server
        .api(
            Method::POST,
            "/api/clients",
            &admin,
            Some(json!({"data": {"type": "client", "attributes": {"name": "SPA", "client_type": "public", "require_pkce": false}}})),
        )
        .await;
    assert_invalid(status, &body, "require_pkce");
    let public = create_client(&server, &admin, json!({"client_type": "public", "first_party": true})).await;
    let path = format!("/api/clients/{}", public.id);
    let exempt =
        |id: &str| json!({"data": {"type": "client", "id": id, "attributes": {"require_pkce": false}}});
    let (status, body) = server.api(Method::PATCH, &path, &admin, Some(exempt(&public.id))).await;
    assert_invalid(status, &body, "require_pkce");

    // A confidential client exempted: the code flow works without PKCE, and
    // a code issued with a challenge still needs its verifier.
    let path = format!("/api/clients/{}", confidential.id);
    let (status, body) = server.api(Method::PATCH, &path, &admin, Some(exempt(&confidential.id))).await;
    assert_eq!(
        (status, &body["data"]["attributes"]["require_pkce"]),
        (StatusCode::OK, &json!(false)),
        "{body}"
    );
    let query = query_of(&browser.authorize(&without_pkce(&confidential), "ada@example.com").await);
    let form =
        [("grant_type", "authorization_code"), ("code", &query["code"]), ("redirect_uri", REDIRECT_URI)];
    let (status, tokens) = token_call(&server, &confidential, &form).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (_, challenge) = pkce();
    let query = query_of(
        &browser
            .authorize(&authorize_path(&code_request(&confidential, "openid", &challenge)), "ada@example.com")
            .await,
    );
    let form =
        [("grant_type", "authorization_code"), ("code", &query["code"]), ("redirect_uri", REDIRECT_URI)];
    let (status, body) = token_call(&server, &confidential, &form).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
});
