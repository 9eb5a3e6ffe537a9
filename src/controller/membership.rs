//! Membership: before render, read the committed configuration and decide how many pods run
//! and what a new one boots with; after the plan, carry out at most one reconfiguration step.
//!
//! The decisions are [`crate::membership`]'s (pure); this module gathers their inputs and does
//! the IO. Nothing is remembered between passes: every pass reads the committed configuration
//! again, so a change begun before the operator was killed is finished by the next pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::runtime::events::EventType;
use sha2::Digest as _;

use super::{ClusterId, Context, Error};
use crate::crd::ZookeeperClusterStatus;
use crate::health::fourlw::member_addresses;
use crate::health::{MemberAddress, MemberProbe, Ordinal};
use crate::membership::{
    Change, CommittedConfig, ConfigVersion, Health, MembershipStep, ServerId, WaitReason, Waiting,
    members_to_run, next_step,
};
use crate::reconfig::{ReconfigError, Reconfigurer, SaslLogin, SuperUser, member_config_versions};
use crate::render::members::{self, Members};
use crate::status::reason;
use crate::tls::ClientTls;
use crate::validate::ValidatedCluster;

/// How long one read or `reconfig` may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How soon a cluster whose membership changes is looked at again.
pub const RECHECK: Duration = Duration::from_secs(2);

/// Talks to ZooKeeper about membership. The real one opens sessions to the members; tests
/// substitute their own.
pub trait Zookeeper: Send + Sync {
    /// The committed configuration, read through any of `connect_string`'s members.
    fn committed(
        &self,
        connect_string: String,
        tls: Option<ClientTls>,
        login: Option<SaslLogin>,
    ) -> BoxFuture<'static, Result<CommittedConfig, ReconfigError>>;
    /// Each answering member's own configuration version.
    fn versions(
        &self,
        members: Vec<(ServerId, MemberAddress)>,
    ) -> BoxFuture<'static, BTreeMap<ServerId, ConfigVersion>>;
    /// One `reconfig`, as `user`, guarded by `expected`.
    fn reconfigure(
        &self,
        connect_string: String,
        user: SuperUser,
        step: MembershipStep,
        expected: ConfigVersion,
        tls: Option<ClientTls>,
    ) -> BoxFuture<'static, Result<CommittedConfig, ReconfigError>>;
}

/// The [`Zookeeper`] that talks to real members.
pub struct NetworkZookeeper;

impl Zookeeper for NetworkZookeeper {
    fn committed(
        &self,
        connect_string: String,
        tls: Option<ClientTls>,
        login: Option<SaslLogin>,
    ) -> BoxFuture<'static, Result<CommittedConfig, ReconfigError>> {
        Box::pin(async move {
            // Reading the configuration needs no rights; the session is the super user's only
            // so one code path serves both. With client authentication enforced it must log in.
            let user = SuperUser::new("read-only").with_sasl(login);
            Reconfigurer::connect_over(&connect_string, &user, TIMEOUT, tls.as_ref())
                .await?
                .committed()
                .await
        })
    }

    fn versions(
        &self,
        members: Vec<(ServerId, MemberAddress)>,
    ) -> BoxFuture<'static, BTreeMap<ServerId, ConfigVersion>> {
        Box::pin(async move { member_config_versions(members, TIMEOUT).await })
    }

    fn reconfigure(
        &self,
        connect_string: String,
        user: SuperUser,
        step: MembershipStep,
        expected: ConfigVersion,
        tls: Option<ClientTls>,
    ) -> BoxFuture<'static, Result<CommittedConfig, ReconfigError>> {
        Box::pin(async move {
            Reconfigurer::connect_over(&connect_string, &user, TIMEOUT, tls.as_ref())
                .await?
                .apply(&step, expected)
                .await
        })
    }
}

/// A [`Zookeeper`] that reaches no member (tests of everything else): the membership stays as
/// it runs.
pub struct NoZookeeper;

