//! Rate limits on password logins, sign-ups, reset mail and the token
//! endpoint (per client IP and per account), and CORS on the endpoints
//! browser apps call.
//!
//! Every loopback address reaches the test server, so requests from
//! 127.0.0.2 count as another client IP.

use portcullis_core::CoreConfig;
use portcullis_core::limits::{Rate, RateLimits};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::*;
use crate::common::{PASSWORD, system_api};
use crate::db_test;
use crate::harness::{Creds, TestServer};

const OTHER_IP: &str = "127.0.0.2";
const ORIGIN: &str = "https://app.example";

/// The `Retry-After` of a 429, asserted to be whole seconds in `1..=max`.
#[track_caller]
fn retry_after(status: StatusCode, headers: &HeaderMap, max: u64) -> u64 {
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let value = headers.get("retry-after").expect("a 429 carries Retry-After").to_str().unwrap();
    let seconds: u64 = value.parse().unwrap_or_else(|_| panic!("Retry-After is not delta-seconds: {value}"));
    assert!((1..=max).contains(&seconds), "Retry-After {seconds} not in 1..={max}");
    seconds
}

/// Posts the login form with a CSRF token read once (so only the POSTs
/// count against the limits).
async fn login(browser: &mut Browser<'_>, csrf: &str, email: &str, password: &str) -> Page {
    browser.post("/login", &[("csrf", csrf), ("email", email), ("password", password)]).await
}

/// `failed_logins` of the user with `email`.
async fn failed_logins(server: &TestServer, email: &str) -> i64 {
    server.count(&format!("SELECT CAST(failed_logins AS BIGINT) FROM users WHERE email = '{email}'")).await
}

db_test!(
    password_logins_are_limited_per_client_ip,
    config = |c: &mut CoreConfig| {
        c.rate_limits = Some(RateLimits {
            login_ip: Rate::per_minute(3),
            login_account: Rate::per_minute(100),
            ..RateLimits::default()
        })
    },
    |server| {
        let admin = server.admin_token().await;
        create_person(&server, &admin, "ada@example.com").await;
        create_person(&server, &admin, "bob@example.com").await;
        let mut browser = Browser::new(&server);
        let csrf = browser.csrf("/login").await;
        for _ in 0..3 {
            let page = login(&mut browser, &csrf, "ada@example.com", "wrong password").await;
            assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
        }
        let limited = login(&mut browser, &csrf, "ada@example.com", "wrong password").await;
        retry_after(limited.status, &limited.headers, 20);
        assert!(limited.body.contains("Too many sign-in attempts"), "{}", limited.body);
        assert!(limited.hidden("csrf").is_some(), "the login form is shown again");
        assert_eq!(
            failed_logins(&server, "ada@example.com").await,
            3,
            "a refused attempt checks no password"
        );

        // Another account from the same IP: still refused, even with the
        // right password.
        let page = login(&mut browser, &csrf, "bob@example.com", PASSWORD).await;
        retry_after(page.status, &page.headers, 20);
        assert!(!browser.cookies.contains_key("portcullis_session"));

        // Another IP has its own allowance.
        let mut elsewhere = Browser::from_ip(&server, OTHER_IP);
        let csrf = elsewhere.csrf("/login").await;
        let page = login(&mut elsewhere, &csrf, "ada@example.com", PASSWORD).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(elsewhere.cookies.contains_key("portcullis_session"));
        let audit = "SELECT COUNT(*) FROM audit_events WHERE action = 'user.login_failed'";
        assert_eq!(server.count(audit).await, 3, "refused attempts are not login failures");
    }
);

