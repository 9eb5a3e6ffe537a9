//! Membership changes through dynamic reconfiguration on real ZooKeeper servers, driven by the
//! planner (`membership`) and the reconfig client (`reconfig`) the way the operator drives
//! them: grow 1 -> 3 -> 5 and shrink 5 -> 3 -> 1 under a writer, with the operator killed
//! between steps.
//!
//! Needs Java and the jars of `e2e/lib/zookeeper-dist.sh`; fails (never skips) without them.
//! Servers run on 127.0.0.1-127.0.0.5 with ports 21500-21502 (below Kubernetes' NodePort range
//! and Linux's ephemeral range, apart from the other real-ZooKeeper tests' 21000-21302).

#[path = "support/dist.rs"]
mod dist;
// Shared with the other real-ZooKeeper tests, which use more of it.
#[allow(dead_code)]
#[path = "support/dynamic_ensemble.rs"]
mod dynamic_ensemble;
#[allow(dead_code)]
#[path = "support/writer.rs"]
mod writer;

use std::time::{Duration, Instant};

use dynamic_ensemble::DynamicEnsemble;
use writer::{Writer, longest_unavailability, verify_acknowledged, write_gaps};
use zookeeper_operator::health::Mode;
use zookeeper_operator::membership::{
    CommittedConfig, ConfigVersion, DesiredMembership, Health, MembershipStep, ServerId,
    members_to_run, next_step,
};
use zookeeper_operator::reconfig::{ReconfigError, Reconfigurer, SuperUser};

const TIMEOUT: Duration = Duration::from_secs(5);

/// The operator's membership step, on its own: everything it knows it reads again each pass.
struct Operator {
    user: SuperUser,
    session: Option<(ServerId, Reconfigurer)>,
}

/// What one pass saw and did.
struct Pass {
    at: Instant,
    committed: Option<CommittedConfig>,
    step: Option<MembershipStep>,
    applied: Option<Result<CommittedConfig, ReconfigError>>,
    /// Servers a previous pass left half-done: running although no longer members (removed
    /// before they were stopped), or joiners already running but not yet added.
    found_half_done: Vec<ServerId>,
}

impl Operator {
    fn new(user: &SuperUser) -> Self {
        Self {
            user: user.clone(),
            session: None,
        }
    }

    async fn health(ens: &DynamicEnsemble, ids: &[ServerId]) -> Health {
        ens.health(ids, Duration::from_secs(1)).await
    }

    /// One pass: find the leader, read the committed configuration from it, run the servers it
    /// calls for, plan, and carry out the step when `apply` (a Kubernetes pass would scale the
    /// StatefulSet where this starts and stops processes).
    async fn pass(
        &mut self,
        ens: &mut DynamicEnsemble,
        desired: &DesiredMembership,
        apply: bool,
    ) -> Pass {
        let mut pass = Pass {
            at: Instant::now(),
            committed: None,
            step: None,
            applied: None,
            found_half_done: Vec::new(),
        };
        let before = Self::health(ens, &ens.running()).await;
        let leaders: Vec<ServerId> = before
            .modes
            .iter()
            .filter(|(_, m)| **m == Mode::Leader)
            .map(|(id, _)| *id)
            .collect();
        let [leader] = leaders[..] else {
            return pass;
        };
        if self.session.as_ref().map(|(id, _)| *id) != Some(leader) {
            let connect = ens.address(leader).to_string();
            match Reconfigurer::connect(&connect, &self.user, TIMEOUT).await {
                Ok(r) => self.session = Some((leader, r)),
                Err(_) => return pass,
            }
        }
        let Some((_, rc)) = &self.session else {
            return pass;
        };
        let committed = match rc.committed().await {
            Ok(c) => c,
            Err(_) => {
                self.session = None;
                return pass;
            }
        };
        let run = members_to_run(&committed, desired);
        pass.found_half_done = ens
            .running()
            .into_iter()
            .filter(|id| !committed.servers.contains_key(id))
            .collect();
        ens.run(&run);
        let ids: Vec<ServerId> = run.keys().copied().collect();
        let health = Self::health(ens, &ids).await;
        let step = next_step(&committed, desired, &health);
        if let MembershipStep::Remove(id) = step {
            // The leader is removed last: no other server still waits for removal.
            if health.modes.get(&id) == Some(&Mode::Leader) {
                let leaving = committed
                    .servers
                    .keys()
                    .filter(|s| !desired.servers.contains_key(s))
                    .count();
                assert_eq!(leaving, 1, "leader {id} removed before the others");
            }
        }
        if apply && matches!(step, MembershipStep::Add(_) | MembershipStep::Remove(_)) {
            pass.applied = Some(rc.apply(&step, committed.version).await);
        }
        pass.committed = Some(committed);
        pass.step = Some(step);
        pass
    }
}

