//! The built-in ACME client (RFC 8555, through `instant-acme`): certificates
//! for active custom domains, obtained with HTTP-01 and renewed at two
//! thirds of their lifetime. Everything lives in the database — the
//! account, the challenge answers, the certificates with their keys sealed
//! by the master key — so any instance answers the CA's validation request
//! and serves the result, and a pass interrupted by a crash is taken up
//! again by any process once its lease runs out.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::http::{self, Request};
use bytes::Bytes;
use http_body_util::BodyExt;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType, HttpClient,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use portcullis_core::Core;
use portcullis_store::sql::Sql;
use portcullis_store::{micros, now_micros};
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

use super::TlsError;
use super::listener::Certificates;

/// How the ACME client runs (`acme_directory` and beside it in the config).
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The CA's directory URL, e.g. Let's Encrypt's
    /// `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory_url: String,
    /// `mailto:` contacts for the account (expiry notices from the CA).
    pub contacts: Vec<String>,
    /// PEM roots to trust for the CA's own HTTPS, for private CAs (and the
    /// test CA); the system's roots when `None`.
    pub ca_roots: Option<Vec<u8>>,
    /// How often a pass looks for domains due a certificate.
    pub poll_interval: Duration,
}

/// One order, end to end, may take this long before another process may
/// take the domain over.
const ORDER_LEASE: Duration = Duration::from_secs(600);
/// What an order may not use of its lease (storing the outcome).
const ORDER_MARGIN: Duration = Duration::from_secs(30);
/// A due row: custom domain id, domain, `next_attempt_at`, `attempts`.
type Due = (String, String, i64, i64);
/// Backoff after failures: 1 min, doubling, at most a day.
const RETRY_BASE: Duration = Duration::from_secs(60);
const RETRY_CAP: Duration = Duration::from_secs(24 * 3600);
/// A challenge answer outlives any order that could still ask for it.
const CHALLENGE_TTL: Duration = Duration::from_secs(3600);

/// The CA's HTTP through the server's own HTTP client (reqwest over
/// rustls), with the configured roots.
struct AcmeHttp(reqwest::Client);

impl AcmeHttp {
    fn new(settings: &AcmeSettings) -> Result<AcmeHttp, TlsError> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(pem) = &settings.ca_roots {
            let roots = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|error| TlsError::Config(format!("acme_ca_roots: {error}")))?;
            builder = builder.tls_certs_only(roots);
        }
        Ok(AcmeHttp(builder.build().map_err(|error| TlsError::Config(error.to_string()))?))
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        request: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.0.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|error| instant_acme::Error::Other(Box::new(error)))?;
            let mut answer = http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = response.bytes().await.map_err(|error| instant_acme::Error::Other(Box::new(error)))?;
            let (parts, ()) =
                answer.body(()).map_err(|error| instant_acme::Error::Other(Box::new(error)))?.into_parts();
            Ok(BytesResponse { parts, body: Box::new(body) })
        })
    }
}

/// Obtains and renews certificates until `core` is dropped; `certificates`
/// (the TLS listener's, when this process has one) serves each new one at once.
pub async fn run(core: Weak<Core>, settings: AcmeSettings, certificates: Option<Arc<Certificates>>) {
    let mut issuer = Issuer::new(settings, certificates);
    loop {
        {
            let Some(core) = core.upgrade() else { return };
            if let Err(error) = issuer.pass(&core).await {
                tracing::warn!(%error, "ACME pass failed");
            }
        }
        tokio::time::sleep(issuer.settings.poll_interval).await;
    }
}

/// The ACME client of one process: its settings and, once loaded or
/// created, the account.
pub struct Issuer {
    settings: AcmeSettings,
    account: Option<Account>,
    certificates: Option<Arc<Certificates>>,
}

impl Issuer {
    pub fn new(settings: AcmeSettings, certificates: Option<Arc<Certificates>>) -> Issuer {
        Issuer { settings, account: None, certificates }
    }

