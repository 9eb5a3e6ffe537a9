//! Rendering: a [`ValidatedCluster`] becomes the objects the operator owns. Pure.

pub mod args;
pub mod labels;
pub mod members;
pub mod netpol;
pub mod pdb;
pub mod services;
pub mod statefulset;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::validate::ValidatedCluster;
pub use members::Members;

/// Every object one cluster owns. The apply step destructures it without `..`, so an object added
/// here and never applied fails to compile.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObjects {
    pub headless_service: Service,
    pub client_service: Service,
    pub pdb: PodDisruptionBudget,
    pub members: ConfigMap,
    pub network_policy: NetworkPolicy,
    pub statefulset: StatefulSet,
}

/// Renders every owned object of a new cluster (all members boot together; no super user; no
/// operator namespace in the NetworkPolicy): `owner` is the cluster's controller reference (None
/// offline).
pub fn render(v: &ValidatedCluster, owner: Option<&OwnerReference>) -> DesiredObjects {
    render_with(v, &Members::initial(v, None), None, owner)
}

/// Renders every owned object for the membership the controller decided; `operator_namespace`
/// is where the operator runs (the NetworkPolicy admits its probes from there).
pub fn render_with(
    v: &ValidatedCluster,
    members: &Members,
    operator_namespace: Option<&str>,
    owner: Option<&OwnerReference>,
) -> DesiredObjects {
    DesiredObjects {
        headless_service: services::headless(v, members.services_select_in_service, owner),
        client_service: services::client(v, members.services_select_in_service, owner),
        pdb: pdb::pdb(v, owner),
        members: members::configmap(v, members, owner),
        network_policy: netpol::network_policy(v, operator_namespace, owner),
        statefulset: statefulset::statefulset(v, members, owner),
    }
}

impl DesiredObjects {
    /// The objects as one YAML stream, in apply order (StatefulSet last).
    pub fn to_yaml(&self) -> Result<String, serde_saphyr::SerializeError> {
        let DesiredObjects {
            headless_service,
            client_service,
            pdb,
            members,
            network_policy,
            statefulset,
        } = self;
        let docs = [
            with_type(headless_service),
            with_type(client_service),
            with_type(pdb),
            with_type(members),
            with_type(network_policy),
            with_type(statefulset),
        ];
        let mut out = String::new();
        for doc in docs {
            out.push_str("---\n");
            out.push_str(&serde_saphyr::to_string(&doc)?);
        }
        Ok(out)
    }
}

