//! The Expensify simulator over real HTTP, as a connector would see it.

use std::sync::Arc;
use std::time::Duration;

use portcullis_sim::common::{Fault, FaultRule, Running};
use portcullis_sim::expensify::{
    Config, Employee, ExpensifySim, FeedShape, PolicySeed, RATE_LIMIT_MESSAGE, Report,
};
use serde_json::{Value, json};

const POLICY: &str = "F0E1D2C3B4A59687";
const OWNER: &str = "admin@example.com";

struct Sim {
    sim: Arc<ExpensifySim>,
    run: Running,
    http: reqwest::Client,
}

/// Most tests make more than 5 calls, so they run without rate limits.
async fn start_with(config: Config) -> Sim {
    let (sim, run) = ExpensifySim::start(config, 0).await.unwrap();
    Sim { sim, run, http: reqwest::Client::new() }
}

async fn start() -> Sim {
    start_with(Config { rate_limits: false, ..Config::default() }).await
}

fn creds() -> Value {
    json!({"partnerUserID": "aa_portcullis_test", "partnerUserSecret": "expensify-secret"})
}

fn job(kind: &str, input: Value) -> Value {
    json!({"type": kind, "credentials": creds(), "inputSettings": input})
}

fn updater(rows: Value) -> Value {
    json!({"type": "update", "credentials": creds(), "dataSource": "request",
           "inputSettings": {"type": "employees", "entity": "generic"}, "data": rows})
}

fn row(email: &str, manager: &str, id: &str) -> Value {
    json!({"employeeEmail": email, "managerEmail": manager, "employeeID": id, "policyID": POLICY})
}

impl Sim {
    fn url(&self) -> String {
        format!("{}/Integration-Server/ExpensifyIntegrations", self.run.base_url())
    }

    async fn post(&self, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(fields);
        self.http
            .post(self.url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.finish())
            .send()
            .await
            .unwrap()
    }

    /// A job as the form a connector sends: a `data` key at the job's top
    /// level goes to the `data` form field instead.
    fn request(&self, job: &Value) -> reqwest::RequestBuilder {
        let mut job = job.clone();
        let data = job.as_object_mut().unwrap().remove("data").map(|d| match d {
            Value::String(s) => s,
            other => other.to_string(),
        });
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("requestJobDescription", &job.to_string());
        if let Some(data) = data {
            form.append_pair("data", &data);
        }
        self.http
            .post(self.url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.finish())
    }

    async fn send(&self, job: &Value) -> reqwest::Response {
        self.request(job).send().await.unwrap()
    }

    /// The HTTP status and the parsed body.
    async fn call(&self, job: Value) -> (u16, Value) {
        let response = self.send(&job).await;
        let status = response.status().as_u16();
        (status, serde_json::from_str(&response.text().await.unwrap()).unwrap())
    }

    async fn update(&self, rows: Value) -> Value {
        let (status, body) = self.call(updater(rows)).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    fn member(&self, policy: &str, email: &str) -> Option<Employee> {
        self.sim.employees(policy).into_iter().find(|e| e.email == email)
    }

    async fn sim_post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http.post(format!("{}{path}", self.run.base_url())).json(&body).send().await.unwrap()
    }
}

