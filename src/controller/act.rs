//! Act: carry out the plan's decision. At most one eviction per pass, through the Eviction API so
//! the PodDisruptionBudget is honoured; a blocked rollout and a member pod that cannot run are
//! announced once each with a Warning Event.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, EvictParams};
use kube::runtime::events::EventType;

use super::{ClusterId, Context, Error};
use crate::crd::ZookeeperCluster;
use crate::rollout::{Act, Decision, Plan, step_message};
use crate::status::{self, reason};

/// Carries out `plan.decision` and says what was done.
pub async fn act(
    ctx: &Context,
    zk: &ZookeeperCluster,
    id: &ClusterId,
    plan: &Plan,
) -> Result<Act, Error> {
    for trouble in status::new_pod_troubles(zk.status.as_ref(), &plan.view) {
        ctx.publish(
            id,
            EventType::Warning,
            reason::MEMBER_POD_FAILING,
            "Observe",
            trouble,
        )
        .await;
    }
    if let Some(stuck) = &plan.stuck
        && !status::was_stuck(zk.status.as_ref())
    {
        let note = stuck.to_string();
        ctx.publish(id, EventType::Warning, reason::ROLLOUT_STUCK, "Plan", note)
            .await;
    }
    match &plan.decision {
        Decision::Restart(restart) => {
            let pod = restart.pod.to_string();
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &id.namespace);
            match api.evict(&pod, &EvictParams::default()).await {
                Ok(_) => {
                    ctx.metrics.restarts.get_or_create(&id.labels()).inc();
                    tracing::info!(pod = %pod, why = %restart.why, "evicted member for a rolling restart");
                    let note = step_message(plan);
                    ctx.publish(
                        id,
                        EventType::Normal,
                        reason::RESTARTING_MEMBER,
                        "Evict",
                        note,
                    )
                    .await;
                    Ok(Act::Evicted(pod))
                }
                Err(kube::Error::Api(s)) if s.code == 429 => {
                    tracing::info!(pod = %pod, "eviction refused by the PodDisruptionBudget; will retry");
                    Ok(Act::EvictionRefused(pod))
                }
                Err(source) => Err(Error::EvictPod { pod, source }),
            }
        }
        Decision::Blocked(blocked) => {
            if !status::was_blocked(zk.status.as_ref()) {
                let note = blocked.to_string();
                ctx.publish(
                    id,
                    EventType::Warning,
                    reason::ROLLOUT_BLOCKED,
                    "Plan",
                    note,
                )
                .await;
            }
            Ok(Act::None)
        }
        Decision::Idle | Decision::Wait(_) => Ok(Act::None),
    }
}
