//! The hub against the generic SCIM 2.0 simulator over real HTTP: every
//! dialect profile provisioned, updated and deactivated; hard deletion
//! only after approval; reconciliation of out-of-band changes, over pages
//! that do not honour `count`; faults that must never duplicate a user; a
//! roster read that fails and changes nothing; and GET-then-PUT (with
//! `If-Match`) for a server without PATCH.

use std::sync::Arc;

use portcullis_sim::scim::{AttributeSet, BASE_PATH, Config, DEFAULT_TOKEN, Kind, Profile, ScimSim};
use portcullis_sim::{Fault, FaultRule, LoggedRequest, Running};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::support::{Directory, eventually, hub_on};
use crate::db_test;
use crate::harness::TestServer;

async fn simulator(config: Config) -> (Arc<ScimSim>, Running) {
    ScimSim::start(config, 0).await.expect("simulator")
}

/// A `scim` app pointed at a simulator; `extra`'s keys are added to (or
/// replace) the app's attributes.
pub(super) async fn scim_app(
    server: &TestServer,
    directory: &Directory,
    name: &str,
    running: &Running,
    extra: Value,
) -> String {
    let mut attributes = json!({
        "name": name,
        "kind": "scim",
        "base_url": format!("{}{BASE_PATH}", running.base_url()),
        "credentials": {"bearer_token": DEFAULT_TOKEN},
    });
    if let Some(extra) = extra.as_object() {
        for (key, value) in extra {
            attributes[key] = value.clone();
        }
    }
    directory.create_app(server, attributes).await
}

/// One simulator, one role and one app.
async fn setup(
    server: &TestServer,
    config: Config,
    extra: Value,
) -> (Arc<ScimSim>, Running, Directory, String) {
    let (sim, running) = simulator(config).await;
    let directory = Directory::new(server).await;
    let app = scim_app(server, &directory, "SCIM", &running, extra).await;
    (sim, running, directory, app)
}

/// The simulator's users whose userName is `email` (userName is not case
/// exact in SCIM).
fn users_named(sim: &ScimSim, email: &str) -> Vec<Value> {
    sim.resources(Kind::User)
        .into_iter()
        .filter(|u| u["userName"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(email)))
        .collect()
}

/// The one user with that userName (None while there is none; a duplicate
/// fails the test).
fn only_user(sim: &ScimSim, email: &str) -> Option<Value> {
    let mut users = users_named(sim, email);
    assert!(users.len() <= 1, "{email} is in the app more than once: {users:?}");
    users.pop()
}

fn id_of_user(user: &Value) -> String {
    user["id"].as_str().expect("a SCIM id").to_owned()
}

fn users_path() -> String {
    format!("{BASE_PATH}/Users")
}

/// Requests to `/Users` or `/Users/...` with this method.
fn user_requests(sim: &ScimSim, method: &str) -> Vec<LoggedRequest> {
    let users = users_path();
    sim.log()
        .entries()
        .into_iter()
        .filter(|r| r.method == method && (r.path == users || r.path.starts_with(&format!("{users}/"))))
        .collect()
}

