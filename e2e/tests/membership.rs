//! Membership changes through ZooKeeper's dynamic reconfiguration, under write load.
//!
//! With static membership, growing 1 -> 3 let the two new members elect an empty leader whose
//! snapshot replaced the existing data. Now the operator adds and removes one server at a time
//! with `reconfig`: a new member boots with the committed configuration plus itself and joins
//! as a non-voting follower of the existing leader, synced before it is added, so the members
//! that hold the data are a majority of every configuration. This test walks 1 -> 3 -> 5 -> 3
//! -> 1 -> 3 with a writer on the client Service and data written before the first step, and
//! checks after every step: the committed configuration, every member's copy of the data, that
//! no kept member restarted, and at the end every acknowledged write. The operator is killed in
//! the middle of 3 -> 5 and its successor finishes the change.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::{
    TestNamespace, apply_cluster, client, cluster, connect_string, log, member_pods, ordinal,
    pod_ready, settled_at, spec, support, uids, wait_until,
};

/// Znodes written under /precious before the first membership change.
const PRECIOUS: usize = 50;

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

/// Writes `PRECIOUS` znodes under /precious through the client Service.
async fn write_precious(connect_string: &str) {
    let zk = zk_connect(connect_string)
        .await
        .expect("connect through the client Service");
    let persistent =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    zk.create("/precious", b"", &persistent)
        .await
        .expect("create /precious");
    for i in 0..PRECIOUS {
        zk.create(
            &format!("/precious/z-{i:02}"),
            format!("value {i}").as_bytes(),
            &persistent,
        )
        .await
        .unwrap_or_else(|e| panic!("create /precious/z-{i:02}: {e}"));
    }
    log(format!("wrote {PRECIOUS} znodes under /precious"));
}

/// What one client connection sees: the root's children and how many znodes /precious holds.
async fn tree(connect_string: &str) -> Result<(Vec<String>, Option<usize>), String> {
    let zk = zk_connect(connect_string).await?;
    let read = async {
        // A follower answers reads from its own copy: catch up with the leader first.
        zk.sync("/").await.map_err(|e| format!("sync: {e}"))?;
        let (mut root, _) = zk
            .get_children("/")
            .await
            .map_err(|e| format!("list /: {e}"))?;
        root.sort();
        let precious = match zk.get_children("/precious").await {
            Ok((children, _)) => Some(children.len()),
            Err(zookeeper_client::Error::NoNode) => None,
            Err(e) => return Err(format!("list /precious: {e}")),
        };
        Ok((root, precious))
    };
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(r) => r,
        Err(_) => Err("no answer within 10s".into()),
    }
}

/// What each member serves, read from the member itself on its pod address.
async fn member_trees(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let mut pods = member_pods(client, ns, name).await;
    pods.sort_by_key(ordinal);
    let mut seen = Vec::new();
    for p in &pods {
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
        let what = match ip {
            None => "no pod address".to_string(),
            Some(ip) => match tree(&format!("{ip}:2181")).await {
                Ok((root, precious)) => format!(
                    "root {root:?}, /precious {}",
                    precious.map_or("absent".to_string(), |n| format!("holds {n} znodes"))
                ),
                Err(e) => format!("unreadable ({e})"),
            },
        };
        seen.push((
            format!(
                "{}{}",
                p.name_any(),
                if pod_ready(p) { "" } else { " (not Ready)" }
            ),
            what,
        ));
    }
    seen
}

async fn log_events(client: &Client, ns: &str) {
    let mut events = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    events.sort_by_key(|e| {
        e.last_timestamp
            .as_ref()
            .or(e.first_timestamp.as_ref())
            .map(|t| t.0)
    });
    for e in events {
        let o = &e.involved_object;
        if o.kind.as_deref() == Some("ZookeeperCluster") || o.kind.as_deref() == Some("StatefulSet")
        {
            log(format!(
                "event {} {}/{} {} x{}: {}",
                e.type_.unwrap_or_default(),
                o.kind.clone().unwrap_or_default(),
                o.name.clone().unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.count.unwrap_or(1),
                e.message.unwrap_or_default()
            ));
        }
    }
}

