//! The rollout benchmark on the local Kubernetes, run by `e2e/bench rollout` (it is `#[ignore]`d
//! otherwise): an operator-managed ensemble and, side by side, the seed's plain StatefulSet (the
//! article's manifest with only the image and sizes adapted), each rolled N times under the same
//! two clients, with figures per run appended to a results file; `e2e/bench report` prints
//! p50/p95/max and the ratios from that file.
//!
//! The clients connect the way their users do: ZooKeeper's own Java client (`e2e/bench-tools/
//! Writer.java`) through the client Service name, and `zookeeper-client` through every member's
//! ordinal DNS name. Names resolve because `e2e/bench` runs this under `e2e/cluster dns-exec`.
//!
//! Settings (environment):
//! - `ZKOP_BENCH_MEMBERS` (3 or 5), `ZKOP_BENCH_RUNS` (rollouts per ensemble),
//! - `ZKOP_BENCH_TARGETS` (`ours,sts`, the default, or one of them),
//! - `ZKOP_BENCH_ADDRESS_CACHE_SECONDS` (the operator's `clientAddressCacheSeconds`; unset: the
//!   CRD's default),
//! - `ZKOP_BENCH_RESULTS` (the file rows are appended to), `ZKOP_BENCH_WORK` (a directory for the
//!   Java writer's output), `ZKOP_BENCH_JAVA_CP` (classpath of the ZooKeeper jars and `Writer`),
//! - for `report`: `ZKOP_BENCH_FLOOR` (the output of `cargo bench --bench rolling_restart`).

#[path = "../lib/versions.rs"]
mod versions;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zookeeper_operator::crd::ZookeeperCluster;

const FIELD_MANAGER: &str = "bench";
/// The session timeout of both clients (the one an application typically configures).
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the sampler looks at the pods and asks each member `srvr`.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

fn log(msg: impl AsRef<str>) {
    let now = k8s_openapi::jiff::Timestamp::now().strftime("%H:%M:%S");
    eprintln!("{now} bench: {}", msg.as_ref());
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn env_or_die(key: &str) -> String {
    env(key).unwrap_or_else(|| panic!("{key} is not set; run this through e2e/bench"))
}

/// What is rolled: the operator's ensemble or the seed's plain StatefulSet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ours,
    Sts,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Sts => "sts",
        }
    }
}

/// One ensemble under test, named `zk` in its own namespace.
struct Target {
    kind: Kind,
    ns: String,
    members: usize,
}

impl Target {
    fn selector(&self) -> &'static str {
        match self.kind {
            Kind::Ours => "app.kubernetes.io/instance=zk",
            Kind::Sts => "app=zk",
        }
    }

    /// Every member's ordinal DNS name, as ZooKeeper's docs and most applications list them.
    fn ordinal_names(&self) -> String {
        (0..self.members)
            .map(|i| format!("zk-{i}.zk-hs.{}.svc.cluster.local:2181", self.ns))
            .collect::<Vec<_>>()
            .join(",")
    }
}

// ------------------------------------------------------------------ the two ensembles

/// The operator's ensemble: the CRD's defaults (the seed's flag values and probe timings) with
/// only the sizes adapted to a 2-core, single-node cluster.
fn ours_spec(members: usize, max_client_cnxns: i64) -> Value {
    let mut spec = json!({
        "replicas": members,
        "antiAffinity": "preferred",
        "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "storage": {"size": "1Gi"},
        "config": {"maxClientCnxns": max_client_cnxns},
    });
    if let Some(seconds) = env("ZKOP_BENCH_ADDRESS_CACHE_SECONDS") {
        let seconds: i64 = seconds
            .parse()
            .expect("ZKOP_BENCH_ADDRESS_CACHE_SECONDS is a number of seconds");
        spec["updateStrategy"] = json!({"clientAddressCacheSeconds": seconds});
    }
    spec
}

