//! TLS on the local cluster: a `spec.tls` cluster (mutual TLS) gets its Secret from the operator (a CA of its
//! own, the members' certificate, owned by the cluster), becomes Available (the operator's
//! four-letter words reach every member over TLS, with its client certificate), ZooKeeper's own
//! Java client with the CA from the Secret and a certificate writes and reads through the
//! client Service over TLS while one without a certificate is refused, a plaintext client gets no
//! answer on the client port and the plaintext port is closed to anyone outside the pod, and
//! every member logs that its quorum runs over TLS. Then `spec.tls.clientCertificates`: an
//! application pod mounting the Secrets the operator issued connects as `x509:CN=alice` and
//! `x509:CN=bob`; an ACL for alice admits her and refuses him; a name removed from the list
//! loses its Secret and the members do not roll. The same cluster runs `spec.quorumAuth` (every
//! member logs its DIGEST-MD5 login to its peers; a deleted member logs in again and rejoins)
//! and finally goes through a CA rotation asked for with its annotation: both intermediate
//! steps seen on `zk-tls`, the new CA alone at the end, every member on it, the cluster whole
//! and the znode written before still readable with the new CA.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, LogParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use zookeeper_operator::crd::ZookeeperCluster;

use super::{TestNamespace, apply_cluster, client, log, member_pods, spec, wait_settled};

/// Runs `kubectl exec` in a member; its output, or the failure.
fn exec(ns: &str, pod: &str, command: &str) -> Result<String, String> {
    exec_in(ns, pod, "zookeeper", command)
}

