//! Delivery: committed changes reach the webhooks that subscribe to them,
//! signed so that `standardwebhooks` and an independent HMAC accept them;
//! retries with backoff (500, timeouts, `Retry-After`), 410 disables, a
//! failing endpoint is disabled after `disable_after`, rotation signs with
//! both secrets, the log, retry and test actions.

use std::time::Duration;

use portcullis_core::CoreConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::receiver::{Receiver, Reply, assert_verified, signed_with};
use crate::common::{create_role, create_user, id_of};
use crate::db_test;
use crate::harness::TestServer;

/// Loopback receivers, quick retries, a short timeout.
pub fn fast(config: &mut CoreConfig) {
    config.allow_private_targets = true;
    config.webhooks.retry_base = Duration::from_millis(200);
    config.webhooks.timeout = Duration::from_secs(1);
    config.webhooks.poll_interval = Duration::from_millis(50);
    config.webhooks.lease = Duration::from_secs(5);
}

/// Creates a webhook; returns its id and signing secret.
pub async fn create_webhook(server: &TestServer, token: &str, url: &str, events: Value) -> (String, String) {
    let attributes = json!({"name": "Receiver", "url": url, "events": events});
    let created = server.create(token, "/api/webhooks", "webhook", attributes, Value::Null).await;
    let secret = created["meta"]["signing_secret"].as_str().expect("signing_secret once").to_owned();
    (id_of(&created), secret)
}

