//! Status: conditions and members from what was observed. Pure.
//!
//! `lastTransitionTime` is kept unless a condition's status flips, so an unchanged cluster
//! produces an identical status and the controller skips the write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use k8s_openapi::api::apps::v1::StatefulSet;

use crate::crd::{MemberStatus, ZookeeperClusterStatus};
use crate::health::{EnsembleView, Mode};
use crate::rollout::{Decision, Observation, WaitReason, step_message};
use crate::validate::InvalidSpec;

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// One condition as the reconcile judged it, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Judgement {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Judgement {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Merges judgements into the previous conditions: a condition keeps its
/// `lastTransitionTime` unless its status changed; conditions not judged now are kept as they
/// were; the order is Available, Progressing, Degraded, then any others.
pub fn merge_conditions(
    previous: &[Condition],
    judgements: &[Judgement],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = Vec::new();
    for j in judgements {
        let status = if j.status { "True" } else { "False" };
        let old = previous.iter().find(|c| c.type_ == j.type_);
        let last_transition_time = match old {
            Some(old) if old.status == status => old.last_transition_time.clone(),
            _ => now.clone(),
        };
        out.push(Condition {
            type_: j.type_.to_string(),
            status: status.to_string(),
            reason: j.reason.clone(),
            message: j.message.clone(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    for c in previous {
        if !out.iter().any(|o| o.type_ == c.type_) {
            out.push(c.clone());
        }
    }
    let rank = |t: &str| match t {
        AVAILABLE => 0,
        PROGRESSING => 1,
        DEGRADED => 2,
        _ => 3,
    };
    out.sort_by_key(|c| rank(&c.type_));
    out
}

/// Whether writing `new` would change anything: the status is written only then. A member's
/// zxid moves with every client write, so a change of zxids alone is not worth a write; they are
/// brought up to date with the next real change.
pub fn needs_write(old: Option<&ZookeeperClusterStatus>, new: &ZookeeperClusterStatus) -> bool {
    let Some(old) = old else { return true };
    let without_zxid = |s: &ZookeeperClusterStatus| {
        let mut s = s.clone();
        for m in &mut s.members {
            m.zxid = None;
        }
        s
    };
    without_zxid(old) != without_zxid(new)
}

/// The condition of a given type, if present.
pub fn condition<'a>(status: &'a ZookeeperClusterStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// Every mode a member can report, for the members-by-mode metric.
pub const MODES: [Mode; 5] = [
    Mode::Leader,
    Mode::Follower,
    Mode::Observer,
    Mode::Standalone,
    Mode::Unreachable,
];

/// What the reconcile did this time, beyond the planner's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// Nothing was evicted.
    None,
    /// The decided pod was evicted.
    Evicted(String),
    /// The eviction was refused (the PodDisruptionBudget allows no disruption now).
    EvictionRefused(String),
}

/// The three conditions from the ensemble view and the planner's decision.
pub fn judge(
    observation: &Observation,
    view: &EnsembleView,
    decision: &Decision,
    act: &Act,
) -> [Judgement; 3] {
    let quorum = view.voters / 2 + 1;
    let available = if view.available() {
        let leader = view
            .leader()
            .map(|m| m.name.to_string())
            .unwrap_or_default();
        Judgement::new(
            AVAILABLE,
            true,
            "QuorumServing",
            format!(
                "{} of {} members serve a quorum led by {leader} (from each member's srvr)",
                view.voters_serving, view.voters
            ),
        )
    } else {
        Judgement::new(
            AVAILABLE,
            false,
            "NoQuorum",
            format!(
                "{} of {} members serve a quorum; at least {quorum} must serve under one leader",
                view.voters_serving, view.voters
            ),
        )
    };
    let step = step_message(observation, decision);
    let progressing = match (decision, act) {
        (_, Act::EvictionRefused(pod)) => Judgement::new(
            PROGRESSING,
            true,
            "EvictionRefused",
            format!(
                "{step}; the eviction of {pod} was refused by the PodDisruptionBudget, retrying"
            ),
        ),
        (Decision::Idle, _) => Judgement::new(
            PROGRESSING,
            false,
            "UpToDate",
            format!(
                "every member the partition lets change runs revision {}",
                observation.update_revision.as_deref().unwrap_or("unknown")
            ),
        ),
        (Decision::Wait(WaitReason::Paused { .. }), _) => {
            Judgement::new(PROGRESSING, false, "Paused", step)
        }
        (Decision::Restart(_), _) => Judgement::new(PROGRESSING, true, "RestartingMember", step),
        (Decision::Wait(_), _) => Judgement::new(PROGRESSING, true, "WaitingForMembers", step),
        (Decision::Blocked(_), _) => Judgement::new(PROGRESSING, true, "RolloutBlocked", step),
    };
    let degraded = match (view.degraded(), decision) {
        (Some((reason, message)), _) => Judgement::new(DEGRADED, true, reason, message),
        (None, Decision::Blocked(b)) => {
            Judgement::new(DEGRADED, true, "RolloutBlocked", b.to_string())
        }
        (None, _) => Judgement::new(
            DEGRADED,
            false,
            "Healthy",
            format!(
                "all {} members serve and the leader counts them synced",
                view.voters
            ),
        ),
    };
    [available, progressing, degraded]
}

/// The whole status of a cluster whose spec is valid.
#[allow(clippy::too_many_arguments)]
pub fn cluster_status(
    previous: Option<&ZookeeperClusterStatus>,
    generation: Option<i64>,
    connection_string: String,
    sts: &StatefulSet,
    observation: &Observation,
    view: &EnsembleView,
    decision: &Decision,
    act: &Act,
    now: &Time,
) -> ZookeeperClusterStatus {
    let s = sts.status.clone().unwrap_or_default();
    let judgements = judge(observation, view, decision, act);
    let prev_conditions = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    ZookeeperClusterStatus {
        observed_generation: generation,
        replicas: s.replicas,
        ready_replicas: s.ready_replicas.unwrap_or(0),
        updated_replicas: s.updated_replicas.unwrap_or(0),
        current_revision: s.current_revision,
        update_revision: s.update_revision,
        leader: view.leader().map(|m| m.name.to_string()),
        members: view
            .members
            .iter()
            .map(|m| MemberStatus {
                name: m.name.to_string(),
                ordinal: m.ordinal.0 as i32,
                mode: m.mode.as_str().to_string(),
                zxid: m.zxid.map(|z| z.to_string()),
                revision: m.revision().map(str::to_string),
                ready: m.pod_ready(),
            })
            .collect(),
        connection_string: Some(connection_string),
        conditions: merge_conditions(prev_conditions, &judgements, generation, now),
    }
}

/// The status of a cluster whose spec was refused: everything observed before is kept (the
/// ensemble was not touched), `Degraded` says why.
pub fn invalid_status(
    previous: Option<&ZookeeperClusterStatus>,
    generation: Option<i64>,
    invalid: &InvalidSpec,
    now: &Time,
) -> ZookeeperClusterStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let message = format!(
        "{}; the running ensemble is left as it was until the spec is fixed",
        invalid.problems.join("; ")
    );
    status.conditions = merge_conditions(
        &status.conditions,
        &[Judgement::new(DEGRADED, true, "InvalidSpec", message)],
        generation,
        now,
    );
    status.observed_generation = generation;
    status
}

/// Members per mode, for the metric.
pub fn mode_counts(view: &EnsembleView) -> Vec<(&'static str, i64)> {
    MODES
        .iter()
        .map(|mode| {
            let n = view.members.iter().filter(|m| m.mode == *mode).count();
            (mode.as_str(), n as i64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let first = merge_conditions(
            &[],
            &[Judgement::new(AVAILABLE, false, "NoQuorum", "0 of 3 serve")],
            Some(1),
            &at(100),
        );
        assert_eq!(first[0].last_transition_time, at(100));

        // Same status, new message: the time stays.
        let second = merge_conditions(
            &first,
            &[Judgement::new(AVAILABLE, false, "NoQuorum", "1 of 3 serve")],
            Some(1),
            &at(200),
        );
        assert_eq!(second[0].last_transition_time, at(100));
        assert_eq!(second[0].message, "1 of 3 serve");

        // Flip: the time moves.
        let third = merge_conditions(
            &second,
            &[Judgement::new(
                AVAILABLE,
                true,
                "QuorumServing",
                "3 of 3 serve",
            )],
            Some(2),
            &at(300),
        );
        assert_eq!(third[0].last_transition_time, at(300));
        assert_eq!(third[0].observed_generation, Some(2));
    }

    #[test]
    fn unchanged_judgements_need_no_write() {
        let judge = [
            Judgement::new(DEGRADED, false, "Healthy", "all members serve"),
            Judgement::new(AVAILABLE, true, "QuorumServing", "3 of 3 serve"),
        ];
        let conditions = merge_conditions(&[], &judge, Some(3), &at(10));
        let old = ZookeeperClusterStatus {
            conditions,
            ..Default::default()
        };
        let again = ZookeeperClusterStatus {
            conditions: merge_conditions(&old.conditions, &judge, Some(3), &at(99)),
            ..Default::default()
        };
        assert!(!needs_write(Some(&old), &again));
        let changed = ZookeeperClusterStatus {
            ready_replicas: 2,
            ..again.clone()
        };
        assert!(needs_write(Some(&old), &changed));
        assert!(needs_write(None, &again));
        // Client writes move the zxids; that alone causes no write.
        let member = |zxid: &str| MemberStatus {
            name: "zk-0".into(),
            ordinal: 0,
            mode: "leader".into(),
            zxid: Some(zxid.into()),
            revision: Some("r1".into()),
            ready: true,
        };
        let with_zxid = |zxid: &str| ZookeeperClusterStatus {
            members: vec![member(zxid)],
            ..again.clone()
        };
        assert!(!needs_write(
            Some(&with_zxid("0x100000001")),
            &with_zxid("0x100000f00")
        ));
        let mut follower = with_zxid("0x100000f00");
        follower.members[0].mode = "follower".into();
        assert!(needs_write(Some(&with_zxid("0x100000001")), &follower));
        // Order is fixed whatever the judgement order.
        let types: Vec<_> = again.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [AVAILABLE, DEGRADED]);
    }

    #[test]
    fn conditions_not_judged_now_are_kept() {
        let prev = merge_conditions(
            &[],
            &[
                Judgement::new(AVAILABLE, true, "QuorumServing", "ok"),
                Judgement::new(PROGRESSING, false, "Idle", "nothing to do"),
            ],
            Some(1),
            &at(1),
        );
        let next = merge_conditions(
            &prev,
            &[Judgement::new(
                DEGRADED,
                true,
                "InvalidSpec",
                "spec.replicas is 4",
            )],
            Some(2),
            &at(2),
        );
        let types: Vec<_> = next.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [AVAILABLE, PROGRESSING, DEGRADED]);
        assert_eq!(next[0], prev[0]);
    }
}
