//! Join resources: role permissions and user roles. Created with empty
//! attributes and to-one relationships; unique per pair; relationships must
//! name existing resources of this environment.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    assert_conflict, assert_error, assert_invalid, assert_not_found, create_permission, create_role,
    create_user, id_of,
};
use crate::db_test;
use crate::harness::TestServer;
use crate::resources::support::{doc, link_doc, patch_doc};

/// Creating `kind` at `path` between `(name, type)` pairs `a` and `b`.
struct Join {
    path: &'static str,
    kind: &'static str,
    a: (&'static str, &'static str),
    b: (&'static str, &'static str),
}

const ROLE_PERMISSION: Join = Join {
    path: "/api/role-permissions",
    kind: "role_permission",
    a: ("role", "role"),
    b: ("permission", "permission"),
};
const USER_ROLE: Join =
    Join { path: "/api/user-roles", kind: "user_role", a: ("user", "user"), b: ("role", "role") };

impl Join {
    fn body(&self, a: &str, b: &str) -> Value {
        link_doc(self.kind, json!({}), &[(self.a.0, self.a.1, a), (self.b.0, self.b.1, b)])
    }

    async fn post(&self, server: &TestServer, token: &str, body: Value) -> (StatusCode, Value) {
        server.api(Method::POST, self.path, token, Some(body)).await
    }

