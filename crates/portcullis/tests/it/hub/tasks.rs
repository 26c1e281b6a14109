//! Manual tasks: apps provisioned by hand get tasks instead of calls; a
//! person completes them; a reconciliation verifies them where the app can
//! be read (here a SCIM app the hub may only read), and an app without an
//! API keeps its tasks as the record.

use portcullis_sim::scim::{Config, DEFAULT_TOKEN, Kind, Profile, ScimSim};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::{Directory, eventually, hub_on};
use crate::db_test;
use crate::harness::TestServer;

async fn tasks(server: &TestServer, directory: &Directory, app: &str) -> Vec<Value> {
    let body =
        directory.get(server, &format!("/api/manual-tasks?filter[app_id]={app}&page[limit]=100")).await;
    body["data"].as_array().cloned().unwrap_or_default()
}

async fn task_with(
    server: &TestServer,
    directory: &Directory,
    app: &str,
    action: &str,
    status: &str,
) -> Value {
    eventually(&format!("a {status} {action} task"), || async {
        tasks(server, directory, app)
            .await
            .into_iter()
            .find(|t| t["attributes"]["action"] == action && t["attributes"]["status"] == status)
    })
    .await
}

async fn complete(
    server: &TestServer,
    directory: &Directory,
    task: &str,
    body: Value,
) -> (StatusCode, Value) {
    server
        .api(Method::POST, &format!("/api/manual-tasks/{task}/complete"), &directory.token, Some(body))
        .await
}