#[tokio::test]
async fn accepts_all_three_feed_shapes_and_records_which() {
    let s = start().await;
    assert_eq!(s.sim.last_feed_shape(), None);

    s.update(json!([row("a@example.com", OWNER, "E1")])).await;
    assert_eq!(s.sim.last_feed_shape(), Some(FeedShape::BareArray));

    s.update(json!({"Employees": [row("b@example.com", OWNER, "E2")]})).await;
    assert_eq!(s.sim.last_feed_shape(), Some(FeedShape::EmployeesObject));

    let okta = json!({"type": "update", "credentials": creds(), "onFinish": {"immediateResponse": true},
        "inputSettings": {"type": "employees", "entity": "generic", "data": [row("c@example.com", OWNER, "E3")]}});
    let (_, body) = s.call(okta).await;
    assert_eq!(body["responseCode"], 200);
    assert_eq!(s.sim.last_feed_shape(), Some(FeedShape::InputSettingsData));

    let emails: Vec<_> = s.sim.employees(POLICY).into_iter().map(|e| e.email).collect();
    assert_eq!(emails, ["a@example.com", OWNER, "b@example.com", "c@example.com"]);
    let shape: Value = s
        .http
        .get(format!("{}/_sim/feed-shape", s.run.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shape["last"], "input_settings_data");
}

#[tokio::test]
async fn empty_or_missing_feed_is_410() {
    let s = start().await;
    for rows in [json!([]), json!({"Employees": []})] {
        let (status, body) = s.call(updater(rows)).await;
        assert_eq!((status, body["responseCode"].as_u64()), (200, Some(410)), "{body}");
    }
    let mut no_data = updater(json!([]));
    no_data.as_object_mut().unwrap().remove("data");
    let (_, body) = s.call(no_data).await;
    assert_eq!(body, json!({"responseCode": 410, "responseMessage": "Employee data missing"}));
}

#[tokio::test]
async fn invalid_rows_are_skipped_with_reasons_and_the_job_succeeds() {
    let s = start().await;
    // A policy someone else owns, where the caller is an admin.
    let other = s.sim.create_policy(PolicySeed {
        name: "Other".into(),
        owner: "boss@example.com".into(),
        employees: vec![Employee::new(OWNER, "admin")],
        ..PolicySeed::default()
    });
    let mut rows = vec![];
    for key in ["employeeEmail", "managerEmail", "employeeID", "policyID"] {
        let mut r = row("x@example.com", OWNER, "X1");
        r.as_object_mut().unwrap().remove(key);
        rows.push(r);
    }
    rows.push(json!({"employeeEmail": "y@example.com", "managerEmail": OWNER, "employeeID": "Y1", "policyID": "Marketing"}));
    let mut limited = row("z@example.com", OWNER, "Z1");
    limited["approvalLimit"] = json!(10000);
    rows.push(limited);
    let mut demote_owner = row(OWNER, OWNER, "ADMIN");
    demote_owner["role"] = json!("user");
    rows.push(demote_owner);
    rows.push(json!({"employeeEmail": OWNER, "managerEmail": OWNER, "employeeID": "ADMIN", "policyID": other, "role": "auditor"}));
    let mut alias = row("ok@example.com", OWNER, "OK1");
    alias["approvalLimit"] = json!(5000);
    alias["limitApprover"] = json!(OWNER);
    rows.push(alias);

    let body = s.update(Value::Array(rows)).await;
    assert_eq!(body["responseCode"], 200);
    let reasons: Vec<(String, String)> = body["skippedEmployees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["email"].as_str().unwrap().into(), s["reason"].as_str().unwrap().into()))
        .collect();
    let expected = [
        ("", "Missing required field 'employeeEmail'".to_string()),
        ("x@example.com", "Missing required field 'managerEmail'".into()),
        ("x@example.com", "Missing required field 'employeeID'".into()),
        ("x@example.com", "Missing required field 'policyID'".into()),
        ("y@example.com", "No policy found for 'Marketing'".into()),
        ("z@example.com", "approvalLimit requires overLimitApprover".into()),
        (OWNER, format!("Cannot change the role of the policy owner of policy '{POLICY}'")),
        (OWNER, format!("Cannot change the role of the calling account on policy '{other}'")),
    ];
    assert_eq!(reasons, expected.map(|(e, r)| (e.to_string(), r)));
    // Skipped rows left no trace; the valid one went through.
    assert_eq!(body["updatedEmployeesCount"], 1);
    assert_eq!(s.member(POLICY, OWNER).unwrap().role, "admin");
    assert_eq!(s.member(&other, OWNER).unwrap().role, "admin");
    assert!(s.sim.account("x@example.com").is_none());
    let ok = s.member(POLICY, "ok@example.com").unwrap();
    assert_eq!((ok.approval_limit, ok.over_limit_approver.as_deref()), (Some(5000), Some(OWNER)));
}

#[tokio::test]
async fn a_known_employee_id_with_a_new_email_renames_the_account() {
    let s = start().await;
    s.update(json!([row("mgr@example.com", OWNER, "M1"), row("old@example.com", "mgr@example.com", "E1")]))
        .await;
    s.update(json!([row("new@example.com", "mgr@example.com", "E1")])).await;

    let account = s.sim.account("old@example.com").expect("old login still resolves");
    assert_eq!(account.primary_login, "new@example.com");
    assert_eq!(account.secondary_logins, ["old@example.com"]);
    assert!(s.member(POLICY, "old@example.com").is_none());
    assert_eq!(s.member(POLICY, "new@example.com").unwrap().employee_id.as_deref(), Some("E1"));

    // Whoever submitted to the old login now submits to the new one.
    s.update(json!([row("report@example.com", "old@example.com", "R1")])).await;
    assert_eq!(
        s.member(POLICY, "report@example.com").unwrap().submits_to.as_deref(),
        Some("new@example.com")
    );
    s.update(json!([row("mgr2@example.com", OWNER, "E1")])).await;
    assert_eq!(
        s.member(POLICY, "report@example.com").unwrap().submits_to.as_deref(),
        Some("mgr2@example.com")
    );
}

#[tokio::test]
async fn names_set_by_the_user_survive_the_updater() {
    let s = start().await;
    let mut r = row("ann@example.com", OWNER, "E1");
    r["firstName"] = json!("Ann");
    r["lastName"] = json!("Lee");
    s.update(json!([r.clone()])).await;
    let ann = s.member(POLICY, "ann@example.com").unwrap();
    assert_eq!((ann.first_name.as_str(), ann.last_name.as_str()), ("Ann", "Lee"));
    assert_eq!(ann.custom_field1.as_deref(), Some("E1"), "customField1 defaults to employeeID");

    s.sim.set_names_by_user("ann@example.com", "Annie", "Lee-Smith");
    r["firstName"] = json!("Anne");
    let body = s.update(json!([r])).await;
    assert_eq!(body["updatedEmployeesCount"], 0);
    let account = s.sim.account("ann@example.com").unwrap();
    assert_eq!((account.first_name.as_str(), account.last_name.as_str()), ("Annie", "Lee-Smith"));
    assert!(account.names_set_by_user);
}

#[tokio::test]
async fn managers_are_invited_and_reported_in_diff_to_add() {
    let s = start().await;
    let body = s.update(json!([row("dev@example.com", "lead@example.com", "E1")])).await;
    assert_eq!(body["diff"]["diffToAdd"], json!({POLICY: ["lead@example.com", "dev@example.com"]}));
    assert_eq!(body["diff"]["diffToRemove"], json!({}));
    assert_eq!(body["updatedEmployeesCount"], 1);
    let lead = s.member(POLICY, "lead@example.com").unwrap();
    assert_eq!((lead.role.as_str(), lead.submits_to.as_deref()), ("user", Some(OWNER)));
    assert_eq!(s.member(POLICY, "dev@example.com").unwrap().submits_to.as_deref(), Some("lead@example.com"));
}

#[tokio::test]
async fn termination_removes_one_policy_membership_only() {
    let s = start().await;
    let second = s.sim.create_policy(PolicySeed { name: "Second".into(), ..PolicySeed::default() });
    let mut r = row("leaver@example.com", OWNER, "E1");
    r["additionalPolicyIDs"] = json!([second]);
    s.update(json!([r.clone()])).await;
    assert!(s.member(&second, "leaver@example.com").is_some());

    r["isTerminated"] = json!(true);
    let body = s.update(json!([r])).await;
    assert_eq!(body["diff"]["diffToRemove"], json!({POLICY: ["leaver@example.com"]}));
    assert!(s.member(POLICY, "leaver@example.com").is_none());
    assert!(s.member(&second, "leaver@example.com").is_some());
    assert_eq!(s.sim.account("leaver@example.com").unwrap().employee_id.as_deref(), Some("E1"));

    // The owner cannot be terminated from their own policy.
    let mut owner = row(OWNER, OWNER, "ADMIN");
    owner["isTerminated"] = json!(true);
    let body = s.update(json!([owner])).await;
    assert_eq!(body["skippedEmployees"][0]["email"], OWNER);
    assert!(s.member(POLICY, OWNER).is_some());
}

#[tokio::test]
async fn dry_run_reports_the_diff_without_changing_anything() {
    let s = start().await;
    let mut job = updater(json!([row("dev@example.com", "lead@example.com", "E1")]));
    job["dry-run"] = json!(true);
    let (_, body) = s.call(job).await;
    assert_eq!(body["dry-run"], true);
    assert_eq!(body["updatedEmployeesCount"], 1);
    assert_eq!(body["diff"]["diffToAdd"][POLICY], json!(["lead@example.com", "dev@example.com"]));
    assert_eq!(s.sim.employees(POLICY).len(), 1);
    assert!(s.sim.account("dev@example.com").is_none());
    assert_eq!(s.sim.last_feed_shape(), Some(FeedShape::BareArray));
}

#[tokio::test]
async fn replaying_the_same_feed_changes_nothing() {
    let s = start().await;
    let mut r = row("dev@example.com", "lead@example.com", "E1");
    r["firstName"] = json!("Dev");
    r["role"] = json!("auditor");
    r["customField2"] = json!("P-7");
    let feed = json!([row("lead@example.com", OWNER, "L1"), r]);
    let first = s.update(feed.clone()).await;
    assert_eq!(first["updatedEmployeesCount"], 2);
    let roster = s.sim.employees(POLICY);
    let second = s.update(feed).await;
    assert_eq!(second["updatedEmployeesCount"], 0);
    assert_eq!(second["diff"], json!({"diffToAdd": {}, "diffToRemove": {}}));
    assert_eq!(s.sim.employees(POLICY), roster);
}

#[tokio::test]
async fn security_groups_are_echoed() {
    let s = start().await;
    let mut r = row("dev@example.com", OWNER, "E1");
    r["domainGroupID"] = json!("G42");
    let body = s.update(json!([r])).await;
    assert_eq!(body["securityGroupEmployeesMap"], json!({"G42": ["dev@example.com"]}));
}

#[tokio::test]
async fn policy_list_shows_the_callers_role_and_honours_admin_only() {
    let s = start().await;
    let shared = s.sim.create_policy(PolicySeed {
        id: Some("ABCDEF0123456789".into()),
        name: "Shared".into(),
        owner: "boss@example.com".into(),
        policy_type: "team".into(),
        output_currency: "EUR".into(),
        employees: vec![Employee::new(OWNER, "user")],
    });
    s.sim.create_policy(PolicySeed {
        name: "Not mine".into(),
        owner: "boss@example.com".into(),
        ..PolicySeed::default()
    });

    let (_, body) = s.call(job("get", json!({"type": "policyList"}))).await;
    assert_eq!(
        body["policyList"],
        json!([
            {"id": shared, "name": "Shared", "owner": "boss@example.com", "role": "user", "type": "team", "outputCurrency": "EUR"},
            {"id": POLICY, "name": "Portcullis Test", "owner": OWNER, "role": "admin", "type": "corporate", "outputCurrency": "USD"},
        ])
    );
    let (_, body) = s.call(job("get", json!({"type": "policyList", "adminOnly": true}))).await;
    let ids: Vec<_> = body["policyList"].as_array().unwrap().iter().map(|p| p["id"].clone()).collect();
    assert_eq!(ids, [POLICY]);

    let (status, body) =
        s.call(job("get", json!({"type": "policyList", "userEmail": "u@example.com"}))).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"responseCode": 500, "responseMessage": "Not authorized to authenticate as user u@example.com"})
    );
}

