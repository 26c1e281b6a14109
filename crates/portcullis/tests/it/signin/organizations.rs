//! Organization context in tokens: `/oauth/authorize?organization=` (id or
//! slug) for members only, the client's `organization_usage`, the picker
//! when a client requires an organization, `org_id` and the membership's
//! roles in access tokens, ID tokens and UserInfo, refreshes that keep the
//! organization, and an ended membership that stops them.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::*;
use crate::common::{assert_invalid, create_permission, create_role, id_of};
use crate::db_test;
use crate::harness::TestServer;

fn link(a: &str, a_id: &str, b: &str, b_id: &str) -> Value {
    json!({a: {"data": {"type": a, "id": a_id}}, b: {"data": {"type": b, "id": b_id}}})
}

async fn organization(server: &TestServer, token: &str, name: &str, slug: &str) -> String {
    let attributes = json!({"name": name, "slug": slug});
    id_of(&server.create(token, "/api/organizations", "organization", attributes, Value::Null).await)
}

async fn member(server: &TestServer, token: &str, user: &str, organization: &str) -> String {
    let relationships = link("user", user, "organization", organization);
    id_of(&server.create(token, "/api/memberships", "membership", json!({}), relationships).await)
}

/// Signs `email` in through `params` plus `extra`; returns the redirect back.
async fn sign_in(
    browser: &mut Browser<'_>,
    client: &TestClient,
    email: &str,
    extra: &[(&str, &str)],
) -> (String, String) {
    let (verifier, challenge) = pkce();
    let mut params = code_request(client, "openid profile email offline_access", &challenge);
    params.extend_from_slice(extra);
    (browser.authorize(&authorize_path(&params), email).await, verifier)
}

async fn tokens_for(server: &TestServer, client: &TestClient, callback: &str, verifier: &str) -> Value {
    let code = query_of(callback).get("code").cloned().unwrap_or_else(|| panic!("no code: {callback}"));
    let (status, tokens) = redeem(server, client, &code, verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens
}

db_test!(an_organization_sign_in_carries_org_id_and_the_members_roles, |server| {
    let admin = server.admin_token().await;
    let ada = create_person(&server, &admin, "ada@example.com").await;
    let acme = organization(&server, &admin, "Acme", "acme").await;
    let staff = create_role(&server, &admin, "staff").await;
    let org_admin = create_role(&server, &admin, "org-admin").await;
    let reports = create_permission(&server, &admin, "reports:read").await;
    server
        .create(&admin, "/api/user-roles", "user_role", json!({}), link("user", &ada, "role", &staff))
        .await;
    server
        .create(
            &admin,
            "/api/role-permissions",
            "role_permission",
            json!({}),
            link("role", &org_admin, "permission", &reports),
        )
        .await;
    let membership = member(&server, &admin, &ada, &acme).await;
    server
        .create(
            &admin,
            "/api/membership-roles",
            "membership_role",
            json!({}),
            link("membership", &membership, "role", &org_admin),
        )
        .await;
    let client = create_client(
        &server,
        &admin,
        json!({"organization_usage": "allow", "grant_types": ["authorization_code", "refresh_token"]}),
    )
    .await;
    let mut browser = Browser::new(&server);

    // Without `organization`: the user's own roles, no organization.
    let (callback, verifier) = sign_in(&mut browser, &client, "ada@example.com", &[]).await;
    let plain = tokens_for(&server, &client, &callback, &verifier).await;
    let access = claims_of(plain["access_token"].as_str().unwrap());
    assert!(access.get("org_id").is_none(), "{access}");
    assert_eq!(access["roles"], json!(["staff"]));
    assert!(claims_of(plain["id_token"].as_str().unwrap()).get("org_id").is_none());

    // By slug: org_id, and the membership's roles and permissions added.
    let (callback, verifier) =
        sign_in(&mut browser, &client, "ada@example.com", &[("organization", "acme")]).await;
    let tokens = tokens_for(&server, &client, &callback, &verifier).await;
    let access = claims_of(tokens["access_token"].as_str().unwrap());
    assert_eq!(access["org_id"], acme.as_str(), "{access}");
    assert_eq!(access["roles"], json!(["org-admin", "staff"]));
    assert_eq!(access["permissions"], json!(["reports:read"]));
    let id_token = claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!(
        (&id_token["org_id"], &id_token["org_name"], &id_token["org_slug"]),
        (&json!(acme), &json!("Acme"), &json!("acme"))
    );
    let (status, info, _) = userinfo(&server, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&info["org_id"], &info["org_name"]), (&json!(acme), &json!("Acme")), "{info}");

    // A refresh keeps the organization.
    let refresh_with =
        |token: &str| [("grant_type", "refresh_token".to_owned()), ("refresh_token", token.to_owned())];
    let form = refresh_with(tokens["refresh_token"].as_str().unwrap());
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, refreshed) = token_call(&server, &client, &form).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_eq!(claims_of(refreshed["access_token"].as_str().unwrap())["org_id"], acme.as_str());
    assert_eq!(claims_of(refreshed["id_token"].as_str().unwrap())["org_slug"], "acme");

    // By id works too. Then the membership ends: refreshes stop, UserInfo
    // drops the organization, and a new sign-in to it is refused.
    let (callback, verifier) =
        sign_in(&mut browser, &client, "ada@example.com", &[("organization", &acme)]).await;
    let by_id = tokens_for(&server, &client, &callback, &verifier).await;
    assert_eq!(claims_of(by_id["access_token"].as_str().unwrap())["org_id"], acme.as_str());
    let (status, _) =
        server.api(Method::DELETE, &format!("/api/memberships/{membership}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let form = refresh_with(refreshed["refresh_token"].as_str().unwrap());
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, refused) = token_call(&server, &client, &form).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{refused}"
    );
    let (_, info, _) = userinfo(&server, by_id["access_token"].as_str().unwrap()).await;
    assert!(info.get("org_id").is_none(), "{info}");
    let form = refresh_with(plain["refresh_token"].as_str().unwrap());
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _) = token_call(&server, &client, &form).await;
    assert_eq!(status, StatusCode::OK, "a grant without the organization is unaffected");
    let (callback, _) = sign_in(&mut browser, &client, "ada@example.com", &[("organization", "acme")]).await;
    assert_eq!(query_of(&callback)["error"], "access_denied", "{callback}");
});

