//! Several nodes: placement, node drains and node loss on the multi-node local cluster.
//!
//! `e2e/nodes-test` brings the local cluster to 4 nodes (`e2e/cluster up --nodes 4`: node 1 is
//! this machine's network, nodes 2..4 each a network namespace with its own containerd, kubelet,
//! kube-proxy and cgroup root, zones `zone-a`..`zone-d`) and runs these tests with
//! `ZKOP_E2E_NODES` set; a plain `e2e/operator-test` skips them. Each ensemble uses
//! `antiAffinity: required` and `zoneSpread`, so its 3 members sit on 3 different nodes and zones
//! and one node is free to take a member that has to move.
//!
//! Throughout, the fault sampler of `faults.rs` reads the member pods and the status, and a
//! writer writes with `status.connectionString` (every member's ordinal DNS name, as the README
//! advises; the tests run under `e2e/cluster dns-exec` for cluster DNS): never two members not
//! serving, no acknowledged write lost, the status never contradicting the pods for long.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::faults::{Run, wait_condition};
use super::{Connect, condition, log, member_pods, ordinal, pod_ready, wait_until};

const NAME: &str = "zk";
const NODES: usize = 4;
const ZONE: &str = "topology.kubernetes.io/zone";

/// The placement every test here asks for: one member per node, members spread over zones.
fn placed() -> Value {
    json!({"antiAffinity": "required", "zoneSpread": {"maxSkew": 1}})
}