#[tokio::test]
async fn get_policy_returns_the_roster_and_validates_arguments() {
    let s = start().await;
    s.update(json!([row("dev@example.com", OWNER, "E1")])).await;
    let (_, body) = s
        .call(job(
            "get",
            json!({"type": "policy", "policyIDList": [POLICY], "fields": ["employees", "tags", "tax"]}),
        ))
        .await;
    assert_eq!(body["responseCode"], 200);
    let info = &body["policyInfo"][POLICY];
    assert_eq!(info["tags"], json!([]));
    assert_eq!(info["tax"], json!({}));
    assert_eq!(
        info["employees"],
        json!([
            {"email": OWNER, "role": "admin", "submitsTo": OWNER},
            {"email": "dev@example.com", "role": "user", "submitsTo": OWNER, "employeeID": "E1", "customField1": "E1"},
        ])
    );

    let (_, body) = s.call(job("get", json!({"type": "policy", "fields": ["employees"]}))).await;
    assert_eq!(
        body,
        json!({"responseCode": 410, "responseMessage": "Required parameter 'policyIDList' is missing"})
    );
    let (_, body) = s
        .call(job(
            "get",
            json!({"type": "policy", "policyIDList": [POLICY, "0000000000000000"], "fields": ["employees"]}),
        ))
        .await;
    assert_eq!(body, json!({"responseCode": 404, "responseMessage": "Policy not found"}));
}

