//! Reconcile against the mocked API server of `support/mock_api.rs`, which fails on any
//! unexpected request and on any request the RBAC table does not allow: the first
//! reconcile applies the four objects in order and writes status; a second reconcile of the
//! unchanged cluster writes nothing; an invalid spec writes only the status; with
//! `spec.clientAuth` the operator writes its own user's Secret, reads and hashes the users'
//! Secret into the pod template, and stops with a message when that Secret is missing or unusable.

#[path = "support/mock_api.rs"]
mod mock_api;

use std::sync::Arc;

use http::{Method, StatusCode};
use kube::Resource;
use kube::core::DeserializeGuard;
use mock_api::{Exchange, Reply, expect, status};
use serde_json::{Value, json};
use zookeeper_operator::controller::observe::Prober;
use zookeeper_operator::controller::{Context, reconcile::reconcile};
use zookeeper_operator::crd::ZookeeperCluster;
use zookeeper_operator::health::fourlw::MemberProbe;
use zookeeper_operator::health::{Ordinal, Outcome, parse};
use zookeeper_operator::metrics::Metrics;

const NS: &str = "team";
/// Where the operator runs in these tests.
const OPERATOR_NS: &str = "zookeeper-operator";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("tests/fixtures/zookeeper/3.9.5/{name}")).unwrap()
}

/// zk-1 leads with both followers synced.
fn healthy_prober() -> Prober {
    Arc::new(|members| {
        Box::pin(async move {
            members
                .into_iter()
                .map(|(ordinal, _addr): (Ordinal, _)| {
                    let role = if ordinal.0 == 1 { "leader" } else { "follower" };
                    let srvr = match parse::srvr(&fixture(&format!("{role}.srvr"))) {
                        parse::Reply::Data(s) => Outcome::Serving(s),
                        other => panic!("fixture does not parse: {other:?}"),
                    };
                    let mntr =
                        (role == "leader").then(|| match parse::mntr(&fixture("leader.mntr")) {
                            parse::Reply::Data(m) => Outcome::Serving(m),
                            other => panic!("fixture does not parse: {other:?}"),
                        });
                    MemberProbe {
                        ordinal,
                        srvr,
                        mntr,
                    }
                })
                .collect()
        })
    })
}

fn cluster(spec: Value, status: Option<Value>) -> ZookeeperCluster {
    let mut obj = json!({
        "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
        "kind": "ZookeeperCluster",
        "metadata": {"name": "zk", "namespace": NS, "uid": "uid-1", "generation": 1},
        "spec": spec,
    });
    if let Some(status) = status {
        obj["status"] = status;
    }
    serde_json::from_value(obj).unwrap()
}

/// Echoes the applied body back, as the server would (plus what the test adds).
fn echo(
    extra: impl Fn(&mut Value) + Send + 'static,
) -> impl Fn(&Value) -> (StatusCode, Value) + Send {
    move |body| {
        let mut obj = body.clone();
        obj["metadata"]["managedFields"] =
            json!([{"manager": "zookeeper-operator", "operation": "Apply"}]);
        extra(&mut obj);
        (StatusCode::OK, obj)
    }
}

fn sts_status(obj: &mut Value) {
    obj["metadata"]["generation"] = json!(1);
    obj["status"] = json!({
        "observedGeneration": 1, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 3,
        "currentRevision": "zk-rev1", "updateRevision": "zk-rev1", "availableReplicas": 3
    });
}

fn pods() -> Value {
    let items: Vec<Value> = (0..3)
        .map(|i| {
            json!({
                "metadata": {"name": format!("zk-{i}"), "namespace": NS, "uid": format!("uid-zk-{i}"),
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                    "labels": {"controller-revision-hash": "zk-rev1",
                               "app.kubernetes.io/name": "zookeeper", "app.kubernetes.io/instance": "zk",
                               "zookeeper.ensemble.dev/in-service": "true"}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}
            })
        })
        .collect();
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
}

/// The cluster as the server returns it after a status patch.
fn status_echo(body: &Value) -> (StatusCode, Value) {
    let mut obj = serde_json::to_value(cluster(json!({}), None)).unwrap();
    obj["status"] = body["status"].clone();
    (StatusCode::OK, obj)
}

/// The expected status write of the cluster `zk`.
fn status_patch() -> Exchange {
    expect(
        Method::PATCH,
        format!(
            "/apis/zookeeper.ensemble.dev/v1alpha1/namespaces/{NS}/zookeeperclusters/zk/status"
        ),
        status_echo,
    )
}