/// True when `e2e/nodes-test` runs the suite (it brings the cluster to 4 nodes first).
fn enabled(what: &str) -> bool {
    let on = std::env::var_os("ZKOP_E2E_NODES").is_some();
    if !on {
        log(format!("{what}: skipped (run it with e2e/nodes-test)"));
    }
    on
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The cluster's nodes; panics, naming the fix, unless at least `NODES` are Ready.
async fn ready_nodes(client: &Client) -> Vec<Node> {
    let nodes: Vec<Node> = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list nodes")
        .items
        .into_iter()
        .filter(node_ready)
        .collect();
    assert!(
        nodes.len() >= NODES,
        "these tests need {NODES} Ready nodes, the cluster has {}: run e2e/nodes-test (it runs e2e/cluster up --nodes {NODES})",
        nodes.len()
    );
    nodes
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.node_name.clone()
}

async fn zone_of(client: &Client, node: &str) -> String {
    Api::<Node>::all(client.clone())
        .get(node)
        .await
        .expect("get node")
        .labels()
        .get(ZONE)
        .cloned()
        .unwrap_or_default()
}

/// Runs `kubectl ARGS` (the cluster's own kubectl, `KUBECTL`), returns its combined output;
/// panics with that output when it fails.
fn kubectl(args: &[&str]) -> String {
    let program = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let out = Command::new(&program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubectl {} failed: {text}",
        args.join(" ")
    );
    text
}

/// `e2e/cluster node stop|start NAME` off the test's runtime thread (the writer and the sampler
/// keep running meanwhile).
async fn cluster_node(what: &'static str, node: &str) {
    let node = node.to_string();
    tokio::task::spawn_blocking(move || cluster_node_blocking(what, &node))
        .await
        .expect("e2e/cluster node");
}

/// `e2e/cluster node stop|start NAME` (the script path is in `ZKOP_E2E_CLUSTER`).
fn cluster_node_blocking(what: &str, node: &str) {
    let script =
        std::env::var("ZKOP_E2E_CLUSTER").expect("ZKOP_E2E_CLUSTER (set by e2e/nodes-test)");
    let out = Command::new(&script)
        .args(["node", what, node])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(
        out.status.success(),
        "e2e/cluster node {what} {node} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    log(format!("e2e/cluster node {what} {node}: done"));
}

/// Undoes a cordon or a stopped node when a test ends, also when it fails.
struct NodeGuard {
    node: String,
    stopped: bool,
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        if self.stopped
            && let Ok(script) = std::env::var("ZKOP_E2E_CLUSTER")
        {
            let _ = Command::new(script)
                .args(["node", "start", &self.node])
                .status();
        }
        let program = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
        let _ = Command::new(program)
            .args(["uncordon", &self.node])
            .output();
    }
}

async fn cordon(node: &str) {
    let node = node.to_string();
    tokio::task::spawn_blocking(move || kubectl(&["cordon", &node]))
        .await
        .expect("kubectl cordon");
}

async fn uncordon(node: &str) {
    let node = node.to_string();
    tokio::task::spawn_blocking(move || kubectl(&["uncordon", &node]))
        .await
        .expect("kubectl uncordon");
}

/// The volume a claim is bound to.
async fn volume_of(claims: &Api<PersistentVolumeClaim>, claim: &str) -> Option<String> {
    claims
        .get(claim)
        .await
        .expect("claim")
        .spec
        .and_then(|s| s.volume_name)
}

/// Members' nodes and zones, each member on its own node and zone.
async fn assert_spread(client: &Client, pods: &[Pod], what: &str) -> Vec<(usize, String)> {
    let mut placed = Vec::new();
    let mut zones = BTreeSet::new();
    for p in pods {
        let node =
            node_of(p).unwrap_or_else(|| panic!("{what}: {} is not scheduled", p.name_any()));
        zones.insert(zone_of(client, &node).await);
        placed.push((ordinal(p), node));
    }
    let nodes: BTreeSet<_> = placed.iter().map(|(_, n)| n.clone()).collect();
    log(format!("{what}: members on {placed:?}, zones {zones:?}"));
    assert_eq!(
        nodes.len(),
        pods.len(),
        "{what}: one member per node: {placed:?}"
    );
    assert_eq!(
        zones.len(),
        pods.len(),
        "{what}: one member per zone: {zones:?}"
    );
    placed
}

/// A node with a member of the given mode (from the operator's status).
async fn node_with(run: &Run, mode: &str) -> (String, String) {
    let pod = run.member(mode, true).await;
    let node = node_of(&pod).expect("scheduled");
    (pod.name_any(), node)
}

/// The first node holds the control plane and cannot be stopped (`e2e/cluster node stop` refuses it).
const FIRST_NODE: &str = "zkop-node";

/// A member of the given mode on a node that `e2e/cluster node stop` can stop.
async fn stoppable_node_with(run: &Run, mode: &str) -> (String, String) {
    let zk = run.zk().await;
    let names: Vec<String> = zk
        .status
        .as_ref()
        .expect("status")
        .members
        .iter()
        .filter(|m| m.mode == mode)
        .map(|m| m.name.clone())
        .collect();
    let pods = run.pods().await;
    pods.iter()
        .filter(|p| names.contains(&p.name_any()))
        .find_map(|p| {
            let node = node_of(p)?;
            (node != FIRST_NODE).then(|| (p.name_any(), node))
        })
        .unwrap_or_else(|| panic!("no {mode} on a node other than {FIRST_NODE}: {names:?}"))
}

/// `kubectl drain NODE` as an administrator runs it, off the test's runtime thread; returns how
/// long it took.
async fn drain(node: &str) -> Duration {
    let node = node.to_string();
    tokio::task::spawn_blocking(move || drain_blocking(&node))
        .await
        .expect("kubectl drain")
}

fn drain_blocking(node: &str) -> Duration {
    let started = Instant::now();
    let out = kubectl(&[
        "drain",
        node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=600s",
    ]);
    let took = started.elapsed();
    log(format!(
        "kubectl drain {node}: {:.1}s; its last lines: {}",
        took.as_secs_f64(),
        out.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
    ));
    took
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with 4 nodes: run e2e/nodes-test"]
async fn required_anti_affinity_and_zone_spread_place_one_member_per_node_and_zone() {
    if !enabled("placement") {
        return;
    }
    let client = super::client().await;
    ready_nodes(&client).await;
    let run = Run::start_with(
        "placement",
        "e2e-nodes-placement",
        placed(),
        Connect::Members,
    )
    .await;
    let pods = run.pods().await;
    assert_spread(&client, &pods, "placement").await;
    // The quorum, the election and every client write cross node boundaries: a rollout over
    // three nodes works like one on a single node.
    let generation = run.apply(json!({})).await;
    run.wait_observed(generation).await;
    let pods = {
        let w = run.finish(None).await;
        log(format!("placement: rollout replaced {:?}", w.pods.replaced));
        member_pods(&client, "e2e-nodes-placement", NAME).await
    };
    assert_spread(&client, &pods, "placement after the rollout").await;
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with 4 nodes: run e2e/nodes-test"]
async fn drain_of_a_member_node_alone_and_during_a_rollout() {
    if !enabled("drain") {
        return;
    }
    let client = super::client().await;
    ready_nodes(&client).await;

    // 1. A drain alone: the member moves to the free node on its own volume.
    let run = Run::start_with("drain", "e2e-nodes-drain", placed(), Connect::Members).await;
    let (member, node) = node_with(&run, "follower").await;
    let claim = format!("datadir-{member}");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), run.ns());
    let volume_before = volume_of(&claims, &claim).await;
    let _guard = NodeGuard {
        node: node.clone(),
        stopped: false,
    };
    log(format!("drain: {member} runs on {node}; draining it"));
    let took = drain(&node).await;
    // the member is back, Ready, on another node
    run.wait_pods(
        &format!("{member} Ready again, not on {node}"),
        Duration::from_secs(300),
        |pods| {
            pods.len() == 3
                && pods.iter().all(|p| {
                    pod_ready(p)
                        && p.metadata.deletion_timestamp.is_none()
                        && node_of(p).as_deref() != Some(node.as_str())
                })
        },
    )
    .await;
    let back = Instant::now();
    let zk = super::wait_settled(&client, run.ns(), NAME, Duration::from_secs(300)).await;
    let pods = run.pods().await;
    let moved = pods
        .iter()
        .find(|p| p.name_any() == member)
        .and_then(node_of)
        .expect("the member is scheduled again");
    assert_ne!(moved, node, "{member} left the drained node");
    assert_spread(&client, &pods, "after the drain").await;
    let volume_after = volume_of(&claims, &claim).await;
    assert_eq!(
        volume_before, volume_after,
        "{member} came back on its own volume"
    );
    log(format!(
        "drain alone: {:.1}s, {member} moved {node} -> {moved}, settled {:.1}s after it was Ready; status {:?}",
        took.as_secs_f64(),
        back.elapsed().as_secs_f64(),
        condition(&zk, "Degraded")
    ));
    let watch = run.sampler.now();
    eprintln!(
        "NODES drain alone | {:.1}s | max not serving {} |",
        took.as_secs_f64(),
        watch.pods.max_down
    );
    uncordon(&node).await;
    // no rollout was applied: finish checks the sampler, the writes and the settled status
    run.finish(None).await;

    // 2. A drain while the operator rolls the ensemble: the drain and the rollout share the
    // PodDisruptionBudget; never two members down, the drain completes once the ensemble allows.
    let run = Run::start_with(
        "drain during rollout",
        "e2e-nodes-drain-rollout",
        placed(),
        Connect::Members,
    )
    .await;
    let (leader, node) = node_with(&run, "leader").await;
    let _guard = NodeGuard {
        node: node.clone(),
        stopped: false,
    };
    let generation = run.apply(json!({})).await;
    run.wait_observed(generation).await;
    // the rollout has begun (a follower is being restarted) when the administrator drains the
    // leader's node
    run.wait_pods("a member restarted", Duration::from_secs(120), |p| {
        run.replaced(p)
    })
    .await;
    log(format!(
        "drain during rollout: draining {node} (leader {leader})"
    ));
    let took = drain(&node).await;
    uncordon(&node).await;
    let watch = run.finish(None).await;
    eprintln!(
        "NODES drain during rollout | {:.1}s | max not serving {} | replaced {:?}",
        took.as_secs_f64(),
        watch.pods.max_down,
        watch.pods.replaced
    );
    let pods = member_pods(&client, "e2e-nodes-drain-rollout", NAME).await;
    assert_spread(&client, &pods, "after the drain during the rollout").await;

    // 3. No free node (the spare node cordoned, as on a 3-node cluster): the drained member
    // stays Pending, the status says why, a rollout started meanwhile restarts nobody (one more
    // member down would lose the quorum); uncordoning brings the member back and the rollout
    // finishes.
    let run = Run::start_with(
        "drain without a free node",
        "e2e-nodes-drain-full",
        placed(),
        Connect::Members,
    )
    .await;
    let pods = run.pods().await;
    let used: BTreeSet<String> = pods.iter().filter_map(node_of).collect();
    let spare = ready_nodes(&client)
        .await
        .into_iter()
        .map(|n| n.name_any())
        .find(|n| !used.contains(n))
        .expect("a node without a member");
    let _spare_guard = NodeGuard {
        node: spare.clone(),
        stopped: false,
    };
    cordon(&spare).await;
    let (member, node) = node_with(&run, "follower").await;
    let _guard = NodeGuard {
        node: node.clone(),
        stopped: false,
    };
    let took = drain(&node).await;
    let message = wait_until(
        &format!("drain without a free node: Degraded names {member} and why it is not placed"),
        Duration::from_secs(120),
        || async {
            let zk = run.zk().await;
            let (status, reason, m) = condition(&zk, "Degraded")?;
            (status == "True"
                && reason == "QuorumAtRisk"
                && m.contains(&member)
                && m.contains("Unschedulable"))
            .then_some(m)
        },
    )
    .await;
    log(format!(
        "drain without a free node: drained {node} in {:.1}s; Degraded: {message}",
        took.as_secs_f64()
    ));
    let before = super::uids(&run.pods().await);
    let generation = run.apply(json!({})).await;
    run.wait_observed(generation).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let zk = run.zk().await;
    let progressing = condition(&zk, "Progressing");
    log(format!(
        "drain without a free node: a rollout meanwhile: Progressing {progressing:?}"
    ));
    // (the Pending member itself may be replaced by one of the new revision: it serves nobody)
    let now = super::uids(&run.pods().await);
    for (ordinal, uid) in &before {
        if format!("{NAME}-{ordinal}") == member {
            continue;
        }
        assert_eq!(
            now.get(ordinal),
            Some(uid),
            "{NAME}-{ordinal} was not restarted while {member} could not be placed"
        );
    }
    let back = Instant::now();
    uncordon(&node).await;
    let watch = run.finish(None).await;
    eprintln!(
        "NODES drain without a free node | drain {:.1}s | member and rollout done {:.1}s after uncordon | max not serving {}",
        took.as_secs_f64(),
        back.elapsed().as_secs_f64(),
        watch.pods.max_down
    );
    uncordon(&spare).await;
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with 4 nodes: run e2e/nodes-test"]
async fn node_loss_is_reported_restarts_nothing_else_and_recovers() {
    if !enabled("node loss") {
        return;
    }
    let client = super::client().await;
    ready_nodes(&client).await;
    let run = Run::start_with("node loss", "e2e-nodes-loss", placed(), Connect::Members).await;
    let (member, node) = stoppable_node_with(&run, "follower").await;
    let mut guard = NodeGuard {
        node: node.clone(),
        stopped: true,
    };
    let before = run.before.clone();

    // 1. The node dies: its kubelet, kube-proxy and containerd killed, its link cut.
    log(format!("node loss: stopping {node} (holds {member})"));
    let lost_at = Instant::now();
    cluster_node("stop", &node).await;
    let message = wait_condition(
        &run,
        "Degraded",
        "True",
        "QuorumAtRisk",
        Duration::from_secs(120),
    )
    .await;
    let reported = lost_at.elapsed();
    log(format!(
        "node loss: Degraded QuorumAtRisk (one of three members lost) after {:.1}s: {message}",
        reported.as_secs_f64()
    ));
    assert!(
        message.contains(&member),
        "QuorumAtRisk names {member}: {message}"
    );
    // What progresses is nothing: the formed ensemble waits for its member, it is not created.
    let zk = run.zk().await;
    let progressing = condition(&zk, "Progressing");
    log(format!("node loss: Progressing {progressing:?}"));
    assert!(
        progressing
            .as_ref()
            .is_some_and(|(_, r, _)| r != "Creating"),
        "a formed ensemble that lost a member is not Creating: {progressing:?}"
    );
    // The node controller marks the node NotReady and the member's pod not Ready.
    let pods: Api<Pod> = Api::namespaced(client.clone(), run.ns());
    wait_until(
        &format!("node loss: {member}'s pod not Ready (node controller)"),
        Duration::from_secs(180),
        || async {
            let p = pods.get(&member).await.ok()?;
            (!pod_ready(&p)).then_some(())
        },
    )
    .await;
    let not_ready = lost_at.elapsed();
    log(format!(
        "node loss: {member}'s pod not Ready after {:.1}s",
        not_ready.as_secs_f64()
    ));
    // Nothing else is restarted while the node is gone, the quorum keeps serving writes.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let now = super::uids(&run.pods().await);
    for (ordinal, uid) in &before {
        if format!("{NAME}-{ordinal}") != member {
            assert_eq!(
                now.get(ordinal),
                Some(uid),
                "{NAME}-{ordinal} was not restarted"
            );
        }
    }
    let zk = run.zk().await;
    assert_eq!(
        condition(&zk, "Available").map(|c| c.0).as_deref(),
        Some("True"),
        "two of three members serve: Available"
    );

    // 2. Recovery when the node comes back: the member rejoins by itself.
    let back = Instant::now();
    cluster_node("start", &node).await;
    let zk = super::wait_settled(&client, run.ns(), NAME, Duration::from_secs(300)).await;
    let rejoined = back.elapsed();
    log(format!(
        "node loss: node back, {member} serves again after {:.1}s ({:?})",
        rejoined.as_secs_f64(),
        condition(&zk, "Degraded")
    ));

    // 3. The node is gone for good. What the administrator does: once Kubernetes reports the
    // node NotReady, cordon it (else the scheduler may put the new pod right back on it: seen
    // here when the pod was deleted before the node controller noticed), then force-delete the
    // member's pod. It is recreated on the free node, on its own volume (network-attached here:
    // the local provisioner's volumes are not bound to a node).
    let (member, node) = stoppable_node_with(&run, "follower").await;
    guard.node = node.clone();
    let claim = format!("datadir-{member}");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), run.ns());
    let volume_before = volume_of(&claims, &claim).await;
    let gone_at = Instant::now();
    cluster_node("stop", &node).await;
    wait_condition(
        &run,
        "Degraded",
        "True",
        "QuorumAtRisk",
        Duration::from_secs(120),
    )
    .await;
    let nodes: Api<Node> = Api::all(client.clone());
    wait_until(
        &format!("node gone: {node} NotReady"),
        Duration::from_secs(180),
        || async { (!node_ready(&nodes.get(&node).await.ok()?)).then_some(()) },
    )
    .await;
    cordon(&node).await;
    log(format!(
        "node gone: {node} (held {member}) NotReady after {:.1}s, cordoned; force-deleting {member}'s pod",
        gone_at.elapsed().as_secs_f64()
    ));
    pods.delete(
        &member,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .expect("force-delete the member's pod");
    let zk = super::wait_settled(&client, run.ns(), NAME, Duration::from_secs(300)).await;
    let replaced = gone_at.elapsed();
    let pods_now = run.pods().await;
    let moved = pods_now
        .iter()
        .find(|p| p.name_any() == member)
        .and_then(node_of)
        .expect("the member is scheduled again");
    assert_ne!(moved, node, "{member} runs on another node");
    let volume_after = volume_of(&claims, &claim).await;
    assert_eq!(
        volume_before, volume_after,
        "{member} came back on its own volume"
    );
    log(format!(
        "node gone: {member} serves again on {moved} after {:.1}s ({:?})",
        replaced.as_secs_f64(),
        condition(&zk, "Degraded")
    ));
    // The dead node returns (its kubelet removes the pod that was force-deleted).
    cluster_node("start", &node).await;
    guard.stopped = false;
    uncordon(&node).await;
    let watch = run.finish(None).await;
    eprintln!(
        "NODES node loss | reported {:.1}s | pod not Ready {:.1}s | rejoined {:.1}s | moved after force-delete {:.1}s | max not serving {}",
        reported.as_secs_f64(),
        not_ready.as_secs_f64(),
        rejoined.as_secs_f64(),
        replaced.as_secs_f64(),
        watch.pods.max_down
    );
}

/// The StorageClass of the node-local volumes (no provisioner: the test creates the volumes).
const LOCAL_CLASS: &str = "zkop-e2e-local";
/// Where the node-local volumes' directories live on this machine (every node sees it; each
/// volume is bound to one node by its node affinity, as a local disk is).
const LOCAL_ROOT: &str = "/tmp/zkop-e2e-local";

/// The StorageClass and two 1 GiB local volumes per node, each bound to its node.
async fn local_volumes(client: &Client, nodes: &[Node]) -> Vec<String> {
    use k8s_openapi::api::core::v1::PersistentVolume;
    use k8s_openapi::api::storage::v1::StorageClass;
    use kube::api::PostParams;
    let classes: Api<StorageClass> = Api::all(client.clone());
    let class: StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": LOCAL_CLASS},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Retain"
    }))
    .expect("StorageClass");
    if classes
        .get_opt(LOCAL_CLASS)
        .await
        .expect("get class")
        .is_none()
    {
        classes
            .create(&PostParams::default(), &class)
            .await
            .expect("create the local StorageClass");
    }
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    // volumes an earlier run left behind (a failed run does not clean up)
    let selector = ListParams::default().labels("zkop-e2e=local");
    for old in volumes.list(&selector).await.expect("list volumes").items {
        let _ = volumes
            .delete(&old.name_any(), &DeleteParams::default())
            .await;
    }
    wait_until(
        "old local volumes gone",
        Duration::from_secs(60),
        || async {
            volumes
                .list(&selector)
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let mut names = Vec::new();
    for node in nodes {
        let node = node.name_any();
        for i in 0..2 {
            let name = format!("zkop-e2e-local-{i}-on-{node}");
            let dir = format!("{LOCAL_ROOT}/{node}-{i}");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create the local volume's directory");
            // ZooKeeper runs as uid/gid 1000
            let status = Command::new("chown")
                .args(["1000:1000", &dir])
                .status()
                .expect("chown");
            assert!(status.success(), "chown 1000:1000 {dir}");
            let pv: PersistentVolume = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": name, "labels": {"zkop-e2e": "local"}},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": LOCAL_CLASS,
                    "local": {"path": dir},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                    ]}]}}
                }
            }))
            .expect("PersistentVolume");
            volumes
                .create(&PostParams::default(), &pv)
                .await
                .expect("create a local volume");
            names.push(name);
        }
    }
    names
}

