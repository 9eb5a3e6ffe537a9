//! Growing an ensemble whose new members would outvote the old ones.
//!
//! Membership is static: every member's configuration lists server.1..N from spec.replicas. When
//! the new members are a majority of the new size they can elect a leader among themselves, with
//! an empty database, and the old members then follow it and take its snapshot.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::{
    TestNamespace, apply_cluster, client, cluster, condition, connect_string, log, member_pods,
    ordinal, pod_ready, spec, wait_settled,
};

/// Znodes written under /precious before the cluster grows.
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

#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed: run e2e/operator-test"]
async fn growing_one_member_to_three_keeps_the_data() {
    let client = client().await;
    let guard = TestNamespace::create(&client, "e2e-membership").await;
    let (ns, name) = (guard.name.clone(), "zk");

    apply_cluster(&client, &ns, name, spec(json!({"replicas": 1})))
        .await
        .expect("apply a 1-member cluster");
    wait_settled(&client, &ns, name, Duration::from_secs(300)).await;
    let service = connect_string(&client, &ns, name).await;
    write_precious(&service).await;
    for (member, what) in member_trees(&client, &ns, name).await {
        log(format!("before growing: {member} serves {what}"));
    }

    let started = Instant::now();
    let grown = apply_cluster(&client, &ns, name, spec(json!({"replicas": 3}))).await;
    log(format!(
        "replicas 1 -> 3: the API server answered {grown:?}",
        grown = grown.as_ref().map(|_| "accepted")
    ));
    grown.expect("the API server accepts replicas 3");

    // Watch what the members serve while the operator grows the ensemble.
    let mut last = Vec::new();
    let deadline = Duration::from_secs(240);
    loop {
        let now = member_trees(&client, &ns, name).await;
        if now != last {
            for (member, what) in &now {
                log(format!(
                    "after {:.0}s: {member} serves {what}",
                    started.elapsed().as_secs_f64()
                ));
            }
            last = now;
        }
        let zk = cluster(&client, &ns, name).await;
        let settled = zk.status.as_ref().is_some_and(|s| {
            s.observed_generation == zk.metadata.generation && s.members.len() == 3
        }) && condition(&zk, "Available").is_some_and(|c| c.0 == "True")
            && condition(&zk, "Progressing").is_some_and(|c| c.0 == "False");
        let all_ready = member_pods(&client, &ns, name)
            .await
            .iter()
            .filter(|p| pod_ready(p))
            .count()
            == 3;
        if (settled && all_ready) || started.elapsed() > deadline {
            log(format!(
                "stopped watching after {:.0}s (settled with 3 Ready members: {})",
                started.elapsed().as_secs_f64(),
                settled && all_ready
            ));
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let zk = cluster(&client, &ns, name).await;
    log(format!(
        "status afterwards: {}",
        serde_json::to_string(&zk.status).unwrap_or_default()
    ));
    log_events(&client, &ns).await;

    let trees = member_trees(&client, &ns, name).await;
    let through_service = tree(&service).await;
    log(format!(
        "through the client Service afterwards: {through_service:?}"
    ));
    for (member, what) in &trees {
        log(format!("afterwards: {member} serves {what}"));
    }
    let pods: Vec<Pod> = member_pods(&client, &ns, name).await;
    assert_eq!(pods.len(), 3, "three member pods exist");
    for (member, what) in &trees {
        assert!(
            what.contains(&format!("/precious holds {PRECIOUS} znodes")),
            "{member} lost the data written before growing: it serves {what}"
        );
    }
    assert!(
        matches!(through_service, Ok((_, Some(n))) if n == PRECIOUS),
        "the client Service serves a tree without the data: {through_service:?}"
    );
}
