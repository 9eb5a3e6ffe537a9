//! The controller: watches ZookeeperClusters (through `DeserializeGuard`, so one malformed
//! object cannot stop the others), owns their StatefulSet, Services and PDB, watches their pods,
//! and runs one reconcile pipeline per change.

//! One file per step of the pipeline: [`reconcile`] calls validate and render (pure, outside
//! this module), then [`apply`], [`observe`], plan (pure, `crate::rollout`), [`act`] and
//! [`status`] (the IO half of `crate::status`).

pub mod act;
pub mod apply;
pub mod children;
pub mod membership;
pub mod observe;
pub mod reconcile;
pub mod status;
pub mod withdraw;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event as CoreEvent, EventSource, ObjectReference, Pod, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::PostParams;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
pub use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use crate::crd::ZookeeperCluster;
use crate::membership::CommittedConfig;
use crate::metrics::{ClusterLabels, Metrics};
use crate::names::{self, INSTANCE_LABEL, MANAGER};
use crate::validate::ValidatedCluster;
use observe::Prober;

/// Errors of one reconcile, named after the action that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to apply service {name}: {source}")]
    ApplyService { name: String, source: kube::Error },
    #[error("failed to apply pod disruption budget: {source}")]
    ApplyPdb { source: kube::Error },
    #[error("failed to apply the membership config map: {source}")]
    ApplyConfigMap { source: kube::Error },
    #[error("failed to apply the network policy: {source}")]
    ApplyNetworkPolicy { source: kube::Error },

    #[error("failed to apply statefulset: {source}")]
    ApplyStatefulSet { source: kube::Error },
    #[error("failed to get statefulset: {source}")]
    GetStatefulSet { source: kube::Error },
    #[error("failed to list pods: {source}")]
    ListPods { source: kube::Error },
    #[error("failed to put member {pod} back in its Services: {source}")]
    RestoreInService { pod: String, source: kube::Error },
    #[error("failed to patch status: {source}")]
    PatchStatus { source: kube::Error },
    #[error("object is missing {0}")]
    MissingField(&'static str),
    #[error(transparent)]
    Tls(#[from] crate::tls::apply::TlsStepError),
    #[error(transparent)]
    ClientAuth(#[from] crate::client_auth::ClientAuthError),
    #[error(transparent)]
    QuorumAuth(#[from] crate::quorum_auth::QuorumAuthError),
}

impl Error {
    /// A bounded category for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::ApplyService { .. }
            | Error::ApplyPdb { .. }
            | Error::ApplyConfigMap { .. }
            | Error::ApplyNetworkPolicy { .. }
            | Error::ApplyStatefulSet { .. } => "apply",
            Error::GetStatefulSet { .. }
            | Error::ListPods { .. }
            | Error::RestoreInService { .. } => "observe",
            Error::PatchStatus { .. } => "status",
            Error::MissingField(_) => "object",
            Error::Tls(e) => e.category(),
            Error::ClientAuth(e) => e.category(),
            Error::QuorumAuth(e) => e.category(),
        }
    }
}

/// Who one reconcile is about: the cluster's namespace, name and the references its children and
/// Events carry.
pub struct ClusterId {
    pub namespace: String,
    pub name: String,
    /// For Events about the cluster.
    pub reference: ObjectReference,
    /// The controller owner reference every child carries.
    pub owner: OwnerReference,
}

impl ClusterId {
    pub fn of(zk: &ZookeeperCluster) -> Result<Self, Error> {
        Ok(ClusterId {
            namespace: zk
                .namespace()
                .ok_or(Error::MissingField("metadata.namespace"))?,
            name: zk.name_any(),
            reference: zk.object_ref(&()),
            owner: zk
                .controller_owner_ref(&())
                .ok_or(Error::MissingField("metadata.uid"))?,
        })
    }

    /// The labels of the cluster's metric series.
    pub fn labels(&self) -> ClusterLabels {
        ClusterLabels {
            namespace: self.namespace.clone(),
            cluster: self.name.clone(),
        }
    }

    /// What `status.connectionString` publishes: the ordinal names of the committed members
    /// (every server of ZooKeeper's committed configuration, when it could be read), else of
    /// the members the spec asks for.
    pub fn connection_string(
        &self,
        cluster: &ValidatedCluster,
        committed: Option<&CommittedConfig>,
    ) -> String {
        let ordinals: Vec<u32> = match committed {
            Some(c) if !c.servers.is_empty() => c.servers.keys().map(|id| id.ordinal().0).collect(),
            _ => (0..cluster.spec.replicas.max(1) as u32).collect(),
        };
        names::connection_string(
            &self.name,
            &self.namespace,
            &cluster.spec.cluster_domain,
            cluster.spec.ports.client,
            ordinals,
        )
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// `reportingInstance` of the Events: the pod's name.
    instance: String,
    pub metrics: Arc<Metrics>,
    pub prober: Prober,
    /// How often a steady cluster is looked at again.
    pub steady_resync: Duration,
    /// With the Lease election on: checked right before every eviction.
    pub fence: Option<crate::election::Fence>,
    /// Reads and changes the ensembles' membership.
    pub zookeeper: Arc<dyn membership::Zookeeper>,
    /// From which every cluster's super-user password is derived; without it, no membership
    /// change can be made.
    pub super_key: Option<membership::SuperKey>,
    /// The operator's own namespace: each cluster's NetworkPolicy admits the operator's probes
    /// and ZooKeeper sessions from there. `None` admits no namespace for them.
    pub operator_namespace: Option<String>,
    /// Spacing of passes over clusters whose members do not answer.
    pub probe_backoff: crate::health::backoff::ProbeBackoff,
    /// What the watches last saw of the children a pass applies without reading them back.
    pub children: Arc<children::Children>,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<DeserializeGuard<ZookeeperCluster>>, u32>>,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, prober: Prober) -> Self {
        Context {
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| MANAGER.to_string()),
            client,
            metrics,
            prober,
            steady_resync: crate::rollout::STEADY_RESYNC,
            fence: None,
            zookeeper: Arc::new(membership::NoZookeeper),
            super_key: None,
            operator_namespace: None,
            probe_backoff: Default::default(),
            children: Default::default(),
            failures: Mutex::default(),
        }
    }

    /// Acts (evicts) only while `fence` says this replica holds the operator's Lease.
    pub fn with_fence(mut self, fence: Option<crate::election::Fence>) -> Self {
        self.fence = fence;
        self
    }

    /// Changes membership through `zookeeper`, as super users derived from `key`.
    pub fn with_membership(
        mut self,
        zookeeper: Arc<dyn membership::Zookeeper>,
        key: Option<membership::SuperKey>,
    ) -> Self {
        self.zookeeper = zookeeper;
        self.super_key = key;
        self
    }

    /// Admits the operator's traffic from `namespace` in every cluster's NetworkPolicy.
    pub fn with_operator_namespace(mut self, namespace: Option<String>) -> Self {
        self.operator_namespace = namespace;
        self
    }

    /// Looks at steady clusters every `resync` instead of [`crate::rollout::STEADY_RESYNC`].
    pub fn with_steady_resync(mut self, resync: Duration) -> Self {
        self.steady_resync = resync;
        self
    }

    /// Publishes an Event about the cluster. Events are best effort: failing to record one must
    /// not fail the reconcile.
    pub async fn publish(
        &self,
        id: &ClusterId,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish_to(&id.reference, type_, reason, action, note)
            .await
    }

    /// Publishes an Event about any object (a malformed cluster has no [`ClusterId`]).
    ///
    /// A core/v1 Event with `firstTimestamp`/`lastTimestamp`, so `kubectl get events
    /// --sort-by=.lastTimestamp` orders it (events.k8s.io Events leave those empty), and one
    /// Event per occurrence: the callers already announce each change once, and merging Events
    /// by reason (as kube's recorder does) would keep the first note of a series.
    pub async fn publish_to(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let now = k8s_openapi::jiff::Timestamp::now();
        let namespace = reference
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let event = CoreEvent {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    reference.name.as_deref().unwrap_or(MANAGER),
                    now.as_nanosecond()
                )),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: reference.clone(),
            reason: Some(reason.to_string()),
            message: Some(note.chars().take(1000).collect()),
            type_: Some(match type_ {
                EventType::Normal => "Normal".to_string(),
                EventType::Warning => "Warning".to_string(),
            }),
            action: Some(action.to_string()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            source: Some(EventSource {
                component: Some(MANAGER.to_string()),
                host: None,
            }),
            reporting_component: Some(MANAGER.to_string()),
            reporting_instance: Some(self.instance.clone()),
            ..CoreEvent::default()
        };
        let api: Api<CoreEvent> = Api::namespaced(self.client.clone(), &namespace);
        // Events are best effort: failing to record one must not fail the reconcile.
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(error = %e, reason, "failed to publish event");
        }
    }

    fn record_failure(&self, obj: &DeserializeGuard<ZookeeperCluster>) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(ObjectRef::from(obj)).or_default();
        *n = n.saturating_add(1);
        *n
    }

    fn record_success(&self, obj: &DeserializeGuard<ZookeeperCluster>) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&ObjectRef::from(obj));
    }
}

