//! The headless Service (ordinal DNS names, and every member's metrics port) and the client
//! Service.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::labels::{object_meta, service_selector_labels};
use crate::names;
use crate::validate::ValidatedCluster;

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name.to_string()),
        ),
        protocol: Some("TCP".to_string()),
        ..Default::default()
    }
}

/// Headless Service: no cluster IP, and not-ready addresses published so members resolve each
/// other while they are still forming a quorum (they cannot be Ready before that). With metrics
/// on it also names each member's metrics port, so a ServiceMonitor (or Prometheus' endpoints
/// discovery) finds every member, Ready or not.
/// With `in_service`, only members carrying [`crate::names::IN_SERVICE_LABEL`] have a name, so
/// a member taken out before its eviction stops resolving while its address still answers.
pub fn headless(v: &ValidatedCluster, in_service: bool, owner: Option<&OwnerReference>) -> Service {
    let p = &v.spec.ports;
    let mut ports = vec![
        port("server", p.server),
        port("leader-election", p.leader_election),
        port("client", p.client),
    ];
    if let Some(metrics) = super::args::metrics_port(v) {
        ports.push(port(names::METRICS_PORT, metrics));
    }
    Service {
        metadata: object_meta(
            names::headless_service(&v.name),
            &v.namespace,
            &v.name,
            owner,
        ),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(service_selector_labels(&v.name, in_service)),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Client Service: a cluster IP in front of the Ready members.
pub fn client(v: &ValidatedCluster, in_service: bool, owner: Option<&OwnerReference>) -> Service {
    Service {
        metadata: object_meta(names::client_service(&v.name), &v.namespace, &v.name, owner),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(service_selector_labels(&v.name, in_service)),
            ports: Some(vec![port("client", v.spec.ports.client)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