impl Zookeeper for NoZookeeper {
    fn committed(
        &self,
        s: String,
        _: Option<ClientTls>,
        _: Option<SaslLogin>,
    ) -> BoxFuture<'static, Result<CommittedConfig, ReconfigError>> {
        Box::pin(async move {
            Err(ReconfigError::Timeout {
                action: "connect",
                connect_string: s,
                timeout: Duration::ZERO,
            })
        })
    }

    fn versions(
        &self,
        _: Vec<(ServerId, MemberAddress)>,
    ) -> BoxFuture<'static, BTreeMap<ServerId, ConfigVersion>> {
        Box::pin(async { BTreeMap::new() })
    }

    fn reconfigure(
        &self,
        s: String,
        _: SuperUser,
        _: MembershipStep,
        _: ConfigVersion,
        _: Option<ClientTls>,
    ) -> BoxFuture<'static, Result<CommittedConfig, ReconfigError>> {
        self.committed(s, None, None)
    }
}

/// The operator's secret from which every cluster's super-user password is derived.
#[derive(Clone)]
pub struct SuperKey(Arc<[u8]>);

impl std::fmt::Debug for SuperKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SuperKey(<redacted>)")
    }
}

impl SuperKey {
    /// A key from its bytes (at least 16).
    pub fn new(bytes: &[u8]) -> Option<Self> {
        (bytes.len() >= 16).then(|| Self(bytes.into()))
    }

    /// The super user of the cluster with this UID: its password is a keyed hash of the UID,
    /// so it is stable across restarts of the operator and differs between clusters.
    pub fn user(&self, uid: &str) -> SuperUser {
        let mut h = sha2::Sha256::new();
        h.update(&self.0);
        h.update(b"\0zookeeper-super\0");
        h.update(uid.as_bytes());
        let password: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        SuperUser::new(password)
    }

    /// The operator's SASL login with the cluster with this UID (`spec.clientAuth`): user
    /// [`crate::names::OPERATOR_USER`], its password a keyed hash of the UID like the super
    /// user's, kept in the Secret [`crate::names::operator_auth_secret`] the members mount.
    pub fn operator_login(&self, uid: &str) -> SaslLogin {
        let mut h = sha2::Sha256::new();
        h.update(&self.0);
        h.update(b"\0zookeeper-operator-sasl\0");
        h.update(uid.as_bytes());
        let password: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        SaslLogin::new(crate::names::OPERATOR_USER, password)
    }
}

/// What the pass knows about membership before rendering.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// What the pods are rendered with.
    pub members: Members,
    /// The committed configuration, when it could be read.
    pub committed: Option<CommittedConfig>,
    /// The StatefulSet as this pass read it, `None` when it does not exist (the apply step
    /// needs not read it again).
    pub statefulset: Option<StatefulSet>,
}

/// The operator's SASL login with a cluster that enforces client authentication, when the
/// operator has a key; `None` for a cluster that does not.
pub fn operator_login(ctx: &Context, cluster: &ValidatedCluster, uid: &str) -> Option<SaslLogin> {
    if !cluster.spec.client_auth.enabled {
        return None;
    }
    ctx.super_key.as_ref().map(|k| k.operator_login(uid))
}

/// A cluster's super user, when the operator has a key.
fn super_user(ctx: &Context, cluster: &ValidatedCluster, uid: &str) -> Option<SuperUser> {
    ctx.super_key
        .as_ref()
        .map(|k| k.user(uid).with_sasl(operator_login(ctx, cluster, uid)))
}

fn connect_string(cluster: &ValidatedCluster, replicas: u32) -> String {
    member_addresses(
        &cluster.name,
        &cluster.namespace,
        &cluster.spec.cluster_domain,
        cluster.spec.ports.client as u16,
        replicas,
    )
    .into_iter()
    .map(|(_, a)| a.to_string())
    .collect::<Vec<_>>()
    .join(",")
}