/// Deletes the test's local volumes and their directories.
async fn remove_local_volumes(client: &Client, names: &[String]) {
    use k8s_openapi::api::core::v1::PersistentVolume;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for name in names {
        let _ = volumes.delete(name, &DeleteParams::default()).await;
    }
    let _ = std::fs::remove_dir_all(LOCAL_ROOT);
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with 4 nodes: run e2e/nodes-test"]
async fn node_local_volume_on_a_lost_node_then_the_member_is_rebuilt_elsewhere() {
    if !enabled("node-local volume") {
        return;
    }
    let client = super::client().await;
    let nodes = ready_nodes(&client).await;
    let pvs = local_volumes(&client, &nodes).await;
    let mut base = placed();
    super::merge(
        &mut base,
        json!({"storage": {"size": "1Gi", "storageClassName": LOCAL_CLASS}}),
    );
    let run = Run::start_with(
        "node-local volume",
        "e2e-nodes-local",
        base,
        Connect::Members,
    )
    .await;
    let (member, node) = stoppable_node_with(&run, "follower").await;
    let claim = format!("datadir-{member}");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), run.ns());
    let pv_before = volume_of(&claims, &claim).await.expect("bound");
    assert!(
        pv_before.ends_with(&format!("-on-{node}")),
        "{member}'s volume {pv_before} is the local disk of its node {node}"
    );
    let mut guard = NodeGuard {
        node: node.clone(),
        stopped: true,
    };

    // The node dies for good; the administrator cordons it and force-deletes the pod.
    let lost_at = Instant::now();
    cluster_node("stop", &node).await;
    let nodes_api: Api<Node> = Api::all(client.clone());
    wait_until(
        &format!("node-local volume: {node} NotReady"),
        Duration::from_secs(180),
        || async { (!node_ready(&nodes_api.get(&node).await.ok()?)).then_some(()) },
    )
    .await;
    cordon(&node).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), run.ns());
    let force = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    pods.delete(&member, &force)
        .await
        .expect("force-delete the member's pod");
    // The new pod cannot go anywhere: its volume is on the dead node. The status says why.
    let message = wait_until(
        &format!("node-local volume: the status names {member} and its volume's node affinity"),
        Duration::from_secs(120),
        || async {
            let zk = run.zk().await;
            let (_, _, m) = condition(&zk, "Degraded")?;
            // the scheduler's words: "didn't match PersistentVolume's node affinity"
            (m.contains(&member) && m.contains("PersistentVolume's node affinity")).then_some(m)
        },
    )
    .await;
    log(format!(
        "node-local volume: {:.1}s after the node died: Degraded says: {message}",
        lost_at.elapsed().as_secs_f64()
    ));

    // What the user does: give the member a new volume. Delete its claim and its pod; the
    // StatefulSet makes both again, the claim binds a local volume on a live node, and the
    // member starts empty and copies the data from the leader.
    let rebuilt_at = Instant::now();
    claims
        .delete(&claim, &DeleteParams::default())
        .await
        .expect("delete the member's claim");
    pods.delete(&member, &force)
        .await
        .expect("delete the Pending pod");
    run.wait_pods(
        &format!("{member} Ready on a new volume"),
        Duration::from_secs(300),
        |ps| ps.len() == 3 && ps.iter().all(pod_ready),
    )
    .await;
    let zk = super::wait_settled(&client, run.ns(), NAME, Duration::from_secs(300)).await;
    let rebuilt = rebuilt_at.elapsed();
    let pv_after = claims
        .get(&claim)
        .await
        .expect("the new claim")
        .spec
        .and_then(|s| s.volume_name)
        .expect("bound");
    assert_ne!(pv_after, pv_before, "{member} has a new volume");
    assert!(
        !pv_after.ends_with(&format!("-on-{node}")),
        "{member}'s new volume is on a live node"
    );
    let leader_zxid = zk.status.as_ref().and_then(|s| {
        s.members
            .iter()
            .find(|m| m.mode == "leader")
            .and_then(|m| m.zxid.clone())
    });
    log(format!(
        "node-local volume: {member} rebuilt on {pv_after} and serving {:.1}s after its claim was deleted; leader zxid {leader_zxid:?}",
        rebuilt.as_secs_f64()
    ));
    cluster_node("start", &node).await;
    guard.stopped = false;
    uncordon(&node).await;
    let watch = run.finish(None).await;
    eprintln!(
        "NODES node-local volume | rebuilt on a new volume in {:.1}s | max not serving {}",
        rebuilt.as_secs_f64(),
        watch.pods.max_down
    );
    remove_local_volumes(&client, &pvs).await;
}

