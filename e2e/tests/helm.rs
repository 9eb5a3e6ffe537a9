//! The operator installed, upgraded and reinstalled with its Helm chart, as seen through the API:
//! the leader Lease, the operator and ZooKeeper pods, the ZookeeperCluster's conditions, Events
//! and the operator's metrics (read through the API server's pod proxy).
//!
//! `e2e/helm-e2e` runs these one at a time at its phases (`--exact helm::NAME`), with the release
//! it installed described by `ZKOP_HELM_E2E_RELEASE`, `ZKOP_HELM_E2E_OPERATOR_NAMESPACE`,
//! `ZKOP_HELM_E2E_NAMESPACE` (the ZookeeperCluster `zk` lives there) and `HELM`. Each test runs
//! the helm command of its phase itself, so that it sees the state before and after. Without
//! those variables (e.g. under `e2e/operator-test`) they return at once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};

use super::{client, cluster, condition, log, member_pods, pod_ready, uids, wait_until};

/// The ZookeeperCluster helm-e2e creates before the first of these tests.
const ZK: &str = "zk";
/// Port of the operator's /metrics (the chart's default).
const METRICS_PORT: u16 = 8080;
/// `reportingComponent` (and `source.component`) of the operator's Events.
const REPORTER: &str = "zookeeper-operator";

/// The release e2e/helm-e2e installed.
struct Release {
    helm: PathBuf,
    chart: PathBuf,
    name: String,
    namespace: String,
    zk_namespace: String,
}

