//! The Helm chart: lint, render, parse into Kubernetes types, RBAC equal to `src/rbac.rs`,
//! chart CRD equal to `crd/`, plain manifests in `config/install/` not stale.
//!
//! Needs helm (the version of `e2e/versions.env`) in the cache directory (see [`helm`]); no cluster.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{Container, Namespace, Service, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use zookeeper_operator::names;
use zookeeper_operator::rbac::{self, Scope};

#[path = "../e2e/lib/versions.rs"]
mod versions;

use versions::{HELM_VERSION, KUBE_VERSION};

const RELEASE: &str = "zk-op";
const NAMESPACE: &str = "zk-operator";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    repo().join("deploy/helm/zookeeper-operator")
}

/// helm from `$HELM`, else `${ZKOP_CACHE:-$HOME/.cache/zookeeper-operator}/bin/helm-<HELM_VERSION>/helm`,
/// built there once by `e2e/lib/build-binaries.sh helm` when it is missing.
fn helm() -> PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Some(path) = std::env::var_os("HELM") {
            return PathBuf::from(path);
        }
        let cache = std::env::var_os("ZKOP_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/zookeeper-operator")
            });
        let path = cache.join(format!("bin/helm-{HELM_VERSION}/helm"));
        if !path.is_file() {
            build_helm(&path);
        }
        path
    })
    .clone()
}

fn build_helm(path: &Path) {
    eprintln!(
        "helm {HELM_VERSION} is not at {}: building it with e2e/lib/build-binaries.sh helm (a few minutes, once)",
        path.display()
    );
    let status = Command::new("bash")
        .arg(repo().join("e2e/lib/build-binaries.sh"))
        .arg("helm")
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()) && path.is_file(),
        "could not build helm {HELM_VERSION} into {} ({status:?}); see the output above, rerun \
         e2e/lib/build-binaries.sh helm, or point $HELM at a helm binary",
        path.display(),
    );
}

fn run_helm(args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm())
        .args(args)
        .output()
        .expect("failed to run helm");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "helm {} failed:\n{stdout}\n{stderr}",
            args.join(" ")
        ))
    }
}

/// `helm template` with `--set` values; the documents as JSON values.
fn render(sets: &[&str]) -> Vec<Value> {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    parse_documents(&run_helm(&args).unwrap())
}

fn parse_documents(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("rendered YAML does not parse");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Deserialize into the typed Kubernetes object, and require that serializing it back gives the
/// same document: a misspelled or misplaced field (which serde would skip) fails here.
fn typed<T: DeserializeOwned + serde::Serialize>(doc: &Value) -> T {
    let obj: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc:#}"));
    let back = serde_json::to_value(&obj).unwrap();
    assert_eq!(
        strip_empty(back),
        strip_empty(doc.clone()),
        "the document has fields its Kubernetes type does not know"
    );
    obj
}

fn strip_empty(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, strip_empty(v)))
                .filter(|(_, v)| !v.is_null())
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_empty).collect()),
        v => v,
    }
}

/// Every rendered object, checked against its Kubernetes type.
#[derive(Default)]
struct Objects {
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    crds: Vec<CustomResourceDefinition>,
    namespaces: Vec<Namespace>,
    service_monitors: Vec<Value>,
    pod_monitors: Vec<Value>,
    prometheus_rules: Vec<Value>,
}

fn objects(docs: &[Value]) -> Objects {
    let mut o = Objects::default();
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let api_version = doc["apiVersion"].as_str().unwrap_or_default();
        match (api_version, kind) {
            ("apps/v1", "Deployment") => o.deployments.push(typed(doc)),
            ("v1", "Service") => o.services.push(typed(doc)),
            ("v1", "ServiceAccount") => o.service_accounts.push(typed(doc)),
            ("v1", "Namespace") => o.namespaces.push(typed(doc)),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => o.cluster_roles.push(typed(doc)),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                o.cluster_role_bindings.push(typed(doc))
            }
            ("rbac.authorization.k8s.io/v1", "Role") => o.roles.push(typed(doc)),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => o.role_bindings.push(typed(doc)),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => o.crds.push(typed(doc)),
            ("monitoring.coreos.com/v1", "ServiceMonitor") => o.service_monitors.push(doc.clone()),
            ("monitoring.coreos.com/v1", "PodMonitor") => o.pod_monitors.push(doc.clone()),
            ("monitoring.coreos.com/v1", "PrometheusRule") => o.prometheus_rules.push(doc.clone()),
            other => panic!("unexpected object {other:?} in the chart's output"),
        }
    }
    o
}

