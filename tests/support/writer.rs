//! A client writing to a ZooKeeper ensemble as fast as it acknowledges, and the analysis of
//! its attempts: gaps between acknowledged writes, and that every acknowledged write is there.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One attempted write.
#[derive(Clone, Debug)]
pub struct WriteAttempt {
    /// From the start of the attempt to its end.
    pub during: Range<Instant>,
    /// The data written (the write's sequence number in this writer).
    pub data: u64,
    /// The created path, when acknowledged; the error otherwise.
    pub result: Result<String, String>,
}

/// A client writing sequential znodes under `/writes` as fast as acknowledgements come.
pub struct Writer {
    attempts: Arc<Mutex<Vec<WriteAttempt>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    client: zookeeper_client::Client,
}

impl Writer {
    /// Connects and starts writing.
    pub async fn start(connect_string: &str) -> Self {
        Self::start_with(connect_string, None).await
    }

    /// Connects (over TLS with `tls`) and starts writing.
    pub async fn start_with(
        connect_string: &str,
        tls: Option<zookeeper_client::TlsOptions>,
    ) -> Self {
        let connector =
            zookeeper_client::Client::connector().with_session_timeout(Duration::from_secs(20));
        let client = match tls {
            Some(tls) => connector.with_tls(tls).secure_connect(connect_string).await,
            None => connector.connect(connect_string).await,
        }
        .expect("writer connects to the ensemble");
        let persistent = zookeeper_client::CreateMode::Persistent
            .with_acls(zookeeper_client::Acls::anyone_all());
        match client.create("/writes", b"", &persistent).await {
            Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
            Err(e) => panic!("create /writes: {e}"),
        }
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = {
            let client = client.clone();
            let attempts = attempts.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let seq = zookeeper_client::CreateMode::PersistentSequential
                    .with_acls(zookeeper_client::Acls::anyone_all());
                let mut n: u64 = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let started = Instant::now();
                    let data = n.to_string();
                    let r = tokio::time::timeout(
                        Duration::from_secs(5),
                        client.create("/writes/w-", data.as_bytes(), &seq),
                    )
                    .await;
                    let result = match r {
                        Ok(Ok((_, s))) => Ok(format!("/writes/w-{s}")),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("no answer within 5s".into()),
                    };
                    let failed = result.is_err();
                    attempts.lock().expect("attempts").push(WriteAttempt {
                        during: started..Instant::now(),
                        data: n,
                        result,
                    });
                    // Keep the load steady: about 50 writes a second.
                    tokio::time::sleep(Duration::from_millis(if failed { 50 } else { 20 })).await;
                }
            })
        };
        Self {
            attempts,
            stop,
            task,
            client,
        }
    }

    /// Stops writing and returns every attempt.
    pub async fn stop(self) -> (zookeeper_client::Client, Vec<WriteAttempt>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.task.await;
        let attempts = self.attempts.lock().expect("attempts").clone();
        (self.client, attempts)
    }
}

/// The longest time between two consecutive acknowledged writes, and when it began. The writer
/// writes every 20 ms, so anything much longer is time in which the ensemble took no write,
/// whether attempts failed or just waited.
pub fn longest_unavailability(attempts: &[WriteAttempt]) -> (Duration, Option<Instant>) {
    write_gaps(attempts)
        .into_iter()
        .max_by_key(|(gap, _)| *gap)
        .map_or((Duration::ZERO, None), |(gap, at)| (gap, Some(at)))
}

/// Every interval between consecutive acknowledged writes, with its start.
pub fn write_gaps(attempts: &[WriteAttempt]) -> Vec<(Duration, Instant)> {
    let mut gaps = Vec::new();
    let mut last_ok: Option<Instant> = None;
    for a in attempts.iter().filter(|a| a.result.is_ok()) {
        if let Some(prev) = last_ok {
            gaps.push((a.during.end - prev, prev));
        }
        last_ok = Some(a.during.end);
    }
    gaps
}

/// Checks that every acknowledged write is readable with the data written.
pub async fn verify_acknowledged(
    client: &zookeeper_client::Client,
    attempts: &[WriteAttempt],
) -> usize {
    let (children, _) = client.get_children("/writes").await.unwrap_or_else(|e| {
        panic!(
            "list /writes after the rollout: {e}; the writer's attempts: {}",
            history(attempts)
        )
    });
    let present: std::collections::HashSet<String> = children
        .into_iter()
        .map(|c| format!("/writes/{c}"))
        .collect();
    let mut checked = 0;
    for a in attempts {
        if let Ok(path) = &a.result {
            assert!(
                present.contains(path),
                "acknowledged write {path} is missing"
            );
            let (data, _) = client
                .get_data(path)
                .await
                .unwrap_or_else(|e| panic!("read acknowledged write {path}: {e}"));
            assert_eq!(data, a.data.to_string().into_bytes(), "data of {path}");
            checked += 1;
        }
    }
    checked
}

/// What the writer saw, for a failure message: how many attempts, when the last acknowledged one
/// ended, and the failures after it (time from the first attempt, error).
fn history(attempts: &[WriteAttempt]) -> String {
    let Some(origin) = attempts.first().map(|a| a.during.start) else {
        return "none".into();
    };
    let at = |i: Instant| format!("{:.2}s", (i - origin).as_secs_f64());
    let last_ok = attempts.iter().rposition(|a| a.result.is_ok());
    let after = &attempts[last_ok.map_or(0, |i| i + 1)..];
    let mut failures: Vec<String> = after
        .iter()
        .filter_map(|a| Some(format!("{} {}", at(a.during.end), a.result.as_ref().err()?)))
        .collect();
    if failures.len() > 6 {
        let tail = failures.split_off(failures.len() - 3);
        failures.truncate(3);
        failures.push("...".into());
        failures.extend(tail);
    }
    format!(
        "{} in all, {} acknowledged, the last acknowledged ended at {}, the last attempt at {}; failures after it: [{}]",
        attempts.len(),
        attempts.iter().filter(|a| a.result.is_ok()).count(),
        last_ok.map_or("-".into(), |i| at(attempts[i].during.end)),
        at(attempts[attempts.len() - 1].during.end),
        failures.join(", ")
    )
}
