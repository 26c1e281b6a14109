//! Permissions: `resource:action` names, uniqueness per environment, and a
//! name that cannot change after creation.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    assert_conflict, assert_error, assert_invalid, assert_not_found, create_permission, id_of,
};
use crate::db_test;
use crate::resources::support::{doc, patch_doc};

db_test!(names_have_the_resource_action_form, |server| {
    let admin = server.admin_token().await;
    for name in ["posts:read", "invoices:*", "billing.v2:export-all", "a_b:c.d", "users:create"] {
        let created =
            server.create(&admin, "/api/permissions", "permission", json!({"name": name}), Value::Null).await;
        assert_eq!(created["data"]["type"], "permission");
        assert_eq!(created["data"]["attributes"]["name"], name);
        assert_eq!(created["data"]["attributes"]["description"], Value::Null);
    }
    let long = format!("{}:read", "r".repeat(101));
    for name in [
        "posts",
        "posts:",
        ":read",
        "*:read",
        "posts:read:all",
        "po sts:read",
        "posts: read",
        "pösts:read",
        "",
        &long,
    ] {
        let (status, body) = server
            .api(Method::POST, "/api/permissions", &admin, Some(doc("permission", json!({"name": name}))))
            .await;
        assert_invalid(status, &body, "name");
    }
    let (status, body) =
        server.api(Method::POST, "/api/permissions", &admin, Some(doc("permission", json!({})))).await;
    assert_error(status, &body, 422, "required", Some("/data/attributes/name"));
    let (status, body) = server
        .api(
            Method::POST,
            "/api/permissions",
            &admin,
            Some(doc("permission", json!({"name": "ok:ok", "description": "d".repeat(1001)}))),
        )
        .await;
    assert_invalid(status, &body, "description");
    assert_eq!(server.count("SELECT COUNT(*) FROM permissions").await, 5);
});

db_test!(names_are_unique_per_environment, |server| {
    let admin = server.admin_token().await;
    create_permission(&server, &admin, "posts:read").await;
    let (status, body) = server
        .api(Method::POST, "/api/permissions", &admin, Some(doc("permission", json!({"name": "posts:read"}))))
        .await;
    assert_conflict(status, &body, "/data/attributes/name");
    // Case matters in permission names.
    create_permission(&server, &admin, "Posts:Read").await;

    let other = server.create_environment("other").await;
    let token = server.management_token("other", &other, None).await;
    let (status, body) = server
        .api_at(
            "other",
            Method::POST,
            "/api/permissions",
            &token,
            Some(doc("permission", json!({"name": "posts:read"}))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // An environment cannot read another's permissions by id.
    let (status, body) =
        server.api(Method::GET, &format!("/api/permissions/{}", id_of(&body)), &admin, None).await;
    assert_not_found(status, &body);
});

db_test!(name_is_immutable_and_description_is_editable, |server| {
    let admin = server.admin_token().await;
    let id = create_permission(&server, &admin, "reports:view").await;
    let path = format!("/api/permissions/{id}");
    let patch = |attributes: Value| Some(patch_doc("permission", &id, attributes));

    for attributes in [json!({"name": "reports:edit"}), json!({"name": null}), json!({"name": "bad"})] {
        let (status, body) = server.api(Method::PATCH, &path, &admin, patch(attributes)).await;
        assert_invalid(status, &body, "name");
    }
    // The same name is accepted (a client echoing the resource back).
    let (status, body) = server
        .api(
            Method::PATCH,
            &path,
            &admin,
            patch(json!({"name": "reports:view", "description": "See reports"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["description"], "See reports");
    let (status, body) = server.api(Method::PATCH, &path, &admin, patch(json!({"description": null}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["description"], Value::Null);

    let (status, body) = server.api(Method::GET, &path, &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["attributes"]["name"], "reports:view");

    let (status, _) = server.api(Method::DELETE, &path, &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server.api(Method::GET, &path, &admin, None).await;
    assert_not_found(status, &body);
    let (status, body) = server.api(Method::PATCH, &path, &admin, patch(json!({"description": "x"}))).await;
    assert_not_found(status, &body);
});
