//! Membership through ZooKeeper's dynamic reconfiguration: the committed configuration, the
//! desired one, and a pure planner that moves the first towards the second one server at a
//! time.
//!
//! ZooKeeper keeps the membership in its own replicated state (`/zookeeper/config`); the
//! operator never rewrites a running member's server list. It reads the committed
//! configuration ([`CommittedConfig`]), compares it with the desired one ([`DesiredMembership`],
//! ids `1..=replicas`), and [`next_step`] answers with one step: add one server, remove one
//! server, wait (and why), or nothing to do. [`crate::reconfig`] carries the step out with
//! `reconfig`, guarded by the configuration version it read, so a retry or a second operator
//! that read an older version fails instead of racing.
//!
//! Safety rests on one invariant, kept by construction and checked by property tests: the
//! voters of the committed configuration are a majority of every configuration proposed or
//! booted, so every quorum of the new configuration meets every quorum of the old one and no
//! step can create a second quorum. One server per step is what keeps it. The single exception
//! to a strict majority is growing from one voter to two: the old voter is exactly half of the
//! new configuration, whose only quorum (both servers) still contains it; the property tests
//! check quorum intersection itself, which holds in every case.
//!
//! Nothing is remembered between passes. Every pass re-reads the committed configuration, so a
//! change the operator began before it was killed is finished (or found finished) by the next
//! pass: a joiner that runs but was never added is added; a removed server that still runs is
//! stopped, because [`members_to_run`] no longer lists it.
//!
//! # Decisions for the Kubernetes wiring
//!
//! - **Servers.** Every member runs with `reconfigEnabled=true` and `standaloneEnabled=false`;
//!   the static `zoo.cfg` holds no `server.N` line, only `dynamicConfigFile=` pointing at the
//!   dynamic file. A 1-member ensemble is then a quorum of one that can grow.
//! - **Where the dynamic file lives.** On the member's data volume, next to `zoo.cfg`
//!   (`/data/conf/zoo.cfg` and `/data/conf/zoo.cfg.dynamic.<version>`), not in a ConfigMap:
//!   ZooKeeper itself writes a new dynamic file and rewrites the `dynamicConfigFile=` line of
//!   `zoo.cfg` on every reconfiguration it commits, so both must be writable and persistent; a
//!   restarted member then boots with the last configuration it learned, and the leader brings
//!   it up to date from there. The version is the file name's suffix
//!   ([`CommittedConfig::dynamic_file_name`]); a `version=` line inside is refused.
//! - **How a joining pod learns the committed configuration.** The operator publishes the
//!   joiner's boot configuration from [`members_to_run`] in the cluster's ConfigMap: the
//!   committed servers plus the one server being added, as version 0
//!   ([`CommittedConfig::joiner_boot`] says why). A pod whose volume has no dynamic file
//!   naming itself copies it from there (as `zoo.cfg.dynamic.0`) before ZooKeeper starts, and
//!   the start script refuses to start when its own `server.<myid>` line is missing, so a
//!   member never boots with a configuration that lacks itself. The StatefulSet is scaled to
//!   the highest id [`members_to_run`] lists, so only one joiner exists at a time. A first
//!   member of a new cluster boots with a configuration of itself alone.
//! - **A joiner restarted before it is added.** Once synced, a joiner has written the
//!   committed configuration (without itself) to its volume, and ZooKeeper refuses to start
//!   from it ("My id N not in the peer list"). So the start script's rule is: use the dynamic
//!   file `zoo.cfg` names only if it names this server; otherwise write the published joiner
//!   configuration again and point `dynamicConfigFile=` at it. Proven by
//!   `tests/membership_real.rs`.
//! - **A removed server's volume.** Its data is never reused: the pod is deleted after the
//!   removal is committed and its PVC deleted with it (a later regrowth must start empty and
//!   sync from the leader; a stale `zoo.cfg.dynamic` naming an old configuration and an old
//!   `currentEpoch` would otherwise come back with it).
//! - **The super user.** Reconfiguration needs write rights on `/zookeeper/config`; `skipACL`
//!   is never used. The operator keeps a per-cluster Secret it owns (`<name>-super`, a random
//!   `password` and the derived `digest`, see [`crate::reconfig::SuperUser`]). Pods get only
//!   the digest, through an environment variable from that Secret, passed to the JVM as
//!   `-Dzookeeper.DigestAuthenticationProvider.superDigest=super:<digest>`; the password
//!   never leaves the operator, which authenticates as `digest` `super:<password>`. With
//!   `spec.clientAuth` a digest session is closed (only SASL satisfies `enforce.auth`), so the
//!   operator also logs in with SASL as `zookeeper-operator`, the members'
//!   `zookeeper.superUser` (see [`crate::client_auth`]).
//! - **Health inputs.** [`Health::from_probes`] takes the health component's `srvr`/`mntr`
//!   probes of every member to run plus each member's own answer to `get_config` (its config
//!   version), so the planner waits until a change has reached every serving member.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::health::{MemberName, MemberProbe, Mode, Ordinal};

/// A ZooKeeper server id (`myid`). Member `<name>-<ordinal>` has id `ordinal + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId(pub u32);

impl ServerId {
    /// The id of the member with this StatefulSet ordinal.
    pub fn of(ordinal: Ordinal) -> Self {
        Self(ordinal.0 + 1)
    }

    /// The StatefulSet ordinal of this server.
    pub fn ordinal(self) -> Ordinal {
        Ordinal(self.0.saturating_sub(1))
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The version of a configuration: the zxid that committed it (`version=` in hex).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigVersion(pub i64);

impl fmt::Display for ConfigVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:x}", self.0)
    }
}

/// Whether a server votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Votes.
    Participant,
    /// Follows without voting.
    Observer,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Participant => "participant",
            Role::Observer => "observer",
        }
    }
}

/// One `server.N=` entry of a dynamic configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerSpec {
    /// `N`.
    pub id: ServerId,
    /// Host of the quorum and election ports.
    pub host: String,
    /// Follower-to-leader port (2888).
    pub quorum_port: u16,
    /// Leader-election port (3888).
    pub election_port: u16,
    /// Whether it votes.
    pub role: Role,
    /// The client address the server binds; `None` is every address (`0.0.0.0`).
    pub client_address: Option<String>,
    /// Client port (2181).
    pub client_port: u16,
}

impl ServerSpec {
    /// Whether `other` is this server with the same quorum and election addresses and role
    /// (its client address may differ).
    pub fn same_quorum_addresses(&self, other: &ServerSpec) -> bool {
        (
            self.id,
            &self.host,
            self.quorum_port,
            self.election_port,
            self.role,
        ) == (
            other.id,
            &other.host,
            other.quorum_port,
            other.election_port,
            other.role,
        )
    }

    /// The value after `server.N=`, as `reconfig -add` and the dynamic file take it:
    /// `host:2888:3888:participant;[address:]2181`.
    pub fn value(&self) -> String {
        let client = match &self.client_address {
            Some(a) => format!("{a}:{}", self.client_port),
            None => self.client_port.to_string(),
        };
        format!(
            "{}:{}:{}:{};{client}",
            self.host,
            self.quorum_port,
            self.election_port,
            self.role.as_str()
        )
    }

