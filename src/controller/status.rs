//! Status (IO half): write the status `crate::status` judged, only when something other than
//! timestamps and zxids changed, and say on the object when a spec is refused.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::{ClusterId, Context, Error, act, observe};
use crate::crd::{ZookeeperCluster, ZookeeperClusterStatus};
use crate::names::MANAGER;
use crate::rollout;
use crate::status::{self, Hold, reason};
use crate::validate::InvalidSpec;

/// Patches the status subresource when it changed; returns whether it wrote.
pub async fn write(
    ctx: &Context,
    zk: &ZookeeperCluster,
    id: &ClusterId,
    new: &ZookeeperClusterStatus,
) -> Result<bool, Error> {
    if !status::needs_write(zk.status.as_ref(), new) {
        return Ok(false);
    }
    let api: Api<ZookeeperCluster> = Api::namespaced(ctx.client.clone(), &id.namespace);
    let patch = serde_json::json!({
        "apiVersion": ZookeeperCluster::api_version(&()),
        "kind": ZookeeperCluster::kind(&()),
        "status": new,
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

/// The members could not be observed: say so (Available Unknown, Degraded ObserveFailed) if the
/// status can still be written, and fail the pass so it is retried with backoff.
pub async fn unobserved(
    ctx: &Context,
    zk: &ZookeeperCluster,
    id: &ClusterId,
    error: Error,
    now: &Time,
) -> Result<Action, Error> {
    let new = status::held_status(zk, None, &Hold::ObserveFailed(error.to_string()), now);
    if let Err(e) = write(ctx, zk, id, &new).await {
        tracing::warn!(error = %e, "could not report that the members cannot be observed");
    }
    Err(error)
}

/// The operator holds the cluster as it runs: an invalid spec never touches the running
/// ensemble, and neither does a pass whose objects could not be applied. The members are still
/// observed and their truth written (so `Available` never goes stale), `Degraded` says why,
/// with one Warning Event for an invalid spec (a failed apply has its own from the apply step).
/// A refused spec is looked at again with the steady resync; a failed apply returns its error
/// so the pass is retried with backoff.
pub async fn hold(
    ctx: &Context,
    zk: &ZookeeperCluster,
    id: &ClusterId,
    hold: Result<&InvalidSpec, Error>,
    now: &Time,
) -> Result<Action, Error> {
    let why = match &hold {
        Ok(invalid) => Hold::InvalidSpec(invalid.problems.clone()),
        Err(e) => Hold::ApplyFailed(e.to_string()),
    };
    let running = observe::running(ctx, id, zk).await?;
    let plan = running.as_ref().map(|(_, o)| rollout::plan(o));
    if let Some(plan) = &plan {
        act::announce(ctx, zk, id, plan).await;
    }
    let judgement = why.judgement();
    let announce = matches!(why, Hold::InvalidSpec(_))
        && !status::already_degraded(zk.status.as_ref(), &judgement);
    let running = running
        .as_ref()
        .zip(plan.as_ref())
        .map(|((sts, _), p)| (sts, p));
    write(ctx, zk, id, &status::held_status(zk, running, &why, now)).await?;
    if announce {
        tracing::warn!(why = %judgement.message, "spec refused; the ensemble is left as it was");
        let note = judgement.message;
        ctx.publish(
            id,
            EventType::Warning,
            reason::INVALID_SPEC,
            "Validate",
            note,
        )
        .await;
    }
    match hold {
        Ok(_) => Ok(Action::requeue(ctx.steady_resync)),
        Err(e) => Err(e),
    }
}
