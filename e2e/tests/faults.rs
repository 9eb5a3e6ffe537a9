//! Faults during a rolling restart under a write load, on the real cluster.
//!
//! Each test creates a 3-member cluster in its own namespace, starts a writer through the client
//! Service, starts a config-change rollout and injects one fault at its moment: a hung follower
//! (SIGSTOP), the leader's pod force-deleted, the operator's pod deleted at each phase, the API
//! server stopped for 60 s, a member cut off from its peers, a second PodDisruptionBudget, and
//! a revision whose pods cannot start. Throughout, a sampler reads the member pods and the
//! cluster's status. Each test asserts that the operator never had two members not serving
//! (a member the fault took down counts as the one), that every acknowledged write is read
//! back, that the status told the truth (Available while a quorum is Ready, not otherwise),
//! and that the rollout finishes once the fault clears (or blocks with the expected reason while
//! it lasts). Each prints one row: `FAULT name | runs | max not serving | lost writes | longest
//! write gap | final reason`, which `e2e/faults` collects into a table.
//!
//! The faults reach into this host: member processes are found through their pod's cgroup
//! (kubelet with cgroupfs on cgroup v1), the network cut enters the pod's network namespace,
//! and the API server is the host process `e2e/cluster` recorded in /run/zkop. Every fault is
//! undone by a guard when the test ends, also when it fails.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zookeeper_operator::crd::ZookeeperCluster;

use super::{
    OPERATOR_NAMESPACE, SamplerState, TestNamespace, apply_cluster, client, cluster, condition,
    log, member_pods, ordinal, pod_ready, record, spec, support, uids, wait_settled, wait_until,
};

const NAME: &str = "zk";
const MEMBERS: usize = 3;
/// The change every fault's rollout makes (restart-relevant: it is in each member's zoo.cfg).
const CHANGE: &str = "maxClientCnxns";
/// Longest the status may contradict the pods: the operator sees a pod's readiness change
/// through a watch and writes status on its next reconcile, probes add their periods.
const STATUS_LAG: Duration = Duration::from_secs(20);

/// What the sampler saw during one fault run.
#[derive(Default, Clone, Debug)]
pub(super) struct Watch {
    pub(super) pods: SamplerState,
    /// Longest stretch in which Available contradicted the Ready members.
    longest_lie: Duration,
    lie_detail: String,
    lie_since: Option<(Instant, String)>,
    /// Progressing and Degraded `status/reason` in the order first seen.
    reasons: Vec<String>,
    /// Samples lost because the API server did not answer within 3 s.
    failed_samples: usize,
    /// Pod samples whose Ready=False came from the node controller (node status unknown after
    /// the API server's absence) while the kubelet reported the container ready.
    node_marked: usize,
}

/// The kubelet's view of readiness: a pod whose containers are ready but whose Ready condition
/// the node controller set to False (the node's heartbeat went stale while the API server was
/// away) still serves. Such pods are shown Ready; returns how many there were.
fn kubelet_view(pods: &[Pod]) -> (Vec<Pod>, usize) {
    let mut overridden = 0;
    let pods = pods
        .iter()
        .cloned()
        .map(|mut p| {
            let conditions = p.status.as_mut().and_then(|s| s.conditions.as_mut());
            if let Some(cs) = conditions {
                let containers_ready = cs
                    .iter()
                    .any(|c| c.type_ == "ContainersReady" && c.status == "True");
                if containers_ready && p.metadata.deletion_timestamp.is_none() {
                    for c in cs.iter_mut() {
                        if c.type_ == "Ready" && c.status != "True" {
                            c.status = "True".into();
                            overridden += 1;
                        }
                    }
                }
            }
            p
        })
        .collect();
    (pods, overridden)
}