    /// The whole `server.N=...` line.
    pub fn line(&self) -> String {
        format!("server.{}={}", self.id, self.value())
    }

    /// Whether it votes.
    pub fn is_voter(&self) -> bool {
        self.role == Role::Participant
    }

    fn parse(id: ServerId, value: &str) -> Result<Self, ParseConfigError> {
        let bad = |why: &str| ParseConfigError::Server {
            id,
            value: value.to_string(),
            why: why.to_string(),
        };
        let (server, client) = value.split_once(';').ok_or_else(|| bad("no client port"))?;
        // An IPv6 host would be bracketed; ZooKeeper members here are named by DNS or IPv4.
        let mut parts = server.trim().split(':');
        let host = parts
            .next()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let port = |p: Option<&str>, what: &str| -> Result<u16, ParseConfigError> {
            p.and_then(|p| p.trim().parse().ok())
                .ok_or_else(|| bad(&format!("bad {what} port")))
        };
        let quorum_port = port(parts.next(), "quorum")?;
        let election_port = port(parts.next(), "election")?;
        let role = match parts.next().map(str::trim) {
            None | Some("participant") => Role::Participant,
            Some("observer") => Role::Observer,
            Some(_) => return Err(bad("unknown role")),
        };
        if parts.next().is_some() {
            return Err(bad("too many fields"));
        }
        let client = client.trim();
        let (client_address, client_port) = match client.rsplit_once(':') {
            Some((a, p)) => (Some(a.to_string()), p),
            None => (None, client),
        };
        let client_port = port(Some(client_port), "client")?;
        Ok(Self {
            id,
            host: host.to_string(),
            quorum_port,
            election_port,
            role,
            // 0.0.0.0 is what ZooKeeper prints for "every address".
            client_address: client_address.filter(|a| a != "0.0.0.0"),
            client_port,
        })
    }
}

/// Why a configuration text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseConfigError {
    /// A line is not `key=value`.
    #[error("line {line:?} is not key=value")]
    Line {
        /// The line.
        line: String,
    },
    /// A `server.N=` entry does not parse.
    #[error("server.{id}={value:?}: {why}")]
    Server {
        /// N.
        id: ServerId,
        /// The value.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// `version=` is not hexadecimal.
    #[error("version {0:?} is not hexadecimal")]
    Version(String),
    /// No `version=` line.
    #[error("the configuration has no version")]
    NoVersion,
    /// No server at all.
    #[error("the configuration names no server")]
    NoServer,
    /// A key this operator does not manage (hierarchical quorums: `group.`, `weight.`).
    #[error("unsupported configuration key {0:?} (only majority quorums are managed)")]
    Unsupported(String),
}

/// The configuration ZooKeeper committed, as `get_config` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedConfig {
    /// Every server, voters and observers.
    pub servers: BTreeMap<ServerId, ServerSpec>,
    /// Its version.
    pub version: ConfigVersion,
}

impl CommittedConfig {
    /// Parses `server.N=...` lines and `version=...`.
    pub fn parse(text: &str) -> Result<Self, ParseConfigError> {
        let mut servers = BTreeMap::new();
        let mut version = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (key, value) = line.split_once('=').ok_or_else(|| ParseConfigError::Line {
                line: line.to_string(),
            })?;
            let key = key.trim();
            if key == "version" {
                let v = i64::from_str_radix(value.trim(), 16)
                    .map_err(|_| ParseConfigError::Version(value.to_string()))?;
                version = Some(ConfigVersion(v));
            } else if let Some(n) = key.strip_prefix("server.") {
                let id = n
                    .parse()
                    .map(ServerId)
                    .map_err(|_| ParseConfigError::Line {
                        line: line.to_string(),
                    })?;
                servers.insert(id, ServerSpec::parse(id, value)?);
            } else {
                return Err(ParseConfigError::Unsupported(key.to_string()));
            }
        }
        if servers.is_empty() {
            return Err(ParseConfigError::NoServer);
        }
        Ok(Self {
            servers,
            version: version.ok_or(ParseConfigError::NoVersion)?,
        })
    }

    /// The voting servers.
    pub fn voters(&self) -> BTreeSet<ServerId> {
        self.servers
            .values()
            .filter(|s| s.is_voter())
            .map(|s| s.id)
            .collect()
    }

    /// The text of the dynamic configuration file: one `server.N=` line per server. ZooKeeper
    /// refuses a `version=` line there; the version is the file name's suffix
    /// ([`Self::dynamic_file_name`]).
    pub fn dynamic_file(&self) -> String {
        self.servers
            .values()
            .map(|s| format!("{}\n", s.line()))
            .collect()
    }

    /// The dynamic file's name next to the static configuration `static_file` (`zoo.cfg` ->
    /// `zoo.cfg.dynamic.100000003`), the name ZooKeeper itself gives the files it writes and
    /// from which it reads the version back.
    pub fn dynamic_file_name(&self, static_file: &str) -> String {
        format!("{static_file}.dynamic.{:x}", self.version.0)
    }

    /// This configuration with `server` added (or replaced), at the same version.
    pub fn with(&self, server: &ServerSpec) -> Self {
        let mut next = self.clone();
        next.servers.insert(server.id, server.clone());
        next
    }

    /// What `joiner` boots with: this configuration plus itself, at version 0.
    ///
    /// The version is older than anything committed on purpose. In leader election the joiner
    /// then adopts the leader's newer configuration, finds itself outside it and follows as a
    /// non-voting participant (ZooKeeper's own path for joiners). With the committed version it
    /// would keep its own configuration and wait for a quorum of it to follow the leader,
    /// which never happens when one voter grows to two: that voter is only half of it.
    pub fn joiner_boot(&self, joiner: &ServerSpec) -> Self {
        let mut boot = self.with(joiner);
        boot.version = ConfigVersion(0);
        boot
    }
}

/// The membership the spec asks for: participants `1..=replicas`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredMembership {
    /// The cluster (StatefulSet) name, for member names in messages.
    pub cluster: String,
    /// Every desired server.
    pub servers: BTreeMap<ServerId, ServerSpec>,
}

/// The ports every member uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberPorts {
    /// Client port.
    pub client: u16,
    /// Follower-to-leader port.
    pub quorum: u16,
    /// Leader-election port.
    pub election: u16,
}

impl DesiredMembership {
    /// Participants for ordinals `0..replicas`; `host` names each member (its ordinal DNS
    /// name), `client_address` is the address its client port binds (`None`: every address).
    pub fn new(
        cluster: &str,
        replicas: u32,
        ports: MemberPorts,
        host: impl Fn(Ordinal) -> String,
        client_address: impl Fn(Ordinal) -> Option<String>,
    ) -> Self {
        let servers = (0..replicas)
            .map(|i| {
                let o = Ordinal(i);
                let id = ServerId::of(o);
                let spec = ServerSpec {
                    id,
                    host: host(o),
                    quorum_port: ports.quorum,
                    election_port: ports.election,
                    role: Role::Participant,
                    client_address: client_address(o),
                    client_port: ports.client,
                };
                (id, spec)
            })
            .collect();
        Self {
            cluster: cluster.to_string(),
            servers,
        }
    }

