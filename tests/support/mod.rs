//! Real ZooKeeper ensembles for tests and the rolling-restart benchmark.
//!
//! Each member is a real JVM (`QuorumPeerMain`) from the jars `e2e/lib/zookeeper-dist.sh`
//! prepares, listening on its own loopback address 127.0.0.<ordinal+1> with the same ports as
//! the others, as pods do. Every process is killed when the [`Ensemble`] is dropped.
//!
//! Included by the integration test, the benchmark and the end-to-end tests, each using a
//! different part, so each includes it with `#[allow(dead_code)] mod support;`.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use zookeeper_operator::health::{
    EnsembleView, MemberAddress, MemberName, Ordinal, PodFacts, ProbeConfig, probe_ensemble,
};
use zookeeper_operator::rollout::{self, Decision, Observation};

/// The ZooKeeper version the tests run.
pub const VERSION: &str = "3.9.5";

/// The distribution directory, or a failure that says how to get it.
pub fn dist() -> PathBuf {
    let cache = std::env::var_os("ZKOP_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/zookeeper-operator"))
        })
        .expect("neither ZKOP_CACHE nor HOME is set");
    let dir = cache.join(format!("zookeeper-{VERSION}"));
    let jar = dir.join(format!("lib/zookeeper-{VERSION}.jar"));
    assert!(
        jar.is_file(),
        "ZooKeeper {VERSION} jars are missing ({} not found): run e2e/lib/zookeeper-dist.sh first",
        jar.display()
    );
    let java = Command::new("java")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        java.is_ok_and(|s| s.success()),
        "`java` is not runnable: install a JRE 11+ (Debian: apt-get install -y openjdk-17-jre-headless), then run e2e/lib/zookeeper-dist.sh"
    );
    dir
}

/// Ports shared by every member (each on its own loopback address).
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// Client port.
    pub client: u16,
    /// Quorum (follower-to-leader) port.
    pub peer: u16,
    /// Leader-election port.
    pub election: u16,
}

impl Ports {
    /// Three consecutive ports from `base`; fails when any is taken on any member address.
    pub fn at(base: u16, members: usize) -> Self {
        for i in 0..members {
            for port in base..base + 3 {
                let addr = format!("127.0.0.{}:{port}", i + 1);
                if let Err(e) = TcpListener::bind(&addr) {
                    panic!(
                        "{addr} is taken ({e}); stop what listens there or change the test's port base"
                    );
                }
            }
        }
        Self {
            client: base,
            peer: base + 1,
            election: base + 2,
        }
    }
}

struct Member {
    dir: PathBuf,
    child: Option<Child>,
    revision: String,
    created_at: SystemTime,
    started: Instant,
}

/// A running ensemble of real ZooKeeper processes.
pub struct Ensemble {
    /// Name used for pod names (`<name>-<ordinal>`).
    pub name: String,
    /// Ports.
    pub ports: Ports,
    dist: PathBuf,
    _tmp: tempfile::TempDir,
    members: Vec<Member>,
}

