//! `spec.tls` in the rendered objects: the `start-zookeeper` TLS flags, the Secret mounted
//! read-only, the probes on the loopback-only plaintext port, the server lines binding that
//! port to 127.0.0.1, Services and NetworkPolicy on the TLS port, and a new certificate rolling
//! the members. Without `spec.tls` nothing of it appears.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use zookeeper_operator::crd::ZookeeperCluster;
use zookeeper_operator::names::RESTART_HASH_ANNOTATION;
use zookeeper_operator::render::statefulset::set_tls_material_hash;
use zookeeper_operator::render::{DesiredObjects, render};
use zookeeper_operator::tls;
use zookeeper_operator::tls::transition::{self, TlsMode};
use zookeeper_operator::validate::validate;

fn rendered(spec: serde_json::Value) -> DesiredObjects {
    render(&validated(&cluster(spec)), None)
}

/// Validates everything but `spec.tls` (refused while the operator does not serve it end to
/// end, see `validate::TLS_SERVED`), then renders with it.
fn validated(zk: &ZookeeperCluster) -> zookeeper_operator::validate::ValidatedCluster {
    let mut plain = zk.clone();
    plain.spec.tls = Default::default();
    let mut v = validate(&plain).expect("a valid spec");
    v.spec.tls = zk.spec.tls.clone();
    v.tls_mode = if zk.spec.tls.enabled {
        TlsMode::Tls
    } else {
        TlsMode::Plaintext
    };
    v
}

fn cluster(spec: serde_json::Value) -> ZookeeperCluster {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
        "kind": "ZookeeperCluster",
        "metadata": {"name": "zk", "namespace": "ns"},
        "spec": spec,
    }))
    .expect("a ZookeeperCluster")
}

#[test]
fn the_steps_of_turning_tls_on_serve_both_on_the_client_port_and_say_which_they_are() {
    let zk = cluster(serde_json::json!({"tls": {"enabled": true, "mutual": true}}));
    for mode in [
        TlsMode::Plaintext,
        TlsMode::Unified,
        TlsMode::QuorumTls,
        TlsMode::Tls,
    ] {
        let mut v = validated(&zk);
        v.tls_mode = mode;
        let o = render(&v, None);
        let a = args(&o);
        let has = |flag: &str| a.iter().any(|a| a == flag);
        // The mode of the rendered template is read back as the mode rendered.
        assert_eq!(transition::template_mode(&o.statefulset), mode);
        let mounts_tls = pod(&o)
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .any(|v| v.name == "tls");
        assert_eq!(mounts_tls, mode != TlsMode::Plaintext, "{mode:?}");
        let boot = &o.members.data.as_ref().unwrap()["boot.cfg"];
        let readiness = container(&o).readiness_probe.clone().unwrap().exec.unwrap();
        let annotations = o
            .statefulset
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .clone()
            .unwrap();
        match mode {
            TlsMode::Plaintext => {
                assert!(!a.iter().any(|a| a.contains("tls")), "{a:?}");
            }
            TlsMode::Unified | TlsMode::QuorumTls => {
                // The client port stays where it was and takes both; no secure port.
                assert!(has("--client_port=2181"), "{a:?}");
                assert!(has("--tls_dir=/etc/zookeeper/tls"), "{a:?}");
                assert!(has("--tls_client_auth=need"), "{a:?}");
                assert!(has(&format!("--tls_transition={}", mode.as_str())), "{a:?}");
                assert!(!a.iter().any(|a| a.contains("secure_client_port")), "{a:?}");
                assert!(boot.contains(";2181\n"), "{boot}");
                assert_eq!(
                    readiness.command.as_deref().unwrap(),
                    ["zookeeper-ready", "--quorum", "2181"]
                );
                assert_eq!(
                    annotations[transition::MODE_ANNOTATION],
                    mode.as_str(),
                    "{annotations:?}"
                );
            }
            TlsMode::Tls => {
                assert!(has("--secure_client_port=2181") && has("--client_port=2182"));
                assert!(!a.iter().any(|a| a.contains("tls_transition")), "{a:?}");
                assert!(boot.contains(";127.0.0.1:2182\n"), "{boot}");
                // As in earlier releases: upgrading the operator rolls no TLS cluster.
                assert!(
                    !annotations.contains_key(transition::MODE_ANNOTATION),
                    "{annotations:?}"
                );
            }
        }
    }
}

fn pod(o: &DesiredObjects) -> &PodSpec {
    o.statefulset
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
}

fn container(o: &DesiredObjects) -> &Container {
    &pod(o).containers[0]
}

fn args(o: &DesiredObjects) -> Vec<String> {
    container(o).args.clone().unwrap()
}

fn restart_hash(o: &DesiredObjects) -> String {
    o.statefulset
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()[RESTART_HASH_ANNOTATION]
        .clone()
}

#[test]
fn without_tls_nothing_changes() {
    let o = rendered(serde_json::json!({}));
    let a = args(&o);
    assert!(a.contains(&"--client_port=2181".to_string()));
    assert!(!a.iter().any(|a| a.contains("tls") || a.contains("secure")));
    assert!(
        !pod(&o)
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .any(|v| v.name == "tls")
    );
    let boot = &o.members.data.as_ref().unwrap()["boot.cfg"];
    assert!(boot.contains(";2181\n"), "{boot}");
}

