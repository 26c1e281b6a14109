//! The SCIM simulator over real HTTP: RFC 7643/7644 behaviour in
//! `strict-rfc`, and what each dialect profile changes, against
//! `../shared/spec/connectors.md` §2, §3, §5 and §6.

use std::sync::Arc;
use std::time::Duration;

use portcullis_sim::common::{Fault, FaultRule, Running};
use portcullis_sim::scim::{BulkLimits, Config, DEFAULT_TOKEN, Kind, Profile, RateLimit, ScimSim};
use reqwest::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const TRAVELPERK: &str = "urn:ietf:params:scim:schemas:extension:travelperk:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

struct Api {
    sim: Arc<ScimSim>,
    running: Running,
    http: Client,
}

impl Api {
    async fn start(config: Config) -> Api {
        let (sim, running) = ScimSim::start(config, 0).await.unwrap();
        Api { sim, running, http: Client::new() }
    }

    async fn profile(profile: Profile) -> Api {
        Api::start(Config::profile(profile)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}/scim/v2{path}", self.running.base_url())
    }

    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(DEFAULT_TOKEN)
    }

    fn get(&self, path: &str) -> RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    fn with_body(&self, method: reqwest::Method, path: &str, body: &Value) -> RequestBuilder {
        self.request(method, path).header("content-type", "application/scim+json").body(body.to_string())
    }

    fn post(&self, path: &str, body: &Value) -> RequestBuilder {
        self.with_body(reqwest::Method::POST, path, body)
    }

    fn put(&self, path: &str, body: &Value) -> RequestBuilder {
        self.with_body(reqwest::Method::PUT, path, body)
    }

    fn patch(&self, path: &str, operations: Value) -> RequestBuilder {
        self.with_body(
            reqwest::Method::PATCH,
            path,
            &json!({"schemas": [PATCH_OP], "Operations": operations}),
        )
    }

    fn delete(&self, path: &str) -> RequestBuilder {
        self.request(reqwest::Method::DELETE, path)
    }

    /// Creates a user and returns it.
    async fn user(&self, body: Value) -> Value {
        let mut body = body;
        body["schemas"] = json!([USER]);
        let (status, user) = send(self.post("/Users", &body)).await;
        assert_eq!(status, 201, "{user}");
        user
    }

    async fn group(&self, name: &str, members: &[&str]) -> Value {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let body = json!({"schemas": [GROUP], "displayName": name, "members": members});
        let (status, group) = send(self.post("/Groups", &body)).await;
        assert_eq!(status, 201, "{group}");
        group
    }

    async fn list(&self, query: &[(&str, &str)]) -> Value {
        let (status, body) = send(self.get(&format!("/Users?{}", encode(query)))).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    fn fault(&self, operation: &str, fault: Fault) {
        self.sim.faults().add(FaultRule { operation: operation.into(), fault, times: 1 });
    }
}

fn encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// The status and the JSON body (null when there is none).
async fn send(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

fn id(resource: &Value) -> String {
    resource["id"].as_str().unwrap().to_owned()
}

/// The userNames of a ListResponse, in order.
fn names(list: &Value) -> Vec<String> {
    list["Resources"].as_array().unwrap().iter().map(|r| r["userName"].as_str().unwrap().to_owned()).collect()
}

fn assert_error(status: u16, body: &Value, expected_status: u16, scim_type: Option<&str>) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["schemas"], json!([ERROR]), "{body}");
    assert_eq!(body["status"], json!(expected_status.to_string()), "status is a string: {body}");
    assert_eq!(body["scimType"].as_str(), scim_type, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
}

// ---------------------------------------------------------------------------
// strict-rfc: resources

#[tokio::test]
async fn users_are_created_read_replaced_and_deleted_per_rfc() {
    let api = Api::profile(Profile::StrictRfc).await;
    let body = json!({
        "schemas": [USER, ENTERPRISE], "userName": "Ada@Example.com", "externalId": "ext-1",
        "name": {"givenName": "Ada", "familyName": "Lovelace"}, "active": true,
        "emails": [{"value": "ada@example.com", "type": "work", "primary": true}],
        "password": "s3cret", "groups": [{"value": "ignored"}], "id": "ignored-too",
        ENTERPRISE: {"employeeNumber": "42", "manager": {"value": "boss"}}
    });
    let response = api.post("/Users", &body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "content-type"), Some("application/scim+json; charset=utf-8"));
    let location = header(&response, "location").unwrap().to_owned();
    let etag = header(&response, "etag").unwrap().to_owned();
    let user: Value = response.json().await.unwrap();
    let id = id(&user);
    assert_ne!(id, "ignored-too");
    assert_eq!(location, api.url(&format!("/Users/{id}")));
    assert_eq!(user["meta"]["location"], json!(location));
    assert_eq!(user["meta"]["resourceType"], "User");
    assert_eq!(user["meta"]["version"], json!(etag));
    assert!(etag.starts_with("W/\""));
    assert_eq!(user["schemas"], json!([USER, ENTERPRISE]));
    assert_eq!(user[ENTERPRISE]["manager"], json!({"value": "boss"}));
    assert!(user.get("password").is_none(), "password is returned never");
    assert!(user.get("groups").is_none(), "groups are read-only: {user}");

    let (status, read) = send(api.get(&format!("/Users/{id}"))).await;
    assert_eq!((status, &read), (200, &user));

    // PUT replaces: attributes left out are cleared, the password stays.
    let put = json!({"schemas": [USER], "userName": "ada@example.com", "displayName": "Ada"});
    let (status, replaced) = send(api.put(&format!("/Users/{id}"), &put)).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["displayName"], "Ada");
    assert!(replaced.get("name").is_none() && replaced.get(ENTERPRISE).is_none(), "{replaced}");
    assert_eq!(replaced["schemas"], json!([USER]));
    assert_ne!(replaced["meta"]["version"], user["meta"]["version"]);
    assert_eq!(replaced["meta"]["created"], user["meta"]["created"]);

    let (status, body) = send(api.delete(&format!("/Users/{id}"))).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, body) = send(api.get(&format!("/Users/{id}"))).await;
    assert_error(status, &body, 404, None);
    let (status, body) = send(api.delete(&format!("/Users/{id}"))).await;
    assert_error(status, &body, 404, None);
}

