//! ZooKeeper's own Prometheus metrics, as the members run them: a real 3-member ensemble with
//! the `zoo.cfg` lines `start-zookeeper --metrics_port` writes, scraped over HTTP.
//!
//! The second test puts a real Prometheus (built from its Go module by
//! `e2e/lib/build-binaries.sh prometheus`, on 127.0.0.1:21790) beside such an ensemble with the
//! alert rules of `deploy/monitoring/zookeeper-rules.yaml`: the series arrive with the labels the
//! rules expect, and a killed member makes the member-down alerts pending.
//!
//! Needs Java and the jars of `e2e/lib/zookeeper-dist.sh` (with its metrics provider); fails
//! (never skips) without them. Members listen on 127.0.0.1-127.0.0.3, ports 21700-21703 (the
//! first test) and 21710-21713 (the second).

#[path = "support/dist.rs"]
mod dist;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MEMBERS: usize = 3;
/// Ports of the first test's members: client, quorum, election and metrics are base..base+3.
const BASE: u16 = 21700;
/// Ports of the second test's members.
const PROMETHEUS_BASE: u16 = 21710;
/// Where the second test's Prometheus listens.
const PROMETHEUS_ADDR: &str = "127.0.0.1:21790";

/// The metrics lines of `zoo.cfg`, as `start-zookeeper --metrics_port` writes them (there the
/// host is 0.0.0.0; here each member has its own loopback address).
fn metrics_config(host: &str, port: u16) -> String {
    let script = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/images/zookeeper/start-zookeeper"),
    )
    .expect("read start-zookeeper");
    let mut lines = String::new();
    for line in script.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("echo \"metricsProvider.") {
            let entry = format!("metricsProvider.{}", rest.trim_end_matches('"'));
            let entry = entry
                .replace("$METRICS_PORT", &port.to_string())
                .replace("0.0.0.0", host);
            lines.push_str(&entry);
            lines.push('\n');
        }
    }
    for key in ["className=", "httpPort=", "exportJvmInfo=true", "httpHost="] {
        assert!(
            lines.contains(&format!("metricsProvider.{key}")),
            "start-zookeeper no longer writes metricsProvider.{key}: {lines}"
        );
    }
    lines
}

struct Member {
    child: Child,
    log: PathBuf,
}

