//! Real ZooKeeper servers with dynamic reconfiguration enabled, started and stopped the way a
//! StatefulSet would start and stop pods: the caller says which servers should run and with
//! which boot configuration ([`DynamicEnsemble::run`]); membership itself only ever changes
//! through `reconfig`.
//!
//! Server `id` listens on its own loopback address 127.0.0.<id> with the same ports as the
//! others, as pods do. Every JVM is killed by PID when the ensemble is dropped (also when a test
//! panics). Jars: `e2e/lib/zookeeper-dist.sh`, as for `ensemble.rs`.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use zookeeper_operator::health::{
    EnsembleView, MemberAddress, Mode, Ordinal, ProbeConfig, probe_ensemble,
};
use zookeeper_operator::membership::{
    CommittedConfig, DesiredMembership, Health, MemberPorts, ServerId,
};
use zookeeper_operator::reconfig::{Reconfigurer, SuperUser, member_config_versions};

use crate::dist::dist;

struct Server {
    dir: PathBuf,
    child: Child,
}

/// Up to `slots` reconfiguration-enabled servers (ids `1..=slots`).
pub struct DynamicEnsemble {
    /// Ports every server uses.
    pub ports: MemberPorts,
    slots: u32,
    user: SuperUser,
    dist: PathBuf,
    tmp: tempfile::TempDir,
    running: BTreeMap<ServerId, Server>,
    generation: u32,
}

impl DynamicEnsemble {
    /// Reserves ids `1..=slots` on ports `base..base+3`, failing when any is taken; starts
    /// nothing. Servers accept `user` as super user.
    pub fn new(slots: u32, base: u16, user: SuperUser) -> Self {
        for id in 1..=slots {
            for port in base..base + 3 {
                let addr = format!("127.0.0.{id}:{port}");
                if let Err(e) = TcpListener::bind(&addr) {
                    panic!(
                        "{addr} is taken ({e}); stop what listens there or change the test's port base"
                    );
                }
            }
        }
        Self {
            ports: MemberPorts {
                client: base,
                quorum: base + 1,
                election: base + 2,
            },
            slots,
            user,
            dist: dist(),
            tmp: tempfile::tempdir().expect("temporary directory"),
            running: BTreeMap::new(),
            generation: 0,
        }
    }

    /// The desired membership of `replicas` servers on these addresses (each client port bound
    /// to the server's own address).
    pub fn desired(&self, replicas: u32) -> DesiredMembership {
        assert!(replicas <= self.slots, "only {} slots", self.slots);
        DesiredMembership::new(
            "zk",
            replicas,
            self.ports,
            |o| format!("127.0.0.{}", o.0 + 1),
            |o| Some(format!("127.0.0.{}", o.0 + 1)),
        )
    }

    /// Where server `id` serves clients.
    pub fn address(&self, id: ServerId) -> MemberAddress {
        MemberAddress::new(format!("127.0.0.{id}"), self.ports.client)
    }

