//! The `ZookeeperCluster` custom resource (`zookeeper.ensemble.dev/v1alpha1`).
//!
//! Every spec field is optional in YAML and defaults to the value of the reference ensemble the
//! project starts from (3 members, tickTime 2000, ports 2181/2888/3888, ...). The schema carries
//! the defaults, so `kubectl get -o yaml` shows what the operator will use, and CEL rules reject
//! what can be rejected before anything reaches a pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LocalObjectReference, ResourceRequirements, Toleration};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default ZooKeeper image: built from `deploy/images/zookeeper`.
pub const DEFAULT_IMAGE: &str = "zookeeper-operator/zookeeper:3.9.5";

/// Desired state of a ZooKeeper ensemble. Every field is optional; defaults reproduce the
/// reference 3-member ensemble.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[cfg_attr(test, kube(cel))]
#[kube(
    // The same as `names::API_GROUP` (a literal is required here; a test compares them).
    group = "zookeeper.ensemble.dev",
    version = "v1alpha1",
    kind = "ZookeeperCluster",
    plural = "zookeeperclusters",
    shortname = "zk",
    namespaced,
    status = "ZookeeperClusterStatus",
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas","description":"Desired number of members"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas","description":"Members whose pods are Ready"}"#,
    printcolumn = r#"{"name":"Leader","type":"string","jsonPath":".status.leader","description":"Pod of the current ZooKeeper leader"}"#,
    printcolumn = r#"{"name":"Available","type":"string","jsonPath":".status.conditions[?(@.type==\"Available\")].status","description":"Whether a serving quorum exists"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("!has(self.spec) || !has(self.spec.updateStrategy) || !has(self.spec.replicas) || self.spec.replicas < 1 || self.spec.updateStrategy.partition <= self.spec.replicas").message("spec.updateStrategy.partition must be between 0 and spec.replicas: members with an ordinal >= partition are updated, so partition = replicas updates none and 0 updates all"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && self.metadata.name.size() <= 52").message("metadata.name must start with a lowercase letter, hold only lowercase letters, digits and '-', end with a letter or digit, and be at most 52 characters: it names the Services <name>-hs and <name>-cs and the StatefulSet's pods"),
    validation = Rule::new("!has(self.spec) || !has(self.spec.pdb) || !has(self.spec.replicas) || self.spec.pdb.maxUnavailable <= 1 || self.spec.pdb.maxUnavailable <= (self.spec.replicas - 1) / 2").message("spec.pdb.maxUnavailable must be at most (spec.replicas - 1) / 2 (1 for 3 members, 2 for 5): otherwise a drain plus the operator's own restart can take a majority down"),
)]
#[serde(rename_all = "camelCase")]
pub struct ZookeeperClusterSpec {
    /// Number of ZooKeeper members (voters). Must be odd, from 1 to 9: an even number adds a
    /// member without adding fault tolerance. 3 tolerates one failure, 5 tolerates two. It may
    /// grow and shrink to any allowed size: the operator changes the membership one server at a
    /// time with ZooKeeper's dynamic reconfiguration, so the members that hold the data always
    /// stay a majority of every configuration, and nobody restarts.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 9))]
    #[x_kube(validation = Rule::new("self % 2 == 1").message("spec.replicas must be odd (1, 3, 5, 7 or 9): an even ensemble tolerates no more failures than the odd one below it"))]
    pub replicas: i32,

    /// Container image that provides `start-zookeeper` and `zookeeper-ready` (see
    /// deploy/images/zookeeper). Changing it rolls the ensemble one member at a time.
    #[serde(default = "default_image")]
    #[x_kube(validation = Rule::new("self.size() > 0 && !self.contains(' ')").message("spec.image must be a non-empty image reference without spaces, e.g. zookeeper-operator/zookeeper:3.9.5"))]
    pub image: String,

    /// When the kubelet pulls the image: Always, IfNotPresent or Never.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,

    /// ZooKeeper server settings, passed to `start-zookeeper` as flags.
    #[serde(default)]
    #[x_kube(validation = Rule::new("!has(self.heap) || self.heap.matches('^[1-9][0-9]{0,5}[MG]$')").message("spec.config.heap must be a whole number of megabytes or gigabytes such as 512M or 2G"))]
    #[x_kube(validation = Rule::new("self.minSessionTimeout <= self.maxSessionTimeout").message("spec.config.minSessionTimeout must not exceed spec.config.maxSessionTimeout"))]
    pub config: ZookeeperConfig,

    /// Ports of each member. They must be distinct.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.client != self.server && self.client != self.leaderElection && self.server != self.leaderElection").message("spec.ports.client, spec.ports.server and spec.ports.leaderElection must be three different ports"))]
    #[x_kube(validation = Rule::new("!has(self.metrics) || (self.metrics != self.client && self.metrics != self.server && self.metrics != self.leaderElection)").message("spec.ports.metrics must differ from spec.ports.client, spec.ports.server and spec.ports.leaderElection"))]
    pub ports: Ports,

    /// ZooKeeper's own Prometheus metrics (its built-in `PrometheusMetricsProvider`, with JVM
    /// metrics) on `spec.ports.metrics` of every member, at `/metrics`. On by default.
    #[serde(default)]
    pub metrics: MetricsSpec,

    /// CPU and memory of the ZooKeeper container. Default: requests of 1Gi memory and 0.5 CPU.
    /// The JVM heap is derived from the memory limit (or request) unless `config.heap` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Persistent storage of each member (one PersistentVolumeClaim per member).
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.size == oldSelf.size").message("spec.storage.size is immutable: a StatefulSet cannot resize its volume claims; create a new cluster to change it"))]
    #[x_kube(validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)").message("spec.storage.storageClassName is immutable: a StatefulSet cannot change the class of its volume claims"))]
    pub storage: Storage,

