//! Self-service account pages: sign-up and email confirmation, forgotten
//! and reset passwords, password change, and the password policy and link
//! voiding they share with the Management API.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::*;
use crate::common::{PASSWORD, assert_invalid, create_user};
use crate::db_test;
use crate::harness::TestServer;

/// A password that passes the policy (and is not [`PASSWORD`]).
const NEW_PASSWORD: &str = "violet lantern harbour 42";
const EXPIRED: &str = "This link is invalid or has expired";

/// The bundled list of common passwords the policy refuses.
const COMMON: &str = include_str!("../../../../portcullis-core/data/common-passwords.txt");

/// Submits the sign-up form (from `/register`, or `register_path` with a
/// flow) for `email` with `password` twice.
async fn sign_up(browser: &mut Browser<'_>, register_path: &str, email: &str, password: &str) -> Page {
    let fields = [
        ("email", email),
        ("first_name", "Zoe"),
        ("last_name", "Quinn"),
        ("password", password),
        ("password_confirmation", password),
    ];
    browser.fill(register_path, "/register", &fields).await
}

/// Signs up `email` and returns the confirmation link mailed to it.
async fn sign_up_and_get_link(server: &TestServer, email: &str) -> String {
    let mut browser = Browser::new(server);
    let page = sign_up(&mut browser, "/register", email, NEW_PASSWORD).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    wait_for_mail(server, email, 1).await.link(server, "/confirm/")
}

/// Opens a confirmation link and presses its button (links confirm on
/// POST only); returns the page that follows.
async fn confirm(server: &TestServer, link: &str) -> Page {
    Browser::new(server).fill(link, link, &[]).await
}

/// POSTs `fields` to `link` with a valid CSRF token from another page (for
/// a link that no longer shows its form).
async fn post_to_link(server: &TestServer, link: &str, fields: &[(&str, &str)]) -> Page {
    let mut browser = Browser::new(server);
    let csrf = browser.csrf("/password/forgot").await;
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    browser.post(link, &form).await
}

/// Asks for a reset link for `email` from a fresh browser; returns the page.
async fn forgot(server: &TestServer, email: &str) -> Page {
    Browser::new(server).fill("/password/forgot", "/password/forgot", &[("email", email)]).await
}

/// Asks for a reset link and returns the `nth` reset link `email` received.
async fn reset_link(server: &TestServer, email: &str, nth: usize) -> String {
    let page = forgot(server, email).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let mail = wait_for_mail(server, email, nth).await;
    assert_eq!(mail.subject, "Reset your Acme Test password");
    mail.link(server, "/password/reset/")
}

/// Submits the reset form at `link`.
async fn reset(server: &TestServer, link: &str, password: &str, confirmation: &str) -> Page {
    let fields = [("password", password), ("password_confirmation", confirmation)];
    let mut browser = Browser::new(server);
    let path = link.strip_prefix(&server.issuer("acme-test")).expect("a link on acme-test").to_owned();
    browser.fill(&path, &path, &fields).await
}

/// Signs in at `/login` (no flow) from a fresh browser; returns the status.
async fn login_status(server: &TestServer, email: &str, password: &str) -> StatusCode {
    Browser::new(server).log_in("/login", email, password).await.status
}

