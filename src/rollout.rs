//! Quorum-safe rolling-restart planner: a pure function from an observation to a decision.
//!
//! Rules (design: "Health component and quorum-safe rolling restart"):
//! - one member at a time, only ordinals >= `partition`, nothing while `paused`;
//! - outdated members that are already down or unready go first (restarting them costs no
//!   quorum), then outdated followers from the highest ordinal, the leader last;
//! - before a restart every other member serves (pod Ready and its own `srvr` says
//!   leader/follower) and the leader's `zk_synced_followers` counts every other follower;
//! - after a restart nothing else happens until the new pod is Ready, its `srvr` says
//!   follower/leader and the leader counts it synced: that falls out of the previous rule, since
//!   the restarted member is one of the "other members" of the next candidate;
//! - a StatefulSet whose `observedGeneration` lags, a terminating or missing pod, or a pod
//!   created after the probes started means the observation is older than the last action:
//!   wait for a fresh one.
//!
//! Nothing is remembered between calls, so an operator restarted mid-rollout re-derives the
//! same decision from what it observes.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::crd::UpdateStrategy;
use crate::health::{EnsembleView, MemberName, MemberProbe, Mode, Ordinal, PodFacts, Sync};

/// Everything the planner looks at, gathered by the controller in one reconcile.
#[derive(Clone, Debug)]
pub struct Observation {
    /// StatefulSet name; pods are `<cluster>-<ordinal>`.
    pub cluster: String,
    /// `spec.replicas` of the StatefulSet: the number of voting members.
    pub replicas: u32,
    /// StatefulSet `metadata.generation`.
    pub generation: Option<i64>,
    /// StatefulSet `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    /// StatefulSet `status.updateRevision`: the revision every member should run.
    pub update_revision: Option<String>,
    /// StatefulSet `status.currentRevision`. With `OnDelete` the StatefulSet controller never
    /// advances it, so it equals the update revision exactly while the pod template is the one
    /// the cluster was created with: members that are not up yet are starting, not restarting.
    pub current_revision: Option<String>,
    /// `spec.updateStrategy.partition` of the cluster: ordinals below it keep their revision.
    pub partition: u32,
    /// `spec.updateStrategy.paused` of the cluster.
    pub paused: bool,
    /// `spec.updateStrategy.progressDeadlineSeconds`: how long a member may take to come back.
    pub progress_deadline: Duration,
    /// `spec.updateStrategy.clientAddressCacheSeconds`: how long after the last restart the
    /// leader waits.
    pub client_address_cache: Duration,
    /// The member pods that exist (any order).
    pub pods: Vec<PodFacts>,
    /// Each member's four-letter-word answers.
    pub probes: Vec<MemberProbe>,
    /// When the probes were started (before any of them was sent).
    pub probed_at: SystemTime,
}

impl Observation {
    /// Builds the observation from the StatefulSet, its pods (any order; other pods are
    /// ignored), the cluster's `updateStrategy` and the probe results. `probed_at` must be
    /// taken before the first probe is sent.
    pub fn from_objects(
        statefulset: &k8s_openapi::api::apps::v1::StatefulSet,
        pods: &[k8s_openapi::api::core::v1::Pod],
        strategy: &UpdateStrategy,
        probes: Vec<MemberProbe>,
        probed_at: SystemTime,
    ) -> Self {
        let cluster = statefulset.metadata.name.clone().unwrap_or_default();
        let status = statefulset.status.as_ref();
        Self {
            replicas: statefulset
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .map_or(1, |r| r.max(0) as u32),
            generation: statefulset.metadata.generation,
            observed_generation: status.and_then(|s| s.observed_generation),
            update_revision: status.and_then(|s| s.update_revision.clone()),
            current_revision: status.and_then(|s| s.current_revision.clone()),
            partition: strategy.partition.max(0) as u32,
            paused: strategy.paused,
            progress_deadline: Duration::from_secs(strategy.progress_deadline_seconds.max(0) as u64),
            client_address_cache: Duration::from_secs(
                strategy.client_address_cache_seconds.max(0) as u64
            ),
            pods: pods
                .iter()
                .filter_map(|p| PodFacts::from_pod(&cluster, p))
                .collect(),
            probes,
            probed_at,
            cluster,
        }
    }

    /// The ensemble view the plan is made from (also what status reports).
    pub fn ensemble(&self) -> EnsembleView {
        EnsembleView::build(
            &self.cluster,
            self.replicas,
            self.update_revision.as_deref(),
            &self.pods,
            &self.probes,
        )
    }
}

/// How far a rollout has come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Members with ordinal >= partition already at the update revision.
    pub updated: u32,
    /// Members with ordinal >= partition.
    pub eligible: u32,
    /// Outdated members the partition keeps at their revision.
    pub held_by_partition: u32,
    /// `spec.updateStrategy.partition`.
    pub partition: u32,
    /// The pod template is still the one the cluster was created with: nothing was restarted.
    pub creating: bool,
    /// Members below the partition that run the update revision anyway: their pods were
    /// recreated outside the rollout (node loss, a drain, a manual delete), and with `OnDelete`
    /// the StatefulSet controller gives a new pod the update revision.
    pub below_partition_updated: Vec<MemberName>,
}

impl Progress {
    /// Members at the update revision among those the partition lets change.
    pub fn of(view: &EnsembleView, partition: u32, creating: bool) -> Self {
        let eligible: Vec<_> = view
            .members
            .iter()
            .filter(|m| m.ordinal.0 >= partition)
            .collect();
        Progress {
            updated: eligible.iter().filter(|m| m.updated).count() as u32,
            eligible: eligible.len() as u32,
            held_by_partition: view
                .members
                .iter()
                .filter(|m| m.ordinal.0 < partition && !m.updated)
                .count() as u32,
            partition,
            creating,
            below_partition_updated: view
                .members
                .iter()
                .filter(|m| m.ordinal.0 < partition && m.updated && !creating)
                .map(|m| m.name.clone())
                .collect(),
        }
    }
}

/// One pass's plan: the ensemble view (built once), the rollout's progress and the decision.
/// Acting and status both read it; nothing rebuilds the view.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The ensemble as the probes and pods show it.
    pub view: EnsembleView,
    /// How far the rollout has come.
    pub progress: Progress,
    /// The StatefulSet's `status.updateRevision`.
    pub update_revision: Option<String>,
    /// What to do now.
    pub decision: Decision,
    /// The member the rollout has waited for longer than the progress deadline.
    pub stuck: Option<Stuck>,
}

/// A member that has not come back within `spec.updateStrategy.progressDeadlineSeconds`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stuck {
    /// The member waited for.
    pub member: MemberName,
    /// Since its pod was created (or asked to terminate).
    pub waited: Duration,
    /// What it is waited for, as the decision says.
    pub waiting_for: String,
}

impl fmt::Display for Stuck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has not come back {} s after its pod was replaced ({}); the rollout waits for it: fix the cause or revert the change",
            self.member,
            self.waited.as_secs(),
            self.waiting_for
        )
    }
}

/// What the act step did with the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// Nothing was evicted.
    None,
    /// The decided pod was evicted.
    Evicted(String),
    /// The eviction was refused (the PodDisruptionBudget allows no disruption now).
    EvictionRefused(String),
    /// The eviction failed for another reason than the PodDisruptionBudget (the API error);
    /// it is retried, and said in status and an Event.
    EvictionFailed {
        /// The pod.
        pod: String,
        /// The API server's answer.
        error: String,
    },
    /// A fresh observation just before the eviction did not confirm the decision (the string
    /// says what it showed): nothing was evicted, the next pass looks again at once.
    Reconsidered(String),
}