/// Every operation of every PATCH the app received for a user.
fn patch_ops(sim: &ScimSim) -> Vec<Value> {
    user_requests(sim, "PATCH")
        .into_iter()
        .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
        .flat_map(|body| body["Operations"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn is_false(value: &Value) -> bool {
    *value == json!(false) || value.as_str().is_some_and(|s| s.eq_ignore_ascii_case("false"))
}

/// Whether a PATCH operation sets `active` to false, with or without a path.
fn deactivates(op: &Value) -> bool {
    match op.get("path").and_then(Value::as_str) {
        Some(path) => path.eq_ignore_ascii_case("active") && is_false(&op["value"]),
        None => is_false(&op["value"]["active"]),
    }
}

/// The graph's rows of one user in one app.
async fn accounts_of(server: &TestServer, directory: &Directory, app: &str, user: &str) -> Vec<Value> {
    directory
        .accounts(server, app)
        .await
        .into_iter()
        .filter(|a| a["relationships"]["user"]["data"]["id"] == user)
        .collect()
}

/// The user's one current (not deleted) row.
async fn account_of(server: &TestServer, directory: &Directory, app: &str, user: &str) -> Value {
    let rows = accounts_of(server, directory, app, user).await;
    let mut current: Vec<Value> =
        rows.iter().filter(|a| a["attributes"]["status"] != "deleted").cloned().collect();
    assert_eq!(current.len(), 1, "one current row for {user}: {rows:?}");
    current.pop().unwrap()
}

db_test!(every_dialect_is_provisioned_updated_and_deactivated, config = hub_on, |server| {
    const EMAIL: &str = "ada.dialects@acme.test";
    let directory = Directory::new(&server).await;
    let mut apps = Vec::new();
    for profile in Profile::ALL {
        let (sim, running) = simulator(Config::profile(profile)).await;
        // Okta deactivates with a path-less replace; the others with a path.
        let settings = if profile == Profile::OktaTolerant {
            json!({"deactivate_style": "pathless"})
        } else {
            json!({})
        };
        let name = format!("SCIM {}", profile.name());
        let app = scim_app(&server, &directory, &name, &running, json!({"settings": settings})).await;
        apps.push((profile, sim, running, app));
    }
    let ada = directory.employee(&server, EMAIL, "Ada", None).await;

    // One SCIM user per app, as each dialect can hold it.
    for (profile, sim, _running, app) in &apps {
        let name = profile.name();
        let user = eventually(&format!("ada in {name}"), || async { only_user(sim, EMAIL) }).await;
        assert_eq!(user["userName"], EMAIL, "{name}: {user}");
        assert_eq!(user["active"], true, "{name}: {user}");
        match sim.config().attributes {
            AttributeSet::Rfc => {
                assert_eq!(user["externalId"], ada.as_str(), "{name}: {user}");
                assert_eq!(user["name"]["givenName"], "Ada", "{name}: {user}");
                assert_eq!(user["name"]["familyName"], "Tester", "{name}: {user}");
                assert_eq!(user["displayName"], "Ada Tester", "{name}: {user}");
                assert_eq!(
                    user["emails"],
                    json!([{"value": EMAIL, "type": "work", "primary": true}]),
                    "{name}: {user}"
                );
            }
            // TravelPerk keeps neither displayName nor emails.
            AttributeSet::TravelPerk => {
                assert_eq!(user["externalId"], ada.as_str(), "{name}: {user}");
                assert_eq!(user["name"]["givenName"], "Ada", "{name}: {user}");
                assert_eq!(user["name"]["familyName"], "Tester", "{name}: {user}");
            }
            // Stripe keeps only userName, displayName and active.
            AttributeSet::StripeDashboard => {
                assert_eq!(user["displayName"], "Ada Tester", "{name}: {user}");
            }
        }
        assert_eq!(directory.settled(&server, app).await, 0, "{name}");
        let row = account_of(&server, &directory, app, &ada).await;
        assert_eq!(row["attributes"]["status"], "active", "{name}: {row}");
        assert_eq!(row["attributes"]["external_id"], user["id"], "{name}: {row}");
        assert_eq!(row["attributes"]["login"], EMAIL, "{name}: {row}");
    }

    // A first-name change reaches every app.
    directory.update_user(&server, &ada, json!({"first_name": "Augusta"})).await;
    for (profile, sim, _running, app) in &apps {
        let name = profile.name();
        let user = match sim.config().attributes {
            AttributeSet::StripeDashboard => {
                eventually(&format!("the new displayName in {name}"), || async {
                    only_user(sim, EMAIL).filter(|u| u["displayName"] == "Augusta Tester")
                })
                .await
            }
            _ => {
                eventually(&format!("the new givenName in {name}"), || async {
                    only_user(sim, EMAIL).filter(|u| u["name"]["givenName"] == "Augusta")
                })
                .await
            }
        };
        if sim.config().attributes == AttributeSet::Rfc {
            assert_eq!(user["displayName"], "Augusta Tester", "{name}: {user}");
        }
        assert_eq!(user["active"], true, "{name}: {user}");
        assert_eq!(directory.settled(&server, app).await, 0, "{name}");
    }
    // Every dialect here has PATCH: strict-rfc got path-ful PATCH
    // operations, never a PUT.
    let (_, strict, _, _) = apps.iter().find(|(p, ..)| *p == Profile::StrictRfc).unwrap();
    assert!(user_requests(strict, "PUT").is_empty(), "PATCH is advertised: no PUT");
    let ops = patch_ops(strict);
    assert!(
        ops.iter().any(|op| {
            match op.get("path").and_then(Value::as_str) {
                Some(p) if p.eq_ignore_ascii_case("name.givenName") => op["value"] == "Augusta",
                Some(p) if p.eq_ignore_ascii_case("name") => op["value"]["givenName"] == "Augusta",
                _ => false,
            }
        }),
        "a PATCH replaced the givenName by path: {ops:?}"
    );
    assert!(ops.iter().all(|op| op.get("path").is_some()), "path-ful operations only: {ops:?}");

    // Blocking deactivates: the user stays, inactive; Stripe deletes
    // inactive team members.
    directory.update_user(&server, &ada, json!({"blocked": true})).await;
    for (profile, sim, _running, app) in &apps {
        let name = profile.name();
        if sim.config().deactivate_deletes {
            eventually(&format!("ada gone from {name}"), || async {
                users_named(sim, EMAIL).is_empty().then_some(())
            })
            .await;
        } else {
            let user = eventually(&format!("ada inactive in {name}"), || async {
                only_user(sim, EMAIL).filter(|u| u["active"] == false)
            })
            .await;
            assert_eq!(user["userName"], EMAIL, "{name}: {user}");
        }
        assert_eq!(directory.settled(&server, app).await, 0, "{name}");
        let rows = accounts_of(&server, &directory, app, &ada).await;
        assert_eq!(rows.len(), 1, "{name}: {rows:?}");
        let status = rows[0]["attributes"]["status"].as_str().unwrap_or_default();
        if sim.config().deactivate_deletes {
            assert!(matches!(status, "deactivated" | "deleted"), "{name}: {rows:?}");
        } else {
            assert_eq!(status, "deactivated", "{name}: {rows:?}");
        }
        // Soft mode proposes nothing for approval.
        assert!(directory.plans(&server, app, "draft").await.is_empty(), "{name}");
    }
    // How each deactivation was sent.
    let ops = patch_ops(strict);
    let off: Vec<_> = ops.iter().filter(|op| deactivates(op)).collect();
    assert!(!off.is_empty(), "strict-rfc was deactivated by PATCH: {ops:?}");
    assert!(off.iter().all(|op| op.get("path").is_some()), "path style: {off:?}");
    let (_, okta, _, _) = apps.iter().find(|(p, ..)| *p == Profile::OktaTolerant).unwrap();
    let ops = patch_ops(okta);
    let off: Vec<_> = ops.iter().filter(|op| deactivates(op)).collect();
    assert!(!off.is_empty(), "okta-tolerant was deactivated by PATCH: {ops:?}");
    for op in off {
        assert!(op.get("path").is_none(), "pathless style: {op}");
        assert!(op["op"].as_str().is_some_and(|o| o.eq_ignore_ascii_case("replace")), "{op}");
        assert_eq!(op["value"], json!({"active": false}), "{op}");
    }
});

db_test!(hard_deprovisioning_deletes_only_after_approval, config = hub_on, |server| {
    let (sim, _running, directory, app) =
        setup(&server, Config::profile(Profile::StrictRfc), json!({"deprovision_mode": "hard"})).await;
    let ada = directory.employee(&server, "ada.hard@acme.test", "Ada", None).await;
    let bob = directory.employee(&server, "bob.hard@acme.test", "Bob", None).await;
    let ada_id =
        id_of_user(&eventually("ada's user", || async { only_user(&sim, "ada.hard@acme.test") }).await);
    let bob_id =
        id_of_user(&eventually("bob's user", || async { only_user(&sim, "bob.hard@acme.test") }).await);
    assert_eq!(directory.settled(&server, &app).await, 0);

    directory.update_user(&server, &ada, json!({"blocked": true})).await;
    let drafts = directory.draft(&server, &app).await;
    assert_eq!(drafts["data"].as_array().unwrap().len(), 1, "{drafts}");
    let plan = drafts["data"][0]["id"].as_str().unwrap().to_owned();
    let steps: Vec<_> =
        drafts["included"].as_array().unwrap().iter().filter(|i| i["type"] == "provisioning_step").collect();
    assert!(steps.iter().any(|s| s["attributes"]["action"] == "delete"), "{drafts}");
    // Nothing is deleted while the plan waits.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(sim.resource(Kind::User, &ada_id).is_some(), "deleted before approval");
    assert!(user_requests(&sim, "DELETE").is_empty());

    directory.approve(&server, &plan).await;
    eventually("ada deleted", || async { sim.resource(Kind::User, &ada_id).is_none().then_some(()) }).await;
    assert!(users_named(&sim, "ada.hard@acme.test").is_empty());
    let deletes = user_requests(&sim, "DELETE");
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0].path, format!("{}/{ada_id}", users_path()));
    assert_eq!(directory.settled(&server, &app).await, 0);
    let rows = accounts_of(&server, &directory, &app, &ada).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["attributes"]["status"], "deleted");
    let applied = directory.get(&server, &format!("/api/provisioning-plans/{plan}")).await;
    assert_eq!(applied["data"]["attributes"]["status"], "applied", "{applied}");

    // Someone deleted Bob in the app already: the DELETE's 404 is the goal
    // reached, not a failure.
    directory.update_user(&server, &bob, json!({"blocked": true})).await;
    let drafts = directory.draft(&server, &app).await;
    let plan = drafts["data"][0]["id"].as_str().unwrap().to_owned();
    assert!(sim.remove(Kind::User, &bob_id));
    directory.approve(&server, &plan).await;
    assert_eq!(directory.settled(&server, &app).await, 0, "a 404 on DELETE is success");
    let applied = directory.get(&server, &format!("/api/provisioning-plans/{plan}")).await;
    assert_eq!(applied["data"]["attributes"]["status"], "applied", "{applied}");
    let rows = accounts_of(&server, &directory, &app, &bob).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["attributes"]["status"], "deleted");
});

