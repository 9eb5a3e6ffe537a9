//! What users of ZooKeeper's own Java client see when the leader restarts, on real ZooKeeper
//! processes: prints figures, asserts nothing about speed.
//!
//! `cargo bench --bench java_handoff` (needs a JDK and `e2e/lib/zookeeper-dist.sh`'s jars).
//! One JVM runs many sessions (`e2e/bench-tools/Sessions.java`), each with its own client on
//! every server's address, so each has its own host order and its own random reconnect
//! back-off, as separate applications would. Each round restarts the leader one of three ways,
//! in turn:
//! - `election`: the leader is killed and started again; the others elect a new one;
//! - `handoff, prompt`: the operator's handoff (`membership::handoff`: the leader becomes an
//!   observer, a synced follower leads at once), and the old leader is killed as soon as its
//!   successor leads every voter left, as the operator does (a few hundred milliseconds);
//! - `handoff, held`: the same handoff, but the old leader is killed only once it serves again
//!   as an observer (and every other server serves), so that clients that reconnect to its
//!   address at the handoff find it serving.
//!
//! Every restarted server is made a voter again before the next round. It prints, per way,
//! each session's longest write gap over the rounds as p50/p95/max and how many exceeded 2 s.
//! Settings: `JAVA_HANDOFF_MEMBERS` (3), `JAVA_HANDOFF_ROUNDS` (rounds per way, 5),
//! `JAVA_HANDOFF_SESSIONS` (6), `JAVA_HANDOFF_WAYS` (some of `election,prompt,held`; all by default).

#[path = "../tests/support/dist.rs"]
mod dist;
#[allow(dead_code)]
#[path = "../tests/support/dynamic_ensemble.rs"]
mod dynamic_ensemble;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dynamic_ensemble::DynamicEnsemble;
use zookeeper_operator::membership::{
    CommittedConfig, ConfigVersion, MembershipStep, ServerId, handoff, next_step,
};
use zookeeper_operator::reconfig::{Reconfigurer, SuperUser};

const TIMEOUT: Duration = Duration::from_secs(5);
const SESSION_TIMEOUT_MS: u32 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Election,
    Prompt,
    Held,
}

impl Way {
    fn label(self) -> &'static str {
        match self {
            Way::Election => "election",
            Way::Prompt => "handoff, prompt",
            Way::Held => "handoff, held",
        }
    }
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The JVM of `Sessions.java`; its standard output's lines arrive on `lines`.
struct Sessions {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Sessions {
    fn start(classes: &Path, dist: &Path, connect: &str, n: usize) -> Self {
        let mut child = Command::new("java")
            .args([
                "-Xmx256m",
                "-Dzookeeper.console.threshold=ERROR",
                "-cp",
                &format!("{}:{}", dist::classpath(dist), classes.display()),
                "Sessions",
                connect,
                &SESSION_TIMEOUT_MS.to_string(),
                &n.to_string(),
                "/java-handoff",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start java");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if (line.starts_with("gaps_ms") || line.starts_with("ready"))
                    && tx.send(line).is_err()
                {
                    break;
                }
            }
        });
        let s = Sessions {
            child,
            stdin,
            lines,
        };
        let ready = s
            .lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the Java sessions did not connect in 60 s");
        assert!(ready.starts_with("ready"), "{ready}");
        s
    }

