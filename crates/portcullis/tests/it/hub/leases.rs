//! Workers and their leases, driven by hand (the hub's own loops are off):
//! a worker killed mid-call, and a worker that outlived its lease. Time is
//! not waited out: the test expires a lease in the database, as a clock
//! moving on would.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::CoreConfig;
use portcullis_provision::connector::http::{client, shared_throttle};
use portcullis_provision::{Worker, relay};
use portcullis_sim::{Fault, FaultRule};
use serde_json::Value;

use super::stripe::{customers_of, setup};
use super::support::{Directory, eventually};
use crate::db_test;
use crate::harness::TestServer;

/// A lease far longer than any test step: only [`expire_leases`] ends one.
fn long_leases(config: &mut CoreConfig) {
    config.hub.lease = Duration::from_secs(600);
}

/// Plans the directory's changes, as the hub's relay loop would.
async fn relay_all(server: &TestServer) {
    while relay::run_once(&server.core).await.expect("relay") {}
}

/// What the lease clock would do after the lease ran out.
async fn expire_leases(server: &TestServer) {
    sqlx::query("UPDATE provisioning_steps SET lease_expires_at = 0 WHERE status = 'running'")
        .execute(server.core.db.pool())
        .await
        .expect("expire leases");
}

/// The app's only step.
async fn only_step(server: &TestServer, directory: &Directory, app: &str) -> Value {
    let steps = directory.get(server, &format!("/api/provisioning-steps?filter[app_id]={app}")).await;
    let steps = steps["data"].as_array().expect("steps").clone();
    assert_eq!(steps.len(), 1, "{steps:?}");
    steps[0]["attributes"].clone()
}

/// Runs `worker` until the app's only step has finished.
async fn finish(server: &TestServer, directory: &Directory, app: &str, worker: &Arc<Worker>) -> Value {
    eventually("the step to finish", || async {
        worker.run_once().await.expect("worker pass");
        let step = only_step(server, directory, app).await;
        (step["status"] != "running" && step["status"] != "pending").then_some(step)
    })
    .await
}

db_test!(a_killed_worker_s_step_is_finished_once_by_another, config = long_leases, |server| {
    let (sim, _running, directory, app) = setup(&server, "soft").await;
    // Stripe commits the create, then the answer is withheld: the worker is
    // killed while it waits.
    sim.faults().add(FaultRule {
        operation: "customers.create".into(),
        fault: Fault::TimeoutAfterCommit { secs: 1 },
        times: 1,
    });
    let ada = directory.employee(&server, "ada@acme.test", "Ada", None).await;
    relay_all(&server).await;
    let first = Worker::new(server.core.clone(), shared_throttle());
    let killed = tokio::spawn(async move { first.run_once().await });
    let customer = eventually("the committed customer", || async { customers_of(&sim, &ada).pop() }).await;
    killed.abort();
    assert!(killed.await.unwrap_err().is_cancelled());

    let step = only_step(&server, &directory, &app).await;
    assert_eq!(step["status"], "running", "{step}");
    assert_eq!(step["attempts"], 1);
    // While the dead worker's lease lasts, no one takes the step.
    let second = Worker::new(server.core.clone(), shared_throttle());
    assert_eq!(second.run_once().await.expect("worker pass"), 0);
    assert_eq!(only_step(&server, &directory, &app).await["status"], "running");

    expire_leases(&server).await;
    let step = finish(&server, &directory, &app, &second).await;
    assert_eq!(step["status"], "succeeded", "{step}");
    assert!(step["attempts"].as_i64().unwrap() >= 2, "{step}");
    // One customer: the takeover looked before it created, found the
    // committed customer by its link, and adopted it.
    assert_eq!(customers_of(&sim, &ada).len(), 1);
    assert_eq!(sim.customers().len(), 1);
    let entries = sim.log().entries();
    let creates = entries.iter().filter(|r| r.method == "POST" && r.path == "/v1/customers").count();
    assert_eq!(creates, 1, "{entries:?}");
    let adopted = entries
        .iter()
        .filter(|r| r.method == "POST" && r.path == format!("/v1/customers/{}", customer.id))
        .count();
    assert_eq!(adopted, 1, "{entries:?}");
    // The graph links the one customer to Ada.
    let accounts = directory.accounts(&server, &app).await;
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["attributes"]["external_id"], customer.id.as_str());
    assert_eq!(accounts[0]["relationships"]["user"]["data"]["id"], ada.as_str());
    assert_eq!(directory.settled(&server, &app).await, 0);
});

