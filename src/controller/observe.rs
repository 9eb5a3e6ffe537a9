//! Observe: the StatefulSet's pods from the API and every member's four-letter-word answers.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};

use super::Error;
use crate::health::fourlw::{MemberAddress, ProbeConfig, probe_ensemble};
use crate::health::{MemberProbe, Ordinal};
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

/// The member pods of a cluster.
pub async fn pods(client: &Client, namespace: &str, cluster: &str) -> Result<Vec<Pod>, Error> {
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
    Ok(list.items)
}
