//! Status: conditions and members from what was observed. Pure.
//!
//! `lastTransitionTime` is kept unless a condition's status flips, so an unchanged cluster
//! produces an identical status and the controller skips the write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use k8s_openapi::api::apps::v1::StatefulSet;

use crate::crd::{MemberStatus, ZookeeperCluster, ZookeeperClusterStatus};
use crate::health::{EnsembleView, Leadership, Mode, Sync, WHITELIST};
use crate::rollout::{Act, Decision, Plan, WaitReason, step_message};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// Every condition reason and Event reason the operator writes: status alone decides them.
pub mod reason {
    /// Available: a majority serves under one leader.
    pub const QUORUM_SERVING: &str = "QuorumServing";
    /// Available=False: no serving quorum.
    pub const NO_QUORUM: &str = "NoQuorum";
    /// Progressing=False: every member the partition lets change runs the update revision.
    pub const UP_TO_DATE: &str = "UpToDate";
    /// Progressing=False: `spec.updateStrategy.paused`.
    pub const PAUSED: &str = "Paused";
    /// Progressing: a new cluster's members are starting (nothing was restarted).
    pub const CREATING: &str = "Creating";
    /// Available=False and Degraded: members refuse `srvr`, so their state cannot be judged.
    pub const SRVR_NOT_WHITELISTED: &str = "SrvrNotWhitelisted";
    /// Event: a member's pod cannot run (image pull, crash loop, OOM kill, unschedulable).
    pub const MEMBER_POD_FAILING: &str = "MemberPodFailing";
    /// Progressing: a member is being restarted (also the Event of an eviction).
    pub const RESTARTING_MEMBER: &str = "RestartingMember";
    /// Progressing: waiting for members to come back or for the StatefulSet.
    pub const WAITING_FOR_MEMBERS: &str = "WaitingForMembers";
    /// Progressing: the PodDisruptionBudget refused the eviction.
    pub const EVICTION_REFUSED: &str = "EvictionRefused";
    /// Progressing (and its Event): the eviction failed for another reason than the PDB, for
    /// instance two PodDisruptionBudgets selecting the members (the API server answers 500).
    pub const EVICTION_FAILED: &str = "EvictionFailed";
    /// Progressing and Degraded: a restart is due but unsafe (also its Event).
    pub const ROLLOUT_BLOCKED: &str = "RolloutBlocked";
    /// Degraded=False.
    pub const HEALTHY: &str = "Healthy";
    /// Degraded: several members claim to lead.
    pub const SPLIT_LEADERSHIP: &str = "SplitLeadership";
    /// Degraded: a member runs standalone apart from a multi-member ensemble (two ensembles).
    pub const STANDALONE_MEMBER: &str = "StandaloneMember";
    /// Degraded (and its Event): a member has not come back within the progress deadline.
    pub const ROLLOUT_STUCK: &str = "RolloutStuck";
    /// Degraded: no majority serves.
    pub const QUORUM_LOST: &str = "QuorumLost";
    /// Degraded: a bare majority serves; one more failure loses the quorum.
    pub const QUORUM_AT_RISK: &str = "QuorumAtRisk";
    /// Degraded: a member does not serve, the quorum is not at risk yet.
    pub const MEMBER_DOWN: &str = "MemberDown";
    /// Degraded: every member serves but the leader counts fewer synced followers.
    pub const FOLLOWERS_NOT_SYNCED: &str = "FollowersNotSynced";
    /// Degraded: the leader refuses `mntr`.
    pub const MNTR_NOT_WHITELISTED: &str = "MntrNotWhitelisted";
    /// Degraded (and its Event): the spec was refused; nothing was touched.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Event: the object does not match the schema.
    pub const MALFORMED_OBJECT: &str = "MalformedObject";
    /// Degraded (Available Unknown): the members could not be observed.
    pub const OBSERVE_FAILED: &str = "ObserveFailed";
    /// Event: applying an owned object failed.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// Progressing: a server is being added to the ensemble's configuration.
    pub const SCALING_UP: &str = "ScalingUp";
    /// Progressing: a server is being removed from the ensemble's configuration.
    pub const SCALING_DOWN: &str = "ScalingDown";
    /// Event: `reconfig` added a server.
    pub const MEMBER_ADDED: &str = "MemberAdded";
    /// Event: `reconfig` removed a server.
    pub const MEMBER_REMOVED: &str = "MemberRemoved";
    /// Progressing: members' new client addresses are being committed (TLS turned on), or a
    /// member that handed its leadership off before its restart is made a voter again.
    pub const RECONFIGURING: &str = "Reconfiguring";
    /// Event: the leader handed its leadership to a synced follower by `reconfig` (it became an
    /// observer) just before its restart, so the ensemble did not hold a leader election.
    pub const LEADER_HANDED_OFF: &str = "LeaderHandedOff";
    /// Event: `reconfig` made a member that handed its leadership off a voter again.
    pub const MEMBER_PROMOTED: &str = "MemberPromoted";
    /// Event: `reconfig` committed a member's new client address.
    pub const CLIENT_ADDRESS_COMMITTED: &str = "ClientAddressCommitted";
    /// Event: a `reconfig` failed (it is retried).
    pub const RECONFIG_FAILED: &str = "ReconfigFailed";
}

