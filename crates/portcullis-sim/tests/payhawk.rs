//! The Payhawk simulator over real HTTP, against the contract in
//! `../shared/spec/connectors.md` §4 and §6.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus, Uri};
use axum::routing::post;
use portcullis_sim::common::{Fault, FaultRule, Running, serve};
use portcullis_sim::payhawk::{
    AccountSeed, CardAction, CardStatus, Config, DEFAULT_ACCOUNT, DEFAULT_API_KEY, NewCard, NewExpense,
    NewTeam, NewUser, PayhawkSim, RateLimitHeaders, ResetStyle, UserStatus, WebhookSigning, error_body, iso,
};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

const ACCOUNT: &str = DEFAULT_ACCOUNT;
const KEY: &str = DEFAULT_API_KEY;
const OTHER: &str = "acme_ltd_1234abcd";
const OTHER_KEY: &str = "acme-api-key";

struct Api {
    sim: Arc<PayhawkSim>,
    running: Running,
    http: Client,
}

impl Api {
    async fn start(config: Config) -> Api {
        let (sim, running) = PayhawkSim::start(config, 0).await.unwrap();
        Api { sim, running, http: Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base_url())
    }

    /// A path under the default account.
    fn v3(&self, path: &str) -> String {
        self.url(&format!("/api/v3/accounts/{ACCOUNT}{path}"))
    }

    fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(self.v3(path)).header("X-Payhawk-ApiKey", KEY)
    }

    fn post(&self, path: &str, body: Value) -> RequestBuilder {
        self.http.post(self.v3(path)).header("X-Payhawk-ApiKey", KEY).json(&body)
    }

    fn patch(&self, path: &str, body: Value) -> RequestBuilder {
        self.http.patch(self.v3(path)).header("X-Payhawk-ApiKey", KEY).json(&body)
    }

    fn delete(&self, path: &str) -> RequestBuilder {
        self.http.delete(self.v3(path)).header("X-Payhawk-ApiKey", KEY)
    }

    fn fault(&self, operation: &str, fault: Fault) {
        self.sim.faults().add(FaultRule { operation: operation.into(), fault, times: 1 });
    }

    fn user(&self, email: &str) -> String {
        let (first, last) = email.split_once('@').unwrap();
        let new = NewUser {
            email: email.into(),
            first_name: first.into(),
            last_name: last.into(),
            role: "employee".into(),
            ..NewUser::default()
        };
        self.sim.seed_user(ACCOUNT, new).unwrap().id
    }

    fn card(&self, user_id: &str, reassignable: bool, status: CardStatus) -> String {
        let new =
            NewCard { user_id: user_id.into(), reassignable, status: Some(status), ..NewCard::default() };
        self.sim.seed_card(ACCOUNT, new).unwrap().id
    }

    fn card_status(&self, id: &str) -> CardStatus {
        self.sim.cards(ACCOUNT).into_iter().find(|c| c.id == id).unwrap().status
    }
}

/// Rate limits off, for tests that are not about them and send many requests.
fn quiet() -> Config {
    Config { rate_limits: false, ..Config::default() }
}

fn two_accounts(config: Config) -> Config {
    let accounts = vec![
        AccountSeed { id: ACCOUNT.into(), api_keys: vec![KEY.into()] },
        AccountSeed { id: OTHER.into(), api_keys: vec![OTHER_KEY.into()] },
    ];
    Config { accounts, ..config }
}

/// Status and JSON body (`Null` when the body is empty).
async fn send(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
    (status, body)
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

fn ids(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
}

fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn invite(email: &str, role: &str) -> Value {
    json!({"email": email, "firstName": "Ada", "lastName": "Lovelace", "role": role})
}

// ---------------------------------------------------------------------------
// Auth

#[tokio::test]
async fn requests_need_the_api_key_bound_to_the_account_they_name() {
    let api = Api::start(two_accounts(Config::default())).await;
    let users = api.v3("/users");

    let (status, body) = send(api.http.get(&users)).await;
    assert_eq!(
        (status, body),
        (StatusCode::UNAUTHORIZED, error_body("AUTHENTICATION_FAILED", "Missing API key"))
    );

    let response = api.http.get(&users).header("X-Payhawk-ApiKey", "not-a-key").send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(header(&response, "x-ratelimit-limit"), None, "no account to count a 401 against");
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        error_body("AUTHENTICATION_FAILED", "Invalid API key")
    );

    // Another account's key: the account exists, but not for this key.
    let response = api.http.get(&users).header("X-Payhawk-ApiKey", OTHER_KEY).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(header(&response, "x-ratelimit-limit"), Some("15"));
    assert_eq!(response.json::<Value>().await.unwrap()["code"], "PERMISSION_DENIED");

    let (status, body) = send(api.get("/users")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"items": [], "total": 0})));

    // Bearer is Stitchflow's claim [I]: refused unless switched on.
    assert_eq!(send(api.http.get(&users).bearer_auth(KEY)).await.0, 401);

    let log = api.sim.log().entries();
    let statuses: Vec<u16> = log.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [401, 401, 403, 200, 401]);
    assert_eq!(log[3].header("x-payhawk-apikey"), Some(KEY));
    assert_eq!(log[4].header("authorization"), Some(format!("Bearer {KEY}").as_str()));
}

