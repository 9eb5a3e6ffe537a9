//! ZooKeeper's own metrics in the rendered objects: `spec.metrics.enabled` and
//! `spec.ports.metrics` reach the `start-zookeeper` flag, the container port and the headless
//! Service port (all named `metrics`, the name the PodMonitor and the scrape configuration of
//! deploy/monitoring select), and nothing else.

use k8s_openapi::api::core::v1::{Container, Service};
use zookeeper_operator::crd::ZookeeperCluster;
use zookeeper_operator::names::METRICS_PORT;
use zookeeper_operator::render::{DesiredObjects, render};
use zookeeper_operator::validate::validate;

fn rendered(spec: serde_json::Value) -> DesiredObjects {
    let zk: ZookeeperCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
        "kind": "ZookeeperCluster",
        "metadata": {"name": "zk", "namespace": "ns"},
        "spec": spec,
    }))
    .expect("a ZookeeperCluster");
    render(&validate(&zk).expect("a valid spec"), None)
}

fn container(o: &DesiredObjects) -> Container {
    let pod = o
        .statefulset
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    pod.containers[0].clone()
}

/// The metrics flag, container port and headless Service port: (flag value, container port,
/// service port and its target).
fn metrics(o: &DesiredObjects) -> (String, Option<i32>, Option<(i32, String)>) {
    let c = container(o);
    let flags: Vec<&String> = c
        .args
        .as_ref()
        .unwrap()
        .iter()
        .filter(|a| a.starts_with("--metrics_port="))
        .collect();
    assert_eq!(flags.len(), 1, "one --metrics_port flag: {:?}", c.args);
    let flag = flags[0].trim_start_matches("--metrics_port=").to_string();
    let container_port = c
        .ports
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some(METRICS_PORT))
        .map(|p| p.container_port);
    let service_port = service_port(&o.headless_service);
    (flag, container_port, service_port)
}

fn service_port(s: &Service) -> Option<(i32, String)> {
    s.spec
        .as_ref()
        .unwrap()
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some(METRICS_PORT))
        .map(|p| {
            let target = match p.target_port.as_ref().unwrap() {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
                other => panic!("target port by number: {other:?}"),
            };
            (p.port, target)
        })
}

#[test]
fn metrics_are_on_by_default_on_port_7000() {
    let o = rendered(serde_json::json!({}));
    assert_eq!(
        metrics(&o),
        (
            "7000".to_string(),
            Some(7000),
            Some((7000, METRICS_PORT.to_string()))
        )
    );
    // Clients have no business with it.
    assert_eq!(service_port(&o.client_service), None);
}

#[test]
fn the_port_moves_everywhere_at_once() {
    let o = rendered(serde_json::json!({"ports": {"metrics": 9141}}));
    assert_eq!(
        metrics(&o),
        (
            "9141".to_string(),
            Some(9141),
            Some((9141, METRICS_PORT.to_string()))
        )
    );
}

#[test]
fn disabled_metrics_leave_no_port_and_tell_start_zookeeper_0() {
    let o =
        rendered(serde_json::json!({"metrics": {"enabled": false}, "ports": {"metrics": 9141}}));
    assert_eq!(metrics(&o), ("0".to_string(), None, None));
    // The other ports stay.
    let names: Vec<String> = container(&o)
        .ports
        .unwrap()
        .into_iter()
        .filter_map(|p| p.name)
        .collect();
    assert_eq!(names, ["client", "server", "leader-election"]);
}

#[test]
fn switching_metrics_changes_the_pod_template_so_members_restart_into_it() {
    let on = rendered(serde_json::json!({}));
    let off = rendered(serde_json::json!({"metrics": {"enabled": false}}));
    let hash = |o: &DesiredObjects| {
        o.statefulset
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[zookeeper_operator::names::RESTART_HASH_ANNOTATION]
            .clone()
    };
    assert_ne!(hash(&on), hash(&off));
}
