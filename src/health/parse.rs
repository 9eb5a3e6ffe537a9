//! Pure parsers for ZooKeeper's four-letter-word answers (`srvr`, `mntr`, `ruok`).
//!
//! Formats differ between releases: 3.4 prints `Latency min/avg/max: 0/0/0` and reports
//! `zk_followers` in `mntr`; 3.5+ prints a fractional average and 3.8+ drops `zk_followers`.
//! Only the leader reports `zk_synced_followers`. The zxid is taken from `srvr` because `mntr`
//! does not carry it.

use std::collections::BTreeMap;
use std::fmt;

use super::{Mode, Word};

/// The text a member sends when it is alive but not part of a serving quorum.
const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";
/// Suffix of the refusal for a word missing from `4lw.commands.whitelist`.
const NOT_WHITELISTED: &str = "is not executed because it is not in the whitelist.";

/// A ZooKeeper transaction id: epoch in the high 32 bits, counter in the low 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Zxid(pub u64);

impl Zxid {
    /// The leader epoch that produced this transaction.
    pub fn epoch(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The transaction counter within the epoch.
    pub fn counter(self) -> u32 {
        self.0 as u32
    }
}

impl fmt::Display for Zxid {
    /// Hex, as ZooKeeper prints it (`0x100000000`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Request latency in milliseconds as reported by `srvr`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    /// Smallest latency seen.
    pub min_ms: u64,
    /// Average latency.
    pub avg_ms: f64,
    /// Largest latency seen.
    pub max_ms: u64,
}

/// A serving member's answer to `srvr`.
#[derive(Clone, Debug, PartialEq)]
pub struct Srvr {
    /// `Zookeeper version:` line, e.g. `3.9.5-293c...`, built on ...
    pub version: String,
    /// Role of the member in the ensemble.
    pub mode: Mode,
    /// Last transaction the member has seen.
    pub zxid: Zxid,
    /// Request latency.
    pub latency: Latency,
    /// Open client connections (including the probe's own).
    pub connections: u64,
    /// Requests queued but not yet processed.
    pub outstanding: u64,
    /// Number of znodes.
    pub node_count: u64,
}

/// A member's answer to `mntr`: tab-separated key/value lines.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mntr {
    values: BTreeMap<String, String>,
}

impl Mntr {
    /// The raw value of `key` (e.g. `zk_server_state`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A whole-number value: `2` as ZooKeeper's own metrics print it, `2.0` as the Prometheus
    /// metrics provider does (it then formats every gauge as a float).
    fn count(&self, key: &str) -> Option<u32> {
        let raw = self.get(key)?;
        raw.parse().ok().or_else(|| {
            let f: f64 = raw.parse().ok()?;
            (f >= 0.0 && f.fract() == 0.0 && f <= f64::from(u32::MAX)).then_some(f as u32)
        })
    }

    /// `zk_server_state` as a mode.
    pub fn server_state(&self) -> Option<Mode> {
        self.get("zk_server_state").and_then(Mode::from_zookeeper)
    }

    /// `zk_synced_followers`: voting followers in sync with this member; only a leader reports it.
    pub fn synced_followers(&self) -> Option<u32> {
        self.count("zk_synced_followers")
    }

    /// `zk_synced_non_voting_followers` (3.6+): learners synced with this leader that do not
    /// vote (a joiner before it is added to the configuration).
    pub fn synced_non_voting_followers(&self) -> Option<u32> {
        self.count("zk_synced_non_voting_followers")
    }

    /// `zk_followers`: connected followers; reported by 3.4-3.7 leaders, absent from 3.8 on.
    pub fn followers(&self) -> Option<u32> {
        self.count("zk_followers")
    }

    /// `zk_quorum_size`: voters in the member's configuration (3.6+).
    pub fn quorum_size(&self) -> Option<u32> {
        self.count("zk_quorum_size")
    }

