//! The TLS listener (`listen_tls`): the certificate is picked by SNI after
//! the ClientHello arrives — an active custom domain's from the database
//! (cached), any other name gets the configured default certificate (a
//! wildcard for the default hosts), or the handshake fails.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use portcullis_core::Core;
use portcullis_store::sql::Sql;
use tokio::net::TcpListener;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::Acceptor;
use tokio_rustls::rustls::{self, ServerConfig};
use tower::ServiceExt;

use super::TlsError;
use super::acme::key_aad;

/// A client has this long to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's headers must arrive within this (HTTP/1.1), and an idle
/// HTTP/2 connection answers a ping within it.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Open TLS connections at most; more wait in the accept backlog.
const MAX_CONNECTIONS: usize = 10_000;
/// How long a loaded certificate is served before the database is asked
/// again (another process may have renewed it; the old one is still valid
/// for weeks when that happens).
const CACHE_TTL: Duration = Duration::from_secs(300);
/// An active domain whose first certificate is not there yet is asked
/// again this soon.
const MISSING_TTL: Duration = Duration::from_secs(5);

/// Server configurations by host name, one per certificate.
pub struct Certificates {
    fallback: Option<Arc<ServerConfig>>,
    loaded: RwLock<HashMap<String, Loaded>>,
}

/// A domain's configuration (`None`: no certificate yet) and when it was read.
type Loaded = (Option<Arc<ServerConfig>>, Instant);

impl Certificates {
    /// `fallback`: PEM certificate chain and private key served for names
    /// without a certificate of their own (the default hosts' wildcard).
    pub fn new(fallback: Option<(&[u8], &[u8])>) -> Result<Certificates, TlsError> {
        let fallback = match fallback {
            Some((chain, key)) => Some(server_config(chain, key)?),
            None => None,
        };
        Ok(Certificates { fallback, loaded: RwLock::default() })
    }

    /// The configuration to answer a ClientHello naming `name` with.
    pub async fn for_name(&self, core: &Core, name: Option<&str>) -> Option<Arc<ServerConfig>> {
        let Some(name) = name.map(portcullis_core::normalize_host) else { return self.fallback.clone() };
        // Only active custom domains have certificates of their own; the
        // in-memory index says which, so other names cost no query.
        match core.domains.handle_of(core, &name).await {
            Ok(Some(_)) => {}
            Ok(None) => return self.fallback.clone(),
            Err(error) => {
                tracing::warn!(%error, "TLS: cannot read the domain index");
                return self.fallback.clone();
            }
        }
        let cached = self.loaded.read().expect("certificates lock").get(&name).cloned();
        if let Some((config, at)) = &cached {
            let ttl = if config.is_some() { CACHE_TTL } else { MISSING_TTL };
            if at.elapsed() < ttl {
                return config.clone().or_else(|| self.fallback.clone());
            }
        }
        let config = match self.load(core, &name).await {
            Ok(config) => config,
            Err(error) => {
                // Keep serving what was loaded: the database being away for
                // a moment must not take a valid certificate with it.
                tracing::warn!(%error, domain = %name, "TLS: cannot load the certificate");
                return cached.and_then(|(config, _)| config).or_else(|| self.fallback.clone());
            }
        };
        self.loaded.write().expect("certificates lock").insert(name, (config.clone(), Instant::now()));
        config.or_else(|| self.fallback.clone())
    }

    /// Forgets what was loaded for `domain` (this process just renewed it).
    pub fn forget(&self, domain: &str) {
        self.loaded.write().expect("certificates lock").remove(domain);
    }

    async fn load(&self, core: &Core, domain: &str) -> Result<Option<Arc<ServerConfig>>, TlsError> {
        let mut sql = Sql::new("SELECT certificate_chain, private_key FROM tls_certificates WHERE domain = ");
        sql.bind(domain.to_owned()).push(" AND certificate_chain IS NOT NULL");
        let row: Option<(String, String)> = sql.fetch_optional(&mut *core.db.read().await?).await?;
        let Some((chain, sealed)) = row else { return Ok(None) };
        let key = core.master_key.open(&sealed, &key_aad(domain)).map_err(|_| TlsError::Sealed("TLS key"))?;
        Ok(Some(server_config(chain.as_bytes(), &key)?))
    }
}

fn server_config(chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Config(format!("certificate PEM: {error}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|error| TlsError::Config(format!("private key PEM: {error}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Config(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| TlsError::Config(format!("certificate and key: {error}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` over TLS on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, app: Router, core: Arc<Core>, certificates: Arc<Certificates>) {
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        // At the cap, stop accepting (the kernel's backlog holds the rest).
        let Ok(permit) = connections.clone().acquire_owned().await else { return };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(%error, "TLS accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (app, core, certificates) = (app.clone(), core.clone(), certificates.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = async {
                let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await.ok()?;
                let name = start.client_hello().server_name().map(str::to_owned);
                let config = certificates.for_name(&core, name.as_deref()).await?;
                start.into_stream(config).await.ok()
            };
            let Ok(Some(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await else { return };
            let service =
                app.map_request(move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    request
                });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // Without a timer hyper has no header-read timeout: a client
            // could hold a connection open by never finishing its request.
            builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(HEADER_TIMEOUT));
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(service))
                .await;
        });
    }
}