/// The audit events with `action`, through the Management API.
async fn audit_events(server: &TestServer, token: &str, action: &str) -> Vec<Value> {
    let (status, body) =
        server.api(Method::GET, &format!("/api/audit-events?filter[action]={action}"), token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().expect("data").clone()
}

/// Asserts exactly one `action` event, by the user `user_id` about themself.
async fn assert_user_event(server: &TestServer, token: &str, action: &str, user_id: &str) {
    let events = audit_events(server, token, action).await;
    assert_eq!(events.len(), 1, "one {action} event: {events:?}");
    let attributes = &events[0]["attributes"];
    assert_eq!(attributes["actor"]["type"], "user", "{action}: {attributes}");
    assert_eq!(attributes["actor"]["id"], user_id, "{action}: {attributes}");
    assert_eq!(attributes["targets"][0]["id"], user_id, "{action}: {attributes}");
    assert_eq!(attributes["ip_address"], "127.0.0.1", "{action}: {attributes}");
}

fn now_micros() -> i64 {
    portcullis_store::now_micros()
}

/// Expires every link of `purpose`.
async fn expire_links(server: &TestServer, purpose: &str) {
    let past = now_micros() - 1_000_000;
    let sql = format!("UPDATE user_tokens SET expires_at = {past} WHERE purpose = '{purpose}'");
    assert!(execute(server, &sql).await >= 1, "no {purpose} link to expire");
}

/// A refresh token for `email` (signing in through `browser`).
async fn refresh_token(
    server: &TestServer,
    browser: &mut Browser<'_>,
    client: &TestClient,
    email: &str,
) -> String {
    let (verifier, challenge) = pkce();
    let callback = browser
        .authorize(&authorize_path(&code_request(client, "openid offline_access", &challenge)), email)
        .await;
    let (status, tokens) = redeem(server, client, &query_of(&callback)["code"], &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens["refresh_token"].as_str().expect("refresh_token").to_owned()
}

async fn refresh(server: &TestServer, client: &TestClient, token: &str) -> (StatusCode, Value) {
    token_call(server, client, &[("grant_type", "refresh_token"), ("refresh_token", token)]).await
}

// ---- sign-up and confirmation ----------------------------------------------

db_test!(sign_up_creates_an_unconfirmed_user_and_mails_a_confirmation_link, |server| {
    let admin = server.admin_token().await;
    let mut browser = Browser::new(&server);
    let form = browser.get("/register").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(form.body.contains("Create your account"));
    assert!(form.hidden("csrf").is_some_and(|t| t.len() >= 32), "the form carries a CSRF token");
    assert!(browser.cookies.contains_key("portcullis_csrf"), "and sets its cookie");
    assert_eq!(form.headers["cache-control"], "no-store");

    let page = sign_up(&mut browser, "/register", "zoe@example.com", NEW_PASSWORD).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Check your email"), "{}", page.body);
    assert!(page.body.contains("We sent a message to zoe@example.com"), "{}", page.body);
    assert!(!browser.cookies.contains_key("portcullis_session"), "signing up does not sign in");

    // The user is created (after the answer) with an unconfirmed address,
    // then the confirmation mail goes out.
    let mail = wait_for_mail(&server, "zoe@example.com", 1).await;
    assert_eq!(mail.subject, "Confirm your email for Acme Test");
    assert_eq!(mail.from, "Acme Test <no-reply@acme-test.localhost>");
    assert!(mail.text.starts_with("Hello Zoe,"), "{}", mail.text);
    let link = mail.link(&server, "/confirm/");
    let token = link.rsplit('/').next().unwrap().to_owned();
    assert!(token.len() >= 32, "{link}");
    let user = find_user(&server, &admin, "zoe@example.com").await.expect("the user exists");
    let user_id = user["id"].as_str().unwrap().to_owned();
    assert_eq!(user["attributes"]["email_verified"], false, "{user}");
    assert_eq!(user["attributes"]["first_name"], "Zoe");
    assert_eq!(user["attributes"]["last_name"], "Quinn");
    assert_user_event(&server, &admin, "user.registered", &user_id).await;
    assert!(
        audit_events(&server, &admin, "user.created").await.is_empty(),
        "a sign-up is not an admin creation"
    );
    // Only the token's hash is stored.
    let stored = format!(
        "SELECT COUNT(*) FROM user_tokens WHERE user_id = '{user_id}' AND purpose = 'email_confirmation'"
    );
    assert_eq!(server.count(&stored).await, 1);
    assert_eq!(
        server.count(&format!("SELECT COUNT(*) FROM user_tokens WHERE token_hash = '{token}'")).await,
        0
    );

    // Opening the link shows a button; fetching it (as mail scanners do)
    // confirms nothing.
    let mut other = Browser::new(&server);
    let button = other.get(&link).await;
    assert_eq!(button.status, StatusCode::OK, "{}", button.body);
    assert!(button.body.contains("Confirm your email"), "{}", button.body);
    let csrf = button.hidden("csrf").expect("the button's form carries a CSRF token");
    assert_eq!(other.get(&link).await.status, StatusCode::OK, "still unspent");
    let user = find_user(&server, &admin, "zoe@example.com").await.unwrap();
    assert_eq!(user["attributes"]["email_verified"], false, "a GET confirms nothing: {user}");
    let forged = other.post(&link, &[("csrf", &"x".repeat(43))]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "the button is CSRF-protected");
    assert_eq!(other.post(&link, &[]).await.status, StatusCode::FORBIDDEN);

    // Pressing it confirms the address, once, without a session.
    let confirmed = other.post(&link, &[("csrf", &csrf)]).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    assert!(confirmed.body.contains("Your email is confirmed"), "{}", confirmed.body);
    assert!(confirmed.body.contains("zoe@example.com is confirmed"), "{}", confirmed.body);
    let user = find_user(&server, &admin, "zoe@example.com").await.unwrap();
    assert_eq!(user["attributes"]["email_verified"], true, "{user}");
    let updates = audit_events(&server, &admin, "user.updated").await;
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0]["attributes"]["changes"]["email_verified"], json!({"from": false, "to": true}));

    let again = other.post(&link, &[("csrf", &csrf)]).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "a link works once");
    assert!(again.body.contains(EXPIRED), "{}", again.body);
    let again = other.get(&link).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "a spent link shows no button");
    assert!(again.body.contains(EXPIRED), "{}", again.body);
    for bogus in ["/confirm/nope".to_owned(), format!("/confirm/{}", "x".repeat(200)), format!("{link}x")] {
        let page = other.get(&bogus).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bogus}");
        assert!(page.body.contains(EXPIRED), "{bogus}: {}", page.body);
        let page = other.post(&bogus, &[("csrf", &csrf)]).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "POST {bogus}");
    }
    assert_eq!(audit_events(&server, &admin, "user.updated").await.len(), 1, "refused links change nothing");
});