    /// How the StatefulSet creates pods. `Parallel` (default) starts all members at once; a member
    /// is Ready only while it serves in a quorum. `OrderedReady` starts them one by one, as the
    /// reference manifest does: a member is Ready while it serves, or, only as long as no other
    /// member serves (the first member starting alone), while it merely answers. What that costs:
    /// creating or fully restarting an ensemble is slower (one member at a time), and a member cut
    /// off from all its peers' client ports may look Ready. Immutable after creation.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.podManagementPolicy is immutable: the StatefulSet field cannot change after creation"))]
    pub pod_management_policy: PodManagementPolicy,

    /// Pod anti-affinity on `kubernetes.io/hostname`: `required` (one member per node, the
    /// default), `preferred`, or `none`.
    #[serde(default)]
    pub anti_affinity: AntiAffinity,

    /// Spread the members evenly over zones (a `topologySpreadConstraints` entry on the member
    /// pods), on top of `antiAffinity`. Absent: no spreading over zones. Zones come from the
    /// node label `topology.kubernetes.io/zone` unless `topologyKey` names another node label.
    /// Changing it restarts the members one at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.topologyKey.size() > 0").message("spec.zoneSpread.topologyKey must not be empty: name the node label that tells the zones apart, e.g. topology.kubernetes.io/zone"))]
    pub zone_spread: Option<ZoneSpread>,

    /// PodDisruptionBudget of the ensemble.
    #[serde(default)]
    pub pdb: PdbSpec,

    /// Readiness and liveness probe timings.
    #[serde(default)]
    pub probes: Probes,

    /// User and group the ZooKeeper process runs as. Root is not allowed.
    #[serde(default)]
    pub security_context: SecurityContext,

    /// Pod placement and metadata.
    #[serde(default)]
    pub pod: PodSettings,

    /// How changes roll out: a canary `partition` and a `paused` switch.
    #[serde(default)]
    pub update_strategy: UpdateStrategy,

    /// The NetworkPolicy `<name>-netpol` that admits traffic to the members: the quorum and
    /// election ports only from the ensemble's own pods, the client port from `clientFrom`, the
    /// ensemble's own pods and the operator's namespace, the metrics port from `metricsFrom`.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,

    /// TLS for the quorum and the clients (off by default). When on, the members speak TLS to
    /// each other (`sslQuorum`), clients connect over TLS on `spec.ports.client` (ZooKeeper's
    /// `secureClientPort`), and the plaintext client port is bound to 127.0.0.1 only, for the
    /// pod's own probes. Can be turned on for a running cluster (three rolls), not off; where
    /// the certificates come from cannot change once it is on.
    #[serde(default)]
    #[x_kube(validation = Rule::new("!oldSelf.enabled || (has(self.issuerRef) == has(oldSelf.issuerRef) && has(self.secretName) == has(oldSelf.secretName))").message("spec.tls: where the certificates come from (the operator's own CA, spec.tls.secretName or spec.tls.issuerRef) cannot change once TLS is on: during the roll, members of the old and the new CA would not trust each other. A new CA from the same source rolls in safely (the rotate-ca annotation, a renewed Issuer CA, another Issuer); to change the source, create a new cluster"))]
    #[x_kube(validation = Rule::new("self.enabled || !oldSelf.enabled").message("spec.tls.enabled cannot be turned off once on: the operator turns TLS on for a running ensemble (three rolls) but not off; create a new cluster without TLS"))]
    #[x_kube(validation = Rule::new("!has(self.secretName) || self.secretName.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("spec.tls.secretName must be the name of a Secret in the cluster's namespace (lowercase letters, digits, '-' and '.')"))]
    pub tls: TlsSpec,

    /// Enforced client authentication with SASL DIGEST-MD5 (off by default). When on, every
    /// client session must log in as one of the users of `secretName`; a session that does not
    /// (no credentials, or a wrong password) is closed at its first request. Java clients
    /// configure a JAAS `Client` section (`org.apache.zookeeper.server.auth.DigestLoginModule
    /// required username="..." password="...";`, file passed as
    /// `-Djava.security.auth.login.config=...`, and `-Dzookeeper.fips-mode=false`, without which
    /// ZooKeeper 3.8.2+ Java clients skip DIGEST-MD5); the Rust `zookeeper-client` crate uses
    /// `SaslOptions::digest_md5(user, password)`. Four-letter words are not affected. The
    /// operator logs in as its own user `zookeeper-operator` (password in the Secret
    /// `<name>-operator-auth` it creates), which is ZooKeeper's super user. Cannot be turned on
    /// or off for an existing cluster: create a new cluster with the setting you want.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.enabled == oldSelf.enabled").message("spec.clientAuth.enabled cannot change after creation: during the rolling restart some members would refuse the clients the others accept; create a new cluster with the setting you want"))]
    #[x_kube(validation = Rule::new("!has(self.secretName) || self.secretName.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("spec.clientAuth.secretName must be the name of a Secret in the cluster's namespace (lowercase letters, digits, '-' and '.')"))]
    pub client_auth: ClientAuthSpec,