#[tokio::test]
async fn a_ten_thousand_employee_roster_round_trips_in_one_call_each() {
    let s = start().await;
    let rows: Vec<Value> =
        (0..10_000).map(|i| row(&format!("e{i:05}@example.com"), OWNER, &format!("E{i}"))).collect();
    let started = std::time::Instant::now();
    let body = s.update(Value::Array(rows)).await;
    assert_eq!(body["updatedEmployeesCount"], 10_000);
    let (_, body) = s
        .call(job("get", json!({"type": "policy", "policyIDList": [POLICY], "fields": ["employees"]})))
        .await;
    assert_eq!(body["policyInfo"][POLICY]["employees"].as_array().unwrap().len(), 10_001);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn parse_and_auth_errors_are_in_band() {
    let s = start().await;
    let response = s.post(&[("data", "[]")]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain;charset=utf-8");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"responseCode": 410, "responseMessage": "Argument 'requestJobDescription' is missing or malformed"})
    );
    let body: Value = s.post(&[("requestJobDescription", "{not json")]).await.json().await.unwrap();
    assert_eq!(body["responseCode"], 410);

    let (_, body) = s.call(json!({"credentials": creds(), "inputSettings": {"type": "policyList"}})).await;
    assert_eq!(
        body,
        json!({"responseCode": 410, "responseMessage": "Argument 'type' is missing or malformed"})
    );

    let bad = json!({"type": "get", "credentials": {"partnerUserID": "aa_portcullis_test", "partnerUserSecret": "nope"},
                     "inputSettings": {"type": "policyList"}});
    let (status, body) = s.call(bad.clone()).await;
    assert_eq!(
        (status, body),
        (200, json!({"responseCode": 401, "responseMessage": "Authentication error"}))
    );

    let strict = start_with(Config {
        auth_error_code: 403,
        errors_with_http_status: true,
        json_content_type: true,
        ..Config::default()
    })
    .await;
    let (status, body) = strict.call(bad).await;
    assert_eq!((status, body["responseCode"].as_u64()), (403, Some(403)));
    let response = strict.send(&job("get", json!({"type": "policyList"}))).await;
    assert_eq!(response.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn the_sixth_request_in_ten_seconds_is_rate_limited() {
    let s = start_with(Config::default()).await;
    let list = job("get", json!({"type": "policyList"}));
    // Bad credentials are refused before the limiter, and do not use it up.
    let mut bad = list.clone();
    bad["credentials"]["partnerUserSecret"] = json!("wrong");
    for _ in 0..3 {
        assert_eq!(s.call(bad.clone()).await.1["responseCode"], 401);
    }
    for _ in 0..5 {
        assert_eq!(s.call(list.clone()).await.1["responseCode"], 200);
    }
    let response = s.send(&list).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"responseCode": 429, "responseMessage": RATE_LIMIT_MESSAGE}));
    assert_eq!(
        RATE_LIMIT_MESSAGE,
        "You have been rate-limited. Please try again later or contact help@expensify.com for assistance."
    );
    let statuses: Vec<u16> = s.sim.log().entries().iter().map(|e| e.status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 200, 429]);

    let in_band = start_with(Config { rate_limit_in_band: true, ..Config::default() }).await;
    for _ in 0..5 {
        in_band.call(list.clone()).await;
    }
    let (status, body) = in_band.call(list).await;
    assert_eq!((status, body["responseCode"].as_u64()), (200, Some(429)));
    assert_eq!(body["responseMessage"], RATE_LIMIT_MESSAGE);
}