db_test!(a_worker_that_lost_its_lease_records_nothing, config = long_leases, |server| {
    let (sim, _running, directory, app) = setup(&server, "soft").await;
    // The first worker's pre-create lookup hangs past its client's timeout.
    sim.faults().add(FaultRule {
        operation: "customers.list".into(),
        fault: Fault::TimeoutAfterCommit { secs: 30 },
        times: 1,
    });
    let ada = directory.employee(&server, "ada@acme.test", "Ada", None).await;
    relay_all(&server).await;
    let slow = Arc::new(Worker {
        core: server.core.clone(),
        client: client(Duration::from_secs(4), true),
        throttle: shared_throttle(),
        owner: "slow-worker".into(),
    });
    let slow_pass = tokio::spawn({
        let slow = slow.clone();
        async move { slow.run_once().await }
    });
    eventually("the slow worker's lookup", || async {
        sim.log().entries().iter().any(|r| r.method == "GET").then_some(())
    })
    .await;

    // Its lease runs out; another worker takes the step and finishes it.
    expire_leases(&server).await;
    let fast = Worker::new(server.core.clone(), shared_throttle());
    let done = finish(&server, &directory, &app, &fast).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // The slow worker's call then fails: it must not put the finished step
    // back to pending (where, in an applied plan, no one would run it).
    assert_eq!(slow_pass.await.expect("slow pass").expect("slow pass result"), 1);
    let after = only_step(&server, &directory, &app).await;
    assert_eq!(after, done);
    let plans = directory.plans(&server, &app, "applied").await;
    assert_eq!(plans.len(), 1);
    assert_eq!(customers_of(&sim, &ada).len(), 1);
    let failures: i64 =
        server.count("SELECT COUNT(*) FROM audit_events WHERE action = 'provisioning_step.failed'").await;
    assert_eq!(failures, 0);
});

/// The killed-worker scenario for any connector: the create is committed
/// and its answer withheld (the fault is set up by the caller), the worker
/// is killed while it waits, and another takes the step over once the lease
/// runs out. `accounts` counts the app's accounts for Ada; there must be
/// exactly one at the end, linked in the graph, with no step lost.
async fn killed_mid_create<F: Fn() -> usize>(
    server: &TestServer,
    directory: &Directory,
    app: &str,
    accounts: F,
) {
    let ada = directory.employee(server, "ada@acme.test", "Ada", None).await;
    relay_all(server).await;
    let first = Worker::new(server.core.clone(), shared_throttle());
    let killed = tokio::spawn(async move { first.run_once().await });
    eventually("the committed account", || async { (accounts() == 1).then_some(()) }).await;
    killed.abort();
    assert!(killed.await.unwrap_err().is_cancelled());
    assert_eq!(only_step(server, directory, app).await["status"], "running");
    let second = Worker::new(server.core.clone(), shared_throttle());
    assert_eq!(second.run_once().await.expect("worker pass"), 0, "the dead worker's lease still holds");

    expire_leases(server).await;
    let step = finish(server, directory, app, &second).await;
    assert_eq!(step["status"], "succeeded", "{step}");
    assert!(step["attempts"].as_i64().unwrap() >= 2, "{step}");
    assert_eq!(accounts(), 1, "the takeover found the committed account and adopted it");
    let rows = directory.accounts(server, app).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["relationships"]["user"]["data"]["id"], ada.as_str());
    assert_eq!(rows[0]["attributes"]["status"], "active");
}

fn withheld(operation: &str) -> FaultRule {
    FaultRule { operation: operation.into(), fault: Fault::TimeoutAfterCommit { secs: 1 }, times: 1 }
}

/// A SCIM app of `kind` on a simulator in `profile`, with its create withheld.
async fn scim_killed_mid_create(server: &TestServer, profile: portcullis_sim::scim::Profile, kind: &str) {
    use portcullis_sim::scim::{Config, Kind, ScimSim};
    let (sim, running) = ScimSim::start(Config::profile(profile), 0).await.unwrap();
    let directory = Directory::new(server).await;
    let app =
        crate::hub::scim::scim_app(server, &directory, kind, &running, serde_json::json!({"kind": kind}))
            .await;
    sim.faults().add(withheld("users.create"));
    let count = || sim.resources(Kind::User).iter().filter(|u| u["userName"] == "ada@acme.test").count();
    killed_mid_create(server, &directory, &app, count).await;
}

db_test!(a_killed_worker_leaves_one_scim_user, config = long_leases, |server| {
    scim_killed_mid_create(&server, portcullis_sim::scim::Profile::StrictRfc, "scim").await;
});

db_test!(a_killed_worker_leaves_one_stripe_team_member, config = long_leases, |server| {
    scim_killed_mid_create(&server, portcullis_sim::scim::Profile::StripeDashboard, "stripe_dashboard").await;
});

db_test!(a_killed_worker_leaves_one_traveller, config = long_leases, |server| {
    let (sim, _running, directory, app) = crate::hub::travelperk::setup(&server).await;
    sim.faults().add(withheld("users.create"));
    let count = || sim.users().iter().filter(|u| u["userName"] == "ada@acme.test").count();
    killed_mid_create(&server, &directory, &app, count).await;
});

db_test!(a_killed_worker_leaves_one_payhawk_user, config = long_leases, |server| {
    use portcullis_sim::payhawk::UserStatus;
    let crate::hub::payhawk::Setup { sim, _running, directory, app, account } =
        crate::hub::payhawk::setup(&server).await;
    sim.faults().add(withheld("users.invite"));
    let count = || {
        sim.users(&account)
            .iter()
            .filter(|u| u.email == "ada@acme.test" && u.status != UserStatus::Removed)
            .count()
    };
    killed_mid_create(&server, &directory, &app, count).await;
});