db_test!(reconciliation_reports_and_fixes_drift_orphans_and_missing, config = hub_on, |server| {
    let (sim, _running, directory, app) =
        setup(&server, Config::profile(Profile::StrictRfc), json!({})).await;
    let ada = directory.employee(&server, "ada.reconcile@acme.test", "Ada", None).await;
    let bob = directory.employee(&server, "bob.reconcile@acme.test", "Bob", None).await;
    let ada_id =
        id_of_user(&eventually("ada's user", || async { only_user(&sim, "ada.reconcile@acme.test") }).await);
    let bob_id =
        id_of_user(&eventually("bob's user", || async { only_user(&sim, "bob.reconcile@acme.test") }).await);
    assert_eq!(directory.settled(&server, &app).await, 0);

    // Behind the hub's back: Ada renamed, a stranger added, Bob removed.
    sim.change(
        Kind::User,
        &ada_id,
        &json!({"name": {"givenName": "Someone", "familyName": "Else"}, "displayName": "Someone Else"}),
    )
    .expect("change");
    let stranger = sim
        .seed(
            Kind::User,
            &json!({"userName": "stranger@else.test", "active": true, "name": {"givenName": "Stranger"}}),
        )
        .expect("seed");
    let stranger_id = id_of_user(&stranger);
    assert!(sim.remove(Kind::User, &bob_id));
    let before = directory.accounts(&server, &app).await;

    // A dry run reports and stores nothing.
    let (status, body) = directory.reconcile(&server, &app, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["meta"]["reconciliation"];
    assert_eq!(report["accounts_read"], 2, "{report}");
    assert_eq!(report["drift"], 1, "{report}");
    assert_eq!(report["orphaned"], 1, "{report}");
    assert_eq!(report["missing"], 1, "{report}");
    assert_eq!(report["linked"], 0, "{report}");
    assert!(report.get("plan_id").is_none(), "{report}");
    assert!(directory.plans(&server, &app, "draft").await.is_empty());
    assert_eq!(directory.accounts(&server, &app).await, before, "a dry run leaves the graph alone");

    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["meta"]["reconciliation"];
    assert_eq!((report["drift"].clone(), report["orphaned"].clone()), (json!(1), json!(1)), "{report}");
    assert_eq!(report["missing"], 1, "{report}");
    let plan = report["plan_id"].as_str().expect("a plan").to_owned();
    let drafts = directory.draft(&server, &app).await;
    assert_eq!(drafts["data"].as_array().unwrap().len(), 1, "{drafts}");
    assert_eq!(drafts["data"][0]["id"], plan.as_str());
    assert_eq!(drafts["data"][0]["attributes"]["source"], "reconcile");
    let mut actions: Vec<&str> = drafts["included"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "provisioning_step")
        .filter_map(|s| s["attributes"]["action"].as_str())
        .collect();
    actions.sort_unstable();
    assert_eq!(actions, ["create", "deactivate", "update"], "{drafts}");
    // The stranger is in the graph, linked to no one.
    let accounts = directory.accounts(&server, &app).await;
    let orphan = accounts
        .iter()
        .find(|a| a["attributes"]["external_id"] == stranger_id.as_str())
        .expect("the orphan's row");
    assert_eq!(orphan["attributes"]["orphaned"], true, "{orphan}");
    assert_eq!(orphan["attributes"]["login"], "stranger@else.test", "{orphan}");
    // Nothing changes in the app until the plan is approved.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sim.resource(Kind::User, &ada_id).unwrap()["name"]["givenName"], "Someone");
    assert_eq!(sim.resource(Kind::User, &stranger_id).unwrap()["active"], true);
    assert!(users_named(&sim, "bob.reconcile@acme.test").is_empty());

    directory.approve(&server, &plan).await;
    let fixed = eventually("ada's name restored", || async {
        sim.resource(Kind::User, &ada_id).filter(|u| u["name"]["givenName"] == "Ada")
    })
    .await;
    assert_eq!(fixed["name"]["familyName"], "Tester", "{fixed}");
    eventually("the stranger deactivated", || async {
        sim.resource(Kind::User, &stranger_id).filter(|u| u["active"] == false)
    })
    .await;
    let bob_again =
        eventually("bob back in the app", || async { only_user(&sim, "bob.reconcile@acme.test") }).await;
    assert_eq!(bob_again["externalId"], bob.as_str(), "{bob_again}");
    assert_eq!(bob_again["active"], true, "{bob_again}");
    assert_ne!(bob_again["id"], bob_id.as_str(), "a new user, the old one is gone");
    assert_eq!(directory.settled(&server, &app).await, 0);
    let applied = directory.get(&server, &format!("/api/provisioning-plans/{plan}")).await;
    assert_eq!(applied["data"]["attributes"]["status"], "applied", "{applied}");
    assert_eq!(sim.resources(Kind::User).len(), 3, "ada, the stranger and bob's new user");
    let bob_row = account_of(&server, &directory, &app, &bob).await;
    assert_eq!(bob_row["attributes"]["status"], "active", "{bob_row}");
    assert_eq!(bob_row["attributes"]["external_id"], bob_again["id"], "{bob_row}");
    assert_eq!(account_of(&server, &directory, &app, &ada).await["attributes"]["status"], "active");

    // The app and the directory agree now.
    let (status, body) = directory.reconcile(&server, &app, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["meta"]["reconciliation"];
    assert_eq!(report["linked"], 2, "{report}");
    assert_eq!((report["drift"].clone(), report["missing"].clone()), (json!(0), json!(0)), "{report}");
    assert_eq!(report["orphaned"], 0, "the inactive stranger needs nothing: {report}");
});

db_test!(faults_on_create_never_duplicate_a_user, config = hub_on, |server| {
    let (sim, _running, directory, app) =
        setup(&server, Config::profile(Profile::StrictRfc), json!({})).await;
    let faults = [
        Fault::RateLimited { retry_after: Some(1) },
        Fault::RateLimited { retry_after: None },
        Fault::ServerError { status: 500 },
        // Committed, then no answer within the hub's 2 s request timeout.
        Fault::TimeoutAfterCommit { secs: 4 },
    ];
    for (i, fault) in faults.iter().enumerate() {
        let label = fault.label();
        sim.faults().add(FaultRule { operation: "users.create".into(), fault: fault.clone(), times: 1 });
        let email = format!("faulty{i}@acme.test");
        let user = directory.employee(&server, &email, "Faulty", None).await;
        let scim = eventually(&format!("{email} after {label}"), || async { only_user(&sim, &email) }).await;
        assert_eq!(directory.settled(&server, &app).await, 0, "after {label}");
        assert_eq!(users_named(&sim, &email).len(), 1, "exactly one user after {label}");
        assert_eq!(scim["externalId"], user.as_str(), "after {label}");
        // The fault did hit a create.
        let hit: Vec<_> =
            sim.log().entries().into_iter().filter(|r| r.fault.as_deref() == Some(label.as_str())).collect();
        assert_eq!(hit.len(), 1, "{label}: {hit:?}");
        assert_eq!((hit[0].method.as_str(), hit[0].path.clone()), ("POST", users_path()), "{label}");
        let row = account_of(&server, &directory, &app, &user).await;
        assert_eq!(row["attributes"]["status"], "active", "after {label}: {row}");
        assert_eq!(row["attributes"]["external_id"], scim["id"], "after {label}: {row}");
        assert_eq!(row["attributes"]["login"], email.as_str(), "after {label}: {row}");
    }
    assert_eq!(sim.resources(Kind::User).len(), faults.len());
});

db_test!(an_existing_account_is_adopted_not_duplicated, config = hub_on, |server| {
    let (sim, _running, directory, app) =
        setup(&server, Config::profile(Profile::StrictRfc), json!({})).await;
    // Made in the app by hand before the hub knew Carol, with another case.
    let seeded =
        sim.seed(Kind::User, &json!({"userName": "Carol.Adopt@ACME.test", "active": true})).expect("seed");
    let carol = directory.employee(&server, "carol.adopt@acme.test", "Carol", None).await;
    let row = eventually("carol's row", || async {
        accounts_of(&server, &directory, &app, &carol)
            .await
            .into_iter()
            .find(|a| a["attributes"]["status"] == "active")
    })
    .await;
    assert_eq!(row["attributes"]["external_id"], seeded["id"], "{row}");
    assert_eq!(directory.settled(&server, &app).await, 0);
    assert_eq!(users_named(&sim, "carol.adopt@acme.test").len(), 1);
    assert_eq!(sim.resources(Kind::User).len(), 1);
    let creates = user_requests(&sim, "POST");
    assert!(creates.iter().all(|r| r.path != users_path()), "no create: {creates:?}");
});

db_test!(paging_does_not_trust_count, config = hub_on, |server| {
    const USERS: usize = 7;
    // Pages of 3, whatever `count` asks for.
    let config = Config { short_pages: Some(3), ..Config::profile(Profile::StrictRfc) };
    let (sim, _running, directory, app) = setup(&server, config, json!({})).await;
    for i in 0..USERS {
        directory.employee(&server, &format!("paged{i}@acme.test"), "Paged", None).await;
    }
    eventually("every user in the app", || async {
        (sim.resources(Kind::User).len() == USERS).then_some(())
    })
    .await;
    assert_eq!(directory.settled(&server, &app).await, 0);
    sim.log().clear();

    let (status, body) = directory.reconcile(&server, &app, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["meta"]["reconciliation"];
    assert_eq!(report["accounts_read"], USERS, "{report}");
    assert_eq!(report["linked"], USERS, "{report}");
    assert_eq!(report["missing"], 0, "{report}");
    assert_eq!(report["orphaned"], 0, "{report}");
    // The roster took several pages, and the next page started after the
    // 3 users the server sent, not after the `count` the hub asked for.
    let users = users_path();
    let search = format!("{users}/.search");
    let pages: Vec<_> = sim
        .log()
        .entries()
        .into_iter()
        .filter(|r| {
            let listing = r.method == "GET"
                && r.path == users
                && !r.query.as_deref().is_some_and(|q| q.contains("filter"));
            let searching = r.method == "POST" && r.path == search && !r.body.contains("filter");
            listing || searching
        })
        .collect();
    assert!(pages.len() >= USERS.div_ceil(3), "{pages:?}");
    let asked_from = |r: &LoggedRequest, start: usize| {
        r.query.as_deref().is_some_and(|q| q.split('&').any(|p| p == format!("startIndex={start}")))
            || serde_json::from_str::<Value>(&r.body).is_ok_and(|b| b["startIndex"] == start)
    };
    assert!(pages.iter().any(|r| asked_from(r, 4)), "{pages:?}");
    assert!(pages.iter().any(|r| asked_from(r, 7)), "{pages:?}");

    // A complete read that finds nothing to do stores no plan.
    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["meta"]["reconciliation"];
    assert_eq!(report["accounts_read"], USERS, "{report}");
    assert!(report.get("plan_id").is_none(), "{report}");
    assert!(directory.plans(&server, &app, "draft").await.is_empty());
    let accounts = directory.accounts(&server, &app).await;
    assert_eq!(accounts.len(), USERS);
    assert!(accounts.iter().all(|a| a["attributes"]["status"] == "active"), "{accounts:?}");
});

db_test!(a_failed_roster_read_changes_nothing, config = hub_on, |server| {
    let (sim, _running, directory, app) =
        setup(&server, Config::profile(Profile::StrictRfc), json!({})).await;
    directory.employee(&server, "ada.roster@acme.test", "Ada", None).await;
    eventually("ada's user", || async { only_user(&sim, "ada.roster@acme.test") }).await;
    assert_eq!(directory.settled(&server, &app).await, 0);

    // One failure is tried again and the read completes.
    for operation in ["users.list", "users.search"] {
        sim.faults().add(FaultRule {
            operation: operation.into(),
            fault: Fault::ServerError { status: 503 },
            times: 1,
        });
    }
    let (status, body) = directory.reconcile(&server, &app, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["meta"]["reconciliation"]["linked"], 1, "{body}");
    sim.faults().clear();

    // A stranger that a complete read would report, and a read that fails
    // every time.
    sim.seed(Kind::User, &json!({"userName": "stranger.roster@else.test", "active": true})).expect("seed");
    let before = directory.accounts(&server, &app).await;
    let plans_before = directory
        .get(&server, &format!("/api/provisioning-plans?filter[app_id]={app}&page[limit]=100"))
        .await;
    for operation in ["users.list", "users.search"] {
        sim.faults().add(FaultRule {
            operation: operation.into(),
            fault: Fault::ServerError { status: 500 },
            times: 1000,
        });
    }
    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert!(!status.is_success(), "{status}: {body}");
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["errors"][0]["code"], "roster_read_failed", "{body}");
    assert!(
        sim.log().entries().iter().any(|r| r.fault.as_deref() == Some("server_error(500)")),
        "the read hit the fault"
    );
    assert!(directory.plans(&server, &app, "draft").await.is_empty(), "no plan from a failed read");
    let plans_after = directory
        .get(&server, &format!("/api/provisioning-plans?filter[app_id]={app}&page[limit]=100"))
        .await;
    assert_eq!(plans_after["data"], plans_before["data"], "no plan of any kind");
    assert_eq!(directory.accounts(&server, &app).await, before, "the graph is untouched");
    sim.faults().clear();

    // The next read works and sees both.
    let (status, body) = directory.reconcile(&server, &app, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["meta"]["reconciliation"];
    assert_eq!((report["linked"].clone(), report["orphaned"].clone()), (json!(1), json!(1)), "{report}");
});

db_test!(without_patch_updates_are_get_then_put, config = hub_on, |server| {
    const EMAIL: &str = "ada.put@acme.test";
    let strict = Config::profile(Profile::StrictRfc);
    // With ETags (the strict default) and without.
    let (sim, running) = simulator(Config { patch: false, ..strict.clone() }).await;
    let (plain, plain_running) = simulator(Config { patch: false, etag: false, ..strict }).await;
    let directory = Directory::new(&server).await;
    let app = scim_app(&server, &directory, "SCIM with ETags", &running, json!({})).await;
    let plain_app = scim_app(&server, &directory, "SCIM without ETags", &plain_running, json!({})).await;
    let ada = directory.employee(&server, EMAIL, "Ada", None).await;
    let id = id_of_user(&eventually("ada's user", || async { only_user(&sim, EMAIL) }).await);
    let plain_id = id_of_user(&eventually("ada's plain user", || async { only_user(&plain, EMAIL) }).await);
    assert_eq!(directory.settled(&server, &app).await, 0);
    assert_eq!(directory.settled(&server, &plain_app).await, 0);
    // An attribute the hub does not manage, set in the app: a PUT built
    // from a fresh GET keeps it.
    sim.change(Kind::User, &id, &json!({"title": "Engineer"})).expect("change");

    directory.update_user(&server, &ada, json!({"first_name": "Augusta"})).await;
    let user = eventually("the new name", || async {
        sim.resource(Kind::User, &id).filter(|u| u["name"]["givenName"] == "Augusta")
    })
    .await;
    eventually("the new name without ETags", || async {
        plain.resource(Kind::User, &plain_id).filter(|u| u["name"]["givenName"] == "Augusta")
    })
    .await;
    assert_eq!(directory.settled(&server, &app).await, 0);
    assert_eq!(directory.settled(&server, &plain_app).await, 0);
    assert_eq!(user["title"], "Engineer", "kept by the PUT: {user}");
    assert_eq!(user["userName"], EMAIL, "{user}");
    assert_eq!(user["externalId"], ada.as_str(), "{user}");
    assert_eq!(user["emails"], json!([{"value": EMAIL, "type": "work", "primary": true}]), "{user}");
    assert_eq!(sim.resources(Kind::User).len(), 1);

    for (name, sim, id, etag) in [("etag", &sim, &id, true), ("plain", &plain, &plain_id, false)] {
        assert!(user_requests(sim, "PATCH").is_empty(), "{name}: PATCH is not advertised");
        let path = format!("{}/{id}", users_path());
        let puts: Vec<_> = user_requests(sim, "PUT").into_iter().filter(|r| r.path == path).collect();
        let put = puts.iter().find(|r| r.status == 200).unwrap_or_else(|| panic!("{name}: {puts:?}"));
        let body: Value = serde_json::from_str(&put.body).expect("a JSON PUT");
        assert_eq!(body["name"]["givenName"], "Augusta", "{name}: {body}");
        assert!(
            user_requests(sim, "GET").iter().any(|r| r.path == path && r.seq < put.seq && r.status == 200),
            "{name}: read before the PUT"
        );
        if etag {
            assert!(put.header("if-match").is_some_and(|v| !v.is_empty()), "{name}: {put:?}");
        } else {
            assert!(put.header("if-match").is_none(), "{name}: no ETags, no If-Match: {put:?}");
        }
    }

    // A lost race (412): read again, then PUT again.
    sim.faults().add(FaultRule {
        operation: "users.replace".into(),
        fault: Fault::InBand { code: "412".into(), message: Some("Precondition failed.".into()) },
        times: 1,
    });
    directory.update_user(&server, &ada, json!({"last_name": "Lovelace"})).await;
    eventually("the new family name", || async {
        sim.resource(Kind::User, &id).filter(|u| u["name"]["familyName"] == "Lovelace")
    })
    .await;
    assert_eq!(directory.settled(&server, &app).await, 0);
    let path = format!("{}/{id}", users_path());
    let entries = sim.log().entries();
    let refused = entries
        .iter()
        .find(|r| r.method == "PUT" && r.path == path && r.status == 412)
        .expect("the refused PUT");
    let reread = entries
        .iter()
        .find(|r| r.method == "GET" && r.path == path && r.seq > refused.seq)
        .expect("a read after the 412");
    let retried = entries
        .iter()
        .find(|r| r.method == "PUT" && r.path == path && r.seq > reread.seq && r.status == 200)
        .expect("the PUT again");
    assert!(retried.header("if-match").is_some(), "{retried:?}");
    assert_eq!(sim.resources(Kind::User).len(), 1);
});

db_test!(drift_is_found_and_fixed_in_every_dialect, config = hub_on, |server| {
    let directory = Directory::new(&server).await;
    let mut apps = Vec::new();
    for profile in Profile::ALL {
        let (sim, running) = simulator(Config::profile(profile)).await;
        let app = scim_app(&server, &directory, profile.name(), &running, json!({})).await;
        apps.push((profile, sim, running, app));
    }
    directory.employee(&server, "ada@acme.test", "Ada", None).await;
    for (profile, sim, _, app) in &apps {
        let ada =
            eventually(&format!("ada in {}", profile.name()), || async { only_user(sim, "ada@acme.test") })
                .await;
        assert_eq!(directory.settled(&server, app).await, 0, "{}", profile.name());
        // Renamed behind the hub's back, in an attribute the dialect keeps.
        let (change, path) = match profile {
            Profile::StripeDashboard => (json!({"displayName": "Someone Else"}), "/displayName"),
            _ => (json!({"name": {"givenName": "Someone", "familyName": "Tester"}}), "/name/givenName"),
        };
        sim.change(Kind::User, ada["id"].as_str().unwrap(), &change).unwrap();
        let (status, body) = directory.reconcile(&server, app, false).await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", profile.name());
        let report = &body["meta"]["reconciliation"];
        assert_eq!(report["drift"], 1, "{}: {report}", profile.name());
        directory.approve(&server, report["plan_id"].as_str().unwrap()).await;
        let want = if *profile == Profile::StripeDashboard { "Ada Tester" } else { "Ada" };
        eventually(&format!("the name restored in {}", profile.name()), || async {
            only_user(sim, "ada@acme.test").filter(|u| u.pointer(path) == Some(&json!(want)))
        })
        .await;
    }
});