fn base(kind: &str, name: &str) -> String {
    match kind {
        "services" => format!("/api/v1/namespaces/{NS}/services/{name}"),
        "poddisruptionbudgets" => {
            format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/{name}")
        }
        "statefulsets" => format!("/apis/apps/v1/namespaces/{NS}/statefulsets/{name}"),
        "configmaps" => format!("/api/v1/namespaces/{NS}/configmaps/{name}"),
        "networkpolicies" => {
            format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/{name}")
        }
        _ => unreachable!(),
    }
}

/// The children the operator applies before the StatefulSet, in its order.
const CHILDREN: [(&str, &str); 5] = [
    ("services", "zk-hs"),
    ("services", "zk-cs"),
    ("poddisruptionbudgets", "zk-pdb"),
    ("configmaps", "zk-members"),
    ("networkpolicies", "zk-netpol"),
];

/// The StatefulSet applied without a read before it, then the member pods listed.
fn apply_statefulset_then_list_pods(script: &mut Vec<Exchange>) {
    script.push(expect(
        Method::PATCH,
        base("statefulsets", "zk"),
        echo(sts_status),
    ));
    script.push(expect(
        Method::GET,
        format!("/api/v1/namespaces/{NS}/pods"),
        |_| (StatusCode::OK, pods()),
    ));
}

fn first_time_script() -> Vec<Exchange> {
    // Membership: no StatefulSet yet, so every member of the spec boots together.
    let mut script = vec![expect(Method::GET, base("statefulsets", "zk"), |_| {
        status(StatusCode::NOT_FOUND, "NotFound")
    })];
    for (kind, name) in CHILDREN {
        script.push(expect(Method::GET, base(kind, name), |_| {
            status(StatusCode::NOT_FOUND, "NotFound")
        }));
        script.push(expect(Method::PATCH, base(kind, name), echo(|_| {})));
    }
    // The StatefulSet is known missing from the read above: applied without another.
    apply_statefulset_then_list_pods(&mut script);
    script
}

async fn run(zk: ZookeeperCluster, script: Vec<Exchange>, prober: Prober) -> Vec<(String, Value)> {
    run_with_metrics(zk, script, prober).await.0
}

/// [`run`], also returning the operator's metrics after the pass.
async fn run_with_metrics(
    zk: ZookeeperCluster,
    script: Vec<Exchange>,
    prober: Prober,
) -> (Vec<(String, Value)>, String) {
    let (client, served) = mock_api::start(NS, script);
    let metrics = Arc::new(Metrics::default());
    let ctx = Arc::new(
        Context::new(client, metrics.clone(), prober)
            .with_operator_namespace(Some(OPERATOR_NS.to_string())),
    );
    let action = reconcile(Arc::new(DeserializeGuard(Ok(zk))), ctx.clone()).await;
    drop(ctx);
    let writes = served.writes().await;
    assert!(action.is_ok(), "{action:?}");
    (writes, metrics.encode())
}

