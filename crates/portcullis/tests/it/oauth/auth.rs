//! Management API authorization failures: each a JSON:API error document
//! with its status and a `WWW-Authenticate: Bearer` challenge.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::support::{
    ClientAuth, api_get, api_with_authorization, claims_for, custom_api, grant, m2m_client,
    management_client, sign_with_primary, tamper_signature, token,
};
use crate::db_test;

db_test!(missing_or_malformed_authorization_is_401, |server| {
    let reply = api_with_authorization(&server, "acme-test", Method::GET, "/api/users", None).await;
    reply.assert_bearer_failure(StatusCode::UNAUTHORIZED);
    // No error code when no credentials were sent (RFC 6750 §3.1).
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(!challenge.contains("error="), "{challenge}");
    assert!(challenge.contains(&server.management_api()), "{challenge}");

    let admin = server.admin_token().await;
    for header in [
        format!("Basic {}", "YWRtaW46c2VjcmV0"),
        format!("Token {admin}"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        admin.clone(),
    ] {
        let reply =
            api_with_authorization(&server, "acme-test", Method::GET, "/api/users", Some(&header)).await;
        reply.assert_bearer_failure(StatusCode::UNAUTHORIZED);
    }
    // The scheme is case-insensitive.
    let reply = api_with_authorization(
        &server,
        "acme-test",
        Method::GET,
        "/api/users",
        Some(&format!("bearer {admin}")),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
});

db_test!(invalid_tokens_are_401_invalid_token, |server| {
    let admin = server.admin_token().await;
    let invalid = |reply: &crate::oauth::support::Reply| {
        reply.assert_bearer_failure(StatusCode::UNAUTHORIZED);
        let challenge = reply.header("www-authenticate").unwrap();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    };

    // Garbage, in several shapes.
    for garbage in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "....", "%%%"] {
        invalid(&api_get(&server, "acme-test", "/api/users", garbage).await);
    }

    // A flipped signature character.
    invalid(&api_get(&server, "acme-test", "/api/users", &tamper_signature(&admin)).await);

    // A modified payload with the original signature.
    let parts: Vec<&str> = admin.split('.').collect();
    let mut claims = crate::oauth::support::decode_jwt(&admin).1;
    claims["scope"] = json!("users:read users:write everything:write");
    use base64::Engine;
    let forged_payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    invalid(&api_get(&server, "acme-test", "/api/users", &forged).await);

    // alg "none" with the real kid.
    let header = crate::oauth::support::decode_jwt(&admin).0;
    let none_header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&json!({"alg": "none", "typ": "at+jwt", "kid": header["kid"]})).unwrap());
    invalid(&api_get(&server, "acme-test", "/api/users", &format!("{none_header}.{}.", parts[1])).await);

    // Expired (signed with the real primary key, exp in the past).
    let expired = claims_for(&server, "acme-test", &server.admin.client_id, -60, "users:read");
    let expired = sign_with_primary(&server, "acme-test", "at+jwt", &expired).await;
    let reply = api_get(&server, "acme-test", "/api/users", &expired).await;
    invalid(&reply);
    assert!(reply.body["errors"][0]["detail"].as_str().unwrap().contains("expired"), "{}", reply.body);
    // The same claims, unexpired, are accepted: the forgery helper is sound.
    let fresh = claims_for(&server, "acme-test", &server.admin.client_id, 300, "users:read");
    let fresh = sign_with_primary(&server, "acme-test", "at+jwt", &fresh).await;
    assert_eq!(api_get(&server, "acme-test", "/api/users", &fresh).await.status, StatusCode::OK);

    // A typ other than at+jwt (e.g. an ID token or a plain JWT).
    for typ in ["JWT", "id_token+jwt", "at+JWT+x"] {
        let claims = claims_for(&server, "acme-test", &server.admin.client_id, 300, "users:read");
        let token = sign_with_primary(&server, "acme-test", typ, &claims).await;
        invalid(&api_get(&server, "acme-test", "/api/users", &token).await);
    }

    // Signed by this environment's key but naming another issuer.
    let mut claims = claims_for(&server, "acme-test", &server.admin.client_id, 300, "users:read");
    claims["iss"] = json!(server.issuer("beta"));
    let token = sign_with_primary(&server, "acme-test", "at+jwt", &claims).await;
    invalid(&api_get(&server, "acme-test", "/api/users", &token).await);

    // Naming a client that never existed.
    let claims = claims_for(&server, "acme-test", "no-such-client", 300, "users:read");
    let token = sign_with_primary(&server, "acme-test", "at+jwt", &claims).await;
    invalid(&api_get(&server, "acme-test", "/api/users", &token).await);

    // Missing required claims.
    let mut claims = claims_for(&server, "acme-test", &server.admin.client_id, 300, "users:read");
    claims.as_object_mut().unwrap().remove("exp");
    let token = sign_with_primary(&server, "acme-test", "at+jwt", &claims).await;
    invalid(&api_get(&server, "acme-test", "/api/users", &token).await);
});