fn operator_container(o: &Objects) -> &Container {
    assert_eq!(o.deployments.len(), 1);
    let spec = o.deployments[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(spec.containers.len(), 1);
    &spec.containers[0]
}

fn env<'a>(c: &'a Container, name: &str) -> Option<&'a k8s_openapi::api::core::v1::EnvVar> {
    c.env.as_ref()?.iter().find(|e| e.name == name)
}

/// One RBAC permission: (where, apiGroup, resource, verb, resourceName or "*").
type Grant = (String, String, String, String, String);

fn grants(where_: &str, rules: &[PolicyRule]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for r in rules {
        let names = r.resource_names.clone().unwrap_or_default();
        let names = if names.is_empty() {
            vec!["*".to_string()]
        } else {
            names
        };
        for g in r.api_groups.clone().unwrap_or_default() {
            for res in r.resources.clone().unwrap_or_default() {
                for v in &r.verbs {
                    for n in &names {
                        out.insert((where_.into(), g.clone(), res.clone(), v.clone(), n.clone()));
                    }
                }
            }
        }
    }
    out
}

/// What the chart grants the operator's ServiceAccount: the rules of every role bound to it.
fn granted_to_operator(o: &Objects) -> BTreeSet<Grant> {
    assert_eq!(o.service_accounts.len(), 1);
    let sa = o.service_accounts[0].metadata.name.clone().unwrap();
    let is_operator = |subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
        subjects.iter().flatten().any(|s| {
            s.kind == "ServiceAccount" && s.name == sa && s.namespace.as_deref() == Some(NAMESPACE)
        })
    };
    let cluster_role = |name: &str| {
        o.cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("binding refers to missing ClusterRole {name}"))
    };
    let mut out = BTreeSet::new();
    for b in o
        .cluster_role_bindings
        .iter()
        .filter(|b| is_operator(&b.subjects))
    {
        assert_eq!(b.role_ref.kind, "ClusterRole");
        let rules = cluster_role(&b.role_ref.name)
            .rules
            .clone()
            .unwrap_or_default();
        out.extend(grants("cluster", &rules));
    }
    for b in o.role_bindings.iter().filter(|b| is_operator(&b.subjects)) {
        let ns = b
            .metadata
            .namespace
            .clone()
            .expect("RoleBinding without namespace");
        let rules = match b.role_ref.kind.as_str() {
            "Role" => o
                .roles
                .iter()
                .find(|r| {
                    r.metadata.name == Some(b.role_ref.name.clone())
                        && r.metadata.namespace.as_deref() == Some(&ns)
                })
                .unwrap_or_else(|| {
                    panic!(
                        "RoleBinding refers to missing Role {ns}/{}",
                        b.role_ref.name
                    )
                })
                .rules
                .clone()
                .unwrap_or_default(),
            _ => cluster_role(&b.role_ref.name)
                .rules
                .clone()
                .unwrap_or_default(),
        };
        out.extend(grants(&format!("namespace {ns}"), &rules));
    }
    out
}