#[tokio::test]
async fn injected_faults_answer_as_configured_and_are_logged() {
    let s = start().await;
    let list = job("get", json!({"type": "policyList"}));
    let arm = |fault: Fault| FaultRule { operation: "get.policyList".into(), fault, times: 1 };
    let send = || s.send(&list);

    s.sim.faults().add(arm(Fault::RateLimited { retry_after: Some(7) }));
    let response = send().await;
    assert_eq!((response.status().as_u16(), response.headers()["retry-after"].to_str().unwrap()), (429, "7"));
    assert_eq!(response.json::<Value>().await.unwrap()["responseMessage"], RATE_LIMIT_MESSAGE);

    // Through the back door this time.
    let armed = s
        .sim_post(
            "/_sim/faults",
            json!({"operation": "get.policyList", "fault": {"kind": "server_error", "status": 503}}),
        )
        .await;
    assert!(armed.status().is_success());
    assert_eq!(send().await.status(), 503);

    s.sim.faults().add(arm(Fault::InBand { code: "500".into(), message: None }));
    let response = send().await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"responseCode": 500, "responseMessage": "Internal error"})
    );

    s.sim.faults().add(arm(Fault::Malformed { status: 502 }));
    let response = send().await;
    assert_eq!(
        (response.status().as_u16(), response.headers()["content-type"].to_str().unwrap()),
        (502, "text/html")
    );
    assert_eq!(response.text().await.unwrap(), Fault::PROXY_PAGE);

    // Only the armed operation is affected, and each rule fires once.
    assert_eq!(send().await.json::<Value>().await.unwrap()["responseCode"], 200);

    // The job commits, then the answer outlives the client's patience.
    s.sim.faults().add(FaultRule {
        operation: "update.employees".into(),
        fault: Fault::TimeoutAfterCommit { secs: 1 },
        times: 1,
    });
    let slow = updater(json!([row("slow@example.com", OWNER, "S1")]));
    let sent = s.request(&slow).timeout(Duration::from_millis(200)).send().await;
    assert!(sent.unwrap_err().is_timeout());
    assert!(s.member(POLICY, "slow@example.com").is_some());

    let log = s.sim.log().entries();
    let faults: Vec<_> = log.iter().map(|e| e.fault.as_deref()).collect();
    assert_eq!(
        faults,
        [
            Some("rate_limited(retry_after=7)"),
            Some("server_error(503)"),
            Some("in_band(500)"),
            Some("malformed(502)"),
            None,
            Some("timeout_after_commit(1s)")
        ]
    );
    assert_eq!(log.last().unwrap().status, 0, "not answered yet");
    assert!(log[0].body.contains("partnerUserSecret"));
    assert_eq!(log[0].header("content-type"), Some("application/x-www-form-urlencoded"));
}