struct Ensemble {
    base: u16,
    members: Vec<Option<Member>>,
    _tmp: tempfile::TempDir,
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for m in self.members.iter_mut().flatten() {
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}

impl Ensemble {
    /// Starts the members with ports base (client), +1 (quorum), +2 (election), +3 (metrics).
    fn start(base: u16) -> Self {
        let (client, peer, election, metrics) = (base, base + 1, base + 2, base + 3);
        let dist = dist::dist();
        let jars: Vec<String> = fs::read_dir(dist.join("lib"))
            .expect("dist lib")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            jars.iter()
                .any(|j| j.starts_with("zookeeper-prometheus-metrics-"))
                && jars.iter().any(|j| j.starts_with("simpleclient_hotspot-")),
            "{} has no Prometheus metrics provider: run e2e/lib/zookeeper-dist.sh again (it adds it)",
            dist.display()
        );
        let tmp = tempfile::tempdir().expect("temporary directory");
        let mut members = Vec::new();
        for i in 0..MEMBERS {
            let host = format!("127.0.0.{}", i + 1);
            for port in [client, peer, election, metrics] {
                if let Err(e) = std::net::TcpListener::bind((host.as_str(), port)) {
                    panic!("{host}:{port} is taken ({e}); stop what listens there");
                }
            }
            let dir = tmp.path().join(format!("zk-{i}"));
            let data = dir.join("data");
            fs::create_dir_all(&data).expect("data directory");
            fs::write(data.join("myid"), format!("{}\n", i + 1)).expect("myid");
            let mut cfg = format!(
                "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={client}\n\
                 clientPortAddress={host}\nadmin.enableServer=false\n",
                data.display()
            );
            for j in 0..MEMBERS {
                cfg.push_str(&format!(
                    "server.{}=127.0.0.{}:{peer}:{election}\n",
                    j + 1,
                    j + 1
                ));
            }
            cfg.push_str(&metrics_config(&host, metrics));
            fs::write(dir.join("zoo.cfg"), cfg).expect("zoo.cfg");
            let log = dir.join("zookeeper.log");
            let out = fs::File::create(&log).expect("log");
            let child = Command::new("java")
                .args([
                    "-Xmx128m",
                    "-XX:+UseSerialGC",
                    "-XX:TieredStopAtLevel=1",
                    "-Dzookeeper.console.threshold=WARN",
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
            members.push(Some(Member { child, log }));
        }
        Self {
            base,
            members,
            _tmp: tmp,
        }
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut m) = self.members[i].take() {
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .flatten()
            .map(|m| {
                let text = fs::read_to_string(&m.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!(
                    "--- {}\n{}",
                    m.log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Member `i`'s metrics, or None when it does not answer.
    fn scrape(&self, i: usize) -> Option<String> {
        get(&format!("127.0.0.{}:{}", i + 1, self.base + 3), "/metrics")
    }

    fn connect_string(&self) -> String {
        (1..=MEMBERS)
            .map(|i| format!("127.0.0.{i}:{}", self.base))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// GET http://<addr><path>: the body of a 200 answer, or None.
fn get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let (head, body) = body.split_once("\r\n\r\n")?;
    (head.split_whitespace().nth(1) == Some("200")).then(|| body.to_string())
}

/// The value of the first sample of `name` whose labels contain `labels` (`""` for any).
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, l) = match series.split_once('{') {
            Some((n, rest)) => (n, rest),
            None => (series, ""),
        };
        (n == name && l.contains(labels)).then(|| value.parse().ok())?
    })
}

fn wait_for<T>(what: &str, ens: &Ensemble, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}\n{}", ens.logs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The ordinal of the member whose metrics say it leads (only a leader has `learners`), with
/// its metrics.
fn leader(ens: &Ensemble) -> Option<(usize, String)> {
    (0..MEMBERS)
        .filter(|i| ens.members[*i].is_some())
        .filter_map(|i| ens.scrape(i).map(|t| (i, t)))
        .find(|(_, t)| sample(t, "learners", "").is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_export_zookeeper_and_jvm_metrics() {
    let mut ens = Ensemble::start(BASE);
    let started = Instant::now();

    // The leader's own series: its learners, how many are synced, and the quorum size.
    let (leader, text) = wait_for("a leader with two synced followers", &ens, || {
        leader(&ens).filter(|(_, t)| sample(t, "synced_followers", "") == Some(2.0))
    });
    eprintln!(
        "leader 127.0.0.{} with 2 synced followers after {:?}",
        leader + 1,
        started.elapsed()
    );
    assert_eq!(sample(&text, "learners", ""), Some(2.0), "{text}");
    assert_eq!(sample(&text, "quorum_size", ""), Some(3.0), "{text}");
    assert!(sample(&text, "leader_uptime", "").is_some_and(|ms| ms > 0.0));
    // Every member: server and JVM series with values that make sense.
    for i in 0..MEMBERS {
        let t = ens
            .scrape(i)
            .unwrap_or_else(|| panic!("member {i} serves no metrics"));
        assert_eq!(sample(&t, "outstanding_requests", ""), Some(0.0), "{i}");
        let znodes = sample(&t, "znode_count", "").expect("znode_count");
        assert!(znodes >= 4.0, "{i}: znode_count {znodes}");
        assert!(
            sample(&t, "fsynctime_count", "").is_some(),
            "{i}: fsynctime"
        );
        assert!(sample(&t, "election_time_count", "").is_some(), "{i}");
        let heap = sample(&t, "jvm_memory_bytes_used", "area=\"heap\"").expect("heap used");
        let max = sample(&t, "jvm_memory_bytes_max", "area=\"heap\"").expect("heap max");
        assert!(heap > 0.0 && heap < max, "{i}: heap {heap} of {max}");
        // -Xmx128m
        assert!(max <= 128.0 * 1024.0 * 1024.0 + 1.0, "{i}: heap max {max}");
        assert!(sample(&t, "jvm_info", "").is_some(), "{i}: exportJvmInfo");
        assert!(sample(&t, "open_file_descriptor_count", "").is_some_and(|n| n > 0.0));
        if i != leader {
            assert!(sample(&t, "learners", "").is_none(), "{i} is no leader");
        }
    }

    // Writes move the counters: znodes on every member, fsyncs on the leader.
    let before = sample(&text, "znode_count", "").expect("znode_count");
    let fsyncs_before = sample(&text, "fsynctime_count", "").expect("fsynctime_count");
    let connect = ens.connect_string();
    let client = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(20))
        .connect(&connect)
        .await
        .expect("client connects");
    let mode =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    for n in 0..25 {
        client
            .create(&format!("/metrics-{n}"), b"x", &mode)
            .await
            .expect("create");
    }
    for i in 0..MEMBERS {
        let after = wait_for("the new znodes in znode_count", &ens, || {
            let t = ens.scrape(i)?;
            sample(&t, "znode_count", "").filter(|n| *n >= before + 25.0)
        });
        assert_eq!(after, before + 25.0, "member {i}");
    }
    let t = ens.scrape(leader).expect("leader metrics");
    let fsyncs = sample(&t, "fsynctime_count", "").expect("fsynctime_count");
    assert!(
        fsyncs >= fsyncs_before + 1.0,
        "fsyncs {fsyncs_before} -> {fsyncs}"
    );
    assert!(sample(&t, "fsynctime", "quantile=\"0.5\"").is_some_and(|ms| ms >= 0.0));
    drop(client);

    // A follower dies: the leader counts one synced follower, the series the alert on fewer
    // synced followers than voters - 1 reads; the dead member serves no metrics.
    let follower = (0..MEMBERS).find(|i| *i != leader).expect("a follower");
    ens.kill(follower);
    wait_for("the leader to count one synced follower", &ens, || {
        let t = ens.scrape(leader)?;
        (sample(&t, "synced_followers", "") == Some(1.0)).then_some(())
    });
    assert!(ens.scrape(follower).is_none());
    let t = ens.scrape(leader).expect("leader metrics");
    assert_eq!(sample(&t, "quorum_size", ""), Some(3.0));
    eprintln!("test took {:?}", started.elapsed());
}

/// The Prometheus server of `e2e/lib/build-binaries.sh prometheus`, built there once when it is
/// missing.
fn prometheus_binary() -> PathBuf {
    let cache = std::env::var_os("ZKOP_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/zookeeper-operator"))
        })
        .expect("neither ZKOP_CACHE nor HOME is set");
    // (support/dist.rs includes e2e/lib/versions.rs already; a second `mod` of it is refused)
    let version = include_str!("../e2e/versions.env")
        .lines()
        .find_map(|l| l.strip_prefix("PROMETHEUS_VERSION="))
        .expect("PROMETHEUS_VERSION in e2e/versions.env");
    let bin = cache.join(format!("bin/prometheus-{version}/prometheus"));
    if !bin.is_file() {
        eprintln!(
            "{} is missing: building it with e2e/lib/build-binaries.sh prometheus (minutes, once)",
            bin.display()
        );
        let status = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/lib/build-binaries.sh"))
            .arg("prometheus")
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()) && bin.is_file(),
            "could not build Prometheus ({status:?}); see the output above"
        );
    }
    bin
}