/// How a run of passes treats the operator.
#[derive(Clone, Copy, PartialEq)]
enum Operators {
    /// One operator for every pass.
    One,
    /// A fresh operator for every pass: the previous one was killed between steps.
    KilledEveryPass,
}

/// The change a pass worked on, as a person reads it.
fn change_of(step: &MembershipStep, desired: &DesiredMembership) -> Option<String> {
    match step {
        MembershipStep::Add(s) => Some(format!("adding {}", desired.name(s.id))),
        MembershipStep::Remove(id) => Some(format!("removing {}", desired.name(*id))),
        MembershipStep::Readdress(_) => Some("committing client addresses".to_string()),
        MembershipStep::Wait(w) => w.change.as_ref().map(ToString::to_string),
        MembershipStep::Done => None,
    }
}

/// One member added or removed: from the first pass that worked on it to the first that
/// worked on something else (so it includes starting the JVM and the new configuration
/// reaching every member).
struct ChangeTiming {
    change: String,
    took: Duration,
    window: (Instant, Instant),
}

/// A run of passes to convergence.
struct Converged {
    timings: Vec<ChangeTiming>,
    /// Passes that found (and repaired or went on with) a previous pass's half-done change.
    half_done_found: usize,
}

async fn converge(
    ens: &mut DynamicEnsemble,
    user: &SuperUser,
    replicas: u32,
    operators: Operators,
) -> Converged {
    let desired = ens.desired(replicas);
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut operator = Operator::new(user);
    let mut passes: Vec<(Instant, Option<String>)> = Vec::new();
    let mut last = String::new();
    let mut half_done_found = 0;
    loop {
        if operators == Operators::KilledEveryPass {
            operator = Operator::new(user);
        }
        let pass = operator.pass(ens, &desired, true).await;
        let step = pass.step.clone();
        half_done_found += usize::from(!pass.found_half_done.is_empty());
        if let Some(Err(e)) = &pass.applied {
            panic!("{e} (planned from {:?})", pass.committed);
        }
        if let Some(step) = &step {
            passes.push((pass.at, change_of(step, &desired)));
            last = match step {
                MembershipStep::Wait(w) => w.to_string(),
                other => format!("{other:?}"),
            };
            if *step == MembershipStep::Done {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no convergence to {replicas} members; last step: {last}\n{}",
            ens.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut timings: Vec<ChangeTiming> = Vec::new();
    for w in passes.windows(2) {
        let ((at, change), (next_at, next)) = (&w[0], &w[1]);
        let Some(change) = change else { continue };
        match timings.last_mut() {
            Some(t) if &t.change == change && t.window.1 == *at => {
                t.window.1 = *next_at;
                t.took = *next_at - t.window.0;
            }
            _ => timings.push(ChangeTiming {
                change: change.clone(),
                took: *next_at - *at,
                window: (*at, *next_at),
            }),
        }
        let _ = next;
    }
    Converged {
        timings,
        half_done_found,
    }
}

/// Waits until `n` servers serve under one leader the leader counts synced; returns it.
async fn wait_for_leader_and_all_serving(ens: &DynamicEnsemble, n: u32) -> ServerId {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = Operator::health(ens, &ens.running()).await;
        let leaders: Vec<ServerId> = h
            .modes
            .iter()
            .filter(|(_, m)| **m == Mode::Leader)
            .map(|(id, _)| *id)
            .collect();
        let serving = h
            .modes
            .values()
            .filter(|m| matches!(m, Mode::Leader | Mode::Follower))
            .count() as u32;
        if let [leader] = leaders[..]
            && serving == n
            && h.synced_voting_followers == Some(n - 1)
        {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "no leader with {n} synced members: {h:?}\n{}",
            ens.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn committed(ens: &DynamicEnsemble, user: &SuperUser) -> CommittedConfig {
    let rc = Reconfigurer::connect(&ens.connect_string(), user, TIMEOUT)
        .await
        .expect("connect as the super user");
    rc.committed()
        .await
        .expect("read the committed configuration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_and_shrink_through_reconfig_under_writes() {
    let user = SuperUser::new("membership-test-password");
    let mut ens = DynamicEnsemble::new(5, 21500, user.clone());

    // A new cluster: its first member boots with a configuration of itself alone.
    let one = ens.desired(1);
    let first = CommittedConfig {
        servers: one.servers.clone(),
        version: ConfigVersion(0),
    };
    ens.start(ServerId(1), &first);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = Operator::health(&ens, &[ServerId(1)]).await;
        if h.modes.get(&ServerId(1)) == Some(&Mode::Leader) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server 1 never led\n{}",
            ens.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let c1 = committed(&ens, &user).await;
    assert_eq!(c1.voters().into_iter().collect::<Vec<_>>(), [ServerId(1)]);

    // Data written at size 1.
    let client = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(20))
        .connect(&ens.connect_string())
        .await
        .expect("client connects");
    let open =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    client
        .create("/size1", b"", &open)
        .await
        .expect("create /size1");
    for i in 0..50 {
        client
            .create(&format!("/size1/n{i}"), format!("v{i}").as_bytes(), &open)
            .await
            .expect("write at size 1");
    }
    let writer = Writer::start(&ens.connect_string()).await;

    // The first addition, by hand: the wrong password is refused, and of two operators that
    // read the same version only the first one's reconfig is accepted.
    let desired3 = ens.desired(3);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (committed1, add2) = loop {
        let pass = Operator::new(&user).pass(&mut ens, &desired3, false).await;
        if let (Some(c), Some(step @ MembershipStep::Add(_))) = (pass.committed, pass.step) {
            break (c, step);
        }
        assert!(
            Instant::now() < deadline,
            "server 2 never synced\n{}",
            ens.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let intruder = Reconfigurer::connect(
        &ens.address(ServerId(1)).to_string(),
        &SuperUser::new("wrong"),
        TIMEOUT,
    )
    .await
    .expect("connect with a wrong password");
    let refused = intruder.apply(&add2, committed1.version).await;
    assert!(
        matches!(
            &refused,
            Err(ReconfigError::UpdateEnsemble {
                source: zookeeper_client::Error::NoAuth,
                ..
            })
        ),
        "{refused:?}"
    );
    let a = Reconfigurer::connect(&ens.connect_string(), &user, TIMEOUT)
        .await
        .expect("operator a");
    let b = Reconfigurer::connect(&ens.connect_string(), &user, TIMEOUT)
        .await
        .expect("operator b");
    let after = a
        .apply(&add2, committed1.version)
        .await
        .expect("the first reconfig is accepted");
    assert_eq!(
        after.voters().into_iter().collect::<Vec<_>>(),
        [ServerId(1), ServerId(2)]
    );
    assert!(after.version > committed1.version);
    let raced = b.apply(&add2, committed1.version).await;
    assert!(
        matches!(raced, Err(ReconfigError::ConfigChanged { .. })),
        "a second reconfig from the same version: {raced:?}"
    );
    drop((a, b, intruder));
    println!("server 1's configuration files after the first reconfig:");
    for (name, text) in ens.config_files(ServerId(1)) {
        println!("  {name}:\n    {}", text.trim().replace('\n', "\n    "));
    }

    let mut figures = Vec::new();
    let phase = Instant::now();
    let t = converge(&mut ens, &user, 3, Operators::One).await;
    figures.push(("grow to 3", phase.elapsed(), t.timings));
    let c = committed(&ens, &user).await;
    assert_eq!(c.voters().len(), 3, "{c:?}");

    let phase = Instant::now();
    let t = converge(&mut ens, &user, 5, Operators::KilledEveryPass).await;
    assert!(
        t.half_done_found > 0,
        "no fresh operator found a joiner its predecessor had started"
    );
    figures.push((
        "grow to 5 (operator killed between passes)",
        phase.elapsed(),
        t.timings,
    ));
    let c = committed(&ens, &user).await;
    assert_eq!(c.voters().len(), 5, "{c:?}");
    assert_eq!(ens.running().len(), 5);

    // Move the leadership to a server that is about to be removed: restart server 1 (the
    // leader so far) on its own data; the others elect the highest id among themselves.
    let boot = committed(&ens, &user).await;
    ens.restart(ServerId(1), &boot);
    let leader = wait_for_leader_and_all_serving(&ens, 5).await;
    println!("leader after restarting server 1: server {leader}");

    let phase = Instant::now();
    let t = converge(&mut ens, &user, 3, Operators::KilledEveryPass).await;
    assert!(
        t.half_done_found > 0,
        "no fresh operator found a removed server its predecessor had left running"
    );
    let order: Vec<&str> = t.timings.iter().map(|t| t.change.as_str()).collect();
    if leader == ServerId(5) {
        assert_eq!(
            order,
            ["removing zk-3", "removing zk-4"],
            "the leader goes last"
        );
    }
    figures.push((
        "shrink to 3 (operator killed between passes)",
        phase.elapsed(),
        t.timings,
    ));
    let c = committed(&ens, &user).await;
    assert_eq!(
        c.voters().into_iter().collect::<Vec<_>>(),
        [ServerId(1), ServerId(2), ServerId(3)]
    );
    assert_eq!(ens.running(), [ServerId(1), ServerId(2), ServerId(3)]);

    let phase = Instant::now();
    let t = converge(&mut ens, &user, 1, Operators::One).await;
    figures.push(("shrink to 1", phase.elapsed(), t.timings));
    let c = committed(&ens, &user).await;
    assert_eq!(c.voters().into_iter().collect::<Vec<_>>(), [ServerId(1)]);
    assert_eq!(ens.running(), [ServerId(1)]);

    // Regrowth after the shrink: servers 2 and 3 join again from new, empty directories.
    let phase = Instant::now();
    let t = converge(&mut ens, &user, 3, Operators::One).await;
    figures.push(("grow again to 3", phase.elapsed(), t.timings));
    let c = committed(&ens, &user).await;
    assert_eq!(c.voters().len(), 3, "{c:?}");

    let (writer_client, attempts) = writer.stop().await;
    drop(writer_client);
    let checked = verify_acknowledged(&client, &attempts).await;
    let failed = attempts.iter().filter(|a| a.result.is_err()).count();
    for i in 0..50 {
        let (data, _) = client
            .get_data(&format!("/size1/n{i}"))
            .await
            .unwrap_or_else(|e| panic!("/size1/n{i} written at size 1 is gone: {e}"));
        assert_eq!(data, format!("v{i}").into_bytes());
    }

    println!(
        "\nmembership on real ZooKeeper 3.9.5: {checked} writes acknowledged and all present, \
         {failed} failed attempts, longest write gap overall {} ms",
        longest_unavailability(&attempts).0.as_millis()
    );
    for (name, took, timings) in &figures {
        println!("{name}: {:.1} s", took.as_secs_f64());
        for t in timings {
            let in_window = |at: &Instant| *at >= t.window.0 && *at <= t.window.1;
            // A gap belongs to the change during which it began.
            let gap = write_gaps(&attempts)
                .into_iter()
                .filter(|(_, at)| in_window(at))
                .map(|(g, _)| g)
                .max();
            let gap = match gap {
                Some(g) => format!("longest write gap {:>4} ms", g.as_millis()),
                None => "no write acknowledged (the previous change's gap still open)".into(),
            };
            println!("  {:<14} {:>5.1} s, {gap}", t.change, t.took.as_secs_f64());
        }
    }
    let adds: Vec<f64> = figures
        .iter()
        .flat_map(|(_, _, t)| t)
        .filter(|t| t.change.starts_with("adding"))
        .map(|t| t.took.as_secs_f64())
        .collect();
    let removes: Vec<f64> = figures
        .iter()
        .flat_map(|(_, _, t)| t)
        .filter(|t| t.change.starts_with("removing"))
        .map(|t| t.took.as_secs_f64())
        .collect();
    println!(
        "mean per added member {:.1} s ({} adds), per removed member {:.1} s ({} removes)",
        adds.iter().sum::<f64>() / adds.len().max(1) as f64,
        adds.len(),
        removes.iter().sum::<f64>() / removes.len().max(1) as f64,
        removes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiner_restarted_before_it_is_added_rejoins() {
    let user = SuperUser::new("joiner-restart-password");
    let mut ens = DynamicEnsemble::new(2, 21510, user.clone());
    let one = ens.desired(1);
    ens.start(
        ServerId(1),
        &CommittedConfig {
            servers: one.servers.clone(),
            version: ConfigVersion(0),
        },
    );
    wait_for_leader_and_all_serving(&ens, 1).await;
    let desired = ens.desired(2);
    let synced = async |ens: &mut DynamicEnsemble| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let pass = Operator::new(&user).pass(ens, &desired, false).await;
            if let Some(MembershipStep::Add(_)) = pass.step {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the joiner never synced; last step {:?}\n{}",
                pass.step,
                ens.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    synced(&mut ens).await;
    let files = ens.config_files(ServerId(2));
    let on_disk = files
        .iter()
        .find(|(name, _)| name == "zoo.cfg.dynamic.100000000")
        .map(|(_, text)| text.as_str());
    assert!(
        on_disk.is_some_and(|t| !t.contains("server.2=")),
        "a synced joiner keeps the committed configuration, without itself: {files:?}"
    );
    // Restarted before it was added, it boots with its joiner configuration again and syncs.
    let c = committed(&ens, &user).await;
    let boot = members_to_run(&c, &desired)
        .remove(&ServerId(2))
        .expect("server 2 is the joiner");
    ens.restart(ServerId(2), &boot);
    synced(&mut ens).await;
    let rc = Reconfigurer::connect(&ens.connect_string(), &user, TIMEOUT)
        .await
        .expect("connect");
    let step = MembershipStep::Add(desired.servers[&ServerId(2)].clone());
    let after = rc.apply(&step, c.version).await.expect("add server 2");
    assert_eq!(
        after.voters().into_iter().collect::<Vec<_>>(),
        [ServerId(1), ServerId(2)]
    );
    // Once added, its own configuration names it, and a restart keeps it.
    wait_for_leader_and_all_serving(&ens, 2).await;
    let boot = committed(&ens, &user).await;
    ens.restart(ServerId(2), &boot);
    wait_for_leader_and_all_serving(&ens, 2).await;
}
