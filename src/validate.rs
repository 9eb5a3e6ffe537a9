//! Validation: spec + defaults -> [`ValidatedCluster`], or an [`InvalidSpec`] that names every
//! offending field and the fix. Pure; the CRD schema already rejects most bad input, this catches
//! what only the operator can judge (heap against the memory limit, reserved labels, name length)
//! and re-checks the schema rules in case an old CRD is installed.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use crate::crd::{ZookeeperCluster, ZookeeperClusterSpec};
use crate::names::RESERVED_LABEL_PREFIX;

/// Longest `metadata.name`: the StatefulSet adds `-<hash>` to its revision labels (63 chars max).
pub const MAX_NAME_LEN: usize = 52;
/// Smallest heap the operator will derive or accept.
pub const MIN_HEAP_MIB: u64 = 64;

/// Whether the running operator serves `spec.tls` end to end: the TLS Secret written by the
/// reconcile, the probes and the reconfiguration over TLS. Until then `spec.tls.enabled` is
/// refused, so no cluster is created whose members the operator cannot reach.
pub const TLS_SERVED: bool = true;

/// A spec the operator refuses, with one message per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid spec: {}", .problems.join("; "))]
pub struct InvalidSpec {
    pub problems: Vec<String>,
}

/// JVM heap in MiB, rendered as `<n>M` or `<n>G` for `start-zookeeper --heap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heap {
    pub mib: u64,
}

impl fmt::Display for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mib.is_multiple_of(1024) {
            write!(f, "{}G", self.mib / 1024)
        } else {
            write!(f, "{}M", self.mib)
        }
    }
}

/// A cluster whose spec passed every check, with everything derived that rendering needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedCluster {
    pub name: String,
    pub namespace: String,
    pub spec: ZookeeperClusterSpec,
    /// Resources with the reference defaults filled in when the user gave none.
    pub resources: ResourceRequirements,
    pub heap: Heap,
    /// How the members speak: plaintext, TLS, or one of the two steps between
    /// ([`crate::tls::transition`]). From the spec (TLS or plaintext) until the reconcile
    /// sets it from the running StatefulSet.
    pub tls_mode: crate::tls::transition::TlsMode,
}

/// The reference ensemble's requests: 1Gi memory, 0.5 CPU.
pub fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("500m".to_string())),
            ("memory".to_string(), Quantity("1Gi".to_string())),
        ])),
        ..Default::default()
    }
}

/// Memory the JVM needs beyond the heap, at the least (a quarter of the limit when that is more).
pub const JVM_HEADROOM_MIB: u64 = 128;

/// A DNS-1035 label: what a Service name must be.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A DNS-1123 subdomain: what most object names must be.
fn is_dns_subdomain(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
}