db_test!(
    password_logins_are_limited_per_account_across_ips,
    config = |c: &mut CoreConfig| {
        c.rate_limits = Some(RateLimits {
            login_ip: Rate::per_minute(100),
            login_account: Rate::per_minute(2),
            ..RateLimits::default()
        })
    },
    |server| {
        let admin = server.admin_token().await;
        create_person(&server, &admin, "ada@example.com").await;
        create_person(&server, &admin, "bob@example.com").await;
        let mut browser = Browser::new(&server);
        let csrf = browser.csrf("/login").await;
        for _ in 0..2 {
            let page = login(&mut browser, &csrf, "ada@example.com", "wrong password").await;
            assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        }
        // The account's allowance is spent, from any IP and in any case.
        let mut elsewhere = Browser::from_ip(&server, OTHER_IP);
        let other_csrf = elsewhere.csrf("/login").await;
        let page = login(&mut elsewhere, &other_csrf, "ADA@Example.com", PASSWORD).await;
        retry_after(page.status, &page.headers, 30);
        assert!(page.body.contains("Too many sign-in attempts"), "{}", page.body);
        assert!(!elsewhere.cookies.contains_key("portcullis_session"));
        let page = login(&mut browser, &csrf, "ada@example.com", PASSWORD).await;
        retry_after(page.status, &page.headers, 30);
        assert_eq!(failed_logins(&server, "ada@example.com").await, 2);

        // Other accounts, from either IP, are not affected.
        let page = login(&mut browser, &csrf, "bob@example.com", PASSWORD).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let page = login(&mut elsewhere, &other_csrf, "nobody@example.com", PASSWORD).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
);

db_test!(the_default_login_limit_is_thirty_a_minute_per_ip, |server| {
    let mut browser = Browser::new(&server);
    let csrf = browser.csrf("/login").await;
    let started = std::time::Instant::now();
    for n in 0..30 {
        // Unknown addresses: no lockout, no account limit.
        let page = login(&mut browser, &csrf, &format!("nobody{n}@example.com"), PASSWORD).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    // The allowance refills one attempt every 2 s: a few more may pass
    // while these run, then the IP is refused.
    let mut extra = 0;
    loop {
        let page = login(&mut browser, &csrf, "nobody@example.com", PASSWORD).await;
        if page.status == StatusCode::TOO_MANY_REQUESTS {
            retry_after(page.status, &page.headers, 2);
            break;
        }
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        extra += 1;
        let refilled = (started.elapsed().as_secs_f64() / 2.0).ceil() as usize;
        assert!(extra <= refilled, "{extra} attempts past 30 in {:?}", started.elapsed());
    }
});

db_test!(rate_limits_can_be_turned_off, config = |c: &mut CoreConfig| c.rate_limits = None, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let mut browser = Browser::new(&server);
    let csrf = browser.csrf("/login").await;
    // Past every default limit: 30 logins, 20 sign-ups and 20 (5 per
    // account) reset requests.
    for n in 0..35 {
        let page = login(&mut browser, &csrf, &format!("nobody{n}@example.com"), PASSWORD).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "login {n}");
    }
    for n in 0..25 {
        let fields = [
            ("csrf", csrf.as_str()),
            ("email", "zoe@example.com"),
            ("password", "short"),
            ("password_confirmation", "short"),
        ];
        assert_eq!(browser.post("/register", &fields).await.status, StatusCode::BAD_REQUEST, "sign-up {n}");
    }
    for n in 0..25 {
        let email = if n % 2 == 0 { "nobody@example.com".to_owned() } else { format!("n{n}@example.com") };
        let fields = [("csrf", csrf.as_str()), ("email", email.as_str())];
        assert_eq!(browser.post("/password/forgot", &fields).await.status, StatusCode::OK, "reset {n}");
    }
    for n in 0..6 {
        let fields = [("csrf", csrf.as_str()), ("email", "ada@example.com")];
        assert_eq!(browser.post("/password/forgot", &fields).await.status, StatusCode::OK, "ada {n}");
    }
    wait_for_mail(&server, "ada@example.com", 6).await;
    let page = login(&mut browser, &csrf, "ada@example.com", PASSWORD).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
});

db_test!(
    sign_ups_are_limited_per_client_ip,
    config = |c: &mut CoreConfig| {
        c.rate_limits = Some(RateLimits { register_ip: Rate::per_minute(2), ..RateLimits::default() })
    },
    |server| {
        const GOOD: &str = "violet lantern harbour 42";
        async fn register(browser: &mut Browser<'_>, csrf: &str, email: &str, confirmation: &str) -> Page {
            let fields = [
                ("csrf", csrf),
                ("email", email),
                ("password", GOOD),
                ("password_confirmation", confirmation),
            ];
            browser.post("/register", &fields).await
        }
        let mut browser = Browser::new(&server);
        let csrf = browser.csrf("/register").await;
        // Refused sign-ups count too.
        let page = register(&mut browser, &csrf, "a@example.com", "mismatch!").await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert_eq!(register(&mut browser, &csrf, "b@example.com", GOOD).await.status, StatusCode::OK);
        let page = register(&mut browser, &csrf, "c@example.com", GOOD).await;
        let wait = retry_after(page.status, &page.headers, 30);
        assert!(
            page.body.contains(&format!("Too many attempts from here. Wait {wait} seconds")),
            "{}",
            page.body
        );

        // Another IP may still sign up.
        let mut elsewhere = Browser::from_ip(&server, OTHER_IP);
        let other_csrf = elsewhere.csrf("/register").await;
        let page = register(&mut elsewhere, &other_csrf, "d@example.com", GOOD).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        wait_for_mail(&server, "d@example.com", 1).await;
        wait_for_mail(&server, "b@example.com", 1).await;
        assert!(mails_to(&server, "c@example.com").is_empty(), "the refused sign-up sent nothing");
        assert_eq!(server.count("SELECT COUNT(*) FROM users WHERE email = 'c@example.com'").await, 0);
    }
);

