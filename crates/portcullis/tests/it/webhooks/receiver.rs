//! A webhook endpoint on loopback that records every request and answers
//! as a test scripts it (a status, `Retry-After`, a slow answer), and the
//! two verifiers of what it received: the PyPI `standardwebhooks` library
//! (what receivers use) and an HMAC written here from SHA-256, apart from
//! the signer.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// What the receiver answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// 429 or 503 with `Retry-After: seconds`.
    RetryAfter(u16, u64),
    /// Answers 200 after this long (past the server's timeout: a timeout).
    Slow(Duration),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    /// Replies per path, used in order; 200 when none is left.
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    /// Replies per path once its script is used up (default 200).
    always: Mutex<HashMap<String, Reply>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _server: tokio::task::JoinHandle<()>,
}

async fn receive(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    shared.received.lock().unwrap().push(Received {
        path: path.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    });
    let scripted = shared.script.lock().unwrap().get_mut(&path).and_then(VecDeque::pop_front);
    let reply = scripted.or_else(|| shared.always.lock().unwrap().get(&path).cloned());
    match reply {
        None => (StatusCode::OK, "thanks").into_response(),
        Some(Reply::Status(status)) => {
            (StatusCode::from_u16(status).unwrap(), format!("answered {status}")).into_response()
        }
        Some(Reply::RetryAfter(status, seconds)) => {
            (StatusCode::from_u16(status).unwrap(), [("retry-after", seconds.to_string())], "later")
                .into_response()
        }
        Some(Reply::Slow(wait)) => {
            tokio::time::sleep(wait).await;
            (StatusCode::OK, "slow").into_response()
        }
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new().fallback(receive).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Receiver { addr, shared, _server: server }
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next answers at `path`, in order.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().entry(path.to_owned()).or_default().extend(replies);
    }

    /// The answer at `path` once its script is used up.
    pub fn always(&self, path: &str, reply: Reply) {
        self.shared.always.lock().unwrap().insert(path.to_owned(), reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    pub fn received_at(&self, path: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.path == path).collect()
    }

    /// Waits until `done` holds for the requests received at `path`.
    pub async fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received_at(path);
            if done(&received) {
                return received;
            }
            assert!(Instant::now() < deadline, "timed out waiting at {path}; received: {received:#?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// HMAC-SHA256 from its definition (RFC 2104), so the test does not share
/// code with the signer.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// Whether one of the `v1` signatures of a request is `secret`'s.
pub fn signed_with(secret: &str, request: &Received) -> bool {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("whsec_ prefix")).expect("base64 key");
    let signed =
        format!("{}.{}.{}", request.header("webhook-id"), request.header("webhook-timestamp"), request.body);
    let expected = format!("v1,{}", STANDARD.encode(hmac_sha256(&key, signed.as_bytes())));
    request.header("webhook-signature").split(' ').any(|signature| signature == expected)
}

const PYTHON_ENV: &str = "PORTCULLIS_WEBHOOKS_PYTHON";
const REQUIRE_ENV: &str = "PORTCULLIS_REQUIRE_STANDARDWEBHOOKS";

const VERIFY: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
job = json.load(sys.stdin)
results = []
for message in job["messages"]:
    try:
        Webhook(job["secret"]).verify(message["body"], message["headers"])
        results.append("ok")
    except Exception as error:
        results.append("%s: %s" % (type(error).__name__, error))
print(json.dumps(results))
"#;

/// Verifies requests with the PyPI `standardwebhooks` library; `None` when
/// no Python with it is configured (`.ci/run` configures one and requires it).
pub async fn verify_with_standardwebhooks(secret: &str, requests: &[Received]) -> Option<Vec<String>> {
    let Ok(python) = std::env::var(PYTHON_ENV) else {
        assert!(std::env::var(REQUIRE_ENV).is_err(), "{REQUIRE_ENV} is set but {PYTHON_ENV} is not");
        eprintln!("note: {PYTHON_ENV} is not set; skipping verification with standardwebhooks");
        return None;
    };
    let job = json!({
        "secret": secret,
        "messages": requests.iter().map(|r| json!({"headers": r.headers, "body": r.body})).collect::<Vec<_>>(),
    });
    let mut child = tokio::process::Command::new(python)
        .args(["-c", VERIFY])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run python");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(job.to_string().as_bytes()).await.expect("write job");
    }
    let output = child.wait_with_output().await.expect("python output");
    assert!(output.status.success(), "the verifier failed: {}", String::from_utf8_lossy(&output.stdout));
    Some(serde_json::from_slice(&output.stdout).expect("a JSON list"))
}

/// Asserts that both verifiers accept every request for `secret`.
pub async fn assert_verified(secret: &str, requests: &[Received]) {
    assert!(!requests.is_empty());
    for request in requests {
        assert!(signed_with(secret, request), "not signed with the secret: {request:#?}");
    }
    if let Some(results) = verify_with_standardwebhooks(secret, requests).await {
        assert!(results.iter().all(|r| r == "ok"), "standardwebhooks refused: {results:?}");
    }
}

#[test]
fn hmac_matches_rfc_4231_case_2() {
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}
