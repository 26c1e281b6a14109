//! Configuration: built-in defaults, then `portcullis.toml`, then
//! `PORTCULLIS_*` environment variables (e.g. `PORTCULLIS_DATABASE_URL`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use portcullis_core::CoreConfig;
use portcullis_core::limits::RateLimits;
use portcullis_core::mail::{MailSettings, MailTransport};
use portcullis_crypto::aead::MasterKey;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Environments are served at `{handle}.{base_domain}`.
    pub base_domain: String,
    /// Scheme of issuer URLs (`http` for local use, `https` behind TLS).
    pub public_scheme: String,
    /// Port in issuer URLs; defaults to the listen port for http, none for https.
    pub public_port: Option<u16>,
    /// `sqlite:PATH` (default, created on first start) or `postgres://...`.
    pub database_url: String,
    /// Base64 of 32 bytes. Without it, one is generated into the data directory.
    pub master_key: Option<String>,
    /// Where the SQLite file and a generated master key live.
    pub data_dir: PathBuf,
    /// `text` or `json`.
    pub log_format: String,
    /// Serves hosts that name no environment (single-tenant installs).
    pub default_environment: Option<String>,
    /// SMTP relay for confirmation and reset mail, e.g.
    /// `smtp://user:pass@smtp.example.com:587?tls=required` or `smtps://…:465`.
    /// Without it, mail is written to `outbox_dir`.
    pub smtp_url: Option<String>,
    /// The `From` of outgoing mail.
    pub mail_from: String,
    /// The dev outbox (one JSON file per message); default `{data_dir}/outbox`.
    pub outbox_dir: Option<PathBuf>,
    /// Seconds one send attempt owns a queued message: mail that a killed
    /// process was sending goes out this much later, from any process.
    pub mail_lease_seconds: u64,
    /// Per-IP and per-account limits on login, sign-up, reset and token
    /// requests. Turn off only to benchmark.
    pub rate_limits: bool,
    /// Name servers that custom-domain checks ask (`ip` or `ip:port`);
    /// empty for the system's (`/etc/resolv.conf`).
    pub dns_servers: Vec<String>,
    /// Also serve HTTPS here (e.g. `0.0.0.0:443`), with the certificates the
    /// ACME client obtained for active custom domains, and `tls_certificate`
    /// for every other name. Off by default (run behind a TLS proxy).
    pub listen_tls: Option<SocketAddr>,
    /// PEM certificate chain and private key the TLS listener serves for
    /// names without a certificate of their own (a wildcard for the
    /// default hosts, `*.{base_domain}`).
    pub tls_certificate: Option<PathBuf>,
    pub tls_private_key: Option<PathBuf>,
    /// An ACME directory URL: obtain and renew certificates for active
    /// custom domains there (HTTP-01: the CA must reach `listen` on port
    /// 80). Off by default. Let's Encrypt:
    /// `https://acme-v02.api.letsencrypt.org/directory`.
    pub acme_directory: Option<String>,
    /// Address the CA sends expiry notices to.
    pub acme_contact: Option<String>,
    /// PEM roots for the ACME server's own HTTPS, for a private CA.
    pub acme_ca_roots: Option<PathBuf>,
    /// How often the ACME client looks for domains due a certificate.
    pub acme_poll_seconds: u64,
    /// Let customer-given URLs (webhook endpoints, apps' base URLs) reach
    /// loopback and private addresses, and use plain http. For development
    /// only: otherwise anyone who may create a webhook or an app can make
    /// the server call into its own network.
    pub allow_private_targets: bool,
    /// The first retry of a failed delivery waits this long (±20%); each
    /// further one four times longer. Five retries.
    pub webhook_retry_base_seconds: u64,
    /// A delivery being sent is this process's for this long; if it dies,
    /// another process sends it again after that (same `webhook-id`).
    pub webhook_lease_seconds: u64,
    /// A webhook whose deliveries all fail for this long is disabled.
    pub webhook_disable_after_hours: u64,
    /// Settled webhook deliveries and outbox events are deleted after
    /// this many days (the audit log is kept).
    pub event_retention_days: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            base_domain: "localhost".into(),
            public_scheme: "http".into(),
            public_port: None,
            database_url: "sqlite:portcullis-data/portcullis.db".into(),
            master_key: None,
            data_dir: "portcullis-data".into(),
            log_format: "text".into(),
            default_environment: None,
            smtp_url: None,
            mail_from: "Portcullis <no-reply@localhost>".into(),
            outbox_dir: None,
            mail_lease_seconds: portcullis_core::mail::DEFAULT_LEASE.as_secs(),
            rate_limits: true,
            dns_servers: Vec::new(),
            listen_tls: None,
            tls_certificate: None,
            tls_private_key: None,
            acme_directory: None,
            acme_contact: None,
            acme_ca_roots: None,
            acme_poll_seconds: 60,
            allow_private_targets: false,
            webhook_retry_base_seconds: 30,
            webhook_lease_seconds: 60,
            webhook_disable_after_hours: 5 * 24,
            event_retention_days: 7,
        }
    }
}