#[tokio::test]
async fn a_foreign_account_can_answer_404_and_bearer_can_be_accepted() {
    let config = Config { wrong_account_status: 404, accept_bearer: true, ..two_accounts(Config::default()) };
    let api = Api::start(config).await;
    let request = api.http.get(api.v3("/users")).header("X-Payhawk-ApiKey", OTHER_KEY);
    let (status, body) = send(request).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("RESOURCE_NOT_FOUND")));
    assert_eq!(send(api.http.get(api.v3("/users")).bearer_auth(KEY)).await.0, 200);
    assert_eq!(send(api.http.get(api.v3("/users")).bearer_auth("wrong")).await.0, 401);
    // A key for an account that does not exist is the same as a foreign one.
    let request = api.http.get(api.url("/api/v3/accounts/nobody/users")).header("X-Payhawk-ApiKey", KEY);
    assert_eq!(send(request).await.0, 404);
}

// ---------------------------------------------------------------------------
// Rate limits

#[tokio::test]
async fn fifteen_requests_per_second_per_account_then_429_with_retry_after() {
    let api = Api::start(two_accounts(Config::default())).await;
    for i in 0..15 {
        let response = api.get("/cards").send().await.unwrap();
        assert_eq!(response.status(), 200, "request {i}");
        assert_eq!(header(&response, "x-ratelimit-limit"), Some("15"));
        assert_eq!(header(&response, "x-ratelimit-remaining"), Some((14 - i).to_string().as_str()));
    }
    let limited = api.get("/cards").send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(header(&limited, "retry-after"), Some("1"));
    assert_eq!(header(&limited, "x-ratelimit-remaining"), Some("0"));
    let reset: i64 = header(&limited, "x-ratelimit-reset").unwrap().parse().unwrap();
    let now = api.sim.clock().now();
    assert!((now..=now + 2).contains(&reset), "reset {reset} is a Unix time about 1 s away from {now}");
    assert_eq!(limited.json::<Value>().await.unwrap()["code"], "RATE_LIMIT_EXCEEDED");

    // Another account has its own budget.
    let other = api.http.get(api.url(&format!("/api/v3/accounts/{OTHER}/cards")));
    let response = other.header("X-Payhawk-ApiKey", OTHER_KEY).send().await.unwrap();
    assert_eq!((response.status(), header(&response, "x-ratelimit-remaining")), (StatusCode::OK, Some("14")));

    // The window slides: a second later the account may call again.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(api.get("/cards").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn rate_limit_header_names_reset_style_and_retry_after_are_switches() {
    let names = RateLimitHeaders {
        limit: "RateLimit-Limit".into(),
        remaining: "RateLimit-Remaining".into(),
        reset: "RateLimit-Reset".into(),
    };
    let config = Config {
        requests_per_second: 2,
        rate_limit_headers: Some(names),
        reset_header: ResetStyle::DeltaSeconds,
        retry_after: false,
        ..Config::default()
    };
    let api = Api::start(config).await;
    let first = api.get("/users").send().await.unwrap();
    assert_eq!(header(&first, "ratelimit-limit"), Some("2"));
    assert_eq!(header(&first, "ratelimit-remaining"), Some("1"));
    assert_eq!(header(&first, "ratelimit-reset"), Some("0"), "budget left: nothing to wait for");
    assert_eq!(header(&first, "x-ratelimit-limit"), None);
    let second = api.get("/users").send().await.unwrap();
    assert_eq!(header(&second, "ratelimit-reset"), Some("1"), "seconds until a slot frees");
    let limited = api.get("/users").send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(header(&limited, "retry-after"), None);
    assert_eq!(header(&limited, "ratelimit-reset"), Some("1"));

    let api = Api::start(Config { rate_limit_headers: None, ..Config::default() }).await;
    let response = api.get("/users").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(!response.headers().keys().any(|name| name.as_str().contains("ratelimit")));
}

// ---------------------------------------------------------------------------
// Users

#[tokio::test]
async fn invites_create_pending_users_and_updates_change_role_and_external_id() {
    let api = Api::start(quiet()).await;
    let (status, user) = send(api.post("/users", invite("Ada@Example.com", "employee"))).await;
    assert_eq!(status, 200);
    let id = user["id"].as_str().unwrap().to_owned();
    assert!(!id.is_empty());
    assert_eq!(user["status"], "invited");
    assert_eq!(
        (user["email"].as_str(), user["role"].as_str(), user["lastName"].as_str()),
        (Some("Ada@Example.com"), Some("employee"), Some("Lovelace"))
    );
    assert_eq!(user["externalId"], Value::Null);
    assert_eq!(user["createdAt"], iso(api.sim.user(ACCOUNT, &id).unwrap().created_at));
    assert_eq!(send(api.get(&format!("/users/{id}"))).await, (StatusCode::OK, user.clone()));

    // Emails are unique per account, whatever their case.
    let (status, body) = send(api.post("/users", invite("ada@EXAMPLE.com", "admin"))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("CONFLICT")));
    // `administrator` is Torii's UI label, not a wire role [T].
    let (status, body) = send(api.post("/users", invite("bob@example.com", "administrator"))).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "VALIDATION_ERROR");
    assert!(body["message"].as_str().unwrap().contains("admin, accounting, employee"), "{body}");
    let mut missing = invite("bob@example.com", "employee");
    missing.as_object_mut().unwrap().remove("lastName");
    assert_eq!(send(api.post("/users", missing)).await.0, 400);
    let mut extra = invite("bob@example.com", "employee");
    extra["externalId"] = json!("hr-2");
    assert_eq!(send(api.post("/users", extra)).await.0, 400, "not in the Swagger's invite");
    assert_eq!(send(api.post("/users", invite("not-an-email", "employee"))).await.0, 400);
    assert_eq!(api.sim.users(ACCOUNT).len(), 1, "no failed invite created a user");

    let path = format!("/users/{id}");
    let (status, body) = send(api.patch(&path, json!({"role": "admin", "externalId": "hr-1"}))).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (_, user) = send(api.get(&path)).await;
    assert_eq!((user["role"].as_str(), user["externalId"].as_str()), (Some("admin"), Some("hr-1")));
    assert_eq!(
        send(api.patch(&path, json!({"firstName": "Augusta"}))).await.0,
        400,
        "not in the Swagger's patch"
    );
    assert_eq!(send(api.patch(&path, json!({"role": "owner"}))).await.0, 400);
    assert_eq!(send(api.patch(&path, json!({"externalId": null}))).await.0, 204);
    let (_, user) = send(api.get(&path)).await;
    assert_eq!((user["externalId"].clone(), user["firstName"].as_str()), (Value::Null, Some("Ada")));
    assert_eq!(send(api.patch("/users/nobody", json!({"role": "admin"}))).await.0, 404);
    assert_eq!(send(api.get("/users/nobody")).await.0, 404);

    // Accepting the invite happens outside the API.
    assert!(api.sim.accept_invite(ACCOUNT, &id));
    assert!(!api.sim.accept_invite(ACCOUNT, &id), "only an invited user can accept");
    let (_, user) = send(api.get(&path)).await;
    assert_eq!(user["status"], "active");
}