/// Runs `kubectl exec` in `container` of `pod`; its output, or the failure.
pub(super) fn exec_in(
    ns: &str,
    pod: &str,
    container: &str,
    command: &str,
) -> Result<String, String> {
    let script = format!(
        "set -euo pipefail\neval \"$(e2e/cluster env)\"\nkubectl -n {ns} exec {pod} -c {container} -- bash -c {}",
        shell_quote(command)
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

pub(super) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// ZooKeeper's Java client in member `pod`, over TLS with the mounted CA, through the client
/// Service; with `certificate`, it presents the members' certificate (the key store
/// start-zookeeper put together), as a client of mutual TLS does.
fn zk_cli(ns: &str, pod: &str, certificate: bool, args: &str) -> Result<String, String> {
    let identity = if certificate {
        "-Dzookeeper.ssl.keyStore.location=/tmp/zookeeper-tls/keystore.pem -Dzookeeper.ssl.keyStore.type=PEM"
    } else {
        ""
    };
    exec(
        ns,
        pod,
        &format!(
            "timeout 30 java -Xmx48m -Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty \
             -Dzookeeper.client.secure=true -Dzookeeper.ssl.trustStore.location=/etc/zookeeper/tls/ca.crt \
             -Dzookeeper.ssl.trustStore.type=PEM {identity} -cp '/opt/zookeeper/lib/*' \
             org.apache.zookeeper.ZooKeeperMain -server zk-cs.{ns}.svc.cluster.local:2181 {args}"
        ),
    )
}

/// `srvr` in plaintext to `ip:port` from outside the pod: the answer, or what went wrong.
async fn plain_srvr(ip: &str, port: u16) -> Result<String, String> {
    let connect = tokio::net::TcpStream::connect((ip, port));
    let mut s = tokio::time::timeout(Duration::from_secs(3), connect)
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    s.write_all(b"srvr").await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut answer)).await;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

async fn pod_logs(client: &Client, ns: &str, pod: &str) -> String {
    Api::<Pod>::namespaced(client.clone(), ns)
        .logs(pod, &LogParams::default())
        .await
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed: run e2e/operator-test"]
async fn tls_cluster_serves_tls_clients_only() {
    let client = client().await;
    let guard = TestNamespace::create(&client, "tls-e2e").await;
    let (ns, name) = (guard.name.clone(), "zk");
    // The same cluster without TLS first, for the figure beside it.
    let started = Instant::now();
    apply_cluster(&client, &ns, "plain", spec(json!({})))
        .await
        .expect("apply a plaintext cluster");
    wait_settled(&client, &ns, "plain", Duration::from_secs(300)).await;
    log(format!(
        "FIGURE plaintext cluster Available {:.1} s after it was applied",
        started.elapsed().as_secs_f64()
    ));
    Api::<ZookeeperCluster>::namespaced(client.clone(), &ns)
        .delete("plain", &Default::default())
        .await
        .expect("delete the plaintext cluster");
    let started = Instant::now();
    apply_cluster(
        &client,
        &ns,
        name,
        spec(json!({"tls": {"enabled": true, "mutual": true,
            "clientCertificates": ["alice", "bob"]}, "quorumAuth": {"enabled": true},
            // No client of this test caches addresses across the rotation's rolls.
            "updateStrategy": {"clientAddressCacheSeconds": 0}})),
    )
    .await
    .expect("apply a spec.tls cluster");
    let zk = wait_settled(&client, &ns, name, Duration::from_secs(300)).await;
    log(format!(
        "FIGURE tls cluster Available {:.1} s after it was applied",
        started.elapsed().as_secs_f64()
    ));
    let members = &zk.status.as_ref().unwrap().members;
    assert!(
        members
            .iter()
            .all(|m| m.mode == "leader" || m.mode == "follower"),
        "the operator's probes over TLS: {members:?}"
    );

    // The operator's Secret: owned by the cluster, with the expiry.
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("zk-tls")
        .await
        .expect("the operator created zk-tls");
    let owners = secret.metadata.owner_references.clone().unwrap_or_default();
    assert!(
        owners
            .iter()
            .any(|o| o.kind == "ZookeeperCluster" && o.name == name && o.controller == Some(true)),
        "{owners:?}"
    );
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    assert!(
        annotations.contains_key("zookeeper.ensemble.dev/tls-not-after"),
        "{annotations:?}"
    );
    let data = secret.data.clone().unwrap_or_default();
    for key in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
        assert!(data.contains_key(key), "zk-tls lacks {key}");
    }

    // A mutual-TLS client (ZooKeeper's Java client, the CA from the Secret, a certificate of
    // the CA) writes and reads through the client Service.
    let t = Instant::now();
    let created =
        zk_cli(&ns, "zk-0", true, "create /tls-e2e written-over-tls").expect("create over TLS");
    assert!(created.contains("Created /tls-e2e"), "{created}");
    let read = zk_cli(&ns, "zk-1", true, "get /tls-e2e").expect("get over TLS");
    assert!(read.contains("written-over-tls"), "{read}");
    log(format!(
        "TLS client wrote and read in {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    // Plaintext from outside the pod: the client port answers no plaintext; the plaintext port
    // is bound to the pod's loopback only.
    for pod in member_pods(&client, &ns, name).await {
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("pod IP");
        let tls_port = plain_srvr(&ip, 2181).await;
        assert!(
            !tls_port.as_deref().unwrap_or_default().contains("Mode:"),
            "plaintext srvr answered on {ip}:2181: {tls_port:?}"
        );
        let loopback_port = plain_srvr(&ip, 2182).await;
        assert!(
            loopback_port.is_err(),
            "the plaintext port is reachable from outside the pod at {ip}:2182: {loopback_port:?}"
        );
        // Inside the pod the probes still get their answer on the loopback port.
        let inside = exec(
            &ns,
            &pod.metadata.name.clone().unwrap(),
            "zookeeper-ready --quorum 2182 && echo ready",
        )
        .expect("zookeeper-ready inside the pod");
        assert!(inside.contains("ready"), "{inside}");
        let name = pod.metadata.name.clone().unwrap();
        let logs = pod_logs(&client, &ns, &name).await;
        assert!(
            logs.contains("Using TLS encrypted quorum communication"),
            "{name} does not log a TLS quorum"
        );
    }
    // A TLS client without a certificate is refused (mutual TLS).
    let anonymous = zk_cli(&ns, "zk-0", false, "get /tls-e2e");
    let anonymous = match &anonymous {
        Ok(t) | Err(t) => t.clone(),
    };
    assert!(
        !anonymous.contains("written-over-tls"),
        "a TLS client without a certificate read the znode: {anonymous}"
    );
    // ZooKeeper's Java client without TLS is refused on the client port.
    let plain = exec(
        &ns,
        "zk-0",
        &format!(
            "timeout 20 java -Xmx48m -Dzookeeper.request.timeout=5000 -cp '/opt/zookeeper/lib/*' \
             org.apache.zookeeper.ZooKeeperMain -server zk-cs.{ns}.svc.cluster.local:2181 get /tls-e2e"
        ),
    );
    let plain_text = match &plain {
        Ok(t) | Err(t) => t.clone(),
    };
    assert!(
        !plain_text.contains("written-over-tls"),
        "a plaintext client read the znode: {plain_text}"
    );
    client_certificates(&client, &ns, name).await;
    quorum_auth(&client, &ns, name).await;
    ca_rotation(&client, &ns, name).await;
    drop(guard);
}

/// ZooKeeper's Java client in the application pod, as identity `id`: the CA and the key store
/// from the Secret `zk-client-<id>` mounted at `/etc/zk-<id>`, through the client Service.
fn app_cli(ns: &str, id: &str, args: &str) -> String {
    let out = exec_in(
        ns,
        "app",
        "app",
        &format!(
            "timeout 40 java -Xmx48m -Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty \
             -Dzookeeper.client.secure=true -Dzookeeper.ssl.trustStore.location=/etc/zk-{id}/ca.crt \
             -Dzookeeper.ssl.trustStore.type=PEM -Dzookeeper.ssl.keyStore.location=/etc/zk-{id}/keystore.pem \
             -Dzookeeper.ssl.keyStore.type=PEM -cp '/opt/zookeeper/lib/*' \
             org.apache.zookeeper.ZooKeeperMain -server zk-cs.{ns}.svc.cluster.local:2181 {args}"
        ),
    );
    match out {
        Ok(t) | Err(t) => t,
    }
}

/// `spec.tls.clientCertificates` end to end: the operator issues `zk-client-alice` and
/// `zk-client-bob` (owned by the cluster, recorded on `zk-tls`); an application pod that mounts
/// them connects as `x509:CN=alice` and `x509:CN=bob` through the client Service; an ACL naming
/// alice admits alice and refuses bob; bob removed from the list loses his Secret, without a
/// roll of the members.
async fn client_certificates(client: &Client, ns: &str, name: &str) {
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    for id in ["alice", "bob"] {
        let s = secrets
            .get(&format!("{name}-client-{id}"))
            .await
            .unwrap_or_else(|e| panic!("the operator issues {name}-client-{id}: {e}"));
        let owners = s.metadata.owner_references.clone().unwrap_or_default();
        assert!(
            owners
                .iter()
                .any(|o| o.kind == "ZookeeperCluster" && o.name == name),
            "{owners:?}"
        );
        let data = s.data.clone().unwrap_or_default();
        for key in ["ca.crt", "tls.crt", "tls.key", "keystore.pem"] {
            assert!(data.contains_key(key), "{name}-client-{id} lacks {key}");
        }
    }
    let sts = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("the StatefulSet");
    let generation = sts.metadata.generation;
    let image = sts
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .expect("the members' image");
    // An application pod with the two identities' Secrets mounted, as users mount them.
    let app: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app"},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "securityContext": {"allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}},
                "name": "app",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
                "volumeMounts": [
                    {"name": "alice", "mountPath": "/etc/zk-alice", "readOnly": true},
                    {"name": "bob", "mountPath": "/etc/zk-bob", "readOnly": true}
                ]
            }],
            "volumes": [
                {"name": "alice", "secret": {"secretName": format!("{name}-client-alice")}},
                {"name": "bob", "secret": {"secretName": format!("{name}-client-bob")}}
            ]
        }
    }))
    .unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    pods.create(&Default::default(), &app)
        .await
        .expect("create the application pod");
    super::wait_until("the application pod runs", Duration::from_secs(120), || {
        let pods = pods.clone();
        async move {
            let p = pods.get("app").await.ok()?;
            (p.status?.phase.as_deref() == Some("Running")).then_some(())
        }
    })
    .await;
    let t = Instant::now();
    let created = app_cli(
        ns,
        "alice",
        "create /alice-only alices-data x509:CN=alice:cdrwa",
    );
    assert!(created.contains("Created /alice-only"), "{created}");
    let acl = app_cli(ns, "alice", "getAcl /alice-only");
    assert!(acl.contains("'x509,'CN=alice"), "{acl}");
    let read = app_cli(ns, "alice", "get /alice-only");
    assert!(read.contains("alices-data"), "{read}");
    let denied = app_cli(ns, "bob", "get /alice-only");
    assert!(
        !denied.contains("alices-data") && denied.contains("Insufficient permission"),
        "bob read alice's znode: {denied}"
    );
    log(format!(
        "FIGURE x509 identities: alice created, read and bob was refused in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    // Bob leaves the list: his Secret goes, alice's stays, the members do not roll.
    let certs = spec(json!({"tls": {"enabled": true, "mutual": true,
        "clientCertificates": ["alice"]}, "quorumAuth": {"enabled": true},
        "updateStrategy": {"clientAddressCacheSeconds": 0}}));
    super::apply_cluster(client, ns, name, certs)
        .await
        .expect("remove bob from spec.tls.clientCertificates");
    let t = Instant::now();
    super::wait_until("bob's Secret is deleted", Duration::from_secs(60), || {
        let secrets = secrets.clone();
        let bob = format!("{name}-client-bob");
        async move { secrets.get_opt(&bob).await.ok()?.is_none().then_some(()) }
    })
    .await;
    log(format!(
        "FIGURE a client certificate's Secret deleted {:.1} s after its name left the spec",
        t.elapsed().as_secs_f64()
    ));
    assert!(
        secrets
            .get_opt(&format!("{name}-client-alice"))
            .await
            .unwrap()
            .is_some()
    );
    let recorded = secrets.get(&format!("{name}-tls")).await.unwrap();
    assert_eq!(
        recorded
            .metadata
            .annotations
            .unwrap_or_default()
            .get("zookeeper.ensemble.dev/client-certificates")
            .map(String::as_str),
        Some("alice")
    );
    let after = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap();
    assert_eq!(
        after.metadata.generation, generation,
        "client certificates must not roll the members"
    );
}

/// `spec.quorumAuth` on the same cluster: the operator created `zk-quorum-auth` (owned by the
/// cluster), every member logs in to its peers with DIGEST-MD5 (the quorum formed, so they
/// were admitted), and a member deleted and started again authenticates anew and rejoins.
async fn quorum_auth(client: &Client, ns: &str, name: &str) {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get(&format!("{name}-quorum-auth"))
        .await
        .expect("the operator creates the quorum Secret");
    let owners = secret.metadata.owner_references.clone().unwrap_or_default();
    assert!(
        owners
            .iter()
            .any(|o| o.kind == "ZookeeperCluster" && o.name == name),
        "{owners:?}"
    );
    let password = secret.data.unwrap_or_default()["password"].0.clone();
    assert_eq!(password.len(), 64, "a random hex password");
    for pod in member_pods(client, ns, name).await {
        let pod_name = pod.metadata.name.clone().unwrap();
        let logs = pod_logs(client, ns, &pod_name).await;
        assert!(
            logs.contains("quorum.auth.enableSasl=true"),
            "{pod_name} was not configured for quorum SASL"
        );
        assert!(
            logs.contains("will use DIGEST-MD5 as SASL mechanism"),
            "{pod_name} logs no quorum SASL login"
        );
    }
    // A member restarted: it authenticates again and the ensemble is whole again.
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let old = pods.get(&format!("{name}-0")).await.unwrap();
    let old_uid = old.metadata.uid.clone();
    pods.delete(&format!("{name}-0"), &Default::default())
        .await
        .expect("delete member 0");
    let t = Instant::now();
    // Back means: a new pod, Ready (its readiness probe asks ZooKeeper whether it serves in the
    // quorum), logged in to its peers, and every member serving in the cluster's status.
    super::wait_until(
        "member 0 is back, logged in and the ensemble whole",
        Duration::from_secs(180),
        || async {
            let p = pods.get(&format!("{name}-0")).await.ok()?;
            if p.metadata.uid == old_uid || !super::pod_ready(&p) {
                return None;
            }
            let logs = pod_logs(client, ns, &format!("{name}-0")).await;
            if !logs.contains("will use DIGEST-MD5 as SASL mechanism") {
                return None;
            }
            let zk = super::cluster(client, ns, name).await;
            let members = &zk.status.as_ref()?.members;
            (members.len() == 3
                && members
                    .iter()
                    .all(|m| m.mode == "leader" || m.mode == "follower"))
            .then_some(())
        },
    )
    .await;
    log(format!(
        "FIGURE quorum SASL: a deleted member rejoined {:.1} s after its deletion",
        t.elapsed().as_secs_f64()
    ));
}

/// A CA rotation asked for with the cluster's annotation: the operator goes through its three
/// steps (seen on `zk-tls`), each a roll of the members, and ends with the new CA alone; the
/// cluster is whole and ZooKeeper's Java client, with the new CA and certificate the restarted
/// members mounted, reads the znode written before the rotation.
async fn ca_rotation(client: &Client, ns: &str, name: &str) {
    use zookeeper_operator::tls;
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let tls_secret = format!("{name}-tls");
    let before = secrets.get(&tls_secret).await.unwrap();
    let old_ca = before.data.clone().unwrap_or_default()["ca.crt"].0.clone();
    Api::<ZookeeperCluster>::namespaced(client.clone(), ns)
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {
                tls::ROTATE_CA_ANNOTATION: "e2e-1"}}})),
        )
        .await
        .expect("annotate the cluster for a CA rotation");
    let t = Instant::now();
    let phase_of = |s: &Secret| {
        s.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(tls::CA_ROTATION_ANNOTATION).cloned())
    };
    // Step 1 (both CAs trusted): a writer starts, as an application that took the new ca.crt
    // and its reissued client certificate from the mounted Secret; it writes through the
    // rolls in which the signing CA changes.
    let bundle = super::wait_until(
        "the rotation's first step",
        Duration::from_secs(120),
        || {
            let (secrets, tls_secret) = (secrets.clone(), tls_secret.clone());
            async move {
                let s = secrets.get(&tls_secret).await.ok()?;
                (phase_of(&s).as_deref() == Some("trust-both"))
                    .then(|| s.data.unwrap_or_default()["ca.crt"].0.clone())
            }
        },
    )
    .await;
    log("CA rotation step trust-both");
    let identity = alice_trusting(
        &secrets,
        name,
        &bundle,
        "alice's certificate comes with both CAs",
    )
    .await;
    let cs = super::cluster(client, ns, name)
        .await
        .status
        .and_then(|s| s.connection_string)
        .expect("status.connectionString");
    let writer = super::support::Writer::start_with(&cs, Some(identity)).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(vec!["trust-both".to_string()]));
    // Step 3 begins when the Secret trusts the new CA alone: the writer's certificate, of the
    // old CA, would not be accepted by members restarted from then on; it stops there.
    super::wait_until(
        "the new CA signs and every member runs it",
        Duration::from_secs(600),
        || {
            let (secrets, tls_secret, seen) = (secrets.clone(), tls_secret.clone(), seen.clone());
            async move {
                let s = secrets.get(&tls_secret).await.ok()?;
                match phase_of(&s) {
                    Some(p) => {
                        let mut seen = seen.lock().unwrap();
                        if seen.last() != Some(&p) {
                            log(format!("CA rotation step {p}"));
                            seen.push(p);
                        }
                        None
                    }
                    None => Some(()),
                }
            }
        },
    )
    .await;
    // The writer's client is not used again: from here on the members restarted by the third
    // roll refuse its old-CA certificate, so its reads could fail (or its session expire) for
    // that reason alone. Its writes are read back once the rotation is done, below, by a client
    // of alice's certificate from the new CA.
    let (_, attempts) = writer.stop().await;
    let (gap, _) = super::support::longest_unavailability(&attempts);
    if gap >= Duration::from_secs(5) {
        panic!(
            "writes stalled {gap:?} during the rotation: {}\nthe members and the operator:\n{}",
            super::support::longest_gap_history(&attempts),
            super::member_evidence(client, ns, name, super::support::longest_gap(&attempts)).await
        );
    }
    let sts_api = Api::<StatefulSet>::namespaced(client.clone(), ns);
    super::wait_until(
        "the CA rotation is done and every member runs the new CA",
        Duration::from_secs(600),
        || {
            let (secrets, sts_api, tls_secret) =
                (secrets.clone(), sts_api.clone(), tls_secret.clone());
            async move {
                let s = secrets.get(&tls_secret).await.ok()?;
                let annotations = s.metadata.annotations.clone().unwrap_or_default();
                if annotations.contains_key(tls::CA_ROTATION_ANNOTATION)
                    || annotations
                        .get(tls::CA_ROTATED_FOR_ANNOTATION)
                        .map(String::as_str)
                        != Some("e2e-1")
                {
                    return None;
                }
                let material = tls::read(s.data.as_ref()?).ok()?;
                let sts = sts_api.get(name).await.ok()?;
                (tls::apply::material_all_members_run(&sts) == Some(tls::material_hash(&material)))
                    .then_some(())
            }
        },
    )
    .await;
    log(format!(
        "FIGURE CA rotation: three rolls of 3 members done {:.1} s after the annotation",
        t.elapsed().as_secs_f64()
    ));
    assert_eq!(
        *seen.lock().unwrap(),
        ["trust-both", "signed-by-new"],
        "the rotation's steps, in order"
    );
    let after = secrets.get(&tls_secret).await.unwrap();
    let new_ca = after.data.unwrap_or_default()["ca.crt"].0.clone();
    assert_ne!(new_ca, old_ca);
    assert_eq!(
        String::from_utf8_lossy(&new_ca)
            .matches("BEGIN CERTIFICATE")
            .count(),
        1,
        "the old CA is no longer trusted"
    );
    let zk = wait_settled(client, ns, name, Duration::from_secs(120)).await;
    let members = &zk.status.as_ref().unwrap().members;
    assert!(
        members
            .iter()
            .all(|m| m.mode == "leader" || m.mode == "follower"),
        "{members:?}"
    );
    // Every write acknowledged during the two rolls is there, read by an application that took
    // alice's certificate as the operator reissued it from the new CA.
    let identity = alice_trusting(
        &secrets,
        name,
        &new_ca,
        "alice's certificate is of the new CA alone",
    )
    .await;
    let reader = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(20))
        .with_tls(identity)
        .secure_connect(&cs)
        .await
        .expect("a client of the new CA connects");
    reader.sync("/writes").await.expect("sync /writes");
    let checked = super::support::verify_acknowledged(&reader, &attempts).await;
    log(format!(
        "FIGURE CA rotation under load (two rolls, the signing CA changing): {checked} acknowledged writes all present, longest write gap {:.2} s",
        gap.as_secs_f64()
    ));
    assert!(checked > 0, "the writer wrote nothing");
    let read = zk_cli(ns, "zk-2", true, "get /tls-e2e").expect("get over TLS with the new CA");
    assert!(read.contains("written-over-tls"), "{read}");
}

