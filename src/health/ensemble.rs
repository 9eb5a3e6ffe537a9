//! The ensemble view: per-member probe results joined with what Kubernetes says about each pod.
//!
//! Pure: built from data the controller gathered, so every case is testable without a cluster.

use std::time::SystemTime;

use super::fourlw::MemberProbe;
use super::parse::Zxid;
use super::{MemberName, Mode, Ordinal, Outcome};

/// What the API server says about one member's pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodFacts {
    /// StatefulSet ordinal parsed from the pod name.
    pub ordinal: Ordinal,
    /// Pod name.
    pub name: MemberName,
    /// `metadata.uid`: an eviction names it, so it can only ever hit this very pod.
    pub uid: Option<String>,
    /// The pod's `controller-revision-hash` label.
    pub revision: Option<String>,
    /// The pod's `Ready` condition is `True`.
    pub ready: bool,
    /// The pod has a `deletionTimestamp` (it is going away).
    pub terminating: bool,
    /// `metadata.creationTimestamp` (second precision).
    pub created_at: Option<SystemTime>,
    /// `metadata.deletionTimestamp`: when the pod was asked to go (plus its grace period).
    pub deleted_at: Option<SystemTime>,
    /// What keeps the pod from running ZooKeeper, from the pod's own status: image pull,
    /// crash loop, OOM kill, unschedulable (PVC pending included). `None` when nothing is known.
    pub trouble: Option<String>,
}

impl PodFacts {
    /// Reads the facts from a member pod of StatefulSet `cluster`; `None` when the pod's name
    /// is not `<cluster>-<ordinal>`.
    pub fn from_pod(cluster: &str, pod: &k8s_openapi::api::core::v1::Pod) -> Option<Self> {
        let name = pod.metadata.name.as_deref()?;
        let ordinal: u32 = name
            .strip_prefix(cluster)?
            .strip_prefix('-')?
            .parse()
            .ok()?;
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        Some(Self {
            ordinal: Ordinal(ordinal),
            name: MemberName::new(cluster, Ordinal(ordinal)),
            uid: pod.metadata.uid.clone(),
            revision: pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("controller-revision-hash"))
                .cloned(),
            ready,
            terminating: pod.metadata.deletion_timestamp.is_some(),
            created_at: pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| SystemTime::from(t.0)),
            deleted_at: pod
                .metadata
                .deletion_timestamp
                .as_ref()
                .map(|t| SystemTime::from(t.0)),
            trouble: pod.status.as_ref().and_then(pod_trouble),
        })
    }
}

/// Container waiting reasons that are a normal step of starting; every other one (image pull
/// errors, `ErrImageNeverPull`, crash loops, configuration errors, ...) keeps the member down.
const STARTING: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// The pod-level reason a member cannot serve, as a person would want to read it.
fn pod_trouble(status: &k8s_openapi::api::core::v1::PodStatus) -> Option<String> {
    let unschedulable = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(c) = unschedulable {
        let reason = c.reason.as_deref().unwrap_or("Unschedulable");
        return Some(match c.message.as_deref() {
            Some(m) => format!("{reason}: {m}"),
            None => reason.to_string(),
        });
    }
    for cs in status.container_statuses.iter().flatten() {
        let last_exit = cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.reason.clone());
        let restarts = match (cs.restart_count, &last_exit) {
            (0, _) => String::new(),
            (n, Some(why)) => format!(" (restarted {n} times, last exit: {why})"),
            (n, None) => format!(" (restarted {n} times)"),
        };
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref())
            && let Some(reason) = w.reason.as_deref()
            && !STARTING.contains(&reason)
        {
            let message = w
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Some(format!("{reason}{message}{restarts}"));
        }
        if last_exit.as_deref() == Some("OOMKilled") {
            return Some(format!("OOMKilled{restarts}"));
        }
    }
    None
}