/// Reads the committed configuration (when a member is Ready) and decides the pods: every
/// committed server plus the one joiner being added, and what a pod with no configuration of
/// its own boots with. A new cluster boots every member of the spec together; while the
/// configuration cannot be read, what runs stays as it is.
pub async fn prepare(
    ctx: &Context,
    cluster: &ValidatedCluster,
    uid: &str,
    tls: Option<&ClientTls>,
    running: Option<StatefulSet>,
) -> Result<Prepared, Error> {
    let digest = super_user(ctx, cluster, uid).map(|u| u.digest());
    let Some(sts) = running else {
        return Ok(Prepared {
            members: Members::initial(cluster, digest),
            committed: None,
            statefulset: None,
        });
    };
    let running = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let ready = sts
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let committed = if ready > 0 {
        match ctx
            .zookeeper
            .committed(
                connect_string(cluster, running.max(0) as u32),
                tls.cloned(),
                operator_login(ctx, cluster, uid),
            )
            .await
        {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::info!(error = %e, "membership: cannot read the committed configuration; keeping what runs");
                None
            }
        }
    } else {
        None
    };
    let Some(committed) = committed else {
        return Ok(Prepared {
            members: Members {
                replicas: running,
                boot: running_boot(cluster, &sts),
                super_digest: digest,
                joiner: None,
                services_select_in_service: members::services_select_in_service(&sts),
            },
            committed: None,
            statefulset: Some(sts),
        });
    };
    let run = members_to_run(&committed, &members::desired(cluster));
    let (highest, boot) = run
        .iter()
        .next_back()
        .map(|(id, boot)| (id.0 as i32, boot.clone()))
        .unwrap_or((running, committed.clone()));
    let joiner = run
        .keys()
        .find(|id| !committed.servers.contains_key(id))
        .copied();
    Ok(Prepared {
        members: Members {
            replicas: highest,
            boot,
            super_digest: digest,
            joiner,
            services_select_in_service: members::services_select_in_service(&sts),
        },
        committed: Some(committed),
        statefulset: Some(sts),
    })
}

/// What a member with no configuration of its own boots with while the committed one cannot be
/// read: the servers the StatefulSet runs, as version 0. Ids are contiguous, so that is also the
/// joiner's boot of a change under way; any member that learned a configuration keeps its own.
fn running_boot(cluster: &ValidatedCluster, sts: &StatefulSet) -> CommittedConfig {
    let running = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    CommittedConfig {
        servers: members::desired_of(cluster, running.max(1) as u32).servers,
        version: ConfigVersion(0),
    }
}

/// Adds what only the committed configuration knows to `status`: its version and each
/// member's role in it.
pub fn annotate(
    status: &mut ZookeeperClusterStatus,
    prepared: &Prepared,
    cluster: &ValidatedCluster,
) {
    let Some(committed) = &prepared.committed else {
        return;
    };
    status.config_version = Some(committed.version.to_string());
    let desired = members::desired(cluster);
    for m in &mut status.members {
        let id = ServerId::of(Ordinal(m.ordinal.max(0) as u32));
        let role = match committed.servers.get(&id) {
            Some(_) if !desired.servers.contains_key(&id) => "leaving",
            Some(s) if s.is_voter() => "participant",
            Some(_) => "observer",
            None => "joining",
        };
        m.role = Some(role.to_string());
    }
}

/// Whether the rollout may act although the planner waits: nothing is to change in the
/// membership, and a member that serves answers with no configuration this operator can read.
/// That is a member of a cluster from before dynamic membership (static server list, reconfig
/// off: its `server.N=` entries carry no client address); it learns no configuration until the
/// rollout restarts it with the current template, so holding the rollout for it would wait
/// forever once the committed configuration is read through a member that already runs it.
/// The same holds while a member's new client address waits for the roll that brings it.
fn rollout_may_act(w: &Waiting) -> bool {
    w.change.is_none()
        && matches!(
            w.reason,
            WaitReason::ConfigNotLearned { has: None, .. } | WaitReason::RollBeforeReaddress(_)
        )
}

/// Whether a member's new client address waits to be committed (TLS turned on): the pass that
/// finds the roll complete commits it, and no watch event may come then, so the cluster is
/// looked at again soon rather than at the steady resync.
pub fn readdress_pending(cluster: &ValidatedCluster, prepared: &Prepared) -> bool {
    let Some(committed) = prepared.committed.as_ref() else {
        return false;
    };
    let desired = members::desired(cluster);
    committed.servers.values().any(|c| {
        desired
            .servers
            .get(&c.id)
            .is_some_and(|d| d != c && d.same_quorum_addresses(c))
    })
}

/// What the rollout needs to hand the leader's leadership off before it restarts the leader
/// ([`crate::membership::handoff`]): this pass's committed configuration and how to reach the
/// members as the super user.
#[derive(Clone)]
pub struct Handoff {
    committed: CommittedConfig,
    connect: String,
    user: SuperUser,
    tls: Option<ClientTls>,
    login: Option<SaslLogin>,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Handoff {{ version: {} }}", self.committed.version)
    }
}

