//! Workers: take due steps under a lease, apply them through the app's
//! connector, and record the outcome in the graph. A worker that dies
//! mid-step loses its lease and another takes the step over; the request is
//! fixed on the first attempt, so the takeover resends the same thing (with
//! the same idempotency key where the app has them, after a lookup where it
//! does not).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::Core;
use portcullis_core::services::{apps, unique};
use portcullis_store::model::{App, AppAccount, Event, ProvisioningPlan, ProvisioningStep, Target};
use portcullis_store::types::JsonText;
use portcullis_store::{StoreError, WriteTx, new_id, now_micros, record, repo};
use rand::Rng;
use serde_json::{Value, json};

use crate::connector::{
    AccountStatus, Applied, Connector, ConnectorError, Job, Op, Request, Retry, Throttle,
};
use crate::graph::Directory;
use crate::plan;

/// Steps taken per pass.
const DUE: i64 = 500;

/// What became of one step this pass.
enum Outcome {
    Done(Applied),
    /// The directory changed since the step was planned; nothing to do.
    Superseded(String),
    Failed(ConnectorError),
    /// The app is provisioned by hand: a person gets a task and the step
    /// waits for it.
    Handoff,
}

pub struct Worker {
    pub core: Arc<Core>,
    pub client: reqwest::Client,
    pub throttle: Arc<Throttle>,
    /// Names this worker's leases.
    pub owner: String,
}

impl Worker {
    pub fn new(core: Arc<Core>, throttle: Arc<Throttle>) -> Arc<Self> {
        let client = crate::connector::http::client(
            core.config.hub.request_timeout,
            core.config.allow_private_targets,
        );
        Arc::new(Worker { core, client, throttle, owner: new_id() })
    }

    pub fn connector(&self, app: &App) -> Result<Connector, ConnectorError> {
        let credentials =
            apps::credentials(&self.core, app).map_err(|e| ConnectorError::permanent(e.to_string()))?;
        Connector::new(app, credentials, self.client.clone(), self.throttle.clone())
    }