    /// Quorum authentication with SASL DIGEST-MD5 (off by default): a member must prove it
    /// holds the cluster's quorum password before it may follow the leader or take part in an
    /// election, so a process that reaches the quorum ports without it cannot join. The
    /// operator creates the password once (Secret `<name>-quorum-auth`, key `password`, owned by
    /// the cluster) and never changes it. Works with or without `spec.tls`. Cannot be turned on
    /// or off for an existing cluster: create a new cluster with the setting you want.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.enabled == oldSelf.enabled").message("spec.quorumAuth.enabled cannot change after creation: during the rolling restart the members with it and those without it could not form a quorum together; create a new cluster with the setting you want"))]
    pub quorum_auth: QuorumAuthSpec,

    /// DNS domain of the Kubernetes cluster (the kubelet's `clusterDomain`). The members address
    /// each other, and the operator probes them, as `<name>-<i>.<name>-hs.<namespace>.svc.<domain>`;
    /// a domain the cluster's DNS does not serve leaves every member unreachable.
    #[serde(default = "default_cluster_domain")]
    #[schemars(regex(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    ))]
    pub cluster_domain: String,
}

fn default_replicas() -> i32 {
    3
}
fn default_image() -> String {
    DEFAULT_IMAGE.to_string()
}
fn default_cluster_domain() -> String {
    "cluster.local".to_string()
}

/// When the kubelet pulls the image.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// ZooKeeper server settings. Each maps to one `start-zookeeper` flag.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ZookeeperConfig {
    /// Length of a ZooKeeper tick in milliseconds (`--tick_time`).
    #[schemars(range(min = 100, max = 60000))]
    pub tick_time: i32,
    /// Ticks a follower may take to connect and sync to the leader (`--init_limit`).
    #[schemars(range(min = 1, max = 1000))]
    pub init_limit: i32,
    /// Ticks a follower may lag behind the leader (`--sync_limit`).
    #[schemars(range(min = 1, max = 1000))]
    pub sync_limit: i32,
    /// Maximum concurrent connections from one client IP; 0 means unlimited
    /// (`--max_client_cnxns`).
    #[schemars(range(min = 0, max = 100000))]
    pub max_client_cnxns: i32,
    /// Snapshots kept by the autopurge task (`--snap_retain_count`, at least 3).
    #[schemars(range(min = 3, max = 1000))]
    pub snap_retain_count: i32,
    /// Hours between autopurge runs; 0 disables purging (`--purge_interval`).
    #[schemars(range(min = 0, max = 8760))]
    pub purge_interval: i32,
    /// Minimum client session timeout in milliseconds (`--min_session_timeout`).
    #[schemars(range(min = 1, max = 3600000))]
    pub min_session_timeout: i32,
    /// Maximum client session timeout in milliseconds (`--max_session_timeout`).
    #[schemars(range(min = 1, max = 3600000))]
    pub max_session_timeout: i32,
    /// Log level of the server: TRACE, DEBUG, INFO, WARN or ERROR (`--log_level`).
    pub log_level: LogLevel,
    /// JVM heap (`--heap`), a whole number followed by M or G, e.g. `512M` or `2G`. When unset it
    /// is half of the container's memory limit (or request), or 512M when neither is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heap: Option<String>,
}

impl Default for ZookeeperConfig {
    fn default() -> Self {
        ZookeeperConfig {
            tick_time: 2000,
            init_limit: 10,
            sync_limit: 5,
            max_client_cnxns: 60,
            snap_retain_count: 3,
            purge_interval: 12,
            min_session_timeout: 4000,
            max_session_timeout: 40000,
            log_level: LogLevel::Info,
            heap: None,
        }
    }
}

/// Log level of the ZooKeeper server.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        }
    }
}

/// Ports of each member. They must be distinct.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Ports {
    /// Port clients connect to (`--client_port`).
    #[schemars(range(min = 1, max = 65535))]
    pub client: i32,
    /// Port followers use to talk to the leader (`--server_port`).
    #[schemars(range(min = 1, max = 65535))]
    pub server: i32,
    /// Port of leader election (`--election_port`).
    #[schemars(range(min = 1, max = 65535))]
    pub leader_election: i32,
    /// Port of ZooKeeper's Prometheus metrics endpoint, `/metrics` (`--metrics_port`), while
    /// `spec.metrics.enabled` is true.
    #[schemars(range(min = 1, max = 65535))]
    pub metrics: i32,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            client: 2181,
            server: 2888,
            leader_election: 3888,
            metrics: 7000,
        }
    }
}

/// ZooKeeper's own Prometheus metrics.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct MetricsSpec {
    /// Run ZooKeeper's Prometheus metrics provider on `spec.ports.metrics` (a container port and
    /// a port of the headless Service, both named `metrics`). Changing it restarts the members
    /// one at a time.
    pub enabled: bool,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        MetricsSpec { enabled: true }
    }
}

/// Which pods may reach the members, as a NetworkPolicy. Only a network plugin that enforces
/// NetworkPolicies makes it effective.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkPolicySpec {
    /// Render a NetworkPolicy that admits only the traffic below. When false the policy is kept
    /// but selects no pod, so it neither admits nor refuses anything (the user's own policies
    /// decide alone).
    pub enabled: bool,
    /// Who may connect to the client port (NetworkPolicy peers: `podSelector`,
    /// `namespaceSelector`, `ipBlock`). Empty: every pod of the cluster's namespace. The
    /// ensemble's own pods and the operator's namespace (probes, reconfiguration) are always
    /// admitted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub client_from: Vec<NetworkPolicyPeer>,
    /// Who may scrape the metrics port (while `spec.metrics.enabled`). Empty: any source.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics_from: Vec<NetworkPolicyPeer>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        NetworkPolicySpec {
            enabled: true,
            client_from: Vec::new(),
            metrics_from: Vec::new(),
        }
    }
}

