//! The catalogue, end to end: every event type a webhook can subscribe to
//! reaches a webhook subscribed to `*`, and a webhook subscribed to one type
//! hears only that one. One server (both backends) is driven through the
//! Management API, the OAuth endpoints, the hosted pages, custom domains
//! against a DNS server on loopback and the lifecycle hub against a SCIM
//! simulator; each delivery's `type` is its outbox event's, deliveries are
//! signed, and the types that never arrived must be exactly the short
//! [`NOT_TRIGGERED`] list (debug builds already refuse to record a type
//! that is not in the catalogue, so this covers the other direction).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use portcullis_core::webhooks::catalogue::CATALOGUE;
use portcullis_sim::scim::{BASE_PATH, Config, DEFAULT_TOKEN, Kind, Profile, ScimSim};
use portcullis_sim::{Fault, FaultRule};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::delivery::{create_webhook, fast};
use super::receiver::{Received, Receiver, Reply, assert_verified};
use crate::common::{PASSWORD, create_api, create_permission, create_role, create_scope, create_user, id_of};
use crate::dns::TestDns;
use crate::harness::TestServer;
use crate::hub::support::{Directory, eventually, hub_on};
use crate::signin::support::{
    Browser, authorize_path, code_request, create_client, create_person, pkce, query_of, redeem,
    wait_for_mail,
};

/// Catalogue types no flow here can record, each with why. The test fails
/// if one of them is received, so the list stays honest.
const NOT_TRIGGERED: &[(&str, &str)] = &[
    // Recorded in the transaction that creates the environment.
    ("environment.created", "no webhook can exist in an environment before it is created"),
];

const NEW_PASSWORD: &str = "violet lantern harbour 42";

/// `{"data": {"type": kind, "attributes": ..., "relationships": ...}}` with
/// to-one linkage for each `(name, type, id)`.
fn link(kind: &str, attributes: Value, links: &[(&str, &str, &str)]) -> Value {
    let relationships: serde_json::Map<String, Value> = links
        .iter()
        .map(|(name, related, id)| ((*name).to_owned(), json!({"data": {"type": related, "id": id}})))
        .collect();
    json!({"data": {"type": kind, "attributes": attributes, "relationships": relationships}})
}

fn patch(kind: &str, id: &str, attributes: Value) -> Value {
    json!({"data": {"type": kind, "id": id, "attributes": attributes}})
}

/// A call that must answer `expected`; returns the body.
async fn call(
    server: &TestServer,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    expected: StatusCode,
) -> Value {
    let (status, reply) = server.api(method.clone(), path, token, body).await;
    assert_eq!(status, expected, "{method} {path}: {reply}");
    reply
}

/// A PATCH that must answer 200; returns the body.
async fn update(server: &TestServer, token: &str, path: &str, body: Value) -> Value {
    call(server, token, Method::PATCH, path, Some(body), StatusCode::OK).await
}

/// A DELETE that must answer 204.
async fn remove(server: &TestServer, token: &str, path: &str) {
    call(server, token, Method::DELETE, path, None, StatusCode::NO_CONTENT).await;
}

/// The event type of each outbox event, by id (a delivery's `webhook-id`).
async fn outbox_types(server: &TestServer) -> HashMap<String, String> {
    use sqlx::Row;
    sqlx::query("SELECT id, event_type FROM outbox_events")
        .fetch_all(server.core.db.pool())
        .await
        .expect("outbox rows")
        .iter()
        .map(|row| (row.try_get::<String, _>(0).unwrap(), row.try_get::<String, _>(1).unwrap()))
        .collect()
}

fn types_of(requests: &[Received]) -> BTreeSet<String> {
    requests.iter().map(Received::event_type).collect()
}

/// Webhooks may call loopback, the hub runs, DNS checks run only when
/// the test asks.
fn catalogue_config(config: &mut portcullis_core::CoreConfig) {
    fast(config);
    hub_on(config);
    config.dns.poll_interval = None;
}