db_test!(organizations_are_named_only_where_the_client_allows_and_for_members, |server| {
    let admin = server.admin_token().await;
    let ada = create_person(&server, &admin, "ada@example.com").await;
    let acme = organization(&server, &admin, "Acme", "acme").await;
    organization(&server, &admin, "Globex", "globex").await;
    member(&server, &admin, &ada, &acme).await;
    let mut browser = Browser::new(&server);

    // A client that does not use organizations refuses the parameter.
    let plain = create_client(&server, &admin, json!({})).await;
    let (_, challenge) = pkce();
    let mut params = code_request(&plain, "openid", &challenge);
    params.push(("organization", "acme"));
    let page = browser.get(&authorize_path(&params)).await;
    let error = query_of(page.redirect());
    assert_eq!(
        (error["error"].as_str(), error["state"].as_str()),
        ("invalid_request", "st-123"),
        "{}",
        page.redirect()
    );

    let client = create_client(&server, &admin, json!({"organization_usage": "allow"})).await;
    for (named, error) in [("no-such-org", "invalid_request"), ("globex", "access_denied")] {
        let (callback, _) =
            sign_in(&mut browser, &client, "ada@example.com", &[("organization", named)]).await;
        assert_eq!(query_of(&callback)["error"], error, "{named}: {callback}");
    }

    // The setting is validated and can change.
    let (status, body) = server
        .api(Method::PATCH, &format!("/api/clients/{}", client.id), &admin, Some(json!({"data": {"type": "client", "id": client.id, "attributes": {"organization_usage": "sometimes"}}})))
        .await;
    assert_invalid(status, &body, "organization_usage");
    let (status, body) = server.api(Method::GET, &format!("/api/clients/{}", client.id), &admin, None).await;
    assert_eq!(
        (status, &body["data"]["attributes"]["organization_usage"]),
        (StatusCode::OK, &json!("allow"))
    );
});

db_test!(a_client_that_requires_an_organization_lets_members_of_several_pick, |server| {
    let admin = server.admin_token().await;
    let ada = create_person(&server, &admin, "ada@example.com").await;
    let bob = create_person(&server, &admin, "bob@example.com").await;
    create_person(&server, &admin, "cy@example.com").await;
    let acme = organization(&server, &admin, "Acme", "acme").await;
    let globex = organization(&server, &admin, "Globex", "globex").await;
    let initech = organization(&server, &admin, "Initech", "initech").await;
    member(&server, &admin, &ada, &acme).await;
    member(&server, &admin, &ada, &globex).await;
    member(&server, &admin, &bob, &globex).await;
    let client =
        create_client(&server, &admin, json!({"organization_usage": "require", "first_party": true})).await;

    // One organization: no question asked. None: refused.
    let (callback, verifier) = sign_in(&mut Browser::new(&server), &client, "bob@example.com", &[]).await;
    let tokens = tokens_for(&server, &client, &callback, &verifier).await;
    assert_eq!(claims_of(tokens["access_token"].as_str().unwrap())["org_id"], globex.as_str());
    let (callback, _) = sign_in(&mut Browser::new(&server), &client, "cy@example.com", &[]).await;
    assert_eq!(query_of(&callback)["error"], "access_denied", "{callback}");

    // Several: the picker lists hers, by name.
    let mut browser = Browser::new(&server);
    let (pick, verifier) = sign_in(&mut browser, &client, "ada@example.com", &[]).await;
    assert!(pick.starts_with("/organizations/pick?flow="), "{pick}");
    let page = browser.get(&pick).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Acme") && page.body.contains("Globex"), "{}", page.body);
    assert!(!page.body.contains("Initech"));
    let csrf = page.hidden("csrf").unwrap();
    let flow = page.hidden("flow").unwrap();

    // A forged choice is checked like a named one.
    let forged = browser
        .post("/organizations/pick", &[("csrf", &csrf), ("flow", &flow), ("organization", &initech)])
        .await;
    assert_eq!(query_of(forged.redirect())["error"], "access_denied", "{}", forged.redirect());
    let chosen = browser
        .post("/organizations/pick", &[("csrf", &csrf), ("flow", &flow), ("organization", &acme)])
        .await;
    let tokens = tokens_for(&server, &client, chosen.redirect(), &verifier).await;
    assert_eq!(claims_of(tokens["access_token"].as_str().unwrap())["org_id"], acme.as_str());
    assert_eq!(claims_of(tokens["id_token"].as_str().unwrap())["org_name"], "Acme");

    // prompt=none cannot show the picker.
    let (_, challenge) = pkce();
    let mut params = code_request(&client, "openid", &challenge);
    params.push(("prompt", "none"));
    let silent = browser.get(&authorize_path(&params)).await;
    assert_eq!(query_of(silent.redirect())["error"], "interaction_required", "{}", silent.redirect());
});