/// TLS for quorum and client traffic.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsSpec {
    /// Encrypt and authenticate the quorum (members trust only certificates of the cluster's
    /// CA) and serve clients over TLS on `spec.ports.client`. One switch for both: on
    /// ZooKeeper 3.9 the secure client port cannot stand in the server lines, so the two are
    /// configured together.
    pub enabled: bool,
    /// Mutual TLS on the client port: clients must present a certificate signed by the
    /// cluster's CA (`ssl.clientAuth=need`). Off: any TLS client that trusts the CA connects.
    pub mutual: bool,
    /// Bring your own certificates: a Secret in the cluster's namespace holding PEM `ca.crt`,
    /// `tls.crt` (the members' certificate, with the SANs listed in the README) and `tls.key`
    /// (PKCS#8). Only read: the members mount the operator's copy `<name>-tls-members`, so a new
    /// CA in it reaches them in three quorum-safe rolls. Unset: the operator creates `<name>-tls`
    /// with a CA of its own for this cluster and renews the members' certificate before it
    /// expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The plaintext client port, bound to 127.0.0.1 only: the pod's own readiness and
    /// liveness probes use it; nothing outside the pod can reach it.
    #[schemars(range(min = 1, max = 65535))]
    pub loopback_port: i32,
    /// Client identities the operator issues certificates for (needs `mutual: true` and the
    /// operator's own CA, so no `secretName`). For each name the Secret `<cluster>-client-<name>`
    /// holds `ca.crt`, `tls.crt`, `tls.key` (PKCS#8) and `keystore.pem` (key and certificate,
    /// for ZooKeeper's Java client); the certificate's subject is `CN=<name>`, so ZooKeeper
    /// authenticates the session as `x509:CN=<name>`, usable in ACLs. Renewed before it
    /// expires; a name removed from the list loses its Secret.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub client_certificates: Vec<String>,
    /// Certificates from cert-manager: the operator keeps a cert-manager `Certificate`
    /// `<cluster>-tls` (owned by the cluster) for the members, with the SANs listed in the
    /// README, issued by this Issuer or ClusterIssuer into the Secret `<cluster>-tls`
    /// (`ca.crt`, `tls.crt`, PKCS#8 `tls.key`); cert-manager renews it, and a renewed
    /// certificate rolls the members. The members mount the operator's copy,
    /// `<cluster>-tls-members`: a new CA reaches them in three quorum-safe rolls (trust both,
    /// the new certificate, the new CA alone). Not with `secretName` or `clientCertificates`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
}

impl Default for TlsSpec {
    fn default() -> Self {
        TlsSpec {
            enabled: false,
            mutual: false,
            secret_name: None,
            loopback_port: 2182,
            client_certificates: Vec::new(),
            issuer_ref: None,
        }
    }
}

/// A cert-manager issuer, as a cert-manager `Certificate` names it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// The Issuer (in the cluster's namespace) or ClusterIssuer.
    pub name: String,
    /// `Issuer` (default) or `ClusterIssuer`, or an external issuer's kind.
    #[serde(default = "default_issuer_kind")]
    pub kind: String,
    /// The issuer's API group: `cert-manager.io` (default) or an external issuer's.
    #[serde(default = "default_issuer_group")]
    pub group: String,
}

fn default_issuer_kind() -> String {
    "Issuer".to_string()
}

fn default_issuer_group() -> String {
    "cert-manager.io".to_string()
}

/// SASL DIGEST-MD5 client authentication.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientAuthSpec {
    /// Require every client to log in (ZooKeeper's `enforce.auth.enabled` on the `sasl`
    /// scheme). Needs `secretName`.
    pub enabled: bool,
    /// The users clients log in as: a Secret in the cluster's namespace whose keys are user
    /// names (letters, digits, '.', '_' or '-'; not `zookeeper-operator`, the operator's own)
    /// and whose values are their passwords (one line, no trailing newline: create it with
    /// `kubectl create secret generic NAME --from-literal=alice=PASSWORD`). The operator checks
    /// it (a missing Secret or an unusable entry is reported on the cluster, naming the user,
    /// never a password) and rolls the members when its name or content changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

/// SASL DIGEST-MD5 authentication between the members.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct QuorumAuthSpec {
    /// Require every member to authenticate to its peers with the cluster's quorum password
    /// (ZooKeeper's `quorum.auth.enableSasl`, `learnerRequireSasl` and `serverRequireSasl`).
    pub enabled: bool,
}

/// Persistent storage of each member.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Storage {
    /// Size of each member's volume claim `datadir`. Immutable.
    pub size: Quantity,
    /// StorageClass of the volume claims; unset uses the cluster's default class. Immutable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// What happens to the volume claims when the cluster is deleted (`whenDeleted`) or scaled
    /// down (`whenScaled`): `Retain` (default, data is kept) or `Delete`.
    pub retention: Retention,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            size: Quantity("10Gi".to_string()),
            storage_class_name: None,
            retention: Retention::default(),
        }
    }
}

/// Volume claim retention, mapped to the StatefulSet's `persistentVolumeClaimRetentionPolicy`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Retention {
    /// Retain or Delete the claims when the ZookeeperCluster is deleted.
    pub when_deleted: RetentionPolicy,
    /// Retain or Delete the claims of members removed by a scale-down.
    pub when_scaled: RetentionPolicy,
}

/// Retain or Delete a volume claim.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RetentionPolicy {
    #[default]
    Retain,
    Delete,
}

impl RetentionPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionPolicy::Retain => "Retain",
            RetentionPolicy::Delete => "Delete",
        }
    }
}