/// What `src/rbac.rs` says the operator needs, placed as the chart should place it.
fn expected_grants(watch_namespace: Option<&str>) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in rbac::RULES {
        let where_ = match (rule.scope, watch_namespace) {
            (Scope::Cluster, _) | (Scope::Watched, None) => "cluster".to_string(),
            (Scope::Watched, Some(ns)) => format!("namespace {ns}"),
            (Scope::OperatorNamespace, _) => format!("namespace {NAMESPACE}"),
        };
        let (group, resource) = (rule.api_group.to_string(), rule.resource.to_string());
        let names: Vec<String> = if rule.resource_names.is_empty() {
            vec!["*".into()]
        } else {
            rule.resource_names.iter().map(|s| s.to_string()).collect()
        };
        for v in rule.verbs {
            for n in &names {
                out.insert((
                    where_.clone(),
                    group.clone(),
                    resource.clone(),
                    v.to_string(),
                    n.clone(),
                ));
            }
        }
    }
    out
}

fn assert_rbac_matches(o: &Objects, watch_namespace: Option<&str>) {
    let got = granted_to_operator(o);
    let want = expected_grants(watch_namespace);
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the chart's RBAC differs from src/rbac.rs (watchNamespace {watch_namespace:?})\n\
         missing from the chart: {missing:#?}\nnot in src/rbac.rs: {extra:#?}\n\
         edit deploy/helm/zookeeper-operator/templates/_helpers.tpl to match src/rbac.rs"
    );
}

#[test]
fn lint_is_clean() {
    let chart = chart_dir();
    for sets in [
        vec![],
        vec!["--set", "watchNamespace=apps"],
        vec![
            "--set",
            "replicaCount=2",
            "--set",
            "serviceMonitor.enabled=true",
        ],
    ] {
        let mut args = vec![
            "lint",
            "--strict",
            "--kube-version",
            KUBE_VERSION,
            chart.to_str().unwrap(),
        ];
        args.extend(sets.iter().copied());
        let out = run_helm(&args).unwrap();
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{out}"
        );
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "{out}"
        );
    }
}

#[test]
fn default_install_is_least_privilege_and_hardened() {
    let o = objects(&render(&[]));
    assert_rbac_matches(&o, None);

    let d = &o.deployments[0];
    assert_eq!(d.metadata.namespace.as_deref(), Some(NAMESPACE));
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    let pod = spec.template.spec.as_ref().unwrap();
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert!(psc.run_as_user.is_some_and(|u| u != 0));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    assert_eq!(
        pod.service_account_name,
        o.service_accounts[0].metadata.name
    );

    let c = operator_container(&o);
    assert_eq!(
        c.image,
        Some(format!(
            "zookeeper-operator/operator:{}",
            versions::OPERATOR_VERSION
        )),
        "the chart's default image is the one e2e/images builds"
    );
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );

    let args = c.args.clone().unwrap();
    assert_eq!(args[0], "run");
    for a in [
        "--log-format=plain",
        "--metrics-addr=0.0.0.0:8080",
        "--leader-elect",
    ] {
        assert!(args.contains(&a.to_string()), "{a} missing from {args:?}");
    }
    assert!(args.contains(&format!("--leader-election-namespace={NAMESPACE}")));
    assert_eq!(
        env(c, "RUST_LOG").unwrap().value.as_deref(),
        Some("info,zookeeper_client=warn")
    );
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let from = env(c, name).unwrap().value_from.as_ref().unwrap();
        assert_eq!(from.field_ref.as_ref().unwrap().field_path, field);
    }
    assert!(
        env(c, "ZKOP_NAMESPACE").is_none(),
        "all namespaces by default"
    );

    // Probes and the metrics Service use the port the operator listens on.
    let port = &c.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("metrics"), 8080)
    );
    let live = c
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    let ready = c
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(live.path.as_deref(), Some("/healthz"));
    assert_eq!(ready.path.as_deref(), Some("/readyz"));
    let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
    let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
    for key in ["cpu", "memory"] {
        assert!(
            requests.contains_key(key) && limits.contains_key(key),
            "{key} request and limit"
        );
    }

    assert_eq!(o.services.len(), 1);
    let svc = o.services[0].spec.as_ref().unwrap();
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    for (k, v) in svc.selector.as_ref().unwrap() {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "Service selector {k} must match the pod"
        );
    }
    for (k, v) in spec.selector.match_labels.as_ref().unwrap() {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "Deployment selector {k} must match the pod"
        );
    }
    assert!(o.service_monitors.is_empty());
    assert!(
        o.crds.is_empty(),
        "helm template without --include-crds renders no CRD"
    );
}

