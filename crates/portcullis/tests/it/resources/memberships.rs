//! Memberships: one per user per organization, metadata, includes across
//! users and organizations, `member_count`, the audit trail, and cascades
//! when an organization or a user is deleted.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{assert_conflict, assert_error, assert_invalid, assert_not_found, create_user, id_of};
use crate::db_test;
use crate::harness::TestServer;
use crate::resources::support::{link_doc, patch_doc};

const PATH: &str = "/api/memberships";

async fn create_organization(server: &TestServer, token: &str, name: &str) -> String {
    id_of(
        &server.create(token, "/api/organizations", "organization", json!({"name": name}), Value::Null).await,
    )
}

fn membership(user: &str, organization: &str, attributes: Value) -> Value {
    link_doc(
        "membership",
        attributes,
        &[("user", "user", user), ("organization", "organization", organization)],
    )
}

async fn member_count(server: &TestServer, token: &str, organization: &str) -> Value {
    let (status, body) =
        server.api(Method::GET, &format!("/api/organizations/{organization}"), token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["attributes"]["member_count"].clone()
}

db_test!(memberships_link_users_to_organizations_once, |server| {
    let admin = server.admin_token().await;
    let ada = create_user(&server, &admin, json!({"email": "ada@example.com"})).await;
    let bob = create_user(&server, &admin, json!({"email": "bob@example.com"})).await;
    let acme = create_organization(&server, &admin, "Acme").await;
    let globex = create_organization(&server, &admin, "Globex").await;
    assert_eq!(member_count(&server, &admin, &acme).await, 0);

    let (status, body) = server
        .api(Method::POST, PATH, &admin, Some(membership(&ada, &acme, json!({"metadata": {"title": "CTO"}}))))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ada_acme = id_of(&body);
    assert_eq!(body["data"]["attributes"]["metadata"], json!({"title": "CTO"}));
    assert_eq!(body["data"]["relationships"]["user"]["data"], json!({"type": "user", "id": ada}));
    assert_eq!(
        body["data"]["relationships"]["organization"]["data"],
        json!({"type": "organization", "id": acme})
    );
    for (user, organization) in [(&bob, &acme), (&ada, &globex)] {
        let (status, body) =
            server.api(Method::POST, PATH, &admin, Some(membership(user, organization, json!({})))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(member_count(&server, &admin, &acme).await, 2);

    // Once per pair; related resources must exist; metadata is an object.
    let (status, body) =
        server.api(Method::POST, PATH, &admin, Some(membership(&ada, &acme, json!({})))).await;
    assert_conflict(status, &body, "/data/relationships/user");
    let (status, body) =
        server.api(Method::POST, PATH, &admin, Some(membership("nope", &acme, json!({})))).await;
    assert_error(status, &body, 422, "invalid_attribute", Some("/data/relationships/user"));
    let (status, body) =
        server.api(Method::POST, PATH, &admin, Some(membership(&ada, "nope", json!({})))).await;
    assert_error(status, &body, 422, "invalid_attribute", Some("/data/relationships/organization"));
    let (status, body) =
        server.api(Method::POST, PATH, &admin, Some(membership(&bob, &globex, json!({"metadata": 3})))).await;
    assert_invalid(status, &body, "metadata");
    let no_organization = link_doc("membership", json!({}), &[("user", "user", &bob)]);
    let (status, body) = server.api(Method::POST, PATH, &admin, Some(no_organization)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(server.count("SELECT COUNT(*) FROM memberships").await, 3);

    // Filters and includes across users and organizations.
    let (status, body) = server
        .api(
            Method::GET,
            &format!("{PATH}?filter[organization_id]={acme}&include=user,organization"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2, "{body}");
    let mut emails: Vec<&str> = body["included"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "user")
        .map(|o| o["attributes"]["email"].as_str().unwrap())
        .collect();
    emails.sort();
    assert_eq!(emails, ["ada@example.com", "bob@example.com"]);
    let (status, body) = server
        .api(Method::GET, &format!("/api/organizations/{acme}?include=memberships"), &admin, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["relationships"]["memberships"]["data"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(body["included"].as_array().unwrap().len(), 2, "{body}");

    // Metadata changes; nothing else does.
    let path = format!("{PATH}/{ada_acme}");
    let (status, body) = server
        .api(
            Method::PATCH,
            &path,
            &admin,
            Some(patch_doc("membership", &ada_acme, json!({"metadata": {"title": "CEO"}}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["metadata"], json!({"title": "CEO"}));
    for bad in [json!({"metadata": null}), json!({"metadata": []}), json!({"user_id": bob})] {
        let (status, body) =
            server.api(Method::PATCH, &path, &admin, Some(patch_doc("membership", &ada_acme, bad))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }

    // Delete one; audited once each way.
    let (status, _) = server.api(Method::DELETE, &path, &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server.api(Method::GET, &path, &admin, None).await;
    assert_not_found(status, &body);
    assert_eq!(member_count(&server, &admin, &acme).await, 1);
    for (action, count) in [("membership.created", 3), ("membership.updated", 1), ("membership.deleted", 1)] {
        let sql = format!("SELECT COUNT(*) FROM audit_events WHERE action = '{action}'");
        assert_eq!(server.count(&sql).await, count, "{action}");
    }
});

db_test!(memberships_go_with_their_organization_or_user, |server| {
    let admin = server.admin_token().await;
    let ada = create_user(&server, &admin, json!({"email": "ada@example.com"})).await;
    let bob = create_user(&server, &admin, json!({"email": "bob@example.com"})).await;
    let acme = create_organization(&server, &admin, "Acme").await;
    let globex = create_organization(&server, &admin, "Globex").await;
    for (user, organization) in [(&ada, &acme), (&bob, &acme), (&bob, &globex)] {
        let (status, body) =
            server.api(Method::POST, PATH, &admin, Some(membership(user, organization, json!({})))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, _) = server.api(Method::DELETE, &format!("/api/organizations/{acme}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(server.count("SELECT COUNT(*) FROM memberships").await, 1);
    let (status, _) = server.api(Method::DELETE, &format!("/api/users/{bob}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(server.count("SELECT COUNT(*) FROM memberships").await, 0);
    assert_eq!(member_count(&server, &admin, &globex).await, 0);
    // Ada is still a user, just no member of anything.
    let (status, _) = server.api(Method::GET, &format!("/api/users/{ada}"), &admin, None).await;
    assert_eq!(status, StatusCode::OK);
});

db_test!(members_hold_organization_level_roles, |server| {
    let admin = server.admin_token().await;
    let ada = create_user(&server, &admin, json!({"email": "ada@example.com"})).await;
    let acme = create_organization(&server, &admin, "Acme").await;
    let (_, body) = server.api(Method::POST, PATH, &admin, Some(membership(&ada, &acme, json!({})))).await;
    let member = id_of(&body);
    let billing = crate::common::create_role(&server, &admin, "Billing admin").await;
    let support = crate::common::create_role(&server, &admin, "Support").await;
    let grant = |role: &str| {
        link_doc(
            "membership_role",
            json!({}),
            &[("membership", "membership", &member), ("role", "role", role)],
        )
    };

    let (status, body) =
        server.api(Method::POST, "/api/membership-roles", &admin, Some(grant(&billing))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let billing_link = id_of(&body);
    assert_eq!(body["data"]["relationships"]["membership"]["data"]["id"], member.as_str());
    assert_eq!(body["data"]["relationships"]["role"]["data"], json!({"type": "role", "id": billing}));
    let (status, body) =
        server.api(Method::POST, "/api/membership-roles", &admin, Some(grant(&support))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Once per pair; both ends must exist here.
    let (status, body) =
        server.api(Method::POST, "/api/membership-roles", &admin, Some(grant(&billing))).await;
    assert_conflict(status, &body, "/data/relationships/role");
    let (status, body) = server.api(Method::POST, "/api/membership-roles", &admin, Some(grant("nope"))).await;
    assert_error(status, &body, 422, "invalid_attribute", Some("/data/relationships/role"));
    let stray = link_doc(
        "membership_role",
        json!({}),
        &[("membership", "membership", "nope"), ("role", "role", &billing)],
    );
    let (status, body) = server.api(Method::POST, "/api/membership-roles", &admin, Some(stray)).await;
    assert_error(status, &body, 422, "invalid_attribute", Some("/data/relationships/membership"));

    // The membership shows its roles.
    let (status, body) =
        server.api(Method::GET, &format!("{PATH}/{member}?include=roles"), &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["relationships"]["roles"]["data"].as_array().unwrap().len(), 2, "{body}");
    let mut names: Vec<&str> = body["included"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["attributes"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["Billing admin", "Support"]);

    // Removing one, deleting a role, deleting the membership: the links go.
    let (status, _) =
        server.api(Method::DELETE, &format!("/api/membership-roles/{billing_link}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(server.count("SELECT COUNT(*) FROM membership_roles").await, 1);
    let (status, _) = server.api(Method::DELETE, &format!("/api/roles/{support}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(server.count("SELECT COUNT(*) FROM membership_roles").await, 0);
    let (_, body) = server.api(Method::POST, "/api/membership-roles", &admin, Some(grant(&billing))).await;
    assert!(body["data"]["id"].is_string(), "{body}");
    let (status, _) = server.api(Method::DELETE, &format!("{PATH}/{member}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(server.count("SELECT COUNT(*) FROM membership_roles").await, 0);
    for (action, count) in [("membership_role.created", 3), ("membership_role.deleted", 1)] {
        let sql = format!("SELECT COUNT(*) FROM audit_events WHERE action = '{action}'");
        assert_eq!(server.count(&sql).await, count, "{action}");
    }
});

db_test!(nested_includes_follow_memberships_to_users_and_roles, |server| {
    let admin = server.admin_token().await;
    let ada = create_user(&server, &admin, json!({"email": "ada@example.com"})).await;
    let bob = create_user(&server, &admin, json!({"email": "bob@example.com"})).await;
    let acme = create_organization(&server, &admin, "Acme").await;
    let globex = create_organization(&server, &admin, "Globex").await;
    let mut members = Vec::new();
    for (user, organization) in [(&ada, &acme), (&bob, &acme), (&ada, &globex)] {
        let (status, body) =
            server.api(Method::POST, PATH, &admin, Some(membership(user, organization, json!({})))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        members.push(id_of(&body));
    }
    let billing = crate::common::create_role(&server, &admin, "Billing admin").await;
    let grant = link_doc(
        "membership_role",
        json!({}),
        &[("membership", "membership", &members[0]), ("role", "role", &billing)],
    );
    let (status, body) = server.api(Method::POST, "/api/membership-roles", &admin, Some(grant)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // One organization: its memberships, their users and roles, each once.
    let (status, body) = server
        .api(
            Method::GET,
            &format!("/api/organizations/{acme}?include=memberships.user,memberships.roles"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let included = body["included"].as_array().unwrap();
    let of = |kind: &str| included.iter().filter(|o| o["type"] == kind).collect::<Vec<_>>();
    assert_eq!(of("membership").len(), 2, "{body}");
    let mut emails: Vec<&str> =
        of("user").iter().map(|o| o["attributes"]["email"].as_str().unwrap()).collect();
    emails.sort();
    assert_eq!(emails, ["ada@example.com", "bob@example.com"], "{body}");
    assert_eq!(of("role").len(), 1, "{body}");
    assert_eq!(included.len(), 5, "no resource twice: {body}");
    // Full linkage: the organization names its memberships, each membership its roles.
    assert_eq!(body["data"]["relationships"]["memberships"]["data"].as_array().unwrap().len(), 2);
    let adas = of("membership").into_iter().find(|m| m["id"] == members[0].as_str()).unwrap();
    assert_eq!(adas["relationships"]["roles"]["data"], json!([{"type": "role", "id": billing}]), "{body}");
    assert_eq!(adas["relationships"]["user"]["data"]["id"], ada.as_str());

    // A list: Ada is a member of both organizations and included once.
    let (status, body) =
        server.api(Method::GET, "/api/organizations?include=memberships.user", &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let included = body["included"].as_array().unwrap();
    assert_eq!(included.iter().filter(|o| o["type"] == "membership").count(), 3, "{body}");
    assert_eq!(included.iter().filter(|o| o["type"] == "user").count(), 2, "{body}");

    // Only declared paths; the error names the parameter.
    for bad in ["memberships.organization.memberships", "memberships.bogus", "memberships."] {
        let (status, body) =
            server.api(Method::GET, &format!("/api/organizations?include={bad}"), &admin, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["errors"][0]["source"]["parameter"], "include", "{body}");
    }
});