    /// The pod name of server `id`.
    pub fn name(&self, id: ServerId) -> MemberName {
        MemberName::new(&self.cluster, id.ordinal())
    }
}

/// What the members say, gathered once per pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Each probed server's mode (`Unreachable` when it does not serve).
    pub modes: BTreeMap<ServerId, Mode>,
    /// Each serving server's own answer to `get_config`.
    pub config_versions: BTreeMap<ServerId, ConfigVersion>,
    /// The leader's count of synced voting followers.
    pub synced_voting_followers: Option<u32>,
    /// The leader's count of synced non-voting followers (joiners not yet added).
    pub synced_non_voting_followers: Option<u32>,
    /// Every member runs the StatefulSet's current pod template and is Ready. A member's new
    /// client address is committed only then: a member that still runs the template before
    /// would move its client port at once (ZooKeeper rebinds it when the committed line changes).
    pub template_rolled: bool,
}

impl Health {
    /// Builds the planner's input from the health component's probes (ordinal `o` is server
    /// `o + 1`; the leader's `mntr` gives the sync counts) and each member's config version.
    pub fn from_probes(
        probes: &[MemberProbe],
        config_versions: BTreeMap<ServerId, ConfigVersion>,
    ) -> Self {
        let mut health = Self {
            config_versions,
            ..Self::default()
        };
        for p in probes {
            let mode = p.srvr.serving().map_or(Mode::Unreachable, |s| s.mode);
            health.modes.insert(ServerId::of(p.ordinal), mode);
            if mode == Mode::Leader
                && let Some(m) = p.mntr.as_ref().and_then(|m| m.serving())
            {
                let non_voting = m.synced_non_voting_followers().unwrap_or(0);
                health.synced_voting_followers =
                    m.synced_followers().map(|n| n.saturating_sub(non_voting));
                health.synced_non_voting_followers = Some(non_voting);
            }
        }
        health
    }

    fn mode(&self, id: ServerId) -> Mode {
        self.modes.get(&id).copied().unwrap_or(Mode::Unreachable)
    }

    fn serves(&self, id: ServerId) -> bool {
        matches!(self.mode(id), Mode::Leader | Mode::Follower)
    }
}

/// The change under way, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Adding this member.
    Adding(MemberName),
    /// Removing this member.
    Removing(MemberName),
    /// Committing these members' new client addresses (their quorum addresses and roles stay).
    Readdressing(Vec<MemberName>),
    /// Making this member, an observer since it handed its leadership off, a voter again.
    Promoting(MemberName),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Adding(m) => write!(f, "adding {m}"),
            Change::Removing(m) => write!(f, "removing {m}"),
            Change::Promoting(m) => write!(f, "making {m} a voter again"),
            Change::Readdressing(m) => write!(
                f,
                "committing the client addresses of {}",
                m.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Why the planner waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitReason {
    /// A member that must serve does not.
    NotServing(MemberName),
    /// No single leader among the voters.
    NoLeader,
    /// The leader counts fewer synced voting followers than serve.
    FollowersNotSynced {
        /// The leader's count.
        synced: Option<u32>,
        /// Voting followers that serve.
        expected: u32,
    },
    /// A serving member has not learned the committed configuration yet.
    ConfigNotLearned {
        /// The member.
        member: MemberName,
        /// What it reports.
        has: Option<ConfigVersion>,
        /// The committed version.
        wants: ConfigVersion,
    },
    /// The joiner does not serve as a non-voting follower yet, or the leader does not count it
    /// synced.
    JoinerNotSynced,
    /// A member's client address changes (a member restarted with the new address writes it
    /// into its own line of the configuration it boots from); it is committed once every
    /// member runs the current pod template. The rollout goes on meanwhile.
    RollBeforeReaddress(MemberName),
    /// A committed server differs from the desired one with the same id in its quorum
    /// addresses or role: the operator does not change those.
    AddressChanged {
        /// The member.
        member: MemberName,
        /// Its committed entry.
        committed: String,
        /// Its desired entry.
        desired: String,
    },
}

/// The planner waits: for what, during which change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// The change under way, if any.
    pub change: Option<Change>,
    /// What it waits for.
    pub reason: WaitReason,
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = &self.change {
            write!(f, "{c}: ")?;
        }
        match &self.reason {
            WaitReason::NotServing(m) => write!(f, "waiting for {m} to serve"),
            WaitReason::NoLeader => write!(f, "waiting for a single leader"),
            WaitReason::FollowersNotSynced { synced, expected } => match synced {
                Some(n) => write!(
                    f,
                    "waiting for the leader to count {expected} synced followers (it counts {n})"
                ),
                None => write!(
                    f,
                    "waiting for the leader to count {expected} synced followers"
                ),
            },
            WaitReason::ConfigNotLearned { member, has, wants } => match has {
                Some(v) => write!(
                    f,
                    "waiting for {member} to learn config version {wants} (it has {v})"
                ),
                None => write!(f, "waiting for {member} to learn config version {wants}"),
            },
            WaitReason::JoinerNotSynced => {
                write!(f, "waiting for it to sync as a non-voting follower")
            }
            WaitReason::RollBeforeReaddress(member) => write!(
                f,
                "waiting for every member to run the current pod template before committing \
                 the new client address of {member}"
            ),
            WaitReason::AddressChanged {
                member,
                committed,
                desired,
            } => write!(
                f,
                "{member} is committed as {committed} but desired as {desired}; \
                 changing a member's quorum addresses or role is not supported"
            ),
        }
    }
}

/// One step towards the desired membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipStep {
    /// The committed configuration is the desired one and every serving member knows it.
    Done,
    /// `reconfig -add` this server.
    Add(ServerSpec),
    /// `reconfig -remove` this server.
    Remove(ServerId),
    /// `reconfig -add` of these servers' new lines, all in one change: only their client
    /// addresses differ, the voters stay. All at once because a member that runs with its new
    /// address moves its client port back to the one a configuration names for it: a change
    /// that still named the old address of a member not yet changed would move that member's
    /// port away from where it serves.
    Readdress(Vec<ServerSpec>),
    /// Nothing to do safely now.
    Wait(Waiting),
}

/// The change the committed and desired configurations call for, before health is looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pending {
    None,
    Add(ServerSpec),
    /// Ids to remove, highest first.
    Remove(Vec<ServerId>),
    /// Only client addresses differ: commit the desired lines.
    Readdress(Vec<ServerSpec>),
    /// A desired voter is committed as an observer (it handed its leadership off before its
    /// restart): commit its participant line.
    Promote(ServerSpec),
    Mismatch(ServerId),
}

/// Whether `committed` is `desired` as an observer (its client address aside): the line a
/// leader's handoff leaves.
fn demoted(committed: &ServerSpec, desired: &ServerSpec) -> bool {
    committed.role == Role::Observer
        && desired.role == Role::Participant
        && promoted(committed).same_quorum_addresses(desired)
}

/// `committed` as a voter, its client address as committed: a client address waiting to be
/// committed stays for [`MembershipStep::Readdress`], which changes every line at once.
fn promoted(committed: &ServerSpec) -> ServerSpec {
    ServerSpec {
        role: Role::Participant,
        ..committed.clone()
    }
}

