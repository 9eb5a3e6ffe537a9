//! Observe: the StatefulSet's pods from the API and every member's four-letter-word answers.

use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::{ClusterId, Context, Error};
use crate::health::fourlw::{MemberAddress, ProbeConfig, member_addresses, probe_ensemble};
use crate::health::{MemberProbe, Ordinal};
use crate::names;
use crate::rollout::Observation;
use crate::validate::ValidatedCluster;

/// Sends the four-letter words to a set of members. The real one speaks TCP to the members'
/// ordinal DNS names; tests substitute their own.
pub type Prober = Arc<
    dyn Fn(Vec<(Ordinal, MemberAddress)>) -> BoxFuture<'static, Vec<MemberProbe>> + Send + Sync,
>;

/// The prober that talks to real members.
pub fn network_prober(config: ProbeConfig) -> Prober {
    Arc::new(move |members| Box::pin(probe_ensemble(members, config)))
}

/// Everything the planner needs: the StatefulSet (as just applied), its pods, and each member's
/// answers through its ordinal DNS name.
pub async fn observe(
    ctx: &Context,
    id: &ClusterId,
    cluster: &ValidatedCluster,
    sts: &StatefulSet,
) -> Result<Observation, Error> {
    let pods = pods(ctx, id).await?;
    let spec = &cluster.spec;
    let addresses = member_addresses(
        &id.name,
        &id.namespace,
        &spec.cluster_domain,
        spec.ports.client as u16,
        spec.replicas.max(0) as u32,
    );
    // Taken before the first word is sent: the planner ignores probes older than a pod.
    let probed_at = SystemTime::now();
    let probes = (ctx.prober)(addresses).await;
    Ok(Observation::from_objects(
        sts,
        &pods,
        &spec.update_strategy,
        probes,
        probed_at,
    ))
}

/// Observes again from scratch (the StatefulSet as the server has it now), for the re-check
/// just before an eviction.
pub async fn again(
    ctx: &Context,
    id: &ClusterId,
    cluster: &ValidatedCluster,
) -> Result<Observation, Error> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &id.namespace);
    let sts = api
        .get(&names::statefulset(&id.name))
        .await
        .map_err(|source| Error::GetStatefulSet { source })?;
    observe(ctx, id, cluster, &sts).await
}

/// The member pods of a cluster.
async fn pods(ctx: &Context, id: &ClusterId) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &id.namespace);
    let selector = names::member_selector(&id.name);
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::ListPods { source })?;
    Ok(list.items)
}
