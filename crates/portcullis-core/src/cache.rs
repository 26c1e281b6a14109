//! Per-process caches of what the token hot path needs (clients, resource
//! servers, grants, signing keys, revocations), one [`EnvState`] per
//! environment. A committed change drops the environment's state (in this
//! process before the commit returns, in others through PostgreSQL
//! LISTEN/NOTIFY), and the next request loads a fresh one.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use portcullis_crypto::aead::MasterKey;
use portcullis_crypto::{Algorithm, SigningKey, VerifyingKey};
use portcullis_store::model::{Client, Environment, Grant, ResourceServer, Scope};
use portcullis_store::{Db, record, repo};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::error::{Result, ServiceError};

/// A resource server with its scope names, as the token endpoint sees it.
#[derive(Debug)]
pub struct Api {
    pub server: ResourceServer,
    /// The audience: the stored identifier, or `{issuer}/api` for the system API.
    pub identifier: String,
    pub scopes: Vec<String>,
}

/// Resource servers by identifier and grants by client row id, then server id.
#[derive(Debug, Default)]
pub struct ApiIndex {
    pub by_identifier: HashMap<String, Arc<Api>>,
    grants: HashMap<String, HashMap<String, Option<Vec<String>>>>,
}

impl ApiIndex {
    /// The scopes a client's grant on `api` allows (its whole scope list
    /// when the grant says `null`); `None` without a grant.
    pub fn allowed<'a>(&'a self, client_row: &str, api: &'a Api) -> Option<&'a [String]> {
        let allowed = self.grants.get(client_row)?.get(&api.server.id)?;
        Some(allowed.as_deref().unwrap_or(&api.scopes))
    }
}

/// The active signing keys: the primary signs, every active one verifies.
pub struct KeyRing {
    pub primary: Option<Arc<SigningKey>>,
    pub verifiers: HashMap<String, VerifyingKey>,
    pub jwks: Value,
}

/// Everything cached about one environment, as seen at one host: its
/// default host, or its active custom domain. Both views answer for both
/// issuers (a token issued at either host works at the other), but each
/// issues, and publishes discovery, as the host it serves.
pub struct EnvState {
    pub environment: Environment,
    /// The issuer at the host this view serves.
    pub issuer: String,
    /// The Management API identifier at that host, `{issuer}/api`.
    pub management_api: String,
    /// Every issuer of the environment: the default host's, then the active
    /// custom domain's.
    pub issuers: Vec<String>,
    clients: RwLock<HashMap<String, Arc<Client>>>,
    apis: OnceCell<Arc<ApiIndex>>,
    keys: OnceCell<Arc<KeyRing>>,
    revoked: OnceCell<Arc<HashSet<String>>>,
    blocked_users: OnceCell<Arc<HashSet<String>>>,
    db: Db,
    master_key: MasterKey,
}

impl std::fmt::Debug for EnvState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvState").field("handle", &self.environment.handle).finish_non_exhaustive()
    }
}

impl EnvState {
    /// `issuers` is the default host's issuer, then the custom domain's if
    /// one is active; `at` indexes the one this view serves.
    pub(crate) fn new(
        environment: Environment,
        issuers: Vec<String>,
        at: usize,
        db: Db,
        master_key: MasterKey,
    ) -> Self {
        let issuer = issuers[at].clone();
        EnvState {
            management_api: format!("{issuer}/api"),
            issuer,
            issuers,
            environment,
            clients: RwLock::default(),
            apis: OnceCell::new(),
            keys: OnceCell::new(),
            revoked: OnceCell::new(),
            blocked_users: OnceCell::new(),
            db,
            master_key,
        }
    }

    /// Whether `iss` is one of this environment's issuers.
    pub fn issues(&self, iss: &str) -> bool {
        self.issuers.iter().any(|issuer| issuer == iss)
    }

    /// Whether `aud` names this environment's Management API at any of its hosts.
    pub fn is_management_api(&self, aud: &str) -> bool {
        aud.strip_suffix("/api").is_some_and(|issuer| self.issues(issuer))
    }

    pub fn id(&self) -> &str {
        &self.environment.id
    }

    /// A client by its public `client_id`. Unknown ids are not cached, so
    /// guessing cannot grow the cache.
    pub async fn client(&self, client_id: &str) -> Result<Option<Arc<Client>>> {
        if let Some(client) = self.clients.read().expect("cache lock").get(client_id) {
            return Ok(Some(client.clone()));
        }
        let mut conn = self.db.read().await?;
        let found: Option<Client> = record::find_by(&mut conn, self.id(), "client_id", client_id).await?;
        Ok(found.map(|client| {
            let client = Arc::new(client);
            self.clients.write().expect("cache lock").insert(client_id.to_owned(), client.clone());
            client
        }))
    }

