//! Reconcile against a mocked API server that fails on any unexpected request: the first
//! reconcile applies the four objects in order and writes status; a second reconcile of the
//! unchanged cluster writes nothing; an invalid spec writes only the status.

use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::{Client, Resource};
use serde_json::{Value, json};
use zookeeper_operator::controller::observe::Prober;
use zookeeper_operator::controller::{Context, reconcile::reconcile};
use zookeeper_operator::crd::ZookeeperCluster;
use zookeeper_operator::health::fourlw::MemberProbe;
use zookeeper_operator::health::{Ordinal, Outcome, parse};
use zookeeper_operator::metrics::Metrics;

const NS: &str = "team";

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

/// Answers one request given its JSON body.
type Responder = Box<dyn Fn(&Value) -> (StatusCode, Value) + Send>;

/// One expected request and the answer to it.
struct Exchange {
    method: Method,
    path: String,
    respond: Responder,
}

fn expect(
    method: Method,
    path: &str,
    respond: impl Fn(&Value) -> (StatusCode, Value) + Send + 'static,
) -> Exchange {
    Exchange {
        method,
        path: path.to_string(),
        respond: Box::new(respond),
    }
}

fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    )
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
                "metadata": {"name": format!("zk-{i}"), "namespace": NS,
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                    "labels": {"controller-revision-hash": "zk-rev1",
                               "app.kubernetes.io/name": "zookeeper", "app.kubernetes.io/instance": "zk"}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}
            })
        })
        .collect();
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
}

/// Serves `script` in order; panics on any request that is not the next expected one, and
/// records what was written.
async fn serve(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    script: Vec<Exchange>,
    writes: Arc<Mutex<Vec<(String, Value)>>>,
) {
    for exchange in script {
        let (request, send) = handle
            .next_request()
            .await
            .expect("the reconcile stopped early");
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        assert_eq!(
            (&method, path.as_str()),
            (&exchange.method, exchange.path.as_str()),
            "unexpected request"
        );
        zookeeper_operator::rbac::check_request(method.as_str(), &request.uri().to_string())
            .unwrap();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        if method != Method::GET {
            writes.lock().unwrap().push((path.clone(), body.clone()));
        }
        let (status, answer) = (exchange.respond)(&body);
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
    }
    if let Some((request, _)) = handle.next_request().await {
        panic!(
            "unexpected extra request {} {}",
            request.method(),
            request.uri()
        );
    }
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
        &format!(
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
        _ => unreachable!(),
    }
}

fn first_time_script() -> Vec<Exchange> {
    let mut script = Vec::new();
    for (kind, name) in [
        ("services", "zk-hs"),
        ("services", "zk-cs"),
        ("poddisruptionbudgets", "zk-pdb"),
    ] {
        script.push(expect(Method::GET, &base(kind, name), |_| not_found()));
        script.push(expect(Method::PATCH, &base(kind, name), echo(|_| {})));
    }
    script.push(expect(Method::GET, &base("statefulsets", "zk"), |_| {
        not_found()
    }));
    script.push(expect(
        Method::PATCH,
        &base("statefulsets", "zk"),
        echo(sts_status),
    ));
    script.push(expect(
        Method::GET,
        &format!("/api/v1/namespaces/{NS}/pods"),
        |_| (StatusCode::OK, pods()),
    ));
    script
}

async fn run(zk: ZookeeperCluster, script: Vec<Exchange>, prober: Prober) -> Vec<(String, Value)> {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let writes = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(serve(handle, script, writes.clone()));
    let ctx = Arc::new(Context::new(client, Arc::new(Metrics::default()), prober));
    let action = reconcile(Arc::new(DeserializeGuard(Ok(zk))), ctx.clone()).await;
    assert!(action.is_ok(), "{action:?}");
    drop(ctx);
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("mock server finished")
        .expect("mock server saw only expected requests");
    Arc::try_unwrap(writes).unwrap().into_inner().unwrap()
}

