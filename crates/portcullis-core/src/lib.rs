//! Domain rules and services for Portcullis. Transports (HTTP, CLI) call
//! these; they never see HTTP types, and only the store sees SQL.

pub mod account;
pub mod authz;
pub mod cache;
pub mod context;
pub mod error;
pub mod events;
pub mod limits;
pub mod mail;
pub mod oauth;
pub mod outbound;
pub mod passwords;
pub mod services;
pub mod signin;
pub mod webhooks;

use std::sync::Arc;

use portcullis_crypto::aead::MasterKey;
use portcullis_store::{Db, repo};

pub use cache::EnvState;
pub use context::{Authority, Ctx};
pub use error::{Field, Result, ServiceError};

/// How issuers are formed: `{scheme}://{handle}.{base_domain}[:port]`.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub base_domain: String,
    pub public_scheme: String,
    /// Omitted from issuers when `None`.
    pub public_port: Option<u16>,
    /// Serves hosts that name no environment (a bare IP, `localhost`).
    pub default_environment: Option<String>,
    pub mail: mail::MailSettings,
    /// `None` turns rate limiting off (benchmarks only).
    pub rate_limits: Option<limits::RateLimits>,
    /// The lifecycle hub's workers.
    pub hub: HubSettings,
    /// Where custom-domain checks ask DNS.
    pub dns: services::custom_domains::DnsSettings,
    /// How webhooks are delivered.
    pub webhooks: webhooks::WebhookSettings,
    /// Let customer-given URLs (webhook endpoints, apps' base URLs) reach
    /// loopback and private networks, and use plain http. Development
    /// only: otherwise anyone who may create a webhook or an app could make
    /// the server call into its own network (`outbound`). An installation
    /// setting, so no environment's administrator can turn it on.
    pub allow_private_targets: bool,
}

/// How the lifecycle hub's relay and workers pace themselves.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Run the relay and workers in this process.
    pub enabled: bool,
    /// How often the relay and the workers look for new work.
    pub poll_interval: std::time::Duration,
    /// How long a worker owns a step before another may take it over.
    pub lease: std::time::Duration,
    /// Attempts before a step fails for good.
    pub max_attempts: i64,
    /// Exponential backoff with full jitter between attempts.
    pub backoff_base: std::time::Duration,
    pub backoff_cap: std::time::Duration,
    /// One call to an app, end to end.
    pub request_timeout: std::time::Duration,
}

impl Default for HubSettings {
    fn default() -> Self {
        HubSettings {
            enabled: true,
            poll_interval: std::time::Duration::from_millis(500),
            lease: std::time::Duration::from_secs(300),
            max_attempts: 8,
            backoff_base: std::time::Duration::from_secs(1),
            backoff_cap: std::time::Duration::from_secs(60),
            request_timeout: std::time::Duration::from_secs(30),
        }
    }
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            base_domain: "localhost".into(),
            public_scheme: "http".into(),
            public_port: None,
            default_environment: None,
            mail: mail::MailSettings::default(),
            rate_limits: Some(limits::RateLimits::default()),
            hub: HubSettings::default(),
            dns: services::custom_domains::DnsSettings::default(),
            webhooks: webhooks::WebhookSettings::default(),
            allow_private_targets: false,
        }
    }
}

/// The service layer's shared state.
pub struct Core {
    pub db: Db,
    pub master_key: MasterKey,
    pub config: CoreConfig,
    pub envs: cache::EnvRegistry,
    pub events: events::EventSink,
    /// Argon2id runs here, one hash per core at a time.
    pub passwords: passwords::PasswordPool,
    pub mailer: Arc<mail::Mailer>,
    pub limiter: limits::Limiter,
    /// Lockout for sign-ins to addresses with no account.
    pub unknown_logins: signin::UnknownLogins,
    /// Refresh-token rotations, committed in groups.
    pub rotations: oauth::rotation::Rotations,
    /// Custom-domain checks ask DNS through this.
    pub dns: services::custom_domains::DomainResolver,
    /// Active custom domains, for routing requests by `Host`.
    pub domains: services::custom_domains::DomainIndex,
}

