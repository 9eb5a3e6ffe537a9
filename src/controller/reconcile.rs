//! One reconcile: validate -> render -> apply -> observe -> plan -> act -> status.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, EvictParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use super::{Context, Error, apply, observe};
use crate::crd::{ZookeeperCluster, ZookeeperClusterStatus};
use crate::health::fourlw::member_addresses;
use crate::metrics::ClusterLabels;
use crate::render::labels::MANAGER;
use crate::render::render;
use crate::render::services::client_name;
use crate::rollout::{self, Decision, Observation};
use crate::status::{self, Act, PROGRESSING};
use crate::validate::validate;

/// How often a steady cluster is looked at again: ZooKeeper itself sends no watch events, so a
/// slow resync notices a member that stopped serving while its pod stayed Ready.
pub const STEADY_RESYNC: Duration = Duration::from_secs(60);
/// How often a cluster is looked at while something is wrong or a rollout waits.
pub const BUSY_RESYNC: Duration = Duration::from_secs(5);

/// Entry point for the runtime: times the pipeline and records the outcome.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<ZookeeperCluster>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = match &obj.0 {
        Ok(zk) => reconcile_cluster(zk, &ctx).await,
        Err(invalid) => {
            // A malformed object: say so on it and leave everything else alone.
            tracing::warn!(name = %obj.name_any(), namespace = obj.namespace().unwrap_or_default(), error = %invalid.error, "object does not match the schema");
            let note = format!(
                "the object does not match the ZookeeperCluster schema ({}); fix it with kubectl edit",
                invalid.error
            );
            publish(
                &ctx,
                &obj.object_ref(&()),
                EventType::Warning,
                "MalformedObject",
                "Validate",
                note,
            )
            .await;
            Ok(Action::await_change())
        }
    };
    ctx.metrics.observe_reconcile(
        started.elapsed(),
        result.as_ref().err().map(Error::category),
    );
    if result.is_ok() {
        ctx.record_success(&obj);
    }
    result
}

async fn publish(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: action.to_string(),
        secondary: None,
    };
    // Events are best effort: failing to record one must not fail the reconcile.
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, reason, "failed to publish event");
    }
}

async fn write_status(
    ctx: &Context,
    zk: &ZookeeperCluster,
    namespace: &str,
    status: &ZookeeperClusterStatus,
) -> Result<bool, Error> {
    if !status::needs_write(zk.status.as_ref(), status) {
        return Ok(false);
    }
    let api: Api<ZookeeperCluster> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": ZookeeperCluster::api_version(&()),
        "kind": ZookeeperCluster::kind(&()),
        "status": status,
    });
    api.patch_status(
        &zk.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::PatchStatus { source })?;
    Ok(true)
}

