//! SASL client authentication on real parts: a 3-member ZooKeeper ensemble started with exactly
//! what `start-zookeeper --client_auth_dir ... --super_user zookeeper-operator` generates (the
//! script itself runs, with a stand-in `java` that records its command line and a stand-in
//! `hostname`; the recorded command line then starts the real JVM). A client with a valid user
//! and password writes and reads; clients without credentials, with a wrong password, or with
//! the digest super user only are refused; the operator's own user (its password derived by
//! `SuperKey::operator_login`) reads the configuration and removes and adds back a server with
//! `reconfig`; four-letter words still answer without any login; ZooKeeper's own Java CLI with a
//! JAAS `Client` section reads. Then the same ensemble with `--tls_dir` too: the operator's
//! sessions (reading the configuration, a member's version, the reconfiguration session) speak
//! TLS and log in, a TLS client with a login writes and one without is refused.
//!
//! Quorum SASL (`--quorum_auth_dir`, with mutual TLS): a member with a wrong password is kept
//! out of the quorum, with the right one it joins; client certificates still work beside it.
//!
//! The script's refusals (bad passwords, duplicate users, a super user that is no user, a
//! missing or unusable quorum password) run without a JVM.
//!
//! Needs Java and the jars of `e2e/lib/zookeeper-dist.sh`; fails (never skips) without them.
//! Members listen on 127.0.0.6-127.0.0.8 (the quorum SASL ensemble on 127.0.0.11-127.0.0.13),
//! ports 22000 (TLS client), 22001 (client), 22002 (quorum) and 22003 (election).

#[path = "support/dist.rs"]
mod dist;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use zookeeper_client::{Acls, Client, CreateMode};
use zookeeper_operator::controller::membership::{NetworkZookeeper, SuperKey, Zookeeper};
use zookeeper_operator::crd::ZookeeperCluster;
use zookeeper_operator::health::{
    MemberAddress, Mode, Ordinal, ProbeConfig, WHITELIST, probe_ensemble,
};
use zookeeper_operator::membership::{CommittedConfig, MembershipStep, ServerId};
use zookeeper_operator::names::OPERATOR_USER;
use zookeeper_operator::reconfig::{Reconfigurer, SaslLogin, SuperUser, member_config_version};
use zookeeper_operator::tls::{self, ClientTls, Material};
use zookeeper_operator::validate::validate;

const MEMBERS: usize = 3;
const SECURE: u16 = 22000;
const CLIENT: u16 = 22001;
const PEER: u16 = 22002;
const ELECTION: u16 = 22003;

/// A password with everything a JAAS file must escape or must not expand.
const ALICE_PASSWORD: &str = r#"a"quote\back${user.home}slash"#;

fn host(i: usize) -> String {
    format!("127.0.0.{}", i + 6)
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/images/zookeeper/start-zookeeper")
}

