//! OAuth clients: the secret is shown once in `meta` and stored hashed;
//! rotation replaces it; attribute validation; immutable attributes.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{assert_error, assert_invalid, assert_not_found, id_of, system_api};
use crate::db_test;
use crate::harness::{Creds, TestServer};
use crate::resources::support::{doc, link_doc, patch_doc, quote};

async fn post_client(server: &TestServer, token: &str, attributes: Value) -> (StatusCode, Value) {
    server.api(Method::POST, "/api/clients", token, Some(doc("client", attributes))).await
}

/// Creates a client and returns `(row id, document)`.
async fn create_client(server: &TestServer, token: &str, attributes: Value) -> (String, Value) {
    let (status, body) = post_client(server, token, attributes).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (id_of(&body), body)
}

async fn stored_secret_hash(server: &TestServer, id: &str) -> Option<String> {
    use sqlx::Row;
    let sql = format!("SELECT secret_hash FROM clients WHERE id = {}", quote(id));
    let row =
        sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(server.core.db.pool()).await.expect("client row");
    row.try_get::<Option<String>, _>(0).expect("secret_hash")
}

db_test!(secret_is_shown_once_in_meta_and_stored_hashed, |server| {
    let admin = server.admin_token().await;
    let (id, created) = create_client(&server, &admin, json!({"name": "Backend"})).await;
    let secret = created["meta"]["client_secret"].as_str().expect("meta.client_secret").to_owned();
    assert!(secret.len() >= 32, "a high-entropy secret: {secret}");
    let attributes = &created["data"]["attributes"];
    assert!(attributes.get("client_secret").is_none(), "{created}");
    assert_eq!(attributes["name"], "Backend");
    assert_eq!(attributes["client_type"], "confidential");
    assert_eq!(attributes["grant_types"], json!(["authorization_code"]));
    assert_eq!(attributes["redirect_uris"], json!([]));
    assert_eq!(attributes["token_format"], "jwt");
    assert_eq!(attributes["first_party"], false);
    let client_id = attributes["client_id"].as_str().unwrap().to_owned();
    assert!(client_id.len() >= 20 && client_id != id, "{client_id}");

    // Never again: not on GET, not in lists, not after an update.
    let (_, one) = server.api(Method::GET, &format!("/api/clients/{id}"), &admin, None).await;
    let (_, list) = server.api(Method::GET, "/api/clients", &admin, None).await;
    let (_, updated) = server
        .api(
            Method::PATCH,
            &format!("/api/clients/{id}"),
            &admin,
            Some(patch_doc("client", &id, json!({"name": "B2"}))),
        )
        .await;
    assert_eq!(updated["data"]["attributes"]["name"], "B2");
    for document in [&one, &list, &updated] {
        let text = document.to_string();
        assert!(!text.contains(&secret) && !text.contains("client_secret"), "secret shown: {text}");
        assert!(document.get("meta").is_none_or(|m| m.get("client_secret").is_none()), "{text}");
    }

    // Stored as a SHA-256 hash, and recorded nowhere in plain text.
    let hash = stored_secret_hash(&server, &id).await.expect("a confidential client has a secret hash");
    assert_ne!(hash, secret);
    assert_eq!(hash, portcullis_crypto::secret::hash_secret(&secret));
    let needle = format!("'%{secret}%'");
    for (table, column) in
        [("clients", "secret_hash"), ("audit_events", "changes"), ("outbox_events", "payload")]
    {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} LIKE {needle}");
        assert_eq!(server.count(&sql).await, 0, "secret stored in {table}.{column}");
    }
});