/// What the controller should do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do: every member the partition lets change runs the update revision and the
    /// ensemble is whole.
    Idle,
    /// Nothing to do yet; the situation is expected to resolve by itself.
    Wait(WaitReason),
    /// Evict this one member's pod.
    Restart(Restart),
    /// A restart is due but unsafe for a reason that will not pass by waiting alone.
    Blocked(BlockedReason),
}

/// The member to restart, and why it is this one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restart {
    /// Its ordinal.
    pub ordinal: Ordinal,
    /// Its pod.
    pub pod: MemberName,
    /// Why this member goes now.
    pub why: RestartReason,
}

/// Why a member is the one restarted now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartReason {
    /// Outdated and already down or unready: restarting it costs no quorum.
    AlreadyDown,
    /// An outdated follower (highest ordinal first).
    OutdatedFollower,
    /// The outdated leader, once every follower is updated.
    Leader,
    /// The only member of a one-member ensemble.
    OnlyMember,
}

/// Why nothing is done yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitReason {
    /// The StatefulSet controller has not seen the newest StatefulSet spec yet.
    GenerationNotObserved {
        /// `metadata.generation`.
        generation: Option<i64>,
        /// `status.observedGeneration`.
        observed: Option<i64>,
    },
    /// The StatefulSet reports no update revision yet.
    UpdateRevisionUnknown,
    /// `spec.updateStrategy.paused` is set; `outdated` members wait.
    Paused {
        /// Outdated members at or above the partition.
        outdated: u32,
    },
    /// A pod is being deleted (the last restart is still under way).
    PodTerminating(MemberName),
    /// A pod does not exist (the StatefulSet controller has yet to recreate it).
    PodMissing(MemberName),
    /// A pod was created after the probes started: they may describe its predecessor.
    ObservationOlderThanPod(MemberName),
    /// A serving member reports a newer leadership term (zxid epoch) than the member that
    /// claims to lead: that leader is from an old term and an election is under way.
    TermsDiffer(Vec<(MemberName, u32)>),
    /// The leader is due, but the member restarted before it got its new address less than
    /// `clientAddressCacheSeconds` ago: clients may still hold its old one.
    ClientsMayHoldOldAddress {
        /// The member restarted last.
        restarted: MemberName,
        /// How long until the leader may go.
        left: Duration,
    },
    /// A member at the update revision has not rejoined yet.
    Rejoining {
        /// The member.
        pod: MemberName,
        /// What it still lacks.
        step: RejoinStep,
    },
}

/// What a restarted member still lacks before it counts as back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RejoinStep {
    /// The pod is not Ready; with what keeps it from running, when the pod's status says.
    PodNotReady(Option<String>),
    /// Its own `srvr` does not say leader/follower; the string says what it said.
    NotServing(String),
    /// The leader does not count every follower as synced yet.
    NotSynced {
        /// The leader's count.
        synced: u32,
        /// Followers it should count.
        expected: u32,
    },
}

/// Why a due restart is not safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockedReason {
    /// Other members than the candidate do not serve: restarting now could lose the quorum.
    MembersNotServing {
        /// The member that would be restarted.
        candidate: MemberName,
        /// Members not serving, with what they said.
        down: Vec<(MemberName, String)>,
    },
    /// A member runs standalone in a multi-member ensemble: it holds data of its own that the
    /// others do not have (a second ensemble). Restarting it would make it follow the others
    /// and replace its data with theirs, so nothing is restarted until a person decides.
    StandaloneMember(MemberName),
    /// No member leads.
    NoLeader,
    /// Several members claim to lead.
    SplitLeadership(Vec<MemberName>),
    /// The leader's count of synced followers cannot be read.
    SyncUnknown(String),
    /// Every other member serves but the leader counts fewer synced followers than needed.
    FollowersNotSynced {
        /// The leader's count.
        synced: u32,
        /// Required count.
        expected: u32,
    },
}

/// How often a steady cluster is looked at again by default: ZooKeeper itself sends no watch
/// events, so a slow resync notices a member that stopped serving while its pod stayed Ready.
pub const STEADY_RESYNC: Duration = Duration::from_secs(60);
/// How often a cluster is looked at while something is wrong that no watch event will report.
pub const BUSY_RESYNC: Duration = Duration::from_secs(5);

/// When to look at the cluster again, the one requeue policy: a few seconds while a rollout
/// or a problem lasts (ZooKeeper's own changes produce no watch events), the slow resync when
/// the ensemble is steady (`steady`, [`STEADY_RESYNC`] unless configured).
pub fn requeue_after(plan: &Plan, act: &Act, steady: Duration) -> Duration {
    match act {
        Act::None => {}
        Act::EvictionFailed { .. } => return Duration::from_secs(10),
        _ => return Duration::from_secs(2),
    }
    match &plan.decision {
        Decision::Restart(_) => Duration::from_secs(2),
        Decision::Wait(WaitReason::Paused { .. }) | Decision::Idle => {
            if plan.view.fully_synced() {
                steady
            } else {
                BUSY_RESYNC
            }
        }
        Decision::Wait(WaitReason::ClientsMayHoldOldAddress { left, .. }) => {
            (*left).max(Duration::from_millis(500))
        }
        Decision::Wait(_) => Duration::from_secs(3),
        Decision::Blocked(_) => Duration::from_secs(10),
    }
}

impl fmt::Display for RestartReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestartReason::AlreadyDown => "outdated and already down",
            RestartReason::OutdatedFollower => "outdated follower",
            RestartReason::Leader => "outdated leader, restarted last",
            RestartReason::OnlyMember => "the only member",
        })
    }
}

impl fmt::Display for RejoinStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejoinStep::PodNotReady(None) => f.write_str("pod not Ready"),
            RejoinStep::PodNotReady(Some(trouble)) => write!(f, "pod not Ready: {trouble}"),
            RejoinStep::NotServing(s) => write!(f, "srvr: {s}"),
            RejoinStep::NotSynced { synced, expected } => {
                write!(
                    f,
                    "the leader counts {synced} of {expected} followers synced"
                )
            }
        }
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::GenerationNotObserved {
                generation,
                observed,
            } => write!(
                f,
                "waiting for the StatefulSet controller to observe generation {} (observed {})",
                opt(generation),
                opt(observed)
            ),
            WaitReason::UpdateRevisionUnknown => {
                f.write_str("waiting for the StatefulSet to report its update revision")
            }
            WaitReason::Paused { outdated } => write!(
                f,
                "paused by spec.updateStrategy.paused; {outdated} member(s) wait for a restart"
            ),
            WaitReason::PodTerminating(p) => write!(f, "waiting for {p} to terminate"),
            WaitReason::PodMissing(p) => write!(f, "waiting for {p} to be recreated"),
            WaitReason::ClientsMayHoldOldAddress { restarted, left } => write!(
                f,
                "restarting the leader in {} s: clients may still hold {restarted}'s old address (updateStrategy.clientAddressCacheSeconds)",
                left.as_secs_f64().ceil() as u64
            ),
            WaitReason::TermsDiffer(terms) => {
                let list: Vec<String> = terms.iter().map(|(m, e)| format!("{m}: {e}")).collect();
                write!(
                    f,
                    "a member is in a newer leadership term than the leader (epochs {}); waiting for the election to settle",
                    list.join(", ")
                )
            }
            WaitReason::ObservationOlderThanPod(p) => {
                write!(f, "{p} is newer than the last probes; probing again")
            }
            WaitReason::Rejoining { pod, step } => {
                write!(
                    f,
                    "waiting for {pod} to rejoin as a synced follower ({step})"
                )
            }
        }
    }
}