    /// Each session's longest gap since the last mark.
    fn mark(&mut self) -> Vec<Duration> {
        writeln!(self.stdin, "mark").expect("write to the Java sessions");
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the Java sessions did not answer");
        line.split_whitespace()
            .skip(1)
            .map(|ms| Duration::from_millis(ms.parse().expect("a number")))
            .collect()
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn compile(dist: &Path) -> tempfile::TempDir {
    let classes = tempfile::tempdir().expect("temporary directory");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/bench-tools/Sessions.java");
    let status = Command::new("javac")
        .args(["-nowarn", "-d"])
        .arg(classes.path())
        .arg("-cp")
        .arg(dist::classpath(dist))
        .arg(&source)
        .status()
        .expect("javac is not runnable: install a JDK (Debian: openjdk-17-jdk-headless)");
    assert!(status.success(), "javac of {} failed", source.display());
    classes
}

/// Restarts the leader one `way`; returns once every server is a serving voter again.
async fn restart_leader(
    ens: &mut DynamicEnsemble,
    user: &SuperUser,
    boot: &CommittedConfig,
    members: u32,
    way: Way,
) {
    let leader = ens.wait_whole(members).await;
    if way == Way::Election {
        ens.restart(leader, boot);
        ens.wait_whole(members).await;
        return;
    }
    let c = ens.committed().await;
    let observer = handoff(&c, leader).expect("the leader hands off");
    let rc = Reconfigurer::connect(&ens.connect_string(), user, TIMEOUT)
        .await
        .expect("connect as the super user");
    // The answer may be lost: the handoff makes every follower drop its clients.
    let t0 = Instant::now();
    let _ = rc.apply(&MembershipStep::Add(observer), c.version).await;
    let answered = t0.elapsed();
    match way {
        Way::Held => {
            ens.wait_whole(members - 1).await;
        }
        _ => {
            ens.wait_successor(leader, members - 1).await;
        }
    }
    let whole = t0.elapsed();
    ens.restart(leader, boot);
    let desired = ens.desired(members);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let after = ens.committed().await;
        let h = ens.health_of_running().await;
        match next_step(&after, &desired, &h) {
            MembershipStep::Add(promote) => {
                let _ = rc.apply(&MembershipStep::Add(promote), after.version).await;
            }
            MembershipStep::Done => break,
            MembershipStep::Wait(_) => {}
            other => panic!("unexpected step {other:?}"),
        }
        assert!(Instant::now() < deadline, "no promotion in 60 s: {h:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ens.wait_whole(members).await;
    println!(
        "  handoff answered in {} ms, old leader killed at {} ms, voter again at {} ms",
        answered.as_millis(),
        whole.as_millis(),
        t0.elapsed().as_millis()
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let members: u32 = env_or("JAVA_HANDOFF_MEMBERS", 3);
    let rounds: usize = env_or("JAVA_HANDOFF_ROUNDS", 5);
    let n: usize = env_or("JAVA_HANDOFF_SESSIONS", 6);
    let dist = dist::dist();
    let classes = compile(&dist);
    let user = SuperUser::new("java-handoff-bench");
    let mut ens = DynamicEnsemble::new(members, 22200, user.clone());
    let boot = CommittedConfig {
        servers: ens.desired(members).servers.clone(),
        version: ConfigVersion(0),
    };
    for id in 1..=members {
        ens.start(ServerId(id), &boot);
    }
    ens.wait_whole(members).await;
    println!(
        "ZooKeeper {} Java client, {n} sessions on every server's address ({members} real servers), {}-s session timeout, a write every 20 ms each; {rounds} leader restarts per way",
        dist::VERSION,
        SESSION_TIMEOUT_MS / 1000
    );
    let mut sessions = Sessions::start(classes.path(), &dist, &ens.connect_string(), n);
    tokio::time::sleep(Duration::from_secs(2)).await;
    sessions.mark();
    let only = std::env::var("JAVA_HANDOFF_WAYS").unwrap_or_default();
    let ways: Vec<Way> = [Way::Election, Way::Prompt, Way::Held]
        .into_iter()
        .filter(|w| {
            only.is_empty()
                || only
                    .split(',')
                    .any(|o| w.label().starts_with(o) || w.label().ends_with(o))
        })
        .collect();
    let mut all: Vec<Vec<Duration>> = vec![Vec::new(); ways.len()];
    for round in 1..=rounds {
        for (i, way) in ways.iter().enumerate() {
            ens.wait_whole(members).await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            sessions.mark();
            restart_leader(&mut ens, &user, &boot, members, *way).await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let gaps = sessions.mark();
            let max = gaps.iter().max().copied().unwrap_or_default();
            let over = gaps.iter().filter(|g| **g > Duration::from_secs(2)).count();
            println!(
                "round {round}, {}: longest gap {} ms; {over} of {} sessions over 2 s",
                way.label(),
                max.as_millis(),
                gaps.len()
            );
            all[i].extend(gaps);
        }
    }
    println!("each session's longest write gap at one leader restart:");
    for (i, way) in ways.iter().enumerate() {
        let mut v = all[i].clone();
        v.sort();
        let over = v.iter().filter(|g| **g > Duration::from_secs(2)).count();
        println!(
            "  {:<16} p50 {} ms, p95 {} ms, max {} ms; over 2 s: {over} of {}",
            way.label(),
            percentile(&v, 0.5).as_millis(),
            percentile(&v, 0.95).as_millis(),
            v.last().copied().unwrap_or_default().as_millis(),
            v.len()
        );
    }
}