/// One condition as the reconcile judged it, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Judgement {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Judgement {
            type_,
            status,
            reason,
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
            reason: j.reason.to_string(),
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

/// Why the ensemble is degraded, as the `Degraded` condition; `None` when every member serves
/// and the leader counts them synced.
pub fn degraded(view: &EnsembleView) -> Option<Judgement> {
    let degraded = |reason, message| Some(Judgement::new(DEGRADED, true, reason, message));
    if let Leadership::Split(ls) = &view.leadership {
        let message = format!("{} all claim to lead", view.names(ls).join(", "));
        return degraded(reason::SPLIT_LEADERSHIP, message);
    }
    if view.voters > 1
        && let Some(m) = view.members.iter().find(|m| m.mode == Mode::Standalone)
    {
        let message = format!(
            "{} runs standalone, apart from the other members of this {}-member ensemble: it serves data the others do not have; the operator restarts nothing until this is resolved (see the README's scaling section)",
            m.name, view.voters
        );
        return degraded(reason::STANDALONE_MEMBER, message);
    }
    let refusing = srvr_refusers(view);
    if !refusing.is_empty() {
        let message = format!(
            "{} refuse srvr: it is not in their 4lw.commands.whitelist (needs {WHITELIST}), so the operator cannot tell whether they serve",
            refusing.join(", ")
        );
        return degraded(reason::SRVR_NOT_WHITELISTED, message);
    }
    let down = view.not_serving();
    let quorum = view.voters / 2 + 1;
    if !view.available() {
        let message = format!(
            "{} of {} members serve, a quorum needs {quorum}; not serving: {}",
            view.voters_serving,
            view.voters,
            down.join(", ")
        );
        return degraded(reason::QUORUM_LOST, message);
    }
    if !down.is_empty() {
        // One more failure would lose the quorum when only a bare majority serves.
        let why = if view.voters_serving == quorum {
            reason::QUORUM_AT_RISK
        } else {
            reason::MEMBER_DOWN
        };
        return degraded(why, format!("not serving: {}", down.join(", ")));
    }
    match &view.sync {
        Sync::Count(n) if n + 1 < view.leader_voters() => degraded(
            reason::FOLLOWERS_NOT_SYNCED,
            format!(
                "the leader counts {n} synced followers of {}",
                view.leader_voters() - 1
            ),
        ),
        Sync::MntrNotWhitelisted => degraded(
            reason::MNTR_NOT_WHITELISTED,
            format!("the leader refuses mntr; add it to 4lw.commands.whitelist ({WHITELIST})"),
        ),
        _ => None,
    }
}