/// The committed configuration's server ids, read through `connect_string` after a sync.
async fn committed_ids(connect_string: &str) -> Result<Vec<u32>, String> {
    let zk = zk_connect(connect_string).await?;
    let read = async {
        zk.sync("/zookeeper/config")
            .await
            .map_err(|e| format!("sync: {e}"))?;
        let (data, _) = zk.get_config().await.map_err(|e| format!("config: {e}"))?;
        let text = String::from_utf8_lossy(&data).to_string();
        Ok::<_, String>(
            text.lines()
                .filter_map(|l| l.strip_prefix("server."))
                .filter_map(|l| l.split('=').next()?.parse().ok())
                .collect(),
        )
    };
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(r) => r,
        Err(_) => Err("no answer within 10s".into()),
    }
}

/// Counts the cluster's Events by reason.
pub(super) async fn event_reasons(client: &Client, ns: &str) -> BTreeMap<String, usize> {
    let events = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for e in events {
        *out.entry(e.reason.unwrap_or_default()).or_default() += e.count.unwrap_or(1) as usize;
    }
    out
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed: run e2e/operator-test"]
async fn membership_changes_one_server_at_a_time_and_keep_every_znode() {
    let client = client().await;
    let guard = TestNamespace::create(&client, "e2e-membership").await;
    let (ns, name) = (guard.name.clone(), "zk");

    apply_cluster(&client, &ns, name, spec(json!({"replicas": 1})))
        .await
        .expect("apply a 1-member cluster");
    super::wait_settled(&client, &ns, name, Duration::from_secs(300)).await;
    let service = connect_string(&client, &ns, name).await;
    write_precious(&service).await;
    let writer = support::Writer::start(&service).await;

    let mut size = 1usize;
    let mut figures = Vec::new();
    for target in [3usize, 5, 3, 1, 3] {
        let before = uids(&member_pods(&client, &ns, name).await);
        // 5 -> 3 is asked while zk-1 is down: the change removes nobody before zk-1 runs again,
        // then goes on. (While it waits, Progressing says "removing zk-4: waiting for zk-1 to
        // serve"; that can last less than a second, too short to assert on.)
        let down = ((size, target) == (5, 3)).then_some(1usize);
        if let Some(o) = down {
            Api::<Pod>::namespaced(client.clone(), &ns)
                .delete(
                    &format!("{name}-{o}"),
                    &DeleteParams::default().grace_period(0),
                )
                .await
                .expect("delete a member pod");
            log(format!(
                "{size} -> {target}: deleted {name}-{o} just before the change"
            ));
        }
        let started = Instant::now();
        let started_wall = k8s_openapi::jiff::Timestamp::now();
        apply_cluster(&client, &ns, name, spec(json!({"replicas": target})))
            .await
            .unwrap_or_else(|e| panic!("the API server accepts {size} -> {target}: {e}"));
        let generation = cluster(&client, &ns, name).await.metadata.generation;
        if (size, target) == (3, 5) {
            // The operator keeps no state of its own: killed after the first of two additions,
            // its successor reads the committed configuration and finishes the change.
            let added = event_reasons(&client, &ns)
                .await
                .get("MemberAdded")
                .copied();
            wait_until(
                "3 -> 5: the first server is added",
                Duration::from_secs(240),
                || async {
                    let now = event_reasons(&client, &ns)
                        .await
                        .get("MemberAdded")
                        .copied();
                    (now > added).then_some(())
                },
            )
            .await;
            let operators: Api<Pod> = Api::namespaced(client.clone(), super::OPERATOR_NAMESPACE);
            for p in operators
                .list(&ListParams::default().labels("app.kubernetes.io/name=zookeeper-operator"))
                .await
                .expect("list the operator pods")
                .items
            {
                operators
                    .delete(&p.name_any(), &DeleteParams::default().grace_period(0))
                    .await
                    .expect("delete the operator pod");
            }
            log("3 -> 5: killed the operator between the two additions");
        }
        let want: Vec<u32> = (1..=target as u32).collect();
        wait_until(
            &format!("{size} -> {target}: {target} members serve the committed configuration"),
            Duration::from_secs(480),
            || async {
                let zk = cluster(&client, &ns, name).await;
                let status = zk.status.as_ref()?;
                let settled = settled_at(&zk, generation);
                let pods = member_pods(&client, &ns, name).await;
                let serving = pods.len() == target && pods.iter().all(pod_ready);
                if !(settled && serving && status.members.len() == target) {
                    return None;
                }
                (committed_ids(&service).await.ok()? == want).then_some(())
            },
        )
        .await;
        let took = started.elapsed();
        if let Some(o) = down {
            // Nothing was removed before the member that was down ran again. (It serves a few
            // seconds after its container starts; the pod's Ready condition follows only at the
            // next readiness probe, up to its period later, so Ready is not the bound.)
            let pod = Api::<Pod>::namespaced(client.clone(), &ns)
                .get(&format!("{name}-{o}"))
                .await
                .expect("the member is back");
            let started_at = pod
                .status
                .and_then(|s| s.container_statuses)
                .into_iter()
                .flatten()
                .find_map(|c| c.state?.running?.started_at)
                .expect("the member's container runs")
                .0;
            let first_removal = Api::<Event>::namespaced(client.clone(), &ns)
                .list(&ListParams::default())
                .await
                .expect("list events")
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("MemberRemoved"))
                .filter_map(|e| e.first_timestamp.map(|t| t.0))
                .filter(|t| t.as_second() + 1 >= started_wall.as_second())
                .min()
                .expect("a MemberRemoved Event of this step");
            log(format!(
                "{size} -> {target}: {name}-{o}'s new container started at {started_at}, first removal at {first_removal}"
            ));
            assert!(
                first_removal.as_second() > started_at.as_second(),
                "a server was removed at {first_removal} while {name}-{o} was down (its container started at {started_at})"
            );
        }
        figures.push(format!("{size} -> {target}: {:.1}s", took.as_secs_f64()));
        log(format!(
            "FIGURE membership {size} -> {target} settled in {:.1}s",
            took.as_secs_f64()
        ));
        let after = uids(&member_pods(&client, &ns, name).await);
        for o in (0..size.min(target)).filter(|o| Some(*o) != down) {
            assert_eq!(
                after.get(&o),
                before.get(&o),
                "{size} -> {target}: member {name}-{o} was restarted"
            );
        }
        let sts = Api::<StatefulSet>::namespaced(client.clone(), &ns)
            .get(name)
            .await
            .expect("the StatefulSet");
        assert_eq!(
            sts.spec.and_then(|s| s.replicas),
            Some(target as i32),
            "{size} -> {target}"
        );
        for (member, what) in member_trees(&client, &ns, name).await {
            log(format!("after {size} -> {target}: {member} serves {what}"));
            assert!(
                what.contains(&format!("/precious holds {PRECIOUS} znodes")),
                "{size} -> {target}: {member} serves {what}"
            );
        }
        size = target;
    }

    log_events(&client, &ns).await;
    let reasons = event_reasons(&client, &ns).await;
    log(format!("events by reason: {reasons:?}"));
    // 1 -> 3 -> 5 adds four servers, 5 -> 3 -> 1 removes four, 1 -> 3 adds two.
    assert_eq!(reasons.get("MemberAdded"), Some(&6), "{reasons:?}");
    assert_eq!(reasons.get("MemberRemoved"), Some(&4), "{reasons:?}");
    assert_eq!(reasons.get("ReconfigFailed"), None, "{reasons:?}");

    let (zk_client, attempts) = writer.stop().await;
    let checked = support::verify_acknowledged(&zk_client, &attempts).await;
    let (longest, _) = support::longest_unavailability(&attempts);
    log(format!(
        "FIGURE writer through the client Service during 1 -> 3 -> 5 -> 3 -> 1 -> 3: {} attempts, {checked} acknowledged and read back, longest write unavailability {:.2}s; steps: {}",
        attempts.len(),
        longest.as_secs_f64(),
        figures.join(", ")
    ));
    assert!(checked > 0, "the writer wrote during the changes");
}