/// The line that hands `leader`'s leadership off: the same server as an observer.
///
/// A `reconfig` whose new configuration has the leader as a non-voter makes ZooKeeper's leader
/// designate a synced voter as its successor: every follower follows it at once, without a
/// leader election, and the old leader goes on as an observer. Restarting the leader after that
/// costs its clients a reconnect and the others a resync, not an election (see
/// `tests/handoff_real.rs`). The safety is a removal's: the voters left are a majority of those
/// before. `None` when `leader` is not a committed voter, or when fewer than two voters would
/// be left: an observer does not acknowledge proposals, so making it a voter again needs a
/// quorum of the new configuration without it, which one voter alone is not (a two-member
/// ensemble restarts its leader with an election, as it did before handoffs).
pub fn handoff(committed: &CommittedConfig, leader: ServerId) -> Option<ServerSpec> {
    let spec = committed.servers.get(&leader).filter(|s| s.is_voter())?;
    (committed.voters().len() >= 3).then(|| ServerSpec {
        role: Role::Observer,
        ..spec.clone()
    })
}

fn pending(committed: &CommittedConfig, desired: &DesiredMembership) -> Pending {
    let differ: Vec<(&ServerSpec, &ServerSpec)> = committed
        .servers
        .values()
        .filter_map(|c| {
            desired
                .servers
                .get(&c.id)
                .filter(|d| *d != c)
                .map(|d| (c, d))
        })
        .collect();
    let promotable = committed.voters().len() >= 2;
    if let Some((c, _)) = differ
        .iter()
        .find(|(c, d)| !(c.same_quorum_addresses(d) || promotable && demoted(c, d)))
    {
        return Pending::Mismatch(c.id);
    }
    // A voter back first: before any other change is proposed, the ensemble is whole again.
    // Only with two voters or more (see `handoff`); one voter and an observer is a state the
    // operator never makes, and is refused like any other role change.
    if let Some((c, _)) = differ.iter().find(|(c, d)| demoted(c, d))
        && promotable
    {
        return Pending::Promote(promoted(c));
    }
    if !differ.is_empty() {
        // Every line, not only those that differ here: the configuration read is one member's
        // view, and a member that moved its client address sees its own line moved already
        // (see `start-zookeeper`), while the leader, which proposes the change, may still hold
        // the old one for it. A change naming every line leaves no member an old line of its
        // own.
        return Pending::Readdress(
            committed
                .servers
                .keys()
                .filter_map(|id| desired.servers.get(id).cloned())
                .collect(),
        );
    }
    let leaving: Vec<ServerId> = committed
        .servers
        .keys()
        .rev()
        .filter(|id| !desired.servers.contains_key(id))
        .copied()
        .collect();
    let joining = desired
        .servers
        .values()
        .find(|s| !committed.servers.contains_key(&s.id));
    let voters = committed.voters();
    let voters_after = voters.iter().filter(|id| !leaving.contains(id)).count();
    // Remove first (a smaller ensemble syncs a joiner sooner), unless that would leave no
    // voter at all: then grow first.
    let removable: Vec<ServerId> = if voters_after == 0 {
        // Only non-voters can go before a desired voter joins.
        leaving
            .iter()
            .filter(|id| !voters.contains(id))
            .copied()
            .collect()
    } else {
        leaving
    };
    if !removable.is_empty() && (voters_after > 0 || joining.is_none()) {
        return Pending::Remove(removable);
    }
    match joining {
        Some(s) => Pending::Add(s.clone()),
        None => Pending::None,
    }
}

/// The servers that should run now, each with the dynamic configuration it boots with (when it
/// has none of its own yet): every committed server, and the one joiner being added, which
/// boots with the committed configuration plus itself. Anything else should be stopped (and a
/// removed server's data wiped).
pub fn members_to_run(
    committed: &CommittedConfig,
    desired: &DesiredMembership,
) -> BTreeMap<ServerId, CommittedConfig> {
    let mut run: BTreeMap<ServerId, CommittedConfig> = committed
        .servers
        .keys()
        .map(|id| (*id, committed.clone()))
        .collect();
    if let Pending::Add(joiner) = pending(committed, desired) {
        run.insert(joiner.id, committed.joiner_boot(&joiner));
    }
    run
}

