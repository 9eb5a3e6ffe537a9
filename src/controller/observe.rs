//! Observe: the StatefulSet's pods from the API and every member's four-letter-word answers.

use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::{ClusterId, Context, Error};
use crate::crd::{UpdateStrategy, ZookeeperCluster};
use crate::health::fourlw::{MemberAddress, ProbeConfig, member_addresses, probe_ensemble};
use crate::health::{MemberProbe, Ordinal};
use crate::names;
use crate::render::Members;
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

/// What to probe and how the rollout is configured: from a valid spec, or, when the spec is
/// refused or could not be applied, from the StatefulSet that runs.
#[derive(Clone, Debug)]
pub struct Target {
    pub replicas: u32,
    pub client_port: u16,
    pub cluster_domain: String,
    pub strategy: UpdateStrategy,
}

impl Target {
    /// The members a valid spec describes, as many as the membership step lets run.
    pub fn of(cluster: &ValidatedCluster, members: &Members) -> Self {
        let spec = &cluster.spec;
        Target {
            replicas: members.replicas.max(0) as u32,
            client_port: spec.ports.client as u16,
            cluster_domain: spec.cluster_domain.clone(),
            strategy: spec.update_strategy.clone(),
        }
    }

    /// The members that run now: the StatefulSet's replicas and client port.
    pub fn running(sts: &StatefulSet, zk: &ZookeeperCluster) -> Self {
        let spec = sts.spec.as_ref();
        let client_port = spec
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers.first()?.ports.clone())
            .and_then(|ports| {
                ports
                    .into_iter()
                    .find(|p| p.name.as_deref() == Some("client"))
            })
            .map_or(zk.spec.ports.client, |p| p.container_port);
        Target {
            replicas: spec.and_then(|s| s.replicas).unwrap_or(0).max(0) as u32,
            client_port: client_port as u16,
            cluster_domain: zk.spec.cluster_domain.clone(),
            strategy: zk.spec.update_strategy.clone(),
        }
    }
}

/// Everything the planner needs: the StatefulSet, its pods, and each member's answers through
/// its ordinal DNS name.
pub async fn observe(
    ctx: &Context,
    id: &ClusterId,
    target: &Target,
    sts: &StatefulSet,
) -> Result<Observation, Error> {
    let pods = pods(ctx, id).await?;
    let addresses = member_addresses(
        &id.name,
        &id.namespace,
        &target.cluster_domain,
        target.client_port,
        target.replicas,
    );
    // Taken before the first word is sent: the planner ignores probes older than a pod.
    let probed_at = SystemTime::now();
    let probes = (ctx.prober)(addresses).await;
    Ok(Observation::from_objects(
        sts,
        &pods,
        &target.strategy,
        probes,
        probed_at,
    ))
}

/// The StatefulSet as the server has it now, if it exists.
pub async fn statefulset(ctx: &Context, id: &ClusterId) -> Result<Option<StatefulSet>, Error> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &id.namespace);
    api.get_opt(&names::statefulset(&id.name))
        .await
        .map_err(|source| Error::GetStatefulSet { source })
}

/// Observes again from scratch, for the re-check just before an eviction.
pub async fn again(ctx: &Context, id: &ClusterId, target: &Target) -> Result<Observation, Error> {
    let sts = statefulset(ctx, id)
        .await?
        .ok_or(Error::MissingField("statefulset"))?;
    observe(ctx, id, target, &sts).await
}

/// The ensemble that runs now, observed without changing anything (for a spec that is refused
/// or could not be applied); `None` when there is no StatefulSet yet.
pub async fn running(
    ctx: &Context,
    id: &ClusterId,
    zk: &ZookeeperCluster,
) -> Result<Option<(StatefulSet, Observation)>, Error> {
    let Some(sts) = statefulset(ctx, id).await? else {
        return Ok(None);
    };
    let observation = observe(ctx, id, &Target::running(&sts, zk), &sts).await?;
    Ok(Some((sts, observation)))
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
