//! Group membership through the generic SCIM connector: holders of a role
//! are members of the app group `settings.group_roles` names for it, sent
//! in PATCHes of at most 100 member changes (AWS IAM Identity Center's
//! limit, which its simulator profile enforces); groups the hub does not
//! manage are never touched.

use portcullis_sim::scim::{Config, DEFAULT_TOKEN, Kind, Profile, ScimSim};
use portcullis_store::model::{User, UserRole};
use portcullis_store::types::JsonText;
use portcullis_store::{new_id, now_micros, record};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::{Directory, eventually, hub_on};
use crate::db_test;
use crate::harness::TestServer;

const ENGINEERS: usize = 110;

/// `n` users holding `roles`, written straight to the store (hashing 110
/// passwords through the API would only slow the test down).
async fn seed_holders(server: &TestServer, roles: &[&str], n: usize) -> Vec<String> {
    let env = server.core.environment("acme-test").await.unwrap().expect("environment");
    let now = now_micros();
    let users: Vec<User> = (0..n)
        .map(|i| User {
            id: new_id(),
            environment_id: env.id().to_owned(),
            email: format!("engineer{i}@acme.test"),
            email_verified: true,
            first_name: Some(format!("Engineer{i}")),
            last_name: Some("Tester".into()),
            password_hash: None,
            blocked: false,
            metadata: JsonText(json!({})),
            inserted_at: now,
            updated_at: now,
            failed_logins: 0,
            locked_until: None,
            manager_id: None,
        })
        .collect();
    let links: Vec<UserRole> = users
        .iter()
        .flat_map(|u| {
            roles.iter().map(|role| UserRole {
                id: new_id(),
                environment_id: env.id().to_owned(),
                user_id: u.id.clone(),
                role_id: (*role).to_owned(),
                inserted_at: now,
                updated_at: now,
            })
        })
        .collect();
    let mut tx = server.core.db.write_state().await.unwrap();
    record::insert_many(tx.conn(), &users).await.unwrap();
    record::insert_many(tx.conn(), &links).await.unwrap();
    tx.commit().await.unwrap();
    users.into_iter().map(|u| u.id).collect()
}

fn group(sim: &ScimSim, name: &str) -> Option<Value> {
    sim.resources(Kind::Group).into_iter().find(|g| g["displayName"] == name)
}

fn member_ids(group: &Value) -> Vec<String> {
    group["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["value"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

db_test!(role_holders_join_the_group_in_chunks_the_server_takes, config = hub_on, |server| {
    let config = Config { rate_limit: None, ..Config::profile(Profile::AwsIdentityCenter) };
    let (sim, running) = ScimSim::start(config, 0).await.unwrap();
    // The app's own group, which the hub must leave alone.
    let theirs = sim
        .seed(
            Kind::Group,
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Auditors"}),
        )
        .unwrap();
    let directory = Directory::new(&server).await;
    // Access comes with the directory's role; the group with this one.
    let engineers = crate::common::create_role(&server, &directory.token, "Engineers").await;
    seed_holders(&server, &[&directory.role, &engineers], ENGINEERS).await;
    let app = directory
        .create_app(
            &server,
            json!({"name": "AWS", "kind": "scim", "base_url": format!("{}/scim/v2", running.base_url()),
                   "credentials": {"bearer_token": DEFAULT_TOKEN},
                   "settings": {"group_roles": {engineers.clone(): "Engineering"}, "requests_per_second": 100}}),
        )
        .await;
    let engineering = eventually("every engineer in the group", || async {
        group(&sim, "Engineering").filter(|g| member_ids(g).len() == ENGINEERS)
    })
    .await;
    assert_eq!(directory.settled(&server, &app).await, 0);
    // AWS takes at most 100 member changes per PATCH, so more than one went.
    let patches: Vec<Value> = sim
        .log()
        .entries()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/Groups/"))
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    assert!(patches.len() >= 2, "{} PATCHes", patches.len());
    for patch in &patches {
        let changes: usize = patch["Operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|op| op["value"].as_array().map_or(1, Vec::len))
            .sum();
        assert!(changes <= 100, "{changes} changes in one PATCH");
    }
    // The members are the SCIM users the hub made, and nothing else moved.
    let users = sim.resources(Kind::User);
    assert_eq!(users.len(), ENGINEERS);
    let ids: std::collections::HashSet<String> =
        users.iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect();
    assert!(member_ids(&engineering).iter().all(|m| ids.contains(m)));
    assert!(member_ids(&group(&sim, "Auditors").unwrap()).is_empty());
    assert_eq!(group(&sim, "Auditors").unwrap()["id"], theirs["id"]);

    // Losing the group's role leaves the group; access, and the account,
    // stay with the other role.
    let ada = directory.employee(&server, "ada@acme.test", "Ada", None).await;
    let body = json!({"data": {"type": "user_role", "relationships": {
        "user": {"data": {"type": "user", "id": ada}}, "role": {"data": {"type": "role", "id": engineers}}}}});
    let (status, created) = server.api(Method::POST, "/api/user-roles", &directory.token, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let link = created["data"]["id"].as_str().unwrap().to_owned();
    let ada_scim = eventually("ada in the group", || async {
        let user = sim.resources(Kind::User).into_iter().find(|u| u["userName"] == "ada@acme.test")?;
        member_ids(&group(&sim, "Engineering")?).contains(&user["id"].as_str()?.to_owned()).then_some(user)
    })
    .await;
    let (status, body) =
        server.api(Method::DELETE, &format!("/api/user-roles/{link}"), &directory.token, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let ada_id = ada_scim["id"].as_str().unwrap().to_owned();
    eventually("ada out of the group", || async {
        (!member_ids(&group(&sim, "Engineering")?).contains(&ada_id)).then_some(())
    })
    .await;
    let still = sim.resources(Kind::User).into_iter().find(|u| u["id"] == ada_scim["id"]).unwrap();
    assert_eq!(still["active"], true, "access stays with the other role");
    assert_eq!(member_ids(&group(&sim, "Engineering").unwrap()).len(), ENGINEERS);

    // A reconciliation sees the membership as the hub left it.
    let (status, body) = directory.reconcile(&server, &app, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["meta"]["reconciliation"];
    assert_eq!(report["drift"], 0, "{report}");
    assert_eq!(report["linked"].as_u64(), Some(ENGINEERS as u64 + 1), "{report}");
});
