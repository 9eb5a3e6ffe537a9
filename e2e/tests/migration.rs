//! Upgrade from the last release with static membership to dynamic membership, on real pods.
//!
//! The previous release's operator (`e2e/lib/previous-operator.sh` builds its image; the image
//! reference comes in `ZKOP_E2E_PREVIOUS_OPERATOR_IMAGE`) builds a 3-member ensemble: every
//! member's zoo.cfg lists server.1..3, reconfiguration is off, no super user. With data written
//! and a writer on the client Service, that operator is stopped and the current one started in
//! its place. It must move the ensemble to dynamic membership with one rolling restart (one
//! member at a time, the leader last), every acknowledged write and the data written before
//! still there, and the ensemble must then grow 3 -> 5 and shrink back to 3 like any other.
//!
//! The previous release's members do not meet the `restricted` Pod Security Standard (that came
//! later), so the namespace enforces `baseline` until the migration is done, then `restricted`:
//! the members added by 3 -> 5 are admitted under it.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::membership::event_reasons;
use super::{
    OPERATOR_NAMESPACE, Sampler, TestNamespace, apply_cluster, client, cluster, condition,
    connect_string, log, member_pods, ordinal, pod_ready, revision, settled_at, spec, support,
    uids, update_revision, wait_settled, wait_until,
};

/// Znodes written under /precious while the previous operator manages the ensemble.
const PRECIOUS: usize = 50;
/// The previous release's operator Deployment, beside the current one (scaled to 0 meanwhile).
const PREVIOUS: &str = "zookeeper-operator-previous";
/// The selector of the current operator's pods (the Helm chart's).
const CURRENT_SELECTOR: &str = "app.kubernetes.io/name=zookeeper-operator";

/// Puts the operators back as the other tests expect them, also when this test fails: the
/// previous release's Deployment deleted, the current one at its replica count.
struct OperatorsRestored {
    current: String,
    replicas: i32,
}

impl OperatorsRestored {
    async fn restore(client: &Client, current: &str, replicas: i32) -> Result<(), String> {
        let api: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
        let _ = api.delete(PREVIOUS, &DeleteParams::foreground()).await;
        api.patch(
            current,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
    }
}

impl Drop for OperatorsRestored {
    fn drop(&mut self) {
        let (current, replicas) = (self.current.clone(), self.replicas);
        let restored = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup");
            rt.block_on(async move {
                let client = Client::try_default().await.map_err(|e| e.to_string())?;
                Self::restore(&client, &current, replicas).await
            })
        })
        .join();
        if !matches!(restored, Ok(Ok(()))) {
            log(format!(
                "could not restore the operators: delete deployment {PREVIOUS} and scale deployment {} to {} in {OPERATOR_NAMESPACE} by hand",
                self.current, self.replicas
            ));
        }
    }
}

async fn operator_pods(client: &Client, selector: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .list(&ListParams::default().labels(selector))
        .await
        .expect("list operator pods")
        .items
}

async fn scale_current(client: &Client, deployment: &str, replicas: i32) {
    Api::<Deployment>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .patch(
            deployment,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .expect("scale the current operator");
}

/// The previous release's operator: the current Deployment's pod (service account, security
/// context, probes, /tmp) with the previous image, that release's arguments and its own labels.
fn previous_deployment(current: &Deployment, image: &str) -> Deployment {
    let mut template = serde_json::to_value(&current.spec.as_ref().expect("spec").template)
        .expect("the template serializes");
    template["metadata"] = json!({"labels": {"app.kubernetes.io/name": PREVIOUS}});
    let container = &mut template["spec"]["containers"][0];
    let port = container["ports"][0]["containerPort"]
        .as_i64()
        .unwrap_or(8080);
    container["image"] = json!(image);
    container["imagePullPolicy"] = json!("IfNotPresent");
    container["args"] = json!([
        "run",
        "--log-format=plain",
        format!("--metrics-addr=0.0.0.0:{port}")
    ]);
    container["env"] = json!([
        {"name": "RUST_LOG", "value": "info,zookeeper_client=warn"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]);
    serde_json::from_value(json!({
        "metadata": {"name": PREVIOUS, "namespace": OPERATOR_NAMESPACE},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": PREVIOUS}},
            "template": template,
        }
    }))
    .expect("a Deployment")
}

/// A namespace that admits the previous release's members (`baseline`), deleted at the end.
async fn baseline_namespace(client: &Client, name: &str) -> TestNamespace {
    TestNamespace::with_labels(
        client,
        name,
        json!({
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
        }),
    )
    .await
}

async fn zk_connect(connect_string: &str) -> Result<zookeeper_client::Client, String> {
    let connecting = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_connection_timeout(Duration::from_secs(5))
        .connect(connect_string);
    match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no session within 10s".into()),
    }
}