db_test!(an_expired_confirmation_link_is_refused, |server| {
    let admin = server.admin_token().await;
    let link = sign_up_and_get_link(&server, "zoe@example.com").await;
    expire_links(&server, "email_confirmation").await;
    let page = Browser::new(&server).get(&link).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(page.body.contains(EXPIRED), "{}", page.body);
    let page = post_to_link(&server, &link, &[]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(page.body.contains(EXPIRED), "{}", page.body);
    let user = find_user(&server, &admin, "zoe@example.com").await.unwrap();
    assert_eq!(user["attributes"]["email_verified"], false, "{user}");
});

db_test!(signing_up_with_a_taken_address_answers_the_same_and_mails_the_owner, |server| {
    let admin = server.admin_token().await;
    let ada = create_person(&server, &admin, "ada@example.com").await;

    let mut browser = Browser::new(&server);
    let taken = sign_up(&mut browser, "/register", "ADA@Example.COM", NEW_PASSWORD).await;
    let fresh = sign_up(&mut browser, "/register", "zoe@example.com", NEW_PASSWORD).await;
    assert_eq!((taken.status, fresh.status), (StatusCode::OK, StatusCode::OK), "{}", taken.body);
    assert!(taken.body.contains("Check your email"), "{}", taken.body);
    assert_eq!(
        taken.body.replace("ADA@Example.COM", "{email}"),
        fresh.body.replace("zoe@example.com", "{email}"),
        "the page does not tell whether the address has an account"
    );

    // The owner is told, not sent a confirmation link.
    let mail = wait_for_mail(&server, "ada@example.com", 1).await;
    assert_eq!(mail.subject, "Your Acme Test account");
    assert!(mail.text.contains("already has one"), "{}", mail.text);
    assert!(mail.text.contains(&format!("{}/password/forgot", server.issuer("acme-test"))), "{}", mail.text);
    assert!(!mail.text.contains("/confirm/"), "{}", mail.text);
    wait_for_mail(&server, "zoe@example.com", 1).await;
    assert_eq!(mails_to(&server, "ada@example.com").len(), 1);

    // No second account, and the existing one is untouched.
    assert_eq!(server.count("SELECT COUNT(*) FROM users WHERE lower(email) = 'ada@example.com'").await, 1);
    let user = find_user(&server, &admin, "ada@example.com").await.unwrap();
    assert_eq!(user["id"], ada.as_str());
    assert_eq!(user["attributes"]["email"], "ada@example.com");
    assert_eq!(user["attributes"]["first_name"], "Ada");
    assert_eq!(login_status(&server, "ada@example.com", PASSWORD).await, StatusCode::OK);
    assert_eq!(login_status(&server, "ada@example.com", NEW_PASSWORD).await, StatusCode::UNAUTHORIZED);
    assert_eq!(audit_events(&server, &admin, "user.registered").await.len(), 1, "zoe only");
});

db_test!(sign_up_validates_its_fields_and_creates_nothing, |server| {
    let common: Vec<&str> = COMMON.lines().collect();
    for password in ["password123", "qwertyuiop"] {
        assert!(common.contains(&password), "{password} is on the bundled list");
    }
    let long = "x".repeat(129);
    let long_name = "n".repeat(256);
    let mut browser = Browser::new(&server);
    type Case<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);
    // (email, password, confirmation, field, message)
    let cases: Vec<Case> = vec![
        ("zoe@example.com", "short7!", "short7!", "password", "password must be at least 8 characters"),
        ("zoe@example.com", "password123", "password123", "password", "password is too common"),
        ("zoe@example.com", "Qwertyuiop", "Qwertyuiop", "password", "password is too common"),
        (
            "zoe@example.com",
            NEW_PASSWORD,
            "violet lantern harbour 43",
            "password_confirmation",
            "password confirmation does not match password",
        ),
        ("not-an-email", NEW_PASSWORD, NEW_PASSWORD, "email", "email is not a valid address"),
        ("zoe@", NEW_PASSWORD, NEW_PASSWORD, "email", "email is not a valid address"),
        ("zoe@example.com", &long, &long, "password", "password must be at most 128 characters"),
    ];
    for (email, password, confirmation, field, message) in cases {
        let fields = [
            ("email", email),
            ("first_name", "Zoe"),
            ("password", password),
            ("password_confirmation", confirmation),
        ];
        let page = browser.fill("/register", "/register", &fields).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{email} / {password}: {}", page.body);
        assert!(page.body.contains(message), "{field}: {message}: {}", page.body);
        assert!(page.body.contains(&format!("id=\"{field}-error\"")), "the message is beside {field}");
        assert!(page.body.contains("value=\"Zoe\""), "the form keeps what was typed");
        assert!(!page.body.contains(password), "passwords are never echoed back");
        assert!(page.hidden("csrf").is_some(), "the form can be submitted again");
    }
    let fields = [
        ("email", "zoe@example.com"),
        ("first_name", long_name.as_str()),
        ("password", NEW_PASSWORD),
        ("password_confirmation", NEW_PASSWORD),
    ];
    let page = browser.fill("/register", "/register", &fields).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("first_name must be at most 255 characters"), "{}", page.body);

    // Forms without this browser's CSRF token are refused.
    let token = browser.csrf("/register").await;
    let wrong = "x".repeat(43);
    let fields =
        [("email", "zoe@example.com"), ("password", NEW_PASSWORD), ("password_confirmation", NEW_PASSWORD)];
    let page = browser.post("/register", &fields).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "no token");
    assert!(page.body.contains("Your session has expired"), "{}", page.body);
    let forged: Vec<(&str, &str)> = [("csrf", wrong.as_str())].into_iter().chain(fields).collect();
    assert_eq!(browser.post("/register", &forged).await.status, StatusCode::FORBIDDEN, "a wrong token");
    let stolen: Vec<(&str, &str)> = [("csrf", token.as_str())].into_iter().chain(fields).collect();
    assert_eq!(
        Browser::new(&server).post("/register", &stolen).await.status,
        StatusCode::FORBIDDEN,
        "no cookie"
    );

    // Nothing was created or mailed: a valid sign-up afterwards is the
    // only user and the only message.
    assert_eq!(
        sign_up(&mut browser, "/register", "yan@example.com", NEW_PASSWORD).await.status,
        StatusCode::OK
    );
    wait_for_mail(&server, "yan@example.com", 1).await;
    assert_eq!(server.count("SELECT COUNT(*) FROM users").await, 1);
    assert_eq!(outbox(&server).len(), 1);
});

