//! The webhook resource: the secret once, validation of `url` and `events`
//! against the catalogue, targets that are not public refused (also by a
//! name that resolves to loopback), the catalogue itself, and pruning.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::delivery::{create_webhook, fast};
use super::receiver::Receiver;
use crate::common::{assert_invalid, create_role};
use crate::db_test;

fn body(attributes: Value) -> Option<Value> {
    Some(json!({"data": {"type": "webhook", "attributes": attributes}}))
}

/// The production rule: customer-given URLs reach only public addresses.
fn public_only(config: &mut portcullis_core::CoreConfig) {
    config.allow_private_targets = false;
}

db_test!(the_secret_is_shown_once_and_never_stored_in_clear, config = public_only, |server| {
    let token = server.admin_token().await;
    let attributes = json!({"name": "CRM", "url": "https://hooks.example.com/portcullis", "events": ["user.*", "role.created"],
                            "description": "Keeps the CRM in step"});
    let created = server.create(&token, "/api/webhooks", "webhook", attributes, Value::Null).await;
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    let secret = created["meta"]["signing_secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() > 40);
    let shown = &created["data"]["attributes"];
    assert_eq!(shown["active"], true);
    assert_eq!(shown["events"], json!(["user.*", "role.created"]));
    assert!(shown.get("signing_secret").is_none());
    let (_, fetched) = server.api(Method::GET, &format!("/api/webhooks/{id}"), &token, None).await;
    assert!(fetched.get("meta").is_none_or(|m| m.get("signing_secret").is_none()), "{fetched}");
    let fragment = &secret[6..20];
    let stored =
        format!("SELECT COUNT(*) FROM webhooks WHERE id = '{id}' AND signing_secret LIKE '%{fragment}%'");
    assert_eq!(server.count(&stored).await, 0, "the secret is sealed at rest");
    let audit = "SELECT COUNT(*) FROM audit_events WHERE changes LIKE '%whsec_%' OR targets LIKE '%whsec_%'";
    assert_eq!(server.count(audit).await, 0, "nor in the audit log");
    let outbox = format!("SELECT COUNT(*) FROM outbox_events WHERE payload LIKE '%{fragment}%'");
    assert_eq!(server.count(&outbox).await, 0, "nor in events");

    let patch =
        json!({"data": {"type": "webhook", "id": id, "attributes": {"events": ["*"], "description": null}}});
    let (status, updated) =
        server.api(Method::PATCH, &format!("/api/webhooks/{id}"), &token, Some(patch)).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["data"]["attributes"]["events"], json!(["*"]));
    assert_eq!(updated["data"]["attributes"]["description"], Value::Null);
    let (status, _) = server.api(Method::DELETE, &format!("/api/webhooks/{id}"), &token, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.api(Method::GET, &format!("/api/webhooks/{id}"), &token, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for action in ["webhook.created", "webhook.updated", "webhook.deleted"] {
        let n = server.count(&format!("SELECT COUNT(*) FROM audit_events WHERE action = '{action}'")).await;
        assert_eq!(n, 1, "{action}");
    }
});

db_test!(events_and_urls_are_validated, config = public_only, |server| {
    let token = server.admin_token().await;
    let good = json!({"name": "x", "url": "https://hooks.example.com/", "events": ["user.created"]});
    for (change, attribute) in [
        (json!({"events": []}), "events"),
        (json!({"events": ["user.exploded"]}), "events"),
        (json!({"events": ["nope.*"]}), "events"),
        (json!({"events": ["webhook.test"]}), "events"),
        (json!({"events": "user.created"}), "events"),
        (json!({"name": " "}), "name"),
        (json!({"url": "http://hooks.example.com/"}), "url"),
        (json!({"url": "ftp://hooks.example.com/"}), "url"),
        (json!({"url": "https://user:pw@hooks.example.com/"}), "url"),
        (json!({"url": "not a url"}), "url"),
    ] {
        let mut attributes = good.clone();
        for (key, value) in change.as_object().unwrap() {
            attributes[key] = value.clone();
        }
        let (status, body) = server.api(Method::POST, "/api/webhooks", &token, body(attributes)).await;
        if attribute == "events" && change["events"].is_string() {
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{change}: {body}");
        } else {
            assert_invalid(status, &body, attribute);
        }
    }
    assert_eq!(server.count("SELECT COUNT(*) FROM webhooks").await, 0, "nothing half-written");
});

db_test!(targets_that_are_not_public_are_refused, config = public_only, |server| {
    let token = server.admin_token().await;
    for url in [
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://10.0.0.8/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/",
        "https://0.0.0.0/",
        "http://127.0.0.1:8080/hook",
    ] {
        let attributes = json!({"name": "x", "url": url, "events": ["*"]});
        let (status, body) = server.api(Method::POST, "/api/webhooks", &token, body(attributes)).await;
        assert_invalid(status, &body, "url");
    }
    // A name is checked where it resolves, at each connection: `localhost`
    // resolves to loopback, so nothing is sent and the log says why.
    let receiver = Receiver::start().await;
    let url = format!("https://localhost:{}/hook", receiver.addr.port());
    let (id, _) = create_webhook(&server, &token, &url, json!(["role.created"])).await;
    create_role(&server, &token, "probe").await;
    let mut error = Value::Null;
    for _ in 0..200 {
        let (_, log) = server.api(Method::GET, &format!("/api/webhooks/{id}/deliveries"), &token, None).await;
        error = log["data"][0]["attributes"]["last_error"].clone();
        if !error.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(error.as_str().is_some_and(|e| e.contains("not public")), "{error}");
    assert!(receiver.received().is_empty(), "nothing reached loopback");
});

db_test!(the_catalogue_is_served, |server| {
    let token = server.admin_token().await;
    let (status, catalogue) = server.api(Method::GET, "/api/webhooks/event-types", &token, None).await;
    assert_eq!(status, StatusCode::OK, "{catalogue}");
    let names: Vec<&str> =
        catalogue["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    for name in
        ["user.created", "token.issued", "custom_domain.verified", "invitation.accepted", "webhook.disabled"]
    {
        assert!(names.contains(&name), "{name}");
    }
    assert_eq!(catalogue["data"][0]["type"], "webhook_event_type");
    assert!(catalogue["data"][0]["attributes"]["description"].is_string());
    let (status, _) = server.api(Method::GET, "/api/webhooks/event-types", "not-a-token", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
});

db_test!(old_deliveries_and_outbox_rows_are_pruned, config = fast, |server| {
    let receiver = Receiver::start().await;
    let token = server.admin_token().await;
    let (hook, _) = create_webhook(&server, &token, &receiver.url("/p"), json!(["role.created"])).await;
    create_role(&server, &token, "kept-briefly").await;
    receiver.wait_for("/p", Duration::from_secs(10), |r| !r.is_empty()).await;
    // Wait until the outcome is written, then prune everything up to now.
    for _ in 0..200 {
        if server.count("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'delivered'").await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let relayed_before = server
        .count("SELECT COUNT(*) FROM outbox_events WHERE published_at IS NULL AND event_type IN ('user.created', 'environment.updated', 'role.deleted')")
        .await;
    let now = portcullis_store::now_micros() + 1;
    let removed = portcullis_core::webhooks::delivery::prune(&server.core, now).await.unwrap();
    assert!(removed >= 2, "{removed}");
    assert_eq!(server.count("SELECT COUNT(*) FROM webhook_deliveries").await, 0);
    assert_eq!(server.count("SELECT COUNT(*) FROM outbox_events WHERE event_type = 'role.created'").await, 0);
    let relayed_after = server
        .count("SELECT COUNT(*) FROM outbox_events WHERE published_at IS NULL AND event_type IN ('user.created', 'environment.updated', 'role.deleted')")
        .await;
    assert_eq!(relayed_before, relayed_after, "events the hub has yet to read are kept");
    assert!(
        server.count("SELECT COUNT(*) FROM audit_events WHERE action = 'role.created'").await == 1,
        "the audit log stays"
    );
    let _ = hook;
});

db_test!(subscribing_and_reading_payloads_needs_the_events_read_scope, config = fast, |server| {
    let admin = server.admin_token().await;
    let (_, creds) = crate::oauth::support::management_client(
        &server,
        &admin,
        "Webhooks only",
        &["webhooks:read", "webhooks:write", "roles:read"],
    )
    .await;
    let token = server.management_token("acme-test", &creds, None).await;
    let receiver = Receiver::start().await;
    for events in
        [json!(["user.created"]), json!(["user.*"]), json!(["*"]), json!(["role.created", "token.issued"])]
    {
        let attributes = json!({"name": "x", "url": receiver.url("/x"), "events": events});
        let (status, body) = server.api(Method::POST, "/api/webhooks", &token, body(attributes)).await;
        crate::common::assert_error(status, &body, 403, "forbidden", None);
    }
    let (hook, _) = create_webhook(&server, &token, &receiver.url("/roles"), json!(["role.*"])).await;
    let patch = json!({"data": {"type": "webhook", "id": hook, "attributes": {"events": ["user.deleted"]}}});
    let (status, body) =
        server.api(Method::PATCH, &format!("/api/webhooks/{hook}"), &token, Some(patch)).await;
    crate::common::assert_error(status, &body, 403, "forbidden", None);

    // An admin's webhook on user events: its log shows payloads only to
    // tokens that may read users.
    let (users_hook, _) =
        create_webhook(&server, &admin, &receiver.url("/users"), json!(["user.created"])).await;
    crate::common::create_user(&server, &admin, json!({"email": "private@example.com"})).await;
    receiver.wait_for("/users", Duration::from_secs(10), |r| !r.is_empty()).await;
    let path = format!("/api/webhooks/{users_hook}/deliveries");
    let (_, as_admin) = server.api(Method::GET, &path, &admin, None).await;
    assert_eq!(
        as_admin["data"][0]["attributes"]["payload"]["data"]["attributes"]["email"],
        "private@example.com"
    );
    let (status, limited) = server.api(Method::GET, &path, &token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(limited["data"][0]["attributes"]["payload"], Value::Null, "{limited}");
    assert!(!limited.to_string().contains("private@example.com"));
});

db_test!(apps_base_urls_follow_the_same_rule, config = public_only, |server| {
    let token = server.admin_token().await;
    for base_url in [
        "http://127.0.0.1:12111",
        "https://10.1.2.3/scim/v2",
        "https://169.254.169.254",
        "http://scim.example.com/v2",
    ] {
        let attributes = json!({"name": "App", "kind": "scim", "base_url": base_url, "credentials": {"bearer_token": "t"}});
        let document = Some(json!({"data": {"type": "app", "attributes": attributes}}));
        let (status, body) = server.api(Method::POST, "/api/apps", &token, document).await;
        assert_invalid(status, &body, "base_url");
    }
    let attributes = json!({"name": "App", "kind": "scim", "base_url": "https://scim.example.com/v2", "credentials": {"bearer_token": "t"}});
    server.create(&token, "/api/apps", "app", attributes, Value::Null).await;
    // A name that resolves to loopback is refused where the hub connects.
    let client = portcullis_provision::connector::http::client(Duration::from_secs(2), false);
    let error = client.get("http://localhost:9/scim/v2/Users").send().await.unwrap_err();
    assert!(format!("{error:?}").contains("not public"), "{error:?}");
});