db_test!(
    reset_requests_are_limited_per_client_ip_and_per_account,
    config = |c: &mut CoreConfig| {
        c.rate_limits = Some(RateLimits {
            reset_ip: Rate::per_minute(4),
            reset_account: Rate::per_minute(2),
            ..RateLimits::default()
        })
    },
    |server| {
        let admin = server.admin_token().await;
        for email in ["ada@example.com", "bob@example.com", "cy@example.com"] {
            create_person(&server, &admin, email).await;
        }
        let mut browser = Browser::new(&server);
        let csrf = browser.csrf("/password/forgot").await;
        let mut elsewhere = Browser::from_ip(&server, OTHER_IP);
        let other_csrf = elsewhere.csrf("/password/forgot").await;
        async fn ask(browser: &mut Browser<'_>, csrf: &str, email: &str) -> Page {
            browser.post("/password/forgot", &[("csrf", csrf), ("email", email)]).await
        }

        for _ in 0..2 {
            assert_eq!(ask(&mut browser, &csrf, "ada@example.com").await.status, StatusCode::OK);
        }
        // ada's allowance is spent, from any IP.
        let page = ask(&mut browser, &csrf, "ada@example.com").await;
        retry_after(page.status, &page.headers, 30);
        assert!(page.body.contains("Too many reset requests"), "{}", page.body);
        let page = ask(&mut elsewhere, &other_csrf, "Ada@Example.com").await;
        retry_after(page.status, &page.headers, 30);
        // The refused request still used this IP's fourth request: one more
        // passes, then the IP is refused whatever the account.
        assert_eq!(ask(&mut browser, &csrf, "bob@example.com").await.status, StatusCode::OK);
        let page = ask(&mut browser, &csrf, "cy@example.com").await;
        retry_after(page.status, &page.headers, 15);
        // cy from another IP is fine.
        assert_eq!(ask(&mut elsewhere, &other_csrf, "cy@example.com").await.status, StatusCode::OK);

        // Only the accepted requests sent mail (cy's was the last).
        wait_for_mail(&server, "cy@example.com", 1).await;
        wait_for_mail(&server, "bob@example.com", 1).await;
        wait_for_mail(&server, "ada@example.com", 2).await;
        assert_eq!(mails_to(&server, "ada@example.com").len(), 2);
        assert_eq!(mails_to(&server, "cy@example.com").len(), 1);
    }
);

/// A `client_credentials` request for the Management API, from `http`,
/// with an optional `Origin`.
async fn client_credentials(
    server: &TestServer,
    http: &reqwest::Client,
    creds: &Creds,
    origin: Option<&str>,
) -> reqwest::Response {
    let mut request = http
        .post(server.url("/oauth/token"))
        .basic_auth(&creds.client_id, Some(&creds.client_secret))
        .form(&[("grant_type", "client_credentials"), ("resource", &server.management_api())]);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.expect("token request")
}

/// Asserts the token endpoint's 429: JSON `too_many_requests`, not cached,
/// with `Retry-After`.
async fn assert_token_limited(response: reqwest::Response, max: u64) -> HeaderMap {
    let (status, headers) = (response.status(), response.headers().clone());
    let body: Value = response.json().await.expect("a JSON error");
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "too_many_requests", "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    retry_after(status, &headers, max);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["content-type"], "application/json");
    headers
}