    /// One pass over the due steps, apps in parallel; how many steps it took.
    pub async fn run_once(self: &Arc<Self>) -> Result<usize, StoreError> {
        let due = {
            let mut conn = self.core.db.read().await?;
            repo::provisioning::due_steps(&mut conn, now_micros(), DUE).await?
        };
        let count = due.len();
        let mut groups: BTreeMap<(String, String), Vec<ProvisioningStep>> = BTreeMap::new();
        for step in due {
            groups.entry((step.environment_id.clone(), step.app_id.clone())).or_default().push(step);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for ((environment_id, app_id), steps) in groups {
            let worker = self.clone();
            tasks.spawn(async move { worker.process(&environment_id, &app_id, steps).await });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "provisioning pass failed; its steps will be retried")
                }
                Err(error) => tracing::error!(%error, "provisioning task panicked"),
            }
        }
        Ok(count)
    }

    async fn process(
        &self,
        environment_id: &str,
        app_id: &str,
        steps: Vec<ProvisioningStep>,
    ) -> Result<(), StoreError> {
        let now = now_micros();
        let app: Option<App> = {
            let mut conn = self.core.db.read().await?;
            record::find(&mut conn, environment_id, app_id).await?
        };
        let Some(app) = app else { return Ok(()) };
        // Lease first: of two workers, each step goes to one.
        let lease_until = now + self.core.config.hub.lease.as_micros() as i64;
        let mut leased = Vec::new();
        {
            let mut tx = self.core.db.write_state().await?;
            for mut step in steps {
                if repo::provisioning::lease(
                    tx.conn(),
                    environment_id,
                    &step.id,
                    &self.owner,
                    lease_until,
                    now,
                )
                .await?
                {
                    step.attempts += 1;
                    step.status = "running".into();
                    leased.push(step);
                }
            }
            let plan_ids: Vec<String> = unique(leased.iter().map(|s| s.plan_id.clone()));
            repo::provisioning::start_plans(tx.conn(), environment_id, &plan_ids, now).await?;
            tx.commit().await?;
        }
        if leased.is_empty() {
            return Ok(());
        }
        if !app.enabled {
            let outcomes =
                leased.into_iter().map(|s| (s, Outcome::Superseded("the app is disabled".into()))).collect();
            return self.record(&app, outcomes).await;
        }
        if app.provisioning == "manual" {
            let (ready, mut outcomes) = self.prepare(&app, leased).await?;
            outcomes.extend(ready.into_iter().map(|(step, _)| (step, Outcome::Handoff)));
            return self.record(&app, outcomes).await;
        }
        let connector = match self.connector(&app) {
            Ok(connector) => connector,
            Err(error) => {
                let outcomes = leased.into_iter().map(|s| (s, Outcome::Failed(error.clone()))).collect();
                return self.record(&app, outcomes).await;
            }
        };
        let (ready, mut outcomes) = self.prepare(&app, leased).await?;
        // Steps no connector can take go to people even in automatic apps.
        let (manual, ready): (Vec<_>, Vec<_>) =
            ready.into_iter().partition(|(_, request)| request.op.is_manual());
        outcomes.extend(manual.into_iter().map(|(step, _)| (step, Outcome::Handoff)));
        for chunk in ready.chunks(connector.batch_size()) {
            let jobs: Vec<Job> =
                chunk.iter().map(|(step, request)| Job { step_id: &step.id, request }).collect();
            let results = connector.apply(&jobs).await;
            for ((step, _), result) in chunk.iter().zip(results) {
                outcomes.push((step.clone(), result.map_or_else(Outcome::Failed, Outcome::Done)));
            }
        }
        self.record(&app, outcomes).await
    }

    /// Checks each step against the directory as it is now and fixes its
    /// request on the first attempt.
    async fn prepare(
        &self,
        app: &App,
        steps: Vec<ProvisioningStep>,
    ) -> Result<(Vec<(ProvisioningStep, Request)>, Vec<(ProvisioningStep, Outcome)>), StoreError> {
        let env = app.environment_id.as_str();
        let mut tx = self.core.db.write_state().await?;
        let user_ids: Vec<String> = unique(steps.iter().filter_map(|s| s.user_id.clone()));
        let directory = Directory::load(tx.conn(), env, &user_ids).await?;
        let account_ids: Vec<String> = unique(steps.iter().filter_map(|s| s.app_account_id.clone()));
        let accounts: HashMap<String, AppAccount> =
            record::find_in::<AppAccount>(tx.conn(), env, "id", &account_ids)
                .await?
                .into_iter()
                .map(|a| (a.id.clone(), a))
                .collect();
        let mut ready = Vec::new();
        let mut done = Vec::new();
        for mut step in steps {
            let account = step.app_account_id.as_ref().and_then(|id| accounts.get(id));
            if let Some(request) =
                step.request.as_deref().and_then(|r| serde_json::from_str::<Request>(r).ok())
            {
                ready.push((step, request));
                continue;
            }
            let user = step.user_id.as_ref().and_then(|id| directory.user(id));
            let wanted = step.user_id.as_ref().is_some_and(|id| directory.wants_account(app, id));
            let desired = user.map(|u| directory.render(app, u));
            let op = match (step.action.as_str(), desired, account) {
                ("create" | "update" | "replace", _, _) if !wanted => {
                    done.push((
                        step,
                        Outcome::Superseded("the user no longer should have an account".into()),
                    ));
                    continue;
                }
                ("create", Some(desired), _) => Op::Create { desired },
                ("update", Some(desired), Some(account)) => {
                    Op::Update { external_id: account.external_id.clone(), desired }
                }
                ("deactivate" | "delete" | "manual", _, _) if wanted => {
                    done.push((step, Outcome::Superseded("the user should have access again".into())));
                    continue;
                }
                ("deactivate", desired, Some(account)) => Op::Deactivate {
                    external_id: account.external_id.clone(),
                    login: account.login.clone(),
                    desired,
                    at: now_micros() / 1_000_000,
                },
                ("delete", _, Some(account)) => Op::Delete { external_id: account.external_id.clone() },
                ("replace", Some(desired), Some(account)) => {
                    Op::Replace { external_id: account.external_id.clone(), desired }
                }
                ("manual", _, _) => {
                    let changes = &step.changes.0;
                    Op::Manual {
                        title: changes["title"].as_str().unwrap_or(&step.action).to_owned(),
                        instructions: changes["instructions"]
                            .as_array()
                            .map(|lines| lines.iter().filter_map(|l| l.as_str().map(str::to_owned)).collect())
                            .unwrap_or_default(),
                    }
                }
                _ => {
                    done.push((step, Outcome::Superseded("the user or the account no longer exists".into())));
                    continue;
                }
            };
            let request = Request { op, generation: 0 };
            let text = serde_json::to_string(&request).unwrap_or_default();
            if !repo::provisioning::set_request(tx.conn(), env, &step.id, &self.owner, &text).await? {
                tracing::debug!(step = %step.id, "lease lost before the first attempt; leaving the step");
                continue;
            }
            step.request = Some(text);
            ready.push((step, request));
        }
        tx.commit().await?;
        Ok((ready, done))
    }

    /// Writes the outcomes, the graph and the events in one transaction, then
    /// closes plans whose steps are all done.
    async fn record(&self, app: &App, outcomes: Vec<(ProvisioningStep, Outcome)>) -> Result<(), StoreError> {
        let env = app.environment_id.as_str();
        let settings = &self.core.config.hub;
        let origin = plan::origin(env);
        let now = now_micros();
        let mut tx = self.core.db.write_state().await?;
        let ids: Vec<String> = outcomes.iter().map(|(step, _)| step.id.clone()).collect();
        let held = repo::provisioning::leases_held(tx.conn(), env, &self.owner, &ids).await?;
        let mut plans: Vec<String> = Vec::new();
        for (mut step, outcome) in outcomes {
            if !held.contains(&step.id) {
                // Our lease ran out and another worker took the step over: it
                // resends the same request and records the outcome.
                tracing::info!(step = %step.id, "lease lost mid-step; the new owner will record the outcome");
                continue;
            }
            if !plans.contains(&step.plan_id) {
                plans.push(step.plan_id.clone());
            }
            step.lease_owner = None;
            step.lease_expires_at = None;
            step.updated_at = now;
            match outcome {
                Outcome::Done(applied) => {
                    let account = upsert_account(&mut tx, app, &step, &applied, now).await?;
                    step.app_account_id = Some(account.id.clone());
                    step.status = "succeeded".into();
                    step.last_error = None;
                    step.completed_at = Some(now);
                    step.result = Some(
                        json!({"external_id": applied.external_id, "status": applied.status.as_str()})
                            .to_string(),
                    );
                    let action = match step.action.as_str() {
                        "create" => "app_account.provisioned",
                        "deactivate" => "app_account.deactivated",
                        "delete" => "app_account.deleted",
                        _ => "app_account.updated",
                    };
                    tx.record(&origin, &account_event(action, app, &account, &step)).await?;
                }
                Outcome::Handoff => {
                    let request =
                        step.request.as_deref().and_then(|r| serde_json::from_str::<Request>(r).ok());
                    let Some(request) = request else {
                        tracing::error!(step = %step.id, "a step handed to a person has no request");
                        continue;
                    };
                    let task = crate::tasks::open(app, &step, &request, now);
                    record::insert(tx.conn(), &task).await?;
                    tx.record(&origin, &crate::tasks::opened_event(&task)).await?;
                    step.status = "waiting".into();
                    step.last_error = None;
                }
                Outcome::Superseded(why) => {
                    step.status = "skipped".into();
                    step.last_error = Some(why);
                    step.completed_at = Some(now);
                }
                Outcome::Failed(error) if error.not_found && step.action == "deactivate" => {
                    // Gone already: the account is as deprovisioned as it gets.
                    mark_account(&mut tx, env, step.app_account_id.as_deref(), "deleted", now).await?;
                    step.status = "succeeded".into();
                    step.last_error = Some(error.message);
                    step.completed_at = Some(now);
                }
                Outcome::Failed(error) => {
                    let retry_in = match error.retry {
                        Retry::After(after) if step.attempts < settings.max_attempts => {
                            Some(backoff(settings.backoff_base, settings.backoff_cap, step.attempts, after))
                        }
                        _ => None,
                    };
                    step.last_error = Some(error.message.clone());
                    if error.answered_server_error
                        && let Some(mut request) =
                            step.request.as_deref().and_then(|r| serde_json::from_str::<Request>(r).ok())
                    {
                        request.generation += 1;
                        step.request = serde_json::to_string(&request).ok();
                    }
                    match retry_in {
                        Some(delay) => {
                            step.status = "pending".into();
                            step.next_attempt_at = now + delay.as_micros() as i64;
                        }
                        None => {
                            if error.not_found {
                                mark_account(&mut tx, env, step.app_account_id.as_deref(), "deleted", now)
                                    .await?;
                            }
                            step.status = "failed".into();
                            step.completed_at = Some(now);
                            let event = Event {
                                action: "provisioning_step.failed",
                                targets: step_targets(app, &step),
                                changes: json!({}),
                                data: json!({"error": error.message, "attempts": step.attempts}),
                            };
                            tx.record(&origin, &event).await?;
                        }
                    }
                }
            }
            record::update(tx.conn(), env, &step).await?;
        }
        for plan_id in plans {
            finish_plan(&mut tx, app, &plan_id, now).await?;
        }
        tx.commit().await
    }
}