impl Watch {
    fn observe(&mut self, pods: &[Pod], zk: &ZookeeperCluster) {
        let (pods, overridden) = kubelet_view(pods);
        let pods = &pods[..];
        self.node_marked += overridden;
        record(&mut self.pods, pods, MEMBERS);
        let ready = (0..MEMBERS)
            .filter(|i| pods.iter().any(|p| ordinal(p) == *i && pod_ready(p)))
            .count();
        let available = condition(zk, "Available").map(|c| c.0);
        let lie = match available.as_deref() {
            Some("True") => ready < MEMBERS / 2 + 1,
            Some("False") => ready > MEMBERS / 2,
            _ => false,
        };
        let now = Instant::now();
        if lie {
            let detail = format!("Available={available:?} with {ready} Ready members");
            let since = self.lie_since.get_or_insert((now, detail));
            let lasted = now - since.0;
            if lasted > self.longest_lie {
                self.longest_lie = lasted;
                self.lie_detail = since.1.clone();
            }
        } else {
            self.lie_since = None;
        }
        for type_ in ["Progressing", "Degraded"] {
            if let Some((status, reason, _)) = condition(zk, type_) {
                let seen = format!("{type_}={status}/{reason}");
                if !self.reasons.contains(&seen) {
                    self.reasons.push(seen);
                }
            }
        }
    }
}

