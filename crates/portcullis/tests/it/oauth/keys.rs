//! Signing keys and their effect on tokens and the JWKS (paylent.md §5.11).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::{
    ClientAuth, Reply, api_get, assert_inactive, decode_jwt, eventually, introspect, jwks, jwks_kids, kid_of,
    token,
};
use crate::db_test;
use crate::harness::{Backend, Peer, TestServer};

/// Creates a key; returns its resource object.
async fn create_key(server: &TestServer, admin: &str, attributes: Value) -> Value {
    let created = server.create(admin, "/api/signing-keys", "signing_key", attributes, json!(null)).await;
    created["data"].clone()
}

async fn key_action(server: &TestServer, admin: &str, id: &str, action: &str) -> (StatusCode, Value) {
    server.api(Method::PATCH, &format!("/api/signing-keys/{id}/{action}"), admin, None).await
}

async fn get_key(server: &TestServer, admin: &str, id: &str) -> Value {
    let (status, body) = server.api(Method::GET, &format!("/api/signing-keys/{id}"), admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].clone()
}

async fn primary_kids(server: &TestServer, admin: &str) -> Vec<String> {
    let (status, body) = server.api(Method::GET, "/api/signing-keys?filter[primary]=true", admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["attributes"]["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts a JWKS entry is a public signing key of `alg`, with no private members.
fn assert_public_jwk(jwk: &Value, kty: &str, alg: &str) {
    assert_eq!(jwk["kty"], kty, "{jwk}");
    assert_eq!(jwk["alg"], alg, "{jwk}");
    assert_eq!(jwk["use"], "sig", "{jwk}");
    assert_eq!(jwk["kid"].as_str().map(str::len), Some(11), "{jwk}");
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        assert!(jwk.get(private).is_none(), "private member `{private}` in {jwk}");
    }
    match kty {
        "RSA" => assert!(jwk["n"].is_string() && jwk["e"].is_string(), "{jwk}"),
        "EC" => {
            assert_eq!(jwk["crv"], "P-256", "{jwk}");
            assert!(jwk["x"].is_string() && jwk["y"].is_string(), "{jwk}");
        }
        "OKP" => {
            assert_eq!(jwk["crv"], "Ed25519", "{jwk}");
            assert!(jwk["x"].is_string(), "{jwk}");
        }
        other => panic!("unexpected kty {other}"),
    }
}

fn jwk_by_kid<'a>(jwks: &'a Value, kid: &str) -> &'a Value {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("{kid} in {jwks}"))
}

