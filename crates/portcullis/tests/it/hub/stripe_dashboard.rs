//! Stripe Dashboard team members through Stripe's SCIM API (the SCIM
//! simulator's `stripe-dashboard` profile): the email is the member, so an
//! email change is a delete and a re-invite; there is no deactivation, so
//! every removal is a deletion that waits for approval, followed by a task
//! to revoke the API keys the member leaves behind.

use portcullis_sim::scim::{Config, DEFAULT_TOKEN, Kind, Profile, ScimSim};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::{Directory, eventually, hub_on};
use crate::db_test;
use crate::harness::TestServer;

/// A Stripe Dashboard app on the simulator (the SCIM app, in Stripe's kind).
async fn team_app(server: &TestServer, directory: &Directory, running: &portcullis_sim::Running) -> String {
    let kind = json!({"name": "Stripe team", "kind": "stripe_dashboard"});
    crate::hub::scim::scim_app(server, directory, "Stripe team", running, kind).await
}

fn member(sim: &ScimSim, email: &str) -> Option<Value> {
    sim.resources(Kind::User)
        .into_iter()
        .find(|u| u["userName"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(email)))
}

async fn steps_of(server: &TestServer, directory: &Directory, plan: &str) -> Vec<Value> {
    let body = directory
        .get(server, &format!("/api/provisioning-steps?filter[plan_id]={plan}&page[limit]=100"))
        .await;
    body["data"].as_array().cloned().unwrap_or_default()
}

