//! The NetworkPolicy (networking.k8s.io/v1) that admits traffic to the members, kept in step
//! with `spec.networkPolicy` and the ports.
//!
//! - quorum (`spec.ports.server`) and election (`spec.ports.leaderElection`): only the
//!   ensemble's own pods;
//! - client (`spec.ports.client`): `clientFrom` (empty: the cluster's namespace), the ensemble's
//!   own pods (readiness looks at peers) and the operator's namespace (it probes every member
//!   with four-letter words and opens sessions for reconfiguration);
//! - metrics (`spec.ports.metrics`, while `spec.metrics.enabled`): `metricsFrom` (empty: any
//!   source).
//!
//! Everything else that reaches a member's pod is refused, by a network plugin that enforces
//! NetworkPolicies. Turned off, the object stays but selects no pod: a policy that selects a pod
//! only ever takes traffic away from it, so an "allow everything" policy would not be neutral
//! either; it would open what the user's own policies close. One that selects nothing is.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, OwnerReference,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{object_meta, selector_labels};
use crate::names;
use crate::validate::ValidatedCluster;

/// The cluster's NetworkPolicy. `operator_namespace` is where the operator runs (its probes and
/// reconfiguration come from there); `None` (offline rendering) admits no namespace for it
/// beyond the ones the spec names.
pub fn network_policy(
    v: &ValidatedCluster,
    operator_namespace: Option<&str>,
    owner: Option<&OwnerReference>,
) -> NetworkPolicy {
    let spec = if v.spec.network_policy.enabled {
        enforcing(v, operator_namespace)
    } else {
        NetworkPolicySpec {
            pod_selector: Some(selects_nothing(&v.name)),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: None,
            egress: None,
        }
    };
    NetworkPolicy {
        metadata: object_meta(names::network_policy(&v.name), &v.namespace, &v.name, owner),
        spec: Some(spec),
    }
}

fn enforcing(v: &ValidatedCluster, operator_namespace: Option<&str>) -> NetworkPolicySpec {
    let p = &v.spec.ports;
    let np = &v.spec.network_policy;
    let peers = vec![members(&v.name)];

    let mut client_from = if np.client_from.is_empty() {
        vec![namespace(&v.namespace)]
    } else {
        np.client_from.clone()
    };
    client_from.push(members(&v.name));
    if let Some(ns) = operator_namespace {
        client_from.push(namespace(ns));
    }
    dedup(&mut client_from);

    let mut ingress = vec![
        NetworkPolicyIngressRule {
            ports: Some(vec![tcp(p.server), tcp(p.leader_election)]),
            from: Some(peers),
        },
        NetworkPolicyIngressRule {
            ports: Some(vec![tcp(p.client)]),
            from: Some(client_from),
        },
    ];
    if v.spec.metrics.enabled {
        ingress.push(NetworkPolicyIngressRule {
            ports: Some(vec![tcp(p.metrics)]),
            // No `from`: every source, in the cluster or outside it.
            from: (!np.metrics_from.is_empty()).then(|| np.metrics_from.clone()),
        });
    }
    NetworkPolicySpec {
        pod_selector: Some(member_selector(&v.name)),
        policy_types: Some(vec!["Ingress".to_string()]),
        ingress: Some(ingress),
        egress: None,
    }
}

fn member_selector(cluster: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(cluster)),
        match_expressions: None,
    }
}

/// The members' labels and, at the same time, no [`names::NAME_LABEL`] at all: no pod matches.
fn selects_nothing(cluster: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(cluster)),
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: names::NAME_LABEL.to_string(),
            operator: "DoesNotExist".to_string(),
            values: None,
        }]),
    }
}

/// The ensemble's own pods (a `podSelector` alone: in the policy's namespace).
fn members(cluster: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(member_selector(cluster)),
        ..Default::default()
    }
}

/// Every pod of one namespace.
fn namespace(name: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                names::NAMESPACE_NAME_LABEL.to_string(),
                name.to_string(),
            )])),
            match_expressions: None,
        }),
        ..Default::default()
    }
}

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_string()),
        end_port: None,
    }
}

