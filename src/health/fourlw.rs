//! Async four-letter-word client: connect, write the word, read to EOF, all under one timeout.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::parse::{self, Mntr, Reply, Srvr};
use super::{Mode, Ordinal, Outcome, Word};
use crate::reconfig::SaslLogin;
use crate::tls::ClientTls;

/// Answers larger than this are cut off: a `mntr` answer is about 18 KiB.
const MAX_ANSWER: u64 = 1 << 20;

/// Where a member's client port is reached.
///
/// In a cluster this is the member's ordinal DNS name (see [`MemberAddress::ordinal_dns`]);
/// tests give loopback addresses such as `127.0.0.2` instead.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MemberAddress {
    /// A DNS name or an IP address.
    pub host: String,
    /// The client port.
    pub port: u16,
    /// The transport: `None` is plaintext TCP; `Some` is TLS trusting the cluster's CA (the
    /// member's certificate must name `host`), with a client certificate for mutual TLS.
    pub tls: Option<ClientTls>,
    /// The SASL login of the operator's ZooKeeper sessions with this member (a cluster that
    /// enforces client authentication); four-letter words do not use it.
    pub sasl: Option<SaslLogin>,
}

impl MemberAddress {
    /// Any host and port, plaintext.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            tls: None,
            sasl: None,
        }
    }

    /// The same address, with the operator's sessions logging in as `login`.
    pub fn with_sasl(self, login: Option<SaslLogin>) -> Self {
        Self {
            sasl: login,
            ..self
        }
    }

    /// The same address over TLS (the member's `secureClientPort`).
    pub fn with_tls(self, tls: ClientTls) -> Self {
        Self {
            tls: Some(tls),
            ..self
        }
    }

    /// `<cluster>-<i>.<cluster>-hs.<namespace>.svc.<cluster_domain>:<port>`: the stable name the
    /// headless Service gives each pod (it resolves before the pod is Ready because the Service
    /// publishes not-ready addresses).
    pub fn ordinal_dns(
        cluster: &str,
        ordinal: Ordinal,
        namespace: &str,
        cluster_domain: &str,
        port: u16,
    ) -> Self {
        Self::new(
            crate::names::member_host(cluster, ordinal.0, namespace, cluster_domain),
            port,
        )
    }
}

/// The ordinal DNS address of every member `0..replicas` of `cluster`, ready for
/// [`probe_ensemble`].
pub fn member_addresses(
    cluster: &str,
    namespace: &str,
    cluster_domain: &str,
    client_port: u16,
    replicas: u32,
) -> Vec<(Ordinal, MemberAddress)> {
    (0..replicas)
        .map(|i| {
            let o = Ordinal(i);
            (
                o,
                MemberAddress::ordinal_dns(cluster, o, namespace, cluster_domain, client_port),
            )
        })
        .collect()
}

impl fmt::Display for MemberAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// How members are probed.
#[derive(Clone, Copy, Debug)]
pub struct ProbeConfig {
    /// One budget for name resolution, connect, write and read of one word.
    pub timeout: Duration,
    /// Members probed at the same time.
    pub concurrency: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            concurrency: 8,
        }
    }
}

/// The network part of a failed exchange.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The host name did not resolve.
    #[error("resolve {host}: {detail}")]
    Resolve {
        /// The name that failed.
        host: String,
        /// The resolver's words.
        detail: String,
    },
    /// Nothing listens on the port.
    #[error("connect to {addr}: connection refused")]
    Refused {
        /// The address tried.
        addr: String,
    },
    /// The timeout ran out before the answer was complete.
    #[error("{word} to {addr}: no complete answer within {timeout:?}")]
    Timeout {
        /// The member.
        addr: String,
        /// The word sent.
        word: Word,
        /// The budget.
        timeout: Duration,
    },
    /// The TLS handshake failed (a certificate the CA did not sign, a name it does not hold, a
    /// plaintext port).
    #[error("{word} to {addr}: TLS handshake: {source}")]
    Tls {
        /// The member.
        addr: String,
        /// The word sent.
        word: Word,
        /// The failure.
        source: io::Error,
    },
    /// Any other IO failure.
    #[error("{word} to {addr}: {source}")]
    Io {
        /// The member.
        addr: String,
        /// The word sent.
        word: Word,
        /// The failure.
        source: io::Error,
    },
}

impl SendError {
    fn into_outcome<T>(self) -> Outcome<T> {
        match self {
            SendError::Resolve { host, detail } => Outcome::DnsFailure(format!("{host}: {detail}")),
            SendError::Refused { .. } => Outcome::Refused,
            SendError::Timeout { .. } => Outcome::Timeout,
            e @ (SendError::Io { .. } | SendError::Tls { .. }) => Outcome::Other(e.to_string()),
        }
    }
}

