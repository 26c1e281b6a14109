//! Cross-environment isolation of client credentials and tokens.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::support::{
    ClientAuth, api_get, assert_inactive, custom_api, grant, introspect, m2m_client, revoke, token,
};
use crate::db_test;
use crate::harness::Creds;

db_test!(credentials_only_work_in_their_environment, |server| {
    let beta = server.create_environment("beta").await;
    let beta_api = format!("{}/api", server.issuer("beta"));

    // acme-test's admin cannot get tokens at beta, by either method.
    for auth in [ClientAuth::Basic(&server.admin), ClientAuth::Post(&server.admin)] {
        let reply = token(&server, "beta", auth, &[("resource", &beta_api)]).await;
        reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    // Nor even for acme-test's own API, asked of beta's host.
    let reply =
        token(&server, "beta", ClientAuth::Basic(&server.admin), &[("resource", &server.management_api())])
            .await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // beta's client_id at acme-test is unknown, with or without its secret.
    let reply =
        token(&server, "acme-test", ClientAuth::Basic(&beta), &[("resource", &server.management_api())])
            .await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let mixed =
        Creds { client_id: beta.client_id.clone(), client_secret: server.admin.client_secret.clone() };
    let reply =
        token(&server, "acme-test", ClientAuth::Basic(&mixed), &[("resource", &server.management_api())])
            .await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // Introspection and revocation refuse foreign clients too.
    let acme_token = server.admin_token().await;
    let reply = introspect(&server, "beta", &server.admin, &acme_token).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let reply = revoke(&server, "beta", &server.admin, &acme_token).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // beta's admin revoking acme-test's token at beta changes nothing.
    assert_eq!(revoke(&server, "beta", &beta, &acme_token).await.status, StatusCode::OK);
    assert_eq!(api_get(&server, "acme-test", "/api/users", &acme_token).await.status, StatusCode::OK);

    // Each still works at home.
    let reply = token(&server, "beta", ClientAuth::Basic(&beta), &[("resource", &beta_api)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let beta_token = reply.body["access_token"].as_str().unwrap().to_owned();
    let claims = crate::oauth::support::decode_jwt(&beta_token).1;
    assert_eq!(claims["iss"], server.issuer("beta"));
    assert_eq!(claims["aud"], beta_api);
    assert_inactive(&introspect(&server, "acme-test", &server.admin, &beta_token).await);
});

db_test!(same_identifier_apis_in_two_environments_stay_apart, |server| {
    let beta = server.create_environment("beta").await;
    let acme_admin = server.admin_token().await;
    let beta_admin = server.management_token("beta", &beta, None).await;

    // Both environments define an API with the same identifier.
    let identifier = "https://shared.example.com";
    let acme_api = custom_api(&server, &acme_admin, identifier, 300, &["shared:read"]).await;
    let (status, beta_api) = server
        .api_at(
            "beta",
            Method::POST,
            "/api/resource-servers",
            &beta_admin,
            Some(json!({"data": {"type": "resource_server",
                                  "attributes": {"name": "Shared", "identifier": identifier}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{beta_api}");

    let (row, acme_client) = m2m_client(&server, &acme_admin, "Shared reader").await;
    grant(&server, &acme_admin, &row, &acme_api, json!(null)).await;
    let reply =
        token(&server, "acme-test", ClientAuth::Basic(&acme_client), &[("resource", identifier)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let shared = reply.body["access_token"].as_str().unwrap().to_owned();
    // Same audience, but beta does not accept acme-test's token.
    assert_inactive(&introspect(&server, "beta", &beta, &shared).await);
    // And acme-test's client has no business at beta.
    let reply = token(&server, "beta", ClientAuth::Basic(&acme_client), &[("resource", identifier)]).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    // beta's admin has no grant for beta's copy.
    let reply = token(&server, "beta", ClientAuth::Basic(&beta), &[("resource", identifier)]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_target");

    // A grant in acme-test naming beta's API is refused.
    let beta_api_id = beta_api["data"]["id"].as_str().unwrap();
    let (status, body) = server
        .api(
            Method::POST,
            "/api/client-resource-server-grants",
            &acme_admin,
            Some(json!({"data": {"type": "client_resource_server_grant", "attributes": {},
                "relationships": {"client": {"data": {"type": "client", "id": row}},
                                  "resource_server": {"data": {"type": "resource_server", "id": beta_api_id}}}}})),
        )
        .await;
    assert!(status.is_client_error(), "{status} {body}");
});