/// The three conditions from the plan and what the act step did.
pub fn judge(plan: &Plan, act: &Act) -> [Judgement; 3] {
    let view = &plan.view;
    let quorum = view.voters / 2 + 1;
    let available = if view.available() {
        let leader = view
            .leader()
            .map(|m| m.name.to_string())
            .unwrap_or_default();
        Judgement::new(
            AVAILABLE,
            true,
            reason::QUORUM_SERVING,
            format!(
                "{} of {} members serve a quorum led by {leader} (from each member's srvr)",
                view.voters_serving, view.voters
            ),
        )
    } else if !srvr_refusers(view).is_empty() {
        Judgement::new(
            AVAILABLE,
            false,
            reason::SRVR_NOT_WHITELISTED,
            format!(
                "cannot tell whether a quorum serves: {} refuse srvr",
                srvr_refusers(view).join(", ")
            ),
        )
    } else {
        Judgement::new(
            AVAILABLE,
            false,
            reason::NO_QUORUM,
            format!(
                "{} of {} members serve a quorum; at least {quorum} must serve under one leader",
                view.voters_serving, view.voters
            ),
        )
    };
    let step = step_message(plan);
    let progressing = match (&plan.decision, act) {
        (_, Act::EvictionFailed { pod, error }) => Judgement::new(
            PROGRESSING,
            true,
            reason::EVICTION_FAILED,
            format!("{step}; the eviction of {pod} failed, retrying: {error}"),
        ),
        (_, Act::Reconsidered(now)) => Judgement::new(
            PROGRESSING,
            true,
            reason::WAITING_FOR_MEMBERS,
            format!("{step}; not restarted: a re-check just before the eviction showed: {now}"),
        ),
        (_, Act::EvictionRefused(pod)) => Judgement::new(
            PROGRESSING,
            true,
            reason::EVICTION_REFUSED,
            format!(
                "{step}; the eviction of {pod} was refused by the PodDisruptionBudget, retrying"
            ),
        ),
        (Decision::Idle, _) if !plan.progress.below_partition_updated.is_empty() => {
            Judgement::new(PROGRESSING, false, reason::UP_TO_DATE, step)
        }
        (Decision::Idle, _) => Judgement::new(
            PROGRESSING,
            false,
            reason::UP_TO_DATE,
            format!(
                "every member the partition lets change runs revision {}",
                plan.update_revision.as_deref().unwrap_or("unknown")
            ),
        ),
        (Decision::Wait(WaitReason::Paused { .. }), _) => {
            Judgement::new(PROGRESSING, false, reason::PAUSED, step)
        }
        (Decision::Restart(_), _) => {
            Judgement::new(PROGRESSING, true, reason::RESTARTING_MEMBER, step)
        }
        (Decision::Wait(_), _) if plan.progress.creating => {
            Judgement::new(PROGRESSING, true, reason::CREATING, step)
        }
        (Decision::Wait(_), _) => {
            Judgement::new(PROGRESSING, true, reason::WAITING_FOR_MEMBERS, step)
        }
        (Decision::Blocked(_), _) => {
            Judgement::new(PROGRESSING, true, reason::ROLLOUT_BLOCKED, step)
        }
    };
    // A stuck rollout says more than "member down", but less than a lost or split quorum.
    let severe = |j: &Judgement| {
        [
            reason::QUORUM_LOST,
            reason::SPLIT_LEADERSHIP,
            reason::STANDALONE_MEMBER,
            reason::SRVR_NOT_WHITELISTED,
        ]
        .contains(&j.reason)
    };
    let degraded = match (degraded(view), &plan.stuck, &plan.decision) {
        (Some(j), _, _) if severe(&j) => j,
        (_, Some(stuck), _) => {
            Judgement::new(DEGRADED, true, reason::ROLLOUT_STUCK, stuck.to_string())
        }
        (Some(j), None, _) => j,
        (None, None, Decision::Blocked(b)) => {
            Judgement::new(DEGRADED, true, reason::ROLLOUT_BLOCKED, b.to_string())
        }
        (None, None, _) => Judgement::new(
            DEGRADED,
            false,
            reason::HEALTHY,
            format!(
                "all {} members serve and the leader counts them synced",
                view.voters
            ),
        ),
    };
    [available, progressing, degraded]
}