/// Full-jitter exponential backoff, never sooner than the app asked.
fn backoff(base: Duration, cap: Duration, attempts: i64, retry_after: Option<Duration>) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.clamp(0, 20) as u32).min(cap);
    let jittered = Duration::from_micros(rand::rng().random_range(0..=exp.as_micros() as u64));
    match retry_after {
        Some(after) => jittered.max(after.min(Duration::from_secs(3600))),
        None => jittered,
    }
}

/// Writes what the app now holds into the graph: the step's account, or the
/// row already keyed by the same external id (which it merges into).
pub(crate) async fn upsert_account(
    tx: &mut WriteTx,
    app: &App,
    step: &ProvisioningStep,
    applied: &Applied,
    now: i64,
) -> Result<AppAccount, StoreError> {
    let env = app.environment_id.as_str();
    let by_key: Option<AppAccount> = record::find_in::<AppAccount>(
        tx.conn(),
        env,
        "external_id",
        std::slice::from_ref(&applied.external_id),
    )
    .await?
    .into_iter()
    .find(|a| a.app_id == app.id);
    let own: Option<AppAccount> = match &step.app_account_id {
        Some(id) => record::find(tx.conn(), env, id).await?,
        None => None,
    };
    let (mut account, stale) = match (own, by_key) {
        (Some(own), Some(other)) if own.id != other.id => (other, Some(own)),
        (Some(own), _) => (own, None),
        (None, Some(other)) => (other, None),
        (None, None) => {
            let account = AppAccount {
                id: new_id(),
                environment_id: env.to_owned(),
                app_id: app.id.clone(),
                user_id: step.user_id.clone(),
                external_id: applied.external_id.clone(),
                login: applied.login.clone(),
                status: applied.status.as_str().to_owned(),
                attributes: JsonText(Value::Object(applied.attributes.clone())),
                last_seen_at: Some(now),
                inserted_at: now,
                updated_at: now,
            };
            record::insert(tx.conn(), &account).await?;
            return Ok(account);
        }
    };
    if let Some(stale) = stale {
        // The account was re-keyed (an email change in Expensify) onto a row
        // that already existed: keep one row.
        record::delete::<AppAccount>(tx.conn(), env, &stale.id).await?;
    }
    if step.user_id.is_some() {
        account.user_id = step.user_id.clone();
    }
    account.external_id = applied.external_id.clone();
    if applied.login.is_some() {
        account.login = applied.login.clone();
    }
    account.status = applied.status.as_str().to_owned();
    if applied.status != AccountStatus::Deleted && !applied.attributes.is_empty() {
        account.attributes = JsonText(Value::Object(applied.attributes.clone()));
    }
    account.last_seen_at = Some(now);
    account.updated_at = now;
    record::update(tx.conn(), env, &account).await?;
    Ok(account)
}