    /// One pass: every active domain without a certificate, or due to renew
    /// or retry, gets an order, each domain taken by one process.
    pub async fn pass(&mut self, core: &Core) -> Result<(), TlsError> {
        let now = now_micros();
        track_active_domains(core, now).await?;
        let mut due = Sql::new(
            "SELECT c.custom_domain_id, c.domain, c.next_attempt_at, c.attempts FROM tls_certificates c \
             JOIN custom_domains d ON d.id = c.custom_domain_id WHERE d.status = 'active' AND c.next_attempt_at <= ",
        );
        due.bind(now).push(" ORDER BY c.next_attempt_at LIMIT 20");
        let rows: Vec<Due> = due.fetch_all(&mut *core.db.read().await?).await?;
        for row in rows {
            // One domain's trouble (even storing a certificate) never stops
            // the others; its lease runs out and it is taken up again.
            if let Err(error) = self.renew(core, row).await {
                tracing::warn!(%error, "ACME: a domain's turn failed");
            }
        }
        Ok(())
    }

    /// Takes one due domain (unless another process just did), orders, and
    /// stores the outcome, as long as the lease is still this process's.
    async fn renew(
        &mut self,
        core: &Core,
        (id, domain, next_attempt_at, attempts): Due,
    ) -> Result<(), TlsError> {
        let lease = now_micros() + micros(ORDER_LEASE);
        let mut tx = core.db.write_state().await?;
        let mut claim = Sql::new("UPDATE tls_certificates SET next_attempt_at = ");
        claim.bind(lease).push(" WHERE custom_domain_id = ").bind(id.clone());
        claim.push(" AND next_attempt_at = ").bind(next_attempt_at);
        let taken = claim.execute(tx.conn()).await? == 1;
        tx.commit().await?;
        if !taken {
            return Ok(());
        }
        // The order must end inside the lease, or another process could
        // order the same domain while this one still stores its answers.
        let outcome = match tokio::time::timeout(ORDER_LEASE - ORDER_MARGIN, self.obtain(core, &domain)).await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(TlsError::Order("the order took longer than its lease".into())),
        };
        let issued = outcome.is_ok();
        let mut tx = core.db.write_state().await?;
        let mut update = Sql::new("UPDATE tls_certificates SET ");
        // What the Management API shows: the certificate's expiry, or why
        // the last order failed (the certificate before it stays in service).
        let mut shown = Sql::new("UPDATE custom_domains SET ");
        match outcome {
            Ok(issued) => {
                tracing::info!(%domain, not_after = issued.not_after, "ACME certificate issued");
                let sealed = core
                    .master_key
                    .seal(issued.private_key_pem.as_bytes(), &key_aad(&domain))
                    .map_err(|_| TlsError::Config("cannot seal a private key".into()))?;
                update
                    .push("certificate_chain = ")
                    .bind(issued.chain_pem)
                    .push(", private_key = ")
                    .bind(sealed);
                update.push(", not_before = ").bind(issued.not_before);
                update.push(", not_after = ").bind(issued.not_after);
                update.push(", next_attempt_at = ").bind(renewal_time(issued.not_before, issued.not_after));
                update.push(", attempts = 0, last_error = NULL");
                shown
                    .push("certificate_expires_at = ")
                    .bind(issued.not_after)
                    .push(", certificate_error = NULL");
            }
            Err(error) => {
                tracing::warn!(%domain, %error, attempt = attempts + 1, "ACME order failed");
                update.push("attempts = ").bind(attempts + 1).push(", last_error = ").bind(error.to_string());
                update.push(", next_attempt_at = ").bind(now_micros() + micros(retry_delay(attempts + 1)));
                shown.push("certificate_error = ").bind(error.to_string());
            }
        }
        update.push(", updated_at = ").bind(now_micros());
        update
            .push(" WHERE custom_domain_id = ")
            .bind(id.clone())
            .push(" AND next_attempt_at = ")
            .bind(lease);
        if update.execute(tx.conn()).await? == 0 {
            tracing::warn!(%domain, "ACME: the lease ran out before the order ended; its outcome is dropped");
            return Ok(());
        }
        shown.push(" WHERE id = ").bind(id);
        shown.execute(tx.conn()).await?;
        let mut spent = Sql::new("DELETE FROM acme_challenges WHERE domain = ");
        spent.bind(domain.clone()).push(" OR expires_at < ").bind(now_micros());
        spent.execute(tx.conn()).await?;
        tx.commit().await?;
        if let (true, Some(certificates)) = (issued, &self.certificates) {
            certificates.forget(&domain);
        }
        Ok(())
    }

    /// The account for the directory: loaded from the database, or created
    /// at the CA and stored (sealed) for every process to share.
    async fn account(&mut self, core: &Core) -> Result<Account, TlsError> {
        if let Some(account) = &self.account {
            return Ok(account.clone());
        }
        let directory = self.settings.directory_url.clone();
        let aad = format!("acme_account:{directory}");
        let account = loop {
            let mut stored = Sql::new("SELECT credentials FROM acme_accounts WHERE directory_url = ");
            stored.bind(directory.clone());
            let row: Option<(String,)> = stored.fetch_optional(&mut *core.db.read().await?).await?;
            let builder = Account::builder_with_http(Box::new(AcmeHttp::new(&self.settings)?));
            if let Some((sealed,)) = row {
                let json =
                    core.master_key.open(&sealed, &aad).map_err(|_| TlsError::Sealed("ACME account"))?;
                let credentials: AccountCredentials = serde_json::from_slice(&json)
                    .map_err(|error| TlsError::Config(format!("stored ACME account: {error}")))?;
                break builder.from_credentials(credentials).await?;
            }
            let contacts = self.settings.contacts.iter().map(String::as_str).collect::<Vec<_>>();
            let new =
                NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false };
            let (account, credentials) = builder.create(&new, directory.clone(), None).await?;
            let json = serde_json::to_vec(&credentials)
                .map_err(|error| TlsError::Config(format!("ACME account: {error}")))?;
            let sealed = core.master_key.seal(&json, &aad).map_err(|_| TlsError::Sealed("ACME account"))?;
            let mut tx = core.db.write_state().await?;
            let mut insert =
                Sql::new("INSERT INTO acme_accounts (directory_url, credentials, inserted_at) VALUES (");
            insert.bind(directory.clone()).push(", ").bind(sealed).push(", ").bind(now_micros());
            insert.push(") ON CONFLICT (directory_url) DO NOTHING");
            let stored = insert.execute(tx.conn()).await? == 1;
            tx.commit().await?;
            if stored {
                tracing::info!(directory = %directory, id = account.id(), "ACME account created");
                break account;
            }
            // Another process stored its account first: use that one, so
            // every process orders under the same account.
        };
        self.account = Some(account.clone());
        Ok(account)
    }

    /// One order for `domain`: HTTP-01 answered from the database, then the
    /// certificate with a fresh key.
    async fn obtain(&mut self, core: &Core, domain: &str) -> Result<Issued, TlsError> {
        let account = self.account(core).await?;
        let identifiers = [Identifier::Dns(domain.to_owned())];
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                status => return Err(TlsError::Order(format!("authorization is {status:?}"))),
            }
            let mut challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| TlsError::Order("the CA offers no http-01 challenge".into()))?;
            let answer = challenge.key_authorization();
            let mut tx = core.db.write_state().await?;
            let mut insert = Sql::new(
                "INSERT INTO acme_challenges (token, domain, key_authorization, expires_at) VALUES (",
            );
            insert.bind(challenge.token.clone()).push(", ").bind(domain.to_owned());
            insert.push(", ").bind(answer.as_str().to_owned()).push(", ");
            insert.bind(now_micros() + micros(CHALLENGE_TTL));
            // A CA reuses a pending authorization, token and all, when an
            // order is retried (after a crash, say).
            insert.push(
                ") ON CONFLICT (token) DO UPDATE SET domain = excluded.domain, \
                 key_authorization = excluded.key_authorization, expires_at = excluded.expires_at",
            );
            insert.execute(tx.conn()).await?;
            tx.commit().await?;
            challenge.set_ready().await?;
        }
        let retries = RetryPolicy::new().timeout(Duration::from_secs(120));
        let status = order.poll_ready(&retries).await?;
        if status != OrderStatus::Ready {
            let problem = order.state().error.as_ref().map(|problem| problem.to_string());
            return Err(TlsError::Order(format!(
                "the order is {status:?}{}",
                problem.map(|p| format!(": {p}")).unwrap_or_default()
            )));
        }
        let private_key_pem = order.finalize().await?;
        let chain_pem = order.poll_certificate(&retries).await?;
        let (not_before, not_after) = validity(&chain_pem)?;
        Ok(Issued { chain_pem, private_key_pem, not_before, not_after })
    }
}

