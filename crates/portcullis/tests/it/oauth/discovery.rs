//! Discovery (OpenID Connect Discovery 1.0, RFC 8414), the JWKS, and hosts
//! that name no environment.

use reqwest::StatusCode;
use serde_json::Value;

use super::support::{ClientAuth, Reply, jwks, kid_of, post_form};
use crate::db_test;
use crate::harness::TestServer;

async fn metadata(server: &TestServer, handle: &str, path: &str) -> Value {
    let response = server.http.get(format!("{}{path}", server.issuer(handle))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    response.json().await.unwrap()
}

db_test!(discovery_documents_describe_the_environment, |server| {
    let issuer = server.issuer("acme-test");
    let oidc = metadata(&server, "acme-test", "/.well-known/openid-configuration").await;
    let oauth = metadata(&server, "acme-test", "/.well-known/oauth-authorization-server").await;
    assert_eq!(oidc, oauth);

    // The issuer is identical to the one clients use and to `iss` in tokens.
    assert_eq!(oidc["issuer"], issuer.as_str());
    let admin = server.admin_token().await;
    assert_eq!(crate::oauth::support::decode_jwt(&admin).1["iss"], oidc["issuer"]);
    assert!(!issuer.ends_with('/'));

    for (name, path) in [
        ("token_endpoint", "/oauth/token"),
        ("introspection_endpoint", "/oauth/introspect"),
        ("revocation_endpoint", "/oauth/revoke"),
        ("jwks_uri", "/.well-known/jwks.json"),
    ] {
        assert_eq!(oidc[name], format!("{issuer}{path}"), "{name}");
    }
    let has = |field: &str, value: &str| {
        oidc[field].as_array().unwrap_or_else(|| panic!("{field} in {oidc}")).iter().any(|v| v == value)
    };
    assert!(has("grant_types_supported", "client_credentials"));
    for method in ["client_secret_basic", "client_secret_post"] {
        assert!(has("token_endpoint_auth_methods_supported", method), "{method}");
        assert!(has("introspection_endpoint_auth_methods_supported", method), "{method}");
        assert!(has("revocation_endpoint_auth_methods_supported", method), "{method}");
    }
    assert!(oidc["response_types_supported"].is_array());
    assert!(has("subject_types_supported", "public"));
    assert_eq!(oidc["resource_indicators_supported"], true);
    // Every advertised endpoint is an absolute URL on this host.
    for (name, value) in oidc.as_object().unwrap() {
        if name.ends_with("_endpoint") || name.ends_with("_uri") {
            assert!(value.as_str().unwrap().starts_with(&format!("{issuer}/")), "{name}: {value}");
        }
    }

    // Each endpoint exists and behaves: the token endpoint issues a token,
    // introspection and revocation demand client authentication, the JWKS
    // lists the key that signed it.
    let reply = post_form(
        &server,
        "acme-test",
        "/oauth/token",
        ClientAuth::Basic(&server.admin),
        &[("grant_type", "client_credentials"), ("resource", &server.management_api())],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let access = reply.body["access_token"].as_str().unwrap().to_owned();
    for endpoint in ["introspection_endpoint", "revocation_endpoint"] {
        let url = oidc[endpoint].as_str().unwrap();
        let reply =
            Reply::from(server.http.post(url).form(&[("token", access.as_str())]).send().await.unwrap())
                .await;
        reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        let reply = Reply::from(
            server
                .http
                .post(url)
                .basic_auth(&server.admin.client_id, Some(&server.admin.client_secret))
                .form(&[("token", access.as_str())])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{endpoint}: {}", reply.body);
    }
    let set: Value =
        server.http.get(oidc["jwks_uri"].as_str().unwrap()).send().await.unwrap().json().await.unwrap();
    assert!(set["keys"].as_array().unwrap().iter().any(|k| k["kid"] == kid_of(&access)));
    assert_eq!(set, jwks(&server, "acme-test").await);
});

db_test!(each_environment_has_its_own_metadata, |server| {
    server.create_environment("beta").await;
    let acme = metadata(&server, "acme-test", "/.well-known/openid-configuration").await;
    let beta = metadata(&server, "beta", "/.well-known/openid-configuration").await;
    assert_eq!(beta["issuer"], server.issuer("beta"));
    assert_eq!(beta["token_endpoint"], format!("{}/oauth/token", server.issuer("beta")));
    assert_ne!(acme["issuer"], beta["issuer"]);
    // Host matching ignores case and a trailing dot, and the issuer stays canonical.
    let response = server
        .http
        .get(format!("http://127.0.0.1:{}/.well-known/openid-configuration", server.port))
        .header("host", format!("BETA.localhost.:{}", server.port))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let via_odd_host: Value = response.json().await.unwrap();
    assert_eq!(via_odd_host["issuer"], server.issuer("beta"));

    let acme_keys = crate::oauth::support::jwks_kids(&jwks(&server, "acme-test").await);
    let beta_keys = crate::oauth::support::jwks_kids(&jwks(&server, "beta").await);
    assert!(acme_keys.iter().all(|k| !beta_keys.contains(k)), "{acme_keys:?} {beta_keys:?}");
});

db_test!(unknown_hosts_get_a_json_api_404, |server| {
    // A client that resolves an unknown name to loopback.
    let loopback: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve("nosuch.localhost", loopback)
        .resolve("evil.acme-test.localhost", loopback)
        .build()
        .unwrap();
    let port = server.port;
    let mut urls: Vec<String> = ["nosuch.localhost", "evil.acme-test.localhost"]
        .iter()
        .flat_map(|host| {
            ["/.well-known/openid-configuration", "/.well-known/jwks.json", "/api/users"]
                .map(|path| format!("http://{host}:{port}{path}"))
        })
        .collect();
    urls.push(format!("http://127.0.0.1:{port}/.well-known/openid-configuration"));
    for url in &urls {
        let reply = Reply::from(client.get(url).send().await.unwrap()).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{url}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some("application/vnd.api+json"), "{url}");
        assert_eq!(reply.body["errors"][0]["status"], "404", "{url}: {}", reply.body);
    }
    let reply = Reply::from(
        client
            .post(format!("http://nosuch.localhost:{port}/oauth/token"))
            .form(&[("a", "b")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body["errors"][0]["status"], "404");

    // Hosts that only look like an environment's.
    for host in [
        format!("acme-test.localhost.evil.example:{port}"),
        format!("acme-test.example:{port}"),
        format!("localhost:{port}"),
        format!(".localhost:{port}"),
    ] {
        let reply = Reply::from(
            server
                .http
                .get(format!("http://127.0.0.1:{port}/.well-known/openid-configuration"))
                .header("host", &host)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{host}: {}", reply.body);
        assert_eq!(reply.body["errors"][0]["status"], "404", "{host}");
    }
    // An unknown path on a known host is a JSON:API 404 too.
    let reply = Reply::from(server.http.get(server.url("/.well-known/nope")).send().await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body["errors"][0]["status"], "404");
});
