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

use crate::health::Mode;
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
    /// When each blocked cluster's blocked time was last counted.
    blocked_since: Mutex<HashMap<ClusterLabels, Instant>>,
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
        Metrics {
            registry: Mutex::new(registry),
            reconciles,
            errors,
            duration,
            restarts,
            rollouts_blocked_seconds,
            members,
            blocked_since: Mutex::default(),
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
        self.restarts.remove(&key);
        self.rollouts_blocked_seconds.remove(&key);
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
}
