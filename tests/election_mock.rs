//! The Lease election against the mocked API server of `support/mock_api.rs`, which fails on
//! any unexpected request and on any request the RBAC table does not allow: creating, taking
//! over and renewing the Lease by compare-and-swap, standing by, releasing on shutdown, and
//! giving the Lease up when it cannot be renewed in time.

#[path = "support/mock_api.rs"]
mod mock_api;

use std::time::{Duration, Instant};

use futures::FutureExt;
use http::{Method, StatusCode};
use mock_api::{Exchange, expect, status};
use serde_json::{Value, json};
use zookeeper_operator::election::{Attempt, ElectionConfig, LeaseElector, LostReason};

const NS: &str = "ops";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/zk-lease";

/// A 1 s lease, so that expiry and the renew deadline fit in a test.
fn fast() -> ElectionConfig {
    ElectionConfig {
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(500),
        retry_period: Duration::from_millis(100),
    }
}

fn elector(client: kube::Client, config: ElectionConfig) -> LeaseElector {
    LeaseElector::new(client, NS, "zk-lease", "pod-a", config).unwrap()
}

/// What the API server stores: the object sent, with a new resourceVersion.
fn stored(version: &'static str) -> impl Fn(&Value) -> (StatusCode, Value) + Send {
    move |sent| {
        let mut obj = sent.clone();
        obj["metadata"]["resourceVersion"] = json!(version);
        (StatusCode::OK, obj)
    }
}

fn lease(holder: Option<&str>, version: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "zk-lease", "namespace": NS, "resourceVersion": version},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 3,
                 "renewTime": "2026-01-01T00:00:00.000000Z"}
    })
}

fn get(answer: Value) -> Exchange {
    expect(Method::GET, LEASE, move |_| {
        (StatusCode::OK, answer.clone())
    })
}

fn missing() -> Exchange {
    expect(Method::GET, LEASE, |_| {
        status(StatusCode::NOT_FOUND, "NotFound")
    })
}