db_test!(registration_can_be_turned_off_per_environment, |server| {
    let admin = server.admin_token().await;
    let mut browser = Browser::new(&server);
    let login = browser.get("/login").await;
    assert!(login.body.contains("Create an account"), "{}", login.body);
    let csrf = browser.csrf("/register").await;

    let set = |enabled: bool| {
        let body = json!({"data": {"type": "environment", "attributes": {"registration_enabled": enabled}}});
        server.api(Method::PATCH, "/api/environment", &admin, Some(body))
    };
    let (status, body) = set(false).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let page = browser.get("/register").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
    assert!(page.body.contains("Sign-up is not available"), "{}", page.body);
    let fields = [
        ("csrf", csrf.as_str()),
        ("email", "zoe@example.com"),
        ("password", NEW_PASSWORD),
        ("password_confirmation", NEW_PASSWORD),
    ];
    let page = browser.post("/register", &fields).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
    let login = browser.get("/login").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(!login.body.contains("Create an account"), "the login page hides the link");
    assert!(!login.body.contains("/register"), "{}", login.body);
    assert!(login.body.contains("Forgot your password?"));

    // Back on: the same form works again.
    let (status, body) = set(true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(browser.post("/register", &fields).await.status, StatusCode::OK);
    wait_for_mail(&server, "zoe@example.com", 1).await;
    assert_eq!(server.count("SELECT COUNT(*) FROM users").await, 1, "only the sign-up made while open");
});

db_test!(a_new_user_signs_in_through_the_flow_and_the_id_token_shows_the_confirmation, |server| {
    let admin = server.admin_token().await;
    let client = create_client(&server, &admin, json!({"first_party": true})).await;
    let mut browser = Browser::new(&server);
    let (verifier, challenge) = pkce();
    let login = browser
        .get(&authorize_path(&code_request(&client, "openid email", &challenge)))
        .await
        .redirect()
        .to_owned();
    let flow = query_of(&login)["flow"].clone();
    let page = browser.get(&login).await;
    assert!(page.body.contains("Create an account"), "{}", page.body);

    // Sign up from the login page, keeping the sign-in flow.
    let register = format!(
        "/register?{}",
        url::form_urlencoded::Serializer::new(String::new()).append_pair("flow", &flow).finish()
    );
    let form = browser.get(&register).await;
    assert_eq!(form.hidden("flow").as_deref(), Some(flow.as_str()), "the form carries the flow");
    let done = sign_up(&mut browser, &register, "zoe@example.com", NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Continue to sign in"), "{}", done.body);
    let link = wait_for_mail(&server, "zoe@example.com", 1).await.link(&server, "/confirm/");
    let user =
        find_user(&server, &admin, "zoe@example.com").await.unwrap()["id"].as_str().unwrap().to_owned();

    // Before confirming: signed in, but email_verified is false.
    let back = browser.log_in(&login, "zoe@example.com", NEW_PASSWORD).await;
    let code = query_of(back.redirect()).remove("code").expect("a code");
    let (status, tokens) = redeem(&server, &client, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let id = claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!((id["sub"].as_str(), id["email"].as_str()), (Some(user.as_str()), Some("zoe@example.com")));
    assert_eq!(id["email_verified"], false, "{id}");

    // After confirming, the next ID token says so.
    assert_eq!(confirm(&server, &link).await.status, StatusCode::OK);
    let (verifier, challenge) = pkce();
    let again = browser.get(&authorize_path(&code_request(&client, "openid email", &challenge))).await;
    let code = query_of(again.redirect()).remove("code").expect("signed in already");
    let (status, tokens) = redeem(&server, &client, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let id = claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["email_verified"], true, "{id}");
});

// ---- forgotten and reset passwords ---------------------------------------------

db_test!(forgot_password_does_not_tell_who_has_an_account, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    create_user(&server, &admin, json!({"email": "bob@example.com", "blocked": true})).await;

    let mut browser = Browser::new(&server);
    let form = browser.get("/password/forgot").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("Reset your password"));
    let unknown =
        browser.fill("/password/forgot", "/password/forgot", &[("email", "nobody@example.com")]).await;
    let blocked = browser.fill("/password/forgot", "/password/forgot", &[("email", "bob@example.com")]).await;
    let known = browser.fill("/password/forgot", "/password/forgot", &[("email", "ada@example.com")]).await;
    for page in [&unknown, &blocked, &known] {
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    }
    assert!(
        unknown
            .body
            .contains("If nobody@example.com has an account here, we sent it a link to reset the password."),
        "{}",
        unknown.body
    );
    assert_eq!(
        unknown.body.replace("nobody@example.com", "{email}"),
        known.body.replace("ada@example.com", "{email}"),
        "the same answer for every address"
    );
    assert_eq!(
        blocked.body.replace("bob@example.com", "{email}"),
        known.body.replace("ada@example.com", "{email}")
    );

    // Only the known, unblocked address gets mail (it was asked for last).
    let mail = wait_for_mail(&server, "ada@example.com", 1).await;
    assert!(mail.text.starts_with("Hello Ada,"), "{}", mail.text);
    assert!(mail.text.contains("expires in 1 hour"), "{}", mail.text);
    mail.link(&server, "/password/reset/");
    assert!(mails_to(&server, "nobody@example.com").is_empty(), "no mail to an unknown address");
    assert!(mails_to(&server, "bob@example.com").is_empty(), "no reset for a blocked user");
    assert_eq!(server.count("SELECT COUNT(*) FROM user_tokens").await, 1, "one link: ada's");

    // Not an address at all: asked again, nothing sent.
    let page = browser.fill("/password/forgot", "/password/forgot", &[("email", "ada")]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("Enter the email address of your account."), "{}", page.body);
    let page = browser.fill("/password/forgot", "/password/forgot", &[]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = browser.post("/password/forgot", &[("email", "ada@example.com")]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "CSRF applies");
});

db_test!(a_reset_link_sets_a_new_password_and_signs_out_everywhere, |server| {
    let admin = server.admin_token().await;
    let ada = create_person(&server, &admin, "ada@example.com").await;
    let client = create_client(&server, &admin, json!({"first_party": true})).await;
    let mut signed_in = Browser::new(&server);
    let refresh_before = refresh_token(&server, &mut signed_in, &client, "ada@example.com").await;

    let link = reset_link(&server, "ada@example.com", 1).await;
    let mut browser = Browser::new(&server);
    let form = browser.get(&link).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(form.body.contains("Choose a new password"), "{}", form.body);

    // Refused passwords leave the link usable.
    let weak = reset(&server, &link, "password123", "password123").await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST, "{}", weak.body);
    assert!(weak.body.contains("password is too common"), "{}", weak.body);
    let short = reset(&server, &link, "abc", "abc").await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert!(short.body.contains("password must be at least 8 characters"), "{}", short.body);
    let mismatch = reset(&server, &link, NEW_PASSWORD, "something else entirely").await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    assert!(mismatch.body.contains("password confirmation does not match password"), "{}", mismatch.body);
    assert_eq!(browser.get(&link).await.status, StatusCode::OK, "the link still works");
    assert_eq!(
        login_status(&server, "ada@example.com", PASSWORD).await,
        StatusCode::OK,
        "nothing changed yet"
    );

    let done = reset(&server, &link, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Your password has been changed"), "{}", done.body);
    assert_eq!(login_status(&server, "ada@example.com", PASSWORD).await, StatusCode::UNAUTHORIZED);
    assert_eq!(login_status(&server, "ada@example.com", NEW_PASSWORD).await, StatusCode::OK);

    // Every earlier session and refresh token ended.
    let (status, body) = refresh(&server, &client, &refresh_before).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    let page = signed_in.get("/password/change").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "the old browser session is over");
    assert_user_event(&server, &admin, "user.password_reset", &ada).await;
    let user = find_user(&server, &admin, "ada@example.com").await.unwrap();
    assert_eq!(user["attributes"]["email_verified"], true, "the link reached the address: {user}");

    // The link is spent.
    let page = browser.get(&link).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains(EXPIRED), "{}", page.body);
    let fields = [("password", "another fine password"), ("password_confirmation", "another fine password")];
    let page = post_to_link(&server, &link, &fields).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert_eq!(login_status(&server, "ada@example.com", NEW_PASSWORD).await, StatusCode::OK);
});

