//! The leader's restart with a handoff, on real ZooKeeper servers: the operator's line
//! (`membership::handoff`) makes the leader an observer, a synced follower leads at once, the
//! old leader restarts as an observer and the planner (`membership::next_step`) makes it a voter
//! again. Side by side, in the same run, the restart without a handoff (the leader killed and
//! started again, which costs an election). Writers pinned to one surviving member each show
//! what a client of a follower sees; the figures are printed, the assertions are behaviour.
//!
//! Needs Java and the jars of `e2e/lib/zookeeper-dist.sh`; fails (never skips) without them.
//! Servers run on 127.0.0.1-127.0.0.5 with ports 21700-21702.

#[path = "support/dist.rs"]
mod dist;
// Shared with the other real-ZooKeeper tests, which use more of them.
#[allow(dead_code)]
#[path = "support/dynamic_ensemble.rs"]
mod dynamic_ensemble;
#[allow(dead_code)]
#[path = "support/writer.rs"]
mod writer;

use std::time::{Duration, Instant};

use dynamic_ensemble::DynamicEnsemble;
use writer::{WriteAttempt, Writer, verify_acknowledged, write_gaps};
use zookeeper_operator::health::Mode;
use zookeeper_operator::membership::{
    CommittedConfig, ConfigVersion, MembershipStep, Role, ServerId, handoff, next_step,
};
use zookeeper_operator::reconfig::{Reconfigurer, SuperUser};

const TIMEOUT: Duration = Duration::from_secs(5);
const ROUNDS: usize = 3;

/// The longest gap between acknowledged writes that ends after `t0`.
fn gap_after(attempts: &[WriteAttempt], t0: Instant) -> Duration {
    write_gaps(attempts)
        .into_iter()
        .filter(|(g, at)| *at + *g > t0)
        .map(|(g, _)| g)
        .max()
        .unwrap_or_default()
}

/// Writers pinned to two members that are not `leader`.
async fn writers(ens: &DynamicEnsemble, leader: ServerId) -> Vec<Writer> {
    let mut ws = Vec::new();
    for id in ens.running().into_iter().filter(|id| *id != leader).take(2) {
        ws.push(Writer::start(&ens.address(id).to_string()).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    ws
}

/// Stops the writers; every acknowledged write must be there. Returns the longest gap after
/// `t0` and the number of writes.
async fn finish(ws: Vec<Writer>, t0: Instant) -> (Duration, usize) {
    let mut gap = Duration::ZERO;
    let mut writes = 0;
    for w in ws {
        let (client, attempts) = w.stop().await;
        gap = gap.max(gap_after(&attempts, t0));
        writes += verify_acknowledged(&client, &attempts).await;
    }
    (gap, writes)
}

fn summary(v: &[Duration]) -> String {
    let ms: Vec<String> = v.iter().map(|d| format!("{}", d.as_millis())).collect();
    format!(
        "[{}] ms, max {} ms",
        ms.join(", "),
        v.iter().max().unwrap_or(&Duration::ZERO).as_millis()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_hands_off_before_its_restart_and_is_a_voter_again() {
    let user = SuperUser::new("handoff-test-password");
    let mut ens = DynamicEnsemble::new(5, 21700, user.clone());
    let desired = ens.desired(5);
    let boot = CommittedConfig {
        servers: desired.servers.clone(),
        version: ConfigVersion(0),
    };
    for id in 1..=5 {
        ens.start(ServerId(id), &boot);
    }
    ens.wait_whole(5).await;

    let mut killed = Vec::new();
    let mut handed = Vec::new();
    let mut writes = 0;
    for round in 0..ROUNDS {
        // Without a handoff: the leader goes, the others elect a new one.
        let leader = ens.wait_whole(5).await;
        let ws = writers(&ens, leader).await;
        let t0 = Instant::now();
        ens.restart(leader, &boot);
        ens.wait_whole(5).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (gap, n) = finish(ws, t0).await;
        writes += n;
        killed.push(gap);

        // With a handoff: the operator's reconfiguration first, then the restart.
        let leader = ens.wait_whole(5).await;
        let c = ens.committed().await;
        let observer = handoff(&c, leader).expect("the leader of five voters hands off");
        let ws = writers(&ens, leader).await;
        let t0 = Instant::now();
        let rc = Reconfigurer::connect(&ens.connect_string(), &user, TIMEOUT)
            .await
            .expect("connect as the super user");
        // The answer may be lost: the handoff makes every follower drop its clients.
        let answered = rc.apply(&MembershipStep::Add(observer), c.version).await;
        let after = ens.committed().await;
        assert_eq!(
            after.servers[&leader].role,
            Role::Observer,
            "the handoff was not committed (answer: {answered:?})"
        );
        // What the operator waits for before it stops the old leader.
        let successor_after = ens.wait_successor(leader, 4).await;
        let successor = ens.wait_whole(4).await;
        let took = t0.elapsed();
        assert_ne!(successor, leader, "leadership moved");
        assert_eq!(ens.health_of_running().await.modes[&leader], Mode::Observer);
        // The restart: it boots as the observer it learned it is.
        ens.restart(leader, &boot);
        let h = loop {
            let h = ens.health_of_running().await;
            match next_step(&after, &desired, &h) {
                MembershipStep::Add(s) => {
                    assert_eq!(Some(&s), desired.servers.get(&leader));
                    break h;
                }
                MembershipStep::Wait(_) => {
                    assert!(t0.elapsed() < Duration::from_secs(60), "{h:?}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!("expected the promotion, got {other:?}"),
            }
        };
        assert_eq!(h.modes[&leader], Mode::Observer);
        let MembershipStep::Add(promote) = next_step(&after, &desired, &h) else {
            unreachable!()
        };
        rc.apply(&MembershipStep::Add(promote), after.version)
            .await
            .expect("the promotion is committed");
        ens.wait_whole(5).await;
        assert_eq!(
            next_step(
                &ens.committed().await,
                &desired,
                &ens.health_of_running().await
            ),
            MembershipStep::Done
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (gap, n) = finish(ws, t0).await;
        writes += n;
        handed.push(gap);
        println!(
            "round {round}: killed leader: longest gap {} ms; handoff {leader} -> {successor} \
             (the successor leads every voter left {} ms after the handoff's answer, every \
             server serving again after {} ms): longest gap {} ms",
            killed[round].as_millis(),
            successor_after.as_millis(),
            took.as_millis(),
            gap.as_millis()
        );
    }
    println!(
        "5 servers, writers on two surviving members, {writes} acknowledged writes all present:\n  \
         leader restarted without a handoff: {}\n  with a handoff: {}",
        summary(&killed),
        summary(&handed)
    );
    assert!(writes > 0);
}