#[tokio::test]
async fn legacy_csv_updater_clears_blank_cells_and_checks_the_header() {
    let s = start().await;
    let csv_job = |csv: &str| {
        let mut j = job("update", json!({"type": "employees", "policyID": POLICY, "fileType": "csv"}));
        j["data"] = json!(csv);
        j
    };
    let (_, body) = s
        .call(csv_job(
            "EmployeeEmail,ManagerEmail,Admin,EmployeeUserId,EmployeePayrollId,ForwardManagerEmail\n\
             csv@example.com,admin@example.com,FALSE,U1,P1,admin@example.com\n\
             boss@example.com,admin@example.com,TRUE,,,\n",
        ))
        .await;
    assert_eq!(body, json!({"responseCode": 200, "nbEmployees": 2}));
    let csv = s.member(POLICY, "csv@example.com").unwrap();
    assert_eq!((csv.custom_field1.as_deref(), csv.custom_field2.as_deref()), (Some("U1"), Some("P1")));
    assert_eq!(csv.approves_to.as_deref(), Some(OWNER));
    assert_eq!(s.member(POLICY, "boss@example.com").unwrap().role, "admin");

    s.call(csv_job("EmployeeEmail,ManagerEmail,Admin,EmployeeUserId,EmployeePayrollId,ForwardManagerEmail\ncsv@example.com,admin@example.com,no,U1,,\n"))
        .await;
    let csv = s.member(POLICY, "csv@example.com").unwrap();
    assert_eq!((csv.custom_field1.as_deref(), csv.custom_field2, csv.approves_to), (Some("U1"), None, None));

    let (status, body) =
        s.call(csv_job("Email,ManagerEmail,Admin\na@example.com,b@example.com,FALSE\n")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"responseCode": 500, "responseMessage": "Column EmployeeEmail not found in CSV header"})
    );
}

