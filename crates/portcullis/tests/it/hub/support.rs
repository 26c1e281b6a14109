//! Shared steps of the lifecycle hub tests: the hub turned on, users with
//! roles, apps pointed at a simulator, and waiting for the hub to converge.

use std::future::Future;
use std::time::Duration;

use portcullis_core::CoreConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{create_role, create_user, id_of};
use crate::harness::TestServer;

/// The config closure that turns the hub on.
pub fn hub_on(config: &mut CoreConfig) {
    config.hub.enabled = true;
}

/// Waits until `check` returns `Some`, or fails the test after 90 s (the
/// hub keeps under Expensify's 5 calls per 10 s, so retries take a while).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct Directory {
    pub token: String,
    pub role: String,
}

impl Directory {
    /// A role that will give access to the app under test.
    pub async fn new(server: &TestServer) -> Self {
        let token = server.admin_token().await;
        let role = create_role(server, &token, "Employees").await;
        Directory { token, role }
    }

    /// A user holding the access role.
    pub async fn employee(
        &self,
        server: &TestServer,
        email: &str,
        first: &str,
        manager: Option<&str>,
    ) -> String {
        let id = create_user(
            server,
            &self.token,
            json!({"email": email, "first_name": first, "last_name": "Tester", "manager_id": manager}),
        )
        .await;
        self.grant(server, &id).await;
        id
    }

    pub async fn grant(&self, server: &TestServer, user: &str) -> String {
        let body = json!({"data": {"type": "user_role", "relationships": {
            "user": {"data": {"type": "user", "id": user}},
            "role": {"data": {"type": "role", "id": self.role}},
        }}});
        let (status, body) = server.api(Method::POST, "/api/user-roles", &self.token, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        id_of(&body)
    }

    pub async fn update_user(&self, server: &TestServer, user: &str, attributes: Value) {
        let body = json!({"data": {"type": "user", "id": user, "attributes": attributes}});
        let (status, body) =
            server.api(Method::PATCH, &format!("/api/users/{user}"), &self.token, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    pub async fn create_app(&self, server: &TestServer, attributes: Value) -> String {
        let mut attributes = attributes;
        attributes["access_role_ids"] = json!([self.role]);
        id_of(&server.create(&self.token, "/api/apps", "app", attributes, Value::Null).await)
    }

    pub async fn get(&self, server: &TestServer, path: &str) -> Value {
        let (status, body) = server.api(Method::GET, path, &self.token, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    /// The plans of an app with the given status.
    pub async fn plans(&self, server: &TestServer, app: &str, status: &str) -> Vec<Value> {
        let body = self
            .get(
                server,
                &format!(
                    "/api/provisioning-plans?filter[app_id]={app}&filter[status]={status}&include=steps"
                ),
            )
            .await;
        body["data"].as_array().cloned().unwrap_or_default()
    }

    /// Waits for a draft plan of the app and returns it with its steps.
    pub async fn draft(&self, server: &TestServer, app: &str) -> Value {
        eventually("a draft plan", || async {
            let body = self
                .get(
                    server,
                    &format!(
                        "/api/provisioning-plans?filter[app_id]={app}&filter[status]=draft&include=steps"
                    ),
                )
                .await;
            (!body["data"].as_array()?.is_empty()).then_some(body)
        })
        .await
    }

    pub async fn approve(&self, server: &TestServer, plan: &str) -> Value {
        let (status, body) = server
            .api(Method::PATCH, &format!("/api/provisioning-plans/{plan}/approve"), &self.token, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Waits until no plan of the app is waiting or running, then returns
    /// how many failed.
    pub async fn settled(&self, server: &TestServer, app: &str) -> usize {
        eventually("the app's plans to settle", || async {
            let body = self
                .get(server, &format!("/api/provisioning-plans?filter[app_id]={app}&page[limit]=100"))
                .await;
            let plans = body["data"].as_array()?.clone();
            let busy = plans
                .iter()
                .any(|p| matches!(p["attributes"]["status"].as_str(), Some("approved" | "applying")));
            let steps = self
                .get(server, &format!("/api/provisioning-steps?filter[app_id]={app}&filter[status]=pending"))
                .await;
            let pending = steps["data"].as_array().is_some_and(|s| !s.is_empty());
            (!busy && !pending)
                .then(|| plans.iter().filter(|p| p["attributes"]["status"] == "failed").count())
        })
        .await
    }

    /// The graph's accounts of an app.
    pub async fn accounts(&self, server: &TestServer, app: &str) -> Vec<Value> {
        let body = self.get(server, &format!("/api/app-accounts?filter[app_id]={app}&page[limit]=100")).await;
        body["data"].as_array().cloned().unwrap_or_default()
    }

    pub async fn reconcile(&self, server: &TestServer, app: &str, dry_run: bool) -> (StatusCode, Value) {
        let url = format!("{}/api/apps/{app}/reconcile", server.issuer("acme-test"));
        let response = server
            .http
            .post(url)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(json!({"dry_run": dry_run}).to_string())
            .send()
            .await
            .expect("reconcile");
        let status = response.status();
        (status, response.json().await.expect("JSON"))
    }
}