/// Roles, permissions, users, APIs, scopes, clients and grants, through
/// the Management API: created, changed, linked, unlinked and deleted.
async fn directory_changes(server: &TestServer, token: &str) {
    let role = create_role(server, token, "Auditor").await;
    update(
        server,
        token,
        &format!("/api/roles/{role}"),
        patch("role", &role, json!({"description": "Reads"})),
    )
    .await;
    let permission = create_permission(server, token, "reports:read").await;
    update(
        server,
        token,
        &format!("/api/permissions/{permission}"),
        patch("permission", &permission, json!({"description": "Read reports"})),
    )
    .await;
    let body = link(
        "role_permission",
        json!({}),
        &[("role", "role", &role), ("permission", "permission", &permission)],
    );
    let role_permission = id_of(
        &call(server, token, Method::POST, "/api/role-permissions", Some(body), StatusCode::CREATED).await,
    );
    remove(server, token, &format!("/api/role-permissions/{role_permission}")).await;

    let user = create_user(server, token, json!({"email": "temp@example.com", "first_name": "Temp"})).await;
    update(
        server,
        token,
        &format!("/api/users/{user}"),
        patch("user", &user, json!({"last_name": "Worker"})),
    )
    .await;
    let body = link("user_role", json!({}), &[("user", "user", &user), ("role", "role", &role)]);
    let user_role =
        id_of(&call(server, token, Method::POST, "/api/user-roles", Some(body), StatusCode::CREATED).await);
    remove(server, token, &format!("/api/user-roles/{user_role}")).await;
    remove(server, token, &format!("/api/users/{user}")).await;

    let api = create_api(server, token, "https://reports.example.com").await;
    update(
        server,
        token,
        &format!("/api/resource-servers/{api}"),
        patch("resource_server", &api, json!({"name": "Reports API"})),
    )
    .await;
    let scope = create_scope(server, token, &api, "read:reports").await;
    update(
        server,
        token,
        &format!("/api/scopes/{scope}"),
        patch("scope", &scope, json!({"description": "Read reports"})),
    )
    .await;
    let attributes = json!({"name": "Worker", "grant_types": ["client_credentials"]});
    let client = id_of(&server.create(token, "/api/clients", "client", attributes, Value::Null).await);
    update(
        server,
        token,
        &format!("/api/clients/{client}"),
        patch("client", &client, json!({"name": "Batch worker"})),
    )
    .await;
    let body = link(
        "client_resource_server_grant",
        json!({"allowed_scopes": ["read:reports"]}),
        &[("client", "client", &client), ("resource_server", "resource_server", &api)],
    );
    let grant = id_of(
        &call(
            server,
            token,
            Method::POST,
            "/api/client-resource-server-grants",
            Some(body),
            StatusCode::CREATED,
        )
        .await,
    );
    update(
        server,
        token,
        &format!("/api/client-resource-server-grants/{grant}"),
        patch("client_resource_server_grant", &grant, json!({"allowed_scopes": null})),
    )
    .await;
    for path in [
        format!("/api/client-resource-server-grants/{grant}"),
        format!("/api/scopes/{scope}"),
        format!("/api/resource-servers/{api}"),
        format!("/api/clients/{client}"),
        format!("/api/permissions/{permission}"),
        format!("/api/roles/{role}"),
    ] {
        remove(server, token, &path).await;
    }
}

/// Signing keys: generated, made primary, deactivated, deleted.
async fn signing_keys(server: &TestServer, token: &str) {
    let keys = call(server, token, Method::GET, "/api/signing-keys", None, StatusCode::OK).await;
    let original = keys["data"][0]["id"].as_str().unwrap().to_owned();
    let body = json!({"data": {"type": "signing_key", "attributes": {"algorithm": "es256"}}});
    let key =
        id_of(&call(server, token, Method::POST, "/api/signing-keys", Some(body), StatusCode::CREATED).await);
    call(
        server,
        token,
        Method::PATCH,
        &format!("/api/signing-keys/{original}/set-primary"),
        None,
        StatusCode::OK,
    )
    .await;
    call(server, token, Method::PATCH, &format!("/api/signing-keys/{key}/deactivate"), None, StatusCode::OK)
        .await;
    remove(server, token, &format!("/api/signing-keys/{key}")).await;
}