/// The configuration `get_config` returns through `connect_string`, after a sync.
async fn config_text(connect_string: &str) -> Result<String, String> {
    let zk = zk_connect(connect_string).await?;
    let read = async {
        zk.sync("/zookeeper/config")
            .await
            .map_err(|e| format!("sync: {e}"))?;
        let (data, _) = zk.get_config().await.map_err(|e| format!("config: {e}"))?;
        Ok(String::from_utf8_lossy(&data).to_string())
    };
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(r) => r,
        Err(_) => Err("no answer within 10s".into()),
    }
}

fn server_ids(config: &str) -> Vec<u32> {
    config
        .lines()
        .filter_map(|l| l.strip_prefix("server."))
        .filter_map(|l| l.split('=').next()?.parse().ok())
        .collect()
}

/// How many znodes /precious holds on one member (read from that member, after a sync).
async fn precious_on(address: &str) -> Result<usize, String> {
    let zk = zk_connect(address).await?;
    let read = async {
        zk.sync("/").await.map_err(|e| format!("sync: {e}"))?;
        let (children, _) = zk
            .get_children("/precious")
            .await
            .map_err(|e| format!("list /precious: {e}"))?;
        Ok(children.len())
    };
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(r) => r,
        Err(_) => Err("no answer within 10s".into()),
    }
}

/// Asserts every member serves all of /precious from its own copy.
async fn assert_precious_everywhere(client: &Client, ns: &str, name: &str, when: &str) {
    let mut pods = member_pods(client, ns, name).await;
    pods.sort_by_key(ordinal);
    for p in &pods {
        let ip = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_else(|| panic!("{when}: {} has no address", p.name_any()));
        let held = precious_on(&format!("{ip}:2181")).await;
        log(format!(
            "{when}: {} holds {held:?} znodes under /precious",
            p.name_any()
        ));
        assert_eq!(held, Ok(PRECIOUS), "{when}: {}", p.name_any());
    }
}

fn container_args(p: &Pod) -> Vec<String> {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.args.clone())
        .unwrap_or_default()
}

