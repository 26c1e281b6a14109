//! Certificates for custom domains, both documented ways:
//! - behind Caddy (Debian's `caddy`) with on-demand TLS, whose `ask` hook is
//!   Portcullis's `/tls/ask`: Caddy gets a certificate from its internal CA
//!   for an active custom domain and proxies to the environment, and refuses
//!   a name Portcullis does not serve;
//! - built in: the ACME client against Let's Encrypt's test server (Debian's
//!   `pebble`), with HTTP-01, and the TLS listener serving what it obtained.
//!
//! Without the programs the tests say they are skipped, unless
//! `PORTCULLIS_REQUIRE_TLS_TOOLS=1` (as in `.ci/run`), when they fail.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::id_of;
use crate::dns::TestDns;
use crate::harness::{Backend, TestServer, free_port};
use crate::resources::support::doc;

const REQUIRE_ENV: &str = "PORTCULLIS_REQUIRE_TLS_TOOLS";
const DOMAIN: &str = "auth.customer.test";

/// `true` when `program` is on PATH; otherwise says the test is skipped
/// (or fails, when the tools are required).
fn tool_available(program: &str) -> bool {
    let found = std::process::Command::new(program)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if found {
        return true;
    }
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("`{program}` is not installed and {REQUIRE_ENV}=1");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "NOTE: TLS test SKIPPED: `{program}` is not installed (apt-get install {program}; \
         set {REQUIRE_ENV}=1 to make this an error)"
    );
    false
}

/// A test server whose DNS checks ask `dns` and whose issuers are
/// `https://{host}:{https_port}`, as behind a TLS proxy or listener.
async fn https_server(backend: Backend, dns: &TestDns, https_port: u16) -> Option<TestServer> {
    let dns_address = dns.addr;
    TestServer::start_configured(backend, |config| {
        config.dns.servers = vec![dns_address];
        config.public_scheme = "https".into();
        config.public_port = Some(https_port);
    })
    .await
}

/// Creates `domain` in the test environment, publishes its CNAME and
/// verifies it: the domain is active when this returns.
pub async fn activate(server: &TestServer, dns: &TestDns, domain: &str) -> String {
    let admin = server.admin_token().await;
    let (status, body) = server
        .api(
            Method::POST,
            "/api/custom-domains",
            &admin,
            Some(doc("custom_domain", json!({"domain": domain}))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = id_of(&body);
    dns.set_cname(domain, "acme-test.localhost");
    let (status, body) =
        server.api(Method::POST, &format!("/api/custom-domains/{id}/verify"), &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["status"], "active", "{body}");
    id
}

/// `curl --cacert {ca} https://{host}:{port}{path}` with `host` sent to
/// loopback: the body on success, curl's exit code and message otherwise.
async fn curl(ca: &Path, host: &str, port: u16, path: &str) -> Result<String, String> {
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "20", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .await
        .expect("run curl");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr)))
    }
}

/// `curl`, again for a few seconds while the certificate is "not yet
/// valid": a certificate Caddy's local CA has just issued can start a
/// moment after curl's clock reads it (seen once in CI).
async fn curl_fresh(ca: &Path, host: &str, port: u16, path: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match curl(ca, host, port, path).await {
            Err(error) if error.contains("not yet valid") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            outcome => return outcome,
        }
    }
}

async fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.is_file() {
        assert!(Instant::now() < deadline, "{} did not appear", path.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The README's Caddyfile, on test ports, with Caddy's internal CA standing
/// in for a public one.
fn caddyfile(http_port: u16, https_port: u16, portcullis_port: u16) -> String {
    format!(
        "{{
	admin off
	local_certs
	skip_install_trust
	http_port {http_port}
	https_port {https_port}
	on_demand_tls {{
		ask http://127.0.0.1:{portcullis_port}/tls/ask
	}}
}}

https:// {{
	tls {{
		on_demand
	}}
	reverse_proxy 127.0.0.1:{portcullis_port}
}}
"
    )
}