/// How the StatefulSet creates and deletes pods.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PodManagementPolicy {
    OrderedReady,
    #[default]
    Parallel,
}

impl PodManagementPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PodManagementPolicy::OrderedReady => "OrderedReady",
            PodManagementPolicy::Parallel => "Parallel",
        }
    }
}

/// Pod anti-affinity of the members on `kubernetes.io/hostname`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AntiAffinity {
    /// At most one member per node; a member stays Pending when no node is free.
    #[default]
    Required,
    /// Spread members over nodes when possible.
    Preferred,
    /// No anti-affinity.
    None,
}

/// How the members spread over zones.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ZoneSpread {
    /// Node label whose values are the zones (default `topology.kubernetes.io/zone`). With
    /// `DoNotSchedule`, nodes without the label take no member.
    pub topology_key: String,
    /// Most members one zone may hold beyond the zone with the fewest: with 1 (the default), 3
    /// members in 3 zones land one per zone, and 5 members land 2, 2 and 1.
    #[schemars(range(min = 1, max = 5))]
    pub max_skew: i32,
    /// What the scheduler does when no zone keeps the skew: `DoNotSchedule` (the default; the
    /// member stays Pending until a zone allows it) or `ScheduleAnyway` (it places the member
    /// where the skew grows least).
    pub when_unsatisfiable: WhenUnsatisfiable,
}

impl Default for ZoneSpread {
    fn default() -> Self {
        ZoneSpread {
            topology_key: "topology.kubernetes.io/zone".to_string(),
            max_skew: 1,
            when_unsatisfiable: WhenUnsatisfiable::default(),
        }
    }
}

/// What the scheduler does with a member no zone can take within the skew.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum WhenUnsatisfiable {
    /// Keep the member Pending until a zone allows it.
    #[default]
    DoNotSchedule,
    /// Schedule the member anyway, where the skew grows least.
    ScheduleAnyway,
}

impl WhenUnsatisfiable {
    pub fn as_str(self) -> &'static str {
        match self {
            WhenUnsatisfiable::DoNotSchedule => "DoNotSchedule",
            WhenUnsatisfiable::ScheduleAnyway => "ScheduleAnyway",
        }
    }
}

/// PodDisruptionBudget settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct PdbSpec {
    /// Members that voluntary disruptions (drains, evictions) may take down at once.
    #[schemars(range(min = 1, max = 4))]
    pub max_unavailable: i32,
}

impl Default for PdbSpec {
    fn default() -> Self {
        PdbSpec { max_unavailable: 1 }
    }
}

/// Readiness and liveness probe timings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Probes {
    /// Readiness: Ready only while the member serves in a quorum (`srvr` reports a mode).
    pub readiness: ProbeTiming,
    /// Liveness: restarts the container only when the server stops answering at all, so a member
    /// waiting for a quorum is not killed in a loop.
    pub liveness: ProbeTiming,
}

impl Default for Probes {
    fn default() -> Self {
        Probes {
            readiness: ProbeTiming::default(),
            liveness: ProbeTiming {
                failure_threshold: 6,
                ..ProbeTiming::default()
            },
        }
    }
}

/// Timing of one probe.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ProbeTiming {
    /// Seconds after the container starts before the first probe.
    #[schemars(range(min = 0, max = 3600))]
    pub initial_delay_seconds: i32,
    /// Seconds after which a probe times out.
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: i32,
    /// Seconds between probes.
    #[schemars(range(min = 1, max = 600))]
    pub period_seconds: i32,
    /// Consecutive failures before the probe counts as failed.
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
}

impl Default for ProbeTiming {
    fn default() -> Self {
        ProbeTiming {
            initial_delay_seconds: 10,
            timeout_seconds: 5,
            period_seconds: 10,
            failure_threshold: 3,
        }
    }
}

/// User and group of the ZooKeeper process.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct SecurityContext {
    /// UID the container runs as; must not be 0 (root).
    #[schemars(range(min = 1))]
    pub run_as_user: i64,
    /// GID that owns the data volume.
    #[schemars(range(min = 1))]
    pub fs_group: i64,
}

impl Default for SecurityContext {
    fn default() -> Self {
        SecurityContext {
            run_as_user: 1000,
            fs_group: 1000,
        }
    }
}

/// Pod placement and metadata.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSettings {
    /// Node labels a member's node must carry.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the member pods.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Extra labels on the member pods (the `app.kubernetes.io/*` labels are the operator's).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on the member pods.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// PriorityClass of the member pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// ServiceAccount the member pods run as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Secrets used to pull the image.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}

/// How changes roll out.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct UpdateStrategy {
    /// Canary: only members with an ordinal >= partition are restarted into a new revision.
    /// With 3 members, partition 1 updates zk-1 and zk-2; set 0 to finish the rollout.
    #[schemars(range(min = 0, max = 9))]
    pub partition: i32,
    /// While true, the operator restarts no member; objects are still kept up to date.
    pub paused: bool,
    /// Seconds a restarted member may take to serve again before the rollout counts as stuck:
    /// `Degraded` turns True with reason `RolloutStuck`, naming the member and what it lacks.
    /// The rollout itself keeps waiting (restarting another member could cost the quorum).
    #[schemars(range(min = 30, max = 86400))]
    pub progress_deadline_seconds: i32,
    /// Seconds clients may keep a member's old address after it restarts (a restart gives the
    /// member a new pod IP; the JVM caches a resolved name for 30 s by default, and DNS caches
    /// add their own TTL). The leader, whose restart makes every client reconnect, is
    /// restarted only once the member restarted before it has had its new address this long,
    /// so that no reconnecting client dials an address that is gone and waits out its connect
    /// timeout. 0 restarts the leader as soon as the others serve.
    #[schemars(range(min = 0, max = 600))]
    pub client_address_cache_seconds: i32,
}

