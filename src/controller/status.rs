//! Status (IO half): write the status `crate::status` judged, only when something other than
//! timestamps and zxids changed, and say on the object when a spec is refused.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::{ClusterId, Context, Error};
use crate::crd::{ZookeeperCluster, ZookeeperClusterStatus};
use crate::names::MANAGER;
use crate::status::{self, reason};
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

/// An invalid spec never touches the running ensemble: only `Degraded` says why, with one
/// Warning Event when that is new; nothing else happens until the spec changes.
pub async fn refuse(
    ctx: &Context,
    zk: &ZookeeperCluster,
    id: &ClusterId,
    invalid: &InvalidSpec,
    now: &Time,
) -> Result<Action, Error> {
    let new = status::invalid_status(zk.status.as_ref(), zk.metadata.generation, invalid, now);
    if write(ctx, zk, id, &new).await? {
        tracing::warn!(error = %invalid, "spec refused; the ensemble is left as it was");
        let note = invalid.to_string();
        ctx.publish(
            id,
            EventType::Warning,
            reason::INVALID_SPEC,
            "Validate",
            note,
        )
        .await;
    }
    Ok(Action::await_change())
}
