//! Signing keys as a resource: creation and validation, primary handover,
//! and private keys that are never returned.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{assert_error, assert_invalid, assert_not_found, id_of};
use crate::db_test;
use crate::harness::TestServer;
use crate::resources::support::{doc, patch_doc};

const PATH: &str = "/api/signing-keys";

async fn post_key(server: &TestServer, token: &str, attributes: Value) -> (StatusCode, Value) {
    server.api(Method::POST, PATH, token, Some(doc("signing_key", attributes))).await
}

async fn keys(server: &TestServer, token: &str) -> Vec<Value> {
    let (status, body) = server.api(Method::GET, PATH, token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().clone()
}

async fn get_key(server: &TestServer, token: &str, id: &str) -> Value {
    let (status, body) = server.api(Method::GET, &format!("{PATH}/{id}"), token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["attributes"].clone()
}

fn assert_no_private_material(document: &Value) {
    let text = document.to_string();
    assert!(!text.contains("private"), "private key shown: {text}");
    let check = |jwk: &Value| {
        for member in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(jwk.get(member).is_none(), "private JWK member `{member}` shown: {jwk}");
        }
    };
    match &document["data"] {
        Value::Array(items) => items.iter().for_each(|k| check(&k["attributes"]["public_key"])),
        one => check(&one["attributes"]["public_key"]),
    }
}

db_test!(create_rs256_becomes_primary_without_exposing_the_private_key, |server| {
    let admin = server.admin_token().await;
    let original = keys(&server, &admin).await;
    assert_eq!(original.len(), 1);
    let first = original[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(original[0]["attributes"]["primary"], true);
    assert_eq!(original[0]["attributes"]["algorithm"], "es256");

    let (status, body) = post_key(&server, &admin, json!({"algorithm": "rs256", "key_size": 2048})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_no_private_material(&body);
    let id = id_of(&body);
    let attributes = &body["data"]["attributes"];
    assert_eq!(body["data"]["type"], "signing_key");
    assert_eq!(attributes["algorithm"], "rs256");
    assert_eq!(attributes["key_size"], 2048);
    assert_eq!(attributes["status"], "active");
    assert_eq!(attributes["primary"], true);
    assert_eq!(attributes["deactivated_at"], Value::Null);
    let kid = attributes["kid"].as_str().unwrap();
    assert_eq!(kid.len(), 11, "{kid}");
    assert!(kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{kid}");
    let jwk = &attributes["public_key"];
    assert_eq!((&jwk["kty"], &jwk["kid"]), (&json!("RSA"), &json!(kid)));
    assert!(jwk["n"].is_string() && jwk["e"].is_string(), "{jwk}");

    // The old key is still active but no longer primary; exactly one primary.
    let first_key = get_key(&server, &admin, &first).await;
    assert_eq!((&first_key["status"], &first_key["primary"]), (&json!("active"), &json!(false)));
    let (_, primaries) = server.api(Method::GET, &format!("{PATH}?filter[primary]=true"), &admin, None).await;
    assert_eq!(primaries["data"].as_array().unwrap().len(), 1);
    assert_eq!(primaries["data"][0]["id"], id.as_str());

    let (_, list) = server.api(Method::GET, PATH, &admin, None).await;
    assert_no_private_material(&list);
    let (_, one) = server.api(Method::GET, &format!("{PATH}/{id}"), &admin, None).await;
    assert_no_private_material(&one);

    // The private key is stored encrypted, not as a PEM or a bare JWK.
    let sql = "SELECT COUNT(*) FROM signing_keys \
               WHERE private_key LIKE '%BEGIN%' OR private_key LIKE '%\"d\"%' OR private_key = ''";
    assert_eq!(server.count(sql).await, 0);

    // Other algorithms.
    let (status, body) = post_key(&server, &admin, json!({"algorithm": "eddsa"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["attributes"]["public_key"]["kty"], "OKP");
    assert_eq!(body["data"]["attributes"]["key_size"], Value::Null);
    assert_no_private_material(&body);
    let (status, body) = post_key(&server, &admin, json!({"algorithm": "es256"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["attributes"]["public_key"]["kty"], "EC");
    assert_no_private_material(&body);
    assert_eq!(server.count("SELECT COUNT(*) FROM signing_keys WHERE is_primary = TRUE").await, 1);
});

db_test!(create_validates_algorithm_and_key_size, |server| {
    let admin = server.admin_token().await;
    for (attributes, pointer) in [
        (json!({"algorithm": "hs256"}), "algorithm"),
        (json!({"algorithm": "RS256"}), "algorithm"),
        (json!({"algorithm": "none"}), "algorithm"),
        (json!({"algorithm": 256}), "algorithm"),
        (json!({"algorithm": "rs256", "key_size": 1024}), "key_size"),
        (json!({"algorithm": "rs256", "key_size": 2047}), "key_size"),
        (json!({"algorithm": "rs256", "key_size": -2048}), "key_size"),
        (json!({"algorithm": "rs256", "key_size": "2048"}), "key_size"),
        (json!({"algorithm": "es256", "key_size": 2048}), "key_size"),
        (json!({"algorithm": "eddsa", "key_size": 256}), "key_size"),
        (json!({"key_size": 1024}), "key_size"),
        (json!({"kid": "my-own-kid"}), "kid"),
        (json!({"primary": false}), "primary"),
        (json!({"private_key": "-----BEGIN PRIVATE KEY-----"}), "private_key"),
    ] {
        let (status, body) = post_key(&server, &admin, attributes).await;
        assert_invalid(status, &body, pointer);
    }
    assert_eq!(server.count("SELECT COUNT(*) FROM signing_keys").await, 1, "a rejected key was stored");
});

db_test!(set_primary_and_deactivate_hand_over_the_primary_flag, |server| {
    let admin = server.admin_token().await;
    let first = keys(&server, &admin).await[0]["id"].as_str().unwrap().to_owned();
    let (_, body) = post_key(&server, &admin, json!({"algorithm": "es256"})).await;
    let second = id_of(&body);
    let (_, body) = post_key(&server, &admin, json!({"algorithm": "eddsa"})).await;
    let third = id_of(&body);
    let action = |id: &str, action: &str| format!("{PATH}/{id}/{action}");

    // set-primary moves the flag.
    let (status, body) = server.api(Method::PATCH, &action(&first, "set-primary"), &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["primary"], true);
    assert_eq!(get_key(&server, &admin, &third).await["primary"], false);
    assert_eq!(server.count("SELECT COUNT(*) FROM signing_keys WHERE is_primary = TRUE").await, 1);

    // Deactivating a non-primary key leaves the primary alone.
    let (status, body) = server.api(Method::PATCH, &action(&second, "deactivate"), &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let attributes = &body["data"]["attributes"];
    assert_eq!((&attributes["status"], &attributes["primary"]), (&json!("inactive"), &json!(false)));
    assert!(attributes["deactivated_at"].is_string(), "{body}");
    assert_eq!(get_key(&server, &admin, &first).await["primary"], true);

    // An inactive key can be neither deactivated again nor made primary.
    let (status, body) = server.api(Method::PATCH, &action(&second, "deactivate"), &admin, None).await;
    assert_error(status, &body, 409, "conflict", None);
    let (status, body) = server.api(Method::PATCH, &action(&second, "set-primary"), &admin, None).await;
    assert_error(status, &body, 409, "conflict", None);

    // Deactivating the primary promotes the newest other active key. (The
    // admin token was signed by that key, so it stops working: get another.)
    let (status, body) = server.api(Method::PATCH, &action(&first, "deactivate"), &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["primary"], false);
    let (status, body) = server.api(Method::GET, PATH, &admin, None).await;
    assert_error(status, &body, 401, "unauthorized", None);
    let admin = server.admin_token().await;
    let third_key = get_key(&server, &admin, &third).await;
    assert_eq!((&third_key["status"], &third_key["primary"]), (&json!("active"), &json!(true)));

    // The last active key cannot be deactivated.
    let (status, body) = server.api(Method::PATCH, &action(&third, "deactivate"), &admin, None).await;
    assert_error(status, &body, 409, "conflict", None);
    assert_eq!(get_key(&server, &admin, &third).await["status"], "active");

    let (status, body) = server.api(Method::PATCH, &action("nope", "set-primary"), &admin, None).await;
    assert_not_found(status, &body);
    let (status, body) = server.api(Method::PATCH, &action("nope", "deactivate"), &admin, None).await;
    assert_not_found(status, &body);

    // Keys are not updated directly.
    let (status, body) = server
        .api(
            Method::PATCH,
            &format!("{PATH}/{third}"),
            &admin,
            Some(patch_doc("signing_key", &third, json!({}))),
        )
        .await;
    assert_error(status, &body, 405, "method_not_allowed", None);
    assert_eq!(server.count("SELECT COUNT(*) FROM signing_keys").await, 3);
});

db_test!(only_an_inactive_key_can_be_deleted, |server| {
    let admin = server.admin_token().await;
    let first = keys(&server, &admin).await[0].clone();
    let first_id = first["id"].as_str().unwrap().to_owned();
    let (_, body) = post_key(&server, &admin, json!({"algorithm": "es256"})).await;
    let second = id_of(&body);
    let path = |id: &str| format!("{PATH}/{id}");
    let events = |action: &str| format!("SELECT COUNT(*) FROM audit_events WHERE action = '{action}'");

    // Active keys, primary or not, are refused with 409 and stay.
    let admin = server.admin_token().await;
    for id in [&first_id, &second] {
        let (status, body) = server.api(Method::DELETE, &path(id), &admin, None).await;
        assert_error(status, &body, 409, "conflict", None);
        assert!(body["errors"][0]["detail"].as_str().unwrap().contains("deactivate"), "{body}");
    }
    assert_eq!(server.count("SELECT COUNT(*) FROM signing_keys").await, 2);
    assert_eq!(server.count(&events("signing_key.deleted")).await, 0);

    // Deactivated, it can go: gone from the API and the database, the JWKS
    // never lists it again, and the deletion is audited.
    let (status, body) =
        server.api(Method::PATCH, &format!("{}/deactivate", path(&first_id)), &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let admin = server.admin_token().await;
    let (status, body) = server.api(Method::DELETE, &path(&first_id), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = server.api(Method::GET, &path(&first_id), &admin, None).await;
    assert_not_found(status, &body);
    assert_eq!(server.count("SELECT COUNT(*) FROM signing_keys").await, 1);
    assert_eq!(server.count(&events("signing_key.deleted")).await, 1);
    let jwks = crate::oauth::support::jwks(&server, "acme-test").await;
    assert!(!jwks.to_string().contains(first["attributes"]["kid"].as_str().unwrap()), "{jwks}");

    // Twice: not found. The remaining (last, active) key: refused.
    let (status, body) = server.api(Method::DELETE, &path(&first_id), &admin, None).await;
    assert_not_found(status, &body);
    let (status, body) = server.api(Method::DELETE, &path(&second), &admin, None).await;
    assert_error(status, &body, 409, "conflict", None);
    // Tokens still work: the primary key was never touched.
    let (status, _) = server.api(Method::GET, PATH, &admin, None).await;
    assert_eq!(status, StatusCode::OK);
});

db_test!(concurrent_key_changes_keep_one_primary_and_one_active_key, |server| {
    let server = std::sync::Arc::new(server);
    let admin = server.admin_token().await;
    let first = keys(&server, &admin).await[0]["id"].as_str().unwrap().to_owned();

    // Concurrent creations all succeed, and exactly one key ends up primary.
    let creations: Vec<_> = (0..4)
        .map(|_| {
            let (server, admin) = (server.clone(), admin.clone());
            tokio::spawn(async move { post_key(&server, &admin, json!({"algorithm": "es256"})).await })
        })
        .collect();
    for creation in creations {
        let (status, body) = creation.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(server.count("SELECT COUNT(*) FROM signing_keys WHERE is_primary = TRUE").await, 1);
    let (_, primaries) = server.api(Method::GET, &format!("{PATH}?filter[primary]=true"), &admin, None).await;
    assert_eq!(primaries["data"].as_array().unwrap().len(), 1, "{primaries}");

    // Deactivate all but one other key, then race to deactivate the last two:
    // one must win and one must be refused, never both.
    let admin = {
        let all = keys(&server, &admin).await;
        let primary = all.iter().find(|k| k["attributes"]["primary"] == true).unwrap()["id"].clone();
        let others: Vec<String> = all
            .iter()
            .filter(|k| k["id"] != primary && k["id"] != json!(first))
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect();
        for id in others {
            let (status, body) =
                server.api(Method::PATCH, &format!("{PATH}/{id}/deactivate"), &admin, None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        // A token signed by the current primary.
        server.admin_token().await
    };
    let active: Vec<String> = keys(&server, &admin)
        .await
        .iter()
        .filter(|k| k["attributes"]["status"] == "active")
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(active.len(), 2);
    let races: Vec<_> = active
        .iter()
        .map(|id| {
            let (server, admin, path) = (server.clone(), admin.clone(), format!("{PATH}/{id}/deactivate"));
            tokio::spawn(async move { server.api(Method::PATCH, &path, &admin, None).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for race in races {
        let (status, body) = race.await.unwrap();
        assert!(
            [StatusCode::OK, StatusCode::CONFLICT, StatusCode::UNAUTHORIZED].contains(&status),
            "{status}: {body}"
        );
        statuses.push(status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
    assert_eq!(server.count("SELECT COUNT(*) FROM signing_keys WHERE status = 'active'").await, 1);
    assert_eq!(server.count("SELECT COUNT(*) FROM signing_keys WHERE is_primary = TRUE").await, 1);
});