/// Backoff after `failures` consecutive failures: 1 s, 2 s, 4 s, ... capped at 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(9);
    Duration::from_secs(secs.min(300))
}

fn error_policy(
    obj: Arc<DeserializeGuard<ZookeeperCluster>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let n = ctx.record_failure(&obj);
    let delay = backoff(n);
    tracing::warn!(
        name = %obj.name_any(),
        namespace = obj.namespace().unwrap_or_default(),
        error = %error,
        retry_in_s = delay.as_secs(),
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// An API of `K` in one namespace, or in all.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Counts the cluster owning a child as waiting for a pass.
type Tap = Arc<dyn Fn(&ObjectMeta) + Send + Sync>;

/// The children of kind `K` a pass applies without reading them back: a metadata-only watch
/// that keeps `index` current and yields the children whose change should trigger a pass (see
/// [`children`]), each counted by `tap`.
fn owned<K>(
    client: &Client,
    namespace: Option<&str>,
    config: &watcher::Config,
    index: &Arc<children::Children>,
    tap: &Tap,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (index, tap) = (index.clone(), tap.clone());
    watcher(scoped(client, namespace), config.clone())
        .default_backoff()
        .filter_map(move |event| {
            let out = match event {
                Ok(event) => index.on_event(K::KIND, event).map(Ok),
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(out)
        })
        .inspect_ok(move |o| tap(&o.metadata))
}

/// Options of [`run`].
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Watch one namespace, or every namespace when `None`.
    pub namespace: Option<String>,
    /// Reconciles running at once.
    pub concurrency: u16,
}

/// Runs the controller until `shutdown` resolves (SIGTERM/ctrl-c), then lets running
/// reconciles finish.
pub async fn run(
    ctx: Arc<Context>,
    options: RunOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let ns = options.namespace.as_deref();
    let clusters = scoped::<DeserializeGuard<ZookeeperCluster>>(&client, ns);
    let pods = scoped::<Pod>(&client, ns);
    let managed = watcher::Config::default().labels(&names::managed_selector());
    let member_pods =
        watcher::Config::default().labels(&format!("{}={}", names::NAME_LABEL, names::APP_NAME));
    // Only spec changes (a new generation) of the cluster itself, and a CA rotation asked for
    // with its annotation, trigger a reconcile: the operator's own status writes (members'
    // zxids move with every client write) must not.
    let (reader, writer) = reflector::store();
    let metrics = ctx.metrics.clone();
    let cluster_changes = watcher(clusters, watcher::Config::default().any_semantic())
        .default_backoff()
        // The store keeps every cluster: not the parts a pass never reads.
        .modify(children::compact_cluster)
        .reflect(writer)
        // No finalizer, so a deleted cluster is never reconciled again: its metric series are
        // forgotten when the watch reports the deletion.
        .inspect_ok(move |event| {
            if let watcher::Event::Delete(obj) = event {
                metrics.forget_cluster(&obj.namespace().unwrap_or_default(), &obj.name_any());
            }
        })
        .applied_objects()
        .predicate_filter(spec_or_ca_rotation, Default::default());
    // Every watch event that asks for a pass of a cluster the store holds is counted as waiting
    // until the pass starts (the operator's queue depth and wait).
    let asked = {
        let reader = reader.clone();
        let metrics = ctx.metrics.clone();
        move |namespace: Option<String>, cluster: Option<&str>| {
            if let (Some(ns), Some(name)) = (namespace, cluster)
                && reader.get(&ObjectRef::new(name).within(&ns)).is_some()
            {
                metrics.pass_asked(&ns, name);
            }
        }
    };
    let owner_asked = {
        let asked = asked.clone();
        move |meta: &ObjectMeta| {
            let owner = meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind == ZookeeperCluster::kind(&()));
            asked(meta.namespace.clone(), owner.map(|o| o.name.as_str()));
        }
    };
    let cluster_changes = {
        let asked = asked.clone();
        cluster_changes.inspect_ok(move |zk| asked(zk.namespace(), Some(&zk.name_any())))
    };
    // The children a pass applies without reading them back: metadata-only watches that keep
    // `ctx.children` current and trigger a pass only when what the pass depends on changed.
    let tap: Tap = Arc::new(owner_asked);
    let index = &ctx.children;
    Controller::for_stream(cluster_changes, reader)
        .owns_stream({
            let tap = tap.clone();
            watcher(
                scoped::<PartialObjectMeta<StatefulSet>>(&client, ns),
                managed.clone(),
            )
            .default_backoff()
            .touched_objects()
            .inspect_ok(move |o| tap(&o.metadata))
        })
        .owns_stream(owned::<Service>(&client, ns, &managed, index, &tap))
        .owns_stream(owned::<PodDisruptionBudget>(
            &client, ns, &managed, index, &tap,
        ))
        .owns_stream(owned::<ConfigMap>(&client, ns, &managed, index, &tap))
        .owns_stream(owned::<NetworkPolicy>(&client, ns, &managed, index, &tap))
        // Pods are owned by the StatefulSet, not by the cluster: map them back by label.
        .watches(pods, member_pods, move |pod: Pod| {
            let cluster = pod.labels().get(INSTANCE_LABEL)?.clone();
            asked(pod.namespace(), Some(&cluster));
            Some(ObjectRef::new(&cluster).within(&pod.namespace()?))
        })
        .with_config(
            ControllerConfig::default()
                .concurrency(options.concurrency)
                .debounce(Duration::from_millis(500)),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// What a cluster's change must alter to trigger a pass: its generation (the spec) or the value
/// of [`crate::tls::ROTATE_CA_ANNOTATION`] (a CA rotation asked for, acted on at once rather
/// than at the next resync).
fn spec_or_ca_rotation<K: Resource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let generation = predicates::generation(obj)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    generation.hash(&mut h);
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::tls::ROTATE_CA_ANNOTATION))
        .hash(&mut h);
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(generation: i64, rotate: Option<&str>, status_note: &str) -> ZookeeperCluster {
        let mut zk: ZookeeperCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
            "kind": "ZookeeperCluster",
            "metadata": {"name": "zk", "namespace": "ns", "generation": generation,
                "annotations": {"note": status_note}},
            "spec": {},
        }))
        .unwrap();
        if let Some(r) = rotate {
            zk.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(crate::tls::ROTATE_CA_ANNOTATION.to_string(), r.to_string());
        }
        zk
    }

    #[test]
    fn a_pass_follows_the_spec_or_a_ca_rotation_request_nothing_else() {
        let base = spec_or_ca_rotation(&cluster(1, None, "a"));
        assert_eq!(base, spec_or_ca_rotation(&cluster(1, None, "b")));
        assert_ne!(base, spec_or_ca_rotation(&cluster(2, None, "a")));
        let asked = spec_or_ca_rotation(&cluster(1, Some("r1"), "a"));
        assert_ne!(base, asked);
        assert_ne!(asked, spec_or_ca_rotation(&cluster(1, Some("r2"), "a")));
        assert_eq!(asked, spec_or_ca_rotation(&cluster(1, Some("r1"), "b")));
    }
}
