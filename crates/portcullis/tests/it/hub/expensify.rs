//! The hub against the Expensify simulator over real HTTP: provisioning,
//! updates (name, manager), soft deprovisioning, reconciliation of
//! out-of-band changes, and every injected fault.

use portcullis_sim::expensify::{Config, Employee, ExpensifySim};
use portcullis_sim::{Fault, FaultRule};
use reqwest::StatusCode;
use serde_json::json;

use super::support::{Directory, eventually, hub_on};
use crate::db_test;
use crate::harness::TestServer;

const POLICY: &str = "F0E1D2C3B4A59687";

async fn setup(
    server: &TestServer,
) -> (std::sync::Arc<ExpensifySim>, portcullis_sim::Running, Directory, String) {
    // A credential of the test's own: the hub throttles per credential, and
    // tests run side by side in one process.
    let partner = format!("aa_{}", portcullis_crypto::secret::random_base62(10));
    let mut config = Config::default();
    config.partners[0].partner_user_id = partner.clone();
    let (sim, running) = ExpensifySim::start(config, 0).await.expect("simulator");
    let directory = Directory::new(server).await;
    let app = directory
        .create_app(
            server,
            json!({
                "name": "Expensify",
                "kind": "expensify",
                "base_url": running.base_url(),
                "credentials": {"partner_user_id": partner, "partner_user_secret": "expensify-secret"},
                "settings": {"policy_id": POLICY},
            }),
        )
        .await;
    (sim, running, directory, app)
}

fn employee(sim: &ExpensifySim, email: &str) -> Option<Employee> {
    sim.employees(POLICY).into_iter().find(|e| e.email.eq_ignore_ascii_case(email))
}

db_test!(provisions_updates_and_deprovisions, config = hub_on, |server| {
    let (sim, _running, directory, app) = setup(&server).await;
    let boss = directory.employee(&server, "boss@acme.test", "Grace", None).await;
    let ada = directory.employee(&server, "ada@acme.test", "Ada", Some(&boss)).await;

    // A user with the access role appears on the policy, submitting to
    // their manager.
    let row = eventually("ada on the policy", || async { employee(&sim, "ada@acme.test") }).await;
    assert_eq!(row.submits_to.as_deref(), Some("boss@acme.test"));
    assert_eq!(row.first_name, "Ada");
    assert_eq!(row.employee_id.as_deref(), Some(ada.as_str()), "employeeID is the user id");
    assert!(employee(&sim, "boss@acme.test").is_some());
    assert_eq!(directory.settled(&server, &app).await, 0);
    let accounts = directory.accounts(&server, &app).await;
    let ada_account = accounts
        .iter()
        .find(|a| a["relationships"]["user"]["data"]["id"] == ada.as_str())
        .expect("graph row");
    assert_eq!(ada_account["attributes"]["status"], "active");
    assert_eq!(ada_account["attributes"]["external_id"], "ada@acme.test");

    // A name and a manager change reach the app.
    let carol = directory.employee(&server, "carol@acme.test", "Carol", None).await;
    directory.update_user(&server, &ada, json!({"first_name": "Augusta", "manager_id": carol})).await;
    let row = eventually("ada's new manager", || async {
        employee(&sim, "ada@acme.test").filter(|e| e.submits_to.as_deref() == Some("carol@acme.test"))
    })
    .await;
    assert_eq!(sim.account("ada@acme.test").expect("account").first_name, "Augusta");
    assert_eq!(row.employee_id.as_deref(), Some(ada.as_str()));

    // Blocking deprovisions softly: off the policy, account kept.
    directory.update_user(&server, &ada, json!({"blocked": true})).await;
    eventually("ada off the policy", || async { employee(&sim, "ada@acme.test").is_none().then_some(()) })
        .await;
    assert!(sim.account("ada@acme.test").is_some(), "Expensify keeps the account");
    assert_eq!(directory.settled(&server, &app).await, 0);
    let accounts = directory.accounts(&server, &app).await;
    let ada_account =
        accounts.iter().find(|a| a["relationships"]["user"]["data"]["id"] == ada.as_str()).unwrap();
    assert_eq!(ada_account["attributes"]["status"], "deactivated");
    // Nothing waited for approval: every plan was applied by the hub.
    assert!(directory.plans(&server, &app, "draft").await.is_empty());
    let applied = directory.plans(&server, &app, "applied").await;
    assert!(applied.len() >= 3, "{applied:?}");
    // The feed sent managers before their reports and never the secret in
    // the clear outside the body.
    let feeds: Vec<_> = sim.log().entries().into_iter().filter(|r| r.body.contains("%22update%22")).collect();
    assert!(!feeds.is_empty());
});

