//! The Stripe simulator over real HTTP, against the contract in
//! `../shared/spec/connectors.md` §3 and §6.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use portcullis_sim::common::{Fault, FaultRule, Running, serve};
use portcullis_sim::stripe::{
    Config, CustomerChange, NewCustomer, StripeSim, Tamper, WebhookEndpoint, signature_header,
};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

const KEY: &str = "sk_test_portcullis";

struct Api {
    sim: Arc<StripeSim>,
    running: Running,
    http: Client,
}

impl Api {
    async fn start(config: Config) -> Api {
        let (sim, running) = StripeSim::start(config, 0).await.unwrap();
        Api { sim, running, http: Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base_url())
    }

    fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(KEY)
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(KEY).form(form)
    }

    fn delete(&self, path: &str) -> RequestBuilder {
        self.http.delete(self.url(path)).bearer_auth(KEY)
    }

    fn fault(&self, operation: &str, fault: Fault) {
        self.sim.faults().add(FaultRule { operation: operation.into(), fault, times: 1 });
    }
}

fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

async fn send(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

fn ids(list: &Value) -> Vec<String> {
    list["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn customers_are_created_read_updated_and_deleted_like_stripe() {
    let api = Api::start(Config::default()).await;
    let form = [
        ("email", "ada@example.com"),
        ("name", "Ada"),
        ("metadata[idp_user_id]", "u1"),
        ("metadata[team]", "eng"),
    ];
    let response = api.post("/v1/customers", &form).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(header(&response, "request-id").unwrap().starts_with("req_"));
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cus_"));
    assert_eq!(created["object"], "customer");
    assert_eq!(created["email"], "ada@example.com");
    assert_eq!(created["metadata"], json!({"idp_user_id": "u1", "team": "eng"}));
    assert_eq!(created["livemode"], false);
    assert_eq!(created["phone"], Value::Null);
    assert!((created["created"].as_i64().unwrap() - api.sim.clock().now()).abs() <= 2);

    let response =
        api.get(&format!("/v1/customers/{id}")).header("Stripe-Version", "2025-03-31.basil").send().await;
    let response = response.unwrap();
    assert_eq!(header(&response, "stripe-version"), Some("2025-03-31.basil"));
    assert_eq!(response.json::<Value>().await.unwrap(), created);

    // Metadata merges; an empty value unsets its key.
    let change = [("name", "Ada L."), ("metadata[team]", ""), ("metadata[role]", "admin")];
    let (status, updated) = send(api.post(&format!("/v1/customers/{id}"), &change)).await;
    assert_eq!(status, 200);
    assert_eq!(updated["name"], "Ada L.");
    assert_eq!(updated["email"], "ada@example.com");
    assert_eq!(updated["metadata"], json!({"idp_user_id": "u1", "role": "admin"}));

    let tombstone = json!({"id": id, "object": "customer", "deleted": true});
    assert_eq!(send(api.delete(&format!("/v1/customers/{id}"))).await, (StatusCode::OK, tombstone.clone()));
    assert_eq!(send(api.get(&format!("/v1/customers/{id}"))).await, (StatusCode::OK, tombstone));
    let (_, list) = send(api.get("/v1/customers")).await;
    assert!(ids(&list).is_empty());
    assert!(api.sim.customer(&id).unwrap().deleted);

    for request in [
        api.post(&format!("/v1/customers/{id}"), &[("name", "x")]),
        api.delete(&format!("/v1/customers/{id}")),
    ] {
        let (status, body) = send(request).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "resource_missing");
    }

    let (status, body) = send(api.get("/v1/customers/cus_nope")).await;
    assert_eq!(status, 404);
    let error = &body["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["message"], "No such customer: 'cus_nope'");
    assert_eq!(error["param"], "id");
    assert_eq!(error["doc_url"], "https://stripe.com/docs/error-codes/resource-missing");
    assert!(
        error["request_log_url"].as_str().unwrap().starts_with("https://dashboard.stripe.com/test/logs/req_")
    );
    assert_eq!(error.as_object().unwrap().len(), 6, "null keys are left out: {error}");

    let (status, body) = send(api.post("/v1/customers", &[("nickname", "x")])).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "parameter_unknown");
    assert_eq!(body["error"]["param"], "nickname");
}

#[tokio::test]
async fn updating_a_deleted_customer_fails_as_configured() {
    let api = Api::start(Config { update_deleted_status: 400, ..Config::default() }).await;
    let id = api.sim.seed_customer(NewCustomer::default()).id;
    assert!(api.sim.delete_customer(&id));
    let (status, body) = send(api.post(&format!("/v1/customers/{id}"), &[("name", "x")])).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(api.sim.update_customer(&id, CustomerChange::default()), None);
}

#[tokio::test]
async fn list_pages_newest_first_with_either_cursor() {
    let api = Api::start(Config::default()).await;
    for i in 0..250 {
        api.sim.seed_customer(NewCustomer { email: Some(format!("u{i}@example.com")), ..Default::default() });
    }
    let expected: Vec<String> = api.sim.customers().into_iter().map(|c| c.id).collect();
    assert_eq!(api.sim.customer(&expected[0]).unwrap().email.as_deref(), Some("u249@example.com"));

    let (mut seen, mut cursor, mut more) = (Vec::new(), None::<String>, Vec::new());
    loop {
        let mut params = vec![("limit", "100")];
        if let Some(after) = &cursor {
            params.push(("starting_after", after));
        }
        let (status, page) = send(api.get(&format!("/v1/customers?{}", query(&params)))).await;
        assert_eq!(status, 200);
        assert_eq!((page["object"].as_str(), page["url"].as_str()), (Some("list"), Some("/v1/customers")));
        seen.extend(ids(&page));
        more.push(page["has_more"].as_bool().unwrap());
        if !more.last().unwrap() {
            break;
        }
        cursor = seen.last().cloned();
    }
    assert_eq!(seen, expected);
    assert_eq!(more, [true, true, false]);

    // Backwards from the oldest: each page is the 100 just newer than the cursor.
    let (_, page) = send(api.get(&format!("/v1/customers?limit=100&ending_before={}", expected[249]))).await;
    assert_eq!(ids(&page), expected[149..249]);
    assert_eq!(page["has_more"], true);
    let (_, page) = send(api.get(&format!("/v1/customers?limit=100&ending_before={}", expected[49]))).await;
    assert_eq!(ids(&page), expected[..49]);
    assert_eq!(page["has_more"], false);
    let (_, page) = send(api.get("/v1/customers")).await;
    assert_eq!(ids(&page), expected[..10], "the default limit is 10");

    for limit in ["0", "101", "abc"] {
        let (status, body) = send(api.get(&format!("/v1/customers?limit={limit}"))).await;
        assert_eq!(status, 400, "limit={limit}");
        assert_eq!(body["error"]["param"], "limit");
    }
    let both = format!("/v1/customers?starting_after={}&ending_before={}", expected[1], expected[0]);
    assert_eq!(send(api.get(&both)).await.0, 400);
    let (status, body) = send(api.get("/v1/customers?starting_after=cus_gone")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "resource_missing");
}

#[tokio::test]
async fn ten_thousand_customers_page_through_quickly() {
    let api = Api::start(Config { rate_limits: false, ..Config::default() }).await;
    for _ in 0..10_000 {
        api.sim.seed_customer(NewCustomer::default());
    }
    let started = Instant::now();
    let (mut count, mut cursor) = (0, String::new());
    loop {
        let path = if cursor.is_empty() {
            "/v1/customers?limit=100".to_owned()
        } else {
            format!("/v1/customers?limit=100&starting_after={cursor}")
        };
        let (_, page) = send(api.get(&path)).await;
        let page_ids = ids(&page);
        count += page_ids.len();
        if page["has_more"] == false {
            break;
        }
        cursor = page_ids.last().unwrap().clone();
    }
    assert_eq!(count, 10_000);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn the_email_filter_is_exact_and_case_sensitive() {
    let api = Api::start(Config::default()).await;
    for email in ["a@x.com", "a@x.com", "A@x.com"] {
        api.sim.seed_customer(NewCustomer { email: Some(email.into()), ..Default::default() });
    }
    let old = api.sim.seed_customer(NewCustomer { created: Some(1_000), ..Default::default() });
    for (email, matches) in [("a@x.com", 2), ("A@x.com", 1), ("a@x.co", 0)] {
        let (_, page) = send(api.get(&format!("/v1/customers?{}", query(&[("email", email)])))).await;
        assert_eq!(ids(&page).len(), matches, "{email}");
    }
    let (_, page) = send(api.get("/v1/customers?created[lte]=1000")).await;
    assert_eq!(ids(&page), [old.id.as_str()]);
    let (_, page) = send(api.get("/v1/customers?limit=100")).await;
    assert_eq!(ids(&page).last(), Some(&old.id), "an old `created` sorts last");
}

#[tokio::test]
async fn search_lags_writes_and_pages_with_next_page() {
    let api = Api::start(Config::default()).await;
    let search = |q: &str, extra: &[(&str, &str)]| {
        let mut params = vec![("query", q)];
        params.extend_from_slice(extra);
        api.get(&format!("/v1/customers/search?{}", query(&params)))
    };
    let form = [("email", "Grace@Example.com"), ("name", "Grace Hopper"), ("metadata[idp_user_id]", "u42")];
    let (_, grace) = send(api.post("/v1/customers", &form)).await;
    let (status, result) = send(search("metadata['idp_user_id']:'u42'", &[])).await;
    assert_eq!(status, 200);
    assert_eq!(result["object"], "search_result");
    assert!(ids(&result).is_empty(), "not indexed yet");

    api.sim.clock().advance(5);
    for q in ["metadata['idp_user_id']:'u42'", "email:'grace@example.com'", "name~'hop' AND -email:'x@y.z'"] {
        let (_, result) = send(search(q, &[])).await;
        assert_eq!(ids(&result), [grace["id"].as_str().unwrap()], "{q}");
    }

    for i in 0..3 {
        let metadata = [("team".to_owned(), "x".to_owned())].into();
        api.sim.seed_customer(NewCustomer { name: Some(format!("T{i}")), metadata, ..Default::default() });
    }
    api.sim.clock().advance(5);
    let (_, first) =
        send(search("metadata['team']:'x' OR email:'grace@example.com'", &[("limit", "3")])).await;
    assert_eq!(first["has_more"], true);
    let next_page = first["next_page"].as_str().unwrap();
    let (_, second) =
        send(search("metadata['team']:'x' OR email:'grace@example.com'", &[("page", next_page)])).await;
    assert_eq!(second["has_more"], false);
    assert_eq!(second["next_page"], Value::Null);
    let mut all = ids(&first);
    all.extend(ids(&second));
    assert_eq!(all.len(), 4);
    assert_eq!(all[3], grace["id"].as_str().unwrap());

    // A write hides the customer from search again until the index catches up.
    api.post(&format!("/v1/customers/{}", grace["id"].as_str().unwrap()), &[("phone", "+15550100")])
        .send()
        .await
        .unwrap();
    assert!(ids(&send(search("email:'grace@example.com'", &[])).await.1).is_empty());

    for bad in ["email:'a' AND name:'b' OR name:'c'", "emial:'a'", "email:unquoted"] {
        let (status, body) = send(search(bad, &[])).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"]["param"], "query");
    }
    let old = search("email:'a@b.c'", &[]).header("Stripe-Version", "2020-03-02");
    assert_eq!(send(old).await.0, 400);
}

#[tokio::test]
async fn idempotent_posts_replay_their_first_answer() {
    let api = Api::start(Config::default()).await;
    let create =
        |key: &str, form: &[(&str, &str)]| api.post("/v1/customers", form).header("Idempotency-Key", key);

    let first = create("k1", &[("email", "a@x.com")]).send().await.unwrap();
    let first_id = header(&first, "request-id").unwrap().to_owned();
    let first_body = first.bytes().await.unwrap();
    let replay = create("k1", &[("email", "a@x.com")]).send().await.unwrap();
    assert_eq!(header(&replay, "idempotent-replayed"), Some("true"));
    assert_eq!(header(&replay, "request-id"), Some(first_id.as_str()));
    assert_eq!(replay.bytes().await.unwrap(), first_body);
    assert_eq!(api.sim.customers().len(), 1);

    let (status, body) = send(create("k1", &[("email", "b@x.com")])).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("idempotency_error"))
    );
    let id = api.sim.customers()[0].id.clone();
    let elsewhere =
        api.post(&format!("/v1/customers/{id}"), &[("email", "a@x.com")]).header("Idempotency-Key", "k1");
    assert_eq!(send(elsewhere).await.1["error"]["type"], "idempotency_error");

    // A 500 decided after validation is stored and replayed as is.
    api.fault("customers.create", Fault::ServerError { status: 500 });
    let failed = create("k2", &[("email", "c@x.com")]).send().await.unwrap();
    assert_eq!(failed.status(), 500);
    assert_eq!(header(&failed, "stripe-should-retry"), Some("true"));
    let failed_body = failed.bytes().await.unwrap();
    let replay = create("k2", &[("email", "c@x.com")]).send().await.unwrap();
    assert_eq!(replay.status(), 500);
    assert_eq!(header(&replay, "idempotent-replayed"), Some("true"));
    assert_eq!(replay.bytes().await.unwrap(), failed_body);
    assert_eq!(api.sim.customers().len(), 1);

    // A validation failure is not stored: the key stays usable.
    assert_eq!(send(create("k3", &[("emial", "d@x.com")])).await.0, 400);
    let response = create("k3", &[("email", "d@x.com")]).send().await.unwrap();
    assert_eq!((response.status(), header(&response, "idempotent-replayed")), (StatusCode::OK, None));

    assert_eq!(send(create(&"k".repeat(256), &[])).await.0, 400);

    // Keys are pruned after 24 hours of simulated time.
    api.sim.clock().advance(24 * 3600);
    let (status, again) = send(create("k1", &[("email", "a@x.com")])).await;
    assert_eq!(status, 200);
    assert_ne!(again["id"].as_str(), Some(id.as_str()));
    assert_eq!(api.sim.customers().len(), 3);
}

