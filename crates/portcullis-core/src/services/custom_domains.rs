//! Custom domains: an environment served at a customer's own host name
//! (`auth.acme.com`) once DNS shows the customer controls it. The operator
//! publishes either a CNAME from the domain to the environment's default
//! host, or a TXT record at `_portcullis-challenge.{domain}` holding the
//! domain's verification value (for apex domains, and to prove ownership
//! before traffic moves). A domain belongs to one environment across the
//! installation, and an environment has at most one (the reference's
//! dashboard has a single field).
//!
//! Status: `pending` until a check finds a record that proves it, then
//! `active`; `failed` when a check finds a record that points elsewhere, or
//! when the record of an active domain is gone. A check that finds nothing
//! leaves a pending domain pending (DNS may not have propagated yet); one
//! the resolver could not answer changes no status. `verify` checks now; a
//! background pass re-checks pending and failed domains with backoff and
//! active ones every hour.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use portcullis_crypto::secret;
use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Actor, Event};
use portcullis_store::sql::Sql;
use portcullis_store::{micros, new_id, now_micros, record};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{attrs, fetch_in, finish, target, timestamp};
use crate::authz::{Family, Guarded, Verb};
use crate::cache::EnvState;
use crate::context::{Authority, Ctx};
use crate::error::{Field, conflict_on};
use crate::{Core, Result, ServiceError};

pub const KIND: &str = "custom_domain";
/// The label of the TXT challenge under the domain.
pub const CHALLENGE_LABEL: &str = "_portcullis-challenge";
const DOMAIN_MAX: usize = 253;
const DOMAIN_TAKEN: &str = "this domain is already in use";
const DOMAIN_INDEX: &[&str] = &["custom_domains_domain_key", "custom_domains.domain"];
const ONE_PER_ENVIRONMENT: &str = "this environment already has a custom domain: delete it first";
const ENVIRONMENT_INDEX: &[&str] = &["custom_domains_environment_key", "custom_domains.environment_id"];
/// How often an active domain's record is checked again.
const ACTIVE_RECHECK: Duration = Duration::from_secs(3600);
/// The first re-check of a domain not (yet) proven; it doubles up to an hour.
const FIRST_RETRY: Duration = Duration::from_secs(60);
/// How long one process owns a due check before another may take it.
const CHECK_LEASE: Duration = Duration::from_secs(120);
const BATCH: i64 = 20;

portcullis_store::record! {
    /// An environment's own host name (`/api/custom-domains`).
    pub struct CustomDomain in "custom_domains" {
        pub id: String,
        pub environment_id: String,
        pub domain: String,
        pub status: String,
        pub verification_token: String,
        pub verified_at: Option<i64>,
        pub last_checked_at: Option<i64>,
        pub next_check_at: i64,
        pub checks: i64,
        pub failure: Option<String>,
        pub inserted_at: i64,
        pub updated_at: i64,
        /// Written by the built-in ACME client (`portcullis_server::tls`).
        pub certificate_expires_at: Option<i64>,
        pub certificate_error: Option<String>,
    }
}

impl Guarded for CustomDomain {
    const FAMILY: Family = Family::CustomDomains;
}

/// Where custom-domain checks ask DNS.
#[derive(Debug, Clone, Default)]
pub struct DnsSettings {
    /// Name servers to ask (`ip:port`); empty for the system's
    /// (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// How often the background pass looks for due checks.
    pub poll_interval: Option<Duration>,
}

/// The resolver of custom-domain checks: no cache, so a check (the
/// dashboard's Refresh) sees what DNS says now.
pub struct DomainResolver {
    resolver: TokioResolver,
}

