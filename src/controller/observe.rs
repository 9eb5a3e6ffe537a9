//! Observe: the StatefulSet's pods from the API and every member's four-letter-word answers.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::{ClusterId, Context, Error};
use crate::crd::{UpdateStrategy, ZookeeperCluster};
use crate::health::fourlw::{MemberAddress, ProbeConfig, member_addresses, probe_ensemble};
use crate::health::{MemberProbe, Ordinal, Outcome};
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
    /// How the members' client port is reached: TLS with the cluster's CA, or plaintext.
    pub tls: Option<crate::tls::ClientTls>,
    /// The Services select members by [`names::IN_SERVICE_LABEL`]: a member is taken out of
    /// them before its eviction, and one left out is put back.
    pub in_service: bool,
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
            tls: None,
            in_service: members.services_select_in_service,
        }
    }

    /// The same members, reached over `tls` when given.
    pub fn with_tls(self, tls: Option<crate::tls::ClientTls>) -> Self {
        Self { tls, ..self }
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
            tls: None,
            in_service: crate::render::members::services_select_in_service(sts),
        }
    }
}

/// Everything the planner needs: the StatefulSet, its pods, and each member's answers through
/// its ordinal DNS name; and whether any member was asked at all (`false`: no member has a pod
/// with an IP, so nothing could answer until a pod watch event says otherwise).
pub async fn observe(
    ctx: &Context,
    id: &ClusterId,
    target: &Target,
    sts: &StatefulSet,
) -> Result<(Observation, bool), Error> {
    let pods = pods(ctx, id).await?;
    if target.in_service {
        super::withdraw::restore(ctx, id, &pods).await?;
    }
    let addresses = addresses(id, target);
    // Taken before the first word is sent: the planner ignores probes older than a pod.
    let probed_at = SystemTime::now();
    let (addresses, unstarted) = split_unstarted(&id.name, addresses, &pods);
    let asked = !addresses.is_empty();
    let mut probes = if !asked {
        Vec::new()
    } else {
        (ctx.prober)(addresses).await
    };
    probes.extend(unstarted);
    probes.sort_by_key(|p| p.ordinal);
    let observation = Observation::from_objects(sts, &pods, &target.strategy, probes, probed_at);
    Ok((observation, asked))
}

/// Every member's answers but `except`'s, through their ordinal DNS names, without reading or
/// changing anything in the API (a member taken out of its Services stays out).
pub async fn probe_all_but(
    ctx: &Context,
    id: &ClusterId,
    target: &Target,
    except: Ordinal,
) -> Vec<MemberProbe> {
    let mut addresses = addresses(id, target);
    addresses.retain(|(o, _)| *o != except);
    (ctx.prober)(addresses).await
}

/// Every member's ordinal DNS name and client port, reached over the target's TLS when it has one.
fn addresses(id: &ClusterId, target: &Target) -> Vec<(Ordinal, MemberAddress)> {
    member_addresses(
        &id.name,
        &id.namespace,
        &target.cluster_domain,
        target.client_port,
        target.replicas,
    )
    .into_iter()
    .map(|(o, a)| match &target.tls {
        Some(tls) => (o, a.with_tls(tls.clone())),
        None => (o, a),
    })
    .collect()
}

/// Splits the members to probe from those that have no pod, or whose pod is Pending without an
/// IP (not scheduled, or its sandbox not started): such a member has no DNS record yet and
/// nothing that could answer, so it is not sent a word, and its outcome is the one the resolver
/// would give. With many clusters whose pods cannot be scheduled (or are not made yet) this
/// saves every name lookup and connection.
fn split_unstarted(
    cluster: &str,
    addresses: Vec<(Ordinal, MemberAddress)>,
    pods: &[Pod],
) -> (Vec<(Ordinal, MemberAddress)>, Vec<MemberProbe>) {
    let why_unstarted = |ordinal: Ordinal| {
        let name = names::member_pod(cluster, ordinal.0);
        match pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
        {
            None => Some("no pod yet"),
            Some(p) => p
                .status
                .as_ref()
                .is_some_and(|s| {
                    s.phase.as_deref() == Some("Pending")
                        && s.pod_ip.as_deref().is_none_or(str::is_empty)
                })
                .then_some("the pod has no IP yet (Pending)"),
        }
    };
    let mut probe = Vec::new();
    let mut skipped = Vec::new();
    for (ordinal, addr) in addresses {
        match why_unstarted(ordinal) {
            Some(why) => skipped.push(MemberProbe {
                ordinal,
                srvr: Outcome::DnsFailure(format!("{}: {why}", addr.host)),
                mntr: None,
            }),
            None => probe.push((ordinal, addr)),
        }
    }
    (probe, skipped)
}

/// Whether some member gave no serving answer (it is down, starting, or cannot be reached).
pub fn unanswered(observation: &Observation) -> bool {
    observation.probes.len() < observation.replicas as usize
        || observation
            .probes
            .iter()
            .any(|p| p.srvr.serving().is_none())
}

/// What a pass over a cluster whose members do not answer can observe, as one number: the
/// StatefulSet's generations and revisions, each pod's identity, revision, readiness and trouble,
/// and the kind of each member's answer (not its details, which carry addresses and times). Two
/// passes with the same fingerprint learned nothing new from each other.
pub fn fingerprint(observation: &Observation) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    observation.replicas.hash(&mut h);
    observation.generation.hash(&mut h);
    observation.observed_generation.hash(&mut h);
    observation.update_revision.hash(&mut h);
    observation.current_revision.hash(&mut h);
    let mut pods: Vec<_> = observation.pods.iter().collect();
    pods.sort_by_key(|p| p.ordinal);
    for p in pods {
        p.ordinal.hash(&mut h);
        p.uid.hash(&mut h);
        p.revision.hash(&mut h);
        p.ready.hash(&mut h);
        p.terminating.hash(&mut h);
        p.trouble.hash(&mut h);
    }
    for p in &observation.probes {
        p.ordinal.hash(&mut h);
        std::mem::discriminant(&p.srvr).hash(&mut h);
        p.srvr.serving().map(|s| s.mode).hash(&mut h);
    }
    h.finish()
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
    Ok(observe(ctx, id, target, &sts).await?.0)
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
    let (observation, _) = observe(ctx, id, &Target::running(&sts, zk), &sts).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use kube::api::ObjectMeta;

    fn pod(name: &str, phase: &str, ip: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.to_string()),
                pod_ip: ip.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_members_whose_pod_has_an_ip_are_asked() {
        let addresses = member_addresses("zk", "ns", "cluster.local", 2181, 4);
        let pods = [
            pod("zk-0", "Running", Some("10.0.0.1")),
            pod("zk-1", "Pending", None),
            // a pod with an IP whose containers have not started: asked (it may be starting)
            pod("zk-3", "Pending", Some("10.0.0.3")),
        ];
        let (asked, skipped) = split_unstarted("zk", addresses, &pods);
        let asked: Vec<u32> = asked.iter().map(|(o, _)| o.0).collect();
        assert_eq!(asked, [0, 3]);
        let skipped: Vec<(u32, String)> = skipped
            .iter()
            .map(|p| match &p.srvr {
                Outcome::DnsFailure(why) => (p.ordinal.0, why.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            skipped,
            [
                (
                    1,
                    "zk-1.zk-hs.ns.svc.cluster.local: the pod has no IP yet (Pending)".to_string()
                ),
                (2, "zk-2.zk-hs.ns.svc.cluster.local: no pod yet".to_string()),
            ]
        );
    }
}