#[tokio::test]
async fn first_reconcile_applies_six_objects_in_order_then_writes_status() {
    let mut script = first_time_script();
    script.push(status_patch());
    let (writes, metrics) =
        run_with_metrics(cluster(json!({}), None), script, healthy_prober()).await;
    // What operating it needs: each member serving and updated, the leader's synced count.
    for i in 0..3 {
        for gauge in ["member_serving", "member_updated"] {
            let series = format!(
                "zookeeper_operator_{gauge}{{namespace=\"{NS}\",cluster=\"zk\",member=\"zk-{i}\"}} 1"
            );
            assert!(metrics.contains(&series), "{series} in\n{metrics}");
        }
    }
    let synced =
        format!("zookeeper_operator_synced_followers{{namespace=\"{NS}\",cluster=\"zk\"}} 2");
    assert!(metrics.contains(&synced), "{synced} in\n{metrics}");
    let kinds: Vec<&str> = writes
        .iter()
        .map(|(_, b)| b["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "Service",
            "Service",
            "PodDisruptionBudget",
            "ConfigMap",
            "NetworkPolicy",
            "StatefulSet",
            "ZookeeperCluster"
        ]
    );

    // The policy over the members admits the client port from the operator's namespace too.
    let policy = &writes[4].1;
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        "zk"
    );
    let client_from = &policy["spec"]["ingress"][1]["from"];
    assert_eq!(policy["spec"]["ingress"][1]["ports"][0]["port"], 2181);
    assert!(
        client_from.as_array().unwrap().iter().any(
            |p| p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == OPERATOR_NS
        ),
        "{policy}"
    );

    // A new cluster's members boot together from the published membership, version 0.
    let boot = writes[3].1["data"]["boot.cfg"].as_str().unwrap();
    assert_eq!(
        boot.lines().collect::<Vec<_>>(),
        (0..3)
            .map(|i| format!(
                "server.{}=zk-{i}.zk-hs.{NS}.svc.cluster.local:2888:3888:participant;2181",
                i + 1
            ))
            .collect::<Vec<_>>()
    );

    // Children are owned by the cluster and carry the applied hash.
    let sts = &writes[5].1;
    assert_eq!(sts["spec"]["replicas"], 3);
    assert_eq!(sts["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(sts["metadata"]["ownerReferences"][0]["controller"], true);
    assert!(sts["metadata"]["annotations"]["zookeeper.ensemble.dev/applied-hash"].is_string());

    let status = &writes[6].1["status"];
    assert_eq!(status["leader"], "zk-1");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["readyReplicas"], 3);
    // No committed configuration can be read here (no ZooKeeper): the spec's members.
    assert_eq!(
        status["connectionString"],
        (0..3)
            .map(|i| format!("zk-{i}.zk-hs.{NS}.svc.cluster.local:2181"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let modes: Vec<&str> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["follower", "leader", "follower"]);
    let conditions = status["conditions"].as_array().unwrap();
    let get = |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap().clone();
    assert_eq!(get("Available")["status"], "True", "{conditions:?}");
    assert_eq!(get("Progressing")["status"], "False", "{conditions:?}");
    assert_eq!(get("Degraded")["status"], "False", "{conditions:?}");
}

#[tokio::test]
async fn unchanged_cluster_reconciles_with_zero_writes() {
    // First pass: learn what the operator writes.
    let mut script = first_time_script();
    script.push(status_patch());
    let writes = run(cluster(json!({}), None), script, healthy_prober()).await;
    let applied: Vec<Value> = writes[..6].iter().map(|(_, b)| b.clone()).collect();
    let status = writes[6].1["status"].clone();

    // Second pass: the server holds exactly that; only reads may happen. The membership step
    // reads the StatefulSet first (its members are not reachable here: nothing changes); the
    // apply step uses what it read instead of reading it again.
    let mut live_sts = applied[5].clone();
    sts_status(&mut live_sts);
    let mut script = vec![expect(Method::GET, base("statefulsets", "zk"), move |_| {
        (StatusCode::OK, live_sts.clone())
    })];
    for (i, (kind, name)) in CHILDREN.into_iter().enumerate() {
        let mut live = applied[i].clone();
        live["metadata"]["managedFields"] = json!([
            {"manager": "zookeeper-operator", "operation": "Apply"},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status"}
        ]);
        script.push(expect(Method::GET, base(kind, name), move |_| {
            (StatusCode::OK, live.clone())
        }));
    }
    script.push(expect(
        Method::GET,
        format!("/api/v1/namespaces/{NS}/pods"),
        |_| (StatusCode::OK, pods()),
    ));
    let writes = run(cluster(json!({}), Some(status)), script, healthy_prober()).await;
    assert!(
        writes.is_empty(),
        "a steady cluster must cause no write, saw {writes:?}"
    );
}

#[tokio::test]
async fn children_the_watches_show_applied_are_neither_read_nor_written() {
    let mut script = first_time_script();
    script.push(status_patch());
    let writes = run(cluster(json!({}), None), script, healthy_prober()).await;
    let applied: Vec<Value> = writes[..6].iter().map(|(_, b)| b.clone()).collect();
    let status = writes[6].1["status"].clone();

    // The watches saw the five children as the first pass applied them (the PDB's status
    // written by the disruption controller is no foreign writer). Only the StatefulSet (once:
    // the membership step reads it, the apply step uses that) and the pods are read.
    let mut live_sts = applied[5].clone();
    sts_status(&mut live_sts);
    let script = vec![
        expect(Method::GET, base("statefulsets", "zk"), move |_| {
            (StatusCode::OK, live_sts.clone())
        }),
        expect(Method::GET, format!("/api/v1/namespaces/{NS}/pods"), |_| {
            (StatusCode::OK, pods())
        }),
    ];
    let (client, served) = mock_api::start(NS, script);
    let ctx = Arc::new(
        Context::new(client, Arc::new(Metrics::default()), healthy_prober())
            .with_operator_namespace(Some(OPERATOR_NS.to_string())),
    );
    for (i, kind) in [
        "Service",
        "Service",
        "PodDisruptionBudget",
        "ConfigMap",
        "NetworkPolicy",
    ]
    .into_iter()
    .enumerate()
    {
        let mut meta = applied[i]["metadata"].clone();
        meta["uid"] = json!(format!("uid-{i}"));
        meta["managedFields"] = json!([
            {"manager": "zookeeper-operator", "operation": "Apply"},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status"}
        ]);
        assert!(
            ctx.children
                .observe(kind, &serde_json::from_value(meta).unwrap()),
            "first sight of {kind} {i} is a change"
        );
    }
    let action = reconcile(
        Arc::new(DeserializeGuard(Ok(cluster(json!({}), Some(status))))),
        ctx.clone(),
    )
    .await;
    drop(ctx);
    let writes = served.writes().await;
    assert!(action.is_ok(), "{action:?}");
    assert!(
        writes.is_empty(),
        "a steady cluster: no write, saw {writes:?}"
    );
}

#[tokio::test]
async fn a_new_clusters_children_the_watches_have_listed_as_missing_are_applied_unread() {
    // The children's watches have listed (a new cluster's children are not among them): the
    // first pass reads the StatefulSet once (missing), applies all six without reading any
    // (the mocked server fails on any request not in this script).
    let mut script = vec![expect(Method::GET, base("statefulsets", "zk"), |_| {
        status(StatusCode::NOT_FOUND, "NotFound")
    })];
    for (kind, name) in CHILDREN {
        script.push(expect(Method::PATCH, base(kind, name), echo(|_| {})));
    }
    apply_statefulset_then_list_pods(&mut script);
    script.push(status_patch());
    let (client, served) = mock_api::start(NS, script);
    let ctx = Arc::new(
        Context::new(client, Arc::new(Metrics::default()), healthy_prober())
            .with_operator_namespace(Some(OPERATOR_NS.to_string())),
    );
    for kind in [
        "Service",
        "PodDisruptionBudget",
        "ConfigMap",
        "NetworkPolicy",
    ] {
        for event in [
            kube::runtime::watcher::Event::Init,
            kube::runtime::watcher::Event::InitDone,
        ] {
            ctx.children
                .on_event::<k8s_openapi::api::core::v1::Service>(kind, event);
        }
    }
    let action = reconcile(
        Arc::new(DeserializeGuard(Ok(cluster(json!({}), None)))),
        ctx.clone(),
    )
    .await;
    drop(ctx);
    let writes = served.writes().await;
    assert!(action.is_ok(), "{action:?}");
    let paths: Vec<&str> = writes.iter().map(|(path, _)| path.as_str()).collect();
    let mut want: Vec<String> = CHILDREN.iter().map(|(k, n)| base(k, n)).collect();
    want.push(base("statefulsets", "zk"));
    want.push(format!(
        "/apis/zookeeper.ensemble.dev/v1alpha1/namespaces/{NS}/zookeeperclusters/zk/status"
    ));
    assert_eq!(paths, want, "six children applied, then the status");
}

/// The steady resync of [`first_pass_asking_no_member`].
const RESYNC: std::time::Duration = std::time::Duration::from_secs(45);

/// The first pass over a new cluster whose pod list the server answers with `pods`, with a
/// prober that fails the test if called: its result and its writes.
async fn first_pass_asking_no_member(
    pods: impl Fn(&Value) -> Reply + Send + 'static,
) -> (
    Result<kube::runtime::controller::Action, zookeeper_operator::controller::Error>,
    Vec<(String, Value)>,
) {
    let mut script = first_time_script();
    let pods_at = script.len() - 1;
    script[pods_at] = expect(Method::GET, format!("/api/v1/namespaces/{NS}/pods"), pods);
    script.push(status_patch());
    let never: Prober = Arc::new(|members| {
        panic!("no member has a pod with an IP, yet the pass asked {members:?}");
    });
    let (client, served) = mock_api::start(NS, script);
    let ctx = Arc::new(
        Context::new(client, Arc::new(Metrics::default()), never)
            .with_operator_namespace(Some(OPERATOR_NS.to_string()))
            .with_steady_resync(RESYNC),
    );
    let action = reconcile(
        Arc::new(DeserializeGuard(Ok(cluster(json!({}), None)))),
        ctx.clone(),
    )
    .await;
    drop(ctx);
    (action, served.writes().await)
}

#[tokio::test]
async fn members_without_pods_are_not_asked_and_the_pass_waits_for_the_watch() {
    // A new cluster whose pods the StatefulSet controller has not made yet: no member has a DNS
    // record, so none is sent a word (the prober fails the test if called), and the next pass
    // comes from a pod's watch event, or at the steady resync: no short timer.
    let (action, writes) = first_pass_asking_no_member(|_| {
        (
            StatusCode::OK,
            json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []}),
        )
    })
    .await;
    assert_eq!(
        action.expect("the pass succeeds"),
        kube::runtime::controller::Action::requeue(RESYNC),
        "nothing could answer: the steady resync, not a probe timer"
    );
    let status = &writes.last().expect("the status is written").1["status"];
    assert!(
        status.to_string().contains("no pod yet"),
        "the status says why the members do not answer: {status}"
    );
}