#[test]
fn tls_flags_mount_probes_and_server_lines() {
    let o = rendered(serde_json::json!({"tls": {"enabled": true}}));
    let a = args(&o);
    for flag in [
        "--client_port=2182",
        "--tls_dir=/etc/zookeeper/tls",
        "--secure_client_port=2181",
        "--tls_client_auth=none",
    ] {
        assert!(a.contains(&flag.to_string()), "{flag} missing: {a:?}");
    }
    // The probes ask the plaintext port inside the pod.
    let c = container(&o);
    let readiness = c.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
    assert_eq!(
        readiness.command.as_deref().unwrap(),
        ["zookeeper-ready", "--quorum", "2182"]
    );
    let liveness = c.liveness_probe.as_ref().unwrap().exec.as_ref().unwrap();
    assert_eq!(
        liveness.command.as_deref().unwrap(),
        ["zookeeper-ready", "--liveness", "2182"]
    );
    // The Secret, read-only, readable through the pod's group only.
    let mount = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "tls")
        .expect("tls mount");
    assert_eq!(mount.mount_path, tls::MOUNT);
    assert_eq!(mount.read_only, Some(true));
    let volume = pod(&o)
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "tls")
        .expect("tls volume");
    let secret = volume.secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("zk-tls"));
    assert_eq!(secret.default_mode, Some(0o440));
    // Server lines bind the plaintext port to loopback only.
    let boot = &o.members.data.as_ref().unwrap()["boot.cfg"];
    assert!(
        boot.lines().all(|l| l.ends_with(";127.0.0.1:2182")
            && l.contains(".zk-hs.ns.svc.cluster.local:2888:3888")),
        "{boot}"
    );
    // Clients, the Services and the NetworkPolicy see the TLS port only.
    let client_ports: Vec<i32> = o
        .client_service
        .spec
        .as_ref()
        .unwrap()
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(client_ports, [2181]);
    let container_ports: Vec<i32> = c
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.container_port)
        .collect();
    assert!(!container_ports.contains(&2182), "{container_ports:?}");
    let policy = serde_json::to_string(&o.network_policy).unwrap();
    assert!(!policy.contains("2182"), "{policy}");
}

#[test]
fn mutual_tls_and_a_users_secret() {
    let o = rendered(
        serde_json::json!({"tls": {"enabled": true, "mutual": true, "secretName": "my-certs"}}),
    );
    assert!(args(&o).contains(&"--tls_client_auth=need".to_string()));
    let volume = pod(&o)
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "tls")
        .unwrap()
        .clone();
    // The operator's copy of the user's Secret, which bridges a change of CA.
    assert_eq!(
        volume.secret.unwrap().secret_name.as_deref(),
        Some("zk-tls-members")
    );
}

#[test]
fn a_new_certificate_rolls_the_members() {
    let mut a = rendered(serde_json::json!({"tls": {"enabled": true}}));
    let mut b = a.clone();
    let before = restart_hash(&a);
    set_tls_material_hash(&mut a.statefulset, "aaaa");
    set_tls_material_hash(&mut b.statefulset, "bbbb");
    assert_ne!(restart_hash(&a), before);
    assert_ne!(restart_hash(&a), restart_hash(&b));
    let mut again = rendered(serde_json::json!({"tls": {"enabled": true}}));
    set_tls_material_hash(&mut again.statefulset, "aaaa");
    assert_eq!(restart_hash(&again), restart_hash(&a));
}

#[test]
fn the_cert_manager_certificate_names_the_members_and_the_issuer() {
    let zk = cluster(serde_json::json!({"tls": {"enabled": true,
        "issuerRef": {"name": "corp", "kind": "ClusterIssuer"}}}));
    let v = validate(&zk).expect("valid");
    let issuer = v.spec.tls.issuer_ref.clone().unwrap();
    let c = tls::apply::certificate_object(&v, None, &issuer);
    assert_eq!(c.metadata.name.as_deref(), Some("zk-tls"));
    let spec = &c.data["spec"];
    assert_eq!(spec["secretName"], "zk-tls");
    assert_eq!(
        spec["issuerRef"],
        serde_json::json!({"name": "corp", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
    let dns: Vec<&str> = spec["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for name in [
        "zk-0.zk-hs.ns.svc.cluster.local",
        "zk-8.zk-hs",
        "zk-cs.ns.svc.cluster.local",
    ] {
        assert!(dns.contains(&name), "{name} missing: {dns:?}");
    }
    assert!(
        !dns.contains(&"127.0.0.1"),
        "an address is not a DNS name: {dns:?}"
    );
    assert_eq!(spec["ipAddresses"], serde_json::json!(["127.0.0.1"]));
    // The members mount the operator's copy, which bridges a change of the Issuer's CA.
    let desired = render(&validated(&zk), None);
    let mounted: Vec<String> = pod(&desired)
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .collect();
    assert!(
        mounted.contains(&"zk-tls-members".to_string()) && !mounted.contains(&"zk-tls".to_string()),
        "{mounted:?}"
    );
    // PKCS#8, what the members' PEM key store takes; server and client use (quorum peers are
    // each other's clients).
    assert_eq!(spec["privateKey"]["encoding"], "PKCS8");
    let usages = spec["usages"].to_string();
    assert!(
        usages.contains("server auth") && usages.contains("client auth"),
        "{usages}"
    );
}
