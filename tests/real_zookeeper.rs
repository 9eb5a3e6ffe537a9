//! The health component and the rolling-restart planner against real ZooKeeper ensembles.
//!
//! Needs Java and the jars of `e2e/lib/zookeeper-dist.sh`; fails (never skips) without them.
//! Every test runs its own ensemble on 127.0.0.1-127.0.0.N with its own ports, so the tests
//! run in parallel. Port bases 21000-21300 lie below Kubernetes' NodePort range (30000-32767)
//! and Linux's ephemeral range (32768+), so neither a local cluster's NodePort rules nor
//! outgoing connections can take them.

#[path = "support/dist.rs"]
mod dist;
#[path = "support/ensemble.rs"]
mod ensemble;
#[path = "support/rolling_restart.rs"]
mod rolling_restart;
#[path = "support/writer.rs"]
mod writer;

use std::time::{Duration, Instant};

use ensemble::Ensemble;
use rolling_restart::{RestartRecord, RolloutReport, rolling_restart};
use writer::{
    Writer, longest_gap_history, longest_unavailability, verify_acknowledged, write_gaps,
};
use zookeeper_operator::health::{Leadership, Mode, Ordinal, Sync};
use zookeeper_operator::rollout::{self, BlockedReason, Decision, RestartReason};
use zookeeper_operator::status;

const SETTLE: Duration = Duration::from_secs(60);