impl Release {
    /// None (and a log line) when the test does not run under e2e/helm-e2e.
    fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (Some(name), Some(namespace), Some(zk_namespace)) = (
            var("ZKOP_HELM_E2E_RELEASE"),
            var("ZKOP_HELM_E2E_OPERATOR_NAMESPACE"),
            var("ZKOP_HELM_E2E_NAMESPACE"),
        ) else {
            log(
                "skipped: this test belongs to a phase of e2e/helm-e2e, which sets ZKOP_HELM_E2E_*",
            );
            return None;
        };
        Some(Release {
            helm: var("HELM").map_or_else(|| PathBuf::from("helm"), PathBuf::from),
            chart: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/helm/zookeeper-operator"),
            name,
            namespace,
            zk_namespace,
        })
    }

    /// Runs `helm SUBCOMMAND RELEASE CHART -n NAMESPACE ARGS...`; panics with its output on failure.
    fn helm(&self, subcommand: &str, args: &[&str]) {
        log(format!(
            "helm {subcommand} {} {}",
            self.name,
            args.join(" ")
        ));
        let out = Command::new(&self.helm)
            .arg(subcommand)
            .arg(&self.name)
            .arg(&self.chart)
            .args(["--namespace", &self.namespace])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.helm.display()));
        assert!(
            out.status.success(),
            "helm {subcommand} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn lease(&self, client: &Client) -> Option<Lease> {
        Api::<Lease>::namespaced(client.clone(), &self.namespace)
            .get_opt(&self.name)
            .await
            .expect("read the leader Lease")
    }

    /// Operator pods that run and are not being deleted.
    async fn operator_pods(&self, client: &Client) -> Vec<Pod> {
        Api::<Pod>::namespaced(client.clone(), &self.namespace)
            .list(
                &ListParams::default().labels(&format!("app.kubernetes.io/instance={}", self.name)),
            )
            .await
            .expect("list operator pods")
            .items
            .into_iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            })
            .collect()
    }

    /// Waits until the operator Deployment has rolled out: every replica updated and Ready,
    /// no pod of an older revision left.
    async fn wait_rolled_out(&self, client: &Client, limit: Duration) {
        let api: Api<Deployment> = Api::namespaced(client.clone(), &self.namespace);
        wait_until(
            &format!("the operator Deployment {} has rolled out", self.name),
            limit,
            || async {
                let d = api.get(&self.name).await.ok()?;
                let want = d.spec.as_ref()?.replicas.unwrap_or(1);
                let s = d.status.as_ref()?;
                let done = s.observed_generation >= d.metadata.generation
                    && s.updated_replicas == Some(want)
                    && s.ready_replicas == Some(want)
                    && s.replicas == Some(want);
                let pods = self.operator_pods(client).await;
                (done && pods.len() == want as usize && pods.iter().all(pod_ready)).then_some(())
            },
        )
        .await;
    }

    /// Waits until the Lease names a running operator pod that `accept` accepts; its name.
    async fn wait_leader(
        &self,
        client: &Client,
        what: &str,
        limit: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> String {
        wait_until(what, limit, || async {
            let holder = holder(&self.lease(client).await?)?;
            let running = self
                .operator_pods(client)
                .await
                .iter()
                .any(|p| p.name_any() == holder);
            (running && accept(&holder)).then_some(holder)
        })
        .await
    }

    /// The operator's metrics, read through the API server's proxy to the pod.
    async fn metrics(&self, client: &Client, pod: &str) -> Option<String> {
        let path = format!(
            "/api/v1/namespaces/{}/pods/{pod}:{METRICS_PORT}/proxy/metrics",
            self.namespace
        );
        let request = http::Request::get(path).body(Vec::new()).unwrap();
        client.request_text(request).await.ok()
    }

    /// Waits until the leader's metrics show a reconcile of `zk`: its members-by-mode series
    /// names one leader. Asserts that no reconcile of the leader failed.
    async fn wait_reconciled_by(&self, client: &Client, leader: &str) {
        let zk_namespace = &self.zk_namespace;
        let text = wait_until(
            &format!("{leader} reconciled {zk_namespace}/{ZK} (its members gauge names a leader)"),
            Duration::from_secs(90),
            || async {
                let text = self.metrics(client, leader).await?;
                let leaders = sample(
                    &text,
                    "zookeeper_operator_members",
                    &[
                        ("namespace", zk_namespace),
                        ("cluster", ZK),
                        ("mode", "leader"),
                    ],
                );
                (leaders == 1.0).then_some(text)
            },
        )
        .await;
        let reconciles = sample(&text, "zookeeper_operator_reconciles_total", &[]);
        let errors = sample(&text, "zookeeper_operator_reconcile_errors_total", &[]);
        log(format!(
            "{leader}: {reconciles} reconciles, {errors} failed"
        ));
        assert!(reconciles >= 1.0, "{text}");
        assert_eq!(errors, 0.0, "reconciles of {leader} failed:\n{text}");
    }

    /// The ensemble's pods (ordinal -> UID) and its StatefulSet's generation and restart hash.
    async fn ensemble(&self, client: &Client) -> Ensemble {
        let sts = Api::<StatefulSet>::namespaced(client.clone(), &self.zk_namespace)
            .get(ZK)
            .await
            .expect("the ensemble's StatefulSet");
        let restart_hash = sts
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get("zookeeper.ensemble.dev/restart-hash"))
            .cloned();
        Ensemble {
            pods: uids(&member_pods(client, &self.zk_namespace, ZK).await),
            generation: sts.metadata.generation,
            restart_hash,
        }
    }

    async fn assert_available(&self, client: &Client) {
        let zk = cluster(client, &self.zk_namespace, ZK).await;
        assert_eq!(
            condition(&zk, "Available").map(|c| c.0).as_deref(),
            Some("True"),
            "{}/{ZK} is Available: {:?}",
            self.zk_namespace,
            zk.status
        );
    }

    /// Warning Events the operator reported in the ensemble's namespace since `since`.
    async fn assert_no_warning_events(&self, client: &Client, since: Timestamp) {
        let events = Api::<Event>::namespaced(client.clone(), &self.zk_namespace)
            .list(&ListParams::default())
            .await
            .expect("list events");
        let warnings: Vec<String> = events
            .items
            .iter()
            .filter(|e| {
                let last = e
                    .last_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .or(e.event_time.as_ref().map(|t| t.0))
                    .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0));
                let by_operator = e.reporting_component.as_deref() == Some(REPORTER)
                    || e.source.as_ref().and_then(|s| s.component.as_deref()) == Some(REPORTER);
                e.type_.as_deref() == Some("Warning")
                    && by_operator
                    && last.is_some_and(|t| t >= since)
            })
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.as_deref().unwrap_or_default(),
                    e.message.as_deref().unwrap_or_default()
                )
            })
            .collect();
        assert!(
            warnings.is_empty(),
            "the operator reported warnings: {warnings:#?}"
        );
    }
}

