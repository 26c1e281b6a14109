//! The token endpoint and the client_credentials grant (RFC 6749, RFC 8707,
//! RFC 9068).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::{
    ClientAuth, Reply, custom_api, decode_jwt, grant, m2m_client, management_client, new_client, post_form,
    token,
};
use crate::db_test;
use crate::harness::Creds;

db_test!(basic_and_post_client_authentication_both_work, |server| {
    let resource = server.management_api();
    for auth in [ClientAuth::Basic(&server.admin), ClientAuth::Post(&server.admin)] {
        let reply = token(&server, "acme-test", auth, &[("resource", &resource)]).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.assert_no_store();
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.body["token_type"], "Bearer");
        assert_eq!(reply.body["expires_in"], 3600);
        assert!(reply.body.get("refresh_token").is_none(), "no refresh token for client_credentials");
        let access = reply.body["access_token"].as_str().unwrap();
        // The token works on the Management API.
        let (status, _) = server.api(Method::GET, "/api/users", access, None).await;
        assert_eq!(status, StatusCode::OK);
    }
});

db_test!(client_authentication_failures, |server| {
    let resource = server.management_api();
    let form = [("resource", resource.as_str())];

    // Basic and body credentials at once; then a body client_id that
    // contradicts the Basic one.
    let both = [
        ("grant_type", "client_credentials"),
        ("resource", resource.as_str()),
        ("client_secret", server.admin.client_secret.as_str()),
    ];
    let mut contradicting = both;
    contradicting[2] = ("client_id", "someone-else");
    for form in [both, contradicting] {
        let reply = Reply::from(
            server
                .http
                .post(server.url("/oauth/token"))
                .basic_auth(&server.admin.client_id, Some(&server.admin.client_secret))
                .form(&form)
                .send()
                .await
                .unwrap(),
        )
        .await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }

    // Wrong secret over Basic: 401 with a Basic challenge.
    let wrong = Creds { client_id: server.admin.client_id.clone(), client_secret: "not-the-secret".into() };
    let reply = token(&server, "acme-test", ClientAuth::Basic(&wrong), &form).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let challenge = reply.header("www-authenticate").expect("WWW-Authenticate for failed Basic auth");
    assert!(challenge.starts_with("Basic"), "{challenge}");
    assert!(challenge.contains(&server.issuer("acme-test")), "{challenge}");

    // Wrong secret in the body.
    let reply = token(&server, "acme-test", ClientAuth::Post(&wrong), &form).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // Unknown client, both ways.
    let unknown = Creds { client_id: "no-such-client".into(), client_secret: "whatever".into() };
    for auth in [ClientAuth::Basic(&unknown), ClientAuth::Post(&unknown)] {
        let reply = token(&server, "acme-test", auth, &form).await;
        reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }

    // No credentials at all; a confidential client_id without its secret.
    let reply = token(&server, "acme-test", ClientAuth::None, &form).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let reply = post_form(
        &server,
        "acme-test",
        "/oauth/token",
        ClientAuth::None,
        &[
            ("grant_type", "client_credentials"),
            ("resource", &resource),
            ("client_id", &server.admin.client_id),
        ],
    )
    .await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // Malformed Basic credentials.
    for header in ["Basic !!!not-base64!!!", "Basic bm9jb2xvbg=="] {
        let reply = Reply::from(
            server
                .http
                .post(server.url("/oauth/token"))
                .header("authorization", header)
                .form(&[("grant_type", "client_credentials"), ("resource", &resource)])
                .send()
                .await
                .unwrap(),
        )
        .await;
        reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }

    // A rotated secret stops working at once; the new one works.
    let admin = server.admin_token().await;
    let (row, creds) = management_client(&server, &admin, "Rotating", &["users:read"]).await;
    let (status, rotated) =
        server.api(Method::PATCH, &format!("/api/clients/{row}/rotate-secret"), &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["meta"]["client_secret"].as_str().expect("new secret in meta");
    let reply = token(&server, "acme-test", ClientAuth::Basic(&creds), &form).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let fresh = Creds { client_id: creds.client_id.clone(), client_secret: new_secret.to_owned() };
    let reply = token(&server, "acme-test", ClientAuth::Basic(&fresh), &form).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
});

db_test!(credentials_in_the_query_string_are_not_accepted, |server| {
    let resource = server.management_api();
    let url = format!(
        "{}?client_id={}&client_secret={}",
        server.url("/oauth/token"),
        server.admin.client_id,
        server.admin.client_secret
    );
    let reply = Reply::from(
        server
            .http
            .post(url)
            .form(&[("grant_type", "client_credentials"), ("resource", &resource)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // Nor are the grant parameters: the body is what counts.
    let url = format!("{}?grant_type=client_credentials&resource={resource}", server.url("/oauth/token"));
    let reply = Reply::from(
        server
            .http
            .post(url)
            .basic_auth(&server.admin.client_id, Some(&server.admin.client_secret))
            .form(&[("unrelated", "x")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");

    // The token endpoint is POST only.
    let response = server.http.get(server.url("/oauth/token")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
});

db_test!(request_syntax_errors, |server| {
    let resource = server.management_api();
    let basic = ClientAuth::Basic(&server.admin);

    // Missing grant_type.
    let reply = post_form(&server, "acme-test", "/oauth/token", basic, &[("resource", &resource)]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");

    // An empty grant_type is absent too.
    let reply = post_form(
        &server,
        "acme-test",
        "/oauth/token",
        basic,
        &[("grant_type", ""), ("resource", &resource)],
    )
    .await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");

    // Unsupported grant types.
    for grant_type in ["password", "implicit", "urn:example:nope"] {
        let reply = post_form(
            &server,
            "acme-test",
            "/oauth/token",
            basic,
            &[("grant_type", grant_type), ("resource", &resource)],
        )
        .await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }

    // Repeated parameters.
    for repeated in [
        vec![("grant_type", "client_credentials"), ("grant_type", "client_credentials")],
        vec![("grant_type", "client_credentials"), ("scope", "users:read"), ("scope", "users:write")],
    ] {
        let mut form = repeated.clone();
        form.push(("resource", &resource));
        let reply = post_form(&server, "acme-test", "/oauth/token", basic, &form).await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }

    // An empty scope is absent: every allowed scope is granted.
    let reply = token(&server, "acme-test", basic, &[("resource", &resource), ("scope", "")]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let scope = reply.body["scope"].as_str().unwrap();
    assert!(scope.split(' ').any(|s| s == "signing_keys:write"), "{scope}");
    assert!(scope.split(' ').any(|s| s == "users:delete"), "{scope}");

    // Unknown parameters are ignored.
    let reply = token(&server, "acme-test", basic, &[("resource", &resource), ("foo", "bar")]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    // Bodies that are not a form.
    for (content_type, body) in [
        (
            Some("application/json"),
            json!({"grant_type": "client_credentials", "resource": resource}).to_string(),
        ),
        (Some("text/plain"), format!("grant_type=client_credentials&resource={resource}")),
        (None, format!("grant_type=client_credentials&resource={resource}")),
    ] {
        let mut request = server
            .http
            .post(server.url("/oauth/token"))
            .basic_auth(&server.admin.client_id, Some(&server.admin.client_secret))
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let reply = Reply::from(request.send().await.unwrap()).await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }

    // A charset parameter on the form content type is fine.
    let reply = Reply::from(
        server
            .http
            .post(server.url("/oauth/token"))
            .basic_auth(&server.admin.client_id, Some(&server.admin.client_secret))
            .header("content-type", "application/x-www-form-urlencoded; charset=UTF-8")
            .body(format!("grant_type=client_credentials&resource={}", url_encode(&resource)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
});

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

db_test!(resource_is_required_unless_a_default_audience_is_set, |server| {
    let basic = ClientAuth::Basic(&server.admin);
    let reply = token(&server, "acme-test", basic, &[]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_target");
    // An empty resource is absent.
    let reply = token(&server, "acme-test", basic, &[("resource", "")]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_target");

    // Unknown resources.
    let trailing_slash = format!("{}/api/", server.issuer("acme-test"));
    for unknown in ["https://api.example.com", "not a uri", trailing_slash.as_str()] {
        let reply = token(&server, "acme-test", basic, &[("resource", unknown)]).await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_target");
    }
    // Another environment's Management API is unknown here.
    let beta_api = format!("{}/api", server.issuer("beta"));
    let reply = token(&server, "acme-test", basic, &[("resource", &beta_api)]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_target");

    // With a default audience the resource may be omitted.
    let admin = server.admin_token().await;
    let (status, env) = server.api(Method::GET, "/api/environment", &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{env}");
    let env_id = env["data"]["id"].as_str().unwrap().to_owned();
    let set_default = |audience: Value| json!({"data": {"type": "environment", "id": env_id, "attributes": {"default_audience": audience}}});
    // It must name an API of this environment.
    let (status, body) = server
        .api(Method::PATCH, "/api/environment", &admin, Some(set_default(json!("https://nowhere.example"))))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = server
        .api(Method::PATCH, "/api/environment", &admin, Some(set_default(json!(server.management_api()))))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["default_audience"], server.management_api());

    let reply = token(&server, "acme-test", basic, &[("scope", "users:read")]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let (_, claims) = decode_jwt(reply.body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], server.management_api());
    assert_eq!(claims["scope"], "users:read");

    // An explicit resource still wins over the default.
    let custom = custom_api(&server, &admin, "https://billing.example.com", 600, &["invoices:read"]).await;
    let (row, creds) = m2m_client(&server, &admin, "Billing").await;
    grant(&server, &admin, &row, &custom, json!(null)).await;
    let reply = token(
        &server,
        "acme-test",
        ClientAuth::Basic(&creds),
        &[("resource", "https://billing.example.com")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        decode_jwt(reply.body["access_token"].as_str().unwrap()).1["aud"],
        "https://billing.example.com"
    );
    // The default audience needs a grant like any other resource.
    let reply = token(&server, "acme-test", ClientAuth::Basic(&creds), &[]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_target");

    // Clearing the default brings the requirement back.
    let (status, body) =
        server.api(Method::PATCH, "/api/environment", &admin, Some(set_default(Value::Null))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reply = token(&server, "acme-test", basic, &[]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_target");
});

db_test!(scopes_are_limited_by_the_grant, |server| {
    let admin = server.admin_token().await;
    let resource = server.management_api();
    let (_, creds) = management_client(&server, &admin, "Reader", &["users:read", "roles:read"]).await;
    let basic = ClientAuth::Basic(&creds);

    // No scope requested: everything the grant allows.
    let reply = token(&server, "acme-test", basic, &[("resource", &resource)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["scope"], "users:read roles:read");

    // A subset, duplicates collapsed, order kept.
    let reply =
        token(&server, "acme-test", basic, &[("resource", &resource), ("scope", "roles:read  roles:read")])
            .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["scope"], "roles:read");
    let (_, claims) = decode_jwt(reply.body["access_token"].as_str().unwrap());
    assert_eq!(claims["scope"], "roles:read");

    // Anything outside the grant, even alongside allowed scopes.
    for scope in ["users:write", "users:read users:write", "openid", "nonsense"] {
        let reply = token(&server, "acme-test", basic, &[("resource", &resource), ("scope", scope)]).await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    }

    // A client with no grant at all: invalid_target, not invalid_scope.
    let (_, bare) = m2m_client(&server, &admin, "No grant").await;
    let reply = token(&server, "acme-test", ClientAuth::Basic(&bare), &[("resource", &resource)]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_target");

    // Scopes of a custom API: only those defined on it.
    let api =
        custom_api(&server, &admin, "https://orders.example.com", 300, &["orders:read", "orders:write"])
            .await;
    let (row, creds) = m2m_client(&server, &admin, "Orders").await;
    grant(&server, &admin, &row, &api, json!(["orders:read"])).await;
    let basic = ClientAuth::Basic(&creds);
    let target = [("resource", "https://orders.example.com")];
    let reply = token(&server, "acme-test", basic, &target).await;
    assert_eq!(reply.body["scope"], "orders:read", "{}", reply.body);
    let reply = token(&server, "acme-test", basic, &[target[0], ("scope", "orders:write")]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    // A Management API scope is not a scope of this API.
    let reply = token(&server, "acme-test", basic, &[target[0], ("scope", "users:read")]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
});

db_test!(jwt_access_token_follows_rfc_9068, |server| {
    let admin = server.admin_token().await;
    let api = custom_api(&server, &admin, "https://ledger.example.com/v1", 120, &["ledger:read"]).await;
    let (row, creds) = m2m_client(&server, &admin, "Ledger worker").await;
    grant(&server, &admin, &row, &api, json!(null)).await;

    let reply = token(
        &server,
        "acme-test",
        ClientAuth::Basic(&creds),
        &[("resource", "https://ledger.example.com/v1"), ("scope", "ledger:read")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["expires_in"], 120);
    assert_eq!(reply.body["scope"], "ledger:read");
    let access = reply.body["access_token"].as_str().unwrap();
    let (header, claims) = decode_jwt(access);

    // Header: typ, alg of the primary key, its kid.
    let (_, keys) = server.api(Method::GET, "/api/signing-keys?filter[primary]=true", &admin, None).await;
    let primary = &keys["data"][0]["attributes"];
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], primary["kid"]);
    assert_eq!(header["kid"].as_str().unwrap().len(), 11);

    // Claims.
    assert_eq!(claims["iss"], server.issuer("acme-test"));
    assert_eq!(claims["sub"], creds.client_id.as_str());
    assert_eq!(claims["client_id"], creds.client_id.as_str());
    assert_eq!(claims["aud"], "https://ledger.example.com/v1");
    assert_eq!(claims["scope"], "ledger:read");
    let (exp, iat) = (claims["exp"].as_i64().unwrap(), claims["iat"].as_i64().unwrap());
    assert_eq!(exp - iat, 120);
    let now = crate::oauth::support::unix_now();
    assert!((now - 60..=now + 60).contains(&iat), "iat {iat} vs now {now}");
    let jti = claims["jti"].as_str().unwrap();
    assert!(jti.len() >= 16, "{jti}");
    for name in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"] {
        assert!(claims.get(name).is_some(), "missing {name}: {claims}");
    }

    // Every token gets a fresh jti.
    let again = token(
        &server,
        "acme-test",
        ClientAuth::Basic(&creds),
        &[("resource", "https://ledger.example.com/v1")],
    )
    .await;
    let (_, second) = decode_jwt(again.body["access_token"].as_str().unwrap());
    assert_ne!(second["jti"], claims["jti"]);

    // The Management API token of the admin uses the system API's TTL and audience.
    let (_, admin_claims) = decode_jwt(&admin);
    assert_eq!(admin_claims["aud"], server.management_api());
    assert_eq!(admin_claims["exp"].as_i64().unwrap() - admin_claims["iat"].as_i64().unwrap(), 3600);
    assert_eq!(admin_claims["sub"], server.admin.client_id.as_str());

    // Changing the API's token_ttl applies to new tokens.
    let (status, body) = server
        .api(
            Method::PATCH,
            &format!("/api/resource-servers/{api}"),
            &admin,
            Some(json!({"data": {"type": "resource_server", "id": api, "attributes": {"token_ttl": 900}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reply = token(
        &server,
        "acme-test",
        ClientAuth::Basic(&creds),
        &[("resource", "https://ledger.example.com/v1")],
    )
    .await;
    assert_eq!(reply.body["expires_in"], 900);
    let (_, claims) = decode_jwt(reply.body["access_token"].as_str().unwrap());
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
});

db_test!(only_confidential_client_credentials_clients_may_use_the_grant, |server| {
    let admin = server.admin_token().await;
    let resource = server.management_api();

    // A public client (no secret) cannot use client_credentials.
    let (row, public) = new_client(
        &server,
        &admin,
        json!({"name": "SPA", "client_type": "public", "grant_types": ["authorization_code"],
               "redirect_uris": ["https://spa.example.com/callback"]}),
    )
    .await;
    assert!(public.client_secret.is_empty(), "public clients get no secret");
    let api = crate::common::system_api(&server, &admin).await;
    grant(&server, &admin, &row, &api, json!(["users:read"])).await;
    let reply = post_form(
        &server,
        "acme-test",
        "/oauth/token",
        ClientAuth::None,
        &[("grant_type", "client_credentials"), ("resource", &resource), ("client_id", &public.client_id)],
    )
    .await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "unauthorized_client");
    // Presenting a made-up secret for it fails authentication.
    let forged = Creds { client_id: public.client_id.clone(), client_secret: "made-up".into() };
    let reply = token(&server, "acme-test", ClientAuth::Basic(&forged), &[("resource", &resource)]).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // Registering a public client_credentials client is refused.
    let (status, body) = server
        .api(
            Method::POST,
            "/api/clients",
            &admin,
            Some(json!({"data": {"type": "client", "attributes": {
                "name": "Bad", "client_type": "public", "grant_types": ["client_credentials"]}}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // A confidential client without the client_credentials grant type.
    let (row, web) = new_client(
        &server,
        &admin,
        json!({"name": "Web app", "grant_types": ["authorization_code"],
               "redirect_uris": ["https://app.example.com/callback"]}),
    )
    .await;
    grant(&server, &admin, &row, &api, json!(["users:read"])).await;
    let reply = token(&server, "acme-test", ClientAuth::Basic(&web), &[("resource", &resource)]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "unauthorized_client");
});

db_test!(grant_and_api_changes_apply_to_the_next_token_request, |server| {
    let admin = server.admin_token().await;
    let api =
        custom_api(&server, &admin, "https://files.example.com", 300, &["files:read", "files:write"]).await;
    let (row, creds) = m2m_client(&server, &admin, "Files").await;
    let basic = ClientAuth::Basic(&creds);
    let target = ("resource", "https://files.example.com");
    grant(&server, &admin, &row, &api, json!(null)).await;
    let reply = token(&server, "acme-test", basic, &[target]).await;
    assert_eq!(reply.body["scope"], "files:read files:write", "{}", reply.body);

    // Narrow the grant: the next request sees it.
    let (_, grants) = server
        .api(
            Method::GET,
            &format!("/api/client-resource-server-grants?filter[client_id]={row}"),
            &admin,
            None,
        )
        .await;
    let grant_id = grants["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["relationships"]["client"]["data"]["id"] == row.as_str())
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("grant of {row} in {grants}"));
    let (status, body) = server
        .api(
            Method::PATCH,
            &format!("/api/client-resource-server-grants/{grant_id}"),
            &admin,
            Some(json!({"data": {"type": "client_resource_server_grant", "id": grant_id,
                                  "attributes": {"allowed_scopes": ["files:read"]}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reply = token(&server, "acme-test", basic, &[target, ("scope", "files:write")]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    let reply = token(&server, "acme-test", basic, &[target]).await;
    assert_eq!(reply.body["scope"], "files:read", "{}", reply.body);

    // A new scope on the API is not granted by a narrowed grant.
    server
        .create(
            &admin,
            "/api/scopes",
            "scope",
            json!({"name": "files:share"}),
            json!({"resource_server": {"data": {"type": "resource_server", "id": api}}}),
        )
        .await;
    let reply = token(&server, "acme-test", basic, &[target, ("scope", "files:share")]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");

    // Delete the grant: no more tokens for that resource.
    let (status, body) = server
        .api(Method::DELETE, &format!("/api/client-resource-server-grants/{grant_id}"), &admin, None)
        .await;
    assert!(status.is_success(), "{status} {body}");
    let reply = token(&server, "acme-test", basic, &[target]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_target");

    // Delete the API: the resource becomes unknown even to a client that held a grant.
    let (other_row, other) = m2m_client(&server, &admin, "Other").await;
    grant(&server, &admin, &other_row, &api, json!(null)).await;
    assert_eq!(
        token(&server, "acme-test", ClientAuth::Basic(&other), &[target]).await.status,
        StatusCode::OK
    );
    let (status, body) =
        server.api(Method::DELETE, &format!("/api/resource-servers/{api}"), &admin, None).await;
    assert!(status.is_success(), "{status} {body}");
    let reply = token(&server, "acme-test", ClientAuth::Basic(&other), &[target]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_target");
});