/// A `Host` header's (or SNI) name: no port, no trailing dot, lower case.
pub fn normalize_host(host: &str) -> String {
    let name = host
        .rsplit_once(':')
        .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host });
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Core {
    /// Builds the core and starts its background tasks (cache invalidation,
    /// the change listener on PostgreSQL, the asynchronous event writer, the
    /// mail worker, the custom-domain checks, the webhook delivery worker).
    /// Fails on mail settings that cannot work.
    pub fn start(db: Db, master_key: MasterKey, config: CoreConfig) -> Result<Arc<Core>> {
        db.set_event_catalogue(|action| webhooks::catalogue::find(action).is_some());
        let mailer = Arc::new(mail::Mailer::new(&config.mail)?);
        let dns = services::custom_domains::DomainResolver::new(&config.dns)?;
        let core = Arc::new(Core {
            limiter: limits::Limiter::new(config.rate_limits.as_ref()),
            unknown_logins: signin::UnknownLogins::default(),
            mailer,
            dns,
            domains: services::custom_domains::DomainIndex::default(),
            events: events::EventSink::start(db.clone()),
            rotations: oauth::rotation::Rotations::start(db.clone()),
            passwords: passwords::PasswordPool::start(
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            ),
            db,
            master_key,
            config,
            envs: cache::EnvRegistry::default(),
        });
        // Commits drop the cached state they changed: this process's before
        // they return, other processes' through the PostgreSQL listener.
        let weak = Arc::downgrade(&core);
        core.db.on_change(move |environment_id| {
            if let Some(core) = weak.upgrade() {
                core.envs.invalidate(environment_id);
            }
        });
        let db = core.db.clone();
        let weak = Arc::downgrade(&core);
        tokio::spawn(async move {
            while weak.strong_count() > 0 {
                if let Err(error) = db.listen().await {
                    tracing::warn!(%error, "change listener stopped; restarting");
                }
                if db.backend() != portcullis_store::Backend::Postgres {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
        tokio::spawn(mail::run_worker(Arc::downgrade(&core)));
        tokio::spawn(services::custom_domains::run_checker(Arc::downgrade(&core)));
        tokio::spawn(webhooks::delivery::run_worker(Arc::downgrade(&core)));
        let weak = Arc::downgrade(&core);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(core) = weak.upgrade() else { return };
                core.limiter.shrink();
                core.unknown_logins.shrink();
            }
        });
        Ok(core)
    }

    pub fn issuer_for(&self, handle: &str) -> String {
        self.issuer_at(&format!("{handle}.{}", self.config.base_domain))
    }

    /// The issuer of a host: `{public_scheme}://{host}[:{public_port}]`.
    pub fn issuer_at(&self, host: &str) -> String {
        let port = self.config.public_port.map(|p| format!(":{p}")).unwrap_or_default();
        format!("{}://{host}{port}", self.config.public_scheme)
    }

    /// The environment a request's `Host` names, if any: `{handle}.{base_domain}`,
    /// an active custom domain, or the `default_environment`.
    pub async fn environment_for_host(&self, host: &str) -> Result<Option<Arc<EnvState>>> {
        let host = normalize_host(host);
        if let Some(handle) = self.default_host_handle(&host) {
            return self.environment(handle).await;
        }
        if let Some(handle) = self.domains.handle_of(self, &host).await? {
            return self.environment_at_domain(&handle, &host).await;
        }
        match &self.config.default_environment {
            Some(handle) => self.environment(handle).await,
            None => Ok(None),
        }
    }

    /// Whether `host` is an environment's default host or an active custom
    /// domain: the names a TLS proxy or the built-in ACME client may get
    /// certificates for. Unlike routing, the `default_environment` fallback
    /// does not count, or any name pointed at the server would qualify.
    pub async fn serves_host(&self, host: &str) -> Result<bool> {
        let host = normalize_host(host);
        if let Some(handle) = self.default_host_handle(&host) {
            return Ok(self.environment(handle).await?.is_some());
        }
        Ok(self.domains.handle_of(self, &host).await?.is_some())
    }

    /// The handle in `{handle}.{base_domain}`.
    fn default_host_handle<'h>(&self, host: &'h str) -> Option<&'h str> {
        host.strip_suffix(&self.config.base_domain)
            .and_then(|rest| rest.strip_suffix('.'))
            .filter(|handle| !handle.is_empty() && !handle.contains('.'))
    }

    /// An environment's cached state by id (background work that starts
    /// from a row).
    pub async fn environment_by_id(&self, id: &str) -> Result<Option<Arc<EnvState>>> {
        let environment = repo::environments::by_id(&mut *self.db.read().await?, id).await?;
        match environment {
            Some(environment) => self.environment(&environment.handle).await,
            None => Ok(None),
        }
    }

    /// An environment's cached state by handle, as its default host serves it.
    pub async fn environment(&self, handle: &str) -> Result<Option<Arc<EnvState>>> {
        self.load_environment(handle, None).await
    }

    /// An environment as its active custom domain `domain` serves it; `None`
    /// unless `domain` is that environment's active domain.
    async fn environment_at_domain(&self, handle: &str, domain: &str) -> Result<Option<Arc<EnvState>>> {
        self.load_environment(handle, Some(domain)).await
    }

    async fn load_environment(&self, handle: &str, domain: Option<&str>) -> Result<Option<Arc<EnvState>>> {
        let key = domain.unwrap_or(handle);
        if let Some(state) = self.envs.get(key) {
            return Ok(Some(state));
        }
        let generation = self.envs.generation();
        let mut conn = self.db.read().await?;
        let Some(environment) = repo::environments::by_handle(&mut conn, handle).await? else {
            return Ok(None);
        };
        let active = services::custom_domains::active_domain_of(&mut conn, &environment.id).await?;
        let mut issuers = vec![self.issuer_for(&environment.handle)];
        issuers.extend(active.as_deref().map(|active| self.issuer_at(active)));
        let at = match domain {
            None => 0,
            Some(domain) if active.as_deref() == Some(domain) => 1,
            Some(_) => return Ok(None),
        };
        let state =
            Arc::new(EnvState::new(environment, issuers, at, self.db.clone(), self.master_key.clone()));
        self.envs.insert(key, state.clone(), generation);
        Ok(Some(state))
    }
}