    pub async fn apis(&self) -> Result<Arc<ApiIndex>> {
        self.apis
            .get_or_try_init(|| async {
                let mut conn = self.db.read().await?;
                let servers: Vec<ResourceServer> = repo::all(&mut conn, self.id()).await?;
                let scopes: Vec<Scope> = repo::all(&mut conn, self.id()).await?;
                let grants: Vec<Grant> = repo::all(&mut conn, self.id()).await?;
                let mut index = ApiIndex::default();
                for server in servers {
                    let names = if server.system {
                        crate::authz::management_scopes()
                    } else {
                        scopes
                            .iter()
                            .filter(|s| s.resource_server_id == server.id)
                            .map(|s| s.name.clone())
                            .collect()
                    };
                    // The Management API is named at every host of the environment.
                    let identifiers = if server.system {
                        self.issuers.iter().map(|issuer| format!("{issuer}/api")).collect()
                    } else {
                        vec![server.identifier.clone()]
                    };
                    for identifier in identifiers {
                        let api = Api {
                            server: server.clone(),
                            identifier: identifier.clone(),
                            scopes: names.clone(),
                        };
                        index.by_identifier.insert(identifier, Arc::new(api));
                    }
                }
                for grant in grants {
                    index
                        .grants
                        .entry(grant.client_id)
                        .or_default()
                        .insert(grant.resource_server_id, grant.allowed_scopes.0);
                }
                Ok::<_, ServiceError>(Arc::new(index))
            })
            .await
            .cloned()
    }

    pub async fn keys(&self) -> Result<Arc<KeyRing>> {
        self.keys
            .get_or_try_init(|| async {
                let mut conn = self.db.read().await?;
                let rows = repo::signing_keys::active(&mut conn, self.id()).await?;
                let mut verifiers = HashMap::new();
                let mut jwks = Vec::new();
                let mut primary = None;
                for row in rows {
                    let verifier = VerifyingKey::from_jwk(&row.public_jwk.0)?;
                    verifiers.insert(row.kid.clone(), verifier);
                    jwks.push(row.public_jwk.0.clone());
                    if row.is_primary {
                        let algorithm = Algorithm::from_api_name(&row.algorithm)
                            .ok_or_else(|| ServiceError::Internal("unknown key algorithm".into()))?;
                        let pkcs8 = self.master_key.open(&row.private_key, &row.id)?;
                        primary = Some(Arc::new(SigningKey::from_pkcs8(&row.kid, algorithm, &pkcs8)?));
                    }
                }
                Ok::<_, ServiceError>(Arc::new(KeyRing {
                    primary,
                    verifiers,
                    jwks: serde_json::json!({ "keys": jwks }),
                }))
            })
            .await
            .cloned()
    }

    /// `jti`s of revoked, unexpired JWT access tokens.
    pub async fn revoked(&self) -> Result<Arc<HashSet<String>>> {
        self.revoked
            .get_or_try_init(|| async {
                let mut conn = self.db.read().await?;
                let jtis = repo::tokens::revoked_jtis(&mut conn, self.id()).await?;
                Ok::<_, ServiceError>(Arc::new(jtis.into_iter().collect()))
            })
            .await
            .cloned()
    }
}

impl EnvState {
    /// Ids of blocked users, whose tokens stop working at once.
    pub async fn blocked_users(&self) -> Result<Arc<HashSet<String>>> {
        self.blocked_users
            .get_or_try_init(|| async {
                let mut conn = self.db.read().await?;
                let ids = repo::signin::blocked_users(&mut conn, self.id()).await?;
                Ok::<_, ServiceError>(Arc::new(ids.into_iter().collect()))
            })
            .await
            .cloned()
    }
}

/// All environments' states: the default host's view by handle, the custom
/// domain's by the domain (handles have no dots, domains do).
#[derive(Default)]
pub struct EnvRegistry {
    by_handle: RwLock<HashMap<String, Arc<EnvState>>>,
    /// Counts invalidations, so a state read before one is not cached after it.
    generation: AtomicU64,
}

impl EnvRegistry {
    pub fn get(&self, handle: &str) -> Option<Arc<EnvState>> {
        self.by_handle.read().expect("cache lock").get(handle).cloned()
    }

    /// Read before loading a state from the database; see [`EnvRegistry::insert`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches a state loaded after [`EnvRegistry::generation`] returned
    /// `generation`, unless an invalidation happened meanwhile (the state may
    /// predate that change; the next request loads a fresh one).
    pub fn insert(&self, key: &str, state: Arc<EnvState>, generation: u64) {
        let mut map = self.by_handle.write().expect("cache lock");
        if self.generation.load(Ordering::Acquire) == generation {
            map.insert(key.to_owned(), state);
        }
    }

    /// Drops an environment's state (`*` drops all).
    pub fn invalidate(&self, environment_id: &str) {
        let mut map = self.by_handle.write().expect("cache lock");
        self.generation.fetch_add(1, Ordering::AcqRel);
        if environment_id == "*" {
            map.clear();
        } else {
            map.retain(|_, state| state.environment.id != environment_id);
        }
    }
}