/// A Prometheus server on 127.0.0.1, killed on drop.
struct Prometheus {
    child: Child,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes the ensemble's members every second as job "zookeeper" with the target labels
    /// the PodMonitor gives them (namespace, pod, cluster), and evaluates the alert rules every
    /// second.
    fn start(ens: &Ensemble) -> Self {
        let bin = prometheus_binary();
        let tmp = tempfile::tempdir().expect("temporary directory");
        let rules =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring/zookeeper-rules.yaml");
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\nscrape_configs:\n  - job_name: zookeeper\n    static_configs:\n",
            rules.display()
        );
        for i in 0..MEMBERS {
            config.push_str(&format!(
                "      - targets: ['127.0.0.{}:{}']\n        labels: {{namespace: loopback, pod: zk-{i}, cluster: zk}}\n",
                i + 1,
                ens.base + 3
            ));
        }
        let file = tmp.path().join("prometheus.yml");
        fs::write(&file, config).expect("prometheus.yml");
        if let Err(e) = std::net::TcpListener::bind(PROMETHEUS_ADDR) {
            panic!("{PROMETHEUS_ADDR} is taken ({e}); stop what listens there");
        }
        let log = tmp.path().join("prometheus.log");
        let out = fs::File::create(&log).expect("log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS_ADDR}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("start prometheus");
        let p = Self {
            child,
            log,
            _tmp: tmp,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while get(PROMETHEUS_ADDR, "/-/ready").is_none() {
            assert!(
                Instant::now() < deadline,
                "Prometheus is not ready after 60 s:\n{}",
                fs::read_to_string(&p.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// The `data` of an HTTP API answer.
    fn api(&self, path: &str) -> serde_json::Value {
        let body = get(PROMETHEUS_ADDR, path).unwrap_or_else(|| {
            panic!(
                "Prometheus did not answer {path}:\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            )
        });
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON answer");
        assert_eq!(v["status"], "success", "{path}: {v}");
        v["data"].clone()
    }

    /// The result vector of an instant query.
    fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let data = self.api(&format!("/api/v1/query?query={encoded}"));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The active alerts (pending or firing): (name, state, labels).
    fn alerts(&self) -> Vec<(String, String, serde_json::Value)> {
        self.api("/api/v1/alerts")["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                (
                    a["labels"]["alertname"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    a["state"].as_str().unwrap_or_default().to_string(),
                    a["labels"].clone(),
                )
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_members_and_a_killed_member_makes_the_down_alerts_pending() {
    let mut ens = Ensemble::start(PROMETHEUS_BASE);
    let started = Instant::now();
    let (leader, _) = wait_for("a leader with two synced followers", &ens, || {
        leader(&ens).filter(|(_, t)| sample(t, "synced_followers", "") == Some(2.0))
    });
    let prom = Prometheus::start(&ens);

    // Every member's series, with the labels the rules join on.
    let series = wait_for(
        "znode_count of all three members in Prometheus",
        &ens,
        || {
            let r = prom.query(r#"znode_count{job="zookeeper"}"#);
            (r.len() == MEMBERS).then_some(r)
        },
    );
    let mut pods: Vec<&str> = series
        .iter()
        .map(|s| {
            assert_eq!(s["metric"]["namespace"], "loopback", "{s}");
            assert_eq!(s["metric"]["cluster"], "zk", "{s}");
            s["metric"]["pod"].as_str().expect("pod label")
        })
        .collect();
    pods.sort();
    assert_eq!(pods, ["zk-0", "zk-1", "zk-2"]);
    let learners = prom.query(r#"learners{job="zookeeper"}"#);
    assert_eq!(
        learners.len(),
        1,
        "only the leader exports learners: {learners:?}"
    );
    assert_eq!(learners[0]["metric"]["pod"], format!("zk-{leader}"));
    let heap = prom.query(
        r#"jvm_memory_bytes_used{job="zookeeper",area="heap"} / jvm_memory_bytes_max{job="zookeeper",area="heap"}"#,
    );
    assert_eq!(heap.len(), MEMBERS, "{heap:?}");

    // Every rule evaluates without error; with the ensemble healthy, no alert is active.
    wait_for("a rule evaluation", &ens, || {
        let groups = prom.api("/api/v1/rules")["groups"].as_array().cloned()?;
        let rules: Vec<serde_json::Value> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = rules.iter().all(|r| {
            r["lastEvaluation"]
                .as_str()
                .is_some_and(|t| !t.starts_with("0001"))
        });
        if !evaluated {
            return None;
        }
        for r in &rules {
            assert_eq!(r["health"], "ok", "{r}");
        }
        assert_eq!(rules.len(), 12, "{rules:?}");
        Some(())
    });
    // (The first evaluations may run before every member was scraped once: a rule may go
    // pending for an evaluation, far below any rule's `for`.)
    wait_for("no active alert on the healthy ensemble", &ens, || {
        prom.alerts().is_empty().then_some(())
    });
    for _ in 0..5 {
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(prom.alerts(), vec![], "a healthy ensemble raises no alert");
    }

    // A follower is killed: its target goes down and the leader counts one synced follower.
    let follower = (0..MEMBERS).find(|i| *i != leader).expect("a follower");
    ens.kill(follower);
    let killed = Instant::now();
    let pending = wait_for("the member-down alerts to be pending", &ens, || {
        let alerts = prom.alerts();
        let down = alerts.iter().any(|(name, state, labels)| {
            name == "ZookeeperMemberDown"
                && state == "pending"
                && labels["pod"] == format!("zk-{follower}").as_str()
                && labels["namespace"] == "loopback"
                && labels["severity"] == "warning"
        });
        let synced = alerts.iter().any(|(name, state, labels)| {
            name == "ZookeeperSyncedFollowersBelowVoters"
                && state == "pending"
                && labels["pod"] == format!("zk-{leader}").as_str()
        });
        (down && synced).then_some(alerts)
    });
    eprintln!(
        "alerts pending {:?} after the kill: {pending:?}",
        killed.elapsed()
    );
    // Two of three members still form a quorum with a leader.
    assert!(
        !pending
            .iter()
            .any(|(name, _, _)| name == "ZookeeperNoLeader"),
        "{pending:?}"
    );

    // The other follower dies too: the last member has no quorum, leads nothing and serves no
    // data tree, but its metrics endpoint still answers; the no-leader alert goes pending.
    let other = (0..MEMBERS)
        .find(|i| *i != leader && *i != follower)
        .expect("the other follower");
    ens.kill(other);
    let lost = Instant::now();
    let alone = wait_for("the last member to stop leading", &ens, || {
        ens.scrape(leader)
            .filter(|t| sample(t, "learners", "").is_none())
    });
    // No server runs without a quorum: the data-tree series are gone (the no-leader rule counts
    // answering members, not members with a znode_count), the JVM's remain.
    assert_eq!(sample(&alone, "znode_count", ""), None);
    assert!(sample(&alone, "jvm_memory_bytes_used", "area=\"heap\"").is_some());
    let pending = wait_for("ZookeeperNoLeader to be pending", &ens, || {
        let alerts = prom.alerts();
        alerts
            .iter()
            .any(|(name, state, labels)| {
                name == "ZookeeperNoLeader"
                    && state == "pending"
                    && labels["namespace"] == "loopback"
                    && labels["cluster"] == "zk"
                    && labels["severity"] == "critical"
            })
            .then_some(alerts)
    });
    eprintln!(
        "no-leader alert pending {:?} after the quorum was lost: {pending:?}",
        lost.elapsed()
    );
    eprintln!("test took {:?}", started.elapsed());
}
