//! Audit finding 7: `include=` reads the included family, so it needs that
//! family's read scope as its own route would.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{assert_error, create_role, create_user};
use crate::db_test;
use crate::oauth::support::management_client;

db_test!(included_resources_need_their_own_familys_read_scope, |server| {
    let admin = server.admin_token().await;
    let user = create_user(&server, &admin, json!({"email": "ada@example.com"})).await;
    let role = create_role(&server, &admin, "secret-project-admins").await;
    let link = |kind: &str, id: &str| json!({"data": {"type": kind, "id": id}});
    server
        .create(
            &admin,
            "/api/user-roles",
            "user_role",
            json!({}),
            json!({"user": link("user", &user), "role": link("role", &role)}),
        )
        .await;

    let (_, users_only) = management_client(&server, &admin, "Users only", &["users:read"]).await;
    let users_only = server.management_token("acme-test", &users_only, None).await;
    for path in ["/api/users?include=roles".to_owned(), format!("/api/users/{user}?include=roles")] {
        let (status, body) = server.api(Method::GET, &path, &users_only, None).await;
        assert_error(status, &body, 403, "forbidden", None);
        assert!(body["errors"][0]["detail"].as_str().unwrap().contains("roles:read"), "{body}");
        assert!(!body.to_string().contains("secret-project-admins"), "{body}");
        // Without the include the same token reads users.
        let plain = path.split('?').next().unwrap();
        let (status, _) = server.api(Method::GET, plain, &users_only, None).await;
        assert_eq!(status, StatusCode::OK, "{plain}");
    }
    // User-role links are in the users family; the roles they name are not.
    let (status, body) = server.api(Method::GET, "/api/user-roles?include=role", &users_only, None).await;
    assert_error(status, &body, 403, "forbidden", None);
    assert!(!body.to_string().contains("secret-project-admins"), "{body}");
    let (status, _) = server.api(Method::GET, "/api/user-roles?include=user", &users_only, None).await;
    assert_eq!(status, StatusCode::OK);

    // Holding both families, the include works.
    let (_, both) = management_client(&server, &admin, "Both", &["users:read", "roles:read"]).await;
    let both = server.management_token("acme-test", &both, None).await;
    let (status, body) = server.api(Method::GET, "/api/users?include=roles", &both, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["included"][0]["attributes"]["name"], "secret-project-admins", "{body}");
    let (status, body) = server.api(Method::GET, "/api/user-roles?include=user,role", &both, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["included"].as_array().map(Vec::len), Some(2), "{body}");
});

db_test!(each_level_of_a_nested_include_needs_its_familys_read_scope, |server| {
    let admin = server.admin_token().await;
    let user = create_user(&server, &admin, json!({"email": "ada@example.com"})).await;
    let link = |kind: &str, id: &str| json!({"data": {"type": kind, "id": id}});
    let organization = crate::common::id_of(
        &server
            .create(
                &admin,
                "/api/organizations",
                "organization",
                json!({"name": "Acme"}),
                serde_json::Value::Null,
            )
            .await,
    );
    server
        .create(
            &admin,
            "/api/memberships",
            "membership",
            json!({}),
            json!({"user": link("user", &user), "organization": link("organization", &organization)}),
        )
        .await;
    let path = format!("/api/organizations/{organization}?include=memberships.user");

    let scopes = ["organizations:read", "memberships:read"];
    let (_, no_users) = management_client(&server, &admin, "No users", &scopes).await;
    let no_users = server.management_token("acme-test", &no_users, None).await;
    let (status, body) = server.api(Method::GET, &path, &no_users, None).await;
    assert_error(status, &body, 403, "forbidden", None);
    assert!(body["errors"][0]["detail"].as_str().unwrap().contains("users:read"), "{body}");
    assert!(!body.to_string().contains("ada@example.com"), "{body}");
    let (status, _) = server
        .api(Method::GET, &format!("/api/organizations/{organization}?include=memberships"), &no_users, None)
        .await;
    assert_eq!(status, StatusCode::OK);

    let (_, all) =
        management_client(&server, &admin, "All three", &[scopes[0], scopes[1], "users:read"]).await;
    let all = server.management_token("acme-test", &all, None).await;
    let (status, body) = server.api(Method::GET, &path, &all, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.to_string().contains("ada@example.com"), "{body}");
});
