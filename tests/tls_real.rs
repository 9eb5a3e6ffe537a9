//! TLS on real parts: a 3-member ZooKeeper ensemble whose TLS settings are the `zoo.cfg` lines
//! `start-zookeeper --tls_dir` writes, with a CA and certificate made by the operator's own
//! code (`tls::issue`), mutual TLS on. The quorum forms over TLS; a TLS client with the cluster's
//! certificate writes and reads; clients without TLS, or without a client certificate, are
//! refused on the secure port; client certificates the operator issues (`tls::issue_client`)
//! authenticate sessions as `x509:CN=<name>`, so an ACL naming one admits it and refuses another
//! (and a certificate of another CA gets no session); the operator's four-letter words and its
//! reconfiguration client (remove a server, add it back) work over TLS.
//!
//! Needs Java and the jars of `e2e/lib/zookeeper-dist.sh`; fails (never skips) without them.
//! Members listen on 127.0.0.1-127.0.0.3, ports 21900 (TLS client), 21901 (plaintext client),
//! 21902 (quorum) and 21903 (election).

#[path = "support/dist.rs"]
mod dist;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zookeeper_client::{Acl, Acls, AuthId, Client, CreateMode, Permission};
use zookeeper_operator::crd::ZookeeperCluster;
use zookeeper_operator::health::{
    MemberAddress, Mode, Ordinal, Outcome, ProbeConfig, WHITELIST, probe_ensemble,
};
use zookeeper_operator::membership::{MembershipStep, ServerId};
use zookeeper_operator::reconfig::{Reconfigurer, SuperUser, member_config_version};
use zookeeper_operator::tls::{self, ClientMaterial, ClientTls, Material};
use zookeeper_operator::validate::validate;

const MEMBERS: usize = 3;
const SECURE: u16 = 21900;
const PLAIN: u16 = 21901;
const PEER: u16 = 21902;
const ELECTION: u16 = 21903;

fn host(i: usize) -> String {
    format!("127.0.0.{}", i + 1)
}

/// The TLS lines of `zoo.cfg`, as `start-zookeeper --tls_dir` writes them, for a member on
/// `host` (there the secure port binds 0.0.0.0 and the plaintext one 127.0.0.1; here each
/// member has its own loopback address).
fn tls_config(host: &str, tls_dir: &Path, keystore: &Path, client_auth: &str) -> String {
    let script = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/images/zookeeper/start-zookeeper"),
    )
    .expect("read start-zookeeper");
    let body = script
        .split_once("tls_config() {")
        .and_then(|(_, rest)| rest.split_once("\n}"))
        .expect("start-zookeeper defines tls_config()")
        .0;
    let mut lines = String::new();
    for line in body.lines() {
        let Some(entry) = line.trim().strip_prefix("echo \"") else {
            continue;
        };
        let entry = entry
            .trim_end_matches('"')
            .replace("$SECURE_CLIENT_PORT", &SECURE.to_string())
            .replace("$TLS_KEYSTORE", &keystore.display().to_string())
            .replace("$TLS_DIR", &tls_dir.display().to_string())
            .replace("$TLS_CLIENT_AUTH", client_auth)
            .replace("0.0.0.0", host)
            .replace("127.0.0.1", host);
        assert!(!entry.contains('$'), "unsubstituted variable in {entry}");
        lines.push_str(&entry);
        lines.push('\n');
    }
    for key in [
        "sslQuorum=true",
        "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
        "secureClientPort=",
        "ssl.keyStore.type=PEM",
        "ssl.trustStore.location=",
        "ssl.quorum.keyStore.location=",
        "ssl.quorum.trustStore.type=PEM",
        "ssl.clientAuth=",
    ] {
        assert!(
            lines.contains(key),
            "start-zookeeper no longer writes {key}: {lines}"
        );
    }
    lines
}