#[tokio::test]
async fn first_reconcile_applies_four_objects_in_order_then_writes_status() {
    let mut script = first_time_script();
    script.push(status_patch());
    let writes = run(cluster(json!({}), None), script, healthy_prober()).await;
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
            "StatefulSet",
            "ZookeeperCluster"
        ]
    );

    // Children are owned by the cluster and carry the applied hash.
    let sts = &writes[3].1;
    assert_eq!(sts["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(sts["metadata"]["ownerReferences"][0]["controller"], true);
    assert!(sts["metadata"]["annotations"]["zookeeper.ensemble.dev/applied-hash"].is_string());

    let status = &writes[4].1["status"];
    assert_eq!(status["leader"], "zk-1");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["readyReplicas"], 3);
    assert_eq!(
        status["connectionString"],
        format!("zk-cs.{NS}.svc.cluster.local:2181")
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
    let applied: Vec<Value> = writes[..4].iter().map(|(_, b)| b.clone()).collect();
    let status = writes[4].1["status"].clone();

    // Second pass: the server holds exactly that; only reads may happen.
    let mut script = Vec::new();
    for (i, (kind, name)) in [
        ("services", "zk-hs"),
        ("services", "zk-cs"),
        ("poddisruptionbudgets", "zk-pdb"),
        ("statefulsets", "zk"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut live = applied[i].clone();
        live["metadata"]["managedFields"] = json!([
            {"manager": "zookeeper-operator", "operation": "Apply"},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status"}
        ]);
        if kind == "statefulsets" {
            sts_status(&mut live);
        }
        script.push(expect(Method::GET, &base(kind, name), move |_| {
            (StatusCode::OK, live.clone())
        }));
    }
    script.push(expect(
        Method::GET,
        &format!("/api/v1/namespaces/{NS}/pods"),
        |_| (StatusCode::OK, pods()),
    ));
    let writes = run(cluster(json!({}), Some(status)), script, healthy_prober()).await;
    assert!(
        writes.is_empty(),
        "a steady cluster must cause no write, saw {writes:?}"
    );
}

#[tokio::test]
async fn invalid_spec_writes_only_status_and_an_event() {
    let script = vec![
        status_patch(),
        expect(
            Method::POST,
            &format!("/apis/events.k8s.io/v1/namespaces/{NS}/events"),
            |body| (StatusCode::OK, body.clone()),
        ),
    ];
    let zk = cluster(
        json!({"config": {"heap": "4G"}, "resources": {"limits": {"memory": "2Gi"}}}),
        None,
    );
    let writes = run(zk, script, healthy_prober()).await;
    let status = &writes[0].1["status"];
    let degraded = &status["conditions"].as_array().unwrap()[0];
    assert_eq!(degraded["type"], "Degraded");
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("spec.config.heap 4G"),
        "{degraded}"
    );
    let event = &writes[1].1;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "InvalidSpec");
    assert_eq!(event["regarding"]["name"], "zk");
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
        &format!("/apis/events.k8s.io/v1/namespaces/{NS}/events"),
        |body| (StatusCode::OK, body.clone()),
    )];
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let writes = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(serve(handle, script, writes.clone()));
    let ctx = Arc::new(Context::new(
        Client::new(service, NS),
        Arc::new(Metrics::default()),
        healthy_prober(),
    ));
    let action = reconcile(Arc::new(guard), ctx.clone()).await;
    assert!(
        action.is_ok(),
        "a malformed object is not a reconcile error: {action:?}"
    );
    drop(ctx);
    server.await.unwrap();
    let writes = writes.lock().unwrap();
    assert_eq!(writes.len(), 1);
    let event = &writes[0].1;
    assert_eq!(event["reason"], "MalformedObject");
    assert_eq!(event["regarding"]["name"], "broken");
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("Invalid type string \"three\""),
        "{event}"
    );
}