db_test!(members_are_replaced_and_removed_only_with_approval, config = hub_on, |server| {
    let (sim, running) = ScimSim::start(Config::profile(Profile::StripeDashboard), 0).await.unwrap();
    let directory = Directory::new(&server).await;
    let base_url = format!("{}/scim/v2", running.base_url());

    // There is no soft deprovisioning to choose.
    let (status, body) = server
        .api(
            Method::POST,
            "/api/apps",
            &directory.token,
            Some(json!({"data": {"type": "app", "attributes": {
                "name": "Stripe team", "kind": "stripe_dashboard", "base_url": base_url,
                "credentials": {"bearer_token": DEFAULT_TOKEN}, "deprovision_mode": "soft"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["source"]["pointer"], "/data/attributes/deprovision_mode");
    let app = directory
        .create_app(
            &server,
            json!({"name": "Stripe team", "kind": "stripe_dashboard", "base_url": base_url,
                   "credentials": {"bearer_token": DEFAULT_TOKEN}}),
        )
        .await;
    let shown = directory.get(&server, &format!("/api/apps/{app}")).await;
    assert_eq!(shown["data"]["attributes"]["deprovision_mode"], "hard");

    // Joining and a name change happen at once.
    let ada = directory.employee(&server, "ada@acme.test", "Ada", None).await;
    let first = eventually("ada invited", || async { member(&sim, "ada@acme.test") }).await;
    assert_eq!(first["displayName"], "Ada Tester");
    directory.update_user(&server, &ada, json!({"first_name": "Augusta"})).await;
    eventually("the new display name", || async {
        member(&sim, "ada@acme.test").filter(|m| m["displayName"] == "Augusta Tester")
    })
    .await;
    for patch in sim.log().entries().iter().filter(|r| r.method == "PATCH") {
        assert!(!patch.body.contains("userName") && !patch.body.contains("emails"), "{}", patch.body);
    }
    assert_eq!(directory.settled(&server, &app).await, 0);

    // A new email cannot be set in place: a draft replaces the member.
    directory.update_user(&server, &ada, json!({"email": "augusta@acme.test"})).await;
    let draft = directory.draft(&server, &app).await;
    let plan = draft["data"][0]["id"].as_str().unwrap().to_owned();
    let steps = steps_of(&server, &directory, &plan).await;
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0]["attributes"]["action"], "replace");
    assert!(member(&sim, "ada@acme.test").is_some(), "nothing happens before approval");
    directory.approve(&server, &plan).await;
    let second = eventually("augusta invited", || async { member(&sim, "augusta@acme.test") }).await;
    assert!(member(&sim, "ada@acme.test").is_none(), "the old member is deleted");
    assert_ne!(second["id"], first["id"]);
    assert_eq!(directory.settled(&server, &app).await, 0);
    let accounts = directory.accounts(&server, &app).await;
    let active: Vec<&Value> = accounts.iter().filter(|a| a["attributes"]["status"] == "active").collect();
    assert_eq!(active.len(), 1, "{accounts:?}");
    assert_eq!(active[0]["attributes"]["external_id"], second["id"]);

    // Leaving: a deletion and a key-revocation task, both only after approval.
    directory.update_user(&server, &ada, json!({"blocked": true})).await;
    let draft = directory.draft(&server, &app).await;
    let plan = draft["data"][0]["id"].as_str().unwrap().to_owned();
    let mut actions: Vec<String> = steps_of(&server, &directory, &plan)
        .await
        .iter()
        .map(|s| s["attributes"]["action"].as_str().unwrap().to_owned())
        .collect();
    actions.sort();
    assert_eq!(actions, ["delete", "manual"]);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(member(&sim, "augusta@acme.test").is_some(), "nothing is deleted before approval");
    directory.approve(&server, &plan).await;
    eventually("augusta deleted", || async { member(&sim, "augusta@acme.test").is_none().then_some(()) })
        .await;
    let task = eventually("the key revocation task", || async {
        let body = directory.get(&server, &format!("/api/manual-tasks?filter[app_id]={app}")).await;
        body["data"].as_array()?.first().cloned()
    })
    .await;
    let title = task["attributes"]["title"].as_str().unwrap();
    assert!(title.contains("API keys") && title.contains("augusta@acme.test"), "{title}");
    let shown = directory.get(&server, &format!("/api/provisioning-plans/{plan}")).await;
    assert_eq!(shown["data"]["attributes"]["status"], "applying", "open until the keys are revoked");
    let task_id = task["id"].as_str().unwrap();
    let (status, body) = server
        .api(
            Method::POST,
            &format!("/api/manual-tasks/{task_id}/complete"),
            &directory.token,
            Some(json!({"note": "rolled sk_live_…4242"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let shown = directory.get(&server, &format!("/api/provisioning-plans/{plan}")).await;
    assert_eq!(shown["data"]["attributes"]["status"], "applied");
    // A reconciliation has no way to see keys: the task stays done, and
    // finds the member gone.
    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["meta"]["reconciliation"]["tasks_verified"], 0, "{body}");
    let shown = directory.get(&server, &format!("/api/manual-tasks/{task_id}")).await;
    assert_eq!(shown["data"]["attributes"]["status"], "done");
});

db_test!(faults_never_duplicate_a_member, config = hub_on, |server| {
    use portcullis_sim::{Fault, FaultRule};
    let (sim, running) = ScimSim::start(Config::profile(Profile::StripeDashboard), 0).await.unwrap();
    let directory = Directory::new(&server).await;
    let app = team_app(&server, &directory, &running).await;
    // Stripe keeps no externalId: after a lost answer only the lookup by
    // userName stands between a retry and a second member.
    let faults = [
        Fault::RateLimited { retry_after: Some(1) },
        Fault::RateLimited { retry_after: None },
        Fault::ServerError { status: 503 },
        Fault::TimeoutAfterCommit { secs: 4 },
    ];
    for (i, fault) in faults.iter().enumerate() {
        sim.faults().add(FaultRule { operation: "users.create".into(), fault: fault.clone(), times: 1 });
        let email = format!("member{i}@acme.test");
        directory.employee(&server, &email, "Member", None).await;
        eventually(&format!("{email} after {}", fault.label()), || async { member(&sim, &email) }).await;
        assert_eq!(directory.settled(&server, &app).await, 0, "after {}", fault.label());
        let named = sim.resources(Kind::User).into_iter().filter(|u| u["userName"] == email.as_str()).count();
        assert_eq!(named, 1, "exactly one member after {}", fault.label());
        assert!(
            sim.log().entries().iter().any(|r| r.fault.as_deref() == Some(fault.label().as_str())),
            "{} was injected",
            fault.label()
        );
    }
    assert_eq!(sim.resources(Kind::User).len(), faults.len());
});

db_test!(a_renamed_member_and_a_stranger_are_found_and_fixed, config = hub_on, |server| {
    let (sim, running) = ScimSim::start(Config::profile(Profile::StripeDashboard), 0).await.unwrap();
    let directory = Directory::new(&server).await;
    let app = team_app(&server, &directory, &running).await;
    directory.employee(&server, "ada@acme.test", "Ada", None).await;
    let ada = eventually("ada invited", || async { member(&sim, "ada@acme.test") }).await;
    assert_eq!(directory.settled(&server, &app).await, 0);
    sim.change(Kind::User, ada["id"].as_str().unwrap(), &json!({"displayName": "Someone Else"})).unwrap();
    sim.seed(
        Kind::User,
        &json!({"userName": "stranger@else.test", "displayName": "Stranger", "active": true}),
    )
    .unwrap();

    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["meta"]["reconciliation"];
    assert_eq!((report["drift"].as_u64(), report["orphaned"].as_u64()), (Some(1), Some(1)), "{report}");
    let plan = report["plan_id"].as_str().unwrap().to_owned();
    let mut actions: Vec<String> = steps_of(&server, &directory, &plan)
        .await
        .iter()
        .map(|s| s["attributes"]["action"].as_str().unwrap().to_owned())
        .collect();
    actions.sort();
    assert_eq!(actions, ["delete", "manual", "update"], "the stranger's removal brings its key task");
    directory.approve(&server, &plan).await;
    eventually("the name restored", || async {
        member(&sim, "ada@acme.test").filter(|m| m["displayName"] == "Ada Tester")
    })
    .await;
    eventually("the stranger deleted", || async {
        member(&sim, "stranger@else.test").is_none().then_some(())
    })
    .await;
});
