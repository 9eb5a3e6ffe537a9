//! The cluster's NetworkPolicy on the real API server and on real packets.
//!
//! The first test checks its meaning: accepted as rendered, selecting exactly the member pods,
//! naming namespaces that exist under the label it selects them by (the cluster's and the
//! operator's), and, turned off, kept but selecting no pod.
//!
//! The second checks that it is enforced: the local cluster's bridge plugin enforces nothing, so
//! the test turns on an enforcing firewall (`e2e/cluster firewall on`: kube-router's NetworkPolicy
//! controller alone, built from its Go module) and connects from pods inside and outside the
//! policy's selectors, while the operator probes and rolls the members through it.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::{
    OPERATOR_NAMESPACE, TestNamespace, apply_cluster, assert_modes, client, log, member_pods,
    rollout, spec, wait_settled, wait_until,
};

/// `k=v,key,!key` for the API's `labelSelector` (the operators the operator renders).
fn selector_string(s: &LabelSelector) -> String {
    let mut parts: Vec<String> = s
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in s.match_expressions.iter().flatten() {
        match e.operator.as_str() {
            "Exists" => parts.push(e.key.clone()),
            "DoesNotExist" => parts.push(format!("!{}", e.key)),
            op => panic!("unknown operator {op}"),
        }
    }
    parts.join(",")
}

async fn pods_selected(client: &Client, ns: &str, s: &LabelSelector) -> Vec<String> {
    let mut names: Vec<String> = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector_string(s)))
        .await
        .expect("list pods by the policy's selector")
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    names.sort();
    names
}

async fn namespaces_selected(client: &Client, peer: &NetworkPolicyPeer) -> Vec<String> {
    let s = peer.namespace_selector.as_ref().expect("a namespace peer");
    Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().labels(&selector_string(s)))
        .await
        .expect("list namespaces by the peer's selector")
        .items
        .iter()
        .map(|n| n.name_any())
        .collect()
}

async fn policy(client: &Client, ns: &str, name: &str) -> NetworkPolicy {
    Api::<NetworkPolicy>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("the cluster's NetworkPolicy exists")
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed: run e2e/operator-test"]
async fn network_policy_selects_the_members_and_admits_the_operator() {
    let client = client().await;
    let guard = TestNamespace::create(&client, "netpol-e2e").await;
    let (ns, name) = (guard.name.clone(), "zk");
    apply_cluster(&client, &ns, name, spec(json!({"replicas": 1})))
        .await
        .expect("apply");
    // Available: the operator's probes and the members' own readiness went through.
    wait_settled(&client, &ns, name, Duration::from_secs(300)).await;

    let np = policy(&client, &ns, "zk-netpol").await;
    let owner = &np.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ZookeeperCluster", name)
    );
    let spec = np.spec.clone().expect("a spec");
    let members: Vec<String> = {
        let mut m: Vec<String> = member_pods(&client, &ns, name)
            .await
            .iter()
            .map(|p| p.name_any())
            .collect();
        m.sort();
        m
    };
    assert_eq!(members, ["zk-0"]);
    let selector = spec.pod_selector.clone().expect("a pod selector");
    assert_eq!(pods_selected(&client, &ns, &selector).await, members);
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));

    let ingress = spec.ingress.clone().expect("ingress rules");
    let rule = |port: i32| {
        ingress
            .iter()
            .find(|r| {
                r.ports.iter().flatten().any(|p| {
                    p.port
                        == Some(
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port),
                        )
                })
            })
            .unwrap_or_else(|| panic!("a rule for port {port}: {ingress:?}"))
            .clone()
    };
    // Quorum and election: only pods the members' own selector picks, in this namespace.
    for port in [2888, 3888] {
        let from = rule(port).from.expect("peers");
        assert_eq!(from.len(), 1, "{from:?}");
        assert!(from[0].namespace_selector.is_none());
        let peers = from[0].pod_selector.as_ref().expect("a pod selector");
        assert_eq!(pods_selected(&client, &ns, peers).await, members);
    }
    // Client port: the namespaces named exist under that label: this one and the operator's.
    let from = rule(2181).from.expect("peers");
    let mut admitted = Vec::new();
    for peer in from.iter().filter(|p| p.namespace_selector.is_some()) {
        admitted.extend(namespaces_selected(&client, peer).await);
    }
    admitted.sort();
    let mut expected = vec![ns.clone(), OPERATOR_NAMESPACE.to_string()];
    expected.sort();
    assert_eq!(admitted, expected, "{from:?}");
    // Metrics: any source.
    assert!(rule(7000).from.is_none());
    log(format!(
        "netpol: {ns}/zk-netpol selects {members:?}; client port admits namespaces {admitted:?}"
    ));

    // Off: the object stays, selecting no pod, and the ensemble stays Available.
    apply_cluster(&client, &ns, name, spec_off())
        .await
        .expect("apply with the policy off");
    let off = wait_until(
        "the policy selects no pod",
        Duration::from_secs(120),
        || async {
            let np = policy(&client, &ns, "zk-netpol").await;
            let s = np.spec?.pod_selector?;
            pods_selected(&client, &ns, &s)
                .await
                .is_empty()
                .then_some(s)
        },
    )
    .await;
    wait_settled(&client, &ns, name, Duration::from_secs(120)).await;
    log(format!(
        "netpol: off, zk-netpol kept with selector {:?} selecting no pod",
        selector_string(&off)
    ));
}