#[tokio::test]
async fn user_names_are_unique_ignoring_case() {
    let api = Api::profile(Profile::StrictRfc).await;
    let ada = api.user(json!({"userName": "ada@example.com"})).await;
    let (status, body) =
        send(api.post("/Users", &json!({"schemas": [USER], "userName": "ADA@example.com"}))).await;
    assert_error(status, &body, 409, Some("uniqueness"));
    let bob = api.user(json!({"userName": "bob@example.com"})).await;
    let (status, body) = send(api.patch(
        &format!("/Users/{}", id(&bob)),
        json!([{"op": "replace", "path": "userName", "value": "Ada@Example.COM"}]),
    ))
    .await;
    assert_error(status, &body, 409, Some("uniqueness"));
    // Changing only the case of one's own userName is fine.
    let (status, _) = send(
        api.put(&format!("/Users/{}", id(&ada)), &json!({"schemas": [USER], "userName": "Ada@example.com"})),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bad_requests_get_scim_errors() {
    let api = Api::profile(Profile::StrictRfc).await;
    let cases: Vec<(RequestBuilder, u16, Option<&str>)> = vec![
        (api.post("/Users", &json!({"userName": "no-schemas"})), 400, Some("invalidSyntax")),
        (api.post("/Users", &json!({"schemas": [USER]})), 400, Some("invalidValue")),
        (
            api.post("/Users", &json!({"schemas": [USER], "userName": "a", "nickname2": "x"})),
            400,
            Some("invalidSyntax"),
        ),
        (
            api.post("/Users", &json!({"schemas": [USER], "userName": "a", "active": "yes"})),
            400,
            Some("invalidValue"),
        ),
        (
            api.post("/Users", &json!({"schemas": [USER], "userName": "a", "emails": {"value": "x"}})),
            400,
            Some("invalidValue"),
        ),
        (api.post("/Users", &json!({"schemas": [USER], "userName": 7})), 400, Some("invalidValue")),
        (api.request(reqwest::Method::POST, "/Users").body("{not json"), 400, Some("invalidSyntax")),
        (api.get("/Users?count=ten"), 400, Some("invalidValue")),
        (api.get("/Users?sortBy=userName&sortOrder=sideways"), 400, Some("invalidValue")),
        (api.get("/Users?attributes=userName&excludedAttributes=name"), 400, Some("invalidSyntax")),
        (api.get("/Nope"), 404, None),
        (api.request(reqwest::Method::PUT, "/Users"), 405, None),
        (api.request(reqwest::Method::POST, "/ServiceProviderConfig"), 405, None),
        (api.request(reqwest::Method::DELETE, "/Schemas"), 405, None),
        (api.get("/Me"), 501, None),
        (api.get("/Schemas?filter=id%20pr"), 403, None),
        (api.get(&format!("/Schemas/{}", "urn:nope")), 404, None),
        (
            api.post(
                "/Groups",
                &json!({"schemas": [GROUP], "displayName": "g", "members": [{"value": "ghost"}]}),
            ),
            400,
            Some("invalidValue"),
        ),
    ];
    for (request, status, scim_type) in cases {
        let (actual, body) = send(request).await;
        assert_error(actual, &body, status, scim_type);
    }
}

#[tokio::test]
async fn requests_without_the_bearer_token_are_401() {
    let api = Api::profile(Profile::StrictRfc).await;
    for request in [
        api.http.get(api.url("/Users")),
        api.http.get(api.url("/Users")).bearer_auth("wrong"),
        api.http.get(api.url("/Users")).basic_auth(DEFAULT_TOKEN, Some("")),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(header(&response, "www-authenticate"), Some("Bearer realm=\"scim\""));
        let status = response.status().as_u16();
        assert_error(status, &response.json().await.unwrap(), 401, None);
    }
}

// ---------------------------------------------------------------------------
// Queries

/// Four users with varied attributes for filter tests.
async fn people(api: &Api) -> Vec<String> {
    let users = [
        json!({"userName": "alice", "externalId": "A-1", "title": "Boss", "active": true,
               "name": {"givenName": "Alice", "familyName": "Liddell"},
               "emails": [{"value": "alice@home.example", "type": "home"},
                          {"value": "alice@work.example", "type": "work", "primary": true}],
               ENTERPRISE: {"employeeNumber": "100", "manager": {"value": "m-1"}}}),
        json!({"userName": "Bob", "externalId": "b-2", "active": false,
               "emails": [{"value": "bob@work.example", "type": "work"}]}),
        json!({"userName": "carol", "title": "", "name": {"familyName": "Smith"}}),
        json!({"userName": "dave", "externalId": "D-4", "active": true,
               "emails": [{"value": "dave@home.example", "type": "home"}]}),
    ];
    let mut ids = Vec::new();
    for user in users {
        ids.push(id(&api.user(user).await));
    }
    ids
}

#[tokio::test]
async fn the_full_filter_grammar_is_supported() {
    let api = Api::profile(Profile::StrictRfc).await;
    let ids = people(&api).await;
    let cases: &[(&str, &[&str])] = &[
        // userName is not caseExact; externalId is.
        (r#"userName eq "BOB""#, &["Bob"]),
        (r#"USERNAME Eq "alice""#, &["alice"]),
        (r#"externalId eq "a-1""#, &[]),
        (r#"externalId eq "A-1""#, &["alice"]),
        (r#"userName ne "bob""#, &["alice", "carol", "dave"]),
        (r#"userName co "A""#, &["alice", "carol", "dave"]),
        (r#"userName sw "c""#, &["carol"]),
        (r#"userName ew "E""#, &["alice", "dave"]),
        // pr: an empty string is not a value.
        ("title pr", &["alice"]),
        ("externalId pr", &["alice", "Bob", "dave"]),
        (r#"userName gt "bob""#, &["carol", "dave"]),
        (r#"userName ge "bob""#, &["Bob", "carol", "dave"]),
        (r#"userName lt "bob""#, &["alice"]),
        (r#"userName le "BOB""#, &["alice", "Bob"]),
        ("active eq true", &["alice", "dave"]),
        ("active eq false", &["Bob"]),
        ("active ne true", &["Bob", "carol"]),
        (r#"title pr and active eq true"#, &["alice"]),
        (r#"userName eq "carol" or active eq false"#, &["Bob", "carol"]),
        (r#"not (active eq true)"#, &["Bob", "carol"]),
        (r#"(userName eq "alice" or userName eq "bob") and not (externalId eq "b-2")"#, &["alice"]),
        (r#"userName eq "alice" or userName eq "dave" and active eq false"#, &["alice"]),
        (r#"name.familyName eq "smith""#, &["carol"]),
        (r#"emails[type eq "work" and value co "@work"]"#, &["alice", "Bob"]),
        (r#"emails[type eq "home"] and not (emails[type eq "work"])"#, &["dave"]),
        (r#"emails.value ew "home.example""#, &["alice", "dave"]),
        (r#"emails co "bob@""#, &["Bob"]),
        (r#"emails.type eq "work" and emails.value sw "dave""#, &[]),
        (r#"emails[type eq "work"].value eq "bob@work.example""#, &["Bob"]),
        (r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m-1""#, &["alice"]),
        (r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "dave""#, &["dave"]),
        (
            r#"meta.resourceType eq "User" and meta.created gt "2000-01-01T00:00:00Z""#,
            &["alice", "Bob", "carol", "dave"],
        ),
        (r#"meta.lastModified lt "2000-01-01T00:00:00Z""#, &[]),
        ("nickName eq null", &["alice", "Bob", "carol", "dave"]),
        ("title ne null", &["alice"]),
    ];
    for (filter, expected) in cases {
        let list = api.list(&[("filter", filter)]).await;
        assert_eq!(names(&list), *expected, "{filter}");
        assert_eq!(list["totalResults"], json!(expected.len()), "{filter}");
    }
    let (status, list) =
        send(api.get(&format!("/Users?{}", encode(&[("filter", &format!("id eq \"{}\"", ids[2]))])))).await;
    assert_eq!((status, names(&list)), (200, vec!["carol".to_owned()]));

    for bad in [
        "userName",
        r#"userName eq "x" and"#,
        r#"userName xx "x""#,
        r#"(userName eq "x""#,
        r#"nosuch eq "x""#,
        "active gt true",
        r#"name co "x""#,
        r#"userName[value eq "x"]"#,
        r#"emails[nosuch eq "x"]"#,
        r#"userName eq "unterminated"#,
    ] {
        let (status, body) = send(api.get(&format!("/Users?{}", encode(&[("filter", bad)])))).await;
        assert_error(status, &body, 400, Some("invalidFilter"));
    }
}

#[tokio::test]
async fn pages_follow_the_rfc_and_short_pages_can_be_forced() {
    let api = Api::start(Config { max_results: 4, ..Config::default() }).await;
    for i in 0..7 {
        api.user(json!({"userName": format!("user{i}")})).await;
    }
    let page = api.list(&[("startIndex", "3"), ("count", "2")]).await;
    assert_eq!(page["schemas"], json!([LIST]));
    assert_eq!(
        (page["totalResults"].clone(), page["itemsPerPage"].clone(), page["startIndex"].clone()),
        (json!(7), json!(2), json!(3))
    );
    assert_eq!(names(&page), ["user2", "user3"]);
    // count=0 returns only the total; startIndex below 1 means 1.
    let page = api.list(&[("count", "0"), ("startIndex", "-5")]).await;
    assert_eq!(
        (page["totalResults"].clone(), page["itemsPerPage"].clone(), page["startIndex"].clone()),
        (json!(7), json!(0), json!(1))
    );
    assert_eq!(page["Resources"], json!([]));
    // Past the end; and count above maxResults is capped.
    assert_eq!(api.list(&[("startIndex", "8")]).await["itemsPerPage"], 0);
    let page = api.list(&[("count", "100")]).await;
    assert_eq!(names(&page), ["user0", "user1", "user2", "user3"]);

    let api = Api::start(Config { short_pages: Some(3), ..Config::default() }).await;
    for i in 0..7 {
        api.user(json!({"userName": format!("user{i}")})).await;
    }
    // A client that trusts `count` would stop after the first page.
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let page = api.list(&[("startIndex", &start.to_string()), ("count", "5")]).await;
        assert!(page["itemsPerPage"].as_u64().unwrap() <= 3);
        seen.extend(names(&page));
        start += page["itemsPerPage"].as_u64().unwrap() as usize;
        if start > page["totalResults"].as_u64().unwrap() as usize {
            break;
        }
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(api.sim.resources(Kind::User).len(), 7);
}

#[tokio::test]
async fn results_sort_when_sorting_is_on_and_keep_creation_order_otherwise() {
    let api = Api::profile(Profile::StrictRfc).await;
    people(&api).await;
    assert_eq!(names(&api.list(&[("sortBy", "userName")]).await), ["alice", "Bob", "carol", "dave"]);
    let list = api.list(&[("sortBy", "userName"), ("sortOrder", "descending")]).await;
    assert_eq!(names(&list), ["dave", "carol", "Bob", "alice"]);
    // Missing values sort last; multi-valued attributes sort by their primary value.
    // externalId is caseExact: upper case sorts first.
    assert_eq!(names(&api.list(&[("sortBy", "externalId")]).await), ["alice", "dave", "Bob", "carol"]);
    assert_eq!(names(&api.list(&[("sortBy", "emails")]).await), ["alice", "Bob", "dave", "carol"]);
    let (status, body) = send(api.get("/Users?sortBy=nosuch")).await;
    assert_error(status, &body, 400, Some("invalidValue"));

    let api = Api::profile(Profile::AwsIdentityCenter).await;
    people(&api).await;
    assert_eq!(
        names(&api.list(&[("sortBy", "userName"), ("sortOrder", "descending")]).await),
        ["alice", "Bob", "carol", "dave"]
    );
}

#[tokio::test]
async fn attributes_and_excluded_attributes_shape_the_answer() {
    let api = Api::profile(Profile::StrictRfc).await;
    let ids = people(&api).await;
    let alice = &ids[0];
    let (_, user) =
        send(api.get(&format!("/Users/{alice}?attributes=userName,emails.value,{ENTERPRISE}:manager"))).await;
    assert_eq!(
        user,
        json!({"schemas": [USER, ENTERPRISE], "id": alice, "userName": "alice",
               "emails": [{"value": "alice@home.example"}, {"value": "alice@work.example"}],
               ENTERPRISE: {"manager": {"value": "m-1"}}})
    );
    let (_, user) = send(
        api.get(&format!("/Users/{alice}?excludedAttributes=emails,name.givenName,meta,id,{ENTERPRISE}")),
    )
    .await;
    assert!(
        user.get("emails").is_none() && user.get("meta").is_none() && user.get(ENTERPRISE).is_none(),
        "{user}"
    );
    assert_eq!(user["name"], json!({"familyName": "Liddell"}));
    assert_eq!(user["id"], json!(alice), "id is returned always");
    let list = api.list(&[("filter", r#"userName eq "bob""#), ("attributes", "active")]).await;
    assert_eq!(list["Resources"], json!([{"schemas": [USER], "id": ids[1], "active": false}]));

    // Entra reads groups without their members.
    let group = api.group("Team", &[alice]).await;
    let (_, group) = send(api.get(&format!("/Groups/{}?excludedAttributes=members", id(&group)))).await;
    assert!(group.get("members").is_none() && group["displayName"] == "Team", "{group}");
}

#[tokio::test]
async fn search_by_post_covers_one_or_every_resource_type() {
    let api = Api::profile(Profile::StrictRfc).await;
    let ids = people(&api).await;
    api.group("alice's team", &[&ids[0]]).await;
    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                        "filter": "userName sw \"a\"", "attributes": ["userName"], "count": 10});
    let (status, list) = send(api.post("/Users/.search", &search)).await;
    assert_eq!((status, names(&list)), (200, vec!["alice".to_owned()]));
    // At the root, a filter attribute unknown to Groups rules Groups out.
    let (_, list) = send(api.post("/.search", &search)).await;
    assert_eq!(list["totalResults"], 1);
    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "displayName co \"team\""});
    let (_, list) = send(api.post("/.search", &search)).await;
    assert_eq!(list["Resources"][0]["displayName"], "alice's team");
    let (status, body) = send(api.post("/.search", &json!({"filter": "userName pr"}))).await;
    assert_error(status, &body, 400, Some("invalidSyntax"));
}

#[tokio::test]
async fn too_many_results_is_refused_when_configured() {
    let api = Api::start(Config { too_many_above: Some(2), ..Config::default() }).await;
    people(&api).await;
    let (status, body) = send(api.get("/Users")).await;
    assert_error(status, &body, 400, Some("tooMany"));
    assert_eq!(api.list(&[("filter", "active eq true")]).await["totalResults"], 2);
}

// ---------------------------------------------------------------------------
// PATCH

#[tokio::test]
async fn patch_adds_replaces_and_removes_with_and_without_paths() {
    let api = Api::profile(Profile::StrictRfc).await;
    let user = api.user(json!({"userName": "ada", "emails": [{"value": "ada@home.example", "type": "home", "primary": true}]})).await;
    let path = format!("/Users/{}", id(&user));
    let operations = json!([
        {"op": "add", "path": "name.givenName", "value": "Ada"},
        {"op": "add", "path": "emails", "value": [{"value": "ada@work.example", "type": "work", "primary": true}]},
        {"op": "replace", "path": "emails[type eq \"home\"].value", "value": "ada@house.example"},
        {"op": "replace", "value": {"displayName": "Ada L.", "active": false, ENTERPRISE: {"department": "R&D"}}},
        {"op": "add", "path": format!("{ENTERPRISE}:manager"), "value": {"value": "m-9"}},
        {"op": "remove", "path": "name"}
    ]);
    let (status, patched) = send(api.patch(&path, operations)).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        patched["emails"],
        json!([{"value": "ada@house.example", "type": "home", "primary": false},
               {"value": "ada@work.example", "type": "work", "primary": true}]),
        "a new primary value demotes the old one"
    );
    assert_eq!((patched["displayName"].clone(), patched["active"].clone()), (json!("Ada L."), json!(false)));
    assert_eq!(patched[ENTERPRISE], json!({"department": "R&D", "manager": {"value": "m-9"}}));
    assert!(patched.get("name").is_none());
    assert_eq!(patched["schemas"], json!([USER, ENTERPRISE]));

    let operations = json!([
        {"op": "remove", "path": "emails[type eq \"work\"]"},
        {"op": "remove", "path": ENTERPRISE},
        {"op": "add", "path": "emails", "value": [{"value": "ada@house.example", "type": "home", "primary": false}]}
    ]);
    let (_, patched) = send(api.patch(&path, operations)).await;
    assert_eq!(
        patched["emails"],
        json!([{"value": "ada@house.example", "type": "home", "primary": false}]),
        "adding an existing value changes nothing"
    );
    assert_eq!(patched["schemas"], json!([USER]));

    // Group membership: add, remove by filter; users see their groups.
    let bob = api.user(json!({"userName": "bob"})).await;
    let group = api.group("Eng", &[]).await;
    let group_path = format!("/Groups/{}", id(&group));
    let add = json!([{"op": "add", "path": "members", "value": [{"value": id(&user)}, {"value": id(&bob)}]}]);
    let (_, group) = send(api.patch(&group_path, add)).await;
    assert_eq!(group["members"].as_array().unwrap().len(), 2);
    let (_, ada) = send(api.get(&path)).await;
    assert_eq!(ada["groups"][0]["value"], json!(id(&group)));
    assert_eq!(ada["groups"][0]["display"], "Eng");
    let remove = json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", id(&user))}]);
    let (_, group) = send(api.patch(&group_path, remove)).await;
    assert_eq!(group["members"], json!([{"value": id(&bob)}]));
    let (_, ada) = send(api.get(&path)).await;
    assert!(ada.get("groups").is_none());
    // Deleting a user drops it from its groups.
    send(api.delete(&format!("/Users/{}", id(&bob)))).await;
    let (_, group) = send(api.get(&group_path)).await;
    assert!(group.get("members").is_none(), "{group}");
}

#[tokio::test]
async fn a_failing_operation_leaves_the_resource_unchanged() {
    let api = Api::profile(Profile::StrictRfc).await;
    let user = api.user(json!({"userName": "ada", "displayName": "Ada"})).await;
    let path = format!("/Users/{}", id(&user));
    let failing = [
        (json!({"op": "remove", "path": "emails[type eq \"work\"]"}), "noTarget"),
        (json!({"op": "replace", "path": "emails[type eq \"work\"].value", "value": "x@y"}), "noTarget"),
        (json!({"op": "replace", "path": "nosuch", "value": 1}), "invalidPath"),
        (json!({"op": "replace", "path": "emails[type eq", "value": 1}), "invalidPath"),
        (json!({"op": "replace", "path": "meta.created", "value": "2020-01-01T00:00:00Z"}), "mutability"),
        (json!({"op": "replace", "path": "groups", "value": []}), "mutability"),
        (json!({"op": "remove"}), "noTarget"),
        (json!({"op": "remove", "path": "userName"}), "invalidValue"),
        (json!({"op": "add", "path": "active", "value": "False"}), "invalidValue"),
        (json!({"op": "Replace", "path": "active", "value": false}), "invalidSyntax"),
        (json!({"op": "replace", "value": {"name.givenName": "x"}}), "invalidPath"),
        (json!({"op": "add", "path": "title"}), "invalidValue"),
    ];
    for (bad, scim_type) in failing {
        let operations = json!([{"op": "replace", "path": "displayName", "value": "Changed"}, bad]);
        let (status, body) = send(api.patch(&path, operations)).await;
        assert_error(status, &body, 400, Some(scim_type));
        let (_, now) = send(api.get(&path)).await;
        assert_eq!(now, user, "after {bad}");
    }
    let (status, body) = send(api.with_body(
        reqwest::Method::PATCH,
        &path,
        &json!({"Operations": [{"op": "add", "path": "title", "value": "x"}]}),
    ))
    .await;
    assert_error(status, &body, 400, Some("invalidSyntax"));
    let (status, body) = send(api.patch(&path, json!([]))).await;
    assert_error(status, &body, 400, Some("invalidSyntax"));
    let (status, body) =
        send(api.patch("/Users/nosuch", json!([{"op": "add", "path": "title", "value": "x"}]))).await;
    assert_error(status, &body, 404, None);
}

// ---------------------------------------------------------------------------
// ETags

#[tokio::test]
async fn etags_guard_writes_and_conditional_reads() {
    let api = Api::profile(Profile::StrictRfc).await;
    let user = api.user(json!({"userName": "ada"})).await;
    let path = format!("/Users/{}", id(&user));
    let version = user["meta"]["version"].as_str().unwrap().to_owned();

    let response = api.get(&path).header("if-none-match", &version).send().await.unwrap();
    assert_eq!(response.status(), 304);
    assert_eq!(header(&response, "etag"), Some(version.as_str()));

    let put = json!({"schemas": [USER], "userName": "ada", "title": "Countess"});
    let (status, body) = send(api.put(&path, &put).header("if-match", "W/\"999\"")).await;
    assert_error(status, &body, 412, None);
    let response = api.put(&path, &put).header("if-match", &version).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let new_version = header(&response, "etag").unwrap().to_owned();
    assert_ne!(new_version, version);

    // The old version no longer matches anything.
    let operations = json!([{"op": "replace", "path": "title", "value": "x"}]);
    let (status, body) = send(api.patch(&path, operations.clone()).header("if-match", &version)).await;
    assert_error(status, &body, 412, None);
    let (status, body) = send(api.delete(&path).header("if-match", &version)).await;
    assert_error(status, &body, 412, None);
    let (status, _) = send(api.patch(&path, operations).header("if-match", "*")).await;
    assert_eq!(status, 200);

    // A change behind the client's back moves the version too.
    let (_, before) = send(api.get(&path)).await;
    api.sim.change(Kind::User, &id(&user), &json!({"title": "Changed in the app"})).unwrap();
    let (status, body) =
        send(api.delete(&path).header("if-match", before["meta"]["version"].as_str().unwrap())).await;
    assert_error(status, &body, 412, None);

    // Without etag support the headers are ignored and nothing is versioned.
    let api = Api::profile(Profile::AwsIdentityCenter).await;
    let user = api.user(json!({"userName": "ada"})).await;
    assert!(user["meta"].get("version").is_none());
    let (status, _) =
        send(api.delete(&format!("/Users/{}", id(&user))).header("if-match", "W/\"nope\"")).await;
    assert_eq!(status, 204);
}

// ---------------------------------------------------------------------------
// Bulk

#[tokio::test]
async fn bulk_resolves_bulk_ids_in_any_order_and_reports_per_operation() {
    let api = Api::profile(Profile::StrictRfc).await;
    let request = json!({"schemas": [BULK], "Operations": [
        // The group names a user created later in the same request.
        {"method": "POST", "path": "/Groups", "bulkId": "g", "data": {"schemas": [GROUP], "displayName": "Eng", "members": [{"type": "User", "value": "bulkId:u"}]}},
        {"method": "POST", "path": "/Users", "bulkId": "u", "data": {"schemas": [USER], "userName": "ada"}},
        {"method": "PATCH", "path": "/Users/bulkId:u", "data": {"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "title", "value": "Countess"}]}},
        {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"schemas": [USER], "userName": "ADA"}},
        {"method": "PUT", "path": "/Users/bulkId:dup", "data": {"schemas": [USER], "userName": "x"}},
        {"method": "DELETE", "path": "/Users/nosuch"}
    ]});
    let (status, response) = send(api.post("/Bulk", &request)).await;
    assert_eq!(status, 200, "{response}");
    let results = response["Operations"].as_array().unwrap();
    let statuses: Vec<&str> = results.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["201", "201", "200", "409", "409", "404"]);
    let users = api.sim.resources(Kind::User);
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["title"], "Countess");
    assert_eq!(results[1]["location"], users[0]["meta"]["location"]);
    // The PATCH ran after the POST, so its version is the current one.
    assert_ne!(results[1]["version"], results[2]["version"]);
    assert_eq!(results[2]["version"], users[0]["meta"]["version"]);
    assert_eq!(results[0]["bulkId"], "g");
    assert_eq!(results[3]["response"]["scimType"], "uniqueness");
    let groups = api.sim.resources(Kind::Group);
    assert_eq!(groups[0]["members"], json!([{"type": "User", "value": users[0]["id"]}]));

    // failOnErrors stops after that many errors; circular references fail.
    let request = json!({"schemas": [BULK], "failOnErrors": 1, "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "a", "data": {"schemas": [USER]}},
        {"method": "POST", "path": "/Users", "bulkId": "b", "data": {"schemas": [USER], "userName": "never"}}
    ]});
    let (_, response) = send(api.post("/Bulk", &request)).await;
    assert_eq!(response["Operations"].as_array().unwrap().len(), 1);
    assert_eq!(response["Operations"][0]["status"], "400");
    let request = json!({"schemas": [BULK], "Operations": [
        {"method": "POST", "path": "/Groups", "bulkId": "x", "data": {"schemas": [GROUP], "displayName": "X", "members": [{"value": "bulkId:y"}]}},
        {"method": "POST", "path": "/Groups", "bulkId": "y", "data": {"schemas": [GROUP], "displayName": "Y", "members": [{"value": "bulkId:x"}]}},
        {"method": "POST", "path": "/Users", "data": {"schemas": [USER], "userName": "no-bulk-id"}}
    ]});
    let (_, response) = send(api.post("/Bulk", &request)).await;
    let statuses: Vec<&str> =
        response["Operations"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["409", "409", "400"]);
    assert_eq!(api.sim.resources(Kind::Group).len(), 1);
}

#[tokio::test]
async fn bulk_limits_answer_413_and_unsupported_bulk_501() {
    let limits = BulkLimits { max_operations: 2, max_payload_size: 600 };
    let api = Api::start(Config { bulk: Some(limits), ..Config::default() }).await;
    let (_, config) = send(api.get("/ServiceProviderConfig")).await;
    assert_eq!(config["bulk"], json!({"supported": true, "maxOperations": 2, "maxPayloadSize": 600}));
    let op = json!({"method": "POST", "path": "/Users", "bulkId": "1", "data": {"schemas": [USER], "userName": "a"}});
    let (status, body) =
        send(api.post("/Bulk", &json!({"schemas": [BULK], "Operations": [op, op, op]}))).await;
    assert_error(status, &body, 413, None);
    let big = json!({"schemas": [BULK], "Operations": [{"method": "POST", "path": "/Users", "bulkId": "1",
                     "data": {"schemas": [USER], "userName": "a", "displayName": "x".repeat(600)}}]});
    let (status, body) = send(api.post("/Bulk", &big)).await;
    assert_error(status, &body, 413, None);
    assert!(api.sim.resources(Kind::User).is_empty());

    let api = Api::profile(Profile::AwsIdentityCenter).await;
    let (status, body) = send(api.post("/Bulk", &json!({"schemas": [BULK], "Operations": [op]}))).await;
    assert_error(status, &body, 501, None);
}

// ---------------------------------------------------------------------------
// Discovery

#[tokio::test]
async fn discovery_advertises_exactly_what_is_switched_on() {
    let api = Api::profile(Profile::StrictRfc).await;
    let (_, config) = send(api.get("/ServiceProviderConfig")).await;
    for feature in ["patch", "bulk", "filter", "changePassword", "sort", "etag"] {
        assert_eq!(config[feature]["supported"], true, "{feature}");
    }
    assert_eq!(config["authenticationSchemes"][0]["type"], "oauthbearertoken");
    let (_, types) = send(api.get("/ResourceTypes")).await;
    assert_eq!(types["totalResults"], 2);
    let (_, user_type) = send(api.get("/ResourceTypes/User")).await;
    assert_eq!(user_type["schemaExtensions"], json!([{"schema": ENTERPRISE, "required": false}]));
    let (_, schemas) = send(api.get("/Schemas")).await;
    let ids: Vec<&str> =
        schemas["Resources"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [USER, GROUP, ENTERPRISE]);
    let (_, user_schema) = send(api.get(&format!("/Schemas/{USER}"))).await;
    let user_name = &user_schema["attributes"][0];
    assert_eq!(
        (user_name["name"].as_str(), user_name["uniqueness"].as_str(), user_name["caseExact"].as_bool()),
        (Some("userName"), Some("server"), Some(false))
    );

    let api = Api::profile(Profile::AwsIdentityCenter).await;
    let (_, config) = send(api.get("/ServiceProviderConfig")).await;
    for (feature, on) in [
        ("patch", true),
        ("bulk", false),
        ("filter", true),
        ("changePassword", false),
        ("sort", false),
        ("etag", false),
    ] {
        assert_eq!(config[feature]["supported"], on, "{feature}");
    }
    let (_, user_schema) = send(api.get(&format!("/Schemas/{USER}"))).await;
    let names: Vec<&str> =
        user_schema["attributes"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert!(!names.contains(&"password"), "no changePassword, no password: {names:?}");

    let api = Api::profile(Profile::StripeDashboard).await;
    let (_, user_schema) = send(api.get(&format!("/Schemas/{USER}"))).await;
    let attributes = user_schema["attributes"].as_array().unwrap();
    let names: Vec<&str> = attributes.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["userName", "displayName", "active"]);
    assert_eq!(attributes[0]["mutability"], "immutable");
    let (_, types) = send(api.get("/ResourceTypes/User")).await;
    assert_eq!(types["schemaExtensions"], json!([]));

    let api = Api::profile(Profile::TravelPerk).await;
    let (_, types) = send(api.get("/ResourceTypes")).await;
    assert_eq!(types["Resources"].as_array().unwrap().len(), 1, "TravelPerk serves Users only");
    let (_, schemas) = send(api.get("/Schemas")).await;
    let ids: Vec<&str> =
        schemas["Resources"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [USER, ENTERPRISE, TRAVELPERK]);
}

// ---------------------------------------------------------------------------
// Profiles

#[tokio::test]
async fn entra_tolerant_accepts_entras_patch_dialect_that_strict_refuses() {
    let user =
        json!({"userName": "ada", "active": true, "emails": [{"value": "ada@home.example", "type": "home"}]});
    let operations = json!([
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "ada@work.example"},
        {"op": "Replace", "value": {"name.givenName": "Ada", format!("{ENTERPRISE}:employeeNumber"): "7"}}
    ]);
    let strict = Api::profile(Profile::StrictRfc).await;
    let created = strict.user(user.clone()).await;
    let (status, body) = send(strict.patch(&format!("/Users/{}", id(&created)), operations.clone())).await;
    assert_error(status, &body, 400, Some("invalidSyntax"));

    let api = Api::profile(Profile::EntraTolerant).await;
    let created = api.user(user).await;
    let (status, patched) = send(api.patch(&format!("/Users/{}", id(&created)), operations)).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["active"], false);
    assert_eq!(
        patched["emails"],
        json!([{"value": "ada@home.example", "type": "home"}, {"type": "work", "value": "ada@work.example"}])
    );
    assert_eq!(patched["name"], json!({"givenName": "Ada"}));
    assert_eq!(patched[ENTERPRISE], json!({"employeeNumber": "7"}));

    // Entra's member removal: path "members" with the values to drop.
    let bob = api.user(json!({"userName": "bob"})).await;
    let group = api.group("Eng", &[&id(&created), &id(&bob)]).await;
    let remove = json!([{"op": "Remove", "path": "members", "value": [{"value": id(&created)}]}]);
    let (_, group) = send(api.patch(&format!("/Groups/{}", id(&group)), remove)).await;
    assert_eq!(group["members"], json!([{"value": id(&bob)}]));
    // Entra matches on emails[type eq "work"].value.
    let list = api.list(&[("filter", r#"emails[type eq "work"].value eq "ADA@work.example""#)]).await;
    assert_eq!(names(&list), ["ada"]);
}

#[tokio::test]
async fn okta_tolerant_takes_oktas_requests_and_repeats() {
    let api = Api::profile(Profile::OktaTolerant).await;
    // No schemas, an attribute the app does not keep.
    let (status, user) =
        send(api.post("/Users", &json!({"userName": "ada", "active": true, "okta:custom": "x"}))).await;
    assert_eq!(status, 201, "{user}");
    assert!(user.get("okta:custom").is_none());
    let path = format!("/Users/{}", id(&user));
    let (status, user) = send(api.patch(&path, json!([{"op": "replace", "value": {"active": false}}]))).await;
    assert_eq!((status, user["active"].clone()), (200, json!(false)));
    let group = api.group("Push", &[&id(&user)]).await;
    let remove = json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", id(&user))}]);
    for _ in 0..2 {
        let (status, _) = send(api.patch(&format!("/Groups/{}", id(&group)), remove.clone())).await;
        assert_eq!(status, 200, "a repeated removal is not an error here");
    }
    // Okta's test connection.
    let list = api.list(&[("startIndex", "1"), ("count", "2")]).await;
    assert_eq!(list["itemsPerPage"], 1);

    // A server that refuses path-less PATCH breaks Okta's deactivation.
    let api = Api::start(Config { pathless_patch: false, ..Config::profile(Profile::OktaTolerant) }).await;
    let user = api.user(json!({"userName": "ada"})).await;
    let (status, body) = send(
        api.patch(&format!("/Users/{}", id(&user)), json!([{"op": "replace", "value": {"active": false}}])),
    )
    .await;
    assert_error(status, &body, 400, Some("invalidPath"));
}

#[tokio::test]
async fn aws_identity_center_limits_filters_and_member_changes() {
    let api = Api::profile(Profile::AwsIdentityCenter).await;
    let ids = people(&api).await;
    assert_eq!(names(&api.list(&[("filter", r#"userName eq "ALICE""#)]).await), ["alice"]);
    assert_eq!(names(&api.list(&[("filter", r#"externalId eq "b-2""#)]).await), ["Bob"]);
    for refused in [
        r#"userName co "a""#,
        r#"userName eq "a" and active eq true"#,
        "title pr",
        r#"title eq "Boss""#,
        "active eq true",
    ] {
        let (status, body) = send(api.get(&format!("/Users?{}", encode(&[("filter", refused)])))).await;
        assert_error(status, &body, 400, Some("invalidFilter"));
    }

    let mut members = Vec::new();
    for i in 0..97 {
        members.push(json!({"value": id(&api.user(json!({"userName": format!("m{i}")})).await)}));
    }
    members.extend(ids.iter().map(|i| json!({"value": i})));
    let group = api.group("Big", &[]).await;
    let path = format!("/Groups/{}", id(&group));
    let (status, body) =
        send(api.patch(&path, json!([{"op": "add", "path": "members", "value": members}]))).await;
    assert_eq!(status, 400);
    assert_eq!(body["detail"], "Request is unparsable, syntactically incorrect, or violates schema.");
    let (status, group) =
        send(api.patch(&path, json!([{"op": "add", "path": "members", "value": members[..100]}]))).await;
    assert_eq!((status, group["members"].as_array().unwrap().len()), (200, 100));
}

#[tokio::test]
async fn stripe_dashboard_keeps_five_attributes_and_deletes_on_deactivation() {
    let api = Api::profile(Profile::StripeDashboard).await;
    let body = json!({"userName": "ada@example.com", "displayName": "Ada", "active": true,
                      "name": {"givenName": "Ada"}, "emails": [{"value": "ada@example.com"}], "externalId": "okta-1"});
    let (status, user) = send(api.post("/Users", &body)).await;
    assert_eq!(status, 201, "{user}");
    let kept: Vec<&String> = user.as_object().unwrap().keys().collect();
    assert_eq!(kept, ["active", "displayName", "id", "meta", "schemas", "userName"]);
    let path = format!("/Users/{}", id(&user));

    // The email cannot change; the same email in another case is not a change.
    let (status, body) =
        send(api.patch(&path, json!([{"op": "replace", "path": "userName", "value": "new@example.com"}])))
            .await;
    assert_error(status, &body, 400, Some("mutability"));
    let (status, body) = send(api.put(&path, &json!({"userName": "new@example.com"}))).await;
    assert_error(status, &body, 400, Some("mutability"));
    let (status, _) =
        send(api.put(&path, &json!({"userName": "ADA@example.com", "displayName": "Ada L."}))).await;
    assert_eq!(status, 200);

    // PATCH active=false deletes, as DELETE does.
    let (status, body) = send(api.patch(&path, json!([{"op": "replace", "value": {"active": false}}]))).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, body) = send(api.get(&path)).await;
    assert_error(status, &body, 404, None);
    let bob = api.user(json!({"userName": "bob@example.com"})).await;
    let (status, _) = send(api.delete(&format!("/Users/{}", id(&bob)))).await;
    assert_eq!(status, 204);
    assert!(api.sim.resources(Kind::User).is_empty());

    // Groups cannot be renamed.
    let group = api.group("Admins", &[]).await;
    let (status, body) = send(api.patch(
        &format!("/Groups/{}", id(&group)),
        json!([{"op": "replace", "path": "displayName", "value": "Owners"}]),
    ))
    .await;
    assert_error(status, &body, 400, Some("mutability"));
}

#[tokio::test]
async fn travelperk_validates_its_extension_and_the_manager() {
    let api = Api::profile(Profile::TravelPerk).await;
    let manager = api.user(json!({"userName": "boss@example.com"})).await;
    assert_eq!(manager["id"], "1", "TravelPerk ids are numeric strings");
    let body = json!({"userName": "ada@example.com", "phoneNumbers": [{"value": "+44 1", "type": "work"}],
        ENTERPRISE: {"costCenter": "CC1", "manager": {"value": "1"}},
        TRAVELPERK: {"gender": "F", "dateOfBirth": "1815-12-10", "travelPolicy": "Standard",
                     "invoiceProfiles": [{"value": "Main"}], "emergencyContact": {"name": "Byron", "phone": "+44 2"}}});
    let user = api.user(body.clone()).await;
    assert_eq!(user["id"], "2");
    assert_eq!(user[TRAVELPERK]["emergencyContact"]["name"], "Byron");
    assert_eq!(user["schemas"], json!([USER, ENTERPRISE, TRAVELPERK]));

    let mut clash = body.clone();
    clash["userName"] = json!("other@example.com");
    for (path, value) in [
        (TRAVELPERK, json!({"gender": "X"})),
        (TRAVELPERK, json!({"travelPolicy": "Luxury"})),
        (TRAVELPERK, json!({"invoiceProfiles": [{"value": "Nope"}]})),
        (ENTERPRISE, json!({"manager": {"value": "99"}})),
    ] {
        let mut bad = clash.clone();
        bad[path] = value;
        let (status, body) = send(api.post("/Users", &bad)).await;
        assert_error(status, &body, 400, Some("invalidValue"));
    }
    let (status, body) = send(api.get("/Groups")).await;
    assert_error(status, &body, 404, None);
    let (status, _) = send(
        api.patch(&format!("/Users/{}", id(&user)), json!([{"op": "replace", "value": {"active": false}}])),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(api.delete(&format!("/Users/{}", id(&user)))).await;
    assert_eq!(status, 204);
    assert_eq!(send(api.get(&format!("/Users/{}", id(&user)))).await.0, 404, "hard delete by default");

    // Whether DELETE only deactivates is undocumented, so it is a switch.
    let api = Api::start(Config { delete_deactivates: true, ..Config::profile(Profile::TravelPerk) }).await;
    let user = api.user(json!({"userName": "ada@example.com", "active": true})).await;
    let (status, _) = send(api.delete(&format!("/Users/{}", id(&user)))).await;
    assert_eq!(status, 204);
    let (status, user) = send(api.get(&format!("/Users/{}", id(&user)))).await;
    assert_eq!((status, user["active"].clone()), (200, json!(false)));
}

#[tokio::test]
async fn the_base_path_moves_and_numeric_ids_count_from_the_seed() {
    let config = Config { base_path: "/custom".into(), seed: 40, ..Config::profile(Profile::TravelPerk) };
    let (sim, running) = ScimSim::start(config, 0).await.unwrap();
    let http = Client::new();
    let at = |path: &str| http.get(format!("{}{path}", running.base_url())).bearer_auth(DEFAULT_TOKEN);
    assert_eq!(send(at("/scim/v2/Users")).await.0, 404);
    let created = sim.seed(Kind::User, &json!({"userName": "ada@example.com"})).unwrap();
    assert_eq!(created["id"], "40");
    assert_eq!(created["meta"]["location"], format!("{}/custom/Users/40", running.base_url()));
    let (status, list) =
        send(at(&format!("/custom/Users?{}", encode(&[("filter", r#"emails.value eq "ADA@example.com""#)]))))
            .await;
    assert_eq!((status, names(&list)), (200, vec!["ada@example.com".to_owned()]));
    let (status, body) =
        send(at(&format!("/custom/Users?{}", encode(&[("filter", r#"title eq "x""#)])))).await;
    assert_error(status, &body, 400, Some("invalidFilter"));
}

// ---------------------------------------------------------------------------
// Machinery

#[tokio::test]
async fn injected_faults_answer_as_configured_and_are_logged() {
    let api = Api::profile(Profile::StrictRfc).await;
    api.fault("users.list", Fault::RateLimited { retry_after: Some(7) });
    let response = api.get("/Users").send().await.unwrap();
    assert_eq!(header(&response, "retry-after"), Some("7"));
    assert_error(429, &response.json().await.unwrap(), 429, None);
    api.fault("users.list", Fault::RateLimited { retry_after: None });
    let response = api.get("/Users").send().await.unwrap();
    assert_eq!((response.status().as_u16(), header(&response, "retry-after")), (429, None));
    api.fault("*", Fault::ServerError { status: 503 });
    let (status, body) = send(api.get("/Users")).await;
    assert_error(status, &body, 503, None);
    api.fault("users.create", Fault::InBand { code: "tooMany".into(), message: None });
    let (status, body) = send(api.post("/Users", &json!({"schemas": [USER], "userName": "x"}))).await;
    assert_error(status, &body, 400, Some("tooMany"));
    api.fault("users.get", Fault::Malformed { status: 502 });
    let response = api.get("/Users/x").send().await.unwrap();
    assert_eq!((response.status().as_u16(), header(&response, "content-type")), (502, Some("text/html")));
    assert!(response.text().await.unwrap().contains("502 Bad Gateway"));
    assert!(api.sim.resources(Kind::User).is_empty(), "faults before the work change nothing");

    // The create commits, then the answer never comes in time.
    api.fault("users.create", Fault::TimeoutAfterCommit { secs: 5 });
    let sent = api
        .post("/Users", &json!({"schemas": [USER], "userName": "ada"}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout());
    assert_eq!(api.sim.resources(Kind::User).len(), 1);
    let (status, body) = send(api.post("/Users", &json!({"schemas": [USER], "userName": "ada"}))).await;
    assert_error(status, &body, 409, Some("uniqueness"));

    let log = api.sim.log().entries();
    let faults: Vec<Option<&str>> = log.iter().map(|e| e.fault.as_deref()).collect();
    assert_eq!(
        faults,
        [
            Some("rate_limited(retry_after=7)"),
            Some("rate_limited"),
            Some("server_error(503)"),
            Some("in_band(tooMany)"),
            Some("malformed(502)"),
            Some("timeout_after_commit(5s)"),
            None
        ]
    );
    assert_eq!(log[5].status, 0, "never answered");
    assert_eq!(log[6].header("authorization"), Some(format!("Bearer {DEFAULT_TOKEN}").as_str()));
    assert!(log[6].body.contains("\"userName\":\"ada\""));
}

#[tokio::test]
async fn the_rate_limit_applies_per_token_when_configured() {
    let config = Config {
        tokens: vec![DEFAULT_TOKEN.into(), "other".into()],
        rate_limit: Some(RateLimit { requests: 2, per_secs: 60 }),
        ..Config::default()
    };
    let api = Api::start(config).await;
    assert_eq!(send(api.get("/Users")).await.0, 200);
    assert_eq!(send(api.get("/Users")).await.0, 200);
    let response = api.get("/Users").send().await.unwrap();
    assert_eq!(response.status(), 429);
    let wait: u64 = header(&response, "retry-after").unwrap().parse().unwrap();
    assert!((50..=60).contains(&wait), "{wait}");
    let other = api.http.get(api.url("/Users")).bearer_auth("other").send().await.unwrap();
    assert_eq!(other.status(), 200);
}

#[tokio::test]
async fn the_back_door_seeds_changes_lists_and_resets() {
    let api = Api::profile(Profile::StrictRfc).await;
    let base = api.running.base_url();
    let http = &api.http;
    let seeded: Value = http
        .post(format!("{base}/_sim/users"))
        .json(&json!({"userName": "ada", "title": "Countess", "unknown": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ada = id(&seeded);
    let group: Value = http
        .post(format!("{base}/_sim/groups"))
        .json(&json!({"displayName": "Eng", "members": [{"value": ada}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let duplicate =
        http.post(format!("{base}/_sim/users")).json(&json!({"userName": "ADA"})).send().await.unwrap();
    assert_eq!(duplicate.status(), 409);

    // Drift: the app changes a user and the client sees it.
    let changed: Value = http
        .patch(format!("{base}/_sim/users/{ada}"))
        .json(&json!({"title": null, "displayName": "Ada"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(changed.get("title").is_none() && changed["displayName"] == "Ada", "{changed}");
    let (_, user) = send(api.get(&format!("/Users/{ada}"))).await;
    assert_eq!(user["displayName"], "Ada");
    assert_eq!(user["groups"][0]["value"], group["id"]);

    let users: Vec<Value> =
        http.get(format!("{base}/_sim/users")).send().await.unwrap().json().await.unwrap();
    assert_eq!(users.len(), 1);
    let requests: Vec<Value> =
        http.get(format!("{base}/_sim/requests")).send().await.unwrap().json().await.unwrap();
    assert_eq!(requests.len(), 1, "the back door is not logged");
    let fault = json!({"operation": "users.get", "fault": {"kind": "server_error", "status": 500}});
    http.post(format!("{base}/_sim/faults")).json(&fault).send().await.unwrap();
    assert_eq!(send(api.get(&format!("/Users/{ada}"))).await.0, 500);

    let deleted = http.delete(format!("{base}/_sim/groups/{}", id(&group))).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(api.sim.resources(Kind::Group).is_empty());
    http.post(format!("{base}/_sim/reset")).send().await.unwrap();
    assert!(api.sim.resources(Kind::User).is_empty());
    assert!(api.sim.log().entries().is_empty());
    // Ids restart from the seed.
    let again: Value = http
        .post(format!("{base}/_sim/users"))
        .json(&json!({"userName": "x"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(id(&again), ada);
}

#[tokio::test]
async fn ids_are_deterministic_per_seed() {
    let first = ScimSim::new(Config::default());
    let second = ScimSim::new(Config::default());
    let other = ScimSim::new(Config { seed: 2, ..Config::default() });
    let ids = |sim: &ScimSim| {
        (0..3)
            .map(|i| sim.seed(Kind::User, &json!({"userName": format!("u{i}")})).unwrap()["id"].clone())
            .collect::<Vec<_>>()
    };
    let a = ids(&first);
    assert_eq!(a, ids(&second));
    assert_ne!(a, ids(&other));
}