#[test]
fn watch_namespace_mode_uses_a_role_in_that_namespace() {
    let o = objects(&render(&["watchNamespace=apps"]));
    assert_rbac_matches(&o, Some("apps"));
    let c = operator_container(&o);
    assert_eq!(
        env(c, "ZKOP_NAMESPACE").unwrap().value.as_deref(),
        Some("apps")
    );
    // The only ClusterRole bound to the operator reads one CRD by name.
    let cluster: Vec<_> = granted_to_operator(&o)
        .into_iter()
        .filter(|g| g.0 == "cluster")
        .collect();
    assert_eq!(
        cluster,
        vec![(
            "cluster".to_string(),
            "apiextensions.k8s.io".to_string(),
            "customresourcedefinitions".to_string(),
            "get".to_string(),
            rbac::CRD_NAME.to_string()
        )]
    );
}

#[test]
fn two_replicas_elect_a_leader() {
    let o = objects(&render(&[
        "replicaCount=2",
        "serviceMonitor.enabled=true",
        "logFormat=json",
        "logLevel=debug",
    ]));
    assert_rbac_matches(&o, None);
    assert_eq!(o.deployments[0].spec.as_ref().unwrap().replicas, Some(2));
    let c = operator_container(&o);
    let args = c.args.clone().unwrap();
    assert!(args.contains(&"--leader-elect".to_string()));
    assert!(args.contains(&"--log-format=json".to_string()));
    assert_eq!(env(c, "RUST_LOG").unwrap().value.as_deref(), Some("debug"));
    assert_eq!(o.service_monitors.len(), 1);
    assert_eq!(
        o.service_monitors[0]["spec"]["endpoints"][0]["port"],
        "metrics"
    );

    // Several replicas without a Lease would all reconcile: the chart refuses.
    let chart = chart_dir();
    let err = run_helm(&[
        "template",
        RELEASE,
        chart.to_str().unwrap(),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "replicaCount=2",
        "--set",
        "leaderElection.enabled=false",
    ])
    .unwrap_err();
    assert!(err.contains("needs leaderElection.enabled=true"), "{err}");
}

