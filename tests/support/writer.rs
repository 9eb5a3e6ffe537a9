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
        client_log();
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
                    // A failure names the session's state after it (connected, disconnected,
                    // expired), which tells a slow server from a client that found none.
                    let result = match r {
                        Ok(Ok((_, s))) => Ok(format!("/writes/w-{s}")),
                        Ok(Err(e)) => Err(format!("{e} (session {:?})", client.state())),
                        Err(_) => Err(format!(
                            "no answer within 5s (session {:?})",
                            client.state()
                        )),
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

/// Checks that every acknowledged write is readable with the data written; panics with what the
/// writer saw when one is not.
pub async fn verify_acknowledged(
    client: &zookeeper_client::Client,
    attempts: &[WriteAttempt],
) -> usize {
    check_acknowledged(client, attempts)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The number of acknowledged writes, all readable with the data written; or what is wrong,
/// with what the writer saw.
pub async fn check_acknowledged(
    client: &zookeeper_client::Client,
    attempts: &[WriteAttempt],
) -> Result<usize, String> {
    let (children, _) = client.get_children("/writes").await.map_err(|e| {
        format!(
            "list /writes after the rollout: {e}; the writer's attempts: {}",
            history(attempts)
        )
    })?;
    let present: std::collections::HashSet<String> = children
        .into_iter()
        .map(|c| format!("/writes/{c}"))
        .collect();
    let mut checked = 0;
    for a in attempts {
        if let Ok(path) = &a.result {
            if !present.contains(path) {
                return Err(format!("acknowledged write {path} is missing"));
            }
            let (data, _) = client
                .get_data(path)
                .await
                .map_err(|e| format!("read acknowledged write {path}: {e}"))?;
            if data != a.data.to_string().into_bytes() {
                return Err(format!("data of {path}: {data:?}, written {}", a.data));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

/// The ZooKeeper client's own account of its connections (which server it tried, why a
/// connection or a session failed, where it got a session), kept in memory for a failure message:
/// the last 400 such lines of every client in the test binary, with when they were logged.
static CLIENT_LOG: Mutex<std::collections::VecDeque<(Instant, String)>> =
    Mutex::new(std::collections::VecDeque::new());

/// Keeps the client's connection events (`zookeeper_client` at debug and above, but for pings)
/// in [`CLIENT_LOG`]; nothing is printed.
pub fn client_log() {
    use tracing_subscriber::layer::SubscriberExt;
    struct Keep;
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Keep {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Text(String);
            impl tracing::field::Visit for Text {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    if !self.0.is_empty() {
                        self.0.push(' ');
                    }
                    if field.name() != "message" {
                        self.0.push_str(field.name());
                        self.0.push('=');
                    }
                    self.0.push_str(&format!("{value:?}"));
                }
            }
            let meta = event.metadata();
            if !meta.target().starts_with("zookeeper_client")
                || *meta.level() > tracing::Level::DEBUG
            {
                return;
            }
            let mut text = Text(String::new());
            event.record(&mut text);
            const CONNECTIONS: [&str; 6] =
                ["connect", "session", "fail", "lost", "timeout", "expire"];
            let lower = text.0.to_lowercase();
            if lower.contains("ping")
                || lower.starts_with("sending request")
                || !CONNECTIONS.iter().any(|w| lower.contains(w))
            {
                return;
            }
            let mut log = CLIENT_LOG.lock().expect("client log");
            if log.len() == 400 {
                log.pop_front();
            }
            log.push_back((Instant::now(), format!("{} {}", meta.level(), text.0)));
        }
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Keep));
    });
}

/// The client log's lines logged `during`, times relative to `origin`.
fn client_log_during(origin: Instant, during: Range<Instant>) -> Vec<String> {
    CLIENT_LOG
        .lock()
        .expect("client log")
        .iter()
        .filter(|(at, _)| during.contains(at))
        .map(|(at, line)| {
            format!(
                "{:.2}s {line}",
                at.saturating_duration_since(origin).as_secs_f64()
            )
        })
        .collect()
}

/// What the writer saw, for a failure message: how many attempts, when the last acknowledged one
/// ended, and the failures after it (time from the first attempt, error), consecutive equal
/// errors as one run with its first and last time and count; then what the ZooKeeper clients
/// logged of their connections since the last acknowledged write.
pub fn history(attempts: &[WriteAttempt]) -> String {
    match since_last_ack(attempts) {
        Some(during) => window(attempts, during),
        None => "none".into(),
    }
}

/// The longest time without an acknowledged write (see [`longest_unavailability`]).
pub fn longest_gap(attempts: &[WriteAttempt]) -> Option<Range<Instant>> {
    match longest_unavailability(attempts) {
        (gap, Some(at)) => Some(at..at + gap),
        _ => None,
    }
}

/// From the end of the last acknowledged write (or the first attempt) to the last attempt.
pub fn since_last_ack(attempts: &[WriteAttempt]) -> Option<Range<Instant>> {
    let last = attempts.last()?;
    let from = attempts
        .iter()
        .rev()
        .find(|a| a.result.is_ok())
        .map_or(attempts[0].during.start, |a| a.during.end);
    Some(from..last.during.end)
}

/// [`history`] for the longest time without an acknowledged write: the failures in it and what
/// the ZooKeeper clients logged of their connections meanwhile.
pub fn longest_gap_history(attempts: &[WriteAttempt]) -> String {
    match longest_gap(attempts) {
        Some(during) => window(attempts, during),
        None => history(attempts),
    }
}

/// The attempts' story in `during` (see [`history`]).
fn window(attempts: &[WriteAttempt], during: Range<Instant>) -> String {
    let Some(origin) = attempts.first().map(|a| a.during.start) else {
        return "none".into();
    };
    let at = |i: Instant| format!("{:.2}s", i.saturating_duration_since(origin).as_secs_f64());
    let mut runs: Vec<(Instant, Instant, &str, usize)> = Vec::new();
    for a in attempts.iter().filter(|a| during.contains(&a.during.end)) {
        let Err(e) = &a.result else { continue };
        match runs.last_mut() {
            Some((_, last, error, n)) if *error == e.as_str() => {
                *last = a.during.end;
                *n += 1;
            }
            _ => runs.push((a.during.end, a.during.end, e, 1)),
        }
    }
    let mut failures: Vec<String> = runs
        .iter()
        .map(|&(first, last, e, n)| match n {
            1 => format!("{} {e}", at(first)),
            _ => format!("{}-{} {e} x{n}", at(first), at(last)),
        })
        .collect();
    if failures.len() > 12 {
        let tail = failures.split_off(failures.len() - 6);
        failures.truncate(6);
        failures.push("...".into());
        failures.extend(tail);
    }
    let mut log = client_log_during(origin, during.start..during.end + Duration::from_secs(1));
    if log.len() > 24 {
        log.splice(12..log.len() - 12, ["...".to_string()]);
    }
    // The first attempt's wall-clock time, to set these times beside the members' logs.
    let first = std::time::SystemTime::now() - origin.elapsed();
    let first = k8s_openapi::jiff::Timestamp::try_from(first)
        .map(|t| t.to_string())
        .unwrap_or_default();
    format!(
        "{} in all (the first at {first}), {} acknowledged; from {} to {}: failures [{}]; the ZooKeeper clients' connections meanwhile (from {}):\n  {}",
        attempts.len(),
        attempts.iter().filter(|a| a.result.is_ok()).count(),
        at(during.start),
        at(during.end),
        failures.join(", "),
        at(during.start),
        log.join("\n  ")
    )
}
