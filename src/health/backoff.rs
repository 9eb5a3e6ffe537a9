//! Per-cluster backoff of probing members that cannot answer.
//!
//! A cluster whose members do not answer (pods Pending, unschedulable, crash-looping) used to be
//! probed and read again every few seconds for as long as it lasted: with many such clusters
//! that is most of the operator's CPU and API reads, spent learning nothing new. Every change
//! that can make a member answer shows up as a watch event (a pod scheduled, started, Ready,
//! deleted), which reconciles at once whatever the backoff says; so only the passes that find
//! exactly what the previous one found are spaced out: `base` for the first [`GRACE`] of them,
//! then doubling up to `max`. Any difference resets the streak.
//!
//! Bounded time: never longer than `max` between two looks. Bounded memory: one small entry per
//! cluster that is currently not answering; entries not touched for `forget_after` (a deleted
//! cluster, one that became steady through another path) are swept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Passes that may find the same unanswering members before the spacing starts to grow: a
/// member that is merely starting answers within them.
pub const GRACE: u32 = 3;

/// How passes over a cluster whose members do not answer are spaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The spacing while something changes, and during the grace passes.
    pub base: Duration,
    /// The longest spacing.
    pub max: Duration,
    /// Entries not touched for this long are forgotten.
    pub forget_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            max: Duration::from_secs(60),
            forget_after: Duration::from_secs(600),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    fingerprint: u64,
    /// Passes in a row that found this same fingerprint.
    streak: u32,
    touched: Instant,
}

/// The backoff state of every cluster whose members do not answer, keyed by
/// `<namespace>/<name>`.
#[derive(Debug)]
pub struct ProbeBackoff {
    config: BackoffConfig,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    entries: HashMap<String, Entry>,
    swept: Option<Instant>,
}

impl Default for ProbeBackoff {
    fn default() -> Self {
        Self::new(BackoffConfig::default())
    }
}

impl ProbeBackoff {
    /// An empty backoff with `config`.
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State {
                entries: HashMap::new(),
                swept: None,
            }),
        }
    }

    /// The spacing after `streak` passes in a row found the same thing.
    pub fn delay(&self, streak: u32) -> Duration {
        let c = &self.config;
        if streak < GRACE {
            return c.base;
        }
        let doublings = (streak - GRACE + 1).min(16);
        c.base.saturating_mul(1 << doublings).min(c.max).max(c.base)
    }

    /// A pass over `key` found members that do not answer, summarised by `fingerprint` (what a
    /// pass can observe: pods and the kind of each probe outcome). Returns how long to wait
    /// before the next pass.
    pub fn unanswered(&self, key: &str, fingerprint: u64, now: Instant) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.sweep(&mut state, now);
        let entry = state.entries.entry(key.to_string()).or_insert(Entry {
            fingerprint,
            streak: 0,
            touched: now,
        });
        if entry.fingerprint == fingerprint {
            entry.streak = entry.streak.saturating_add(1);
        } else {
            entry.fingerprint = fingerprint;
            entry.streak = 1;
        }
        entry.touched = now;
        let streak = entry.streak;
        self.delay(streak.saturating_sub(1))
    }

    /// `key` answers again, acts or changes membership: its next passes are not spaced out.
    pub fn clear(&self, key: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.entries.remove(key);
    }

    /// How many clusters are remembered (for tests and metrics).
    pub fn len(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.entries.len()
    }

    /// Whether no cluster is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops entries untouched for `forget_after`; runs at most every `forget_after / 2`, so
    /// its cost is spread over many passes.
    fn sweep(&self, state: &mut State, now: Instant) {
        let every = self.config.forget_after / 2;
        if state
            .swept
            .is_some_and(|at| now.saturating_duration_since(at) < every)
        {
            return;
        }
        let forget_after = self.config.forget_after;
        state
            .entries
            .retain(|_, e| now.saturating_duration_since(e.touched) < forget_after);
        state.swept = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_same_finding_is_spaced_out_after_the_grace_passes_up_to_the_max() {
        let b = ProbeBackoff::default();
        let t = Instant::now();
        let delays: Vec<u64> = (0..10)
            .map(|_| b.unanswered("ns/zk", 7, t).as_secs())
            .collect();
        assert_eq!(delays, [5, 5, 5, 10, 20, 40, 60, 60, 60, 60]);
    }

    #[test]
    fn a_different_finding_starts_over() {
        let b = ProbeBackoff::default();
        let t = Instant::now();
        for _ in 0..6 {
            b.unanswered("ns/zk", 1, t);
        }
        assert_eq!(b.unanswered("ns/zk", 1, t), secs(60));
        assert_eq!(b.unanswered("ns/zk", 2, t), secs(5));
        assert_eq!(b.unanswered("ns/zk", 2, t), secs(5));
    }

    #[test]
    fn clusters_back_off_independently_and_clear_resets() {
        let b = ProbeBackoff::default();
        let t = Instant::now();
        for _ in 0..8 {
            b.unanswered("ns/a", 1, t);
        }
        assert_eq!(b.unanswered("ns/b", 1, t), secs(5));
        assert_eq!(b.unanswered("ns/a", 1, t), secs(60));
        b.clear("ns/a");
        assert_eq!(b.unanswered("ns/a", 1, t), secs(5));
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn the_delay_never_exceeds_the_max_even_after_a_long_streak() {
        let b = ProbeBackoff::new(BackoffConfig {
            base: secs(5),
            max: secs(45),
            forget_after: secs(600),
        });
        for streak in 0..200 {
            assert!(b.delay(streak) <= secs(45));
            assert!(b.delay(streak) >= secs(5));
        }
        assert_eq!(b.delay(u32::MAX), secs(45));
    }

    #[test]
    fn untouched_entries_are_forgotten() {
        let b = ProbeBackoff::default();
        let t = Instant::now();
        for i in 0..1000 {
            b.unanswered(&format!("ns/zk-{i}"), 1, t);
        }
        assert_eq!(b.len(), 1000);
        // only one cluster is still looked at, ten minutes later
        b.unanswered("ns/zk-0", 1, t + secs(300));
        b.unanswered("ns/zk-0", 1, t + secs(601));
        assert_eq!(b.len(), 1);
    }
}