/// Alice's client TLS options (her certificate and the CAs she trusts), once her Secret
/// `<name>-client-alice` trusts exactly `ca` (PEM bytes); `what` names the wait.
async fn alice_trusting(
    secrets: &Api<Secret>,
    name: &str,
    ca: &[u8],
    what: &str,
) -> zookeeper_client::TlsOptions {
    let alice = super::wait_until(what, Duration::from_secs(60), || async {
        let s = secrets.get(&format!("{name}-client-alice")).await.ok()?;
        let data = s.data?;
        (data["ca.crt"].0 == ca).then_some(data)
    })
    .await;
    let text = |k: &str| String::from_utf8(alice[k].0.clone()).unwrap();
    zookeeper_operator::tls::ClientTls::new(
        &text("ca.crt"),
        Some((&text("tls.crt"), &text("tls.key"))),
    )
    .unwrap()
    .zookeeper_options()
    .unwrap()
}

/// TLS turned on for a running plaintext ensemble, under load: the operator takes it through
/// ZooKeeper's three rolls (every port takes both; members connect over TLS; plaintext off),
/// each begun once the one before is complete, then commits each member's new client address.
/// A plaintext application writes through the first two rolls; an application that switched to
/// TLS (the CA from `<cluster>-tls`) once every member took TLS writes through the last two.
/// Neither loses an acknowledged write nor stalls 5 s; at the end plaintext gets no answer on
/// the client port, every member logs a TLS quorum, and the committed configuration names the
/// loopback plaintext port of every member.
#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed: run e2e/operator-test"]
async fn tls_turned_on_for_a_running_plaintext_ensemble_under_load() {
    use zookeeper_operator::render::members::template_rolled;
    use zookeeper_operator::tls::transition::{TlsMode, template_mode};
    let client = client().await;
    let guard = TestNamespace::create(&client, "tls-on-e2e").await;
    let (ns, name) = (guard.name.clone(), "zk");
    let plain = spec(json!({"updateStrategy": {"clientAddressCacheSeconds": 0}}));
    apply_cluster(&client, &ns, name, plain.clone())
        .await
        .expect("apply a plaintext cluster");
    wait_settled(&client, &ns, name, Duration::from_secs(300)).await;
    let cs = super::cluster(&client, &ns, name)
        .await
        .status
        .and_then(|s| s.connection_string)
        .expect("status.connectionString");
    let plaintext_writer = super::support::Writer::start(&cs).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let sts_api = Api::<StatefulSet>::namespaced(client.clone(), &ns);
    // The modes the StatefulSet's template goes through, with when each was first seen.
    let mut seen: Vec<(TlsMode, f64)> = vec![(
        template_mode(&sts_api.get(name).await.expect("get the StatefulSet")),
        0.0,
    )];
    let mut with_tls = plain;
    super::merge(&mut with_tls, json!({"tls": {"enabled": true}}));
    let t = Instant::now();
    apply_cluster(&client, &ns, name, with_tls)
        .await
        .expect("turn spec.tls.enabled on");
    let watch_modes = |sts: &StatefulSet, seen: &mut Vec<(TlsMode, f64)>| {
        let mode = template_mode(sts);
        if seen.last().map(|s| s.0) != Some(mode) {
            log(format!(
                "template mode {} at {:.1} s",
                mode.as_str(),
                t.elapsed().as_secs_f64()
            ));
            seen.push((mode, t.elapsed().as_secs_f64()));
        }
        mode
    };
    // Every member takes TLS once the first roll is complete: the second one has begun.
    loop {
        let sts = sts_api.get(name).await.expect("get the StatefulSet");
        if watch_modes(&sts, &mut seen) >= TlsMode::QuorumTls {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "the first roll did not end within 600 s: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ca = Api::<Secret>::namespaced(client.clone(), &ns)
        .get(&format!("{name}-tls"))
        .await
        .expect("the operator created zk-tls")
        .data
        .unwrap_or_default()["ca.crt"]
        .0
        .clone();
    let ca = String::from_utf8(ca).unwrap();
    let tls_options = zookeeper_operator::tls::ClientTls::new(&ca, None)
        .unwrap()
        .zookeeper_options()
        .unwrap();
    let tls_writer = super::support::Writer::start_with(&cs, Some(tls_options)).await;
    // Plaintext ends with the third roll: the plaintext application stops when it begins.
    let plaintext_until = loop {
        let sts = sts_api.get(name).await.expect("get the StatefulSet");
        if watch_modes(&sts, &mut seen) == TlsMode::Tls {
            break Instant::now();
        }
        assert!(
            t.elapsed() < Duration::from_secs(900),
            "the second roll did not end within 900 s: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (_, plain_attempts) = plaintext_writer.stop().await;
    // The third roll, then the new client addresses committed: settled.
    super::wait_until(
        "every member runs TLS alone",
        Duration::from_secs(600),
        || {
            let sts_api = sts_api.clone();
            async move {
                let sts = sts_api.get(name).await.ok()?;
                (template_mode(&sts) == TlsMode::Tls && template_rolled(&sts)).then_some(())
            }
        },
    )
    .await;
    let third_roll_done = t.elapsed().as_secs_f64();
    let zk = wait_settled(&client, &ns, name, Duration::from_secs(300)).await;
    let done = t.elapsed().as_secs_f64();
    let (tls_client, tls_attempts) = tls_writer.stop().await;

    let modes: Vec<TlsMode> = seen.iter().map(|s| s.0).collect();
    assert_eq!(
        modes,
        [
            TlsMode::Plaintext,
            TlsMode::Unified,
            TlsMode::QuorumTls,
            TlsMode::Tls
        ],
        "the template's modes, in order: {seen:?}"
    );
    let members = &zk.status.as_ref().unwrap().members;
    assert!(
        members
            .iter()
            .all(|m| m.mode == "leader" || m.mode == "follower"),
        "the operator probes every member over TLS: {members:?}"
    );
    // No acknowledged write lost, plaintext or TLS; no stall of 5 s in either.
    let plain_checked = super::support::verify_acknowledged(&tls_client, &plain_attempts).await;
    let tls_checked = super::support::verify_acknowledged(&tls_client, &tls_attempts).await;
    let before_third: Vec<_> = plain_attempts
        .iter()
        .filter(|a| a.during.end <= plaintext_until)
        .cloned()
        .collect();
    let (plain_gap, _) = super::support::longest_unavailability(&before_third);
    let (tls_gap, _) = super::support::longest_unavailability(&tls_attempts);
    let at = |m: TlsMode| seen.iter().find(|s| s.0 == m).map_or(0.0, |s| s.1);
    log(format!(
        "FIGURE TLS turned on under load: roll 1 (both on every port) {:.1} s, roll 2 (quorum over TLS) {:.1} s, roll 3 (plaintext off) {:.1} s, client addresses committed {:.1} s; {:.1} s in all",
        at(TlsMode::QuorumTls) - at(TlsMode::Unified),
        at(TlsMode::Tls) - at(TlsMode::QuorumTls),
        third_roll_done - at(TlsMode::Tls),
        done - third_roll_done,
        done
    ));
    log(format!(
        "FIGURE TLS turned on under load: plaintext writer {plain_checked} acknowledged writes all present, longest gap {:.2} s through rolls 1-2; TLS writer {tls_checked} all present, longest gap {:.2} s through rolls 2-3",
        plain_gap.as_secs_f64(),
        tls_gap.as_secs_f64()
    ));
    assert!(
        plain_checked > 0 && tls_checked > 0,
        "a writer wrote nothing"
    );
    // The pass that finds the last roll complete commits the addresses, one member per pass, a
    // few seconds apart; not at the next steady resync (60 s).
    assert!(
        done - third_roll_done < 30.0,
        "the client addresses were committed {:.1} s after the third roll",
        done - third_roll_done
    );
    for (what, gap, attempts) in [
        ("plaintext writes stalled", plain_gap, &before_third),
        ("TLS writes stalled", tls_gap, &tls_attempts),
    ] {
        if gap >= Duration::from_secs(5) {
            panic!(
                "{what} {gap:?} (plaintext in rolls 1-2, TLS in rolls 2-3): {}\nthe members and the operator:\n{}",
                super::support::longest_gap_history(attempts),
                super::member_evidence(&client, &ns, name, super::support::longest_gap(attempts))
                    .await
            );
        }
    }
    // The committed configuration names each member's plaintext port on its loopback.
    let (config, _) = tls_client.get_config().await.expect("get_config over TLS");
    let config = String::from_utf8_lossy(&config).into_owned();
    for id in 1..=3 {
        assert!(
            config
                .lines()
                .any(|l| l.starts_with(&format!("server.{id}=")) && l.ends_with(";127.0.0.1:2182")),
            "server.{id} is not committed with 127.0.0.1:2182: {config}"
        );
    }
    // Plaintext from outside a pod gets no answer; the quorum runs over TLS.
    for pod in member_pods(&client, &ns, name).await {
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("pod IP");
        let answer = plain_srvr(&ip, 2181).await;
        assert!(
            !answer.as_deref().unwrap_or_default().contains("Mode:"),
            "plaintext srvr answered on {ip}:2181: {answer:?}"
        );
        let pod_name = pod.metadata.name.clone().unwrap();
        let logs = pod_logs(&client, &ns, &pod_name).await;
        assert!(
            logs.contains("Using TLS encrypted quorum communication"),
            "{pod_name} does not log a TLS quorum"
        );
    }
    // Turning it off again is refused, with the reason.
    let mut off = spec(json!({"updateStrategy": {"clientAddressCacheSeconds": 0}}));
    super::merge(&mut off, json!({"tls": {"enabled": false}}));
    let refused = apply_cluster(&client, &ns, name, off).await.unwrap_err();
    assert!(
        refused.to_string().contains("cannot be turned off"),
        "{refused}"
    );
    drop(guard);
}

/// Once `name` is settled again: stops `writer`, checks every acknowledged write is present,
/// logs the figure `figure(writes, longest gap)` names, and asserts the writer wrote, never
/// stalled 5 s or more (during `what`), and every member leads or follows.
async fn writer_came_through(
    client: &Client,
    ns: &str,
    name: &str,
    writer: super::support::Writer,
    what: &str,
    figure: impl FnOnce(usize, Duration) -> String,
) {
    let zk = wait_settled(client, ns, name, Duration::from_secs(120)).await;
    let (writer_client, attempts) = writer.stop().await;
    let checked = match super::support::check_acknowledged(&writer_client, &attempts).await {
        Ok(checked) => checked,
        Err(e) => panic!(
            "{e}\nthe members and the operator:\n{}",
            super::member_evidence(client, ns, name, super::support::since_last_ack(&attempts))
                .await
        ),
    };
    let (gap, _) = super::support::longest_unavailability(&attempts);
    log(figure(checked, gap));
    assert!(checked > 0, "the writer wrote nothing");
    if gap >= Duration::from_secs(5) {
        panic!(
            "writes stalled {gap:?} during {what}: {}\nthe members and the operator:\n{}",
            super::support::longest_gap_history(&attempts),
            super::member_evidence(client, ns, name, super::support::longest_gap(&attempts)).await
        );
    }
    assert!(
        zk.status
            .as_ref()
            .unwrap()
            .members
            .iter()
            .all(|m| m.mode == "leader" || m.mode == "follower"),
        "{:?}",
        zk.status
    );
}

/// Waits until every member runs the members' Secret `<name>-tls-members` trusting `new_ca`
/// alone, logging each step that Secret passes through; asserts the steps were the bridge's
/// (trust both, then the new certificate). The steps seen, in order.
async fn wait_bridged(
    client: &Client,
    ns: &str,
    secrets: &Api<Secret>,
    sts_api: &Api<StatefulSet>,
    name: &str,
    new_ca: &str,
) -> Vec<String> {
    use zookeeper_operator::tls::bridge;
    let members_secret = bridge::members_secret(name);
    let started = Instant::now();
    let mut steps: Vec<String> = Vec::new();
    let new_only = bridge::certificates(new_ca);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let members = secrets.get(&members_secret).await.ok();
        let step = members
            .as_ref()
            .and_then(|s| s.metadata.annotations.as_ref())
            .and_then(|a| a.get(zookeeper_operator::tls::CA_ROTATION_ANNOTATION))
            .cloned()
            .unwrap_or_else(|| "none".to_string());
        if steps.last() != Some(&step) {
            log(format!(
                "{members_secret}: step {step} after {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            steps.push(step.clone());
        }
        let read = members.as_ref().and_then(bridge::read_members);
        let sts = sts_api.get(name).await.ok();
        let done = read.as_ref().is_some_and(|m| {
            m.step.is_none()
                && bridge::certificates(&m.material.ca_cert) == new_only
                && sts
                    .as_ref()
                    .and_then(zookeeper_operator::tls::apply::material_all_members_run)
                    == Some(zookeeper_operator::tls::material_hash(&m.material))
        });
        if done {
            break;
        }
        if Instant::now() >= deadline {
            // What the operator was waiting for: the members Secret's material against what
            // the StatefulSet says every member runs, the cluster's conditions, the members'
            // and the operator's own lines.
            let runs = sts
                .as_ref()
                .and_then(zookeeper_operator::tls::apply::material_all_members_run);
            let wants = read
                .as_ref()
                .map(|m| zookeeper_operator::tls::material_hash(&m.material));
            let conditions = Api::<ZookeeperCluster>::namespaced(client.clone(), ns)
                .get(name)
                .await
                .ok()
                .and_then(|zk| zk.status)
                .map(|s| {
                    s.conditions
                        .iter()
                        .map(|c| format!("{} {} {}: {}", c.type_, c.status, c.reason, c.message))
                        .collect::<Vec<_>>()
                        .join("\n  ")
                })
                .unwrap_or_default();
            panic!(
                "the new CA did not reach every member in 600 s; steps seen: {steps:?}; every member runs material {runs:?}, the members Secret holds {wants:?}\nconditions:\n  {conditions}\n{}",
                super::member_evidence(client, ns, name, None).await
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let trust_both = steps.iter().position(|s| s == "trust-both");
    let signed_by_new = steps.iter().position(|s| s == "signed-by-new");
    assert!(
        matches!((trust_both, signed_by_new), (Some(a), Some(b)) if a < b),
        "the members trusted both CAs, then presented the new one's certificate: {steps:?}"
    );
    steps
}

/// cert-manager's controllers on the local cluster while it lives (`e2e/cluster cert-manager
/// on`), stopped after, also when the test fails.
struct CertManager;

impl CertManager {
    fn on() -> Self {
        cert_manager("on");
        CertManager
    }
}

impl Drop for CertManager {
    fn drop(&mut self) {
        cert_manager("off");
    }
}

fn cert_manager(state: &str) {
    // Its progress (a first build from the Go module) shows as it goes.
    let status = std::process::Command::new("e2e/cluster")
        .args(["cert-manager", state])
        .status()
        .expect("run e2e/cluster cert-manager");
    assert!(
        status.success() || std::thread::panicking(),
        "e2e/cluster cert-manager {state} failed ({status}); its output is above"
    );
}

/// The CA in Secret `team-ca` (other than `old`) once it has stayed the same for 5 s.
async fn settled_ca(secrets: &Api<Secret>, old: Option<&str>) -> String {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None::<(String, Instant)>));
    super::wait_until(
        "cert-manager's CA team-ca is issued and stays the same for 5 s",
        Duration::from_secs(120),
        || {
            let secrets = secrets.clone();
            let seen = seen.clone();
            async move {
                let data = secrets.get("team-ca").await.ok()?.data?;
                let pem = String::from_utf8(data.get("tls.crt")?.0.clone()).ok()?;
                if pem.is_empty() || Some(pem.as_str()) == old {
                    return None;
                }
                let mut seen = seen.lock().unwrap();
                match &*seen {
                    Some((last, since)) if *last == pem => {
                        (since.elapsed() >= Duration::from_secs(5)).then_some(pem)
                    }
                    _ => {
                        if seen.is_some() {
                            log("cert-manager issued the CA team-ca again");
                        }
                        *seen = Some((pem, Instant::now()));
                        None
                    }
                }
            }
        },
    )
    .await
}

/// `spec.tls.issuerRef`: certificates from a cert-manager CA Issuer (cert-manager's own
/// controllers, built from its Go module). The operator keeps the Certificate `zk-tls` (owned by
/// the cluster, the members' SANs); the members start once cert-manager has written the Secret;
/// the cluster becomes Available with the operator probing over TLS; a client trusting the
/// Issuer's CA writes over TLS; a renewal cert-manager is asked for (a new key, a new
/// certificate) rolls the members, leader last, under load, without losing a write or the
/// quorum; plaintext gets no answer.
#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed: run e2e/operator-test"]
async fn tls_certificates_from_a_cert_manager_issuer() {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
    let _cert_manager = CertManager::on();
    let client = client().await;
    let guard = TestNamespace::create(&client, "tls-cm-e2e").await;
    let (ns, name) = (guard.name.clone(), "zk");
    let resource = |kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("cert-manager.io", "v1", kind),
            plural,
        )
    };
    let apply = |kind: &'static str, plural: &'static str, body: serde_json::Value| {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &resource(kind, plural));
        async move {
            let name = body["metadata"]["name"].as_str().unwrap().to_string();
            api.patch(
                &name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&body),
            )
            .await
            .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
        }
    };
    // A CA of cert-manager's making, and an Issuer signing with it.
    apply(
        "Issuer",
        "issuers",
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": "selfsigned"}, "spec": {"selfSigned": {}}}),
    )
    .await;
    apply(
        "Certificate",
        "certificates",
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "team-ca"}, "spec": {"isCA": true, "commonName": "team-ca",
        "secretName": "team-ca",
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "issuerRef": {"name": "selfsigned", "kind": "Issuer"}}}),
    )
    .await;
    // cert-manager can issue a new Certificate twice in the same second (seen once: the
    // members' certificate was signed by the first key, the Secret then held the second), so
    // the test goes on with a CA that has stopped changing.
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let team_ca = settled_ca(&secrets, None).await;
    apply(
        "Issuer",
        "issuers",
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": "team-ca"}, "spec": {"ca": {"secretName": "team-ca"}}}),
    )
    .await;

    let started = Instant::now();
    apply_cluster(
        &client,
        &ns,
        name,
        spec(
            json!({"tls": {"enabled": true, "issuerRef": {"name": "team-ca"}},
            "updateStrategy": {"clientAddressCacheSeconds": 0}}),
        ),
    )
    .await
    .expect("apply a cluster with spec.tls.issuerRef");
    let zk = wait_settled(&client, &ns, name, Duration::from_secs(300)).await;
    log(format!(
        "FIGURE cert-manager TLS cluster Available {:.1} s after it was applied",
        started.elapsed().as_secs_f64()
    ));
    let members = &zk.status.as_ref().unwrap().members;
    assert!(
        members
            .iter()
            .all(|m| m.mode == "leader" || m.mode == "follower"),
        "the operator's probes over TLS: {members:?}"
    );
    // The Certificate: the operator's, owned by the cluster, naming the members.
    let certificates: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &resource("Certificate", "certificates"),
    );
    let certificate = certificates
        .get("zk-tls")
        .await
        .expect("the operator created Certificate zk-tls");
    let owners = certificate
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default();
    assert!(
        owners
            .iter()
            .any(|o| o.kind == "ZookeeperCluster" && o.name == name),
        "{owners:?}"
    );
    let dns = certificate.data["spec"]["dnsNames"].to_string();
    assert!(
        dns.contains(&format!("zk-0.zk-hs.{ns}.svc.cluster.local"))
            && dns.contains(&format!("zk-cs.{ns}.svc.cluster.local")),
        "{dns}"
    );
    assert_eq!(certificate.data["spec"]["issuerRef"]["name"], "team-ca");
    let secret = secrets
        .get("zk-tls")
        .await
        .expect("cert-manager wrote zk-tls");
    let data = secret.data.clone().unwrap_or_default();
    assert_eq!(
        data["ca.crt"].0,
        team_ca.as_bytes(),
        "the members trust the Issuer's CA"
    );
    let first_cert = data["tls.crt"].0.clone();

    // A client that trusts the Issuer's CA writes over TLS while cert-manager renews.
    let cs = zk
        .status
        .as_ref()
        .and_then(|s| s.connection_string.clone())
        .expect("connectionString");
    let identity = zookeeper_operator::tls::ClientTls::new(&team_ca, None)
        .unwrap()
        .zookeeper_options()
        .unwrap();
    let writer = super::support::Writer::start_with(&cs, Some(identity)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sts_api = Api::<StatefulSet>::namespaced(client.clone(), &ns);
    let hash_of = |sts: &StatefulSet| {
        sts.spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(zookeeper_operator::tls::MATERIAL_HASH_ANNOTATION)
            .cloned()
    };
    let before = hash_of(&sts_api.get(name).await.unwrap()).expect("tls-hash on the template");
    // What `cmctl renew` does: the Issuing condition on the Certificate's status.
    let renew = Instant::now();
    certificates
        .patch_status(
            "zk-tls",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [
                {"type": "Issuing", "status": "True", "reason": "ManuallyTriggered",
                 "message": "renewal asked for by the e2e test"},
                {"type": "Ready", "status": "True", "reason": "Ready", "message": "ready"}]}})),
        )
        .await
        .expect("ask cert-manager to renew zk-tls");
    super::wait_until(
        "the renewed certificate rolled every member",
        Duration::from_secs(400),
        || {
            let (sts_api, secrets, before, first_cert) = (
                sts_api.clone(),
                secrets.clone(),
                before.clone(),
                first_cert.clone(),
            );
            async move {
                let s = secrets.get("zk-tls").await.ok()?;
                let renewed = s.data?.get("tls.crt")?.0 != first_cert;
                let sts = sts_api.get(name).await.ok()?;
                let hash = hash_of(&sts)?;
                (renewed
                    && hash != before
                    && zookeeper_operator::tls::apply::material_all_members_run(&sts) == Some(hash))
                .then_some(())
            }
        },
    )
    .await;
    let rolled = renew.elapsed().as_secs_f64();
    writer_came_through(&client, &ns, name, writer, "the roll", |checked, gap| {
        format!(
            "FIGURE cert-manager renewal under load: renewed and every member rolled {rolled:.1} s after the request; {checked} acknowledged writes all present, longest write gap {:.2} s",
            gap.as_secs_f64()
        )
    })
    .await;
    // Plaintext from outside a pod gets no answer.
    for pod in member_pods(&client, &ns, name).await {
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("pod IP");
        let answer = plain_srvr(&ip, 2181).await;
        assert!(
            !answer.as_deref().unwrap_or_default().contains("Mode:"),
            "plaintext srvr answered on {ip}:2181: {answer:?}"
        );
    }

    // The Issuer's CA is renewed by cert-manager (a new key, the same name), and cert-manager
    // issues the members' certificate from it. Had the members mounted cert-manager's Secret,
    // the first to restart could not rejoin (a new CA only, and a certificate its peers do not
    // trust); and ZooKeeper's PEM trust store keeps one CA per name. The operator bridges the
    // change in three rolls instead, while a client trusting both CAs writes.
    let old_ca = team_ca;
    certificates
        .patch_status(
            "team-ca",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [
                {"type": "Issuing", "status": "True", "reason": "ManuallyTriggered",
                 "message": "a new CA, asked for by the e2e test"},
                {"type": "Ready", "status": "True", "reason": "Ready", "message": "ready"}]}})),
        )
        .await
        .expect("ask cert-manager to renew the CA team-ca");
    let new_ca = settled_ca(&secrets, Some(&old_ca)).await;
    let both = zookeeper_operator::tls::ClientTls::new(&format!("{old_ca}{new_ca}"), None)
        .unwrap()
        .zookeeper_options()
        .unwrap();
    let writer = super::support::Writer::start_with(&cs, Some(both)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let change = Instant::now();
    certificates
        .patch_status(
            "zk-tls",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [
                {"type": "Issuing", "status": "True", "reason": "ManuallyTriggered",
                 "message": "issue from the new CA, asked for by the e2e test"},
                {"type": "Ready", "status": "True", "reason": "Ready", "message": "ready"}]}})),
        )
        .await
        .expect("ask cert-manager to issue zk-tls again");
    let steps = wait_bridged(&client, &ns, &secrets, &sts_api, name, &new_ca).await;
    let bridged = change.elapsed().as_secs_f64();
    writer_came_through(&client, &ns, name, writer, "the CA change", |checked, gap| {
        format!(
            "FIGURE cert-manager CA change under load: steps {steps:?}, every member trusts the new CA alone {bridged:.1} s after the request; {checked} acknowledged writes all present, longest write gap {:.2} s",
            gap.as_secs_f64()
        )
    })
    .await;
    // A client trusting the new CA alone is served.
    let new_only_client = super::support::Writer::start_with(
        &cs,
        Some(
            zookeeper_operator::tls::ClientTls::new(&new_ca, None)
                .unwrap()
                .zookeeper_options()
                .unwrap(),
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (c, attempts) = new_only_client.stop().await;
    assert!(
        super::support::verify_acknowledged(&c, &attempts).await > 0,
        "a client trusting the new CA alone wrote nothing"
    );
    // Moving to the operator's own CA (another source, another CA) is refused, with the reason.
    let own_ca = spec(json!({"tls": {"enabled": true},
        "updateStrategy": {"clientAddressCacheSeconds": 0}}));
    let refused = apply_cluster(&client, &ns, name, own_ca).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("where the certificates come from"),
        "{refused}"
    );
    drop(guard);
}