async fn deliveries(server: &TestServer, token: &str, webhook: &str) -> Vec<Value> {
    let (status, body) =
        server.api(Method::GET, &format!("/api/webhooks/{webhook}/deliveries"), token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().expect("data").clone()
}

/// Waits until the webhook's log holds a delivery in `status` for which `matches` holds.
async fn settled(server: &TestServer, token: &str, webhook: &str, status: &str) -> Value {
    for _ in 0..400 {
        let log = deliveries(server, token, webhook).await;
        if let Some(found) = log.iter().find(|d| d["attributes"]["status"] == status) {
            return found.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no {status} delivery: {:#?}", deliveries(server, token, webhook).await);
}

/// Waits until delivery has disabled the webhook; returns it.
async fn disabled(server: &TestServer, token: &str, webhook: &str) -> Value {
    for _ in 0..200 {
        let (_, shown) = server.api(Method::GET, &format!("/api/webhooks/{webhook}"), token, None).await;
        if shown["data"]["attributes"]["active"] == false {
            return shown;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("webhook {webhook} was not disabled");
}

db_test!(subscribed_webhooks_receive_signed_events_and_others_none, config = fast, |server| {
    let receiver = Receiver::start().await;
    let token = server.admin_token().await;
    let (users_hook, users_secret) =
        create_webhook(&server, &token, &receiver.url("/users"), json!(["user.*"])).await;
    let (_, roles_secret) =
        create_webhook(&server, &token, &receiver.url("/roles"), json!(["role.created"])).await;
    let user = create_user(&server, &token, json!({"email": "ada@example.com", "first_name": "Ada"})).await;
    let patch = json!({"data": {"type": "user", "id": user, "attributes": {"last_name": "Lovelace"}}});
    let (status, _) = server.api(Method::PATCH, &format!("/api/users/{user}"), &token, Some(patch)).await;
    assert_eq!(status, StatusCode::OK);
    let role = create_role(&server, &token, "auditor").await;
    crate::common::create_permission(&server, &token, "read:reports").await;

    let users = receiver.wait_for("/users", Duration::from_secs(10), |r| r.len() >= 2).await;
    let roles = receiver.wait_for("/roles", Duration::from_secs(10), |r| !r.is_empty()).await;
    let types: Vec<String> = users.iter().map(|r| r.event_type()).collect();
    assert_eq!(types, ["user.created", "user.updated"], "in commit order, and only user events");
    assert_eq!(roles.iter().map(|r| r.event_type()).collect::<Vec<_>>(), ["role.created"]);
    assert_eq!(roles[0].json()["data"]["id"], role);

    // The payload's data is the resource as the Management API shows it, plus the actor.
    let (_, shown) = server.api(Method::GET, &format!("/api/users/{user}"), &token, None).await;
    let updated = users[1].json();
    assert_eq!(updated["data"]["type"], "user");
    assert_eq!(updated["data"]["id"], user);
    assert_eq!(updated["data"]["attributes"], shown["data"]["attributes"]);
    assert_eq!(updated["actor"]["type"], "client");
    assert!(updated["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    for request in &users {
        assert_eq!(request.header("content-type"), "application/json");
        assert!(request.header("webhook-id").len() >= 32);
        let sent: i64 = request.header("webhook-timestamp").parse().expect("seconds");
        assert!((sent - time::OffsetDateTime::now_utc().unix_timestamp()).abs() < 60);
    }
    assert_ne!(users[0].header("webhook-id"), users[1].header("webhook-id"));
    assert_verified(&users_secret, &users).await;
    assert_verified(&roles_secret, &roles).await;
    assert!(!signed_with(&roles_secret, &users[0]), "each webhook has its own secret");

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 3, "permission.created went to nobody");
    let log = deliveries(&server, &token, &users_hook).await;
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|d| d["attributes"]["status"] == "delivered" && d["attributes"]["attempts"] == 1));
    assert_eq!(log[0]["attributes"]["response_status"], 200);
    assert_eq!(log[0]["attributes"]["response_excerpt"], "thanks");
    assert_eq!(log[0]["relationships"]["webhook"]["data"]["id"], users_hook);
    assert_eq!(
        server.count("SELECT COUNT(*) FROM webhook_deliveries WHERE event_type = 'permission.created'").await,
        0,
        "an event nobody subscribes to has no delivery row"
    );
});

db_test!(events_without_webhooks_cost_no_delivery_rows, config = fast, |server| {
    let token = server.admin_token().await;
    create_user(&server, &token, json!({"email": "solo@example.com"})).await;
    create_role(&server, &token, "solo").await;
    assert_eq!(server.count("SELECT COUNT(*) FROM webhook_deliveries").await, 0);
    assert!(server.count("SELECT COUNT(*) FROM outbox_events").await >= 2);
});

db_test!(failures_are_retried_with_backoff_and_the_same_webhook_id, config = fast, |server| {
    let receiver = Receiver::start().await;
    receiver.script("/flaky", [Reply::Status(500), Reply::Slow(Duration::from_secs(3))]);
    let token = server.admin_token().await;
    let (hook, secret) =
        create_webhook(&server, &token, &receiver.url("/flaky"), json!(["role.created"])).await;
    create_role(&server, &token, "retried").await;
    let attempts = receiver.wait_for("/flaky", Duration::from_secs(20), |r| r.len() >= 3).await;
    let delivered = settled(&server, &token, &hook, "delivered").await;
    assert_eq!(delivered["attributes"]["attempts"], 3, "{delivered}");
    let ids: Vec<&str> = attempts.iter().map(|r| r.header("webhook-id")).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one webhook-id across retries: {ids:?}");
    assert_eq!(attempts[0].body, attempts[2].body, "the same body");
    // 200 ms, then 800 ms (±20%), and the second attempt timed out after 1 s.
    let first_gap = attempts[1].at - attempts[0].at;
    let second_gap = attempts[2].at - attempts[1].at;
    assert!(first_gap >= Duration::from_millis(160), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(1000 + 640), "timeout, then backoff: {second_gap:?}");
    assert_verified(&secret, &attempts).await;
});

db_test!(retry_after_is_honoured, config = fast, |server| {
    let receiver = Receiver::start().await;
    receiver.script("/busy", [Reply::RetryAfter(429, 2)]);
    let token = server.admin_token().await;
    create_webhook(&server, &token, &receiver.url("/busy"), json!(["role.*"])).await;
    create_role(&server, &token, "patient").await;
    let attempts = receiver.wait_for("/busy", Duration::from_secs(10), |r| r.len() >= 2).await;
    let gap = attempts[1].at - attempts[0].at;
    assert!(gap >= Duration::from_millis(1900), "Retry-After: 2 waited only {gap:?}");
});

db_test!(a_timeout_is_recorded_and_retried, config = fast, |server| {
    let receiver = Receiver::start().await;
    receiver.always("/slow", Reply::Slow(Duration::from_secs(3)));
    let token = server.admin_token().await;
    let (hook, _) = create_webhook(&server, &token, &receiver.url("/slow"), json!(["role.created"])).await;
    create_role(&server, &token, "slow").await;
    receiver.wait_for("/slow", Duration::from_secs(10), |r| r.len() >= 2).await;
    let log = deliveries(&server, &token, &hook).await;
    let attributes = &log[0]["attributes"];
    assert_eq!(attributes["status"], "pending", "{attributes}");
    assert!(attributes["last_error"].as_str().is_some_and(|e| e.contains("timed out")), "{attributes}");
    assert!(attributes["latency_ms"].as_i64().is_some_and(|ms| (900..2500).contains(&ms)), "{attributes}");
    assert!(attributes["next_attempt_at"].is_string());
});

db_test!(gone_disables_the_webhook, config = fast, |server| {
    let receiver = Receiver::start().await;
    receiver.always("/gone", Reply::Status(410));
    let token = server.admin_token().await;
    let (hook, _) = create_webhook(&server, &token, &receiver.url("/gone"), json!(["role.created"])).await;
    create_role(&server, &token, "first").await;
    let failed = settled(&server, &token, &hook, "failed").await;
    assert_eq!(failed["attributes"]["response_status"], 410);
    assert_eq!(failed["attributes"]["attempts"], 1, "410 is not retried");
    // The outcome is written first, then the webhook is disabled.
    let webhook = disabled(&server, &token, &hook).await;
    assert!(webhook["data"]["attributes"]["disabled_reason"].as_str().unwrap().contains("410"));
    assert_eq!(
        server.count(&format!("SELECT COUNT(*) FROM audit_events WHERE action = 'webhook.disabled' AND target_id = '{hook}' AND actor_type = 'system'")).await,
        1
    );
    create_role(&server, &token, "second").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1, "a disabled webhook hears nothing");
    assert_eq!(deliveries(&server, &token, &hook).await.len(), 1);
});

db_test!(
    a_webhook_failing_past_disable_after_is_disabled,
    config = |config: &mut CoreConfig| {
        fast(config);
        config.webhooks.retry_base = Duration::from_millis(20);
        config.webhooks.disable_after = Duration::ZERO;
    },
    |server| {
        let receiver = Receiver::start().await;
        receiver.always("/down", Reply::Status(503));
        let token = server.admin_token().await;
        let (hook, _) =
            create_webhook(&server, &token, &receiver.url("/down"), json!(["role.created"])).await;
        create_role(&server, &token, "doomed").await;
        let failed = settled(&server, &token, &hook, "failed").await;
        assert_eq!(failed["attributes"]["attempts"], 6, "the first attempt and five retries: {failed}");
        assert_eq!(receiver.received().len(), 6);
        let webhook = disabled(&server, &token, &hook).await;
        let attributes = &webhook["data"]["attributes"];
        assert!(attributes["disabled_reason"].as_str().unwrap().contains("failed"), "{attributes}");
        assert!(attributes["failing_since"].is_string());

        // Enabling it again clears the reason and the streak.
        let patch = json!({"data": {"type": "webhook", "id": hook, "attributes": {"active": true}}});
        let (status, enabled) =
            server.api(Method::PATCH, &format!("/api/webhooks/{hook}"), &token, Some(patch)).await;
        assert_eq!(status, StatusCode::OK, "{enabled}");
        assert_eq!(enabled["data"]["attributes"]["disabled_reason"], Value::Null);
        assert_eq!(enabled["data"]["attributes"]["failing_since"], Value::Null);
    }
);

db_test!(after_a_rotation_both_secrets_sign_for_a_day, config = fast, |server| {
    let receiver = Receiver::start().await;
    let token = server.admin_token().await;
    let (hook, old) =
        create_webhook(&server, &token, &receiver.url("/rotating"), json!(["role.created"])).await;
    let (status, rotated) =
        server.api(Method::PATCH, &format!("/api/webhooks/{hook}/rotate_secret"), &token, None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["meta"]["signing_secret"].as_str().expect("new secret").to_owned();
    assert_ne!(new, old);
    assert!(new.starts_with("whsec_"));
    let expires = rotated["data"]["attributes"]["previous_secret_expires_at"].as_str().expect("overlap");
    let expires =
        time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339).unwrap();
    let hours = (expires - time::OffsetDateTime::now_utc()).whole_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "{hours}");

    create_role(&server, &token, "rolled").await;
    let received = receiver.wait_for("/rotating", Duration::from_secs(10), |r| !r.is_empty()).await;
    assert_eq!(received[0].header("webhook-signature").split(' ').count(), 2);
    assert_verified(&new, &received).await;
    assert_verified(&old, &received).await;

    // Once the overlap is over, only the new secret signs.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE webhooks SET previous_secret_expires_at = 1 WHERE id = '{hook}'"
    )))
    .execute(server.core.db.pool())
    .await
    .unwrap();
    create_role(&server, &token, "after").await;
    let received = receiver.wait_for("/rotating", Duration::from_secs(10), |r| r.len() >= 2).await;
    assert_eq!(received[1].header("webhook-signature").split(' ').count(), 1);
    assert!(signed_with(&new, &received[1]) && !signed_with(&old, &received[1]));
});

