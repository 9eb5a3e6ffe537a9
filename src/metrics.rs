//! Prometheus metrics. Label sets are bounded: error categories are a fixed list, and per-cluster
//! series carry only namespace, cluster name and member mode.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::health::{Mode, Sync};
use crate::rollout::{Decision, Plan};

/// Every mode a member can report, for the members-by-mode series.
pub const MODES: [Mode; 5] = [
    Mode::Leader,
    Mode::Follower,
    Mode::Observer,
    Mode::Standalone,
    Mode::Unreachable,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub namespace: String,
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabels {
    pub namespace: String,
    pub cluster: String,
    pub member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    pub namespace: String,
    pub cluster: String,
    pub mode: &'static str,
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub reconciles: Counter,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub restarts: Family<ClusterLabels, Counter>,
    pub rollouts_blocked_seconds: Family<ClusterLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    pub members: Family<ModeLabels, Gauge>,
    /// 1 while a member serves (leader, follower, observer), else 0.
    pub member_serving: Family<MemberLabels, Gauge>,
    /// 1 while a member's pod runs the StatefulSet's update revision, else 0.
    pub member_updated: Family<MemberLabels, Gauge>,
    /// The leader's count of synced voting followers (absent without a single leader).
    pub synced_followers: Family<ClusterLabels, Gauge>,
    /// Duration of finished rollouts, from the first pass that saw an outdated member to the
    /// pass that saw every member the partition lets change updated.
    pub rollout_duration: Histogram,
    /// When each blocked cluster's blocked time was last counted.
    blocked_since: Mutex<HashMap<ClusterLabels, Instant>>,
    /// When each cluster's rollout under way was first seen.
    rollout_since: Mutex<HashMap<ClusterLabels, Instant>>,
    /// The members each cluster's per-member series were last set for.
    member_series: Mutex<HashMap<ClusterLabels, Vec<String>>>,
    /// Clusters a watch event asked a pass of that has not started yet.
    pub queue_depth: Gauge,
    /// From the first watch event that asked for a pass to the start of that pass.
    pub queue_wait: Histogram,
    /// When each cluster waiting for a pass was first asked for one.
    pending: Mutex<HashMap<(String, String), Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("zookeeper_operator");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let restarts = Family::<ClusterLabels, Counter>::default();
        let rollouts_blocked_seconds = Family::default();
        let members = Family::<ModeLabels, Gauge>::default();
        let member_serving = Family::<MemberLabels, Gauge>::default();
        let member_updated = Family::<MemberLabels, Gauge>::default();
        let synced_followers = Family::<ClusterLabels, Gauge>::default();
        let rollout_duration = Histogram::new(exponential_buckets(5.0, 2.0, 10));
        let queue_depth = Gauge::default();
        let queue_wait = Histogram::new(exponential_buckets(0.25, 2.0, 12));
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error category",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            duration.clone(),
        );
        registry.register(
            "member_restarts",
            "Members evicted by the operator for a rolling restart",
            restarts.clone(),
        );
        registry.register(
            "rollout_blocked_seconds",
            "Time a rollout waited because the ensemble was not safe to restart",
            rollouts_blocked_seconds.clone(),
        );
        registry.register(
            "members",
            "Members by the mode they reported to srvr",
            members.clone(),
        );
        registry.register(
            "member_serving",
            "1 while the member serves (leader, follower or observer per its srvr), else 0",
            member_serving.clone(),
        );
        registry.register(
            "member_updated",
            "1 while the member's pod runs the StatefulSet's update revision, else 0",
            member_updated.clone(),
        );
        registry.register(
            "synced_followers",
            "Voting followers the leader counts synced (mntr), while there is a single leader",
            synced_followers.clone(),
        );
        registry.register(
            "rollout_duration_seconds",
            "Duration of finished rolling restarts, first outdated member seen to all updated",
            rollout_duration.clone(),
        );
        registry.register(
            "reconcile_queue_depth",
            "Clusters a watch event asked a pass of that has not started yet",
            queue_depth.clone(),
        );
        registry.register(
            "reconcile_queue_wait_seconds",
            "From the first watch event asking for a pass of a cluster to the start of that pass",
            queue_wait.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            reconciles,
            errors,
            duration,
            restarts,
            rollouts_blocked_seconds,
            members,
            member_serving,
            member_updated,
            synced_followers,
            rollout_duration,
            blocked_since: Mutex::default(),
            rollout_since: Mutex::default(),
            member_series: Mutex::default(),
            queue_depth,
            queue_wait,
            pending: Mutex::default(),
        }
    }
}