/// Certificates from a Secret of the user's (`spec.tls.secretName`), and a new CA of the same
/// name in it: the members mount the operator's copy, which bridges the change in three rolls
/// while a client trusting both CAs writes through the client Service.
#[tokio::test]
#[ignore = "needs the local cluster: run through e2e/operator-test"]
async fn tls_from_a_users_secret_and_a_new_ca_in_it() {
    let client = client().await;
    let guard = TestNamespace::create(&client, "tls-user-e2e").await;
    let (ns, name) = (guard.name.clone(), "zk");
    let cluster_spec = spec(json!({"tls": {"enabled": true, "secretName": "zk-certs"},
        "updateStrategy": {"clientAddressCacheSeconds": 0}}));
    let zk: ZookeeperCluster = serde_json::from_value(json!({
        "apiVersion": "zookeeper.ensemble.dev/v1alpha1", "kind": "ZookeeperCluster",
        "metadata": {"name": name, "namespace": ns}, "spec": cluster_spec.clone()}))
    .unwrap();
    let v = zookeeper_operator::validate::validate(&zk).expect("a valid spec");
    // A CA named "team-ca" and the members' certificate it signed, as a user's tooling makes
    // them; a second CA of the same name (a new key) comes later.
    let issued = || super::issued::issued_by_a_ca_named(&v, "team-ca", &[]);
    let (old, new) = (issued(), issued());
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let put = |m: &zookeeper_operator::tls::Material| {
        let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "zk-certs"},
            "stringData": {"ca.crt": m.ca_cert, "tls.crt": m.cert, "tls.key": m.key}});
        let secrets = secrets.clone();
        async move {
            secrets
                .patch(
                    "zk-certs",
                    &kube::api::PatchParams::apply("e2e").force(),
                    &kube::api::Patch::Apply(&body),
                )
                .await
                .expect("write the user's Secret zk-certs");
        }
    };
    put(&old).await;
    let started = Instant::now();
    apply_cluster(&client, &ns, name, cluster_spec)
        .await
        .expect("apply a cluster with spec.tls.secretName");
    let zk = wait_settled(&client, &ns, name, Duration::from_secs(300)).await;
    log(format!(
        "FIGURE user's-Secret TLS cluster Available {:.1} s after it was applied",
        started.elapsed().as_secs_f64()
    ));
    let cs = zk
        .status
        .as_ref()
        .and_then(|s| s.connection_string.clone())
        .expect("connectionString");
    let both =
        zookeeper_operator::tls::ClientTls::new(&format!("{}{}", old.ca_cert, new.ca_cert), None)
            .unwrap()
            .zookeeper_options()
            .unwrap();
    let writer = super::support::Writer::start_with(&cs, Some(both)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let change = Instant::now();
    put(&new).await;
    let sts_api = Api::<StatefulSet>::namespaced(client.clone(), &ns);
    let steps = wait_bridged(&client, &ns, &secrets, &sts_api, name, &new.ca_cert).await;
    let bridged = change.elapsed().as_secs_f64();
    writer_came_through(&client, &ns, name, writer, "the CA change", |checked, gap| {
        format!(
            "FIGURE user's-Secret CA change under load: steps {steps:?}, every member trusts the new CA alone {bridged:.1} s after the Secret changed; {checked} acknowledged writes all present, longest write gap {:.2} s",
            gap.as_secs_f64()
        )
    })
    .await;
    drop(guard);
}