#[tokio::test]
async fn pods_made_a_moment_ago_are_looked_at_again_soon_even_without_an_ip() {
    // The pods were made within the last second (creation times have second precision): the
    // plan waits for time itself, so the pass comes back on a timer, not at the steady resync.
    let (action, _) = first_pass_asking_no_member(|_| {
        let now = json!(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now()
        ));
        let mut list = pods();
        for pod in list["items"].as_array_mut().unwrap() {
            pod["metadata"]["creationTimestamp"] = now.clone();
            pod["status"] = json!({"phase": "Pending"});
        }
        (StatusCode::OK, list)
    })
    .await;
    assert_ne!(
        action.expect("the pass succeeds"),
        kube::runtime::controller::Action::requeue(RESYNC),
        "a pod younger than its creation time's precision: looked at again on a timer"
    );
}

/// A cluster whose heap does not fit its memory limit: a spec only the operator refuses.
fn heap_too_large() -> ZookeeperCluster {
    cluster(
        json!({"config": {"heap": "4G"}, "resources": {"limits": {"memory": "2Gi"}}}),
        None,
    )
}

/// The StatefulSet a valid 3-member spec renders, as the server reports it.
fn running_statefulset() -> Value {
    let valid = zookeeper_operator::validate::validate(&cluster(json!({}), None)).unwrap();
    let mut sts =
        serde_json::to_value(zookeeper_operator::render::render(&valid, None).statefulset).unwrap();
    sts_status(&mut sts);
    sts
}