/// The members' PodMonitor and the alert rules: rendered only when asked and when the cluster
/// serves monitoring.coreos.com/v1; they scrape the port the operator renders, with the labels
/// the rules of deploy/monitoring join on, and the rules are those of deploy/monitoring. They
/// need no permission of the operator.
#[test]
fn monitoring_objects_only_when_asked_and_served() {
    let chart = chart_dir();
    let template = |extra: &[&str]| {
        let mut args = vec![
            "template",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            NAMESPACE,
            "--kube-version",
            KUBE_VERSION,
        ];
        args.extend(extra);
        objects(&parse_documents(&run_helm(&args).unwrap()))
    };
    let served = ["--api-versions", "monitoring.coreos.com/v1"];
    let asked = [
        "--set",
        "monitoring.podMonitor.enabled=true",
        "--set",
        "monitoring.prometheusRule.enabled=true",
        "--set",
        "monitoring.podMonitor.labels.release=kube-prometheus",
    ];
    for o in [template(&served), template(&asked)] {
        assert!(o.pod_monitors.is_empty() && o.prometheus_rules.is_empty());
    }

    let o = template(&[&asked[..], &served[..]].concat());
    assert_rbac_matches(&o, None);
    assert_eq!(o.pod_monitors.len(), 1);
    let pm = &o.pod_monitors[0];
    assert_eq!(pm["metadata"]["labels"]["release"], "kube-prometheus");
    assert_eq!(
        pm["spec"]["namespaceSelector"],
        serde_json::json!({"any": true})
    );
    // The labels the operator puts on every member pod.
    let selector = &pm["spec"]["selector"]["matchLabels"];
    assert_eq!(selector[names::NAME_LABEL], names::APP_NAME);
    assert_eq!(selector[names::MANAGED_BY_LABEL], names::MANAGER);
    assert_eq!(pm["spec"]["jobLabel"], names::NAME_LABEL);
    let endpoint = &pm["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], names::METRICS_PORT);
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["relabelings"][0]["targetLabel"], "cluster");
    assert_eq!(
        endpoint["relabelings"][0]["sourceLabels"][0],
        format!(
            "__meta_kubernetes_pod_label_{}",
            names::INSTANCE_LABEL.replace(['.', '/'], "_")
        )
    );

    assert_eq!(o.prometheus_rules.len(), 1);
    let source: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("deploy/monitoring/zookeeper-rules.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(o.prometheus_rules[0]["spec"]["groups"], source["groups"]);
    let alerts = source["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .count();
    assert_eq!(alerts, 12);

    // Watching one namespace: the PodMonitor looks there only.
    let o = template(&[&asked[..], &served[..], &["--set", "watchNamespace=apps"]].concat());
    assert_eq!(
        o.pod_monitors[0]["spec"]["namespaceSelector"],
        serde_json::json!({"matchNames": ["apps"]})
    );
}

#[test]
fn without_leader_election_no_lease_permissions() {
    let o = objects(&render(&["leaderElection.enabled=false"]));
    // Nothing else keeps an old and a new operator pod from acting at once during an upgrade.
    let strategy = o.deployments[0]
        .spec
        .as_ref()
        .unwrap()
        .strategy
        .clone()
        .unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("Recreate"));
    let with = objects(&render(&[]));
    let strategy = with.deployments[0]
        .spec
        .as_ref()
        .unwrap()
        .strategy
        .clone()
        .unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let got = granted_to_operator(&o);
    assert!(got.iter().all(|g| g.2 != "leases"), "{got:#?}");
    assert!(
        !operator_container(&o)
            .args
            .clone()
            .unwrap()
            .contains(&"--leader-elect".to_string())
    );
}

fn crd_source() -> String {
    let path = repo().join("crd/zookeeperclusters.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it with `cargo run -- crd > crd/zookeeperclusters.yaml`",
            path.display()
        )
    })
}

#[test]
fn chart_crd_equals_crd_dir() {
    let source = crd_source();
    let chart_crd = chart_dir().join("crds/zookeeperclusters.yaml");
    let copy = std::fs::read_to_string(&chart_crd).unwrap_or_default();
    assert!(
        copy == source,
        "{} differs from crd/zookeeperclusters.yaml; run e2e/lib/render-install-manifests.sh",
        chart_crd.display()
    );
    let crd: CustomResourceDefinition = typed(&parse_documents(&copy)[0]);
    assert_eq!(crd.metadata.name.as_deref(), Some(rbac::CRD_NAME));
}

#[test]
fn plain_install_manifests_are_up_to_date() {
    crd_source();
    let script = repo().join("e2e/lib/render-install-manifests.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--check")
        .env("HELM", helm())
        .output()
        .expect("failed to run bash");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let text =
        std::fs::read_to_string(repo().join("config/install/zookeeper-operator.yaml")).unwrap();
    let o = objects(&parse_documents(&text));
    assert_eq!(o.namespaces.len(), 1);
    let ns = o.namespaces[0].metadata.name.clone().unwrap();
    assert_eq!(o.crds.len(), 1);
    assert_eq!(o.crds[0].metadata.name.as_deref(), Some(rbac::CRD_NAME));
    // Every namespaced object lands in the namespace the file creates.
    let namespaced = o
        .deployments
        .iter()
        .map(|d| &d.metadata)
        .chain(o.services.iter().map(|s| &s.metadata))
        .chain(o.service_accounts.iter().map(|s| &s.metadata))
        .chain(o.roles.iter().map(|r| &r.metadata));
    let mut by_ns: BTreeMap<String, usize> = BTreeMap::new();
    for m in namespaced {
        *by_ns
            .entry(m.namespace.clone().unwrap_or_default())
            .or_default() += 1;
    }
    assert_eq!(by_ns.keys().collect::<Vec<_>>(), vec![&ns], "{by_ns:?}");
}