db_test!(a_manual_offboarding_runs_from_block_to_verification, config = hub_on, |server| {
    let (sim, running) = ScimSim::start(Config::profile(Profile::StrictRfc), 0).await.unwrap();
    let directory = Directory::new(&server).await;
    let app = directory
        .create_app(
            &server,
            json!({
                "name": "Wiki",
                "kind": "scim",
                "base_url": format!("{}/scim/v2", running.base_url()),
                "credentials": {"bearer_token": DEFAULT_TOKEN},
                "provisioning": "manual",
                "settings": {"task_assignee": "it@acme.test", "task_due_days": 1},
            }),
        )
        .await;
    let ada = directory.employee(&server, "ada@acme.test", "Ada", None).await;

    // Joining: a task for a person, and nothing written to the app.
    let task = task_with(&server, &directory, &app, "create", "open").await;
    let attributes = &task["attributes"];
    assert_eq!(attributes["assignee"], "it@acme.test");
    assert!(attributes["title"].as_str().unwrap().contains("ada@acme.test"), "{task}");
    let instructions: Vec<&str> =
        attributes["instructions"].as_array().unwrap().iter().map(|i| i.as_str().unwrap()).collect();
    assert!(instructions.iter().any(|i| i.contains("Set name.givenName to \"Ada\"")), "{instructions:?}");
    assert_eq!(task["relationships"]["user"]["data"]["id"], ada.as_str());
    assert!(sim.log().entries().iter().all(|r| r.method == "GET"), "the hub only reads a manual app");
    // The person view says the account is missing and that a task is open.
    let view = directory.get(&server, &format!("/api/users/{ada}/app-accounts")).await;
    let reason = view["meta"]["missing"][0]["reason"].as_str().expect("missing in Wiki");
    assert!(reason.contains(task["id"].as_str().unwrap()) && reason.ends_with("is open"), "{reason}");
    // A change while the task is open plans nothing more: the waiting step
    // is the open step for Ada (three relay polls later, still one task).
    directory.update_user(&server, &ada, json!({"first_name": "Augusta"})).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(tasks(&server, &directory, &app).await.len(), 1, "one task for one open step");
    let plan = task["relationships"]["plan"]["data"]["id"].as_str().unwrap().to_owned();
    let step = task["relationships"]["step"]["data"]["id"].as_str().unwrap().to_owned();
    let shown = directory.get(&server, &format!("/api/provisioning-steps/{step}")).await;
    assert_eq!(shown["data"]["attributes"]["status"], "waiting");
    let shown = directory.get(&server, &format!("/api/provisioning-plans/{plan}")).await;
    assert_eq!(shown["data"]["attributes"]["status"], "applying", "a waiting step keeps its plan open");

    // Someone does it, then says so.
    let made = sim
        .seed(
            Kind::User,
            &json!({"userName": "ada@acme.test", "name": {"givenName": "Ada", "familyName": "Tester"},
                                 "displayName": "Ada Tester", "active": true}),
        )
        .unwrap();
    let task_id = task["id"].as_str().unwrap().to_owned();
    let (status, body) =
        complete(&server, &directory, &task_id, json!({"note": "made by hand, ticket IT-7"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["status"], "done");
    assert_eq!(body["data"]["attributes"]["note"], "made by hand, ticket IT-7");
    assert!(body["data"]["attributes"]["completed_by"].is_string());
    let shown = directory.get(&server, &format!("/api/provisioning-plans/{plan}")).await;
    assert_eq!(shown["data"]["attributes"]["status"], "applied");
    let (status, body) = complete(&server, &directory, &task_id, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "done once: {body}");

    // A reconciliation finds the account and confirms the task; the graph
    // row moves from the login to the app's own id.
    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["meta"]["reconciliation"]["tasks_verified"], 1, "{body}");
    let verified = directory.get(&server, &format!("/api/manual-tasks/{task_id}")).await;
    assert_eq!(verified["data"]["attributes"]["status"], "verified");
    let accounts = directory.accounts(&server, &app).await;
    assert_eq!(accounts.len(), 1, "one row, re-keyed: {accounts:?}");
    assert_eq!(accounts[0]["attributes"]["external_id"], made["id"]);
    assert_eq!(accounts[0]["attributes"]["status"], "active");

    // Leaving: blocked, so a deactivation task. Marked done without doing
    // it, a reconciliation catches that and reopens it for completion.
    directory.update_user(&server, &ada, json!({"blocked": true})).await;
    let task = task_with(&server, &directory, &app, "deactivate", "open").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    let (status, body) = complete(&server, &directory, &task_id, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["meta"]["reconciliation"]["tasks_failed_verification"], 1, "{body}");
    let failed = directory.get(&server, &format!("/api/manual-tasks/{task_id}")).await;
    assert_eq!(failed["data"]["attributes"]["status"], "verification_failed");
    assert!(
        failed["data"]["attributes"]["verification"]
            .as_str()
            .unwrap()
            .contains("still lists an active account")
    );

    // Done for real this time.
    sim.change(Kind::User, made["id"].as_str().unwrap(), &json!({"active": false})).unwrap();
    let (status, body) =
        complete(&server, &directory, &task_id, json!({"meta": {"note": "suspended in the console"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["meta"]["reconciliation"]["tasks_verified"], 1, "{body}");
    let verified = directory.get(&server, &format!("/api/manual-tasks/{task_id}")).await;
    assert_eq!(verified["data"]["attributes"]["status"], "verified");
    assert_eq!(verified["data"]["attributes"]["note"], "suspended in the console");
    let accounts = directory.accounts(&server, &app).await;
    assert_eq!(accounts[0]["attributes"]["status"], "deactivated");
    // The whole time, the hub never wrote to the app.
    assert!(sim.log().entries().iter().all(|r| r.method == "GET"));
});

db_test!(an_app_without_an_api_keeps_its_tasks_as_the_record, config = hub_on, |server| {
    let directory = Directory::new(&server).await;
    // No base URL, no credentials: the app is only a name and its tasks.
    let app = directory.create_app(&server, json!({"name": "Badge office", "kind": "manual"})).await;
    let shown = directory.get(&server, &format!("/api/apps/{app}")).await;
    assert_eq!(shown["data"]["attributes"]["provisioning"], "manual");
    directory.employee(&server, "grace@acme.test", "Grace", None).await;
    let task = task_with(&server, &directory, &app, "create", "open").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    assert!(task["attributes"]["assignee"].is_null(), "no task_assignee set");

    // Reassigned, and a bad due date refused.
    let patch =
        |attributes: Value| json!({"data": {"type": "manual_task", "id": task_id, "attributes": attributes}});
    let path = format!("/api/manual-tasks/{task_id}");
    let (status, body) = server
        .api(
            Method::PATCH,
            &path,
            &directory.token,
            Some(patch(json!({"assignee": "front-desk", "due_at": "2030-01-02T03:04:05Z"}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["assignee"], "front-desk");
    assert_eq!(body["data"]["attributes"]["due_at"], "2030-01-02T03:04:05Z");
    let (status, body) =
        server.api(Method::PATCH, &path, &directory.token, Some(patch(json!({"due_at": "next week"})))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["source"]["pointer"], "/data/attributes/due_at");

    // Nothing to read, said as such; completion with an id from the app.
    let (status, body) = directory.reconcile(&server, &app, false).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["code"], "not_readable");
    let (status, body) = complete(&server, &directory, &task_id, json!({"external_id": "badge-0042"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let accounts = directory.accounts(&server, &app).await;
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["attributes"]["external_id"], "badge-0042");
    assert_eq!(accounts[0]["attributes"]["status"], "active");

    // Bad input: unknown fields, unknown tasks, a manual app made automatic.
    let (status, body) = complete(&server, &directory, &task_id, json!({"notes": "typo"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = complete(&server, &directory, "tsk_nope", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let body = json!({"data": {"type": "app", "id": app, "attributes": {"provisioning": "automatic"}}});
    let (status, body) =
        server.api(Method::PATCH, &format!("/api/apps/{app}"), &directory.token, Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
});
