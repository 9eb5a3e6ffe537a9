//! TLS on real parts: a 3-member ZooKeeper ensemble whose TLS settings are the `zoo.cfg` lines
//! `start-zookeeper --tls_dir` writes, with a CA and certificate made by the operator's own
//! code (`tls::issue`), mutual TLS on. The quorum forms over TLS; a TLS client with the cluster's
//! certificate writes and reads; clients without TLS, or without a client certificate, are
//! refused on the secure port; client certificates the operator issues (`tls::issue_client`)
//! authenticate sessions as `x509:CN=<name>`, so an ACL naming one admits it and refuses another
//! (and a certificate of another CA gets no session); the operator's four-letter words and its
//! reconfiguration client (remove a server, add it back) work over TLS. A second ensemble
//! (127.0.0.21-127.0.0.23) goes through a CA rotation as `tls::plan` phases it, one member
//! restart at a time, without losing its quorum or a write.
//!
//! Needs Java and the jars of `e2e/lib/zookeeper-dist.sh`; fails (never skips) without them.
//! Members listen on 127.0.0.1-127.0.0.3, ports 21900 (TLS client), 21901 (plaintext client),
//! 21902 (quorum) and 21903 (election).

#[path = "support/dist.rs"]
mod dist;
#[path = "support/issued.rs"]
mod issued;

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
    // The TLS lines proper and the stores they share with the steps of turning TLS on.
    let function = |name: &str| {
        script
            .split_once(&format!("{name}() {{"))
            .and_then(|(_, rest)| rest.split_once("\n}"))
            .unwrap_or_else(|| panic!("start-zookeeper defines {name}()"))
            .0
            .to_string()
    };
    let body = function("tls_config") + &function("tls_stores");
    // The trust store as the script makes it (a PKCS12 one while ca.crt holds several CAs).
    let made = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "fail() {{ echo \"$*\" >&2; exit 1; }}\ntls_truststore() {{{}\n}}\n\
             tls_truststore \"$1\" \"$2\"\n\
             printf '%s\\n' \"$TLS_TRUSTSTORE\" \"$TLS_TRUSTSTORE_TYPE\" \"$TLS_TRUSTSTORE_PASSWORD\"",
            function("tls_truststore")
        ))
        .arg("tls_truststore")
        .arg(tls_dir.join(tls::CA_CERT))
        .arg(keystore.parent().expect("the key store's directory"))
        .output()
        .expect("run bash");
    assert!(
        made.status.success(),
        "tls_truststore failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let made = String::from_utf8(made.stdout).expect("tls_truststore's output");
    let store: Vec<&str> = made.lines().collect();
    let (truststore, truststore_type, password) =
        (store[0], store[1], store.get(2).copied().unwrap_or(""));
    let mut lines = String::new();
    for line in body.lines() {
        let line = line.trim();
        let entry = match line.strip_prefix("[[ -z $TLS_TRUSTSTORE_PASSWORD ]] || echo \"") {
            Some(_) if password.is_empty() => continue,
            Some(entry) => entry,
            None => match line.strip_prefix("echo \"") {
                Some(entry) => entry,
                None => continue,
            },
        };
        let entry = entry
            .trim_end_matches('"')
            .replace("$TLS_TRUSTSTORE_PASSWORD", password)
            .replace("$TLS_TRUSTSTORE_TYPE", truststore_type)
            .replace("$TLS_TRUSTSTORE", truststore)
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
        "ssl.quorum.trustStore.type=",
        "ssl.clientAuth=",
    ] {
        assert!(
            lines.contains(key),
            "start-zookeeper no longer writes {key}: {lines}"
        );
    }
    lines
}