db_test!(a_new_reset_request_voids_the_previous_link_and_links_expire, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let first = reset_link(&server, "ada@example.com", 1).await;
    let second = reset_link(&server, "ada@example.com", 2).await;
    assert_ne!(first, second);
    let page = Browser::new(&server).get(&first).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "the first link was voided");
    assert!(page.body.contains(EXPIRED));
    assert_eq!(
        post_to_link(&server, &first, &[("password", NEW_PASSWORD), ("password_confirmation", NEW_PASSWORD)])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(Browser::new(&server).get(&second).await.status, StatusCode::OK);

    expire_links(&server, "password_reset").await;
    let page = Browser::new(&server).get(&second).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "an expired link");
    assert!(page.body.contains(EXPIRED));
    assert_eq!(
        post_to_link(
            &server,
            &second,
            &[("password", NEW_PASSWORD), ("password_confirmation", NEW_PASSWORD)]
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(login_status(&server, "ada@example.com", PASSWORD).await, StatusCode::OK, "unchanged");
    assert_eq!(login_status(&server, "ada@example.com", NEW_PASSWORD).await, StatusCode::UNAUTHORIZED);
});

db_test!(a_locked_out_user_signs_in_again_after_a_reset, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let mut browser = Browser::new(&server);
    for _ in 0..4 {
        assert_eq!(
            browser.log_in("/login", "ada@example.com", "wrong password").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let locked = browser.log_in("/login", "ada@example.com", "wrong password").await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "the fifth failure locks");
    assert_eq!(login_status(&server, "ada@example.com", PASSWORD).await, StatusCode::TOO_MANY_REQUESTS);

    let link = reset_link(&server, "ada@example.com", 1).await;
    assert_eq!(reset(&server, &link, NEW_PASSWORD, NEW_PASSWORD).await.status, StatusCode::OK);
    let page = browser.log_in("/login", "ada@example.com", NEW_PASSWORD).await;
    assert_eq!(page.status, StatusCode::OK, "the reset ended the lockout: {}", page.body);
    assert!(page.body.contains("Signed in as ada@example.com"), "{}", page.body);
});

