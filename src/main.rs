//! `zookeeper-operator`: run the controller, print the CRD, or render a cluster offline.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client, CustomResourceExt};
use zookeeper_operator::controller::membership::{NetworkZookeeper, SuperKey};
use zookeeper_operator::controller::{self, Context, RunOptions, observe};
use zookeeper_operator::crd::ZookeeperCluster;
use zookeeper_operator::health::fourlw::ProbeConfig;
use zookeeper_operator::metrics::Metrics;
use zookeeper_operator::rbac;
use zookeeper_operator::render::render;
use zookeeper_operator::validate::validate;

mod cli;

#[derive(Parser)]
#[command(
    name = "zookeeper-operator",
    version,
    about = "Runs Apache ZooKeeper ensembles on Kubernetes with quorum-safe rolling restarts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster of the current kubeconfig or service account.
    Run(RunArgs),
    /// Print the ZookeeperCluster CustomResourceDefinition as YAML.
    Crd,
    /// Print every object the operator would create for the ZookeeperCluster in FILE.
    Render {
        /// A YAML file holding one ZookeeperCluster.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (default: every namespace).
    #[arg(id = "watch_namespace", long = "namespace", env = "ZKOP_NAMESPACE")]
    namespace: Option<String>,
    /// Log format; the level comes from RUST_LOG (default info, and warn for the ZooKeeper
    /// client, which logs every session it opens).
    #[arg(long, env = "ZKOP_LOG_FORMAT", value_enum, default_value = "plain")]
    log_format: LogFormat,
    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(long, env = "ZKOP_METRICS_ADDR", default_value = "127.0.0.1:8080")]
    metrics_addr: SocketAddr,
    /// Clusters reconciled at the same time.
    #[arg(long, env = "ZKOP_CONCURRENCY", default_value_t = 4)]
    concurrency: u16,
    /// Timeout of one four-letter word sent to a member (seconds).
    #[arg(long, env = "ZKOP_PROBE_TIMEOUT_SECONDS", default_value_t = 2)]
    probe_timeout_seconds: u64,
    /// Seconds between two looks at a steady cluster (ZooKeeper sends no watch events: this is how
    /// a member that stops serving while its pod stays Ready is noticed).
    #[arg(long, env = "ZKOP_STEADY_RESYNC_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    steady_resync_seconds: u64,
    #[command(flatten)]
    leader_election: cli::ElectionArgs,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,zookeeper_client=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// One malloc arena for the whole process. glibc gives each thread that allocates its own arena
/// (up to 8 per core), and what one arena frees another cannot reuse: with the runtime's workers
/// and the blocking threads that resolve members' names, the operator kept three arenas and
/// 0.7 MiB more heap at 10 clusters than with one (e2e/bench scale, README: Scale). The threads now
/// share one allocator lock; its CPU cost was not measured apart from the release build's
/// opt-level (the two changed together; README: Scale gives their joint figures).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_malloc_arena() {
    // SAFETY: mallopt only sets a glibc tunable; it is called before the runtime starts any
    // thread, so no allocation is in flight in another thread. A refusal (0) changes nothing.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_malloc_arena() {}

fn main() -> std::process::ExitCode {
    one_malloc_arena();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async_main()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn async_main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Crd => serde_saphyr::to_string(&ZookeeperCluster::crd())
            .map(|yaml| print!("{yaml}"))
            .map_err(anyhow::Error::from),
        Command::Render { file } => render_file(&file),
        Command::Run(args) => run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn render_file(file: &PathBuf) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "cannot read {}; pass the path of a ZookeeperCluster YAML file",
            file.display()
        )
    })?;
    let zk: ZookeeperCluster = serde_saphyr::from_str(&text).with_context(|| {
        format!(
            "{} is not a ZookeeperCluster; compare it with config/samples/minimal.yaml",
            file.display()
        )
    })?;
    match validate(&zk) {
        Ok(v) => {
            print!("{}", render(&v, None).to_yaml()?);
            Ok(())
        }
        Err(invalid) => {
            for problem in &invalid.problems {
                eprintln!("error: {problem}");
            }
            bail!(
                "{} has {} problem(s); nothing rendered",
                file.display(),
                invalid.problems.len()
            )
        }
    }
}

async fn serve_http(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    use axum::{Router, http::StatusCode, routing::get};
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(Ordering::Relaxed) {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}; choose another --metrics-addr"))?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Whether an API error can pass by itself (the API server restarting, overloaded, or out of
/// reach), as opposed to a refusal that waiting does not fix.
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        _ => true,
    }
}

/// Waits until the CRD can be read: an API server that is restarting or out of reach is waited
/// for (with a log line each time), a CRD that is missing or a refusal ends the start-up.
async fn wait_for_crd(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd_name = ZookeeperCluster::crd_name();
    let mut delay = std::time::Duration::from_secs(1);
    loop {
        match crds.get_opt(crd_name).await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => bail!(
                "the {crd_name} CRD is not installed; run `kubectl apply -f crd/` (or `zookeeper-operator crd | kubectl apply -f -`) first"
            ),
            Err(e) if transient(&e) => {
                tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "cannot read CustomResourceDefinitions yet; waiting for the API server");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(10));
            }
            Err(e) => {
                return Err(e)
                    .context("cannot read CustomResourceDefinitions; check the operator's RBAC");
            }
        }
    }
}