#[tokio::test]
async fn custom_roles_and_extended_user_fields_are_switches() {
    let config = Config { custom_roles: vec!["travel-booker".into()], extended_user_fields: true, ..quiet() };
    let api = Api::start(config).await;
    let mut body = invite("cy@example.com", "travel-booker");
    body["department"] = json!("Ops");
    let (status, user) = send(api.post("/users", body)).await;
    assert_eq!(
        (status, user["role"].as_str(), user["department"].as_str()),
        (StatusCode::OK, Some("travel-booker"), Some("Ops"))
    );
    let path = format!("/users/{}", user["id"].as_str().unwrap());
    let change = json!({"firstName": "Cyrus", "lastName": "Smith", "department": ""});
    assert_eq!(send(api.patch(&path, change)).await.0, 204);
    let (_, user) = send(api.get(&path)).await;
    assert_eq!((user["firstName"].as_str(), user["lastName"].as_str()), (Some("Cyrus"), Some("Smith")));
    assert_eq!(user["department"], Value::Null, "an empty string clears");
    assert_eq!(send(api.post("/users", invite("dee@example.com", "administrator"))).await.0, 400);
}

#[tokio::test]
async fn removal_blocks_reassignable_cards_and_closes_the_rest_by_default() {
    let api = Api::start(quiet()).await;
    let ada = api.user("ada@example.com");
    let bob = api.user("bob@example.com");
    let company = api.card(&ada, true, CardStatus::Active);
    let personal = api.card(&ada, false, CardStatus::Active);
    let frozen = api.card(&ada, false, CardStatus::Blocked);
    let old = api.card(&ada, true, CardStatus::Closed);
    let bobs = api.card(&bob, false, CardStatus::Active);
    let team = api.sim.seed_team(ACCOUNT, NewTeam { name: "Ops".into(), ..NewTeam::default() }).unwrap().id;
    for member in [&ada, &bob] {
        let body = json!({"memberId": member, "roles": ["employee"]});
        assert_eq!(send(api.post(&format!("/teams/{team}/members"), body)).await.0, 200);
    }

    let (_, cards) = send(api.get(&format!("/cards?userId={ada}"))).await;
    assert_eq!(
        (ids(&cards), cards["total"].as_u64()),
        (vec![company.clone(), personal.clone(), frozen.clone(), old.clone()], Some(4))
    );
    assert_eq!(cards["items"][0]["reassignable"], true);
    assert_eq!(cards["items"][0]["status"], "active");

    assert_eq!(send(api.delete(&format!("/users/{ada}"))).await, (StatusCode::NO_CONTENT, Value::Null));
    let (_, cards) = send(api.get(&format!("/cards?userId={ada}"))).await;
    let statuses: Vec<&str> =
        cards["items"].as_array().unwrap().iter().map(|c| c["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["blocked", "closed", "closed", "closed"], "an already closed card stays closed");
    assert_eq!(api.card_status(&bobs), CardStatus::Active, "other users' cards are untouched");
    let filter = query(&[("$filter", r#"{"status":"blocked"}"#)]);
    assert_eq!(ids(&send(api.get(&format!("/cards?{filter}"))).await.1), [company]);

    assert_eq!(api.sim.user(ACCOUNT, &ada).unwrap().status, UserStatus::Removed);
    assert_eq!(ids(&send(api.get("/users")).await.1), std::slice::from_ref(&bob));
    for request in [
        api.get(&format!("/users/{ada}")),
        api.delete(&format!("/users/{ada}")),
        api.patch(&format!("/users/{ada}"), json!({"role": "admin"})),
    ] {
        assert_eq!(send(request).await.0, 404);
    }
    let (_, members) = send(api.get(&format!("/teams/{team}/members"))).await;
    assert_eq!(
        members["items"],
        json!([{"memberId": bob, "roles": ["employee"]}]),
        "a removed user leaves teams"
    );
    // A removed user's email may be invited again.
    assert_eq!(send(api.post("/users", invite("ada@example.com", "employee"))).await.0, 200);
}

#[tokio::test]
async fn the_card_action_parameter_and_its_default_choose_the_side_effect() {
    use CardStatus::{Active, Blocked, Closed};
    let api = Api::start(quiet()).await;
    for (action, expected) in [
        ("close_all", [Closed, Closed]),
        ("keep", [Active, Active]),
        ("block_reassignable_close_rest", [Blocked, Closed]),
    ] {
        let user = api.user(&format!("{action}@example.com"));
        let cards = [api.card(&user, true, Active), api.card(&user, false, Active)];
        let path = format!("/users/{user}?cardAction={action}");
        assert_eq!(send(api.delete(&path)).await.0, 204, "{action}");
        assert_eq!(cards.map(|c| api.card_status(&c)), expected, "{action}");
    }
    let user = api.user("eve@example.com");
    let card = api.card(&user, true, Active);
    let (status, body) = send(api.delete(&format!("/users/{user}?cardAction=shred"))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR")));
    assert_eq!(api.sim.user(ACCOUNT, &user).unwrap().status, UserStatus::Active, "nothing removed");
    assert_eq!(api.card_status(&card), Active);

    let api = Api::start(Config { default_card_action: CardAction::CloseAll, ..quiet() }).await;
    let user = api.user("fay@example.com");
    let card = api.card(&user, true, Active);
    assert_eq!(send(api.delete(&format!("/users/{user}"))).await.0, 204);
    assert_eq!(api.card_status(&card), Closed);
}

#[tokio::test]
async fn user_lists_page_with_skip_and_take_and_leave_removed_users_out() {
    let api = Api::start(quiet()).await;
    let all: Vec<String> = (0..25).map(|i| api.user(&format!("u{i:02}@example.com"))).collect();
    assert!(api.sim.remove_user(ACCOUNT, &all[3], CardAction::Keep));
    assert!(api.sim.remove_user(ACCOUNT, &all[17], CardAction::Keep));
    let expected: Vec<String> =
        all.iter().enumerate().filter(|(i, _)| ![3, 17].contains(i)).map(|(_, id)| id.clone()).collect();

    let (mut seen, mut sizes) = (Vec::new(), Vec::new());
    for skip in [0, 10, 20] {
        let (status, page) = send(api.get(&format!("/users?$skip={skip}&$take=10"))).await;
        assert_eq!((status, page["total"].as_u64()), (StatusCode::OK, Some(23)));
        sizes.push(page["items"].as_array().unwrap().len());
        seen.extend(ids(&page));
    }
    assert_eq!(sizes, [10, 10, 3]);
    assert_eq!(seen, expected);
    assert_eq!(ids(&send(api.get("/users")).await.1), expected, "without $take, every user");
    assert!(ids(&send(api.get("/users?$skip=40")).await.1).is_empty());

    let filter = query(&[("$filter", r#"{"email":"U05@EXAMPLE.COM"}"#)]);
    let (_, page) = send(api.get(&format!("/users?{filter}"))).await;
    assert_eq!((ids(&page), page["total"].as_u64()), (vec![all[5].clone()], Some(1)));
    let filter = query(&[("$filter", r#"{"email":"u03@example.com"}"#)]);
    assert_eq!(send(api.get(&format!("/users?{filter}"))).await.1["total"], 0, "removed users do not match");
    for bad in ["$skip=-1", "$take=x", "$filter=nope", "$filter=%7B%22name%22%3A%22x%22%7D"] {
        assert_eq!(send(api.get(&format!("/users?{bad}"))).await.0, 400, "{bad}");
    }

    let api = Api::start(Config { show_removed_users: true, ..quiet() }).await;
    let kept = api.user("kept@example.com");
    let gone = api.user("gone@example.com");
    assert!(api.sim.remove_user(ACCOUNT, &gone, CardAction::Keep));
    let (_, page) = send(api.get("/users")).await;
    assert_eq!(
        (ids(&page), page["items"][1]["status"].as_str()),
        (vec![kept, gone.clone()], Some("removed"))
    );
    assert_eq!(send(api.get(&format!("/users/{gone}"))).await.0, 200);
}

// ---------------------------------------------------------------------------
// Expenses, teams

#[tokio::test]
async fn expenses_filter_by_owner_and_creation_day_and_the_latest_is_a_last_seen_signal() {
    let api = Api::start(quiet()).await;
    let ada = api.user("ada@example.com");
    let bob = api.user("bob@example.com");
    let day = 1_711_411_200; // 2024-03-26T00:00:00Z
    let expense = |user: &str, created_at: i64| {
        let new = NewExpense {
            user_id: user.into(),
            amount: 10.0,
            created_at: Some(created_at),
            ..NewExpense::default()
        };
        api.sim.seed_expense(ACCOUNT, new).unwrap().id
    };
    let e1 = expense(&ada, day + 10 * 3600);
    let e2 = expense(&bob, day + 86_400);
    let e3 = expense(&ada, day + 2 * 86_400 + 23 * 3600);
    let e4 = expense(&ada, day - 86_400);
    assert_eq!([&e1, &e2, &e3, &e4], ["1", "2", "3", "4"], "numeric ids, as in Payhawk's webhooks");

    let (status, list) = send(api.get(&format!("/expenses?userId={ada}"))).await;
    assert_eq!(
        (status, ids(&list), list["total"].as_u64()),
        (StatusCode::OK, vec![e4.clone(), e1.clone(), e3.clone()], Some(3))
    );
    let item = &list["items"][1];
    assert_eq!(
        (item["createdAt"].as_str(), item["document"]["date"].as_str()),
        (Some("2024-03-26T10:00:00Z"), Some("2024-03-26"))
    );
    assert_eq!(
        (item["createdBy"]["id"].as_str(), item["createdBy"]["email"].as_str()),
        (Some(ada.as_str()), Some("ada@example.com"))
    );

    // Dates compare by day [T]: 10:00 on the 26th is "$gte" 23:59:59 on the 26th.
    let filter = format!(r#"{{"userId":"{ada}","createdAt":{{"$gte":"2024-03-26T23:59:59.000Z"}}}}"#);
    assert_eq!(
        ids(&send(api.get(&format!("/expenses?{}", query(&[("$filter", &filter)])))).await.1),
        [e1, e3.clone()]
    );
    let filter = query(&[("$filter", r#"{"createdAt":{"$equal":"2024-03-27"}}"#)]);
    assert_eq!(ids(&send(api.get(&format!("/expenses?{filter}"))).await.1), [e2]);
    let filter = query(&[("$filter", r#"{"createdAt":{"$lt":"2024-03-26"}}"#)]);
    assert_eq!(ids(&send(api.get(&format!("/expenses?{filter}"))).await.1), [e4]);

    // The hub's "last seen": the owner's newest expense.
    let latest = query(&[
        ("$filter", &format!(r#"{{"userId":"{ada}"}}"#)),
        ("$orderBy", r#"{"createdAt":"desc"}"#),
        ("$take", "1"),
    ]);
    let (_, list) = send(api.get(&format!("/expenses?{latest}"))).await;
    assert_eq!((ids(&list), list["total"].as_u64()), (vec![e3], Some(3)));
    assert_eq!(list["items"][0]["createdAt"], "2024-03-28T23:00:00Z");

    for bad in [
        query(&[("$orderBy", r#"{"amount":"desc"}"#)]),
        query(&[("$filter", r#"{"createdAt":{"$after":"2024-03-26"}}"#)]),
        query(&[("$filter", r#"{"createdAt":"26/03/2024"}"#)]),
    ] {
        assert_eq!(send(api.get(&format!("/expenses?{bad}"))).await.0, 400, "{bad}");
    }
}

#[tokio::test]
async fn team_members_carry_employee_or_manager_roles() {
    let api = Api::start(quiet()).await;
    let ada = api.user("ada@example.com");
    let team = api
        .sim
        .seed_team(
            ACCOUNT,
            NewTeam { name: "Finance".into(), external_id: Some("fin".into()), ..NewTeam::default() },
        )
        .unwrap();
    let (_, teams) = send(api.get("/teams")).await;
    assert_eq!(
        teams["items"],
        json!([{"id": team.id, "name": "Finance", "externalId": "fin", "parentId": null}])
    );

    let members = format!("/teams/{}/members", team.id);
    let (status, member) = send(api.post(&members, json!({"memberId": ada, "roles": ["manager"]}))).await;
    assert_eq!((status, member), (StatusCode::OK, json!({"memberId": ada, "roles": ["manager"]})));
    assert_eq!(
        send(api.post(&members, json!({"memberId": ada, "roles": ["employee", "manager"]}))).await.0,
        200
    );
    let (_, list) = send(api.get(&members)).await;
    assert_eq!(
        list["items"],
        json!([{"memberId": ada, "roles": ["employee", "manager"]}]),
        "re-adding replaces roles"
    );

    assert_eq!(send(api.post(&members, json!({"memberId": ada, "roles": ["owner"]}))).await.0, 400);
    assert_eq!(send(api.post(&members, json!({"memberId": ada, "roles": []}))).await.0, 400);
    assert_eq!(send(api.post(&members, json!({"memberId": "nobody", "roles": ["employee"]}))).await.0, 404);
    assert_eq!(
        send(api.post("/teams/nope/members", json!({"memberId": ada, "roles": ["employee"]}))).await.0,
        404
    );
    assert_eq!(send(api.delete(&format!("{members}/{ada}"))).await.0, 204);
    assert_eq!(send(api.delete(&format!("{members}/{ada}"))).await.0, 404);
    assert!(api.sim.teams(ACCOUNT)[0].members.is_empty());
}

// ---------------------------------------------------------------------------
// Webhooks

#[derive(Clone, Default)]
struct Inbox {
    deliveries: Arc<Mutex<Vec<(String, HeaderMap, String)>>>,
    /// Answer 500 to this many deliveries first.
    failures: Arc<AtomicUsize>,
}

async fn receive(State(inbox): State<Inbox>, uri: Uri, headers: HeaderMap, body: String) -> AxumStatus {
    inbox.deliveries.lock().unwrap().push((uri.to_string(), headers, body));
    let fail = inbox.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    if fail { AxumStatus::INTERNAL_SERVER_ERROR } else { AxumStatus::OK }
}

async fn receiver(failures: usize) -> (Inbox, Running) {
    let inbox = Inbox { failures: Arc::new(AtomicUsize::new(failures)), ..Inbox::default() };
    let router = axum::Router::new()
        .route("/hook", post(receive))
        .route("/other", post(receive))
        .with_state(inbox.clone());
    (inbox, serve(router, 0).await.unwrap())
}

impl Inbox {
    /// Waits (up to 3 s) for `n` deliveries.
    async fn wait_for(&self, n: usize) -> Vec<(String, HeaderMap, String)> {
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.deliveries.lock().unwrap().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.deliveries.lock().unwrap().clone()
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {text}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Verifies as a receiver would: the OpenSSH key Payhawk publishes, RSA
/// PKCS#1 SHA-256 over `{timestamp}:{signed}:{body}`.
fn verifies(openssh: &str, headers: &HeaderMap, signed: &str, body: &str) -> bool {
    let blob = base64_decode(openssh.split(' ').nth(1).unwrap());
    let mut parts = Vec::new();
    let mut rest = &blob[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        parts.push(&rest[4..4 + len]);
        rest = &rest[4 + len..];
    }
    assert_eq!(parts[0], b"ssh-rsa");
    let (e, n) =
        (parts[1].strip_prefix(&[0]).unwrap_or(parts[1]), parts[2].strip_prefix(&[0]).unwrap_or(parts[2]));
    let timestamp = headers["x-payhawk-timestamp"].to_str().unwrap();
    let signature = base64_decode(headers["x-payhawk-signature"].to_str().unwrap());
    let message = format!("{timestamp}:{signed}:{body}");
    RsaPublicKeyComponents { n, e }
        .verify(&RSA_PKCS1_2048_8192_SHA256, message.as_bytes(), &signature)
        .is_ok()
}

#[tokio::test]
async fn expense_created_is_delivered_to_subscribers_signed_with_the_published_key() {
    let (inbox, hooks) = receiver(0).await;
    let api = Api::start(Config { webhook_require_https: false, ..two_accounts(quiet()) }).await;
    let hook = format!("{}/hook", hooks.base_url());
    let (status, subscription) =
        send(api.post("/webhooks", json!({"eventType": "expense.created", "callbackUrl": hook}))).await;
    assert_eq!(status, 200);
    assert_eq!(
        (subscription["status"].as_str(), subscription["callbackUrl"].as_str()),
        (Some("active"), Some(hook.as_str()))
    );
    let other = format!("{}/other", hooks.base_url());
    assert_eq!(
        send(api.post("/webhooks", json!({"eventType": "expense.approved", "callbackUrl": other}))).await.0,
        200
    );
    assert_eq!(send(api.get("/webhooks")).await.1["total"], 2);

    let ada = api.user("ada@example.com");
    let new = NewExpense { user_id: ada.clone(), amount: 42.0, ..NewExpense::default() };
    let expense = api.sim.seed_expense(ACCOUNT, new).unwrap();
    // The other account's expense reaches nobody here.
    api.sim.seed_expense(OTHER, NewExpense { user_id: "x".into(), ..NewExpense::default() }).unwrap();
    let received = inbox.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let received_late = inbox.deliveries.lock().unwrap().len();
    assert_eq!((received.len(), received_late), (1, 1), "one subscriber of expense.created, in this account");
    let (path, headers, body) = &received[0];
    assert_eq!(path, "/hook");
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        json!({"id": "1", "accountId": ACCOUNT, "eventType": "expense.created", "payload": {"expenseId": expense.id}})
    );
    assert_eq!(headers["content-type"], "application/json");
    let timestamp = headers["x-payhawk-timestamp"].to_str().unwrap();
    assert!(timestamp.ends_with(".000Z") && timestamp.len() == 24, "{timestamp}");

    // The key comes from the public endpoint, without an API key [T].
    let key = api.http.get(api.url("/api/v3/rsa-public-key")).send().await.unwrap().text().await.unwrap();
    assert!(key.starts_with("ssh-rsa AAAA"), "{key}");
    assert_eq!(Some(key.clone()), api.sim.webhook_public_key());
    assert!(verifies(&key, headers, &hook, body));
    assert!(
        !verifies(&key, headers, &hook, &body.replace("expense.created", "expense.deleted")),
        "tampering shows"
    );
    assert!(!verifies(&key, headers, "/hook", body), "the full URL is signed");

    let deliveries = api.sim.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(
        (deliveries[0].status, deliveries[0].attempt, deliveries[0].url.as_str()),
        (Some(200), 1, hook.as_str())
    );
}

#[tokio::test]
async fn failed_deliveries_are_retried_and_signing_is_a_switch() {
    let (inbox, hooks) = receiver(1).await;
    let config =
        Config { webhook_require_https: false, webhook_signing: WebhookSigning::Unsigned, ..quiet() };
    let api = Api::start(config).await;
    let hook = format!("{}/hook?tenant=t1", hooks.base_url());
    assert_eq!(
        send(api.post("/webhooks", json!({"eventType": "expense.created", "callbackUrl": hook}))).await.0,
        200
    );
    api.sim.seed_expense(ACCOUNT, NewExpense::default()).unwrap();
    let received = inbox.wait_for(2).await;
    assert_eq!(received.len(), 2, "a 500 is retried");
    assert_eq!(received[0].2, received[1].2, "the same event");
    assert!(
        received[1].1.get("x-payhawk-signature").is_none()
            && received[1].1.get("x-payhawk-timestamp").is_none()
    );
    let statuses: Vec<Option<u16>> = api.sim.deliveries().iter().map(|d| d.status).collect();
    assert_eq!(statuses, [Some(500), Some(200)]);

    let (inbox, hooks) = receiver(0).await;
    let config = Config { webhook_require_https: false, webhook_signing: WebhookSigning::RsaPath, ..quiet() };
    let api = Api::start(config).await;
    let hook = format!("{}/hook?tenant=t1", hooks.base_url());
    assert_eq!(
        send(api.post("/webhooks", json!({"eventType": "expense.created", "callbackUrl": hook}))).await.0,
        200
    );
    api.sim.seed_expense(ACCOUNT, NewExpense::default()).unwrap();
    let received = inbox.wait_for(1).await;
    let key = api.sim.webhook_public_key().unwrap();
    assert!(verifies(&key, &received[0].1, "/hook?tenant=t1", &received[0].2));
    assert!(!verifies(&key, &received[0].1, &hook, &received[0].2));
}

#[tokio::test]
async fn subscriptions_need_an_https_callback_and_a_known_event_type() {
    let api = Api::start(quiet()).await;
    let subscribe =
        |event: &str, url: &str| api.post("/webhooks", json!({"eventType": event, "callbackUrl": url}));
    let (status, body) = send(subscribe("expense.created", "http://example.com/hook")).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR")));
    assert_eq!(send(subscribe("user.created", "https://example.com/hook")).await.0, 400);
    assert_eq!(send(subscribe("expense.created", "not a url")).await.0, 400);
    let (status, subscription) = send(subscribe("expense.created", "https://example.com/hook")).await;
    assert_eq!(status, 200);
    let id = subscription["id"].as_str().unwrap();
    assert_eq!(send(api.delete(&format!("/webhooks/{id}"))).await.0, 204);
    assert_eq!(send(api.delete(&format!("/webhooks/{id}"))).await.0, 404);
    assert!(api.sim.webhooks(ACCOUNT).is_empty());
}

// ---------------------------------------------------------------------------
// Faults

#[tokio::test]
async fn injected_faults_answer_like_an_overloaded_payhawk_or_a_proxy() {
    let api = Api::start(quiet()).await;
    let ada = api.user("ada@example.com");
    let path = format!("/users/{ada}");

    api.fault("users.list", Fault::RateLimited { retry_after: Some(7) });
    let response = api.get("/users").send().await.unwrap();
    assert_eq!(
        (response.status(), header(&response, "retry-after")),
        (StatusCode::TOO_MANY_REQUESTS, Some("7"))
    );
    assert_eq!(response.json::<Value>().await.unwrap()["code"], "RATE_LIMIT_EXCEEDED");
    api.fault("users.list", Fault::RateLimited { retry_after: None });
    let response = api.get("/users").send().await.unwrap();
    assert_eq!((response.status(), header(&response, "retry-after")), (StatusCode::TOO_MANY_REQUESTS, None));

    api.fault("users.get", Fault::ServerError { status: 503 });
    let (status, body) = send(api.get(&path)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("INTERNAL_SERVER_ERROR"))
    );

    api.fault("users.update", Fault::InBand { code: "USER_LOCKED".into(), message: None });
    let (status, body) = send(api.patch(&path, json!({"role": "admin"}))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("USER_LOCKED")));
    assert_eq!(api.sim.user(ACCOUNT, &ada).unwrap().role, "employee", "nothing written");

    api.fault("users.remove", Fault::Malformed { status: 502 });
    let response = api.delete(&path).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert!(header(&response, "content-type").unwrap().starts_with("text/html"));
    assert_eq!(response.text().await.unwrap(), Fault::PROXY_PAGE);
    assert_eq!(api.sim.user(ACCOUNT, &ada).unwrap().status, UserStatus::Active, "nothing removed");

    // Committed, then the answer is withheld past the client's patience; a
    // retried invite then meets the user it already created.
    api.fault("users.invite", Fault::TimeoutAfterCommit { secs: 1 });
    let error = api
        .post("/users", invite("bob@example.com", "employee"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(error.unwrap_err().is_timeout());
    assert!(api.sim.users(ACCOUNT).iter().any(|u| u.email == "bob@example.com"));
    assert_eq!(send(api.post("/users", invite("bob@example.com", "employee"))).await.0, 409);

    api.fault("cards.list", Fault::ServerError { status: 500 });
    api.fault("expenses.list", Fault::Malformed { status: 504 });
    assert_eq!(send(api.get("/cards")).await.0, 500);
    assert_eq!(api.get("/expenses").send().await.unwrap().status(), 504);
    api.fault("*", Fault::ServerError { status: 500 });
    assert_eq!(send(api.get("/teams")).await.0, 500);
    assert_eq!(send(api.get("/teams")).await.0, 200, "a rule fires its number of times");

    let log = api.sim.log().entries();
    let faults: Vec<Option<&str>> = log.iter().map(|e| e.fault.as_deref()).collect();
    assert_eq!(
        faults,
        [
            Some("rate_limited(retry_after=7)"),
            Some("rate_limited"),
            Some("server_error(503)"),
            Some("in_band(USER_LOCKED)"),
            Some("malformed(502)"),
            Some("timeout_after_commit(1s)"),
            None,
            Some("server_error(500)"),
            Some("malformed(504)"),
            Some("server_error(500)"),
            None,
        ]
    );
    assert_eq!(log[5].status, 0, "the withheld answer was never received");
    assert_eq!(log[3].body, r#"{"role":"admin"}"#, "bodies are logged");
}

// ---------------------------------------------------------------------------
// Ids, back door, legacy v2

#[tokio::test]
async fn ids_are_deterministic_per_seed() {
    async fn run(seed: u64) -> Vec<String> {
        let api = Api::start(Config { seed, ..quiet() }).await;
        let (_, first) = send(api.post("/users", invite("a@example.com", "employee"))).await;
        let (_, second) = send(api.post("/users", invite("b@example.com", "employee"))).await;
        let user = first["id"].as_str().unwrap().to_owned();
        let card = api.card(&user, false, CardStatus::Active);
        let team = api.sim.seed_team(ACCOUNT, NewTeam::default()).unwrap().id;
        let hook = json!({"eventType": "expense.created", "callbackUrl": "https://example.com/h"});
        let (_, subscription) = send(api.post("/webhooks", hook)).await;
        let ids = vec![
            user,
            second["id"].as_str().unwrap().to_owned(),
            card,
            team,
            subscription["id"].as_str().unwrap().to_owned(),
        ];
        api.sim.reset();
        let (_, again) = send(api.post("/users", invite("c@example.com", "employee"))).await;
        assert_eq!(again["id"].as_str(), Some(ids[0].as_str()), "reset restarts the sequences");
        ids
    }
    let (a, b, c) = (run(7).await, run(7).await, run(8).await);
    assert_eq!(a, b);
    assert_eq!(a.iter().collect::<std::collections::HashSet<_>>().len(), 5, "all distinct: {a:?}");
    assert!(a.iter().zip(&c).all(|(x, y)| x != y), "another seed, other ids: {a:?} {c:?}");
}

#[tokio::test]
async fn the_back_door_seeds_and_mutates_state_out_of_band() {
    let api = Api::start(quiet()).await;
    let http = &api.http;
    let sim = |path: &str| api.url(&format!("/_sim{path}"));
    let account = json!({"id": OTHER, "apiKeys": [OTHER_KEY]});
    assert_eq!(http.post(sim("/accounts")).json(&account).send().await.unwrap().status(), 204);
    let list =
        http.get(api.url(&format!("/api/v3/accounts/{OTHER}/users"))).header("X-Payhawk-ApiKey", OTHER_KEY);
    assert_eq!(send(list).await, (StatusCode::OK, json!({"items": [], "total": 0})));

    let new = json!({"email": "oob@example.com", "firstName": "O", "lastName": "B", "role": "admin", "status": "invited"});
    let (status, user) = send(http.post(sim(&format!("/accounts/{OTHER}/users"))).json(&new)).await;
    assert_eq!((status, user["status"].as_str()), (StatusCode::OK, Some("invited")));
    let id = user["id"].as_str().unwrap();
    let (_, user) = send(http.post(sim(&format!("/accounts/{OTHER}/users/{id}/accept")))).await;
    assert_eq!(user["status"], "active");
    assert_eq!(send(http.post(sim(&format!("/accounts/{OTHER}/users/{id}/accept")))).await.0, 404);
    let drift = json!({"email": "renamed@example.com", "role": "accounting"});
    assert_eq!(send(http.patch(sim(&format!("/accounts/{OTHER}/users/{id}"))).json(&drift)).await.0, 200);
    let get = http
        .get(api.url(&format!("/api/v3/accounts/{OTHER}/users/{id}")))
        .header("X-Payhawk-ApiKey", OTHER_KEY);
    let (_, user) = send(get).await;
    assert_eq!(
        (user["email"].as_str(), user["role"].as_str()),
        (Some("renamed@example.com"), Some("accounting"))
    );

    let (_, card) = send(
        http.post(sim(&format!("/accounts/{OTHER}/cards")))
            .json(&json!({"userId": id, "reassignable": true})),
    )
    .await;
    let card_id = card["id"].as_str().unwrap();
    let (_, card) = send(
        http.patch(sim(&format!("/accounts/{OTHER}/cards/{card_id}"))).json(&json!({"status": "blocked"})),
    )
    .await;
    assert_eq!(card["status"], "blocked");
    let (_, expense) = send(
        http.post(sim(&format!("/accounts/{OTHER}/expenses"))).json(&json!({"userId": id, "amount": 12.5})),
    )
    .await;
    assert_eq!((expense["id"].as_str(), expense["amount"].as_f64()), (Some("1"), Some(12.5)));
    let (_, team) =
        send(http.post(sim(&format!("/accounts/{OTHER}/teams"))).json(&json!({"name": "Ops"}))).await;
    assert_eq!(team["name"], "Ops");
    let remove = sim(&format!("/accounts/{OTHER}/users/{id}?cardAction=close_all"));
    assert_eq!(http.delete(&remove).send().await.unwrap().status(), 204);
    assert_eq!(http.delete(&remove).send().await.unwrap().status(), 404);
    let (_, cards) = send(http.get(sim(&format!("/accounts/{OTHER}/cards")))).await;
    assert_eq!(cards[0]["status"], "closed");
    let (_, users) = send(http.get(sim(&format!("/accounts/{OTHER}/users")))).await;
    assert_eq!(users[0]["status"], "removed", "the back door lists removed users");
    assert_eq!(send(http.post(sim("/accounts/nobody/users")).json(&new)).await.0, 404);

    let rule = json!({"operation": "users.list", "fault": {"kind": "server_error", "status": 502}});
    assert_eq!(http.post(sim("/faults")).json(&rule).send().await.unwrap().status(), 204);
    assert_eq!(send(api.get("/users")).await.0, 502);
    let log: Vec<Value> = http.get(sim("/requests")).send().await.unwrap().json().await.unwrap();
    assert_eq!(log.len(), 3, "only the API is logged");
    assert_eq!((log[2]["status"].as_i64(), log[2]["fault"].as_str()), (Some(502), Some("server_error(502)")));

    assert_eq!(http.post(sim("/reset")).send().await.unwrap().status(), 204);
    assert!(api.sim.log().entries().is_empty());
    let list =
        http.get(api.url(&format!("/api/v3/accounts/{OTHER}/users"))).header("X-Payhawk-ApiKey", OTHER_KEY);
    assert_eq!(send(list).await.0, 401, "reset keeps only the configured accounts");
    assert_eq!(send(api.get("/users")).await.0, 200);
}

#[tokio::test]
async fn the_legacy_v2_invoice_upload_is_kept_and_listed() {
    let api = Api::start(quiet()).await;
    let v2 = api.url(&format!("/api/v2/accounts/{ACCOUNT}/invoices"));
    let upload = api
        .http
        .post(&v2)
        .header("X-Payhawk-ApiKey", KEY)
        .header("X-Payhawk-Invoice-Id", "tp-inv-1")
        .header("X-Payhawk-Invoice-Provider", "travelperk")
        .header("Content-Type", "application/pdf")
        .body("%PDF-1.4");
    let (status, invoice) = send(upload).await;
    assert_eq!((status, invoice["id"].as_str()), (StatusCode::OK, Some("tp-inv-1")));
    let (_, list) = send(api.http.get(&v2).header("X-Payhawk-ApiKey", KEY)).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["fields"], json!({"id": "tp-inv-1", "provider": "travelperk"}));
    assert_eq!(list["items"][0]["size"], 8);
    assert_eq!(send(api.http.get(&v2)).await.0, 401, "v2 needs the key too");
    let v2_users = api.url(&format!("/api/v2/accounts/{ACCOUNT}/users"));
    assert_eq!(
        send(api.http.get(v2_users).header("X-Payhawk-ApiKey", KEY)).await.0,
        404,
        "only invoices stay on v2"
    );
}
