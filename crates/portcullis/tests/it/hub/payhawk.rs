//! The hub against the Payhawk simulator over real HTTP: invites with the
//! configured role and the user link, names that the API cannot change
//! refused with what to do, removal only after approval with the card side
//! effects, the latest expense as a last-seen signal, and faults that must
//! never invite twice.

use portcullis_sim::payhawk::{
    AccountSeed, CardStatus, Config, NewCard, NewExpense, PayhawkSim, User, UserStatus,
};
use portcullis_sim::{Fault, FaultRule};
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::support::{Directory, eventually, hub_on};
use crate::db_test;
use crate::harness::TestServer;

pub(super) struct Setup {
    pub(super) sim: std::sync::Arc<PayhawkSim>,
    pub(super) _running: portcullis_sim::Running,
    pub(super) directory: Directory,
    pub(super) app: String,
    pub(super) account: String,
}

pub(super) async fn setup(server: &TestServer) -> Setup {
    // An account and key of the test's own: Payhawk limits per account.
    let account = format!("acme_{}", portcullis_crypto::secret::random_base62(8).to_lowercase());
    let key = format!("ph_{}", portcullis_crypto::secret::random_base62(16));
    let config = Config {
        accounts: vec![AccountSeed { id: account.clone(), api_keys: vec![key.clone()] }],
        ..Config::default()
    };
    let (sim, running) = PayhawkSim::start(config, 0).await.unwrap();
    let directory = Directory::new(server).await;
    let app = directory
        .create_app(
            server,
            json!({"name": "Payhawk", "kind": "payhawk", "base_url": running.base_url(),
                   "credentials": {"api_key": key}, "settings": {"account_id": account}}),
        )
        .await;
    Setup { sim, _running: running, directory, app, account }
}

fn member(sim: &PayhawkSim, account: &str, email: &str) -> Option<User> {
    sim.users(account)
        .into_iter()
        .find(|u| u.email.eq_ignore_ascii_case(email) && u.status != UserStatus::Removed)
}