db_test!(test_messages_the_log_and_an_operators_retry, config = fast, |server| {
    let receiver = Receiver::start().await;
    let token = server.admin_token().await;
    let (hook, secret) =
        create_webhook(&server, &token, &receiver.url("/ops"), json!(["user.deleted"])).await;
    let (status, queued) =
        server.api(Method::POST, &format!("/api/webhooks/{hook}/test"), &token, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["data"]["type"], "webhook_delivery");
    assert_eq!(queued["data"]["attributes"]["event_type"], "webhook.test");
    let received = receiver.wait_for("/ops", Duration::from_secs(10), |r| !r.is_empty()).await;
    assert_eq!(received[0].json()["type"], "webhook.test");
    assert_eq!(received[0].json()["data"]["id"], hook);
    assert_verified(&secret, &received).await;

    let delivered = settled(&server, &token, &hook, "delivered").await;
    let id = delivered["id"].as_str().unwrap();
    let retry = format!("/api/webhooks/{hook}/deliveries/{id}/retry");
    let (status, again) = server.api(Method::POST, &retry, &token, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["data"]["attributes"]["status"], "pending");
    let received = receiver.wait_for("/ops", Duration::from_secs(10), |r| r.len() >= 2).await;
    assert_eq!(received[0].header("webhook-id"), received[1].header("webhook-id"), "a resend keeps its id");

    // The flat log filters the same rows; a delivery of another webhook is not found here.
    let (status, flat) = server
        .api(Method::GET, &format!("/api/webhook-deliveries?filter[webhook_id]={hook}"), &token, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(flat["data"].as_array().unwrap().len(), 1);
    let (other, _) = create_webhook(&server, &token, &receiver.url("/other"), json!(["*"])).await;
    let (status, body) =
        server.api(Method::POST, &format!("/api/webhooks/{other}/deliveries/{id}/retry"), &token, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = server.api(Method::GET, "/api/webhooks/nope/deliveries", &token, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
});

db_test!(
    deactivating_ends_pending_deliveries,
    config = |config: &mut CoreConfig| {
        fast(config);
        config.webhooks.retry_base = Duration::from_secs(60);
    },
    |server| {
        let receiver = Receiver::start().await;
        receiver.always("/off", Reply::Status(500));
        let token = server.admin_token().await;
        let (hook, _) = create_webhook(&server, &token, &receiver.url("/off"), json!(["role.created"])).await;
        create_role(&server, &token, "pending").await;
        receiver.wait_for("/off", Duration::from_secs(10), |r| !r.is_empty()).await;
        let patch = json!({"data": {"type": "webhook", "id": hook, "attributes": {"active": false}}});
        let (status, _) =
            server.api(Method::PATCH, &format!("/api/webhooks/{hook}"), &token, Some(patch)).await;
        assert_eq!(status, StatusCode::OK);
        let failed = settled(&server, &token, &hook, "failed").await;
        assert!(failed["attributes"]["last_error"].as_str().unwrap().contains("deactivated"));
        let (status, body) =
            server.api(Method::POST, &format!("/api/webhooks/{hook}/test"), &token, None).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }
);