#[tokio::test]
async fn acquires_a_missing_lease_by_creating_it() {
    let (client, served) = mock_api::start(
        NS,
        vec![missing(), expect(Method::POST, LEASES, stored("1"))],
    );
    let mut elector = elector(client, ElectionConfig::default());
    assert_eq!(
        elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Holding
    );
    drop(elector);
    let writes = served.writes().await;
    let created = &writes[0].1;
    assert_eq!(created["metadata"]["name"], "zk-lease");
    assert_eq!(created["spec"]["holderIdentity"], "pod-a");
    assert_eq!(created["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(created["spec"]["leaseTransitions"], 0);
}

#[tokio::test]
async fn acquires_an_empty_lease_with_compare_and_swap() {
    let (client, served) = mock_api::start(
        NS,
        vec![
            get(lease(None, "7")),
            expect(Method::PUT, LEASE, stored("8")),
        ],
    );
    let mut elector = elector(client, ElectionConfig::default());
    assert_eq!(
        elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Holding
    );
    drop(elector);
    let writes = served.writes().await;
    let written = &writes[0].1;
    assert_eq!(
        written["metadata"]["resourceVersion"], "7",
        "the update must carry the version it read"
    );
    assert_eq!(written["spec"]["holderIdentity"], "pod-a");
    // Taking a released Lease is a transition too (as in client-go).
    assert_eq!(written["spec"]["leaseTransitions"], 4);
}

#[tokio::test]
async fn stands_by_while_another_live_candidate_holds_the_lease() {
    // No write may follow the read.
    let (client, served) = mock_api::start(NS, vec![get(lease(Some("pod-b"), "7"))]);
    let mut elector = elector(client, ElectionConfig::default());
    let outcome = elector.try_acquire_or_renew().await.unwrap();
    let Attempt::Standby { holder, expires_in } = outcome else {
        panic!("expected to stand by, got {outcome:?}");
    };
    assert_eq!(holder, "pod-b");
    assert!(expires_in > Duration::from_secs(14), "{expires_in:?}");
    drop(elector);
    assert!(served.writes().await.is_empty());
}

#[tokio::test]
async fn a_lost_race_is_a_conflict_not_an_error() {
    let (client, served) = mock_api::start(
        NS,
        vec![
            get(lease(None, "7")),
            expect(Method::PUT, LEASE, |_| {
                status(StatusCode::CONFLICT, "Conflict")
            }),
        ],
    );
    let mut elector = elector(client, ElectionConfig::default());
    assert_eq!(
        elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Conflict
    );
    drop(elector);
    served.writes().await;
}

#[tokio::test]
async fn takes_over_an_expired_lease_and_counts_the_transition() {
    let mut expiring = lease(Some("pod-b"), "7");
    expiring["spec"]["leaseDurationSeconds"] = json!(1);
    let (client, served) = mock_api::start(
        NS,
        vec![
            get(expiring.clone()),
            // The same record again after the lease duration: pod-b stopped renewing.
            get(expiring),
            expect(Method::PUT, LEASE, stored("8")),
        ],
    );
    let mut elector = elector(client, fast());
    assert!(matches!(
        elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Standby { .. }
    ));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Holding
    );
    drop(elector);
    let writes = served.writes().await;
    let written = &writes[0].1;
    assert_eq!(written["spec"]["holderIdentity"], "pod-a");
    assert_eq!(written["spec"]["leaseTransitions"], 4);
}

#[tokio::test]
async fn holds_renews_and_releases_on_shutdown() {
    let (client, mut server) = mock_api::pair(NS);
    // A long retry period, so that no second renewal can start before the release.
    let config = ElectionConfig {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_secs(1),
    };
    let (renewed_tx, renewed) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let mut writes = server
            .serve(vec![
                missing(),
                expect(Method::POST, LEASES, stored("1")),
                // One renewal.
                get(lease(Some("pod-a"), "1")),
                expect(Method::PUT, LEASE, stored("2")),
            ])
            .await;
        renewed_tx.send(()).unwrap();
        // The release.
        writes.extend(
            server
                .serve(vec![
                    get(lease(Some("pod-a"), "2")),
                    expect(Method::PUT, LEASE, stored("3")),
                ])
                .await,
        );
        server.finish().await;
        writes
    });
    let hold = elector(client, config).acquire().await.unwrap();
    assert!(hold.lost().now_or_never().is_none(), "holds the Lease");
    renewed.await.unwrap();
    assert!(
        hold.lost().now_or_never().is_none(),
        "still holds the Lease after renewing"
    );
    hold.release().await.unwrap();
    let writes = server.await.unwrap();
    let bodies: Vec<&Value> = writes.iter().map(|(_, body)| body).collect();
    let [created, renewed, released] = bodies[..] else {
        panic!("expected create, renew and release, got {writes:?}");
    };
    assert_eq!(created["spec"]["holderIdentity"], "pod-a");
    assert_eq!(renewed["metadata"]["resourceVersion"], "1");
    assert_eq!(renewed["spec"]["holderIdentity"], "pod-a");
    assert_eq!(released["metadata"]["resourceVersion"], "2");
    assert!(released["spec"]["holderIdentity"].is_null());
    assert_eq!(released["spec"]["leaseDurationSeconds"], 1);
}

#[tokio::test]
async fn loses_the_lease_when_another_replica_holds_it() {
    let (client, served) = mock_api::start(
        NS,
        vec![
            get(lease(None, "7")),
            expect(Method::PUT, LEASE, stored("8")),
            get(lease(Some("pod-b"), "9")),
        ],
    );
    let hold = elector(client, fast()).acquire().await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), hold.lost())
        .await
        .unwrap();
    assert_eq!(
        reason,
        LostReason::TakenOver {
            holder: "pod-b".into()
        }
    );
    assert_eq!(hold.lost().now_or_never(), Some(reason));
    drop(hold);
    served.writes().await;
}

#[tokio::test]
async fn gives_up_when_it_cannot_renew_within_the_deadline() {
    let (client, mut server) = mock_api::pair(NS);
    let server = tokio::spawn(async move {
        server
            .serve(vec![
                missing(),
                expect(Method::POST, LEASES, stored("1")),
                // The API server fails, then stops answering.
                expect(Method::GET, LEASE, |_| {
                    status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
                }),
            ])
            .await;
        let unanswered = server.next(&Method::GET, LEASE).await;
        server.finish().await;
        drop(unanswered);
    });
    let started = Instant::now();
    let hold = elector(client, fast()).acquire().await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), hold.lost())
        .await
        .unwrap();
    assert!(
        matches!(reason, LostReason::RenewDeadlineExceeded { .. }),
        "{reason:?}"
    );
    // Given up after the 500 ms deadline, well before the 1 s lease expires for the others.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    drop(hold);
    server.await.unwrap();
}