impl Metrics {
    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// A watch event asked for a pass of the cluster (the controller runs it after its debounce,
    /// once a slot is free; several events before it starts are one pass).
    pub fn pass_asked(&self, namespace: &str, cluster: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .entry((namespace.to_string(), cluster.to_string()))
            .or_insert_with(Instant::now);
        self.queue_depth.set(pending.len() as i64);
    }

    /// A pass of the cluster starts: it no longer waits.
    pub fn pass_started(&self, namespace: &str, cluster: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(since) = pending.remove(&(namespace.to_string(), cluster.to_string())) {
            self.queue_wait.observe(since.elapsed().as_secs_f64());
        }
        self.queue_depth.set(pending.len() as i64);
    }

    /// Counts an error that did not fail the reconcile (it is reported in status instead).
    pub fn observe_error(&self, category: &'static str) {
        self.errors.get_or_create(&ErrorLabels { category }).inc();
    }

    pub fn observe_reconcile(&self, took: Duration, error: Option<&'static str>) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(category) = error {
            self.errors.get_or_create(&ErrorLabels { category }).inc();
        }
    }

    /// Sets the members-by-mode gauges of one cluster (modes absent now are set to 0).
    pub fn set_members(&self, namespace: &str, cluster: &str, counts: &[(&'static str, i64)]) {
        for (mode, n) in counts {
            self.members
                .get_or_create(&ModeLabels {
                    namespace: namespace.to_string(),
                    cluster: cluster.to_string(),
                    mode,
                })
                .set(*n);
        }
    }

    /// Records what one pass planned: members by mode, and the time a blocked rollout has been
    /// blocked (real time between passes, whatever the requeue interval).
    pub fn observe_plan(&self, cluster: &ClusterLabels, plan: &Plan) {
        self.observe_blocked(
            cluster,
            matches!(plan.decision, Decision::Blocked(_)),
            Instant::now(),
        );
        let counts: Vec<_> = MODES
            .iter()
            .map(|mode| {
                let n = plan.view.members.iter().filter(|m| m.mode == *mode).count();
                (mode.as_str(), n as i64)
            })
            .collect();
        self.set_members(&cluster.namespace, &cluster.cluster, &counts);
        self.set_member_series(cluster, plan);
        match plan.view.sync {
            Sync::Count(n) => {
                self.synced_followers
                    .get_or_create(cluster)
                    .set(i64::from(n));
            }
            _ => {
                self.synced_followers.remove(cluster);
            }
        }
        let p = &plan.progress;
        self.observe_rollout(
            cluster,
            !p.creating && p.updated < p.eligible,
            Instant::now(),
        );
    }

    /// Per-member gauges; series of members that are gone (a smaller ensemble) are removed.
    fn set_member_series(&self, cluster: &ClusterLabels, plan: &Plan) {
        let label = |member: &str| MemberLabels {
            namespace: cluster.namespace.clone(),
            cluster: cluster.cluster.clone(),
            member: member.to_string(),
        };
        let now: Vec<String> = plan
            .view
            .members
            .iter()
            .map(|m| m.name.to_string())
            .collect();
        for m in &plan.view.members {
            let l = label(&m.name.to_string());
            let serving = matches!(m.mode, Mode::Leader | Mode::Follower | Mode::Observer);
            self.member_serving
                .get_or_create(&l)
                .set(i64::from(serving));
            self.member_updated
                .get_or_create(&l)
                .set(i64::from(m.updated));
        }
        let mut series = self.member_series.lock().unwrap_or_else(|e| e.into_inner());
        for gone in series
            .insert(cluster.clone(), now.clone())
            .unwrap_or_default()
            .iter()
            .filter(|m| !now.contains(m))
        {
            self.member_serving.remove(&label(gone));
            self.member_updated.remove(&label(gone));
        }
    }

    /// Starts a cluster's rollout clock on the first pass that sees an outdated member and
    /// observes the duration on the first pass that sees none.
    fn observe_rollout(&self, cluster: &ClusterLabels, under_way: bool, now: Instant) {
        let mut since = self.rollout_since.lock().unwrap_or_else(|e| e.into_inner());
        if under_way {
            since.entry(cluster.clone()).or_insert(now);
        } else if let Some(started) = since.remove(cluster) {
            self.rollout_duration
                .observe(now.saturating_duration_since(started).as_secs_f64());
        }
    }

    /// Adds the time since the previous blocked pass of `cluster` to its blocked seconds; the
    /// first pass that is no longer blocked adds the last stretch and stops the clock.
    fn observe_blocked(&self, cluster: &ClusterLabels, blocked: bool, now: Instant) {
        let mut since = self.blocked_since.lock().unwrap_or_else(|e| e.into_inner());
        let last = if blocked {
            since.insert(cluster.clone(), now)
        } else {
            since.remove(cluster)
        };
        if let Some(last) = last {
            self.rollouts_blocked_seconds
                .get_or_create(cluster)
                .inc_by(now.saturating_duration_since(last).as_secs_f64());
        }
    }

    /// Forgets a deleted cluster's series so label sets stay bounded by live clusters.
    pub fn forget_cluster(&self, namespace: &str, cluster: &str) {
        let key = ClusterLabels {
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
        };
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.remove(&(key.namespace.clone(), key.cluster.clone()));
            self.queue_depth.set(pending.len() as i64);
        }
        self.restarts.remove(&key);
        self.rollouts_blocked_seconds.remove(&key);
        self.synced_followers.remove(&key);
        self.rollout_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        let members = self
            .member_series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key)
            .unwrap_or_default();
        for member in members {
            let l = MemberLabels {
                namespace: namespace.to_string(),
                cluster: cluster.to_string(),
                member,
            };
            self.member_serving.remove(&l);
            self.member_updated.remove(&l);
        }
        self.blocked_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        for mode in MODES.iter().map(|m| m.as_str()) {
            self.members.remove(&ModeLabels {
                namespace: namespace.to_string(),
                cluster: cluster.to_string(),
                mode,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_asked_for_a_pass_wait_in_the_queue_until_it_starts() {
        let m = Metrics::default();
        m.pass_asked("ns", "a");
        m.pass_asked("ns", "a"); // a second event before the pass: still one cluster waiting
        m.pass_asked("ns", "b");
        m.pass_asked("other", "a");
        assert!(
            m.encode()
                .contains("zookeeper_operator_reconcile_queue_depth 3")
        );
        m.pass_started("ns", "a");
        m.pass_started("ns", "zz"); // a requeued pass nobody asked for: no wait observed
        let text = m.encode();
        assert!(
            text.contains("zookeeper_operator_reconcile_queue_depth 2"),
            "{text}"
        );
        assert!(
            text.contains("zookeeper_operator_reconcile_queue_wait_seconds_count 1"),
            "{text}"
        );
        // a deleted cluster never gets its pass: it leaves the queue
        m.forget_cluster("ns", "b");
        assert!(
            m.encode()
                .contains("zookeeper_operator_reconcile_queue_depth 1")
        );
    }

    #[test]
    fn encodes_reconciles_errors_and_members() {
        let m = Metrics::default();
        m.observe_reconcile(Duration::from_millis(20), None);
        m.observe_reconcile(Duration::from_millis(30), Some("apply"));
        m.set_members("ns", "zk", &[("leader", 1), ("follower", 2)]);
        let text = m.encode();
        assert!(
            text.contains("zookeeper_operator_reconciles_total 2"),
            "{text}"
        );
        assert!(
            text.contains("zookeeper_operator_reconcile_errors_total{category=\"apply\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("zookeeper_operator_reconcile_duration_seconds_count 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "zookeeper_operator_members{namespace=\"ns\",cluster=\"zk\",mode=\"follower\"} 2"
            ),
            "{text}"
        );
        m.forget_cluster("ns", "zk");
        assert!(!m.encode().contains("cluster=\"zk\""));
    }

    #[test]
    fn blocked_seconds_count_real_time_between_passes() {
        let m = Metrics::default();
        let zk = ClusterLabels {
            namespace: "ns".into(),
            cluster: "zk".into(),
        };
        let t0 = Instant::now();
        m.observe_blocked(&zk, true, t0);
        m.observe_blocked(&zk, true, t0 + Duration::from_secs(10));
        m.observe_blocked(&zk, true, t0 + Duration::from_secs(25));
        // Unblocked 7 s later: that stretch counts, then the clock stops.
        m.observe_blocked(&zk, false, t0 + Duration::from_secs(32));
        m.observe_blocked(&zk, false, t0 + Duration::from_secs(90));
        let blocked = m.rollouts_blocked_seconds.get_or_create(&zk).get();
        assert!((blocked - 32.0).abs() < 1e-9, "{blocked}");
    }

    #[test]
    fn rollout_duration_is_observed_once_per_finished_rollout() {
        let m = Metrics::default();
        let zk = ClusterLabels {
            namespace: "ns".into(),
            cluster: "zk".into(),
        };
        let t0 = Instant::now();
        m.observe_rollout(&zk, false, t0);
        m.observe_rollout(&zk, true, t0 + Duration::from_secs(1));
        m.observe_rollout(&zk, true, t0 + Duration::from_secs(20));
        m.observe_rollout(&zk, false, t0 + Duration::from_secs(44));
        m.observe_rollout(&zk, false, t0 + Duration::from_secs(60));
        let text = m.encode();
        assert!(
            text.contains("zookeeper_operator_rollout_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("zookeeper_operator_rollout_duration_seconds_sum 43.0"),
            "{text}"
        );
    }
}
