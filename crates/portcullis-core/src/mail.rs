//! Outgoing mail (confirmation, password-reset and invitation links):
//! through SMTP when an `smtp_url` is configured, otherwise into a dev
//! outbox directory, one JSON file per message, that developers and tests
//! read.
//!
//! A message is queued ([`queue_in`]) in the transaction of the change that
//! causes it, sealed with the master key (its links are secrets), and the
//! mail worker ([`run_worker`]) sends it after commit: a crash delays mail
//! but never loses it, and a rolled-back change sends nothing. Delivery is
//! at-least-once: a crash between the SMTP answer and the queue row's
//! removal sends that message again once its lease ends. Sending is off the
//! request path, so a page's response time never tells whether a message
//! went out (which would reveal whether an address has an account).

use std::path::PathBuf;
use std::sync::Weak;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use portcullis_crypto::aead::MasterKey;
use portcullis_store::model::QueuedMail;
use portcullis_store::{WriteTx, micros, new_id, now_micros, repo};
use serde::{Deserialize, Serialize};

use crate::{Core, Result, ServiceError};

/// Where mail goes.
#[derive(Debug, Clone)]
pub enum MailTransport {
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://…:465`
    /// (implicit TLS) or plain `smtp://host:25` for a local relay.
    Smtp(String),
    /// A directory of `*.json` messages (development and tests).
    Outbox(PathBuf),
}

#[derive(Debug, Clone)]
pub struct MailSettings {
    /// The `From` mailbox, e.g. `Acme <no-reply@acme.example>`.
    pub from: String,
    pub transport: MailTransport,
    /// How long one attempt owns a queued message: a process killed while
    /// sending delays that message by this much, then another sends it.
    pub lease: Duration,
}

impl Default for MailSettings {
    fn default() -> Self {
        MailSettings {
            from: "Portcullis <no-reply@localhost>".into(),
            transport: MailTransport::Outbox(PathBuf::from("portcullis-data/outbox")),
            lease: DEFAULT_LEASE,
        }
    }
}

/// One plain-text message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// A message as the outbox stores it.
#[derive(Serialize)]
struct OutboxEntry<'a> {
    from: &'a str,
    to: &'a str,
    subject: &'a str,
    text: &'a str,
    sent_at: String,
}

pub struct Mailer {
    from: Mailbox,
    sender: Sender,
    lease: Duration,
}

enum Sender {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(PathBuf),
}

impl Mailer {
    pub fn new(settings: &MailSettings) -> Result<Mailer> {
        let from: Mailbox = settings.from.parse().map_err(|e| {
            ServiceError::Internal(format!("mail_from `{}` is not a mailbox: {e}", settings.from))
        })?;
        let sender = match &settings.transport {
            MailTransport::Smtp(url) => Sender::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    // The URL may hold a password: never echo it.
                    .map_err(|e| ServiceError::Internal(format!("smtp_url is not a valid SMTP URL: {e}")))?
                    .build(),
            ),
            MailTransport::Outbox(dir) => Sender::Outbox(dir.clone()),
        };
        Ok(Mailer { from, sender, lease: settings.lease })
    }

    /// Where the outbox is, when mail goes to one.
    pub fn outbox(&self) -> Option<&std::path::Path> {
        match &self.sender {
            Sender::Outbox(dir) => Some(dir),
            Sender::Smtp(_) => None,
        }
    }

    /// Sends one message now.
    pub async fn send(&self, mail: &Mail) -> Result<()> {
        match &self.sender {
            Sender::Smtp(transport) => {
                let to: Mailbox = mail
                    .to
                    .parse()
                    .map_err(|e| ServiceError::Internal(format!("cannot mail this address: {e}")))?;
                let message = Message::builder()
                    .from(self.from.clone())
                    .to(to)
                    .subject(&mail.subject)
                    .header(ContentType::TEXT_PLAIN)
                    .body(mail.text.clone())
                    .map_err(|e| ServiceError::Internal(format!("cannot build the message: {e}")))?;
                transport
                    .send(message)
                    .await
                    .map_err(|e| ServiceError::Internal(format!("SMTP delivery failed: {e}")))?;
                Ok(())
            }
            Sender::Outbox(dir) => write_outbox(dir, &self.from.to_string(), mail).await,
        }
    }
}

