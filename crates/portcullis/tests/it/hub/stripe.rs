//! The hub against the Stripe simulator over real HTTP: customers created
//! once (whatever fails), updated, marked on soft deprovisioning, deleted
//! only after approval, mass changes held, and reconciliation.

use portcullis_sim::stripe::{Config, Customer, CustomerChange, NewCustomer, StripeSim};
use portcullis_sim::{Fault, FaultRule};
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::support::{Directory, eventually, hub_on};
use crate::db_test;
use crate::harness::TestServer;

pub(super) async fn setup(
    server: &TestServer,
    mode: &str,
) -> (std::sync::Arc<StripeSim>, portcullis_sim::Running, Directory, String) {
    // A key of the test's own: the hub throttles per key.
    let key = format!("sk_test_{}", portcullis_crypto::secret::random_base62(16));
    let config = Config { api_keys: vec![key.clone()], ..Config::default() };
    let (sim, running) = StripeSim::start(config, 0).await.expect("simulator");
    let directory = Directory::new(server).await;
    let app = directory
        .create_app(
            server,
            json!({
                "name": "Stripe",
                "kind": "stripe",
                "base_url": running.base_url(),
                "credentials": {"secret_key": key},
                "deprovision_mode": mode,
                "attribute_mappings": {"metadata.department": "metadata.department"},
            }),
        )
        .await;
    (sim, running, directory, app)
}

pub(super) fn customers_of(sim: &StripeSim, user: &str) -> Vec<Customer> {
    sim.customers()
        .into_iter()
        .filter(|c| c.metadata.get("idp_user_id").map(String::as_str) == Some(user))
        .collect()
}

db_test!(provisions_updates_and_soft_deprovisions, config = hub_on, |server| {
    let (sim, _running, directory, app) = setup(&server, "soft").await;
    let ada = directory.employee(&server, "ada@acme.test", "Ada", None).await;
    let customer = eventually("ada's customer", || async { customers_of(&sim, &ada).pop() }).await;
    assert_eq!(customer.email.as_deref(), Some("ada@acme.test"));
    assert_eq!(customer.name.as_deref(), Some("Ada Tester"));
    // Every POST carried an idempotency key.
    for request in sim.log().entries().iter().filter(|r| r.method == "POST") {
        assert!(
            request.header("idempotency-key").is_some_and(|k| k.starts_with("portcullis-")),
            "{request:?}"
        );
        assert_eq!(request.header("stripe-version"), Some("2025-03-31.basil"));
    }
    // Email is not unique in Stripe: the hub looked before it created.
    let lookups = sim
        .log()
        .entries()
        .iter()
        .filter(|r| r.method == "GET" && r.query.as_deref().is_some_and(|q| q.contains("email=")))
        .count();
    assert!(lookups >= 1);

    directory
        .update_user(&server, &ada, json!({"last_name": "Lovelace", "metadata": {"department": "Engines"}}))
        .await;
    eventually("the new name", || async {
        customers_of(&sim, &ada).pop().filter(|c| c.name.as_deref() == Some("Ada Lovelace"))
    })
    .await;
    assert_eq!(customers_of(&sim, &ada)[0].metadata.get("department").map(String::as_str), Some("Engines"));

    directory.update_user(&server, &ada, json!({"blocked": true})).await;
    let marked = eventually("the deprovisioning mark", || async {
        customers_of(&sim, &ada)
            .pop()
            .filter(|c| c.metadata.get("idp_status").map(String::as_str) == Some("deprovisioned"))
    })
    .await;
    assert!(!marked.deleted, "soft mode never deletes");
    assert_eq!(directory.settled(&server, &app).await, 0);
    let accounts = directory.accounts(&server, &app).await;
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["attributes"]["status"], "deactivated");
    assert_eq!(accounts[0]["attributes"]["external_id"], customer.id.as_str());

    // Unblocking gives access back: the mark is cleared on the same customer.
    directory.update_user(&server, &ada, json!({"blocked": false})).await;
    eventually("the mark cleared", || async {
        customers_of(&sim, &ada).pop().filter(|c| !c.metadata.contains_key("idp_status"))
    })
    .await;
    assert_eq!(sim.customers().len(), 1, "still one customer");
});