#[tokio::test]
async fn legacy_csv_can_arrive_as_multipart() {
    let s = start().await;
    let description =
        job("update", json!({"type": "employees", "policyID": POLICY, "fileType": "csv"})).to_string();
    let body = format!(
        "--B0undary\r\nContent-Disposition: form-data; name=\"requestJobDescription\"\r\n\r\n{description}\r\n\
         --B0undary\r\nContent-Disposition: form-data; name=\"data\"; filename=\"employees.csv\"\r\nContent-Type: text/csv\r\n\r\n\
         EmployeeEmail,ManagerEmail,Admin\r\nmp@example.com,admin@example.com,FALSE\r\n\r\n--B0undary--\r\n"
    );
    let response = s
        .http
        .post(s.url())
        .header("content-type", "multipart/form-data; boundary=B0undary")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"responseCode": 200, "nbEmployees": 1}));
    assert_eq!(s.member(POLICY, "mp@example.com").unwrap().submits_to.as_deref(), Some(OWNER));
}

#[tokio::test]
async fn only_approved_reports_are_reimbursed() {
    let s = start().await;
    for (id, status) in [("R1", "APPROVED"), ("R2", "SUBMITTED")] {
        s.sim.add_report(Report { report_id: id.into(), policy_id: POLICY.into(), status: status.into() });
    }
    let (status, body) = s
        .call(job(
            "update",
            json!({"type": "reportStatus", "status": "REIMBURSED", "filters": {"reportIDList": "R1,R2,R9"}}),
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["responseCode"], 207);
    assert_eq!(body["reportIDs"], json!(["R1"]));
    assert_eq!(body["skippedReports"][0]["reportID"], "R2");
    assert_eq!(body["failedReports"][0]["reportID"], "R9");
    assert_eq!(s.sim.report("R1").unwrap().status, "REIMBURSED");
    assert_eq!(s.sim.report("R2").unwrap().status, "SUBMITTED");
}

#[tokio::test]
async fn policies_are_created_and_their_lists_merged_or_replaced() {
    let s = start().await;
    let (_, body) = s.call(job("create", json!({"type": "policy", "plan": "corporate"}))).await;
    assert_eq!(
        body,
        json!({"responseCode": 500, "responseMessage": "Required parameter 'policyName' is missing"})
    );
    let (_, body) = s.call(job("create", json!({"type": "policy", "policyName": "New"}))).await;
    let id = body["policyID"].as_str().unwrap().to_owned();
    assert!(id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    assert_eq!(body["policyName"], "New");
    assert_eq!(s.member(&id, OWNER).unwrap().role, "admin");

    let update = |extra: Value| {
        let mut j = job("update", json!({"type": "policy", "policyIDList": [id]}));
        j.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        j
    };
    let tags = |names: &[&str]| json!([{"name": "Department", "tags": names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()}]);
    s.call(update(json!({"categories": {"action": "replace", "data": [{"name": "Travel", "glCode": "100"}, {"name": "Meals"}]},
                        "tags": {"action": "replace", "data": tags(&["Eng", "Ops"])}})))
        .await;
    let (_, body) = s
        .call(update(
            json!({"categories": {"action": "merge", "data": [{"name": "Travel", "enabled": false}]},
                            "tags": {"action": "merge", "data": tags(&["Sales"])}}),
        ))
        .await;
    assert_eq!(body["responseCode"], 200);
    let read = json!({"type": "policy", "policyIDList": [id], "fields": ["categories", "tags"]});
    let (_, body) = s.call(job("get", read.clone())).await;
    let info = &body["policyInfo"][&id];
    assert_eq!(
        info["categories"],
        json!([{"name": "Travel", "glCode": "100", "enabled": false}, {"name": "Meals"}])
    );
    assert_eq!(info["tags"], tags(&["Sales"]), "merge deleted the unlisted tags");

    let (_, body) = s.call(update(json!({"categories": {"action": "upsert", "data": []}}))).await;
    assert_eq!(body, json!({"responseCode": 410, "responseMessage": "'categories' object malformed"}));

    // With the switch off, a tag merge keeps the other tags.
    let gentle =
        start_with(Config { rate_limits: false, tag_merge_deletes_unlisted: false, ..Config::default() })
            .await;
    let mut j = job("update", json!({"type": "policy", "policyID": POLICY}));
    j["tags"] = json!({"action": "replace", "data": tags(&["Eng"])});
    gentle.call(j.clone()).await;
    j["tags"] = json!({"action": "merge", "data": tags(&["Sales"])});
    gentle.call(j).await;
    let (_, body) = gentle
        .call(job("get", json!({"type": "policy", "policyIDList": [POLICY], "fields": ["tags"]})))
        .await;
    assert_eq!(body["policyInfo"][POLICY]["tags"], tags(&["Eng", "Sales"]));
}

#[tokio::test]
async fn the_back_door_seeds_and_mutates_state() {
    let s = start().await;
    let base = s.run.base_url();
    let created: Value = s
        .sim_post("/_sim/policies", json!({"name": "Seeded", "owner": "o@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let put = s
        .http
        .put(format!("{base}/_sim/policies/{id}/employees"))
        .json(
            &json!({"email": "Drift@Example.com", "role": "auditor", "firstName": "Dee", "employeeID": "D1"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let roster: Vec<Employee> = s
        .http
        .get(format!("{base}/_sim/policies/{id}/employees"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let drift = roster.iter().find(|e| e.email == "drift@example.com").unwrap();
    assert_eq!(
        (drift.role.as_str(), drift.first_name.as_str(), drift.employee_id.as_deref()),
        ("auditor", "Dee", Some("D1"))
    );

    let deleted =
        s.http.delete(format!("{base}/_sim/policies/{id}/employees/drift@example.com")).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(s.member(&id, "drift@example.com").is_none());
    let missing =
        s.http.get(format!("{base}/_sim/policies/0000000000000000/employees")).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    s.sim_post("/_sim/accounts/drift@example.com/names", json!({"first_name": "D", "last_name": "Rift"}))
        .await;
    let account: Value = s
        .http
        .get(format!("{base}/_sim/accounts/drift@example.com"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account["names_set_by_user"], true);

    s.call(job("get", json!({"type": "policyList"}))).await;
    let requests: Vec<Value> =
        s.http.get(format!("{base}/_sim/requests")).send().await.unwrap().json().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["status"], 200);

    assert!(s.sim_post("/_sim/reset", json!({})).await.status().is_success());
    assert!(!s.sim.has_policy(&id));
    assert!(s.sim.log().entries().is_empty());
    assert_eq!(s.sim.employees(POLICY).len(), 1);
}