impl fmt::Display for BlockedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockedReason::MembersNotServing { candidate, down } => {
                let list: Vec<String> = down.iter().map(|(m, why)| format!("{m}: {why}")).collect();
                write!(
                    f,
                    "not restarting {candidate} while other members do not serve ({}); they must recover (or be deleted by hand) first",
                    list.join("; ")
                )
            }
            BlockedReason::StandaloneMember(m) => write!(
                f,
                "{m} runs standalone, apart from the other members; restarting it would replace its data with theirs, so nothing is restarted (see the README's scaling section)"
            ),
            BlockedReason::NoLeader => f.write_str("no member leads; the ensemble has no quorum"),
            BlockedReason::SplitLeadership(ls) => {
                let names: Vec<&str> = ls.iter().map(MemberName::as_str).collect();
                write!(f, "{} all claim to lead", names.join(", "))
            }
            BlockedReason::SyncUnknown(why) => write!(
                f,
                "cannot tell whether followers are synced: {why}; the 4lw whitelist must include mntr"
            ),
            BlockedReason::FollowersNotSynced { synced, expected } => write!(
                f,
                "the leader counts {synced} synced followers, a restart needs {expected}"
            ),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Idle => f.write_str("every member runs the update revision"),
            Decision::Wait(w) => w.fmt(f),
            Decision::Restart(r) => write!(f, "restarting {} ({})", r.pod, r.why),
            Decision::Blocked(b) => write!(f, "blocked: {b}"),
        }
    }
}

fn opt(v: &Option<i64>) -> String {
    v.map_or_else(|| "none".into(), |g| g.to_string())
}

/// The step for the `Progressing` condition, e.g. "restarted 1 of 3; waiting for zk-1 to
/// rejoin as a synced follower (pod not Ready)".
pub fn step_message(plan: &Plan) -> String {
    let p = &plan.progress;
    if p.creating {
        let v = &plan.view;
        return format!(
            "creating: {} of {} members serve; {}",
            v.voters_serving, v.voters, plan.decision
        );
    }
    let mut msg = format!(
        "restarted {} of {}; {}",
        p.updated, p.eligible, plan.decision
    );
    if p.held_by_partition > 0 {
        msg.push_str(&format!(
            "; {} member(s) below partition {} keep their revision",
            p.held_by_partition, p.partition
        ));
    }
    if !p.below_partition_updated.is_empty() {
        let names: Vec<&str> = p
            .below_partition_updated
            .iter()
            .map(|m| m.as_str())
            .collect();
        msg.push_str(&format!(
            "; {} run(s) the update revision although below partition {}: recreated outside the rollout (node loss, drain or delete); revert the spec to undo the canary",
            names.join(", "),
            p.partition
        ));
    }
    msg
}

/// Plans the next step of a rolling restart: builds the ensemble view once and decides from it.
/// Pure: same observation, same plan.
pub fn plan(obs: &Observation) -> Plan {
    let view = obs.ensemble();
    let decision = decide(obs, &view);
    Plan {
        stuck: stuck(obs, &view, &decision),
        progress: Progress::of(
            &view,
            obs.partition,
            // a StatefulSet that reports no revision yet is new
            obs.current_revision.is_none() || obs.current_revision == obs.update_revision,
        ),
        update_revision: obs.update_revision.clone(),
        decision,
        view,
    }
}

/// How long the leader must still wait for clients to forget the old address of the member
/// restarted last (the newest pod at the update revision), if at all.
fn address_cache_wait(obs: &Observation, view: &EnsembleView) -> Option<WaitReason> {
    if obs.client_address_cache.is_zero() {
        return None;
    }
    let (restarted, created) = view
        .members
        .iter()
        .filter(|m| m.updated)
        .filter_map(|m| Some((m.name.clone(), m.pod.as_ref()?.created_at?)))
        .max_by_key(|(_, created)| *created)?;
    let since = obs.probed_at.duration_since(created).unwrap_or_default();
    let left = obs.client_address_cache.checked_sub(since)?;
    (!left.is_zero()).then_some(WaitReason::ClientsMayHoldOldAddress { restarted, left })
}

/// The member waited for, when it has been waited for past the progress deadline.
fn stuck(obs: &Observation, view: &EnsembleView, decision: &Decision) -> Option<Stuck> {
    let (member, since) = match decision {
        Decision::Wait(WaitReason::Rejoining { pod, .. }) => {
            let m = view.members.iter().find(|m| m.name == *pod)?;
            (pod, m.pod.as_ref()?.created_at?)
        }
        Decision::Wait(WaitReason::PodTerminating(pod)) => {
            let m = view.members.iter().find(|m| m.name == *pod)?;
            (pod, m.pod.as_ref()?.deleted_at?)
        }
        _ => return None,
    };
    let waited = obs.probed_at.duration_since(since).ok()?;
    (waited > obs.progress_deadline).then(|| Stuck {
        member: member.clone(),
        waited,
        waiting_for: decision.to_string(),
    })
}