/// `e2e/versions.env` is the one list of pinned versions: the shell reads it through
/// `e2e/lib/common.sh`, Rust through `e2e/lib/versions.rs`. Files that cannot read it keep a
/// copy (Go modules, Cargo's package version, the CRD's default image, ...): all must agree.
#[test]
fn versions_agree_everywhere() {
    let mut keys = Vec::new();
    for line in versions::FILE.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("e2e/versions.env: not a KEY=VALUE line: {line:?}"));
        assert!(
            !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_+".contains(c)),
            "e2e/versions.env: {key}={value:?} is not a plain value that shell and Rust read alike"
        );
        keys.push(key);
    }
    let known: Vec<&str> = versions::ALL.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys, known,
        "e2e/versions.env and e2e/lib/versions.rs list other keys"
    );

    // What the e2e scripts see after sourcing common.sh.
    let script = format!(
        "source e2e/lib/common.sh && printf '%s\\n' {}",
        known
            .iter()
            .map(|k| format!("\"${k}\""))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(repo())
        .output()
        .expect("failed to run bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shell: Vec<(&str, String)> = known
        .iter()
        .copied()
        .zip(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(String::from),
        )
        .collect();
    let rust: Vec<(&str, String)> = versions::ALL
        .iter()
        .map(|(k, v)| (*k, v.to_string()))
        .collect();
    assert_eq!(
        shell, rust,
        "e2e/lib/common.sh and e2e/lib/versions.rs disagree"
    );

    // Copies in files that cannot read e2e/versions.env.
    let copies = [
        (
            "e2e/tools/kubernetes/go.mod",
            format!("require k8s.io/kubernetes {KUBE_VERSION}\n"),
        ),
        (
            "e2e/tools/kubernetes/gen-go-mod.sh",
            format!("KUBE_VERSION=${{1:-{KUBE_VERSION}}}\n"),
        ),
        (
            "e2e/tools/etcd/go.mod",
            format!(
                "require go.etcd.io/etcd/server/v3 {}\n",
                versions::ETCD_VERSION
            ),
        ),
        (
            "e2e/tools/prometheus/go.mod",
            format!(
                "require github.com/prometheus/prometheus {}\n",
                versions::PROMETHEUS_VERSION
            ),
        ),
        (
            "e2e/tools/kube-router/go.mod",
            format!(
                "require github.com/cloudnativelabs/kube-router/v2 {}\n",
                versions::KUBE_ROUTER_VERSION
            ),
        ),
        (
            "e2e/tools/cert-manager/go.mod",
            format!(
                "require github.com/cert-manager/cert-manager {}\n",
                versions::CERT_MANAGER_VERSION
            ),
        ),
        (
            "deploy/helm/zookeeper-operator/Chart.yaml",
            format!("appVersion: \"{}\"\n", versions::OPERATOR_VERSION),
        ),
    ];
    for (file, line) in copies {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        assert!(
            text.contains(&line),
            "{file} does not contain {line:?}: update it to the version of e2e/versions.env"
        );
    }
    assert_eq!(
        env!("CARGO_PKG_VERSION"),
        versions::OPERATOR_VERSION,
        "Cargo.toml's version is the operator image's tag"
    );
    assert_eq!(
        zookeeper_operator::crd::DEFAULT_IMAGE,
        format!(
            "zookeeper-operator/zookeeper:{}",
            versions::ZOOKEEPER_VERSION
        ),
        "src/crd.rs's default image is the one e2e/images builds"
    );
    // The documentation names the current versions.
    let docs = [
        ("e2e/README.md", format!("Kubernetes {KUBE_VERSION}")),
        ("e2e/README.md", format!("etcd {}", versions::ETCD_VERSION)),
        (
            "e2e/README.md",
            format!("CoreDNS {}", versions::COREDNS_VERSION),
        ),
        ("e2e/README.md", format!("helm {HELM_VERSION}")),
        (
            "e2e/README.md",
            format!("pause:{}", versions::PAUSE_VERSION),
        ),
        (
            "e2e/README.md",
            format!("zookeeper:{}", versions::ZOOKEEPER_VERSION),
        ),
        (
            "e2e/README.md",
            format!("operator:{}", versions::OPERATOR_VERSION),
        ),
        ("README.md", format!("Kubernetes {KUBE_VERSION}")),
    ];
    for (file, mention) in docs {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        assert!(
            text.contains(&mention),
            "{file} does not mention {mention:?}: update it to e2e/versions.env"
        );
    }
    // tests/support/ (the real-ZooKeeper tests) names the version it runs, in each of its files.
    for entry in std::fs::read_dir(repo().join("tests/support")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for rest in text.split("const VERSION: &str = \"").skip(1) {
            let copy = rest.split('"').next().unwrap();
            assert_eq!(
                copy,
                versions::ZOOKEEPER_VERSION,
                "{} runs another ZooKeeper than e2e/versions.env pins",
                path.display()
            );
        }
    }
}

/// Every key of values.yaml has a comment right above it. A section (a key whose next line is a
/// comment) has its keys checked one by one; a documented key's own block value (an example such
/// as the security contexts) is covered by that key's comment.
#[test]
fn values_are_documented_key_by_key() {
    let text = std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let is_comment = |l: &str| l.trim_start().starts_with('#');
    let mut stack: Vec<(usize, bool)> = Vec::new(); // (indent of a block key, its children are exempt)
    let mut undocumented = Vec::new();
    let mut keys = 0;
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty()
            || is_comment(line)
            || trimmed.starts_with('-')
            || !trimmed.contains(':')
        {
            continue;
        }
        let indent = line.len() - trimmed.len();
        while stack.last().is_some_and(|(n, _)| *n >= indent) {
            stack.pop();
        }
        let exempt = stack.last().is_some_and(|(_, e)| *e);
        let commented_above = i > 0 && is_comment(lines[i - 1]);
        let block = trimmed.ends_with(':');
        let section = block && lines.get(i + 1).is_some_and(|l| is_comment(l));
        if !exempt {
            keys += 1;
            if !commented_above && !section {
                undocumented.push(format!("line {}: {line}", i + 1));
            }
        }
        if block {
            stack.push((indent, exempt || commented_above));
        }
    }
    assert!(
        keys > 30,
        "only {keys} keys found: is the parser above still right?"
    );
    assert!(
        undocumented.is_empty(),
        "values.yaml keys without a comment above them:\n{}",
        undocumented.join("\n")
    );
}