/// Samples the member pods and the cluster every 300 ms; an API server that does not answer
/// costs samples, not the sampler.
pub(super) struct FaultSampler {
    state: Arc<Mutex<Watch>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultSampler {
    fn start(client: Client, ns: String) -> Self {
        let state = Arc::new(Mutex::new(Watch::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (state, stop) = (state.clone(), stop.clone());
            tokio::spawn(async move {
                let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
                let clusters: Api<ZookeeperCluster> = Api::namespaced(client, &ns);
                let selector = format!("app.kubernetes.io/instance={NAME}");
                while !stop.load(Ordering::Relaxed) {
                    let sample = tokio::time::timeout(Duration::from_secs(3), async {
                        let p = pods.list(&ListParams::default().labels(&selector)).await;
                        let zk = clusters.get(NAME).await;
                        Some((p.ok()?.items, zk.ok()?))
                    })
                    .await
                    .ok()
                    .flatten();
                    {
                        let mut w = state.lock().unwrap();
                        match sample {
                            Some((p, zk)) => w.observe(&p, &zk),
                            None => w.failed_samples += 1,
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            })
        };
        FaultSampler { state, stop, task }
    }

    pub(super) fn now(&self) -> Watch {
        self.state.lock().unwrap().clone()
    }

    async fn stop(self) -> Watch {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.state.lock().unwrap().clone()
    }
}

/// One fault run: the cluster, its writer and the sampler.
pub(super) struct Run {
    pub(super) client: Client,
    ns: TestNamespace,
    writer: support::Writer,
    pub(super) sampler: FaultSampler,
    /// Member pod UIDs before the rollout.
    pub(super) before: std::collections::BTreeMap<usize, String>,
    pub(super) fault: &'static str,
    /// Spec fields of this run beyond the suite's defaults, kept by every `apply`.
    base: Value,
}

impl Run {
    /// None (the test returns at once) unless `ZKOP_E2E_FAULTS` is set: `e2e/faults` sets it,
    /// so a plain `e2e/operator-test` does not run the fault suite.
    async fn prepare(fault: &'static str, namespace: &str) -> Option<Run> {
        if std::env::var_os("ZKOP_E2E_FAULTS").is_none() {
            log(format!("{fault}: skipped (run it with e2e/faults)"));
            return None;
        }
        Some(Run::start(fault, namespace, json!({})).await)
    }

    /// A settled cluster with `base` merged into the suite's spec, its writer (on the client
    /// Service) and sampler.
    pub(super) async fn start(fault: &'static str, namespace: &str, base: Value) -> Run {
        Run::start_with(fault, namespace, base, super::Connect::Service).await
    }

    /// The same, the writer connecting as `connect` says.
    pub(super) async fn start_with(
        fault: &'static str,
        namespace: &str,
        base: Value,
        connect: super::Connect,
    ) -> Run {
        let client = client().await;
        let (ns, _, writer) =
            super::settled_cluster_with_writer_spec(&client, namespace, base.clone(), connect)
                .await;
        let before = uids(&member_pods(&client, namespace, NAME).await);
        let sampler = FaultSampler::start(client.clone(), namespace.to_string());
        log(format!(
            "{fault}: cluster settled, writer and sampler running"
        ));
        Run {
            client,
            ns,
            writer,
            sampler,
            before,
            fault,
            base,
        }
    }

    pub(super) fn ns(&self) -> &str {
        &self.ns.name
    }

    pub(super) async fn zk(&self) -> ZookeeperCluster {
        cluster(&self.client, self.ns(), NAME).await
    }

    pub(super) async fn pods(&self) -> Vec<Pod> {
        member_pods(&self.client, self.ns(), NAME).await
    }

    /// Applies the rollout's change (plus `extra`) and returns the new generation.
    pub(super) async fn apply(&self, extra: Value) -> Option<i64> {
        let mut change = self.base.clone();
        super::merge(&mut change, json!({"config": {CHANGE: 61}}));
        super::merge(&mut change, extra);
        apply_cluster(&self.client, self.ns(), NAME, spec(change))
            .await
            .expect("apply the rollout's change")
            .metadata
            .generation
    }

    pub(super) async fn wait_observed(&self, generation: Option<i64>) {
        wait_until(
            &format!(
                "{}: the operator observed generation {generation:?}",
                self.fault
            ),
            Duration::from_secs(120),
            || async {
                let zk = self.zk().await;
                (zk.status.as_ref()?.observed_generation == generation).then_some(())
            },
        )
        .await;
    }

    /// Waits until the pods satisfy `check` (each poll lists them once).
    pub(super) async fn wait_pods(
        &self,
        what: &str,
        limit: Duration,
        check: impl Fn(&[Pod]) -> bool,
    ) {
        wait_until(&format!("{}: {what}", self.fault), limit, || async {
            check(&self.pods().await).then_some(())
        })
        .await;
    }

    /// True once a member pod was evicted or replaced since the rollout began.
    pub(super) fn replaced(&self, pods: &[Pod]) -> bool {
        pods.len() < MEMBERS
            || pods.iter().any(|p| {
                p.metadata.deletion_timestamp.is_some()
                    || self.before.get(&ordinal(p)) != p.uid().as_ref()
            })
    }

    /// A member of the given mode (from the operator's status), the lowest or highest ordinal.
    pub(super) async fn member(&self, mode: &str, highest: bool) -> Pod {
        let zk = self.zk().await;
        let mut names: Vec<(i32, String)> = zk
            .status
            .as_ref()
            .expect("status")
            .members
            .iter()
            .filter(|m| m.mode == mode)
            .map(|m| (m.ordinal, m.name.clone()))
            .collect();
        names.sort();
        let (_, name) = if highest { names.last() } else { names.first() }
            .unwrap_or_else(|| panic!("no {mode} in the status"))
            .clone();
        Api::<Pod>::namespaced(self.client.clone(), self.ns())
            .get(&name)
            .await
            .expect("member pod")
    }

    /// The rollout settles; then the checks and the table row. `blocked` is the reason the
    /// rollout showed while the fault lasted, when it had to block.
    pub(super) async fn finish(self, blocked: Option<String>) -> Watch {
        let zk = wait_settled(&self.client, self.ns(), NAME, Duration::from_secs(600)).await;
        let settled_reason = condition(&zk, "Progressing")
            .map(|c| c.1)
            .unwrap_or_default();
        let rev = super::update_revision(&self.client, self.ns(), NAME)
            .await
            .expect("update revision");
        let pods = self.pods().await;
        let watch = self.sampler.stop().await;
        let (zk_client, attempts) = self.writer.stop().await;
        let lost = lost_writes(&zk_client, &attempts).await;
        let acknowledged = attempts.iter().filter(|a| a.result.is_ok()).count();
        let (gap, _) = support::longest_unavailability(&attempts);
        let final_reason = match &blocked {
            Some(b) => format!("{b} -> {settled_reason}"),
            None => settled_reason.clone(),
        };
        log(format!(
            "{}: {} samples ({} without an answer), most members not serving at once {} [{}], \
             replaced {:?}, reasons seen {:?}, longest status contradiction {:.1}s {}; {} pod \
             samples Ready=False by the node controller only; writer: {} attempts, \
             {acknowledged} acknowledged, {} lost",
            self.fault,
            watch.pods.samples,
            watch.failed_samples,
            watch.pods.max_down,
            watch.pods.max_down_detail,
            watch.pods.replaced,
            watch.reasons,
            watch.longest_lie.as_secs_f64(),
            watch.lie_detail,
            watch.node_marked,
            attempts.len(),
            lost.len(),
        ));
        eprintln!(
            "FAULT {} | 1 | {} | {} | {:.1}s | {}",
            self.fault,
            watch.pods.max_down,
            lost.len(),
            gap.as_secs_f64(),
            final_reason
        );
        assert!(
            watch.pods.max_down <= 1,
            "{}: two members were not serving at once: {}",
            self.fault,
            watch.pods.max_down_detail
        );
        assert!(
            lost.is_empty(),
            "{}: acknowledged writes are missing: {:?}",
            self.fault,
            &lost[..lost.len().min(10)]
        );
        assert!(acknowledged > 0, "the writer wrote");
        support::verify_acknowledged(&zk_client, &attempts).await;
        assert!(
            watch.longest_lie <= STATUS_LAG,
            "{}: the status contradicted the pods for {:.1}s: {}",
            self.fault,
            watch.longest_lie.as_secs_f64(),
            watch.lie_detail
        );
        assert_eq!(settled_reason, "UpToDate");
        assert!(
            pods.iter()
                .all(|p| p.labels().get("controller-revision-hash") == Some(&rev)),
            "every member runs the update revision {rev}"
        );
        assert_eq!(pods.len(), MEMBERS);
        watch
    }
}

/// Acknowledged writes that are not under /writes (the data is checked by
/// `support::verify_acknowledged` afterwards).
async fn lost_writes(
    client: &zookeeper_client::Client,
    attempts: &[support::WriteAttempt],
) -> Vec<String> {
    let (children, _) = client
        .get_children("/writes")
        .await
        .expect("list /writes after the rollout");
    let present: BTreeSet<String> = children
        .into_iter()
        .map(|c| format!("/writes/{c}"))
        .collect();
    attempts
        .iter()
        .filter_map(|a| a.result.as_ref().ok())
        .filter(|p| !present.contains(*p))
        .cloned()
        .collect()
}

/// The host PIDs of a pod's ZooKeeper container, from its cgroup (cgroup v1, cgroupfs).
fn container_pids(pod: &Pod) -> Vec<i32> {
    let uid = pod.uid().expect("pod uid");
    let id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == "zookeeper"))
        .and_then(|c| c.container_id.clone())
        .expect("the zookeeper container has started");
    let id = id.rsplit("://").next().unwrap().to_string();
    for qos in ["", "burstable/", "besteffort/"] {
        let procs = format!("/sys/fs/cgroup/pids/kubepods/{qos}pod{uid}/{id}/cgroup.procs");
        if let Ok(text) = std::fs::read_to_string(&procs) {
            let pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if !pids.is_empty() {
                return pids;
            }
        }
    }
    panic!("no processes found in the cgroup of {}", pod.name_any());
}

fn signal(sig: &str, pids: &[i32]) -> bool {
    let mut cmd = Command::new("kill");
    cmd.arg(format!("-{sig}"));
    for p in pids {
        cmd.arg(p.to_string());
    }
    cmd.status().is_ok_and(|s| s.success())
}

/// Processes stopped with SIGSTOP; SIGCONT when dropped.
struct Frozen {
    pids: Vec<i32>,
    what: String,
}

impl Frozen {
    fn freeze(pids: Vec<i32>, what: String) -> Frozen {
        assert!(signal("STOP", &pids), "SIGSTOP {what} ({pids:?})");
        log(format!("SIGSTOP {what} (pids {pids:?})"));
        Frozen { pids, what }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // The processes may be gone (killed by a probe, or their pod deleted).
        let ok = signal("CONT", &self.pids);
        log(format!(
            "SIGCONT {} (pids {:?}){}",
            self.what,
            self.pids,
            if ok { "" } else { ": some were gone" }
        ));
    }
}

/// The cluster's API server, stopped with SIGSTOP: it keeps its state and its sockets, and
/// answers nothing until SIGCONT (sent on drop, also when the test fails).
fn api_server_pid() -> i32 {
    let text = std::fs::read_to_string("/run/zkop/kube-apiserver.pid")
        .expect("/run/zkop/kube-apiserver.pid (the local cluster started by e2e/cluster)");
    let mut parts = text.split_whitespace();
    let pid: i32 = parts.next().and_then(|p| p.parse().ok()).expect("a PID");
    let exe = parts.next().expect("the executable");
    let running = std::fs::read_link(format!("/proc/{pid}/exe")).expect("the API server runs");
    assert_eq!(
        running.to_string_lossy(),
        exe,
        "PID {pid} is the API server"
    );
    pid
}

/// Drop rules for a member's quorum and election ports inside its own network namespace,
/// removed on drop. The namespace is held open, so the rules can be removed whatever happens
/// to the process it was found through.
struct NetworkCut {
    netns: File,
    rules: Vec<Vec<String>>,
}

impl NetworkCut {
    fn cut(pid: i32, ports: &[u16]) -> NetworkCut {
        let netns = File::open(format!("/proc/{pid}/ns/net")).expect("the pod's network namespace");
        let mut rules = Vec::new();
        for port in ports {
            for chain in ["INPUT", "OUTPUT"] {
                rules.push(
                    [
                        chain,
                        "-p",
                        "tcp",
                        "--dport",
                        &port.to_string(),
                        "-j",
                        "DROP",
                    ]
                    .map(String::from)
                    .to_vec(),
                );
            }
        }
        let cut = NetworkCut { netns, rules };
        for rule in &cut.rules {
            assert!(cut.iptables("-A", rule), "iptables -A {rule:?}");
        }
        cut
    }

    fn iptables(&self, op: &str, rule: &[String]) -> bool {
        let ns = format!("/proc/{}/fd/{}", std::process::id(), self.netns.as_raw_fd());
        Command::new("nsenter")
            .arg(format!("--net={ns}"))
            .arg("iptables")
            .arg("-w")
            .arg(op)
            .args(rule)
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for NetworkCut {
    fn drop(&mut self) {
        let removed = self
            .rules
            .iter()
            .filter(|rule| self.iptables("-D", rule))
            .count();
        log(format!(
            "network cut removed ({removed} of {} rules)",
            self.rules.len()
        ));
    }
}

/// The member's answer to `srvr` on its pod address ("" when it does not answer in 3 s).
async fn srvr(pod: &Pod) -> String {
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    let answer = tokio::time::timeout(Duration::from_secs(3), async {
        let mut s = tokio::net::TcpStream::connect((ip.as_str(), 2181))
            .await
            .ok()?;
        s.write_all(b"srvr").await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    })
    .await;
    answer.ok().flatten().unwrap_or_default()
}

async fn delete_operator_pods(client: &Client, phase: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let pods = api
        .list(&ListParams::default().labels("app.kubernetes.io/name=zookeeper-operator"))
        .await
        .expect("list operator pods");
    assert!(!pods.items.is_empty(), "the operator runs");
    for p in &pods.items {
        api.delete(&p.name_any(), &DeleteParams::default())
            .await
            .expect("delete operator pod");
    }
    log(format!(
        "deleted the operator pod(s) {:?} {phase}",
        pods.items.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    ));
}

/// Warning Events of the namespace with `reason`, their notes.
async fn warnings(client: &Client, ns: &str, reason: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason))
        .map(|e| e.note.unwrap_or_default())
        .collect()
}

pub(super) async fn wait_condition(
    run: &Run,
    type_: &str,
    status: &str,
    reason: &str,
    limit: Duration,
) -> String {
    wait_until(
        &format!("{}: {type_}={status} {reason}", run.fault),
        limit,
        || async {
            let zk = run.zk().await;
            // A refused spec never becomes the awaited condition: say so at once.
            if let Some((_, r, m)) = condition(&zk, "Degraded") {
                assert!(
                    r != "InvalidSpec" || reason == "InvalidSpec",
                    "{}: the operator refused the spec: {m}",
                    run.fault
                );
            }
            let (s, r, m) = condition(&zk, type_)?;
            (s == status && r == reason).then_some(m)
        },
    )
    .await
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed: run e2e/faults"]
async fn follower_hung_by_sigstop_before_and_during_the_rollout() {
    let Some(run) = Run::prepare("follower SIGSTOP", "e2e-fault-sigstop").await else {
        return;
    };
    // The follower the rollout would take first: the operator must not treat its open port as
    // a member that serves, nor restart another member while it hangs.
    let follower = run.member("follower", true).await;
    let name = follower.name_any();
    let frozen = Frozen::freeze(container_pids(&follower), format!("ZooKeeper of {name}"));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let generation = run.apply(json!({})).await;
    run.wait_observed(generation).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let during = condition(&run.zk().await, "Progressing")
        .map(|c| c.1)
        .unwrap_or_default();
    let watch = run.sampler.now();
    log(format!(
        "while {name} hangs: Progressing {during}, replaced {:?}, reasons {:?}",
        watch.pods.replaced, watch.reasons
    ));
    drop(frozen);
    run.finish(Some(during)).await;
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed: run e2e/faults"]
async fn leader_pod_force_deleted_mid_rollout() {
    let Some(run) = Run::prepare("leader force-deleted", "e2e-fault-leader").await else {
        return;
    };
    // The rollout's first part (a canary of zk-2) settles, so that the fault meets the rollout
    // between two restarts with every member serving: the leader's pod is force-deleted, then
    // the rollout is let go on while the leader's replacement starts.
    let generation = run.apply(json!({"updateStrategy": {"partition": 2}})).await;
    run.wait_observed(generation).await;
    wait_settled(&run.client, run.ns(), NAME, Duration::from_secs(300)).await;
    let leader = run.member("leader", false).await;
    Api::<Pod>::namespaced(run.client.clone(), run.ns())
        .delete(&leader.name_any(), &DeleteParams::default().grace_period(0))
        .await
        .expect("force-delete the leader's pod");
    log(format!(
        "force-deleted the leader's pod {}",
        leader.name_any()
    ));
    let generation = run.apply(json!({})).await;
    run.wait_observed(generation).await;
    run.finish(None).await;
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed: run e2e/faults"]
async fn operator_pod_deleted_before_eviction_after_eviction_and_while_the_member_rejoins() {
    let Some(run) = Run::prepare("operator pod deleted x3", "e2e-fault-operator").await else {
        return;
    };
    run.apply(json!({})).await;
    delete_operator_pods(&run.client, "before the first eviction").await;
    run.wait_pods(
        "the first member is evicted",
        Duration::from_secs(180),
        |pods| run.replaced(pods),
    )
    .await;
    delete_operator_pods(&run.client, "after the first eviction").await;
    run.wait_pods(
        "a restarted member runs and is not Ready yet (rejoining)",
        Duration::from_secs(180),
        |pods| {
            pods.iter().any(|p| {
                run.before.get(&ordinal(p)) != p.uid().as_ref()
                    && p.metadata.deletion_timestamp.is_none()
                    && !pod_ready(p)
            })
        },
    )
    .await;
    delete_operator_pods(&run.client, "while the restarted member rejoins").await;
    let watch = run.finish(None).await;
    // Each member was restarted exactly once: no new operator repeated an eviction.
    for i in 0..MEMBERS {
        assert_eq!(
            watch.pods.uids[&i].len(),
            2,
            "zk-{i} was restarted exactly once: {:?}",
            watch.pods.uids[&i]
        );
    }
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed: run e2e/faults"]
async fn api_server_stopped_for_60s_mid_rollout() {
    let Some(run) = Run::prepare("API server stopped 60s", "e2e-fault-apiserver").await else {
        return;
    };
    let generation = run.apply(json!({})).await;
    run.wait_observed(generation).await;
    run.wait_pods(
        "the first member is evicted",
        Duration::from_secs(180),
        |pods| run.replaced(pods),
    )
    .await;
    let version = run.zk().await.resource_version();
    let pid = api_server_pid();
    let stopped = Frozen::freeze(vec![pid], "the API server".to_string());
    tokio::time::sleep(Duration::from_secs(60)).await;
    drop(stopped);
    let back = Instant::now();
    // Only the operator writes the cluster's object: its next write is it acting again.
    let status_back = Arc::new(Mutex::new(None));
    wait_until(
        "the operator acts after the API server's return",
        Duration::from_secs(120),
        || async {
            let zk = tokio::time::timeout(Duration::from_secs(3), run.zk())
                .await
                .ok()?;
            if zk.resource_version() != version && status_back.lock().unwrap().is_none() {
                *status_back.lock().unwrap() = Some(back.elapsed());
            }
            status_back.lock().unwrap().map(|_| ())
        },
    )
    .await;
    let acted = status_back.lock().unwrap().expect("measured");
    log(format!(
        "FIGURE the operator wrote the cluster's status {:.1}s after the API server's return",
        acted.as_secs_f64()
    ));
    let blocked = format!("acted after {:.0}s", acted.as_secs_f64());
    assert!(
        acted <= Duration::from_secs(30),
        "the operator acted {:.1}s after the API server's return (limit 30s)",
        acted.as_secs_f64()
    );
    run.finish(Some(blocked)).await;
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed: run e2e/faults"]
async fn member_cut_off_from_its_peers_still_answering_srvr() {
    let Some(run) = Run::prepare("member cut from peers", "e2e-fault-netcut").await else {
        return;
    };
    // The follower the rollout reaches last among the followers: the operator must see that it
    // does not serve and restart no other member meanwhile.
    let follower = run.member("follower", false).await;
    let name = follower.name_any();
    let pid = container_pids(&follower)[0];
    let cut = NetworkCut::cut(pid, &[2888, 3888]);
    log(format!(
        "cut {name} off from its peers (2888, 3888 dropped in its namespace)"
    ));
    let apiu = Api::<Pod>::namespaced(run.client.clone(), run.ns());
    wait_until(
        &format!("{name} is not Ready"),
        Duration::from_secs(90),
        || async { (!pod_ready(&apiu.get(&name).await.ok()?)).then_some(()) },
    )
    .await;
    let answer = srvr(&follower).await;
    assert!(
        !answer.is_empty(),
        "{name} still answers srvr while it is cut off"
    );
    log(format!(
        "{name} answers srvr while cut off: {:?}",
        answer.lines().last().unwrap_or_default()
    ));
    let generation = run.apply(json!({})).await;
    run.wait_observed(generation).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = condition(&run.zk().await, "Progressing")
        .map(|c| c.1)
        .unwrap_or_default();
    drop(cut);
    run.finish(Some(during)).await;
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed: run e2e/faults"]
async fn second_pdb_selecting_the_members() {
    let Some(run) = Run::prepare("second PDB", "e2e-fault-pdb").await else {
        return;
    };
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(run.client.clone(), run.ns());
    let extra: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "extra-pdb"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/instance": NAME}}}
    }))
    .unwrap();
    pdbs.create(&PostParams::default(), &extra)
        .await
        .expect("create the second PDB");
    let generation = run.apply(json!({})).await;
    run.wait_observed(generation).await;
    let message = wait_condition(
        &run,
        "Progressing",
        "True",
        "EvictionFailed",
        Duration::from_secs(180),
    )
    .await;
    log(format!("Progressing EvictionFailed: {message}"));
    tokio::time::sleep(Duration::from_secs(15)).await;
    let events = warnings(&run.client, run.ns(), "EvictionFailed").await;
    assert!(!events.is_empty(), "a Warning Event EvictionFailed");
    assert_eq!(
        uids(&run.pods().await),
        run.before,
        "no member was restarted while two PDBs select them"
    );
    assert_eq!(
        condition(&run.zk().await, "Progressing")
            .map(|c| c.1)
            .as_deref(),
        Some("EvictionFailed"),
        "still blocked"
    );
    pdbs.delete("extra-pdb", &DeleteParams::default())
        .await
        .expect("delete the second PDB");
    log("deleted the second PDB");
    run.finish(Some("EvictionFailed".into())).await;
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed: run e2e/faults"]
async fn revision_that_cannot_start_is_stuck_then_a_fixed_spec_recovers() {
    let Some(run) = Run::prepare("revision cannot start", "e2e-fault-badrev").await else {
        return;
    };
    // The spec has no field for JVM flags: the broken revision names an image that is not on
    // the node, with pull policy Never (no registry is asked), so its pod never starts. Its tag
    // names a ZooKeeper release the operator supports (validation refuses tags below 3.5).
    let deadline = json!({"updateStrategy": {"progressDeadlineSeconds": 60}});
    let mut broken = deadline.clone();
    super::merge(
        &mut broken,
        json!({"image": "zookeeper-operator/zookeeper:3.9.5-missing", "imagePullPolicy": "Never"}),
    );
    let generation = run.apply(broken).await;
    run.wait_observed(generation).await;
    let message = wait_condition(
        &run,
        "Degraded",
        "True",
        "RolloutStuck",
        Duration::from_secs(240),
    )
    .await;
    let stuck = run.sampler.now().pods.replaced;
    let member = format!("{NAME}-{}", stuck.first().expect("a member was restarted"));
    log(format!("Degraded RolloutStuck: {message}"));
    assert!(message.contains(&member), "names {member}: {message}");
    let events = warnings(&run.client, run.ns(), "RolloutStuck").await;
    assert!(
        events.iter().any(|e| e.contains(&member)),
        "a Warning Event RolloutStuck naming {member}: {events:?}"
    );
    // What the pod itself says, next to what the status and the Events name.
    let pod = Api::<Pod>::namespaced(run.client.clone(), run.ns())
        .get(&member)
        .await
        .expect("the stuck member's pod");
    let waiting = pod
        .status
        .and_then(|s| s.container_statuses)
        .into_iter()
        .flatten()
        .filter_map(|c| c.state?.waiting?.reason)
        .collect::<Vec<_>>();
    let failing = warnings(&run.client, run.ns(), "MemberPodFailing").await;
    log(format!(
        "{member} waits with {waiting:?}; the RolloutStuck message names it: {}; MemberPodFailing Events: {failing:?}",
        waiting.iter().any(|w| message.contains(w.as_str()))
    ));
    assert!(
        waiting.iter().any(|w| message.contains(w.as_str())),
        "RolloutStuck names the pod's own cause {waiting:?}: {message}"
    );
    assert!(
        failing.iter().any(|e| e.contains(&member)),
        "a Warning Event MemberPodFailing naming {member}: {failing:?}"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        run.sampler.now().pods.replaced.len(),
        1,
        "no other member is restarted while the first cannot start"
    );
    // The fix: the spec the cluster had, with the rollout's change.
    let generation = run.apply(deadline).await;
    run.wait_observed(generation).await;
    run.finish(Some("RolloutStuck".into())).await;
}