/// The mail worker's pace.
const POLL: Duration = Duration::from_secs(5);
/// How long one attempt owns a message before another worker may retry it
/// (`MailSettings::lease`), unless configured.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(300);
/// Attempts before a message is given up on (about a day of retries).
const MAX_ATTEMPTS: i64 = 12;
const BATCH: i64 = 50;

fn sealed_aad(id: &str) -> String {
    format!("queued_mail:{id}")
}

/// Queues `mail` in `tx`: the worker sends it once `tx` commits.
pub async fn queue_in(
    tx: &mut WriteTx,
    master_key: &MasterKey,
    environment_id: &str,
    mail: &Mail,
) -> Result<()> {
    let id = new_id();
    let json = serde_json::to_vec(mail).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let sealed = master_key.seal(&json, &sealed_aad(&id))?;
    let now = now_micros();
    let row = QueuedMail {
        id,
        environment_id: environment_id.to_owned(),
        sealed,
        attempts: 0,
        due_at: now,
        inserted_at: now,
    };
    Ok(tx.queue_mail(&row).await?)
}

/// Sends queued mail until `core` is dropped: at once when this process
/// queued some, otherwise every few seconds (mail of other processes,
/// retries, and what a crashed process left).
pub async fn run_worker(core: Weak<Core>) {
    let Some(woken) = core.upgrade().map(|core| core.db.mail_queued()) else { return };
    loop {
        {
            let Some(core) = core.upgrade() else { return };
            if let Err(error) = send_due(&core).await {
                tracing::warn!(%error, "mail worker pass failed");
            }
        }
        tokio::select! {
            () = woken.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// One pass: sends every message that is due.
pub async fn send_due(core: &Core) -> Result<()> {
    loop {
        let now = now_micros();
        let due = repo::mail_queue::due(&mut *core.db.read().await?, now, BATCH).await?;
        if due.is_empty() {
            return Ok(());
        }
        let mut taken = 0;
        for queued in due {
            let mut tx = core.db.write_state().await?;
            let claimed =
                repo::mail_queue::claim(tx.conn(), &queued, now + micros(core.mailer.lease)).await?;
            tx.commit().await?;
            if !claimed {
                continue;
            }
            taken += 1;
            let attempt = queued.attempts + 1;
            let outcome = match open(core, &queued) {
                Ok(mail) => core.mailer.send(&mail).await.map_err(|e| (e, mail.subject)),
                Err(error) => Err((error, String::new())),
            };
            let mut tx = core.db.write_state().await?;
            match outcome {
                Ok(()) => repo::mail_queue::remove(tx.conn(), &queued.id).await?,
                Err((error, subject)) if attempt >= MAX_ATTEMPTS => {
                    // The body carries single-use links: log the subject only.
                    tracing::error!(%error, %subject, attempts = attempt, "mail given up on");
                    repo::mail_queue::remove(tx.conn(), &queued.id).await?;
                }
                Err((error, subject)) => {
                    tracing::warn!(%error, %subject, attempts = attempt, "mail not sent; will retry");
                    let wait = micros(POLL) << attempt.min(14);
                    repo::mail_queue::retry_at(tx.conn(), &queued.id, now_micros() + wait).await?;
                }
            }
            tx.commit().await?;
        }
        if taken == 0 {
            return Ok(());
        }
    }
}

fn open(core: &Core, queued: &QueuedMail) -> Result<Mail> {
    let json = core.master_key.open(&queued.sealed, &sealed_aad(&queued.id))?;
    serde_json::from_slice(&json).map_err(|e| ServiceError::Internal(format!("queued mail unreadable: {e}")))
}

/// Writes `{micros}-{uuid}.json` atomically (a temporary name, then a
/// rename), so readers never see half a message.
async fn write_outbox(dir: &std::path::Path, from: &str, mail: &Mail) -> Result<()> {
    let sent_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let entry = OutboxEntry { from, to: &mail.to, subject: &mail.subject, text: &mail.text, sent_at };
    let body = serde_json::to_vec_pretty(&entry).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let name = format!("{}-{}", portcullis_store::now_micros(), uuid::Uuid::new_v4().simple());
    let io = |e: std::io::Error| {
        ServiceError::Internal(format!("cannot write to the outbox {}: {e}", dir.display()))
    };
    let partial = dir.join(format!(".{name}.tmp"));
    let write = {
        let (dir, partial) = (dir.to_owned(), partial.clone());
        move || -> std::io::Result<()> {
            use std::io::Write;
            portcullis_store::private_fs::create_dir_all(&dir)?;
            portcullis_store::private_fs::create_file(&partial, true)?.write_all(&body)
        }
    };
    tokio::task::spawn_blocking(write)
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
        .map_err(io)?;
    tokio::fs::rename(&partial, dir.join(format!("{name}.json"))).await.map_err(io)?;
    tracing::info!(outbox = %dir.display(), subject = %mail.subject, "mail written to the dev outbox");
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    /// A one-message SMTP server: answers the commands lettre sends and
    /// returns the DATA it received.
    async fn smtp_sink(listener: TcpListener) -> String {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
        let mut data = String::new();
        let mut in_data = false;
        while let Some(line) = lines.next_line().await.unwrap() {
            if in_data {
                if line == "." {
                    in_data = false;
                    write.write_all(b"250 queued\r\n").await.unwrap();
                } else {
                    data.push_str(&line);
                    data.push('\n');
                }
                continue;
            }
            let verb = line.split(' ').next().unwrap_or_default().to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" | "HELO" => b"250 sink\r\n",
                "DATA" => {
                    in_data = true;
                    b"354 go on\r\n"
                }
                "QUIT" => {
                    write.write_all(b"221 bye\r\n").await.unwrap();
                    break;
                }
                _ => b"250 ok\r\n",
            };
            write.write_all(reply).await.unwrap();
        }
        data
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_dev_outbox_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("portcullis-outbox-{}", uuid::Uuid::new_v4().simple()));
        let dir = root.join("outbox");
        let mail = Mail { to: "ann@example.com".into(), subject: "Reset".into(), text: "a link".into() };
        write_outbox(&dir, "Acme <no-reply@acme.test>", &mail).await.unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(mode(&files[0]), 0o600);
        let _ = std::fs::remove_dir_all(root);
    }

    #[tokio::test]
    async fn smtp_delivers_a_plain_text_message() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sink = tokio::spawn(smtp_sink(listener));
        let settings = MailSettings {
            from: "Acme <no-reply@acme.test>".into(),
            transport: MailTransport::Smtp(format!("smtp://127.0.0.1:{port}")),
            lease: DEFAULT_LEASE,
        };
        let mailer = Mailer::new(&settings).unwrap();
        assert!(mailer.outbox().is_none());
        let mail = Mail {
            to: "ann@example.com".into(),
            subject: "Confirm your email".into(),
            text: "Open http://acme.test/confirm/abc".into(),
        };
        mailer.send(&mail).await.unwrap();
        drop(mailer);
        let data = tokio::time::timeout(std::time::Duration::from_secs(10), sink).await.unwrap().unwrap();
        assert!(data.contains("To: ann@example.com"), "{data}");
        assert!(data.contains("Subject: Confirm your email"), "{data}");
        assert!(data.contains("From: Acme <no-reply@acme.test>"), "{data}");
        assert!(data.contains("http://acme.test/confirm/abc"), "{data}");
    }

    #[tokio::test]
    async fn the_outbox_holds_one_json_file_per_message() {
        let dir = std::env::temp_dir().join(format!("portcullis-outbox-{}", uuid::Uuid::new_v4().simple()));
        let settings = MailSettings {
            from: "no-reply@acme.test".into(),
            transport: MailTransport::Outbox(dir.clone()),
            lease: DEFAULT_LEASE,
        };
        let mailer = Mailer::new(&settings).unwrap();
        assert_eq!(mailer.outbox(), Some(dir.as_path()));
        for n in 0..2 {
            let mail =
                Mail { to: format!("user{n}@example.com"), subject: "Hi".into(), text: "Hello".into() };
            mailer.send(&mail).await.unwrap();
        }
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names.len(), 2, "no temporary files left behind: {names:?}");
        let first: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(&names[0])).unwrap()).unwrap();
        assert_eq!(first["to"], "user0@example.com");
        assert_eq!(first["from"], "no-reply@acme.test");
        assert_eq!(first["text"], "Hello");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_settings_are_refused_without_echoing_secrets() {
        let bad_from = MailSettings { from: "not a mailbox".into(), ..MailSettings::default() };
        assert!(Mailer::new(&bad_from).is_err());
        let bad_url = MailSettings {
            transport: MailTransport::Smtp("ftp://user:hunter2@host".into()),
            ..MailSettings::default()
        };
        let error = Mailer::new(&bad_url).err().unwrap().to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }
}
