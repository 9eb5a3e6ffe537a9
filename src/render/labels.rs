//! The one label set and the one way to build child object metadata.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// Labels with this prefix belong to the operator; users may not set them on pods.
pub const RESERVED_LABEL_PREFIX: &str = "app.kubernetes.io/";
/// Value of `app.kubernetes.io/managed-by` and the server-side apply field manager.
pub const MANAGER: &str = "zookeeper-operator";

/// Labels that select the members of one cluster (Service, PDB, StatefulSet and anti-affinity).
pub fn selector_labels(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "zookeeper".to_string(),
        ),
        (
            "app.kubernetes.io/instance".to_string(),
            cluster.to_string(),
        ),
    ])
}

/// Every label the operator puts on the objects it owns.
pub fn labels(cluster: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster);
    labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        MANAGER.to_string(),
    );
    labels.insert(
        "app.kubernetes.io/component".to_string(),
        "server".to_string(),
    );
    labels
}

/// Metadata of a child object: name, namespace, the label set and the owner reference.
pub fn object_meta(
    name: String,
    namespace: &str,
    cluster: &str,
    owner: Option<&OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        labels: Some(labels(cluster)),
        owner_references: owner.map(|o| vec![o.clone()]),
        ..Default::default()
    }
}