impl Config {
    pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Config> {
        let file = file.map_or_else(|| PathBuf::from("portcullis.toml"), PathBuf::from);
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(&file))
            .merge(Env::prefixed("PORTCULLIS_"))
            .extract()
            .context("invalid configuration")
    }

    pub fn core(&self) -> anyhow::Result<CoreConfig> {
        let public_port =
            self.public_port.or_else(|| (self.public_scheme == "http").then(|| self.listen.port()));
        Ok(CoreConfig {
            base_domain: self.base_domain.to_ascii_lowercase(),
            public_scheme: self.public_scheme.clone(),
            public_port: public_port
                .filter(|p| !matches!((self.public_scheme.as_str(), p), ("http", 80) | ("https", 443))),
            default_environment: self.default_environment.clone(),
            mail: MailSettings {
                from: self.mail_from.clone(),
                transport: match &self.smtp_url {
                    Some(url) => MailTransport::Smtp(url.clone()),
                    None => MailTransport::Outbox(
                        self.outbox_dir.clone().unwrap_or_else(|| self.data_dir.join("outbox")),
                    ),
                },
                lease: std::time::Duration::from_secs(self.mail_lease_seconds.max(1)),
            },
            rate_limits: self.rate_limits.then(RateLimits::default),
            hub: portcullis_core::HubSettings::default(),
            dns: portcullis_core::services::custom_domains::DnsSettings {
                servers: self
                    .dns_servers
                    .iter()
                    .map(|server| dns_server(server))
                    .collect::<anyhow::Result<_>>()?,
                poll_interval: None,
            },
            allow_private_targets: self.allow_private_targets,
            webhooks: portcullis_core::webhooks::WebhookSettings {
                retry_base: std::time::Duration::from_secs(self.webhook_retry_base_seconds.max(1)),
                // Longer than one attempt may take, or a slow attempt would
                // be taken over while it is still running.
                lease: std::time::Duration::from_secs(self.webhook_lease_seconds.max(15)),
                disable_after: std::time::Duration::from_secs(self.webhook_disable_after_hours * 3600),
                retention: std::time::Duration::from_secs(self.event_retention_days.max(1) * 86_400),
                ..portcullis_core::webhooks::WebhookSettings::default()
            },
        })
    }

    /// The ACME client's settings, when `acme_directory` turns it on.
    pub fn acme(&self) -> anyhow::Result<Option<portcullis_server::tls::acme::AcmeSettings>> {
        let Some(directory_url) = &self.acme_directory else { return Ok(None) };
        let ca_roots = match &self.acme_ca_roots {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("acme_ca_roots: {}", path.display()))?)
            }
            None => None,
        };
        Ok(Some(portcullis_server::tls::acme::AcmeSettings {
            directory_url: directory_url.clone(),
            contacts: self
                .acme_contact
                .iter()
                .map(|contact| match contact.starts_with("mailto:") {
                    true => contact.clone(),
                    false => format!("mailto:{contact}"),
                })
                .collect(),
            ca_roots,
            poll_interval: std::time::Duration::from_secs(self.acme_poll_seconds.max(1)),
        }))
    }

    /// The TLS listener's certificates, with the `tls_certificate` fallback.
    pub fn certificates(&self) -> anyhow::Result<portcullis_server::tls::listener::Certificates> {
        let read =
            |path: &PathBuf| std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
        let fallback = match (&self.tls_certificate, &self.tls_private_key) {
            (Some(chain), Some(key)) => Some((read(chain)?, read(key)?)),
            (None, None) => None,
            _ => anyhow::bail!("tls_certificate and tls_private_key go together"),
        };
        portcullis_server::tls::listener::Certificates::new(
            fallback.as_ref().map(|(chain, key)| (chain.as_slice(), key.as_slice())),
        )
        .context("tls_certificate / tls_private_key")
    }

    /// The configured master key, or the one in the data directory (created
    /// with owner-only permissions on first use).
    pub fn master_key(&self) -> anyhow::Result<MasterKey> {
        if let Some(key) = &self.master_key {
            return MasterKey::from_base64(key).context("master_key must be base64 of 32 bytes");
        }
        let path = self.data_dir.join("master.key");
        if let Ok(text) = std::fs::read_to_string(&path) {
            return MasterKey::from_base64(&text)
                .with_context(|| format!("{} is not a valid key", path.display()));
        }
        portcullis_store::private_fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create {}", self.data_dir.display()))?;
        let key = MasterKey::generate_base64();
        write_private(&path, &key).with_context(|| format!("cannot write {}", path.display()))?;
        tracing::warn!(path = %path.display(), "generated a master key; back it up, it encrypts signing keys at rest");
        MasterKey::from_base64(&key).context("generated key")
    }
}

/// `ip:port`, or an IP alone for port 53.
fn dns_server(text: &str) -> anyhow::Result<SocketAddr> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .with_context(|| format!("dns_servers: `{text}` is not an IP address or ip:port"))
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    portcullis_store::private_fs::create_file(path, true)?.write_all(contents.as_bytes())
}