impl DomainResolver {
    pub fn new(settings: &DnsSettings) -> Result<DomainResolver> {
        let mut options = ResolverOpts::default();
        options.cache_size = 0;
        options.timeout = Duration::from_secs(3);
        options.attempts = 1;
        let builder = if settings.servers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| ServiceError::Internal(format!("cannot read the system's DNS settings: {e}")))?
        } else {
            let servers = settings
                .servers
                .iter()
                .map(|address| {
                    let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                        .into_iter()
                        .map(|mut connection| {
                            connection.port = address.port();
                            connection
                        })
                        .collect();
                    NameServerConfig::new(address.ip(), true, connections)
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let resolver = builder
            .with_options(options)
            .build()
            .map_err(|e| ServiceError::Internal(format!("cannot build the DNS resolver: {e}")))?;
        Ok(DomainResolver { resolver })
    }

    /// The values of `name`'s records of `kind`: `Ok(empty)` when DNS says
    /// there are none, `Err` when it could not be asked.
    async fn records(&self, name: &str, kind: RecordType) -> std::result::Result<Vec<String>, String> {
        match self.resolver.lookup(format!("{name}."), kind).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::CNAME(target) => {
                        Some(target.0.to_ascii().trim_end_matches('.').to_ascii_lowercase())
                    }
                    RData::TXT(txt) => Some(
                        txt.txt_data.iter().map(|part| String::from_utf8_lossy(part)).collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(error) if error.is_no_records_found() => Ok(Vec::new()),
            Err(error) => Err(format!("DNS did not answer for {name}: {error}")),
        }
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A record proves the domain.
    Proven,
    /// No record yet.
    Missing(String),
    /// A record points elsewhere.
    Wrong(String),
    /// DNS could not be asked; nothing is concluded.
    Unanswered(String),
}

/// The TXT record's name for `domain`.
pub fn challenge_name(domain: &str) -> String {
    format!("{CHALLENGE_LABEL}.{domain}")
}

/// The TXT record's value for a domain's verification token.
pub fn challenge_value(token: &str) -> String {
    format!("portcullis-domain-verification={token}")
}

/// The environment's default host (`acme-test.localhost`), the CNAME target,
/// whichever host the request came in on.
pub fn default_host(env: &EnvState) -> String {
    let default_issuer = env.issuers.first().unwrap_or(&env.issuer);
    url::Url::parse(default_issuer)
        .ok()
        .and_then(|issuer| issuer.host_str().map(str::to_owned))
        .unwrap_or_default()
}

pub fn present(env: &EnvState, domain: &CustomDomain) -> ResourceObject {
    let records = json!([
        {"type": "CNAME", "name": domain.domain, "value": default_host(env),
         "purpose": "Serves the domain: points it at this environment."},
        {"type": "TXT", "name": challenge_name(&domain.domain), "value": challenge_value(&domain.verification_token),
         "purpose": "Proves ownership without moving traffic, and for apex domains, which cannot have a CNAME."},
    ]);
    ResourceObject::new(
        KIND,
        &domain.id,
        attrs(json!({
            "domain": domain.domain,
            "status": domain.status,
            "dns_records": records,
            "verified_at": domain.verified_at.map(timestamp),
            "last_checked_at": domain.last_checked_at.map(timestamp),
            "failure": domain.failure,
            "certificate_expires_at": domain.certificate_expires_at.map(timestamp),
            "certificate_error": domain.certificate_error,
            "inserted_at": timestamp(domain.inserted_at),
            "updated_at": timestamp(domain.updated_at),
        })),
    )
}

fn name(domain: &CustomDomain) -> Option<&str> {
    Some(&domain.domain)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCustomDomain {
    pub domain: String,
}

/// A host name as DNS and browsers take it: lower-cased, without a trailing
/// dot, at least two labels of letters, digits and inner hyphens (IDNs in
/// their `xn--` form), not an IP address, and not under the installation's
/// own base domain (those hosts are environments' default hosts).
pub fn normalize(domain: &str, base_domain: &str) -> Result<String> {
    let invalid = |why: &str| ServiceError::invalid("domain", why.to_owned());
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() || domain.len() > DOMAIN_MAX {
        return Err(invalid("domain must be a host name of 1 to 253 characters"));
    }
    if !domain.is_ascii() {
        return Err(invalid("domain must be ASCII: give an internationalized name in its xn-- form"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(invalid("domain must have at least two labels, e.g. auth.example.com"));
    }
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !labels.iter().all(label_ok) {
        return Err(invalid(
            "each label of domain must be 1 to 63 letters, digits and inner hyphens (no ports, paths or wildcards)",
        ));
    }
    if labels.last().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return Err(invalid("domain must be a host name, not an IP address"));
    }
    let base = base_domain.trim_end_matches('.').to_ascii_lowercase();
    if domain == base || domain.ends_with(&format!(".{base}")) {
        return Err(invalid("domain cannot be under this installation's own base domain"));
    }
    Ok(domain)
}

pub async fn create(core: &Core, ctx: &Ctx, input: NewCustomDomain) -> Result<CustomDomain> {
    ctx.require(Family::CustomDomains, Verb::Write)?;
    let domain = normalize(&input.domain, &core.config.base_domain)?;
    let now = now_micros();
    let row = CustomDomain {
        id: new_id(),
        environment_id: ctx.environment_id().to_owned(),
        domain,
        status: "pending".into(),
        verification_token: secret::random_base62(32),
        verified_at: None,
        last_checked_at: None,
        next_check_at: now,
        checks: 0,
        failure: None,
        inserted_at: now,
        updated_at: now,
        certificate_expires_at: None,
        certificate_error: None,
    };
    let mut tx = core.db.write().await?;
    record::insert(tx.conn(), &row)
        .await
        .map_err(conflict_on(DOMAIN_INDEX, Field::Attribute("domain"), DOMAIN_TAKEN))
        .map_err(|error| match error {
            ServiceError::Store(store) if is_one_per_environment(&store) => {
                ServiceError::conflict(Field::Attribute("domain"), ONE_PER_ENVIRONMENT)
            }
            other => other,
        })?;
    let event = Event {
        action: "custom_domain.created",
        targets: vec![target(KIND, &row.id, Some(&row.domain))],
        changes: json!({"domain": {"from": null, "to": row.domain}}),
        data: serde_json::to_value(present(&ctx.env, &row)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(row)
}

fn is_one_per_environment(error: &portcullis_store::StoreError) -> bool {
    ENVIRONMENT_INDEX.iter().any(|marker| error.is_conflict_on(marker))
}

pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::CustomDomains, Verb::Delete)?;
    let mut tx = core.db.write().await?;
    let row: CustomDomain = fetch_in(&mut tx, ctx, KIND, id).await?;
    record::delete::<CustomDomain>(tx.conn(), ctx.environment_id(), id).await?;
    // The environment's issuers change with its active domain.
    tx.invalidate(ctx.environment_id());
    let event = Event {
        action: "custom_domain.deleted",
        targets: vec![target(KIND, id, name(&row))],
        changes: Value::Object(serde_json::Map::new()),
        data: serde_json::to_value(present(&ctx.env, &row)).unwrap_or(Value::Null),
    };
    finish(tx, ctx, event).await?;
    core.domains.invalidate();
    Ok(())
}

/// `POST /api/custom-domains/:id/verify`: checks DNS now and records what
/// it found (the dashboard's Refresh).
pub async fn verify(core: &Core, ctx: &Ctx, id: &str) -> Result<CustomDomain> {
    ctx.require(Family::CustomDomains, Verb::Write)?;
    // The write scope answers for the read too: verify is one operation.
    let row: CustomDomain = super::find(core, ctx, KIND, id).await?;
    let finding = check(core, &ctx.env, &row).await;
    match record_finding(core, ctx, &row, &finding).await? {
        Some(updated) => Ok(updated),
        // A concurrent check or delete won: answer with what is stored now.
        None => super::find(core, ctx, KIND, id).await,
    }
}

/// Asks DNS for the TXT challenge, then the CNAME.
pub async fn check(core: &Core, env: &EnvState, row: &CustomDomain) -> Finding {
    let expected_value = challenge_value(&row.verification_token);
    let txt_name = challenge_name(&row.domain);
    let target = default_host(env);
    let txt = match core.dns.records(&txt_name, RecordType::TXT).await {
        Ok(values) => values,
        Err(error) => return Finding::Unanswered(error),
    };
    if txt.contains(&expected_value) {
        return Finding::Proven;
    }
    let cname = match core.dns.records(&row.domain, RecordType::CNAME).await {
        Ok(values) => values,
        Err(error) => return Finding::Unanswered(error),
    };
    if cname.contains(&target) {
        return Finding::Proven;
    }
    if let Some(other) = cname.first() {
        return Finding::Wrong(format!("the CNAME of {} points to {other}, not to {target}", row.domain));
    }
    if let Some(other) = txt.first() {
        return Finding::Wrong(format!(
            "the TXT record at {txt_name} holds \"{other}\", not \"{expected_value}\""
        ));
    }
    Finding::Missing(format!("no CNAME from {} to {target} and no TXT record at {txt_name} yet", row.domain))
}

/// The status a finding moves a domain to, and why not active.
fn next_status(current: &str, finding: &Finding) -> (&'static str, Option<String>) {
    match (current, finding) {
        (_, Finding::Proven) => ("active", None),
        (_, Finding::Wrong(why)) => ("failed", Some(why.clone())),
        ("active", Finding::Missing(why)) => ("failed", Some(format!("the record is gone: {why}"))),
        ("failed", Finding::Missing(why)) => ("failed", Some(why.clone())),
        (_, Finding::Missing(why)) => ("pending", Some(why.clone())),
        ("active", Finding::Unanswered(_)) => ("active", None),
        ("failed", Finding::Unanswered(why)) => ("failed", Some(why.clone())),
        (_, Finding::Unanswered(why)) => ("pending", Some(why.clone())),
    }
}

/// Stores a finding unless the row changed since it was read (another
/// check or a delete won); `None` then. A change of status is an audited
/// event (`custom_domain.verified` or `custom_domain.failed`); a check that
/// changes none only moves the bookkeeping.
async fn record_finding(
    core: &Core,
    ctx: &Ctx,
    before: &CustomDomain,
    finding: &Finding,
) -> Result<Option<CustomDomain>> {
    let now = now_micros();
    let (status, failure) = next_status(&before.status, finding);
    let changed = status != before.status;
    let checks = if changed || *finding == Finding::Proven { 0 } else { before.checks + 1 };
    let wait = if status == "active" {
        ACTIVE_RECHECK
    } else {
        (FIRST_RETRY * 2u32.saturating_pow(u32::try_from(checks.min(6)).unwrap_or(6))).min(ACTIVE_RECHECK)
    };
    let mut after = before.clone();
    after.status = status.to_owned();
    after.failure = failure;
    after.last_checked_at = Some(now);
    after.next_check_at = now + micros(wait);
    after.checks = checks;
    if status == "active" && before.status != "active" {
        after.verified_at = Some(now);
    }
    after.updated_at = now;
    let mut tx = if changed { core.db.write().await? } else { core.db.write_state().await? };
    let mut sql = Sql::new("UPDATE custom_domains SET status = ");
    sql.bind(after.status.clone()).push(", failure = ").bind(after.failure.clone());
    sql.push(", last_checked_at = ").bind(after.last_checked_at);
    sql.push(", next_check_at = ").bind(after.next_check_at);
    sql.push(", checks = ").bind(after.checks);
    sql.push(", verified_at = ").bind(after.verified_at);
    sql.push(", updated_at = ").bind(after.updated_at);
    sql.push(" WHERE environment_id = ").bind(before.environment_id.clone());
    sql.push(" AND id = ").bind(before.id.clone());
    sql.push(" AND updated_at = ").bind(before.updated_at);
    if sql.execute(tx.conn()).await? != 1 {
        return Ok(None);
    }
    if changed {
        tx.invalidate(&after.environment_id);
        let action = if status == "active" { "custom_domain.verified" } else { "custom_domain.failed" };
        let event = Event {
            action,
            targets: vec![target(KIND, &after.id, Some(&after.domain))],
            changes: json!({
                "status": {"from": before.status, "to": after.status},
                "failure": {"from": before.failure, "to": after.failure},
            }),
            data: serde_json::to_value(present(&ctx.env, &after)).unwrap_or_default(),
        };
        finish(tx, ctx, event).await?;
        core.domains.invalidate();
    } else {
        tx.commit().await?;
    }
    Ok(Some(after))
}

/// Active custom domains by host name (to environment handles), for
/// routing requests. Loaded on first use; dropped when this process changes
/// a domain's status, and reloaded when older than a few seconds (another
/// process's changes), by one request while the others use the old map.
#[derive(Default)]
pub struct DomainIndex {
    map: std::sync::RwLock<Option<(Hosts, Instant)>>,
    reload: tokio::sync::Mutex<()>,
    /// Bumped by `invalidate`: a load that began before is not kept.
    generation: std::sync::atomic::AtomicU64,
}

/// Environment handles by active domain.
type Hosts = Arc<HashMap<String, String>>;

/// How old the index may get before a request reloads it.
const INDEX_TTL: Duration = Duration::from_secs(5);

impl DomainIndex {
    /// The handle of the environment whose active domain `host` is.
    pub async fn handle_of(&self, core: &Core, host: &str) -> Result<Option<String>> {
        let current = self.map.read().expect("index lock").clone();
        match current {
            Some((map, loaded)) if loaded.elapsed() < INDEX_TTL => return Ok(map.get(host).cloned()),
            Some((map, _)) => {
                // Stale: one request reloads; the others answer from the old
                // map when it knows the host...
                if let Ok(_reloading) = self.reload.try_lock() {
                    return Ok(self.load(core).await?.get(host).cloned());
                }
                if let Some(handle) = map.get(host) {
                    return Ok(Some(handle.clone()));
                }
                // ...and wait for the reload when it does not: the domain
                // may have become active in another process.
            }
            None => {}
        }
        let _reloading = self.reload.lock().await;
        // The request that held the lock has probably just reloaded.
        if let Some((map, loaded)) = self.map.read().expect("index lock").clone()
            && loaded.elapsed() < INDEX_TTL
        {
            return Ok(map.get(host).cloned());
        }
        Ok(self.load(core).await?.get(host).cloned())
    }

    /// Forgets the index: the next request naming a custom host reloads it.
    pub fn invalidate(&self) {
        let mut map = self.map.write().expect("index lock");
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        *map = None;
    }

    async fn load(&self, core: &Core) -> Result<Hosts> {
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let sql = Sql::new(
            "SELECT d.domain, e.handle FROM custom_domains d JOIN environments e ON e.id = d.environment_id \
             WHERE d.status = 'active'",
        );
        let rows: Vec<(String, String)> = sql.fetch_all(&mut *core.db.read().await?).await?;
        let map = Arc::new(rows.into_iter().collect::<HashMap<_, _>>());
        let mut current = self.map.write().expect("index lock");
        if self.generation.load(std::sync::atomic::Ordering::Acquire) == generation {
            *current = Some((map.clone(), Instant::now()));
        }
        Ok(map)
    }
}

/// The environment's active custom domain, if it has one.
pub async fn active_domain_of(
    conn: &mut sqlx::AnyConnection,
    environment_id: &str,
) -> Result<Option<String>> {
    let mut sql = Sql::new("SELECT domain FROM custom_domains WHERE environment_id = ");
    sql.bind(environment_id.to_owned()).push(" AND status = 'active'");
    let row: Option<(String,)> = sql.fetch_optional(conn).await?;
    Ok(row.map(|(domain,)| domain))
}

/// Re-checks due domains of every environment until `core` is dropped.
pub async fn run_checker(core: Weak<Core>) {
    let Some(interval) =
        core.upgrade().map(|core| core.config.dns.poll_interval.unwrap_or(Duration::from_secs(30)))
    else {
        return;
    };
    loop {
        {
            let Some(core) = core.upgrade() else { return };
            if let Err(error) = check_due(&core).await {
                tracing::warn!(%error, "custom domain check pass failed");
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// One pass: every due check, each taken by one process.
pub async fn check_due(core: &Arc<Core>) -> Result<()> {
    let now = now_micros();
    let mut sql = Sql::new(format!(
        "SELECT {} FROM custom_domains WHERE next_check_at <= ",
        record::select_columns::<CustomDomain>()
    ));
    sql.bind(now).push(" ORDER BY next_check_at, id LIMIT ").bind(BATCH);
    let due: Vec<CustomDomain> = sql.fetch_all(&mut *core.db.read().await?).await?;
    for row in due {
        // Take it: a check due again only after the lease, unless another
        // process took it since it was read.
        let mut tx = core.db.write_state().await?;
        let mut claim = Sql::new("UPDATE custom_domains SET next_check_at = ");
        claim.bind(now + micros(CHECK_LEASE)).push(" WHERE id = ").bind(row.id.clone());
        claim.push(" AND next_check_at = ").bind(row.next_check_at);
        let taken = claim.execute(tx.conn()).await? == 1;
        tx.commit().await?;
        if !taken {
            continue;
        }
        let Some(env) = core.environment_by_id(&row.environment_id).await? else { continue };
        let ctx = checker_ctx(env);
        let finding = check(core, &ctx.env, &row).await;
        // The claim moved only `next_check_at`; `updated_at` still guards.
        record_finding(core, &ctx, &row, &finding).await?;
    }
    Ok(())
}

/// The background check acts as the platform.
fn checker_ctx(env: Arc<EnvState>) -> Ctx {
    Ctx {
        env,
        actor: Actor { kind: "system", id: None, name: Some("custom domain check".into()) },
        authority: Authority::Operator,
        ip_address: None,
        user_agent: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_host_names_outside_the_base_domain() {
        assert_eq!(normalize(" Auth.Example.COM. ", "localhost").unwrap(), "auth.example.com");
        assert_eq!(normalize("xn--bcher-kva.example", "localhost").unwrap(), "xn--bcher-kva.example");
        for bad in [
            "",
            "localhost",
            "example",
            "acme-test.localhost",
            "auth.example.com:443",
            "*.example.com",
            "-auth.example.com",
            "auth..example.com",
            "https://auth.example.com",
            "10.0.0.1",
            "bücher.example",
            &format!("{}.com", "a".repeat(64)),
        ] {
            assert!(normalize(bad, "localhost").is_err(), "{bad:?} was accepted");
        }
        assert!(normalize("auth.example.com", "example.com").is_err());
        assert!(normalize("example.com", "example.com").is_err());
        assert!(normalize("notexample.com", "example.com").is_ok());
    }

    #[test]
    fn findings_move_statuses() {
        let missing = Finding::Missing("none".into());
        let wrong = Finding::Wrong("elsewhere".into());
        let silent = Finding::Unanswered("timeout".into());
        assert_eq!(next_status("pending", &Finding::Proven).0, "active");
        assert_eq!(next_status("failed", &Finding::Proven).0, "active");
        assert_eq!(next_status("pending", &missing).0, "pending");
        assert_eq!(next_status("pending", &wrong).0, "failed");
        assert_eq!(next_status("active", &missing).0, "failed");
        assert!(next_status("active", &missing).1.unwrap().contains("gone"));
        assert_eq!(next_status("active", &silent), ("active", None));
        assert_eq!(next_status("pending", &silent).0, "pending");
        assert_eq!(next_status("failed", &missing).0, "failed");
    }
}