struct Issued {
    chain_pem: String,
    private_key_pem: String,
    not_before: i64,
    not_after: i64,
}

/// Gives each active custom domain a row, due now, the first time a pass
/// sees it.
async fn track_active_domains(core: &Core, now: i64) -> Result<(), TlsError> {
    let mut tx = core.db.write_state().await?;
    let mut insert = Sql::new(
        "INSERT INTO tls_certificates (custom_domain_id, domain, next_attempt_at, attempts, updated_at) \
         SELECT d.id, d.domain, ",
    );
    insert.bind(now).push(", 0, ").bind(now);
    insert.push(
        " FROM custom_domains d WHERE d.status = 'active' \
         AND NOT EXISTS (SELECT 1 FROM tls_certificates c WHERE c.custom_domain_id = d.id) \
         ON CONFLICT DO NOTHING",
    );
    insert.execute(tx.conn()).await?;
    tx.commit().await?;
    Ok(())
}

/// The associated data a domain's sealed private key is bound to.
pub(super) fn key_aad(domain: &str) -> String {
    format!("tls_certificate:{domain}")
}

/// Renew at two thirds of the lifetime (30 days before expiry for a
/// 90-day certificate), as Let's Encrypt advises.
pub fn renewal_time(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before) / 3 * 2
}