fn srvr_refusers(view: &EnsembleView) -> Vec<String> {
    view.members
        .iter()
        .filter(|m| m.srvr_refused)
        .map(|m| m.name.to_string())
        .collect()
}

/// Members whose pod cannot run, with the pod-level cause, that the previous status did not
/// report yet: each is worth one Warning Event.
pub fn new_pod_troubles(
    previous: Option<&ZookeeperClusterStatus>,
    view: &EnsembleView,
) -> Vec<String> {
    let reported = previous
        .and_then(|s| condition(s, DEGRADED))
        .map(|c| c.message.as_str())
        .unwrap_or_default();
    view.members
        .iter()
        .filter_map(|m| {
            let trouble = m.pod.as_ref()?.trouble.as_deref()?;
            (m.problem.is_some() && !reported.contains(trouble))
                .then(|| format!("{}: {trouble}", m.name))
        })
        .collect()
}

/// Whether the previous status already reported the rollout as blocked (its Event was sent).
pub fn was_blocked(previous: Option<&ZookeeperClusterStatus>) -> bool {
    previous
        .and_then(|s| condition(s, PROGRESSING))
        .is_some_and(|c| c.reason == reason::ROLLOUT_BLOCKED)
}

/// Whether the previous status already reported a failed eviction (its Event was sent).
pub fn eviction_failed_before(previous: Option<&ZookeeperClusterStatus>) -> bool {
    previous
        .and_then(|s| condition(s, PROGRESSING))
        .is_some_and(|c| c.reason == reason::EVICTION_FAILED)
}

/// Whether the previous status already reported the rollout as stuck (its Event was sent).
pub fn was_stuck(previous: Option<&ZookeeperClusterStatus>) -> bool {
    previous
        .and_then(|s| condition(s, DEGRADED))
        .is_some_and(|c| c.reason == reason::ROLLOUT_STUCK)
}

/// The whole status of a cluster whose spec is valid.
pub fn cluster_status(
    zk: &ZookeeperCluster,
    connection_string: String,
    sts: &StatefulSet,
    plan: &Plan,
    act: &Act,
    scaling: Option<Judgement>,
    now: &Time,
) -> ZookeeperClusterStatus {
    let mut judgements = judge(plan, act).to_vec();
    if has_formed(zk.status.as_ref()) {
        not_creating(&mut judgements);
    }
    // A membership change under way is what progresses; the rollout waits for it.
    if let Some(scaling) = scaling {
        judgements.retain(|j| j.type_ != PROGRESSING);
        judgements.push(scaling);
    }
    observed_status(
        zk,
        Some(connection_string),
        sts,
        &plan.view,
        &judgements,
        now,
    )
}

fn observed_status(
    zk: &ZookeeperCluster,
    connection_string: Option<String>,
    sts: &StatefulSet,
    view: &EnsembleView,
    judgements: &[Judgement],
    now: &Time,
) -> ZookeeperClusterStatus {
    let s = sts.status.clone().unwrap_or_default();
    let generation = zk.metadata.generation;
    let prev_conditions = zk
        .status
        .as_ref()
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
                role: None,
            })
            .collect(),
        // Filled in by the membership step, which reads the committed configuration.
        config_version: None,
        connection_string,
        conditions: merge_conditions(prev_conditions, judgements, generation, now),
    }
}

/// Whether the ensemble was formed: the previous status said every member was up to date, or,
/// since then, that a quorum served while the operator waited or rolled. A member lost afterwards
/// (its node died, its pod was deleted) is waited for, not created. (A formed ensemble that
/// also lost its quorum reads as creating again until it is back: nothing in the status says
/// otherwise then.)
pub fn has_formed(previous: Option<&ZookeeperClusterStatus>) -> bool {
    let Some(previous) = previous else {
        return false;
    };
    let available = condition(previous, AVAILABLE).is_some_and(|c| c.status == "True");
    match condition(previous, PROGRESSING).map(|c| c.reason.as_str()) {
        Some(reason::UP_TO_DATE) => true,
        Some(reason::CREATING) | None => false,
        Some(_) => available,
    }
}

