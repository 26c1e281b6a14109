//! The audit trail: `GET /api/audit-events` and the audit + outbox rows every
//! write records in its own transaction.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;
use crate::db_test;
use crate::harness::TestServer;
use crate::jsonapi::support::*;

/// Audit rows and outbox rows for `action` (they must always agree).
async fn recorded(server: &TestServer, action: &str) -> (i64, i64) {
    let audit = server.count(&format!("SELECT COUNT(*) FROM audit_events WHERE action = '{action}'")).await;
    let outbox =
        server.count(&format!("SELECT COUNT(*) FROM outbox_events WHERE event_type = '{action}'")).await;
    (audit, outbox)
}

/// The audit events of one target, newest first, through the API.
async fn events_for(server: &TestServer, token: &str, target_id: &str) -> Vec<Value> {
    let page = get_ok(server, token, &format!("/api/audit-events?filter[target_id]={target_id}")).await;
    page["data"].as_array().unwrap().clone()
}

fn assert_actor_and_context(event: &Value, server: &TestServer) {
    let attributes = &event["attributes"];
    assert_eq!(
        attributes["actor"],
        json!({"type": "client", "id": server.admin.client_id, "name": attributes["actor"]["name"]}),
        "{event}"
    );
    assert!(attributes["actor"]["name"].is_string(), "the admin client's name: {event}");
    assert_eq!(attributes["ip_address"], "127.0.0.1", "{event}");
    assert_eq!(attributes["user_agent"], USER_AGENT, "{event}");
    assert!(attributes["occurred_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{event}");
}

db_test!(each_write_records_one_audit_row_and_one_outbox_row, |server| {
    let token = server.admin_token().await;
    assert_eq!(recorded(&server, "role.created").await, (0, 0));

    // Create.
    let reply = call(
        &server,
        Method::POST,
        "/api/roles",
        &token,
        Some(
            json!({"data": {"type": "role", "attributes": {"name": "Auditor", "description": "Reads logs"}}}),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.content_type.as_deref(), Some(MEDIA_TYPE));
    let role = id_of(&reply.body);
    assert_eq!(recorded(&server, "role.created").await, (1, 1));
    let events = events_for(&server, &token, &role).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let created = &events[0];
    assert_eq!(created["type"], "audit_event");
    assert_eq!(created["attributes"]["action"], "role.created");
    assert_eq!(created["attributes"]["targets"], json!([{"type": "role", "id": role, "name": "Auditor"}]));
    assert_eq!(created["attributes"]["changes"]["name"], json!({"from": null, "to": "Auditor"}));
    assert_eq!(created["attributes"]["changes"]["description"], json!({"from": null, "to": "Reads logs"}));
    assert_actor_and_context(created, &server);
    // The outbox row carries the same event with the resource as the API shows it.
    let payload =
        text(&server, "SELECT payload FROM outbox_events WHERE event_type = 'role.created'").await.unwrap();
    let payload: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(payload["type"], "role.created");
    assert_eq!(payload["data"]["id"], role.as_str());
    assert_eq!(payload["data"]["attributes"]["name"], "Auditor");
    assert_eq!(
        server.count("SELECT COUNT(*) FROM outbox_events WHERE event_type = 'role.created' AND published_at IS NULL").await,
        1
    );

    // Update: only the fields that changed are in `changes`.
    let reply = call(
        &server,
        Method::PATCH,
        &format!("/api/roles/{role}"),
        &token,
        Some(json!({"data": {"type": "role", "id": role, "attributes": {"name": "Log reader", "description": "Reads logs"}}})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(recorded(&server, "role.updated").await, (1, 1));
    let events = events_for(&server, &token, &role).await;
    assert_eq!(events.len(), 2);
    let updated = &events[0];
    assert_eq!(updated["attributes"]["action"], "role.updated", "newest first");
    assert_eq!(updated["attributes"]["changes"], json!({"name": {"from": "Auditor", "to": "Log reader"}}));
    assert_eq!(updated["attributes"]["targets"][0]["name"], "Log reader");
    assert_actor_and_context(updated, &server);
    // Clearing a field records `to: null`.
    let reply = call(
        &server,
        Method::PATCH,
        &format!("/api/roles/{role}"),
        &token,
        Some(json!({"data": {"type": "role", "attributes": {"description": null}}})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let events = events_for(&server, &token, &role).await;
    assert_eq!(
        events[0]["attributes"]["changes"],
        json!({"description": {"from": "Reads logs", "to": null}})
    );
    assert_eq!(recorded(&server, "role.updated").await, (2, 2));

    // Delete.
    let reply = call(&server, Method::DELETE, &format!("/api/roles/{role}"), &token, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(recorded(&server, "role.deleted").await, (1, 1));
    let events = events_for(&server, &token, &role).await;
    let actions: Vec<&str> = events.iter().map(|e| e["attributes"]["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["role.deleted", "role.updated", "role.updated", "role.created"]);
    assert_actor_and_context(&events[0], &server);
    assert_eq!(
        events[0]["attributes"]["targets"],
        json!([{"type": "role", "id": role, "name": "Log reader"}])
    );

    // A user: created (tracked fields), updated with a password change
    // (two events in one transaction), deleted.
    let user = create_user(&server, &token, json!({"email": "pat@example.com", "first_name": "Pat"})).await;
    assert_eq!(recorded(&server, "user.created").await, (1, 1));
    let created = &events_for(&server, &token, &user).await[0];
    assert_eq!(created["attributes"]["changes"]["email"], json!({"from": null, "to": "pat@example.com"}));
    assert_eq!(created["attributes"]["changes"]["first_name"], json!({"from": null, "to": "Pat"}));
    assert!(created["attributes"]["changes"].get("password").is_none(), "no secrets in changes");
    let reply = call(
        &server,
        Method::PATCH,
        &format!("/api/users/{user}"),
        &token,
        Some(
            json!({"data": {"type": "user", "attributes": {"last_name": "Lee", "password": "another long one",
                                                          "password_confirmation": "another long one"}}}),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(recorded(&server, "user.updated").await, (1, 1));
    assert_eq!(recorded(&server, "user.password_changed").await, (1, 1));
    let events = events_for(&server, &token, &user).await;
    let updated = events.iter().find(|e| e["attributes"]["action"] == "user.updated").unwrap();
    assert_eq!(updated["attributes"]["changes"], json!({"last_name": {"from": null, "to": "Lee"}}));
    let serialized = serde_json::to_string(&events).unwrap();
    assert!(!serialized.contains("another long one"), "a password leaked into the audit trail");
    let reply = call(&server, Method::DELETE, &format!("/api/users/{user}"), &token, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(recorded(&server, "user.deleted").await, (1, 1));

    // Join resources name both sides as targets.
    let user = create_user(&server, &token, json!({"email": "sam@example.com"})).await;
    let role = create_role(&server, &token, "Editor").await;
    let link = assign_role(&server, &token, &user, &role).await;
    assert_eq!(recorded(&server, "user_role.created").await, (1, 1));
    let events = events_for(&server, &token, &user).await;
    let assigned = events.iter().find(|e| e["attributes"]["action"] == "user_role.created").unwrap();
    assert_eq!(
        assigned["attributes"]["targets"],
        json!([{"type": "user", "id": user, "name": "sam@example.com"}, {"type": "role", "id": role, "name": "Editor"}])
    );
    let reply = call(&server, Method::DELETE, &format!("/api/user-roles/{link}"), &token, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(recorded(&server, "user_role.deleted").await, (1, 1));

    // Overall: every audit row has its outbox row, action for action.
    let mismatched = server
        .count(
            "SELECT COUNT(*) FROM (SELECT action, COUNT(*) AS n FROM audit_events WHERE action <> 'token.issued' GROUP BY action) a \
             LEFT JOIN (SELECT event_type, COUNT(*) AS n FROM outbox_events GROUP BY event_type) o \
             ON o.event_type = a.action WHERE o.n IS NULL OR o.n <> a.n",
        )
        .await;
    assert_eq!(mismatched, 0, "audit and outbox rows disagree");
});

db_test!(audit_events_list_filters_and_is_read_only, |server| {
    let token = server.admin_token().await;
    let first = create_role(&server, &token, "First").await;
    let second = create_role(&server, &token, "Second").await;
    let user = create_user(&server, &token, json!({"email": "lee@example.com"})).await;

    // Newest first by default; environment creation was recorded by the system.
    let page = get_ok(&server, &token, "/api/audit-events?page[limit]=100").await;
    let events = page["data"].as_array().unwrap();
    let times: Vec<&str> = events.iter().map(|e| e["attributes"]["occurred_at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    let non_token: Vec<&Value> =
        events.iter().filter(|e| e["attributes"]["action"] != "token.issued").collect();
    assert_eq!(non_token[0]["attributes"]["action"], "user.created");
    assert_eq!(non_token[1]["attributes"]["targets"][0]["id"], second.as_str());
    assert_eq!(non_token[2]["attributes"]["targets"][0]["id"], first.as_str());
    assert!(
        events.iter().any(|e| e["attributes"]["actor"]["type"] == "system"),
        "setting up the environment is audited as the system"
    );

    // Filters: action, actor, target.
    let page = get_ok(&server, &token, "/api/audit-events?filter[action]=role.created").await;
    assert_eq!(ids(&page).len(), 2);
    let targets: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["attributes"]["targets"][0]["id"].as_str().unwrap())
        .collect();
    assert_eq!(targets, [second.as_str(), first.as_str()]);
    let page = get_ok(&server, &token, "/api/audit-events?filter[action][contains]=role").await;
    assert!(
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["attributes"]["action"].as_str().unwrap().contains("role"))
    );
    assert!(ids(&page).len() >= 2);
    let page = get_ok(
        &server,
        &token,
        &format!("/api/audit-events?filter[actor_id]={}&filter[action]=user.created", server.admin.client_id),
    )
    .await;
    assert_eq!(ids(&page).len(), 1);
    assert_eq!(page["data"][0]["attributes"]["targets"][0]["id"], user.as_str());
    let page =
        get_ok(&server, &token, "/api/audit-events?filter[actor_type]=client&filter[target_type]=role").await;
    assert_eq!(ids(&page).len(), 2);
    let page =
        get_ok(&server, &token, "/api/audit-events?filter[actor_type]=system&filter[target_type]=role").await;
    assert_eq!(page["data"], json!([]));
    let page = get_ok(&server, &token, &format!("/api/audit-events?filter[target_id]={first}")).await;
    assert_eq!(ids(&page).len(), 1);
    let page =
        get_ok(&server, &token, "/api/audit-events?filter[action]=role.created&sort=occurred_at").await;
    let targets: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["attributes"]["targets"][0]["id"].as_str().unwrap())
        .collect();
    assert_eq!(targets, [first.as_str(), second.as_str()], "sort=occurred_at is oldest first");
    // Paging through audit events with a cursor.
    let page = get_ok(&server, &token, "/api/audit-events?filter[action]=role.created&page[limit]=1").await;
    assert_eq!(page["data"][0]["attributes"]["targets"][0]["id"], second.as_str());
    let next = get_ok(&server, &token, page["links"]["next"].as_str().unwrap()).await;
    assert_eq!(next["data"][0]["attributes"]["targets"][0]["id"], first.as_str());
    assert!(next["links"].get("next").is_none());

    // A single event by id.
    let id = &ids(&page)[0];
    let one = get_ok(&server, &token, &format!("/api/audit-events/{id}")).await;
    assert_eq!(one["data"]["id"], id.as_str());
    assert_eq!(one["data"]["attributes"]["action"], "role.created");

    for (query, parameter) in [
        ("filter[ip_address]=127.0.0.1", "filter[ip_address]"),
        ("filter[changes]=x", "filter[changes]"),
        ("sort=actor", "sort"),
        ("include=actor", "include"),
    ] {
        let reply = call(&server, Method::GET, &format!("/api/audit-events?{query}"), &token, None).await;
        reply.assert_bad_parameter(parameter);
    }

    // Read-only: no write method succeeds, and each answers with a JSON:API error.
    let before = snapshot(&server).await;
    let body = json!({"data": {"type": "audit_event", "attributes": {"action": "user.created"}}});
    for (method, path) in [
        (Method::POST, "/api/audit-events".to_owned()),
        (Method::PATCH, format!("/api/audit-events/{id}")),
        (Method::DELETE, format!("/api/audit-events/{id}")),
        (Method::PUT, format!("/api/audit-events/{id}")),
        (Method::DELETE, "/api/audit-events".to_owned()),
    ] {
        let reply = call(&server, method.clone(), &path, &token, Some(body.clone())).await;
        assert!(!reply.status.is_success(), "{method} {path} succeeded");
        reply.assert_error(405, "method_not_allowed");
        let allow = reply.headers.get("allow").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        assert!(allow.contains("GET"), "405 names the allowed methods: {allow:?}");
        assert!(!allow.contains("POST") && !allow.contains("DELETE"), "{allow:?}");
    }
    assert_eq!(snapshot(&server).await, before, "nothing was written");
    assert_eq!(get_ok(&server, &token, &format!("/api/audit-events/{id}")).await["data"]["id"], id.as_str());

    // Reading needs audit_events:read.
    let users_only =
        server.management_token("acme-test", &server.admin, Some("users:read roles:write")).await;
    let reply = call(&server, Method::GET, "/api/audit-events", &users_only, None).await;
    reply.assert_error(403, "forbidden");
    let reply = call(&server, Method::GET, &format!("/api/audit-events/{id}"), &users_only, None).await;
    reply.assert_error(403, "forbidden");
    let auditor = server.management_token("acme-test", &server.admin, Some("audit_events:read")).await;
    get_ok(&server, &auditor, "/api/audit-events").await;
    let reply = call(&server, Method::GET, "/api/roles", &auditor, None).await;
    reply.assert_error(403, "forbidden");
    let reply = call(&server, Method::GET, "/api/audit-events", "not-a-token", None).await;
    reply.assert_error(401, "unauthorized");
});

db_test!(token_issuance_is_audited_asynchronously, |server| {
    let token = server.admin_token().await;
    let issued = "SELECT COUNT(*) FROM audit_events WHERE action = 'token.issued'";
    let n = wait_for_count(&server, issued, 1).await;
    assert_eq!(n, 1, "one token so far");

    // A token request with a recognisable user agent.
    let resource = server.management_api();
    let response = server
        .http
        .post(server.url("/oauth/token"))
        .basic_auth(&server.admin.client_id, Some(&server.admin.client_secret))
        .header("user-agent", "token-fetcher/2")
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", resource.as_str()),
            ("scope", "users:read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(wait_for_count(&server, issued, 2).await, 2, "token.issued was not audited");
    assert_eq!(
        wait_for_count(&server, "SELECT COUNT(*) FROM outbox_events WHERE event_type = 'token.issued'", 2)
            .await,
        2
    );

    let page = get_ok(&server, &token, "/api/audit-events?filter[action]=token.issued").await;
    let events = page["data"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    let event =
        events.iter().find(|e| e["attributes"]["user_agent"] == "token-fetcher/2").expect("the second token");
    assert_eq!(event["attributes"]["actor"]["type"], "client");
    assert_eq!(event["attributes"]["actor"]["id"], server.admin.client_id.as_str());
    assert_eq!(event["attributes"]["ip_address"], "127.0.0.1");
    assert_eq!(event["attributes"]["targets"][0]["type"], "client");
    let body: String = serde_json::to_string(event).unwrap();
    assert!(!body.contains(&token), "the token itself is not in the audit trail");
    let payloads = text(
        &server,
        "SELECT payload FROM outbox_events WHERE event_type = 'token.issued' ORDER BY created_at DESC",
    )
    .await
    .unwrap();
    let payload: Value = serde_json::from_str(&payloads).unwrap();
    assert_eq!(payload["data"]["scope"], "users:read");
    assert_eq!(payload["data"]["client_id"], server.admin.client_id.as_str());

    // A refused token request records nothing.
    let (status, _) = server
        .token_request(
            "acme-test",
            &server.admin,
            &[("grant_type", "client_credentials"), ("resource", "https://nowhere.example/api")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server
        .token_request(
            "acme-test",
            &crate::harness::Creds {
                client_id: server.admin.client_id.clone(),
                client_secret: "wrong".into(),
            },
            &[("grant_type", "client_credentials"), ("resource", resource.as_str())],
        )
        .await;
    assert!(!status.is_success());
    // One more good token acts as a barrier: once its event lands, any event
    // for the refused requests would have landed before it.
    server.admin_token().await;
    assert_eq!(wait_for_count(&server, issued, 3).await, 3);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(server.count(issued).await, 3, "refused token requests are not token.issued");
});

/// Audit and outbox counts before a write, to check it recorded exactly one
/// event of its action (and nothing else) in both tables.
struct Tally {
    action: &'static str,
    counts: [i64; 4],
}

impl Tally {
    async fn counts(server: &TestServer, action: &str) -> [i64; 4] {
        [
            server.count("SELECT COUNT(*) FROM audit_events WHERE action <> 'token.issued'").await,
            server.count("SELECT COUNT(*) FROM outbox_events WHERE event_type <> 'token.issued'").await,
            server.count(&format!("SELECT COUNT(*) FROM audit_events WHERE action = '{action}'")).await,
            server.count(&format!("SELECT COUNT(*) FROM outbox_events WHERE event_type = '{action}'")).await,
        ]
    }

    async fn take(server: &TestServer, action: &'static str) -> Tally {
        Tally { action, counts: Self::counts(server, action).await }
    }

    /// Asserts the write succeeded and added one `action` event about
    /// `target`; returns the event as the API shows it.
    async fn one(self, server: &TestServer, token: &str, reply: &Reply, target: &str) -> Value {
        assert!(reply.status.is_success(), "{} failed: {}", self.action, reply.body);
        let after = Self::counts(server, self.action).await;
        let expected = self.counts.map(|n| n + 1);
        assert_eq!(after, expected, "{}: [audit, outbox, audit of action, outbox of action]", self.action);
        let page =
            get_ok(server, token, &format!("/api/audit-events?filter[action]={}&page[limit]=1", self.action))
                .await;
        let event = page["data"][0].clone();
        let targets = event["attributes"]["targets"].as_array().unwrap();
        assert!(
            targets.iter().any(|t| t["id"] == target),
            "{}: targets {targets:?} lack {target}",
            self.action
        );
        assert_actor_and_context(&event, server);
        event
    }
}

/// One audited write: takes a [`Tally`] of `action`, then runs `write` (a
/// future does nothing until awaited, so the tally comes first) and asserts
/// it recorded exactly one event about `target` or, when `None`, about the
/// resource the write returned. Returns the reply and the event.
async fn audited(
    server: &TestServer,
    token: &str,
    action: &'static str,
    write: impl Future<Output = Reply>,
    target: Option<&str>,
) -> (Reply, Value) {
    let tally = Tally::take(server, action).await;
    let reply = write.await;
    let target = target.map_or_else(|| id_of(&reply.body), str::to_owned);
    let event = tally.one(server, token, &reply, &target).await;
    (reply, event)
}

db_test!(every_kind_of_write_records_exactly_one_event, |server| {
    let token = server.admin_token().await;
    let post = |path: &'static str, data: Value| {
        call(&server, Method::POST, path, &token, Some(json!({"data": data})))
    };

    // Permissions.
    let (reply, _) = audited(
        &server,
        &token,
        "permission.created",
        post("/api/permissions", json!({"type": "permission", "attributes": {"name": "docs:read"}})),
        None,
    )
    .await;
    let permission = id_of(&reply.body);
    let (_, event) = audited(
        &server,
        &token,
        "permission.updated",
        call(
            &server,
            Method::PATCH,
            &format!("/api/permissions/{permission}"),
            &token,
            Some(json!({"data": {"type": "permission", "attributes": {"description": "Read docs"}}})),
        ),
        Some(&permission),
    )
    .await;
    assert_eq!(event["attributes"]["changes"], json!({"description": {"from": null, "to": "Read docs"}}));

    // A role's permissions.
    let role = create_role(&server, &token, "Reader").await;
    let (reply, _) = audited(
        &server,
        &token,
        "role_permission.created",
        post(
            "/api/role-permissions",
            json!({"type": "role_permission", "attributes": {},
                   "relationships": {"role": {"data": {"type": "role", "id": role}},
                                     "permission": {"data": {"type": "permission", "id": permission}}}}),
        ),
        Some(&permission),
    )
    .await;
    let link = id_of(&reply.body);
    audited(
        &server,
        &token,
        "role_permission.deleted",
        call(&server, Method::DELETE, &format!("/api/role-permissions/{link}"), &token, None),
        Some(&link),
    )
    .await;

    // Resource servers and their scopes.
    let (reply, _) = audited(
        &server,
        &token,
        "resource_server.created",
        post(
            "/api/resource-servers",
            json!({"type": "resource_server", "attributes": {"name": "Docs API", "identifier": "https://docs.example.com"}}),
        ),
        None,
    )
    .await;
    let api = id_of(&reply.body);
    let (reply, _) = audited(
        &server,
        &token,
        "scope.created",
        post(
            "/api/scopes",
            json!({"type": "scope", "attributes": {"name": "read:docs"},
                   "relationships": {"resource_server": {"data": {"type": "resource_server", "id": api}}}}),
        ),
        None,
    )
    .await;
    let scope = id_of(&reply.body);
    audited(
        &server,
        &token,
        "scope.updated",
        call(
            &server,
            Method::PATCH,
            &format!("/api/scopes/{scope}"),
            &token,
            Some(json!({"data": {"type": "scope", "attributes": {"description": "Read documents"}}})),
        ),
        Some(&scope),
    )
    .await;
    audited(
        &server,
        &token,
        "resource_server.updated",
        call(
            &server,
            Method::PATCH,
            &format!("/api/resource-servers/{api}"),
            &token,
            Some(json!({"data": {"type": "resource_server", "attributes": {"name": "Documents API"}}})),
        ),
        Some(&api),
    )
    .await;

    // Clients, their secrets and grants.
    let (reply, event) = audited(
        &server,
        &token,
        "client.registered",
        post(
            "/api/clients",
            json!({"type": "client", "attributes": {"name": "Worker", "grant_types": ["client_credentials"]}}),
        ),
        None,
    )
    .await;
    let client = id_of(&reply.body);
    let first_secret = reply.body["meta"]["client_secret"].as_str().unwrap().to_owned();
    assert!(!event.to_string().contains(&first_secret), "the client secret leaked into the audit trail");
    let (_, event) = audited(
        &server,
        &token,
        "client.updated",
        call(
            &server,
            Method::PATCH,
            &format!("/api/clients/{client}"),
            &token,
            Some(json!({"data": {"type": "client", "attributes": {"name": "Batch worker"}}})),
        ),
        Some(&client),
    )
    .await;
    assert_eq!(event["attributes"]["changes"], json!({"name": {"from": "Worker", "to": "Batch worker"}}));
    let (reply, event) = audited(
        &server,
        &token,
        "client.updated",
        call(&server, Method::PATCH, &format!("/api/clients/{client}/rotate-secret"), &token, None),
        Some(&client),
    )
    .await;
    let second_secret = reply.body["meta"]["client_secret"].as_str().expect("new secret").to_owned();
    assert!(!event.to_string().contains(&second_secret), "the rotated secret leaked into the audit trail");
    let stored =
        texts(&server, "SELECT payload FROM outbox_events UNION ALL SELECT changes FROM audit_events").await;
    for secret in [&first_secret, &second_secret] {
        assert!(
            !stored.iter().any(|row| row.contains(secret.as_str())),
            "a client secret was stored in an event"
        );
    }
    let (reply, _) = audited(
        &server,
        &token,
        "client_resource_server_grant.created",
        post(
            "/api/client-resource-server-grants",
            json!({"type": "client_resource_server_grant", "attributes": {"allowed_scopes": ["read:docs"]},
                   "relationships": {"client": {"data": {"type": "client", "id": client}},
                                     "resource_server": {"data": {"type": "resource_server", "id": api}}}}),
        ),
        Some(&client),
    )
    .await;
    let grant = id_of(&reply.body);
    audited(
        &server,
        &token,
        "client_resource_server_grant.updated",
        call(
            &server,
            Method::PATCH,
            &format!("/api/client-resource-server-grants/{grant}"),
            &token,
            Some(
                json!({"data": {"type": "client_resource_server_grant", "attributes": {"allowed_scopes": null}}}),
            ),
        ),
        Some(&grant),
    )
    .await;
    for (action, path, target) in [
        (
            "client_resource_server_grant.deleted",
            format!("/api/client-resource-server-grants/{grant}"),
            &grant,
        ),
        ("scope.deleted", format!("/api/scopes/{scope}"), &scope),
        ("resource_server.deleted", format!("/api/resource-servers/{api}"), &api),
        ("client.deleted", format!("/api/clients/{client}"), &client),
        ("permission.deleted", format!("/api/permissions/{permission}"), &permission),
    ] {
        let tally = Tally::take(&server, action).await;
        let reply = call(&server, Method::DELETE, &path, &token, None).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{path}: {}", reply.body);
        tally.one(&server, &token, &reply, target).await;
    }

    // Signing keys: generate, hand primary back, deactivate.
    let original =
        get_ok(&server, &token, "/api/signing-keys").await["data"][0]["id"].as_str().unwrap().to_owned();
    let (reply, _) = audited(
        &server,
        &token,
        "signing_key.generated",
        post("/api/signing-keys", json!({"type": "signing_key", "attributes": {"algorithm": "es256"}})),
        None,
    )
    .await;
    let key = id_of(&reply.body);
    audited(
        &server,
        &token,
        "signing_key.primary_changed",
        call(&server, Method::PATCH, &format!("/api/signing-keys/{original}/set-primary"), &token, None),
        Some(&original),
    )
    .await;
    let (_, event) = audited(
        &server,
        &token,
        "signing_key.deactivated",
        call(&server, Method::PATCH, &format!("/api/signing-keys/{key}/deactivate"), &token, None),
        Some(&key),
    )
    .await;
    assert_eq!(event["attributes"]["changes"]["status"], json!({"from": "active", "to": "inactive"}));
    // Deactivating it again fails and records nothing.
    let before = snapshot(&server).await;
    let reply =
        call(&server, Method::PATCH, &format!("/api/signing-keys/{key}/deactivate"), &token, None).await;
    reply.assert_error(409, "conflict");
    assert_eq!(snapshot(&server).await, before);

    // The environment's own settings.
    let environment = id_of(&get_ok(&server, &token, "/api/environment").await);
    let (_, event) = audited(
        &server,
        &token,
        "environment.updated",
        call(
            &server,
            Method::PATCH,
            "/api/environment",
            &token,
            Some(json!({"data": {"type": "environment", "attributes": {"name": "Acme (test)"}}})),
        ),
        Some(&environment),
    )
    .await;
    assert_eq!(event["attributes"]["changes"], json!({"name": {"from": "Acme Test", "to": "Acme (test)"}}));
});