fn executable(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Stand-ins: `hostname` answers `zk-<i>` (the pod's name) and `java` records its arguments,
/// one a line, in $ZK_TEST_ARGS.
fn stand_ins(bin: &Path, ordinal: usize) {
    fs::create_dir_all(bin).unwrap();
    executable(
        &bin.join("hostname"),
        &format!("[ \"$1\" = -s ] && echo zk-{ordinal} || echo zk-hs.test.svc.cluster.local\n"),
    );
    executable(
        &bin.join("java"),
        "printf '%s\\n' \"$@\" > \"$ZK_TEST_ARGS\"\n",
    );
}

fn users(dir: &Path, users: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    for (user, password) in users {
        fs::write(dir.join(user), password).unwrap();
    }
}

/// Runs start-zookeeper for member `ordinal` under `root` with `extra` flags and the stand-ins;
/// returns its output and the recorded java arguments.
fn run_script(
    root: &Path,
    ordinal: usize,
    membership: &Path,
    extra: &[String],
) -> (Output, Vec<String>) {
    let bin = root.join("bin");
    stand_ins(&bin, ordinal);
    let conf = root.join("conf");
    let args_file = conf.join("java-args");
    let out = Command::new("bash")
        .arg(script())
        .args([
            format!("--membership_file={}", membership.display()),
            format!("--data_dir={}", root.join("data").display()),
            format!("--data_log_dir={}", root.join("data/log").display()),
            format!("--conf_dir={}", conf.display()),
            format!("--client_port={CLIENT}"),
            format!("--server_port={PEER}"),
            format!("--election_port={ELECTION}"),
            "--heap=128M".to_string(),
        ])
        .args(extra)
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("JAVA", bin.join("java"))
        .env("ZK_TEST_ARGS", &args_file)
        .env("ZK_HOME", dist::dist())
        .env("CLIENT_AUTH_WORK_DIR", root.join("auth"))
        .env("TLS_WORK_DIR", root.join("tls-work"))
        .env(
            "SERVER_JVMFLAGS",
            format!("-Dzookeeper.4lw.commands.whitelist={WHITELIST}"),
        )
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    let args = fs::read_to_string(&args_file)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default();
    (out, args)
}

fn auth_flags(users_dir: &Path, operator_dir: &Path) -> Vec<String> {
    vec![
        format!("--client_auth_dir={}", users_dir.display()),
        format!("--client_auth_dir={}", operator_dir.display()),
        format!("--super_user={OPERATOR_USER}"),
    ]
}

/// A temporary directory the script's uid 1000 (when the test runs as root) can traverse.
fn tempdir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temporary directory");
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}

fn one_member(tmp: &Path) -> PathBuf {
    let membership = tmp.join("members/boot.cfg");
    fs::create_dir_all(membership.parent().unwrap()).unwrap();
    fs::write(
        &membership,
        format!(
            "server.1={h}:{PEER}:{ELECTION}:participant;{h}:{CLIENT}\n",
            h = host(0)
        ),
    )
    .unwrap();
    membership
}

#[test]
fn the_script_writes_the_jaas_file_zoo_cfg_lines_and_java_flags() {
    let tmp = tempdir();
    let membership = one_member(tmp.path());
    let (users_dir, operator_dir) = (tmp.path().join("users"), tmp.path().join("operator"));
    users(
        &users_dir,
        &[("alice", ALICE_PASSWORD), ("bob.b-2_x", "pw")],
    );
    users(&operator_dir, &[(OPERATOR_USER, "operator-pw")]);
    // A Secret volume's own entries are not users.
    fs::create_dir_all(users_dir.join("..2026_11_30")).unwrap();
    let root = tmp.path().join("zk-0");
    let (out, args) = run_script(
        &root,
        0,
        &membership,
        &auth_flags(&users_dir, &operator_dir),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let jaas_path = root.join("auth/jaas.conf");
    let jaas = fs::read_to_string(&jaas_path).unwrap();
    assert_eq!(
        jaas,
        "Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  \
         user_alice=\"a\\\"quote\\\\back${user.home}slash\"\n  user_bob.b-2_x=\"pw\"\n  \
         user_zookeeper-operator=\"operator-pw\"\n  ;\n};\n"
    );
    let mode = fs::metadata(&jaas_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the JAAS file holds passwords");
    assert!(
        !stderr.contains("operator-pw"),
        "a password reached the log"
    );
    let cfg = fs::read_to_string(root.join("conf/zoo.cfg")).unwrap();
    for line in [
        "authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
        "enforce.auth.enabled=true",
        "enforce.auth.schemes=sasl",
    ] {
        assert!(cfg.lines().any(|l| l == line), "{line} missing:\n{cfg}");
    }
    assert!(args.contains(&format!(
        "-Djava.security.auth.login.config={}",
        jaas_path.display()
    )));
    assert!(args.contains(&format!("-Dzookeeper.superUser={OPERATOR_USER}")));
    let security = fs::read_to_string(root.join("conf/dns.security")).unwrap();
    assert!(
        security.contains("policy.expandProperties=false"),
        "{security}"
    );

    // Without the flags: no SASL at all.
    let plain = tmp.path().join("zk-plain");
    let (out, args) = run_script(&plain, 0, &membership, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = fs::read_to_string(plain.join("conf/zoo.cfg")).unwrap();
    assert!(
        !cfg.contains("enforce.auth") && !cfg.contains("authProvider"),
        "{cfg}"
    );
    assert!(
        !args
            .iter()
            .any(|a| a.contains("login.config") || a.contains("superUser"))
    );
}

#[test]
fn the_script_refuses_users_it_cannot_write_safely() {
    let tmp = tempdir();
    let membership = one_member(tmp.path());
    let operator_dir = tmp.path().join("operator");
    users(&operator_dir, &[(OPERATOR_USER, "operator-pw")]);
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("alice", "pw\n")], "has a line break"),
        (&[("alice", "")], "the password of 'alice' is empty"),
        (&[("a+b", "pw")], "user name 'a+b' must be letters"),
        (
            &[(OPERATOR_USER, "pw")],
            "user 'zookeeper-operator' is defined twice",
        ),
        (&[], ""),
    ];
    for (i, (defined, want)) in cases.iter().enumerate() {
        let users_dir = tmp.path().join(format!("users-{i}"));
        users(&users_dir, defined);
        let root = tmp.path().join(format!("zk-{i}"));
        let (out, _) = run_script(
            &root,
            0,
            &membership,
            &auth_flags(&users_dir, &operator_dir),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        if want.is_empty() {
            // An empty users' Secret still has the operator's user.
            assert!(out.status.success(), "{stderr}");
        } else {
            assert_eq!(out.status.code(), Some(2), "{defined:?}: {stderr}");
            assert!(
                stderr.contains(want),
                "{defined:?}: want {want:?} in {stderr}"
            );
            assert!(!root.join("auth/jaas.conf").exists());
        }
    }
    let users_dir = tmp.path().join("users-0");
    let root = tmp.path().join("zk-super");
    let (out, _) = run_script(
        &root,
        0,
        &membership,
        &[
            format!("--client_auth_dir={}", users_dir.display()),
            "--super_user=nobody".to_string(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let (out, _) = run_script(&root, 0, &membership, &["--super_user=x".to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--super_user needs --client_auth_dir"),
        "{stderr}"
    );
    // The quorum password: present, non-empty, one line.
    for (i, (password, want)) in [
        (None, "has no readable password file"),
        (Some(""), "the password is empty"),
        (Some("pw\n"), "the password has a line break"),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tmp.path().join(format!("quorum-{i}"));
        fs::create_dir_all(&dir).unwrap();
        if let Some(password) = password {
            fs::write(dir.join("password"), password).unwrap();
        }
        let root = tmp.path().join(format!("zk-quorum-{i}"));
        let (out, _) = run_script(
            &root,
            0,
            &membership,
            &[format!("--quorum_auth_dir={}", dir.display())],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(want), "want {want:?} in {stderr}");
        assert!(!root.join("auth/jaas.conf").exists());
    }
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
    /// Three members; with `tls`, also `--tls_dir` (secure port [`SECURE`]).
    fn start(operator: &SaslLogin, user: &SuperUser, tls: Option<&Material>) -> Self {
        let tmp = tempdir();
        let mut tls_flags = Vec::new();
        if let Some(material) = tls {
            let dir = tmp.path().join("tls");
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(tls::CA_CERT), &material.ca_cert).unwrap();
            fs::write(dir.join(tls::CERT), &material.cert).unwrap();
            fs::write(dir.join(tls::KEY), &material.key).unwrap();
            tls_flags = vec![
                format!("--tls_dir={}", dir.display()),
                format!("--secure_client_port={SECURE}"),
                "--tls_client_auth=none".to_string(),
            ];
        }
        let membership = tmp.path().join("members/boot.cfg");
        fs::create_dir_all(membership.parent().unwrap()).unwrap();
        let servers: String = (0..MEMBERS)
            .map(|j| {
                let h = host(j);
                format!(
                    "server.{}={h}:{PEER}:{ELECTION}:participant;{h}:{CLIENT}\n",
                    j + 1
                )
            })
            .collect();
        fs::write(&membership, servers).unwrap();
        let (users_dir, operator_dir) = (tmp.path().join("users"), tmp.path().join("operator"));
        users(
            &users_dir,
            &[("alice", ALICE_PASSWORD), ("bob", "bobs-password")],
        );
        users(&operator_dir, &[(&operator.user, operator.password())]);
        let mut members = Vec::new();
        for i in 0..MEMBERS {
            let h = host(i);
            for port in [SECURE, CLIENT, PEER, ELECTION] {
                if let Err(e) = std::net::TcpListener::bind((h.as_str(), port)) {
                    panic!("{h}:{port} is taken ({e}); stop what listens there");
                }
            }
            let root = tmp.path().join(format!("zk-{i}"));
            let mut flags = auth_flags(&users_dir, &operator_dir);
            flags.extend(tls_flags.iter().cloned());
            let (child, log, cfg) = spawn_member(&root, i, &h, &membership, &flags, user);
            assert!(cfg.contains("enforce.auth.enabled=true"), "{cfg}");
            members.push((child, log));
        }
        Self { members, _tmp: tmp }
    }

    fn tail(&self) -> String {
        let logs: String = self
            .members
            .iter()
            .map(|(_, log)| {
                format!(
                    "--- {}\n{}",
                    log.display(),
                    fs::read_to_string(log).unwrap_or_default()
                )
            })
            .collect();
        let lines: Vec<&str> = logs.lines().rev().take(80).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// Runs start-zookeeper for member `ordinal` (address `h`) with `flags`, then the real JVM with
/// the command line it recorded; returns the JVM, its log and the `zoo.cfg` the script wrote.
fn spawn_member(
    root: &Path,
    ordinal: usize,
    h: &str,
    membership: &Path,
    flags: &[String],
    user: &SuperUser,
) -> (Child, PathBuf, String) {
    let (out, args) = run_script(root, ordinal, membership, flags);
    assert!(
        out.status.success(),
        "start-zookeeper: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // All members share one machine: the quorum ports bind the member's own address, not
    // every address (the script's quorumListenOnAllIPs is for pods); with TLS the client ports
    // too (the script binds the secure one on every address, the plaintext one on 127.0.0.1).
    let cfg_path = root.join("conf/zoo.cfg");
    let cfg = fs::read_to_string(&cfg_path).unwrap();
    fs::write(
        &cfg_path,
        cfg.replace("quorumListenOnAllIPs=true", "quorumListenOnAllIPs=false")
            .replace(
                "secureClientPortAddress=0.0.0.0",
                &format!("secureClientPortAddress={h}"),
            )
            .replace(
                "clientPortAddress=127.0.0.1",
                &format!("clientPortAddress={h}"),
            ),
    )
    .unwrap();
    assert_eq!(
        args.last(),
        Some(&cfg_path.display().to_string()),
        "{args:?}"
    );
    let log = root.join("zookeeper.log");
    let out = fs::File::create(&log).expect("log");
    // The recorded command line; the digest super user is what the operator renders into
    // SERVER_JVMFLAGS besides.
    let child = Command::new("java")
        .arg(user.server_flag())
        .arg("-XX:+UseSerialGC")
        .arg("-XX:TieredStopAtLevel=1")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log handle"))
        .stderr(out)
        .spawn()
        .expect("start java");
    (child, log, cfg)
}

fn connect_string() -> String {
    (0..MEMBERS)
        .map(|i| format!("{}:{CLIENT}", host(i)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A session as `login` (or none), proven by a first request: `Err` when the ensemble refused
/// the connection or closed it at that request.
async fn session_works(login: Option<&SaslLogin>) -> Result<Client, String> {
    let mut connector = Client::connector()
        .with_session_timeout(Duration::from_secs(6))
        .with_fail_eagerly();
    if let Some(login) = login {
        connector = connector.with_sasl(login.options());
    }
    let attempt = async {
        let client = connector
            .connect(&connect_string())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        client
            .get_children("/")
            .await
            .map_err(|e| format!("first request: {e}"))?;
        Ok(client)
    };
    tokio::time::timeout(Duration::from_secs(15), attempt)
        .await
        .unwrap_or_else(|_| Err("no answer within 15 s".to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ensemble_enforcing_sasl_serves_its_users_only_and_the_operator_still_reconfigures() {
    let key = SuperKey::new(b"client-auth-test-key-0123456789").unwrap();
    let operator = key.operator_login("cluster-uid");
    assert_eq!(operator.user, OPERATOR_USER);
    let user = key.user("cluster-uid").with_sasl(Some(operator.clone()));

    let started = Instant::now();
    let ens = Ensemble::start(&operator, &user, None);
    let config = ProbeConfig {
        timeout: Duration::from_secs(3),
        concurrency: MEMBERS,
    };
    // Four-letter words need no login.
    let addresses: Vec<_> = (0..MEMBERS)
        .map(|i| (Ordinal(i as u32), MemberAddress::new(host(i), CLIENT)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let probes = loop {
        let probes = probe_ensemble(addresses.clone(), config).await;
        let modes: Vec<_> = probes
            .iter()
            .filter_map(|p| p.srvr.serving().map(|s| s.mode))
            .collect();
        if modes.iter().filter(|m| **m == Mode::Leader).count() == 1
            && modes.iter().filter(|m| **m == Mode::Follower).count() == MEMBERS - 1
        {
            break probes;
        }
        assert!(
            Instant::now() < deadline,
            "no quorum within 90 s: {probes:?}\n{}",
            ens.tail()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!(
        "FIGURE client-auth ensemble serving {:.1} s after the JVMs started",
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
    assert_eq!(synced, Some(2), "leader's mntr without a login: {leader:?}");

    // A user with a valid password writes and reads (the password has a quote, a backslash
    // and a ${...} that must not be expanded).
    let alice = SaslLogin::new("alice", ALICE_PASSWORD);
    let client = session_works(Some(&alice))
        .await
        .unwrap_or_else(|e| panic!("alice: {e}\n{}", ens.tail()));
    client
        .create(
            "/auth-proof",
            b"logged in",
            &CreateMode::Persistent.with_acls(Acls::anyone_all()),
        )
        .await
        .expect("create as alice");
    let (data, _) = client.get_data("/auth-proof").await.expect("read as alice");
    assert_eq!(data, b"logged in");
    let bob = SaslLogin::new("bob", "bobs-password");
    let client = session_works(Some(&bob)).await.expect("bob");
    let (data, _) = client.get_data("/auth-proof").await.expect("read as bob");
    assert_eq!(data, b"logged in");

    // ZooKeeper's own Java client with the README's JAAS Client section reads; without it, not.
    let out = zk_cli(Some(("bob", "bobs-password")), "/auth-proof");
    assert!(
        out.lines().any(|l| l == "logged in"),
        "zkCli as bob:\n{out}"
    );
    let out = zk_cli(None, "/auth-proof");
    assert!(
        !out.lines().any(|l| l == "logged in") && out.contains("client failed to authenticate"),
        "zkCli without a login:\n{out}"
    );

    // Refused: no credentials, a wrong password, an unknown user.
    for (who, login) in [
        ("no credentials", None),
        (
            "a wrong password",
            Some(SaslLogin::new("alice", "not-her-password")),
        ),
        ("an unknown user", Some(SaslLogin::new("mallory", "pw"))),
    ] {
        let out = session_works(login.as_ref()).await;
        assert!(out.is_err(), "{who}: got a working session");
        eprintln!("{who}: {}", out.err().unwrap());
    }
    // The digest super user alone no longer opens a session: digest is not an enforced scheme.
    let digest_only = key.user("cluster-uid");
    let out = async {
        Reconfigurer::connect(&connect_string(), &digest_only, Duration::from_secs(6))
            .await?
            .committed()
            .await
    }
    .await;
    assert!(out.is_err(), "the digest super user read the configuration");

    // The operator's user: its reading path (the controller's), a member's own version, and
    // reconfig (remove server 3, add it back).
    let cs = connect_string();
    let committed = NetworkZookeeper
        .committed(cs.clone(), None, Some(operator.clone()))
        .await
        .unwrap_or_else(|e| panic!("the operator reads the configuration: {e}\n{}", ens.tail()));
    assert_eq!(committed.voters().len(), MEMBERS);
    let three = committed.servers[&ServerId(3)].clone();
    let smaller = reconfigure(&user, Some(MembershipStep::Remove(ServerId(3)))).await;
    assert_eq!(smaller.voters().len(), MEMBERS - 1, "{smaller:?}");
    let again = reconfigure(&user, Some(MembershipStep::Add(three))).await;
    assert_eq!(again.voters().len(), MEMBERS, "{again:?}");
    let member = MemberAddress::new(host(0), CLIENT).with_sasl(Some(operator.clone()));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match member_config_version(&member, Duration::from_secs(5)).await {
            Ok(v) if v == again.version => break,
            other => assert!(
                Instant::now() < deadline,
                "member 1's configuration as the operator: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Without a login, a member's own configuration cannot be read either.
    let anonymous = MemberAddress::new(host(0), CLIENT);
    assert!(
        member_config_version(&anonymous, Duration::from_secs(5))
            .await
            .is_err()
    );
    // Four-letter words still answer after the reconfiguration.
    let probes = probe_ensemble(addresses, config).await;
    assert!(
        probes.iter().all(|p| p.srvr.serving().is_some()),
        "{probes:?}"
    );
    drop(ens);

    // The same with TLS on (the ports are free again): the operator's sessions speak TLS and
    // log in; a TLS client with a login writes, one without is refused.
    let zk: ZookeeperCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
        "kind": "ZookeeperCluster",
        "metadata": {"name": "zk", "namespace": "auth-test"},
        "spec": {"tls": {"enabled": true}},
    }))
    .unwrap();
    let v = validate(&zk).unwrap();
    let extra: Vec<String> = (0..MEMBERS).map(host).collect();
    let material = tls::issue(&v, &extra, time::OffsetDateTime::now_utc()).expect("material");
    let client_tls = ClientTls::of(&material, false).unwrap();
    let ens = Ensemble::start(&operator, &user, Some(&material));
    let secure = secure_connect_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    let committed = loop {
        match NetworkZookeeper
            .committed(
                secure.clone(),
                Some(client_tls.clone()),
                Some(operator.clone()),
            )
            .await
        {
            Ok(c) => break c,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the operator over TLS with its login: {e}\n{}",
                ens.tail()
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(committed.voters().len(), MEMBERS);
    let member = MemberAddress::new(host(0), SECURE)
        .with_tls(client_tls.clone())
        .with_sasl(Some(operator.clone()));
    member_config_version(&member, Duration::from_secs(5))
        .await
        .expect("a member's version over TLS with the login");
    let reconfigurer =
        Reconfigurer::connect_over(&secure, &user, Duration::from_secs(10), Some(&client_tls))
            .await
            .expect("the operator's reconfiguration session over TLS");
    assert_eq!(
        reconfigurer.committed().await.expect("read").version,
        committed.version
    );
    let tls_session = |login: Option<SaslLogin>| {
        let mut connector = Client::connector()
            .with_session_timeout(Duration::from_secs(6))
            .with_fail_eagerly()
            .with_tls(client_tls.zookeeper_options().unwrap());
        if let Some(login) = login {
            connector = connector.with_sasl(login.options());
        }
        let secure = secure.clone();
        async move {
            let client = connector.secure_connect(&secure).await?;
            client.get_children("/").await?;
            Ok::<_, zookeeper_client::Error>(client)
        }
    };
    let client = tokio::time::timeout(Duration::from_secs(15), tls_session(Some(alice.clone())))
        .await
        .expect("in time")
        .expect("alice over TLS");
    client
        .create(
            "/tls-auth-proof",
            b"both",
            &CreateMode::Persistent.with_acls(Acls::anyone_all()),
        )
        .await
        .expect("create over TLS as alice");
    let anonymous = tokio::time::timeout(Duration::from_secs(15), tls_session(None)).await;
    assert!(
        !matches!(anonymous, Ok(Ok(_))),
        "a TLS client without a login got a working session"
    );
}

fn secure_connect_string() -> String {
    (0..MEMBERS)
        .map(|i| format!("{}:{SECURE}", host(i)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs ZooKeeper's CLI (`ZooKeeperMain`, what zkCli.sh starts) for `get path`, with a JAAS
/// `Client` section for `login` as the README shows; returns what it printed.
fn zk_cli(login: Option<(&str, &str)>, path: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("timeout");
    cmd.args(["30", "java", "-Xmx64m", "-XX:TieredStopAtLevel=1"]);
    if let Some((user, password)) = login {
        let jaas = dir.path().join("client-jaas.conf");
        fs::write(
            &jaas,
            format!(
                "Client {{\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  \
                 username=\"{user}\"\n  password=\"{password}\";\n}};\n"
            ),
        )
        .unwrap();
        cmd.arg(format!(
            "-Djava.security.auth.login.config={}",
            jaas.display()
        ));
        // ZooKeeper 3.8.2+ Java clients refuse DIGEST-MD5 in FIPS mode, which is their default.
        cmd.arg("-Dzookeeper.fips-mode=false");
    }
    let out = cmd
        .arg("-cp")
        .arg(dist::classpath(&dist::dist()))
        .arg("org.apache.zookeeper.ZooKeeperMain")
        .args(["-server", &connect_string(), "get", path])
        .stdin(Stdio::null())
        .output()
        .expect("run java");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Reads the committed configuration through members 1 and 2 (the ones that stay) as `user`
/// and, with a `step`, applies it unless the configuration already shows it; retries for 30 s.
async fn reconfigure(user: &SuperUser, step: Option<MembershipStep>) -> CommittedConfig {
    let stay = format!("{}:{CLIENT},{}:{CLIENT}", host(0), host(1));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = async {
            let r = Reconfigurer::connect(&stay, user, Duration::from_secs(10)).await?;
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
                let r = Reconfigurer::connect(&stay, user, Duration::from_secs(10)).await;
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
    panic!("reconfiguration with SASL ({step:?}) did not succeed within 30 s: {last}");
}

/// Members of the quorum-authentication ensemble: their own addresses, so it can run beside
/// the client-authentication one.
fn quorum_host(i: usize) -> String {
    format!("127.0.0.{}", i + 11)
}

/// Quorum SASL on real parts: three members from what `start-zookeeper --quorum_auth_dir`
/// writes, with mutual TLS on (the JVM-wide switch DIGEST-MD5 needs must not break client
/// certificates). A member with a wrong password is kept out while the two others form the
/// quorum; restarted with the right one it joins; the operator's four-letter words over mutual
/// TLS and a client certificate's session still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_sasl_admits_only_members_with_the_password() {
    let tmp = tempdir();
    let zk: ZookeeperCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
        "kind": "ZookeeperCluster",
        "metadata": {"name": "zk", "namespace": "quorum-auth-test"},
        "spec": {"tls": {"enabled": true, "mutual": true}},
    }))
    .unwrap();
    let v = validate(&zk).expect("a valid TLS spec");
    let extra: Vec<String> = (0..MEMBERS).map(quorum_host).collect();
    let material = tls::issue(&v, &extra, time::OffsetDateTime::now_utc()).unwrap();
    let tls_dir = tmp.path().join("tls");
    fs::create_dir_all(&tls_dir).unwrap();
    fs::write(tls_dir.join(tls::CA_CERT), &material.ca_cert).unwrap();
    fs::write(tls_dir.join(tls::CERT), &material.cert).unwrap();
    fs::write(tls_dir.join(tls::KEY), &material.key).unwrap();
    let password_dir = |name: &str, password: &str| {
        let dir = tmp.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("password"), password).unwrap();
        dir
    };
    let right = password_dir("quorum", r#"q"uo\rum${user.home}"#);
    let wrong = password_dir("wrong", "not-the-quorum-password");
    let membership = tmp.path().join("members/boot.cfg");
    fs::create_dir_all(membership.parent().unwrap()).unwrap();
    let servers: String = (0..MEMBERS)
        .map(|j| {
            let h = quorum_host(j);
            format!(
                "server.{}={h}:{PEER}:{ELECTION}:participant;{h}:{CLIENT}\n",
                j + 1
            )
        })
        .collect();
    fs::write(&membership, servers).unwrap();
    let user = SuperUser::new("quorum-auth-test");
    let start = |i: usize, quorum: &Path, run: &str| {
        let h = quorum_host(i);
        let flags = vec![
            format!("--quorum_auth_dir={}", quorum.display()),
            format!("--tls_dir={}", tls_dir.display()),
            format!("--secure_client_port={SECURE}"),
            "--tls_client_auth=need".to_string(),
        ];
        let root = tmp.path().join(format!("zk-{i}-{run}"));
        // The data directory survives a restart, as a member's volume does.
        let (child, log, cfg) = spawn_member(&root, i, &h, &membership, &flags, &user);
        for line in [
            "quorum.auth.enableSasl=true",
            "quorum.auth.learnerRequireSasl=true",
            "quorum.auth.serverRequireSasl=true",
            "ssl.clientHostnameVerification=false",
        ] {
            assert!(cfg.contains(line), "zoo.cfg lacks {line}: {cfg}");
        }
        let jaas = fs::read_to_string(root.join("auth/jaas.conf")).unwrap();
        assert!(
            jaas.contains("QuorumServer {") && jaas.contains("QuorumLearner {"),
            "{jaas}"
        );
        (child, log)
    };
    // Killed on every way out, a failed assertion included.
    struct Members(Vec<(Child, PathBuf)>);
    impl Drop for Members {
        fn drop(&mut self) {
            for (child, _) in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let mut members = Members(vec![
        start(0, &right, "a"),
        start(1, &right, "a"),
        start(2, &wrong, "a"),
    ]);
    let operator = ClientTls::of(&material, true).unwrap();
    let addresses = |n: usize| -> Vec<(Ordinal, MemberAddress)> {
        (0..n)
            .map(|i| {
                (
                    Ordinal(i as u32),
                    MemberAddress::new(quorum_host(i), SECURE).with_tls(operator.clone()),
                )
            })
            .collect()
    };
    let config = ProbeConfig {
        timeout: Duration::from_secs(3),
        concurrency: MEMBERS,
    };
    let logs = |members: &[(Child, PathBuf)]| -> String {
        members
            .iter()
            .map(|(_, log)| fs::read_to_string(log).unwrap_or_default())
            .collect()
    };
    let serving = |probes: &[zookeeper_operator::health::MemberProbe]| -> Vec<Mode> {
        probes
            .iter()
            .filter_map(|p| p.srvr.serving().map(|s| s.mode))
            .collect()
    };
    // Members 1 and 2 (the right password) form the quorum; member 3 stays out.
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let modes = serving(&probe_ensemble(addresses(2), config).await);
        if modes.len() == 2 && modes.contains(&Mode::Leader) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "members 1 and 2 formed no quorum with quorum SASL: {modes:?}\n{}",
            logs(&members.0)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!(
        "FIGURE quorum SASL: two members serving {:.1} s after the JVMs started",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let probes = probe_ensemble(addresses(3), config).await;
    assert!(
        probes[2].srvr.serving().is_none(),
        "a member with the wrong quorum password serves: {probes:?}"
    );
    let text = logs(&members.0);
    assert!(
        text.contains("QuorumLearner will use DIGEST-MD5 as SASL mechanism"),
        "{text}"
    );
    // Kept out by the password: the others refuse its login.
    assert!(text.contains("Failed to authenticate using SASL"), "{text}");
    // Restarted with the password, member 3 joins as a follower.
    let (mut child, _) = members.0.pop().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    members.0.push(start(2, &right, "b"));
    let rejoined = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let modes = serving(&probe_ensemble(addresses(3), config).await);
        if modes.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "member 3 with the right password did not join: {modes:?}\n{}",
            logs(&members.0)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!(
        "FIGURE quorum SASL: member 3 serving {:.1} s after its restart with the password",
        rejoined.elapsed().as_secs_f64()
    );
    // A session with a client certificate (mutual TLS, the CA alone decides) still works.
    let alice = tls::issue_client(&material, "alice", time::OffsetDateTime::now_utc()).unwrap();
    let session = Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_tls(
            ClientTls::new(&alice.ca_cert, Some((&alice.cert, &alice.key)))
                .unwrap()
                .zookeeper_options()
                .unwrap(),
        )
        .secure_connect(
            &(0..MEMBERS)
                .map(|i| format!("{}:{SECURE}", quorum_host(i)))
                .collect::<Vec<_>>()
                .join(","),
        )
        .await
        .expect("a client certificate's session beside quorum SASL");
    session
        .create(
            "/quorum-auth",
            b"ok",
            &CreateMode::Persistent.with_acls(Acls::anyone_all()),
        )
        .await
        .expect("write");
    drop(members);
}

/// The two steps of turning TLS on (`--tls_transition`) and a member restarted into TLS whose
/// learned configuration still names its old plaintext port: what the script writes, without a
/// JVM (the three rolls on real members are the e2e test
/// `tls_turned_on_for_a_running_plaintext_ensemble_under_load`).
#[test]
fn the_steps_of_turning_tls_on_take_both_on_every_port_and_a_moved_client_port_is_written_into_the_own_line()
 {
    let tmp = tempdir();
    let tls_dir = tmp.path().join("tls");
    fs::create_dir_all(&tls_dir).unwrap();
    for f in [tls::CA_CERT, tls::CERT, tls::KEY] {
        fs::write(tls_dir.join(f), "PEM").unwrap();
    }
    let tls_flag = format!("--tls_dir={}", tls_dir.display());
    let membership = tmp.path().join("members/boot.cfg");
    fs::create_dir_all(membership.parent().unwrap()).unwrap();
    fs::write(
        &membership,
        (0..MEMBERS)
            .map(|j| {
                format!(
                    "server.{}=zk-{j}.zk-hs:{PEER}:{ELECTION}:participant;{CLIENT}\n",
                    j + 1
                )
            })
            .collect::<String>(),
    )
    .unwrap();
    for (step, quorum) in [
        ("unified", "sslQuorum=false"),
        ("quorum-tls", "sslQuorum=true"),
    ] {
        let root = tmp.path().join(format!("zk-{step}"));
        let (out, _) = run_script(
            &root,
            0,
            &membership,
            &[tls_flag.clone(), format!("--tls_transition={step}")],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg = fs::read_to_string(root.join("conf/zoo.cfg")).unwrap();
        for line in [
            &format!("clientPort={CLIENT}"),
            "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
            "client.portUnification=true",
            "portUnification=true",
            quorum,
            "ssl.quorum.trustStore.type=PEM",
            "ssl.keyStore.type=PEM",
        ] {
            assert!(cfg.lines().any(|l| l == line), "{step}: no {line} in {cfg}");
        }
        for absent in ["secureClientPort", "clientPortAddress"] {
            assert!(!cfg.contains(absent), "{step}: {absent} in {cfg}");
        }
    }
    // Refused: an unknown step, a step with a secure port, a step without certificates.
    for (flags, want) in [
        (
            vec![tls_flag.clone(), "--tls_transition=half".to_string()],
            "--tls_transition must be unified or quorum-tls",
        ),
        (
            vec![
                tls_flag.clone(),
                "--tls_transition=unified".to_string(),
                format!("--secure_client_port={SECURE}"),
            ],
            "leave out --secure_client_port",
        ),
        (
            vec!["--tls_transition=unified".to_string()],
            "need --tls_dir",
        ),
    ] {
        let (out, _) = run_script(&tmp.path().join("refused"), 0, &membership, &flags);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(want), "want {want:?} in {stderr}");
    }
    // A member that learned a configuration naming its plaintext port on every address, then
    // restarted into TLS (the plaintext port on the loopback's 22009): its own line moves, the
    // others stay; once it names the port it has, nothing is rewritten.
    let root = tmp.path().join("zk-moved");
    let (out, _) = run_script(&root, 1, &membership, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dynamic = root.join("conf/zoo.cfg.dynamic.0");
    let learned = fs::read_to_string(&dynamic).unwrap();
    assert!(learned.contains(&format!(
        "server.2=zk-1.zk-hs:{PEER}:{ELECTION}:participant;{CLIENT}"
    )));
    fs::write(
        &dynamic,
        learned.replace(&format!(";{CLIENT}"), &format!(";0.0.0.0:{CLIENT}")),
    )
    .unwrap();
    let final_tls = [
        tls_flag.clone(),
        "--client_port=22009".to_string(),
        format!("--secure_client_port={CLIENT}"),
    ];
    let (out, _) = run_script(&root, 1, &membership, &final_tls);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("client address of server.2 moves"),
        "{stderr}"
    );
    let now = fs::read_to_string(&dynamic).unwrap();
    assert!(
        now.lines()
            .any(|l| l
                == format!("server.2=zk-1.zk-hs:{PEER}:{ELECTION}:participant;127.0.0.1:22009")),
        "{now}"
    );
    for other in [1, 3] {
        let line = format!(
            "server.{other}=zk-{}.zk-hs:{PEER}:{ELECTION}:participant;0.0.0.0:{CLIENT}",
            other - 1
        );
        assert!(now.lines().any(|l| l == line), "{line} in {now}");
    }
    let cfg = fs::read_to_string(root.join("conf/zoo.cfg")).unwrap();
    assert!(cfg.contains("clientPortAddress=127.0.0.1") && cfg.contains("clientPort=22009"));
    let (out, _) = run_script(&root, 1, &membership, &final_tls);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("moves"), "{stderr}");
    assert_eq!(fs::read_to_string(&dynamic).unwrap(), now);
}