/// `Creating` becomes `WaitingForMembers` (an ensemble that was formed waits for a member to
/// come back; it is not being created).
fn not_creating(judgements: &mut [Judgement]) {
    for j in judgements.iter_mut() {
        if j.type_ == PROGRESSING && j.reason == reason::CREATING {
            j.reason = reason::WAITING_FOR_MEMBERS;
            if let Some(rest) = j.message.strip_prefix("creating: ") {
                j.message = rest.to_string();
            }
        }
    }
}

/// Why the operator holds a cluster as it runs instead of carrying out its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// The spec was refused (the problems, each naming its field).
    InvalidSpec(Vec<String>),
    /// Applying the rendered objects failed (the API error).
    ApplyFailed(String),
    /// The members could not be observed (listing their pods failed): nothing is known now.
    ObserveFailed(String),
}

impl Hold {
    /// The `Degraded` condition that says why.
    pub fn judgement(&self) -> Judgement {
        match self {
            Hold::InvalidSpec(problems) => Judgement::new(
                DEGRADED,
                true,
                reason::INVALID_SPEC,
                format!(
                    "{}; the running ensemble is left as it was until the spec is fixed",
                    problems.join("; ")
                ),
            ),
            Hold::ApplyFailed(error) => Judgement::new(
                DEGRADED,
                true,
                reason::APPLY_FAILED,
                format!("{error}; nothing is restarted until the objects can be applied"),
            ),
            Hold::ObserveFailed(error) => Judgement::new(
                DEGRADED,
                true,
                reason::OBSERVE_FAILED,
                format!(
                    "cannot observe the members: {error}; nothing is restarted until they can be observed"
                ),
            ),
        }
    }
}

/// The status of a cluster the operator holds (spec refused, or not applicable): the members'
/// truth as observed now (`Available` keeps telling whether a quorum serves), `Progressing`
/// False and `Degraded` saying why nothing is carried out. Without a StatefulSet yet, the
/// previous status is kept with the new `Degraded`.
pub fn held_status(
    zk: &ZookeeperCluster,
    running: Option<(&StatefulSet, &Plan)>,
    hold: &Hold,
    now: &Time,
) -> ZookeeperClusterStatus {
    let degraded = hold.judgement();
    let previous = zk.status.clone().unwrap_or_default();
    let Some((sts, plan)) = running else {
        let mut status = previous;
        status.conditions =
            merge_conditions(&status.conditions, &[degraded], zk.metadata.generation, now);
        if let Hold::ObserveFailed(_) = hold {
            // Whether a quorum serves is not known now: an old True must not keep satisfying
            // `kubectl wait --for=condition=Available`.
            if let Some(c) = status.conditions.iter_mut().find(|c| c.type_ == AVAILABLE) {
                if c.status != "Unknown" {
                    c.last_transition_time = now.clone();
                }
                c.status = "Unknown".into();
                c.reason = reason::OBSERVE_FAILED.into();
                c.message = "the members could not be observed; see Degraded".into();
            }
        }
        status.observed_generation = zk.metadata.generation;
        return status;
    };
    let [available, _, _] = judge(plan, &Act::None);
    let progressing = Judgement::new(
        PROGRESSING,
        false,
        degraded.reason,
        "no member is restarted while the spec is not carried out",
    );
    observed_status(
        zk,
        previous.connection_string,
        sts,
        &plan.view,
        &[available, progressing, degraded],
        now,
    )
}