/// A member's JVM on `cfg`, its output appended to `log`.
fn java_member(cfg: &Path, log: &Path, user: &SuperUser) -> Child {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    Command::new("java")
        .args([
            "-Xmx128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dzookeeper.console.threshold=INFO",
            &format!("-Dzookeeper.4lw.commands.whitelist={WHITELIST}"),
            &user.server_flag(),
        ])
        .arg("-cp")
        .arg(dist::classpath(&dist::dist()))
        .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log handle"))
        .stderr(out)
        .spawn()
        .expect("start java")
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
            let child = java_member(&dir.join("zoo.cfg"), &log, user);
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

/// Members of the CA-rotation ensemble: their own addresses, beside the other test's.
fn rotation_host(i: usize) -> String {
    format!("127.0.0.{}", i + 21)
}

/// One member of the rotation ensemble: its directory (the data survives restarts, as a
/// member's volume does), its log and its JVM.
struct RotatingMember {
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Drop for RotatingMember {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl RotatingMember {
    /// (Re)starts the member with `material` (a new TLS directory each time, as a restarted
    /// pod mounts the Secret's current content).
    fn start(&mut self, i: usize, material: &Material, generation: usize, user: &SuperUser) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let h = rotation_host(i);
        let tls_dir = self.dir.join(format!("tls-{generation}"));
        fs::create_dir_all(&tls_dir).unwrap();
        fs::write(tls_dir.join(tls::CA_CERT), &material.ca_cert).unwrap();
        fs::write(tls_dir.join(tls::CERT), &material.cert).unwrap();
        fs::write(tls_dir.join(tls::KEY), &material.key).unwrap();
        let keystore = tls_dir.join("keystore.pem");
        fs::write(&keystore, format!("{}{}", material.key, material.cert)).unwrap();
        let data = self.dir.join("data");
        if !data.exists() {
            fs::create_dir_all(&data).unwrap();
            fs::write(data.join("myid"), format!("{}\n", i + 1)).unwrap();
            let dynamic: String = (0..MEMBERS)
                .map(|j| {
                    let h = rotation_host(j);
                    format!(
                        "server.{}={h}:{PEER}:{ELECTION}:participant;{h}:{PLAIN}\n",
                        j + 1
                    )
                })
                .collect();
            fs::write(self.dir.join("zoo.cfg.dynamic.0"), dynamic).unwrap();
        }
        let mut cfg = format!(
            "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={PLAIN}\n\
             admin.enableServer=false\nreconfigEnabled=true\nstandaloneEnabled=false\n\
             dynamicConfigFile={}\n",
            data.display(),
            self.dir.join("zoo.cfg.dynamic.0").display()
        );
        cfg.push_str(&tls_config(&h, &tls_dir, &keystore, "need"));
        let cfg_path = self.dir.join(format!("zoo-{generation}.cfg"));
        fs::write(&cfg_path, cfg).unwrap();
        self.child = Some(java_member(&cfg_path, &self.log, user));
    }
}

/// A CA rotation on real parts: the three materials `tls::plan` hands out for a rotation
/// (trust both CAs; the new CA signs; the new CA alone) reach a running 3-member mutual-TLS
/// ensemble one member at a time, as the operator's rolls do. Before every restart the other two
/// serve and after it all three do, each restarted member having rejoined over TLS with peers of
/// the neighbouring phase; a session with the operator's current identity writes at every step
/// and every earlier write is still there; at the end a certificate of the old CA is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rotation_rolls_a_running_ensemble_without_losing_its_quorum() {
    let _one_at_a_time = ROTATION_HOSTS.lock().await;
    let zk: ZookeeperCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
        "kind": "ZookeeperCluster",
        "metadata": {"name": "zk", "namespace": "rotation-test"},
        "spec": {"tls": {"enabled": true, "mutual": true}},
    }))
    .unwrap();
    let v = validate(&zk).unwrap();
    let extra: Vec<String> = (0..MEMBERS).map(rotation_host).collect();
    let now = time::OffsetDateTime::now_utc();
    // The members' certificate must name 127.0.0.21-23 (the probes below address the members
    // by IP): issued with those SANs, and reissued with them when the planner's phase reissues
    // (the planner itself names the cluster's DNS names only).
    let steady = tls::Managed::steady(tls::issue(&v, &extra, now).unwrap());
    // The operator's planner through the rotation: the material of each phase.
    let mut current = steady.clone();
    let request = Some("rotate-1");
    let mut phases = Vec::new();
    for phase in ["trust both CAs", "the new CA signs", "the new CA alone"] {
        let secret = tls::managed_secret_object(&v, &current, None);
        let hash = tls::material_hash(&current.material);
        let mut next = tls::plan(&v, Some(&secret), now, request, Some(&hash))
            .unwrap()
            .unwrap_or_else(|| panic!("{phase}: the planner did not move on"));
        if next.material.cert != current.material.cert {
            // Reissued (the new CA signs): with the test's addresses as SANs too.
            let issuer = next.material.issuer().to_string();
            let signing = next.material.ca_key.clone().unwrap();
            let trust = next.material.ca_cert.clone();
            next.material = tls::reissue_trusting(
                &v,
                &trust,
                (issuer != trust).then_some(issuer.as_str()),
                &signing,
                &extra,
                now,
            )
            .unwrap();
        }
        phases.push((phase, next.material.clone()));
        current = next;
    }
    assert_eq!(current.rotation, None);
    assert_eq!(
        current
            .material
            .ca_cert
            .matches("BEGIN CERTIFICATE")
            .count(),
        1
    );
    assert!(!current.material.ca_cert.contains(&steady.material.ca_cert));
    change_ca_on_real_members("CA rotation", &steady.material, &phases).await;
}