    /// Runs the shared checks, given two valid `a` ids and two valid `b` ids.
    async fn check(&self, server: &TestServer, token: &str, a: [&str; 2], b: [&str; 2]) {
        let (an, at) = self.a;
        let (bn, bt) = self.b;
        let (status, created) = self.post(server, token, self.body(a[0], b[0])).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = id_of(&created);
        let data = &created["data"];
        assert_eq!(data["type"], self.kind);
        assert_eq!(data["relationships"][an]["data"], json!({"type": at, "id": a[0]}));
        assert_eq!(data["relationships"][bn]["data"], json!({"type": bt, "id": b[0]}));
        assert!(data["attributes"]["inserted_at"].is_string(), "{created}");

        // The same pair again is a conflict, pointing at the relationship.
        let (status, body) = self.post(server, token, self.body(a[0], b[0])).await;
        assert_conflict(status, &body, &format!("/data/relationships/{bn}"));
        // Other pairs are fine.
        for (x, y) in [(a[0], b[1]), (a[1], b[0])] {
            let (status, body) = self.post(server, token, self.body(x, y)).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }

        // A relationship naming nothing is a 422 on that relationship.
        let missing = "0190f5c2-0000-7000-8000-000000000000";
        let (status, body) = self.post(server, token, self.body(missing, b[1])).await;
        assert_error(status, &body, 422, "invalid_attribute", Some(&format!("/data/relationships/{an}")));
        let (status, body) = self.post(server, token, self.body(a[1], missing)).await;
        assert_error(status, &body, 422, "invalid_attribute", Some(&format!("/data/relationships/{bn}")));

        // A missing relationship is `required`.
        let only_a = link_doc(self.kind, json!({}), &[(an, at, a[1])]);
        let (status, body) = self.post(server, token, only_a).await;
        assert_error(status, &body, 422, "required", Some(&format!("/data/relationships/{bn}")));
        let only_b = link_doc(self.kind, json!({}), &[(bn, bt, b[1])]);
        let (status, body) = self.post(server, token, only_b).await;
        assert_error(status, &body, 422, "required", Some(&format!("/data/relationships/{an}")));

        // Linkage of the wrong type.
        let wrong = link_doc(self.kind, json!({}), &[(an, "client", a[1]), (bn, bt, b[1])]);
        let (status, body) = self.post(server, token, wrong).await;
        assert_error(
            status,
            &body,
            422,
            "invalid_attribute",
            Some(&format!("/data/relationships/{an}/data/type")),
        );

        // Malformed linkage.
        for linkage in [json!({"type": at}), json!({"id": a[1]}), json!(null), json!("id")] {
            let mut body = self.body(a[1], b[1]);
            body["data"]["relationships"][an]["data"] = linkage;
            let (status, body) = self.post(server, token, body).await;
            assert_error(status, &body, 400, "invalid_body", Some(&format!("/data/relationships/{an}/data")));
        }
        let mut body = self.body(a[1], b[1]);
        body["data"]["relationships"][an] = json!({"links": {}});
        let (status, body) = self.post(server, token, body).await;
        assert_error(status, &body, 400, "invalid_body", Some(&format!("/data/relationships/{an}/data")));

        // Join resources take no attributes.
        let (status, body) = self
            .post(server, token, link_doc(self.kind, json!({"note": "x"}), &[(an, at, a[1]), (bn, bt, b[1])]))
            .await;
        assert_invalid(status, &body, "note");

        // Only the three valid links were stored.
        let (status, list) = server.api(Method::GET, self.path, token, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["data"].as_array().unwrap().len(), 3, "{list}");

        // No PATCH: a link is deleted and re-created instead.
        let path = format!("{}/{id}", self.path);
        let (status, body) =
            server.api(Method::PATCH, &path, token, Some(patch_doc(self.kind, &id, json!({})))).await;
        assert_error(status, &body, 405, "method_not_allowed", None);

        let (status, body) = server.api(Method::GET, &path, token, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["id"], id.as_str());
        let (status, _) = server.api(Method::DELETE, &path, token, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = server.api(Method::GET, &path, token, None).await;
        assert_not_found(status, &body);
        let (status, body) = server.api(Method::DELETE, &path, token, None).await;
        assert_not_found(status, &body);
        // Once deleted, the pair can be linked again.
        let (status, body) = self.post(server, token, self.body(a[0], b[0])).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

db_test!(role_permissions, |server| {
    let admin = server.admin_token().await;
    let roles = [create_role(&server, &admin, "A").await, create_role(&server, &admin, "B").await];
    let permissions = [
        create_permission(&server, &admin, "x:read").await,
        create_permission(&server, &admin, "x:write").await,
    ];
    ROLE_PERMISSION.check(&server, &admin, [&roles[0], &roles[1]], [&permissions[0], &permissions[1]]).await;
});

db_test!(user_roles, |server| {
    let admin = server.admin_token().await;
    let users = [
        create_user(&server, &admin, json!({"email": "u1@example.com"})).await,
        create_user(&server, &admin, json!({"email": "u2@example.com"})).await,
    ];
    let roles = [create_role(&server, &admin, "A").await, create_role(&server, &admin, "B").await];
    USER_ROLE.check(&server, &admin, [&users[0], &users[1]], [&roles[0], &roles[1]]).await;
});

db_test!(links_cannot_reach_into_another_environment, |server| {
    let admin = server.admin_token().await;
    let other = server.create_environment("other").await;
    let other_token = server.management_token("other", &other, None).await;
    let role = create_role(&server, &admin, "Local").await;
    let user = create_user(&server, &admin, json!({"email": "local@example.com"})).await;
    let permission = create_permission(&server, &admin, "local:read").await;
    let (status, body) = server
        .api_at(
            "other",
            Method::POST,
            "/api/roles",
            &other_token,
            Some(doc("role", json!({"name": "Foreign"}))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let foreign_role = id_of(&body);

    let (status, body) = USER_ROLE.post(&server, &admin, USER_ROLE.body(&user, &foreign_role)).await;
    assert_error(status, &body, 422, "invalid_attribute", Some("/data/relationships/role"));
    let (status, body) =
        ROLE_PERMISSION.post(&server, &admin, ROLE_PERMISSION.body(&foreign_role, &permission)).await;
    assert_error(status, &body, 422, "invalid_attribute", Some("/data/relationships/role"));
    // Nor may another environment's token link this one's resources.
    let (status, body) = server
        .api_at("other", Method::POST, "/api/user-roles", &other_token, Some(USER_ROLE.body(&user, &role)))
        .await;
    assert_error(status, &body, 422, "invalid_attribute", Some("/data/relationships/user"));
    assert_eq!(server.count("SELECT COUNT(*) FROM user_roles").await, 0);
    assert_eq!(server.count("SELECT COUNT(*) FROM role_permissions").await, 0);
});

db_test!(deleting_a_permission_removes_it_from_roles, |server| {
    let admin = server.admin_token().await;
    let role = create_role(&server, &admin, "Editor").await;
    let keep = create_permission(&server, &admin, "posts:read").await;
    let drop = create_permission(&server, &admin, "posts:delete").await;
    for permission in [&keep, &drop] {
        let (status, body) =
            ROLE_PERMISSION.post(&server, &admin, ROLE_PERMISSION.body(&role, permission)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, _) = server.api(Method::DELETE, &format!("/api/permissions/{drop}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) =
        server.api(Method::GET, &format!("/api/roles/{role}?include=permissions"), &admin, None).await;
    assert_eq!(body["data"]["attributes"]["permission_count"], 1, "{body}");
    assert_eq!(
        body["data"]["relationships"]["permissions"]["data"],
        json!([{"type": "permission", "id": keep}])
    );
});