fn spec_off() -> serde_json::Value {
    spec(json!({"replicas": 1, "networkPolicy": {"enabled": false}}))
}

/// NetworkPolicies enforced on the local cluster while it lives (`e2e/cluster firewall on`), not
/// after, also when the test fails.
struct Firewall;

impl Firewall {
    fn on() -> Self {
        firewall("on");
        Firewall
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        firewall("off");
    }
}

fn firewall(state: &str) {
    // Its progress (a first build of kube-router, the wait for its first sync) shows as it goes.
    let status = std::process::Command::new("e2e/cluster")
        .args(["firewall", state])
        .status()
        .expect("run e2e/cluster firewall");
    assert!(
        status.success() || std::thread::panicking(),
        "e2e/cluster firewall {state} failed ({status}); its output is above"
    );
}

/// A pod that only sleeps, in the members' image (bash, Java), under the restricted profile.
async fn probe_pod(client: &Client, ns: &str, name: &str, image: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "netpol-probe"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "securityContext": {"allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}},
                "name": "probe",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"]
            }]
        }
    }))
    .unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    pods.create(&Default::default(), &pod)
        .await
        .expect("create a probe pod");
    wait_until(
        &format!("{ns}/{name} runs"),
        Duration::from_secs(120),
        || {
            let pods = pods.clone();
            async move {
                let p = pods.get(name).await.ok()?;
                (p.status?.phase.as_deref() == Some("Running")).then_some(())
            }
        },
    )
    .await;
}

/// From `pod` in `ns`: connects to `host:port` (3 s at most) and, when it gets a connection,
/// sends `srvr` and returns what came back (empty from a port that speaks no four-letter words);
/// Err when no connection could be made.
fn reach(ns: &str, pod: &str, host: &str, port: u16) -> Result<String, String> {
    let inner = format!(
        "exec 3<>/dev/tcp/{host}/{port} || exit 7; printf srvr >&3; timeout 2 cat <&3; exit 0"
    );
    super::tls::exec_in(
        ns,
        pod,
        "probe",
        &format!("timeout 3 bash -c {}", super::tls::shell_quote(&inner)),
    )
}