/// The key every cluster's ZooKeeper super-user password is derived from: the Secret
/// `zookeeper-operator-super-key` in the operator's namespace, created with 32 random bytes at
/// the first start. Without it the operator runs, but changes no membership (and says why).
async fn super_key(client: &Client) -> Option<SuperKey> {
    let namespace = std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let name = rbac::SUPER_KEY_SECRET;
    let key_of = |s: Secret| {
        s.data
            .and_then(|d| d.get("key").cloned())
            .and_then(|k| SuperKey::new(&k.0))
    };
    for _ in 0..5 {
        match api.get_opt(name).await {
            Ok(Some(secret)) => match key_of(secret) {
                Some(key) => return Some(key),
                None => {
                    tracing::error!(secret = name, %namespace, "the super-user key Secret has no usable `key` (16+ bytes); delete it to have a new one created");
                    return None;
                }
            },
            Ok(None) => {
                let mut bytes = vec![0u8; 32];
                if let Err(e) = std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
                {
                    tracing::error!(error = %e, "cannot read random bytes for the super-user key");
                    return None;
                }
                let secret = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(namespace.clone()),
                        ..Default::default()
                    },
                    data: Some(
                        [("key".to_string(), ByteString(bytes))]
                            .into_iter()
                            .collect(),
                    ),
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &secret).await {
                    Ok(secret) => {
                        tracing::info!(secret = name, %namespace, "created the super-user key");
                        return key_of(secret);
                    }
                    // Another replica created it first: read it.
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => {
                        tracing::error!(error = %e, secret = name, %namespace, "cannot create the super-user key; membership changes are off");
                        return None;
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, secret = name, %namespace, "cannot read the super-user key; membership changes are off");
                return None;
            }
        }
    }
    None
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format);
    zookeeper_operator::install_crypto_provider();
    let client = Client::try_default().await.context(
        "cannot reach Kubernetes: set KUBECONFIG or run inside a pod with a service account",
    )?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let mut http = tokio::spawn(serve_http(
        args.metrics_addr,
        metrics.clone(),
        ready.clone(),
    ));
    wait_for_crd(&client).await?;
    let super_key = super_key(&client).await;

    // A standby is Ready too: a rolling update waits for the new pod's readiness before it stops the old leader.
    ready.store(true, Ordering::Relaxed);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let prober = observe::network_prober(ProbeConfig {
        timeout: std::time::Duration::from_secs(args.probe_timeout_seconds),
        ..ProbeConfig::default()
    });
    let options = RunOptions {
        namespace: args.namespace.clone(),
        concurrency: args.concurrency,
    };
    // Losing the Lease stops acting at once; the same process then campaigns again, so an API
    // server that was away for a minute costs no restart (and no kubelet back-off).
    loop {
        let hold = match args.leader_election.elector(client.clone())? {
            Some(elector) => {
                tracing::info!(identity = elector.identity(), "waiting to become leader");
                tokio::select! {
                    hold = elector.acquire() => Some(hold?),
                    _ = stopped() => return Ok(()),
                }
            }
            None => None,
        };
        let ctx = Arc::new(
            Context::new(client.clone(), metrics.clone(), prober.clone())
                .with_steady_resync(std::time::Duration::from_secs(args.steady_resync_seconds))
                .with_fence(hold.as_ref().map(|h| h.fence()))
                .with_membership(Arc::new(NetworkZookeeper), super_key.clone())
                // Where the probes come from when the operator runs in a pod (set by the chart).
                .with_operator_namespace(
                    std::env::var("POD_NAMESPACE")
                        .ok()
                        .filter(|n| !n.is_empty()),
                ),
        );
        tracing::info!(namespace = args.namespace.as_deref().unwrap_or("<all>"), addr = %args.metrics_addr, "starting controller");
        let lost = async {
            match &hold {
                Some(l) => l.lost().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = controller::run(ctx, options.clone(), stopped()) => {
                tracing::info!("controller stopped");
                if let Some(l) = hold {
                    l.release().await?;
                }
                return Ok(());
            }
            reason = lost => {
                tracing::error!(?reason, "lost leadership; stopped acting, campaigning again");
            }
            res = &mut http => {
                match res {
                    Ok(Err(e)) => return Err(e),
                    Ok(Ok(())) => bail!("the HTTP endpoint stopped"),
                    Err(e) => bail!("the HTTP endpoint failed: {e}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "zookeeper-operator",
            "run",
            "--namespace",
            "team-a",
            "--leader-elect",
            "--leader-election-namespace",
            "ops",
        ])
        .unwrap();
        match cli.command {
            Command::Run(args) => {
                assert_eq!(args.namespace.as_deref(), Some("team-a"));
                assert_eq!(args.leader_election.namespace.as_deref(), Some("ops"));
                assert!(args.leader_election.enabled);
            }
            _ => panic!("parsed the wrong subcommand"),
        }
    }
}