async fn reconcile_cluster(zk: &ZookeeperCluster, ctx: &Context) -> Result<Action, Error> {
    let namespace = zk
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = zk.name_any();
    let reference = zk.object_ref(&());
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let span = tracing::info_span!("reconcile", cluster = %name, namespace = %namespace);
    let _enter = span.enter();

    if zk.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the children.
        let modes: Vec<_> = status::MODES.iter().map(|m| m.as_str()).collect();
        ctx.metrics.forget_cluster(&namespace, &name, &modes);
        return Ok(Action::await_change());
    }

    // validate: an invalid spec never touches the running ensemble.
    let validated = match validate(zk) {
        Ok(v) => v,
        Err(invalid) => {
            let status =
                status::invalid_status(zk.status.as_ref(), zk.metadata.generation, &invalid, &now);
            if write_status(ctx, zk, &namespace, &status).await? {
                tracing::warn!(error = %invalid, "spec refused; the ensemble is left as it was");
                publish(
                    ctx,
                    &reference,
                    EventType::Warning,
                    "InvalidSpec",
                    "Validate",
                    invalid.to_string(),
                )
                .await;
            }
            return Ok(Action::await_change());
        }
    };

    // render + apply
    let owner = zk
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    let desired = render(&validated, Some(&owner));
    let sts = match apply::apply(&ctx.client, &namespace, &desired).await {
        Ok(sts) => sts,
        Err(e) => {
            publish(
                ctx,
                &reference,
                EventType::Warning,
                "ApplyFailed",
                "Apply",
                e.to_string(),
            )
            .await;
            return Err(e);
        }
    };

    // observe
    let pods = observe::pods(&ctx.client, &namespace, &name).await?;
    let spec = &validated.spec;
    let addresses = member_addresses(
        &name,
        &namespace,
        &spec.cluster_domain,
        spec.ports.client as u16,
        spec.replicas.max(0) as u32,
    );
    // Taken before the first word is sent: the planner ignores probes older than a pod.
    let probed_at = SystemTime::now();
    let probes = (ctx.prober)(addresses).await;
    let observation = Observation::from_objects(
        &sts,
        &pods,
        spec.update_strategy.partition.max(0) as u32,
        spec.update_strategy.paused,
        probes,
        probed_at,
    );

    // plan
    let decision = rollout::plan(&observation);
    let view = observation.ensemble();
    tracing::debug!(decision = %decision, "planned");

    // act: at most one eviction, through the Eviction API so the PDB is honoured.
    let mut act = Act::None;
    if let Decision::Restart(restart) = &decision {
        let pod = restart.pod.to_string();
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
        match api.evict(&pod, &EvictParams::default()).await {
            Ok(_) => {
                let labels = ClusterLabels {
                    namespace: namespace.clone(),
                    cluster: name.clone(),
                };
                ctx.metrics.restarts.get_or_create(&labels).inc();
                let note = rollout::step_message(&observation, &decision);
                tracing::info!(pod = %pod, why = %restart.why, "evicted member for a rolling restart");
                publish(
                    ctx,
                    &reference,
                    EventType::Normal,
                    "RestartingMember",
                    "Evict",
                    note,
                )
                .await;
                act = Act::Evicted(pod);
            }
            Err(kube::Error::Api(s)) if s.code == 429 => {
                tracing::info!(pod = %pod, "eviction refused by the PodDisruptionBudget; will retry");
                act = Act::EvictionRefused(pod);
            }
            Err(source) => return Err(Error::EvictPod { pod, source }),
        }
    }
    if let Decision::Blocked(reason) = &decision {
        let labels = ClusterLabels {
            namespace: namespace.clone(),
            cluster: name.clone(),
        };
        ctx.metrics
            .rollouts_blocked_seconds
            .get_or_create(&labels)
            .inc_by(BUSY_RESYNC.as_secs_f64());
        let was_blocked = zk
            .status
            .as_ref()
            .and_then(|s| status::condition(s, PROGRESSING))
            .is_some_and(|c| c.reason == "RolloutBlocked");
        if !was_blocked {
            publish(
                ctx,
                &reference,
                EventType::Warning,
                "RolloutBlocked",
                "Plan",
                reason.to_string(),
            )
            .await;
        }
    }
    ctx.metrics
        .set_members(&namespace, &name, &status::mode_counts(&view));

    // status
    let connection_string = format!(
        "{}.{namespace}.svc.{}:{}",
        client_name(&name),
        spec.cluster_domain,
        spec.ports.client
    );
    let status = status::cluster_status(
        zk.status.as_ref(),
        zk.metadata.generation,
        connection_string,
        &sts,
        &observation,
        &view,
        &decision,
        &act,
        &now,
    );
    write_status(ctx, zk, &namespace, &status).await?;

    let steady = matches!(decision, Decision::Idle) && view.fully_synced();
    Ok(match decision.requeue_after() {
        _ if act != Act::None => Action::requeue(Duration::from_secs(2)),
        Some(after) => Action::requeue(after),
        None if steady => Action::requeue(STEADY_RESYNC),
        None => Action::requeue(BUSY_RESYNC),
    })
}