#[tokio::test]
async fn invalid_spec_touches_nothing_but_status_tells_the_members_truth() {
    // A running ensemble: its StatefulSet is read (never written), its members probed.
    let script = vec![
        expect(Method::GET, base("statefulsets", "zk"), |_| {
            (StatusCode::OK, running_statefulset())
        }),
        expect(Method::GET, format!("/api/v1/namespaces/{NS}/pods"), |_| {
            (StatusCode::OK, pods())
        }),
        status_patch(),
        event(),
    ];
    let writes = run(heap_too_large(), script, healthy_prober()).await;
    assert_eq!(writes.len(), 2, "only the status and the Event are written");
    let status = &writes[0].1["status"];
    let conditions = status["conditions"].as_array().unwrap();
    let by_type = |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap().clone();
    let degraded = by_type("Degraded");
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("spec.config.heap 4G"),
        "{degraded}"
    );
    // The members' truth, as observed now.
    assert_eq!(by_type("Available")["status"], "True");
    assert_eq!(by_type("Progressing")["status"], "False");
    assert_eq!(status["leader"], "zk-1");
    assert_eq!(status["members"].as_array().unwrap().len(), 3);
    let warning = &writes[1].1;
    assert_eq!(warning["type"], "Warning");
    assert_eq!(warning["reason"], "InvalidSpec");
    assert_eq!(warning["involvedObject"]["name"], "zk");

    // Nothing runs yet: only Degraded is written, with the Event.
    let script = vec![
        expect(Method::GET, base("statefulsets", "zk"), |_| {
            mock_api::status(StatusCode::NOT_FOUND, "NotFound")
        }),
        status_patch(),
        event(),
    ];
    let writes = run(heap_too_large(), script, healthy_prober()).await;
    let conditions = writes[0].1["status"]["conditions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(conditions.len(), 1, "{conditions:?}");
    assert_eq!(conditions[0]["reason"], "InvalidSpec");
}

/// The StatefulSet after a template change: every member (at zk-rev1) is outdated.
fn sts_rolling(obj: &mut Value) {
    sts_status(obj);
    obj["status"]["updateRevision"] = json!("zk-rev2");
    obj["status"]["updatedReplicas"] = json!(0);
}

/// A pass over a healthy cluster whose members are all outdated, up to the re-check just before
/// the eviction of zk-2 (the highest follower): the members are observed again.
fn rollout_script() -> Vec<Exchange> {
    let mut script = first_time_script();
    script[11] = expect(Method::PATCH, base("statefulsets", "zk"), echo(sts_rolling));
    script.push(expect(Method::GET, base("statefulsets", "zk"), |_| {
        let mut sts = running_statefulset();
        sts_rolling(&mut sts);
        (StatusCode::OK, sts)
    }));
    script.push(expect(
        Method::GET,
        format!("/api/v1/namespaces/{NS}/pods"),
        |_| (StatusCode::OK, pods()),
    ));
    script
}