/// k8s-openapi types serialize `apiVersion`/`kind` themselves; this just orders them first.
fn with_type<T: serde::Serialize>(obj: &T) -> serde_json::Value {
    serde_json::to_value(obj).expect("k8s objects serialize to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ZookeeperCluster;
    use crate::names::RESTART_HASH_ANNOTATION;
    use crate::validate::validate;

    fn validated(spec: serde_json::Value) -> ValidatedCluster {
        let zk: ZookeeperCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
            "kind": "ZookeeperCluster",
            "metadata": {"name": "zk", "namespace": "ns", "uid": "u-1"},
            "spec": spec,
        }))
        .unwrap();
        validate(&zk).unwrap()
    }

    fn rendered(spec: serde_json::Value) -> DesiredObjects {
        render(&validated(spec), None)
    }

    #[test]
    fn services_select_members_in_service_once_every_pod_carries_the_label() {
        use crate::names::{IN_SERVICE, IN_SERVICE_LABEL, SERVICES_SELECT_IN_SERVICE_ANNOTATION};
        use members::services_select_in_service;
        let in_service = |o: &k8s_openapi::api::core::v1::Service| {
            let selector = o.spec.as_ref().unwrap().selector.clone().unwrap();
            selector.get(IN_SERVICE_LABEL).map(String::as_str) == Some(IN_SERVICE)
        };
        // A new cluster: the pods carry the label from the start, the Services select by it.
        let d = rendered(serde_json::json!({}));
        let template = d.statefulset.spec.clone().unwrap().template;
        let labels = template.metadata.unwrap().labels.unwrap();
        assert_eq!(
            labels.get(IN_SERVICE_LABEL).map(String::as_str),
            Some(IN_SERVICE)
        );
        assert!(in_service(&d.headless_service) && in_service(&d.client_service));
        // Neither the StatefulSet's selector nor the PDB's: the member being evicted is still
        // counted by the PDB and owned by its StatefulSet.
        let sts_selector = d
            .statefulset
            .spec
            .clone()
            .unwrap()
            .selector
            .match_labels
            .unwrap();
        assert!(!sts_selector.contains_key(IN_SERVICE_LABEL));
        let pdb_selector = d
            .pdb
            .spec
            .clone()
            .unwrap()
            .selector
            .unwrap()
            .match_labels
            .unwrap();
        assert!(!pdb_selector.contains_key(IN_SERVICE_LABEL));

        // A StatefulSet of an operator that did not know the label: not until it rolled.
        let mut sts = d.statefulset.clone();
        sts.metadata.annotations = None;
        sts.metadata.generation = Some(4);
        let mut old_template = sts.spec.clone().unwrap();
        old_template
            .template
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .remove(IN_SERVICE_LABEL);
        let status = |observed: i64, updated: i32| {
            Some(k8s_openapi::api::apps::v1::StatefulSetStatus {
                observed_generation: Some(observed),
                replicas: 3,
                updated_replicas: Some(updated),
                ..Default::default()
            })
        };
        let mut old = sts.clone();
        old.spec = Some(old_template);
        old.status = status(4, 3);
        assert!(
            !services_select_in_service(&old),
            "template without the label"
        );
        sts.status = status(4, 2);
        assert!(
            !services_select_in_service(&sts),
            "one pod still runs the old template"
        );
        sts.status = status(3, 3);
        assert!(
            !services_select_in_service(&sts),
            "the new template not observed yet"
        );
        sts.status = status(4, 3);
        assert!(
            services_select_in_service(&sts),
            "every pod runs the labelled template"
        );
        // Once annotated, it stays so, even in the middle of the next rollout.
        sts.metadata.annotations = Some(std::collections::BTreeMap::from([(
            SERVICES_SELECT_IN_SERVICE_ANNOTATION.to_string(),
            IN_SERVICE.to_string(),
        )]));
        sts.status = status(4, 0);
        assert!(services_select_in_service(&sts));
        assert_eq!(
            d.statefulset.metadata.annotations.unwrap()[SERVICES_SELECT_IN_SERVICE_ANNOTATION],
            IN_SERVICE
        );
        // Rendered without it: the Services select every member, the StatefulSet is not marked.
        let v = validated(serde_json::json!({}));
        let mut m = Members::initial(&v, None);
        m.services_select_in_service = false;
        let d = render_with(&v, &m, None, None);
        assert!(!in_service(&d.headless_service) && !in_service(&d.client_service));
        assert!(d.statefulset.metadata.annotations.is_none());
    }

    fn hash(d: &DesiredObjects) -> String {
        let sts = d.statefulset.spec.as_ref().unwrap();
        sts.template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[RESTART_HASH_ANNOTATION]
            .clone()
    }

    fn pod(d: &DesiredObjects) -> &k8s_openapi::api::core::v1::PodSpec {
        let sts = d.statefulset.spec.as_ref().unwrap();
        sts.template.spec.as_ref().unwrap()
    }

    fn args(d: &DesiredObjects) -> Vec<String> {
        pod(d).containers[0].args.clone().unwrap()
    }

    #[test]
    fn quorum_auth_mounts_the_quorum_password_and_passes_the_flag() {
        let plain = rendered(serde_json::json!({}));
        assert!(!args(&plain).iter().any(|a| a.contains("quorum_auth")));
        assert!(
            !pod(&plain)
                .volumes
                .as_ref()
                .unwrap()
                .iter()
                .any(|v| v.name == "quorum-auth")
        );
        let on = rendered(serde_json::json!({"quorumAuth": {"enabled": true}}));
        assert_eq!(
            args(&on).last().map(String::as_str),
            Some("--quorum_auth_dir=/etc/zookeeper/quorum-auth")
        );
        let volume = pod(&on)
            .volumes
            .clone()
            .unwrap()
            .into_iter()
            .find(|v| v.name == "quorum-auth")
            .expect("the quorum Secret's volume");
        let secret = volume.secret.unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("zk-quorum-auth"));
        assert_eq!(secret.default_mode, Some(0o440));
        let mount = pod(&on).containers[0]
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .find(|m| m.name == "quorum-auth")
            .expect("the quorum Secret's mount");
        assert_eq!(mount.mount_path, "/etc/zookeeper/quorum-auth");
        assert_eq!(mount.read_only, Some(true));
    }

    #[test]
    fn client_auth_mounts_both_secrets_and_passes_the_flags() {
        let plain = rendered(serde_json::json!({}));
        assert!(
            !args(&plain)
                .iter()
                .any(|a| a.contains("client_auth") || a.contains("super_user"))
        );
        let on =
            rendered(serde_json::json!({"clientAuth": {"enabled": true, "secretName": "users"}}));
        let a = args(&on);
        let tail: Vec<&str> = a[a.len() - 3..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "--client_auth_dir=/etc/zookeeper/client-auth/users",
                "--client_auth_dir=/etc/zookeeper/client-auth/operator",
                "--super_user=zookeeper-operator",
            ]
        );
        let volumes: Vec<(String, String, Option<i32>)> = pod(&on)
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .filter_map(|v| {
                let s = v.secret.as_ref()?;
                Some((v.name.clone(), s.secret_name.clone()?, s.default_mode))
            })
            .collect();
        assert_eq!(
            volumes,
            [
                (
                    "client-auth-users".to_string(),
                    "users".to_string(),
                    Some(0o440)
                ),
                (
                    "client-auth-operator".to_string(),
                    "zk-operator-auth".to_string(),
                    Some(0o440)
                ),
            ]
        );
        let mounts: Vec<(String, String, Option<bool>)> = pod(&on).containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .filter(|m| m.name.starts_with("client-auth"))
            .map(|m| (m.name.clone(), m.mount_path.clone(), m.read_only))
            .collect();
        assert_eq!(
            mounts,
            [
                (
                    "client-auth-users".to_string(),
                    "/etc/zookeeper/client-auth/users".to_string(),
                    Some(true)
                ),
                (
                    "client-auth-operator".to_string(),
                    "/etc/zookeeper/client-auth/operator".to_string(),
                    Some(true)
                ),
            ]
        );
        // The pod template changes, so turning it on (a new cluster) or another users' Secret
        // rolls the members.
        assert_ne!(hash(&plain), hash(&on));
        let other =
            rendered(serde_json::json!({"clientAuth": {"enabled": true, "secretName": "users-2"}}));
        assert_ne!(hash(&on), hash(&other));
        // A changed users' Secret (its hash, recorded by the reconcile) rolls them too.
        let mut a = on.clone();
        let mut b = on.clone();
        crate::render::statefulset::set_template_hash(
            &mut a.statefulset,
            crate::client_auth::USERS_HASH_ANNOTATION,
            "1111",
        );
        crate::render::statefulset::set_template_hash(
            &mut b.statefulset,
            crate::client_auth::USERS_HASH_ANNOTATION,
            "2222",
        );
        assert_ne!(hash(&a), hash(&b));
        assert_ne!(hash(&a), hash(&on));
    }

    #[test]
    fn members_use_the_domain_the_operator_probes() {
        let d = rendered(serde_json::json!({"clusterDomain": "corp.example"}));
        let env = pod(&d).containers[0].env.as_ref().unwrap();
        let domain = env.iter().find(|e| e.name == "ZK_DOMAIN").unwrap();
        assert_eq!(domain.value.as_deref(), Some("zk-hs.ns.svc.corp.example"));
        let probed = crate::names::member_host("zk", 1, "ns", "corp.example");
        assert_eq!(probed, format!("zk-1.{}", domain.value.as_deref().unwrap()));
    }

    #[test]
    fn restart_hash_is_stable_and_follows_restart_relevant_changes() {
        let base = rendered(serde_json::json!({}));
        assert_eq!(hash(&base), hash(&rendered(serde_json::json!({}))));
        for change in [
            serde_json::json!({"config": {"tickTime": 3000}}),
            serde_json::json!({"image": "zookeeper-operator/zookeeper:3.9.6"}),
            serde_json::json!({"resources": {"limits": {"memory": "2Gi"}}}),
            serde_json::json!({"zoneSpread": {}}),
        ] {
            assert_ne!(hash(&base), hash(&rendered(change.clone())), "{change}");
        }
        // Membership changes through reconfiguration: a new size restarts nobody.
        assert_eq!(
            hash(&base),
            hash(&rendered(serde_json::json!({"replicas": 5})))
        );
        // PDB and canary settings do not restart anything.
        let five = rendered(serde_json::json!({"replicas": 5}));
        let five_pdb = rendered(serde_json::json!({"replicas": 5, "pdb": {"maxUnavailable": 2}}));
        assert_eq!(hash(&five), hash(&five_pdb));
        let canary = serde_json::json!({"updateStrategy": {"partition": 2, "paused": true}});
        assert_eq!(hash(&base), hash(&rendered(canary)));
    }

    #[test]
    fn heap_flag_follows_the_memory_limit() {
        let d = rendered(serde_json::json!({"resources": {"limits": {"memory": "8Gi"}}}));
        assert!(
            args(&d).contains(&"--heap=4G".to_string()),
            "{:?}",
            args(&d)
        );
    }

    #[test]
    fn pdb_follows_the_spec() {
        let d = rendered(serde_json::json!({"replicas": 5, "pdb": {"maxUnavailable": 2}}));
        let spec = d.pdb.spec.unwrap();
        assert_eq!(
            spec.max_unavailable,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2))
        );
    }

    #[test]
    fn readiness_checks_quorum_membership_with_parallel_pods() {
        let d = rendered(serde_json::json!({}));
        let pod = d.statefulset.spec.unwrap().template.spec.unwrap();
        let c = &pod.containers[0];
        let readiness = c.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
        let liveness = c.liveness_probe.as_ref().unwrap().exec.as_ref().unwrap();
        assert_eq!(
            readiness.command.as_deref().unwrap(),
            ["zookeeper-ready", "--quorum", "2181"]
        );
        assert_eq!(
            liveness.command.as_deref().unwrap(),
            ["zookeeper-ready", "--liveness", "2181"]
        );
        // OrderedReady: quorum-aware too, except for a member starting while no peer serves.
        let d = rendered(serde_json::json!({"podManagementPolicy": "OrderedReady"}));
        let pod = d.statefulset.spec.unwrap().template.spec.unwrap();
        let readiness = pod.containers[0]
            .readiness_probe
            .clone()
            .unwrap()
            .exec
            .unwrap();
        assert_eq!(
            readiness.command.as_deref().unwrap(),
            ["zookeeper-ready", "--quorum-or-alone", "2181"]
        );
    }

    #[test]
    fn members_meet_the_restricted_pod_security_profile() {
        let d = rendered(serde_json::json!({}));
        let pod = pod(&d);
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            Some("RuntimeDefault")
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        let sc = pod.containers[0].security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()])
        );
        assert!(sc.privileged.is_none() && sc.run_as_user.is_none());
    }

    #[test]
    fn anti_affinity_modes() {
        let none = rendered(serde_json::json!({"antiAffinity": "none"}));
        let pod = none.statefulset.spec.unwrap().template.spec.unwrap();
        assert!(pod.affinity.is_none());
        let preferred = rendered(serde_json::json!({"antiAffinity": "preferred"}));
        let pod = preferred.statefulset.spec.unwrap().template.spec.unwrap();
        let anti = pod.affinity.unwrap().pod_anti_affinity.unwrap();
        assert!(
            anti.required_during_scheduling_ignored_during_execution
                .is_none()
        );
        assert_eq!(
            anti.preferred_during_scheduling_ignored_during_execution
                .unwrap()[0]
                .pod_affinity_term
                .topology_key,
            "kubernetes.io/hostname"
        );
    }

    #[test]
    fn zone_spread_modes() {
        use k8s_openapi::api::core::v1::TopologySpreadConstraint;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

        let spread = |spec: serde_json::Value| -> Option<Vec<TopologySpreadConstraint>> {
            pod(&rendered(spec)).topology_spread_constraints.clone()
        };
        let selector = Some(LabelSelector {
            match_labels: Some(labels::selector_labels("zk")),
            ..Default::default()
        });
        // Absent: no constraint, whatever the anti-affinity.
        assert_eq!(spread(serde_json::json!({})), None);
        assert_eq!(spread(serde_json::json!({"antiAffinity": "none"})), None);
        // Present but empty: the defaults.
        assert_eq!(
            spread(serde_json::json!({"zoneSpread": {}})),
            Some(vec![TopologySpreadConstraint {
                topology_key: "topology.kubernetes.io/zone".into(),
                max_skew: 1,
                when_unsatisfiable: "DoNotSchedule".into(),
                label_selector: selector.clone(),
                ..Default::default()
            }])
        );
        // Explicit values, next to the host anti-affinity, which stays as it was.
        let d = rendered(serde_json::json!({"zoneSpread": {
            "topologyKey": "example.com/rack",
            "maxSkew": 2,
            "whenUnsatisfiable": "ScheduleAnyway"
        }}));
        let pod = pod(&d);
        assert_eq!(
            pod.topology_spread_constraints,
            Some(vec![TopologySpreadConstraint {
                topology_key: "example.com/rack".into(),
                max_skew: 2,
                when_unsatisfiable: "ScheduleAnyway".into(),
                label_selector: selector,
                ..Default::default()
            }])
        );
        let anti = pod.affinity.as_ref().unwrap().pod_anti_affinity.as_ref();
        assert!(
            anti.unwrap()
                .required_during_scheduling_ignored_during_execution
                .is_some()
        );
        // Members of every revision count together: no matchLabelKeys.
        let c = &pod.topology_spread_constraints.as_ref().unwrap()[0];
        assert!(c.match_label_keys.is_none() && c.min_domains.is_none());
    }

    #[test]
    fn yaml_stream_lists_every_object_in_apply_order() {
        let yaml = rendered(serde_json::json!({})).to_yaml().unwrap();
        let kinds: Vec<_> = yaml
            .lines()
            .filter_map(|l| l.strip_prefix("kind: "))
            .collect();
        assert_eq!(
            kinds,
            [
                "Service",
                "Service",
                "PodDisruptionBudget",
                "ConfigMap",
                "NetworkPolicy",
                "StatefulSet"
            ]
        );
    }
}