fn decide(obs: &Observation, view: &EnsembleView) -> Decision {
    if obs.generation.is_none() || obs.observed_generation < obs.generation {
        return Decision::Wait(WaitReason::GenerationNotObserved {
            generation: obs.generation,
            observed: obs.observed_generation,
        });
    }
    if obs.update_revision.is_none() {
        return Decision::Wait(WaitReason::UpdateRevisionUnknown);
    }

    // Evidence that the last action is still in flight: act on nothing until it settles.
    for m in &view.members {
        let Some(pod) = &m.pod else {
            return Decision::Wait(WaitReason::PodMissing(m.name.clone()));
        };
        if pod.terminating {
            return Decision::Wait(WaitReason::PodTerminating(m.name.clone()));
        }
        // creationTimestamp has second precision: the pod may be up to 1 s younger than it says.
        if let Some(created) = pod.created_at
            && created + Duration::from_secs(1) > obs.probed_at
        {
            return Decision::Wait(WaitReason::ObservationOlderThanPod(m.name.clone()));
        }
    }

    // A standalone member of a multi-member ensemble is a second ensemble with data of its own:
    // never restart anything (least of all it) while one exists.
    if view.voters > 1
        && let Some(m) = view.members.iter().find(|m| m.mode == Mode::Standalone)
    {
        return Decision::Blocked(BlockedReason::StandaloneMember(m.name.clone()));
    }

    let healthy = |m: &crate::health::MemberView| m.pod_ready() && m.problem.is_none();
    let outdated: Vec<_> = view
        .members
        .iter()
        .filter(|m| m.ordinal.0 >= obs.partition && !m.updated)
        .collect();

    if outdated.is_empty() {
        // The last restarted member may still be on its way back.
        return match view.members.iter().rev().find(|m| m.updated && !healthy(m)) {
            Some(m) => Decision::Wait(WaitReason::Rejoining {
                pod: m.name.clone(),
                step: rejoin_step(m),
            }),
            None => match sync_shortfall(view, 0) {
                Some((synced, expected)) if view.voters_serving == view.voters => {
                    rejoining_unsynced(view, synced, expected).unwrap_or(Decision::Idle)
                }
                _ => Decision::Idle,
            },
        };
    }
    if obs.paused {
        return Decision::Wait(WaitReason::Paused {
            outdated: outdated.len() as u32,
        });
    }

    let is_leader = |m: &crate::health::MemberView| matches!(m.mode, Mode::Leader);
    let (candidate, why) = if view.voters == 1 {
        (outdated[0], RestartReason::OnlyMember)
    } else if let Some(m) = outdated.iter().rev().find(|m| !is_leader(m) && !healthy(m)) {
        (*m, RestartReason::AlreadyDown)
    } else if let Some(m) = outdated.iter().rev().find(|m| !is_leader(m)) {
        (*m, RestartReason::OutdatedFollower)
    } else {
        (outdated[outdated.len() - 1], RestartReason::Leader)
    };

    // Every other member must serve.
    let down: Vec<_> = view
        .members
        .iter()
        .filter(|m| m.ordinal != candidate.ordinal && !healthy(m))
        .collect();
    if !down.is_empty() {
        // A member at the update revision that is not back yet is the previous restart
        // finishing; anything else is a failure the operator must not add to.
        if down.iter().all(|m| m.updated) {
            let m = down[down.len() - 1];
            return Decision::Wait(WaitReason::Rejoining {
                pod: m.name.clone(),
                step: rejoin_step(m),
            });
        }
        return Decision::Blocked(BlockedReason::MembersNotServing {
            candidate: candidate.name.clone(),
            down: down
                .iter()
                .map(|m| (m.name.clone(), describe_down(m)))
                .collect(),
        });
    }

    if view.voters > 1 {
        match &view.leadership {
            crate::health::Leadership::One(_) => {}
            crate::health::Leadership::None => return Decision::Blocked(BlockedReason::NoLeader),
            crate::health::Leadership::Split(ls) => {
                return Decision::Blocked(BlockedReason::SplitLeadership(
                    ls.iter()
                        .map(|o| MemberName::new(&obs.cluster, *o))
                        .collect(),
                ));
            }
        }
        // No serving member may be in a newer term than the leader: then the leader answered
        // from an old term and an election happened between the probes. (A follower may report
        // an older epoch: its last zxid is from before the election until the first write.)
        if let Some(leader_term) = term(view) {
            let terms: Vec<_> = view
                .members
                .iter()
                .filter(|m| m.problem.is_none())
                .filter_map(|m| Some((m.name.clone(), m.zxid?.epoch())))
                .collect();
            if terms.iter().any(|(_, e)| *e > leader_term) {
                return Decision::Wait(WaitReason::TermsDiffer(terms));
            }
        }
        // The leader's count is anonymous: the candidate may be in it unless it provably is
        // not a learner (a NotReady or hung member may still follow and be counted).
        let missing = u32::from(candidate.provably_not_learner);
        match &view.sync {
            Sync::Count(_) => {
                if let Some((synced, expected)) = sync_shortfall(view, missing) {
                    return rejoining_unsynced(view, synced, expected).unwrap_or(
                        Decision::Blocked(BlockedReason::FollowersNotSynced { synced, expected }),
                    );
                }
            }
            Sync::MntrNotWhitelisted => {
                return Decision::Blocked(BlockedReason::SyncUnknown(
                    "the leader refuses mntr".into(),
                ));
            }
            Sync::Unknown(why) => {
                return Decision::Blocked(BlockedReason::SyncUnknown(why.clone()));
            }
            Sync::NoLeader => return Decision::Blocked(BlockedReason::NoLeader),
            Sync::NotApplicable => {}
        }
    }

    // The leader's restart makes every client reconnect: not while a client may still hold the
    // old address of the member restarted before it.
    if why == RestartReason::Leader
        && let Some(wait) = address_cache_wait(obs, view)
    {
        return Decision::Wait(wait);
    }

    Decision::Restart(Restart {
        ordinal: candidate.ordinal,
        pod: candidate.name.clone(),
        why,
    })
}

/// The leader's term: its zxid epoch, which it sets when it wins an election.
pub fn term(view: &EnsembleView) -> Option<u32> {
    Some(view.leader()?.zxid?.epoch())
}

/// Whether two views see the same leader in the same term: nothing was elected in between.
pub fn same_term(a: &EnsembleView, b: &EnsembleView) -> bool {
    let leader = |v: &EnsembleView| v.leader().map(|m| m.ordinal);
    leader(a) == leader(b) && term(a) == term(b)
}

/// A restarted member that serves but is not yet counted synced is still rejoining: wait for the
/// highest such member.
fn rejoining_unsynced(view: &EnsembleView, synced: u32, expected: u32) -> Option<Decision> {
    view.members
        .iter()
        .rev()
        .find(|m| m.updated && m.mode != Mode::Leader)
        .map(|m| {
            Decision::Wait(WaitReason::Rejoining {
                pod: m.name.clone(),
                step: RejoinStep::NotSynced { synced, expected },
            })
        })
}

/// `(synced, expected)` when the leader counts fewer than `voters - 1 - missing` synced voting
/// followers, `voters` being the leader's own quorum size (what must stay whole).
fn sync_shortfall(view: &EnsembleView, missing: u32) -> Option<(u32, u32)> {
    let expected = view.leader_voters().saturating_sub(1 + missing);
    match view.sync {
        Sync::Count(n) if n < expected => Some((n, expected)),
        _ => None,
    }
}

fn rejoin_step(m: &crate::health::MemberView) -> RejoinStep {
    if !m.pod_ready() {
        RejoinStep::PodNotReady(m.pod.as_ref().and_then(|p| p.trouble.clone()))
    } else {
        RejoinStep::NotServing(m.problem.clone().unwrap_or_else(|| m.mode.to_string()))
    }
}

