//! The StatefulSet: one pod per member, `OnDelete` so the operator decides the restart order.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, ExecAction, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretVolumeSource, SecurityContext, TopologySpreadConstraint, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

use super::args::{DATA_MOUNT, MEMBERS_DIR, server_jvm_flags, start_zookeeper};
use super::labels::{labels, object_meta, selector_labels};
use super::members::Members;
use crate::crd::{AntiAffinity, PodManagementPolicy, ProbeTiming};
use crate::names::{self, RESTART_HASH_ANNOTATION};
use crate::validate::ValidatedCluster;

/// Name of the volume claim template (and so of each member's PVC prefix).
pub const DATA_VOLUME: &str = "datadir";
/// Name of the volume of the published membership ConfigMap.
pub const MEMBERS_VOLUME: &str = "members";
/// Name of the writable /tmp volume (the root filesystem is read-only).
pub const TMP_VOLUME: &str = "tmp";
/// Name of the volume of the quorum password (with `spec.quorumAuth.enabled`).
pub const QUORUM_AUTH_VOLUME: &str = "quorum-auth";
/// Name of the volume of the TLS Secret (with `spec.tls.enabled`).
pub const TLS_VOLUME: &str = "tls";
/// Name of the volume of the client users' Secret (with `spec.clientAuth.enabled`).
pub const CLIENT_AUTH_USERS_VOLUME: &str = "client-auth-users";
/// Name of the volume of the operator's own user (with `spec.clientAuth.enabled`).
pub const CLIENT_AUTH_OPERATOR_VOLUME: &str = "client-auth-operator";
/// Name of the ZooKeeper container.
pub const CONTAINER: &str = "zookeeper";

fn probe(command: Vec<String>, t: &ProbeTiming) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command),
        }),
        initial_delay_seconds: Some(t.initial_delay_seconds),
        timeout_seconds: Some(t.timeout_seconds),
        period_seconds: Some(t.period_seconds),
        failure_threshold: Some(t.failure_threshold),
        success_threshold: Some(1),
        ..Default::default()
    }
}

fn affinity(v: &ValidatedCluster) -> Option<Affinity> {
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(&v.name)),
            ..Default::default()
        }),
        topology_key: "kubernetes.io/hostname".to_string(),
        ..Default::default()
    };
    let anti = match v.spec.anti_affinity {
        AntiAffinity::None => return None,
        AntiAffinity::Required => PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term]),
            ..Default::default()
        },
        AntiAffinity::Preferred => PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: term,
                },
            ]),
            ..Default::default()
        },
    };
    Some(Affinity {
        pod_anti_affinity: Some(anti),
        ..Default::default()
    })
}

/// The members spread over zones (`spec.zoneSpread`), selected by the same labels as the
/// anti-affinity term. No `matchLabelKeys` on the revision hash: members of an old and a new
/// revision count together, so a rollout keeps them spread.
fn topology_spread(v: &ValidatedCluster) -> Option<Vec<TopologySpreadConstraint>> {
    let z = v.spec.zone_spread.as_ref()?;
    Some(vec![TopologySpreadConstraint {
        topology_key: z.topology_key.clone(),
        max_skew: z.max_skew,
        when_unsatisfiable: z.when_unsatisfiable.as_str().to_string(),
        label_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(&v.name)),
            ..Default::default()
        }),
        ..Default::default()
    }])
}

/// The Secret volumes of passwords: (volume, Secret, mount directory). With
/// `spec.clientAuth.enabled`, the users' Secret and the operator's own user; with
/// `spec.quorumAuth.enabled`, the quorum password.
fn client_auth_volumes(v: &ValidatedCluster) -> Vec<(&'static str, String, &'static str)> {
    let mut volumes = client_users_volumes(v);
    if v.spec.quorum_auth.enabled {
        volumes.push((
            QUORUM_AUTH_VOLUME,
            crate::quorum_auth::secret_name(&v.name),
            crate::quorum_auth::DIR,
        ));
    }
    volumes
}

fn client_users_volumes(v: &ValidatedCluster) -> Vec<(&'static str, String, &'static str)> {
    let auth = &v.spec.client_auth;
    match (&auth.enabled, &auth.secret_name) {
        (true, Some(users)) => vec![
            (
                CLIENT_AUTH_USERS_VOLUME,
                users.clone(),
                crate::client_auth::USERS_DIR,
            ),
            (
                CLIENT_AUTH_OPERATOR_VOLUME,
                names::operator_auth_secret(&v.name),
                crate::client_auth::OPERATOR_DIR,
            ),
        ],
        _ => Vec::new(),
    }
}

