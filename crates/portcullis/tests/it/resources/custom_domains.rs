//! Custom domains: created pending, proven by a CNAME or a TXT challenge
//! that a real DNS server on loopback answers (`crate::dns`), failed by a
//! record that points elsewhere or disappears, re-checked in the
//! background; one per environment, each domain in one environment only.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{assert_conflict, assert_invalid, assert_not_found, id_of};
use crate::dns_test;
use crate::harness::TestServer;
use crate::resources::support::doc;

const PATH: &str = "/api/custom-domains";

async fn verify(server: &TestServer, token: &str, id: &str) -> Value {
    let (status, body) = server.api(Method::POST, &format!("{PATH}/{id}/verify"), token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["attributes"].clone()
}

async fn events(server: &TestServer, action: &str) -> i64 {
    server.count(&format!("SELECT COUNT(*) FROM audit_events WHERE action = '{action}'")).await
}

dns_test!(
    a_domain_is_proven_by_its_cname_or_txt_record_and_fails_when_it_points_elsewhere,
    poll = None,
    |server, dns| {
        let admin = server.admin_token().await;
        let (status, body) = server
            .api(
                Method::POST,
                PATH,
                &admin,
                Some(doc("custom_domain", json!({"domain": "Auth.Acme.Example."}))),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = id_of(&body);
        let attributes = &body["data"]["attributes"];
        assert_eq!(attributes["domain"], "auth.acme.example");
        assert_eq!(attributes["status"], "pending");
        assert_eq!(attributes["verified_at"], Value::Null);
        let records = attributes["dns_records"].as_array().unwrap();
        let cname = records.iter().find(|r| r["type"] == "CNAME").expect("a CNAME record to publish");
        assert_eq!(cname["name"], "auth.acme.example");
        assert_eq!(cname["value"], "acme-test.localhost");
        let txt = records.iter().find(|r| r["type"] == "TXT").expect("a TXT record to publish");
        assert_eq!(txt["name"], "_portcullis-challenge.auth.acme.example");
        let challenge = txt["value"].as_str().unwrap().to_owned();
        assert!(
            challenge.starts_with("portcullis-domain-verification=") && challenge.len() > 40,
            "{challenge}"
        );

        // Nothing published yet: still pending, and it says what is missing.
        let checked = verify(&server, &admin, &id).await;
        assert_eq!(checked["status"], "pending");
        assert!(checked["failure"].as_str().unwrap().contains("no CNAME"), "{checked}");
        assert!(checked["last_checked_at"].is_string());

        // A CNAME to somewhere else fails it, naming the target.
        dns.set_cname("auth.acme.example", "evil.example");
        let checked = verify(&server, &admin, &id).await;
        assert_eq!(checked["status"], "failed");
        assert!(checked["failure"].as_str().unwrap().contains("evil.example"), "{checked}");

        // The right CNAME makes it active.
        dns.set_cname("auth.acme.example", "acme-test.localhost");
        let checked = verify(&server, &admin, &id).await;
        assert_eq!(checked["status"], "active", "{checked}");
        assert_eq!(checked["failure"], Value::Null);
        assert!(checked["verified_at"].is_string());
        // Checking again changes nothing and records no event.
        assert_eq!(verify(&server, &admin, &id).await["status"], "active");

        // The record disappears: failed, saying so.
        dns.clear("auth.acme.example");
        let checked = verify(&server, &admin, &id).await;
        assert_eq!(checked["status"], "failed");
        assert!(checked["failure"].as_str().unwrap().contains("gone"), "{checked}");

        // A wrong TXT value is named; the right one proves it without a CNAME.
        dns.set_txt("_portcullis-challenge.auth.acme.example", "portcullis-domain-verification=guess");
        let checked = verify(&server, &admin, &id).await;
        assert_eq!(checked["status"], "failed");
        assert!(checked["failure"].as_str().unwrap().contains("guess"), "{checked}");
        dns.set_txt("_portcullis-challenge.auth.acme.example", &challenge);
        assert_eq!(verify(&server, &admin, &id).await["status"], "active");

        // Each change of status is in the audit trail once.
        assert_eq!(events(&server, "custom_domain.created").await, 1);
        assert_eq!(events(&server, "custom_domain.verified").await, 2);
        assert_eq!(events(&server, "custom_domain.failed").await, 2);
        let (status, body) =
            server.api(Method::GET, &format!("{PATH}?filter[status]=active"), &admin, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"].as_array().unwrap().len(), 1);

        // Deleted: gone, audited; the default host was never affected.
        let (status, _) = server.api(Method::DELETE, &format!("{PATH}/{id}"), &admin, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = server.api(Method::GET, &format!("{PATH}/{id}"), &admin, None).await;
        assert_not_found(status, &body);
        let (status, body) = server.api(Method::POST, &format!("{PATH}/{id}/verify"), &admin, None).await;
        assert_not_found(status, &body);
        assert_eq!(events(&server, "custom_domain.deleted").await, 1);
    }
);

dns_test!(a_domain_belongs_to_one_environment_and_an_environment_has_one, poll = None, |server, _dns| {
    let admin = server.admin_token().await;
    let create = |domain: &str| Some(doc("custom_domain", json!({"domain": domain})));
    let (status, body) = server.api(Method::POST, PATH, &admin, create("login.acme.example")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = id_of(&body);

    // One per environment.
    let (status, body) = server.api(Method::POST, PATH, &admin, create("sso.acme.example")).await;
    assert_conflict(status, &body, "/data/attributes/domain");

    // Another environment can neither claim the domain nor see or check it.
    let other = server.create_environment("other").await;
    let other = server.management_token("other", &other, None).await;
    let (status, body) =
        server.api_at("other", Method::POST, PATH, &other, create("LOGIN.acme.example")).await;
    assert_conflict(status, &body, "/data/attributes/domain");
    assert!(!body.to_string().contains("acme-test"), "the conflict does not say who holds it: {body}");
    let (status, body) = server.api_at("other", Method::GET, PATH, &other, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"], json!([]));
    let (status, body) =
        server.api_at("other", Method::POST, &format!("{PATH}/{id}/verify"), &other, None).await;
    assert_not_found(status, &body);
    let (status, body) = server.api_at("other", Method::DELETE, &format!("{PATH}/{id}"), &other, None).await;
    assert_not_found(status, &body);

    // Once deleted here, the other environment may have it.
    let (status, _) = server.api(Method::DELETE, &format!("{PATH}/{id}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) =
        server.api_at("other", Method::POST, PATH, &other, create("login.acme.example")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(server.count("SELECT COUNT(*) FROM custom_domains").await, 1);

    // Host names only, and none of the installation's own.
    for bad in [
        json!({"domain": "localhost"}),
        json!({"domain": "acme-test.localhost"}),
        json!({"domain": "auth.acme.example:8443"}),
        json!({"domain": "*.acme.example"}),
        json!({"domain": "127.0.0.1"}),
        json!({"domain": "bücher.example"}),
        json!({"domain": ""}),
        json!({"domain": 7}),
    ] {
        let (status, body) =
            server.api(Method::POST, PATH, &admin, Some(doc("custom_domain", bad.clone()))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        if bad["domain"].is_string() {
            assert_invalid(status, &body, "domain");
        }
    }
    let (status, body) = server
        .api(
            Method::POST,
            PATH,
            &admin,
            Some(doc("custom_domain", json!({"domain": "a.example", "status": "active"}))),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a client cannot set the status: {body}");
    assert_eq!(server.count("SELECT COUNT(*) FROM custom_domains").await, 1);
});

dns_test!(
    the_background_check_activates_a_published_domain,
    poll = Some(Duration::from_millis(100)),
    |server, dns| {
        let admin = server.admin_token().await;
        dns.set_cname("id.globex.example", "acme-test.localhost");
        let (status, body) = server
            .api(
                Method::POST,
                PATH,
                &admin,
                Some(doc("custom_domain", json!({"domain": "id.globex.example"}))),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = id_of(&body);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, body) = server.api(Method::GET, &format!("{PATH}/{id}"), &admin, None).await;
            if body["data"]["attributes"]["status"] == "active" {
                break;
            }
            assert!(Instant::now() < deadline, "the background check did not activate the domain: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The platform did it, and said so once.
        let (status, body) = server
            .api(Method::GET, "/api/audit-events?filter[action]=custom_domain.verified", &admin, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"].as_array().unwrap().len(), 1, "{body}");
        assert_eq!(body["data"][0]["attributes"]["actor"]["type"], "system", "{body}");
    }
);

/// A client that resolves `host` to the test server.
fn client_for(host: &str, port: u16) -> reqwest::Client {
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    reqwest::Client::builder().no_proxy().resolve(host, loopback).build().unwrap()
}

/// `GET {base}{path}`, with `token` if given.
async fn get_at(base: &str, host: &str, port: u16, path: &str, token: Option<&str>) -> StatusCode {
    let mut request = client_for(host, port).get(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request").status()
}

/// `POST {base}/oauth/token` with Basic client authentication.
async fn token_at(
    base: &str,
    host: &str,
    port: u16,
    creds: &crate::harness::Creds,
    form: &[(&str, &str)],
) -> Value {
    let response = client_for(host, port)
        .post(format!("{base}/oauth/token"))
        .basic_auth(&creds.client_id, Some(&creds.client_secret))
        .form(form)
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

dns_test!(an_active_domain_serves_the_environment_as_its_own_issuer, poll = None, |server, dns| {
    use crate::signin::support::{
        Browser, REDIRECT_URI, authorize_path, claims_of, code_request, create_client, create_person, pkce,
        query_of,
    };

    const HOST: &str = "auth.acme.example";
    let base = format!("http://{HOST}:{}", server.port);
    let default = server.issuer("acme-test");
    let admin = server.admin_token().await;
    let (_, body) =
        server.api(Method::POST, PATH, &admin, Some(doc("custom_domain", json!({"domain": HOST})))).await;
    let id = id_of(&body);

    // Pending: the host names no environment yet.
    let mut browser = Browser::at_host(&server, HOST);
    let page = browser.get("/.well-known/openid-configuration").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);

    dns.set_cname(HOST, "acme-test.localhost");
    assert_eq!(verify(&server, &admin, &id).await["status"], "active");

    // Discovery at the custom domain names it; the default host keeps its own.
    let page = browser.get("/.well-known/openid-configuration").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let discovery: Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(discovery["issuer"], base.as_str());
    for endpoint in ["authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"] {
        assert!(discovery[endpoint].as_str().unwrap().starts_with(&base), "{endpoint}: {discovery}");
    }
    let page = Browser::new(&server).get("/.well-known/openid-configuration").await;
    let discovery: Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(discovery["issuer"], default.as_str());

    // A code + PKCE sign-in through the custom domain: every URL and the
    // tokens' issuer are the custom domain's.
    let client = create_client(&server, &admin, json!({"first_party": true})).await;
    create_person(&server, &admin, "ada@example.com").await;
    let (verifier, challenge) = pkce();
    let redirect = browser
        .authorize(&authorize_path(&code_request(&client, "openid email", &challenge)), "ada@example.com")
        .await;
    assert!(redirect.starts_with(REDIRECT_URI), "{redirect}");
    let query = query_of(&redirect);
    assert_eq!(query["iss"], base, "RFC 9207 iss names the custom domain");
    let tokens = token_at(
        &base,
        HOST,
        server.port,
        &client.creds,
        &[
            ("grant_type", "authorization_code"),
            ("code", &query["code"]),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    let id_token = claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!(id_token["iss"], base.as_str());
    assert_eq!(id_token["email"], "ada@example.com");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(claims_of(access)["iss"], base.as_str());
    // The default host accepts the custom domain's token, and the reverse.
    let (status, info, _) = crate::signin::support::userinfo(&server, access).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["email"], "ada@example.com");

    // Management API tokens of either host work at both.
    let custom_admin = token_at(
        &base,
        HOST,
        server.port,
        &server.admin,
        &[("grant_type", "client_credentials"), ("resource", &format!("{base}/api"))],
    )
    .await;
    let custom_admin = custom_admin["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims_of(&custom_admin)["iss"], base.as_str());
    let (status, body) = server.api(Method::GET, PATH, &custom_admin, None).await;
    assert_eq!(status, StatusCode::OK, "the default host takes the custom domain's token: {body}");
    assert_eq!(get_at(&base, HOST, server.port, PATH, Some(&admin)).await, StatusCode::OK);
    assert_eq!(get_at(&base, HOST, server.port, PATH, Some(&custom_admin)).await, StatusCode::OK);
    assert_eq!(get_at(&base, HOST, server.port, PATH, None).await, StatusCode::UNAUTHORIZED);

    // Checked from the custom domain itself, the CNAME target is still the
    // default host, and the domain stays active.
    let response = client_for(HOST, server.port)
        .post(format!("{base}{PATH}/{id}/verify"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("verify at the custom domain");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["attributes"]["status"], "active", "{body}");
    let records = body["data"]["attributes"]["dns_records"].as_array().unwrap();
    let cname = records.iter().find(|r| r["type"] == "CNAME").expect("CNAME");
    assert_eq!(cname["value"], "acme-test.localhost", "{body}");

    // Another environment refuses both.
    server.create_environment("other").await;
    for token in [&custom_admin, &admin] {
        let (status, body) = server.api_at("other", Method::GET, "/api/users", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }

    // The record goes: the domain fails and stops being served; the
    // default host never stopped.
    dns.clear(HOST);
    assert_eq!(verify(&server, &admin, &id).await["status"], "failed");
    let page = browser.get("/.well-known/openid-configuration").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
    let (status, body) = server.api(Method::GET, PATH, &custom_admin, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "its issuer went with it: {body}");
    let (status, _) = server.api(Method::GET, PATH, &admin, None).await;
    assert_eq!(status, StatusCode::OK);
});

crate::db_test!(a_domain_activated_by_another_process_is_served_once_known_without_misses, |server| {
    let host = "auth.elsewhere.example";
    let url = format!("http://{host}:{}/.well-known/jwks.json", server.port);
    // The index is loaded (no custom domains yet)...
    assert_eq!(get_at(&url, host, server.port, "", None).await, StatusCode::NOT_FOUND);
    // ...then another process activates a domain, which this one's index
    // cannot know until it reloads (at most every 5 s).
    let environment: String = {
        use sqlx::Row;
        let row = sqlx::query("SELECT id FROM environments WHERE handle = 'acme-test'")
            .fetch_one(server.core.db.pool())
            .await
            .unwrap();
        row.try_get(0).unwrap()
    };
    let now = portcullis_store::now_micros();
    let insert = format!(
        "INSERT INTO custom_domains (id, environment_id, domain, status, verification_token, verified_at, \
         next_check_at, checks, inserted_at, updated_at) \
         VALUES ('d-elsewhere', '{environment}', '{host}', 'active', 'token', {now}, {later}, 0, {now}, {now})",
        later = now + 3_600_000_000
    );
    sqlx::query(sqlx::AssertSqlSafe(insert)).execute(server.core.db.pool()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5_200)).await;
    // Once the index is stale, the many requests that arrive while one of
    // them reloads it wait for that reload instead of missing the domain.
    let port = server.port;
    let requests = (0..32).map(|_| {
        let url = url.clone();
        async move { get_at(&url, host, port, "", None).await }
    });
    let statuses = futures_like_join_all(requests).await;
    assert!(statuses.iter().all(|status| *status == StatusCode::OK), "{statuses:?}");
});

/// Runs every future concurrently (the test crate has no `futures`).
async fn futures_like_join_all<F: std::future::Future<Output = StatusCode> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<StatusCode> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut statuses = Vec::new();
    for handle in handles {
        statuses.push(handle.await.expect("request task"));
    }
    statuses
}
