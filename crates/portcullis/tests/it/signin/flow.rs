//! The authorization code flow through the hosted pages, end to end, and
//! the errors of each step.

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::support::*;
use crate::common::PASSWORD;
use crate::db_test;

db_test!(third_party_client_signs_in_with_consent_and_gets_tokens, |server| {
    let admin = server.admin_token().await;
    let user = create_person(&server, &admin, "ada@example.com").await;
    let client = create_client(&server, &admin, json!({})).await;
    let (verifier, challenge) = pkce();
    let mut browser = Browser::new(&server);
    let url = authorize_path(&code_request(&client, "openid profile email offline_access", &challenge));

    // No session: the login page, naming the application.
    let start = browser.get(&url).await;
    let login = start.redirect().to_owned();
    assert!(login.starts_with("/login?flow="), "{login}");
    let page = browser.get(&login).await;
    assert!(page.body.contains("Test RP"), "the login page names the client");
    assert!(page.body.contains("Acme Test"), "the login page names the environment");
    assert_eq!(page.headers.get("x-frame-options").unwrap(), "DENY");
    let after_login = browser.log_in(&login, "ADA@example.com", PASSWORD).await;
    assert!(browser.cookies.contains_key("portcullis_session"), "login sets the session cookie");

    // Third-party client: consent lists the scopes.
    let consent = after_login.redirect().to_owned();
    assert!(consent.starts_with("/consent?flow="), "{consent}");
    let page = browser.get(&consent).await;
    for text in ["Test RP", "ada@example.com", "offline_access", "email"] {
        assert!(page.body.contains(text), "consent page shows {text}");
    }
    let back = browser.consent(&consent, "allow").await;
    let callback = back.redirect().to_owned();
    assert!(callback.starts_with(REDIRECT_URI), "{callback}");
    let params = query_of(&callback);
    assert_eq!(params["state"], "st-123");
    assert_eq!(params["iss"], server.issuer("acme-test"), "RFC 9207 iss");

    let (status, tokens) = redeem(&server, &client, &params["code"], &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "openid profile email offline_access");
    let id = claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], user);
    assert_eq!(id["aud"], client.creds.client_id);
    assert_eq!(id["iss"], server.issuer("acme-test"));
    assert_eq!(id["nonce"], "n-456");
    assert_eq!(id["email"], "ada@example.com");
    assert_eq!(id["given_name"], "Ada");
    assert!(id["auth_time"].as_i64().unwrap() <= id["iat"].as_i64().unwrap());
    let access = claims_of(tokens["access_token"].as_str().unwrap());
    assert_eq!(access["sub"], user);
    assert_eq!(access["client_id"], client.creds.client_id);
    assert_eq!(access["aud"], format!("{}/oauth/userinfo", server.issuer("acme-test")));
    assert_eq!(access["roles"], json!([]));
    assert!(
        tokens["refresh_token"].is_string(),
        "offline_access with the refresh grant gives a refresh token"
    );

    let (status, info, _) = userinfo(&server, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["sub"], user);
    assert_eq!(info["email"], "ada@example.com");
    assert_eq!(info["name"], "Ada Lovelace");

    // Signed in and consented: the next request goes straight back.
    let (_, challenge) = pkce();
    let again = browser.get(&authorize_path(&code_request(&client, "openid email", &challenge))).await;
    assert!(again.redirect().starts_with(REDIRECT_URI), "remembered consent: {}", again.redirect());
    assert!(query_of(again.redirect()).contains_key("code"));
});