#[tokio::test]
async fn a_key_still_in_flight_answers_409() {
    let api = Arc::new(Api::start(Config::default()).await);
    api.fault("customers.create", Fault::TimeoutAfterCommit { secs: 1 });
    let started = Instant::now();
    let first = tokio::spawn({
        let api = api.clone();
        async move { api.post("/v1/customers", &[("name", "slow")]).header("Idempotency-Key", "k").send().await }
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(api.sim.customers().len(), 1, "committed before the answer");
    assert_eq!(api.sim.log().entries()[0].status, 0, "not answered yet");

    let conflict =
        api.post("/v1/customers", &[("name", "slow")]).header("Idempotency-Key", "k").send().await.unwrap();
    assert_eq!(conflict.status(), 409);
    assert_eq!(header(&conflict, "stripe-should-retry"), Some("true"));
    assert_eq!(conflict.json::<Value>().await.unwrap()["error"]["code"], "idempotency_key_in_use");

    let first = first.await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(first.status(), 200);
    let first_body = first.bytes().await.unwrap();
    let replay =
        api.post("/v1/customers", &[("name", "slow")]).header("Idempotency-Key", "k").send().await.unwrap();
    assert_eq!(replay.bytes().await.unwrap(), first_body);
    assert_eq!(api.sim.customers().len(), 1);
    let log = api.sim.log().entries();
    assert_eq!(log[0].fault.as_deref(), Some("timeout_after_commit(1s)"));
    assert_eq!(log[0].status, 200);
}

#[tokio::test]
async fn requests_without_a_valid_key_get_401() {
    let api = Api::start(Config::default()).await;
    let (status, body) = send(api.http.get(api.url("/v1/customers"))).await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"].as_str().unwrap().starts_with("You did not provide an API key"));

    let wrong = api.http.get(api.url("/v1/customers")).bearer_auth("sk_test_wrongkey1234");
    let (status, body) = send(wrong).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["message"], "Invalid API Key provided: sk_test_****1234");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"].get("request_log_url").is_none());

    let basic = api.http.get(api.url("/v1/customers")).basic_auth(KEY, None::<&str>);
    assert_eq!(send(basic).await.0, 200);
    let statuses: Vec<u16> = api.sim.log().entries().iter().map(|e| e.status).collect();
    assert_eq!(statuses, [401, 401, 200]);
    assert_eq!(api.sim.log().entries()[1].header("authorization"), Some("Bearer sk_test_wrongkey1234"));
}

#[tokio::test]
async fn rate_limits_apply_per_endpoint_search_and_mode() {
    // Test mode: 25/s globally and per endpoint.
    let api = Api::start(Config::default()).await;
    for i in 0..25 {
        assert_eq!(api.get("/v1/customers").send().await.unwrap().status(), 200, "request {i}");
    }
    let limited = api.get("/v1/customers").send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(header(&limited, "retry-after"), None);
    let body: Value = limited.json().await.unwrap();
    assert_eq!(
        (body["error"]["type"].as_str(), body["error"]["code"].as_str()),
        (Some("invalid_request_error"), Some("rate_limit"))
    );

    // Live mode: 100/s globally, so only the endpoint's 25/s and search's 20/s bind.
    let live = "sk_live_portcullis";
    let api = Api::start(Config { api_keys: vec![live.into()], ..Config::default() }).await;
    let get = |path: &str| api.http.get(api.url(path)).bearer_auth(live).send();
    for _ in 0..25 {
        assert_eq!(get("/v1/customers").await.unwrap().status(), 200);
    }
    assert_eq!(get("/v1/customers").await.unwrap().status(), 429);
    assert_eq!(
        get("/v1/customers/cus_x").await.unwrap().status(),
        404,
        "another endpoint has its own budget"
    );
    for _ in 0..20 {
        assert_eq!(get("/v1/customers/search?query=name:'abc'").await.unwrap().status(), 200);
    }
    assert_eq!(get("/v1/customers/search?query=name:'abc'").await.unwrap().status(), 429);
}

#[tokio::test]
async fn the_concurrency_limiter_turns_away_parallel_requests() {
    let api = Arc::new(Api::start(Config { concurrency_limit: Some(1), ..Config::default() }).await);
    api.fault("customers.retrieve", Fault::TimeoutAfterCommit { secs: 1 });
    let slow = tokio::spawn({
        let api = api.clone();
        async move { api.get("/v1/customers/cus_x").send().await.unwrap().status() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = send(api.get("/v1/customers")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limit")));
    assert_eq!(slow.await.unwrap(), 404);
    assert_eq!(send(api.get("/v1/customers")).await.0, 200);
}

#[tokio::test]
async fn injected_faults_answer_like_stripe() {
    let api = Api::start(Config::default()).await;
    let id = api.sim.seed_customer(NewCustomer { name: Some("n".into()), ..Default::default() }).id;
    let path = format!("/v1/customers/{id}");

    api.fault("customers.list", Fault::RateLimited { retry_after: Some(3) });
    let response = api.get("/v1/customers").send().await.unwrap();
    assert_eq!(
        (response.status(), header(&response, "retry-after")),
        (StatusCode::TOO_MANY_REQUESTS, Some("3"))
    );
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "rate_limit");

    api.fault("customers.retrieve", Fault::ServerError { status: 503 });
    let response = api.get(&path).send().await.unwrap();
    assert_eq!(
        (response.status(), header(&response, "stripe-should-retry")),
        (StatusCode::SERVICE_UNAVAILABLE, Some("true"))
    );
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["type"], "api_error");

    api.fault("customers.update", Fault::InBand { code: "lock_timeout".into(), message: None });
    let response = api.post(&path, &[("name", "changed")]).send().await.unwrap();
    assert_eq!(
        (response.status(), header(&response, "stripe-should-retry")),
        (StatusCode::TOO_MANY_REQUESTS, Some("true"))
    );
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "lock_timeout");
    assert_eq!(api.sim.customer(&id).unwrap().name.as_deref(), Some("n"), "nothing written");

    api.fault("customers.create", Fault::InBand { code: "email_invalid".into(), message: None });
    let response = api.post("/v1/customers", &[("email", "x")]).send().await.unwrap();
    assert_eq!(
        (response.status(), header(&response, "stripe-should-retry")),
        (StatusCode::BAD_REQUEST, Some("false"))
    );
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "email_invalid");
    assert_eq!(api.sim.customers().len(), 1);

    api.fault("customers.delete", Fault::Malformed { status: 502 });
    let response = api.delete(&path).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert!(header(&response, "content-type").unwrap().starts_with("text/html"));
    assert_eq!(response.text().await.unwrap(), Fault::PROXY_PAGE);
    assert!(!api.sim.customer(&id).unwrap().deleted);

    api.fault("customers.create", Fault::TimeoutAfterCommit { secs: 1 });
    let started = Instant::now();
    let response = api.post("/v1/customers", &[("name", "late")]).send().await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(response.status(), 200);
    assert_eq!(api.sim.customers().len(), 2);

    api.fault("*", Fault::ServerError { status: 500 });
    assert_eq!(send(api.get(&path)).await.0, 500);
    assert_eq!(send(api.get(&path)).await.0, 200, "a rule fires its number of times");

    let faults: Vec<Option<String>> = api.sim.log().entries().into_iter().map(|e| e.fault).collect();
    let expected = [
        "rate_limited(retry_after=3)",
        "server_error(503)",
        "in_band(lock_timeout)",
        "in_band(email_invalid)",
        "malformed(502)",
        "timeout_after_commit(1s)",
        "server_error(500)",
    ];
    assert_eq!(faults[..7].iter().map(|f| f.as_deref().unwrap()).collect::<Vec<_>>(), expected);
    assert_eq!(faults[7], None);
}

#[tokio::test]
async fn the_back_door_seeds_mutates_and_inspects() {
    let api = Api::start(Config::default()).await;
    let http = &api.http;
    let customer: Value = http
        .post(api.url("/_sim/customers"))
        .json(&json!({"email": "oob@x.com", "metadata": {"k": "v"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = customer["id"].as_str().unwrap();
    let changed: Value = http
        .post(api.url(&format!("/_sim/customers/{id}")))
        .json(&json!({"name": "Drifted", "metadata": {"k": ""}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((changed["name"].as_str(), &changed["metadata"]), (Some("Drifted"), &json!({})));
    let (_, fetched) = send(api.get(&format!("/v1/customers/{id}"))).await;
    assert_eq!(fetched["name"], "Drifted");

    let before = api.sim.clock().now();
    let now: Value = http
        .post(api.url("/_sim/clock"))
        .json(&json!({"advance_secs": 3600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(now["now"].as_i64().unwrap() >= before + 3600);

    let rule = json!({"operation": "customers.retrieve", "fault": {"kind": "server_error", "status": 502}});
    assert_eq!(http.post(api.url("/_sim/faults")).json(&rule).send().await.unwrap().status(), 204);
    assert_eq!(send(api.get(&format!("/v1/customers/{id}"))).await.0, 502);

    let log: Vec<Value> = http.get(api.url("/_sim/requests")).send().await.unwrap().json().await.unwrap();
    assert_eq!(log.len(), 2, "only the API is logged");
    assert_eq!((log[1]["method"].as_str(), log[1]["status"].as_i64()), (Some("GET"), Some(502)));
    assert_eq!(log[1]["fault"], "server_error(502)");

    assert_eq!(http.delete(api.url(&format!("/_sim/customers/{id}"))).send().await.unwrap().status(), 204);
    assert_eq!(http.delete(api.url(&format!("/_sim/customers/{id}"))).send().await.unwrap().status(), 404);
    let all: Vec<Value> = http.get(api.url("/_sim/customers")).send().await.unwrap().json().await.unwrap();
    assert_eq!(all, [json!({"id": id, "object": "customer", "deleted": true})]);

    assert_eq!(http.post(api.url("/_sim/reset")).send().await.unwrap().status(), 204);
    assert!(api.sim.customer(id).is_none());
    assert!(api.sim.log().entries().is_empty());
}

// ---------------------------------------------------------------------------
// Webhooks

const SECRET: &str = "whsec_portcullis";

#[derive(Clone, Default)]
struct Inbox {
    deliveries: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    /// Answer 500 to this many deliveries first.
    failures: Arc<AtomicUsize>,
}

async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: String) -> AxumStatus {
    inbox.deliveries.lock().unwrap().push((headers, body));
    let fail = inbox.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    if fail { AxumStatus::INTERNAL_SERVER_ERROR } else { AxumStatus::OK }
}

async fn receiver(failures: usize) -> (Inbox, Running) {
    let inbox = Inbox { failures: Arc::new(AtomicUsize::new(failures)), ..Inbox::default() };
    let router = axum::Router::new().route("/hook", post(receive)).with_state(inbox.clone());
    (inbox, serve(router, 0).await.unwrap())
}

impl Inbox {
    /// Waits (up to 3 s) for `n` deliveries.
    async fn wait_for(&self, n: usize) -> Vec<(HeaderMap, String)> {
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.deliveries.lock().unwrap().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.deliveries.lock().unwrap().clone()
    }
}

/// `(t, v1 values)` of a `Stripe-Signature` header.
fn parse_signature(headers: &HeaderMap) -> (i64, Vec<String>) {
    let header = headers["stripe-signature"].to_str().unwrap();
    let mut t = 0;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=').unwrap() {
            ("t", value) => t = value.parse().unwrap(),
            ("v1", value) => v1.push(value.to_owned()),
            _ => {}
        }
    }
    (t, v1)
}

/// Verifies as the official SDKs do: some v1 matches and `t` is within 300 s.
fn verifies(headers: &HeaderMap, body: &str, secret: &str, now: i64) -> bool {
    let (t, v1) = parse_signature(headers);
    let expected = signature_header(secret, t, body);
    let expected = expected.split_once(",v1=").unwrap().1;
    v1.iter().any(|v| v == expected) && (now - t).abs() <= 300
}

async fn with_webhooks(config: Config, failures: usize) -> (Api, Inbox, Running) {
    let (inbox, running) = receiver(failures).await;
    let endpoint = WebhookEndpoint { url: format!("{}/hook", running.base_url()), secret: SECRET.into() };
    let api = Api::start(Config { webhook_endpoints: vec![endpoint], ..config }).await;
    (api, inbox, running)
}

fn event(body: &str) -> Value {
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn webhooks_are_signed_and_describe_each_change() {
    let (api, inbox, _receiver) = with_webhooks(Config::default(), 0).await;
    let response = api
        .post("/v1/customers", &[("email", "w@x.com")])
        .header("Idempotency-Key", "hook-1")
        .send()
        .await
        .unwrap();
    let request_id = header(&response, "request-id").unwrap().to_owned();
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    api.post(&format!("/v1/customers/{id}"), &[("metadata[team]", "eng")]).send().await.unwrap();
    api.delete(&format!("/v1/customers/{id}")).send().await.unwrap();
    api.sim.seed_customer(NewCustomer { email: Some("dashboard@x.com".into()), ..Default::default() });

    let deliveries = inbox.wait_for(4).await;
    let now = api.sim.clock().now();
    let events: Vec<Value> = deliveries.iter().map(|(_, body)| event(body)).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["customer.created", "customer.updated", "customer.deleted", "customer.created"]);
    for (headers, body) in &deliveries {
        assert!(verifies(headers, body, SECRET, now), "signature of {body}");
        assert!(!verifies(headers, body, "whsec_other", now));
        assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"));
    }
    let created = &events[0];
    assert!(created["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(
        (created["object"].as_str(), created["api_version"].as_str()),
        (Some("event"), Some("2025-03-31.basil"))
    );
    assert_eq!(created["data"]["object"]["email"], "w@x.com");
    assert_eq!(created["request"], json!({"id": request_id, "idempotency_key": "hook-1"}));
    assert_eq!(events[1]["data"]["previous_attributes"], json!({"metadata": {"team": null}}));
    assert_eq!(events[1]["data"]["object"]["metadata"], json!({"team": "eng"}));
    assert_eq!(events[2]["data"]["object"]["id"], id.as_str());
    assert_eq!(events[3]["request"]["idempotency_key"], Value::Null);
    let unique: std::collections::HashSet<_> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(unique.len(), 4);
}

#[tokio::test]
async fn failed_webhooks_are_retried_with_backoff() {
    let (api, inbox, _receiver) = with_webhooks(Config::default(), 2).await;
    api.sim.seed_customer(NewCustomer::default());
    let deliveries = inbox.wait_for(3).await;
    assert_eq!(deliveries.len(), 3, "two failures, then success");
    assert!(deliveries.iter().all(|(_, body)| body == &deliveries[0].1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(inbox.deliveries.lock().unwrap().len(), 3, "no retry after success");
}

#[tokio::test]
async fn webhooks_can_be_duplicated_and_reordered() {
    let (api, inbox, _receiver) =
        with_webhooks(Config { webhook_duplicates: true, ..Config::default() }, 0).await;
    api.sim.seed_customer(NewCustomer::default());
    let deliveries = inbox.wait_for(2).await;
    assert_eq!(deliveries.len(), 2);
    assert_eq!(event(&deliveries[0].1)["id"], event(&deliveries[1].1)["id"]);

    let (api, inbox, _receiver) =
        with_webhooks(Config { webhook_shuffle: true, ..Config::default() }, 0).await;
    let first = api.sim.seed_customer(NewCustomer::default());
    let second = api.sim.seed_customer(NewCustomer::default());
    let order: Vec<Value> =
        inbox.wait_for(2).await.iter().map(|(_, b)| event(b)["data"]["object"]["id"].clone()).collect();
    assert_eq!(order, [json!(second.id), json!(first.id)]);
}

#[tokio::test]
async fn webhook_signatures_can_be_tampered_with_or_rotated() {
    for (tamper, stale) in [(Tamper::BadSignature, false), (Tamper::StaleTimestamp, true)] {
        let (api, inbox, _receiver) =
            with_webhooks(Config { webhook_tamper: Some(tamper), ..Config::default() }, 0).await;
        api.sim.seed_customer(NewCustomer::default());
        let deliveries = inbox.wait_for(1).await;
        let (headers, body) = &deliveries[0];
        let now = api.sim.clock().now();
        assert!(!verifies(headers, body, SECRET, now), "{tamper:?}");
        let (t, v1) = parse_signature(headers);
        assert_eq!(now - t >= 600, stale);
        assert_eq!(signature_header(SECRET, t, body).ends_with(&v1[0]), stale, "stale but correctly signed");
    }

    let rotated = Config { extra_signing_secret: Some("whsec_next".into()), ..Config::default() };
    let (api, inbox, _receiver) = with_webhooks(rotated, 0).await;
    api.sim.seed_customer(NewCustomer::default());
    let deliveries = inbox.wait_for(1).await;
    let (headers, body) = &deliveries[0];
    let now = api.sim.clock().now();
    assert_eq!(parse_signature(headers).1.len(), 2);
    assert!(verifies(headers, body, SECRET, now));
    assert!(verifies(headers, body, "whsec_next", now));
}
