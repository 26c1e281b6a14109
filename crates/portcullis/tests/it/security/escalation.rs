//! No privilege escalation through grants (audit finding 1): grants have
//! their own scope family, nobody grants or widens a grant to a scope they
//! do not hold, nobody takes over a more privileged client's secret, and a
//! Management API token stops working when its client's grant is deleted or
//! narrowed. Also the lock-out guard (finding 8): the environment keeps a
//! client with full Management API access, and the console can mint one.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{assert_error, id_of, system_api};
use crate::db_test;
use crate::harness::TestServer;
use crate::oauth::support::{api_get, m2m_client, management_client};

const GRANTS: &str = "/api/client-resource-server-grants";

fn grant_doc(scopes: Value, client: &str, api: &str) -> Value {
    json!({"data": {"type": "client_resource_server_grant", "attributes": {"allowed_scopes": scopes},
        "relationships": {"client": {"data": {"type": "client", "id": client}},
                          "resource_server": {"data": {"type": "resource_server", "id": api}}}}})
}

fn patch_grant(id: &str, scopes: Value) -> Value {
    json!({"data": {"type": "client_resource_server_grant", "id": id, "attributes": {"allowed_scopes": scopes}}})
}

/// The id of `client_row`'s grant on `api`.
async fn grant_of(server: &TestServer, admin: &str, client_row: &str, api: &str) -> String {
    let path = format!("{GRANTS}?filter[client_id]={client_row}&filter[resource_server_id]={api}");
    let (status, body) = server.api(Method::GET, &path, admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"][0]["id"].as_str().unwrap_or_else(|| panic!("no grant: {body}")).to_owned()
}

/// The admin client's row id.
async fn admin_row(server: &TestServer, admin: &str) -> String {
    let path = format!("/api/clients?filter[client_id]={}", server.admin.client_id);
    let (status, body) = server.api(Method::GET, &path, admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"][0]["id"].as_str().unwrap_or_else(|| panic!("no admin client: {body}")).to_owned()
}

db_test!(clients_write_alone_cannot_touch_grants, |server| {
    let admin = server.admin_token().await;
    let system = system_api(&server, &admin).await;
    let (row, creds) =
        management_client(&server, &admin, "Client manager", &["clients:read", "clients:write"]).await;
    let token = server.management_token("acme-test", &creds, None).await;
    let own = grant_of(&server, &admin, &row, &system).await;

    // The audit's attack: widen its own grant to every scope.
    let (status, body) = server
        .api(Method::PATCH, &format!("{GRANTS}/{own}"), &token, Some(patch_grant(&own, json!(null))))
        .await;
    assert_error(status, &body, 403, "forbidden", None);
    // Or register a new client and grant it everything.
    let (new_row, _) = m2m_client(&server, &token, "Accomplice").await;
    let (status, body) =
        server.api(Method::POST, GRANTS, &token, Some(grant_doc(json!(null), &new_row, &system))).await;
    assert_error(status, &body, 403, "forbidden", None);
    let (status, _) = server.api(Method::GET, GRANTS, &token, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "grants are read with client_grants:read");

    // Nothing changed: its grant is as it was, the accomplice has none.
    let (_, body) = server.api(Method::GET, &format!("{GRANTS}/{own}"), &admin, None).await;
    assert_eq!(body["data"]["attributes"]["allowed_scopes"], json!(["clients:read", "clients:write"]));
    assert_eq!(
        server
            .count(&format!(
                "SELECT COUNT(*) FROM client_resource_server_grants WHERE client_id = '{new_row}'"
            ))
            .await,
        0
    );
});

db_test!(nobody_grants_a_scope_they_do_not_hold, |server| {
    let admin = server.admin_token().await;
    let system = system_api(&server, &admin).await;
    let held = ["clients:read", "clients:write", "client_grants:read", "client_grants:write"];
    let (row, creds) = management_client(&server, &admin, "Grant manager", &held).await;
    let token = server.management_token("acme-test", &creds, None).await;
    let own = grant_of(&server, &admin, &row, &system).await;
    let (other, _) = m2m_client(&server, &token, "Worker").await;

    // Widening its own grant, by one scope or to everything: refused.
    for scopes in [
        json!(["clients:read", "clients:write", "client_grants:read", "client_grants:write", "users:read"]),
        json!(null),
    ] {
        let (status, body) = server
            .api(Method::PATCH, &format!("{GRANTS}/{own}"), &token, Some(patch_grant(&own, scopes)))
            .await;
        let error = assert_error(status, &body, 403, "forbidden", None);
        assert!(error["detail"].as_str().unwrap().contains("users:read"), "names what is missing: {error}");
    }
    // Granting another client what it does not hold: refused; what it holds: fine.
    let (status, body) = server
        .api(Method::POST, GRANTS, &token, Some(grant_doc(json!(["users:read"]), &other, &system)))
        .await;
    assert_error(status, &body, 403, "forbidden", None);
    let (status, body) = server
        .api(Method::POST, GRANTS, &token, Some(grant_doc(json!(["clients:read"]), &other, &system)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let other_grant = id_of(&body);

    // A grant another actor widened may keep scopes this one lacks, as long
    // as this one adds none: narrowing is always allowed.
    let (status, body) = server
        .api(
            Method::PATCH,
            &format!("{GRANTS}/{other_grant}"),
            &admin,
            Some(patch_grant(&other_grant, json!(["clients:read", "users:read", "users:write"]))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the admin holds everything: {body}");
    let (status, body) = server
        .api(
            Method::PATCH,
            &format!("{GRANTS}/{other_grant}"),
            &token,
            Some(patch_grant(&other_grant, json!(["users:read", "clients:read"]))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "narrowing: {body}");
    assert_eq!(body["data"]["attributes"]["allowed_scopes"], json!(["users:read", "clients:read"]));
    let (status, body) = server
        .api(
            Method::PATCH,
            &format!("{GRANTS}/{other_grant}"),
            &token,
            Some(patch_grant(&other_grant, json!(["users:read", "users:write"]))),
        )
        .await;
    assert_error(status, &body, 403, "forbidden", None);

    // Grants of the environment's own APIs are not bounded by Management API scopes.
    let api =
        crate::oauth::support::custom_api(&server, &admin, "https://docs.example.com", 600, &["read:docs"])
            .await;
    let (status, body) =
        server.api(Method::POST, GRANTS, &token, Some(grant_doc(json!(null), &other, &api))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Holding a scope only in the token, not in the current grant, does not count.
    let (status, _) = server
        .api(
            Method::PATCH,
            &format!("{GRANTS}/{own}"),
            &admin,
            Some(patch_grant(&own, json!(["clients:read", "clients:write", "client_grants:write"]))),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server
        .api(Method::POST, GRANTS, &token, Some(grant_doc(json!(["client_grants:read"]), &other, &api)))
        .await;
    assert_eq!(status.as_u16(), 422, "client_grants:read is no scope of the docs API: {body}");
    let (third, _) = m2m_client(&server, &admin, "Third").await;
    let (status, body) = server
        .api(Method::POST, GRANTS, &token, Some(grant_doc(json!(["client_grants:read"]), &third, &system)))
        .await;
    assert_error(status, &body, 403, "forbidden", None);
});

db_test!(nobody_takes_over_a_more_privileged_client, |server| {
    let admin = server.admin_token().await;
    let (_, creds) =
        management_client(&server, &admin, "Client manager", &["clients:read", "clients:write"]).await;
    let token = server.management_token("acme-test", &creds, None).await;
    let admin_client = admin_row(&server, &admin).await;

    // Rotating the admin client's secret would hand this token its scopes.
    let path = format!("/api/clients/{admin_client}/rotate-secret");
    let (status, body) = server.api(Method::PATCH, &path, &token, None).await;
    assert_error(status, &body, 403, "forbidden", None);
    // The admin's secret still works.
    server.admin_token().await;

    // A client without a Management API grant is this token's to rotate.
    let (worker, _) = m2m_client(&server, &token, "Worker").await;
    let (status, body) =
        server.api(Method::PATCH, &format!("/api/clients/{worker}/rotate-secret"), &token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["meta"]["client_secret"].is_string(), "{body}");
});

db_test!(a_token_stops_working_when_its_grant_is_narrowed_or_deleted, |server| {
    let admin = server.admin_token().await;
    let system = system_api(&server, &admin).await;
    let (row, creds) = management_client(&server, &admin, "Reader", &["users:read", "roles:read"]).await;
    let token = server.management_token("acme-test", &creds, None).await;
    assert_eq!(api_get(&server, "acme-test", "/api/users", &token).await.status, StatusCode::OK);
    let grant = grant_of(&server, &admin, &row, &system).await;

    // Narrowed: the scope it lost is refused at once; the one it kept works.
    let (status, _) = server
        .api(
            Method::PATCH,
            &format!("{GRANTS}/{grant}"),
            &admin,
            Some(patch_grant(&grant, json!(["roles:read"]))),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let reply = api_get(&server, "acme-test", "/api/users", &token).await;
    reply.assert_bearer_failure(StatusCode::FORBIDDEN);
    assert!(reply.header("www-authenticate").unwrap().contains("insufficient_scope"));
    assert!(
        reply.body["errors"][0]["detail"].as_str().unwrap().contains("no longer allows"),
        "{}",
        reply.body
    );
    assert_eq!(api_get(&server, "acme-test", "/api/roles", &token).await.status, StatusCode::OK);

    // Deleted: the token is no longer valid at all.
    let (status, _) = server.api(Method::DELETE, &format!("{GRANTS}/{grant}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let reply = api_get(&server, "acme-test", "/api/roles", &token).await;
    reply.assert_bearer_failure(StatusCode::UNAUTHORIZED);
    assert!(reply.header("www-authenticate").unwrap().contains("invalid_token"));
});

db_test!(a_second_process_sees_a_narrowed_grant_at_once, |server| {
    if server.backend != crate::harness::Backend::Postgres {
        return; // Cross-process cache coherence is PostgreSQL's (LISTEN/NOTIFY).
    }
    let admin = server.admin_token().await;
    let system = system_api(&server, &admin).await;
    let (row, creds) = management_client(&server, &admin, "Reader", &["users:read", "roles:read"]).await;
    let token = server.management_token("acme-test", &creds, None).await;
    let peer = server.start_peer().await;
    let get = |path: &'static str| {
        peer.request(&server, Method::GET, "acme-test", path).bearer_auth(token.clone()).send()
    };
    assert_eq!(get("/api/users").await.unwrap().status(), StatusCode::OK);
    let grant = grant_of(&server, &admin, &row, &system).await;
    server
        .api(
            Method::PATCH,
            &format!("{GRANTS}/{grant}"),
            &admin,
            Some(patch_grant(&grant, json!(["roles:read"]))),
        )
        .await;
    crate::oauth::support::eventually("the peer refuses users:read", || async {
        (get("/api/users").await.unwrap().status() == StatusCode::FORBIDDEN).then_some(())
    })
    .await;
});

db_test!(the_last_admin_client_cannot_be_removed, |server| {
    let admin = server.admin_token().await;
    let system = system_api(&server, &admin).await;
    let admin_client = admin_row(&server, &admin).await;
    let admin_grant = grant_of(&server, &admin, &admin_client, &system).await;
    let conflict = |status: StatusCode, body: &Value| {
        let error = assert_error(status, body, 409, "conflict", None);
        assert!(error["detail"].as_str().unwrap().contains("admin-client"), "says how to recover: {error}");
    };

    // Deleting it, deleting or narrowing its grant, or taking away its grant type.
    let (status, body) =
        server.api(Method::DELETE, &format!("/api/clients/{admin_client}"), &admin, None).await;
    conflict(status, &body);
    let (status, body) = server.api(Method::DELETE, &format!("{GRANTS}/{admin_grant}"), &admin, None).await;
    conflict(status, &body);
    let (status, body) = server
        .api(
            Method::PATCH,
            &format!("{GRANTS}/{admin_grant}"),
            &admin,
            Some(patch_grant(&admin_grant, json!(["users:read"]))),
        )
        .await;
    conflict(status, &body);
    let patch = json!({"data": {"type": "client", "id": admin_client,
        "attributes": {"grant_types": ["authorization_code"], "redirect_uris": ["https://app.example.com/cb"]}}});
    let (status, body) =
        server.api(Method::PATCH, &format!("/api/clients/{admin_client}"), &admin, Some(patch)).await;
    conflict(status, &body);
    assert_eq!(
        api_get(&server, "acme-test", "/api/users", &admin).await.status,
        StatusCode::OK,
        "still an admin"
    );

    // With a second full admin, the first may go.
    let (second_row, second) = management_client(&server, &admin, "Second admin", &[]).await;
    let second_grant = grant_of(&server, &admin, &second_row, &system).await;
    let (status, _) = server
        .api(
            Method::PATCH,
            &format!("{GRANTS}/{second_grant}"),
            &admin,
            Some(patch_grant(&second_grant, json!(null))),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) =
        server.api(Method::DELETE, &format!("/api/clients/{admin_client}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let second_token = server.management_token("acme-test", &second, None).await;
    assert_eq!(api_get(&server, "acme-test", "/api/users", &second_token).await.status, StatusCode::OK);
});

db_test!(the_console_mints_an_admin_client_when_every_other_is_gone, |server| {
    use portcullis_core::services::environments;
    let env = server.core.environment("acme-test").await.unwrap().expect("environment");

    let console = portcullis_core::Ctx::operator(env.clone(), Some("ops@acme.test".into()));
    let minted = environments::mint_admin_client(&server.core, &console).await.expect("mint");
    assert_eq!(minted.management_api, server.management_api());
    let creds =
        crate::harness::Creds { client_id: minted.client_id.clone(), client_secret: minted.client_secret };
    let token = server.management_token("acme-test", &creds, None).await;
    for path in ["/api/users", "/api/clients", "/api/client-resource-server-grants", "/api/signing-keys"] {
        assert_eq!(api_get(&server, "acme-test", path, &token).await.status, StatusCode::OK, "{path}");
    }
    // Audited as the operator's act.
    let (_, events) = server
        .api(
            Method::GET,
            "/api/audit-events?filter[action]=client.registered&filter[actor_type]=operator",
            &token,
            None,
        )
        .await;
    assert_eq!(events["data"].as_array().map(Vec::len), Some(1), "{events}");
    let event = &events["data"][0]["attributes"];
    assert_eq!(event["actor"]["type"], "operator", "{events}");
    assert_eq!(event["actor"]["name"], "ops@acme.test", "{events}");
    // The secret is stored only as a hash.
    assert_eq!(
        server
            .count(&format!(
                "SELECT COUNT(*) FROM clients WHERE client_id = '{}' AND secret_hash <> ''",
                minted.client_id
            ))
            .await,
        1
    );
});
