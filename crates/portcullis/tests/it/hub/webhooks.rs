//! `POST /hooks/apps/:id`: Stripe's signed `customer.*` events refresh the
//! identity graph. Deliveries come from the simulator (duplicated, shuffled,
//! tampered with, signed during a secret rotation) and by hand, for the
//! error paths.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::CoreConfig;
use portcullis_sim::stripe::{Config, CustomerChange, NewCustomer, StripeSim, Tamper, signature_header};
use portcullis_sim::{Fault, FaultRule, Running};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::support::{Directory, eventually, hub_on};
use crate::db_test;
use crate::harness::TestServer;

const SECRET: &str = "whsec_portcullis_test_endpoint";

/// The simulator posts to `127.0.0.1`: that host serves `acme-test`.
fn hub_on_loopback(config: &mut CoreConfig) {
    hub_on(config);
    loopback(config);
}

fn loopback(config: &mut CoreConfig) {
    config.default_environment = Some("acme-test".into());
}

/// A Stripe simulator and an app named `name` for it, whose webhook
/// endpoint the simulator calls (with `endpoint_secret`, which may differ
/// from the app's during a rotation).
async fn stripe_with_hooks(
    server: &TestServer,
    directory: &Directory,
    name: &str,
    config: Config,
    endpoint_secret: &str,
) -> (Arc<StripeSim>, Running, String) {
    let key = format!("sk_test_{}", portcullis_crypto::secret::random_base62(16));
    let (sim, running) =
        StripeSim::start(Config { api_keys: vec![key.clone()], ..config }, 0).await.expect("simulator");
    let app = directory
        .create_app(
            server,
            json!({
                "name": name,
                "kind": "stripe",
                "base_url": running.base_url(),
                "credentials": {"secret_key": key, "webhook_secret": SECRET},
            }),
        )
        .await;
    sim.add_webhook_endpoint(
        format!("http://127.0.0.1:{}/hooks/apps/{app}", server.port),
        endpoint_secret.to_owned(),
    );
    (sim, running, app)
}

