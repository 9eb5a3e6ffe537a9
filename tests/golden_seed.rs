//! Golden test: the seed's sample renders to objects whose fields match the reference manifest
//! (tests/fixtures/seed/zookeeper.yaml, verbatim from the article), except for the documented,
//! deliberate differences checked at the end.

use serde_json::{Value, json};
use zookeeper_operator::crd::ZookeeperCluster;
use zookeeper_operator::render::{DesiredObjects, render};
use zookeeper_operator::validate::validate;

fn seed() -> Vec<Value> {
    let text = std::fs::read_to_string("tests/fixtures/seed/zookeeper.yaml").unwrap();
    serde_saphyr::from_multiple(&text).expect("the seed manifest parses")
}

fn seed_object(kind: &str) -> Value {
    seed().into_iter().find(|o| o["kind"] == kind).expect(kind)
}

fn rendered() -> DesiredObjects {
    let text = std::fs::read_to_string("config/samples/zk.yaml").unwrap();
    let zk: ZookeeperCluster = serde_saphyr::from_str(&text).expect("sample parses");
    render(&validate(&zk).expect("sample is valid"), None)
}

fn json<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap()
}

/// `name -> port` of a list of ports, whatever the port field is called.
fn ports(list: &Value, port_field: &str) -> Vec<(String, i64)> {
    let mut v: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p[port_field].as_i64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The seed's `sh -c "start-zookeeper --a=1 ..."` as a list of words.
fn seed_command(container: &Value) -> Vec<String> {
    let script = container["command"][2].as_str().unwrap();
    script
        .split_whitespace()
        .filter(|w| *w != "\\")
        .map(str::to_string)
        .collect()
}

#[test]
fn headless_service_matches_the_seed() {
    let ours = json(&rendered().headless_service);
    let seed = seed_object("Service");
    assert_eq!(ours["metadata"]["name"], seed["metadata"]["name"]);
    assert_eq!(ours["spec"]["clusterIP"], seed["spec"]["clusterIP"]);
    let ours_ports = ports(&ours["spec"]["ports"], "port");
    for p in ports(&seed["spec"]["ports"], "port") {
        assert!(
            ours_ports.contains(&p),
            "missing port {p:?} in {ours_ports:?}"
        );
    }
    // Deliberate: members must resolve each other before they are Ready.
    assert_eq!(ours["spec"]["publishNotReadyAddresses"], true);
}

#[test]
fn pdb_matches_the_seed_on_policy_v1() {
    let ours = json(&rendered().pdb);
    let seed = seed_object("PodDisruptionBudget");
    assert_eq!(ours["metadata"]["name"], seed["metadata"]["name"]);
    assert_eq!(
        ours["spec"]["maxUnavailable"],
        seed["spec"]["maxUnavailable"]
    );
    assert_eq!(seed["apiVersion"], "policy/v1beta1");
    assert_eq!(ours["apiVersion"], "policy/v1");
}

#[test]
fn statefulset_matches_the_seed() {
    let ours = json(&rendered().statefulset);
    let seed = seed_object("StatefulSet");
    for field in ["serviceName", "replicas", "podManagementPolicy"] {
        assert_eq!(ours["spec"][field], seed["spec"][field], "{field}");
    }
    assert_eq!(ours["metadata"]["name"], seed["metadata"]["name"]);

    let (o, s) = (
        &ours["spec"]["template"]["spec"],
        &seed["spec"]["template"]["spec"],
    );
    assert_eq!(
        o["securityContext"]["runAsUser"],
        s["securityContext"]["runAsUser"]
    );
    assert_eq!(
        o["securityContext"]["fsGroup"],
        s["securityContext"]["fsGroup"]
    );

    let (oc, sc) = (&o["containers"][0], &s["containers"][0]);
    // The metrics port is a deliberate addition (see below).
    let mut ours_ports = ports(&oc["ports"], "containerPort");
    ours_ports.retain(|(name, _)| name != "metrics");
    assert_eq!(ours_ports, ports(&sc["ports"], "containerPort"));
    assert_eq!(oc["resources"]["requests"], sc["resources"]["requests"]);
    // The data volume where the seed has it; the published membership (read-only) is a
    // deliberate addition: dynamic membership (see below).
    assert_eq!(oc["volumeMounts"][0], sc["volumeMounts"][0]);
    assert_eq!(sc["volumeMounts"].as_array().unwrap().len(), 1);
    assert_eq!(oc["volumeMounts"][1]["name"], "members");
    assert_eq!(oc["volumeMounts"][1]["readOnly"], true);

    // Same program, same flags, same values, same order; passed as argv instead of `sh -c`.
    let mut ours_command: Vec<String> = serde_json::from_value(oc["command"].clone()).unwrap();
    ours_command.extend(serde_json::from_value::<Vec<String>>(oc["args"].clone()).unwrap());
    ours_command.retain(|w| !w.starts_with("--metrics_port="));
    // Deliberate, for dynamic membership: no `--servers` (the servers come from ZooKeeper's own
    // dynamic configuration, so a new size restarts nobody) but the published membership file,
    // and the configuration directory on the data volume (ZooKeeper rewrites it on reconfig).
    let mut seed_words = seed_command(sc);
    let servers = seed_words
        .iter()
        .position(|w| w.starts_with("--servers="))
        .expect("the seed passes --servers");
    seed_words[servers] = "--membership_file=/etc/zookeeper/members/boot.cfg".to_string();
    for w in &mut seed_words {
        if w.starts_with("--conf_dir=") {
            *w = "--conf_dir=/var/lib/zookeeper/conf".to_string();
        }
    }
    assert_eq!(ours_command, seed_words);

    for probe in ["readinessProbe", "livenessProbe"] {
        for timing in ["initialDelaySeconds", "timeoutSeconds"] {
            assert_eq!(oc[probe][timing], sc[probe][timing], "{probe}.{timing}");
        }
        let words: Vec<String> =
            serde_json::from_value(oc[probe]["exec"]["command"].clone()).unwrap();
        assert_eq!(
            words.first().map(String::as_str),
            Some("zookeeper-ready"),
            "{probe}"
        );
        assert_eq!(words.last().map(String::as_str), Some("2181"), "{probe}");
    }

    let (oa, sa) = (
        &o["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0],
        &s["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0],
    );
    assert_eq!(oa["topologyKey"], sa["topologyKey"]);

    let (ov, sv) = (
        &ours["spec"]["volumeClaimTemplates"][0],
        &seed["spec"]["volumeClaimTemplates"][0],
    );
    assert_eq!(ov["metadata"]["name"], sv["metadata"]["name"]);
    assert_eq!(ov["spec"]["accessModes"], sv["spec"]["accessModes"]);
    assert_eq!(ov["spec"]["resources"], sv["spec"]["resources"]);
}

#[test]
fn deliberate_differences_from_the_seed() {
    let ours = json(&rendered().statefulset);
    let seed = seed_object("StatefulSet");
    // The operator, not the StatefulSet controller, decides the restart order.
    assert_eq!(seed["spec"]["updateStrategy"]["type"], "RollingUpdate");
    assert_eq!(ours["spec"]["updateStrategy"], json!({"type": "OnDelete"}));

    // The anti-affinity selects labels the pods really carry.
    let pod_labels = &ours["spec"]["template"]["metadata"]["labels"];
    let selector = &ours["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        [0]["labelSelector"]["matchLabels"];
    for (k, v) in selector.as_object().unwrap() {
        assert_eq!(
            &pod_labels[k], v,
            "anti-affinity selects {k}={v} but pods carry {pod_labels}"
        );
    }
    let sts_selector = &ours["spec"]["selector"]["matchLabels"];
    for (k, v) in sts_selector.as_object().unwrap() {
        assert_eq!(&pod_labels[k], v);
    }

    // Four-letter words are whitelisted and negative DNS answers are not cached.
    let env = &ours["spec"]["template"]["spec"]["containers"][0]["env"];
    let jvm = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SERVER_JVMFLAGS")
        .expect("SERVER_JVMFLAGS");
    let jvm = jvm["value"].as_str().unwrap();
    assert!(
        jvm.contains("-Dzookeeper.4lw.commands.whitelist=srvr,mntr,ruok"),
        "{jvm}"
    );
    assert!(!jvm.contains("whitelist=*"), "{jvm}");
    assert!(jvm.contains("-Dsun.net.inetaddr.negative.ttl=0"), "{jvm}");

    // ZooKeeper's own Prometheus metrics are on: a flag, a container port and a port of the
    // headless Service, all at spec.ports.metrics (7000).
    let container = &ours["spec"]["template"]["spec"]["containers"][0];
    assert!(
        container["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--metrics_port=7000")),
        "{}",
        container["args"]
    );
    assert!(ports(&container["ports"], "containerPort").contains(&("metrics".into(), 7000)));
    let headless = json(&rendered().headless_service);
    assert!(ports(&headless["spec"]["ports"], "port").contains(&("metrics".into(), 7000)));

    // A restart hash is on the pod template.
    let annotations = &ours["spec"]["template"]["metadata"]["annotations"];
    assert!(annotations["zookeeper.ensemble.dev/restart-hash"].is_string());
}