/// Drops repeated peers, keeping the first of each (the operator may share the namespace).
fn dedup(peers: &mut Vec<NetworkPolicyPeer>) {
    let mut seen = Vec::new();
    peers.retain(|p| {
        if seen.contains(p) {
            false
        } else {
            seen.push(p.clone());
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ZookeeperCluster;
    use crate::validate::validate;
    use serde_json::{Value, json};

    fn rendered(spec: Value, operator: Option<&str>) -> Value {
        let zk: ZookeeperCluster = serde_json::from_value(json!({
            "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
            "kind": "ZookeeperCluster",
            "metadata": {"name": "zk", "namespace": "apps", "uid": "u-1"},
            "spec": spec,
        }))
        .unwrap();
        serde_json::to_value(network_policy(&validate(&zk).unwrap(), operator, None)).unwrap()
    }

    fn members() -> Value {
        json!({"podSelector": {"matchLabels": {
            "app.kubernetes.io/name": "zookeeper",
            "app.kubernetes.io/instance": "zk"
        }}})
    }

    fn ns(name: &str) -> Value {
        json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}})
    }

    fn tcp(port: i64) -> Value {
        json!({"port": port, "protocol": "TCP"})
    }

    /// The rule that admits `port`.
    fn rule_of(np: &Value, port: i64) -> Value {
        let rules: Vec<&Value> = np["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["ports"].as_array().unwrap().contains(&tcp(port)))
            .collect();
        assert_eq!(rules.len(), 1, "one rule admits {port}: {np}");
        rules[0].clone()
    }

    #[test]
    fn defaults_close_everything_but_the_four_ports_to_their_peers() {
        let np = rendered(json!({}), Some("zookeeper-operator"));
        assert_eq!(np["kind"], "NetworkPolicy");
        assert_eq!(np["apiVersion"], "networking.k8s.io/v1");
        assert_eq!(np["metadata"]["name"], "zk-netpol");
        assert_eq!(np["metadata"]["namespace"], "apps");
        assert_eq!(np["spec"]["podSelector"], members()["podSelector"]);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
        assert!(np["spec"].get("egress").is_none(), "{np}");
        assert_eq!(np["spec"]["ingress"].as_array().unwrap().len(), 3);

        // Quorum and election: one rule, only from the ensemble itself.
        let quorum = rule_of(&np, 2888);
        assert_eq!(quorum["ports"], json!([tcp(2888), tcp(3888)]));
        assert_eq!(quorum["from"], json!([members()]));

        // Client: the cluster's namespace, the members, the operator's namespace.
        let client = rule_of(&np, 2181);
        assert_eq!(client["ports"], json!([tcp(2181)]));
        assert_eq!(
            client["from"],
            json!([ns("apps"), members(), ns("zookeeper-operator")])
        );

        // Metrics: from anywhere.
        let metrics = rule_of(&np, 7000);
        assert!(metrics.get("from").is_none(), "{metrics}");
    }

    #[test]
    fn client_and_metrics_peers_come_from_the_spec() {
        let app = json!({"podSelector": {"matchLabels": {"role": "app"}}});
        let prom = json!({"namespaceSelector": {"matchLabels": {"team": "monitoring"}}});
        let np = rendered(
            json!({"networkPolicy": {"clientFrom": [app], "metricsFrom": [prom]}}),
            Some("ops"),
        );
        // The spec's peers replace the namespace default; members and operator stay.
        assert_eq!(
            rule_of(&np, 2181)["from"],
            json!([app, members(), ns("ops")])
        );
        assert_eq!(rule_of(&np, 7000)["from"], json!([prom]));
        // Quorum is never widened by the spec.
        assert_eq!(rule_of(&np, 2888)["from"], json!([members()]));
    }

    #[test]
    fn ports_follow_the_spec_and_metrics_off_closes_the_metrics_port() {
        let np = rendered(
            json!({
                "ports": {"client": 12181, "server": 12888, "leaderElection": 13888, "metrics": 9141},
                "metrics": {"enabled": false}
            }),
            Some("ops"),
        );
        assert_eq!(
            rule_of(&np, 12888)["ports"],
            json!([tcp(12888), tcp(13888)])
        );
        assert_eq!(rule_of(&np, 12181)["ports"], json!([tcp(12181)]));
        let rules = np["spec"]["ingress"].as_array().unwrap();
        assert_eq!(rules.len(), 2, "{np}");
        assert!(!np.to_string().contains("9141"), "{np}");
    }

    #[test]
    fn an_operator_in_the_clusters_namespace_is_listed_once() {
        let np = rendered(json!({}), Some("apps"));
        assert_eq!(rule_of(&np, 2181)["from"], json!([ns("apps"), members()]));
        // Offline: no operator namespace is known, the cluster's own still is.
        let np = rendered(json!({}), None);
        assert_eq!(rule_of(&np, 2181)["from"], json!([ns("apps"), members()]));
    }

    #[test]
    fn disabled_keeps_an_object_that_selects_no_pod() {
        let np = rendered(json!({"networkPolicy": {"enabled": false}}), Some("ops"));
        assert_eq!(np["metadata"]["name"], "zk-netpol");
        assert!(np["spec"].get("ingress").is_none(), "{np}");
        let selector: LabelSelector =
            serde_json::from_value(np["spec"]["podSelector"].clone()).unwrap();
        // A member pod's labels do not satisfy it, nor does any set of labels.
        let member = selector_labels("zk");
        assert!(!matches(&selector, &member));
        let mut other = member.clone();
        other.remove(names::NAME_LABEL);
        assert!(!matches(&selector, &other));
        assert!(!matches(&selector, &BTreeMap::new()));
        // Whereas the enabled policy selects exactly the members.
        let on: LabelSelector =
            serde_json::from_value(rendered(json!({}), None)["spec"]["podSelector"].clone())
                .unwrap();
        assert!(matches(&on, &member));
        assert!(!matches(&on, &selector_labels("other")));
    }

    /// Label selector semantics for `matchLabels` and `Exists`/`DoesNotExist`.
    fn matches(s: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
        let by_labels = s
            .match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v));
        let by_expressions =
            s.match_expressions
                .iter()
                .flatten()
                .all(|e| match e.operator.as_str() {
                    "Exists" => labels.contains_key(&e.key),
                    "DoesNotExist" => !labels.contains_key(&e.key),
                    op => panic!("unexpected operator {op}"),
                });
        by_labels && by_expressions
    }
}
