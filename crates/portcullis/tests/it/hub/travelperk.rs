//! The hub against the TravelPerk simulator over real HTTP: SCIM under
//! `/scim` with `Api-Version: 1` and `Authorization: ApiKey`, the manager
//! set by reference in a second phase (managers first), the travel policy
//! by name, soft deprovisioning, reconciliation without false drift, and
//! faults that must never duplicate a traveller.

use portcullis_sim::travelperk::{Config, TravelPerkSim};
use portcullis_sim::{Fault, FaultRule};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::support::{Directory, eventually, hub_on};
use crate::db_test;
use crate::harness::TestServer;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const TRAVELPERK: &str = "urn:ietf:params:scim:schemas:extension:travelperk:2.0:User";

pub(super) async fn setup(
    server: &TestServer,
) -> (std::sync::Arc<TravelPerkSim>, portcullis_sim::Running, Directory, String) {
    // A key of the test's own: the simulator limits per credential.
    let key = format!("tp_{}", portcullis_crypto::secret::random_base62(16));
    let (sim, running) =
        TravelPerkSim::start(Config { api_keys: vec![key.clone()], ..Config::default() }, 0).await.unwrap();
    let directory = Directory::new(server).await;
    let app = directory
        .create_app(
            server,
            json!({
                "name": "TravelPerk",
                "kind": "travelperk",
                "base_url": running.base_url(),
                "credentials": {"api_key": key},
                "attribute_mappings": {format!("{TRAVELPERK}:travelPolicy"): "metadata.travel_policy"},
            }),
        )
        .await;
    (sim, running, directory, app)
}

fn traveller(sim: &TravelPerkSim, email: &str) -> Option<Value> {
    sim.users().into_iter().find(|u| u["userName"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(email)))
}

db_test!(travellers_get_their_manager_and_policy_and_are_deactivated, config = hub_on, |server| {
    let (sim, _running, directory, app) = setup(&server).await;
    let boss = directory.employee(&server, "boss@acme.test", "Grace", None).await;
    let ada = directory.employee(&server, "ada@acme.test", "Ada", Some(&boss)).await;
    let boss_tp = eventually("grace in TravelPerk", || async { traveller(&sim, "boss@acme.test") }).await;
    let ada_tp = eventually("ada with her manager", || async {
        traveller(&sim, "ada@acme.test").filter(|u| u[ENTERPRISE]["manager"]["value"] == boss_tp["id"])
    })
    .await;
    assert_eq!(ada_tp["externalId"], ada.as_str());
    assert_eq!(ada_tp["name"]["givenName"], "Ada");
    assert_eq!(directory.settled(&server, &app).await, 0);
    // TravelPerk's contract on every call; the manager came after the create.
    let log = sim.log().entries();
    for request in log.iter().filter(|r| r.path.starts_with("/scim")) {
        assert_eq!(request.header("api-version"), Some("1"), "{} {}", request.method, request.path);
        assert!(request.header("authorization").is_some_and(|a| a.starts_with("ApiKey ")), "{request:?}");
    }
    let create =
        log.iter().find(|r| r.method == "POST" && r.body.contains("ada@acme.test")).expect("a create");
    assert!(!create.body.contains("manager"), "created without the manager: {}", create.body);
    assert!(log.iter().any(|r| r.method == "PATCH" && r.body.contains("manager")), "then patched");

    // The travel policy by name; an unknown one is refused, not retried.
    directory.update_user(&server, &ada, json!({"metadata": {"travel_policy": "Standard"}})).await;
    eventually("ada's travel policy", || async {
        traveller(&sim, "ada@acme.test").filter(|u| u[TRAVELPERK]["travelPolicy"] == "Standard")
    })
    .await;
    assert_eq!(directory.settled(&server, &app).await, 0);
    directory.update_user(&server, &ada, json!({"metadata": {"travel_policy": "First class"}})).await;
    let failed = eventually("the refused policy's plan failed", || async {
        let failed = directory.plans(&server, &app, "failed").await;
        (!failed.is_empty()).then_some(failed)
    })
    .await;
    assert_eq!(failed.len(), 1, "refused, not retried: {failed:?}");
    assert_eq!(traveller(&sim, "ada@acme.test").unwrap()[TRAVELPERK]["travelPolicy"], "Standard");
    directory.update_user(&server, &ada, json!({"metadata": {"travel_policy": "Standard"}})).await;

    // A complete read sees both as the hub left them: managers compare by
    // login, so nothing drifts.
    let (status, body) = directory.reconcile(&server, &app, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["meta"]["reconciliation"];
    assert_eq!((report["linked"].as_u64(), report["drift"].as_u64()), (Some(2), Some(0)), "{report}");

    // Leaving: deactivated, kept.
    directory.update_user(&server, &ada, json!({"blocked": true})).await;
    eventually("ada deactivated", || async {
        traveller(&sim, "ada@acme.test").filter(|u| u["active"] == false)
    })
    .await;
    assert_eq!(directory.settled(&server, &app).await, 1, "only the refused policy ever failed");
});

db_test!(faults_never_duplicate_a_traveller, config = hub_on, |server| {
    let (sim, _running, directory, app) = setup(&server).await;
    let faults = [
        Fault::RateLimited { retry_after: Some(1) },
        Fault::ServerError { status: 502 },
        Fault::TimeoutAfterCommit { secs: 4 },
        Fault::Malformed { status: 502 },
    ];
    for (i, fault) in faults.iter().enumerate() {
        sim.faults().add(FaultRule { operation: "users.create".into(), fault: fault.clone(), times: 1 });
        let email = format!("traveller{i}@acme.test");
        let user = directory.employee(&server, &email, "Traveller", None).await;
        let found =
            eventually(&format!("{email} after {}", fault.label()), || async { traveller(&sim, &email) })
                .await;
        assert_eq!(directory.settled(&server, &app).await, 0, "after {}", fault.label());
        assert_eq!(found["externalId"], user.as_str());
        let named = sim.users().into_iter().filter(|u| u["userName"] == email.as_str()).count();
        assert_eq!(named, 1, "exactly one traveller after {}", fault.label());
        assert!(
            sim.log().entries().iter().any(|r| r.fault.as_deref() == Some(fault.label().as_str())),
            "{} was injected",
            fault.label()
        );
    }
    assert_eq!(sim.users().len(), faults.len());
});

db_test!(a_429_without_retry_after_waits_travelperk_s_minute, config = hub_on, |server| {
    let (sim, _running, directory, app) = setup(&server).await;
    sim.faults().add(FaultRule {
        operation: "users.create".into(),
        fault: Fault::RateLimited { retry_after: None },
        times: 1,
    });
    directory.employee(&server, "ada@acme.test", "Ada", None).await;
    // Not waited out: the step is put off by at least the 60 s a client of
    // TravelPerk waits when the 429 names no time [T].
    let step = eventually("the step put off", || async {
        let steps = directory.get(&server, &format!("/api/provisioning-steps?filter[app_id]={app}")).await;
        steps["data"]
            .as_array()?
            .first()
            .filter(|s| s["attributes"]["attempts"] == 1 && s["attributes"]["status"] == "pending")
            .cloned()
    })
    .await;
    let at = |name: &str| {
        let text = step["attributes"][name].as_str().unwrap().to_owned();
        time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).unwrap()
    };
    let wait = at("next_attempt_at") - at("updated_at");
    assert!(wait >= time::Duration::seconds(59), "put off by {wait}: {step}");
    assert!(traveller(&sim, "ada@acme.test").is_none(), "nothing was created");
});

