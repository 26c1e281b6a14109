//! Audit finding 15: a sign-in flow issues one code however often its forms
//! are sent, and the environment setting `require_email_verification`.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{PASSWORD, create_user};
use crate::db_test;
use crate::signin::support::*;

const SPENT: &str = "This sign-in request has been completed already.";

db_test!(a_consent_form_sent_twice_issues_one_code, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let client = create_client(&server, &admin, json!({})).await; // third party: asks consent
    let (verifier, challenge) = pkce();
    let mut browser = Browser::new(&server);
    let page = browser.get(&authorize_path(&code_request(&client, "openid", &challenge))).await;
    let login = page.redirect().to_owned();
    let page = browser.log_in(&login, "ada@example.com", PASSWORD).await;
    let consent = browser.get(page.redirect()).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    let form = [
        ("csrf", consent.hidden("csrf").unwrap()),
        ("flow", consent.hidden("flow").unwrap()),
        ("decision", "allow".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let first = browser.post("/consent", &form).await;
    let code = query_of(first.redirect())["code"].clone();
    let second = browser.post("/consent", &form).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST, "{}", second.body);
    assert!(second.body.contains(SPENT), "{}", second.body);
    assert!(second.location().is_none(), "no second redirect to the client");
    assert_eq!(server.count("SELECT COUNT(*) FROM authorization_codes").await, 1);
    let (status, tokens) = redeem(&server, &client, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "the first code is unaffected: {tokens}");
});

db_test!(a_login_form_sent_twice_issues_one_code, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let client = create_client(&server, &admin, json!({"first_party": true})).await;
    let (_, challenge) = pkce();
    let mut browser = Browser::new(&server);
    let page = browser.get(&authorize_path(&code_request(&client, "openid", &challenge))).await;
    let login = browser.get(page.redirect()).await;
    let (csrf, flow) = (login.hidden("csrf").unwrap(), login.hidden("flow").unwrap());
    let form = [
        ("csrf", csrf.as_str()),
        ("flow", flow.as_str()),
        ("email", "ada@example.com"),
        ("password", PASSWORD),
    ];
    let first = browser.post("/login", &form).await;
    assert!(query_of(first.redirect()).contains_key("code"), "{:?}", first.location());
    // The back button and the same form again, even from another browser.
    let mut other = Browser::new(&server);
    let other_csrf = other.csrf("/login").await;
    for (browser, csrf) in [(&mut browser, csrf.as_str()), (&mut other, other_csrf.as_str())] {
        let form =
            [("csrf", csrf), ("flow", flow.as_str()), ("email", "ada@example.com"), ("password", PASSWORD)];
        let again = browser.post("/login", &form).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
        assert!(again.body.contains(SPENT), "{}", again.body);
    }
    assert_eq!(server.count("SELECT COUNT(*) FROM authorization_codes").await, 1);
    // A new authorization request is a new flow.
    let page = browser.get(&authorize_path(&code_request(&client, "openid", &challenge))).await;
    assert!(query_of(page.redirect()).contains_key("code"), "{:?}", page.location());
});

db_test!(require_email_verification_holds_sign_in_until_the_address_is_confirmed, |server| {
    let admin = server.admin_token().await;
    let (status, body) = server.api(Method::GET, "/api/environment", &admin, None).await;
    assert_eq!(
        (status, &body["data"]["attributes"]["require_email_verification"]),
        (StatusCode::OK, &json!(false))
    );
    let environment = body["data"]["id"].as_str().unwrap().to_owned();
    let settings = |on: bool| json!({"data": {"type": "environment", "id": environment, "attributes": {"require_email_verification": on}}});
    let (status, body) = server.api(Method::PATCH, "/api/environment", &admin, Some(settings(true))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["require_email_verification"], true);
    create_user(&server, &admin, json!({"email": "new@example.com", "email_verified": false})).await;
    create_user(&server, &admin, json!({"email": "known@example.com", "email_verified": true})).await;

    let mut browser = Browser::new(&server);
    let wrong = browser.log_in("/login", "new@example.com", "wrong password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "a wrong password says nothing more");
    let held = browser.log_in("/login", "new@example.com", PASSWORD).await;
    assert_eq!(held.status, StatusCode::FORBIDDEN, "{}", held.body);
    assert!(held.body.contains("Confirm your email address to sign in"), "{}", held.body);
    assert!(held.body.contains("href=\"/confirm/resend\""), "{}", held.body);
    assert!(!browser.cookies.contains_key("portcullis_session"));
    let fine = Browser::new(&server).log_in("/login", "known@example.com", PASSWORD).await;
    assert!(fine.status.is_redirection() || fine.status == StatusCode::OK, "{}", fine.body);

    // The page sends a new link; it answers the same for any address.
    let sent = browser.fill("/confirm/resend", "/confirm/resend", &[("email", "new@example.com")]).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let nobody = browser.fill("/confirm/resend", "/confirm/resend", &[("email", "nobody@example.com")]).await;
    let known = browser.fill("/confirm/resend", "/confirm/resend", &[("email", "known@example.com")]).await;
    for page in [&sent, &nobody, &known] {
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            page.body.contains("has an account waiting for confirmation, we sent it a new link"),
            "{}",
            page.body
        );
    }
    let empty = browser.fill("/confirm/resend", "/confirm/resend", &[("email", "")]).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let mail = wait_for_mail(&server, "new@example.com", 1).await;
    let link = mail.link(&server, "/confirm/");
    let button = browser.get(&link).await;
    let confirmed = browser.post(&link, &[("csrf", &button.hidden("csrf").unwrap())]).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    assert!(mails_to(&server, "nobody@example.com").is_empty());
    assert!(mails_to(&server, "known@example.com").is_empty(), "a confirmed address gets no link");

    let signed_in = browser.log_in("/login", "new@example.com", PASSWORD).await;
    assert!(browser.cookies.contains_key("portcullis_session"), "{}: {}", signed_in.status, signed_in.body);

    // Turned off, unconfirmed addresses sign in again.
    server.api(Method::PATCH, "/api/environment", &admin, Some(settings(false))).await;
    create_user(&server, &admin, json!({"email": "later@example.com", "email_verified": false})).await;
    let mut later = Browser::new(&server);
    later.log_in("/login", "later@example.com", PASSWORD).await;
    assert!(later.cookies.contains_key("portcullis_session"));
});