fn container(v: &ValidatedCluster, members: &Members) -> Container {
    let s = &v.spec;
    let port = |name: &str, port: i32| ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        protocol: Some("TCP".to_string()),
        ..Default::default()
    };
    // The probes run inside the pod, on the plaintext port (loopback-only with TLS on).
    let client_port = super::args::plaintext_client_port(v).to_string();
    let liveness = vec![
        "zookeeper-ready".to_string(),
        "--liveness".to_string(),
        client_port.clone(),
    ];
    // Ready means serving in a quorum. With OrderedReady the first member must become Ready
    // alone, before any quorum can exist: it may while no peer serves, never once one does.
    let readiness_check = match s.pod_management_policy {
        PodManagementPolicy::Parallel => "--quorum",
        PodManagementPolicy::OrderedReady => "--quorum-or-alone",
    };
    let readiness = vec![
        "zookeeper-ready".to_string(),
        readiness_check.to_string(),
        client_port,
    ];
    let mut args = start_zookeeper(v);
    let command = vec![args.remove(0)];
    Container {
        name: CONTAINER.to_string(),
        image: Some(s.image.clone()),
        image_pull_policy: Some(s.image_pull_policy.as_str().to_string()),
        command: Some(command),
        args: Some(args),
        env: Some(vec![
            EnvVar {
                name: "SERVER_JVMFLAGS".to_string(),
                value: Some(match &members.super_digest {
                    // Reconfiguration is allowed to the operator's super user only.
                    Some(digest) => format!(
                        "{} -Dzookeeper.DigestAuthenticationProvider.superDigest={digest}",
                        server_jvm_flags()
                    ),
                    None => server_jvm_flags(),
                }),
                ..Default::default()
            },
            // Members address each other under the same domain the operator probes.
            EnvVar {
                name: "ZK_DOMAIN".to_string(),
                value: Some(names::member_domain(
                    &v.name,
                    &v.namespace,
                    &s.cluster_domain,
                )),
                ..Default::default()
            },
        ]),
        ports: Some(
            [
                port("client", s.ports.client),
                port("server", s.ports.server),
                port("leader-election", s.ports.leader_election),
            ]
            .into_iter()
            // ZooKeeper's Prometheus metrics, when on
            .chain(super::args::metrics_port(v).map(|m| port(names::METRICS_PORT, m)))
            .collect(),
        ),
        resources: Some(v.resources.clone()),
        readiness_probe: Some(probe(readiness, &s.probes.readiness)),
        liveness_probe: Some(probe(liveness, &s.probes.liveness)),
        volume_mounts: Some(
            [
                VolumeMount {
                    name: DATA_VOLUME.to_string(),
                    mount_path: DATA_MOUNT.to_string(),
                    ..Default::default()
                },
                VolumeMount {
                    name: MEMBERS_VOLUME.to_string(),
                    mount_path: MEMBERS_DIR.to_string(),
                    read_only: Some(true),
                    ..Default::default()
                },
                VolumeMount {
                    name: TMP_VOLUME.to_string(),
                    mount_path: "/tmp".to_string(),
                    ..Default::default()
                },
            ]
            .into_iter()
            .chain(v.tls_mode.has_certificates().then(|| VolumeMount {
                name: TLS_VOLUME.to_string(),
                mount_path: crate::tls::MOUNT.to_string(),
                read_only: Some(true),
                ..Default::default()
            }))
            .chain(
                client_auth_volumes(v)
                    .into_iter()
                    .map(|(name, _, dir)| VolumeMount {
                        name: name.to_string(),
                        mount_path: dir.to_string(),
                        read_only: Some(true),
                        ..Default::default()
                    }),
            )
            .collect(),
        ),
        // The Pod Security Standards' `restricted` profile: no privilege escalation, no
        // capabilities, a read-only root filesystem (ZooKeeper writes only to its data volume
        // and /tmp, an emptyDir).
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                ..Default::default()
            }),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_template(v: &ValidatedCluster, members: &Members) -> PodTemplateSpec {
    let s = &v.spec;
    let mut pod_labels = s.pod.labels.clone();
    pod_labels.extend(labels(&v.name));
    pod_labels.insert(
        names::IN_SERVICE_LABEL.to_string(),
        names::IN_SERVICE.to_string(),
    );
    let non_empty = |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());
    let mut template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: non_empty(&s.pod.annotations),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container(v, members)],
            volumes: Some(
                vec![
                    Volume {
                        name: MEMBERS_VOLUME.to_string(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: names::members_configmap(&v.name),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    Volume {
                        name: TMP_VOLUME.to_string(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    },
                ]
                .into_iter()
                .chain(v.tls_mode.has_certificates().then(|| Volume {
                    name: TLS_VOLUME.to_string(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(crate::tls::secret_name(v)),
                        // Owned by root, group fsGroup: readable by the member's uid through its
                        // group, by nobody else.
                        default_mode: Some(0o440),
                        ..Default::default()
                    }),
                    ..Default::default()
                }))
                .chain(
                    client_auth_volumes(v)
                        .into_iter()
                        .map(|(name, secret, _)| Volume {
                            name: name.to_string(),
                            secret: Some(SecretVolumeSource {
                                secret_name: Some(secret),
                                // Passwords: readable by the member's uid through fsGroup only.
                                default_mode: Some(0o440),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                )
                .collect(),
            ),
            // Members never talk to the Kubernetes API.
            automount_service_account_token: Some(false),
            affinity: affinity(v),
            topology_spread_constraints: topology_spread(v),
            security_context: Some(PodSecurityContext {
                run_as_user: Some(s.security_context.run_as_user),
                fs_group: Some(s.security_context.fs_group),
                run_as_non_root: Some(true),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            node_selector: non_empty(&s.pod.node_selector),
            tolerations: (!s.pod.tolerations.is_empty()).then(|| s.pod.tolerations.clone()),
            priority_class_name: s.pod.priority_class_name.clone(),
            service_account_name: s.pod.service_account_name.clone(),
            image_pull_secrets: (!s.pod.image_pull_secrets.is_empty())
                .then(|| s.pod.image_pull_secrets.clone()),
            ..Default::default()
        }),
    };
    // The two steps of turning TLS on say which they are (a TLS or plaintext template is told
    // by its TLS volume, as in earlier releases, so upgrading the operator rolls nothing).
    if v.tls_mode.has_certificates() && !v.tls_mode.tls_only() {
        template
            .metadata
            .get_or_insert_with(Default::default)
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                crate::tls::transition::MODE_ANNOTATION.to_string(),
                v.tls_mode.as_str().to_string(),
            );
    }
    stamp_restart_hash(&mut template);
    template
}

/// Puts the hash of `template` (without any earlier hash) on it as its restart annotation.
fn stamp_restart_hash(template: &mut PodTemplateSpec) {
    if let Some(annotations) = template
        .metadata
        .as_mut()
        .and_then(|m| m.annotations.as_mut())
    {
        annotations.remove(RESTART_HASH_ANNOTATION);
    }
    let hash = restart_hash(template);
    template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(Default::default)
        .insert(RESTART_HASH_ANNOTATION.to_string(), hash);
}

/// Records the hash of the TLS material the members run with on the pod template and computes
/// the restart hash again, so a new certificate or CA rolls the members like any other change.
pub fn set_tls_material_hash(sts: &mut StatefulSet, material_hash: &str) {
    set_template_hash(sts, crate::tls::MATERIAL_HASH_ANNOTATION, material_hash);
}

/// Records `hash` of material the members read at start (TLS certificates, the client users'
/// Secret) as `annotation` on the pod template and computes the restart hash again, so new
/// material rolls the members like any other change.
pub fn set_template_hash(sts: &mut StatefulSet, annotation: &str, hash: &str) {
    let Some(template) = sts.spec.as_mut().map(|s| &mut s.template) else {
        return;
    };
    template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(Default::default)
        .insert(annotation.to_string(), hash.to_string());
    stamp_restart_hash(template);
}

/// Hash of the pod template (before the hash annotation is added): any change that needs a
/// restart changes it, and nothing else does.
pub fn restart_hash(template: &PodTemplateSpec) -> String {
    names::short_hash(&serde_json::to_vec(template).expect("a pod template serializes to JSON"))
}

/// The StatefulSet of the ensemble.
pub fn statefulset(
    v: &ValidatedCluster,
    members: &Members,
    owner: Option<&OwnerReference>,
) -> StatefulSet {
    let s = &v.spec;
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_string()),
            labels: Some(labels(&v.name)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: s.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    s.storage.size.clone(),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut metadata = object_meta(v.name.clone(), &v.namespace, &v.name, owner);
    if members.services_select_in_service {
        metadata.annotations = Some(BTreeMap::from([(
            names::SERVICES_SELECT_IN_SERVICE_ANNOTATION.to_string(),
            names::IN_SERVICE.to_string(),
        )]));
    }
    StatefulSet {
        metadata,
        spec: Some(StatefulSetSpec {
            replicas: Some(members.replicas),
            service_name: Some(names::headless_service(&v.name)),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&v.name)),
                ..Default::default()
            },
            pod_management_policy: Some(s.pod_management_policy.as_str().to_string()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_string()),
                rolling_update: None,
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(s.storage.retention.when_deleted.as_str().to_string()),
                    when_scaled: Some(s.storage.retention.when_scaled.as_str().to_string()),
                },
            ),
            template: pod_template(v, members),
            volume_claim_templates: Some(vec![claim]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
