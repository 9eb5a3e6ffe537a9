//! Real ZooKeeper ensembles for tests and the rolling-restart benchmark.
//!
//! Each member is a real JVM (`QuorumPeerMain`) from the jars `e2e/lib/zookeeper-dist.sh`
//! prepares, listening on its own loopback address 127.0.0.<ordinal+1> with the same ports as
//! the others, as pods do. Every process is killed when the [`Ensemble`] is dropped.

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use zookeeper_operator::health::{
    EnsembleView, MemberAddress, MemberName, Ordinal, PodFacts, ProbeConfig, probe_ensemble,
};
use zookeeper_operator::rollout::Observation;

use crate::dist::dist;

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
            .arg(crate::dist::classpath(&self.dist))
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
                uid: None,
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
            client_address_cache: Duration::ZERO,
            pods,
            probes,
            probed_at,
        }
    }

    /// The ensemble view now.
    pub async fn view(&mut self) -> EnsembleView {
        let rev = self.revision(0).to_string();
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