/// Checks a cluster and derives what rendering needs.
pub fn validate(zk: &ZookeeperCluster) -> Result<ValidatedCluster, InvalidSpec> {
    let spec = &zk.spec;
    let mut problems = Vec::new();
    let name = zk.name_any();
    let namespace = zk.namespace().unwrap_or_else(|| "default".to_string());

    if name.len() > MAX_NAME_LEN {
        problems.push(format!(
            "metadata.name is {} characters long; use at most {MAX_NAME_LEN} so the StatefulSet's pod labels fit in 63",
            name.len()
        ));
    }
    if !is_dns_label(&name) {
        problems.push(format!(
            "metadata.name {name:?} cannot name the Services {name}-hs and {name}-cs: start with a lowercase letter, use only lowercase letters, digits and '-', end with a letter or digit"
        ));
    }
    let most_unavailable = ((spec.replicas - 1) / 2).max(1);
    if spec.pdb.max_unavailable > most_unavailable {
        problems.push(format!(
            "spec.pdb.maxUnavailable is {}; use at most {most_unavailable} for {} members, so a drain plus the operator's own restart can never take a majority down",
            spec.pdb.max_unavailable, spec.replicas
        ));
    }
    if !(1..=9).contains(&spec.replicas) || spec.replicas % 2 == 0 {
        problems.push(format!(
            "spec.replicas is {}; use an odd number from 1 to 9 (an even ensemble tolerates no more failures than the odd one below it)",
            spec.replicas
        ));
    }
    if spec.image.trim().is_empty() || spec.image.chars().any(char::is_whitespace) {
        problems.push(format!(
            "spec.image {:?} is not an image reference; use e.g. zookeeper-operator/zookeeper:3.9.5",
            spec.image
        ));
    }
    if let Some((major, minor)) = image_zookeeper_version(&spec.image)
        && (major, minor) < (3, 5)
    {
        problems.push(format!(
            "spec.image {:?} is ZooKeeper {major}.{minor}, which has no dynamic reconfiguration: this operator changes membership (and boots every member) through it, so it needs ZooKeeper 3.5 or later; use e.g. zookeeper-operator/zookeeper:3.9.5",
            spec.image
        ));
    }
    let p = &spec.ports;
    for (field, port) in [
        ("client", p.client),
        ("server", p.server),
        ("leaderElection", p.leader_election),
    ] {
        if !(1..=65535).contains(&port) {
            problems.push(format!(
                "spec.ports.{field} is {port}; use a port from 1 to 65535"
            ));
        }
    }
    if p.client == p.server || p.client == p.leader_election || p.server == p.leader_election {
        problems.push(
            "spec.ports.client, spec.ports.server and spec.ports.leaderElection must be three different ports"
                .to_string(),
        );
    }
    let tls = &spec.tls;
    if tls.enabled && !TLS_SERVED {
        problems.push(
            "spec.tls.enabled: this operator version renders TLS members but does not yet issue their Secret nor probe and reconfigure them over TLS, so it could not keep such an ensemble; leave spec.tls.enabled false for now"
                .to_string(),
        );
    }
    if tls.enabled {
        let lp = tls.loopback_port;
        if !(1..=65535).contains(&lp) {
            problems.push(format!(
                "spec.tls.loopbackPort is {lp}; use a port from 1 to 65535"
            ));
        }
        let metrics = spec.metrics.enabled.then_some(p.metrics);
        if [
            Some(p.client),
            Some(p.server),
            Some(p.leader_election),
            metrics,
        ]
        .contains(&Some(lp))
        {
            problems.push(format!(
                "spec.tls.loopbackPort {lp} is already one of spec.ports; choose a port the members use for nothing else (default 2182)"
            ));
        }
    } else if tls.mutual || tls.secret_name.is_some() || tls.issuer_ref.is_some() {
        problems.push(
            "spec.tls.mutual, spec.tls.secretName and spec.tls.issuerRef take effect only with TLS on; set spec.tls.enabled: true or remove them"
                .to_string(),
        );
    }
    if let Some(issuer) = &tls.issuer_ref {
        if tls.secret_name.is_some() {
            problems.push(
                "spec.tls.issuerRef and spec.tls.secretName both say where the certificates come from; keep one"
                    .to_string(),
            );
        }
        if !tls.client_certificates.is_empty() {
            problems.push(
                "spec.tls.clientCertificates are issued by the operator's own CA, not with spec.tls.issuerRef; issue client certificates with cert-manager Certificates of the same issuer instead"
                    .to_string(),
            );
        }
        if issuer.name.is_empty() || !is_dns_subdomain(&issuer.name) {
            problems.push(format!(
                "spec.tls.issuerRef.name '{}' is not the name of an Issuer or ClusterIssuer (lowercase letters, digits, '-' and '.')",
                issuer.name
            ));
        }
        if issuer.kind.is_empty() || issuer.group.is_empty() {
            problems.push(
                "spec.tls.issuerRef.kind and spec.tls.issuerRef.group must not be empty (defaults: Issuer, cert-manager.io)"
                    .to_string(),
            );
        }
    }
    if let Some(secret) = &tls.secret_name
        && *secret == crate::tls::bridge::members_secret(&name)
    {
        problems.push(format!(
            "spec.tls.secretName '{secret}' is the Secret the operator keeps the members' copy of the certificates in; name another Secret"
        ));
    }
    problems.extend(client_certificate_problems(tls));
    let auth = &spec.client_auth;
    match (&auth.enabled, &auth.secret_name) {
        (true, None) => problems.push(
            "spec.clientAuth.enabled needs spec.clientAuth.secretName: the Secret whose keys are the user names and whose values are their passwords (kubectl create secret generic NAME --from-literal=USER=PASSWORD)"
                .to_string(),
        ),
        (_, Some(secret)) if *secret == crate::quorum_auth::secret_name(&name) => {
            problems.push(format!(
                "spec.clientAuth.secretName '{secret}' is the Secret the operator keeps the quorum password in; name another Secret"
            ))
        }
        (_, Some(secret)) if *secret == crate::names::operator_auth_secret(&name) => {
            problems.push(format!(
                "spec.clientAuth.secretName '{secret}' is the Secret the operator keeps its own user in; name another Secret"
            ))
        }
        (false, Some(_)) => problems.push(
            "spec.clientAuth.secretName takes effect only with client authentication on; set spec.clientAuth.enabled: true or remove it"
                .to_string(),
        ),
        _ => {}
    }
    let c = &spec.config;
    if c.min_session_timeout > c.max_session_timeout {
        problems.push(format!(
            "spec.config.minSessionTimeout ({}) exceeds spec.config.maxSessionTimeout ({}); lower the minimum or raise the maximum",
            c.min_session_timeout, c.max_session_timeout
        ));
    }
    let partition = spec.update_strategy.partition;
    // An out-of-range replicas count is reported above; the partition is judged against a valid one.
    if partition < 0 || (spec.replicas >= 1 && partition > spec.replicas) {
        problems.push(format!(
            "spec.updateStrategy.partition is {partition}; use 0 to {} (members with an ordinal >= partition are updated)",
            spec.replicas
        ));
    }
    if spec.security_context.run_as_user < 1 {
        problems.push(
            "spec.securityContext.runAsUser must not be 0: ZooKeeper runs as a non-root user (default 1000)"
                .to_string(),
        );
    }
    if let Some(z) = &spec.zone_spread {
        if z.topology_key.trim().is_empty() {
            problems.push(
                "spec.zoneSpread.topologyKey is empty; name the node label that tells the zones apart (default topology.kubernetes.io/zone), or remove spec.zoneSpread"
                    .to_string(),
            );
        }
        if !(1..=5).contains(&z.max_skew) {
            problems.push(format!(
                "spec.zoneSpread.maxSkew is {}; use 1 to 5 (1 keeps the zones within one member of each other)",
                z.max_skew
            ));
        }
    }
    for key in spec.pod.labels.keys() {
        if key.starts_with(RESERVED_LABEL_PREFIX) {
            problems.push(format!(
                "spec.pod.labels.{key} uses the reserved prefix {RESERVED_LABEL_PREFIX}; the operator sets those labels itself, choose another key"
            ));
        }
    }
    if parse_quantity(&spec.storage.size.0).is_none() {
        problems.push(format!(
            "spec.storage.size {:?} is not a quantity; use e.g. 10Gi",
            spec.storage.size.0
        ));
    }

    let resources = spec.resources.clone().unwrap_or_else(default_resources);
    let memory = |m: &Option<BTreeMap<String, Quantity>>| {
        m.as_ref()
            .and_then(|m| m.get("memory"))
            .map(|q| (q.0.clone(), parse_quantity(&q.0)))
    };
    let limit = memory(&resources.limits);
    let request = memory(&resources.requests);
    for (field, value) in [("limits", &limit), ("requests", &request)] {
        if let Some((text, None)) = value {
            problems.push(format!(
                "spec.resources.{field}.memory {text:?} is not a quantity; use e.g. 1Gi"
            ));
        }
    }
    let limit_bytes = limit.as_ref().and_then(|(_, b)| *b);
    let budget = limit_bytes.or(request.as_ref().and_then(|(_, b)| *b));
    let heap = match &c.heap {
        Some(text) => match parse_heap(text) {
            Some(heap) => {
                if let Some(limit) = limit_bytes {
                    let limit_mib = limit / (1024 * 1024);
                    // Beyond the heap the JVM needs metaspace, code cache, thread stacks and
                    // network buffers: a heap that leaves less is OOM-killed under load.
                    let headroom = (limit_mib / 4).max(JVM_HEADROOM_MIB);
                    if heap.mib * 1024 * 1024 >= limit {
                        problems.push(format!(
                            "spec.config.heap {text} does not fit in the memory limit of {}Mi: the JVM would be killed for running out of memory; lower the heap or raise spec.resources.limits.memory",
                            limit.div_ceil(1024 * 1024)
                        ));
                    } else if heap.mib + headroom > limit_mib {
                        problems.push(format!(
                            "spec.config.heap {text} leaves {} MiB of the {limit_mib}Mi memory limit for the JVM's own memory (metaspace, threads, buffers); keep at least {headroom} MiB: use a heap of at most {}M or raise spec.resources.limits.memory",
                            limit_mib - heap.mib,
                            limit_mib - headroom
                        ));
                    }
                }
                heap
            }
            None => {
                problems.push(format!(
                    "spec.config.heap {text:?} is not a heap size; use a whole number of megabytes or gigabytes such as 512M or 2G"
                ));
                Heap { mib: 512 }
            }
        },
        // Half of the memory budget: the rest is for off-heap buffers, threads and the page cache.
        None => match budget {
            Some(bytes) => {
                let mib = bytes / 2 / (1024 * 1024);
                if mib < MIN_HEAP_MIB {
                    problems.push(format!(
                        "spec.resources memory of {} MiB leaves a heap of {mib} MiB; give the container at least {} MiB or set spec.config.heap",
                        bytes / (1024 * 1024),
                        MIN_HEAP_MIB * 2
                    ));
                }
                Heap { mib }
            }
            None => Heap { mib: 512 },
        },
    };

    if problems.is_empty() {
        Ok(ValidatedCluster {
            name,
            namespace,
            spec: spec.clone(),
            resources,
            heap,
            tls_mode: if spec.tls.enabled {
                crate::tls::transition::TlsMode::Tls
            } else {
                crate::tls::transition::TlsMode::Plaintext
            },
        })
    } else {
        Err(InvalidSpec { problems })
    }
}