/// The handoff of this pass, when the committed configuration was read and the operator can
/// reconfigure; `None` leaves the leader's restart to an election, as without reconfiguration.
pub fn handoff(
    ctx: &Context,
    cluster: &ValidatedCluster,
    uid: &str,
    prepared: &Prepared,
    tls: Option<&ClientTls>,
) -> Option<Handoff> {
    let committed = prepared.committed.clone()?;
    let user = super_user(ctx, cluster, uid)?;
    let highest = committed.servers.keys().next_back().map_or(0, |s| s.0);
    Some(Handoff {
        connect: connect_string(cluster, highest),
        user,
        tls: tls.cloned(),
        login: operator_login(ctx, cluster, uid),
        committed,
    })
}

impl Handoff {
    /// Makes the leader at `ordinal` an observer by one `reconfig` guarded by the version this
    /// pass read: its leadership passes to a synced follower without an election. Returns the
    /// configuration committed, `Ok(None)` when there is nothing to hand off (not a voter, or
    /// the only one), or why it failed (the restart then goes on: an election follows, as
    /// without a handoff, and the next pass makes the member a voter again if it was done).
    pub async fn hand_off(
        &self,
        ctx: &Context,
        ordinal: Ordinal,
    ) -> Result<Option<CommittedConfig>, ReconfigError> {
        let Some(observer) = crate::membership::handoff(&self.committed, ServerId::of(ordinal))
        else {
            return Ok(None);
        };
        reconfigure(
            ctx,
            self.connect.clone(),
            self.user.clone(),
            &MembershipStep::Add(observer),
            self.committed.version,
            self.tls.as_ref(),
            self.login.clone(),
        )
        .await
        .map(Some)
    }
}

/// Sends `step` guarded by `expected`. The answer can be lost although the change was
/// committed: removing the leader ends the session that sent it, and a handoff makes every
/// follower drop its clients. So a failure is checked by reading the configuration again.
async fn reconfigure(
    ctx: &Context,
    connect: String,
    user: SuperUser,
    step: &MembershipStep,
    expected: ConfigVersion,
    tls: Option<&ClientTls>,
    login: Option<SaslLogin>,
) -> Result<CommittedConfig, ReconfigError> {
    let sent = ctx
        .zookeeper
        .reconfigure(connect.clone(), user, step.clone(), expected, tls.cloned())
        .await;
    let Err(e) = sent else {
        return sent;
    };
    match ctx.zookeeper.committed(connect, tls.cloned(), login).await {
        Ok(now) if now.version != expected && applied(step, &now) => {
            tracing::info!(error = %e, "reconfig: the answer was lost, the change is committed");
            Ok(now)
        }
        _ => Err(e),
    }
}

/// Whether `config` carries out `step`: the added server is in it, the removed one is not.
fn applied(step: &MembershipStep, config: &CommittedConfig) -> bool {
    match step {
        MembershipStep::Add(s) => config.servers.get(&s.id) == Some(s),
        MembershipStep::Readdress(servers) => {
            servers.iter().all(|s| config.servers.get(&s.id) == Some(s))
        }
        MembershipStep::Remove(id) => !config.servers.contains_key(id),
        MembershipStep::Done | MembershipStep::Wait(_) => false,
    }
}

/// A membership change under way, for status and requeue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scaling {
    /// A step was sent and committed.
    Stepped(String),
    /// Waiting (and why).
    Waiting(Waiting),
    /// The step failed; it is tried again.
    Failed(String),
}

impl Scaling {
    /// `ScalingUp` or `ScalingDown`; `Reconfiguring` for a change of client addresses.
    pub fn reason(&self, committed: usize, desired: usize) -> &'static str {
        let readdressing = match self {
            Scaling::Waiting(w) => matches!(
                w.change,
                Some(Change::Readdressing(_) | Change::Promoting(_))
            ),
            Scaling::Stepped(s) | Scaling::Failed(s) => {
                s.contains("client address") || s.contains("a voter again")
            }
        };
        if readdressing {
            reason::RECONFIGURING
        } else if desired >= committed {
            reason::SCALING_UP
        } else {
            reason::SCALING_DOWN
        }
    }

    /// The condition message.
    pub fn message(&self) -> String {
        match self {
            Scaling::Stepped(s) => format!("{s}; checking the ensemble before the next step"),
            Scaling::Waiting(w) => w.to_string(),
            Scaling::Failed(e) => format!("{e}; retrying"),
        }
    }
}

