//! Connectors: how the hub reads and changes accounts in each kind of app.
//! Each one speaks its vendor's contract (`../shared/spec/connectors.md`):
//! nothing here depends on a simulator-only behaviour.

pub mod expensify;
pub mod http;
pub mod payhawk;
pub mod scim;
pub mod stripe;

use std::sync::Arc;

use portcullis_core::services::apps::{AppKind, Credentials};
use portcullis_store::model::App;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use http::{ConnectorError, Retry, Throttle};

/// An account as the app reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteAccount {
    /// The app's own id (Stripe `cus_…`), or the lower-cased login where the
    /// app has none (Expensify keys employees by email).
    pub external_id: String,
    pub login: Option<String>,
    pub status: AccountStatus,
    /// App-shaped attributes, comparable with [`Desired::attributes`].
    pub attributes: Map<String, Value>,
    /// The Portcullis user the app says this account belongs to (Stripe
    /// `metadata.idp_user_id`; Expensify `employeeID`), if any.
    pub claimed_user_id: Option<String>,
    /// The app will not let this account go (an Expensify policy owner):
    /// never proposed for deprovisioning.
    pub protected: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Deactivated,
    Deleted,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Deactivated => "deactivated",
            AccountStatus::Deleted => "deleted",
        }
    }
}

/// What an account should look like: rendered from the user through the
/// app's attribute mappings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    pub user_id: String,
    pub email: String,
    pub attributes: Map<String, Value>,
}

impl Desired {
    /// The attributes that have a value: what an app holds after a write
    /// that answered nothing (an empty value is not stored there).
    pub fn set_attributes(&self) -> Map<String, Value> {
        self.attributes.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// One change, as fixed on a step's first attempt so that every retry sends
/// the same request (and, where the app has them, the same idempotency key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Create {
        desired: Desired,
    },
    Update {
        external_id: String,
        desired: Desired,
    },
    /// An account that cannot take the change in place (a Stripe Dashboard
    /// member's email): delete it, then create the desired one.
    Replace {
        external_id: String,
        desired: Desired,
    },
    Deactivate {
        external_id: String,
        login: Option<String>,
        desired: Option<Desired>,
        at: i64,
    },
    Delete {
        external_id: String,
    },
    /// A step no connector can take (revoking the API keys a departed
    /// Stripe Dashboard member created): a person does it from a task.
    Manual {
        title: String,
        instructions: Vec<String>,
    },
}

impl Op {
    /// Whether a person must do it, whatever the app's provisioning.
    pub fn is_manual(&self) -> bool {
        matches!(self, Op::Manual { .. })
    }
}

/// A step's request: the operation plus its idempotency generation, which
/// moves on only when the app stored a failure under the old key (Stripe
/// replays a stored 500 for the same key forever).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub op: Op,
    #[serde(default)]
    pub generation: u32,
}

/// The account after a successful operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub external_id: String,
    pub login: Option<String>,
    pub status: AccountStatus,
    pub attributes: Map<String, Value>,
}

/// One step handed to a connector.
pub struct Job<'a> {
    pub step_id: &'a str,
    pub request: &'a Request,
}

/// A connector bound to one app.
pub enum Connector {
    Expensify(expensify::Expensify),
    Stripe(stripe::Stripe),
    Scim(scim::Scim),
    Payhawk(payhawk::Payhawk),
}

impl Connector {
    pub fn new(
        app: &App,
        credentials: Credentials,
        client: reqwest::Client,
        throttle: Arc<Throttle>,
    ) -> Result<Self, ConnectorError> {
        let kind = AppKind::parse(&app.kind).map_err(|e| ConnectorError::permanent(e.to_string()))?;
        Ok(match kind {
            AppKind::Expensify => {
                Connector::Expensify(expensify::Expensify::new(app, credentials, client, throttle)?)
            }
            AppKind::Stripe => Connector::Stripe(stripe::Stripe::new(app, credentials, client, throttle)?),
            AppKind::Scim | AppKind::StripeDashboard | AppKind::TravelPerk => {
                Connector::Scim(scim::Scim::new(app, credentials, client, throttle)?)
            }
            AppKind::Payhawk => {
                Connector::Payhawk(payhawk::Payhawk::new(app, credentials, client, throttle)?)
            }
            AppKind::Manual => {
                return Err(ConnectorError::permanent("a manual app has no API: people make its changes"));
            }
        })
    }

    /// The app's whole roster. Fails rather than return part of it: callers
    /// derive deactivations from what is absent.
    pub async fn roster(
        &self,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<RemoteAccount>, ConnectorError> {
        match self {
            Connector::Expensify(c) => c.roster(progress).await,
            Connector::Stripe(c) => c.roster(progress).await,
            Connector::Scim(c) => c.roster(progress).await,
            Connector::Payhawk(c) => c.roster(progress).await,
        }
    }

    /// Applies jobs in order; one result per job. Expensify sends them as one
    /// feed, Stripe one call (or a lookup and a call) each.
    pub async fn apply(&self, jobs: &[Job<'_>]) -> Vec<Result<Applied, ConnectorError>> {
        match self {
            Connector::Expensify(c) => c.apply(jobs).await,
            Connector::Stripe(c) => c.apply(jobs).await,
            Connector::Scim(c) => c.apply(jobs).await,
            Connector::Payhawk(c) => c.apply(jobs).await,
        }
    }

    /// How many jobs one `apply` call should get.
    pub fn batch_size(&self) -> usize {
        match self {
            Connector::Expensify(_) => expensify::FEED_ROWS,
            Connector::Scim(c) => c.batch_size(),
            Connector::Stripe(_) | Connector::Payhawk(_) => 50,
        }
    }
}

/// A short, non-secret name for a credential, for throttle buckets and caches.
pub(crate) fn fingerprint(secret: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    hex::encode(&digest.as_ref()[..8])
}

/// The string at `key` of a JSON object, if any and not empty.
pub(crate) fn text(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}
