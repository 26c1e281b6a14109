//! A small authoritative DNS server on loopback UDP for the custom-domain
//! tests: the zone is a map the test edits between checks, messages are
//! hickory-proto's, and the server's resolver (hickory-resolver) asks it as
//! it would ask any name server. A name with no records answers NXDOMAIN; a
//! name with records of other types answers with none (NODATA).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

type Zone = Arc<Mutex<HashMap<String, Vec<RData>>>>;

pub struct TestDns {
    pub addr: SocketAddr,
    zone: Zone,
    server: tokio::task::JoinHandle<()>,
}

impl TestDns {
    pub async fn start() -> TestDns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS socket");
        let addr = socket.local_addr().expect("DNS address");
        let zone = Zone::default();
        let answers = zone.clone();
        let server = tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buffer).await else { return };
                let Ok(query) = Message::from_vec(&buffer[..len]) else { continue };
                let reply = answer(&answers, &query);
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        TestDns { addr, zone, server }
    }

    /// Replaces `name`'s records with a CNAME to `target`.
    pub fn set_cname(&self, name: &str, target: &str) {
        let target = Name::from_ascii(format!("{target}.")).expect("CNAME target");
        self.zone.lock().unwrap().insert(key(name), vec![RData::CNAME(CNAME(target))]);
    }

    /// Replaces `name`'s records with one TXT record.
    pub fn set_txt(&self, name: &str, value: &str) {
        self.zone.lock().unwrap().insert(key(name), vec![RData::TXT(TXT::new(vec![value.to_owned()]))]);
    }

    /// Replaces `name`'s records with one A record.
    pub fn set_a(&self, name: &str, address: std::net::Ipv4Addr) {
        self.zone.lock().unwrap().insert(key(name), vec![RData::A(address.into())]);
    }

    /// Removes every record of `name`.
    pub fn clear(&self, name: &str) {
        self.zone.lock().unwrap().remove(&key(name));
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn answer(zone: &Zone, query: &Message) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.message_type = MessageType::Response;
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.queries = query.queries.clone();
    let zone = zone.lock().unwrap();
    for question in &query.queries {
        let wanted = question.query_type();
        let mut name = question.name().clone();
        // A CNAME answers any question about its name; an authoritative
        // server adds the target's records when it holds them (the ACME CA's
        // A lookup of a custom domain follows it to the default host).
        for _ in 0..8 {
            let Some(records) = zone.get(&key(&name.to_ascii())) else {
                if reply.answers.is_empty() {
                    reply.metadata.response_code = ResponseCode::NXDomain;
                }
                break;
            };
            for data in records.iter().filter(|d| wanted == RecordType::ANY || d.record_type() == wanted) {
                reply.answers.push(Record::from_rdata(name.clone(), 60, data.clone()));
            }
            match records
                .iter()
                .find_map(|d| if let RData::CNAME(target) = d { Some(target.0.clone()) } else { None })
            {
                Some(target) if wanted != RecordType::CNAME && wanted != RecordType::ANY => {
                    reply.answers.push(Record::from_rdata(
                        name.clone(),
                        60,
                        RData::CNAME(CNAME(target.clone())),
                    ));
                    name = target;
                }
                _ => break,
            }
        }
    }
    reply
}

/// Runs the body on SQLite and PostgreSQL with a [`TestDns`] and a server
/// whose DNS checks ask it, its settings then changed by `config`; or with
/// `poll = …`, whose background pass runs that often (`None`: every 30 s,
/// so that only the test's own checks run).
#[macro_export]
macro_rules! dns_test {
    ($name:ident, poll = $poll:expr, |$server:ident, $dns:ident| $body:block) => {
        $crate::dns_test!(
            $name,
            config = |config: &mut portcullis_core::CoreConfig| {
                config.dns.poll_interval = $poll;
            },
            |$server, $dns| $body
        );
    };
    ($name:ident, config = $configure:expr, |$server:ident, $dns:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run(backend: $crate::harness::Backend) {
                let $dns = $crate::dns::TestDns::start().await;
                let address = $dns.addr;
                let configured = $crate::harness::TestServer::start_configured(backend, |config| {
                    config.dns.servers = vec![address];
                    ($configure)(config);
                })
                .await;
                let Some($server) = configured else { return };
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::harness::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run($crate::harness::Backend::Postgres).await;
            }
        }
    };
}
