//! A DNS server for tests of name resolution: UDP on a loopback address, answering from a
//! fixed table, recording every name it was asked for.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

/// A running test DNS server; stops when dropped.
pub struct DnsServer {
    /// Where it listens.
    pub addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    /// Serves `answers` (absolute name such as `api.example.` -> addresses) on `ip`, on a
    /// port of its own: an A query gets the name's IPv4 addresses, an AAAA query its IPv6
    /// ones (none: an empty answer), a name not in the table NXDOMAIN.
    ///
    /// # Panics
    /// The socket cannot be bound.
    pub async fn start(ip: Ipv4Addr, answers: Vec<(&'static str, Vec<IpAddr>)>) -> Self {
        let socket = UdpSocket::bind((ip, 0))
            .await
            .expect("bind the test DNS server");
        let addr = socket.local_addr().expect("its address");
        let asked = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&asked);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                let Ok(request) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let Some(query) = request.queries.first() else {
                    continue;
                };
                let name = query.name.to_string();
                record.lock().expect("names asked").push(name.clone());
                let mut response = Message::response(request.id, request.op_code);
                response.add_queries(request.queries.iter().cloned());
                match answers.iter().find(|(known, _)| *known == name) {
                    Some((_, ips)) => {
                        for ip in ips {
                            let data = match (ip, query.query_type) {
                                (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
                                (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
                                _ => continue,
                            };
                            response.add_answer(Record::from_rdata(query.name.clone(), 60, data));
                        }
                    }
                    None => response.metadata.response_code = ResponseCode::NXDomain,
                }
                if let Ok(bytes) = response.to_vec() {
                    let _ = socket.send_to(&bytes, from).await;
                }
            }
        });
        Self { addr, asked, task }
    }

    /// Whether `name` (absolute) was asked for.
    ///
    /// # Panics
    /// The server's task panicked while holding the list.
    #[must_use]
    pub fn was_asked(&self, name: &str) -> bool {
        self.asked
            .lock()
            .expect("names asked")
            .iter()
            .any(|n| n == name)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