db_test!(drift_and_strangers_are_fixed_and_hard_mode_deletes, config = hub_on, |server| {
    let (sim, _running, directory, app) = setup(&server).await;
    let ada = directory.employee(&server, "ada@acme.test", "Ada", None).await;
    let found = eventually("ada in TravelPerk", || async { traveller(&sim, "ada@acme.test") }).await;
    assert_eq!(directory.settled(&server, &app).await, 0);
    let id = found["id"].as_str().unwrap().to_owned();

    // Behind the hub's back: Ada renamed, a stranger added.
    sim.change_user(&id, &json!({"name": {"givenName": "Someone", "familyName": "Tester"}})).unwrap();
    sim.seed_user(&json!({"userName": "stranger@else.test", "name": {"givenName": "Some", "familyName": "One"}, "active": true}))
        .unwrap();
    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["meta"]["reconciliation"];
    assert_eq!((report["drift"].as_u64(), report["orphaned"].as_u64()), (Some(1), Some(1)), "{report}");
    directory.approve(&server, report["plan_id"].as_str().unwrap()).await;
    eventually("the name restored", || async {
        traveller(&sim, "ada@acme.test").filter(|u| u["name"]["givenName"] == "Ada")
    })
    .await;
    eventually("the stranger deactivated (soft by default)", || async {
        traveller(&sim, "stranger@else.test").filter(|u| u["active"] == false)
    })
    .await;
    assert_eq!(directory.settled(&server, &app).await, 0);

    // Hard mode: leaving deletes, after approval.
    let body = json!({"data": {"type": "app", "id": app, "attributes": {"deprovision_mode": "hard"}}});
    let (status, body) =
        server.api(reqwest::Method::PATCH, &format!("/api/apps/{app}"), &directory.token, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    directory.update_user(&server, &ada, json!({"blocked": true})).await;
    let draft = directory.draft(&server, &app).await;
    assert!(traveller(&sim, "ada@acme.test").is_some(), "nothing deleted before approval");
    directory.approve(&server, draft["data"][0]["id"].as_str().unwrap()).await;
    eventually("ada deleted", || async { traveller(&sim, "ada@acme.test").is_none().then_some(()) }).await;
    assert_eq!(directory.settled(&server, &app).await, 0);
});
