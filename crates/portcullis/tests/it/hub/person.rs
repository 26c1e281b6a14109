//! The person view, `GET /api/users/:id/app-accounts`: one user across
//! every app, each account with how it compares with the directory, and the
//! apps where the user should have an account and has none.

use portcullis_sim::stripe::{Config, CustomerChange, StripeSim};
use portcullis_sim::{Fault, FaultRule};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::stripe::{customers_of, setup};
use super::support::{eventually, hub_on};
use crate::db_test;

fn graph_meta(view: &Value, app: &str) -> Value {
    view["data"]
        .as_array()
        .and_then(|data| data.iter().find(|a| a["relationships"]["app"]["data"]["id"] == app))
        .map(|a| a["meta"]["graph"].clone())
        .unwrap_or_else(|| panic!("no account in {app}: {view}"))
}

db_test!(the_person_view_shows_every_app_with_its_state, config = hub_on, |server| {
    let (billing_sim, _billing_running, directory, billing) = setup(&server, "soft").await;
    // A second app that refuses every create: the user never gets an
    // account there, although the directory says they should.
    let key = format!("sk_test_{}", portcullis_crypto::secret::random_base62(16));
    let (ledger_sim, ledger_running) =
        StripeSim::start(Config { api_keys: vec![key.clone()], ..Config::default() }, 0).await.unwrap();
    ledger_sim.faults().add(FaultRule {
        operation: "customers.create".into(),
        fault: Fault::InBand { code: "parameter_invalid_empty".into(), message: None },
        times: 1000,
    });
    let ledger = directory
        .create_app(
            &server,
            json!({"name": "Ledger", "kind": "stripe", "base_url": ledger_running.base_url(),
                   "credentials": {"secret_key": key}}),
        )
        .await;

    let ada = directory.employee(&server, "ada@acme.test", "Ada", None).await;
    let customer = eventually("ada's customer", || async { customers_of(&billing_sim, &ada).pop() }).await;
    assert_eq!(directory.settled(&server, &billing).await, 0);
    assert_eq!(directory.settled(&server, &ledger).await, 1, "the refused create failed its plan");

    let path = format!("/api/users/{ada}/app-accounts");
    let view = directory.get(&server, &path).await;
    assert_eq!(view["data"].as_array().map(Vec::len), Some(1), "{view}");
    let billing_state = graph_meta(&view, &billing);
    assert_eq!(billing_state["state"], "in_step", "{view}");
    assert_eq!(billing_state["expected"], true);
    assert_eq!(billing_state["app_name"], "Stripe");
    assert_eq!(view["meta"]["user_exists"], true);
    let missing = view["meta"]["missing"].as_array().expect("missing");
    assert_eq!(missing.len(), 1, "{view}");
    assert_eq!(missing[0]["app_id"], ledger.as_str());
    assert_eq!(missing[0]["app_name"], "Ledger");

    // Renamed behind the hub's back; once the graph has read it, the view
    // shows the drift and what differs.
    billing_sim.update_customer(
        &customer.id,
        CustomerChange { name: Some("Someone Else".into()), ..CustomerChange::default() },
    );
    let (status, body) = directory.reconcile(&server, &billing, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let still = graph_meta(&directory.get(&server, &path).await, &billing);
    assert_eq!(still["state"], "in_step", "a dry run does not refresh the graph");
    let (status, body) = directory.reconcile(&server, &billing, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let drifted = graph_meta(&directory.get(&server, &path).await, &billing);
    assert_eq!(drifted["state"], "drift");
    assert_eq!(drifted["changes"]["name"], json!({"from": "Someone Else", "to": "Ada Tester"}));

    // Blocked: no longer expected anywhere, nothing missing, and the
    // account deprovisioned.
    directory.update_user(&server, &ada, json!({"blocked": true})).await;
    let view = eventually("ada deprovisioned", || async {
        let view = directory.get(&server, &path).await;
        (graph_meta(&view, &billing)["state"] == "deprovisioned").then_some(view)
    })
    .await;
    assert_eq!(graph_meta(&view, &billing)["expected"], false);
    assert_eq!(view["meta"]["missing"], json!([]));

    // Someone who is no one: the Management API's 404.
    let (status, body) =
        server.api(Method::GET, "/api/users/usr_nobody/app-accounts", &directory.token, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["errors"][0]["status"], "404");
});

db_test!(a_deleted_user_s_accounts_stay_in_view, config = hub_on, |server| {
    let (sim, _running, directory, billing) = setup(&server, "soft").await;
    let ada = directory.employee(&server, "ada@acme.test", "Ada", None).await;
    eventually("ada's customer", || async { customers_of(&sim, &ada).pop() }).await;
    let (status, body) =
        server.api(Method::DELETE, &format!("/api/users/{ada}"), &directory.token, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let view = eventually("ada's account deprovisioned", || async {
        let view = directory.get(&server, &format!("/api/users/{ada}/app-accounts")).await;
        (graph_meta(&view, &billing)["state"] == "deprovisioned").then_some(view)
    })
    .await;
    assert_eq!(view["meta"]["user_exists"], false);
    assert_eq!(graph_meta(&view, &billing)["expected"], false);
});