/// The next step from `committed` towards `desired`, given what the members say.
///
/// One server at a time, only from a healthy ensemble: every voter that stays serves, there
/// is one leader, it counts every serving voting follower synced, and every serving member
/// has learned the committed version. An added server must first serve as a non-voting
/// follower the leader counts synced. Removal takes the highest id first and the leader last.
/// With nothing to change, a member that is down does not hold `Done` back (that is the
/// health component's business), but one that serves an older configuration does.
pub fn next_step(
    committed: &CommittedConfig,
    desired: &DesiredMembership,
    health: &Health,
) -> MembershipStep {
    let wait = |change: Option<Change>, reason| MembershipStep::Wait(Waiting { change, reason });
    let voters = committed.voters();
    let leaders: Vec<ServerId> = voters
        .iter()
        .copied()
        .filter(|id| health.mode(*id) == Mode::Leader)
        .collect();
    let (change, removing) = match pending(committed, desired) {
        Pending::Mismatch(id) => {
            return wait(
                None,
                WaitReason::AddressChanged {
                    member: desired.name(id),
                    committed: committed.servers[&id].value(),
                    desired: desired.servers[&id].value(),
                },
            );
        }
        Pending::None => (None, None),
        Pending::Readdress(ref s) if !health.template_rolled => {
            return wait(None, WaitReason::RollBeforeReaddress(desired.name(s[0].id)));
        }
        Pending::Readdress(ref s) => (
            Some(Change::Readdressing(
                s.iter().map(|s| desired.name(s.id)).collect(),
            )),
            None,
        ),
        Pending::Add(ref s) => (Some(Change::Adding(desired.name(s.id))), None),
        Pending::Promote(ref s) => (Some(Change::Promoting(desired.name(s.id))), None),
        Pending::Remove(ids) => {
            // The highest id that does not lead; the leader only when nothing else is left.
            let id = ids
                .iter()
                .copied()
                .find(|id| !leaders.contains(id))
                .unwrap_or(ids[0]);
            (Some(Change::Removing(desired.name(id))), Some(id))
        }
    };
    if change.is_some() {
        // Every voter that stays must serve; a leaving one may already be gone.
        if let Some(id) = voters
            .iter()
            .find(|id| Some(**id) != removing && !health.serves(**id))
        {
            return wait(change, WaitReason::NotServing(desired.name(*id)));
        }
        if leaders.len() != 1 {
            return wait(change, WaitReason::NoLeader);
        }
        let expected =
            (voters.iter().filter(|id| health.serves(**id)).count() as u32).saturating_sub(1);
        if health.synced_voting_followers.unwrap_or(0) < expected {
            return wait(
                change,
                WaitReason::FollowersNotSynced {
                    synced: health.synced_voting_followers,
                    expected,
                },
            );
        }
    }
    // The previous change must have reached every serving member.
    for id in committed.servers.keys().filter(|id| health.serves(**id)) {
        let has = health.config_versions.get(id).copied();
        if has != Some(committed.version) {
            return wait(
                change,
                WaitReason::ConfigNotLearned {
                    member: desired.name(*id),
                    has,
                    wants: committed.version,
                },
            );
        }
    }
    match (pending(committed, desired), removing) {
        (_, Some(id)) => MembershipStep::Remove(id),
        // The same servers with their new client addresses: `reconfig -add` replaces the lines.
        (Pending::Readdress(s), None) => MembershipStep::Readdress(s),
        // An observer serves only once it synced with the leader.
        (Pending::Promote(s), None) => {
            let has = health.config_versions.get(&s.id).copied();
            if health.mode(s.id) != Mode::Observer {
                wait(change, WaitReason::NotServing(desired.name(s.id)))
            } else if has != Some(committed.version) {
                let member = desired.name(s.id);
                let wants = committed.version;
                wait(change, WaitReason::ConfigNotLearned { member, has, wants })
            } else {
                MembershipStep::Add(s)
            }
        }
        (Pending::Add(joiner), None) => {
            if health.mode(joiner.id) == Mode::Follower
                && health.synced_non_voting_followers.unwrap_or(0) >= 1
            {
                MembershipStep::Add(joiner)
            } else {
                wait(change, WaitReason::JoinerNotSynced)
            }
        }
        _ => MembershipStep::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PORTS: MemberPorts = MemberPorts {
        client: 2181,
        quorum: 2888,
        election: 3888,
    };

    fn desired(replicas: u32) -> DesiredMembership {
        DesiredMembership::new("zk", replicas, PORTS, |o| format!("zk-{o}.zk-hs"), |_| None)
    }

    fn committed(ids: &[u32], version: i64) -> CommittedConfig {
        let d = desired(9);
        CommittedConfig {
            servers: ids
                .iter()
                .map(|i| (ServerId(*i), d.servers[&ServerId(*i)].clone()))
                .collect(),
            version: ConfigVersion(version),
        }
    }

    /// Every committed server serves (the lowest id leads unless `leader` says otherwise),
    /// every follower and the joiner are synced, and every member knows `committed`.
    fn healthy(c: &CommittedConfig, joiner: Option<ServerId>, leader: Option<ServerId>) -> Health {
        let voters = c.voters();
        let leader = leader
            .filter(|l| voters.contains(l))
            .or_else(|| voters.first().copied());
        let mut h = Health::default();
        for (id, s) in &c.servers {
            let mode = if Some(*id) == leader {
                Mode::Leader
            } else if s.is_voter() {
                Mode::Follower
            } else {
                Mode::Observer
            };
            h.modes.insert(*id, mode);
            h.config_versions.insert(*id, c.version);
        }
        if let Some(j) = joiner {
            h.modes.insert(j, Mode::Follower);
        }
        h.synced_voting_followers = Some(voters.len().saturating_sub(1) as u32);
        h.synced_non_voting_followers = Some(u32::from(joiner.is_some()));
        h.template_rolled = true;
        h
    }

    #[test]
    fn a_handed_off_leader_is_a_voter_again_once_it_serves() {
        let c = committed(&[1, 2, 3], 7);
        let d = desired(3);
        // The leader's line as an observer: the voters left are a majority of those before.
        let observer = handoff(&c, ServerId(2)).expect("a voter of three hands off");
        assert_eq!(observer.role, Role::Observer);
        assert_eq!(
            observer.line(),
            "server.2=zk-1.zk-hs:2888:3888:observer;2181"
        );
        let after = c.with(&observer);
        assert_eq!(after.voters(), BTreeSet::from([ServerId(1), ServerId(3)]));
        // Restarting: the planner waits for it, naming the change.
        let mut h = healthy(&after, None, Some(ServerId(1)));
        h.modes.insert(ServerId(2), Mode::Unreachable);
        match next_step(&after, &d, &h) {
            MembershipStep::Wait(w) => {
                assert_eq!(
                    w.to_string(),
                    "making zk-1 a voter again: waiting for zk-1 to serve"
                );
            }
            other => panic!("expected a wait, got {other:?}"),
        }
        // Serving as an observer that learned the configuration: its participant line.
        let h = healthy(&after, None, Some(ServerId(1)));
        assert_eq!(h.modes[&ServerId(2)], Mode::Observer);
        assert_eq!(
            next_step(&after, &d, &h),
            MembershipStep::Add(d.servers[&ServerId(2)].clone())
        );
        // Before anything else the spec asks for: a shrink waits for the voter to be back.
        let shrink = desired(2);
        assert_eq!(
            next_step(&after, &shrink, &h),
            MembershipStep::Add(d.servers[&ServerId(2)].clone())
        );
        // Not from a member that learned an older configuration.
        let mut h = h;
        h.config_versions.insert(ServerId(2), ConfigVersion(6));
        assert!(matches!(
            next_step(&after, &d, &h),
            MembershipStep::Wait(Waiting {
                reason: WaitReason::ConfigNotLearned { .. },
                ..
            })
        ));
    }

    #[test]
    fn a_promotion_keeps_the_committed_client_address_for_the_readdress() {
        // TLS being turned on: the desired lines name new client addresses, not committed yet.
        let old = committed(&[1, 2, 3], 7);
        let mut d = desired(3);
        for s in d.servers.values_mut() {
            s.client_address = Some("127.0.0.1".into());
        }
        let after = old.with(&handoff(&old, ServerId(3)).unwrap());
        let h = healthy(&after, None, Some(ServerId(1)));
        let MembershipStep::Add(promote) = next_step(&after, &d, &h) else {
            panic!("expected the promotion first")
        };
        assert_eq!(promote, old.servers[&ServerId(3)]);
        // Then every line's new address in one change, as without a handoff.
        let back = after.with(&promote);
        let h = healthy(&back, None, Some(ServerId(1)));
        assert!(matches!(
            next_step(&back, &d, &h),
            MembershipStep::Readdress(s) if s.len() == 3
        ));
    }

    #[test]
    fn only_a_voter_among_others_hands_off() {
        let one = committed(&[1], 3);
        assert_eq!(handoff(&one, ServerId(1)), None);
        // Two: the one voter left could not make the observer a voter again alone.
        let two = committed(&[1, 2], 3);
        assert_eq!(handoff(&two, ServerId(2)), None);
        let three = committed(&[1, 2, 3], 3);
        let demoted = three.with(&handoff(&three, ServerId(2)).unwrap());
        assert_eq!(handoff(&demoted, ServerId(2)), None, "not a voter");
        assert_eq!(
            handoff(&demoted, ServerId(1)),
            None,
            "one voter would be left"
        );
        assert_eq!(handoff(&three, ServerId(5)), None, "not a member");
        let refused = |c: &CommittedConfig, d: &DesiredMembership| {
            matches!(
                next_step(c, d, &healthy(c, None, None)),
                MembershipStep::Wait(Waiting {
                    reason: WaitReason::AddressChanged { .. },
                    ..
                })
            )
        };
        // Another role or address change is still refused.
        let mut moved = demoted.clone();
        moved.servers.get_mut(&ServerId(2)).unwrap().host = "elsewhere".into();
        assert!(refused(&moved, &desired(3)));
        // So is an observer beside a single voter (not made by a handoff).
        let mut lone = two.clone();
        lone.servers.get_mut(&ServerId(2)).unwrap().role = Role::Observer;
        assert!(refused(&lone, &desired(2)));
    }

    #[test]
    fn new_client_addresses_are_committed_together_after_the_roll() {
        let loopback = DesiredMembership::new(
            "zk",
            3,
            MemberPorts {
                client: 2182,
                ..PORTS
            },
            |o| format!("zk-{o}.zk-hs"),
            |_| Some("127.0.0.1".to_string()),
        );
        let mut c = committed(&[1, 2, 3], 7);
        let mut h = healthy(&c, None, Some(ServerId(2)));
        h.template_rolled = false;
        assert_eq!(
            next_step(&c, &loopback, &h),
            MembershipStep::Wait(Waiting {
                change: None,
                reason: WaitReason::RollBeforeReaddress(loopback.name(ServerId(1))),
            }),
            "not before every member runs the template"
        );
        h.template_rolled = true;
        // Every changed line in one reconfiguration.
        let want: Vec<ServerSpec> = loopback.servers.values().cloned().collect();
        assert_eq!(
            next_step(&c, &loopback, &h),
            MembershipStep::Readdress(want.clone())
        );
        assert!(want.iter().all(|s| s.value().ends_with(";127.0.0.1:2182")));
        // One line seen committed already (read from the member that moved it itself): every
        // line is still sent, so no member keeps an old line of its own in the leader's view.
        c.servers.insert(ServerId(2), want[1].clone());
        assert_eq!(
            next_step(&c, &loopback, &h),
            MembershipStep::Readdress(want.clone())
        );
        for s in &want {
            c.servers.insert(s.id, s.clone());
        }
        c.version = ConfigVersion(c.version.0 + 1);
        h = healthy(&c, None, Some(ServerId(2)));
        assert_eq!(next_step(&c, &loopback, &h), MembershipStep::Done);
        // A member that does not serve holds the change, as for any other.
        let mut c = committed(&[1, 2, 3], 7);
        let mut h = healthy(&c, None, None);
        h.modes.insert(ServerId(3), Mode::Unreachable);
        assert!(matches!(
            next_step(&c, &loopback, &h),
            MembershipStep::Wait(Waiting {
                change: Some(Change::Readdressing(_)),
                reason: WaitReason::NotServing(_)
            })
        ));
        // Another quorum host is not a client address: never changed.
        let mut moved = c.servers[&ServerId(2)].clone();
        moved.host = "elsewhere".to_string();
        c.servers.insert(ServerId(2), moved);
        h.modes.insert(ServerId(3), Mode::Follower);
        assert!(matches!(
            next_step(&c, &desired(3), &h),
            MembershipStep::Wait(Waiting {
                change: None,
                reason: WaitReason::AddressChanged { .. }
            })
        ));
    }

    #[test]
    fn parses_what_get_config_returns() {
        let text = "server.1=zk-0.zk-hs:2888:3888:participant;0.0.0.0:2181\n\
                    server.2=zk-1.zk-hs:2888:3888:participant;0.0.0.0:2181\n\
                    server.3=127.0.0.3:2888:3888:observer;127.0.0.3:2181\n\
                    version=100000003";
        let c = CommittedConfig::parse(text).expect("parses");
        assert_eq!(c.version, ConfigVersion(0x1_0000_0003));
        assert_eq!(c.version.to_string(), "0x100000003");
        assert_eq!(c.voters(), BTreeSet::from([ServerId(1), ServerId(2)]));
        assert_eq!(c.servers[&ServerId(1)], desired(3).servers[&ServerId(1)]);
        let s3 = &c.servers[&ServerId(3)];
        assert_eq!(s3.role, Role::Observer);
        assert_eq!(s3.client_address.as_deref(), Some("127.0.0.3"));
        assert_eq!(
            s3.line(),
            "server.3=127.0.0.3:2888:3888:observer;127.0.0.3:2181"
        );
        // Rendering and parsing again gives the same configuration.
        let text = format!("{}version={:x}", c.dynamic_file(), c.version.0);
        assert!(!c.dynamic_file().contains("version"));
        assert_eq!(c.dynamic_file_name("zoo.cfg"), "zoo.cfg.dynamic.100000003");
        assert_eq!(CommittedConfig::parse(&text), Ok(c));
        // Roles and client addresses are optional in ZooKeeper's syntax.
        let short = CommittedConfig::parse("server.1=h:1:2;3\nversion=0").expect("short form");
        assert_eq!(short.servers[&ServerId(1)].role, Role::Participant);
        assert_eq!(short.servers[&ServerId(1)].client_port, 3);
    }

    #[test]
    fn rejects_what_it_cannot_manage() {
        let cases = [
            ("server.1=h:1:2;3", ParseConfigError::NoVersion),
            ("version=1", ParseConfigError::NoServer),
            (
                "server.1=h:1:2;3\nversion=zz",
                ParseConfigError::Version("zz".into()),
            ),
            (
                "server.1=h:1:2;3\ngroup.1=1\nversion=1",
                ParseConfigError::Unsupported("group.1".into()),
            ),
        ];
        for (text, err) in cases {
            assert_eq!(CommittedConfig::parse(text), Err(err), "{text}");
        }
        for bad in [
            "server.1=h:1:2\nversion=1",
            "server.1=h:x:2;3\nversion=1",
            "server.1=h:1:2:boss;3\nversion=1",
            "server.x=h:1:2;3\nversion=1",
            "nonsense\nversion=1",
        ] {
            assert!(CommittedConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grows_one_at_a_time_after_the_joiner_synced() {
        let c = committed(&[1], 0x1_0000_0000);
        let d = desired(3);
        let run = members_to_run(&c, &d);
        assert_eq!(
            run.keys().copied().collect::<Vec<_>>(),
            [ServerId(1), ServerId(2)]
        );
        // The joiner boots with the committed configuration plus itself, at an older version.
        let boot = &run[&ServerId(2)];
        assert_eq!(boot.servers, c.with(&d.servers[&ServerId(2)]).servers);
        assert_eq!(boot.version, ConfigVersion(0));
        assert_eq!(run[&ServerId(1)], c);

        let step = next_step(&c, &d, &healthy(&c, None, None));
        assert_eq!(
            step.to_string_for_test(),
            "adding zk-1: waiting for it to sync as a non-voting follower"
        );
        let step = next_step(&c, &d, &healthy(&c, Some(ServerId(2)), None));
        assert_eq!(step, MembershipStep::Add(d.servers[&ServerId(2)].clone()));
        assert_eq!(
            d.servers[&ServerId(2)].line(),
            "server.2=zk-1.zk-hs:2888:3888:participant;2181"
        );
    }

    #[test]
    fn one_voter_is_half_of_two_and_in_its_only_quorum() {
        let one = BTreeSet::from([ServerId(1)]);
        let two = BTreeSet::from([ServerId(1), ServerId(2)]);
        assert!(quorums_intersect(&one, &two));
        assert!(majority_of(&one, &two));
        // Two quorums of servers that share nothing but are each a majority of their own
        // configuration: what one step may never propose.
        let a = BTreeSet::from([ServerId(1), ServerId(2), ServerId(3)]);
        let b = BTreeSet::from([ServerId(3), ServerId(4), ServerId(5)]);
        assert!(!quorums_intersect(&a, &b));
        assert!(!majority_of(&a, &b));
    }

    #[test]
    fn shrinks_highest_first_leader_last() {
        let c = committed(&[1, 2, 3, 4, 5], 7);
        let d = desired(3);
        assert_eq!(
            next_step(&c, &d, &healthy(&c, None, None)),
            MembershipStep::Remove(ServerId(5))
        );
        // Server 5 leads: 4 goes first.
        assert_eq!(
            next_step(&c, &d, &healthy(&c, None, Some(ServerId(5)))),
            MembershipStep::Remove(ServerId(4))
        );
        // Only the leader is left to remove: it goes.
        let c = committed(&[1, 2, 3, 5], 8);
        assert_eq!(
            next_step(&c, &d, &healthy(&c, None, Some(ServerId(5)))),
            MembershipStep::Remove(ServerId(5))
        );
        // No joiner runs while shrinking.
        assert_eq!(members_to_run(&c, &d).len(), 4);
    }

    #[test]
    fn grows_first_when_a_removal_would_leave_no_voter() {
        // Only server 5 is committed but only server 1 is desired: 1 joins, then 5 leaves.
        let d = desired(1);
        let c = committed(&[5], 3);
        assert_eq!(
            members_to_run(&c, &d).keys().copied().collect::<Vec<_>>(),
            [ServerId(1), ServerId(5)]
        );
        assert_eq!(
            next_step(&c, &d, &healthy(&c, Some(ServerId(1)), None)),
            MembershipStep::Add(d.servers[&ServerId(1)].clone())
        );
        let c = committed(&[1, 5], 4);
        assert_eq!(
            next_step(&c, &d, &healthy(&c, None, Some(ServerId(5)))),
            MembershipStep::Remove(ServerId(5))
        );
    }

    #[test]
    fn waits_and_says_why() {
        let d = desired(3);
        let c = committed(&[1, 2, 3, 4, 5], 7);
        let mut h = healthy(&c, None, None);
        h.modes.insert(ServerId(2), Mode::Unreachable);
        assert_eq!(
            next_step(&c, &d, &h).to_string_for_test(),
            "removing zk-4: waiting for zk-1 to serve"
        );
        // The leaving server itself may be gone already.
        let mut h = healthy(&c, None, None);
        h.modes.insert(ServerId(5), Mode::Unreachable);
        h.synced_voting_followers = Some(3);
        assert_eq!(next_step(&c, &d, &h), MembershipStep::Remove(ServerId(5)));
        let mut h = healthy(&c, None, None);
        h.synced_voting_followers = Some(3);
        assert_eq!(
            next_step(&c, &d, &h).to_string_for_test(),
            "removing zk-4: waiting for the leader to count 4 synced followers (it counts 3)"
        );
        let mut h = healthy(&c, None, None);
        h.modes.insert(ServerId(1), Mode::Follower);
        assert_eq!(
            next_step(&c, &d, &h).to_string_for_test(),
            "removing zk-4: waiting for a single leader"
        );
        // After a removal, Done only once every serving member knows the new version.
        let c = committed(&[1, 2, 3], 9);
        let mut h = healthy(&c, None, None);
        h.config_versions.insert(ServerId(3), ConfigVersion(8));
        assert_eq!(
            next_step(&c, &d, &h).to_string_for_test(),
            "waiting for zk-2 to learn config version 0x9 (it has 0x8)"
        );
        h.config_versions.insert(ServerId(3), ConfigVersion(9));
        assert_eq!(next_step(&c, &d, &h), MembershipStep::Done);
        // A member that is down does not hold Done back.
        h.modes.insert(ServerId(3), Mode::Unreachable);
        assert_eq!(next_step(&c, &d, &h), MembershipStep::Done);
        // A moved member is not "fixed" by a reconfiguration.
        let mut moved = c.clone();
        moved.servers.get_mut(&ServerId(2)).expect("2").host = "elsewhere".into();
        assert_eq!(
            next_step(&moved, &d, &healthy(&moved, None, None)).to_string_for_test(),
            "zk-1 is committed as elsewhere:2888:3888:participant;2181 but desired as \
             zk-1.zk-hs:2888:3888:participant;2181; changing a member's quorum addresses or role is not supported"
        );
    }

    #[test]
    fn health_from_probes_counts_voting_and_non_voting_followers() {
        use crate::health::fourlw::MemberProbe;
        use crate::health::{Outcome, parse};
        let srvr = |mode: &str| match parse::srvr(&format!("Zxid: 0x100000005\nMode: {mode}\n")) {
            parse::Reply::Data(s) => Outcome::Serving(s),
            other => panic!("{other:?}"),
        };
        let mntr = match parse::mntr(
            "zk_server_state\tleader\nzk_synced_followers\t3\nzk_synced_non_voting_followers\t1\n",
        ) {
            parse::Reply::Data(m) => Outcome::Serving(m),
            other => panic!("{other:?}"),
        };
        let probes = vec![
            MemberProbe {
                ordinal: Ordinal(0),
                srvr: srvr("leader"),
                mntr: Some(mntr),
            },
            MemberProbe {
                ordinal: Ordinal(1),
                srvr: srvr("follower"),
                mntr: None,
            },
            MemberProbe {
                ordinal: Ordinal(2),
                srvr: Outcome::Refused,
                mntr: None,
            },
        ];
        let h = Health::from_probes(&probes, BTreeMap::new());
        assert_eq!(h.modes[&ServerId(1)], Mode::Leader);
        assert_eq!(h.modes[&ServerId(2)], Mode::Follower);
        assert_eq!(h.modes[&ServerId(3)], Mode::Unreachable);
        assert_eq!(h.synced_voting_followers, Some(2));
        assert_eq!(h.synced_non_voting_followers, Some(1));
    }

    impl MembershipStep {
        fn to_string_for_test(&self) -> String {
            match self {
                MembershipStep::Wait(w) => w.to_string(),
                other => format!("{other:?}"),
            }
        }
    }

    /// Majority quorums of `a` and `b` always intersect when `a`'s voters are a majority of
    /// `b`'s (and the sizes differ by at most one server).
    fn quorums_intersect(a: &BTreeSet<ServerId>, b: &BTreeSet<ServerId>) -> bool {
        // The smallest quorum of each, chosen to avoid the other as far as possible.
        let qa = a.len() / 2 + 1;
        let qb = b.len() / 2 + 1;
        let common = a.intersection(b).count();
        // Disjoint quorums exist iff qa + qb <= |a ∪ b| with both fitting outside the overlap.
        let only_a = a.len() - common;
        let only_b = b.len() - common;
        let need_common = qa.saturating_sub(only_a) + qb.saturating_sub(only_b);
        need_common > common
    }

    /// A strict majority, except that one voter is allowed to be half of two (see the module
    /// doc): newcomers alone never outvote the committed voters.
    fn majority_of(voters: &BTreeSet<ServerId>, of: &BTreeSet<ServerId>) -> bool {
        let common = voters.intersection(of).count();
        common * 2 > of.len() || (common == 1 && of.len() == 2)
    }

    /// Any set of servers, some of them observers (left by a leader's handoff), the lowest two
    /// voters.
    fn arb_committed() -> impl Strategy<Value = CommittedConfig> {
        (
            prop::collection::btree_set(1u32..=9, 1..=9),
            0i64..1000,
            prop::collection::vec(prop::bool::weighted(0.2), 9),
        )
            .prop_map(|(ids, v, demote)| {
                let mut c = committed(&ids.into_iter().collect::<Vec<_>>(), v);
                for (s, d) in c.servers.values_mut().skip(2).zip(demote) {
                    if d {
                        s.role = Role::Observer;
                    }
                }
                c
            })
    }

    fn arb_health(c: &CommittedConfig) -> impl Strategy<Value = Health> + use<> {
        let ids: Vec<ServerId> = (1..=9).map(ServerId).collect();
        let version = c.version;
        (
            prop::collection::vec(
                prop::sample::select(vec![
                    Mode::Leader,
                    Mode::Follower,
                    Mode::Unreachable,
                    Mode::Observer,
                ]),
                9,
            ),
            prop::collection::vec(prop::bool::weighted(0.8), 9),
            prop::option::of(0u32..9),
            prop::option::of(0u32..3),
        )
            .prop_map(move |(modes, knows, synced, non_voting)| Health {
                modes: ids.iter().copied().zip(modes).collect(),
                config_versions: ids
                    .iter()
                    .zip(knows)
                    .filter(|(_, k)| *k)
                    .map(|(id, _)| (*id, version))
                    .collect(),
                synced_voting_followers: synced,
                synced_non_voting_followers: non_voting,
                template_rolled: true,
            })
    }

    proptest! {
        /// Whatever the members say, a proposed configuration (and a joiner's boot
        /// configuration) keeps the committed voters a majority, changes one server, and every
        /// quorum of it shares a member with every quorum of the committed one.
        #[test]
        fn committed_voters_are_a_majority_of_every_proposal(
            (c, h) in arb_committed().prop_flat_map(|c| { let h = arb_health(&c); (Just(c), h) }),
            replicas in 1u32..=9,
        ) {
            let d = desired(replicas);
            let voters = c.voters();
            let proposed = match next_step(&c, &d, &h) {
                MembershipStep::Readdress(s) => {
                    prop_assert!(false, "no client address changed, yet: {:?}", s);
                    None
                }
                MembershipStep::Add(s) if c.servers.contains_key(&s.id) => {
                    // A promotion: an observer that serves becomes the voter the spec wants.
                    prop_assert_eq!(c.servers[&s.id].role, Role::Observer);
                    prop_assert_eq!(Some(&s), d.servers.get(&s.id));
                    prop_assert_eq!(h.modes.get(&s.id), Some(&Mode::Observer));
                    for v in &voters {
                        prop_assert!(matches!(h.modes.get(v), Some(Mode::Leader | Mode::Follower)));
                    }
                    Some(c.with(&s).voters())
                }
                MembershipStep::Add(s) => {
                    prop_assert!(!c.servers.contains_key(&s.id));
                    prop_assert!(d.servers.contains_key(&s.id));
                    // Only a joiner that serves as a synced non-voting follower is added, and
                    // only to an ensemble whose voters all serve.
                    prop_assert_eq!(h.modes.get(&s.id), Some(&Mode::Follower));
                    for v in &voters {
                        prop_assert!(matches!(h.modes.get(v), Some(Mode::Leader | Mode::Follower)));
                    }
                    Some(c.with(&s).voters())
                }
                MembershipStep::Remove(id) => {
                    prop_assert!(c.servers.contains_key(&id));
                    prop_assert!(!d.servers.contains_key(&id));
                    let mut after = c.clone();
                    after.servers.remove(&id);
                    // Every voter that stays serves, under one leader.
                    for v in after.voters() {
                        prop_assert!(matches!(h.modes.get(&v), Some(Mode::Leader | Mode::Follower)));
                    }
                    Some(after.voters())
                }
                MembershipStep::Done | MembershipStep::Wait(_) => None,
            };
            if let Some(p) = proposed {
                prop_assert!(!p.is_empty());
                prop_assert!(p.symmetric_difference(&voters).count() <= 1);
                prop_assert!(majority_of(&voters, &p), "{voters:?} not a majority of {p:?}");
                prop_assert!(quorums_intersect(&voters, &p));
            }
            for (id, boot) in members_to_run(&c, &d) {
                prop_assert!(boot.servers.contains_key(&id), "server {id} boots without itself");
                let b = boot.voters();
                prop_assert!(majority_of(&voters, &b));
                prop_assert!(quorums_intersect(&voters, &b));
            }
        }

        /// From any committed configuration (a half-done grow or shrink, an operator killed
        /// between steps), a healthy ensemble converges to the desired one, one server per
        /// step, the leader removed last.
        #[test]
        fn any_half_done_state_converges(
            c in arb_committed(),
            replicas in 1u32..=9,
            leader_pick in 0usize..9,
        ) {
            let d = desired(replicas);
            let mut c = c;
            let mut leader = c.voters().iter().nth(leader_pick % c.voters().len()).copied();
            let want: BTreeSet<ServerId> = d.servers.keys().copied().collect();
            let mut steps = 0;
            let budget = c.servers.keys().filter(|id| !want.contains(id)).count()
                + want.iter().filter(|id| !c.servers.contains_key(id)).count()
                + c.servers.values().filter(|s| want.contains(&s.id) && !s.is_voter()).count();
            loop {
                let run = members_to_run(&c, &d);
                let joiner = run.keys().copied().find(|id| !c.servers.contains_key(id));
                let h = healthy(&c, joiner, leader);
                match next_step(&c, &d, &h) {
                    MembershipStep::Done => break,
                    MembershipStep::Wait(w) => prop_assert!(false, "stuck: {w}"),
                    MembershipStep::Readdress(s) => prop_assert!(false, "no client address changed: {:?}", s),
                    MembershipStep::Add(s) if c.servers.contains_key(&s.id) => {
                        prop_assert!(!c.servers[&s.id].is_voter(), "{} is a voter already", s.id);
                        c = c.with(&s);
                    }
                    MembershipStep::Add(s) => {
                        prop_assert_eq!(Some(s.id), joiner);
                        c = c.with(&s);
                    }
                    MembershipStep::Remove(id) => {
                        let others_leaving = c
                            .servers
                            .keys()
                            .any(|o| !want.contains(o) && Some(*o) != leader && *o != id);
                        prop_assert!(
                            Some(id) != leader || !others_leaving,
                            "removed leader {id} before the others"
                        );
                        c.servers.remove(&id);
                        if Some(id) == leader {
                            leader = c.voters().last().copied();
                        }
                    }
                }
                c.version = ConfigVersion(c.version.0 + 1);
                steps += 1;
                prop_assert!(steps <= budget, "more steps than servers to change");
            }
            prop_assert_eq!(c.servers.keys().copied().collect::<BTreeSet<_>>(), want);
            prop_assert_eq!(steps, budget);
        }
    }
}