/// The eviction of zk-2, asked as a dry run (`dry_run`) or for real, answered with `answer`.
fn eviction(dry_run: bool, answer: Reply) -> Exchange {
    expect(
        Method::POST,
        format!("/api/v1/namespaces/{NS}/pods/zk-2/eviction"),
        move |body| {
            // The eviction can only ever hit the pod that was observed.
            assert_eq!(
                body["deleteOptions"]["preconditions"]["uid"], "uid-zk-2",
                "{body}"
            );
            let dry = body["deleteOptions"]["dryRun"] == json!(["All"]);
            assert_eq!(dry, dry_run, "dry run expected: {dry_run}: {body}");
            answer.clone()
        },
    )
}

/// Member `pod` taken out of its Services (`in_service` false) or put back, always with the
/// UID it was observed with.
fn in_service(pod: &'static str, in_service: bool) -> Exchange {
    expect(
        Method::PATCH,
        format!("/api/v1/namespaces/{NS}/pods/{pod}"),
        move |body| {
            let label = &body["metadata"]["labels"]["zookeeper.ensemble.dev/in-service"];
            let expected = if in_service {
                json!("true")
            } else {
                json!(null)
            };
            assert_eq!(label, &expected, "{body}");
            assert_eq!(body["metadata"]["uid"], format!("uid-{pod}"), "{body}");
            (
                StatusCode::OK,
                json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": pod}}),
            )
        },
    )
}

/// The EndpointSlices of zk's Services, listing `pods`.
fn endpoint_slices(pods: &'static [&'static str]) -> Exchange {
    expect(
        Method::GET,
        format!("/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"),
        move |_| {
            let endpoints: Vec<Value> = pods
                .iter()
                .map(
                    |p| json!({"addresses": ["10.0.0.1"], "targetRef": {"kind": "Pod", "name": p}}),
                )
                .collect();
            let slice = json!({"metadata": {"name": "zk-hs-abcde"}, "addressType": "IPv4", "endpoints": endpoints});
            (
                StatusCode::OK,
                json!({"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1", "metadata": {}, "items": [slice]}),
            )
        },
    )
}

fn accepted() -> Reply {
    (
        StatusCode::CREATED,
        json!({"kind": "Status", "status": "Success"}),
    )
}

fn event() -> Exchange {
    expect(
        Method::POST,
        format!("/api/v1/namespaces/{NS}/events"),
        |body| (StatusCode::OK, body.clone()),
    )
}

/// The last status write says Progressing with `reason` and a message containing `says`.
fn assert_progressing(writes: &[(String, Value)], reason: &str, says: &str) {
    let (_, status) = writes.last().expect("a status write");
    let p = status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap();
    assert_eq!(p["reason"], reason, "{p}");
    assert!(p["message"].as_str().unwrap().contains(says), "{p}");
}

#[tokio::test]
async fn an_outdated_follower_is_evicted_after_a_fresh_recheck() {
    let mut script = rollout_script();
    // Asked first, then out of the Services, which are read until they drop it, then evicted.
    script.push(eviction(true, accepted()));
    script.push(in_service("zk-2", false));
    script.push(endpoint_slices(&["zk-0", "zk-1", "zk-2"]));
    script.push(endpoint_slices(&["zk-0", "zk-1"]));
    script.push(eviction(false, accepted()));
    script.push(event());
    script.push(status_patch());
    let writes = run(cluster(json!({}), None), script, healthy_prober()).await;
    let event = &writes[writes.len() - 2].1;
    assert_eq!(event["reason"], "RestartingMember");
    assert_eq!(event["type"], "Normal");
    assert_progressing(
        &writes,
        "RestartingMember",
        "restarting zk-2 (outdated follower)",
    );
}