/// The seed's manifest (tests/fixtures/seed/zookeeper.yaml) with the image and sizes adapted,
/// `policy/v1` for the removed `policy/v1beta1`, and the anti-affinity preferred instead of
/// required (one node). The seed has no client Service; `zk-cs` is added so that the Java
/// client connects to it as to the operator's.
fn sts_objects(members: usize) -> Vec<Value> {
    let image = format!(
        "docker.io/zookeeper-operator/zookeeper:{}",
        versions::ZOOKEEPER_VERSION
    );
    let command = format!(
        "start-zookeeper --servers={members} --data_dir=/var/lib/zookeeper/data \
         --data_log_dir=/var/lib/zookeeper/data/log --conf_dir=/opt/zookeeper/conf \
         --client_port=2181 --election_port=3888 --server_port=2888 --tick_time=2000 \
         --init_limit=10 --sync_limit=5 --heap=256M --max_client_cnxns=60 \
         --snap_retain_count=3 --purge_interval=12 --max_session_timeout=40000 \
         --min_session_timeout=4000 --log_level=INFO"
    );
    let probe = json!({
        "exec": {"command": ["sh", "-c", "zookeeper-ready 2181"]},
        "initialDelaySeconds": 10,
        "timeoutSeconds": 5,
    });
    vec![
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "zk-hs", "labels": {"app": "zk"}},
            "spec": {
                "ports": [{"port": 2888, "name": "server"}, {"port": 3888, "name": "leader-election"}],
                "clusterIP": "None",
                "selector": {"app": "zk"},
            },
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "zk-cs", "labels": {"app": "zk"}},
            "spec": {"ports": [{"port": 2181, "name": "client"}], "selector": {"app": "zk"}},
        }),
        json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "zk-pdb"},
            "spec": {"selector": {"matchLabels": {"app": "zk"}}, "maxUnavailable": 1},
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "zk"},
            "spec": {
                "selector": {"matchLabels": {"app": "zk"}},
                "serviceName": "zk-hs",
                "replicas": members,
                "updateStrategy": {"type": "RollingUpdate"},
                "podManagementPolicy": "OrderedReady",
                "template": {
                    "metadata": {"labels": {"app": "zk"}},
                    "spec": {
                        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                            "weight": 100,
                            "podAffinityTerm": {
                                "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["zk"]}]},
                                "topologyKey": "kubernetes.io/hostname",
                            },
                        }]}},
                        "containers": [{
                            "name": "kubernetes-zookeeper",
                            "imagePullPolicy": "IfNotPresent",
                            "image": image,
                            "resources": {"requests": {"memory": "256Mi", "cpu": "50m"}, "limits": {"memory": "512Mi"}},
                            "ports": [
                                {"containerPort": 2181, "name": "client"},
                                {"containerPort": 2888, "name": "server"},
                                {"containerPort": 3888, "name": "leader-election"},
                            ],
                            "command": ["sh", "-c", command],
                            "readinessProbe": probe,
                            "livenessProbe": probe,
                            "volumeMounts": [{"name": "datadir", "mountPath": "/var/lib/zookeeper"}],
                        }],
                        "securityContext": {"runAsUser": 1000, "fsGroup": 1000},
                    },
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "datadir"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }],
            },
        }),
    ]
}

async fn apply(client: &Client, ns: &str, obj: &Value) {
    let kind = obj["kind"].as_str().unwrap();
    let name = obj["metadata"]["name"].as_str().unwrap();
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let r = match kind {
        "Service" => Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), ns)
            .patch(name, &pp, &Patch::Apply(obj))
            .await
            .map(|_| ()),
        "PodDisruptionBudget" => {
            Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Apply(obj))
                .await
                .map(|_| ())
        }
        "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), ns)
            .patch(name, &pp, &Patch::Apply(obj))
            .await
            .map(|_| ()),
        "ZookeeperCluster" => Api::<ZookeeperCluster>::namespaced(client.clone(), ns)
            .patch(name, &pp, &Patch::Apply(obj))
            .await
            .map(|_| ()),
        other => panic!("no apply for {other}"),
    };
    r.unwrap_or_else(|e| panic!("apply {kind} {ns}/{name}: {e}"));
}

fn ours_object(members: usize, max_client_cnxns: i64) -> Value {
    json!({
        "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
        "kind": "ZookeeperCluster",
        "metadata": {"name": "zk"},
        "spec": ours_spec(members, max_client_cnxns),
    })
}

async fn create_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
    wait_for(
        &format!("an old namespace {name} is gone"),
        Duration::from_secs(180),
        || async {
            api.get_opt(name)
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        },
    )
    .await;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

/// Deletes the benchmark's namespaces when dropped, also when a run panics.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let names = self.0.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup");
            rt.block_on(async move {
                zookeeper_operator::install_crypto_provider();
                let client = Client::try_default().await.map_err(|e| e.to_string())?;
                let api: Api<Namespace> = Api::all(client);
                for n in &names {
                    log(format!("deleting namespace {n}"));
                    api.delete(n, &DeleteParams::default())
                        .await
                        .map_err(|e| format!("{n}: {e}"))?;
                }
                Ok::<_, String>(())
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            log(format!(
                "could not delete every bench namespace ({done:?}); delete them with: kubectl delete namespace {}",
                self.0.join(" ")
            ));
        }
    }
}