struct Ensemble {
    members: Vec<(Child, PathBuf)>,
    _tmp: tempfile::TempDir,
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for (child, _) in &mut self.members {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Ensemble {
    fn start(material: &Material, user: &SuperUser) -> Self {
        let dist = dist::dist();
        let tmp = tempfile::tempdir().expect("temporary directory");
        let tls_dir = tmp.path().join("tls");
        fs::create_dir_all(&tls_dir).expect("tls directory");
        fs::write(tls_dir.join(tls::CA_CERT), &material.ca_cert).expect("ca.crt");
        fs::write(tls_dir.join(tls::CERT), &material.cert).expect("tls.crt");
        fs::write(tls_dir.join(tls::KEY), &material.key).expect("tls.key");
        // start-zookeeper's key store: the key, then the certificate.
        let keystore = tls_dir.join("keystore.pem");
        fs::write(&keystore, format!("{}{}", material.key, material.cert)).expect("keystore");
        let dynamic: String = (0..MEMBERS)
            .map(|j| {
                let h = host(j);
                format!(
                    "server.{}={h}:{PEER}:{ELECTION}:participant;{h}:{PLAIN}\n",
                    j + 1
                )
            })
            .collect();
        let mut members = Vec::new();
        for i in 0..MEMBERS {
            let h = host(i);
            for port in [SECURE, PLAIN, PEER, ELECTION] {
                if let Err(e) = std::net::TcpListener::bind((h.as_str(), port)) {
                    panic!("{h}:{port} is taken ({e}); stop what listens there");
                }
            }
            let dir = tmp.path().join(format!("zk-{i}"));
            let data = dir.join("data");
            fs::create_dir_all(&data).expect("data directory");
            fs::write(data.join("myid"), format!("{}\n", i + 1)).expect("myid");
            let dynamic_file = dir.join("zoo.cfg.dynamic.0");
            fs::write(&dynamic_file, &dynamic).expect("dynamic file");
            let mut cfg = format!(
                "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={PLAIN}\n\
                 admin.enableServer=false\nreconfigEnabled=true\nstandaloneEnabled=false\n\
                 dynamicConfigFile={}\n",
                data.display(),
                dynamic_file.display()
            );
            cfg.push_str(&tls_config(&h, &tls_dir, &keystore, "need"));
            fs::write(dir.join("zoo.cfg"), cfg).expect("zoo.cfg");
            let log = dir.join("zookeeper.log");
            let out = fs::File::create(&log).expect("log");
            let child = Command::new("java")
                .args([
                    "-Xmx128m",
                    "-XX:+UseSerialGC",
                    "-XX:TieredStopAtLevel=1",
                    "-Dzookeeper.console.threshold=INFO",
                    &format!("-Dzookeeper.4lw.commands.whitelist={WHITELIST}"),
                    &user.server_flag(),
                ])
                .arg("-cp")
                .arg(dist::classpath(&dist))
                .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
                .arg(dir.join("zoo.cfg"))
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("log handle"))
                .stderr(out)
                .spawn()
                .expect("start java");
            members.push((child, log));
        }
        Self { members, _tmp: tmp }
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .map(|(_, log)| {
                format!(
                    "--- {}\n{}",
                    log.display(),
                    fs::read_to_string(log).unwrap_or_default()
                )
            })
            .collect()
    }

    fn tail(&self) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().rev().take(60).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

fn tls_addresses(tls: &ClientTls) -> Vec<(Ordinal, MemberAddress)> {
    (0..MEMBERS)
        .map(|i| {
            (
                Ordinal(i as u32),
                MemberAddress::new(host(i), SECURE).with_tls(tls.clone()),
            )
        })
        .collect()
}

fn connect_string() -> String {
    (0..MEMBERS)
        .map(|i| format!("{}:{SECURE}", host(i)))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_ensemble_forms_serves_tls_clients_only_and_the_operator_speaks_tls() {
    let zk: ZookeeperCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
        "kind": "ZookeeperCluster",
        "metadata": {"name": "zk", "namespace": "tls-test"},
        "spec": {"tls": {"enabled": true, "mutual": true}},
    }))
    .unwrap();
    // Everything but the TLS switch, which the operator refuses until it serves it end to end.
    let mut plain = zk.clone();
    plain.spec.tls = Default::default();
    let mut v = validate(&plain).unwrap();
    v.spec.tls = zk.spec.tls.clone();
    let extra: Vec<String> = (0..MEMBERS).map(host).collect();
    let material = tls::issue(&v, &extra, time::OffsetDateTime::now_utc()).expect("material");
    let operator = ClientTls::of(&material, true).expect("the operator's TLS client");
    let user = SuperUser::new("tls-test-secret");

    let started = Instant::now();
    let ens = Ensemble::start(&material, &user);
    let config = ProbeConfig {
        timeout: Duration::from_secs(3),
        concurrency: MEMBERS,
    };