    /// Every slot's client address, for clients that should follow the ensemble.
    pub fn connect_string(&self) -> String {
        (1..=self.slots)
            .map(|id| self.address(ServerId(id)).to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The servers that run.
    pub fn running(&self) -> Vec<ServerId> {
        self.running.keys().copied().collect()
    }

    /// What the operator's membership step would see of servers `ids`: their `srvr`/`mntr`
    /// (each within `timeout`) and the configuration version each serving one has learned.
    pub async fn health(&self, ids: &[ServerId], timeout: Duration) -> Health {
        let probes = probe_ensemble(
            ids.iter().map(|id| (id.ordinal(), self.address(*id))),
            ProbeConfig {
                timeout,
                concurrency: 8,
            },
        )
        .await;
        let serving: Vec<ServerId> = probes
            .iter()
            .filter(|p| p.srvr.serving().is_some())
            .map(|p| ServerId::of(p.ordinal))
            .collect();
        let versions = member_config_versions(
            serving.iter().map(|id| (*id, self.address(*id))),
            timeout * 3,
        )
        .await;
        Health::from_probes(&probes, versions)
    }

    /// [`Self::health`] of every running server, each within 500 ms.
    pub async fn health_of_running(&self) -> Health {
        self.health(&self.running(), Duration::from_millis(500))
            .await
    }

    /// Waits (up to 60 s) until one leader serves with `voters - 1` synced voting followers
    /// and every running server serves; returns the leader.
    pub async fn wait_whole(&self, voters: u32) -> ServerId {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let h = self.health_of_running().await;
            let leaders: Vec<ServerId> = h
                .modes
                .iter()
                .filter(|(_, m)| **m == Mode::Leader)
                .map(|(id, _)| *id)
                .collect();
            let serving = h
                .modes
                .values()
                .filter(|m| matches!(m, Mode::Leader | Mode::Follower | Mode::Observer))
                .count();
            if let [leader] = leaders[..]
                && serving == self.running.len()
                && h.synced_voting_followers == Some(voters - 1)
            {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "no leader with {voters} voters and every server serving: {h:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the operator waits for after `old` handed its leadership off, before it stops it:
    /// through the operator's own probes of the others (`old` is not asked), one of them leads
    /// and counts every voter left synced (`EnsembleView::successor_serves`; `voters_after`
    /// without the leader's `zk_quorum_size`). Returns how long that took; fails after 10 s.
    pub async fn wait_successor(&self, old: ServerId, voters_after: u32) -> Duration {
        let ordinal = |id: ServerId| Ordinal(id.0 - 1);
        let others: Vec<(Ordinal, MemberAddress)> = (1..=self.slots)
            .map(ServerId)
            .filter(|id| *id != old)
            .map(|id| (ordinal(id), self.address(id)))
            .collect();
        let started = Instant::now();
        loop {
            let probes = probe_ensemble(others.clone(), ProbeConfig::default()).await;
            let view = EnsembleView::build("zk", self.slots, None, &[], &probes);
            if view.successor_serves(ordinal(old), voters_after) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no successor leads every voter left 10 s after the handoff: {view:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The committed configuration, read as the super user after a `sync` (retried for up to
    /// 60 s, as a leader change drops the session).
    pub async fn committed(&self) -> CommittedConfig {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let connected =
                Reconfigurer::connect(&self.connect_string(), &self.user, Duration::from_secs(5))
                    .await;
            let error = match connected {
                Ok(rc) => match rc.committed().await {
                    Ok(c) => return c,
                    Err(e) => format!("reading it: {e}"),
                },
                Err(e) => format!("connecting: {e}"),
            };
            assert!(
                Instant::now() < deadline,
                "cannot read the committed configuration in 60 s ({error})\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes exactly the servers of `run` run: starts those that do not, each with its boot
    /// configuration, and stops the others. A stopped server's data directory is deleted, so a
    /// server that joins again later starts empty in a new directory and syncs from the leader
    /// (the Kubernetes wiring deletes a removed member's PVC for the same reason).
    pub fn run(&mut self, run: &BTreeMap<ServerId, CommittedConfig>) {
        let stale: Vec<ServerId> = self
            .running
            .keys()
            .filter(|id| !run.contains_key(id))
            .copied()
            .collect();
        for id in stale {
            self.stop(id);
        }
        for (id, boot) in run {
            if !self.running.contains_key(id) {
                self.start(*id, boot);
            }
        }
    }

    /// Starts server `id` with `boot` as its dynamic configuration, in a new directory.
    pub fn start(&mut self, id: ServerId, boot: &CommittedConfig) {
        assert!(!self.running.contains_key(&id), "server {id} already runs");
        assert!(
            boot.servers.contains_key(&id),
            "server {id} would boot with a configuration that lacks itself"
        );
        self.generation += 1;
        let dir = self
            .tmp
            .path()
            .join(format!("server-{id}-gen-{}", self.generation));
        let data = dir.join("data");
        fs::create_dir_all(&data).expect("server data directory");
        fs::write(data.join("myid"), format!("{id}\n")).expect("myid");
        let dynamic = dir.join(boot.dynamic_file_name("zoo.cfg"));
        fs::write(&dynamic, boot.dynamic_file()).expect("dynamic configuration");
        let cfg = format!(
            "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={data}\n\
             reconfigEnabled=true\nstandaloneEnabled=false\ndynamicConfigFile={dynamic}\n\
             4lw.commands.whitelist=srvr,mntr,ruok\nadmin.enableServer=false\n",
            data = data.display(),
            dynamic = dynamic.display(),
        );
        fs::write(dir.join("zoo.cfg"), cfg).expect("zoo.cfg");
        let child = self.spawn(&dir);
        self.running.insert(id, Server { dir, child });
    }

    fn spawn(&self, dir: &Path) -> Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("zookeeper.log"))
            .expect("server log");
        Command::new("java")
            .args([
                "-Xmx160m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Dzookeeper.console.threshold=INFO",
            ])
            .arg(self.user.server_flag())
            .arg("-cp")
            .arg(crate::dist::classpath(&self.dist))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start java")
    }

    /// Kills server `id` and starts it again on the same directory, as a pod restart keeps
    /// its volume: it boots with the last configuration ZooKeeper wrote there. As the start
    /// script must, it first checks that this configuration names the server itself: a joiner
    /// that synced before it was added has learned the committed configuration, which does not
    /// (ZooKeeper then refuses to start: "My id 2 not in the peer list"); such a server boots
    /// with `boot`, its published joiner configuration, again.
    pub fn restart(&mut self, id: ServerId, boot: &CommittedConfig) {
        let dir = {
            let s = self.running.get_mut(&id).expect("server runs");
            let _ = s.child.kill();
            let _ = s.child.wait();
            s.dir.clone()
        };
        let cfg_path = dir.join("zoo.cfg");
        let cfg = fs::read_to_string(&cfg_path).expect("zoo.cfg");
        let dynamic = cfg
            .lines()
            .find_map(|l| l.strip_prefix("dynamicConfigFile="))
            .map(PathBuf::from)
            .expect("zoo.cfg names its dynamic file");
        let names_itself = fs::read_to_string(&dynamic)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("server.{id}=")));
        if !names_itself {
            assert!(
                boot.servers.contains_key(&id),
                "server {id} would boot with a configuration that lacks itself"
            );
            let fresh = dir.join(boot.dynamic_file_name("zoo.cfg"));
            fs::write(&fresh, boot.dynamic_file()).expect("dynamic configuration");
            let cfg: String = cfg
                .lines()
                .map(|l| {
                    if l.starts_with("dynamicConfigFile=") {
                        format!("dynamicConfigFile={}\n", fresh.display())
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
            fs::write(&cfg_path, cfg).expect("zoo.cfg");
        }
        let child = self.spawn(&dir);
        self.running.get_mut(&id).expect("server runs").child = child;
    }

    /// Kills server `id` (SIGKILL, by PID), waits for it and deletes its directory.
    pub fn stop(&mut self, id: ServerId) {
        if let Some(mut s) = self.running.remove(&id) {
            let _ = s.child.kill();
            let _ = s.child.wait();
            let _ = fs::remove_dir_all(&s.dir);
        }
    }

    /// The last lines of every running server's log, for failure messages.
    pub fn logs(&self) -> String {
        self.running
            .iter()
            .map(|(id, s)| {
                let text = fs::read_to_string(s.dir.join("zookeeper.log")).unwrap_or_default();
                // Probes and client sessions are noise here.
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.contains("Processing ") && !l.contains("ession"))
                    .collect();
                format!(
                    "--- server {id}\n{}",
                    lines[lines.len().saturating_sub(30)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The files in server `id`'s directory whose name starts with `zoo.cfg`, with their text.
    pub fn config_files(&self, id: ServerId) -> Vec<(String, String)> {
        let Some(s) = self.running.get(&id) else {
            return Vec::new();
        };
        let mut files: Vec<(String, String)> = fs::read_dir(&s.dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("zoo.cfg"))
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().into_owned(),
                            fs::read_to_string(e.path()).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }
}

impl Drop for DynamicEnsemble {
    fn drop(&mut self) {
        for s in self.running.values_mut() {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }
}
