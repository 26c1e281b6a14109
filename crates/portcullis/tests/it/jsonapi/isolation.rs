//! Environment isolation in the data layer: another environment's rows never
//! show up in this one's lists, filters, includes, counts or audit trail,
//! and cannot be read, changed or deleted through it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;
use crate::db_test;
use crate::jsonapi::support::*;

db_test!(other_environments_rows_never_leak, |server| {
    let token = server.admin_token().await;
    let beta_creds = server.create_environment("beta").await;
    let beta = server.management_token("beta", &beta_creds, None).await;
    let (server_ref, beta_ref) = (&server, &beta);
    let at_beta = move |method: Method, path: String, body: Option<Value>| async move {
        call_at(server_ref, "beta", method, &path, beta_ref, body).await
    };

    // The same names in both environments (uniqueness is per environment).
    let acme_role = create_role(&server, &token, "Shared").await;
    let acme_user =
        create_user(&server, &token, json!({"email": "same@example.com", "first_name": "Acme"})).await;
    assign_role(&server, &token, &acme_user, &acme_role).await;

    let reply = at_beta(
        Method::POST,
        "/api/roles".into(),
        Some(json!({"data": {"type": "role", "attributes": {"name": "Shared", "description": "beta"}}})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let beta_role = id_of(&reply.body);
    let reply = at_beta(
        Method::POST,
        "/api/roles".into(),
        Some(json!({"data": {"type": "role", "attributes": {"name": "Beta only"}}})),
    )
    .await;
    let beta_only = id_of(&reply.body);
    let reply = at_beta(
        Method::POST,
        "/api/users".into(),
        Some(
            json!({"data": {"type": "user", "attributes": {"email": "same@example.com", "first_name": "Beta",
               "password": "long enough pw", "password_confirmation": "long enough pw"}}}),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let beta_user = id_of(&reply.body);
    let reply = at_beta(
        Method::POST,
        "/api/user-roles".into(),
        Some(json!({"data": {"type": "user_role", "attributes": {},
               "relationships": {"user": {"data": {"type": "user", "id": beta_user}},
                                 "role": {"data": {"type": "role", "id": beta_only}}}}})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let beta_link = id_of(&reply.body);

    // Lists, filters and counts in acme-test see only acme-test's rows.
    let roles = get_ok(&server, &token, "/api/roles?page[count]=true").await;
    assert_eq!(ids(&roles), [acme_role.as_str()]);
    assert_eq!(roles["meta"]["page"]["total"], 1);
    for query in ["filter[name]=Beta%20only", "filter[name][contains]=beta", "filter[name][contains]=only"] {
        assert_eq!(
            get_ok(&server, &token, &format!("/api/roles?{query}")).await["data"],
            json!([]),
            "{query}"
        );
    }
    let users = get_ok(&server, &token, "/api/users?filter[email]=SAME%40example.com&page[count]=true").await;
    assert_eq!(ids(&users), [acme_user.as_str()]);
    assert_eq!(users["meta"]["page"]["total"], 1);
    assert_eq!(get_ok(&server, &token, "/api/users?filter[first_name]=Beta").await["data"], json!([]));
    let links = get_ok(&server, &token, &format!("/api/user-roles?filter[role_id]={beta_only}")).await;
    assert_eq!(links["data"], json!([]));
    let links = get_ok(&server, &token, &format!("/api/user-roles?filter[user_id]={beta_user}")).await;
    assert_eq!(links["data"], json!([]));
    // ...and beta sees only its own.
    let reply = at_beta(Method::GET, "/api/roles?sort=name".into(), None).await;
    assert_eq!(ids(&reply.body), [beta_only.clone(), beta_role.clone()]);

    // Includes link only this environment's related rows.
    let users = get_ok(&server, &token, "/api/users?include=roles").await;
    assert_eq!(
        users["data"][0]["relationships"]["roles"]["data"],
        json!([{"type": "role", "id": acme_role}])
    );
    assert_eq!(users["included"].as_array().unwrap().len(), 1);
    assert_eq!(users["included"][0]["id"], acme_role.as_str());
    assert_eq!(users["included"][0]["attributes"]["description"], Value::Null);

    // A keyset cursor built on a beta row still pages through acme-test only.
    let reply = at_beta(Method::GET, "/api/roles?sort=name&page[limit]=1".into(), None).await;
    let next = reply.body["links"]["next"].as_str().unwrap().to_owned();
    let page = get_ok(&server, &token, &next).await;
    assert!(ids(&page).iter().all(|id| *id == acme_role), "{page}");

    // Single-resource routes: another environment's ids are simply not found.
    for (method, path, body) in [
        (Method::GET, format!("/api/roles/{beta_role}"), None),
        (Method::GET, format!("/api/roles/{beta_role}?include=permissions"), None),
        (
            Method::PATCH,
            format!("/api/roles/{beta_role}"),
            Some(json!({"data": {"type": "role", "attributes": {"name": "Hijacked"}}})),
        ),
        (Method::DELETE, format!("/api/roles/{beta_role}"), None),
        (Method::GET, format!("/api/users/{beta_user}"), None),
        (
            Method::PATCH,
            format!("/api/users/{beta_user}"),
            Some(json!({"data": {"type": "user", "attributes": {"blocked": true}}})),
        ),
        (Method::DELETE, format!("/api/users/{beta_user}"), None),
        (Method::GET, format!("/api/user-roles/{beta_link}"), None),
        (Method::DELETE, format!("/api/user-roles/{beta_link}"), None),
    ] {
        let before = snapshot(&server).await;
        let reply = call(&server, method.clone(), &path, &token, body).await;
        reply.assert_error(404, "not_found");
        assert_eq!(snapshot(&server).await, before, "{method} {path}");
    }
    // Nor can a relationship point across environments.
    let reply = call(
        &server,
        Method::POST,
        "/api/user-roles",
        &token,
        Some(json!({"data": {"type": "user_role", "attributes": {},
               "relationships": {"user": {"data": {"type": "user", "id": acme_user}},
                                 "role": {"data": {"type": "role", "id": beta_only}}}}})),
    )
    .await;
    reply.assert_error_at(422, "invalid_attribute", Some("/data/relationships/role"));

    // Beta's rows are untouched.
    let reply = at_beta(Method::GET, format!("/api/roles/{beta_role}"), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["data"]["attributes"]["name"], "Shared");
    assert_eq!(reply.body["data"]["attributes"]["description"], "beta");
    assert_eq!(reply.body["data"]["attributes"]["user_count"], 0);
    let reply = at_beta(Method::GET, format!("/api/users/{beta_user}?include=roles"), None).await;
    assert_eq!(reply.body["data"]["attributes"]["blocked"], false);
    assert_eq!(reply.body["included"][0]["id"], beta_only.as_str());

    // Audit trails are per environment too.
    let acme_env = text(&server, "SELECT id FROM environments WHERE handle = 'acme-test'").await.unwrap();
    let page = get_ok(&server, &token, "/api/audit-events?page[limit]=100&page[count]=true").await;
    let acme_rows =
        server.count(&format!("SELECT COUNT(*) FROM audit_events WHERE environment_id = '{acme_env}'")).await;
    assert_eq!(page["meta"]["page"]["total"], acme_rows);
    let body = page.to_string();
    for id in [&beta_role, &beta_only, &beta_user, &beta_link, &beta_creds.client_id] {
        assert!(!body.contains(id.as_str()), "beta's {id} appears in acme-test's audit trail");
    }
    let page = get_ok(&server, &token, &format!("/api/audit-events?filter[target_id]={beta_role}")).await;
    assert_eq!(page["data"], json!([]));
    let page =
        get_ok(&server, &token, &format!("/api/audit-events?filter[actor_id]={}", beta_creds.client_id))
            .await;
    assert_eq!(page["data"], json!([]));
    let reply = at_beta(Method::GET, format!("/api/audit-events?filter[target_id]={beta_role}"), None).await;
    assert_eq!(ids(&reply.body).len(), 1);
    let beta_event = ids(&reply.body)[0].clone();
    let reply = call(&server, Method::GET, &format!("/api/audit-events/{beta_event}"), &token, None).await;
    reply.assert_error(404, "not_found");
    // The outbox rows belong to the environment that wrote them.
    let beta_env = text(&server, "SELECT id FROM environments WHERE handle = 'beta'").await.unwrap();
    assert_eq!(
        server
            .count(&format!(
                "SELECT COUNT(*) FROM outbox_events WHERE environment_id = '{beta_env}' AND event_type = 'role.created'"
            ))
            .await,
        2
    );

    // A token for one environment is no key to the other.
    let reply = call_at(&server, "beta", Method::GET, "/api/roles", &token, None).await;
    assert!(matches!(reply.status.as_u16(), 401 | 403), "{}", reply.body);
    assert_eq!(reply.content_type.as_deref(), Some(MEDIA_TYPE));
    let reply = call(&server, Method::GET, "/api/roles", &beta, None).await;
    assert!(matches!(reply.status.as_u16(), 401 | 403), "{}", reply.body);
});