#[tokio::test]
async fn an_eviction_the_pdb_refuses_is_retried_and_said() {
    // The dry run is refused: the member never leaves its Services.
    let mut script = rollout_script();
    script.push(eviction(
        true,
        mock_api::status(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
    ));
    script.push(status_patch());
    let writes = run(cluster(json!({}), None), script, healthy_prober()).await;
    assert_progressing(
        &writes,
        "EvictionRefused",
        "refused by the PodDisruptionBudget",
    );
}

#[tokio::test]
async fn an_eviction_that_fails_otherwise_is_a_condition_and_an_event() {
    // Two PodDisruptionBudgets over the same pods: the API server answers 500.
    let mut script = rollout_script();
    script.push(eviction(
        true,
        mock_api::status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
    ));
    script.push(event());
    script.push(status_patch());
    let writes = run(cluster(json!({}), None), script, healthy_prober()).await;
    let event = &writes[writes.len() - 2].1;
    assert_eq!(event["reason"], "EvictionFailed");
    assert_eq!(event["type"], "Warning");
    assert_progressing(&writes, "EvictionFailed", "the eviction of zk-2 failed");
}

#[tokio::test]
async fn a_member_taken_out_whose_eviction_is_then_refused_is_put_back() {
    // The PDB allowed the dry run, then refused the eviction (another disruption came first).
    let mut script = rollout_script();
    script.push(eviction(true, accepted()));
    script.push(in_service("zk-2", false));
    script.push(endpoint_slices(&["zk-0", "zk-1"]));
    script.push(eviction(
        false,
        mock_api::status(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
    ));
    script.push(in_service("zk-2", true));
    script.push(status_patch());
    let writes = run(cluster(json!({}), None), script, healthy_prober()).await;
    assert_progressing(
        &writes,
        "EvictionRefused",
        "refused by the PodDisruptionBudget",
    );
}

#[tokio::test]
async fn a_member_left_out_of_its_services_is_put_back_by_the_next_pass() {
    // The operator stopped between taking zk-1 out and evicting it: zk-1 runs without the label.
    let mut script = first_time_script();
    // The pass lists the pods last.
    let pods_at = script.len() - 1;
    script[pods_at] = expect(Method::GET, format!("/api/v1/namespaces/{NS}/pods"), |_| {
        let mut list = pods();
        let labels = list["items"][1]["metadata"]["labels"]
            .as_object_mut()
            .unwrap();
        labels.remove("zookeeper.ensemble.dev/in-service");
        (StatusCode::OK, list)
    });
    script.insert(pods_at + 1, in_service("zk-1", true));
    script.push(status_patch());
    let writes = run(cluster(json!({}), None), script, healthy_prober()).await;
    assert!(
        writes
            .iter()
            .any(|(path, _)| path == &format!("/api/v1/namespaces/{NS}/pods/zk-1")),
        "zk-1 was put back: {writes:?}"
    );
}

#[test]
fn object_reference_names_the_cluster() {
    let zk = cluster(json!({}), None);
    assert_eq!(zk.object_ref(&()).name.as_deref(), Some("zk"));
}

#[tokio::test]
async fn malformed_object_gets_a_warning_event_and_nothing_else() {
    // What the watch hands over when an object does not match the schema (e.g. written while an
    // older CRD without validation was installed): the metadata survives, the spec does not.
    let guard: DeserializeGuard<ZookeeperCluster> = serde_json::from_value(json!({
        "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
        "kind": "ZookeeperCluster",
        "metadata": {"name": "broken", "namespace": NS, "uid": "uid-2"},
        "spec": {"replicas": "three"},
    }))
    .unwrap();
    assert!(guard.0.is_err(), "the object is malformed");
    let script = vec![expect(
        Method::POST,
        format!("/api/v1/namespaces/{NS}/events"),
        |body| (StatusCode::OK, body.clone()),
    )];
    let (client, served) = mock_api::start(NS, script);
    let ctx = Arc::new(Context::new(
        client,
        Arc::new(Metrics::default()),
        healthy_prober(),
    ));
    let action = reconcile(Arc::new(guard), ctx.clone()).await;
    drop(ctx);
    let writes = served.writes().await;
    assert!(
        action.is_ok(),
        "a malformed object is not a reconcile error: {action:?}"
    );
    assert_eq!(writes.len(), 1);
    let event = &writes[0].1;
    assert_eq!(event["reason"], "MalformedObject");
    assert_eq!(event["involvedObject"]["name"], "broken");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .contains("Invalid type string \"three\""),
        "{event}"
    );
    // Sortable with `kubectl get events --sort-by=.lastTimestamp`.
    assert!(event["lastTimestamp"].is_string(), "{event}");
    assert_eq!(event["firstTimestamp"], event["lastTimestamp"]);
}

/// A pass over a cluster with `spec.clientAuth`, the operator holding `key`; returns the writes
/// and the pass's result.
async fn run_client_auth(
    script: Vec<Exchange>,
    key: Option<zookeeper_operator::controller::membership::SuperKey>,
) -> (Vec<(String, Value)>, String) {
    let zk = cluster(
        json!({"clientAuth": {"enabled": true, "secretName": "zk-users"}}),
        None,
    );
    let (client, served) = mock_api::start(NS, script);
    let ctx = Arc::new(
        Context::new(client, Arc::new(Metrics::default()), healthy_prober())
            .with_operator_namespace(Some(OPERATOR_NS.to_string()))
            .with_membership(
                Arc::new(zookeeper_operator::controller::membership::NoZookeeper),
                key,
            ),
    );
    let action = reconcile(Arc::new(DeserializeGuard(Ok(zk))), ctx.clone()).await;
    drop(ctx);
    let result = match &action {
        Ok(a) => format!("Ok({a:?})"),
        Err(e) => e.to_string(),
    };
    (served.writes().await, result)
}

fn users_secret(data: Value) -> impl Fn(&Value) -> Reply + Send + 'static {
    move |_| {
        (
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "zk-users", "namespace": NS}, "data": data.clone()}),
        )
    }
}