// ---- password change -------------------------------------------------------------

db_test!(changing_the_password_keeps_this_session_and_ends_the_others, |server| {
    let admin = server.admin_token().await;
    let ada = create_person(&server, &admin, "ada@example.com").await;
    let client = create_client(&server, &admin, json!({"first_party": true})).await;

    // Without a session: sign in first.
    let mut anonymous = Browser::new(&server);
    let page = anonymous.get("/password/change").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
    assert!(page.body.contains("Sign in first"), "{}", page.body);
    let csrf = anonymous.csrf("/login").await;
    let fields = [
        ("csrf", csrf.as_str()),
        ("current_password", PASSWORD),
        ("password", NEW_PASSWORD),
        ("password_confirmation", NEW_PASSWORD),
    ];
    assert_eq!(anonymous.post("/password/change", &fields).await.status, StatusCode::UNAUTHORIZED);

    let mut here = Browser::new(&server);
    let mut elsewhere = Browser::new(&server);
    let refresh_here = refresh_token(&server, &mut here, &client, "ada@example.com").await;
    let refresh_elsewhere = refresh_token(&server, &mut elsewhere, &client, "ada@example.com").await;
    let form = here.get("/password/change").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(form.body.contains("Signed in as ada@example.com"), "{}", form.body);

    let change = |current: &'static str, new: &'static str, confirmation: &'static str| {
        [("current_password", current), ("password", new), ("password_confirmation", confirmation)]
    };
    let wrong = here
        .fill("/password/change", "/password/change", &change("not my password", NEW_PASSWORD, NEW_PASSWORD))
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.body);
    assert!(wrong.body.contains("the current password is incorrect"), "{}", wrong.body);
    assert!(wrong.body.contains("id=\"current_password-error\""));
    let weak = here
        .fill("/password/change", "/password/change", &change(PASSWORD, "Password123", "Password123"))
        .await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST, "{}", weak.body);
    assert!(weak.body.contains("password is too common"), "{}", weak.body);
    let mismatch = here
        .fill("/password/change", "/password/change", &change(PASSWORD, NEW_PASSWORD, "violet lantern"))
        .await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    assert!(mismatch.body.contains("password confirmation does not match password"), "{}", mismatch.body);
    assert!(audit_events(&server, &admin, "user.password_changed").await.is_empty());
    let forged =
        [("current_password", PASSWORD), ("password", NEW_PASSWORD), ("password_confirmation", NEW_PASSWORD)];
    assert_eq!(here.post("/password/change", &forged).await.status, StatusCode::FORBIDDEN, "CSRF applies");
    assert_eq!(
        login_status(&server, "ada@example.com", PASSWORD).await,
        StatusCode::OK,
        "nothing changed yet"
    );

    let done = here
        .fill("/password/change", "/password/change", &change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD))
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Your password has been changed"), "{}", done.body);

    // This browser stays signed in; the other session ended, with its tokens.
    assert_eq!(here.get("/password/change").await.status, StatusCode::OK);
    assert_eq!(elsewhere.get("/password/change").await.status, StatusCode::UNAUTHORIZED);
    let (status, body) = refresh(&server, &client, &refresh_elsewhere).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    let (status, body) = refresh(&server, &client, &refresh_here).await;
    assert_eq!(status, StatusCode::OK, "this session's refresh token still works: {body}");

    assert_eq!(login_status(&server, "ada@example.com", PASSWORD).await, StatusCode::UNAUTHORIZED);
    assert_eq!(login_status(&server, "ada@example.com", NEW_PASSWORD).await, StatusCode::OK);
    assert_user_event(&server, &admin, "user.password_changed", &ada).await;
});