/// Sends `word` to `addr` and returns the raw answer (the member closes the connection after
/// answering). Resolution, connect, write and read share one `timeout`.
pub async fn send(
    addr: &MemberAddress,
    word: Word,
    timeout: Duration,
) -> Result<String, SendError> {
    match tokio::time::timeout(timeout, exchange(addr, word)).await {
        Ok(result) => result,
        Err(_) => Err(SendError::Timeout {
            addr: addr.to_string(),
            word,
            timeout,
        }),
    }
}

async fn exchange(addr: &MemberAddress, word: Word) -> Result<String, SendError> {
    // Resolve separately from connecting so that a missing name is told apart from a refusal.
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((addr.host.as_str(), addr.port))
        .await
        .map_err(|e| SendError::Resolve {
            host: addr.host.clone(),
            detail: e.to_string(),
        })?
        .collect();
    if resolved.is_empty() {
        return Err(SendError::Resolve {
            host: addr.host.clone(),
            detail: "no address".into(),
        });
    }
    let io_err = |source: io::Error| {
        if source.kind() == io::ErrorKind::ConnectionRefused {
            SendError::Refused {
                addr: addr.to_string(),
            }
        } else {
            SendError::Io {
                addr: addr.to_string(),
                word,
                source,
            }
        }
    };
    let stream = TcpStream::connect(&resolved[..]).await.map_err(io_err)?;
    let Some(tls) = &addr.tls else {
        return talk(stream, word, io_err).await;
    };
    let tls_err = |source: io::Error| SendError::Tls {
        addr: addr.to_string(),
        word,
        source,
    };
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(addr.host.clone())
        .map_err(|e| tls_err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let stream = tokio_rustls::TlsConnector::from(tls.config())
        .connect(name, stream)
        .await
        .map_err(tls_err)?;
    talk(stream, word, io_err).await
}

/// Writes the word and reads the answer until the member closes the connection.
async fn talk<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    word: Word,
    io_err: impl Fn(io::Error) -> SendError,
) -> Result<String, SendError> {
    stream
        .write_all(word.as_str().as_bytes())
        .await
        .map_err(&io_err)?;
    stream.flush().await.map_err(&io_err)?;
    let mut answer = Vec::new();
    match (&mut stream)
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .await
    {
        Ok(_) => {}
        // ZooKeeper closes a TLS connection after answering without a close_notify: the answer
        // is complete all the same.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(io_err(e)),
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn outcome<T>(reply: Reply<T>) -> Outcome<T> {
    match reply {
        Reply::Data(t) => Outcome::Serving(t),
        Reply::NotServing => Outcome::NotServing,
        Reply::NotWhitelisted { word } => Outcome::NotWhitelisted { word },
        Reply::Malformed(m) => Outcome::Other(m),
    }
}

/// `srvr` to one member.
pub async fn srvr(addr: &MemberAddress, timeout: Duration) -> Outcome<Srvr> {
    match send(addr, Word::Srvr, timeout).await {
        Ok(text) => outcome(parse::srvr(&text)),
        Err(e) => e.into_outcome(),
    }
}

/// `mntr` to one member.
pub async fn mntr(addr: &MemberAddress, timeout: Duration) -> Outcome<Mntr> {
    match send(addr, Word::Mntr, timeout).await {
        Ok(text) => outcome(parse::mntr(&text)),
        Err(e) => e.into_outcome(),
    }
}

/// What one member answered.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberProbe {
    /// The member.
    pub ordinal: Ordinal,
    /// Its answer to `srvr`.
    pub srvr: Outcome<Srvr>,
    /// Its answer to `mntr`, asked only of members whose `srvr` says leader (the only ones that
    /// report `zk_synced_followers`).
    pub mntr: Option<Outcome<Mntr>>,
}

/// Probes one member: `srvr`, then `mntr` when it leads.
pub async fn probe_member(
    ordinal: Ordinal,
    addr: &MemberAddress,
    config: ProbeConfig,
) -> MemberProbe {
    let srvr = srvr(addr, config.timeout).await;
    let mntr = match &srvr {
        Outcome::Serving(s) if s.mode == Mode::Leader => Some(mntr(addr, config.timeout).await),
        _ => None,
    };
    MemberProbe {
        ordinal,
        srvr,
        mntr,
    }
}

/// Probes every member, at most `config.concurrency` at once; results come back sorted by
/// ordinal.
pub async fn probe_ensemble(
    members: impl IntoIterator<Item = (Ordinal, MemberAddress)>,
    config: ProbeConfig,
) -> Vec<MemberProbe> {
    let mut probes: Vec<MemberProbe> = futures::stream::iter(members)
        .map(|(ordinal, addr)| async move { probe_member(ordinal, &addr, config).await })
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    probes.sort_by_key(|p| p.ordinal);
    probes
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A fake member that answers `srvr` with `answer` and `mntr` with a leader's mntr, after
    /// `delay`.
    async fn fake(answer: &'static str, delay: Duration) -> MemberAddress {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut word = [0u8; 4];
                    if s.read_exact(&mut word).await.is_ok() {
                        tokio::time::sleep(delay).await;
                        let text = if &word == b"mntr" && answer == LEADER {
                            LEADER_MNTR
                        } else {
                            answer
                        };
                        let _ = s.write_all(text.as_bytes()).await;
                    }
                });
            }
        });
        MemberAddress::new("127.0.0.1", port)
    }

    const LEADER: &str = include_str!("../../tests/fixtures/zookeeper/3.9.5/leader.srvr");
    const LEADER_MNTR: &str = include_str!("../../tests/fixtures/zookeeper/3.9.5/leader.mntr");

    #[test]
    fn ordinal_dns_name() {
        let a = MemberAddress::ordinal_dns("zk", Ordinal(2), "prod", "cluster.local", 2181);
        assert_eq!(a.to_string(), "zk-2.zk-hs.prod.svc.cluster.local:2181");
        let all = member_addresses("zk", "prod", "cluster.local", 2181, 3);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].0, Ordinal(0));
        assert_eq!(all[0].1.host, "zk-0.zk-hs.prod.svc.cluster.local");
    }

    #[tokio::test]
    async fn serving_answer_is_parsed() {
        let addr = fake(LEADER, Duration::ZERO).await;
        let out = srvr(&addr, Duration::from_secs(2)).await;
        let s = out.serving().expect("serving");
        assert_eq!(s.mode, Mode::Leader);
    }

    #[tokio::test]
    async fn refused_when_nothing_listens() {
        // Bind then drop to get a port nobody listens on.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("addr").port()
        };
        let out = srvr(
            &MemberAddress::new("127.0.0.1", port),
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(out, Outcome::Refused);
    }

    #[tokio::test]
    async fn timeout_covers_the_read() {
        let addr = fake(LEADER, Duration::from_secs(5)).await;
        let started = std::time::Instant::now();
        let out = srvr(&addr, Duration::from_millis(200)).await;
        assert_eq!(out, Outcome::Timeout);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn unresolvable_name_is_a_dns_failure() {
        // A DNS label longer than 63 bytes cannot be encoded, so the resolver fails without
        // sending a query off the machine.
        let host = format!("zk-9.{}.invalid", "x".repeat(70));
        let out = srvr(&MemberAddress::new(host, 2181), Duration::from_secs(3)).await;
        assert!(matches!(out, Outcome::DnsFailure(_)), "{out:?}");
    }

    #[tokio::test]
    async fn not_serving_and_not_whitelisted_are_distinct() {
        let ns = fake(
            "This ZooKeeper instance is not currently serving requests\n",
            Duration::ZERO,
        )
        .await;
        assert_eq!(srvr(&ns, Duration::from_secs(2)).await, Outcome::NotServing);
        let nw = fake(
            "mntr is not executed because it is not in the whitelist.\n",
            Duration::ZERO,
        )
        .await;
        assert_eq!(
            mntr(&nw, Duration::from_secs(2)).await,
            Outcome::NotWhitelisted {
                word: "mntr".into()
            }
        );
    }

    #[tokio::test]
    async fn ensemble_probe_asks_mntr_of_the_leader_only_and_sorts() {
        let leader = fake(LEADER, Duration::ZERO).await;
        let follower = fake(
            include_str!("../../tests/fixtures/zookeeper/3.9.5/follower.srvr"),
            Duration::ZERO,
        )
        .await;
        let probes = probe_ensemble(
            vec![(Ordinal(1), follower), (Ordinal(0), leader)],
            ProbeConfig {
                timeout: Duration::from_secs(2),
                concurrency: 1,
            },
        )
        .await;
        assert_eq!(probes.len(), 2);
        assert_eq!(probes[0].ordinal, Ordinal(0));
        let mntr = probes[0].mntr.as_ref().and_then(|m| m.serving());
        assert_eq!(mntr.and_then(|m| m.synced_followers()), Some(2));
        assert!(probes[1].mntr.is_none());
    }

    #[tokio::test]
    async fn concurrency_bounds_parallel_probes() {
        let slow = fake(LEADER, Duration::from_millis(300)).await;
        let members: Vec<_> = (0..4).map(|i| (Ordinal(i), slow.clone())).collect();
        let started = std::time::Instant::now();
        let probes = probe_ensemble(
            members,
            ProbeConfig {
                timeout: Duration::from_secs(5),
                concurrency: 2,
            },
        )
        .await;
        // 4 members, 2 at a time, each srvr + mntr at 300 ms: at least 2 rounds of 600 ms.
        assert!(
            started.elapsed() >= Duration::from_millis(1100),
            "{:?}",
            started.elapsed()
        );
        assert!(probes.iter().all(|p| p.srvr.serving().is_some()));
    }
}
