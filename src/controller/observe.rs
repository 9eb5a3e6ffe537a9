//! Observe: the StatefulSet's pods from the API and every member's four-letter-word answers.

use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::Error;
use crate::health::fourlw::{MemberAddress, ProbeConfig, probe_ensemble};
use crate::health::{MemberName, MemberProbe, Ordinal, PodFacts};
use crate::render::labels::selector_labels;

/// Sends the four-letter words to a set of members. The real one speaks TCP to the members'
/// ordinal DNS names; tests substitute their own.
pub type Prober = Arc<
    dyn Fn(Vec<(Ordinal, MemberAddress)>) -> BoxFuture<'static, Vec<MemberProbe>> + Send + Sync,
>;

/// The prober that talks to real members.
pub fn network_prober(config: ProbeConfig) -> Prober {
    Arc::new(move |members| Box::pin(probe_ensemble(members, config)))
}

/// The member pods of a cluster, as facts the planner understands.
pub async fn pods(client: &Client, namespace: &str, cluster: &str) -> Result<Vec<PodFacts>, Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = selector_labels(cluster)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::ListPods { source })?;
    Ok(list
        .items
        .iter()
        .filter_map(|p| pod_facts(cluster, p))
        .collect())
}

/// Facts of one pod; `None` for a pod whose name is not `<cluster>-<ordinal>`.
pub fn pod_facts(cluster: &str, pod: &Pod) -> Option<PodFacts> {
    let name = pod.name_any();
    let ordinal: u32 = name
        .strip_prefix(cluster)?
        .strip_prefix('-')?
        .parse()
        .ok()?;
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    Some(PodFacts {
        ordinal: Ordinal(ordinal),
        name: MemberName::new(cluster, Ordinal(ordinal)),
        revision: pod.labels().get("controller-revision-hash").cloned(),
        ready,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        created_at: pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| SystemTime::from(t.0)),
    })
}