async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    let mut last_log = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting until {what}"
        );
        if last_log.elapsed() > Duration::from_secs(30) {
            log(format!(
                "still waiting until {what} ({:.0}s)",
                started.elapsed().as_secs_f64()
            ));
            last_log = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The member's mode from `srvr` on its pod address, if it answers within 500 ms.
async fn srvr_mode(ip: &str) -> Option<String> {
    let ask = async {
        let mut s = tokio::net::TcpStream::connect((ip, 2181)).await.ok()?;
        s.write_all(b"srvr").await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        out.lines()
            .find_map(|l| l.strip_prefix("Mode: "))
            .map(str::to_string)
    };
    tokio::time::timeout(Duration::from_millis(500), ask)
        .await
        .ok()
        .flatten()
}

/// One look at every member: its pod (UID, being deleted, Ready) and its `srvr` mode.
#[derive(Clone, Debug, Default)]
struct MemberSample {
    uid: Option<String>,
    deleting: bool,
    ready: bool,
    mode: Option<String>,
}

impl MemberSample {
    fn serving(&self) -> bool {
        self.ready && !self.deleting && matches!(self.mode.as_deref(), Some("leader" | "follower"))
    }
}

async fn sample(client: &Client, t: &Target) -> Vec<MemberSample> {
    let pods = match Api::<Pod>::namespaced(client.clone(), &t.ns)
        .list(&ListParams::default().labels(t.selector()))
        .await
    {
        Ok(l) => l.items,
        Err(e) => {
            log(format!("listing pods of {}: {e} (sample skipped)", t.ns));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for i in 0..t.members {
        let pod = pods.iter().find(|p| p.name_any() == format!("zk-{i}"));
        out.push(pod.map_or_else(MemberSample::default, |p| MemberSample {
            uid: p.uid(),
            deleting: p.metadata.deletion_timestamp.is_some(),
            ready: pod_ready(p),
            mode: None,
        }));
    }
    let ips: Vec<Option<String>> = (0..t.members)
        .map(|i| {
            pods.iter()
                .find(|p| p.name_any() == format!("zk-{i}"))
                .and_then(|p| p.status.as_ref()?.pod_ip.clone())
        })
        .collect();
    let modes = futures::future::join_all(ips.iter().map(|ip| async move {
        match ip {
            Some(ip) => srvr_mode(ip).await,
            None => None,
        }
    }))
    .await;
    for (m, mode) in out.iter_mut().zip(modes) {
        m.mode = mode;
    }
    out
}

/// Every member serving: its pod Ready and `srvr` answering as leader or follower.
async fn wait_serving(client: &Client, t: &Target, limit: Duration) {
    wait_for(
        &format!("every member of {} serves", t.ns),
        limit,
        || async {
            let s = sample(client, t).await;
            (s.len() == t.members && s.iter().all(MemberSample::serving)).then_some(())
        },
    )
    .await;
}

/// The operator's cluster is settled for its current generation.
async fn wait_ours_settled(client: &Client, ns: &str, limit: Duration) {
    let api: Api<ZookeeperCluster> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("{ns}/zk is Available and settled"),
        limit,
        || async {
            let zk = api.get("zk").await.ok()?;
            let status = zk.status.as_ref()?;
            let cond = |t: &str| {
                status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == t)
                    .map(|c| c.status.clone())
            };
            (status.observed_generation == zk.metadata.generation
                && cond("Available")? == "True"
                && cond("Progressing")? == "False")
                .then_some(())
        },
    )
    .await;
}

/// The StatefulSet controller has finished its rolling update.
async fn wait_sts_settled(client: &Client, ns: &str, members: usize, limit: Duration) {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    wait_for(&format!("{ns}/zk has rolled out"), limit, || async {
        let sts = api.get("zk").await.ok()?;
        let st = sts.status.as_ref()?;
        let n = members as i32;
        (st.observed_generation == sts.metadata.generation
            && st.current_revision.is_some()
            && st.current_revision == st.update_revision
            && st.updated_replicas == Some(n)
            && st.ready_replicas == Some(n))
        .then_some(())
    })
    .await;
}

// ------------------------------------------------------------------ the sampler

/// A restart seen by the sampler: when the old pod began to go (deleted, or gone, or replaced)
/// and when its replacement served (Ready, `srvr` answering as leader or follower).
#[derive(Clone, Debug)]
struct Restart {
    ordinal: usize,
    was_leader: bool,
    start: Instant,
    synced: Option<Instant>,
}

#[derive(Default)]
struct SamplerState {
    first: Option<Vec<MemberSample>>,
    restarts: Vec<Restart>,
    max_not_serving: usize,
    /// Members not serving, summed over the samples, times the time since the previous sample.
    not_serving: Duration,
    last_at: Option<Instant>,
    samples: usize,
}

struct Sampler {
    state: Arc<Mutex<SamplerState>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(client: Client, t: &Target) -> Self {
        let t = Target {
            kind: t.kind,
            ns: t.ns.clone(),
            members: t.members,
        };
        let state = Arc::new(Mutex::new(SamplerState::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = {
            let (state, stop) = (state.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let next = Instant::now() + SAMPLE_EVERY;
                    let s = sample(&client, &t).await;
                    let at = Instant::now();
                    if s.len() == t.members {
                        record(&mut state.lock().unwrap(), s, at);
                    }
                    tokio::time::sleep_until(next.into()).await;
                }
            })
        };
        Sampler { state, stop, task }
    }

    /// Every member restarted once and serves again.
    fn all_restarted(&self, members: usize) -> bool {
        let s = self.state.lock().unwrap();
        (0..members).all(|i| {
            s.restarts
                .iter()
                .any(|r| r.ordinal == i && r.synced.is_some())
        })
    }

    async fn stop(self) -> SamplerState {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.task.await;
        std::mem::take(&mut *self.state.lock().unwrap())
    }
}

fn record(s: &mut SamplerState, now: Vec<MemberSample>, at: Instant) {
    s.samples += 1;
    let not_serving = now.iter().filter(|m| !m.serving()).count();
    s.max_not_serving = s.max_not_serving.max(not_serving);
    if let Some(last) = s.last_at {
        s.not_serving += (at - last) * not_serving as u32;
    }
    s.last_at = Some(at);
    let first = s.first.get_or_insert_with(|| now.clone()).clone();
    for (i, m) in now.iter().enumerate() {
        let original = first[i].uid.clone();
        let replaced = m.uid.is_none() || m.deleting || m.uid != original;
        match s.restarts.iter_mut().find(|r| r.ordinal == i) {
            None if replaced => s.restarts.push(Restart {
                ordinal: i,
                was_leader: first[i].mode.as_deref() == Some("leader"),
                start: at,
                synced: None,
            }),
            Some(r)
                if r.synced.is_none() && m.uid != original && m.uid.is_some() && m.serving() =>
            {
                r.synced = Some(at);
            }
            _ => {}
        }
    }
}

// ------------------------------------------------------------------ the clients

/// What one client saw.
#[derive(Clone, Debug, Default)]
struct ClientFigures {
    attempts: u64,
    acked: u64,
    failed: u64,
    lost: u64,
    expired: u64,
    longest_gap: Duration,
}

impl ClientFigures {
    fn parse(line: &str) -> Option<Self> {
        let kv: HashMap<&str, u64> = line
            .split_whitespace()
            .filter_map(|w| {
                let (k, v) = w.split_once('=')?;
                Some((k, v.parse().ok()?))
            })
            .collect();
        Some(ClientFigures {
            attempts: *kv.get("attempts")?,
            acked: *kv.get("acked")?,
            failed: *kv.get("failed")?,
            lost: *kv.get("lost")?,
            expired: *kv.get("expired")?,
            longest_gap: Duration::from_millis(*kv.get("longest_gap_ms")?),
        })
    }
}

/// ZooKeeper's Java client (`Writer.java`) in its own JVM; stops when its stdin closes.
struct JavaWriter {
    child: std::process::Child,
    result: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl JavaWriter {
    fn start(connect: &str, root: &str, tag: &str) -> Self {
        let work = std::path::PathBuf::from(env_or_die("ZKOP_BENCH_WORK"));
        let result = work.join(format!("{tag}.result"));
        let log = work.join(format!("{tag}.log"));
        let _ = std::fs::remove_file(&result);
        let out = std::fs::File::create(&log).expect("java writer log file");
        let child = std::process::Command::new("java")
            .args([
                "-Xmx128m",
                "-cp",
                &env_or_die("ZKOP_BENCH_JAVA_CP"),
                "Writer",
                connect,
                &SESSION_TIMEOUT.as_millis().to_string(),
                root,
            ])
            .arg(&result)
            .stdin(std::process::Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start java (JDK 17 must be on PATH)");
        JavaWriter { child, result, log }
    }

    async fn stop(mut self) -> ClientFigures {
        drop(self.child.stdin.take());
        let mut child = self.child;
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .expect("wait for the java writer");
        let text = std::fs::read_to_string(&self.result).unwrap_or_default();
        ClientFigures::parse(&text).unwrap_or_else(|| {
            panic!(
                "the java writer ({status}) wrote no figures; read {}",
                self.log.display()
            )
        })
    }
}

/// `zookeeper-client` with every member's ordinal name, writing as fast as acknowledgements come
/// (every 20 ms), opening a new session when the old one expired.
struct RustWriter {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<ClientFigures>,
}

async fn connect(connect_string: &str) -> zookeeper_client::Client {
    let started = Instant::now();
    loop {
        match zookeeper_client::Client::connector()
            .with_session_timeout(SESSION_TIMEOUT)
            .connect(connect_string)
            .await
        {
            Ok(c) => return c,
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                log(format!("connecting to {connect_string}: {e}; retrying"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot connect to {connect_string} for a minute: {e}"),
        }
    }
}

impl RustWriter {
    async fn start(connect_string: String, root: String) -> Self {
        let mut client = connect(&connect_string).await;
        let persistent = zookeeper_client::CreateMode::Persistent
            .with_acls(zookeeper_client::Acls::anyone_all());
        client
            .create(&root, b"", &persistent)
            .await
            .unwrap_or_else(|e| panic!("create {root}: {e}"));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let seq = zookeeper_client::CreateMode::PersistentSequential
                    .with_acls(zookeeper_client::Acls::anyone_all());
                let prefix = format!("{root}/w-");
                let mut f = ClientFigures::default();
                let mut acks: Vec<(String, u64, Instant)> = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    f.attempts += 1;
                    let data = f.attempts.to_string();
                    let r = tokio::time::timeout(
                        Duration::from_secs(30),
                        client.create(&prefix, data.as_bytes(), &seq),
                    )
                    .await;
                    let ok = match r {
                        Ok(Ok((_, s))) => {
                            acks.push((format!("{prefix}{s}"), f.attempts, Instant::now()));
                            true
                        }
                        Ok(Err(zookeeper_client::Error::SessionExpired)) => {
                            f.failed += 1;
                            f.expired += 1;
                            client = connect(&connect_string).await;
                            false
                        }
                        _ => {
                            f.failed += 1;
                            false
                        }
                    };
                    tokio::time::sleep(Duration::from_millis(if ok { 20 } else { 50 })).await;
                }
                f.acked = acks.len() as u64;
                f.longest_gap = acks
                    .windows(2)
                    .map(|w| w[1].2 - w[0].2)
                    .max()
                    .unwrap_or_default();
                // Every acknowledged write must be there with the data written.
                let deadline = Instant::now() + Duration::from_secs(60);
                for (path, n, _) in &acks {
                    loop {
                        match client.get_data(path).await {
                            Ok((data, _)) => {
                                if data != n.to_string().into_bytes() {
                                    f.lost += 1;
                                }
                                break;
                            }
                            Err(zookeeper_client::Error::NoNode) => {
                                f.lost += 1;
                                break;
                            }
                            Err(zookeeper_client::Error::SessionExpired) => {
                                client = connect(&connect_string).await;
                            }
                            Err(_) if Instant::now() > deadline => {
                                f.lost += 1;
                                break;
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                }
                f
            })
        };
        RustWriter { stop, task }
    }

    async fn stop(self) -> ClientFigures {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.expect("the rust writer")
    }
}

// ------------------------------------------------------------------ one run

struct RunFigures {
    wall: Duration,
    restarts: Vec<Restart>,
    max_not_serving: usize,
    not_serving: Duration,
    java: ClientFigures,
    rust: ClientFigures,
}

/// Sets both ensembles up and waits until every member serves.
async fn set_up(client: &Client, targets: &[Target]) {
    for t in targets {
        create_namespace(client, &t.ns).await;
        match t.kind {
            Kind::Ours => apply(client, &t.ns, &ours_object(t.members, 60)).await,
            Kind::Sts => {
                for o in sts_objects(t.members) {
                    apply(client, &t.ns, &o).await;
                }
            }
        }
        log(format!("created {} ({} members)", t.ns, t.members));
    }
    for t in targets {
        match t.kind {
            Kind::Ours => wait_ours_settled(client, &t.ns, Duration::from_secs(600)).await,
            Kind::Sts => wait_sts_settled(client, &t.ns, t.members, Duration::from_secs(600)).await,
        }
        wait_serving(client, t, Duration::from_secs(300)).await;
        log(format!("{}: every member serves", t.ns));
    }
}

/// The connection string the Java client uses: `status.connectionString` for the operator's
/// (every member's ordinal name), the same ordinal names for the StatefulSet, whose users
/// configure them by hand. `ZKOP_BENCH_JAVA_CONNECT=service` gives both the client Service
/// instead (one address: ZooKeeper's client then waits a second before every reconnect).
async fn published_connection_string(client: &Client, t: &Target) -> String {
    if std::env::var("ZKOP_BENCH_JAVA_CONNECT").as_deref() == Ok("service") {
        return format!("zk-cs.{}.svc.cluster.local:2181", t.ns);
    }
    match t.kind {
        Kind::Ours => Api::<ZookeeperCluster>::namespaced(client.clone(), &t.ns)
            .get("zk")
            .await
            .ok()
            .and_then(|zk| zk.status?.connection_string)
            .unwrap_or_else(|| panic!("{}/zk publishes no connection string", t.ns)),
        Kind::Sts => t.ordinal_names(),
    }
}

async fn one_run(client: &Client, t: &Target, run: u64) -> RunFigures {
    let tag = format!(
        "{}-{}-{run}-{}",
        t.kind.label(),
        t.members,
        std::process::id()
    );
    let cs = published_connection_string(client, t).await;
    let java = JavaWriter::start(&cs, &format!("/bench-java-{tag}"), &format!("java-{tag}"));
    let rust = RustWriter::start(t.ordinal_names(), format!("/bench-rust-{tag}")).await;
    // The JVM starts and both clients write for a while before the change.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let sampler = Sampler::start(client.clone(), t);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    match t.kind {
        Kind::Ours => {
            let api: Api<ZookeeperCluster> = Api::namespaced(client.clone(), &t.ns);
            let current = api
                .get("zk")
                .await
                .map(|zk| i64::from(zk.spec.config.max_client_cnxns))
                .unwrap_or(60);
            apply(client, &t.ns, &ours_object(t.members, current + 1)).await;
        }
        Kind::Sts => {
            let patch = json!({"spec": {"template": {"metadata": {"annotations": {
                "bench.zookeeper.ensemble.dev/run": tag,
            }}}}});
            Api::<StatefulSet>::namespaced(client.clone(), &t.ns)
                .patch("zk", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("patch the StatefulSet's pod template");
        }
    }
    wait_for(
        &format!("every member of {} restarted and serves", t.ns),
        Duration::from_secs(900),
        || async { sampler.all_restarted(t.members).then_some(()) },
    )
    .await;
    let wall = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let state = sampler.stop().await;
    let (java, rust) = tokio::join!(java.stop(), rust.stop());
    match t.kind {
        Kind::Ours => wait_ours_settled(client, &t.ns, Duration::from_secs(300)).await,
        Kind::Sts => wait_sts_settled(client, &t.ns, t.members, Duration::from_secs(300)).await,
    }
    let mut restarts = state.restarts;
    restarts.sort_by_key(|r| r.start);
    RunFigures {
        wall,
        restarts,
        max_not_serving: state.max_not_serving,
        not_serving: state.not_serving,
        java,
        rust,
    }
}

/// A results row: tab-separated, one per run (the header is [`HEADER`]).
const HEADER: &str = "time\tmembers\ttarget\trun\twall_s\tfloor_s\tmax_not_serving\tnot_serving_s\tjava_gap_s\tjava_failed\tjava_lost\tjava_expired\tjava_acked\trust_gap_s\trust_failed\trust_lost\trust_expired\trust_acked\trestarts";

fn row(t: &Target, run: u64, f: &RunFigures) -> String {
    let floor: Duration = f
        .restarts
        .iter()
        .filter_map(|r| Some(r.synced? - r.start))
        .sum();
    let restarts: Vec<String> = f
        .restarts
        .iter()
        .map(|r| {
            format!(
                "zk-{}{}:{:.2}",
                r.ordinal,
                if r.was_leader { "L" } else { "" },
                r.synced.map_or(f64::NAN, |s| (s - r.start).as_secs_f64())
            )
        })
        .collect();
    let now = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ");
    format!(
        "{now}\t{}\t{}\t{run}\t{:.2}\t{:.2}\t{}\t{:.2}\t{:.3}\t{}\t{}\t{}\t{}\t{:.3}\t{}\t{}\t{}\t{}\t{}",
        t.members,
        t.kind.label(),
        f.wall.as_secs_f64(),
        floor.as_secs_f64(),
        f.max_not_serving,
        f.not_serving.as_secs_f64(),
        f.java.longest_gap.as_secs_f64(),
        f.java.failed,
        f.java.lost,
        f.java.expired,
        f.java.acked,
        f.rust.longest_gap.as_secs_f64(),
        f.rust.failed,
        f.rust.lost,
        f.rust.expired,
        f.rust.acked,
        restarts.join(",")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the rollout benchmark on the local Kubernetes: run e2e/bench rollout"]
async fn rollout() {
    let members: usize =
        env("ZKOP_BENCH_MEMBERS").map_or(3, |v| v.parse().expect("ZKOP_BENCH_MEMBERS is a number"));
    let runs: u64 = env("ZKOP_BENCH_RUNS").map_or(1, |v| v.parse().expect("ZKOP_BENCH_RUNS"));
    let results = env_or_die("ZKOP_BENCH_RESULTS");
    let kinds: Vec<Kind> = env("ZKOP_BENCH_TARGETS")
        .unwrap_or_else(|| "ours,sts".into())
        .split(',')
        .map(|k| match k {
            "ours" => Kind::Ours,
            "sts" => Kind::Sts,
            other => panic!("ZKOP_BENCH_TARGETS: unknown target {other} (use ours, sts)"),
        })
        .collect();
    zookeeper_operator::install_crypto_provider();
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG points at the local cluster (run e2e/cluster up)");
    let targets: Vec<Target> = kinds
        .iter()
        .map(|&kind| Target {
            kind,
            ns: format!("bench-{}-{members}", kind.label()),
            members,
        })
        .collect();
    let _cleanup = Cleanup(targets.iter().map(|t| t.ns.clone()).collect());
    set_up(&client, &targets).await;

    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&results)
        .unwrap_or_else(|e| panic!("open {results}: {e}"));
    if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
        writeln!(file, "{HEADER}").unwrap();
    }
    let mut lost_in_ours = 0;
    for run in 1..=runs {
        for t in &targets {
            log(format!(
                "run {run} of {runs}: rolling {} ({members} members) under both clients",
                t.ns
            ));
            let f = one_run(&client, t, run).await;
            let line = row(t, run, &f);
            writeln!(file, "{line}").unwrap();
            file.flush().unwrap();
            log(format!(
                "run {run} {} {members}: wall {:.1}s, longest write gap java {:.2}s / rust {:.2}s, failed {}/{}, lost {}/{}, sessions expired {}/{}, most members not serving {} ({:.1} member-s in all), restart-to-synced [{}]",
                t.kind.label(),
                f.wall.as_secs_f64(),
                f.java.longest_gap.as_secs_f64(),
                f.rust.longest_gap.as_secs_f64(),
                f.java.failed,
                f.rust.failed,
                f.java.lost,
                f.rust.lost,
                f.java.expired,
                f.rust.expired,
                f.max_not_serving,
                f.not_serving.as_secs_f64(),
                line.rsplit('\t').next().unwrap_or_default()
            ));
            assert!(
                f.java.acked > 0 && f.rust.acked > 0,
                "a client acknowledged no write at all"
            );
            if t.kind == Kind::Ours {
                lost_in_ours += f.java.lost + f.rust.lost;
            }
        }
    }
    assert_eq!(
        lost_in_ours, 0,
        "acknowledged writes to the operator's ensemble were lost; the rows in {results} say in which run"
    );
}

// ------------------------------------------------------------------ the report

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // nearest rank
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// `p50 / p95 / max` of some figures.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    (
        percentile(&v, 0.5),
        percentile(&v, 0.95),
        v.last().copied().unwrap_or(f64::NAN),
    )
}

fn fmt3((a, b, c): (f64, f64, f64), unit: &str) -> String {
    // No rows of this target (e2e/bench --targets): nothing to say.
    if a.is_nan() {
        return "-".into();
    }
    format!("{a:.2}{unit} / {b:.2}{unit} / {c:.2}{unit}")
}

/// The figures of `cargo bench --bench rolling_restart` (bare processes), by size: wall, floor,
/// longest write gap, and each restart-to-synced time.
#[derive(Default)]
struct Bare {
    wall: Vec<f64>,
    floor: Vec<f64>,
    gap: Vec<f64>,
    restart: Vec<f64>,
}

fn parse_floor(text: &str) -> BTreeMap<usize, Bare> {
    let mut out: BTreeMap<usize, Bare> = BTreeMap::new();
    for line in text.lines() {
        // "3 members, run 1: wall 7.12s, floor 6.50s, ratio 1.10; longest write gap 300 ms; ...;
        //  restart-to-synced: zk-2 2.10s, zk-0 (leader) 2.30s"
        let Some((head, rest)) = line.split_once(" members, run ") else {
            continue;
        };
        let Ok(members) = head.trim().parse::<usize>() else {
            continue;
        };
        let num = |after: &str, until: &str| -> Option<f64> {
            let s = rest.split_once(after)?.1;
            s.split_once(until)?.0.trim().parse().ok()
        };
        let b = out.entry(members).or_default();
        if let (Some(w), Some(f), Some(g)) = (
            num("wall ", "s,"),
            num("floor ", "s,"),
            num("longest write gap ", " ms"),
        ) {
            b.wall.push(w);
            b.floor.push(f);
            b.gap.push(g / 1000.0);
        }
        if let Some((_, per)) = rest.split_once("restart-to-synced: ") {
            for item in per.split(", ") {
                if let Some(s) = item.rsplit(' ').next().and_then(|s| s.strip_suffix('s'))
                    && let Ok(v) = s.parse()
                {
                    b.restart.push(v);
                }
            }
        }
    }
    out
}

struct Row {
    members: usize,
    target: String,
    cols: HashMap<String, String>,
}

impl Row {
    fn f(&self, k: &str) -> f64 {
        self.cols
            .get(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }
    fn restarts(&self) -> Vec<(String, f64)> {
        self.cols
            .get("restarts")
            .map(|s| {
                s.split(',')
                    .filter_map(|i| {
                        let (name, v) = i.split_once(':')?;
                        Some((name.to_string(), v.parse().ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn read_rows(text: &str) -> Vec<Row> {
    let header: Vec<&str> = HEADER.split('\t').collect();
    text.lines()
        .filter(|l| !l.starts_with("time\t") && !l.trim().is_empty())
        .filter_map(|l| {
            let cols: HashMap<String, String> = header
                .iter()
                .zip(l.split('\t'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Some(Row {
                members: cols.get("members")?.parse().ok()?,
                target: cols.get("target")?.clone(),
                cols,
            })
        })
        .collect()
}

fn report_text(results: &str, floor: &str) -> String {
    let rows = read_rows(results);
    let bare = parse_floor(floor);
    let mut out = String::new();
    let sizes: std::collections::BTreeSet<usize> = rows.iter().map(|r| r.members).collect();
    for members in sizes {
        let of = |target: &str| -> Vec<&Row> {
            rows.iter()
                .filter(|r| r.members == members && r.target == target)
                .collect()
        };
        let (ours, sts) = (of("ours"), of("sts"));
        writeln!(
            out,
            "\n### {members} members: {} runs of the operator's ensemble, {} of the plain StatefulSet\n",
            ours.len(),
            sts.len()
        )
        .unwrap();
        writeln!(
            out,
            "Per run, in the order they ran (gaps in s; failed/lost/expired as java/rust; L marks the member that led when the rollout began):\n"
        )
        .unwrap();
        writeln!(
            out,
            "| target | run | wall | own floor | wall/floor | longest gap java | longest gap rust | failed | lost | sessions expired | most not serving | member-s not serving | restart-to-synced |"
        )
        .unwrap();
        writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|").unwrap();
        // Runs are numbered in the order of the file: batches of e2e/bench each start at run 1.
        let numbered = ours.iter().enumerate().chain(sts.iter().enumerate());
        for (i, r) in numbered {
            writeln!(
                out,
                "| {} | {} | {:.1}s | {:.1}s | {:.2} | {:.2} | {:.2} | {}/{} | {}/{} | {}/{} | {} | {:.1} | {} |",
                r.target,
                i + 1,
                r.f("wall_s"),
                r.f("floor_s"),
                r.f("wall_s") / r.f("floor_s"),
                r.f("java_gap_s"),
                r.f("rust_gap_s"),
                r.cols["java_failed"],
                r.cols["rust_failed"],
                r.cols["java_lost"],
                r.cols["rust_lost"],
                r.cols["java_expired"],
                r.cols["rust_expired"],
                r.cols["max_not_serving"],
                r.f("not_serving_s"),
                r.cols.get("restarts").map_or("", String::as_str)
            )
            .unwrap();
        }
        writeln!(out, "\np50 / p95 / max over the runs:\n").unwrap();
        writeln!(
            out,
            "| figure | operator | plain StatefulSet | ratio ours/StatefulSet (p50, max) |"
        )
        .unwrap();
        writeln!(out, "|---|---|---|---|").unwrap();
        let col = |rs: &[&Row], k: &str| -> Vec<f64> { rs.iter().map(|r| r.f(k)).collect() };
        let ratio_col = |rs: &[&Row]| -> Vec<f64> {
            rs.iter().map(|r| r.f("wall_s") / r.f("floor_s")).collect()
        };
        let restart_col = |rs: &[&Row], leader: Option<bool>| -> Vec<f64> {
            rs.iter()
                .flat_map(|r| r.restarts())
                .filter(|(n, _)| leader.is_none_or(|l| n.ends_with('L') == l))
                .map(|(_, v)| v)
                .collect()
        };
        let figures: Vec<(&str, Vec<f64>, Vec<f64>, &str)> = vec![
            (
                "longest write gap, Java client via status.connectionString",
                col(&ours, "java_gap_s"),
                col(&sts, "java_gap_s"),
                "s",
            ),
            (
                "longest write gap, zookeeper-client via ordinal names",
                col(&ours, "rust_gap_s"),
                col(&sts, "rust_gap_s"),
                "s",
            ),
            (
                "rollout wall time",
                col(&ours, "wall_s"),
                col(&sts, "wall_s"),
                "s",
            ),
            (
                "own floor (sum of restart-to-synced)",
                col(&ours, "floor_s"),
                col(&sts, "floor_s"),
                "s",
            ),
            ("wall / own floor", ratio_col(&ours), ratio_col(&sts), ""),
            (
                "restart-to-synced, a follower",
                restart_col(&ours, Some(false)),
                restart_col(&sts, Some(false)),
                "s",
            ),
            (
                "restart-to-synced, the leader",
                restart_col(&ours, Some(true)),
                restart_col(&sts, Some(true)),
                "s",
            ),
            (
                "failed writes, Java",
                col(&ours, "java_failed"),
                col(&sts, "java_failed"),
                "",
            ),
            (
                "failed writes, zookeeper-client",
                col(&ours, "rust_failed"),
                col(&sts, "rust_failed"),
                "",
            ),
            (
                "most members not serving at once",
                col(&ours, "max_not_serving"),
                col(&sts, "max_not_serving"),
                "",
            ),
            (
                "members not serving, summed over the rollout (member-s)",
                col(&ours, "not_serving_s"),
                col(&sts, "not_serving_s"),
                "",
            ),
        ];
        for (name, o, s, unit) in figures {
            let (so, ss) = (spread(&o), spread(&s));
            let ratio = if ss.0 > 0.0 && ss.2 > 0.0 && !o.is_empty() && !s.is_empty() {
                format!("{:.2}, {:.2}", so.0 / ss.0, so.2 / ss.2)
            } else {
                "-".into()
            };
            writeln!(
                out,
                "| {name} | {} | {} | {ratio} |",
                fmt3(so, unit),
                fmt3(ss, unit)
            )
            .unwrap();
        }
        let sum = |rs: &[&Row], k: &str| -> f64 { rs.iter().map(|r| r.f(k)).sum() };
        let lost = |rs: &[&Row]| -> String {
            if rs.is_empty() {
                return "-".into();
            }
            format!(
                "{} of {}",
                sum(rs, "java_lost") + sum(rs, "rust_lost"),
                sum(rs, "java_acked") + sum(rs, "rust_acked")
            )
        };
        let expired = |rs: &[&Row]| -> String {
            if rs.is_empty() {
                return "-".into();
            }
            (sum(rs, "java_expired") + sum(rs, "rust_expired")).to_string()
        };
        writeln!(
            out,
            "| acknowledged writes lost (all runs, java + rust) | {} | {} | |",
            lost(&ours),
            lost(&sts)
        )
        .unwrap();
        writeln!(
            out,
            "| sessions expired (all runs, java + rust) | {} | {} | |",
            expired(&ours),
            expired(&sts)
        )
        .unwrap();
        if let Some(b) = bare.get(&members) {
            let bare_restart = spread(&b.restart);
            let k8s_restart = spread(&restart_col(&ours, None));
            writeln!(
                out,
                "\nFloor: bare ZooKeeper processes on 127.0.0.x (`cargo bench --bench rolling_restart`, {} runs): restart-to-synced {} (p50/p95/max), rollout wall {}, longest write gap (one election plus the client's reconnect) {}. The operator's pod restart-to-synced p50 is {:.1}x the bare process's.",
                b.wall.len(),
                fmt3(bare_restart, "s"),
                fmt3(spread(&b.wall), "s"),
                fmt3(spread(&b.gap), "s"),
                k8s_restart.0 / bare_restart.0
            )
            .unwrap();
        }
    }
    out
}

#[test]
#[ignore = "prints the rollout benchmark's figures: run e2e/bench report"]
fn report() {
    let path = env_or_die("ZKOP_BENCH_RESULTS");
    let results = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let floor = env("ZKOP_BENCH_FLOOR")
        .map(|p| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {p}: {e}")))
        .unwrap_or_default();
    let text = report_text(&results, &floor);
    assert!(
        !read_rows(&results).is_empty(),
        "{path} holds no benchmark rows"
    );
    println!("{text}");
}

#[test]
fn report_reads_rows_and_the_floor() {
    let results = format!(
        "{HEADER}\n\
         t\t3\tours\t1\t30.00\t28.00\t1\t4.00\t1.200\t12\t0\t0\t900\t1.400\t20\t0\t0\t900\tzk-2:9.00,zk-1:9.00,zk-0L:10.00\n\
         t\t3\tsts\t1\t90.00\t80.00\t2\t40.00\t2.400\t30\t0\t0\t2000\t10.400\t60\t0\t1\t2000\tzk-2:30.00,zk-1L:25.00,zk-0:25.00\n"
    );
    let floor = "3 members, run 1: wall 7.00s, floor 6.00s, ratio 1.17; longest write gap 300 ms; writes 10 acknowledged (all readable), 0 failed; restart-to-synced: zk-2 2.00s, zk-0 (leader) 2.00s\n";
    let text = report_text(&results, floor);
    assert!(
        text.contains("| longest write gap, Java client via status.connectionString | 1.20s / 1.20s / 1.20s | 2.40s / 2.40s / 2.40s | 0.50, 0.50 |"),
        "{text}"
    );
    assert!(text.contains("| rollout wall time | 30.00s / 30.00s / 30.00s | 90.00s / 90.00s / 90.00s | 0.33, 0.33 |"), "{text}");
    assert!(
        text.contains("| restart-to-synced, the leader | 10.00s / 10.00s / 10.00s | 25.00s / 25.00s / 25.00s |"),
        "{text}"
    );
    assert!(
        text.contains("restart-to-synced 2.00s / 2.00s / 2.00s"),
        "{text}"
    );
    assert!(
        text.contains("| members not serving, summed over the rollout (member-s) | 4.00 / 4.00 / 4.00 | 40.00 / 40.00 / 40.00 | 0.10, 0.10 |"),
        "{text}"
    );
    assert!(
        text.contains("| sessions expired (all runs, java + rust) | 0 | 1 | |"),
        "{text}"
    );
}