db_test!(roles_and_permissions_flow_into_user_access_tokens, |server| {
    let admin = server.admin_token().await;
    let user = create_person(&server, &admin, "grace@example.com").await;
    let role = crate::common::create_role(&server, &admin, "billing-admin").await;
    let permission = crate::common::create_permission(&server, &admin, "invoices:write").await;
    let link = |a: &str, b: &str| json!({a: {"data": {"type": a, "id": b}}});
    let mut relationships = link("role", &role);
    relationships["permission"] = link("permission", &permission)["permission"].clone();
    server.create(&admin, "/api/role-permissions", "role_permission", json!({}), relationships).await;
    let mut relationships = link("user", &user);
    relationships["role"] = link("role", &role)["role"].clone();
    server.create(&admin, "/api/user-roles", "user_role", json!({}), relationships).await;
    let client = create_client(&server, &admin, json!({"first_party": true})).await;
    let (verifier, challenge) = pkce();
    let mut browser = Browser::new(&server);
    let callback = browser
        .authorize(&authorize_path(&code_request(&client, "openid", &challenge)), "grace@example.com")
        .await;
    let (status, tokens) = redeem(&server, &client, &query_of(&callback)["code"], &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = claims_of(tokens["access_token"].as_str().unwrap());
    assert_eq!(access["roles"], json!(["billing-admin"]));
    assert_eq!(access["permissions"], json!(["invoices:write"]));
    assert!(tokens.get("refresh_token").is_none(), "no offline_access, no refresh token");
});

db_test!(a_replayed_code_is_refused_and_revokes_what_it_issued, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let client = create_client(&server, &admin, json!({"first_party": true})).await;
    let (verifier, challenge) = pkce();
    let mut browser = Browser::new(&server);
    let callback = browser
        .authorize(
            &authorize_path(&code_request(&client, "openid offline_access", &challenge)),
            "ada@example.com",
        )
        .await;
    let code = query_of(&callback)["code"].clone();
    let (status, tokens) = redeem(&server, &client, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = userinfo(&server, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    let (status, replay) = redeem(&server, &client, &code, &verifier).await;
    assert_eq!((status, replay["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let (status, _, challenge) = userinfo(&server, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the first redemption's access token is revoked");
    assert!(challenge.contains("invalid_token"));
    let refresh =
        [("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())];
    let (status, body) = token_call(&server, &client, &refresh).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
});

db_test!(code_exchange_checks_pkce_redirect_uri_and_client, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let client = create_client(&server, &admin, json!({"first_party": true})).await;
    let other = create_client(&server, &admin, json!({"first_party": true})).await;
    let mut browser = Browser::new(&server);
    let (verifier, challenge) = pkce();
    let callback = browser
        .authorize(&authorize_path(&code_request(&client, "openid", &challenge)), "ada@example.com")
        .await;
    let code = query_of(&callback)["code"].clone();
    let base = [("grant_type", "authorization_code"), ("code", code.as_str())];
    let wrong_verifier = "x".repeat(43);
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a TestClient, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("redirect_uri", REDIRECT_URI)], &client, "invalid_grant"),
        (vec![("redirect_uri", REDIRECT_URI), ("code_verifier", &wrong_verifier)], &client, "invalid_grant"),
        (vec![("redirect_uri", REDIRECT_URI), ("code_verifier", "short")], &client, "invalid_request"),
        (
            vec![("redirect_uri", "https://rp.example.test/other"), ("code_verifier", &verifier)],
            &client,
            "invalid_grant",
        ),
        (vec![("code_verifier", &verifier)], &client, "invalid_request"),
        (vec![("redirect_uri", REDIRECT_URI), ("code_verifier", &verifier)], &other, "invalid_grant"),
        (
            vec![
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", &verifier),
                ("resource", "https://nope.test"),
            ],
            &client,
            "invalid_target",
        ),
    ];
    for (extra, who, error) in cases {
        let mut form = base.to_vec();
        form.extend(extra.iter().copied());
        let (status, body) = token_call(&server, who, &form).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(error)),
            "{form:?}: {body}"
        );
    }
    // None of those consumed the code.
    let (status, body) = redeem(&server, &client, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
});

db_test!(refresh_tokens_rotate_and_reuse_revokes_the_family, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let client = create_client(&server, &admin, json!({"first_party": true})).await;
    let mut browser = Browser::new(&server);
    let (verifier, challenge) = pkce();
    let callback = browser
        .authorize(
            &authorize_path(&code_request(&client, "openid email offline_access", &challenge)),
            "ada@example.com",
        )
        .await;
    let (_, first) = redeem(&server, &client, &query_of(&callback)["code"], &verifier).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();

    let (status, second) =
        token_call(&server, &client, &[("grant_type", "refresh_token"), ("refresh_token", &r1)]).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2, "rotated");
    let id = claims_of(second["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], claims_of(first["id_token"].as_str().unwrap())["sub"]);
    assert!(id.get("nonce").is_none(), "a refreshed ID token carries no nonce");

    // Narrowing is allowed; widening is not.
    let (status, narrow) = token_call(
        &server,
        &client,
        &[("grant_type", "refresh_token"), ("refresh_token", &r2), ("scope", "email")],
    )
    .await;
    assert_eq!((status, narrow["scope"].as_str()), (StatusCode::OK, Some("email")), "{narrow}");
    let r3 = narrow["refresh_token"].as_str().unwrap().to_owned();
    let (status, wide) = token_call(
        &server,
        &client,
        &[("grant_type", "refresh_token"), ("refresh_token", &r3), ("scope", "profile")],
    )
    .await;
    assert_eq!((status, wide["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")));

    // Reusing r1 revokes the family: r3 (still unused) dies with it.
    let (status, reuse) =
        token_call(&server, &client, &[("grant_type", "refresh_token"), ("refresh_token", &r1)]).await;
    assert_eq!((status, reuse["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let (status, dead) =
        token_call(&server, &client, &[("grant_type", "refresh_token"), ("refresh_token", &r3)]).await;
    assert_eq!((status, dead["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{dead}");
    let (status, _, _) = userinfo(&server, narrow["access_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the family's access tokens are revoked too");
});

db_test!(concurrent_refreshes_commit_together_and_a_raced_token_wins_once, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let client = create_client(&server, &admin, json!({"first_party": true})).await;
    let mut browser = Browser::new(&server);
    let mut families = Vec::new();
    for _ in 0..6 {
        let (verifier, challenge) = pkce();
        let request = code_request(&client, "openid offline_access", &challenge);
        let callback = browser.authorize(&authorize_path(&request), "ada@example.com").await;
        let (_, tokens) = redeem(&server, &client, &query_of(&callback)["code"], &verifier).await;
        families.push(tokens["refresh_token"].as_str().unwrap().to_owned());
    }
    let refresh = |token: String| {
        let (server, client) = (&server, &client);
        async move {
            token_call(server, client, &[("grant_type", "refresh_token"), ("refresh_token", &token)]).await
        }
    };

    // Five families rotate at once (their writes share transactions): all win.
    let raced = families.pop().unwrap();
    let rotated = join_all(families.iter().cloned().map(refresh)).await;
    for (status, body) in &rotated {
        assert_eq!(*status, StatusCode::OK, "{body}");
    }
    for (status, body) in
        join_all(rotated.iter().map(|(_, b)| b["refresh_token"].as_str().unwrap().to_owned()).map(refresh))
            .await
    {
        assert_eq!(status, StatusCode::OK, "each rotated token works once: {body}");
    }

    // One token spent four times at once: exactly one answer carries tokens,
    // and the family is revoked (the winner's new token is dead too).
    let answers = join_all(std::iter::repeat_n(raced, 4).map(refresh)).await;
    let winners: Vec<_> = answers.iter().filter(|(status, _)| *status == StatusCode::OK).collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != StatusCode::OK) {
        assert_eq!((*status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    }
    let next = winners[0].1["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) = refresh(next).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
});

db_test!(bad_client_or_redirect_uri_shows_an_error_page_never_a_redirect, |server| {
    let admin = server.admin_token().await;
    let client = create_client(&server, &admin, json!({})).await;
    let mut browser = Browser::new(&server);
    let cases = [
        authorize_path(&[("response_type", "code"), ("client_id", "nope"), ("redirect_uri", REDIRECT_URI)]),
        authorize_path(&[
            ("response_type", "code"),
            ("client_id", &client.creds.client_id),
            ("redirect_uri", "https://evil.test/cb"),
        ]),
        authorize_path(&[
            ("response_type", "code"),
            ("client_id", &client.creds.client_id),
            ("redirect_uri", "https://rp.example.test/callback/"),
        ]),
        authorize_path(&[("response_type", "code"), ("client_id", &client.creds.client_id)]),
        format!(
            "{}&redirect_uri=x",
            authorize_path(&[("client_id", &client.creds.client_id), ("redirect_uri", REDIRECT_URI)])
        ),
    ];
    for url in cases {
        let page = browser.get(&url).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{url}");
        assert!(page.location().is_none(), "{url} must not redirect");
        assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    }
});

db_test!(other_authorize_errors_go_back_to_the_client, |server| {
    let admin = server.admin_token().await;
    let client = create_client(&server, &admin, json!({})).await;
    let public = create_client(&server, &admin, json!({"client_type": "public"})).await;
    let machine = create_client(&server, &admin, json!({"grant_types": ["client_credentials"]})).await;
    let (_, challenge) = pkce();
    let id = client.creds.client_id.as_str();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("client_id", id), ("redirect_uri", REDIRECT_URI), ("state", "s1")], "invalid_request"),
        (
            vec![
                ("response_type", "token"),
                ("client_id", id),
                ("redirect_uri", REDIRECT_URI),
                ("state", "s1"),
            ],
            "unsupported_response_type",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", id),
                ("redirect_uri", REDIRECT_URI),
                ("state", "s1"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("scope", "openid bogus"),
            ],
            "invalid_scope",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", id),
                ("redirect_uri", REDIRECT_URI),
                ("state", "s1"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
        // No PKCE, from a public or a confidential client.
        (
            vec![
                ("response_type", "code"),
                ("client_id", &public.creds.client_id),
                ("redirect_uri", REDIRECT_URI),
                ("state", "s1"),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", id),
                ("redirect_uri", REDIRECT_URI),
                ("state", "s1"),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", &machine.creds.client_id),
                ("redirect_uri", REDIRECT_URI),
                ("state", "s1"),
            ],
            "unauthorized_client",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", id),
                ("redirect_uri", REDIRECT_URI),
                ("state", "s1"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("prompt", "none"),
            ],
            "login_required",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", id),
                ("redirect_uri", REDIRECT_URI),
                ("state", "s1"),
                ("request", "eyJhbGciOiJub25lIn0.e30."),
            ],
            "request_not_supported",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", id),
                ("redirect_uri", REDIRECT_URI),
                ("state", "s1"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("resource", "https://unknown.test"),
            ],
            "invalid_target",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", id),
                ("redirect_uri", REDIRECT_URI),
                ("state", "s1"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("max_age", "-1"),
            ],
            "invalid_request",
        ),
    ];
    let machine_uris = json!({"redirect_uris": [REDIRECT_URI]});
    server
        .api(
            Method::PATCH,
            &format!("/api/clients/{}", machine.id),
            &admin,
            Some(json!({"data": {"type": "client", "id": machine.id, "attributes": machine_uris}})),
        )
        .await;
    let mut browser = Browser::new(&server);
    for (params, error) in cases {
        let page = browser.get(&authorize_path(&params)).await;
        let target = page.redirect();
        assert!(target.starts_with(REDIRECT_URI), "{params:?}: {target}");
        let query = query_of(target);
        assert_eq!(query.get("error").map(String::as_str), Some(error), "{params:?}");
        assert_eq!(query["state"], "s1");
        assert_eq!(query["iss"], server.issuer("acme-test"));
    }
    // A repeated parameter other than client_id/redirect_uri is an invalid_request at the client.
    let url = format!(
        "{}&scope=openid",
        authorize_path(&[
            ("response_type", "code"),
            ("client_id", id),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid")
        ])
    );
    let page = browser.get(&url).await;
    assert_eq!(query_of(page.redirect()).get("error").map(String::as_str), Some("invalid_request"));
    // Unknown parameters are ignored.
    let mut params = code_request(&client, "openid", &challenge);
    params.push(("frobnicate", "yes"));
    assert!(browser.get(&authorize_path(&params)).await.redirect().starts_with("/login?flow="));
});

db_test!(prompt_login_and_max_age_force_a_fresh_login, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let client = create_client(&server, &admin, json!({"first_party": true})).await;
    let (verifier, challenge) = pkce();
    let mut browser = Browser::new(&server);
    browser.authorize(&authorize_path(&code_request(&client, "openid", &challenge)), "ada@example.com").await;

    for extra in [("prompt", "login"), ("max_age", "0")] {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let mut params = code_request(&client, "openid", &challenge);
        params.push(extra);
        let page = browser.get(&authorize_path(&params)).await;
        let login = page.redirect().to_owned();
        assert!(login.starts_with("/login?flow="), "{extra:?} asks for the password again");
        let back = browser.log_in(&login, "ada@example.com", PASSWORD).await;
        let code = query_of(back.redirect())["code"].clone();
        let (status, tokens) = redeem(&server, &client, &code, &verifier).await;
        assert_eq!(status, StatusCode::OK);
        let id = claims_of(tokens["id_token"].as_str().unwrap());
        let age = id["iat"].as_i64().unwrap() - id["auth_time"].as_i64().unwrap();
        assert!(age <= 1, "auth_time is the fresh login ({extra:?}): {id}");
    }
    // prompt=none with a live session issues a code silently.
    let mut params = code_request(&client, "openid", &challenge);
    params.push(("prompt", "none"));
    assert!(query_of(browser.get(&authorize_path(&params)).await.redirect()).contains_key("code"));
});

db_test!(denied_consent_and_prompt_none_without_consent_go_back_with_errors, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let client = create_client(&server, &admin, json!({})).await;
    let (_, challenge) = pkce();
    let mut browser = Browser::new(&server);
    let login = browser
        .get(&authorize_path(&code_request(&client, "openid", &challenge)))
        .await
        .redirect()
        .to_owned();
    let consent = browser.log_in(&login, "ada@example.com", PASSWORD).await.redirect().to_owned();
    let mut params = code_request(&client, "openid", &challenge);
    params.push(("prompt", "none"));
    let silent = browser.get(&authorize_path(&params)).await;
    assert_eq!(query_of(silent.redirect()).get("error").map(String::as_str), Some("consent_required"));
    let denied = browser.consent(&consent, "deny").await;
    let query = query_of(denied.redirect());
    assert_eq!((query["error"].as_str(), query["state"].as_str()), ("access_denied", "st-123"));
});

db_test!(login_failures_are_generic_and_lock_the_account, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let mut browser = Browser::new(&server);
    let unknown = browser.log_in("/login", "nobody@example.com", PASSWORD).await;
    let wrong = browser.log_in("/login", "ada@example.com", "wrong password").await;
    assert_eq!((unknown.status, wrong.status), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert!(unknown.body.contains("The email or password is incorrect."));
    assert!(wrong.body.contains("The email or password is incorrect."));
    for _ in 0..3 {
        browser.log_in("/login", "ada@example.com", "wrong password").await;
    }
    let locked = browser.log_in("/login", "ada@example.com", "wrong password").await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "the fifth failure locks");
    let retry: i64 = locked.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let still = browser.log_in("/login", "ada@example.com", PASSWORD).await;
    assert_eq!(still.status, StatusCode::TOO_MANY_REQUESTS, "even the right password waits out the lock");
    assert!(!browser.cookies.contains_key("portcullis_session"));
});

db_test!(unknown_addresses_lock_out_exactly_like_accounts, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let mut browser = Browser::new(&server);
    // Each failure, the locking fifth and the attempt after it answer the
    // same for an account and for an address nobody has.
    for attempt in 1..=6 {
        let known = browser.log_in("/login", "ada@example.com", "wrong password").await;
        let unknown = browser.log_in("/login", "Nobody@Example.com", "wrong password").await;
        let expected = if attempt < 5 { StatusCode::UNAUTHORIZED } else { StatusCode::TOO_MANY_REQUESTS };
        assert_eq!((known.status, unknown.status), (expected, expected), "attempt {attempt}");
        assert_eq!(
            known.headers.get("retry-after").is_some(),
            unknown.headers.get("retry-after").is_some(),
            "attempt {attempt}"
        );
        // Only the address typed and the form's CSRF token may differ.
        let scrub = |page: &Page, email: &str| {
            let body = page.body.replace(email, "{email}");
            match page.hidden("csrf") {
                Some(csrf) => body.replace(&csrf, "{csrf}"),
                None => body,
            }
        };
        assert_eq!(
            scrub(&known, "ada@example.com"),
            scrub(&unknown, "Nobody@Example.com"),
            "attempt {attempt}"
        );
    }
    // The lock is kept per address, in any case, and only for that address.
    let again = browser.log_in("/login", "nobody@example.com", PASSWORD).await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: i64 = again.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let other = browser.log_in("/login", "somebody-else@example.com", PASSWORD).await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
});

db_test!(forms_without_the_csrf_token_are_refused, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let mut browser = Browser::new(&server);
    browser.get("/login").await;
    let page = browser.post("/login", &[("email", "ada@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = browser
        .post("/login", &[("csrf", &"x".repeat(43)), ("email", "ada@example.com"), ("password", PASSWORD)])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!browser.cookies.contains_key("portcullis_session"));
});

db_test!(rp_initiated_logout_ends_the_session_and_returns_to_the_client, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let client = create_client(&server, &admin, json!({"first_party": true})).await;
    let (verifier, challenge) = pkce();
    let mut browser = Browser::new(&server);
    let callback = browser
        .authorize(
            &authorize_path(&code_request(&client, "openid offline_access", &challenge)),
            "ada@example.com",
        )
        .await;
    let (_, tokens) = redeem(&server, &client, &query_of(&callback)["code"], &verifier).await;
    let id_token = tokens["id_token"].as_str().unwrap();

    // An unregistered return address is refused.
    let bad = format!(
        "/oauth/logout?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("id_token_hint", id_token)
            .append_pair("post_logout_redirect_uri", "https://evil.test/")
            .finish()
    );
    let page = browser.get(&bad).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.location().is_none());

    let good = format!(
        "/oauth/logout?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("id_token_hint", id_token)
            .append_pair("post_logout_redirect_uri", LOGOUT_URI)
            .append_pair("state", "bye")
            .finish()
    );
    let page = browser.get(&good).await;
    assert_eq!(page.redirect(), format!("{LOGOUT_URI}?state=bye"));
    assert!(!browser.cookies.contains_key("portcullis_session"), "the cookie is cleared");
    let refresh =
        [("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())];
    let (status, _) = token_call(&server, &client, &refresh).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "logout ends the session's refresh tokens");
    let mut params = code_request(&client, "openid", &challenge);
    params.push(("prompt", "none"));
    let silent = browser.get(&authorize_path(&params)).await;
    assert_eq!(query_of(silent.redirect()).get("error").map(String::as_str), Some("login_required"));
});

db_test!(logout_without_a_hint_asks_first, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let mut browser = Browser::new(&server);
    let page = browser.log_in("/login", "ada@example.com", PASSWORD).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let ask = browser.get("/oauth/logout").await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.body.contains("Sign out"));
    assert!(browser.cookies.contains_key("portcullis_session"), "a bare link does not log out");
    let csrf = ask.hidden("csrf").unwrap();
    let done = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.body.contains("You are signed out"));
    assert!(!browser.cookies.contains_key("portcullis_session"));
});