db_test!(deletion_waits_for_approval, config = hub_on, |server| {
    let (sim, _running, directory, app) = setup(&server, "hard").await;
    let ada = directory.employee(&server, "ada@acme.test", "Ada", None).await;
    let customer = eventually("ada's customer", || async { customers_of(&sim, &ada).pop() }).await;
    directory.update_user(&server, &ada, json!({"blocked": true})).await;
    let drafts = directory.draft(&server, &app).await;
    let plan = &drafts["data"][0];
    assert!(plan["attributes"]["approval_reason"].as_str().unwrap().contains("deleting"), "{plan}");
    let step =
        drafts["included"].as_array().unwrap().iter().find(|i| i["type"] == "provisioning_step").unwrap();
    assert_eq!(step["attributes"]["action"], "delete");
    // Nothing is deleted while the plan waits.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!sim.customer(&customer.id).unwrap().deleted);

    // A plan is decided once.
    let plan_id = plan["id"].as_str().unwrap();
    directory.approve(&server, plan_id).await;
    let (status, body) = server
        .api(Method::PATCH, &format!("/api/provisioning-plans/{plan_id}/reject"), &directory.token, None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    eventually("the customer deleted", || async { sim.customer(&customer.id).filter(|c| c.deleted) }).await;
    assert_eq!(directory.settled(&server, &app).await, 0);
    assert_eq!(directory.accounts(&server, &app).await[0]["attributes"]["status"], "deleted");
});

db_test!(a_mass_deprovisioning_waits_for_approval, config = hub_on, |server| {
    let (sim, _running, directory, app) = setup(&server, "soft").await;
    let (status, body) = server
        .api(
            Method::PATCH,
            "/api/environment",
            &directory.token,
            Some(json!({"data": {"type": "environment", "id": server.core.environment("acme-test").await.unwrap().unwrap().id(), "attributes": {"mass_change_threshold": 2}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for name in ["a", "b", "c"] {
        directory.employee(&server, &format!("{name}@acme.test"), name, None).await;
    }
    eventually("three customers", || async { (sim.customers().len() == 3).then_some(()) }).await;
    assert_eq!(directory.settled(&server, &app).await, 0);

    // Taking the role away from the app's access list deprovisions all three
    // in one pass: over the threshold, so it waits.
    let body = json!({"data": {"type": "app", "id": app, "attributes": {"access_role_ids": []}}});
    let (status, body) =
        server.api(Method::PATCH, &format!("/api/apps/{app}"), &directory.token, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let drafts = directory.draft(&server, &app).await;
    let reason = drafts["data"][0]["attributes"]["approval_reason"].as_str().unwrap();
    assert!(reason.contains("mass_change_threshold (2)"), "{reason}");
    assert_eq!(drafts["data"][0]["attributes"]["summary"]["steps"]["deactivate"], 3);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(sim.customers().iter().all(|c| !c.metadata.contains_key("idp_status")), "nothing applied yet");

    // Rejected: nothing happens, the steps are cancelled.
    let plan = drafts["data"][0]["id"].as_str().unwrap();
    let (status, body) = server
        .api(Method::PATCH, &format!("/api/provisioning-plans/{plan}/reject"), &directory.token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["status"], "rejected");
    let steps = directory.get(&server, &format!("/api/provisioning-steps?filter[plan_id]={plan}")).await;
    assert!(steps["data"].as_array().unwrap().iter().all(|s| s["attributes"]["status"] == "cancelled"));
    assert!(sim.customers().iter().all(|c| !c.metadata.contains_key("idp_status")));
});

db_test!(faults_never_duplicate_a_customer, config = hub_on, |server| {
    let (sim, _running, directory, app) = setup(&server, "soft").await;
    let faults = [
        Fault::TimeoutAfterCommit { secs: 4 },
        Fault::ServerError { status: 500 },
        Fault::RateLimited { retry_after: Some(1) },
        Fault::RateLimited { retry_after: None },
        Fault::InBand { code: "lock_timeout".into(), message: None },
        Fault::Malformed { status: 502 },
    ];
    for (i, fault) in faults.iter().enumerate() {
        sim.faults().add(FaultRule { operation: "customers.create".into(), fault: fault.clone(), times: 1 });
        let user = directory.employee(&server, &format!("user{i}@acme.test"), "Faulty", None).await;
        eventually(&format!("a customer after {}", fault.label()), || async {
            customers_of(&sim, &user).pop()
        })
        .await;
        assert_eq!(directory.settled(&server, &app).await, 0, "after {}", fault.label());
        assert_eq!(customers_of(&sim, &user).len(), 1, "exactly one customer after {}", fault.label());
    }
    assert_eq!(sim.customers().len(), faults.len());

    // A refusal is final: no retry, the step fails with Stripe's message.
    sim.faults().add(FaultRule {
        operation: "customers.create".into(),
        fault: Fault::InBand {
            code: "parameter_invalid_integer".into(),
            message: Some("Invalid integer".into()),
        },
        times: 1,
    });
    directory.employee(&server, "refused@acme.test", "Refused", None).await;
    let failed = eventually("the refused step", || async {
        let steps = directory
            .get(&server, &format!("/api/provisioning-steps?filter[app_id]={app}&filter[status]=failed"))
            .await;
        steps["data"].as_array().filter(|s| !s.is_empty()).cloned()
    })
    .await;
    assert_eq!(failed[0]["attributes"]["attempts"], 1);
    assert!(failed[0]["attributes"]["last_error"].as_str().unwrap().contains("parameter_invalid_integer"));
});

db_test!(reconciliation_finds_drift_orphans_and_adopts, config = hub_on, |server| {
    let (sim, _running, directory, app) = setup(&server, "soft").await;
    let ada = directory.employee(&server, "ada@acme.test", "Ada", None).await;
    let customer = eventually("ada's customer", || async { customers_of(&sim, &ada).pop() }).await;
    assert_eq!(directory.settled(&server, &app).await, 0);

    // Out of band: Ada renamed in the Dashboard, a customer claiming a user
    // who does not exist, and an ordinary customer the hub must leave alone.
    sim.update_customer(
        &customer.id,
        CustomerChange { name: Some("Someone Else".into()), ..CustomerChange::default() },
    );
    let ghost = sim.seed_customer(NewCustomer {
        email: Some("ghost@acme.test".into()),
        metadata: [("idp_user_id".to_owned(), "no-such-user".to_owned())].into(),
        ..NewCustomer::default()
    });
    sim.seed_customer(NewCustomer { email: Some("buyer@shop.test".into()), ..NewCustomer::default() });

    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["meta"]["reconciliation"];
    assert_eq!(report["accounts_read"], 3, "{report}");
    assert_eq!(report["drift"], 1, "{report}");
    assert_eq!(report["orphaned"], 1, "{report}");
    assert_eq!(report["unmanaged"], 1, "{report}");
    let plan = report["plan_id"].as_str().unwrap().to_owned();
    directory.approve(&server, &plan).await;
    eventually("the name restored", || async {
        sim.customer(&customer.id).filter(|c| c.name.as_deref() == Some("Ada Tester"))
    })
    .await;
    eventually("the ghost marked", || async {
        sim.customer(&ghost.id)
            .filter(|c| c.metadata.get("idp_status").map(String::as_str) == Some("deprovisioned"))
    })
    .await;
    assert_eq!(directory.settled(&server, &app).await, 0);
    assert_eq!(sim.customers().len(), 3, "nothing created or deleted");
});