/// Whether the previous status already said this `Degraded` (its Event was sent).
pub fn already_degraded(previous: Option<&ZookeeperClusterStatus>, j: &Judgement) -> bool {
    previous
        .and_then(|s| condition(s, DEGRADED))
        .is_some_and(|c| c.status == "True" && c.reason == j.reason && c.message == j.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_that_cannot_be_observed_make_available_unknown() {
        let previous = ZookeeperClusterStatus {
            conditions: merge_conditions(
                &[],
                &[Judgement::new(
                    AVAILABLE,
                    true,
                    reason::QUORUM_SERVING,
                    "3 of 3",
                )],
                Some(1),
                &at(1),
            ),
            ..Default::default()
        };
        let mut zk: ZookeeperCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "zookeeper.ensemble.dev/v1alpha1", "kind": "ZookeeperCluster",
            "metadata": {"name": "zk", "namespace": "ns", "generation": 1}, "spec": {}
        }))
        .unwrap();
        zk.status = Some(previous);
        let s = held_status(
            &zk,
            None,
            &Hold::ObserveFailed("pods is forbidden".into()),
            &at(9),
        );
        let available = condition(&s, AVAILABLE).unwrap();
        assert_eq!(available.status, "Unknown");
        assert_eq!(available.last_transition_time, at(9));
        let degraded = condition(&s, DEGRADED).unwrap();
        assert_eq!(degraded.reason, reason::OBSERVE_FAILED);
        assert!(
            degraded.message.contains("pods is forbidden"),
            "{}",
            degraded.message
        );
    }

    #[test]
    fn a_formed_ensemble_that_loses_a_member_waits_for_it_instead_of_creating() {
        let status = |reason: &'static str| ZookeeperClusterStatus {
            conditions: merge_conditions(
                &[],
                &[Judgement::new(
                    PROGRESSING,
                    reason != reason::UP_TO_DATE,
                    reason,
                    "m",
                )],
                Some(1),
                &at(1),
            ),
            ..Default::default()
        };
        assert!(!has_formed(None), "a new cluster has no status");
        assert!(!has_formed(Some(&status(reason::CREATING))));
        assert!(has_formed(Some(&status(reason::UP_TO_DATE))));
        // waiting while a quorum serves: formed; waiting without one (a new cluster's first
        // passes, before its StatefulSet reports revisions): not
        let mut waiting = status(reason::WAITING_FOR_MEMBERS);
        assert!(!has_formed(Some(&waiting)));
        waiting.conditions = merge_conditions(
            &waiting.conditions,
            &[Judgement::new(
                AVAILABLE,
                true,
                reason::QUORUM_SERVING,
                "2 of 3",
            )],
            Some(1),
            &at(2),
        );
        assert!(has_formed(Some(&waiting)));
        let mut js = vec![
            Judgement::new(AVAILABLE, true, reason::QUORUM_SERVING, "2 of 3"),
            Judgement::new(
                PROGRESSING,
                true,
                reason::CREATING,
                "creating: 2 of 3 members serve; waiting for zk-2 to rejoin as a synced follower",
            ),
        ];
        not_creating(&mut js);
        assert_eq!(js[0].reason, reason::QUORUM_SERVING);
        assert_eq!(js[1].reason, reason::WAITING_FOR_MEMBERS);
        assert_eq!(
            js[1].message,
            "2 of 3 members serve; waiting for zk-2 to rejoin as a synced follower"
        );
    }

    #[test]
    fn a_pod_trouble_is_announced_once() {
        use crate::health::{EnsembleView, MemberName, Ordinal, PodFacts};
        let pod = PodFacts {
            ordinal: Ordinal(0),
            name: MemberName::new("zk", Ordinal(0)),
            uid: None,
            revision: Some("r".into()),
            ready: false,
            terminating: false,
            created_at: None,
            deleted_at: None,
            trouble: Some("CrashLoopBackOff: back-off 5m0s".into()),
        };
        let v = EnsembleView::build("zk", 1, Some("r"), &[pod], &[]);
        let first = new_pod_troubles(None, &v);
        assert_eq!(first, ["zk-0: CrashLoopBackOff: back-off 5m0s"]);
        let reported = ZookeeperClusterStatus {
            conditions: merge_conditions(&[], &[degraded(&v).expect("degraded")], None, &at(1)),
            ..Default::default()
        };
        assert!(new_pod_troubles(Some(&reported), &v).is_empty());
    }
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
            role: None,
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