impl Ensemble {
    /// Starts `n` members at revision `rev-1`.
    pub fn start(name: &str, n: usize, port_base: u16) -> Self {
        let dist = dist();
        let ports = Ports::at(port_base, n);
        let tmp = tempfile::tempdir().expect("temporary directory");
        let mut ens = Self {
            name: name.to_string(),
            ports,
            dist,
            members: (0..n)
                .map(|i| Member {
                    dir: tmp.path().join(format!("{name}-{i}")),
                    child: None,
                    revision: "rev-1".into(),
                    created_at: SystemTime::now(),
                    started: Instant::now(),
                })
                .collect(),
            _tmp: tmp,
        };
        for i in 0..n {
            ens.start_member(i);
        }
        ens
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Where member `i` answers four-letter words.
    pub fn address(&self, i: usize) -> MemberAddress {
        MemberAddress::new(format!("127.0.0.{}", i + 1), self.ports.client)
    }

    /// Connect string for clients.
    pub fn connect_string(&self) -> String {
        (0..self.len())
            .map(|i| format!("127.0.0.{}:{}", i + 1, self.ports.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The revision member `i` runs.
    pub fn revision(&self, i: usize) -> &str {
        &self.members[i].revision
    }

    fn write_config(&self, i: usize) {
        let m = &self.members[i];
        let data = m.dir.join("data");
        fs::create_dir_all(&data).expect("member data directory");
        fs::write(data.join("myid"), format!("{}\n", i + 1)).expect("myid");
        let mut cfg = format!(
            "# {rev}\ntickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={data}\n\
             clientPort={client}\nclientPortAddress=127.0.0.{id}\n\
             4lw.commands.whitelist=srvr,mntr,ruok\nadmin.enableServer=false\n\
             maxClientCnxns={cnxns}\n",
            rev = m.revision,
            data = data.display(),
            client = self.ports.client,
            id = i + 1,
            // A real configuration difference between revisions.
            cnxns = 60 + m.revision.bytes().map(u32::from).sum::<u32>() % 10,
        );
        for j in 0..self.len() {
            cfg.push_str(&format!(
                "server.{}=127.0.0.{}:{}:{}\n",
                j + 1,
                j + 1,
                self.ports.peer,
                self.ports.election
            ));
        }
        fs::write(m.dir.join("zoo.cfg"), cfg).expect("zoo.cfg");
    }

    /// Starts member `i`'s JVM (it must not be running).
    pub fn start_member(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} already runs");
        self.write_config(i);
        let m = &self.members[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.dir.join("zookeeper.log"))
            .expect("member log");
        let child = Command::new("java")
            .args([
                "-Xmx192m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Dzookeeper.console.threshold=WARN",
            ])
            .arg("-cp")
            .arg(format!(
                "{}/lib/*:{}/conf",
                self.dist.display(),
                self.dist.display()
            ))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(m.dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start java");
        let m = &mut self.members[i];
        m.child = Some(child);
        m.created_at = SystemTime::now();
        m.started = Instant::now();
    }

    /// Kills member `i`'s JVM (SIGKILL, as a node failure would) and waits for it to exit.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process-level executor of a restart: kill, then start at `revision`.
    pub fn restart_member(&mut self, i: usize, revision: &str) {
        self.kill_member(i);
        self.members[i].revision = revision.to_string();
        self.start_member(i);
    }

    /// Whether member `i`'s JVM runs.
    pub fn running(&mut self, i: usize) -> bool {
        match &mut self.members[i].child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last lines of member `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize) -> String {
        let text =
            fs::read_to_string(self.members[i].dir.join("zookeeper.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Probes every member and builds what the controller would: pod facts from the process
    /// table (Ready = its own `srvr` has a `Mode:` line, like the readiness probe) and the
    /// planner's observation.
    pub async fn observe(&mut self, update_revision: &str, partition: u32) -> Observation {
        let probed_at = SystemTime::now();
        let probes = probe_ensemble(
            (0..self.len()).map(|i| (Ordinal(i as u32), self.address(i))),
            ProbeConfig {
                timeout: Duration::from_secs(1),
                concurrency: 8,
            },
        )
        .await;
        let mut pods = Vec::new();
        for (i, probe) in probes.iter().enumerate() {
            let running = self.running(i);
            let m = &self.members[i];
            let ordinal = Ordinal(i as u32);
            // creationTimestamp has second precision.
            let secs = m
                .created_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            pods.push(PodFacts {
                ordinal,
                name: MemberName::new(&self.name, ordinal),
                revision: Some(m.revision.clone()),
                ready: running && probe.srvr.serving().is_some(),
                terminating: false,
                created_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
                deleted_at: None,
                trouble: None,
            });
        }
        Observation {
            cluster: self.name.clone(),
            replicas: self.len() as u32,
            generation: Some(1),
            observed_generation: Some(1),
            update_revision: Some(update_revision.to_string()),
            current_revision: None,
            partition,
            paused: false,
            progress_deadline: Duration::from_secs(600),
            pods,
            probes,
            probed_at,
        }
    }

    /// The ensemble view now.
    pub async fn view(&mut self) -> EnsembleView {
        let rev = self.members[0].revision.clone();
        self.observe(&rev, 0).await.ensemble()
    }

    /// Polls the view until `cond` holds; fails with the last view and the logs after
    /// `timeout`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&EnsembleView) -> bool,
    ) -> EnsembleView {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.view().await;
            if cond(&v) {
                return v;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = (0..self.len())
                    .map(|i| format!("--- member {i}\n{}", self.log_tail(i)))
                    .collect();
                panic!(
                    "timed out waiting for {what}; last view: {v:#?}\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
    }
}

/// One restart the rollout made.
#[derive(Clone, Debug)]
pub struct RestartRecord {
    /// Member restarted.
    pub ordinal: usize,
    /// It led the ensemble when restarted.
    pub was_leader: bool,
    /// When it was killed.
    pub killed_at: Instant,
    /// When it next served, Ready, with the leader counting every follower synced.
    pub synced_at: Option<Instant>,
}

impl RestartRecord {
    /// Restart-to-synced time.
    pub fn duration(&self) -> Option<Duration> {
        self.synced_at.map(|s| s - self.killed_at)
    }
}

/// What a rolling restart driven by the planner did.
#[derive(Debug, Default)]
pub struct RolloutReport {
    /// Restarts in order.
    pub restarts: Vec<RestartRecord>,
    /// From the first observation to `Idle`.
    pub wall: Duration,
    /// Most members seen not serving at once, outside the leader's own restart.
    pub max_down: usize,
    /// Most members seen not serving at once while the leader restarts (the election).
    pub max_down_during_leader_restart: usize,
    /// Most other members not serving when a restart was made (must be 0).
    pub others_down_at_restart: usize,
    /// Every `Blocked` decision met (none expected without faults).
    pub blocked: Vec<String>,
    /// Observations made.
    pub observations: usize,
}

impl RolloutReport {
    /// Sum of restart-to-synced times: the least a one-at-a-time rollout can take.
    pub fn floor(&self) -> Duration {
        self.restarts
            .iter()
            .filter_map(RestartRecord::duration)
            .sum()
    }
}

/// Drives a rolling restart to `update_revision` through [`rollout::plan`], restarting members
/// by killing and starting their JVM, until the planner says `Idle`.
pub async fn rolling_restart(
    ens: &mut Ensemble,
    update_revision: &str,
    partition: u32,
    timeout: Duration,
) -> RolloutReport {
    let started = Instant::now();
    let mut report = RolloutReport::default();
    loop {
        assert!(
            started.elapsed() < timeout,
            "rolling restart did not finish within {timeout:?}: {report:#?}"
        );
        let obs = ens.observe(update_revision, partition).await;
        report.observations += 1;
        let view = obs.ensemble();
        let down = view.members.iter().filter(|m| m.problem.is_some()).count();
        // Losing the leader sends every member into an election, during which none serves;
        // that is the leader's own restart, so it is counted apart.
        let electing = report
            .restarts
            .last()
            .is_some_and(|r| r.was_leader && r.synced_at.is_none());
        if electing {
            report.max_down_during_leader_restart = report.max_down_during_leader_restart.max(down);
        } else {
            report.max_down = report.max_down.max(down);
        }
        // The pending restart is over once its member serves and every follower is synced.
        if let Some(last) = report.restarts.last_mut()
            && last.synced_at.is_none()
            && view.members[last.ordinal].problem.is_none()
            && view.fully_synced()
        {
            last.synced_at = Some(Instant::now());
        }
        match rollout::plan(&obs).decision {
            Decision::Idle => break,
            Decision::Restart(r) => {
                let i = r.ordinal.0 as usize;
                let others_down = view
                    .members
                    .iter()
                    .filter(|m| m.ordinal != r.ordinal && m.problem.is_some())
                    .count();
                report.others_down_at_restart = report.others_down_at_restart.max(others_down);
                let was_leader = view.leader().is_some_and(|l| l.ordinal == r.ordinal);
                report.restarts.push(RestartRecord {
                    ordinal: i,
                    was_leader,
                    killed_at: Instant::now(),
                    synced_at: None,
                });
                ens.restart_member(i, update_revision);
            }
            Decision::Wait(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Decision::Blocked(b) => {
                report.blocked.push(b.to_string());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    report.wall = started.elapsed();
    report
}

/// One attempted write.
#[derive(Clone, Debug)]
pub struct WriteAttempt {
    /// When the attempt started.
    pub started: Instant,
    /// When it ended.
    pub ended: Instant,
    /// The data written (the write's sequence number in this writer).
    pub data: u64,
    /// The created path, when acknowledged; the error otherwise.
    pub result: Result<String, String>,
}

/// A client writing sequential znodes under `/writes` as fast as acknowledgements come.
pub struct Writer {
    attempts: Arc<Mutex<Vec<WriteAttempt>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    client: zookeeper_client::Client,
}

impl Writer {
    /// Connects and starts writing.
    pub async fn start(connect_string: &str) -> Self {
        let client = zookeeper_client::Client::connector()
            .with_session_timeout(Duration::from_secs(20))
            .connect(connect_string)
            .await
            .expect("writer connects to the ensemble");
        let persistent = zookeeper_client::CreateMode::Persistent
            .with_acls(zookeeper_client::Acls::anyone_all());
        match client.create("/writes", b"", &persistent).await {
            Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
            Err(e) => panic!("create /writes: {e}"),
        }
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = {
            let client = client.clone();
            let attempts = attempts.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let seq = zookeeper_client::CreateMode::PersistentSequential
                    .with_acls(zookeeper_client::Acls::anyone_all());
                let mut n: u64 = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let started = Instant::now();
                    let data = n.to_string();
                    let r = tokio::time::timeout(
                        Duration::from_secs(5),
                        client.create("/writes/w-", data.as_bytes(), &seq),
                    )
                    .await;
                    let result = match r {
                        Ok(Ok((_, s))) => Ok(format!("/writes/w-{s}")),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("no answer within 5s".into()),
                    };
                    let failed = result.is_err();
                    attempts.lock().expect("attempts").push(WriteAttempt {
                        started,
                        ended: Instant::now(),
                        data: n,
                        result,
                    });
                    // Keep the load steady: about 50 writes a second.
                    tokio::time::sleep(Duration::from_millis(if failed { 50 } else { 20 })).await;
                }
            })
        };
        Self {
            attempts,
            stop,
            task,
            client,
        }
    }

    /// Stops writing and returns every attempt.
    pub async fn stop(self) -> (zookeeper_client::Client, Vec<WriteAttempt>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.task.await;
        let attempts = self.attempts.lock().expect("attempts").clone();
        (self.client, attempts)
    }
}

/// The longest time between two consecutive acknowledged writes, and when it began. The writer
/// writes every 20 ms, so anything much longer is time in which the ensemble took no write,
/// whether attempts failed or just waited.
pub fn longest_unavailability(attempts: &[WriteAttempt]) -> (Duration, Option<Instant>) {
    write_gaps(attempts)
        .into_iter()
        .max_by_key(|(gap, _)| *gap)
        .map_or((Duration::ZERO, None), |(gap, at)| (gap, Some(at)))
}

/// Every interval between consecutive acknowledged writes, with its start.
pub fn write_gaps(attempts: &[WriteAttempt]) -> Vec<(Duration, Instant)> {
    let mut gaps = Vec::new();
    let mut last_ok: Option<Instant> = None;
    for a in attempts.iter().filter(|a| a.result.is_ok()) {
        if let Some(prev) = last_ok {
            gaps.push((a.ended - prev, prev));
        }
        last_ok = Some(a.ended);
    }
    gaps
}

/// Checks that every acknowledged write is readable with the data written.
pub async fn verify_acknowledged(
    client: &zookeeper_client::Client,
    attempts: &[WriteAttempt],
) -> usize {
    let (children, _) = client
        .get_children("/writes")
        .await
        .expect("list /writes after the rollout");
    let present: std::collections::HashSet<String> = children
        .into_iter()
        .map(|c| format!("/writes/{c}"))
        .collect();
    let mut checked = 0;
    for a in attempts {
        if let Ok(path) = &a.result {
            assert!(
                present.contains(path),
                "acknowledged write {path} is missing"
            );
            let (data, _) = client
                .get_data(path)
                .await
                .unwrap_or_else(|e| panic!("read acknowledged write {path}: {e}"));
            assert_eq!(data, a.data.to_string().into_bytes(), "data of {path}");
            checked += 1;
        }
    }
    checked
}