#[derive(Debug, PartialEq)]
struct Ensemble {
    pods: BTreeMap<usize, String>,
    generation: Option<i64>,
    restart_hash: Option<String>,
}

fn holder(lease: &Lease) -> Option<String> {
    lease
        .spec
        .as_ref()?
        .holder_identity
        .clone()
        .filter(|h| !h.is_empty())
}

fn transitions(lease: Option<&Lease>) -> i32 {
    lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0)
}

/// The sum of the samples of `metric` whose labels include `labels` (Prometheus text format).
fn sample(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, rest) = series.split_once('{').unwrap_or((series, ""));
            let matches = name == metric
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .fold(0.0, |sum, v| sum + v)
}

#[tokio::test]
#[ignore = "a phase of e2e/helm-e2e"]
async fn upgrade_replaces_the_operator_and_restarts_no_member() {
    let Some(release) = Release::from_env() else {
        return;
    };
    let client = client().await;
    release.assert_available(&client).await;
    let before = release.ensemble(&client).await;
    assert_eq!(before.pods.len(), 3, "three members run: {before:?}");
    let lease = release.lease(&client).await;
    let old = holder(lease.as_ref().expect("a leader Lease")).expect("a leader");
    let transitions_before = transitions(lease.as_ref());

    let since = Timestamp::now();
    let started = Instant::now();
    release.helm("upgrade", &["--reuse-values", "--set", "logLevel=debug"]);
    release
        .wait_rolled_out(&client, Duration::from_secs(180))
        .await;
    let leader = release
        .wait_leader(
            &client,
            &format!("a new operator pod holds the Lease (was {old})"),
            Duration::from_secs(60),
            |h| h != old,
        )
        .await;
    log(format!(
        "FIGURE helm upgrade to the new pod leading: {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    assert!(
        transitions(release.lease(&client).await.as_ref()) > transitions_before,
        "the Lease counts the handover"
    );
    release.wait_reconciled_by(&client, &leader).await;

    // Give a restart the new leader might cause the time to show.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        release.ensemble(&client).await,
        before,
        "no ZooKeeper pod restarted, StatefulSet generation and restart hash unchanged"
    );
    release.assert_available(&client).await;
    release.assert_no_warning_events(&client, since).await;
}

