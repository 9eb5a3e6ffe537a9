//! A rolling restart of a real [`Ensemble`] driven by the planner, measured restart by restart.
//!
//! Needs the ensemble module declared next to it, e.g.
//! `#[path = "support/ensemble.rs"] mod ensemble;` (and `support/dist.rs` as `mod dist`).

use std::time::{Duration, Instant};

use zookeeper_operator::rollout::{self, Decision};

use crate::ensemble::Ensemble;

/// One restart the rollout made.
#[derive(Clone, Debug)]
pub struct RestartRecord {
    /// Member restarted.
    pub ordinal: usize,
    /// It led the ensemble when restarted.
    pub was_leader: bool,
    /// When it was killed.
    pub killed_at: Instant,
    /// When it next served, Ready, with the leader counting every follower synced.
    pub synced_at: Option<Instant>,
}

impl RestartRecord {
    /// Restart-to-synced time.
    pub fn duration(&self) -> Option<Duration> {
        self.synced_at.map(|s| s - self.killed_at)
    }
}

/// What a rolling restart driven by the planner did.
#[derive(Debug, Default)]
pub struct RolloutReport {
    /// Restarts in order.
    pub restarts: Vec<RestartRecord>,
    /// From the first observation to `Idle`.
    pub wall: Duration,
    /// Most members seen not serving at once, outside the leader's own restart.
    pub max_down: usize,
    /// Most members seen not serving at once while the leader restarts (the election).
    pub max_down_during_leader_restart: usize,
    /// Most other members not serving when a restart was made (must be 0).
    pub others_down_at_restart: usize,
    /// Every `Blocked` decision met (none expected without faults).
    pub blocked: Vec<String>,
    /// Observations made.
    pub observations: usize,
}

impl RolloutReport {
    /// Sum of restart-to-synced times: the least a one-at-a-time rollout can take.
    pub fn floor(&self) -> Duration {
        self.restarts
            .iter()
            .filter_map(RestartRecord::duration)
            .sum()
    }
}

/// Drives a rolling restart to `update_revision` through [`rollout::plan`], restarting members
/// by killing and starting their JVM, until the planner says `Idle`.
pub async fn rolling_restart(
    ens: &mut Ensemble,
    update_revision: &str,
    partition: u32,
    timeout: Duration,
) -> RolloutReport {
    let started = Instant::now();
    let mut report = RolloutReport::default();
    loop {
        assert!(
            started.elapsed() < timeout,
            "rolling restart did not finish within {timeout:?}: {report:#?}"
        );
        let obs = ens.observe(update_revision, partition).await;
        report.observations += 1;
        let view = obs.ensemble();
        let down = view.members.iter().filter(|m| m.problem.is_some()).count();
        // Losing the leader sends every member into an election, during which none serves;
        // that is the leader's own restart, so it is counted apart.
        let electing = report
            .restarts
            .last()
            .is_some_and(|r| r.was_leader && r.synced_at.is_none());
        if electing {
            report.max_down_during_leader_restart = report.max_down_during_leader_restart.max(down);
        } else {
            report.max_down = report.max_down.max(down);
        }
        // The pending restart is over once its member serves and every follower is synced.
        if let Some(last) = report.restarts.last_mut()
            && last.synced_at.is_none()
            && view.members[last.ordinal].problem.is_none()
            && view.fully_synced()
        {
            last.synced_at = Some(Instant::now());
        }
        match rollout::plan(&obs).decision {
            Decision::Idle => break,
            Decision::Restart(r) => {
                let i = r.ordinal.0 as usize;
                let others_down = view
                    .members
                    .iter()
                    .filter(|m| m.ordinal != r.ordinal && m.problem.is_some())
                    .count();
                report.others_down_at_restart = report.others_down_at_restart.max(others_down);
                let was_leader = view.leader().is_some_and(|l| l.ordinal == r.ordinal);
                report.restarts.push(RestartRecord {
                    ordinal: i,
                    was_leader,
                    killed_at: Instant::now(),
                    synced_at: None,
                });
                ens.restart_member(i, update_revision);
            }
            Decision::Wait(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Decision::Blocked(b) => {
                report.blocked.push(b.to_string());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    report.wall = started.elapsed();
    // The planner is Idle once the last member runs the update revision and serves; the
    // leader may count it as synced a moment later. Wait for that, as for every other restart
    // (the wall time stays the planner's).
    while let Some(last) = report.restarts.last()
        && last.synced_at.is_none()
        && started.elapsed() < timeout
    {
        let ordinal = last.ordinal;
        let view = ens.observe(update_revision, partition).await.ensemble();
        if view.members[ordinal].problem.is_none() && view.fully_synced() {
            if let Some(last) = report.restarts.last_mut() {
                last.synced_at = Some(Instant::now());
            }
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    report
}
