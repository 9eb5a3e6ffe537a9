//! Rolling-restart benchmark on real ZooKeeper processes: prints figures, asserts nothing
//! about speed.
//!
//! `cargo bench --bench rolling_restart` (needs Java and `e2e/lib/zookeeper-dist.sh`'s jars).
//! For 3 and 5 members it reports the rollout's wall time against its floor (the sum of each
//! member's measured restart-to-synced time in the same run), their ratio (target <= 1.3), and
//! the longest window in which a concurrent writer could not write. `ROLLING_RESTART_RUNS`
//! sets the runs per size (default 3).

#[path = "../tests/support/dist.rs"]
mod dist;
#[path = "../tests/support/ensemble.rs"]
mod ensemble;
#[path = "../tests/support/rolling_restart.rs"]
mod rolling_restart;
#[allow(dead_code)]
#[path = "../tests/support/writer.rs"]
mod writer;

use std::time::Duration;

use ensemble::Ensemble;
use rolling_restart::rolling_restart;
use writer::{Writer, longest_unavailability, verify_acknowledged};

struct Run {
    wall: Duration,
    floor: Duration,
    per_member: Vec<(usize, bool, Duration)>,
    longest_gap: Duration,
    acked: usize,
    failed: usize,
}

async fn one_run(members: usize, port_base: u16) -> Run {
    let mut ens = Ensemble::start("zk", members, port_base);
    ens.wait_for("a synced ensemble", Duration::from_secs(60), |v| {
        v.fully_synced()
    })
    .await;
    let writer = Writer::start(&ens.connect_string()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = rolling_restart(&mut ens, "rev-2", 0, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (client, attempts) = writer.stop().await;
    let acked = verify_acknowledged(&client, &attempts).await;
    drop(client);
    let (longest_gap, _) = longest_unavailability(&attempts);
    Run {
        wall: report.wall,
        floor: report.floor(),
        per_member: report
            .restarts
            .iter()
            .map(|r| (r.ordinal, r.was_leader, r.duration().unwrap_or_default()))
            .collect(),
        longest_gap,
        acked,
        failed: attempts.iter().filter(|a| a.result.is_err()).count(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("ROLLING_RESTART_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!(
        "rolling restart of real ZooKeeper {} processes, planner-driven, leader last",
        dist::VERSION
    );
    for (members, port_base) in [(3usize, 22000u16), (5, 22100)] {
        let mut ratios = Vec::new();
        let mut gaps = Vec::new();
        for run in 1..=runs {
            let r = one_run(members, port_base).await;
            let ratio = r.wall.as_secs_f64() / r.floor.as_secs_f64();
            let per: Vec<String> = r
                .per_member
                .iter()
                .map(|(o, leader, d)| {
                    format!(
                        "zk-{o}{} {:.2}s",
                        if *leader { " (leader)" } else { "" },
                        d.as_secs_f64()
                    )
                })
                .collect();
            println!(
                "{members} members, run {run}: wall {:.2}s, floor {:.2}s, ratio {ratio:.2}; longest write gap {:.0} ms; writes {} acknowledged (all readable), {} failed; restart-to-synced: {}",
                r.wall.as_secs_f64(),
                r.floor.as_secs_f64(),
                r.longest_gap.as_secs_f64() * 1000.0,
                r.acked,
                r.failed,
                per.join(", ")
            );
            ratios.push(ratio);
            gaps.push(r.longest_gap);
        }
        ratios.sort_by(f64::total_cmp);
        let worst_gap = gaps.iter().max().copied().unwrap_or_default();
        println!(
            "{members} members: median ratio {:.2} (target <= 1.30), worst ratio {:.2}, longest write gap over all runs {:.0} ms",
            ratios[ratios.len() / 2],
            ratios[ratios.len() - 1],
            worst_gap.as_secs_f64() * 1000.0
        );
    }
}