/// A second client allowed `client_credentials` on the Management API.
async fn second_client(server: &TestServer, admin: &str) -> Creds {
    let created = server
        .create(
            admin,
            "/api/clients",
            "client",
            json!({"name": "Second", "grant_types": ["client_credentials"]}),
            Value::Null,
        )
        .await;
    let row = created["data"]["id"].as_str().unwrap().to_owned();
    let api = system_api(server, admin).await;
    server
        .create(
            admin,
            "/api/client-resource-server-grants",
            "client_resource_server_grant",
            json!({"allowed_scopes": null}),
            json!({"client": {"data": {"type": "client", "id": row}},
                   "resource_server": {"data": {"type": "resource_server", "id": api}}}),
        )
        .await;
    Creds {
        client_id: created["data"]["attributes"]["client_id"].as_str().unwrap().to_owned(),
        client_secret: created["meta"]["client_secret"].as_str().unwrap().to_owned(),
    }
}

db_test!(
    the_token_endpoint_is_limited_per_client,
    config = |c: &mut CoreConfig| {
        c.rate_limits = Some(RateLimits {
            token_client: Rate::per_minute(2),
            token_ip: Rate::per_minute(100),
            ..RateLimits::default()
        })
    },
    |server| {
        let admin = server.admin_token().await; // the admin client's first call
        let second = second_client(&server, &admin).await;
        let http = &server.http;
        assert_eq!(client_credentials(&server, http, &server.admin, None).await.status(), StatusCode::OK);
        let limited = client_credentials(&server, http, &server.admin, Some(ORIGIN)).await;
        let headers = assert_token_limited(limited, 30).await;
        assert_eq!(headers["access-control-allow-origin"], "*", "browser apps can read the 429");
        let exposed = headers["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
        assert!(exposed.contains("retry-after"), "{exposed}");

        // Limited before authentication: a wrong secret is refused the same.
        let guess = Creds { client_id: server.admin.client_id.clone(), client_secret: "guess".into() };
        assert_token_limited(client_credentials(&server, http, &guess, None).await, 30).await;
        let from_elsewhere = http_from(OTHER_IP);
        assert_token_limited(client_credentials(&server, &from_elsewhere, &server.admin, None).await, 30)
            .await;

        // Another client has its own allowance.
        let response = client_credentials(&server, http, &second, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text().await);
    }
);

db_test!(
    the_token_endpoint_is_limited_per_client_ip,
    config = |c: &mut CoreConfig| {
        c.rate_limits = Some(RateLimits {
            token_client: Rate::per_minute(100),
            token_ip: Rate::per_minute(3),
            ..RateLimits::default()
        })
    },
    |server| {
        let admin = server.admin_token().await; // this IP's first call
        let second = second_client(&server, &admin).await;
        let http = &server.http;
        assert_eq!(client_credentials(&server, http, &second, None).await.status(), StatusCode::OK);
        let unknown = Creds { client_id: "nope".into(), client_secret: "nope".into() };
        let response = client_credentials(&server, http, &unknown, None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "the third call is allowed, and fails");
        assert_token_limited(client_credentials(&server, http, &second, None).await, 20).await;
        assert_token_limited(client_credentials(&server, http, &server.admin, None).await, 20).await;

        let elsewhere = http_from(OTHER_IP);
        let response = client_credentials(&server, &elsewhere, &second, None).await;
        assert_eq!(response.status(), StatusCode::OK, "another IP has its own allowance");
    }
);

/// A CORS preflight for `method` on `path`.
async fn preflight(server: &TestServer, path: &str, method: &str) -> reqwest::Response {
    server
        .http
        .request(Method::OPTIONS, server.url(path))
        .header("origin", ORIGIN)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .expect("preflight")
}

db_test!(browser_apps_may_call_the_public_oauth_endpoints_but_not_introspection, |server| {
    for (path, method) in [
        ("/oauth/token", "POST"),
        ("/oauth/revoke", "POST"),
        ("/oauth/userinfo", "GET"),
        ("/.well-known/openid-configuration", "GET"),
        ("/.well-known/jwks.json", "GET"),
    ] {
        let response = preflight(&server, path, method).await;
        assert!(response.status().is_success(), "{path}: {}", response.status());
        let headers = response.headers();
        assert_eq!(
            headers.get("access-control-allow-origin").map(|v| v.to_str().unwrap()),
            Some("*"),
            "{path}"
        );
        let methods = headers["access-control-allow-methods"].to_str().unwrap();
        assert!(methods.contains(method), "{path}: {methods}");
        let allowed = headers["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
        assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{path}: {allowed}");
        assert!(headers.get("access-control-allow-credentials").is_none(), "{path}: no cookies");
    }

    // The actual requests carry the header too.
    let response = client_credentials(&server, &server.http, &server.admin, Some(ORIGIN)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    for path in ["/.well-known/openid-configuration", "/.well-known/jwks.json"] {
        let response = server.http.get(server.url(path)).header("origin", ORIGIN).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["access-control-allow-origin"], "*", "{path}");
    }

    // Introspection is for resource servers, not browsers.
    let response = preflight(&server, "/oauth/introspect", "POST").await;
    assert!(response.headers().get("access-control-allow-origin").is_none(), "{:?}", response.headers());
    let response = server
        .http
        .post(server.url("/oauth/introspect"))
        .header("origin", ORIGIN)
        .basic_auth(&server.admin.client_id, Some(&server.admin.client_secret))
        .form(&[("token", "whatever")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("access-control-allow-origin").is_none(), "{:?}", response.headers());
});

/// A call to `/oauth/{endpoint}` (`token`, `introspect` or `revoke`)
/// authenticated with `creds` over HTTP Basic.
async fn oauth_call(
    server: &TestServer,
    http: &reqwest::Client,
    endpoint: &str,
    creds: &Creds,
) -> reqwest::Response {
    let form: &[(&str, &str)] = match endpoint {
        "token" => &[("grant_type", "client_credentials")],
        _ => &[("token", "not-a-token")],
    };
    http.post(server.url(&format!("/oauth/{endpoint}")))
        .basic_auth(&creds.client_id, Some(&creds.client_secret))
        .form(form)
        .send()
        .await
        .expect("oauth request")
}

db_test!(
    failed_client_authentication_is_limited_per_client,
    config = |c: &mut CoreConfig| {
        c.rate_limits = Some(RateLimits {
            client_auth_client: Rate::per_minute(3),
            client_auth_ip: Rate::per_minute(100),
            ..RateLimits::default()
        })
    },
    |server| {
        let admin = server.admin_token().await;
        let second = second_client(&server, &admin).await;
        let guess = Creds { client_id: second.client_id.clone(), client_secret: "guess".into() };
        let http = &server.http;
        // Three failures are allowed, across the three endpoints; the fourth
        // spends the allowance.
        for endpoint in ["token", "introspect", "revoke"] {
            let response = oauth_call(&server, http, endpoint, &guess).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{endpoint}");
        }
        assert_token_limited(oauth_call(&server, http, "token", &guess).await, 20).await;
        // Now the client's credentials are refused unchecked, even the right
        // ones and from another IP, at every endpoint.
        let elsewhere = http_from(OTHER_IP);
        for endpoint in ["token", "introspect", "revoke"] {
            assert_token_limited(oauth_call(&server, http, endpoint, &second).await, 20).await;
            assert_token_limited(oauth_call(&server, &elsewhere, endpoint, &second).await, 20).await;
        }
        // Successes never count: the admin client goes on.
        for _ in 0..5 {
            let response = client_credentials(&server, http, &server.admin, None).await;
            assert_eq!(response.status(), StatusCode::OK);
        }
    }
);

db_test!(
    failed_client_authentication_is_limited_per_client_ip,
    config = |c: &mut CoreConfig| {
        c.rate_limits = Some(RateLimits {
            client_auth_client: Rate::per_minute(100),
            client_auth_ip: Rate::per_minute(3),
            ..RateLimits::default()
        })
    },
    |server| {
        let http = &server.http;
        // Made-up client ids, a malformed Basic header: all failures of this IP.
        for n in 0..2 {
            let unknown = Creds { client_id: format!("nope-{n}"), client_secret: "nope".into() };
            let response = oauth_call(&server, http, "introspect", &unknown).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
        let malformed = http
            .post(server.url("/oauth/token"))
            .header("authorization", "Basic %%%")
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(malformed.status(), StatusCode::UNAUTHORIZED);
        let fourth = Creds { client_id: "nope-3".into(), client_secret: "nope".into() };
        assert_token_limited(oauth_call(&server, http, "revoke", &fourth).await, 20).await;
        assert_token_limited(client_credentials(&server, http, &server.admin, None).await, 20).await;

        let elsewhere = http_from(OTHER_IP);
        let response = client_credentials(&server, &elsewhere, &server.admin, None).await;
        assert_eq!(response.status(), StatusCode::OK, "another IP has its own allowance");
    }
);