/// Carries out at most one step towards the spec's membership; `None` when the committed
/// configuration is the desired one (or could not be read) and the rollout may act.
#[allow(clippy::too_many_arguments)] // one pass's inputs, each of them used here
pub async fn step(
    ctx: &Context,
    id: &ClusterId,
    cluster: &ValidatedCluster,
    uid: &str,
    prepared: &Prepared,
    statefulset: &StatefulSet,
    probes: &[MemberProbe],
    tls: Option<&ClientTls>,
) -> Option<(Scaling, usize, usize)> {
    let committed = prepared.committed.as_ref()?;
    let desired = members::desired(cluster);
    let sizes = (committed.servers.len(), desired.servers.len());
    let run = members_to_run(committed, &desired);
    let addresses: Vec<(ServerId, MemberAddress)> = run
        .keys()
        .map(|sid| {
            let o: Ordinal = sid.ordinal();
            (
                *sid,
                MemberAddress::ordinal_dns(
                    &cluster.name,
                    o,
                    &cluster.namespace,
                    &cluster.spec.cluster_domain,
                    cluster.spec.ports.client as u16,
                ),
            )
        })
        .map(|(sid, a)| match tls {
            Some(tls) => (sid, a.with_tls(tls.clone())),
            None => (sid, a),
        })
        .map(|(sid, a)| (sid, a.with_sasl(operator_login(ctx, cluster, uid))))
        .collect();
    let versions = ctx.zookeeper.versions(addresses).await;
    let mut health = Health::from_probes(probes, versions);
    // The StatefulSet as this pass applied it: a template changed by this very pass (the last
    // step of turning TLS on) is not rolled yet, whatever the one read before said.
    health.template_rolled = members::template_rolled(statefulset);
    let step = next_step(committed, &desired, &health);
    let change = match &step {
        MembershipStep::Done => return None,
        MembershipStep::Wait(w) if rollout_may_act(w) => return None,
        MembershipStep::Wait(w) => return Some((Scaling::Waiting(w.clone()), sizes.0, sizes.1)),
        MembershipStep::Readdress(servers) => {
            Change::Readdressing(servers.iter().map(|s| desired.name(s.id)).collect())
        }
        MembershipStep::Add(s) if committed.servers.contains_key(&s.id) => {
            Change::Promoting(desired.name(s.id))
        }
        MembershipStep::Add(s) => Change::Adding(desired.name(s.id)),
        MembershipStep::Remove(sid) => Change::Removing(desired.name(*sid)),
    };
    let Some(user) = super_user(ctx, cluster, uid) else {
        let note = format!(
            "{change}: the operator has no super-user key (it reads it from its Secret at start), so it cannot reconfigure"
        );
        return Some((Scaling::Failed(note), sizes.0, sizes.1));
    };
    if let Some(fence) = &ctx.fence
        && !fence.holds()
    {
        return Some((
            Scaling::Failed(format!("{change}: this replica no longer leads")),
            sizes.0,
            sizes.1,
        ));
    }
    let connect = connect_string(cluster, run.keys().next_back().map_or(0, |s| s.0));
    let login = operator_login(ctx, cluster, uid);
    let result = reconfigure(ctx, connect, user, &step, committed.version, tls, login).await;
    match result {
        Ok(now) => {
            let (reason, verb) = match change {
                Change::Adding(_) => (reason::MEMBER_ADDED, "Reconfigure"),
                Change::Removing(_) => (reason::MEMBER_REMOVED, "Reconfigure"),
                Change::Readdressing(_) => (reason::CLIENT_ADDRESS_COMMITTED, "Reconfigure"),
                Change::Promoting(_) => (reason::MEMBER_PROMOTED, "Reconfigure"),
            };
            let done = match &change {
                Change::Adding(m) => format!("added {m}"),
                Change::Removing(m) => format!("removed {m}"),
                Change::Promoting(m) => format!("made {m} a voter again"),
                Change::Readdressing(m) => format!(
                    "committed the new client addresses of {}",
                    m.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let note = format!(
                "{done}: configuration version {} has {} servers",
                now.version,
                now.servers.len()
            );
            tracing::info!(%note, "membership step committed");
            ctx.publish(id, EventType::Normal, reason, verb, note.clone())
                .await;
            Some((Scaling::Stepped(note), sizes.0, sizes.1))
        }
        Err(e) => {
            tracing::warn!(error = %e, "membership step failed");
            let note = format!("{change}: {e}");
            ctx.publish(
                id,
                EventType::Warning,
                reason::RECONFIG_FAILED,
                "Reconfigure",
                note.clone(),
            )
            .await;
            Some((Scaling::Failed(note), sizes.0, sizes.1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{DesiredMembership, MemberPorts};

    fn config(ids: u32, version: i64) -> CommittedConfig {
        let d = DesiredMembership::new(
            "zk",
            ids,
            MemberPorts {
                client: 2181,
                quorum: 2888,
                election: 3888,
            },
            |o| format!("zk-{}.zk-hs", o.0),
            |_| None,
        );
        CommittedConfig {
            servers: d.servers,
            version: ConfigVersion(version),
        }
    }

    #[test]
    fn the_operator_login_is_stable_per_cluster_and_not_the_super_password() {
        let key = SuperKey::new(b"0123456789abcdef0123").unwrap();
        let a = key.operator_login("uid-a");
        assert_eq!(a.user, crate::names::OPERATOR_USER);
        assert_eq!(a, key.operator_login("uid-a"));
        assert_ne!(a.password(), key.operator_login("uid-b").password());
        assert_eq!(a.password().len(), 64);
        assert!(!key.user("uid-a").credentials().contains(a.password()));
        assert!(!format!("{a:?}").contains(a.password()));
    }

    #[test]
    fn a_static_member_does_not_hold_the_rollout_that_restarts_it() {
        use crate::health::MemberName;
        let not_learned = |has| WaitReason::ConfigNotLearned {
            member: MemberName::new("zk", Ordinal(2)),
            has,
            wants: ConfigVersion(0),
        };
        let waiting = |change, reason| Waiting { change, reason };
        // Nothing to change, a member whose configuration cannot be read: the rollout acts.
        assert!(rollout_may_act(&waiting(None, not_learned(None))));
        // A member that lags behind a committed change, or a change under way: it waits.
        assert!(!rollout_may_act(&waiting(
            None,
            not_learned(Some(ConfigVersion(0x100000003)))
        )));
        assert!(!rollout_may_act(&waiting(
            Some(Change::Adding(MemberName::new("zk", Ordinal(3)))),
            not_learned(None)
        )));
        assert!(!rollout_may_act(&waiting(None, WaitReason::NoLeader)));
        // What the planner says in the middle of a migration: two members restarted with the
        // current template answer with the configuration, the static leader with none.
        let three = config(3, 0);
        let desired = DesiredMembership {
            cluster: "zk".to_string(),
            servers: three.servers.clone(),
        };
        let health = Health {
            modes: BTreeMap::from([
                (ServerId(1), crate::health::Mode::Follower),
                (ServerId(2), crate::health::Mode::Follower),
                (ServerId(3), crate::health::Mode::Leader),
            ]),
            config_versions: BTreeMap::from([
                (ServerId(1), ConfigVersion(0)),
                (ServerId(2), ConfigVersion(0)),
            ]),
            synced_voting_followers: Some(2),
            synced_non_voting_followers: Some(0),
            template_rolled: true,
        };
        match next_step(&three, &desired, &health) {
            MembershipStep::Wait(w) => assert!(rollout_may_act(&w), "{w}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_lost_answer_counts_as_done_only_when_the_config_shows_the_change() {
        let three = config(3, 0x100000003);
        let two = config(2, 0x100000009);
        let joiner = three.servers[&ServerId(3)].clone();
        assert!(applied(&MembershipStep::Remove(ServerId(3)), &two));
        assert!(!applied(&MembershipStep::Remove(ServerId(3)), &three));
        assert!(applied(&MembershipStep::Add(joiner.clone()), &three));
        assert!(!applied(&MembershipStep::Add(joiner), &two));
        assert!(!applied(&MembershipStep::Done, &three));
    }
}