#[path = "../lib/versions.rs"]
mod versions;

/// Runs `kubectl ARGS` with `input` on stdin; panics with its output when it fails.
fn kubectl_stdin(args: &[&str], input: &str) -> String {
    use std::io::Write;
    let program = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let mut child = Command::new(&program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write to kubectl");
    let out = child.wait_with_output().expect("kubectl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubectl {} failed: {text}",
        args.join(" ")
    );
    text
}

/// `srvr` to ADDR:2181, the `Mode:` it answers.
async fn mode_of(ip: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer = tokio::time::timeout(Duration::from_secs(3), async {
        let mut s = tokio::net::TcpStream::connect((ip, 2181)).await.ok()?;
        s.write_all(b"srvr").await.ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).await.ok()?;
        Some(text)
    })
    .await
    .ok()
    .flatten()?;
    answer
        .lines()
        .find_map(|l| l.strip_prefix("Mode: ").map(str::to_string))
}

/// The seed article's manifest (tests/fixtures/seed/zookeeper.yaml) applied as it is, on three
/// nodes, with only what cannot stay: the image (this project's, built locally), its pull policy
/// (`Always` would ask a registry; nothing here leaves the machine) and the PodDisruptionBudget's
/// `policy/v1beta1`, which Kubernetes removed in 1.25. Its `OrderedReady` StatefulSet, its
/// required one-member-per-node anti-affinity and its probes (`zookeeper-ready 2181`) are
/// unchanged: the ensemble forms, one member per node, one leader.
#[tokio::test]
#[ignore = "needs the local Kubernetes with 4 nodes: run e2e/nodes-test"]
async fn the_seed_manifest_with_only_the_image_changed_forms_an_ensemble_on_three_nodes() {
    if !enabled("seed manifest") {
        return;
    }
    let client = super::client().await;
    ready_nodes(&client).await;
    // The seed's pods predate the Pod Security Standards: a namespace without enforcement.
    let ns = super::TestNamespace::with_labels(&client, "e2e-nodes-seed", json!({})).await;
    let seed =
        std::fs::read_to_string("tests/fixtures/seed/zookeeper.yaml").expect("seed manifest");
    let image = format!(
        "docker.io/zookeeper-operator/zookeeper:{}",
        versions::ZOOKEEPER_VERSION
    );
    let changes = [
        (
            "image: \"mirrorgooglecontainers/kubernetes-zookeeper:1.0-3.4.10\"".to_string(),
            format!("image: \"{image}\""),
        ),
        (
            "imagePullPolicy: Always".to_string(),
            "imagePullPolicy: IfNotPresent".to_string(),
        ),
        ("policy/v1beta1".to_string(), "policy/v1".to_string()),
    ];
    let mut manifest = seed.clone();
    for (from, to) in &changes {
        assert_eq!(
            manifest.matches(from.as_str()).count(),
            1,
            "the seed has {from} once"
        );
        manifest = manifest.replace(from.as_str(), to);
    }
    let changed = seed
        .lines()
        .zip(manifest.lines())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(changed, 3, "three lines of the seed change, nothing else");
    let name = ns.name.clone();
    let started = Instant::now();
    tokio::task::spawn_blocking(move || {
        kubectl_stdin(&["-n", &name, "apply", "-f", "-"], &manifest)
    })
    .await
    .expect("kubectl apply");
    let pods = wait_until(
        "seed manifest: the StatefulSet zk has 3 Ready members (OrderedReady: one after another)",
        Duration::from_secs(420),
        || async {
            let pods: Vec<Pod> = Api::<Pod>::namespaced(client.clone(), &ns.name)
                .list(&ListParams::default().labels("app=zk"))
                .await
                .ok()?
                .items;
            (pods.len() == 3 && pods.iter().all(pod_ready)).then_some(pods)
        },
    )
    .await;
    let took = started.elapsed();
    let nodes: BTreeSet<String> = pods.iter().filter_map(node_of).collect();
    // The seed's readiness (`zookeeper-ready 2181`) means "answers", not "serves in a quorum":
    // the last member may still be joining when it turns Ready.
    let ips: Vec<(String, String)> = pods
        .iter()
        .map(|p| {
            let ip = p
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .expect("pod IP");
            (p.name_any(), ip)
        })
        .collect();
    let modes = wait_until(
        "seed manifest: one leader and two followers",
        Duration::from_secs(120),
        || async {
            let mut modes = Vec::new();
            for (name, ip) in &ips {
                modes.push((name.clone(), mode_of(ip).await));
            }
            let count = |m: &str| {
                modes
                    .iter()
                    .filter(|(_, x)| x.as_deref() == Some(m))
                    .count()
            };
            (count("leader") == 1 && count("follower") == 2).then_some(modes)
        },
    )
    .await;
    log(format!(
        "seed manifest: 3 members Ready in {:.1}s on nodes {nodes:?}, modes {modes:?}",
        took.as_secs_f64()
    ));
    assert_eq!(
        nodes.len(),
        3,
        "one member per node (required anti-affinity)"
    );
    let leaders = modes
        .iter()
        .filter(|(_, m)| m.as_deref() == Some("leader"))
        .count();
    let followers = modes
        .iter()
        .filter(|(_, m)| m.as_deref() == Some("follower"))
        .count();
    assert_eq!(
        (leaders, followers),
        (1, 2),
        "one leader, two followers: {modes:?}"
    );
    eprintln!(
        "NODES seed manifest (OrderedReady, required anti-affinity) | 3 members Ready in {:.1}s | on {} nodes",
        took.as_secs_f64(),
        nodes.len()
    );
}
