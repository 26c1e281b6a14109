//! Introspection (RFC 7662) and revocation (RFC 7009).

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::support::{
    ClientAuth, Reply, api_get, assert_inactive, claims_for, custom_api, decode_jwt, eventually, grant,
    introspect, m2m_client, management_client, new_client, post_form, revoke, sign_with_primary,
    tamper_signature, token,
};
use crate::db_test;
use crate::harness::{Backend, Creds};

db_test!(introspection_requires_client_authentication, |server| {
    let admin = server.admin_token().await;
    let reply =
        post_form(&server, "acme-test", "/oauth/introspect", ClientAuth::None, &[("token", &admin)]).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(reply.body.get("active").is_none(), "no token information without authentication");

    let wrong = Creds { client_id: server.admin.client_id.clone(), client_secret: "nope".into() };
    let reply = introspect(&server, "acme-test", &wrong, &admin).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(reply.header("www-authenticate").unwrap().starts_with("Basic"));

    // A Bearer token is not client authentication here.
    let reply = Reply::from(
        server
            .http
            .post(server.url("/oauth/introspect"))
            .bearer_auth(&admin)
            .form(&[("token", admin.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // client_secret_post works.
    let reply = post_form(
        &server,
        "acme-test",
        "/oauth/introspect",
        ClientAuth::Post(&server.admin),
        &[("token", &admin)],
    )
    .await;
    assert_eq!(reply.body["active"], true, "{}", reply.body);

    // The token parameter is required; it may not be repeated.
    let reply =
        post_form(&server, "acme-test", "/oauth/introspect", ClientAuth::Basic(&server.admin), &[]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    let reply = post_form(
        &server,
        "acme-test",
        "/oauth/introspect",
        ClientAuth::Basic(&server.admin),
        &[("token", &admin), ("token", "other")],
    )
    .await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");

    // A public client may not introspect.
    let (_, public) = crate::oauth::support::new_client(
        &server,
        &admin,
        json!({"name": "SPA", "client_type": "public", "grant_types": ["authorization_code"],
               "redirect_uris": ["https://spa.example.com/cb"]}),
    )
    .await;
    let reply = post_form(
        &server,
        "acme-test",
        "/oauth/introspect",
        ClientAuth::None,
        &[("token", &admin), ("client_id", &public.client_id)],
    )
    .await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(reply.body.get("active").is_none(), "{}", reply.body);
});

db_test!(introspection_of_active_and_inactive_tokens, |server| {
    let admin = server.admin_token().await;
    let (_, reader) = management_client(&server, &admin, "Reader", &["users:read"]).await;
    let token = server.management_token("acme-test", &reader, None).await;
    let (_, claims) = decode_jwt(&token);

    // The token's own client introspects it; hints are accepted.
    for hint in [None, Some("access_token"), Some("refresh_token")] {
        let mut form = vec![("token", token.as_str())];
        if let Some(hint) = hint {
            form.push(("token_type_hint", hint));
        }
        let reply =
            post_form(&server, "acme-test", "/oauth/introspect", ClientAuth::Basic(&reader), &form).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.assert_no_store();
        let body = &reply.body;
        assert_eq!(body["active"], true);
        assert_eq!(body["scope"], "users:read");
        assert_eq!(body["client_id"], reader.client_id.as_str());
        assert_eq!(body["sub"], reader.client_id.as_str());
        assert_eq!(body["aud"], server.management_api());
        assert_eq!(body["iss"], server.issuer("acme-test"));
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["exp"], claims["exp"]);
        assert_eq!(body["iat"], claims["iat"]);
        assert_eq!(body["jti"], claims["jti"]);
    }

    // Inactive: exactly {"active": false}.
    assert_inactive(&introspect(&server, "acme-test", &reader, "garbage").await);
    assert_inactive(&introspect(&server, "acme-test", &reader, "a.b.c").await);
    assert_inactive(&introspect(&server, "acme-test", &reader, &tamper_signature(&token)).await);
    let expired = claims_for(&server, "acme-test", &reader.client_id, -5, "users:read");
    let expired = sign_with_primary(&server, "acme-test", "at+jwt", &expired).await;
    assert_inactive(&introspect(&server, "acme-test", &reader, &expired).await);
    let id_token = claims_for(&server, "acme-test", &reader.client_id, 300, "users:read");
    let id_token = sign_with_primary(&server, "acme-test", "JWT", &id_token).await;
    assert_inactive(&introspect(&server, "acme-test", &reader, &id_token).await);

    // Another environment's token, both ways.
    let beta = server.create_environment("beta").await;
    let beta_token = server.management_token("beta", &beta, None).await;
    assert_inactive(&introspect(&server, "acme-test", &server.admin, &beta_token).await);
    assert_inactive(&introspect(&server, "beta", &beta, &token).await);
    assert_eq!(introspect(&server, "beta", &beta, &beta_token).await.body["active"], true);

    // Revoked.
    let reply = revoke(&server, "acme-test", &reader, &token).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_inactive(&introspect(&server, "acme-test", &reader, &token).await);
});

db_test!(introspection_is_for_the_tokens_client_and_the_clients_serving_its_api, |server| {
    let admin = server.admin_token().await;
    let api = custom_api(&server, &admin, "https://reports.example.com", 600, &["read:reports"]).await;
    let (caller_row, caller) = m2m_client(&server, &admin, "Caller").await;
    grant(&server, &admin, &caller_row, &api, json!(null)).await;
    let (other_row, other) = m2m_client(&server, &admin, "Another caller").await;
    grant(&server, &admin, &other_row, &api, json!(null)).await;
    let reply = token(
        &server,
        "acme-test",
        ClientAuth::Basic(&caller),
        &[("resource", "https://reports.example.com")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let api_token = reply.body["access_token"].as_str().unwrap().to_owned();
    let reader = management_client(&server, &admin, "Management reader", &["users:read"]).await.1;
    let management_token = server.management_token("acme-test", &reader, None).await;

    // Neither another caller of the API nor the environment's admin client
    // learns anything about it.
    assert_inactive(&introspect(&server, "acme-test", &other, &api_token).await);
    assert_inactive(&introspect(&server, "acme-test", &server.admin, &api_token).await);
    assert_eq!(introspect(&server, "acme-test", &caller, &api_token).await.body["active"], true);

    // The API's backend does, for that API's tokens only.
    let (backend_row, backend) = new_client(
        &server,
        &admin,
        json!({"name": "Reports backend", "grant_types": ["client_credentials"], "serves_resource_server_id": api}),
    )
    .await;
    let reply = introspect(&server, "acme-test", &backend, &api_token).await;
    assert_eq!(
        (reply.body["active"].clone(), reply.body["client_id"].clone()),
        (json!(true), json!(caller.client_id))
    );
    assert_inactive(&introspect(&server, "acme-test", &backend, &management_token).await);

    // What a client may serve: this environment's own APIs, not the Management API.
    let path = format!("/api/clients/{backend_row}");
    let serve = |api: &str| json!({"data": {"type": "client", "id": backend_row, "attributes": {"serves_resource_server_id": api}}});
    let system = crate::common::system_api(&server, &admin).await;
    let beta = server.create_environment("beta").await;
    let beta_admin = server.management_token("beta", &beta, None).await;
    let beta_api = custom_api_in(&server, "beta", &beta_admin, "https://beta.example.com").await;
    for refused in [system.as_str(), beta_api.as_str(), "no-such-api"] {
        let (status, body) = server.api(Method::PATCH, &path, &admin, Some(serve(refused))).await;
        crate::common::assert_invalid(status, &body, "serves_resource_server_id");
    }
    // Deleting the API ends the role.
    let (status, _) = server.api(Method::DELETE, &format!("/api/resource-servers/{api}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let reply = api_get(&server, "acme-test", &path, &admin).await;
    assert_eq!(reply.body["data"]["attributes"]["serves_resource_server_id"], json!(null), "{}", reply.body);
});

/// Creates an API in `handle`'s environment; returns its row id.
async fn custom_api_in(
    server: &crate::harness::TestServer,
    handle: &str,
    token: &str,
    identifier: &str,
) -> String {
    let attributes = json!({"name": "Beta API", "identifier": identifier});
    let body = json!({"data": {"type": "resource_server", "attributes": attributes}});
    let reply = server.api_at(handle, Method::POST, "/api/resource-servers", token, Some(body)).await;
    assert_eq!(reply.0, StatusCode::CREATED, "{}", reply.1);
    reply.1["data"]["id"].as_str().unwrap().to_owned()
}

db_test!(revocation_follows_rfc_7009, |server| {
    let admin = server.admin_token().await;
    let (_, reader) = management_client(&server, &admin, "Reader", &["users:read"]).await;
    let token = server.management_token("acme-test", &reader, None).await;

    // Requires client authentication.
    let reply =
        post_form(&server, "acme-test", "/oauth/revoke", ClientAuth::None, &[("token", &token)]).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let wrong = Creds { client_id: reader.client_id.clone(), client_secret: "nope".into() };
    let reply = revoke(&server, "acme-test", &wrong, &token).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    // A missing token parameter.
    let reply = post_form(&server, "acme-test", "/oauth/revoke", ClientAuth::Basic(&reader), &[]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    // None of that revoked anything.
    assert_eq!(api_get(&server, "acme-test", "/api/users", &token).await.status, StatusCode::OK);

    // Unknown and invalid tokens: 200, nothing leaks.
    let tampered = tamper_signature(&token);
    for unknown in ["garbage", "a.b.c", tampered.as_str()] {
        let reply = revoke(&server, "acme-test", &reader, unknown).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }

    // Another client cannot revoke it; the response looks the same.
    let reply = revoke(&server, "acme-test", &server.admin, &token).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(api_get(&server, "acme-test", "/api/users", &token).await.status, StatusCode::OK);
    assert_eq!(introspect(&server, "acme-test", &reader, &token).await.body["active"], true);

    // The owner can (with a hint, and with client_secret_post).
    let reply = post_form(
        &server,
        "acme-test",
        "/oauth/revoke",
        ClientAuth::Post(&reader),
        &[("token", &token), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, serde_json::Value::Null, "empty body");

    // Revoking again is a no-op: still 200, and no second record.
    let reply = revoke(&server, "acme-test", &reader, &token).await;
    assert_eq!(reply.status, StatusCode::OK);

    // Revocation is audited, once.
    let (status, events) =
        server.api(Method::GET, "/api/audit-events?filter[action]=token.revoked", &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    assert_eq!(events["data"].as_array().map(Vec::len), Some(1), "{events}");
    assert_eq!(events["data"][0]["attributes"]["actor"]["id"], reader.client_id.as_str());

    // Refused by the Management API at once, and inactive.
    let reply = api_get(&server, "acme-test", "/api/users", &token).await;
    reply.assert_bearer_failure(StatusCode::UNAUTHORIZED);
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(reply.body["errors"][0]["detail"].as_str().unwrap().contains("revoked"), "{}", reply.body);
    assert_inactive(&introspect(&server, "acme-test", &reader, &token).await);

    // Revoking again is fine; other tokens of the same client are untouched.
    assert_eq!(revoke(&server, "acme-test", &reader, &token).await.status, StatusCode::OK);
    let other = server.management_token("acme-test", &reader, None).await;
    assert_eq!(api_get(&server, "acme-test", "/api/users", &other).await.status, StatusCode::OK);
});

db_test!(revocation_reaches_a_peer_process, |server| {
    if server.backend != Backend::Postgres {
        return;
    }
    let peer = server.start_peer().await;
    let admin = server.admin_token().await;
    let (_, reader) = management_client(&server, &admin, "Reader", &["users:read"]).await;
    let token = server.management_token("acme-test", &reader, None).await;

    // The peer accepts it (and so has loaded its caches).
    let call_peer =
        || peer.request(&server, Method::GET, "acme-test", "/api/users").bearer_auth(&token).send();
    let response = call_peer().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    assert_eq!(revoke(&server, "acme-test", &reader, &token).await.status, StatusCode::OK);
    // The main process refuses it at once.
    assert_eq!(api_get(&server, "acme-test", "/api/users", &token).await.status, StatusCode::UNAUTHORIZED);
    // The peer learns through LISTEN/NOTIFY.
    let call_peer = &call_peer;
    eventually("the peer refuses a revoked token", || async move {
        let status = call_peer().await.unwrap().status();
        (status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    let response = peer
        .request(&server, Method::POST, "acme-test", "/oauth/introspect")
        .basic_auth(&server.admin.client_id, Some(&server.admin.client_secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_inactive(&Reply::from(response).await);
});