#[tokio::test]
#[ignore = "a phase of e2e/helm-e2e"]
async fn deleting_the_leader_pod_hands_the_lease_over() {
    let Some(release) = Release::from_env() else {
        return;
    };
    let client = client().await;
    let before = release.ensemble(&client).await;
    let since = Timestamp::now();
    release.helm("upgrade", &["--reuse-values", "--set", "replicaCount=2"]);
    // Both Ready: a standby reports Ready once its process runs the election loop.
    release
        .wait_rolled_out(&client, Duration::from_secs(180))
        .await;
    let leader = release
        .wait_leader(
            &client,
            "one of two operator pods leads",
            Duration::from_secs(60),
            |_| true,
        )
        .await;
    let standby = release
        .operator_pods(&client)
        .await
        .iter()
        .map(|p| p.name_any())
        .find(|p| *p != leader)
        .expect("a standby pod");
    log(format!("leader {leader}, standby {standby}"));
    let lease_before = release.lease(&client).await;
    let transitions_before = transitions(lease_before.as_ref());
    let lease_duration = Duration::from_secs(
        lease_before
            .as_ref()
            .and_then(|l| l.spec.as_ref()?.lease_duration_seconds)
            .expect("the Lease names its duration") as u64,
    );

    // SIGTERM: the leader releases the Lease on its way out; the standby takes it at its next
    // try. The Deployment's replacement pod campaigns as soon as it starts and may win that race
    // (both are fine); what must not happen is a wait for the Lease to expire.
    let started = Instant::now();
    Api::<Pod>::namespaced(client.clone(), &release.namespace)
        .delete(&leader, &DeleteParams::default())
        .await
        .expect("delete the leader pod");
    let new_leader = release
        .wait_leader(
            &client,
            &format!("another pod than {leader} holds the Lease"),
            Duration::from_secs(60),
            |h| h != leader,
        )
        .await;
    let handover = started.elapsed();
    let taken_by = if new_leader == standby {
        "the standby"
    } else {
        "the Deployment's replacement pod"
    };
    log(format!(
        "FIGURE handover after deleting the leader pod: {:.1}s, taken by {taken_by} {new_leader} (Lease released on SIGTERM)",
        handover.as_secs_f64()
    ));
    assert!(
        handover < lease_duration,
        "the handover took {handover:?}, not less than the lease duration {lease_duration:?}: \
         the deleted leader did not release the Lease on SIGTERM, the new holder waited for expiry"
    );
    assert!(
        transitions(release.lease(&client).await.as_ref()) > transitions_before,
        "the Lease counts the handover"
    );
    release
        .wait_rolled_out(&client, Duration::from_secs(180))
        .await;

    // The new leader reconciles: a deleted client Service comes back.
    let services: Api<Service> = Api::namespaced(client.clone(), &release.zk_namespace);
    let cs = format!("{ZK}-cs");
    let old_uid = services.get(&cs).await.expect("the client Service").uid();
    services
        .delete(&cs, &DeleteParams::default())
        .await
        .expect("delete the client Service");
    wait_until(
        &format!("{new_leader} recreated Service {cs}"),
        Duration::from_secs(90),
        || async {
            let svc = services.get_opt(&cs).await.ok()??;
            (svc.uid() != old_uid && svc.metadata.deletion_timestamp.is_none()).then_some(())
        },
    )
    .await;
    release.wait_reconciled_by(&client, &new_leader).await;
    assert_eq!(
        release.ensemble(&client).await,
        before,
        "no ZooKeeper pod restarted across the handover"
    );
    release.assert_available(&client).await;
    release.assert_no_warning_events(&client, since).await;
}

#[tokio::test]
#[ignore = "a phase of e2e/helm-e2e"]
async fn reinstall_watching_one_namespace_adopts_the_ensemble() {
    let Some(release) = Release::from_env() else {
        return;
    };
    let client = client().await;
    let before = release.ensemble(&client).await;
    let since = Timestamp::now();
    let watch = format!("watchNamespace={}", release.zk_namespace);
    release.helm("install", &["--set", &watch]);
    release
        .wait_rolled_out(&client, Duration::from_secs(180))
        .await;
    // `helm uninstall` deleted the Role before the old leader could release the Lease on its
    // way out: the new pod takes over once the stale record stayed unchanged for the lease duration.
    let started = Instant::now();
    let leader = release
        .wait_leader(
            &client,
            "the reinstalled operator pod holds the Lease",
            Duration::from_secs(60),
            |_| true,
        )
        .await;
    log(format!(
        "FIGURE reinstall: new pod leading {:.1}s after its rollout (stale Lease of the uninstalled leader expired)",
        started.elapsed().as_secs_f64()
    ));
    release.wait_reconciled_by(&client, &leader).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        release.ensemble(&client).await.pods,
        before.pods,
        "no ZooKeeper pod restarted on adoption"
    );
    release.assert_available(&client).await;
    release.assert_no_warning_events(&client, since).await;
}
