//! Health component: ZooKeeper four-letter words sent to each member, parsed into an
//! ensemble view.
//!
//! - [`parse`]: pure parsers of `srvr`, `mntr` and `ruok` answers.
//! - [`fourlw`]: the async TCP client (one timeout for connect + read, bounded concurrency).
//! - [`ensemble`]: the ensemble view built from probe results and pod facts.
//! - [`backoff`]: per-cluster spacing of passes over members that do not answer.
//!
//! `ruok` is never a health check: a member outside any quorum still answers `imok`.

pub mod backoff;
pub mod ensemble;
pub mod fourlw;
pub mod parse;

use std::fmt;

pub use ensemble::{EnsembleView, Leadership, MemberView, PodFacts, Sync};
pub use fourlw::{
    MemberAddress, MemberProbe, ProbeConfig, member_addresses, probe_ensemble, probe_member,
};
pub use parse::{Mntr, Srvr, Zxid};

/// A StatefulSet ordinal (`zk-2` has ordinal 2; its ZooKeeper `myid` is 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ordinal(pub u32);

impl fmt::Display for Ordinal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A member's pod name, `<cluster>-<ordinal>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberName(String);

impl MemberName {
    /// The name of member `ordinal` of the StatefulSet `cluster`.
    pub fn new(cluster: &str, ordinal: Ordinal) -> Self {
        Self(crate::names::member_pod(cluster, ordinal.0))
    }

    /// The pod name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a member is in the ensemble, as `status.members[].mode` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Leads the quorum.
    Leader,
    /// Votes and follows the leader.
    Follower,
    /// Follows without voting.
    Observer,
    /// Runs alone (a one-member ensemble).
    Standalone,
    /// Gave no serving answer to `srvr`: down, outside a quorum, or not reachable.
    Unreachable,
}

impl Mode {
    /// The lowercase name used in status and by ZooKeeper itself.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Leader => "leader",
            Mode::Follower => "follower",
            Mode::Observer => "observer",
            Mode::Standalone => "standalone",
            Mode::Unreachable => "unreachable",
        }
    }

    /// Parses the `Mode:` of `srvr` or `zk_server_state` of `mntr`.
    pub fn from_zookeeper(s: &str) -> Option<Self> {
        match s.trim() {
            "leader" => Some(Mode::Leader),
            "follower" => Some(Mode::Follower),
            "observer" => Some(Mode::Observer),
            "standalone" => Some(Mode::Standalone),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The four-letter words the health component sends. Exactly these must be in the rendered
/// `4lw.commands.whitelist` (see [`WHITELIST`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Word {
    /// Mode, zxid, latency: the health check.
    Srvr,
    /// Key/value metrics; the leader's `zk_synced_followers`.
    Mntr,
    /// Sign of life only; never a health check.
    Ruok,
}

impl Word {
    /// Every word the health component sends: exactly the rendered whitelist.
    pub const ALL: [Word; 3] = [Word::Srvr, Word::Mntr, Word::Ruok];

    /// The four letters sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Word::Srvr => "srvr",
            Word::Mntr => "mntr",
            Word::Ruok => "ruok",
        }
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value for `4lw.commands.whitelist` (or `-Dzookeeper.4lw.commands.whitelist=`): the words
/// of [`Word::ALL`], never `*` (a test keeps the two equal).
pub const WHITELIST: &str = "srvr,mntr,ruok";

/// What one four-letter word sent to one member came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<T> {
    /// The member serves and answered with data (for `srvr`: mode, zxid, latency).
    Serving(T),
    /// Alive but outside a serving quorum (`This ZooKeeper instance is not currently serving
    /// requests`).
    NotServing,
    /// The word is not in the member's `4lw.commands.whitelist`.
    NotWhitelisted {
        /// The refused word.
        word: String,
    },
    /// Nothing listens on the client port (the JVM is down or still starting).
    Refused,
    /// No complete answer within the probe timeout.
    Timeout,
    /// The member's name did not resolve (pod deleted, or DNS not ready yet).
    DnsFailure(String),
    /// Any other network failure or an answer that could not be parsed.
    Other(String),
}

impl<T> Outcome<T> {
    /// The data of a serving answer.
    pub fn serving(&self) -> Option<&T> {
        match self {
            Outcome::Serving(t) => Some(t),
            _ => None,
        }
    }

    /// A short human description of a non-serving outcome, for conditions and events.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Serving(_) => "serving".into(),
            Outcome::NotServing => "not serving requests (outside a quorum)".into(),
            Outcome::NotWhitelisted { word } => {
                format!("'{word}' is not in 4lw.commands.whitelist (needs {WHITELIST})")
            }
            Outcome::Refused => "connection refused".into(),
            Outcome::Timeout => "no answer before the timeout".into(),
            Outcome::DnsFailure(detail) => format!("name does not resolve: {detail}"),
            Outcome::Other(detail) => detail.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whitelist_is_exactly_the_words_sent() {
        let words: Vec<&str> = Word::ALL.iter().map(|w| w.as_str()).collect();
        assert_eq!(WHITELIST, words.join(","));
    }
}