fn event(id: &str, kind: &str, customer: &str) -> String {
    json!({
        "id": id, "object": "event", "type": kind, "created": now(), "api_version": "2025-03-31.basil",
        "data": {"object": {"id": customer, "object": "customer", "name": "From the payload"}},
    })
    .to_string()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Posts `body` to the app's hook, signed as Stripe signs (`signature` None
/// sends no header).
async fn post(server: &TestServer, app: &str, signature: Option<String>, body: &str) -> (StatusCode, Value) {
    let mut request = server
        .http
        .post(server.url(&format!("/hooks/apps/{app}")))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    let response = request.send().await.expect("webhook delivery");
    let status = response.status();
    (status, response.json().await.expect("JSON answer"))
}

async fn deliver(server: &TestServer, app: &str, body: &str) -> (StatusCode, Value) {
    post(server, app, Some(signature_header(SECRET, now(), body)), body).await
}

async fn account(directory: &Directory, server: &TestServer, app: &str, customer: &str) -> Option<Value> {
    directory
        .accounts(server, app)
        .await
        .into_iter()
        .find(|a| a["attributes"]["external_id"] == customer)
        .map(|a| {
            // The attributes, with the linked user beside them.
            let mut attributes = a["attributes"].clone();
            attributes["user_id"] = a["relationships"]["user"]["data"]["id"].clone();
            attributes
        })
}

async fn processed(server: &TestServer) -> i64 {
    server.count("SELECT COUNT(*) FROM app_webhook_events").await
}

db_test!(deliveries_are_verified_deduplicated_and_order_free, |server| {
    let directory = Directory::new(&server).await;
    let (sim, _running, app) =
        stripe_with_hooks(&server, &directory, "Stripe", Config::default(), SECRET).await;
    let ada = directory.employee(&server, "ada@acme.test", "Ada", None).await;
    let customer = sim.seed_customer(NewCustomer {
        email: Some("ada@acme.test".into()),
        name: Some("Ada Tester".into()),
        metadata: [("idp_user_id".to_owned(), ada.clone())].into(),
        ..NewCustomer::default()
    });
    let cus = customer.id.as_str();

    // A customer that names a user of the environment is linked at once.
    let created = event("evt_created", "customer.created", cus);
    let (status, body) = deliver(&server, &app, &created).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"event_id": "evt_created", "outcome": "applied"}));
    let linked = account(&directory, &server, &app, cus).await.expect("linked account");
    assert_eq!(linked["user_id"], ada.as_str());
    assert_eq!(linked["status"], "active");
    assert_eq!(linked["login"], "ada@acme.test");
    assert_eq!(linked["attributes"]["name"], "Ada Tester");

    // Redelivered: nothing happens twice.
    let (status, body) = deliver(&server, &app, &created).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["outcome"], "duplicate");

    // Renamed, then deleted in the Dashboard; the events arrive newest first.
    sim.update_customer(
        cus,
        CustomerChange { name: Some("Ada Dashboard".into()), ..CustomerChange::default() },
    );
    assert!(sim.delete_customer(cus));
    let (status, body) = deliver(&server, &app, &event("evt_deleted", "customer.deleted", cus)).await;
    assert_eq!((status, body["outcome"].clone()), (StatusCode::OK, json!("applied")), "{body}");
    assert_eq!(account(&directory, &server, &app, cus).await.unwrap()["status"], "deleted");
    // The older update arrives last: the hub reads the customer as it is
    // now, so the deletion stands (the payload alone would revive it).
    let (status, body) = deliver(&server, &app, &event("evt_updated", "customer.updated", cus)).await;
    assert_eq!((status, body["outcome"].clone()), (StatusCode::OK, json!("applied")), "{body}");
    let after = account(&directory, &server, &app, cus).await.unwrap();
    assert_eq!(after["status"], "deleted");
    assert_eq!(after["attributes"]["name"], "Ada Tester");
    // The out-of-band deletion is in the audit trail.
    let audited = directory.get(&server, "/api/audit-events?filter[action]=app_account.updated").await;
    let audited = audited["data"].as_array().unwrap().clone();
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["attributes"]["changes"]["status"], json!({"from": "active", "to": "deleted"}));
    assert_eq!(processed(&server).await, 3);

    // Refused, each with its reason, and nothing recorded.
    let body = event("evt_refused", "customer.updated", cus);
    let cases = [
        (Some(signature_header("whsec_someone_else", now(), &body)), body.clone(), "no signature matches"),
        (Some(signature_header(SECRET, now() - 600, &body)), body.clone(), "outside the tolerance"),
        (None, body.clone(), "header is missing"),
        (Some(signature_header(SECRET, now(), &body)), body.replace("evt_refused", "evt_forged"), "matches"),
        (Some("t=abc,v1=zz".into()), body.clone(), "no timestamp"),
    ];
    for (signature, sent, reason) in cases {
        let (status, answer) = post(&server, &app, signature, &sent).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["errors"][0]["code"], "invalid_signature", "{answer}");
        assert!(answer["errors"][0]["detail"].as_str().unwrap().contains(reason), "{answer}");
    }
    let (status, answer) = deliver(&server, &app, "not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = deliver(&server, &app, &json!({"type": "customer.updated"}).to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["errors"][0]["detail"].as_str().unwrap().contains("no id"), "{answer}");
    let (status, answer) = deliver(&server, "app_nope", &body).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(processed(&server).await, 3);

    // Events about other objects are acknowledged and ignored.
    let invoice = json!({"id": "evt_invoice", "type": "invoice.paid",
        "data": {"object": {"id": "in_1", "object": "invoice"}}})
    .to_string();
    let (status, answer) = deliver(&server, &app, &invoice).await;
    assert_eq!((status, answer["outcome"].clone()), (StatusCode::OK, json!("ignored")));

    // Stripe cannot be read: 503, nothing recorded, and the redelivery works.
    let bob = directory.employee(&server, "bob@acme.test", "Bob", None).await;
    let bobs = sim.seed_customer(NewCustomer {
        email: Some("bob@acme.test".into()),
        metadata: [("idp_user_id".to_owned(), bob.clone())].into(),
        ..NewCustomer::default()
    });
    sim.faults().add(FaultRule {
        operation: "customers.retrieve".into(),
        fault: Fault::ServerError { status: 500 },
        times: 1,
    });
    let bob_created = event("evt_bob", "customer.created", &bobs.id);
    let (status, answer) = deliver(&server, &app, &bob_created).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["errors"][0]["code"], "app_unavailable");
    assert!(account(&directory, &server, &app, &bobs.id).await.is_none());
    let (status, answer) = deliver(&server, &app, &bob_created).await;
    assert_eq!((status, answer["outcome"].clone()), (StatusCode::OK, json!("applied")), "{answer}");
    assert_eq!(account(&directory, &server, &app, &bobs.id).await.unwrap()["user_id"], bob.as_str());

    // A customer that names no one waits for reconciliation.
    let stranger =
        sim.seed_customer(NewCustomer { email: Some("who@else.test".into()), ..NewCustomer::default() });
    let (status, _) = deliver(&server, &app, &event("evt_who", "customer.created", &stranger.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(account(&directory, &server, &app, &stranger.id).await.is_none());

    // An app without a webhook secret takes no webhooks.
    let plain = directory
        .create_app(
            &server,
            json!({"name": "Stripe without hooks", "kind": "stripe",
                "credentials": {"secret_key": "sk_test_unused"}}),
        )
        .await;
    let (status, answer) = deliver(&server, &plain, &body).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert!(answer["errors"][0]["detail"].as_str().unwrap().contains("webhook secret"));
});

