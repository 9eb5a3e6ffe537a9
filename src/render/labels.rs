//! The one label set and the one way to build child object metadata.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::names::{
    APP_NAME, COMPONENT, COMPONENT_LABEL, IN_SERVICE, IN_SERVICE_LABEL, INSTANCE_LABEL,
    MANAGED_BY_LABEL, MANAGER, NAME_LABEL,
};

/// Labels that select the members of one cluster (Service, PDB, StatefulSet and anti-affinity).
pub fn selector_labels(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), APP_NAME.to_string()),
        (INSTANCE_LABEL.to_string(), cluster.to_string()),
    ])
}

/// Labels by which the Services select members: the member labels, plus [`IN_SERVICE_LABEL`]
/// once every member carries it (`in_service`), so that a member can be taken out of the
/// Services before it is evicted.
pub fn service_selector_labels(cluster: &str, in_service: bool) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster);
    if in_service {
        labels.insert(IN_SERVICE_LABEL.to_string(), IN_SERVICE.to_string());
    }
    labels
}

/// Every label the operator puts on the objects it owns.
pub fn labels(cluster: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster);
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGER.to_string());
    labels.insert(COMPONENT_LABEL.to_string(), COMPONENT.to_string());
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