db_test!(employees_are_invited_and_removed_with_their_cards, config = hub_on, |server| {
    // `_running` must live as long as the test: dropping it stops the server.
    let Setup { sim, _running, directory, app, account } = setup(&server).await;
    let shown = directory.get(&server, &format!("/api/apps/{app}")).await;
    assert_eq!(shown["data"]["attributes"]["deprovision_mode"], "hard", "removal is all Payhawk has");
    let body = json!({"data": {"type": "app", "id": app, "attributes": {"deprovision_mode": "soft"}}});
    let (status, body) =
        server.api(Method::PATCH, &format!("/api/apps/{app}"), &directory.token, Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let ada = directory.employee(&server, "ada@acme.test", "Ada", None).await;
    let invited = eventually("ada invited", || async {
        member(&sim, &account, "ada@acme.test").filter(|u| u.external_id.as_deref() == Some(ada.as_str()))
    })
    .await;
    assert_eq!((invited.first_name.as_str(), invited.last_name.as_str()), ("Ada", "Tester"));
    assert_eq!(invited.role, "employee");
    assert_eq!(directory.settled(&server, &app).await, 0);
    for request in sim.log().entries().iter().filter(|r| r.path.starts_with("/api/v3")) {
        assert!(request.header("x-payhawk-apikey").is_some(), "{request:?}");
        assert!(request.path.starts_with(&format!("/api/v3/accounts/{account}/")), "{}", request.path);
    }

    // Cards and an expense; a complete read records the expense.
    let company = sim
        .seed_card(
            &account,
            NewCard { user_id: invited.id.clone(), reassignable: true, ..NewCard::default() },
        )
        .unwrap();
    let personal =
        sim.seed_card(&account, NewCard { user_id: invited.id.clone(), ..NewCard::default() }).unwrap();
    let expense = sim
        .seed_expense(
            &account,
            NewExpense { user_id: invited.id.clone(), amount: 42.0, ..NewExpense::default() },
        )
        .unwrap();
    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["meta"]["reconciliation"];
    assert_eq!((report["linked"].as_u64(), report["drift"].as_u64()), (Some(1), Some(0)), "{report}");
    let accounts = directory.accounts(&server, &app).await;
    let seen = accounts[0]["attributes"]["attributes"]["last_expense_at"].as_str().expect("last expense");
    assert_eq!(
        seen,
        portcullis_sim::payhawk::iso(expense.created_at),
        "the latest expense is the last sighting"
    );

    // A rename the API cannot make fails with what to do, not a loop.
    directory.update_user(&server, &ada, json!({"first_name": "Augusta"})).await;
    let failed = eventually("the rename refused", || async {
        let failed = directory.plans(&server, &app, "failed").await;
        (!failed.is_empty()).then_some(failed)
    })
    .await;
    assert_eq!(failed.len(), 1);
    let steps = directory
        .get(&server, &format!("/api/provisioning-steps?filter[app_id]={app}&filter[status]=failed"))
        .await;
    let error = steps["data"][0]["attributes"]["last_error"].as_str().unwrap();
    assert!(error.contains("cannot rename") && error.contains("firstName"), "{error}");

    // Leaving: removal waits for approval, then takes the cards with it.
    directory.update_user(&server, &ada, json!({"blocked": true})).await;
    let draft = directory.draft(&server, &app).await;
    let plan = draft["data"][0]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(member(&sim, &account, "ada@acme.test").is_some(), "nothing removed before approval");
    directory.approve(&server, &plan).await;
    eventually("ada removed", || async { member(&sim, &account, "ada@acme.test").is_none().then_some(()) })
        .await;
    let cards = sim.cards(&account);
    let status_of = |id: &str| cards.iter().find(|c| c.id == id).map(|c| c.status);
    assert_eq!(status_of(&company.id), Some(CardStatus::Blocked), "reassignable cards are blocked");
    assert_eq!(status_of(&personal.id), Some(CardStatus::Closed), "the rest are closed");
    let removal = sim.log().entries().into_iter().find(|r| r.method == "DELETE").expect("a removal");
    assert!(
        removal.query.as_deref().unwrap_or_default().contains("cardAction=block_reassignable_close_rest")
    );
});

db_test!(faults_never_invite_twice, config = hub_on, |server| {
    // `_running` must live as long as the test: dropping it stops the server.
    let Setup { sim, _running, directory, app, account } = setup(&server).await;
    let faults = [
        Fault::RateLimited { retry_after: Some(1) },
        Fault::RateLimited { retry_after: None },
        Fault::ServerError { status: 503 },
        Fault::TimeoutAfterCommit { secs: 4 },
    ];
    for (i, fault) in faults.iter().enumerate() {
        sim.faults().add(FaultRule { operation: "users.invite".into(), fault: fault.clone(), times: 1 });
        let email = format!("payer{i}@acme.test");
        let user = directory.employee(&server, &email, "Payer", None).await;
        eventually(&format!("{email} after {}", fault.label()), || async {
            member(&sim, &account, &email).filter(|u| u.external_id.as_deref() == Some(user.as_str()))
        })
        .await;
        assert_eq!(directory.settled(&server, &app).await, 0, "after {}", fault.label());
        let named = sim.users(&account).into_iter().filter(|u| u.email == email).count();
        assert_eq!(named, 1, "exactly one user after {}", fault.label());
        assert!(
            sim.log().entries().iter().any(|r| r.fault.as_deref() == Some(fault.label().as_str())),
            "{} was injected",
            fault.label()
        );
    }
});

db_test!(a_raised_role_and_a_stranger_are_found_and_fixed, config = hub_on, |server| {
    use portcullis_sim::payhawk::{NewUser, UserChange};
    // `_running` must live as long as the test: dropping it stops the server.
    let Setup { sim, _running, directory, app, account } = setup(&server).await;
    directory.employee(&server, "ada@acme.test", "Ada", None).await;
    let ada = eventually("ada invited", || async { member(&sim, &account, "ada@acme.test") }).await;
    assert_eq!(directory.settled(&server, &app).await, 0);

    // Behind the hub's back: Ada made an admin, a stranger added.
    sim.update_user(&account, &ada.id, UserChange { role: Some("admin".into()), ..UserChange::default() });
    sim.seed_user(
        &account,
        NewUser {
            email: "stranger@else.test".into(),
            first_name: "Some".into(),
            last_name: "One".into(),
            role: "employee".into(),
            ..NewUser::default()
        },
    )
    .unwrap();
    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["meta"]["reconciliation"];
    assert_eq!((report["drift"].as_u64(), report["orphaned"].as_u64()), (Some(1), Some(1)), "{report}");
    let plan = report["plan_id"].as_str().expect("a plan").to_owned();
    assert_eq!(sim.user(&account, &ada.id).unwrap().role, "admin", "nothing changes before approval");
    directory.approve(&server, &plan).await;
    eventually("ada's role restored", || async {
        sim.user(&account, &ada.id).filter(|u| u.role == "employee")
    })
    .await;
    eventually("the stranger removed", || async {
        member(&sim, &account, "stranger@else.test").is_none().then_some(())
    })
    .await;
    assert_eq!(directory.settled(&server, &app).await, 0);
});