/// The hosted pages and OAuth endpoints: sign-up, a failed and a good
/// sign-in, consent, the code and refresh grants, revocation, a second
/// sign-in, password change and reset; sessions through the API.
async fn end_users(server: &TestServer, token: &str) {
    let ada = create_person(server, token, "ada@example.com").await;
    let client = create_client(server, token, json!({})).await;

    // A wrong password.
    let page = Browser::new(server).log_in("/login", "ada@example.com", "wrong password").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);

    // Sign in and consent; the code and its refresh token; revocation.
    let mut browser = Browser::new(server);
    let (verifier, challenge) = pkce();
    let callback = browser
        .authorize(
            &authorize_path(&code_request(&client, "openid offline_access", &challenge)),
            "ada@example.com",
        )
        .await;
    let (status, tokens) = redeem(server, &client, &query_of(&callback)["code"], &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let refresh = tokens["refresh_token"].as_str().expect("refresh_token");
    let revoked = server
        .http
        .post(server.url("/oauth/revoke"))
        .basic_auth(&client.creds.client_id, Some(&client.creds.client_secret))
        .form(&[("token", refresh)])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), StatusCode::OK);

    // Signing in again in the same browser, then changing the password.
    let page = browser.log_in("/login", "ada@example.com", PASSWORD).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let fields =
        [("current_password", PASSWORD), ("password", NEW_PASSWORD), ("password_confirmation", NEW_PASSWORD)];
    let page = browser.fill("/password/change", "/password/change", &fields).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);

    // A forgotten password, reset by the mailed link.
    create_person(server, token, "grace@example.com").await;
    let page = Browser::new(server)
        .fill("/password/forgot", "/password/forgot", &[("email", "grace@example.com")])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let link = wait_for_mail(server, "grace@example.com", 1).await.link(server, "/password/reset/");
    let path = link.strip_prefix(&server.issuer("acme-test")).unwrap().to_owned();
    let fields = [("password", NEW_PASSWORD), ("password_confirmation", NEW_PASSWORD)];
    let page = Browser::new(server).fill(&path, &path, &fields).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);

    // A sign-up.
    let fields = [
        ("email", "zoe@example.com"),
        ("first_name", "Zoe"),
        ("last_name", "Quinn"),
        ("password", NEW_PASSWORD),
        ("password_confirmation", NEW_PASSWORD),
    ];
    let page = Browser::new(server).fill("/register", "/register", &fields).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);

    // Sessions through the Management API.
    let user = json!({"data": {"type": "user", "id": ada}});
    let body = json!({"data": {"type": "session", "relationships": {"user": user}}});
    let session =
        id_of(&call(server, token, Method::POST, "/api/sessions", Some(body), StatusCode::CREATED).await);
    for action in ["touch", "revoke"] {
        call(
            server,
            token,
            Method::PATCH,
            &format!("/api/sessions/{session}/{action}"),
            None,
            StatusCode::OK,
        )
        .await;
    }
    remove(server, token, &format!("/api/sessions/{session}")).await;
}

/// `POST /invitations/{id}/{answer}` with the mailed link's token.
async fn answer_invitation(server: &TestServer, id: &str, answer: &str, email: &str) {
    let link = wait_for_mail(server, email, 1).await.link(server, "/invitations/");
    let token = link.rsplit('/').next().unwrap().to_owned();
    let response = server
        .http
        .post(format!("{}/invitations/{id}/{answer}", server.issuer("acme-test")))
        .header("content-type", "application/vnd.api+json")
        .body(json!({"meta": {"token": token}}).to_string())
        .send()
        .await
        .expect("answer");
    let status = response.status();
    assert_eq!(status, StatusCode::OK, "{answer}: {}", response.text().await.unwrap_or_default());
}