impl Default for UpdateStrategy {
    fn default() -> Self {
        UpdateStrategy {
            partition: 0,
            paused: false,
            progress_deadline_seconds: 600,
            client_address_cache_seconds: 30,
        }
    }
}

/// Observed state, written by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZookeeperClusterStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Member pods that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Member pods that are Ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Member pods on the newest revision.
    #[serde(default)]
    pub updated_replicas: i32,
    /// StatefulSet revision most members run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// StatefulSet revision members are being moved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    /// Pod of the current ZooKeeper leader, when exactly one member says it leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Every member as the operator last saw it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// The version of ZooKeeper's committed configuration (`/zookeeper/config`), hex as
    /// ZooKeeper prints it; every membership change commits a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<String>,
    /// Connection string for clients: every member's ordinal name and client port,
    /// comma-separated (the members of the committed configuration). The client Service
    /// `<name>-cs.<namespace>.svc:<port>` is one address for clients that cannot take a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<String>,
    /// `Available`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// One member of the ensemble.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Pod name.
    pub name: String,
    /// StatefulSet ordinal (ZooKeeper id is ordinal + 1).
    pub ordinal: i32,
    /// leader, follower, observer, standalone or unreachable (no answer to `srvr`).
    pub mode: String,
    /// Last zxid the member reported when the status last changed, as ZooKeeper prints it (hex).
    /// The zxid moves with every client write, so a new zxid alone does not update the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zxid: Option<String>,
    /// StatefulSet revision of the member's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Whether the pod is Ready.
    pub ready: bool,
    /// Its place in ZooKeeper's committed configuration: `participant`, `observer`, `joining`
    /// (running, not yet added) or `leaving` (still committed, being removed). Absent while the
    /// configuration cannot be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// `Vec<Condition>` as a list-map keyed by `type`, so server-side apply merges conditions.
fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    let map = schema.ensure_object();
    map.insert("x-kubernetes-list-type".into(), "map".into());
    map.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    fn cluster(spec: serde_json::Value) -> ZookeeperCluster {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
            "kind": "ZookeeperCluster",
            "metadata": {"name": "zk", "namespace": "default"},
            "spec": spec,
        }))
        .expect("test object deserializes")
    }

    fn cel_errors(zk: &ZookeeperCluster) -> String {
        match zk.validate_cel() {
            Ok(()) => String::new(),
            Err(e) => format!("{e:?}"),
        }
    }

    #[test]
    fn admission_refuses_what_can_never_work() {
        // Names that are valid objects but not valid Service names, or too long for the pods.
        for name in ["1zk", "zk.a", "Zk", &"z".repeat(53)] {
            let mut zk = cluster(serde_json::json!({}));
            zk.metadata.name = Some(name.to_string());
            let err = cel_errors(&zk);
            assert!(
                err.contains("metadata.name must start with a lowercase letter"),
                "{name}: {err}"
            );
        }
        let mut fine = cluster(serde_json::json!({}));
        fine.metadata.name = Some("zk-prod-1".into());
        assert_eq!(cel_errors(&fine), "");
        // A PDB that lets a drain plus a restart take a majority down.
        let err = cel_errors(&cluster(serde_json::json!({"pdb": {"maxUnavailable": 2}})));
        assert!(
            err.contains("spec.pdb.maxUnavailable must be at most (spec.replicas - 1) / 2"),
            "{err}"
        );
        assert_eq!(
            cel_errors(&cluster(
                serde_json::json!({"replicas": 5, "pdb": {"maxUnavailable": 2}})
            )),
            ""
        );
        assert_eq!(cel_errors(&cluster(serde_json::json!({"replicas": 1}))), "");
        // replicas -1 says what is wrong with replicas, and nothing about the partition.
        let err = cel_errors(&cluster(serde_json::json!({"replicas": -1})));
        assert!(!err.contains("partition"), "{err}");
    }

    #[test]
    fn empty_spec_takes_the_reference_defaults() {
        let zk = cluster(serde_json::json!({}));
        let s = &zk.spec;
        assert_eq!(s.replicas, 3);
        assert_eq!(s.config.tick_time, 2000);
        assert_eq!(s.config.init_limit, 10);
        assert_eq!(s.config.sync_limit, 5);
        assert_eq!(s.config.max_client_cnxns, 60);
        assert_eq!(s.config.snap_retain_count, 3);
        assert_eq!(s.config.purge_interval, 12);
        assert_eq!(s.config.min_session_timeout, 4000);
        assert_eq!(s.config.max_session_timeout, 40000);
        assert_eq!(s.config.log_level, LogLevel::Info);
        assert_eq!(
            (s.ports.client, s.ports.server, s.ports.leader_election),
            (2181, 2888, 3888)
        );
        assert_eq!(s.ports.metrics, 7000);
        assert!(s.metrics.enabled);
        assert_eq!(s.storage.size.0, "10Gi");
        assert_eq!(s.pdb.max_unavailable, 1);
        assert_eq!(s.probes.readiness.initial_delay_seconds, 10);
        assert_eq!(s.probes.readiness.timeout_seconds, 5);
        assert_eq!(s.security_context.run_as_user, 1000);
        assert_eq!(s.security_context.fs_group, 1000);
        assert_eq!(s.anti_affinity, AntiAffinity::Required);
        assert_eq!(s.zone_spread, None);
        assert_eq!(s.cluster_domain, "cluster.local");
        assert!(s.network_policy.enabled);
        assert!(
            s.network_policy.client_from.is_empty() && s.network_policy.metrics_from.is_empty()
        );
        assert_eq!(cel_errors(&zk), "");
    }

    #[test]
    fn cel_rejects_even_replicas_with_a_message_naming_the_field() {
        let err = cel_errors(&cluster(serde_json::json!({"replicas": 4})));
        assert!(err.contains("spec.replicas must be odd"), "{err}");
        assert_eq!(cel_errors(&cluster(serde_json::json!({"replicas": 5}))), "");
    }

    #[test]
    fn cel_rejects_bad_heap_strings() {
        for bad in ["512", "512MB", "0M", "1.5G", "512m", "-1G"] {
            let err = cel_errors(&cluster(serde_json::json!({"config": {"heap": bad}})));
            assert!(err.contains("spec.config.heap"), "{bad}: {err}");
        }
        for good in ["512M", "2G", "64M"] {
            let zk = cluster(serde_json::json!({"config": {"heap": good}}));
            assert_eq!(cel_errors(&zk), "", "{good}");
        }
    }

    #[test]
    fn cel_rejects_clashing_ports() {
        let err = cel_errors(&cluster(serde_json::json!({"ports": {"client": 2888}})));
        assert!(err.contains("three different ports"), "{err}");
    }

    #[test]
    fn cel_rejects_a_metrics_port_that_another_port_uses() {
        for clash in [
            serde_json::json!({"ports": {"metrics": 2181}}),
            serde_json::json!({"ports": {"metrics": 2888}}),
            serde_json::json!({"ports": {"leaderElection": 7000}}),
        ] {
            let err = cel_errors(&cluster(clash.clone()));
            assert!(
                err.contains("spec.ports.metrics must differ"),
                "{clash}: {err}"
            );
        }
        let moved = serde_json::json!({"ports": {"metrics": 9141}, "metrics": {"enabled": false}});
        assert_eq!(cel_errors(&cluster(moved)), "");
    }

    #[test]
    fn cel_rejects_session_timeouts_in_the_wrong_order() {
        let err = cel_errors(&cluster(
            serde_json::json!({"config": {"minSessionTimeout": 50000}}),
        ));
        assert!(err.contains("minSessionTimeout must not exceed"), "{err}");
    }

    #[test]
    fn cel_rejects_partition_above_replicas() {
        let err = cel_errors(&cluster(
            serde_json::json!({"replicas": 3, "updateStrategy": {"partition": 4}}),
        ));
        assert!(err.contains("spec.updateStrategy.partition"), "{err}");
        let ok = cluster(serde_json::json!({"replicas": 3, "updateStrategy": {"partition": 3}}));
        assert_eq!(cel_errors(&ok), "");
    }

    #[test]
    fn cel_rejects_image_with_spaces() {
        let err = cel_errors(&cluster(serde_json::json!({"image": "zk; rm -rf /"})));
        assert!(err.contains("spec.image"), "{err}");
    }

    #[test]
    fn immutable_fields_are_rejected_on_update() {
        let old = cluster(serde_json::json!({}));
        let grow = cluster(serde_json::json!({"storage": {"size": "20Gi"}}));
        let err = format!("{:?}", grow.validate_cel_update(&old).unwrap_err());
        assert!(err.contains("spec.storage.size is immutable"), "{err}");

        let class = cluster(serde_json::json!({"storage": {"storageClassName": "fast"}}));
        let err = format!("{:?}", class.validate_cel_update(&old).unwrap_err());
        assert!(err.contains("storageClassName is immutable"), "{err}");

        let policy = cluster(serde_json::json!({"podManagementPolicy": "OrderedReady"}));
        let err = format!("{:?}", policy.validate_cel_update(&old).unwrap_err());
        assert!(err.contains("podManagementPolicy is immutable"), "{err}");

        // Membership changes through reconfiguration: any allowed size, up or down.
        for (old, new) in [(3, 1), (1, 3), (1, 9), (3, 7), (9, 1), (5, 3)] {
            let before = cluster(serde_json::json!({"replicas": old}));
            let after = cluster(serde_json::json!({"replicas": new, "config": {"tickTime": 3000}}));
            assert_eq!(
                format!("{:?}", after.validate_cel_update(&before)),
                "Ok(())",
                "{old} -> {new}"
            );
        }
    }

    #[test]
    fn schema_rejects_unknown_log_levels_and_out_of_range_replicas() {
        let crd = serde_json::to_value(ZookeeperCluster::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(
            spec["properties"]["config"]["properties"]["logLevel"]["enum"],
            serde_json::json!(["TRACE", "DEBUG", "INFO", "WARN", "ERROR"])
        );
        assert_eq!(
            spec["properties"]["replicas"]["minimum"].as_f64(),
            Some(1.0)
        );
        assert_eq!(
            spec["properties"]["replicas"]["maximum"].as_f64(),
            Some(9.0)
        );
        assert_eq!(spec["properties"]["replicas"]["default"], 3);
        assert!(
            serde_json::from_value::<ZookeeperClusterSpec>(
                serde_json::json!({"config": {"logLevel": "LOUD"}})
            )
            .is_err()
        );
    }

    #[test]
    fn tls_is_off_by_default_and_can_be_turned_on_but_not_off() {
        let plain = cluster(serde_json::json!({}));
        assert!(!plain.spec.tls.enabled && !plain.spec.tls.mutual);
        assert_eq!(plain.spec.tls.loopback_port, 2182);
        assert!(plain.spec.tls.secret_name.is_none());
        let tls = cluster(serde_json::json!({"tls": {"enabled": true}}));
        assert_eq!(cel_errors(&tls), "");
        assert_eq!(format!("{:?}", tls.validate_cel_update(&plain)), "Ok(())");
        let err = format!("{:?}", plain.validate_cel_update(&tls));
        assert!(
            err.contains("spec.tls.enabled cannot be turned off"),
            "{err}"
        );
        let mutual = cluster(serde_json::json!({"tls": {"enabled": true, "mutual": true}}));
        assert_eq!(format!("{:?}", mutual.validate_cel_update(&tls)), "Ok(())");
        let bad = cluster(serde_json::json!({"tls": {"enabled": true, "secretName": "My Certs"}}));
        assert!(cel_errors(&bad).contains("spec.tls.secretName"));
    }

    #[test]
    fn quorum_auth_is_off_by_default_and_cannot_flip_on_a_running_cluster() {
        let plain = cluster(serde_json::json!({}));
        assert!(!plain.spec.quorum_auth.enabled);
        let on = cluster(serde_json::json!({"quorumAuth": {"enabled": true}}));
        assert_eq!(cel_errors(&on), "");
        for (old, new) in [(&plain, &on), (&on, &plain)] {
            let err = format!("{:?}", new.validate_cel_update(old).unwrap_err());
            assert!(
                err.contains("spec.quorumAuth.enabled cannot change"),
                "{err}"
            );
        }
    }

    #[test]
    fn client_auth_is_off_by_default_and_cannot_flip_on_a_running_cluster() {
        let plain = cluster(serde_json::json!({}));
        assert_eq!(plain.spec.client_auth, ClientAuthSpec::default());
        assert!(!plain.spec.client_auth.enabled);
        let on =
            cluster(serde_json::json!({"clientAuth": {"enabled": true, "secretName": "users"}}));
        assert_eq!(cel_errors(&on), "");
        for (old, new) in [(&plain, &on), (&on, &plain)] {
            let err = format!("{:?}", new.validate_cel_update(old).unwrap_err());
            assert!(
                err.contains("spec.clientAuth.enabled cannot change"),
                "{err}"
            );
        }
        // Another users' Secret is a rolling restart, not a switch.
        let other =
            cluster(serde_json::json!({"clientAuth": {"enabled": true, "secretName": "users-2"}}));
        assert_eq!(format!("{:?}", other.validate_cel_update(&on)), "Ok(())");
        let bad =
            cluster(serde_json::json!({"clientAuth": {"enabled": true, "secretName": "My Users"}}));
        assert!(cel_errors(&bad).contains("spec.clientAuth.secretName"));
    }

    #[test]
    fn zone_spread_is_off_by_default_and_an_empty_one_takes_the_defaults() {
        let z = cluster(serde_json::json!({"zoneSpread": {}}))
            .spec
            .zone_spread
            .unwrap();
        assert_eq!(z.topology_key, "topology.kubernetes.io/zone");
        assert_eq!(z.max_skew, 1);
        assert_eq!(z.when_unsatisfiable, WhenUnsatisfiable::DoNotSchedule);
        let z = cluster(serde_json::json!({"zoneSpread": {"whenUnsatisfiable": "ScheduleAnyway"}}))
            .spec
            .zone_spread
            .unwrap();
        assert_eq!(z.when_unsatisfiable, WhenUnsatisfiable::ScheduleAnyway);
        assert!(
            serde_json::from_value::<ZookeeperClusterSpec>(
                serde_json::json!({"zoneSpread": {"whenUnsatisfiable": "scheduleAnyway"}})
            )
            .is_err()
        );

        // The schema carries the defaults and the range, so the API server fills them in.
        let crd = serde_json::to_value(ZookeeperCluster::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let z = &spec["properties"]["zoneSpread"];
        assert!(spec["properties"].get("zoneSpread").is_some(), "{spec}");
        assert!(z.get("default").is_none(), "absent means no spreading: {z}");
        let p = &z["properties"];
        assert_eq!(p["topologyKey"]["default"], "topology.kubernetes.io/zone");
        assert_eq!(p["maxSkew"]["default"], 1);
        assert_eq!(p["maxSkew"]["minimum"].as_f64(), Some(1.0));
        assert_eq!(p["maxSkew"]["maximum"].as_f64(), Some(5.0));
        assert_eq!(p["whenUnsatisfiable"]["default"], "DoNotSchedule");
        assert_eq!(
            p["whenUnsatisfiable"]["enum"],
            serde_json::json!(["DoNotSchedule", "ScheduleAnyway"])
        );

        // Admission refuses an empty key with a message naming the field.
        let err = cel_errors(&cluster(
            serde_json::json!({"zoneSpread": {"topologyKey": ""}}),
        ));
        assert!(
            err.contains("spec.zoneSpread.topologyKey must not be empty"),
            "{err}"
        );
        assert_eq!(
            cel_errors(&cluster(serde_json::json!({"zoneSpread": {}}))),
            ""
        );
    }

    #[test]
    fn conditions_are_a_list_map_keyed_by_type() {
        let crd = serde_json::to_value(ZookeeperCluster::crd()).unwrap();
        let conditions = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
            ["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"])
        );
    }

    #[test]
    fn printer_columns_match_the_design() {
        let crd = ZookeeperCluster::crd();
        let names: Vec<_> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["Replicas", "Ready", "Leader", "Available", "Age"]);
        assert_eq!(crd.spec.names.short_names, Some(vec!["zk".to_string()]));
    }
}