/// One member as the operator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberView {
    /// StatefulSet ordinal.
    pub ordinal: Ordinal,
    /// Pod name.
    pub name: MemberName,
    /// Its role per its own `srvr`; `Unreachable` without a serving answer.
    pub mode: Mode,
    /// Last zxid per its own `srvr`.
    pub zxid: Option<Zxid>,
    /// Why it gave no serving answer (`None` when it serves), with the pod-level cause when
    /// the pod's status tells one.
    pub problem: Option<String>,
    /// It refused `srvr` (not in its `4lw.commands.whitelist`): its state cannot be judged.
    pub srvr_refused: bool,
    /// It cannot be one of the leader's synced followers: nothing listens on its client port,
    /// its name does not resolve, or it has no pod. (A member that times out or is NotReady
    /// may still be following and counted by the leader.)
    pub provably_not_learner: bool,
    /// Its pod, when one exists.
    pub pod: Option<PodFacts>,
    /// Its pod runs the StatefulSet's update revision.
    pub updated: bool,
}

impl MemberView {
    /// The pod exists, is Ready, is not terminating.
    pub fn pod_ready(&self) -> bool {
        self.pod.as_ref().is_some_and(|p| p.ready && !p.terminating)
    }

    /// The pod revision, when known.
    pub fn revision(&self) -> Option<&str> {
        self.pod.as_ref().and_then(|p| p.revision.as_deref())
    }
}

/// Who leads, according to the members themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// Exactly one member says `leader` (or the only member says `standalone`).
    One(Ordinal),
    /// Nobody leads: no serving quorum.
    None,
    /// More than one member claims leadership: reported, never resolved by guessing.
    Split(Vec<Ordinal>),
}

/// The leader's count of voting followers in sync with it (`zk_synced_followers`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sync {
    /// The leader's count.
    Count(u32),
    /// A one-member ensemble has no followers to sync.
    NotApplicable,
    /// There is no single leader to ask.
    NoLeader,
    /// The leader refuses `mntr`: the whitelist lacks it.
    MntrNotWhitelisted,
    /// The leader's `mntr` failed; the string says how.
    Unknown(String),
}

/// The ensemble as a whole.
#[derive(Clone, Debug, PartialEq)]
pub struct EnsembleView {
    /// Members with ordinals `0..voters`, in order.
    pub members: Vec<MemberView>,
    /// Voting members the ensemble is configured with (the StatefulSet's replicas).
    pub voters: u32,
    /// Who leads.
    pub leadership: Leadership,
    /// Voters whose `srvr` says they serve in the quorum.
    pub voters_serving: u32,
    /// Voting followers in sync according to the leader.
    pub sync: Sync,
    /// Voters in the leader's own configuration (`zk_quorum_size`, 3.6+).
    pub leader_quorum_size: Option<u32>,
}

