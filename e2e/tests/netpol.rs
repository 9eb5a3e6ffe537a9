//! The cluster's NetworkPolicy on the real API server: accepted as rendered, selecting exactly
//! the member pods, naming namespaces that exist under the label it selects them by (the
//! cluster's and the operator's), and, turned off, kept but selecting no pod.
//!
//! Whether the policy is enforced depends on the network plugin; the local cluster's bridge
//! plugin enforces none, so this test checks the policy's meaning, not packets.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::{
    OPERATOR_NAMESPACE, TestNamespace, apply_cluster, client, log, member_pods, spec, wait_settled,
    wait_until,
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