db_test!(rotate_secret_replaces_the_secret_at_once, |server| {
    let admin = server.admin_token().await;
    let (id, created) =
        create_client(&server, &admin, json!({"name": "Worker", "grant_types": ["client_credentials"]}))
            .await;
    let old = Creds {
        client_id: created["data"]["attributes"]["client_id"].as_str().unwrap().to_owned(),
        client_secret: created["meta"]["client_secret"].as_str().unwrap().to_owned(),
    };
    let api = system_api(&server, &admin).await;
    let grant = link_doc(
        "client_resource_server_grant",
        json!({"allowed_scopes": ["users:read"]}),
        &[("client", "client", &id), ("resource_server", "resource_server", &api)],
    );
    let (status, body) =
        server.api(Method::POST, "/api/client-resource-server-grants", &admin, Some(grant)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    server.management_token("acme-test", &old, None).await;

    let (status, rotated) =
        server.api(Method::PATCH, &format!("/api/clients/{id}/rotate-secret"), &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["data"]["id"], id.as_str());
    assert!(rotated["data"]["attributes"].get("client_secret").is_none(), "{rotated}");
    let new = Creds {
        client_id: old.client_id.clone(),
        client_secret: rotated["meta"]["client_secret"].as_str().expect("meta.client_secret").to_owned(),
    };
    assert_ne!(new.client_secret, old.client_secret);
    assert_eq!(
        stored_secret_hash(&server, &id).await,
        Some(portcullis_crypto::secret::hash_secret(&new.client_secret))
    );

    let resource = server.management_api();
    let form = [("grant_type", "client_credentials"), ("resource", resource.as_str())];
    let (status, body) = server.token_request("acme-test", &old, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{body}"
    );
    let (status, body) = server.token_request("acme-test", &new, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The secret is not shown again afterwards.
    let (_, one) = server.api(Method::GET, &format!("/api/clients/{id}"), &admin, None).await;
    assert!(!one.to_string().contains(&new.client_secret));

    let (status, body) = server.api(Method::PATCH, "/api/clients/nope/rotate-secret", &admin, None).await;
    assert_not_found(status, &body);
});

db_test!(public_clients_have_no_secret, |server| {
    let admin = server.admin_token().await;
    let (id, created) = create_client(
        &server,
        &admin,
        json!({"name": "SPA", "client_type": "public", "redirect_uris": ["https://app.example.com/callback"],
               "grant_types": ["authorization_code", "refresh_token"]}),
    )
    .await;
    assert!(created.get("meta").is_none_or(|m| m.get("client_secret").is_none()), "{created}");
    assert_eq!(created["data"]["attributes"]["client_type"], "public");
    assert_eq!(stored_secret_hash(&server, &id).await, None);

    let (status, body) =
        server.api(Method::PATCH, &format!("/api/clients/{id}/rotate-secret"), &admin, None).await;
    assert_invalid(status, &body, "client_type");
    assert_eq!(stored_secret_hash(&server, &id).await, None);

    // Public clients cannot use client_credentials, on create or update.
    let (status, body) = post_client(
        &server,
        &admin,
        json!({"name": "Bad", "client_type": "public", "grant_types": ["client_credentials"]}),
    )
    .await;
    assert_invalid(status, &body, "grant_types");
    let (status, body) = server
        .api(
            Method::PATCH,
            &format!("/api/clients/{id}"),
            &admin,
            Some(patch_doc(
                "client",
                &id,
                json!({"grant_types": ["authorization_code", "client_credentials"]}),
            )),
        )
        .await;
    assert_invalid(status, &body, "grant_types");

    // The type is fixed after creation, in both directions.
    let (status, body) = server
        .api(
            Method::PATCH,
            &format!("/api/clients/{id}"),
            &admin,
            Some(patch_doc("client", &id, json!({"client_type": "confidential"}))),
        )
        .await;
    assert_invalid(status, &body, "client_type");
    assert_eq!(stored_secret_hash(&server, &id).await, None);
});

db_test!(create_validates_attributes, |server| {
    let admin = server.admin_token().await;
    let uris =
        |n: usize| -> Vec<String> { (0..n).map(|i| format!("https://app.example.com/cb/{i}")).collect() };
    let cases = [
        (json!({"name": "C", "redirect_uris": uris(11)}), "redirect_uris"),
        (json!({"name": "C", "redirect_uris": ["ftp://files.example.com/cb"]}), "redirect_uris"),
        (json!({"name": "C", "redirect_uris": ["https://app.example.com/cb#fragment"]}), "redirect_uris"),
        (json!({"name": "C", "redirect_uris": ["https://app.example.com/cb#"]}), "redirect_uris"),
        (json!({"name": "C", "redirect_uris": ["javascript:alert(1)"]}), "redirect_uris"),
        (json!({"name": "C", "redirect_uris": ["/relative/callback"]}), "redirect_uris"),
        (json!({"name": "C", "redirect_uris": ["com.example.app:/callback"]}), "redirect_uris"),
        (json!({"name": "C", "redirect_uris": "https://app.example.com/cb"}), "redirect_uris"),
        (json!({"name": "C", "redirect_uris": [42]}), "redirect_uris/0"),
        (json!({"name": "C", "grant_types": []}), "grant_types"),
        (json!({"name": "C", "grant_types": ["password"]}), "grant_types"),
        (json!({"name": "C", "grant_types": ["implicit"]}), "grant_types"),
        (json!({"name": "C", "grant_types": ["authorization_code", "device_code"]}), "grant_types"),
        (json!({"name": "C", "token_format": "xml"}), "token_format"),
        (json!({"name": "C", "token_format": "JWT"}), "token_format"),
        (json!({"name": "C", "client_type": "spa"}), "client_type"),
        (json!({"name": "C", "first_party": "yes"}), "first_party"),
        (json!({"name": ""}), "name"),
        (json!({"name": "n".repeat(201)}), "name"),
        (json!({"name": "C", "client_id": "my-own-id"}), "client_id"),
        (json!({"name": "C", "client_secret": "my-own-secret"}), "client_secret"),
    ];
    for (attributes, pointer) in cases {
        let (status, body) = post_client(&server, &admin, attributes.clone()).await;
        assert_invalid(status, &body, pointer);
    }
    let (status, body) = post_client(&server, &admin, json!({})).await;
    assert_error(status, &body, 422, "required", Some("/data/attributes/name"));
    // Only the admin client exists.
    assert_eq!(server.count("SELECT COUNT(*) FROM clients").await, 1);

    // The accepted forms.
    let (_, body) = create_client(
        &server,
        &admin,
        json!({"name": "Ten", "redirect_uris": uris(10), "token_format": "opaque",
               "grant_types": ["authorization_code", "refresh_token", "authorization_code"]}),
    )
    .await;
    let attributes = &body["data"]["attributes"];
    assert_eq!(attributes["redirect_uris"].as_array().unwrap().len(), 10);
    assert_eq!(attributes["token_format"], "opaque");
    assert_eq!(
        attributes["grant_types"],
        json!(["authorization_code", "refresh_token"]),
        "duplicates dropped"
    );
    let (_, body) = create_client(
        &server,
        &admin,
        json!({"name": "Local", "redirect_uris": ["http://localhost:3000/callback", "http://127.0.0.1/cb?x=1"]}),
    )
    .await;
    assert_eq!(body["data"]["attributes"]["redirect_uris"][1], "http://127.0.0.1/cb?x=1");
});

db_test!(update_validates_and_keeps_immutable_attributes, |server| {
    let admin = server.admin_token().await;
    let (id, _) = create_client(
        &server,
        &admin,
        json!({"name": "First party", "first_party": true, "redirect_uris": ["https://a.example.com/cb"]}),
    )
    .await;
    let path = format!("/api/clients/{id}");
    let patch = |attributes: Value| Some(patch_doc("client", &id, attributes));

    // first_party cannot change after creation, and stays true.
    let (status, body) = server.api(Method::PATCH, &path, &admin, patch(json!({"first_party": false}))).await;
    assert_invalid(status, &body, "first_party");
    let (status, body) = server.api(Method::PATCH, &path, &admin, patch(json!({"first_party": null}))).await;
    assert_invalid(status, &body, "first_party");
    let (status, body) = server.api(Method::PATCH, &path, &admin, patch(json!({"first_party": true}))).await;
    assert_eq!(status, StatusCode::OK, "re-sending the same value is fine: {body}");

    // Nor can the generated client_id.
    let (status, body) = server.api(Method::PATCH, &path, &admin, patch(json!({"client_id": "mine"}))).await;
    assert_invalid(status, &body, "client_id");

    for (attributes, pointer) in [
        (
            json!({"redirect_uris": (0..11).map(|i| format!("https://a.example.com/{i}")).collect::<Vec<_>>()}),
            "redirect_uris",
        ),
        (json!({"redirect_uris": ["https://a.example.com/cb#x"]}), "redirect_uris"),
        (json!({"redirect_uris": null}), "redirect_uris"),
        (json!({"grant_types": []}), "grant_types"),
        (json!({"grant_types": ["password"]}), "grant_types"),
        (json!({"grant_types": null}), "grant_types"),
        (json!({"token_format": "paseto"}), "token_format"),
        (json!({"token_format": null}), "token_format"),
        (json!({"name": null}), "name"),
        (json!({"name": "  "}), "name"),
        (json!({"name": "Renamed", "token_format": "bad"}), "token_format"),
    ] {
        let (status, body) = server.api(Method::PATCH, &path, &admin, patch(attributes)).await;
        assert_invalid(status, &body, pointer);
    }

    let (status, body) = server
        .api(
            Method::PATCH,
            &path,
            &admin,
            patch(json!({"name": "Renamed", "redirect_uris": [], "grant_types": ["client_credentials"], "token_format": "opaque"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let attributes = &body["data"]["attributes"];
    assert_eq!(attributes["name"], "Renamed");
    assert_eq!(attributes["redirect_uris"], json!([]));
    assert_eq!(attributes["grant_types"], json!(["client_credentials"]));
    assert_eq!(attributes["token_format"], "opaque");
    assert_eq!(attributes["first_party"], true);
    assert_eq!(attributes["client_type"], "confidential");

    let (_, body) = server.api(Method::GET, &path, &admin, None).await;
    assert_eq!(body["data"]["attributes"]["first_party"], true);
    assert_eq!(body["data"]["attributes"]["name"], "Renamed");
});

db_test!(delete_removes_the_client_and_its_grants, |server| {
    let admin = server.admin_token().await;
    let (id, created) =
        create_client(&server, &admin, json!({"name": "Temp", "grant_types": ["client_credentials"]})).await;
    let creds = Creds {
        client_id: created["data"]["attributes"]["client_id"].as_str().unwrap().to_owned(),
        client_secret: created["meta"]["client_secret"].as_str().unwrap().to_owned(),
    };
    let api = system_api(&server, &admin).await;
    let grant = link_doc(
        "client_resource_server_grant",
        json!({}),
        &[("client", "client", &id), ("resource_server", "resource_server", &api)],
    );
    let (status, body) =
        server.api(Method::POST, "/api/client-resource-server-grants", &admin, Some(grant)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let grant_id = id_of(&body);

    let (status, _) = server.api(Method::DELETE, &format!("/api/clients/{id}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server.api(Method::GET, &format!("/api/clients/{id}"), &admin, None).await;
    assert_not_found(status, &body);
    let (status, body) = server
        .api(Method::GET, &format!("/api/client-resource-server-grants/{grant_id}"), &admin, None)
        .await;
    assert_not_found(status, &body);

    let resource = server.management_api();
    let (status, body) = server
        .token_request("acme-test", &creds, &[("grant_type", "client_credentials"), ("resource", &resource)])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{body}"
    );
});