impl EnsembleView {
    /// Joins probe results and pod facts for ordinals `0..voters`; `cluster` is the StatefulSet
    /// name (pods are `<cluster>-<ordinal>`), `update_revision` the StatefulSet's
    /// `status.updateRevision`.
    pub fn build(
        cluster: &str,
        voters: u32,
        update_revision: Option<&str>,
        pods: &[PodFacts],
        probes: &[MemberProbe],
    ) -> Self {
        let mut members = Vec::with_capacity(voters as usize);
        let mut leaders = Vec::new();
        let mut voters_serving = 0;
        for i in 0..voters {
            let ordinal = Ordinal(i);
            let pod = pods.iter().find(|p| p.ordinal == ordinal).cloned();
            let probe = probes.iter().find(|p| p.ordinal == ordinal);
            let (mode, zxid, problem) = match probe.map(|p| &p.srvr) {
                Some(Outcome::Serving(s)) => {
                    let serves_in_quorum = match s.mode {
                        Mode::Leader | Mode::Follower | Mode::Observer => true,
                        Mode::Standalone => voters == 1,
                        Mode::Unreachable => false,
                    };
                    if serves_in_quorum {
                        (s.mode, Some(s.zxid), None)
                    } else {
                        (
                            s.mode,
                            Some(s.zxid),
                            Some(format!(
                                "runs standalone although the ensemble has {voters} members"
                            )),
                        )
                    }
                }
                Some(other) => (Mode::Unreachable, None, Some(other.describe())),
                None => (Mode::Unreachable, None, Some("not probed".into())),
            };
            // Next to what the probe saw, what the pod's own status says keeps it from running.
            let problem = match (problem, pod.as_ref().and_then(|p| p.trouble.as_deref())) {
                (Some(p), Some(t)) if mode == Mode::Unreachable => Some(format!("{p}; pod: {t}")),
                (problem, _) => problem,
            };
            if problem.is_none() {
                if matches!(mode, Mode::Leader | Mode::Standalone) {
                    leaders.push(ordinal);
                }
                if mode != Mode::Observer {
                    voters_serving += 1;
                }
            }
            let updated = match (&pod, update_revision) {
                (Some(p), Some(rev)) => p.revision.as_deref() == Some(rev),
                _ => false,
            };
            let srvr_refused =
                matches!(probe.map(|p| &p.srvr), Some(Outcome::NotWhitelisted { .. }));
            let provably_not_learner = pod.is_none()
                || matches!(
                    probe.map(|p| &p.srvr),
                    Some(Outcome::Refused | Outcome::DnsFailure(_))
                );
            members.push(MemberView {
                ordinal,
                name: MemberName::new(cluster, ordinal),
                mode,
                zxid,
                problem,
                srvr_refused,
                provably_not_learner,
                pod,
                updated,
            });
        }
        let leadership = match leaders.len() {
            0 => Leadership::None,
            1 => Leadership::One(leaders[0]),
            _ => Leadership::Split(leaders),
        };
        let sync = match &leadership {
            _ if voters == 1 => Sync::NotApplicable,
            Leadership::One(l) => {
                match probes
                    .iter()
                    .find(|p| p.ordinal == *l)
                    .and_then(|p| p.mntr.as_ref())
                {
                    // Only voting followers count (3.6+ also counts non-voting learners in
                    // zk_synced_followers).
                    Some(Outcome::Serving(m)) => match m.synced_followers() {
                        Some(n) => Sync::Count(
                            n.saturating_sub(m.synced_non_voting_followers().unwrap_or(0)),
                        ),
                        None => {
                            Sync::Unknown("the leader's mntr has no zk_synced_followers".into())
                        }
                    },
                    Some(Outcome::NotWhitelisted { .. }) => Sync::MntrNotWhitelisted,
                    Some(other) => {
                        Sync::Unknown(format!("the leader's mntr: {}", other.describe()))
                    }
                    None => Sync::Unknown("the leader was not asked mntr".into()),
                }
            }
            _ => Sync::NoLeader,
        };
        let leader_quorum_size = match &leadership {
            Leadership::One(l) => probes
                .iter()
                .find(|p| p.ordinal == *l)
                .and_then(|p| p.mntr.as_ref()?.serving()?.quorum_size()),
            _ => None,
        };
        Self {
            members,
            voters,
            leadership,
            voters_serving,
            sync,
            leader_quorum_size,
        }
    }

    /// The single leader, if there is exactly one.
    pub fn leader(&self) -> Option<&MemberView> {
        match self.leadership {
            Leadership::One(o) => self.member(o),
            _ => None,
        }
    }

    /// The member with `ordinal`.
    pub fn member(&self, ordinal: Ordinal) -> Option<&MemberView> {
        self.members.iter().find(|m| m.ordinal == ordinal)
    }

    /// More than half of the voters serve.
    pub fn majority_serving(&self) -> bool {
        self.voters > 0 && self.voters_serving > self.voters / 2
    }

    /// A serving quorum exists: a majority serves under exactly one leader (`Available`).
    pub fn available(&self) -> bool {
        self.majority_serving() && matches!(self.leadership, Leadership::One(_))
    }

