//! The reference Quick Start, end to end: register a client, grant it the
//! Management API, get a token, call the API, introspect the token.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::db_test;
use crate::harness::Creds;

db_test!(machine_to_machine_quick_start, |server| {
    let admin = server.admin_token().await;

    // Register a confidential client for machine-to-machine use.
    let created = server
        .create(
            &admin,
            "/api/clients",
            "client",
            json!({"name": "Billing worker", "grant_types": ["client_credentials"]}),
            json!(null),
        )
        .await;
    let client_row_id = created["data"]["id"].as_str().unwrap().to_owned();
    let creds = Creds {
        client_id: created["data"]["attributes"]["client_id"].as_str().unwrap().to_owned(),
        client_secret: created["meta"]["client_secret"]
            .as_str()
            .expect("secret shown once in meta")
            .to_owned(),
    };
    assert!(created["data"]["attributes"].get("client_secret").is_none());

    // Without a grant the client cannot get a Management API token.
    let resource = server.management_api();
    let (status, body) = server
        .token_request("acme-test", &creds, &[("grant_type", "client_credentials"), ("resource", &resource)])
        .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_target")));

    // Grant it read access to users via the system API.
    let (_, apis) = server.api(Method::GET, "/api/resource-servers?filter[system]=true", &admin, None).await;
    let system_api = apis["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(apis["data"][0]["attributes"]["identifier"], resource);
    server
        .create(
            &admin,
            "/api/client-resource-server-grants",
            "client_resource_server_grant",
            json!({"allowed_scopes": ["users:read"]}),
            json!({"client": {"data": {"type": "client", "id": client_row_id}},
                   "resource_server": {"data": {"type": "resource_server", "id": system_api}}}),
        )
        .await;

    let token = server.management_token("acme-test", &creds, None).await;
    let (status, users) = server.api(Method::GET, "/api/users", &token, None).await;
    assert_eq!(status, StatusCode::OK, "{users}");
    assert_eq!(users["data"], json!([]));

    // It may read, not write.
    let (status, body) = server
        .api(
            Method::POST,
            "/api/users",
            &token,
            Some(json!({"data": {"type": "user", "attributes": {
                "email": "a@b.co",
                "password": "correct horse battery staple",
                "password_confirmation": "correct horse battery staple",
            }}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Introspection (with client authentication) reports the token active.
    let response = server
        .http
        .post(server.url("/oauth/introspect"))
        .basic_auth(&creds.client_id, Some(&creds.client_secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    let introspection: serde_json::Value = response.json().await.unwrap();
    assert_eq!(introspection["active"], true);
    assert_eq!(introspection["scope"], "users:read");
    assert_eq!(introspection["client_id"], creds.client_id.as_str());
    assert_eq!(introspection["aud"], resource);
});