db_test!(the_simulator_s_deliveries_keep_the_graph_current, config = hub_on_loopback, |server| {
    // Every event twice, every other one overtaken, and signed with the old
    // and the new secret as during a rotation (the app knows the new one).
    let config = Config {
        webhook_duplicates: true,
        webhook_shuffle: true,
        extra_signing_secret: Some(SECRET.into()),
        ..Config::default()
    };
    let directory = Directory::new(&server).await;
    let (sim, _running, app) =
        stripe_with_hooks(&server, &directory, "Stripe", config, "whsec_the_old_secret").await;
    let ada = directory.employee(&server, "ada@acme.test", "Ada", None).await;
    let customer = eventually("ada's customer", || async {
        sim.customers().into_iter().find(|c| c.metadata.get("idp_user_id") == Some(&ada))
    })
    .await;
    eventually("the linked account", || async {
        account(&directory, &server, &app, &customer.id).await.filter(|a| a["user_id"] == ada.as_str())
    })
    .await;

    // Only a webhook can tell the graph about the Dashboard's changes.
    sim.update_customer(
        &customer.id,
        CustomerChange { phone: Some("+44 20 7946 0000".into()), ..CustomerChange::default() },
    );
    eventually("the new phone in the graph", || async {
        account(&directory, &server, &app, &customer.id)
            .await
            .filter(|a| a["attributes"]["phone"] == "+44 20 7946 0000")
    })
    .await;
    assert!(sim.delete_customer(&customer.id));
    eventually("the deletion in the graph", || async {
        account(&directory, &server, &app, &customer.id).await.filter(|a| a["status"] == "deleted")
    })
    .await;
    // Created, updated, deleted: each processed once however often it came.
    eventually("every event processed", || async { (processed(&server).await >= 3).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(account(&directory, &server, &app, &customer.id).await.unwrap()["status"], "deleted");
    assert_eq!(sim.customers().iter().filter(|c| !c.deleted).count(), 0);
});

db_test!(tampered_deliveries_change_nothing, config = loopback, |server| {
    let directory = Directory::new(&server).await;
    for tamper in [Tamper::BadSignature, Tamper::StaleTimestamp] {
        let config = Config { webhook_tamper: Some(tamper), ..Config::default() };
        let name = format!("Stripe {tamper:?}");
        let (sim, _running, app) = stripe_with_hooks(&server, &directory, &name, config, SECRET).await;
        let email = format!("{tamper:?}@acme.test").to_lowercase();
        let user = directory.employee(&server, &email, "Tampered", None).await;
        sim.seed_customer(NewCustomer {
            email: Some(email),
            metadata: [("idp_user_id".to_owned(), user)].into(),
            ..NewCustomer::default()
        });
        // Absence can only be waited for: the simulator gives up after five
        // attempts in about 1.5 s.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(processed(&server).await, 0, "{tamper:?}");
        assert!(directory.accounts(&server, &app).await.is_empty(), "{tamper:?}");
    }
});