    /// After `old` handed its leadership off: another member leads and counts every other voter
    /// of its own configuration synced (`voters_after` when it does not report its quorum
    /// size). Until then the voters left may still need `old`: a voter that has not activated
    /// the new configuration when `old` goes follows nobody (the others' quorum needs it), and
    /// the successor waits its whole `initLimit` for it before a new election.
    pub fn successor_serves(&self, old: Ordinal, voters_after: u32) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        let quorum = self.leader_quorum_size.unwrap_or(voters_after);
        leader.ordinal != old && matches!(self.sync, Sync::Count(n) if n + 1 >= quorum)
    }

    /// Every member but `old` serves as a follower and none leads: they follow `old`, which
    /// still leads (a handoff that did not happen).
    pub fn others_follow(&self, old: Ordinal) -> bool {
        self.leadership == Leadership::None
            && self
                .members
                .iter()
                .filter(|m| m.ordinal != old)
                .all(|m| m.mode == Mode::Follower && m.problem.is_none())
    }

    /// Every voter serves and the leader counts every follower synced.
    pub fn fully_synced(&self) -> bool {
        self.voters_serving == self.voters
            && match self.sync {
                Sync::Count(n) => n + 1 >= self.leader_voters(),
                Sync::NotApplicable => true,
                _ => false,
            }
    }

    /// The voters the leader's quorum is made of: its own `zk_quorum_size` when it reports one
    /// (while new members join a static ensemble they are non-voting learners of the old
    /// leader), else the StatefulSet's count.
    pub fn leader_voters(&self) -> u32 {
        self.leader_quorum_size.unwrap_or(self.voters)
    }

    /// Members that do not serve, with what they said, for messages.
    pub fn not_serving(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.problem.is_some())
            .map(|m| format!("{} ({})", m.name, m.problem.as_deref().unwrap_or_default()))
            .collect()
    }

    /// The names of the members with these ordinals.
    pub fn names(&self, ordinals: &[Ordinal]) -> Vec<String> {
        ordinals.iter().map(|o| self.name(*o)).collect()
    }

    fn name(&self, o: Ordinal) -> String {
        self.member(o)
            .map(|m| m.name.to_string())
            .unwrap_or_else(|| format!("ordinal {o}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::parse::{self, Reply};

    fn srvr_of(mode: &str) -> Outcome<parse::Srvr> {
        match parse::srvr(&format!("Zxid: 0x100000005\nMode: {mode}\n")) {
            Reply::Data(s) => Outcome::Serving(s),
            other => panic!("{other:?}"),
        }
    }

    fn mntr_synced(n: u32) -> Outcome<parse::Mntr> {
        match parse::mntr(&format!(
            "zk_server_state\tleader\nzk_synced_followers\t{n}\n"
        )) {
            Reply::Data(m) => Outcome::Serving(m),
            other => panic!("{other:?}"),
        }
    }

    fn pod(i: u32, rev: &str, ready: bool) -> PodFacts {
        PodFacts {
            ordinal: Ordinal(i),
            name: MemberName::new("zk", Ordinal(i)),
            uid: None,
            revision: Some(rev.into()),
            ready,
            terminating: false,
            created_at: None,
            deleted_at: None,
            trouble: None,
        }
    }

    fn probe(
        i: u32,
        srvr: Outcome<parse::Srvr>,
        mntr: Option<Outcome<parse::Mntr>>,
    ) -> MemberProbe {
        MemberProbe {
            ordinal: Ordinal(i),
            srvr,
            mntr,
        }
    }

    fn healthy3() -> (Vec<PodFacts>, Vec<MemberProbe>) {
        (
            vec![pod(0, "a", true), pod(1, "a", true), pod(2, "b", true)],
            vec![
                probe(0, srvr_of("follower"), None),
                probe(1, srvr_of("leader"), Some(mntr_synced(2))),
                probe(2, srvr_of("follower"), None),
            ],
        )
    }

    fn mntr_leader(synced: u32, quorum_size: u32) -> Outcome<parse::Mntr> {
        match parse::mntr(&format!(
            "zk_server_state\tleader\nzk_synced_followers\t{synced}\nzk_quorum_size\t{quorum_size}\n"
        )) {
            Reply::Data(m) => Outcome::Serving(m),
            other => panic!("{other:?}"),
        }
    }

    /// The others of a 3-member ensemble whose leader zk-1 handed off, probed without it.
    fn after_handoff(probes: Vec<MemberProbe>) -> EnsembleView {
        EnsembleView::build("zk", 3, None, &[], &probes)
    }

    #[test]
    fn successor_serves_once_it_leads_every_voter_left() {
        let old = Ordinal(1);
        // zk-2 leads a configuration of two voters and counts zk-0 synced: zk-1 may go.
        let established = after_handoff(vec![
            probe(0, srvr_of("follower"), None),
            probe(2, srvr_of("leader"), Some(mntr_leader(1, 2))),
        ]);
        assert!(established.successor_serves(old, 2));
        assert!(!established.others_follow(old));
        // zk-2 leads but zk-0 has not synced with it yet (it may not have the new
        // configuration): zk-1 must stay.
        let syncing = after_handoff(vec![
            probe(0, Outcome::Timeout, None),
            probe(2, srvr_of("leader"), Some(mntr_leader(0, 2))),
        ]);
        assert!(!syncing.successor_serves(old, 2));
        // The successor's quorum size wins over the count the operator expects.
        let bigger = after_handoff(vec![
            probe(0, srvr_of("follower"), None),
            probe(2, srvr_of("leader"), Some(mntr_leader(1, 3))),
        ]);
        assert!(!bigger.successor_serves(old, 2));
        // Without zk_quorum_size, the voters left are the count expected.
        let older = after_handoff(vec![
            probe(0, srvr_of("follower"), None),
            probe(2, srvr_of("leader"), Some(mntr_synced(1))),
        ]);
        assert!(older.successor_serves(old, 2));
        assert!(!older.successor_serves(old, 3));
        // Nobody else leads yet: the old leader still does, or the handoff is under way.
        let following = after_handoff(vec![
            probe(0, srvr_of("follower"), None),
            probe(2, srvr_of("follower"), None),
        ]);
        assert!(!following.successor_serves(old, 2));
        assert!(following.others_follow(old));
        // A member that does not serve is not following anyone.
        let looking = after_handoff(vec![
            probe(0, srvr_of("follower"), None),
            probe(2, Outcome::Timeout, None),
        ]);
        assert!(!looking.others_follow(old));
        assert!(!looking.successor_serves(old, 2));
    }

    #[test]
    fn healthy_ensemble() {
        let (pods, probes) = healthy3();
        let v = EnsembleView::build("zk", 3, Some("b"), &pods, &probes);
        assert_eq!(v.leadership, Leadership::One(Ordinal(1)));
        assert_eq!(v.leader().map(|m| m.name.as_str()), Some("zk-1"));
        assert_eq!(v.voters_serving, 3);
        assert!(v.available());
        assert!(v.fully_synced());
        assert_eq!(v.sync, Sync::Count(2));
        assert_eq!(crate::status::degraded(&v), None);
        assert!(v.members[2].updated);
        assert!(!v.members[0].updated);
        assert_eq!(
            v.members[0].zxid.map(|z| z.to_string()).as_deref(),
            Some("0x100000005")
        );
    }

    #[test]
    fn one_member_down_is_quorum_at_risk_in_three() {
        let (pods, mut probes) = healthy3();
        probes[2].srvr = Outcome::Refused;
        probes[1].mntr = Some(mntr_synced(1));
        let v = EnsembleView::build("zk", 3, Some("b"), &pods, &probes);
        assert!(v.available());
        assert!(!v.fully_synced());
        assert_eq!(v.members[2].mode, Mode::Unreachable);
        let j = crate::status::degraded(&v).expect("degraded");
        let msg = &j.message;
        assert_eq!(j.reason, "QuorumAtRisk");
        assert!(msg.contains("zk-2 (connection refused)"), "{msg}");
    }

    #[test]
    fn one_member_down_of_five_is_member_down() {
        let pods: Vec<_> = (0..5).map(|i| pod(i, "a", true)).collect();
        let mut probes: Vec<_> = (0..5)
            .map(|i| probe(i, srvr_of("follower"), None))
            .collect();
        probes[0] = probe(0, srvr_of("leader"), Some(mntr_synced(3)));
        probes[4].srvr = Outcome::Timeout;
        let v = EnsembleView::build("zk", 5, Some("a"), &pods, &probes);
        assert_eq!(
            crate::status::degraded(&v).map(|j| j.reason),
            Some("MemberDown")
        );
    }

    #[test]
    fn quorum_lost_when_majority_not_serving() {
        let (pods, mut probes) = healthy3();
        probes[1] = probe(1, Outcome::NotServing, None);
        probes[2].srvr = Outcome::DnsFailure("zk-2: no such host".into());
        probes[0].srvr = Outcome::NotServing;
        let v = EnsembleView::build("zk", 3, Some("b"), &pods, &probes);
        assert_eq!(v.leadership, Leadership::None);
        assert_eq!(v.sync, Sync::NoLeader);
        assert!(!v.majority_serving());
        assert!(!v.available());
        assert_eq!(
            crate::status::degraded(&v).map(|j| j.reason),
            Some("QuorumLost")
        );
    }

    #[test]
    fn two_leaders_are_reported_as_split() {
        let (pods, mut probes) = healthy3();
        probes[0] = probe(0, srvr_of("leader"), Some(mntr_synced(1)));
        let v = EnsembleView::build("zk", 3, Some("b"), &pods, &probes);
        assert_eq!(
            v.leadership,
            Leadership::Split(vec![Ordinal(0), Ordinal(1)])
        );
        assert!(v.leader().is_none());
        assert!(!v.available());
        let j = crate::status::degraded(&v).expect("degraded");
        let msg = &j.message;
        assert_eq!(j.reason, "SplitLeadership");
        assert!(msg.contains("zk-0, zk-1"), "{msg}");
    }

    #[test]
    fn standalone_member_in_a_three_member_ensemble_does_not_serve_it() {
        let (pods, mut probes) = healthy3();
        probes[2].srvr = srvr_of("standalone");
        let v = EnsembleView::build("zk", 3, Some("b"), &pods, &probes);
        assert_eq!(v.voters_serving, 2);
        assert!(
            v.members[2]
                .problem
                .as_deref()
                .is_some_and(|p| p.contains("standalone"))
        );
        assert_eq!(v.leadership, Leadership::One(Ordinal(1)));
    }

    #[test]
    fn single_member_standalone_is_available() {
        let pods = vec![pod(0, "a", true)];
        let probes = vec![probe(0, srvr_of("standalone"), None)];
        let v = EnsembleView::build("zk", 1, Some("a"), &pods, &probes);
        assert!(v.available());
        assert!(v.fully_synced());
        assert_eq!(v.sync, Sync::NotApplicable);
    }

    #[test]
    fn only_voting_followers_count_as_synced() {
        // A joiner syncing as a non-voting follower is in zk_synced_followers (3.6+) but does
        // not vote: it must not stand in for a voter.
        let (pods, mut probes) = healthy3();
        let mntr = match parse::mntr(
            "zk_server_state\tleader\nzk_synced_followers\t2\nzk_synced_non_voting_followers\t1\nzk_quorum_size\t3\n",
        ) {
            Reply::Data(m) => Outcome::Serving(m),
            other => panic!("{other:?}"),
        };
        probes[1].mntr = Some(mntr);
        let v = EnsembleView::build("zk", 3, Some("b"), &pods, &probes);
        assert_eq!(v.sync, Sync::Count(1));
        assert_eq!(v.leader_quorum_size, Some(3));
        assert!(!v.fully_synced());
    }

    #[test]
    fn leader_refusing_mntr_is_reported() {
        let (pods, mut probes) = healthy3();
        probes[1].mntr = Some(Outcome::NotWhitelisted {
            word: "mntr".into(),
        });
        let v = EnsembleView::build("zk", 3, Some("b"), &pods, &probes);
        assert_eq!(v.sync, Sync::MntrNotWhitelisted);
        assert!(!v.fully_synced());
        assert_eq!(
            crate::status::degraded(&v).map(|j| j.reason),
            Some("MntrNotWhitelisted")
        );
    }

    #[test]
    fn pod_facts_from_a_kubernetes_pod() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "zk-2",
                "labels": {"controller-revision-hash": "zk-5d8f7c9b4"},
                "creationTimestamp": "2026-11-26T01:02:03Z",
                "deletionTimestamp": "2026-11-26T01:05:00Z"
            },
            "status": {"conditions": [
                {"type": "ContainersReady", "status": "True"},
                {"type": "Ready", "status": "True"}
            ]}
        }))
        .expect("pod json");
        let f = PodFacts::from_pod("zk", &pod).expect("member pod");
        assert_eq!(f.ordinal, Ordinal(2));
        assert_eq!(f.name.as_str(), "zk-2");
        assert_eq!(f.revision.as_deref(), Some("zk-5d8f7c9b4"));
        assert!(f.ready);
        assert!(f.terminating);
        let created = f.created_at.expect("created");
        let secs = created
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after epoch")
            .as_secs();
        assert_eq!(secs, 1_795_654_923);
        // Another StatefulSet's pod whose name starts the same is not a member.
        let other: k8s_openapi::api::core::v1::Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "zk-backup-0"}}))
                .expect("pod json");
        assert!(PodFacts::from_pod("zk", &other).is_none());
    }

    fn pod_with_status(status: serde_json::Value) -> PodFacts {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "zk-0"},
            "status": status,
        }))
        .expect("pod json");
        PodFacts::from_pod("zk", &pod).expect("member pod")
    }

    #[test]
    fn pod_level_causes_are_facts_of_the_member() {
        // Status shapes as the kubelet and scheduler write them.
        let pull = pod_with_status(serde_json::json!({"containerStatuses": [{
            "name": "zookeeper", "image": "bad:1", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"bad:1\""}}
        }]}));
        assert_eq!(
            pull.trouble.as_deref(),
            Some("ImagePullBackOff: Back-off pulling image \"bad:1\"")
        );
        let oom = pod_with_status(serde_json::json!({"containerStatuses": [{
            "name": "zookeeper", "image": "zk", "imageID": "", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
        }]}));
        assert_eq!(
            oom.trouble.as_deref(),
            Some("CrashLoopBackOff: back-off 1m20s (restarted 4 times, last exit: OOMKilled)")
        );
        let pending = pod_with_status(serde_json::json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."
        }]}));
        assert!(
            pending
                .trouble
                .as_deref()
                .is_some_and(|t| t.starts_with("Unschedulable: 0/1 nodes")
                    && t.contains("PersistentVolumeClaims")),
            "{pending:?}"
        );
        let never = pod_with_status(serde_json::json!({"containerStatuses": [{
            "name": "zookeeper", "image": "zk:missing", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "Container image \"zk:missing\" is not present with pull policy of Never"}}
        }]}));
        assert!(
            never
                .trouble
                .as_deref()
                .is_some_and(|t| t.starts_with("ErrImageNeverPull: ")),
            "{never:?}"
        );
        let starting = pod_with_status(serde_json::json!({"containerStatuses": [{
            "name": "zookeeper", "image": "zk", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}
        }]}));
        assert_eq!(starting.trouble, None);
        let running = pod_with_status(serde_json::json!({"containerStatuses": [{
            "name": "zookeeper", "image": "zk", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {}}
        }]}));
        assert_eq!(running.trouble, None);

        // The member's problem carries the pod's cause next to what the probe saw.
        let (mut pods, mut probes) = healthy3();
        pods[0].trouble = pull.trouble.clone();
        pods[0].ready = false;
        probes[0].srvr = Outcome::DnsFailure("zk-0: no such host".into());
        let v = EnsembleView::build("zk", 3, Some("b"), &pods, &probes);
        let problem = v.members[0].problem.as_deref().expect("a problem");
        assert!(
            problem.contains("no such host") && problem.contains("ImagePullBackOff"),
            "{problem}"
        );
    }

    #[test]
    fn a_member_refusing_srvr_is_reported_as_such() {
        let (pods, mut probes) = healthy3();
        for p in &mut probes {
            p.srvr = Outcome::NotWhitelisted {
                word: "srvr".into(),
            };
        }
        let v = EnsembleView::build("zk", 3, Some("b"), &pods, &probes);
        assert!(v.members.iter().all(|m| m.srvr_refused));
        let j = crate::status::degraded(&v).expect("degraded");
        assert_eq!(j.reason, crate::status::reason::SRVR_NOT_WHITELISTED);
        assert!(
            j.message.contains("zk-0, zk-1, zk-2 refuse srvr"),
            "{}",
            j.message
        );
    }

    #[test]
    fn missing_pod_and_probe() {
        let (mut pods, mut probes) = healthy3();
        pods.remove(2);
        probes.remove(2);
        let v = EnsembleView::build("zk", 3, Some("b"), &pods, &probes);
        assert!(v.members[2].pod.is_none());
        assert!(!v.members[2].pod_ready());
        assert_eq!(v.members[2].mode, Mode::Unreachable);
        assert!(!v.members[2].updated);
    }
}
