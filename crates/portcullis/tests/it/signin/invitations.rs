//! Invitations: the Management API resource (one pending per address and
//! organization, revoke, expiry, cascades), the mail with its single-use
//! link, the hosted page (sign up or in, then accept or decline), and the
//! documented `POST /invitations/:id/accept|decline` endpoint, which never
//! accepts on an id alone.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::*;
use crate::common::{
    PASSWORD, assert_conflict, assert_error, assert_invalid, create_role, create_user, id_of,
};
use crate::db_test;
use crate::harness::TestServer;

const PATH: &str = "/api/invitations";
const NEW_PASSWORD: &str = "violet lantern harbour 42";

async fn create_organization(server: &TestServer, token: &str, name: &str) -> String {
    id_of(
        &server.create(token, "/api/organizations", "organization", json!({"name": name}), Value::Null).await,
    )
}

fn invitation(email: &str, role_ids: &[&str], organization: &str) -> Value {
    json!({"data": {
        "type": "invitation",
        "attributes": {"email": email, "role_ids": role_ids},
        "relationships": {"organization": {"data": {"type": "organization", "id": organization}}},
    }})
}

async fn invite(server: &TestServer, token: &str, email: &str, roles: &[&str], organization: &str) -> Value {
    let (status, body) =
        server.api(Method::POST, PATH, token, Some(invitation(email, roles, organization))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// The token of the `count`th invitation link mailed to `email`.
async fn link_token(server: &TestServer, email: &str, count: usize) -> String {
    let link = wait_for_mail(server, email, count).await.link(server, "/invitations/");
    link.rsplit('/').next().unwrap().to_owned()
}

/// `POST /invitations/{id}/{answer}` (the documented public endpoint).
async fn answer(
    server: &TestServer,
    id: &str,
    answer: &str,
    token: Option<&str>,
    bearer: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = server
        .http
        .post(format!("{}/invitations/{id}/{answer}", server.issuer("acme-test")))
        .header("content-type", "application/vnd.api+json");
    if let Some(token) = token {
        request = request.body(json!({"meta": {"token": token}}).to_string());
    }
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.expect("answer");
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON") })
}

async fn status_of(server: &TestServer, token: &str, id: &str) -> String {
    let (status, body) = server.api(Method::GET, &format!("{PATH}/{id}"), token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["attributes"]["status"].as_str().unwrap().to_owned()
}

/// The organization's members' user ids and each one's role ids.
async fn members(server: &TestServer, token: &str, organization: &str) -> Vec<(String, Vec<String>)> {
    let (status, body) = server
        .api(
            Method::GET,
            &format!("/api/memberships?filter[organization_id]={organization}&include=roles"),
            token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let user = m["relationships"]["user"]["data"]["id"].as_str().unwrap().to_owned();
            let mut roles: Vec<String> = m["relationships"]["roles"]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect();
            roles.sort();
            (user, roles)
        })
        .collect()
}

db_test!(invitations_are_sent_once_per_address_and_can_be_revoked, |server| {
    let admin = server.admin_token().await;
    let acme = create_organization(&server, &admin, "Acme").await;
    let globex = create_organization(&server, &admin, "Globex").await;
    let editor = create_role(&server, &admin, "editor").await;

    let created = invite(&server, &admin, "Ann@Example.com", &[&editor], &acme).await;
    let first = id_of(&created);
    let attributes = &created["data"]["attributes"];
    assert_eq!(created["data"]["type"], "invitation");
    assert_eq!(attributes["email"], "ann@example.com", "stored lower-cased");
    assert_eq!(attributes["role_ids"], json!([editor]));
    assert_eq!(attributes["status"], "pending");
    assert_eq!(attributes["inviter"]["type"], "client", "{created}");
    assert!(attributes["responded_at"].is_null());
    assert_eq!(created["data"]["relationships"]["organization"]["data"]["id"], acme.as_str());
    assert!(created["data"]["relationships"]["user"]["data"].is_null());
    let expires = time::OffsetDateTime::parse(
        attributes["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let days = (expires - time::OffsetDateTime::now_utc()).whole_hours();
    assert!((167..=168).contains(&days), "7 days by default: {days} h");
    assert!(!created.to_string().contains("token"), "the link's token is only mailed: {created}");

    // The mail names the organization and carries the link.
    let mail = wait_for_mail(&server, "ann@example.com", 1).await;
    assert_eq!(mail.subject, "Join Acme on Acme Test");
    assert!(mail.text.contains("expires in 7 days"), "{}", mail.text);
    let token = mail.link(&server, "/invitations/").rsplit('/').next().unwrap().to_owned();
    assert!(token.len() >= 40, "{token}");
    assert_eq!(
        server.count(&format!("SELECT COUNT(*) FROM invitations WHERE token_hash = '{token}'")).await,
        0,
        "only the token's hash is stored"
    );
    assert_eq!(server.count("SELECT COUNT(*) FROM queued_mails").await, 0, "sent mail leaves the queue");

    // One pending invitation per address and organization.
    let (status, body) =
        server.api(Method::POST, PATH, &admin, Some(invitation("ANN@example.com", &[], &acme))).await;
    assert_conflict(status, &body, "/data/attributes/email");
    invite(&server, &admin, "ann@example.com", &[], &globex).await;

    // Bad input, each with its pointer.
    for (body, pointer) in [
        (invitation("not-an-address", &[], &acme), "email"),
        (invitation("bob@example.com", &["no-such-role"], &acme), "role_ids"),
    ] {
        let (status, body) = server.api(Method::POST, PATH, &admin, Some(body)).await;
        assert_invalid(status, &body, pointer);
    }
    let (status, body) =
        server.api(Method::POST, PATH, &admin, Some(invitation("bob@example.com", &[], "no-such-org"))).await;
    assert_error(status, &body, 422, "invalid_attribute", Some("/data/relationships/organization"));
    let mut without_org = invitation("bob@example.com", &[], &acme);
    without_org["data"].as_object_mut().unwrap().remove("relationships");
    let (status, _) = server.api(Method::POST, PATH, &admin, Some(without_org)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = server
        .api(
            Method::PATCH,
            &format!("{PATH}/{first}"),
            &admin,
            Some(json!({"data": {"type": "invitation", "id": first, "attributes": {}}})),
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "invitations are not updated");

    // Revoke: the link stops working; a new invitation may go out.
    let (status, body) = server.api(Method::PATCH, &format!("{PATH}/{first}/revoke"), &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["status"], "revoked");
    assert!(body["data"]["attributes"]["responded_at"].is_string());
    let (status, body) = server.api(Method::PATCH, &format!("{PATH}/{first}/revoke"), &admin, None).await;
    assert_error(status, &body, 409, "conflict", None);
    assert!(body.to_string().contains("revoked"), "{body}");
    let (status, body) = answer(&server, &first, "accept", Some(&token), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let page = Browser::new(&server).get(&format!("/invitations/{token}")).await;
    assert_eq!(page.status, StatusCode::GONE);
    assert!(page.body.contains("revoked"), "{}", page.body);
    let again = id_of(&invite(&server, &admin, "ann@example.com", &[], &acme).await);

    // List and filter.
    let (status, body) = server
        .api(Method::GET, &format!("{PATH}?filter[organization_id]={acme}&sort=-inserted_at"), &admin, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed: Vec<&str> =
        body["data"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [again.as_str(), first.as_str()]);
    let (_, body) = server
        .api(Method::GET, &format!("{PATH}?filter[email]=ANN@EXAMPLE.COM&include=organization"), &admin, None)
        .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 3, "{body}");
    assert_eq!(body["included"].as_array().unwrap().len(), 2, "{body}");

    // Delete; every change is in the audit trail and the outbox.
    let (status, _) = server.api(Method::DELETE, &format!("{PATH}/{again}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.api(Method::GET, &format!("{PATH}/{again}"), &admin, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for (action, n) in [("invitation.created", 3), ("invitation.revoked", 1), ("invitation.deleted", 1)] {
        let audit =
            server.count(&format!("SELECT COUNT(*) FROM audit_events WHERE action = '{action}'")).await;
        let outbox =
            server.count(&format!("SELECT COUNT(*) FROM outbox_events WHERE event_type = '{action}'")).await;
        assert_eq!((audit, outbox), (n, n), "{action}");
    }

    // Deleting the organization takes its invitations with it.
    let (status, _) = server.api(Method::DELETE, &format!("/api/organizations/{acme}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        server.count(&format!("SELECT COUNT(*) FROM invitations WHERE organization_id = '{acme}'")).await,
        0
    );
    assert_eq!(server.count("SELECT COUNT(*) FROM invitations").await, 1, "Globex's stays");
});

db_test!(accepting_by_link_makes_the_membership_once, |server| {
    let admin = server.admin_token().await;
    let acme = create_organization(&server, &admin, "Acme").await;
    let editor = create_role(&server, &admin, "editor").await;
    let viewer = create_role(&server, &admin, "viewer").await;
    let ann = create_user(&server, &admin, json!({"email": "ann@example.com"})).await;
    let ann_invite = id_of(&invite(&server, &admin, "ann@example.com", &[&editor, &viewer], &acme).await);
    let ann_token = link_token(&server, "ann@example.com", 1).await;
    let bob_invite = id_of(&invite(&server, &admin, "bob@example.com", &[], &acme).await);
    let bob_token = link_token(&server, "bob@example.com", 1).await;

    // Never on an id alone, nor with another invitation's token.
    let (status, body) = answer(&server, &ann_invite, "accept", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = answer(&server, &ann_invite, "accept", Some(&bob_token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = answer(&server, &ann_invite, "accept", Some("made-up-token"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = server
        .api(Method::POST, &format!("{PATH}/{ann_invite}/accept"), &admin, Some(json!({"meta": {}})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(status_of(&server, &admin, &ann_invite).await, "pending");
    assert!(members(&server, &admin, &acme).await.is_empty());
    // Bob has no account: he can decline by the link, not accept.
    let (status, body) = answer(&server, &bob_invite, "accept", Some(&bob_token), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.to_string().contains("sign up"), "{body}");

    // Ann accepts with her link: one membership with both roles, in one go,
    // and her address counts as confirmed.
    let (status, body) = answer(&server, &ann_invite, "accept", Some(&ann_token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["status"], "accepted");
    assert_eq!(body["data"]["relationships"]["user"]["data"]["id"], ann.as_str());
    assert_eq!(body["included"][0]["type"], "membership", "{body}");
    let mut roles = vec![editor.clone(), viewer.clone()];
    roles.sort();
    assert_eq!(members(&server, &admin, &acme).await, [(ann.clone(), roles.clone())]);
    let (_, user) = server.api(Method::GET, &format!("/api/users/{ann}"), &admin, None).await;
    assert_eq!(user["data"]["attributes"]["email_verified"], true);
    for action in ["invitation.accepted", "membership.created"] {
        assert_eq!(
            server.count(&format!("SELECT COUNT(*) FROM outbox_events WHERE event_type = '{action}'")).await,
            1,
            "{action}"
        );
    }
    assert_eq!(
        server.count("SELECT COUNT(*) FROM outbox_events WHERE event_type = 'membership_role.created'").await,
        2
    );

    // A second answer is refused and changes nothing.
    for what in ["accept", "decline"] {
        let (status, body) = answer(&server, &ann_invite, what, Some(&ann_token), None).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body.to_string().contains("already been accepted"), "{body}");
    }
    assert_eq!(members(&server, &admin, &acme).await.len(), 1);

    // The Management API's variant needs the token too, and the scope.
    let carol = create_user(&server, &admin, json!({"email": "carol@example.com"})).await;
    let carol_invite = id_of(&invite(&server, &admin, "carol@example.com", &[&viewer], &acme).await);
    let carol_token = link_token(&server, "carol@example.com", 1).await;
    let reader = server.management_token("acme-test", &server.admin, Some("invitations:read")).await;
    let body = json!({"meta": {"token": carol_token}});
    let (status, _) =
        server.api(Method::POST, &format!("{PATH}/{carol_invite}/accept"), &reader, Some(body.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, reply) =
        server.api(Method::POST, &format!("{PATH}/{carol_invite}/accept"), &admin, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(members(&server, &admin, &acme).await.len(), 2);
    assert!(members(&server, &admin, &acme).await.contains(&(carol, vec![viewer.clone()])));

    // Bob declines without an account.
    let (status, body) = answer(&server, &bob_invite, "decline", Some(&bob_token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["status"], "declined");
    assert!(body.get("included").is_none_or(|i| i.as_array().unwrap().is_empty()), "{body}");
    assert!(find_user(&server, &admin, "bob@example.com").await.is_none());
    let (status, _) = answer(&server, &bob_invite, "accept", Some(&bob_token), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
});

db_test!(expired_invitations_cannot_be_accepted_and_free_the_address, |server| {
    let admin = server.admin_token().await;
    let acme = create_organization(&server, &admin, "Acme").await;
    create_user(&server, &admin, json!({"email": "ann@example.com"})).await;
    let old = id_of(&invite(&server, &admin, "ann@example.com", &[], &acme).await);
    let token = link_token(&server, "ann@example.com", 1).await;
    execute(
        &server,
        &format!("UPDATE invitations SET expires_at = expires_at - 8 * 86400000000 WHERE id = '{old}'"),
    )
    .await;

    assert_eq!(status_of(&server, &admin, &old).await, "expired");
    let (status, body) = answer(&server, &old, "accept", Some(&token), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.to_string().contains("expired"), "{body}");
    let page = Browser::new(&server).get(&format!("/invitations/{token}")).await;
    assert_eq!(page.status, StatusCode::GONE);
    assert!(page.body.contains("expired"), "{}", page.body);
    assert!(members(&server, &admin, &acme).await.is_empty());

    // An expired invitation does not block a new one; the lifetime is a setting.
    let (status, body) = server
        .api(
            Method::PATCH,
            "/api/environment",
            &admin,
            Some(json!({"data": {"type": "environment", "attributes": {"invitation_ttl": 86400}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["invitation_ttl"], 86400);
    for ttl in [60, 100 * 86400] {
        let (status, body) = server
            .api(
                Method::PATCH,
                "/api/environment",
                &admin,
                Some(json!({"data": {"type": "environment", "attributes": {"invitation_ttl": ttl}}})),
            )
            .await;
        assert_invalid(status, &body, "invitation_ttl");
    }
    invite(&server, &admin, "ann@example.com", &[], &acme).await;
    assert!(wait_for_mail(&server, "ann@example.com", 2).await.text.contains("expires in 1 day"));
    assert_eq!(status_of(&server, &admin, &old).await, "expired");
});

db_test!(the_invitation_page_signs_up_then_accepts, |server| {
    let admin = server.admin_token().await;
    let acme = create_organization(&server, &admin, "Acme").await;
    let editor = create_role(&server, &admin, "editor").await;
    // Public registration is closed: an invitation still lets its addressee in.
    let (status, _) = server
        .api(Method::PATCH, "/api/environment", &admin, Some(json!({"data": {"type": "environment", "attributes": {"registration_enabled": false, "require_email_verification": true}}})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let id = id_of(&invite(&server, &admin, "zoe@example.com", &[&editor], &acme).await);
    let link = wait_for_mail(&server, "zoe@example.com", 1).await.link(&server, "/invitations/");
    let path = link.strip_prefix(&server.issuer("acme-test")).unwrap().to_owned();

    let mut browser = Browser::new(&server);
    let page = browser.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Join Acme"), "{}", page.body);
    assert!(page.body.contains("zoe@example.com"));
    assert!(page.body.contains("Create account"), "no account yet: sign-up is offered");

    let weak = [("step", "sign_up"), ("password", "short"), ("password_confirmation", "short")];
    let page = browser.fill(&path, &path, &weak).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("at least 8 characters"), "{}", page.body);
    assert!(find_user(&server, &admin, "zoe@example.com").await.is_none());

    let fields = [
        ("step", "sign_up"),
        ("first_name", "Zoe"),
        ("password", NEW_PASSWORD),
        ("password_confirmation", NEW_PASSWORD),
    ];
    let page = browser.fill(&path, &path, &fields).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Accept invitation"), "{}", page.body);
    assert!(browser.cookies.contains_key("portcullis_session"), "signed in");
    let zoe = find_user(&server, &admin, "zoe@example.com").await.expect("the account");
    assert_eq!(zoe["attributes"]["email_verified"], true, "the link proved the address");
    assert_eq!(zoe["attributes"]["first_name"], "Zoe");
    assert_eq!(status_of(&server, &admin, &id).await, "pending", "signing up is not accepting");

    let page = browser.fill(&path, &path, &[("step", "accept")]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("You joined Acme"), "{}", page.body);
    let zoe_id = zoe["id"].as_str().unwrap().to_owned();
    assert_eq!(members(&server, &admin, &acme).await, [(zoe_id, vec![editor])]);
    let page = browser.get(&path).await;
    assert_eq!(page.status, StatusCode::GONE, "the link works once");
    assert_eq!(server.count("SELECT COUNT(*) FROM audit_events WHERE action = 'user.registered'").await, 1);
});

db_test!(the_wrong_account_cannot_accept_an_invitation, |server| {
    let admin = server.admin_token().await;
    let acme = create_organization(&server, &admin, "Acme").await;
    create_person(&server, &admin, "ann@example.com").await;
    create_person(&server, &admin, "bob@example.com").await;
    let id = id_of(&invite(&server, &admin, "ann@example.com", &[], &acme).await);
    let token = link_token(&server, "ann@example.com", 1).await;
    let path = format!("/invitations/{token}");

    // Bob, signed in, opens Ann's link (forwarded to him): he cannot accept.
    let mut bob = Browser::new(&server);
    let page = bob.log_in("/login", "bob@example.com", PASSWORD).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let page = bob.get(&path).await;
    assert!(page.body.contains("You are signed in as bob@example.com"), "{}", page.body);
    assert!(!page.body.contains("Accept invitation"));
    let csrf = page.hidden("csrf").unwrap();
    let page = bob.post(&path, &[("csrf", &csrf), ("step", "accept")]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert_eq!(status_of(&server, &admin, &id).await, "pending");

    // Nor with his own access token at the endpoint, even with the link's token.
    let client = create_client(&server, &admin, json!({})).await;
    let (verifier, challenge) = pkce();
    let redirect = bob
        .authorize(&authorize_path(&code_request(&client, "openid email", &challenge)), "bob@example.com")
        .await;
    let code = query_of(&redirect)["code"].clone();
    let (_, tokens) = redeem(&server, &client, &code, &verifier).await;
    let bob_access = tokens["access_token"].as_str().unwrap().to_owned();
    let (status, body) = answer(&server, &id, "accept", None, Some(&bob_access)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("another email address"), "{body}");
    let (status, _) = answer(&server, &id, "accept", Some(&token), Some(&bob_access)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = answer(&server, &id, "accept", None, Some("not-a-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&server, &admin, &id).await, "pending");
    assert!(members(&server, &admin, &acme).await.is_empty());

    // Ann, signed in elsewhere, accepts with her access token alone: her
    // address is verified, so no link is needed.
    execute(&server, "UPDATE users SET email_verified = TRUE WHERE email = 'ann@example.com'").await;
    let mut ann = Browser::new(&server);
    let (verifier, challenge) = pkce();
    let redirect = ann
        .authorize(&authorize_path(&code_request(&client, "openid email", &challenge)), "ann@example.com")
        .await;
    let code = query_of(&redirect)["code"].clone();
    let (_, tokens) = redeem(&server, &client, &code, &verifier).await;
    let (status, body) = answer(&server, &id, "accept", None, tokens["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(members(&server, &admin, &acme).await.len(), 1);
});

db_test!(mail_committed_by_another_process_is_still_sent, |server| {
    // A process that queued mail and died before sending it: the row is
    // committed, nothing woke this server's worker, and its poll sends it.
    let db = portcullis_store::Db::connect(&server.database_url).await.unwrap();
    let env = server.core.environment("acme-test").await.unwrap().unwrap();
    let mut tx = db.write_state().await.unwrap();
    let mail = portcullis_core::mail::Mail {
        to: "late@example.com".into(),
        subject: "Queued before a crash".into(),
        text: "Hello".into(),
    };
    portcullis_core::mail::queue_in(&mut tx, &server.core.master_key, &env.environment.id, &mail)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let sealed = server.count("SELECT COUNT(*) FROM queued_mails WHERE sealed LIKE '%Hello%'").await;
    assert_eq!(sealed, 0, "queued mail is sealed");
    assert_eq!(wait_for_mail(&server, "late@example.com", 1).await.subject, "Queued before a crash");
    assert_eq!(server.count("SELECT COUNT(*) FROM queued_mails").await, 0);
});