/// Organizations, memberships and their roles, and invitations accepted,
/// declined, revoked and deleted.
async fn organizations(server: &TestServer, token: &str) {
    let body = json!({"name": "Acme"});
    let acme = id_of(&server.create(token, "/api/organizations", "organization", body, Value::Null).await);
    let role = create_role(server, token, "Editor").await;
    create_user(server, token, json!({"email": "ann@example.com"})).await;
    let invite = |email: &str, roles: Vec<&str>| {
        json!({"data": {
            "type": "invitation",
            "attributes": {"email": email, "role_ids": roles},
            "relationships": {"organization": {"data": {"type": "organization", "id": acme}}},
        }})
    };
    let accepted = id_of(
        &call(
            server,
            token,
            Method::POST,
            "/api/invitations",
            Some(invite("ann@example.com", vec![&role])),
            StatusCode::CREATED,
        )
        .await,
    );
    answer_invitation(server, &accepted, "accept", "ann@example.com").await;
    let declined = id_of(
        &call(
            server,
            token,
            Method::POST,
            "/api/invitations",
            Some(invite("bob@example.com", vec![])),
            StatusCode::CREATED,
        )
        .await,
    );
    answer_invitation(server, &declined, "decline", "bob@example.com").await;
    let revoked = id_of(
        &call(
            server,
            token,
            Method::POST,
            "/api/invitations",
            Some(invite("cid@example.com", vec![])),
            StatusCode::CREATED,
        )
        .await,
    );
    call(server, token, Method::PATCH, &format!("/api/invitations/{revoked}/revoke"), None, StatusCode::OK)
        .await;
    remove(server, token, &format!("/api/invitations/{revoked}")).await;

    // A membership made through the API, with a role.
    let dan = create_user(server, token, json!({"email": "dan@example.com"})).await;
    let body =
        link("membership", json!({}), &[("user", "user", &dan), ("organization", "organization", &acme)]);
    let membership =
        id_of(&call(server, token, Method::POST, "/api/memberships", Some(body), StatusCode::CREATED).await);
    update(
        server,
        token,
        &format!("/api/memberships/{membership}"),
        patch("membership", &membership, json!({"metadata": {"title": "CEO"}})),
    )
    .await;
    let body = link(
        "membership_role",
        json!({}),
        &[("membership", "membership", &membership), ("role", "role", &role)],
    );
    let granted = id_of(
        &call(server, token, Method::POST, "/api/membership-roles", Some(body), StatusCode::CREATED).await,
    );
    remove(server, token, &format!("/api/membership-roles/{granted}")).await;
    remove(server, token, &format!("/api/memberships/{membership}")).await;
    update(
        server,
        token,
        &format!("/api/organizations/{acme}"),
        patch("organization", &acme, json!({"name": "Acme Inc"})),
    )
    .await;
    remove(server, token, &format!("/api/organizations/{acme}")).await;
}

/// A custom domain: created, failed by a CNAME elsewhere, verified by the
/// right one, deleted.
async fn custom_domain(server: &TestServer, token: &str, dns: &TestDns) {
    let body = json!({"data": {"type": "custom_domain", "attributes": {"domain": "auth.acme.example"}}});
    let id = id_of(
        &call(server, token, Method::POST, "/api/custom-domains", Some(body), StatusCode::CREATED).await,
    );
    let verify = format!("/api/custom-domains/{id}/verify");
    dns.set_cname("auth.acme.example", "evil.example");
    let checked = call(server, token, Method::POST, &verify, None, StatusCode::OK).await;
    assert_eq!(checked["data"]["attributes"]["status"], "failed", "{checked}");
    dns.set_cname("auth.acme.example", "acme-test.localhost");
    let checked = call(server, token, Method::POST, &verify, None, StatusCode::OK).await;
    assert_eq!(checked["data"]["attributes"]["status"], "active", "{checked}");
    remove(server, token, &format!("/api/custom-domains/{id}")).await;
}

/// A webhook whose endpoint answers 410 is disabled by delivery, then
/// enabled again, its secret rotated, and deleted.
async fn webhook_lifecycle(server: &TestServer, token: &str, receiver: &Receiver) {
    receiver.always("/gone", Reply::Status(410));
    let (hook, _) = create_webhook(server, token, &receiver.url("/gone"), json!(["role.created"])).await;
    create_role(server, token, "Gone").await;
    let path = format!("/api/webhooks/{hook}");
    eventually("the 410 webhook disabled", || async {
        let shown = call(server, token, Method::GET, &path, None, StatusCode::OK).await;
        (shown["data"]["attributes"]["active"] == false).then_some(())
    })
    .await;
    update(server, token, &path, patch("webhook", &hook, json!({"active": true}))).await;
    call(server, token, Method::PATCH, &format!("{path}/rotate_secret"), None, StatusCode::OK).await;
    remove(server, token, &path).await;
}

async fn tasks_of(
    server: &TestServer,
    directory: &Directory,
    app: &str,
    action: &str,
    status: &str,
) -> String {
    eventually(&format!("a {status} {action} task"), || async {
        let body =
            directory.get(server, &format!("/api/manual-tasks?filter[app_id]={app}&page[limit]=100")).await;
        body["data"]
            .as_array()?
            .iter()
            .find(|t| t["attributes"]["action"] == action && t["attributes"]["status"] == status)
            .map(|t| t["id"].as_str().unwrap().to_owned())
    })
    .await
}