db_test!(a_password_change_voids_a_pending_reset_link, |server| {
    let admin = server.admin_token().await;
    create_person(&server, &admin, "ada@example.com").await;
    let link = reset_link(&server, "ada@example.com", 1).await;
    let mut browser = Browser::new(&server);
    assert_eq!(browser.log_in("/login", "ada@example.com", PASSWORD).await.status, StatusCode::OK);
    let fields =
        [("current_password", PASSWORD), ("password", NEW_PASSWORD), ("password_confirmation", NEW_PASSWORD)];
    assert_eq!(browser.fill("/password/change", "/password/change", &fields).await.status, StatusCode::OK);
    let page = Browser::new(&server).get(&link).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(page.body.contains(EXPIRED));
});

// ---- the Management API ----------------------------------------------------------

db_test!(the_management_api_applies_the_password_policy_and_voids_links, |server| {
    let admin = server.admin_token().await;
    let attempt = |password: &'static str, confirmation: &'static str| {
        let attributes =
            json!({"email": "lee@example.com", "password": password, "password_confirmation": confirmation});
        server.api(
            Method::POST,
            "/api/users",
            &admin,
            Some(json!({"data": {"type": "user", "attributes": attributes}})),
        )
    };
    for password in ["password123", "Qwertyuiop", "PASSWORD123"] {
        let (status, body) = attempt(password, password).await;
        assert_invalid(status, &body, "password");
        assert!(body["errors"][0]["detail"].as_str().unwrap().contains("too common"), "{body}");
    }
    let (status, body) = attempt("short", "short").await;
    assert_invalid(status, &body, "password");
    let (status, body) = attempt(NEW_PASSWORD, "something else").await;
    assert_invalid(status, &body, "password_confirmation");
    assert!(find_user(&server, &admin, "lee@example.com").await.is_none());

    // Changing a password through the API follows the same policy.
    let ada = create_person(&server, &admin, "ada@example.com").await;
    let path = format!("/api/users/{ada}");
    let patch =
        |attributes: Value| Some(json!({"data": {"type": "user", "id": ada, "attributes": attributes}}));
    let (status, body) = server
        .api(
            Method::PATCH,
            &path,
            &admin,
            patch(json!({"password": "iloveyou1", "password_confirmation": "iloveyou1"})),
        )
        .await;
    assert_invalid(status, &body, "password");

    // A new password voids a pending reset link.
    let link = reset_link(&server, "ada@example.com", 1).await;
    let set = json!({"password": NEW_PASSWORD, "password_confirmation": NEW_PASSWORD});
    let (status, body) = server.api(Method::PATCH, &path, &admin, patch(set)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(Browser::new(&server).get(&link).await.status, StatusCode::BAD_REQUEST, "reset link voided");
    assert_eq!(login_status(&server, "ada@example.com", NEW_PASSWORD).await, StatusCode::OK);

    // A new address voids the confirmation link mailed to the old one.
    let link = sign_up_and_get_link(&server, "zoe@example.com").await;
    let zoe = find_user(&server, &admin, "zoe@example.com").await.unwrap()["id"].as_str().unwrap().to_owned();
    let body = json!({"data": {"type": "user", "id": zoe, "attributes": {"email": "zoe.new@example.com"}}});
    let (status, body) = server.api(Method::PATCH, &format!("/api/users/{zoe}"), &admin, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page = post_to_link(&server, &link, &[]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "the old address's link: {}", page.body);
    let user = find_user(&server, &admin, "zoe.new@example.com").await.unwrap();
    assert_eq!(user["attributes"]["email_verified"], false, "{user}");

    // Other changes keep the link.
    let other = sign_up_and_get_link(&server, "yan@example.com").await;
    let yan = find_user(&server, &admin, "yan@example.com").await.unwrap()["id"].as_str().unwrap().to_owned();
    let body = json!({"data": {"type": "user", "id": yan, "attributes": {"first_name": "Yan", "email": "YAN@example.com"}}});
    let (status, body) = server.api(Method::PATCH, &format!("/api/users/{yan}"), &admin, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page = confirm(&server, &other).await;
    assert_eq!(page.status, StatusCode::OK, "a name or case change keeps the link: {}", page.body);
    assert!(page.body.contains("YAN@example.com is confirmed"), "{}", page.body);
});