db_test!(reconciliation_reports_and_fixes_out_of_band_changes, config = hub_on, |server| {
    let (sim, _running, directory, app) = setup(&server).await;
    let boss = directory.employee(&server, "boss@acme.test", "Grace", None).await;
    directory.employee(&server, "ada@acme.test", "Ada", Some(&boss)).await;
    eventually("ada on the policy", || async { employee(&sim, "ada@acme.test") }).await;
    assert_eq!(directory.settled(&server, &app).await, 0);

    // Behind the hub's back: a stranger is added and Ada's approver changed.
    sim.upsert_employee(
        POLICY,
        Employee {
            submits_to: Some("admin@example.com".into()),
            ..Employee::new("stranger@else.test", "user")
        },
    );
    let mut ada = employee(&sim, "ada@acme.test").unwrap();
    ada.submits_to = Some("admin@example.com".into());
    sim.upsert_employee(POLICY, ada);

    // A dry run reports and stores nothing.
    let (status, body) = directory.reconcile(&server, &app, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["meta"]["reconciliation"];
    assert_eq!(report["drift"], 1, "{report}");
    assert_eq!(report["orphaned"], 1, "only the stranger: {report}");
    assert_eq!(report["unmanaged"], 1, "the policy owner is left alone: {report}");
    assert!(report.get("plan_id").is_none());
    assert!(directory.plans(&server, &app, "draft").await.is_empty());

    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let plan = body["meta"]["reconciliation"]["plan_id"].as_str().expect("a plan").to_owned();
    let drafts = directory.plans(&server, &app, "draft").await;
    assert_eq!(drafts.len(), 1);
    assert_eq!(drafts[0]["id"], plan.as_str());
    assert_eq!(drafts[0]["attributes"]["source"], "reconcile");
    // The orphan is in the graph, linked to no one.
    let accounts = directory.accounts(&server, &app).await;
    let stranger =
        accounts.iter().find(|a| a["attributes"]["login"] == "stranger@else.test").expect("orphan row");
    assert_eq!(stranger["attributes"]["orphaned"], true);
    // Nothing changed in the app until the plan is approved.
    assert!(employee(&sim, "stranger@else.test").is_some());

    directory.approve(&server, &plan).await;
    eventually("the stranger removed", || async {
        employee(&sim, "stranger@else.test").is_none().then_some(())
    })
    .await;
    let ada = eventually("ada's approver restored", || async {
        employee(&sim, "ada@acme.test").filter(|e| e.submits_to.as_deref() == Some("boss@acme.test"))
    })
    .await;
    assert_eq!(ada.email, "ada@acme.test");
    assert_eq!(directory.settled(&server, &app).await, 0);
    let applied = directory.get(&server, &format!("/api/provisioning-plans/{plan}")).await;
    assert_eq!(applied["data"]["attributes"]["status"], "applied");
});

db_test!(a_complete_read_marks_the_accounts_it_saw, config = hub_on, |server| {
    let (sim, _running, directory, app) = setup(&server).await;
    let boss = directory.employee(&server, "boss@acme.test", "Grace", None).await;
    let ada = directory.employee(&server, "ada@acme.test", "Ada", Some(&boss)).await;
    eventually("ada on the policy", || async { employee(&sim, "ada@acme.test") }).await;
    assert_eq!(directory.settled(&server, &app).await, 0);
    let seen = |accounts: &[serde_json::Value], user: &str| {
        let account = accounts
            .iter()
            .find(|a| a["relationships"]["user"]["data"]["id"] == user)
            .unwrap_or_else(|| panic!("{user} in {accounts:?}"));
        (account["attributes"]["last_seen_at"].clone(), account["attributes"]["status"].clone())
    };

    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first = directory.accounts(&server, &app).await;
    let (ada_first, _) = seen(&first, &ada);
    let (boss_first, _) = seen(&first, &boss);
    assert!(ada_first.is_string() && boss_first.is_string(), "{first:?}");

    // Ada leaves the policy behind the hub's back; the next complete read
    // sees only Grace.
    assert!(sim.remove_employee(POLICY, "ada@acme.test"));
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = directory.accounts(&server, &app).await;
    let (ada_second, ada_status) = seen(&second, &ada);
    let (boss_second, boss_status) = seen(&second, &boss);
    assert_eq!(ada_second, ada_first, "an account the read did not see keeps its last sighting");
    assert_eq!(ada_status, "deactivated");
    assert_ne!(boss_second, boss_first, "an account the read saw is marked seen again");
    assert_eq!(boss_status, "active");
});

db_test!(every_fault_ends_in_the_right_state, config = hub_on, |server| {
    let (sim, _running, directory, app) = setup(&server).await;
    // Each fault hits one feed; the step is retried until it lands.
    for fault in [
        Fault::RateLimited { retry_after: None },
        Fault::RateLimited { retry_after: Some(1) },
        Fault::InBand { code: "500".into(), message: Some("Internal error".into()) },
        Fault::ServerError { status: 503 },
        Fault::Malformed { status: 502 },
        Fault::TimeoutAfterCommit { secs: 4 },
    ] {
        sim.faults().add(FaultRule { operation: "update.employees".into(), fault: fault.clone(), times: 1 });
        let email = format!("{}@acme.test", fault.label().replace(['(', ')', '=', '_'], "-"));
        directory.employee(&server, &email, "Faulty", None).await;
        eventually(&format!("{email} on the policy after {}", fault.label()), || async {
            employee(&sim, &email).map(|_| ())
        })
        .await;
        assert_eq!(directory.settled(&server, &app).await, 0, "after {}", fault.label());
    }
    // One roster entry each: replays of the upsert made no duplicates.
    let roster = sim.employees(POLICY);
    let mut emails: Vec<_> = roster.iter().map(|e| e.email.clone()).collect();
    emails.dedup();
    assert_eq!(emails.len(), roster.len());
    // The steps recorded their retries.
    let steps = directory
        .get(&server, &format!("/api/provisioning-steps?filter[app_id]={app}&page[limit]=100"))
        .await;
    let retried = steps["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["attributes"]["attempts"].as_i64() > Some(1))
        .count();
    assert!(retried >= 5, "{steps}");

    // An in-band validation error is final: the step fails, and says why.
    sim.faults().add(FaultRule {
        operation: "update.employees".into(),
        fault: Fault::InBand { code: "410".into(), message: Some("Employee data missing".into()) },
        times: 1,
    });
    directory.employee(&server, "refused@acme.test", "Refused", None).await;
    let failed = eventually("the refused step fails", || async {
        let steps = directory
            .get(&server, &format!("/api/provisioning-steps?filter[app_id]={app}&filter[status]=failed"))
            .await;
        steps["data"].as_array().filter(|s| !s.is_empty()).cloned()
    })
    .await;
    assert!(failed[0]["attributes"]["last_error"].as_str().unwrap().contains("410"), "{failed:?}");
    assert_eq!(failed[0]["attributes"]["attempts"], 1, "a 410 is not retried");
});

db_test!(a_failed_roster_read_changes_nothing, config = hub_on, |server| {
    let (sim, _running, directory, app) = setup(&server).await;
    directory.employee(&server, "ada@acme.test", "Ada", None).await;
    eventually("ada on the policy", || async { employee(&sim, "ada@acme.test") }).await;
    assert_eq!(directory.settled(&server, &app).await, 0);
    let before = directory.accounts(&server, &app).await;

    // One failure is tried again and the read completes.
    sim.faults().add(FaultRule {
        operation: "get.policy".into(),
        fault: Fault::ServerError { status: 500 },
        times: 1,
    });
    let (status, body) = directory.reconcile(&server, &app, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["meta"]["reconciliation"]["linked"], 1, "{body}");

    // A read that keeps failing gives up and changes nothing.
    sim.faults().add(FaultRule {
        operation: "get.policy".into(),
        fault: Fault::ServerError { status: 500 },
        times: portcullis_provision::connector::http::READ_ATTEMPTS,
    });
    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["errors"][0]["code"], "roster_read_failed");
    assert!(directory.plans(&server, &app, "draft").await.is_empty(), "no plan from a failed read");
    assert_eq!(directory.accounts(&server, &app).await, before, "the graph is untouched");

    // The next read works and finds the graph in step.
    let (status, body) = directory.reconcile(&server, &app, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["meta"]["reconciliation"]["linked"], 1, "{body}");
});