    /// `zk_version`.
    pub fn version(&self) -> Option<&str> {
        self.get("zk_version")
    }

    /// Number of key/value pairs.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the answer carried no key/value pair.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// What a member's text answer means, before any network failure is considered.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply<T> {
    /// The member serves and answered with data.
    Data(T),
    /// `This ZooKeeper instance is not currently serving requests`: alive, outside a quorum.
    NotServing,
    /// The word is missing from the member's `4lw.commands.whitelist`.
    NotWhitelisted {
        /// The word the member refused, as it named it.
        word: String,
    },
    /// Anything else; the string says what was wrong.
    Malformed(String),
}

/// Recognizes the two texts every word may be answered with instead of data.
fn refusal<T>(text: &str) -> Option<Reply<T>> {
    let trimmed = text.trim();
    if trimmed.starts_with(NOT_SERVING) {
        return Some(Reply::NotServing);
    }
    if let Some(word) = trimmed.strip_suffix(NOT_WHITELISTED) {
        return Some(Reply::NotWhitelisted {
            word: word.trim().to_string(),
        });
    }
    None
}

/// Parses an answer to `srvr`.
pub fn srvr(text: &str) -> Reply<Srvr> {
    if let Some(r) = refusal(text) {
        return r;
    }
    if text.trim().is_empty() {
        return Reply::Malformed("empty answer to srvr".into());
    }
    let mut version = None;
    let mut mode = None;
    let mut zxid = None;
    let mut latency = None;
    let mut connections = 0;
    let mut outstanding = 0;
    let mut node_count = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "Zookeeper version" => version = Some(value.to_string()),
            // A read-only server (readonlymode.enabled) has lost its quorum.
            "Mode" if value == "read-only" => return Reply::NotServing,
            "Mode" => match Mode::from_zookeeper(value) {
                Some(m) => mode = Some(m),
                None => return Reply::Malformed(format!("unknown mode {value:?} in srvr")),
            },
            "Zxid" => match parse_hex(value) {
                Some(z) => zxid = Some(Zxid(z)),
                None => return Reply::Malformed(format!("bad zxid {value:?} in srvr")),
            },
            "Latency min/avg/max" => latency = parse_latency(value),
            "Connections" => connections = value.parse().unwrap_or(0),
            "Outstanding" => outstanding = value.parse().unwrap_or(0),
            "Node count" => node_count = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    let Some(mode) = mode else {
        return Reply::Malformed("srvr answer has no Mode: line".into());
    };
    let Some(zxid) = zxid else {
        return Reply::Malformed("srvr answer has no Zxid: line".into());
    };
    Reply::Data(Srvr {
        version: version.unwrap_or_default(),
        mode,
        zxid,
        latency: latency.unwrap_or(Latency {
            min_ms: 0,
            avg_ms: 0.0,
            max_ms: 0,
        }),
        connections,
        outstanding,
        node_count,
    })
}

/// Parses an answer to `mntr`.
pub fn mntr(text: &str) -> Reply<Mntr> {
    if let Some(r) = refusal(text) {
        return r;
    }
    let mut values = BTreeMap::new();
    for line in text.lines() {
        // Values may contain spaces (zk_version), never tabs.
        if let Some((key, value)) = line.split_once('\t') {
            values.insert(key.trim().to_string(), value.trim().to_string());
        }
    }
    if values.is_empty() {
        return Reply::Malformed("mntr answer has no key/value line".into());
    }
    Reply::Data(Mntr { values })
}

/// Proof that a member answered `ruok` with `imok`.
///
/// It is only a sign of life: a member outside any quorum answers `imok` too, so nothing in
/// this crate turns it into "healthy".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Imok;

/// Parses an answer to `ruok`.
pub fn ruok(text: &str) -> Reply<Imok> {
    if let Some(r) = refusal(text) {
        return r;
    }
    if text.trim() == "imok" {
        Reply::Data(Imok)
    } else {
        Reply::Malformed(format!("unexpected answer to ruok: {:?}", text.trim()))
    }
}

