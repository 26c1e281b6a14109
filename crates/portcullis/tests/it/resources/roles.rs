//! Roles: CRUD, name uniqueness, the computed counts on a single GET, and
//! deletion cascading to the role's links.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    assert_conflict, assert_error, assert_invalid, assert_not_found, create_permission, create_role,
    create_user, id_of,
};
use crate::db_test;
use crate::resources::support::{doc, link_doc, patch_doc, quote};

db_test!(role_crud_and_validation, |server| {
    let admin = server.admin_token().await;
    let created = server
        .create(
            &admin,
            "/api/roles",
            "role",
            json!({"name": "Admin", "description": "Everything"}),
            Value::Null,
        )
        .await;
    let id = id_of(&created);
    assert_eq!(created["data"]["type"], "role");
    assert_eq!(created["data"]["attributes"]["name"], "Admin");
    assert_eq!(created["data"]["attributes"]["description"], "Everything");
    let path = format!("/api/roles/{id}");

    // Names are trimmed, required, bounded and unique in the environment.
    let (status, body) =
        server.api(Method::POST, "/api/roles", &admin, Some(doc("role", json!({"name": " Admin "})))).await;
    assert_conflict(status, &body, "/data/attributes/name");
    for bad in
        [json!({"name": ""}), json!({"name": "   "}), json!({"name": "r".repeat(101)}), json!({"name": 5})]
    {
        let (status, body) = server.api(Method::POST, "/api/roles", &admin, Some(doc("role", bad))).await;
        assert_invalid(status, &body, "name");
    }
    let (status, body) = server.api(Method::POST, "/api/roles", &admin, Some(doc("role", json!({})))).await;
    assert_error(status, &body, 422, "required", Some("/data/attributes/name"));
    let (status, body) = server
        .api(
            Method::POST,
            "/api/roles",
            &admin,
            Some(doc("role", json!({"name": "X", "description": "d".repeat(1001)}))),
        )
        .await;
    assert_invalid(status, &body, "description");
    let (status, body) = server
        .api(Method::POST, "/api/roles", &admin, Some(doc("role", json!({"name": "X", "user_count": 3}))))
        .await;
    assert_invalid(status, &body, "user_count");
    assert_eq!(server.count("SELECT COUNT(*) FROM roles").await, 1);

    // Role names are case-sensitive: "admin" is another role.
    create_role(&server, &admin, "admin").await;
    let viewer = create_role(&server, &admin, "Viewer").await;

    // PATCH: rename, clear the description, refuse null names and taken names.
    let (status, body) = server
        .api(
            Method::PATCH,
            &path,
            &admin,
            Some(patch_doc("role", &id, json!({"name": "Owner", "description": null}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["name"], "Owner");
    assert_eq!(body["data"]["attributes"]["description"], Value::Null);
    let (status, body) =
        server.api(Method::PATCH, &path, &admin, Some(patch_doc("role", &id, json!({"name": null})))).await;
    assert_invalid(status, &body, "name");
    let (status, body) = server
        .api(Method::PATCH, &path, &admin, Some(patch_doc("role", &id, json!({"name": "Viewer"}))))
        .await;
    assert_conflict(status, &body, "/data/attributes/name");
    let (_, current) = server.api(Method::GET, &path, &admin, None).await;
    assert_eq!(current["data"]["attributes"]["name"], "Owner");

    // The old name is free again.
    create_role(&server, &admin, "Admin").await;

    // DELETE.
    let (status, body) = server.api(Method::DELETE, &format!("/api/roles/{viewer}"), &admin, None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (status, body) = server.api(Method::GET, &format!("/api/roles/{viewer}"), &admin, None).await;
    assert_not_found(status, &body);
    let (status, body) = server.api(Method::DELETE, &format!("/api/roles/{viewer}"), &admin, None).await;
    assert_not_found(status, &body);
});

db_test!(single_get_shows_user_and_permission_counts, |server| {
    let admin = server.admin_token().await;
    let role = create_role(&server, &admin, "Developer").await;
    let other_role = create_role(&server, &admin, "Other").await;
    let path = format!("/api/roles/{role}");

    let (status, body) = server.api(Method::GET, &path, &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["user_count"], 0);
    assert_eq!(body["data"]["attributes"]["permission_count"], 0);

    for i in 0..3 {
        let permission = create_permission(&server, &admin, &format!("docs:action{i}")).await;
        let links = [("role", "role", role.as_str()), ("permission", "permission", permission.as_str())];
        let (status, body) = server
            .api(
                Method::POST,
                "/api/role-permissions",
                &admin,
                Some(link_doc("role_permission", json!({}), &links)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    for i in 0..2 {
        let user = create_user(&server, &admin, json!({"email": format!("dev{i}@example.com")})).await;
        for r in [&role, &other_role] {
            let links = [("user", "user", user.as_str()), ("role", "role", r.as_str())];
            let (status, body) = server
                .api(Method::POST, "/api/user-roles", &admin, Some(link_doc("user_role", json!({}), &links)))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }

    let (_, body) = server.api(Method::GET, &path, &admin, None).await;
    assert_eq!(body["data"]["attributes"]["user_count"], 2, "{body}");
    assert_eq!(body["data"]["attributes"]["permission_count"], 3, "{body}");
    let (_, body) = server.api(Method::GET, &format!("/api/roles/{other_role}"), &admin, None).await;
    assert_eq!(body["data"]["attributes"]["user_count"], 2, "{body}");
    assert_eq!(body["data"]["attributes"]["permission_count"], 0, "{body}");

    // The counts are a single-GET detail: lists and write responses omit them.
    let (_, list) = server.api(Method::GET, "/api/roles", &admin, None).await;
    for item in list["data"].as_array().unwrap() {
        assert!(item["attributes"].get("user_count").is_none(), "{item}");
        assert!(item["attributes"].get("permission_count").is_none(), "{item}");
    }
    // And the counts cannot be written.
    let (status, body) = server
        .api(Method::PATCH, &path, &admin, Some(patch_doc("role", &role, json!({"permission_count": 9}))))
        .await;
    assert_invalid(status, &body, "permission_count");
});

db_test!(deleting_a_role_cascades_its_links, |server| {
    let admin = server.admin_token().await;
    let role = create_role(&server, &admin, "Doomed").await;
    let survivor = create_role(&server, &admin, "Survivor").await;
    let permission = create_permission(&server, &admin, "posts:read").await;
    let user = create_user(&server, &admin, json!({"email": "member@example.com"})).await;
    let mut links = Vec::new();
    for r in [&role, &survivor] {
        let rp = [("role", "role", r.as_str()), ("permission", "permission", permission.as_str())];
        let (status, body) = server
            .api(
                Method::POST,
                "/api/role-permissions",
                &admin,
                Some(link_doc("role_permission", json!({}), &rp)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        links.push(format!("/api/role-permissions/{}", id_of(&body)));
        let ur = [("user", "user", user.as_str()), ("role", "role", r.as_str())];
        let (status, body) = server
            .api(Method::POST, "/api/user-roles", &admin, Some(link_doc("user_role", json!({}), &ur)))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        links.push(format!("/api/user-roles/{}", id_of(&body)));
    }

    let (status, _) = server.api(Method::DELETE, &format!("/api/roles/{role}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let doomed = quote(&role);
    assert_eq!(
        server.count(&format!("SELECT COUNT(*) FROM role_permissions WHERE role_id = {doomed}")).await,
        0
    );
    assert_eq!(server.count(&format!("SELECT COUNT(*) FROM user_roles WHERE role_id = {doomed}")).await, 0);
    let (status, body) = server.api(Method::GET, &links[0], &admin, None).await;
    assert_not_found(status, &body);
    let (status, body) = server.api(Method::GET, &links[1], &admin, None).await;
    assert_not_found(status, &body);
    // The other role's links, the permission and the user are untouched.
    for path in &links[2..] {
        let (status, body) = server.api(Method::GET, path, &admin, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, _) = server.api(Method::GET, &format!("/api/permissions/{permission}"), &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) =
        server.api(Method::GET, &format!("/api/users/{user}?include=roles"), &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["relationships"]["roles"]["data"], json!([{"type": "role", "id": survivor}]));
});
