//! One home for every name the operator gives or looks up: the API group, object names, DNS
//! names, label and annotation keys, the field manager, and the short hash in annotations.
//!
//! Everything that must agree (the names the renderer writes and the names the controller and
//! the health component look up) is built here, so no two places spell the same name.

use sha2::{Digest, Sha256};

/// The API group of `ZookeeperCluster`. The `#[kube(group = ...)]` attribute on the type needs a
/// literal; a test checks that it says the same.
pub const API_GROUP: &str = "zookeeper.ensemble.dev";

/// Value of `app.kubernetes.io/managed-by`, the server-side apply field manager and the Event
/// reporter.
pub const MANAGER: &str = "zookeeper-operator";

/// Labels under this prefix are the operator's own; users may not set them.
pub const RESERVED_LABEL_PREFIX: &str = "app.kubernetes.io/";
/// `app.kubernetes.io/name`: `zookeeper` on every member pod and owned object.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the ZookeeperCluster's name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/managed-by`: [`MANAGER`].
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/component`: [`COMPONENT`].
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Value of [`NAME_LABEL`].
pub const APP_NAME: &str = "zookeeper";
/// Value of [`COMPONENT_LABEL`].
pub const COMPONENT: &str = "server";

/// Name of the member container's and the headless Service's port of ZooKeeper's Prometheus
/// metrics; the chart's PodMonitor scrapes the port of this name.
pub const METRICS_PORT: &str = "metrics";

/// Pod-template annotation: a hash of everything that needs a restart, so a change rolls.
pub const RESTART_HASH_ANNOTATION: &str = "zookeeper.ensemble.dev/restart-hash";
/// Annotation on every owned object: a hash of what the operator last applied, so an unchanged
/// object is not written again.
pub const APPLIED_HASH_ANNOTATION: &str = "zookeeper.ensemble.dev/applied-hash";

/// Pod label (value [`IN_SERVICE`]) that puts a member in its cluster's Services: the headless
/// Service (its ordinal DNS name) and the client Service select it. The pod template carries it;
/// the operator takes it off a member right before evicting it, so that the name stops resolving
/// and the client Service stops routing to it while its address still answers, instead of
/// resolving to an address that is already gone (a connect timeout for a reconnecting client).
pub const IN_SERVICE_LABEL: &str = "zookeeper.ensemble.dev/in-service";
/// The value of [`IN_SERVICE_LABEL`].
pub const IN_SERVICE: &str = "true";
/// StatefulSet annotation (value [`IN_SERVICE`]): the cluster's Services select members by
/// [`IN_SERVICE_LABEL`]. Set once every pod runs a template that carries the label, and kept
/// from then on; a StatefulSet created before the label existed rolls once first, so a
/// Service never selects by a label its members lack.
pub const SERVICES_SELECT_IN_SERVICE_ANNOTATION: &str =
    "zookeeper.ensemble.dev/services-select-in-service";

/// The StatefulSet of a cluster has the cluster's own name.
pub fn statefulset(cluster: &str) -> String {
    cluster.to_string()
}

/// The headless Service that gives every member `<pod>.<cluster>-hs` as its DNS name.
pub fn headless_service(cluster: &str) -> String {
    format!("{cluster}-hs")
}

/// The client Service, `<cluster>-cs`.
pub fn client_service(cluster: &str) -> String {
    format!("{cluster}-cs")
}

/// The PodDisruptionBudget, `<cluster>-pdb`.
pub fn pdb(cluster: &str) -> String {
    format!("{cluster}-pdb")
}

/// The NetworkPolicy that admits traffic to the members, `<cluster>-netpol`.
pub fn network_policy(cluster: &str) -> String {
    format!("{cluster}-netpol")
}

/// The label every namespace carries with its own name (set by the API server), which a
/// NetworkPolicy's `namespaceSelector` uses to name one namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Member `ordinal`'s pod, `<cluster>-<ordinal>`.
pub fn member_pod(cluster: &str, ordinal: u32) -> String {
    format!("{}-{ordinal}", statefulset(cluster))
}

/// Member `ordinal`'s stable DNS name through the headless Service:
/// `<cluster>-<i>.<cluster>-hs.<namespace>.svc.<cluster_domain>`.
pub fn member_host(cluster: &str, ordinal: u32, namespace: &str, cluster_domain: &str) -> String {
    format!(
        "{}.{}",
        member_pod(cluster, ordinal),
        member_domain(cluster, namespace, cluster_domain)
    )
}

/// The domain under which every member has its name: `<cluster>-hs.<namespace>.svc.<domain>`.
pub fn member_domain(cluster: &str, namespace: &str, cluster_domain: &str) -> String {
    format!(
        "{}.{namespace}.svc.{cluster_domain}",
        headless_service(cluster)
    )
}

/// The client Service's DNS name, `<cluster>-cs.<namespace>.svc.<cluster_domain>`.
pub fn client_host(cluster: &str, namespace: &str, cluster_domain: &str) -> String {
    format!(
        "{}.{namespace}.svc.{cluster_domain}",
        client_service(cluster)
    )
}

/// The client Service and port, `<cluster>-cs.<namespace>.svc.<cluster_domain>:<port>`: one
/// address for clients that cannot take a list.
pub fn client_service_address(
    cluster: &str,
    namespace: &str,
    cluster_domain: &str,
    client_port: i32,
) -> String {
    format!(
        "{}:{client_port}",
        client_host(cluster, namespace, cluster_domain)
    )
}

/// The connection string `status.connectionString` publishes: every member's ordinal name and
/// client port, comma-separated (`zk-0.zk-hs.<ns>.svc.<domain>:2181,zk-1...`). ZooKeeper's own
/// client waits a second before it tries the same address again, and a second address at once:
/// with one address (the Service) every reconnect after a leader change costs that second.
pub fn connection_string(
    cluster: &str,
    namespace: &str,
    cluster_domain: &str,
    client_port: i32,
    ordinals: impl IntoIterator<Item = u32>,
) -> String {
    ordinals
        .into_iter()
        .map(|i| {
            format!(
                "{}:{client_port}",
                member_host(cluster, i, namespace, cluster_domain)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The label selector (`k=v,k=v`) of a cluster's member pods.
pub fn member_selector(cluster: &str) -> String {
    format!("{NAME_LABEL}={APP_NAME},{INSTANCE_LABEL}={cluster}")
}

/// The label selector of every object the operator manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGER}")
}

/// The first 8 bytes of a SHA-256, in hex: short enough for an annotation, long enough that a
/// change is never mistaken for no change in practice.
pub fn short_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The ConfigMap that publishes the membership a member with no configuration of its own boots
/// with (`<cluster>-members`).
pub fn members_configmap(cluster: &str) -> String {
    format!("{cluster}-members")
}

/// The key of that ConfigMap holding the `server.N=` lines.
pub const MEMBERS_BOOT_KEY: &str = "boot.cfg";

/// The key of that ConfigMap naming the server being added (absent when none is).
pub const MEMBERS_JOINER_KEY: &str = "joiner";

/// The Secret the operator keeps its own SASL user in (`spec.clientAuth`): one key,
/// [`OPERATOR_USER`], whose value is its password. Mounted into the members next to the users'
/// Secret.
pub fn operator_auth_secret(cluster: &str) -> String {
    format!("{cluster}-operator-auth")
}

/// The SASL user the operator logs in as when `spec.clientAuth` is on; ZooKeeper's super user.
pub const OPERATOR_USER: &str = "zookeeper-operator";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ZookeeperCluster;
    use kube::{CustomResourceExt, Resource};

    #[test]
    fn the_type_carries_the_api_group() {
        assert_eq!(ZookeeperCluster::group(&()), API_GROUP);
        assert_eq!(
            ZookeeperCluster::crd_name(),
            format!("zookeeperclusters.{API_GROUP}")
        );
    }

    #[test]
    fn annotations_live_in_the_api_group() {
        for key in [RESTART_HASH_ANNOTATION, APPLIED_HASH_ANNOTATION] {
            assert_eq!(key.split_once('/').map(|(g, _)| g), Some(API_GROUP));
        }
    }

    #[test]
    fn names_as_users_see_them() {
        assert_eq!(
            member_host("zk", 2, "prod", "cluster.local"),
            "zk-2.zk-hs.prod.svc.cluster.local"
        );
        assert_eq!(
            client_service_address("zk", "prod", "cluster.local", 2181),
            "zk-cs.prod.svc.cluster.local:2181"
        );
        assert_eq!(
            connection_string("zk", "prod", "cluster.local", 2181, [0, 1, 2]),
            "zk-0.zk-hs.prod.svc.cluster.local:2181,zk-1.zk-hs.prod.svc.cluster.local:2181,zk-2.zk-hs.prod.svc.cluster.local:2181"
        );
        assert_eq!(
            connection_string("zk", "prod", "cluster.local", 2181, [0]),
            "zk-0.zk-hs.prod.svc.cluster.local:2181"
        );
        assert_eq!(
            member_selector("zk"),
            "app.kubernetes.io/name=zookeeper,app.kubernetes.io/instance=zk"
        );
        assert_eq!(pdb("zk"), "zk-pdb");
        assert_eq!(network_policy("zk"), "zk-netpol");
    }

    #[test]
    fn short_hash_is_stable_and_sensitive() {
        assert_eq!(short_hash(b"a"), short_hash(b"a"));
        assert_ne!(short_hash(b"a"), short_hash(b"b"));
        assert_eq!(short_hash(b"a").len(), 16);
    }
}