db_test!(wrong_audience_is_403, |server| {
    let admin = server.admin_token().await;
    let api = custom_api(&server, &admin, "https://reports.example.com", 600, &["reports:read"]).await;
    let (row, creds) = m2m_client(&server, &admin, "Reports").await;
    grant(&server, &admin, &row, &api, json!(null)).await;
    let reply = token(
        &server,
        "acme-test",
        ClientAuth::Basic(&creds),
        &[("resource", "https://reports.example.com")],
    )
    .await;
    let custom = reply.body["access_token"].as_str().unwrap().to_owned();
    let reply = api_get(&server, "acme-test", "/api/users", &custom).await;
    reply.assert_bearer_failure(StatusCode::FORBIDDEN);

    // Even a token that carries a management-looking scope for another audience.
    let mut claims = claims_for(&server, "acme-test", &server.admin.client_id, 300, "users:read");
    claims["aud"] = json!("https://reports.example.com");
    let token = sign_with_primary(&server, "acme-test", "at+jwt", &claims).await;
    api_get(&server, "acme-test", "/api/users", &token).await.assert_bearer_failure(StatusCode::FORBIDDEN);
});

db_test!(missing_scope_is_403_insufficient_scope, |server| {
    let admin = server.admin_token().await;
    let (_, creds) = management_client(&server, &admin, "Reader", &["users:read"]).await;
    let reader = server.management_token("acme-test", &creds, None).await;

    // Reading users is allowed.
    assert_eq!(api_get(&server, "acme-test", "/api/users", &reader).await.status, StatusCode::OK);

    let insufficient = |reply: &crate::oauth::support::Reply, needed: &str| {
        reply.assert_bearer_failure(StatusCode::FORBIDDEN);
        let challenge = reply.header("www-authenticate").unwrap();
        assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
        assert!(challenge.contains(&format!("scope=\"{needed}\"")), "{challenge}");
    };
    // Writing users is not.
    let response = server
        .http
        .post(format!("{}/users", server.management_api()))
        .bearer_auth(&reader)
        .header("content-type", "application/vnd.api+json")
        .body(
            json!({"data": {"type": "user", "attributes": {
                "email": "x@example.com",
                "password": "correct horse battery staple",
                "password_confirmation": "correct horse battery staple",
            }}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    insufficient(&crate::oauth::support::Reply::from(response).await, "users:write");
    // Another family is not.
    insufficient(&api_get(&server, "acme-test", "/api/roles", &reader).await, "roles:read");
    insufficient(&api_get(&server, "acme-test", "/api/signing-keys", &reader).await, "signing_keys:read");
    // Deleting needs :delete, not :read.
    let reply = api_with_authorization(
        &server,
        "acme-test",
        Method::DELETE,
        "/api/users/00000000-0000-0000-0000-000000000000",
        Some(&format!("Bearer {reader}")),
    )
    .await;
    insufficient(&reply, "users:delete");
    // Nothing was created.
    let (_, users) = server.api(Method::GET, "/api/users", &admin, None).await;
    assert_eq!(users["data"], json!([]));
    // A token with no scope at all.
    let empty = claims_for(&server, "acme-test", &creds.client_id, 300, "");
    let empty = sign_with_primary(&server, "acme-test", "at+jwt", &empty).await;
    insufficient(&api_get(&server, "acme-test", "/api/users", &empty).await, "users:read");
});

db_test!(token_of_a_deleted_client_is_refused, |server| {
    let admin = server.admin_token().await;
    let (row, creds) = management_client(&server, &admin, "Doomed", &["users:read"]).await;
    let doomed = server.management_token("acme-test", &creds, None).await;
    assert_eq!(api_get(&server, "acme-test", "/api/users", &doomed).await.status, StatusCode::OK);

    let (status, body) = server.api(Method::DELETE, &format!("/api/clients/{row}"), &admin, None).await;
    assert!(status.is_success(), "{status} {body}");

    let reply = api_get(&server, "acme-test", "/api/users", &doomed).await;
    reply.assert_bearer_failure(StatusCode::UNAUTHORIZED);
    assert!(reply.header("www-authenticate").unwrap().contains("invalid_token"));
    // Its credentials no longer get tokens, and its token introspects inactive.
    let reply =
        token(&server, "acme-test", ClientAuth::Basic(&creds), &[("resource", &server.management_api())])
            .await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    crate::oauth::support::assert_inactive(
        &crate::oauth::support::introspect(&server, "acme-test", &server.admin, &doomed).await,
    );
});

db_test!(tokens_of_another_environment_are_401, |server| {
    let beta = server.create_environment("beta").await;
    let acme_token = server.admin_token().await;
    let beta_token = server.management_token("beta", &beta, None).await;

    // Each works at home.
    assert_eq!(api_get(&server, "acme-test", "/api/users", &acme_token).await.status, StatusCode::OK);
    assert_eq!(api_get(&server, "beta", "/api/users", &beta_token).await.status, StatusCode::OK);

    // And is refused abroad (its kid is unknown there).
    for (handle, token) in [("acme-test", &beta_token), ("beta", &acme_token)] {
        let reply = api_get(&server, handle, "/api/users", token).await;
        reply.assert_bearer_failure(StatusCode::UNAUTHORIZED);
        assert!(reply.header("www-authenticate").unwrap().contains("invalid_token"));
    }

    // Beta's key signing claims that name acme-test as issuer and audience.
    let claims = claims_for(&server, "acme-test", &server.admin.client_id, 300, "users:read");
    let forged = sign_with_primary(&server, "beta", "at+jwt", &claims).await;
    api_get(&server, "acme-test", "/api/users", &forged)
        .await
        .assert_bearer_failure(StatusCode::UNAUTHORIZED);
    // Acme-test's key signing beta's issuer, used at beta.
    let claims = claims_for(&server, "beta", &beta.client_id, 300, "users:read");
    let forged = sign_with_primary(&server, "acme-test", "at+jwt", &claims).await;
    api_get(&server, "beta", "/api/users", &forged).await.assert_bearer_failure(StatusCode::UNAUTHORIZED);
});