#[tokio::test]
async fn client_auth_writes_the_operator_user_checks_the_users_and_hashes_them_into_the_pods() {
    let key =
        zookeeper_operator::controller::membership::SuperKey::new(b"0123456789abcdef").unwrap();
    let operator_secret = format!("/api/v1/namespaces/{NS}/secrets/zk-operator-auth");
    let users = format!("/api/v1/namespaces/{NS}/secrets/zk-users");
    let mut script = vec![
        expect(Method::PATCH, &operator_secret, echo(|_| {})),
        // alice=pw
        expect(Method::GET, &users, users_secret(json!({"alice": "cHc="}))),
    ];
    script.extend(first_time_script());
    script.push(status_patch());
    let (writes, result) = run_client_auth(script, Some(key.clone())).await;
    assert!(result.starts_with("Ok"), "{result}");
    let secret = &writes[0].1;
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    let password = key.operator_login("uid-1");
    let stored = secret["data"]["zookeeper-operator"].as_str().unwrap();
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(stored)
            .unwrap(),
        password.password().as_bytes()
    );
    let sts = &writes
        .iter()
        .find(|(_, b)| b["kind"] == "StatefulSet")
        .unwrap()
        .1;
    let template = &sts["spec"]["template"];
    let hash = template["metadata"]["annotations"]["zookeeper.ensemble.dev/client-auth-hash"]
        .as_str()
        .unwrap();
    assert_eq!(hash.len(), 16, "{hash}");
    let volumes: Vec<&str> = template["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["secret"]["secretName"].as_str())
        .collect();
    assert_eq!(volumes, ["zk-users", "zk-operator-auth"]);

    // A missing users' Secret stops the pass before anything but the operator's user is written,
    // with a message that says what to create.
    let script = vec![
        expect(Method::PATCH, &operator_secret, echo(|_| {})),
        expect(Method::GET, &users, |_| {
            status(StatusCode::NOT_FOUND, "NotFound")
        }),
        expect(Method::GET, base("statefulsets", "zk"), |_| {
            status(StatusCode::NOT_FOUND, "NotFound")
        }),
        status_patch(),
    ];
    let (writes, result) = run_client_auth(script, Some(key.clone())).await;
    assert_eq!(writes.len(), 2);
    let conditions = writes[1].1["status"]["conditions"].to_string();
    assert!(
        conditions.contains("spec.clientAuth.secretName zk-users: no such Secret"),
        "the status says it: {conditions}"
    );
    assert!(
        result.contains("spec.clientAuth.secretName zk-users: no such Secret")
            && result.contains("--from-literal=USER=PASSWORD"),
        "{result}"
    );
    // An entry the members would refuse: named, its password not shown.
    let script = vec![
        expect(Method::PATCH, &operator_secret, echo(|_| {})),
        // alice="secret\n"
        expect(
            Method::GET,
            &users,
            users_secret(json!({"alice": "c2VjcmV0Cg=="})),
        ),
        expect(Method::GET, base("statefulsets", "zk"), |_| {
            status(StatusCode::NOT_FOUND, "NotFound")
        }),
        status_patch(),
    ];
    let (_, result) = run_client_auth(script, Some(key)).await;
    assert!(
        result.contains("the password of 'alice' has a line break") && !result.contains("secret\n"),
        "{result}"
    );
    // Without a super-user key the operator could not log in: only the status is written.
    let script = vec![
        expect(Method::GET, base("statefulsets", "zk"), |_| {
            status(StatusCode::NOT_FOUND, "NotFound")
        }),
        status_patch(),
    ];
    let (writes, result) = run_client_auth(script, None).await;
    assert_eq!(writes.len(), 1);
    assert!(result.contains("no super-user key"), "{result}");
}
