//! Opaque access tokens (a client with `token_format: "opaque"`).

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::support::{ClientAuth, api_get, assert_inactive, grant, introspect, new_client, revoke, token};
use crate::common::system_api;
use crate::db_test;
use crate::harness::{Backend, Creds, TestServer};

/// Registers a client that issues opaque tokens and grants it `scopes` on
/// the Management API; returns its row id and credentials.
async fn opaque_client(server: &TestServer, admin: &str, name: &str, scopes: &[&str]) -> (String, Creds) {
    let (row, creds) = new_client(
        server,
        admin,
        json!({"name": name, "grant_types": ["client_credentials"], "token_format": "opaque"}),
    )
    .await;
    let api = system_api(server, admin).await;
    grant(server, admin, &row, &api, json!(scopes)).await;
    (row, creds)
}

db_test!(opaque_tokens_work_introspect_and_revoke, |server| {
    let admin = server.admin_token().await;
    let (row, creds) = opaque_client(&server, &admin, "Opaque worker", &["users:read", "roles:read"]).await;

    let reply = token(
        &server,
        "acme-test",
        ClientAuth::Basic(&creds),
        &[("resource", &server.management_api()), ("scope", "users:read")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.assert_no_store();
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 3600);
    assert_eq!(reply.body["scope"], "users:read");
    let opaque = reply.body["access_token"].as_str().unwrap().to_owned();
    assert!(!opaque.contains('.'), "opaque tokens are not JWTs: {opaque}");
    assert!(opaque.len() >= 32, "{opaque}");
    // Stored hashed, never in the clear.
    let clear =
        server.count(&format!("SELECT COUNT(*) FROM access_tokens WHERE token_hash = '{opaque}'")).await;
    assert_eq!(clear, 0);
    assert_eq!(server.count("SELECT COUNT(*) FROM access_tokens").await, 1);

    // It works on the Management API within its scope only.
    assert_eq!(api_get(&server, "acme-test", "/api/users", &opaque).await.status, StatusCode::OK);
    let reply = api_get(&server, "acme-test", "/api/roles", &opaque).await;
    reply.assert_bearer_failure(StatusCode::FORBIDDEN);

    // Introspection.
    let reply = introspect(&server, "acme-test", &creds, &opaque).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = &reply.body;
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["scope"], "users:read");
    assert_eq!(body["client_id"], creds.client_id.as_str());
    assert_eq!(body["sub"], creds.client_id.as_str());
    assert_eq!(body["aud"], server.management_api());
    assert_eq!(body["iss"], server.issuer("acme-test"));
    assert_eq!(body["exp"].as_i64().unwrap() - body["iat"].as_i64().unwrap(), 3600);
    assert!(body["jti"].is_string());

    // A modified opaque token is unknown.
    let mut altered = opaque.clone();
    altered.pop();
    altered.push('x');
    assert_eq!(api_get(&server, "acme-test", "/api/users", &altered).await.status, StatusCode::UNAUTHORIZED);
    assert_inactive(&introspect(&server, "acme-test", &creds, &altered).await);

    // Another client cannot revoke it.
    assert_eq!(revoke(&server, "acme-test", &server.admin, &opaque).await.status, StatusCode::OK);
    assert_eq!(api_get(&server, "acme-test", "/api/users", &opaque).await.status, StatusCode::OK);

    // Its own client can; it is refused at once and introspects inactive.
    assert_eq!(revoke(&server, "acme-test", &creds, &opaque).await.status, StatusCode::OK);
    let reply = api_get(&server, "acme-test", "/api/users", &opaque).await;
    reply.assert_bearer_failure(StatusCode::UNAUTHORIZED);
    assert!(reply.body["errors"][0]["detail"].as_str().unwrap().contains("revoked"));
    assert_inactive(&introspect(&server, "acme-test", &creds, &opaque).await);
    assert_eq!(revoke(&server, "acme-test", &creds, &opaque).await.status, StatusCode::OK);
    // The second revocation changed nothing and recorded nothing.
    assert_eq!(server.count("SELECT COUNT(*) FROM audit_events WHERE action = 'token.revoked'").await, 1);

    // Switching the client to JWT applies to new tokens.
    let (status, body) = server
        .api(
            Method::PATCH,
            &format!("/api/clients/{row}"),
            &admin,
            Some(json!({"data": {"type": "client", "id": row, "attributes": {"token_format": "jwt"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let jwt = server.management_token("acme-test", &creds, None).await;
    assert_eq!(jwt.split('.').count(), 3);
});

db_test!(opaque_tokens_expire_and_die_with_their_client, |server| {
    let admin = server.admin_token().await;
    let (row, creds) = opaque_client(&server, &admin, "Opaque", &["users:read"]).await;
    let opaque = server.management_token("acme-test", &creds, None).await;
    let second = server.management_token("acme-test", &creds, None).await;
    assert_ne!(opaque, second);

    // Expire one in the database (white-box).
    let expired_at = (crate::oauth::support::unix_now() - 10) * 1_000_000;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE access_tokens SET expires_at = {expired_at} WHERE id = (SELECT MIN(id) FROM access_tokens)"
    )))
    .execute(server.core.db.pool())
    .await
    .unwrap();
    let statuses = [
        api_get(&server, "acme-test", "/api/users", &opaque).await.status,
        api_get(&server, "acme-test", "/api/users", &second).await.status,
    ];
    assert!(
        statuses.contains(&StatusCode::UNAUTHORIZED) && statuses.contains(&StatusCode::OK),
        "{statuses:?}"
    );

    // Deleting the client kills its tokens.
    let (status, _) = server.api(Method::DELETE, &format!("/api/clients/{row}"), &admin, None).await;
    assert!(status.is_success());
    for t in [&opaque, &second] {
        assert_eq!(api_get(&server, "acme-test", "/api/users", t).await.status, StatusCode::UNAUTHORIZED);
        assert_inactive(&introspect(&server, "acme-test", &server.admin, t).await);
    }
});

db_test!(opaque_tokens_stay_in_their_environment, |server| {
    let admin = server.admin_token().await;
    let (_, creds) = opaque_client(&server, &admin, "Opaque", &["users:read"]).await;
    let opaque = server.management_token("acme-test", &creds, None).await;

    let beta = server.create_environment("beta").await;
    let reply = api_get(&server, "beta", "/api/users", &opaque).await;
    reply.assert_bearer_failure(StatusCode::UNAUTHORIZED);
    assert_inactive(&introspect(&server, "beta", &beta, &opaque).await);
    // Beta cannot revoke it either.
    assert_eq!(revoke(&server, "beta", &beta, &opaque).await.status, StatusCode::OK);
    assert_eq!(api_get(&server, "acme-test", "/api/users", &opaque).await.status, StatusCode::OK);

    // On PostgreSQL a peer process accepts it too, and sees its revocation.
    if server.backend == Backend::Postgres {
        let peer = server.start_peer().await;
        let call =
            || peer.request(&server, Method::GET, "acme-test", "/api/users").bearer_auth(&opaque).send();
        assert_eq!(call().await.unwrap().status(), StatusCode::OK);
        assert_eq!(revoke(&server, "acme-test", &creds, &opaque).await.status, StatusCode::OK);
        assert_eq!(call().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
});