#[test]
fn values_schema_rejects_typos_and_bad_values() {
    let chart = chart_dir();
    for (set, expected) in [
        ("watchNamespaces=apps", "watchNamespaces"),
        ("logFormat=xml", "/logFormat"),
        (
            "leaderElection.leaseDuration=1500ms",
            "/leaderElection/leaseDuration",
        ),
    ] {
        let err =
            run_helm(&["template", RELEASE, chart.to_str().unwrap(), "--set", set]).unwrap_err();
        assert!(err.contains(expected), "--set {set}: {err}");
    }
}

/// The arguments the chart passes are ones `zookeeper-operator` accepts (clap parses every
/// argument before it acts on the final `--help`, so an unknown flag or a bad value fails here).
#[test]
fn the_binary_accepts_the_chart_arguments() {
    for sets in [
        vec![],
        vec!["watchNamespace=apps", "logFormat=json"],
        vec![
            "replicaCount=2",
            "leaderElection.leaseDuration=20s",
            "leaderElection.retryPeriod=500ms",
        ],
        vec!["leaderElection.enabled=false"],
    ] {
        let o = objects(&render(&sets));
        let c = operator_container(&o);
        let mut args = c.args.clone().unwrap();
        args.push("--help".into());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zookeeper-operator"));
        cmd.args(&args);
        for e in c.env.iter().flatten() {
            if let Some(v) = &e.value {
                cmd.env(&e.name, v);
            }
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "zookeeper-operator {} failed with --set {sets:?}:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
