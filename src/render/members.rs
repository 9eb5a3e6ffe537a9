//! Dynamic membership, as rendered: how many pods run, the `server.N=` lines a member with no
//! configuration of its own boots with (published in a ConfigMap), and the super user's digest
//! the members accept for `reconfig`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::labels::object_meta;
use crate::health::Ordinal;
use crate::membership::{CommittedConfig, ConfigVersion, DesiredMembership, MemberPorts, ServerId};
use crate::names;
use crate::validate::ValidatedCluster;

/// What the membership step decided for the pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Members {
    /// StatefulSet replicas: the highest server id that should run.
    pub replicas: i32,
    /// The configuration a member boots with when its volume holds none naming itself.
    pub boot: CommittedConfig,
    /// `super:<digest>` the members accept as super user; `None` renders no super user (offline
    /// rendering), and such members cannot be reconfigured.
    pub super_digest: Option<String>,
    /// The server being added, if any: it boots from [`Self::boot`] whatever its volume holds,
    /// so a volume left by an earlier membership never brings back an old configuration.
    pub joiner: Option<ServerId>,
    /// The Services select members by [`crate::names::IN_SERVICE_LABEL`] (see
    /// [`crate::names::SERVICES_SELECT_IN_SERVICE_ANNOTATION`]): true for a new cluster, and
    /// for an existing one once every pod runs a template that carries the label.
    pub services_select_in_service: bool,
}

impl Members {
    /// A new cluster: every member of the spec boots together from version 0.
    pub fn initial(v: &ValidatedCluster, super_digest: Option<String>) -> Self {
        let desired = desired(v);
        Self {
            replicas: v.spec.replicas,
            boot: CommittedConfig {
                servers: desired.servers,
                version: ConfigVersion(0),
            },
            super_digest,
            joiner: None,
            services_select_in_service: true,
        }
    }
}

/// Whether the Services of a cluster whose StatefulSet is `sts` select members by
/// [`names::IN_SERVICE_LABEL`]: once they do (the StatefulSet carries
/// [`names::SERVICES_SELECT_IN_SERVICE_ANNOTATION`]) they keep doing so; before, only when the
/// StatefulSet's current template carries the label and every pod runs it. A cluster created
/// before the label existed therefore rolls once (the template changed) before its Services
/// select by the label, and no member ever drops out of its name for lack of it.
pub fn services_select_in_service(sts: &StatefulSet) -> bool {
    let annotated = sts
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(names::SERVICES_SELECT_IN_SERVICE_ANNOTATION))
        .is_some_and(|v| v == names::IN_SERVICE);
    if annotated {
        return true;
    }
    let Some(spec) = sts.spec.as_ref() else {
        return false;
    };
    let labelled = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get(names::IN_SERVICE_LABEL))
        .is_some_and(|v| v == names::IN_SERVICE);
    labelled && all_pods_updated(sts)
}

/// Whether the StatefulSet controller has seen the current template and every pod is of it.
pub fn all_pods_updated(sts: &StatefulSet) -> bool {
    let (Some(spec), status) = (sts.spec.as_ref(), sts.status.as_ref()) else {
        return false;
    };
    let current = status.and_then(|s| s.observed_generation) == sts.metadata.generation
        && sts.metadata.generation.is_some();
    let replicas = spec.replicas.unwrap_or(1);
    let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let existing = status.map(|s| s.replicas).unwrap_or(0);
    current && updated >= replicas && existing == updated
}

/// Whether every member runs the template of `sts` and is Ready: the controller has seen the
/// template, every pod is of it, and as many are Ready as the StatefulSet wants.
pub fn template_rolled(sts: &StatefulSet) -> bool {
    let wanted = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready = sts
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    all_pods_updated(sts) && ready >= wanted
}

/// The membership the spec asks for: participants `1..=replicas` at their ordinal DNS names.
pub fn desired(v: &ValidatedCluster) -> DesiredMembership {
    desired_of(v, v.spec.replicas.max(0) as u32)
}

/// Participants `1..=replicas` of this cluster.
pub fn desired_of(v: &ValidatedCluster, replicas: u32) -> DesiredMembership {
    let p = &v.spec.ports;
    let ports = MemberPorts {
        client: super::args::plaintext_client_port(v) as u16,
        quorum: p.server as u16,
        election: p.leader_election as u16,
    };
    // With TLS the plaintext client port binds loopback only: ZooKeeper 3.9 cannot name the
    // secure port in a server line, so the line names the plaintext one, on 127.0.0.1.
    let tls = v.tls_mode.tls_only();
    DesiredMembership::new(
        &names::statefulset(&v.name),
        replicas,
        ports,
        |o: Ordinal| names::member_host(&v.name, o.0, &v.namespace, &v.spec.cluster_domain),
        |_| tls.then(|| "127.0.0.1".to_string()),
    )
}

/// The ConfigMap publishing [`Members::boot`].
pub fn configmap(
    v: &ValidatedCluster,
    members: &Members,
    owner: Option<&OwnerReference>,
) -> ConfigMap {
    ConfigMap {
        metadata: object_meta(
            names::members_configmap(&v.name),
            &v.namespace,
            &v.name,
            owner,
        ),
        data: Some(
            [(
                names::MEMBERS_BOOT_KEY.to_string(),
                members.boot.dynamic_file(),
            )]
            .into_iter()
            .chain(
                members
                    .joiner
                    .map(|id| (names::MEMBERS_JOINER_KEY.to_string(), format!("{id}\n"))),
            )
            .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    }
}