#[tokio::test]
#[ignore = "needs the local Kubernetes (root: it turns the firewall on) with the operator installed: run e2e/operator-test"]
async fn network_policy_is_enforced_and_the_operator_still_probes_and_rolls() {
    let client = client().await;
    let _firewall = Firewall::on();
    let guard = TestNamespace::create(&client, "netpol-enforced").await;
    let outside = TestNamespace::create(&client, "netpol-outside").await;
    let (ns, name) = (guard.name.clone(), "zk");
    // Three members: their quorum and election traffic (2888, 3888) crosses the policy too.
    let t = Instant::now();
    apply_cluster(&client, &ns, name, spec(json!({"replicas": 3})))
        .await
        .expect("apply");
    let zk = wait_settled(&client, &ns, name, Duration::from_secs(300)).await;
    // The operator's four-letter words reached every member from its own namespace.
    assert_modes(&zk, 2);
    log(format!(
        "FIGURE netpol enforced: 3 members Available through the policy in {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    let pods = member_pods(&client, &ns, name).await;
    let nodes: Vec<String> = pods
        .iter()
        .map(|p| {
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
            format!("{} on {}", p.name_any(), node.unwrap_or_default())
        })
        .collect();
    log(format!("netpol enforced: members {nodes:?}"));
    let image = pods[0].spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .expect("the members' image");
    probe_pod(&client, &ns, "inside", &image).await;
    probe_pod(&client, &outside.name, "outside", &image).await;

    let svc = format!("{name}-cs.{ns}.svc.cluster.local");
    let member = |i: usize| format!("{name}-{i}.{name}-hs.{ns}.svc.cluster.local");
    // A client in the cluster's namespace: the client Service and every member answer.
    let answer = reach(&ns, "inside", &svc, 2181).expect("inside: the client Service");
    assert!(answer.contains("Mode:"), "inside, zk-cs: {answer}");
    for i in 0..3 {
        let answer = reach(&ns, "inside", &member(i), 2181)
            .unwrap_or_else(|e| panic!("inside: member {i}'s client port: {e}"));
        assert!(answer.contains("Mode:"), "inside, member {i}: {answer}");
    }
    // ... but it is no member: the election port stays closed to it.
    let t = Instant::now();
    let refused = reach(&ns, "inside", &member(0), 3888);
    assert!(
        refused.is_err(),
        "a non-member pod reached the election port: {refused:?}"
    );
    let inside_refused = t.elapsed();
    // A pod of another namespace: neither the client Service, nor a member, nor 3888.
    for (host, port) in [(svc.clone(), 2181), (member(1), 2181), (member(2), 3888)] {
        let r = reach(&outside.name, "outside", &host, port);
        assert!(r.is_err(), "outside reached {host}:{port}: {r:?}");
    }
    // The metrics port admits any source by default (spec.networkPolicy leaves it open).
    let metrics = reach(&outside.name, "outside", &member(0), 7000);
    assert!(
        metrics.is_ok(),
        "outside could not reach the metrics port: {metrics:?}"
    );
    log(format!(
        "netpol enforced: inside reaches zk-cs and every member on 2181, not 3888 (refused in {:.1} s); \
         outside reaches only 7000",
        inside_refused.as_secs_f64()
    ));

    // A rolling restart through the policy: the operator probes each member, the members re-form
    // the quorum, one member down at a time, the leader last.
    let leader = zk.status.as_ref().unwrap().leader.clone().unwrap();
    let leader_ordinal: usize = leader.rsplit('-').next().unwrap().parse().unwrap();
    let (state, took) = rollout(
        &client,
        &ns,
        name,
        json!({"replicas": 3, "config": {"maxClientCnxns": 61}}),
        "netpol enforced: rolling restart of 3",
    )
    .await;
    assert!(state.max_down <= 1, "{}", state.max_down_detail);
    assert_eq!(state.replaced.len(), 3, "{:?}", state.replaced);
    assert_eq!(state.replaced.last(), Some(&leader_ordinal));
    assert_modes(&super::cluster(&client, &ns, name).await, 2);
    // New pods, new addresses: the firewall follows them.
    let answer = reach(&ns, "inside", &member(0), 2181).expect("inside after the roll");
    assert!(answer.contains("Mode:"), "{answer}");
    assert!(reach(&outside.name, "outside", &member(0), 2181).is_err());
    log(format!(
        "FIGURE netpol enforced: rolled in {:.1} s; policy still holds for the new pods",
        took.as_secs_f64()
    ));

    // The control: the same client outside is refused only because of the policy. Turned off,
    // the policy selects no pod and the outside pod's srvr is answered.
    apply_cluster(
        &client,
        &ns,
        name,
        spec(json!({"replicas": 3, "config": {"maxClientCnxns": 61},
            "networkPolicy": {"enabled": false}})),
    )
    .await
    .expect("apply with the policy off");
    let answer = wait_until(
        "outside reaches zk-cs once the policy is off",
        Duration::from_secs(90),
        || async { reach(&outside.name, "outside", &svc, 2181).ok() },
    )
    .await;
    assert!(answer.contains("Mode:"), "{answer}");
}