/// One membership change after the migration: `target` members serve the committed
/// configuration `1..=target`, settled; returns how long it took.
async fn resize(client: &Client, ns: &str, name: &str, service: &str, target: usize) -> Duration {
    let started = Instant::now();
    apply_cluster(client, ns, name, spec(json!({"replicas": target})))
        .await
        .unwrap_or_else(|e| panic!("the API server accepts replicas {target}: {e}"));
    let generation = cluster(client, ns, name).await.metadata.generation;
    let want: Vec<u32> = (1..=target as u32).collect();
    wait_until(
        &format!("{target} members serve the committed configuration"),
        Duration::from_secs(300),
        || async {
            let zk = cluster(client, ns, name).await;
            let status = zk.status.as_ref()?;
            let pods = member_pods(client, ns, name).await;
            let ok = settled_at(&zk, generation)
                && status.members.len() == target
                && status
                    .members
                    .iter()
                    .all(|m| m.role.as_deref() == Some("participant"))
                && pods.len() == target
                && pods.iter().all(pod_ready);
            if !ok {
                return None;
            }
            (server_ids(&config_text(service).await.ok()?) == want).then_some(())
        },
    )
    .await;
    started.elapsed()
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed and the previous release's image: run e2e/operator-test"]
async fn static_membership_of_the_previous_release_moves_to_dynamic_with_one_rolling_restart() {
    let image = std::env::var("ZKOP_E2E_PREVIOUS_OPERATOR_IMAGE").expect(
        "ZKOP_E2E_PREVIOUS_OPERATOR_IMAGE names the previous release's operator image; e2e/operator-test sets it from e2e/lib/previous-operator.sh",
    );
    let client = client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let current = deployments
        .list(&ListParams::default().labels(CURRENT_SELECTOR))
        .await
        .expect("list the operator Deployments")
        .items
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("the current operator runs in {OPERATOR_NAMESPACE}"));
    let current_name = current.name_any();
    let replicas = current.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);

    // 1. Only the previous release's operator runs.
    let _restore = OperatorsRestored {
        current: current_name.clone(),
        replicas,
    };
    scale_current(&client, &current_name, 0).await;
    wait_until(
        "the current operator is stopped",
        Duration::from_secs(120),
        || async {
            operator_pods(&client, CURRENT_SELECTOR)
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let _ = deployments
        .delete(PREVIOUS, &DeleteParams::foreground())
        .await;
    wait_until(
        "no earlier previous-release operator is left",
        Duration::from_secs(120),
        || async {
            deployments
                .get_opt(PREVIOUS)
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        },
    )
    .await;
    deployments
        .create(
            &PostParams::default(),
            &previous_deployment(&current, &image),
        )
        .await
        .expect("create the previous release's operator");
    let previous_selector = format!("app.kubernetes.io/name={PREVIOUS}");
    wait_until(
        &format!("the previous release's operator ({image}) is Ready"),
        Duration::from_secs(120),
        || async {
            operator_pods(&client, &previous_selector)
                .await
                .iter()
                .any(pod_ready)
                .then_some(())
        },
    )
    .await;

    // 2. It builds a 3-member ensemble with static membership.
    let guard = baseline_namespace(&client, "e2e-migration").await;
    let (ns, name) = (guard.name.clone(), "zk");
    apply_cluster(&client, &ns, name, spec(json!({})))
        .await
        .expect("apply a 3-member cluster");
    let zk = wait_settled(&client, &ns, name, Duration::from_secs(420)).await;
    let pods = member_pods(&client, &ns, name).await;
    assert_eq!(pods.len(), 3);
    for p in &pods {
        let args = container_args(p);
        assert!(
            args.iter().any(|a| a == "--servers=3")
                && !args.iter().any(|a| a.starts_with("--membership_file")),
            "{} runs with static membership: {args:?}",
            p.name_any()
        );
    }
    let service = connect_string(&client, &ns, name).await;
    let static_config = config_text(&service)
        .await
        .expect("read the configuration of the static ensemble");
    log(format!(
        "the previous release's ensemble runs the configuration:\n{static_config}"
    ));
    assert_eq!(server_ids(&static_config), vec![1, 2, 3]);
    let status = zk.status.clone().expect("status");
    assert_eq!(
        status.config_version, None,
        "the previous release knows no configuration version"
    );
    let leader = status.leader.clone().expect("a leader is reported");
    let leader_ordinal: usize = leader.rsplit('-').next().unwrap().parse().unwrap();

    // 3. Data, and a writer through the client Service for the rest of the test.
    let zk_client = zk_connect(&service)
        .await
        .expect("connect through the client Service");
    let persistent =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    zk_client
        .create("/precious", b"", &persistent)
        .await
        .expect("create /precious");
    for i in 0..PRECIOUS {
        zk_client
            .create(
                &format!("/precious/z-{i:02}"),
                format!("value {i}").as_bytes(),
                &persistent,
            )
            .await
            .unwrap_or_else(|e| panic!("create /precious/z-{i:02}: {e}"));
    }
    drop(zk_client);
    log(format!("wrote {PRECIOUS} znodes under /precious"));
    let writer = support::Writer::start(&service).await;
    let writer_started = Instant::now();

    // 4. The upgrade: the previous operator stops, the current one starts.
    deployments
        .delete(PREVIOUS, &DeleteParams::foreground())
        .await
        .expect("stop the previous release's operator");
    wait_until(
        "the previous release's operator is stopped",
        Duration::from_secs(120),
        || async {
            operator_pods(&client, &previous_selector)
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let before = uids(&member_pods(&client, &ns, name).await);
    let revision_before = update_revision(&client, &ns, name).await;
    let sampler = Sampler::start(client.clone(), ns.clone(), name.to_string(), 3);
    let upgraded = Instant::now();
    scale_current(&client, &current_name, replicas).await;
    // What the status says on the way (every distinct Progressing and Degraded condition).
    let said = std::sync::Mutex::new(Vec::<String>::new());
    let zk = wait_until(
        "the current operator moved the ensemble to dynamic membership",
        Duration::from_secs(480),
        || async {
            let zk = cluster(&client, &ns, name).await;
            for type_ in ["Progressing", "Degraded"] {
                if let Some((status, reason, message)) = condition(&zk, type_) {
                    let line = format!("{type_}={status} {reason}: {message}");
                    let mut said = said.lock().unwrap();
                    if !said.contains(&line) {
                        said.push(line);
                    }
                }
            }
            let status = zk.status.as_ref()?;
            status.config_version.as_ref()?;
            let roles_ok = status.members.len() == 3
                && status
                    .members
                    .iter()
                    .all(|m| m.role.as_deref() == Some("participant"));
            if !(settled_at(&zk, zk.metadata.generation) && roles_ok) {
                return None;
            }
            let rev = update_revision(&client, &ns, name).await?;
            let pods = member_pods(&client, &ns, name).await;
            let all_new = pods.len() == 3
                && pods.iter().all(|p| {
                    pod_ready(p)
                        && revision(p).as_deref() == Some(rev.as_str())
                        && container_args(p)
                            .iter()
                            .any(|a| a.starts_with("--membership_file"))
                });
            all_new.then_some(zk)
        },
    )
    .await;
    let migration = upgraded.elapsed();
    let migrated_at = writer_started.elapsed();
    let state = sampler.stop().await;
    log(format!(
        "FIGURE migration from static to dynamic membership: {:.1}s from starting the current operator to settled, {} samples, most members down at once {} [{}], replaced in order {:?}",
        migration.as_secs_f64(),
        state.samples,
        state.max_down,
        state.max_down_detail,
        state.replaced
    ));
    assert_ne!(
        update_revision(&client, &ns, name).await,
        revision_before,
        "the members run a new template"
    );
    assert!(
        state.max_down <= 1,
        "two members were down at once: {}",
        state.max_down_detail
    );
    for i in 0..3 {
        assert_eq!(
            state.uids[&i].len(),
            2,
            "zk-{i} was restarted exactly once (first uid {:?}): {:?}",
            before.get(&i),
            state.uids[&i]
        );
    }
    assert_eq!(
        state.replaced.last(),
        Some(&leader_ordinal),
        "the leader {leader} goes last: {:?}",
        state.replaced
    );
    for p in operator_pods(&client, CURRENT_SELECTOR).await {
        let image = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .map(|c| c.image_id.clone())
            .unwrap_or_default();
        log(format!(
            "the current operator {} runs {image}",
            p.name_any()
        ));
        let logs = Api::<Pod>::namespaced(client.clone(), OPERATOR_NAMESPACE)
            .logs(&p.name_any(), &Default::default())
            .await
            .unwrap_or_default();
        for line in logs.lines().filter(|l| l.contains("membership")).take(20) {
            log(format!("  operator: {line}"));
        }
    }
    let said = said.into_inner().unwrap();
    log(format!(
        "the status during the migration said:\n  {}",
        said.join("\n  ")
    ));
    // A member restarting is a quorum at risk, as in any rollout of 3; nothing else degrades.
    assert!(
        !said
            .iter()
            .any(|l| l.starts_with("Degraded=True") && !l.contains("QuorumAtRisk")),
        "the migration degraded the ensemble: {said:?}"
    );
    // The membership is the spec's all along: the rollout is never held up as a scaling step
    // (it was, waiting for a member of the static ensemble to learn a configuration version).
    assert!(
        !said.iter().any(|l| l.contains("Scaling")),
        "the migration was held up as a membership change: {said:?}"
    );
    let status = zk.status.clone().expect("status");
    let dynamic_config = config_text(&service)
        .await
        .expect("read the configuration after the migration");
    log(format!(
        "after the migration: status.configVersion {:?}, the ensemble runs:\n{dynamic_config}",
        status.config_version
    ));
    assert_eq!(server_ids(&dynamic_config), vec![1, 2, 3]);
    assert_precious_everywhere(&client, &ns, name, "after the migration").await;

    // 5. Membership changes like any cluster's; the members now meet `restricted`, which the
    //    namespace enforces from here on (the added members are admitted under it).
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})),
        )
        .await
        .expect("enforce restricted");
    let kept = uids(&member_pods(&client, &ns, name).await);
    let grow = resize(&client, &ns, name, &service, 5).await;
    log(format!(
        "FIGURE after the migration, 3 -> 5 settled in {:.1}s",
        grow.as_secs_f64()
    ));
    assert_precious_everywhere(&client, &ns, name, "after 3 -> 5").await;
    let shrink = resize(&client, &ns, name, &service, 3).await;
    log(format!(
        "FIGURE after the migration, 5 -> 3 settled in {:.1}s",
        shrink.as_secs_f64()
    ));
    assert_precious_everywhere(&client, &ns, name, "after 5 -> 3").await;
    assert_eq!(
        uids(&member_pods(&client, &ns, name).await),
        kept,
        "growing and shrinking restarted no kept member"
    );
    let reasons = event_reasons(&client, &ns).await;
    log(format!("events by reason: {reasons:?}"));
    assert_eq!(reasons.get("MemberAdded"), Some(&2), "{reasons:?}");
    assert_eq!(reasons.get("MemberRemoved"), Some(&2), "{reasons:?}");
    assert_eq!(reasons.get("ReconfigFailed"), None, "{reasons:?}");

    // 6. Every acknowledged write is there.
    let (zk_client, attempts) = writer.stop().await;
    let checked = support::verify_acknowledged(&zk_client, &attempts).await;
    let failed = attempts.iter().filter(|a| a.result.is_err()).count();
    let (longest, _) = support::longest_unavailability(&attempts);
    let migration_window = writer_started + migrated_at.saturating_sub(migration);
    let longest_in_migration = support::write_gaps(&attempts)
        .into_iter()
        .filter(|(_, at)| *at >= migration_window && *at <= writer_started + migrated_at)
        .map(|(gap, _)| gap)
        .max()
        .unwrap_or_default();
    log(format!(
        "FIGURE writer through the client Service during the migration, 3 -> 5 and 5 -> 3: {} attempts, {checked} acknowledged and read back, {failed} failed, longest write unavailability {:.2}s ({:.2}s during the migration)",
        attempts.len(),
        longest.as_secs_f64(),
        longest_in_migration.as_secs_f64()
    ));
    assert!(checked > 0, "the writer wrote");
    assert!(
        longest < Duration::from_secs(10),
        "writes through the client Service were unavailable for {longest:?} at a stretch"
    );
}