fn leader_of(v: &zookeeper_operator::health::EnsembleView) -> usize {
    match v.leadership {
        Leadership::One(Ordinal(o)) => o as usize,
        ref other => panic!("expected one leader, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_view_through_kills_and_restarts() {
    let mut ens = Ensemble::start("zk", 3, 21000);
    let v = ens
        .wait_for("a synced 3-member ensemble", SETTLE, |v| v.fully_synced())
        .await;
    assert_eq!(v.voters_serving, 3);
    assert!(v.available());
    assert_eq!(v.sync, Sync::Count(2));
    assert_eq!(status::degraded(&v), None);
    let leader = leader_of(&v);
    let modes: Vec<Mode> = v.members.iter().map(|m| m.mode).collect();
    assert_eq!(modes.iter().filter(|m| **m == Mode::Leader).count(), 1);
    assert_eq!(modes.iter().filter(|m| **m == Mode::Follower).count(), 2);
    assert!(v.members.iter().all(|m| m.zxid.is_some()));

    // A follower dies: the quorum holds, at risk.
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    ens.kill_member(follower);
    let v = ens
        .wait_for("the leader to count one synced follower", SETTLE, |v| {
            v.sync == Sync::Count(1)
        })
        .await;
    assert_eq!(v.members[follower].mode, Mode::Unreachable);
    assert_eq!(
        v.members[follower].problem.as_deref(),
        Some("connection refused")
    );
    assert!(v.available());
    assert_eq!(status::degraded(&v).map(|j| j.reason), Some("QuorumAtRisk"));
    // With every member outdated, the planner restarts the dead one first.
    let obs = ens.observe("rev-2", 0).await;
    assert_eq!(
        rollout::plan(&obs).decision,
        Decision::Restart(rollout::Restart {
            ordinal: Ordinal(follower as u32),
            pod: zookeeper_operator::health::MemberName::new("zk", Ordinal(follower as u32)),
            why: RestartReason::AlreadyDown,
        })
    );

    // The leader dies too: the last member is alive but serves nobody.
    ens.kill_member(leader);
    let survivor = (0..3)
        .find(|i| *i != leader && *i != follower)
        .expect("survivor");
    let v = ens
        .wait_for("the survivor to stop serving", SETTLE, |v| {
            v.members[survivor].problem.as_deref()
                == Some("not serving requests (outside a quorum)")
        })
        .await;
    assert_eq!(v.leadership, Leadership::None);
    assert!(!v.available());
    assert_eq!(status::degraded(&v).map(|j| j.reason), Some("QuorumLost"));
    let obs = ens.observe("rev-2", 0).await;
    assert!(
        matches!(
            rollout::plan(&obs).decision,
            Decision::Blocked(BlockedReason::MembersNotServing { .. })
        ),
        "{:?}",
        rollout::plan(&obs).decision
    );

    // Both come back: one leader again, every follower synced.
    ens.start_member(leader);
    ens.start_member(follower);
    let v = ens
        .wait_for("the ensemble to heal", SETTLE, |v| v.fully_synced())
        .await;
    assert!(v.available());
    assert_eq!(status::degraded(&v), None);
    leader_of(&v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_keep_quorum_with_two_down_and_lose_it_with_three() {
    let mut ens = Ensemble::start("zk", 5, 21100);
    let v = ens
        .wait_for("a synced 5-member ensemble", SETTLE, |v| v.fully_synced())
        .await;
    assert_eq!(v.sync, Sync::Count(4));
    let leader = leader_of(&v);
    let followers: Vec<usize> = (0..5).filter(|i| *i != leader).collect();

    ens.kill_member(followers[0]);
    let v = ens
        .wait_for("4 of 5 serving", SETTLE, |v| v.sync == Sync::Count(3))
        .await;
    assert_eq!(status::degraded(&v).map(|j| j.reason), Some("MemberDown"));

    ens.kill_member(followers[1]);
    let v = ens
        .wait_for("3 of 5 serving", SETTLE, |v| v.sync == Sync::Count(2))
        .await;
    assert!(v.available());
    assert_eq!(v.voters_serving, 3);
    assert_eq!(status::degraded(&v).map(|j| j.reason), Some("QuorumAtRisk"));
    // Two outdated members are down: restarting either is refused.
    let obs = ens.observe("rev-2", 0).await;
    assert!(matches!(rollout::plan(&obs).decision, Decision::Blocked(_)));

    ens.kill_member(followers[2]);
    let v = ens
        .wait_for("the quorum to be lost", SETTLE, |v| !v.majority_serving())
        .await;
    assert!(!v.available());
    assert_eq!(status::degraded(&v).map(|j| j.reason), Some("QuorumLost"));

    for &f in &followers[..3] {
        ens.start_member(f);
    }
    let v = ens
        .wait_for("the ensemble to heal", SETTLE, |v| v.fully_synced())
        .await;
    assert_eq!(v.voters_serving, 5);
}

/// Checks a finished rollout under write load and prints what it measured.
async fn check_rollout_under_writes(ens: &Ensemble, writer: Writer, reports: &[RolloutReport]) {
    let (client, attempts) = writer.stop().await;
    let acked = verify_acknowledged(&client, &attempts).await;
    assert!(acked > 50, "only {acked} writes acknowledged");
    let restarts: Vec<&RestartRecord> = reports.iter().flat_map(|r| r.restarts.iter()).collect();
    // Each failed write lies within a restart; outside the leader's own restart only the
    // writer's own connection may drop (its server was the one restarted) and is re-established
    // at once, so the ensemble stays writable.
    let slack = Duration::from_millis(500);
    let in_window = |t: Instant, r: &RestartRecord| {
        t + slack >= r.killed_at && r.synced_at.is_none_or(|s| t <= s + slack)
    };
    let mut failures_outside_leader = Vec::new();
    for a in attempts.iter().filter(|a| a.result.is_err()) {
        let during_leader = restarts
            .iter()
            .any(|r| r.was_leader && (in_window(a.during.start, r) || in_window(a.during.end, r)));
        if !during_leader {
            let during_any = restarts
                .iter()
                .any(|r| in_window(a.during.start, r) || in_window(a.during.end, r));
            assert!(during_any, "a write failed outside every restart: {a:?}");
            failures_outside_leader.push(a.clone());
        }
    }
    // Writes stall (without failing) only while the leader restarts.
    for (gap, at) in write_gaps(&attempts) {
        let end = at + gap;
        let overlaps_leader = restarts.iter().any(|r| {
            r.was_leader
                && end + slack >= r.killed_at
                && r.synced_at.is_none_or(|s| at <= s + slack)
        });
        assert!(
            overlaps_leader || gap < Duration::from_millis(1500),
            "writes stalled {gap:?} outside the leader's restart; the longest gap: {}",
            longest_gap_history(&attempts)
        );
    }
    let (longest, _) = longest_unavailability(&attempts);
    let failed = attempts.iter().filter(|a| a.result.is_err()).count();
    eprintln!(
        "{} members: {} writes acknowledged, {failed} failed ({} outside the leader's restart), longest write gap {longest:?}",
        ens.len(),
        acked,
        failures_outside_leader.len()
    );
    for a in &failures_outside_leader {
        eprintln!(
            "  failed during a follower's restart: {:?} after {:?}",
            a.result,
            a.during.end - a.during.start
        );
        assert!(
            a.result
                .as_ref()
                .is_err_and(|e| e.contains("connection") || e.contains("Connection")),
            "a write failed during a follower's restart for another reason than its own connection: {a:?}"
        );
    }
    let outside_gap: Duration = failures_outside_leader
        .iter()
        .map(|a| a.during.end - a.during.start)
        .max()
        .unwrap_or_default();
    assert!(
        outside_gap < Duration::from_secs(2),
        "a follower restart made writes wait {outside_gap:?}"
    );
}

fn check_order(report: &RolloutReport, expected: &[usize]) {
    let order: Vec<usize> = report.restarts.iter().map(|r| r.ordinal).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted, expected,
        "each eligible member restarted once: {order:?}"
    );
    assert!(report.blocked.is_empty(), "blocked: {:?}", report.blocked);
    assert!(
        report.max_down <= 1,
        "{} members down at once",
        report.max_down
    );
    // Leader last: once the leader is restarted no outdated follower is left.
    for (k, r) in report.restarts.iter().enumerate() {
        if r.was_leader {
            assert_eq!(
                k,
                report.restarts.len() - 1,
                "leader restarted before others: {report:#?}"
            );
        }
    }
    for r in &report.restarts {
        assert!(
            r.synced_at.is_some(),
            "member {} never synced again",
            r.ordinal
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_three_under_writes() {
    let mut ens = Ensemble::start("zk", 3, 21200);
    let v = ens
        .wait_for("a synced 3-member ensemble", SETTLE, |v| v.fully_synced())
        .await;
    let leader = leader_of(&v);
    let writer = Writer::start(&ens.connect_string()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = rolling_restart(&mut ens, "rev-2", 0, Duration::from_secs(90)).await;
    check_order(&report, &[0, 1, 2]);
    assert_eq!(report.restarts.last().map(|r| r.ordinal), Some(leader));
    assert!(report.restarts.last().is_some_and(|r| r.was_leader));
    for i in 0..3 {
        assert_eq!(ens.revision(i), "rev-2");
    }
    eprintln!(
        "3 members: wall {:?}, floor {:?}, ratio {:.2}",
        report.wall,
        report.floor(),
        report.wall.as_secs_f64() / report.floor().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    check_rollout_under_writes(&ens, writer, std::slice::from_ref(&report)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_five_with_partition_canary_under_writes() {
    let mut ens = Ensemble::start("zk", 5, 21300);
    ens.wait_for("a synced 5-member ensemble", SETTLE, |v| v.fully_synced())
        .await;
    let writer = Writer::start(&ens.connect_string()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Canary: partition 3 changes ordinals 3 and 4 only.
    let canary = rolling_restart(&mut ens, "rev-2", 3, Duration::from_secs(90)).await;
    check_order(&canary, &[3, 4]);
    for i in 0..5 {
        assert_eq!(ens.revision(i), if i >= 3 { "rev-2" } else { "rev-1" });
    }
    // The planner stays idle with the partition in place.
    let obs = ens.observe("rev-2", 3).await;
    assert_eq!(rollout::plan(&obs).decision, Decision::Idle);

    // Partition 0 finishes the rollout.
    let rest = rolling_restart(&mut ens, "rev-2", 0, Duration::from_secs(90)).await;
    check_order(&rest, &[0, 1, 2]);
    for i in 0..5 {
        assert_eq!(ens.revision(i), "rev-2");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    check_rollout_under_writes(&ens, writer, &[canary, rest]).await;
}

/// The image's readiness script, as the probes call it, against real members.
async fn ready(port: u16, host: &str, check: &[&str], conf: &std::path::Path) -> bool {
    let mut cmd = std::process::Command::new("deploy/images/zookeeper/zookeeper-ready");
    cmd.args(check)
        .arg(port.to_string())
        .env("ZOOKEEPER_READY_HOST", host)
        .env("ZOOKEEPER_READY_CONF", conf)
        .env("ZOOKEEPER_READY_TIMEOUT", "2");
    tokio::task::spawn_blocking(move || cmd.status())
        .await
        .expect("join")
        .expect("run zookeeper-ready")
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_script_means_what_each_probe_needs() {
    let mut ens = Ensemble::start("zk", 3, 21400);
    ens.wait_for("a synced 3-member ensemble", SETTLE, |v| v.fully_synced())
        .await;
    let port = ens.ports.client;
    // The member under test is 127.0.0.4; its peers are the three real members.
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("zoo.cfg");
    let servers: String = (1..=4)
        .map(|i| {
            format!(
                "server.{i}=127.0.0.{i}:{}:{}\n",
                ens.ports.peer, ens.ports.election
            )
        })
        .collect();
    std::fs::write(&conf, servers).expect("zoo.cfg");

    // A real serving member passes every check.
    for check in [
        &[][..],
        &["--liveness"],
        &["--quorum"],
        &["--quorum-or-alone"],
    ] {
        assert!(ready(port, "127.0.0.1", check, &conf).await, "{check:?}");
    }
    // Nothing listening fails every check.
    assert!(!ready(port, "127.0.0.5", &[], &conf).await);

    // A member that answers but serves no quorum (what ZooKeeper says while electing or syncing).
    let listener = tokio::net::TcpListener::bind(("127.0.0.4", port))
        .await
        .expect("bind 127.0.0.4");
    let answering = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut word = [0u8; 4];
            let _ = s.read_exact(&mut word).await;
            let _ = s
                .write_all(b"This ZooKeeper instance is not currently serving requests\n")
                .await;
        }
    });
    // The reference manifest's meaning: it answers.
    assert!(ready(port, "127.0.0.4", &[], &conf).await);
    // Quorum-aware: not Ready, and not Ready while its peers serve even with OrderedReady.
    assert!(!ready(port, "127.0.0.4", &["--quorum"], &conf).await);
    assert!(!ready(port, "127.0.0.4", &["--quorum-or-alone"], &conf).await);

    // With no peer serving (the first member of an OrderedReady set), answering is enough.
    for i in 0..3 {
        ens.kill_member(i);
    }
    assert!(ready(port, "127.0.0.4", &["--quorum-or-alone"], &conf).await);
    assert!(!ready(port, "127.0.0.4", &["--quorum"], &conf).await);
    answering.abort();
}