    // The operator's four-letter words, over TLS with its client certificate.
    let deadline = Instant::now() + Duration::from_secs(90);
    let probes = loop {
        let probes = probe_ensemble(tls_addresses(&operator), config).await;
        let modes: Vec<_> = probes
            .iter()
            .filter_map(|p| p.srvr.serving().map(|s| s.mode))
            .collect();
        let leaders = modes.iter().filter(|m| **m == Mode::Leader).count();
        let followers = modes.iter().filter(|m| **m == Mode::Follower).count();
        if leaders == 1 && followers == MEMBERS - 1 {
            break probes;
        }
        assert!(
            Instant::now() < deadline,
            "no TLS quorum within 90 s: {probes:?}\n{}",
            ens.tail()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!(
        "FIGURE tls ensemble serving over TLS {:.1} s after the JVMs started",
        started.elapsed().as_secs_f64()
    );
    let leader = probes
        .iter()
        .find(|p| p.srvr.serving().is_some_and(|s| s.mode == Mode::Leader))
        .unwrap();
    let synced = leader
        .mntr
        .as_ref()
        .and_then(|m| m.serving())
        .and_then(|m| m.synced_followers());
    assert_eq!(synced, Some(2), "leader's mntr over TLS: {leader:?}");

    // The quorum runs over TLS.
    let logs = ens.logs();
    assert_eq!(
        logs.matches("Using TLS encrypted quorum communication")
            .count(),
        MEMBERS,
        "{}",
        ens.tail()
    );
    assert!(logs.contains("SSL handshake complete"), "{}", ens.tail());

    // Four-letter words without TLS, or with TLS but no client certificate, get no answer.
    let plain = probe_ensemble(
        (0..MEMBERS).map(|i| (Ordinal(i as u32), MemberAddress::new(host(i), SECURE))),
        config,
    )
    .await;
    assert!(
        plain.iter().all(|p| p.srvr.serving().is_none()),
        "{plain:?}"
    );
    let anonymous = ClientTls::of(&material, false).unwrap();
    let no_cert = probe_ensemble(tls_addresses(&anonymous), config).await;
    assert!(
        no_cert.iter().all(|p| p.srvr.serving().is_none()),
        "mutual TLS must refuse a client without a certificate: {no_cert:?}"
    );
    // A CA of another cluster is not trusted by the operator's client.
    let stranger = tls::issue(&v, &extra, time::OffsetDateTime::now_utc()).unwrap();
    let wrong_ca = ClientTls::of(&stranger, true).unwrap();
    let out = probe_ensemble(tls_addresses(&wrong_ca), config).await;
    assert!(
        out.iter()
            .all(|p| matches!(&p.srvr, Outcome::Other(e) if e.contains("TLS handshake"))),
        "{out:?}"
    );

    // A TLS client with the cluster's certificate writes and reads.
    let client = Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_tls(operator.zookeeper_options().unwrap())
        .secure_connect(&connect_string())
        .await
        .expect("TLS session");
    client
        .create(
            "/tls-proof",
            b"over tls",
            &CreateMode::Persistent.with_acls(Acls::anyone_all()),
        )
        .await
        .expect("create over TLS");
    let (data, _) = client.get_data("/tls-proof").await.expect("read over TLS");
    assert_eq!(data, b"over tls");

    // X.509 identities: the certificates the operator issues for `spec.tls.clientCertificates`
    // make ZooKeeper authenticate a session as `x509:CN=<name>`, which ACLs name.
    let now = time::OffsetDateTime::now_utc();
    let alice = x509_session(&tls::issue_client(&material, "alice", now).unwrap()).await;
    let bob = x509_session(&tls::issue_client(&material, "bob", now).unwrap()).await;
    let alice_id = AuthId::new("x509", &tls::client_acl_id("alice"));
    let only_alice = [Acl::new(Permission::ALL, alice_id.clone())];
    alice
        .create(
            "/alice-only",
            b"alice's",
            &CreateMode::Persistent.with_acls(Acls::new(&only_alice)),
        )
        .await
        .expect("alice creates a znode only x509:CN=alice may use");
    let (acl, _) = alice
        .get_acl("/alice-only")
        .await
        .expect("alice reads its ACL");
    assert_eq!(acl, only_alice, "the ACL as ZooKeeper stored it");
    let (data, _) = alice.get_data("/alice-only").await.expect("alice reads");
    assert_eq!(data, b"alice's");
    assert_eq!(
        bob.get_data("/alice-only").await.unwrap_err(),
        zookeeper_client::Error::NoAuth,
        "bob's certificate must not read alice's znode"
    );
    assert_eq!(
        bob.set_data("/alice-only", b"bob's", None)
            .await
            .unwrap_err(),
        zookeeper_client::Error::NoAuth
    );
    // The members' certificate (the operator's identity) is not alice either.
    assert_eq!(
        client.get_data("/alice-only").await.unwrap_err(),
        zookeeper_client::Error::NoAuth
    );
    // A certificate for "alice" from another cluster's CA gets no session at all.
    let impostor = tls::issue_client(&stranger, "alice", now).unwrap();
    let impostor_session = tokio::time::timeout(
        Duration::from_secs(8),
        Client::connector()
            .with_session_timeout(Duration::from_secs(4))
            .with_fail_eagerly()
            .with_tls(client_tls(&impostor).zookeeper_options().unwrap())
            .secure_connect(&connect_string()),
    )
    .await;
    assert!(
        !matches!(impostor_session, Ok(Ok(_))),
        "a certificate of another CA got a session"
    );
    let logs = ens.logs();
    assert!(
        logs.contains("Authenticated Id 'CN=alice' for scheme 'x509'"),
        "{}",
        ens.tail()
    );

    // A plaintext client on the secure port gets no session.
    let plain_session = tokio::time::timeout(
        Duration::from_secs(8),
        Client::connector()
            .with_session_timeout(Duration::from_secs(4))
            .with_fail_eagerly()
            .connect(&connect_string()),
    )
    .await;
    assert!(
        !matches!(plain_session, Ok(Ok(_))),
        "a plaintext client got a session on the TLS port"
    );

    // The operator's reconfiguration over TLS: remove server 3, add it back. A change that
    // moves the leader may end the session that sent it; as the controller does, the step is
    // then checked against the configuration read again over a new session.
    let before = reconfigure(&user, &operator, None).await;
    assert_eq!(before.voters().len(), MEMBERS);
    let three = before.servers[&ServerId(3)].clone();
    let smaller = reconfigure(&user, &operator, Some(MembershipStep::Remove(ServerId(3)))).await;
    assert_eq!(smaller.voters().len(), MEMBERS - 1, "{smaller:?}");
    let again = reconfigure(&user, &operator, Some(MembershipStep::Add(three))).await;
    assert_eq!(again.voters().len(), MEMBERS, "{again:?}");
    let member = MemberAddress::new(host(0), SECURE).with_tls(operator.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match member_config_version(&member, Duration::from_secs(5)).await {
            Ok(v) if v == again.version => break,
            other => assert!(
                Instant::now() < deadline,
                "member 1's configuration over TLS: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The client side of a client certificate: the cluster's CA, the certificate as identity.
fn client_tls(c: &ClientMaterial) -> ClientTls {
    ClientTls::new(&c.ca_cert, Some((&c.cert, &c.key))).expect("client certificate")
}

/// A TLS session presenting client certificate `c`.
async fn x509_session(c: &ClientMaterial) -> Client {
    Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_tls(client_tls(c).zookeeper_options().unwrap())
        .secure_connect(&connect_string())
        .await
        .expect("a TLS session with a client certificate")
}

/// Reads the committed configuration over TLS through members 1 and 2 (the ones that stay) and,
/// with a `step`, applies it unless the configuration already shows it; retries for 30 s.
async fn reconfigure(
    user: &SuperUser,
    tls: &ClientTls,
    step: Option<MembershipStep>,
) -> zookeeper_operator::membership::CommittedConfig {
    let stay = format!("{}:{SECURE},{}:{SECURE}", host(0), host(1));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = async {
            let r =
                Reconfigurer::connect_over(&stay, user, Duration::from_secs(10), Some(tls)).await?;
            let committed = r.committed().await?;
            let done = match &step {
                None => true,
                Some(MembershipStep::Remove(id)) => !committed.servers.contains_key(id),
                Some(MembershipStep::Add(s)) => committed.servers.contains_key(&s.id),
                Some(other) => panic!("not a change: {other:?}"),
            };
            match &step {
                Some(step) if !done => r.apply(step, committed.version).await,
                _ => Ok(committed),
            }
        };
        match attempt.await {
            Ok(committed) if step.is_none() => return committed,
            // Applied: read back (the answer of a lost session is not trusted).
            Ok(_) => {
                let r = Reconfigurer::connect_over(&stay, user, Duration::from_secs(10), Some(tls))
                    .await;
                if let Ok(r) = r
                    && let Ok(committed) = r.committed().await
                {
                    return committed;
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("reconfiguration over TLS ({step:?}) did not succeed within 30 s: {last}");
}