fn describe_down(m: &crate::health::MemberView) -> String {
    match (&m.problem, m.pod_ready()) {
        (Some(p), _) => p.clone(),
        (None, false) => "pod not Ready".into(),
        (None, true) => "serving".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::parse::{self, Reply};
    use crate::health::{MemberView, Outcome};
    use proptest::prelude::*;

    const OLD: &str = "zk-old";
    const NEW: &str = "zk-new";

    /// The decision alone, as most tests look at it.
    fn decide(o: &Observation) -> Decision {
        plan(o).decision
    }

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    /// What one member looks like in a test.
    #[derive(Clone, Debug)]
    struct M {
        exists: bool,
        updated: bool,
        ready: bool,
        terminating: bool,
        created_after_probe: bool,
        srvr: Outcome<parse::Srvr>,
        trouble: Option<String>,
    }

    fn serving(mode: &str) -> Outcome<parse::Srvr> {
        match parse::srvr(&format!("Zxid: 0x100000000\nMode: {mode}\n")) {
            Reply::Data(s) => Outcome::Serving(s),
            other => panic!("{other:?}"),
        }
    }

    fn m(mode: &str, updated: bool) -> M {
        M {
            exists: true,
            updated,
            ready: true,
            terminating: false,
            created_after_probe: false,
            srvr: serving(mode),
            trouble: None,
        }
    }

    fn down(updated: bool) -> M {
        M {
            ready: false,
            srvr: Outcome::Refused,
            ..m("follower", updated)
        }
    }

    /// An observation of a healthy-looking generation-synced StatefulSet.
    fn obs(members: &[M], synced: Option<u32>) -> Observation {
        let mut pods = Vec::new();
        let mut probes = Vec::new();
        for (i, mem) in members.iter().enumerate() {
            let ordinal = Ordinal(i as u32);
            if mem.exists {
                pods.push(PodFacts {
                    ordinal,
                    name: MemberName::new("zk", ordinal),
                    uid: None,
                    revision: Some(if mem.updated { NEW } else { OLD }.into()),
                    ready: mem.ready,
                    terminating: mem.terminating,
                    created_at: Some(if mem.created_after_probe {
                        t0()
                    } else {
                        t0() - Duration::from_secs(60)
                    }),
                    deleted_at: None,
                    trouble: mem.trouble.clone(),
                });
            }
            let is_leader = matches!(&mem.srvr, Outcome::Serving(s) if s.mode == Mode::Leader);
            probes.push(MemberProbe {
                ordinal,
                srvr: mem.srvr.clone(),
                mntr: is_leader.then(|| match synced {
                    Some(n) => match parse::mntr(&format!(
                        "zk_server_state\tleader\nzk_synced_followers\t{n}\n"
                    )) {
                        Reply::Data(d) => Outcome::Serving(d),
                        other => panic!("{other:?}"),
                    },
                    None => Outcome::NotWhitelisted {
                        word: "mntr".into(),
                    },
                }),
            });
        }
        Observation {
            cluster: "zk".into(),
            replicas: members.len() as u32,
            generation: Some(2),
            observed_generation: Some(2),
            update_revision: Some(NEW.into()),
            current_revision: Some(OLD.into()),
            partition: 0,
            paused: false,
            progress_deadline: Duration::from_secs(600),
            client_address_cache: Duration::ZERO,
            pods,
            probes,
            probed_at: t0(),
        }
    }

    fn restart(ordinal: u32, why: RestartReason) -> Decision {
        Decision::Restart(Restart {
            ordinal: Ordinal(ordinal),
            pod: MemberName::new("zk", Ordinal(ordinal)),
            why,
        })
    }

    fn name(i: u32) -> MemberName {
        MemberName::new("zk", Ordinal(i))
    }

    // zk-1 leads in the usual three-member fixture.
    fn three_outdated() -> Vec<M> {
        vec![
            m("follower", false),
            m("leader", false),
            m("follower", false),
        ]
    }

    #[test]
    fn the_leader_waits_until_clients_forgot_the_old_address_of_the_last_restarted() {
        // zk-0 and zk-2 restarted and serve; zk-1 leads and is due.
        let ms = vec![m("follower", true), m("leader", false), m("follower", true)];
        let at = |secs_ago: u64, newest: u32| {
            let mut o = obs(&ms, Some(2));
            o.client_address_cache = Duration::from_secs(30);
            for p in &mut o.pods {
                if p.ordinal.0 == newest {
                    p.created_at = Some(t0() - Duration::from_secs(secs_ago));
                }
            }
            o
        };
        let o = at(10, 0);
        let wait = WaitReason::ClientsMayHoldOldAddress {
            restarted: name(0),
            left: Duration::from_secs(20),
        };
        assert_eq!(decide(&o), Decision::Wait(wait));
        let p = plan(&o);
        assert_eq!(
            requeue_after(&p, &Act::None, Duration::from_secs(300)),
            Duration::from_secs(20),
            "looked at again when the wait is over"
        );
        assert!(
            step_message(&p).contains(
                "restarting the leader in 20 s: clients may still hold zk-0's old address"
            ),
            "{}",
            step_message(&p)
        );
        // The newest restarted pod counts, whichever ordinal it has.
        assert!(matches!(
            decide(&at(25, 2)),
            Decision::Wait(WaitReason::ClientsMayHoldOldAddress { ref restarted, .. }) if *restarted == name(2)
        ));
        // Long enough ago: the leader goes.
        assert_eq!(decide(&at(31, 0)), restart(1, RestartReason::Leader));
        // 0 turns the wait off.
        let mut o = at(1, 0);
        o.client_address_cache = Duration::ZERO;
        assert_eq!(decide(&o), restart(1, RestartReason::Leader));
        // Followers never wait for it.
        let followers = vec![
            m("follower", true),
            m("leader", false),
            m("follower", false),
        ];
        let mut o = obs(&followers, Some(2));
        o.client_address_cache = Duration::from_secs(30);
        o.pods[0].created_at = Some(t0() - Duration::from_secs(5));
        assert_eq!(decide(&o), restart(2, RestartReason::OutdatedFollower));
    }

    #[test]
    fn healthy_outdated_ensemble_restarts_highest_follower_first() {
        assert_eq!(
            decide(&obs(&three_outdated(), Some(2))),
            restart(2, RestartReason::OutdatedFollower)
        );
    }

    #[test]
    fn full_rollout_sequence_of_three_leader_last() {
        // zk-2 restarted, pod not Ready yet.
        let mut ms = three_outdated();
        ms[2] = down(true);
        let o = obs(&ms, Some(1));
        let d = decide(&o);
        assert_eq!(
            d,
            Decision::Wait(WaitReason::Rejoining {
                pod: name(2),
                step: RejoinStep::PodNotReady(None)
            })
        );
        assert_eq!(
            step_message(&plan(&o)),
            "restarted 1 of 3; waiting for zk-2 to rejoin as a synced follower (pod not Ready)"
        );
        // Ready, but its own srvr says not serving.
        ms[2] = M {
            srvr: Outcome::NotServing,
            ..m("follower", true)
        };
        assert!(matches!(
            decide(&obs(&ms, Some(1))),
            Decision::Wait(WaitReason::Rejoining {
                step: RejoinStep::NotServing(_),
                ..
            })
        ));
        // Serves, but the leader does not count it yet.
        ms[2] = m("follower", true);
        assert_eq!(
            decide(&obs(&ms, Some(1))),
            Decision::Wait(WaitReason::Rejoining {
                pod: name(2),
                step: RejoinStep::NotSynced {
                    synced: 1,
                    expected: 2
                }
            })
        );
        // Synced: the next follower, zk-0 (zk-1 leads).
        assert_eq!(
            decide(&obs(&ms, Some(2))),
            restart(0, RestartReason::OutdatedFollower)
        );
        ms[0] = m("follower", true);
        // Only the leader is left.
        assert_eq!(
            decide(&obs(&ms, Some(2))),
            restart(1, RestartReason::Leader)
        );
        // zk-1 restarted; zk-2 took over.
        ms[1] = down(true);
        ms[2] = m("leader", true);
        assert!(matches!(
            decide(&obs(&ms, Some(1))),
            Decision::Wait(WaitReason::Rejoining { .. })
        ));
        ms[1] = m("follower", true);
        assert_eq!(decide(&obs(&ms, Some(2))), Decision::Idle);
        let o = obs(&ms, Some(2));
        assert_eq!(
            step_message(&plan(&o)),
            "restarted 3 of 3; every member runs the update revision"
        );
    }

    #[test]
    fn lagging_generation_is_not_trusted() {
        let mut o = obs(&three_outdated(), Some(2));
        o.observed_generation = Some(1);
        assert!(matches!(
            decide(&o),
            Decision::Wait(WaitReason::GenerationNotObserved { .. })
        ));
        o.observed_generation = None;
        assert!(matches!(
            decide(&o),
            Decision::Wait(WaitReason::GenerationNotObserved { .. })
        ));
        o.observed_generation = Some(2);
        o.update_revision = None;
        assert_eq!(
            decide(&o),
            Decision::Wait(WaitReason::UpdateRevisionUnknown)
        );
    }

    #[test]
    fn paused_restarts_nothing() {
        let mut o = obs(&three_outdated(), Some(2));
        o.paused = true;
        let p = plan(&o);
        assert_eq!(
            p.decision,
            Decision::Wait(WaitReason::Paused { outdated: 3 })
        );
        // Paused and steady: only a spec change (or the slow resync) brings work.
        assert_eq!(requeue_after(&p, &Act::None, STEADY_RESYNC), STEADY_RESYNC);
        assert_eq!(
            requeue_after(&p, &Act::Evicted("zk-2".into()), STEADY_RESYNC),
            Duration::from_secs(2)
        );
        let all_new = vec![m("follower", true), m("leader", true), m("follower", true)];
        let mut o = obs(&all_new, Some(2));
        o.paused = true;
        assert_eq!(decide(&o), Decision::Idle);
    }

    #[test]
    fn partition_keeps_lower_ordinals() {
        let mut ms = three_outdated();
        ms[2] = m("follower", true);
        let mut o = obs(&ms, Some(2));
        o.partition = 1;
        // zk-0 is outdated and a follower, but below the partition: the leader goes next.
        assert_eq!(decide(&o), restart(1, RestartReason::Leader));
        ms[1] = m("follower", true);
        ms[0] = m("leader", false);
        let mut o = obs(&ms, Some(2));
        o.partition = 1;
        let d = decide(&o);
        assert_eq!(d, Decision::Idle);
        assert_eq!(
            step_message(&plan(&o)),
            "restarted 2 of 2; every member runs the update revision; 1 member(s) below partition 1 keep their revision"
        );
        // Lowering the partition to 0 finishes the rollout with zk-0, the leader.
        o.partition = 0;
        assert_eq!(decide(&o), restart(0, RestartReason::Leader));
    }

    #[test]
    fn partition_equal_to_replicas_updates_nothing() {
        let mut o = obs(&three_outdated(), Some(2));
        o.partition = 3;
        assert_eq!(decide(&o), Decision::Idle);
    }

    #[test]
    fn already_down_outdated_member_goes_first() {
        let mut ms = three_outdated();
        ms[0] = down(false);
        assert_eq!(
            decide(&obs(&ms, Some(1))),
            restart(0, RestartReason::AlreadyDown)
        );
        // An unready pod that still serves also goes first.
        let mut ms = three_outdated();
        ms[0].ready = false;
        assert_eq!(
            decide(&obs(&ms, Some(2))),
            restart(0, RestartReason::AlreadyDown)
        );
    }

    #[test]
    fn unready_leader_still_goes_last() {
        let mut ms = three_outdated();
        ms[1].ready = false;
        // zk-1 leads but its pod is not Ready: followers are not restarted while it is
        // unhealthy, and it is not restarted before them either.
        let d = decide(&obs(&ms, Some(2)));
        assert!(
            matches!(&d, Decision::Blocked(BlockedReason::MembersNotServing { candidate, .. }) if *candidate == name(2)),
            "{d:?}"
        );
    }

    #[test]
    fn two_outdated_members_down_blocks() {
        let ms = vec![down(false), m("leader", false), down(false)];
        let p = plan(&obs(&ms, Some(0)));
        let d = p.decision.clone();
        match &d {
            Decision::Blocked(BlockedReason::MembersNotServing { candidate, down }) => {
                assert_eq!(*candidate, name(2));
                assert_eq!(down.len(), 1);
                assert_eq!(down[0].0, name(0));
                assert_eq!(down[0].1, "connection refused");
            }
            other => panic!("{other:?}"),
        }
        assert!(d.to_string().contains("zk-0: connection refused"), "{d}");
        assert_eq!(
            requeue_after(&p, &Act::None, STEADY_RESYNC),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn a_member_that_does_not_come_back_in_time_is_stuck() {
        // zk-2 restarted into a revision that crash-loops.
        let mut ms = three_outdated();
        ms[2] = down(true);
        ms[2].trouble = Some("CrashLoopBackOff: back-off 5m0s".into());
        let mut o = obs(&ms, Some(1));
        // Its pod was created 60 s before the probes: within the deadline.
        o.progress_deadline = Duration::from_secs(120);
        let p = plan(&o);
        assert_eq!(p.stuck, None);
        o.progress_deadline = Duration::from_secs(30);
        let p = plan(&o);
        let stuck = p.stuck.clone().expect("stuck");
        assert_eq!(stuck.member, name(2));
        assert_eq!(stuck.waited, Duration::from_secs(60));
        // The rollout keeps waiting: restarting another member could cost the quorum.
        assert!(matches!(
            p.decision,
            Decision::Wait(WaitReason::Rejoining { .. })
        ));
        let [_, _, degraded] = crate::status::judge(&p, &Act::None);
        assert_eq!(degraded.reason, crate::status::reason::ROLLOUT_STUCK);
        assert!(
            degraded
                .message
                .starts_with("zk-2 has not come back 60 s after")
                && degraded.message.contains("CrashLoopBackOff"),
            "{}",
            degraded.message
        );
    }

    #[test]
    fn a_member_in_a_newer_term_than_the_leader_means_wait() {
        let with_zxid =
            |zxid: &str, mode: &str| match parse::srvr(&format!("Zxid: {zxid}\nMode: {mode}\n")) {
                Reply::Data(s) => Outcome::Serving(s),
                other => panic!("{other:?}"),
            };
        // Followers report epoch 0 until the first write after an election: that is fine.
        let mut ms = three_outdated();
        ms[0].srvr = with_zxid("0x0", "follower");
        ms[1].srvr = with_zxid("0x100000000", "leader");
        ms[2].srvr = with_zxid("0x0", "follower");
        assert_eq!(
            decide(&obs(&ms, Some(2))),
            restart(2, RestartReason::OutdatedFollower)
        );
        // zk-2 already follows a leader of epoch 2 while zk-1 still answers as leader of 1.
        ms[2].srvr = with_zxid("0x200000003", "follower");
        let d = decide(&obs(&ms, Some(2)));
        match &d {
            Decision::Wait(WaitReason::TermsDiffer(terms)) => {
                assert!(
                    terms.contains(&(name(2), 2)) && terms.contains(&(name(1), 1)),
                    "{terms:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Views before and after an election between probe and action are not the same term.
        let before = plan(&obs(&three_outdated(), Some(2))).view;
        let mut ms = three_outdated();
        ms[1].srvr = with_zxid("0x200000000", "leader");
        let after = plan(&obs(&ms, Some(2))).view;
        assert!(same_term(&before, &before.clone()));
        assert!(!same_term(&before, &after));
    }

    #[test]
    fn growing_a_static_ensemble_counts_the_old_leaders_quorum() {
        // 3 -> 5: zk-3 and zk-4 started with the 5-member configuration; the old leader zk-2
        // still has 3 voters and counts the new ones as non-voting learners.
        let mut ms: Vec<M> = (0..5).map(|i| m("follower", i >= 3)).collect();
        ms[2] = m("leader", false);
        let mut o = obs(&ms, None);
        let mntr = "zk_server_state\tleader\nzk_synced_followers\t4\nzk_synced_non_voting_followers\t2\nzk_quorum_size\t3\n";
        o.probes[2].mntr = Some(match parse::mntr(mntr) {
            Reply::Data(d) => Outcome::Serving(d),
            other => panic!("{other:?}"),
        });
        let p = plan(&o);
        assert_eq!(p.view.sync, Sync::Count(2));
        assert!(p.view.fully_synced());
        // The old members restart into the larger configuration, followers first.
        assert_eq!(p.decision, restart(1, RestartReason::OutdatedFollower));
        // With a follower of the old quorum out of sync, nothing restarts.
        let mntr = "zk_server_state\tleader\nzk_synced_followers\t3\nzk_synced_non_voting_followers\t2\nzk_quorum_size\t3\n";
        o.probes[2].mntr = Some(match parse::mntr(mntr) {
            Reply::Data(d) => Outcome::Serving(d),
            other => panic!("{other:?}"),
        });
        assert!(
            !matches!(decide(&o), Decision::Restart(_)),
            "{:?}",
            decide(&o)
        );
    }

    #[test]
    fn a_member_recreated_below_the_partition_is_reported() {
        // Canary at partition 2: zk-2 runs the new revision; zk-0's pod was recreated by a node
        // loss and, with OnDelete, came back at the update revision too.
        let ms = vec![m("follower", true), m("leader", false), m("follower", true)];
        let mut o = obs(&ms, Some(2));
        o.partition = 2;
        let p = plan(&o);
        assert_eq!(p.decision, Decision::Idle);
        assert_eq!(p.progress.below_partition_updated, vec![name(0)]);
        let msg = step_message(&p);
        assert!(
            msg.contains("zk-0 run(s) the update revision although below partition 2"),
            "{msg}"
        );
    }

    #[test]
    fn a_new_cluster_is_creating_not_restarting() {
        // Freshly created: every pod at the only revision the StatefulSet ever had.
        let mut ms = vec![m("follower", true), m("leader", true), down(true)];
        ms[2].trouble = Some("ImagePullBackOff: Back-off pulling image".into());
        let mut o = obs(&ms, Some(1));
        o.current_revision = o.update_revision.clone();
        let p = plan(&o);
        assert_eq!(
            step_message(&p),
            "creating: 2 of 3 members serve; waiting for zk-2 to rejoin as a synced follower (pod not Ready: ImagePullBackOff: Back-off pulling image)"
        );
        let [_, progressing, degraded] = crate::status::judge(&p, &Act::None);
        assert_eq!(progressing.reason, crate::status::reason::CREATING);
        assert!(
            degraded.message.contains("ImagePullBackOff"),
            "{degraded:?}"
        );
        // The same ensemble after a template change is a rollout.
        let p = plan(&obs(&ms, Some(1)));
        assert!(
            step_message(&p).starts_with("restarted 3 of 3; "),
            "{}",
            step_message(&p)
        );
    }

    #[test]
    fn a_standalone_member_of_a_grown_ensemble_is_never_restarted() {
        // 1 -> 3 with static membership: zk-0 still runs standalone with the user's data while
        // zk-1 and zk-2 elected a leader of their own. Restarting zk-0 would make it follow them
        // and replace its data with their empty tree.
        let ms = vec![
            m("standalone", false),
            m("leader", true),
            m("follower", true),
        ];
        let p = plan(&obs(&ms, Some(1)));
        assert_eq!(
            p.decision,
            Decision::Blocked(BlockedReason::StandaloneMember(name(0)))
        );
        let degraded = crate::status::degraded(&p.view).expect("degraded");
        assert_eq!(degraded.reason, crate::status::reason::STANDALONE_MEMBER);
        assert!(
            degraded.message.contains("zk-0 runs standalone"),
            "{degraded:?}"
        );
        // Even when zk-0 looks down to the pod (NotReady), it is not "already down".
        let mut ms = ms;
        ms[0].ready = false;
        assert_eq!(
            decide(&obs(&ms, Some(1))),
            Decision::Blocked(BlockedReason::StandaloneMember(name(0)))
        );
        // A one-member ensemble runs standalone by design and restarts as usual.
        assert_eq!(
            decide(&obs(&[m("standalone", false)], None)),
            restart(0, RestartReason::OnlyMember)
        );
    }

    #[test]
    fn member_below_partition_down_blocks() {
        let ms = vec![down(false), m("leader", false), m("follower", false)];
        let mut o = obs(&ms, Some(1));
        o.partition = 1;
        assert!(matches!(
            decide(&o),
            Decision::Blocked(BlockedReason::MembersNotServing { .. })
        ));
    }

    #[test]
    fn split_leadership_and_no_leader_block() {
        let ms = vec![m("leader", false), m("leader", false), m("follower", false)];
        assert_eq!(
            decide(&obs(&ms, Some(2))),
            Decision::Blocked(BlockedReason::SplitLeadership(vec![name(0), name(1)]))
        );
    }

    #[test]
    fn unknown_sync_blocks() {
        let d = decide(&obs(&three_outdated(), None));
        assert!(
            matches!(&d, Decision::Blocked(BlockedReason::SyncUnknown(_))),
            "{d:?}"
        );
        assert!(d.to_string().contains("mntr"), "{d}");
    }

    #[test]
    fn unsynced_followers_block_before_anything_restarts() {
        assert_eq!(
            decide(&obs(&three_outdated(), Some(1))),
            Decision::Blocked(BlockedReason::FollowersNotSynced {
                synced: 1,
                expected: 2
            })
        );
    }

    #[test]
    fn in_flight_actions_make_the_observation_stale() {
        let mut ms = three_outdated();
        ms[2].terminating = true;
        assert_eq!(
            decide(&obs(&ms, Some(2))),
            Decision::Wait(WaitReason::PodTerminating(name(2)))
        );
        let mut ms = three_outdated();
        ms[2].exists = false;
        assert_eq!(
            decide(&obs(&ms, Some(2))),
            Decision::Wait(WaitReason::PodMissing(name(2)))
        );
        let mut ms = three_outdated();
        ms[2] = m("follower", true);
        ms[2].created_after_probe = true;
        assert_eq!(
            decide(&obs(&ms, Some(2))),
            Decision::Wait(WaitReason::ObservationOlderThanPod(name(2)))
        );
    }

    #[test]
    fn one_member_ensemble_restarts_its_only_member() {
        let o = obs(&[m("standalone", false)], None);
        assert_eq!(decide(&o), restart(0, RestartReason::OnlyMember));
        let o = obs(&[down(true)], None);
        assert!(matches!(
            decide(&o),
            Decision::Wait(WaitReason::Rejoining { .. })
        ));
        let o = obs(&[m("standalone", true)], None);
        assert_eq!(decide(&o), Decision::Idle);
    }

    #[test]
    fn five_members_followers_descending_then_leader() {
        let mut ms: Vec<M> = (0..5).map(|_| m("follower", false)).collect();
        ms[3] = m("leader", false);
        let mut order = Vec::new();
        for _ in 0..5 {
            match decide(&obs(&ms, Some(4))) {
                Decision::Restart(r) => {
                    order.push(r.ordinal.0);
                    let was_leader = r.why == RestartReason::Leader;
                    ms[r.ordinal.0 as usize] =
                        m(if was_leader { "leader" } else { "follower" }, true);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(order, vec![4, 2, 1, 0, 3]);
        assert_eq!(decide(&obs(&ms, Some(4))), Decision::Idle);
    }

    #[test]
    fn observation_from_kubernetes_objects() {
        let sts: k8s_openapi::api::apps::v1::StatefulSet =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "zk", "generation": 4},
                "spec": {"replicas": 3, "serviceName": "zk-hs", "selector": {}, "template": {}},
                "status": {"replicas": 3, "observedGeneration": 3, "updateRevision": "zk-new"}
            }))
            .expect("statefulset json");
        let pod = |i: u32, rev: &str| -> k8s_openapi::api::core::v1::Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("zk-{i}"), "labels": {"controller-revision-hash": rev}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}
            }))
            .expect("pod json")
        };
        let probes = obs(&three_outdated(), Some(2)).probes;
        let mut o = Observation::from_objects(
            &sts,
            &[pod(2, OLD), pod(0, OLD), pod(1, OLD)],
            &UpdateStrategy::default(),
            probes,
            t0(),
        );
        assert_eq!(o.cluster, "zk");
        assert_eq!(o.replicas, 3);
        assert_eq!(o.pods.len(), 3);
        // observedGeneration 3 lags generation 4.
        assert!(matches!(
            decide(&o),
            Decision::Wait(WaitReason::GenerationNotObserved { .. })
        ));
        o.observed_generation = Some(4);
        assert_eq!(decide(&o), restart(2, RestartReason::OutdatedFollower));
    }

    #[test]
    fn the_same_observation_gives_the_same_decision() {
        let mut ms = three_outdated();
        ms[2] = down(true);
        let o = obs(&ms, Some(1));
        assert_eq!(decide(&o), decide(&o.clone()));
    }

    // ---- properties over random observations ----

    fn arb_member() -> impl Strategy<Value = M> {
        (
            prop::bool::weighted(0.95),
            any::<bool>(),
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.05),
            0..6u8,
        )
            .prop_map(
                |(exists, updated, ready, terminating, created_after_probe, s)| M {
                    exists,
                    updated,
                    ready,
                    terminating,
                    created_after_probe,
                    srvr: match s {
                        0 => serving("leader"),
                        1 | 2 => serving("follower"),
                        3 => Outcome::NotServing,
                        4 => Outcome::Refused,
                        _ => Outcome::Timeout,
                    },
                    trouble: None,
                },
            )
    }

    fn arb_observation() -> impl Strategy<Value = Observation> {
        prop_oneof![Just(1usize), Just(3usize), Just(5usize), Just(7usize)]
            .prop_flat_map(|n| {
                (
                    prop::collection::vec(arb_member(), n),
                    prop::option::weighted(0.9, 0..n as u32 + 1),
                    0..=n as u32,
                    prop::bool::weighted(0.1),
                    prop::bool::weighted(0.1),
                )
            })
            .prop_map(|(ms, synced, partition, paused, lag)| {
                let mut o = obs(&ms, synced);
                o.partition = partition;
                o.paused = paused;
                if lag {
                    o.observed_generation = Some(1);
                }
                o
            })
    }

    /// A model ensemble: a leader and followers, each follower's real state (synced with the
    /// leader or not) and what the operator sees of it (its srvr answer, its pod's readiness).
    /// The leader's mntr counts the really synced followers, anonymously.
    fn arb_world() -> impl Strategy<Value = (Observation, Vec<bool>, usize)> {
        prop_oneof![Just(3usize), Just(5usize)]
            .prop_flat_map(|n| {
                (
                    0..n,
                    prop::collection::vec(
                        (
                            // What srvr says: 0-2 follower, 3 not serving, 4 refused,
                            // 5 timeout (hung), 6 DNS failure.
                            0..7u8,
                            prop::bool::weighted(0.8), // really synced, where the answer allows
                            prop::bool::weighted(0.7), // pod Ready
                            any::<bool>(),             // updated
                        ),
                        n,
                    ),
                )
            })
            .prop_map(|(leader, members)| {
                let mut really_synced = Vec::new();
                let ms: Vec<M> = members
                    .iter()
                    .enumerate()
                    .map(|(i, &(answer, synced, ready, updated))| {
                        if i == leader {
                            really_synced.push(false);
                            return m("leader", updated);
                        }
                        let (srvr, can_sync) = match answer {
                            0..=2 => (serving("follower"), true),
                            3 => (Outcome::NotServing, false),
                            4 => (Outcome::Refused, false),
                            5 => (Outcome::Timeout, true),
                            _ => (Outcome::DnsFailure("no such host".into()), false),
                        };
                        really_synced.push(can_sync && synced);
                        M {
                            ready: ready && !matches!(answer, 4 | 6),
                            srvr,
                            ..m("follower", updated)
                        }
                    })
                    .collect();
                let count = really_synced.iter().filter(|s| **s).count() as u32;
                (obs(&ms, Some(count)), really_synced, leader)
            })
    }

    fn serves(v: &MemberView) -> bool {
        v.pod_ready() && v.problem.is_none()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_restart_while_another_member_does_not_serve(o in arb_observation()) {
            if let Decision::Restart(r) = decide(&o) {
                let view = o.ensemble();
                for m in view.members.iter().filter(|m| m.ordinal != r.ordinal) {
                    prop_assert!(serves(m), "restarted {} while {:?}", r.pod, m);
                }
            }
        }

        #[test]
        fn restarts_only_outdated_members_at_or_above_partition(o in arb_observation()) {
            if let Decision::Restart(r) = decide(&o) {
                prop_assert!(r.ordinal.0 >= o.partition);
                prop_assert!(!o.paused);
                prop_assert!(o.observed_generation >= o.generation);
                let view = o.ensemble();
                prop_assert!(!view.member(r.ordinal).expect("member").updated);
            }
        }

        #[test]
        fn leader_never_restarted_while_an_outdated_follower_waits(o in arb_observation()) {
            if let Decision::Restart(r) = decide(&o) {
                let view = o.ensemble();
                if view.member(r.ordinal).expect("member").mode == Mode::Leader && view.voters > 1 {
                    prop_assert!(!view.members.iter().any(|m| m.ordinal != r.ordinal
                        && m.ordinal.0 >= o.partition && !m.updated));
                }
            }
        }

        /// Stated from ZooKeeper's side: the leader's synced count is anonymous, a pod can be
        /// NotReady while its member still follows, and a member can answer srvr as a follower
        /// after it silently dropped out of the leader's sync. Whatever the planner restarts,
        /// the members that really follow the leader must still make a quorum without it.
        #[test]
        fn a_restart_never_leaves_the_leader_without_a_quorum(world in arb_world()) {
            let (o, really_synced, leader) = world;
            if let Decision::Restart(r) = decide(&o) {
                let n = o.replicas as usize;
                let quorum = n / 2 + 1;
                let c = r.ordinal.0 as usize;
                let synced_without_c = (0..n).filter(|&i| i != c && i != leader && really_synced[i]).count();
                let serving_after = if c == leader { synced_without_c } else { 1 + synced_without_c };
                prop_assert!(
                    serving_after >= quorum,
                    "restarting {} leaves {serving_after} of {n} serving (really synced: {really_synced:?})",
                    r.pod
                );
            }
        }

        #[test]
        fn stale_observations_are_never_acted_on(o in arb_observation()) {
            let stale = o.ensemble().members.iter().any(|m| match &m.pod {
                None => true,
                Some(p) => p.terminating || p.created_at.is_some_and(|c| c + Duration::from_secs(1) > o.probed_at),
            });
            if stale || o.observed_generation < o.generation {
                prop_assert!(!matches!(decide(&o), Decision::Restart(_)));
            }
        }

        /// A whole rollout against a model ensemble: the operator never has two members down,
        /// restarts the leader last, and finishes; the planner is rebuilt from each observation,
        /// as after an operator restart.
        #[test]
        fn simulated_rollout_is_safe_and_finishes(
            n in prop_oneof![Just(3usize), Just(5usize)],
            leader in 0..5usize,
            partition in 0..3u32,
            downtime in prop::collection::vec(1..4u32, 8),
        ) {
            let leader = leader % n;
            // Per member: updated, ticks until serving (0 = serving), ticks until synced.
            let mut updated = vec![false; n];
            let mut down_for = vec![0u32; n];
            let mut unsynced_for = vec![0u32; n];
            let mut leader_at = leader;
            let mut restarts = Vec::new();
            let mut restarts_done = 0usize;
            for _step in 0..200 {
                let ms: Vec<M> = (0..n).map(|i| {
                    if down_for[i] > 0 { down(updated[i]) }
                    else { m(if i == leader_at { "leader" } else { "follower" }, updated[i]) }
                }).collect();
                let synced = (0..n).filter(|&i| i != leader_at && down_for[i] == 0 && unsynced_for[i] == 0).count() as u32;
                let mut o = obs(&ms, Some(synced));
                o.partition = partition;
                let d = decide(&o);
                match d {
                    Decision::Restart(r) => {
                        let i = r.ordinal.0 as usize;
                        prop_assert!(!updated[i]);
                        if i == leader_at {
                            prop_assert!((0..n).all(|j| j == i || updated[j] || (j as u32) < partition));
                            leader_at = (0..n).find(|&j| j != i).expect("another member");
                        }
                        updated[i] = true;
                        down_for[i] = downtime[restarts_done % downtime.len()];
                        unsynced_for[i] = 1;
                        restarts_done += 1;
                        restarts.push(i);
                    }
                    Decision::Idle => break,
                    Decision::Wait(_) => {}
                    Decision::Blocked(b) => prop_assert!(false, "blocked: {b}"),
                }
                prop_assert!(down_for.iter().filter(|d| **d > 0).count() <= 1, "two members down");
                // Time passes.
                for i in 0..n {
                    if down_for[i] > 0 { down_for[i] -= 1; }
                    else if unsynced_for[i] > 0 { unsynced_for[i] -= 1; }
                }
            }
            let expected = (partition as usize..n).count();
            prop_assert_eq!(restarts.len(), expected, "restarts {:?}", restarts);
            prop_assert!((partition as usize..n).all(|i| updated[i]));
        }
    }
}
