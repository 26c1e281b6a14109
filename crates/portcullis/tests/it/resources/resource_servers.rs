//! Resource servers (APIs): token_ttl bounds, an immutable and unique
//! identifier, and the system Management API that cannot be changed.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    assert_conflict, assert_error, assert_invalid, assert_not_found, create_api, create_scope, id_of,
    system_api,
};
use crate::db_test;
use crate::harness::TestServer;
use crate::resources::support::{doc, link_doc, patch_doc};

async fn post_api(server: &TestServer, token: &str, attributes: Value) -> (StatusCode, Value) {
    server.api(Method::POST, "/api/resource-servers", token, Some(doc("resource_server", attributes))).await
}

db_test!(create_applies_defaults_and_bounds, |server| {
    let admin = server.admin_token().await;
    let (status, body) =
        post_api(&server, &admin, json!({"name": "Billing", "identifier": "https://billing.example.com"}))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let attributes = &body["data"]["attributes"];
    assert_eq!(body["data"]["type"], "resource_server");
    assert_eq!(attributes["identifier"], "https://billing.example.com");
    assert_eq!(attributes["token_ttl"], 3600);
    assert_eq!(attributes["allow_offline_access"], false);
    assert_eq!(attributes["system"], false);

    for ttl in [json!(59), json!(86401), json!(0), json!(-60), json!(1e10)] {
        let (status, body) = post_api(
            &server,
            &admin,
            json!({"name": "T", "identifier": "https://t.example.com", "token_ttl": ttl}),
        )
        .await;
        assert_invalid(status, &body, "token_ttl");
    }
    for ttl in [json!("3600"), json!(60.5), json!(null)] {
        let (status, body) = post_api(
            &server,
            &admin,
            json!({"name": "T", "identifier": "https://t.example.com", "token_ttl": ttl.clone()}),
        )
        .await;
        if ttl.is_null() {
            // `null` means "the default", like an absent member.
            assert_eq!(status, StatusCode::CREATED, "{body}");
            assert_eq!(body["data"]["attributes"]["token_ttl"], 3600);
            let (status, _) = server
                .api(Method::DELETE, &format!("/api/resource-servers/{}", id_of(&body)), &admin, None)
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT);
        } else {
            assert_invalid(status, &body, "token_ttl");
        }
    }
    for (ttl, identifier) in [(60, "https://min.example.com"), (86400, "https://max.example.com")] {
        let (status, body) = post_api(
            &server,
            &admin,
            json!({"name": "Edge", "identifier": identifier, "token_ttl": ttl, "allow_offline_access": true}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["data"]["attributes"]["token_ttl"], ttl);
        assert_eq!(body["data"]["attributes"]["allow_offline_access"], true);
    }

    for identifier in ["not a uri", "/relative", "", "https://api.example.com/#frag"] {
        let (status, body) =
            post_api(&server, &admin, json!({"name": "Bad", "identifier": identifier})).await;
        assert_invalid(status, &body, "identifier");
    }
    let (status, body) =
        post_api(&server, &admin, json!({"name": "", "identifier": "urn:example:api"})).await;
    assert_invalid(status, &body, "name");
    let (status, body) = post_api(&server, &admin, json!({"name": "No identifier"})).await;
    assert_error(status, &body, 422, "required", Some("/data/attributes/identifier"));
    let (status, body) =
        post_api(&server, &admin, json!({"name": "Sys", "identifier": "urn:example:sys", "system": true}))
            .await;
    assert_invalid(status, &body, "system");
    // URNs are absolute URIs too.
    let (status, body) =
        post_api(&server, &admin, json!({"name": "URN", "identifier": "urn:example:api"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // 1 system + billing + min + max + urn.
    assert_eq!(server.count("SELECT COUNT(*) FROM resource_servers").await, 5);
});

db_test!(identifier_is_unique_per_environment_and_immutable, |server| {
    let admin = server.admin_token().await;
    let id = create_api(&server, &admin, "https://orders.example.com").await;
    let (status, body) =
        post_api(&server, &admin, json!({"name": "Again", "identifier": "https://orders.example.com"})).await;
    assert_conflict(status, &body, "/data/attributes/identifier");
    // The Management API's identifier is taken too.
    let management = server.management_api();
    let (status, body) =
        post_api(&server, &admin, json!({"name": "Fake admin", "identifier": management})).await;
    assert_conflict(status, &body, "/data/attributes/identifier");

    // Another environment may use the same identifier.
    let other = server.create_environment("other").await;
    let token = server.management_token("other", &other, None).await;
    let (status, body) = server
        .api_at(
            "other",
            Method::POST,
            "/api/resource-servers",
            &token,
            Some(doc(
                "resource_server",
                json!({"name": "Orders", "identifier": "https://orders.example.com"}),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let path = format!("/api/resource-servers/{id}");
    let patch = |attributes: Value| Some(patch_doc("resource_server", &id, attributes));
    for attributes in [json!({"identifier": "https://changed.example.com"}), json!({"identifier": null})] {
        let (status, body) = server.api(Method::PATCH, &path, &admin, patch(attributes)).await;
        assert_invalid(status, &body, "identifier");
    }
    let (status, body) = server
        .api(
            Method::PATCH,
            &path,
            &admin,
            patch(json!({"identifier": "https://orders.example.com", "name": "Orders v2", "token_ttl": 900,
                         "allow_offline_access": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let attributes = &body["data"]["attributes"];
    assert_eq!(attributes["identifier"], "https://orders.example.com");
    assert_eq!(attributes["name"], "Orders v2");
    assert_eq!(attributes["token_ttl"], 900);
    assert_eq!(attributes["allow_offline_access"], true);

    for (attributes, pointer) in [
        (json!({"token_ttl": 59}), "token_ttl"),
        (json!({"token_ttl": 86401}), "token_ttl"),
        (json!({"token_ttl": null}), "token_ttl"),
        (json!({"allow_offline_access": null}), "allow_offline_access"),
        (json!({"allow_offline_access": "yes"}), "allow_offline_access"),
        (json!({"name": null}), "name"),
        (json!({"system": true}), "system"),
    ] {
        let (status, body) = server.api(Method::PATCH, &path, &admin, patch(attributes)).await;
        assert_invalid(status, &body, pointer);
    }
    let (_, body) = server.api(Method::GET, &path, &admin, None).await;
    assert_eq!(body["data"]["attributes"]["token_ttl"], 900);
    assert_eq!(body["data"]["attributes"]["system"], false);
});

db_test!(the_system_management_api_cannot_be_changed_or_deleted, |server| {
    let admin = server.admin_token().await;
    let id = system_api(&server, &admin).await;
    let path = format!("/api/resource-servers/{id}");
    let (status, before) = server.api(Method::GET, &path, &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(before["data"]["attributes"]["system"], true);
    assert_eq!(before["data"]["attributes"]["identifier"], server.management_api());

    for attributes in [
        json!({"name": "Mine now"}),
        json!({"token_ttl": 86400}),
        json!({"allow_offline_access": true}),
        json!({}),
    ] {
        let (status, body) = server
            .api(Method::PATCH, &path, &admin, Some(patch_doc("resource_server", &id, attributes)))
            .await;
        assert_error(status, &body, 403, "forbidden", None);
    }
    let (status, body) = server.api(Method::DELETE, &path, &admin, None).await;
    assert_error(status, &body, 403, "forbidden", None);

    let (_, after) = server.api(Method::GET, &path, &admin, None).await;
    assert_eq!(after["data"]["attributes"], before["data"]["attributes"]);
    // Its scopes are fixed as well.
    let (status, body) = server
        .api(
            Method::POST,
            "/api/scopes",
            &admin,
            Some(link_doc(
                "scope",
                json!({"name": "users:fly"}),
                &[("resource_server", "resource_server", &id)],
            )),
        )
        .await;
    assert_error(status, &body, 403, "forbidden", None);
    // And the admin still works.
    let (status, _) = server.api(Method::GET, "/api/resource-servers", &admin, None).await;
    assert_eq!(status, StatusCode::OK);
});

db_test!(delete_cascades_scopes_and_grants, |server| {
    let admin = server.admin_token().await;
    let api = create_api(&server, &admin, "https://docs.example.com").await;
    let scope = create_scope(&server, &admin, &api, "read:docs").await;
    let (status, client) = server
        .api(
            Method::POST,
            "/api/clients",
            &admin,
            Some(doc("client", json!({"name": "C", "grant_types": ["client_credentials"]}))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    let client = id_of(&client);
    let (status, grant) = server
        .api(
            Method::POST,
            "/api/client-resource-server-grants",
            &admin,
            Some(link_doc(
                "client_resource_server_grant",
                json!({"allowed_scopes": ["read:docs"]}),
                &[("client", "client", &client), ("resource_server", "resource_server", &api)],
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    let grant = id_of(&grant);

    let (status, _) = server.api(Method::DELETE, &format!("/api/resource-servers/{api}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for path in [
        format!("/api/resource-servers/{api}"),
        format!("/api/scopes/{scope}"),
        format!("/api/client-resource-server-grants/{grant}"),
    ] {
        let (status, body) = server.api(Method::GET, &path, &admin, None).await;
        assert_not_found(status, &body);
    }
    let (status, _) = server.api(Method::GET, &format!("/api/clients/{client}"), &admin, None).await;
    assert_eq!(status, StatusCode::OK, "the client survives");
    // The identifier can be registered again.
    create_api(&server, &admin, "https://docs.example.com").await;
});