fn retry_delay(attempts: i64) -> Duration {
    let factor = 2u32.saturating_pow(u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX).min(16));
    RETRY_BASE.saturating_mul(factor).min(RETRY_CAP)
}

/// The leaf certificate's validity, in microseconds since the epoch.
fn validity(chain_pem: &str) -> Result<(i64, i64), TlsError> {
    use x509_cert::der::Decode;
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or_else(|| TlsError::Order("the CA returned no certificate".into()))?
        .map_err(|error| TlsError::Order(format!("the CA returned bad PEM: {error}")))?;
    let certificate = x509_cert::Certificate::from_der(&leaf)
        .map_err(|error| TlsError::Order(format!("the CA returned a bad certificate: {error}")))?;
    let validity = &certificate.tbs_certificate.validity;
    let at = |time: &x509_cert::time::Time| micros(time.to_unix_duration());
    Ok((at(&validity.not_before), at(&validity.not_after)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_two_thirds_of_the_lifetime() {
        let day = 86_400_000_000i64;
        assert_eq!(renewal_time(0, 90 * day), 60 * day);
        assert_eq!(renewal_time(10 * day, 16 * day), 14 * day);
    }

    #[test]
    fn retries_back_off_to_a_day() {
        assert_eq!(retry_delay(1), Duration::from_secs(60));
        assert_eq!(retry_delay(2), Duration::from_secs(120));
        assert_eq!(retry_delay(5), Duration::from_secs(960));
        assert_eq!(retry_delay(40), RETRY_CAP);
    }
}