/// Parses the answer to `word`, returning whether it shows a member that serves.
pub fn serves(word: Word, text: &str) -> bool {
    match word {
        Word::Srvr => matches!(srvr(text), Reply::Data(_)),
        Word::Mntr => matches!(mntr(text), Reply::Data(m) if m.server_state().is_some()),
        // `imok` comes from members outside a quorum too.
        Word::Ruok => false,
    }
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

fn parse_latency(s: &str) -> Option<Latency> {
    let mut parts = s.split('/');
    let min_ms = parts.next()?.trim().parse().ok()?;
    let avg_ms = parts.next()?.trim().parse().ok()?;
    let max_ms = parts.next()?.trim().parse().ok()?;
    Some(Latency {
        min_ms,
        avg_ms,
        max_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSIONS: [&str; 3] = ["3.4.14", "3.8.4", "3.9.5"];

    fn fixture(version: &str, name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/zookeeper/{version}/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
    }

    fn data<T: fmt::Debug>(r: Reply<T>) -> T {
        match r {
            Reply::Data(d) => d,
            other => panic!("expected data, got {other:?}"),
        }
    }

    #[test]
    fn srvr_of_leader_follower_and_standalone_in_every_version() {
        for v in VERSIONS {
            let leader = data(srvr(&fixture(v, "leader.srvr")));
            assert_eq!(leader.mode, Mode::Leader, "{v}");
            assert_eq!(leader.zxid, Zxid(0x1_0000_0000), "{v}");
            assert_eq!(leader.zxid.epoch(), 1, "{v}");
            assert_eq!(leader.zxid.counter(), 0, "{v}");
            assert!(leader.version.starts_with(v), "{v}: {}", leader.version);
            assert_eq!(leader.connections, 1, "{v}: the probe's own connection");
            assert!(leader.node_count >= 4, "{v}");

            let follower = data(srvr(&fixture(v, "follower.srvr")));
            assert_eq!(follower.mode, Mode::Follower, "{v}");

            let standalone = data(srvr(&fixture(v, "standalone.srvr")));
            assert_eq!(standalone.mode, Mode::Standalone, "{v}");
            assert_eq!(standalone.zxid, Zxid(0), "{v}");
        }
    }

    #[test]
    fn srvr_latency_integer_in_3_4_fractional_later() {
        let old = data(srvr(&fixture("3.4.14", "leader.srvr")));
        assert_eq!(old.latency.avg_ms, 0.0);
        let new = data(srvr(&fixture("3.9.5", "leader.srvr")));
        assert_eq!(new.latency.max_ms, 0);
        let synthetic = data(srvr(
            "Latency min/avg/max: 1/2.5/9\nZxid: 0x2000000a1\nMode: follower\n",
        ));
        assert_eq!(
            synthetic.latency,
            Latency {
                min_ms: 1,
                avg_ms: 2.5,
                max_ms: 9
            }
        );
        assert_eq!(synthetic.zxid.epoch(), 2);
        assert_eq!(synthetic.zxid.counter(), 0xa1);
        assert_eq!(synthetic.zxid.to_string(), "0x2000000a1");
    }

    #[test]
    fn not_serving_member_is_recognized_for_srvr_and_mntr() {
        for v in VERSIONS {
            assert_eq!(
                srvr(&fixture(v, "not-serving.srvr")),
                Reply::NotServing,
                "{v}"
            );
            assert_eq!(
                mntr(&fixture(v, "not-serving.mntr")),
                Reply::NotServing,
                "{v}"
            );
        }
    }

    #[test]
    fn ruok_says_imok_outside_a_quorum_and_never_counts_as_serving() {
        for v in VERSIONS {
            let text = fixture(v, "not-serving.ruok");
            assert_eq!(ruok(&text), Reply::Data(Imok), "{v}");
            assert!(!serves(Word::Ruok, &text), "{v}");
            assert!(!serves(Word::Srvr, &fixture(v, "not-serving.srvr")), "{v}");
            assert!(serves(Word::Srvr, &fixture(v, "leader.srvr")), "{v}");
            assert!(serves(Word::Mntr, &fixture(v, "leader.mntr")), "{v}");
        }
    }

    #[test]
    fn whitelist_refusal_names_the_word() {
        for v in VERSIONS {
            assert_eq!(
                mntr(&fixture(v, "not-whitelisted.mntr")),
                Reply::NotWhitelisted {
                    word: "mntr".into()
                },
                "{v}"
            );
        }
        assert_eq!(
            srvr("srvr is not executed because it is not in the whitelist.\n"),
            Reply::NotWhitelisted {
                word: "srvr".into()
            }
        );
    }

    #[test]
    fn mntr_of_leader_reports_synced_followers() {
        for v in VERSIONS {
            let leader = data(mntr(&fixture(v, "leader.mntr")));
            assert_eq!(leader.server_state(), Some(Mode::Leader), "{v}");
            assert_eq!(leader.synced_followers(), Some(2), "{v}");
            assert!(leader.version().is_some_and(|s| s.starts_with(v)), "{v}");

            let degraded = data(mntr(&fixture(v, "leader-one-follower-down.mntr")));
            assert_eq!(degraded.synced_followers(), Some(1), "{v}");

            let follower = data(mntr(&fixture(v, "follower.mntr")));
            assert_eq!(follower.server_state(), Some(Mode::Follower), "{v}");
            assert_eq!(
                follower.synced_followers(),
                None,
                "{v}: only leaders report it"
            );

            let standalone = data(mntr(&fixture(v, "standalone.mntr")));
            assert_eq!(standalone.server_state(), Some(Mode::Standalone), "{v}");
        }
    }

    #[test]
    fn mntr_counts_read_the_prometheus_providers_float_format() {
        // A real 3.9.5 leader with the Prometheus metrics provider on (every gauge printed as a
        // float) and one joiner synced before it was added to the configuration.
        let leader = data(mntr(&fixture(
            "3.9.5",
            "leader-with-joiner-prometheus-provider.mntr",
        )));
        assert_eq!(leader.get("zk_synced_followers"), Some("1.0"));
        assert_eq!(leader.server_state(), Some(Mode::Leader));
        assert_eq!(leader.synced_followers(), Some(1));
        assert_eq!(leader.synced_non_voting_followers(), Some(1));
        assert_eq!(leader.quorum_size(), Some(1));
    }

    #[test]
    fn zk_followers_exists_in_3_4_and_is_gone_in_3_8() {
        let old = data(mntr(&fixture("3.4.14", "leader.mntr")));
        assert_eq!(old.followers(), Some(2));
        assert_eq!(old.quorum_size(), None);
        for v in ["3.8.4", "3.9.5"] {
            let new = data(mntr(&fixture(v, "leader.mntr")));
            assert_eq!(new.followers(), None, "{v}");
            assert_eq!(new.quorum_size(), Some(3), "{v}");
            assert!(new.len() > 100, "{v}: {} keys", new.len());
        }
    }

    #[test]
    fn garbage_is_malformed_not_serving() {
        assert!(matches!(srvr(""), Reply::Malformed(_)));
        assert!(matches!(srvr("hello\n"), Reply::Malformed(_)));
        assert!(matches!(
            srvr("Zxid: 0x0\nMode: chaos\n"),
            Reply::Malformed(m) if m.contains("chaos")
        ));
        assert!(matches!(
            srvr("Mode: leader\nZxid: zz\n"),
            Reply::Malformed(_)
        ));
        assert!(matches!(mntr("no tabs here"), Reply::Malformed(_)));
        assert!(matches!(ruok("nope"), Reply::Malformed(_)));
    }
}