/// Parses a heap flag value: a whole number followed by `M` or `G`.
/// The ZooKeeper `major.minor` an image's tag names (`zookeeper:3.4.14` -> 3.4,
/// `repo/zookeeper:3.9.5-debian` -> 3.9), or None when the tag is not a version (a digest, `latest`).
pub fn image_zookeeper_version(image: &str) -> Option<(u32, u32)> {
    let without_digest = image.split('@').next()?;
    let last = without_digest.rsplit('/').next()?;
    let (_, tag) = last.split_once(':')?;
    let mut parts = tag.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

pub fn parse_heap(text: &str) -> Option<Heap> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let mib = match unit {
        "M" => n,
        "G" => n.checked_mul(1024)?,
        _ => return None,
    };
    (mib >= MIN_HEAP_MIB).then_some(Heap { mib })
}

/// Parses a Kubernetes quantity into bytes (whole units only; memory never needs milli-bytes).
pub fn parse_quantity(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    let bytes = value * factor;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

/// The most client identities one cluster issues certificates for.
pub const MAX_CLIENT_CERTIFICATES: usize = 32;

/// What is wrong with `spec.tls.clientCertificates`.
fn client_certificate_problems(tls: &crate::crd::TlsSpec) -> Vec<String> {
    let names = &tls.client_certificates;
    let mut problems = Vec::new();
    if names.is_empty() {
        return problems;
    }
    if !(tls.enabled && tls.mutual) {
        problems.push(
            "spec.tls.clientCertificates needs spec.tls.enabled: true and spec.tls.mutual: true (without mutual TLS ZooKeeper never asks a client for its certificate); set both or remove spec.tls.clientCertificates"
                .to_string(),
        );
    }
    if tls.secret_name.is_some() {
        problems.push(
            "spec.tls.clientCertificates are signed by the operator's own CA, but spec.tls.secretName brings certificates of your own CA; issue client certificates from your CA, or remove one of the two fields"
                .to_string(),
        );
    }
    if names.len() > MAX_CLIENT_CERTIFICATES {
        problems.push(format!(
            "spec.tls.clientCertificates lists {} names; at most {MAX_CLIENT_CERTIFICATES} are issued per cluster",
            names.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        let bytes = name.as_bytes();
        let valid = (1..=40).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-';
        if !valid {
            problems.push(format!(
                "spec.tls.clientCertificates[{i}] '{name}': use 1 to 40 lowercase letters, digits and '-', starting and ending with a letter or digit (it names the Secret <cluster>-client-{name} and the identity x509:CN={name})"
            ));
        } else if !seen.insert(name) {
            problems.push(format!(
                "spec.tls.clientCertificates lists '{name}' twice; list each name once"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(spec: serde_json::Value) -> ZookeeperCluster {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
            "kind": "ZookeeperCluster",
            "metadata": {"name": "zk", "namespace": "prod"},
            "spec": spec,
        }))
        .expect("test object deserializes")
    }

    fn problems(spec: serde_json::Value) -> String {
        validate(&cluster(spec)).unwrap_err().problems.join("\n")
    }

    #[test]
    fn a_cert_manager_issuer_is_one_source_of_certificates_among_others() {
        let ok = validate(&cluster(
            serde_json::json!({"tls": {"enabled": true, "issuerRef": {"name": "team-ca"}}}),
        ))
        .expect("an issuerRef alone is valid");
        let issuer = ok.spec.tls.issuer_ref.unwrap();
        assert_eq!(
            (issuer.kind.as_str(), issuer.group.as_str()),
            ("Issuer", "cert-manager.io")
        );
        let both = problems(
            serde_json::json!({"tls": {"enabled": true, "secretName": "mine",
            "issuerRef": {"name": "team-ca", "kind": "ClusterIssuer"}}}),
        );
        assert!(
            both.contains("spec.tls.issuerRef and spec.tls.secretName"),
            "{both}"
        );
        let clients = problems(serde_json::json!({"tls": {"enabled": true, "mutual": true,
            "clientCertificates": ["app"], "issuerRef": {"name": "team-ca"}}}));
        assert!(
            clients.contains("issue client certificates with cert-manager"),
            "{clients}"
        );
        let copy =
            problems(serde_json::json!({"tls": {"enabled": true, "secretName": "zk-tls-members"}}));
        assert!(
            copy.contains("spec.tls.secretName 'zk-tls-members' is the Secret the operator keeps"),
            "{copy}"
        );
        let off = problems(serde_json::json!({"tls": {"issuerRef": {"name": "team-ca"}}}));
        assert!(off.contains("take effect only with TLS on"), "{off}");
        let bad = problems(
            serde_json::json!({"tls": {"enabled": true, "issuerRef": {"name": "Team CA"}}}),
        );
        assert!(bad.contains("spec.tls.issuerRef.name 'Team CA'"), "{bad}");
    }

    #[test]
    fn client_auth_settings_that_cannot_work_are_refused() {
        let err = problems(serde_json::json!({"clientAuth": {"enabled": true}}));
        assert!(
            err.contains("spec.clientAuth.enabled needs spec.clientAuth.secretName")
                && err.contains("--from-literal=USER=PASSWORD"),
            "{err}"
        );
        let err = problems(serde_json::json!({"clientAuth": {"secretName": "users"}}));
        assert!(err.contains("set spec.clientAuth.enabled: true"), "{err}");
        let err = problems(
            serde_json::json!({"clientAuth": {"enabled": true, "secretName": "zk-operator-auth"}}),
        );
        assert!(
            err.contains("'zk-operator-auth' is the Secret the operator keeps its own user in"),
            "{err}"
        );
        let on = validate(&cluster(
            serde_json::json!({"clientAuth": {"enabled": true, "secretName": "users"}}),
        ));
        assert!(on.is_ok(), "{on:?}");
    }

    #[test]
    fn client_certificates_need_mutual_tls_the_operators_ca_and_plain_names() {
        let err = problems(
            serde_json::json!({"tls": {"enabled": true, "clientCertificates": ["alice"]}}),
        );
        assert!(
            err.contains(
                "spec.tls.clientCertificates needs spec.tls.enabled: true and spec.tls.mutual: true"
            ),
            "{err}"
        );
        let err = problems(serde_json::json!({"tls": {"enabled": true, "mutual": true,
            "secretName": "mine", "clientCertificates": ["alice"]}}));
        assert!(err.contains("remove one of the two fields"), "{err}");
        let err = problems(serde_json::json!({"tls": {"enabled": true, "mutual": true,
            "clientCertificates": ["alice", "Bob", "-x", "alice"]}}));
        assert!(
            err.contains("spec.tls.clientCertificates[1] 'Bob'"),
            "{err}"
        );
        assert!(err.contains("spec.tls.clientCertificates[2] '-x'"), "{err}");
        assert!(err.contains("lists 'alice' twice"), "{err}");
        let many: Vec<String> = (0..=MAX_CLIENT_CERTIFICATES)
            .map(|i| format!("app-{i}"))
            .collect();
        let err = problems(serde_json::json!({"tls": {"enabled": true, "mutual": true,
            "clientCertificates": many}}));
        assert!(err.contains("at most 32"), "{err}");
        let ok = validate(&cluster(
            serde_json::json!({"tls": {"enabled": true, "mutual": true,
            "clientCertificates": ["alice", "orders-2"]}}),
        ));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn tls_settings_that_cannot_work_are_refused() {
        let err = problems(serde_json::json!({"tls": {"enabled": true, "loopbackPort": 2181}}));
        assert!(
            err.contains("spec.tls.loopbackPort 2181 is already one of spec.ports"),
            "{err}"
        );
        let err = problems(serde_json::json!({"tls": {"enabled": true, "loopbackPort": 7000}}));
        assert!(err.contains("spec.tls.loopbackPort 7000"), "{err}");
        let err = problems(serde_json::json!({"tls": {"mutual": true}}));
        assert!(err.contains("set spec.tls.enabled: true"), "{err}");
        let tls = validate(&cluster(serde_json::json!({"tls": {"enabled": true}})));
        if TLS_SERVED {
            assert!(tls.is_ok(), "{tls:?}");
        } else {
            let problems = tls.unwrap_err().problems;
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(problems[0].contains("leave spec.tls.enabled false"));
        }
    }

    #[test]
    fn names_pdbs_and_heaps_that_cannot_work_are_refused() {
        for name in ["1zk", "zk.a"] {
            let mut zk = cluster(serde_json::json!({}));
            zk.metadata.name = Some(name.into());
            let err = validate(&zk).unwrap_err().problems.join("\n");
            assert!(err.contains("cannot name the Services"), "{name}: {err}");
        }
        let err = problems(serde_json::json!({"pdb": {"maxUnavailable": 2}}));
        assert!(
            err.contains("spec.pdb.maxUnavailable is 2; use at most 1 for 3 members"),
            "{err}"
        );
        assert!(
            validate(&cluster(
                serde_json::json!({"replicas": 5, "pdb": {"maxUnavailable": 2}})
            ))
            .is_ok()
        );
        // A heap just under the limit leaves the JVM nothing for itself.
        let err = problems(
            serde_json::json!({"config": {"heap": "2047M"}, "resources": {"limits": {"memory": "2Gi"}}}),
        );
        assert!(
            err.contains("spec.config.heap 2047M leaves 1 MiB of the 2048Mi memory limit")
                && err.contains("at most 1536M"),
            "{err}"
        );
        assert!(validate(&cluster(serde_json::json!({"config": {"heap": "1536M"}, "resources": {"limits": {"memory": "2Gi"}}}))).is_ok());
        // replicas -1: only the replicas message.
        let err = problems(serde_json::json!({"replicas": -1}));
        assert!(
            err.contains("spec.replicas is -1") && !err.contains("partition"),
            "{err}"
        );
    }

    #[test]
    fn zone_spread_without_a_topology_key_is_refused_with_the_fix() {
        for key in ["", "  "] {
            let err = problems(serde_json::json!({"zoneSpread": {"topologyKey": key}}));
            assert!(
                err.contains("spec.zoneSpread.topologyKey is empty")
                    && err.contains("topology.kubernetes.io/zone"),
                "{key:?}: {err}"
            );
        }
        let err = problems(serde_json::json!({"zoneSpread": {"maxSkew": 0}}));
        assert!(
            err.contains("spec.zoneSpread.maxSkew is 0; use 1 to 5"),
            "{err}"
        );
        for ok in [
            serde_json::json!({"zoneSpread": {}}),
            serde_json::json!({"zoneSpread": {"topologyKey": "rack", "maxSkew": 2}}),
        ] {
            assert!(validate(&cluster(ok.clone())).is_ok(), "{ok}");
        }
    }

    #[test]
    fn zookeeper_before_3_5_is_refused_with_the_fix() {
        assert_eq!(image_zookeeper_version("zookeeper:3.4.14"), Some((3, 4)));
        assert_eq!(
            image_zookeeper_version("registry:5000/zookeeper-operator/zookeeper:3.9.5-rc1"),
            Some((3, 9))
        );
        assert_eq!(image_zookeeper_version("zookeeper@sha256:abc"), None);
        assert_eq!(image_zookeeper_version("registry:5000/zookeeper"), None);
        assert_eq!(image_zookeeper_version("zookeeper:latest"), None);
        let err = problems(serde_json::json!({"image": "zookeeper:3.4.14"}));
        assert!(
            err.contains("spec.image \"zookeeper:3.4.14\" is ZooKeeper 3.4")
                && err.contains("needs ZooKeeper 3.5 or later"),
            "{err}"
        );
        for ok in [
            "zookeeper:3.5.10",
            "zookeeper-operator/zookeeper:3.9.5",
            "zookeeper:latest",
        ] {
            assert!(
                validate(&cluster(serde_json::json!({"image": ok}))).is_ok(),
                "{ok}"
            );
        }
    }

    #[test]
    fn defaults_validate_with_the_reference_heap_and_requests() {
        let v = validate(&cluster(serde_json::json!({}))).unwrap();
        assert_eq!(v.heap.to_string(), "512M");
        assert_eq!(v.resources, default_resources());
        assert_eq!((v.name.as_str(), v.namespace.as_str()), ("zk", "prod"));
    }

    #[test]
    fn heap_is_half_the_memory_limit_or_request() {
        let v = validate(&cluster(serde_json::json!({
            "resources": {"limits": {"memory": "4Gi"}, "requests": {"memory": "1Gi"}}
        })))
        .unwrap();
        assert_eq!(v.heap, Heap { mib: 2048 });
        assert_eq!(v.heap.to_string(), "2G");
        let v = validate(&cluster(
            serde_json::json!({"resources": {"requests": {"memory": "3000Mi"}}}),
        ))
        .unwrap();
        assert_eq!(v.heap.to_string(), "1500M");
        // No memory anywhere: the reference 512M.
        let v = validate(&cluster(
            serde_json::json!({"resources": {"requests": {"cpu": "1"}}}),
        ))
        .unwrap();
        assert_eq!(v.heap.to_string(), "512M");
    }

    #[test]
    fn heap_larger_than_the_limit_is_refused_with_the_fix() {
        let msg = problems(serde_json::json!({
            "config": {"heap": "2G"},
            "resources": {"limits": {"memory": "1Gi"}}
        }));
        assert!(
            msg.contains("spec.config.heap 2G does not fit in the memory limit"),
            "{msg}"
        );
        assert!(msg.contains("raise spec.resources.limits.memory"), "{msg}");
    }

    #[test]
    fn tiny_memory_is_refused() {
        let msg = problems(serde_json::json!({"resources": {"limits": {"memory": "100Mi"}}}));
        assert!(msg.contains("leaves a heap of 50 MiB"), "{msg}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let msg = problems(serde_json::json!({
            "replicas": 4,
            "ports": {"client": 2888},
            "config": {"heap": "lots", "minSessionTimeout": 90000},
            "pod": {"labels": {"app.kubernetes.io/name": "mine"}},
            "updateStrategy": {"partition": 7},
            "storage": {"size": "big"}
        }));
        for needle in [
            "spec.replicas is 4",
            "three different ports",
            "spec.config.heap \"lots\"",
            "minSessionTimeout (90000) exceeds",
            "spec.pod.labels.app.kubernetes.io/name",
            "spec.updateStrategy.partition is 7",
            "spec.storage.size \"big\"",
        ] {
            assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
        }
    }

    fn running(spec: serde_json::Value, replicas: i32, members: usize) -> ZookeeperCluster {
        let mut zk = cluster(spec);
        zk.status = Some(crate::crd::ZookeeperClusterStatus {
            replicas,
            members: (0..members)
                .map(|i| crate::crd::MemberStatus {
                    name: format!("zk-{i}"),
                    ordinal: i as i32,
                    mode: "follower".into(),
                    zxid: None,
                    revision: None,
                    ready: true,
                    role: None,
                })
                .collect(),
            ..Default::default()
        });
        zk
    }

    #[test]
    fn any_allowed_size_is_valid_whatever_runs() {
        // Membership changes one server at a time through reconfiguration: growing a single
        // member, growing past a majority of new members, and shrinking are all valid.
        for (old, new) in [(1, 3), (1, 9), (3, 7), (3, 1), (9, 1), (5, 3)] {
            let zk = running(serde_json::json!({"replicas": new}), old, old as usize);
            assert!(validate(&zk).is_ok(), "{old} -> {new}");
        }
    }

    #[test]
    fn long_names_are_refused() {
        let mut zk = cluster(serde_json::json!({}));
        zk.metadata.name = Some("z".repeat(53));
        let err = validate(&zk).unwrap_err();
        assert!(
            err.to_string().contains("metadata.name is 53 characters"),
            "{err}"
        );
    }

    #[test]
    fn heap_parser() {
        assert_eq!(parse_heap("512M"), Some(Heap { mib: 512 }));
        assert_eq!(parse_heap("2G"), Some(Heap { mib: 2048 }));
        for bad in ["", "M", "512", "0512M", "512MB", "1.5G", "32M", "-1G"] {
            assert_eq!(parse_heap(bad), None, "{bad}");
        }
    }

    #[test]
    fn quantity_parser() {
        assert_eq!(parse_quantity("1Gi"), Some(1 << 30));
        assert_eq!(parse_quantity("512Mi"), Some(512 << 20));
        assert_eq!(parse_quantity("1G"), Some(1_000_000_000));
        assert_eq!(parse_quantity("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_quantity("1e3"), Some(1000));
        assert_eq!(parse_quantity("100"), Some(100));
        assert_eq!(parse_quantity("ten"), None);
        assert_eq!(parse_quantity("1Xi"), None);
    }
}