/// Members of the CA-changing ensembles (127.0.0.21-23) serve one test at a time.
static ROTATION_HOSTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A change of CA rolled through a running 3-member mutual-TLS ensemble: from `steady`, each
/// of `phases` reaches the members one at a time, as the operator's rolls do. Before every
/// restart the other two serve and after it all three do, each restarted member having rejoined
/// over TLS with peers of the neighbouring phase; a session with the operator's identity of the
/// phase writes at every step and every earlier write is still there; at the end a certificate
/// of the old CA is refused.
async fn change_ca_on_real_members(label: &str, steady: &Material, phases: &[(&str, Material)]) {
    let user = SuperUser::new("rotation-test-secret");
    let tmp = tempfile::tempdir().unwrap();
    let mut members: Vec<RotatingMember> = (0..MEMBERS)
        .map(|i| {
            let dir = tmp.path().join(format!("zk-{i}"));
            fs::create_dir_all(&dir).unwrap();
            RotatingMember {
                log: dir.join("zookeeper.log"),
                dir,
                child: None,
            }
        })
        .collect();
    for (i, m) in members.iter_mut().enumerate() {
        m.start(i, steady, 0, &user);
    }
    let log_paths: Vec<PathBuf> = members.iter().map(|m| m.log.clone()).collect();
    let logs = |paths: &[PathBuf]| -> String {
        paths
            .iter()
            .map(|p| fs::read_to_string(p).unwrap_or_default())
            .collect::<String>()
            .lines()
            .rev()
            .take(80)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    };
    let config = ProbeConfig {
        timeout: Duration::from_secs(3),
        concurrency: MEMBERS,
    };
    // Serving members, probed with the operator's identity of `material`.
    let serving = |material: &Material, which: Vec<usize>| {
        let operator = ClientTls::of(material, true).unwrap();
        async move {
            let addresses = which.iter().map(|&i| {
                (
                    Ordinal(i as u32),
                    MemberAddress::new(rotation_host(i), SECURE).with_tls(operator.clone()),
                )
            });
            probe_ensemble(addresses, config)
                .await
                .iter()
                .filter_map(|p| p.srvr.serving().map(|s| s.mode))
                .collect::<Vec<_>>()
        }
    };
    let wait_serving = |material: Material, which: Vec<usize>, what: String| {
        let paths = &log_paths;
        async move {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let modes = serving(&material, which.clone()).await;
                if modes.len() == which.len() && modes.contains(&Mode::Leader) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: {modes:?}\n{}",
                    logs(paths)
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    wait_serving(
        steady.clone(),
        vec![0, 1, 2],
        "the ensemble did not form".into(),
    )
    .await;
    let connect: String = (0..MEMBERS)
        .map(|i| format!("{}:{SECURE}", rotation_host(i)))
        .collect::<Vec<_>>()
        .join(",");
    let write = |material: &Material, step: usize| {
        let tls = ClientTls::of(material, true).unwrap();
        let connect = connect.clone();
        async move {
            let client = Client::connector()
                .with_session_timeout(Duration::from_secs(10))
                .with_tls(tls.zookeeper_options().unwrap())
                .secure_connect(&connect)
                .await
                .unwrap_or_else(|e| panic!("a session at step {step}: {e}"));
            client
                .create(
                    &format!("/rotation-{step}"),
                    b"kept",
                    &CreateMode::Persistent.with_acls(Acls::anyone_all()),
                )
                .await
                .unwrap_or_else(|e| panic!("a write at step {step}: {e}"));
            for earlier in 0..=step {
                client
                    .get_data(&format!("/rotation-{earlier}"))
                    .await
                    .unwrap_or_else(|e| panic!("write {earlier} lost by step {step}: {e}"));
            }
        }
    };
    write(steady, 0).await;

    let mut current = steady.clone();
    let mut step = 0;
    let started = Instant::now();
    for (phase, next) in phases {
        for i in [0, 1, 2] {
            let others: Vec<usize> = (0..MEMBERS).filter(|&j| j != i).collect();
            step += 1;
            members[i].start(i, next, step, &user);
            // The two others keep the quorum while this one restarts ...
            wait_serving(
                current.clone(),
                others,
                format!("{phase}: quorum lost while member {i} restarted"),
            )
            .await;
            // ... and it rejoins with peers of the neighbouring phase.
            wait_serving(
                next.clone(),
                vec![0, 1, 2],
                format!("{phase}: member {i} did not rejoin"),
            )
            .await;
            write(next, step).await;
        }
        current = next.clone();
    }
    eprintln!(
        "FIGURE {label}: {} rolls of 3 members on bare processes in {:.1} s",
        phases.len(),
        started.elapsed().as_secs_f64()
    );
    // The old CA's certificate is no longer accepted.
    let old = ClientTls::of(steady, true).unwrap();
    let probes = probe_ensemble(
        (0..MEMBERS).map(|i| {
            (
                Ordinal(i as u32),
                MemberAddress::new(rotation_host(i), SECURE).with_tls(old.clone()),
            )
        }),
        config,
    )
    .await;
    assert!(
        probes.iter().all(|p| p.srvr.serving().is_none()),
        "the old CA is still trusted: {probes:?}"
    );
}

/// The change cert-manager makes when an Issuer's CA is renewed with a new key and the same
/// name, bridged by `tls::bridge::plan` on real members: ZooKeeper's PEM trust store would keep
/// only one of two CAs of one name, so while the members trust both the script builds a PKCS12
/// trust store with an entry per CA; the quorum holds through all three rolls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_ca_of_the_same_name_from_an_issuer_is_bridged_without_losing_the_quorum() {
    use tls::bridge;
    let _one_at_a_time = ROTATION_HOSTS.lock().await;
    let zk: ZookeeperCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
        "kind": "ZookeeperCluster",
        "metadata": {"name": "zk", "namespace": "rotation-test"},
        "spec": {"tls": {"enabled": true, "mutual": true, "issuerRef": {"name": "team-ca"}}},
    }))
    .unwrap();
    let v = validate(&zk).unwrap();
    let extra: Vec<String> = (0..MEMBERS).map(rotation_host).collect();
    // Two CAs named alike, as a CA Certificate renewed by cert-manager is; and what the Issuer
    // writes for the members with each: ca.crt, tls.crt, tls.key.
    let issued = || issued::issued_by_a_ca_named(&v, "team-ca", &extra);
    let (old, new) = (issued(), issued());
    assert_ne!(old.ca_cert, new.ca_cert);
    let mut secret =
        bridge::members_secret_object(&v, &bridge::plan(None, &old, None).unwrap(), None);
    let mut phases = Vec::new();
    for phase in [
        "trust both CAs",
        "the new CA's certificate",
        "the new CA alone",
    ] {
        let current = bridge::read_members(&secret).unwrap();
        let hash = tls::material_hash(&current.material);
        let next = bridge::plan(Some(&secret), &new, Some(&hash))
            .unwrap_or_else(|| panic!("{phase}: the bridge did not move on"));
        phases.push((phase, next.material.clone()));
        secret = bridge::members_secret_object(&v, &next, None);
    }
    assert_eq!(
        bridge::certificates(&phases[0].1.ca_cert).len(),
        2,
        "both trusted"
    );
    assert_eq!(phases[2].1, new, "cert-manager's material at the end");
    change_ca_on_real_members("same-named CA change from an Issuer", &old, &phases).await;
}