async fn mark_account(
    tx: &mut WriteTx,
    env: &str,
    id: Option<&str>,
    status: &str,
    now: i64,
) -> Result<(), StoreError> {
    let Some(id) = id else { return Ok(()) };
    if let Some(mut account) = record::find::<AppAccount>(tx.conn(), env, id).await? {
        account.status = status.to_owned();
        account.updated_at = now;
        record::update(tx.conn(), env, &account).await?;
    }
    Ok(())
}

fn step_targets(app: &App, step: &ProvisioningStep) -> Vec<Target> {
    let mut targets = vec![
        Target { kind: "provisioning_step".into(), id: step.id.clone(), name: Some(step.action.clone()) },
        Target { kind: "app".into(), id: app.id.clone(), name: Some(app.name.clone()) },
    ];
    if let Some(user) = &step.user_id {
        targets.push(Target { kind: "user".into(), id: user.clone(), name: None });
    }
    targets
}

pub(crate) fn account_event(
    action: &'static str,
    app: &App,
    account: &AppAccount,
    step: &ProvisioningStep,
) -> Event {
    let mut targets =
        vec![Target { kind: "app_account".into(), id: account.id.clone(), name: account.login.clone() }];
    targets.extend(step_targets(app, step));
    Event {
        action,
        targets,
        changes: step.changes.0.clone(),
        data: serde_json::to_value(portcullis_core::services::app_accounts::present(account))
            .unwrap_or_default(),
    }
}

