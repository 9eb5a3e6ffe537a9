//! Growing an ensemble whose new members would outvote the old ones.
//!
//! Membership is static: every member's configuration lists server.1..N from spec.replicas. When
//! the new members are a majority of the new size they can elect a leader among themselves, with
//! an empty database, and the old members then follow it and take its snapshot: 1 -> 3 lost every
//! znode this way. Until the operator reconfigures membership, the API server refuses growth
//! beyond 2 * old - 1 members (the CRD's rule on spec.replicas) and so does the operator.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use zookeeper_operator::crd::ZookeeperCluster;

use super::{
    FIELD_MANAGER, TestNamespace, apply_cluster, client, cluster, condition, connect_string, log,
    member_pods, ordinal, pod_ready, spec, uids, wait_settled,
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

/// Applies `replicas` to cluster `name` without storing it: the API server runs every check.
async fn dry_run_replicas(
    client: &Client,
    ns: &str,
    name: &str,
    replicas: i32,
) -> Result<(), kube::Error> {
    let api: Api<ZookeeperCluster> = Api::namespaced(client.clone(), ns);
    let obj = json!({
        "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
        "kind": "ZookeeperCluster",
        "metadata": {"name": name},
        "spec": spec(json!({"replicas": replicas})),
    });
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force().dry_run(),
        &Patch::Apply(&obj),
    )
    .await
    .map(|_| ())
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed: run e2e/operator-test"]
async fn growth_that_would_outvote_the_existing_members_is_refused() {
    let client = client().await;
    let guard = TestNamespace::create(&client, "e2e-membership").await;
    let (ns, name) = (guard.name.clone(), "zk");

    // 1. A single member with data: growing it to 3 is refused, and nothing changes.
    apply_cluster(&client, &ns, name, spec(json!({"replicas": 1})))
        .await
        .expect("apply a 1-member cluster");
    wait_settled(&client, &ns, name, Duration::from_secs(300)).await;
    let service = connect_string(&client, &ns, name).await;
    write_precious(&service).await;
    let pods_before = uids(&member_pods(&client, &ns, name).await);

    let err = apply_cluster(&client, &ns, name, spec(json!({"replicas": 3})))
        .await
        .expect_err("the API server refuses growing 1 member to 3");
    let msg = err.to_string();
    log(format!("replicas 1 -> 3 refused: {msg}"));
    for needle in [
        "spec.replicas cannot grow from 1 member yet",
        "the members that hold the data must stay a majority of the new size",
        "a single member cannot grow at all",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in: {msg}");
    }
    for replicas in [5, 9] {
        let err = dry_run_replicas(&client, &ns, name, replicas)
            .await
            .expect_err("growing a single member is refused");
        assert!(
            err.to_string()
                .contains("spec.replicas cannot grow from 1 member yet"),
            "1 -> {replicas}: {err}"
        );
    }

    tokio::time::sleep(Duration::from_secs(10)).await;
    let zk = cluster(&client, &ns, name).await;
    assert_eq!(zk.spec.replicas, 1, "the stored spec is unchanged");
    assert_eq!(
        condition(&zk, "Available").map(|c| c.0).as_deref(),
        Some("True")
    );
    assert_eq!(
        condition(&zk, "Degraded").map(|c| c.0).as_deref(),
        Some("False")
    );
    let sts = Api::<StatefulSet>::namespaced(client.clone(), &ns)
        .get(name)
        .await
        .expect("the StatefulSet");
    assert_eq!(sts.spec.and_then(|s| s.replicas), Some(1));
    assert_eq!(
        uids(&member_pods(&client, &ns, name).await),
        pods_before,
        "the member was not restarted"
    );
    for (member, what) in member_trees(&client, &ns, name).await {
        log(format!("after the refusal: {member} serves {what}"));
        assert!(
            what.contains(&format!("/precious holds {PRECIOUS} znodes")),
            "{member} serves {what}"
        );
    }
    let through_service = tree(&service).await;
    assert!(
        matches!(through_service, Ok((_, Some(n))) if n == PRECIOUS),
        "{through_service:?}"
    );

    // 2. Three members may grow to 5 (the old 3 stay a majority), not to 7 or 9. Checked at
    // the API server only: a second ensemble does not have to serve for that.
    let three = "zk3";
    apply_cluster(&client, &ns, three, spec(json!({"replicas": 3})))
        .await
        .expect("apply a 3-member cluster");
    for replicas in [7, 9] {
        let err = dry_run_replicas(&client, &ns, three, replicas)
            .await
            .expect_err("growing 3 members beyond 5 is refused");
        let msg = err.to_string();
        assert!(
            msg.contains("spec.replicas cannot grow from 3 members beyond 5 yet"),
            "3 -> {replicas}: {msg}"
        );
    }
    log("replicas 3 -> 7 and 3 -> 9 refused: 3 members can grow to at most 5");
    apply_cluster(&client, &ns, three, spec(json!({"replicas": 5})))
        .await
        .expect("the API server accepts 3 -> 5");
    dry_run_replicas(&client, &ns, three, 9)
        .await
        .expect("the API server accepts 5 -> 9");
    log("replicas 3 -> 5 accepted, then 5 -> 9 accepted (dry run)");
    log_events(&client, &ns).await;
}