async fn behind_caddy(backend: Backend) {
    if !tool_available("caddy") {
        return;
    }
    let dns = TestDns::start().await;
    let https_port = free_port();
    let Some(server) = https_server(backend, &dns, https_port).await else { return };

    // The ask hook on its own: default hosts and active domains only.
    let ask = |domain: &str| {
        server.http.get(format!("http://127.0.0.1:{}/tls/ask?domain={domain}", server.port)).send()
    };
    assert_eq!(ask(DOMAIN).await.unwrap().status(), StatusCode::NOT_FOUND, "not created yet");
    assert_eq!(ask("acme-test.localhost").await.unwrap().status(), StatusCode::OK);
    assert_eq!(ask("no-such-env.localhost").await.unwrap().status(), StatusCode::NOT_FOUND);
    let missing = server.http.get(format!("http://127.0.0.1:{}/tls/ask", server.port)).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    activate(&server, &dns, DOMAIN).await;
    assert_eq!(ask(DOMAIN).await.unwrap().status(), StatusCode::OK);
    assert_eq!(ask(&DOMAIN.to_uppercase()).await.unwrap().status(), StatusCode::OK);

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("Caddyfile");
    std::fs::write(&config, caddyfile(free_port(), https_port, server.port)).unwrap();
    let mut caddy = tokio::process::Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&config)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start caddy");
    wait_for_port(https_port).await;
    let root: PathBuf = dir.path().join("data/caddy/pki/authorities/local/root.crt");

    // The first handshake makes Caddy ask, then issue from its local CA.
    let first = curl(&root, DOMAIN, https_port, "/.well-known/openid-configuration").await;
    wait_for_file(&root).await;
    let discovery = match first {
        Ok(body) => body,
        Err(_) => curl_fresh(&root, DOMAIN, https_port, "/.well-known/openid-configuration")
            .await
            .expect("discovery over HTTPS through Caddy"),
    };
    let discovery: Value = serde_json::from_str(&discovery).expect("discovery is JSON");
    let issuer = format!("https://{DOMAIN}:{https_port}");
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(discovery["token_endpoint"], format!("{issuer}/oauth/token").as_str());

    // The default host gets its certificate the same way.
    let default_host =
        curl_fresh(&root, "acme-test.localhost", https_port, "/.well-known/openid-configuration")
            .await
            .expect("the default host through Caddy");
    assert!(default_host.contains(&format!("https://acme-test.localhost:{https_port}")), "{default_host}");

    // A name Portcullis does not serve gets no certificate: the handshake fails.
    assert_eq!(ask("unknown.customer.test").await.unwrap().status(), StatusCode::NOT_FOUND);
    let refused = curl(&root, "unknown.customer.test", https_port, "/.well-known/openid-configuration").await;
    let error = refused.expect_err("Caddy must not get a certificate for an unknown name");
    assert!(error.contains("35") || error.to_ascii_lowercase().contains("ssl"), "{error}");

    caddy.start_kill().ok();
    let mut log = String::new();
    if let Some(mut stderr) = caddy.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = tokio::time::timeout(Duration::from_secs(5), stderr.read_to_string(&mut log)).await;
    }
    // Caddy obtained certificates for the two served names, and, told no by
    // the ask hook, never tried for the unknown one.
    let obtained = |name: &str| {
        log.lines().any(|line| line.contains("certificate obtained") && line.contains(&format!("\"{name}\"")))
    };
    assert!(obtained(DOMAIN) && obtained("acme-test.localhost"), "{log}");
    assert!(
        !log.lines().any(|line| line.contains("obtaining") && line.contains("unknown.customer.test")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_on_demand_tls_asks_portcullis_sqlite() {
    behind_caddy(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_on_demand_tls_asks_portcullis_postgres() {
    behind_caddy(Backend::Postgres).await;
}

crate::db_test!(
    the_ask_hook_ignores_the_default_environment_fallback,
    config = |config: &mut portcullis_core::CoreConfig| {
        config.default_environment = Some("acme-test".into());
    },
    |server| {
        let base = format!("http://127.0.0.1:{}", server.port);
        // Any host reaches the default environment...
        let discovery = server
            .http
            .get(format!("{base}/.well-known/openid-configuration"))
            .header("host", "anything.example")
            .send()
            .await
            .unwrap();
        assert_eq!(discovery.status(), StatusCode::OK);
        // ...but only names Portcullis serves as such may get certificates,
        // or anyone pointing a name here would spend the CA's rate limit.
        for (domain, expected) in [
            ("anything.example", StatusCode::NOT_FOUND),
            ("acme-test.localhost", StatusCode::OK),
            ("acme-test.localhost.", StatusCode::OK),
            ("localhost", StatusCode::NOT_FOUND),
            ("a.b.localhost", StatusCode::NOT_FOUND),
        ] {
            let answer = server.http.get(format!("{base}/tls/ask?domain={domain}")).send().await.unwrap();
            assert_eq!(answer.status(), expected, "{domain}");
        }
    }
);

/// Let's Encrypt's test CA on loopback: its directory's HTTPS certificate
/// is one this test makes; its validation requests go to `http_port` (the
/// Portcullis listener) of whatever `dns` says a domain's address is.
struct Pebble {
    directory: String,
    management: String,
    /// The root the directory's HTTPS certificate is signed by.
    https_root: Vec<u8>,
    _dir: tempfile::TempDir,
    _process: tokio::process::Child,
}

impl Pebble {
    async fn start(http_port: u16, dns: &TestDns) -> Pebble {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("params");
        let certificate = params.self_signed(&key).expect("self-signed");
        std::fs::write(dir.path().join("cert.pem"), certificate.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let (listen, management) = (free_port(), free_port());
        let config = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).unwrap();
        let process = tokio::process::Command::new("pebble")
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .arg("-dnsserver")
            .arg(dns.addr.to_string())
            // No random pauses before validating, no random bad nonces.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            // Every order validates afresh (renewal and the failing check too).
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start pebble");
        wait_for_port(listen).await;
        Pebble {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management: format!("https://127.0.0.1:{management}"),
            https_root: certificate.pem().into_bytes(),
            _dir: dir,
            _process: process,
        }
    }

    fn settings(&self) -> portcullis_server::tls::acme::AcmeSettings {
        portcullis_server::tls::acme::AcmeSettings {
            directory_url: self.directory.clone(),
            contacts: vec!["mailto:ops@customer.test".into()],
            ca_roots: Some(self.https_root.clone()),
            poll_interval: Duration::from_secs(3600),
        }
    }

    /// The root pebble issues under (a new one every start).
    async fn issuing_root(&self) -> String {
        let client = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&self.https_root).unwrap())
            .build()
            .unwrap();
        let response = client.get(format!("{}/roots/0", self.management)).send().await.expect("pebble root");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }
}

/// Serves `core` over TLS on `listener` (a new loopback port when `None`),
/// as `listen_tls` does.
async fn serve_tls(
    listener: Option<tokio::net::TcpListener>,
    core: std::sync::Arc<portcullis_core::Core>,
    certificates: std::sync::Arc<portcullis_server::tls::listener::Certificates>,
) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = match listener {
        Some(listener) => listener,
        None => tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind"),
    };
    let port = listener.local_addr().unwrap().port();
    let app = portcullis_server::app(core.clone());
    (port, tokio::spawn(portcullis_server::tls::listener::serve(listener, app, core, certificates)))
}

/// The certificate a TLS server at `port` presents for `host` (DER), with
/// the chain verified against `root`.
async fn presented_certificate(root: &str, host: &str, port: u16) -> Vec<u8> {
    let client = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(root.as_bytes()).unwrap())
        .tls_info(true)
        .resolve(host, ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let response = client
        .get(format!("https://{host}:{port}/.well-known/openid-configuration"))
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(response.status(), StatusCode::OK);
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS info");
    info.peer_certificate().expect("a certificate").to_vec()
}

async fn built_in_acme(backend: Backend) {
    if !tool_available("pebble") {
        return;
    }
    let dns = TestDns::start().await;
    let tls_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let tls_port = tls_listener.local_addr().unwrap().port();
    let Some(server) = https_server(backend, &dns, tls_port).await else { return };
    let pebble = Pebble::start(server.port, &dns).await;

    // The CA finds the domain at loopback through the CNAME to the default host.
    dns.set_a("acme-test.localhost", std::net::Ipv4Addr::LOCALHOST);
    let domain_id = activate(&server, &dns, DOMAIN).await;

    use portcullis_server::tls::{acme::Issuer, listener::Certificates};
    let certificates = std::sync::Arc::new(Certificates::new(None).unwrap());
    let mut issuer = Issuer::new(pebble.settings(), Some(certificates.clone()));
    issuer.pass(&server.core).await.expect("ACME pass");

    let certificate = |column: &'static str| {
        let sql = format!("SELECT {column} FROM tls_certificates WHERE domain = '{DOMAIN}'");
        let pool = server.core.db.pool().clone();
        async move {
            use sqlx::Row;
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.expect("certificate row");
            row.try_get::<Option<String>, _>(0).expect("text")
        }
    };
    let chain = certificate("certificate_chain").await.expect("a certificate was issued");
    assert!(chain.starts_with("-----BEGIN CERTIFICATE-----"), "{chain}");
    // The private key is sealed at rest, and so is the account's.
    let key = certificate("private_key").await.unwrap();
    assert!(key.starts_with("v1:") && !key.contains("PRIVATE KEY"));
    assert_eq!(server.count("SELECT COUNT(*) FROM acme_accounts WHERE credentials LIKE 'v1:%'").await, 1);
    assert_eq!(server.count("SELECT COUNT(*) FROM acme_challenges").await, 0, "answers are cleaned up");
    assert_eq!(server.count("SELECT attempts FROM tls_certificates").await, 0);
    let renew_at = server.count("SELECT next_attempt_at - not_before FROM tls_certificates").await;
    let lifetime = server.count("SELECT not_after - not_before FROM tls_certificates").await;
    assert!(lifetime > 0 && (renew_at - lifetime * 2 / 3).abs() < 1_000_000, "{renew_at} of {lifetime}");
    // The Management API shows when it expires.
    let admin = server.admin_token().await;
    let shown = |admin: String| {
        let path = format!("/api/custom-domains/{domain_id}");
        let server = &server;
        async move {
            let (status, body) = server.api(Method::GET, &path, &admin, None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["data"]["attributes"].clone()
        }
    };
    let attributes = shown(admin.clone()).await;
    assert!(attributes["certificate_expires_at"].is_string(), "{attributes}");
    assert_eq!(attributes["certificate_error"], Value::Null);
    // Nothing is due: another pass orders nothing.
    issuer.pass(&server.core).await.unwrap();
    assert_eq!(certificate("certificate_chain").await.unwrap(), chain);

    // The TLS listener serves it: curl trusts pebble's root and reaches
    // the environment's discovery document at the custom domain.
    let (_, listener) = serve_tls(Some(tls_listener), server.core.clone(), certificates.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let root = pebble.issuing_root().await;
    let root_file = dir.path().join("pebble-root.pem");
    std::fs::write(&root_file, &root).unwrap();
    let discovery = curl(&root_file, DOMAIN, tls_port, "/.well-known/openid-configuration")
        .await
        .expect("discovery over HTTPS from the built-in listener");
    let discovery: Value = serde_json::from_str(&discovery).unwrap();
    assert_eq!(discovery["issuer"], format!("https://{DOMAIN}:{tls_port}").as_str());
    // No certificate for a name that is not an active domain (and no fallback configured).
    assert!(curl(&root_file, "unknown.customer.test", tls_port, "/").await.is_err());
    let first = presented_certificate(&root, DOMAIN, tls_port).await;

    // Any instance serves it: a second process on the same database.
    let db = portcullis_store::Db::connect(&server.database_url).await.unwrap();
    let key = portcullis_crypto::aead::MasterKey::from_base64(&server.master_key).unwrap();
    let peer =
        portcullis_core::Core::start(db, key, crate::harness::core_config(server.port, dir.path())).unwrap();
    // This one also has a `tls_certificate` for the default hosts.
    let fallback_key = rcgen::KeyPair::generate().unwrap();
    let fallback =
        rcgen::CertificateParams::new(vec!["*.localhost".to_owned(), "acme-test.localhost".to_owned()])
            .unwrap()
            .self_signed(&fallback_key)
            .unwrap();
    let with_fallback =
        Certificates::new(Some((fallback.pem().as_bytes(), fallback_key.serialize_pem().as_bytes())))
            .unwrap();
    let (peer_port, peer_listener) = serve_tls(None, peer, std::sync::Arc::new(with_fallback)).await;
    assert_eq!(presented_certificate(&root, DOMAIN, peer_port).await, first);
    let default_host = presented_certificate(&fallback.pem(), "acme-test.localhost", peer_port).await;
    assert_eq!(default_host, fallback.der().to_vec());
    peer_listener.abort();

    // Renewal: once due, a pass orders a new certificate, and the listener
    // serves it from the next handshake on.
    server.count("UPDATE tls_certificates SET next_attempt_at = 0 RETURNING 0").await;
    issuer.pass(&server.core).await.unwrap();
    let renewed = certificate("certificate_chain").await.unwrap();
    assert_ne!(renewed, chain, "a new certificate");
    let second = presented_certificate(&root, DOMAIN, tls_port).await;
    assert_ne!(second, first, "the listener serves the renewed certificate");

    // A domain the CA cannot validate (its address is gone from DNS): the
    // failure is recorded, backed off.
    dns.clear("acme-test.localhost");
    server.count("UPDATE tls_certificates SET next_attempt_at = 0 RETURNING 0").await;
    issuer.pass(&server.core).await.unwrap();
    let attempts = server.count("SELECT attempts FROM tls_certificates").await;
    let changed = certificate("certificate_chain").await.unwrap() != renewed;
    assert_eq!(attempts, 1, "last error {:?}, a new certificate: {changed}", certificate("last_error").await);
    let retry_in =
        server.count("SELECT next_attempt_at FROM tls_certificates").await - portcullis_store::now_micros();
    assert!(retry_in > 30_000_000, "backs off about a minute: {retry_in}");
    let error = certificate("last_error").await.expect("the reason");
    assert!(!error.is_empty());
    let attributes = shown(admin.clone()).await;
    assert_eq!(attributes["certificate_error"].as_str(), Some(error.as_str()));
    assert!(attributes["certificate_expires_at"].is_string(), "the served certificate's expiry stays");
    // The valid certificate it had is still served meanwhile.
    assert_eq!(certificate("certificate_chain").await.unwrap(), renewed);
    assert_eq!(presented_certificate(&root, DOMAIN, tls_port).await, second);

    // The challenge route answers only what an order stored.
    let bogus = server
        .http
        .get(format!("http://127.0.0.1:{}/.well-known/acme-challenge/bogus", server.port))
        .header("host", DOMAIN)
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), StatusCode::NOT_FOUND);

    // Deleting the domain deletes its certificate.
    let (status, _) =
        server.api(Method::DELETE, &format!("/api/custom-domains/{domain_id}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(server.count("SELECT COUNT(*) FROM tls_certificates").await, 0);
    // ...and the listener stops serving the name at once.
    let gone = curl(&root_file, DOMAIN, tls_port, "/.well-known/openid-configuration").await;
    assert!(gone.is_err(), "a deleted domain is not served: {gone:?}");
    listener.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_certificates_from_pebble_are_served_and_renewed_sqlite() {
    built_in_acme(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_certificates_from_pebble_are_served_and_renewed_postgres() {
    built_in_acme(Backend::Postgres).await;
}

/// The `portcullis` binary as an operator runs it: `listen_tls`,
/// `acme_directory`, `acme_ca_roots` and the rest set through `PORTCULLIS_*`
/// variables, against pebble; the certificate arrives by itself once the
/// domain is active.
async fn binary_with_acme_settings(backend: Backend) {
    if !tool_available("pebble") {
        return;
    }
    let Some(database) = crate::harness::FreshDatabase::create(backend).await else { return };
    let dns = TestDns::start().await;
    let (port, tls_port) = (free_port(), free_port());
    let pebble = Pebble::start(port, &dns).await;
    let roots = database.dir.path().join("acme-roots.pem");
    std::fs::write(&roots, &pebble.https_root).unwrap();
    let master_key = portcullis_crypto::aead::MasterKey::generate_base64();
    let portcullis = || {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command
            .env("PORTCULLIS_DATABASE_URL", &database.url)
            .env("PORTCULLIS_DATA_DIR", database.dir.path().join("data"))
            .env("PORTCULLIS_MASTER_KEY", &master_key)
            .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
            .env("PORTCULLIS_PUBLIC_SCHEME", "https")
            .env("PORTCULLIS_PUBLIC_PORT", tls_port.to_string())
            .env("PORTCULLIS_LISTEN_TLS", format!("127.0.0.1:{tls_port}"))
            .env("PORTCULLIS_ACME_DIRECTORY", &pebble.directory)
            .env("PORTCULLIS_ACME_CA_ROOTS", &roots)
            .env("PORTCULLIS_ACME_CONTACT", "ops@customer.test")
            .env("PORTCULLIS_ACME_POLL_SECONDS", "1")
            .env("PORTCULLIS_DNS_SERVERS", format!("[\"{}\"]", dns.addr))
            .env("PORTCULLIS_LOG", "error")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    };
    let created =
        portcullis().args(["env", "create", "acme-test", "--key-algorithm", "es256", "--json"]).output();
    let created = created.await.expect("portcullis env create");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let admin: Value = serde_json::from_slice(&created.stdout).expect("env create JSON");
    let _server =
        portcullis().arg("serve").stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("serve");
    wait_for_port(port).await;

    // Through the plain listener, with the Host the issuer names.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let host = format!("acme-test.localhost:{port}");
    let token: Value = http
        .post(format!("http://127.0.0.1:{port}/oauth/token"))
        .header("host", &host)
        .basic_auth(admin["client_id"].as_str().unwrap(), admin["client_secret"].as_str())
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", &format!("https://acme-test.localhost:{tls_port}/api")),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().expect("an admin token").to_owned();
    let api = |method: reqwest::Method, path: &str| {
        http.request(method, format!("http://127.0.0.1:{port}{path}"))
            .header("host", &host)
            .bearer_auth(&token)
            .header("content-type", "application/vnd.api+json")
    };
    let created: Value = api(Method::POST, "/api/custom-domains")
        .json(&doc("custom_domain", json!({"domain": DOMAIN})))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = id_of(&created);
    dns.set_cname(DOMAIN, "acme-test.localhost");
    dns.set_a("acme-test.localhost", std::net::Ipv4Addr::LOCALHOST);
    let verified: Value = api(Method::POST, &format!("/api/custom-domains/{id}/verify"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verified["data"]["attributes"]["status"], "active", "{verified}");

    // No one asks for the certificate: the binary's ACME pass gets it, and
    // its TLS listener serves the environment at the custom domain.
    let root_file = database.dir.path().join("pebble-root.pem");
    std::fs::write(&root_file, pebble.issuing_root().await).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let discovery = loop {
        match curl(&root_file, DOMAIN, tls_port, "/.well-known/openid-configuration").await {
            Ok(body) => break body,
            Err(error) => {
                assert!(Instant::now() < deadline, "no certificate within 60 s: {error}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let discovery: Value = serde_json::from_str(&discovery).unwrap();
    assert_eq!(discovery["issuer"], format!("https://{DOMAIN}:{tls_port}").as_str());
    let shown: Value =
        api(Method::GET, &format!("/api/custom-domains/{id}")).send().await.unwrap().json().await.unwrap();
    assert!(shown["data"]["attributes"]["certificate_expires_at"].is_string(), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_obtains_and_serves_certificates_from_its_settings_sqlite() {
    binary_with_acme_settings(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_obtains_and_serves_certificates_from_its_settings_postgres() {
    binary_with_acme_settings(Backend::Postgres).await;
}