db_test!(new_keys_become_primary_and_sign_new_tokens, |server| {
    let admin = server.admin_token().await;
    let original = kid_of(&admin);
    let initial = jwks(&server, "acme-test").await;
    assert_eq!(jwks_kids(&initial), vec![original.clone()]);
    assert_public_jwk(jwk_by_kid(&initial, &original), "EC", "ES256");

    for (attributes, kty, alg) in [
        (json!({"algorithm": "eddsa"}), "OKP", "EdDSA"),
        (json!({"algorithm": "rs256", "key_size": 2048}), "RSA", "RS256"),
        (json!({"algorithm": "es256"}), "EC", "ES256"),
    ] {
        let before = server.admin_token().await;
        let key = create_key(&server, &admin, attributes.clone()).await;
        let attrs = &key["attributes"];
        assert_eq!(attrs["primary"], true, "{key}");
        assert_eq!(attrs["status"], "active");
        assert_eq!(attrs["algorithm"], attributes["algorithm"]);
        assert!(attrs.get("private_key").is_none(), "{key}");
        assert_public_jwk(&attrs["public_key"], kty, alg);
        let kid = attrs["kid"].as_str().unwrap().to_owned();
        assert_eq!(primary_kids(&server, &admin).await, vec![kid.clone()]);

        // New tokens carry the new kid and alg.
        let fresh = server.admin_token().await;
        let (header, _) = decode_jwt(&fresh);
        assert_eq!(header["kid"], kid.as_str());
        assert_eq!(header["alg"], alg);
        assert_eq!(api_get(&server, "acme-test", "/api/users", &fresh).await.status, StatusCode::OK);
        // Tokens signed by the previous primary still verify while it is active.
        assert_ne!(kid_of(&before), kid);
        assert_eq!(api_get(&server, "acme-test", "/api/users", &before).await.status, StatusCode::OK);
        assert_eq!(introspect(&server, "acme-test", &server.admin, &before).await.body["active"], true);

        // The JWKS lists it with every other active key.
        let set = jwks(&server, "acme-test").await;
        assert!(jwks_kids(&set).contains(&kid));
        assert_public_jwk(jwk_by_kid(&set, &kid), kty, alg);
    }
    let set = jwks(&server, "acme-test").await;
    assert_eq!(jwks_kids(&set).len(), 4);
    assert!(jwks_kids(&set).contains(&original));
    // The original admin token (first key) still works.
    assert_eq!(api_get(&server, "acme-test", "/api/users", &admin).await.status, StatusCode::OK);

    // The JWKS response is plain JSON with a short public cache.
    let response = server.http.get(server.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let cache = response.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(cache.contains("max-age"), "{cache}");
});

db_test!(invalid_key_requests_are_422, |server| {
    let admin = server.admin_token().await;
    for attributes in [
        json!({"algorithm": "hs256"}),
        json!({"algorithm": "rs256", "key_size": 1024}),
        json!({"algorithm": "es256", "key_size": 2048}),
        json!({"algorithm": "rs256", "key_size": 2048, "private_key": "x"}),
    ] {
        let (status, body) = server
            .api(
                Method::POST,
                "/api/signing-keys",
                &admin,
                Some(json!({"data": {"type": "signing_key", "attributes": attributes}})),
            )
            .await;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
            "{attributes}: {status} {body}"
        );
    }
    // Nothing changed.
    assert_eq!(jwks_kids(&jwks(&server, "acme-test").await), vec![kid_of(&admin)]);
    // Writing keys needs signing_keys:write.
    let (_, creds) =
        crate::oauth::support::management_client(&server, &admin, "Key reader", &["signing_keys:read"]).await;
    let reader = server.management_token("acme-test", &creds, None).await;
    let (status, _) = server
        .api(
            Method::POST,
            "/api/signing-keys",
            &reader,
            Some(json!({"data": {"type": "signing_key", "attributes": {"algorithm": "es256"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
});

db_test!(deactivation_removes_the_key_and_refuses_its_tokens, |server| {
    let admin = server.admin_token().await;
    let (_, list) = server.api(Method::GET, "/api/signing-keys", &admin, None).await;
    let first = list["data"][0].clone();
    let first_id = first["id"].as_str().unwrap().to_owned();
    let first_kid = first["attributes"]["kid"].as_str().unwrap().to_owned();
    assert_eq!(kid_of(&admin), first_kid);

    let second = create_key(&server, &admin, json!({"algorithm": "es256"})).await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    let second_kid = second["attributes"]["kid"].as_str().unwrap().to_owned();
    let third = create_key(&server, &admin, json!({"algorithm": "eddsa"})).await;
    let third_id = third["id"].as_str().unwrap().to_owned();
    let third_kid = third["attributes"]["kid"].as_str().unwrap().to_owned();
    let by_third = server.admin_token().await;
    assert_eq!(kid_of(&by_third), third_kid);

    // Deactivating a non-primary key: gone from the JWKS, its tokens refused at once.
    let (status, body) = key_action(&server, &by_third, &first_id, "deactivate").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["status"], "inactive");
    assert_eq!(body["data"]["attributes"]["primary"], false);
    assert!(body["data"]["attributes"]["deactivated_at"].is_string());
    let set = jwks(&server, "acme-test").await;
    assert!(!jwks_kids(&set).contains(&first_kid), "{set}");
    assert_eq!(jwks_kids(&set).len(), 2);
    let reply = api_get(&server, "acme-test", "/api/users", &admin).await;
    reply.assert_bearer_failure(StatusCode::UNAUTHORIZED);
    assert!(reply.header("www-authenticate").unwrap().contains("invalid_token"));
    assert_inactive(&introspect(&server, "acme-test", &server.admin, &admin).await);
    // The primary did not change.
    assert_eq!(primary_kids(&server, &by_third).await, vec![third_kid.clone()]);
    // Deactivating it again is an error, as is making it primary.
    let (status, body) = key_action(&server, &by_third, &first_id, "deactivate").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = key_action(&server, &by_third, &first_id, "set-primary").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(primary_kids(&server, &by_third).await, vec![third_kid.clone()]);

    // Deactivating the primary promotes the most recently created active key.
    let (status, body) = key_action(&server, &by_third, &third_id, "deactivate").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let promoted = get_key(&server, &server.admin_token().await, &second_id).await;
    assert_eq!(promoted["attributes"]["primary"], true, "{promoted}");
    assert_eq!(promoted["attributes"]["status"], "active");
    let by_second = server.admin_token().await;
    assert_eq!(kid_of(&by_second), second_kid);
    assert_eq!(api_get(&server, "acme-test", "/api/users", &by_third).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(jwks_kids(&jwks(&server, "acme-test").await), vec![second_kid.clone()]);

    // The last active key cannot be deactivated: the environment must keep signing.
    let (status, body) = key_action(&server, &by_second, &second_id, "deactivate").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["errors"][0]["status"], "409");
    assert!(body["errors"][0]["detail"].as_str().unwrap().contains("last active"), "{body}");
    let still = get_key(&server, &by_second, &second_id).await;
    assert_eq!(
        (still["attributes"]["status"].as_str(), still["attributes"]["primary"].as_bool()),
        (Some("active"), Some(true))
    );
    assert_eq!(api_get(&server, "acme-test", "/api/users", &by_second).await.status, StatusCode::OK);
    assert_eq!(kid_of(&server.admin_token().await), second_kid);

    // Deactivation is audited.
    let (_, events) = server
        .api(Method::GET, "/api/audit-events?filter[action]=signing_key.deactivated", &by_second, None)
        .await;
    assert_eq!(events["data"].as_array().map(Vec::len), Some(2), "{events}");
});

db_test!(set_primary_switches_the_signing_key, |server| {
    let admin = server.admin_token().await;
    let first_kid = kid_of(&admin);
    let (_, list) = server.api(Method::GET, "/api/signing-keys", &admin, None).await;
    let first_id = list["data"][0]["id"].as_str().unwrap().to_owned();
    let second = create_key(&server, &admin, json!({"algorithm": "rs256", "key_size": 2048})).await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    let second_kid = second["attributes"]["kid"].as_str().unwrap().to_owned();
    assert_eq!(decode_jwt(&server.admin_token().await).0["alg"], "RS256");

    let (status, body) = key_action(&server, &admin, &first_id, "set-primary").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["primary"], true);
    assert_eq!(primary_kids(&server, &admin).await, vec![first_kid.clone()]);
    assert_eq!(get_key(&server, &admin, &second_id).await["attributes"]["primary"], false);
    let token_now = server.admin_token().await;
    assert_eq!(kid_of(&token_now), first_kid);
    assert_eq!(decode_jwt(&token_now).0["alg"], "ES256");
    // Both keys stay in the JWKS.
    let kids = jwks_kids(&jwks(&server, "acme-test").await);
    assert!(kids.contains(&first_kid) && kids.contains(&second_kid), "{kids:?}");
    // Setting the current primary again is harmless.
    let (status, _) = key_action(&server, &admin, &first_id, "set-primary").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(primary_kids(&server, &admin).await, vec![first_kid.clone()]);

    // Unknown ids are 404, and other environments' keys are invisible.
    let (status, body) =
        key_action(&server, &admin, "00000000-0000-7000-8000-000000000000", "set-primary").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let beta = server.create_environment("beta").await;
    let beta_admin = server.management_token("beta", &beta, None).await;
    let (status, _) = server
        .api_at(
            "beta",
            Method::PATCH,
            &format!("/api/signing-keys/{second_id}/deactivate"),
            &beta_admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server
        .api_at(
            "beta",
            Method::PATCH,
            &format!("/api/signing-keys/{first_id}/set-primary"),
            &beta_admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(get_key(&server, &admin, &second_id).await["attributes"]["status"], "active");
    assert_eq!(primary_kids(&server, &admin).await, vec![first_kid]);
});

async fn peer_token(server: &TestServer, peer: &Peer) -> String {
    let response = peer
        .request(server, Method::POST, "acme-test", "/oauth/token")
        .basic_auth(&server.admin.client_id, Some(&server.admin.client_secret))
        .form(&[("grant_type", "client_credentials"), ("resource", server.management_api().as_str())])
        .send()
        .await
        .unwrap();
    let reply = Reply::from(response).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["access_token"].as_str().unwrap().to_owned()
}

async fn peer_get(server: &TestServer, peer: &Peer, token: &str) -> StatusCode {
    peer.request(server, Method::GET, "acme-test", "/api/users")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

db_test!(a_peer_process_follows_key_rotation, |server| {
    if server.backend != Backend::Postgres {
        return;
    }
    let peer = server.start_peer().await;
    let (s, p) = (&server, &peer);

    // The peer signs with the original key (and has cached it).
    let admin = server.admin_token().await;
    let original = kid_of(&admin);
    let old_token = peer_token(s, p).await;
    assert_eq!(kid_of(&old_token), original);
    assert_eq!(peer_get(s, p, &old_token).await, StatusCode::OK);

    // Rotate through the main server; the peer follows.
    let key = create_key(&server, &admin, json!({"algorithm": "es256"})).await;
    let new_kid = key["attributes"]["kid"].as_str().unwrap().to_owned();
    let wanted = new_kid.as_str();
    let rotated = eventually("the peer signs with the new key", || async move {
        let token = peer_token(s, p).await;
        (kid_of(&token) == wanted).then_some(token)
    })
    .await;
    // Both verify on both processes while both keys are active.
    assert_eq!(peer_get(s, p, &rotated).await, StatusCode::OK);
    assert_eq!(peer_get(s, p, &old_token).await, StatusCode::OK);
    assert_eq!(api_get(&server, "acme-test", "/api/users", &rotated).await.status, StatusCode::OK);
    let peer_jwks: Value = peer
        .request(&server, Method::GET, "acme-test", "/.well-known/jwks.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(jwks_kids(&peer_jwks).contains(&new_kid));

    // Deactivate the original through the main server; the peer refuses its tokens.
    let (_, list) =
        server.api(Method::GET, &format!("/api/signing-keys?filter[kid]={original}"), &admin, None).await;
    let original_id = list["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, body) = key_action(&server, &rotated, &original_id, "deactivate").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        api_get(&server, "acme-test", "/api/users", &old_token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let old = old_token.as_str();
    eventually("the peer refuses tokens of a deactivated key", || async move {
        (peer_get(s, p, old).await == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    assert_eq!(peer_get(s, p, &rotated).await, StatusCode::OK);

    // Keys made by the peer reach the main server too.
    let response = peer
        .request(&server, Method::POST, "acme-test", "/api/signing-keys")
        .bearer_auth(&rotated)
        .header("content-type", "application/vnd.api+json")
        .body(json!({"data": {"type": "signing_key", "attributes": {"algorithm": "eddsa"}}}).to_string())
        .send()
        .await
        .unwrap();
    let created = Reply::from(response).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let peer_kid = created.body["data"]["attributes"]["kid"].as_str().unwrap().to_owned();
    let wanted = peer_kid.as_str();
    eventually("the main server signs with the peer's new key", || async move {
        let reply =
            token(s, "acme-test", ClientAuth::Basic(&s.admin), &[("resource", &s.management_api())]).await;
        (kid_of(reply.body["access_token"].as_str().unwrap()) == wanted).then_some(())
    })
    .await;
});