async fn complete_task(server: &TestServer, directory: &Directory, task: &str) {
    let path = format!("/api/manual-tasks/{task}/complete");
    call(server, &directory.token, Method::POST, &path, Some(json!({})), StatusCode::OK).await;
}

async fn reconcile(server: &TestServer, directory: &Directory, app: &str) -> Value {
    let (status, body) = directory.reconcile(server, app, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The lifecycle hub against SCIM simulators: a manual app's tasks opened,
/// changed, completed, verified and failing verification; an automatic
/// app's accounts provisioned, updated and deleted after an approval, a
/// plan rejected, a step failing for good; an app changed and deleted.
async fn hub(server: &TestServer, token: &str) {
    // By hand: the hub only reads the app (as in hub::tasks).
    let (manual_sim, manual_running) = ScimSim::start(Config::profile(Profile::StrictRfc), 0).await.unwrap();
    let staff = Directory::new(server).await;
    let manual = staff
        .create_app(
            server,
            json!({
                "name": "Wiki",
                "kind": "scim",
                "base_url": format!("{}{BASE_PATH}", manual_running.base_url()),
                "credentials": {"bearer_token": DEFAULT_TOKEN},
                "provisioning": "manual",
            }),
        )
        .await;
    let ada = staff.employee(server, "ada@acme.test", "Ada", None).await;
    let task = tasks_of(server, &staff, &manual, "create", "open").await;
    let body = patch("manual_task", &task, json!({"assignee": "front-desk"}));
    call(server, token, Method::PATCH, &format!("/api/manual-tasks/{task}"), Some(body), StatusCode::OK)
        .await;
    // Someone makes the account by hand, then says so.
    manual_sim
        .seed(
            Kind::User,
            &json!({"userName": "ada@acme.test", "name": {"givenName": "Ada", "familyName": "Tester"},
                    "displayName": "Ada Tester", "active": true}),
        )
        .unwrap();
    complete_task(server, &staff, &task).await;
    let body = reconcile(server, &staff, &manual).await;
    assert_eq!(body["meta"]["reconciliation"]["tasks_verified"], 1, "{body}");
    staff.update_user(server, &ada, json!({"blocked": true})).await;
    let task = tasks_of(server, &staff, &manual, "deactivate", "open").await;
    complete_task(server, &staff, &task).await;
    let body = reconcile(server, &staff, &manual).await;
    assert_eq!(body["meta"]["reconciliation"]["tasks_failed_verification"], 1, "{body}");

    // Automatic, deleting on departure only once a person approves.
    let (sim, running) = ScimSim::start(Config::profile(Profile::StrictRfc), 0).await.unwrap();
    let contractors =
        Directory { token: token.to_owned(), role: create_role(server, token, "Contractors").await };
    let app = contractors
        .create_app(
            server,
            json!({
                "name": "SCIM",
                "kind": "scim",
                "base_url": format!("{}{BASE_PATH}", running.base_url()),
                "credentials": {"bearer_token": DEFAULT_TOKEN},
                "deprovision_mode": "hard",
            }),
        )
        .await;
    let in_app = |email: &'static str, given: &'static str| {
        let sim = sim.clone();
        async move {
            eventually(&format!("{email} as {given}"), || async {
                sim.resources(Kind::User)
                    .into_iter()
                    .find(|u| u["userName"] == email && u["name"]["givenName"] == given)
                    .map(|_| ())
            })
            .await
        }
    };
    let bob = contractors.employee(server, "bob@acme.test", "Bob", None).await;
    let cy = contractors.employee(server, "cy@acme.test", "Cy", None).await;
    in_app("bob@acme.test", "Bob").await;
    in_app("cy@acme.test", "Cy").await;
    assert_eq!(contractors.settled(server, &app).await, 0);
    contractors.update_user(server, &bob, json!({"first_name": "Robert"})).await;
    in_app("bob@acme.test", "Robert").await;
    assert_eq!(contractors.settled(server, &app).await, 0);
    contractors.update_user(server, &bob, json!({"blocked": true})).await;
    let plan = contractors.draft(server, &app).await["data"][0]["id"].as_str().unwrap().to_owned();
    contractors.approve(server, &plan).await;
    eventually("bob deleted", || async {
        sim.resources(Kind::User).iter().all(|u| u["userName"] != "bob@acme.test").then_some(())
    })
    .await;
    assert_eq!(contractors.settled(server, &app).await, 0);
    contractors.update_user(server, &cy, json!({"blocked": true})).await;
    let plan = contractors.draft(server, &app).await["data"][0]["id"].as_str().unwrap().to_owned();
    call(
        server,
        token,
        Method::PATCH,
        &format!("/api/provisioning-plans/{plan}/reject"),
        None,
        StatusCode::OK,
    )
    .await;

    // The app refuses a create for good.
    sim.faults().add(FaultRule {
        operation: "users.create".into(),
        fault: Fault::ServerError { status: 400 },
        times: 1,
    });
    contractors.employee(server, "dee@acme.test", "Dee", None).await;
    eventually("the refused step fails", || async {
        let path = format!("/api/provisioning-steps?filter[app_id]={app}&filter[status]=failed");
        let steps = contractors.get(server, &path).await;
        steps["data"].as_array().filter(|s| !s.is_empty()).map(|_| ())
    })
    .await;

    // An app with nothing to provision, changed and removed.
    let body = json!({"name": "Scratch", "kind": "manual"});
    let scratch = id_of(&server.create(token, "/api/apps", "app", body, Value::Null).await);
    let path = format!("/api/apps/{scratch}");
    update(server, token, &path, patch("app", &scratch, json!({"name": "Scratch pad"}))).await;
    remove(server, token, &path).await;
    drop((manual_running, running));
}

crate::dns_test!(
    every_catalogue_type_reaches_a_subscribed_webhook_and_only_that,
    config = catalogue_config,
    |server, dns| {
        let started = Instant::now();
        let receiver = Receiver::start().await;
        let token = server.admin_token().await;
        let (_, all_secret) = create_webhook(&server, &token, &receiver.url("/all"), json!(["*"])).await;
        let (_, roles_secret) =
            create_webhook(&server, &token, &receiver.url("/roles"), json!(["role.created"])).await;
        // A token issued now is heard.
        let token = server.admin_token().await;

        directory_changes(&server, &token).await;
        signing_keys(&server, &token).await;
        end_users(&server, &token).await;
        organizations(&server, &token).await;
        custom_domain(&server, &token, &dns).await;
        webhook_lifecycle(&server, &token, &receiver).await;
        hub(&server, &token).await;
        let body = json!({"data": {"type": "environment", "attributes": {"name": "Acme (test)"}}});
        update(&server, &token, "/api/environment", body).await;

        // Everything expected arrives at the `*` webhook.
        let not_triggered: BTreeSet<&str> = NOT_TRIGGERED.iter().map(|(name, _)| *name).collect();
        let catalogue: BTreeSet<&str> = CATALOGUE.iter().map(|event| event.name).collect();
        let expected: BTreeSet<&str> = catalogue.difference(&not_triggered).copied().collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = types_of(&receiver.received_at("/all"));
            let missing: Vec<&&str> = expected.iter().filter(|t| !got.contains(**t)).collect();
            if missing.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "the `*` webhook never received: {missing:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let stragglers land, then check everything that arrived.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let all = receiver.received_at("/all");
        let outbox = outbox_types(&server).await;
        for request in &all {
            let event_type = request.event_type();
            let id = request.header("webhook-id");
            assert_eq!(
                outbox.get(id).map(String::as_str),
                Some(event_type.as_str()),
                "delivery {id}: {}",
                request.body
            );
            assert!(catalogue.contains(event_type.as_str()), "{event_type} is not in the catalogue");
        }
        assert_verified(&all_secret, &all).await;

        // The narrow webhook heard every role.created and nothing else.
        let created = outbox.values().filter(|t| *t == "role.created").count();
        let roles = receiver.wait_for("/roles", Duration::from_secs(10), |r| r.len() >= created).await;
        assert!(roles.iter().all(|r| r.event_type() == "role.created"), "{:?}", types_of(&roles));
        assert_eq!(roles.len(), created, "one delivery per role.created");
        assert_verified(&roles_secret, &roles).await;

        // Coverage: what never arrived is exactly the listed exceptions.
        let got = types_of(&all);
        let missing: BTreeSet<&str> = catalogue.iter().filter(|t| !got.contains(**t)).copied().collect();
        assert_eq!(missing, not_triggered, "catalogue types not received (left) vs NOT_TRIGGERED (right)");
        eprintln!(
            "{:?}: {} deliveries of {} types in {:?}",
            server.backend,
            all.len(),
            got.len(),
            started.elapsed()
        );
    }
);