/// Closes a plan whose steps have all finished: `applied`, or `failed` if
/// any step failed.
pub(crate) async fn finish_plan(
    tx: &mut WriteTx,
    app: &App,
    plan_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    let env = app.environment_id.as_str();
    let counts = repo::provisioning::step_counts(tx.conn(), env, plan_id).await?;
    // A step waiting on a person keeps its plan open.
    if counts.iter().any(|(status, n)| matches!(status.as_str(), "pending" | "running" | "waiting") && *n > 0)
    {
        return Ok(());
    }
    let Some(mut plan) = record::find::<ProvisioningPlan>(tx.conn(), env, plan_id).await? else {
        return Ok(());
    };
    if plan.status != "applying" && plan.status != "approved" {
        return Ok(());
    }
    let failed = counts.iter().any(|(status, n)| status == "failed" && *n > 0);
    plan.status = if failed { "failed" } else { "applied" }.to_owned();
    plan.finished_at = Some(now);
    plan.updated_at = now;
    let mut summary = plan.summary.0.clone();
    if let Value::Object(map) = &mut summary {
        map.insert("outcome".into(), Value::Object(counts.into_iter().map(|(s, n)| (s, json!(n))).collect()));
    }
    plan.summary = JsonText(summary);
    record::update(tx.conn(), env, &plan).await?;
    let event = Event {
        action: if failed { "provisioning_plan.failed" } else { "provisioning_plan.applied" },
        targets: vec![
            Target { kind: "provisioning_plan".into(), id: plan.id.clone(), name: None },
            Target { kind: "app".into(), id: app.id.clone(), name: Some(app.name.clone()) },
        ],
        changes: json!({"status": {"from": "applying", "to": plan.status}}),
        data: serde_json::to_value(portcullis_core::services::provisioning_plans::present(&plan))
            .unwrap_or_default(),
    };
    tx.record(&plan::origin(env), &event).await
}
