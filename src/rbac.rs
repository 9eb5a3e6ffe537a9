//! The Kubernetes API permissions the operator needs, in one table.
//!
//! The running operator never reads this module: it is the test oracle that lives in `src` so
//! that the chart tests, the README test and the mocked-API tests all check against one table.
//!
//! Read verbs (`get`, `list`, `watch`) on everything the operator watches; write verbs only where
//! the code writes: server-side apply of its children, status patches, evictions, Events, the Lease.
//!
//! The Helm chart's ClusterRole/Role, the README's verb list and the tests are all checked
//! against [`RULES`]; code that talks to the API can name the constant it relies on, and
//! mocked-API tests can assert with [`check_request`] that every request they see is allowed.

use std::fmt;

/// Where a rule is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Cluster-scoped objects: always a ClusterRole.
    Cluster,
    /// Objects in the watched namespaces: a ClusterRole when all namespaces are watched,
    /// a Role in the watched namespace otherwise.
    Watched,
    /// Objects in the operator's own namespace (the leader-election Lease): always a Role there,
    /// so the operator cannot take over other components' Leases.
    OperatorNamespace,
}

/// One RBAC policy rule: the verbs allowed on one resource of one API group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    /// API group, `""` for the core group.
    pub api_group: &'static str,
    /// Resource (plural), `resource/subresource` for a subresource.
    pub resource: &'static str,
    /// Allowed verbs, in the order the chart lists them.
    pub verbs: &'static [&'static str],
    /// When non-empty, the rule only covers objects with these names.
    pub resource_names: &'static [&'static str],
    pub scope: Scope,
}

/// Verbs on the objects the operator renders and owns: watched, and written only by server-side
/// apply, which is a `patch` that also needs `create` while the object does not exist yet. Never
/// `update` or `delete`: owner references let the garbage collector delete them with their cluster.
pub const CHILD_VERBS: &[&str] = &["get", "list", "watch", "create", "patch"];

/// The CRD's name; a test checks it against the type (a constant is needed in the table below).
pub const CRD_NAME: &str = "zookeeperclusters.zookeeper.ensemble.dev";

/// Watch ZookeeperClusters; the operator never writes their spec or metadata (no finalizers).
pub const ZOOKEEPER_CLUSTERS: Rule = Rule {
    api_group: crate::names::API_GROUP,
    resource: "zookeeperclusters",
    verbs: &["get", "list", "watch"],
    resource_names: &[],
    scope: Scope::Watched,
};

/// Write `.status` (conditions, members) with a patch.
pub const ZOOKEEPER_CLUSTERS_STATUS: Rule = Rule {
    api_group: crate::names::API_GROUP,
    resource: "zookeeperclusters/status",
    verbs: &["patch"],
    resource_names: &[],
    scope: Scope::Watched,
};

pub const STATEFULSETS: Rule = Rule {
    api_group: "apps",
    resource: "statefulsets",
    verbs: CHILD_VERBS,
    resource_names: &[],
    scope: Scope::Watched,
};

pub const SERVICES: Rule = Rule {
    api_group: "",
    resource: "services",
    verbs: CHILD_VERBS,
    resource_names: &[],
    scope: Scope::Watched,
};

pub const POD_DISRUPTION_BUDGETS: Rule = Rule {
    api_group: "policy",
    resource: "poddisruptionbudgets",
    verbs: CHILD_VERBS,
    resource_names: &[],
    scope: Scope::Watched,
};

/// Observe members; pods are never deleted directly (that would bypass the PDB). `patch` only
/// moves the label `zookeeper.ensemble.dev/in-service` (a member taken out of its Services right
/// before its eviction, and put back if the eviction did not happen).
pub const PODS: Rule = Rule {
    api_group: "",
    resource: "pods",
    verbs: &["get", "list", "watch", "patch"],
    resource_names: &[],
    scope: Scope::Watched,
};

/// Restart one member at a time through the Eviction API, so the PDB is honoured.
pub const PODS_EVICTION: Rule = Rule {
    api_group: "",
    resource: "pods/eviction",
    verbs: &["create"],
    resource_names: &[],
    scope: Scope::Watched,
};

/// Before an eviction: wait until the cluster's Services no longer list the member.
pub const ENDPOINT_SLICES: Rule = Rule {
    api_group: "discovery.k8s.io",
    resource: "endpointslices",
    verbs: &["list"],
    resource_names: &[],
    scope: Scope::Watched,
};

/// Events on ZookeeperClusters: core/v1 Events, created once per occurrence (they carry
/// `lastTimestamp`, which `kubectl get events --sort-by=.lastTimestamp` sorts by).
pub const EVENTS: Rule = Rule {
    api_group: "",
    resource: "events",
    verbs: &["create"],
    resource_names: &[],
    scope: Scope::Watched,
};

/// The operator's Lease election (see `election.rs`): read, create once, then renew by optimistic `update`.
pub const LEASES: Rule = Rule {
    api_group: "coordination.k8s.io",
    resource: "leases",
    verbs: &["get", "create", "update"],
    resource_names: &[],
    scope: Scope::OperatorNamespace,
};

/// The membership ConfigMap each cluster owns (`<cluster>-members`).
pub const CONFIG_MAPS: Rule = Rule {
    api_group: "",
    resource: "configmaps",
    verbs: CHILD_VERBS,
    resource_names: &[],
    scope: Scope::Watched,
};

/// The NetworkPolicy each cluster owns (`<cluster>-netpol`).
pub const NETWORK_POLICIES: Rule = Rule {
    api_group: "networking.k8s.io",
    resource: "networkpolicies",
    verbs: CHILD_VERBS,
    resource_names: &[],
    scope: Scope::Watched,
};

/// The name of the Secret in the operator's namespace holding the key from which every
/// cluster's ZooKeeper super-user password is derived.
pub const SUPER_KEY_SECRET: &str = "zookeeper-operator-super-key";

/// Read the super-user key, and only that Secret: no other Secret anywhere is readable.
pub const SUPER_KEY_READ: Rule = Rule {
    api_group: "",
    resource: "secrets",
    verbs: &["get"],
    resource_names: &[SUPER_KEY_SECRET],
    scope: Scope::OperatorNamespace,
};

/// Create the key once, at the first start (`create` cannot be limited to a name).
pub const SUPER_KEY_CREATE: Rule = Rule {
    api_group: "",
    resource: "secrets",
    verbs: &["create"],
    resource_names: &[],
    scope: Scope::OperatorNamespace,
};

/// The clusters' TLS Secrets: `<name>-tls` written by server-side apply (a new CA, a renewed
/// certificate) or, with `spec.tls.issuerRef`, read (cert-manager writes it) and copied to
/// `<name>-tls-members` the same way, a user's Secret named in `spec.tls.secretName` read and
/// copied the same way, the client certificates
/// of `spec.tls.clientCertificates` (`<name>-client-<id>`) written the same way and deleted
/// when their name leaves the spec (the names issued are recorded on `<name>-tls`); with
/// `spec.quorumAuth`, `<name>-quorum-auth` (the quorum password) created once and read; and, with
/// `spec.clientAuth`, `<name>-operator-auth` (the operator's SASL user) written the same way
/// and the users' Secret of `spec.clientAuth.secretName` read (checked and hashed, never
/// written). Names vary per cluster, so the rule cannot name them; no `list` or `watch`, so no
/// Secret is found without its name.
pub const TLS_SECRETS: Rule = Rule {
    api_group: "",
    resource: "secrets",
    verbs: &["get", "create", "patch", "delete"],
    resource_names: &[],
    scope: Scope::Watched,
};

/// With `spec.tls.issuerRef`, the members' cert-manager Certificate `<name>-tls`, written by
/// server-side apply (cert-manager writes the Secret, which [`TLS_SECRETS`] reads).
pub const CERTIFICATES: Rule = Rule {
    api_group: "cert-manager.io",
    resource: "certificates",
    verbs: &["get", "create", "patch"],
    resource_names: &[],
    scope: Scope::Watched,
};

/// At start the operator checks that its own CRD is installed, and nothing else.
pub const CUSTOM_RESOURCE_DEFINITIONS: Rule = Rule {
    api_group: "apiextensions.k8s.io",
    resource: "customresourcedefinitions",
    verbs: &["get"],
    resource_names: &[CRD_NAME],
    scope: Scope::Cluster,
};

/// Every permission the operator needs, and nothing more.
pub const RULES: &[Rule] = &[
    ZOOKEEPER_CLUSTERS,
    ZOOKEEPER_CLUSTERS_STATUS,
    STATEFULSETS,
    SERVICES,
    POD_DISRUPTION_BUDGETS,
    PODS,
    PODS_EVICTION,
    ENDPOINT_SLICES,
    EVENTS,
    CONFIG_MAPS,
    NETWORK_POLICIES,
    LEASES,
    SUPER_KEY_READ,
    SUPER_KEY_CREATE,
    TLS_SECRETS,
    CERTIFICATES,
    CUSTOM_RESOURCE_DEFINITIONS,
];

/// The rules granted in one scope.
pub fn rules_in(scope: Scope) -> impl Iterator<Item = &'static Rule> {
    RULES.iter().filter(move |r| r.scope == scope)
}

/// What the API server's authorizer sees of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAttributes {
    pub verb: String,
    pub api_group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl fmt::Display for RequestAttributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.api_group.is_empty() {
            "core"
        } else {
            &self.api_group
        };
        write!(f, "{} {}.{}", self.verb, self.resource, group)?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, " in namespace {ns}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RbacError {
    #[error("not a resource request: {method} {uri}")]
    NotAResourceRequest { method: String, uri: String },
    #[error(
        "the operator made a request its RBAC does not allow: {0}; add the verb to src/rbac.rs and the chart's templates/rbac.yaml"
    )]
    NotAllowed(RequestAttributes),
}

/// Map an HTTP request to the attributes RBAC checks, the way the API server does
/// (`GET` on a collection is `list`, `?watch=true` is `watch`, `POST` is `create`, ...).
pub fn request_attributes(method: &str, uri: &str) -> Result<RequestAttributes, RbacError> {
    let not_resource = || RbacError::NotAResourceRequest {
        method: method.to_string(),
        uri: uri.to_string(),
    };
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    // kube sends paths only, but accept a full URL too.
    let path = match path.find("://") {
        Some(i) => path[i + 3..].find('/').map_or("/", |j| &path[i + 3 + j..]),
        None => path,
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return Err(not_resource()),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(name.to_string()), None),
        [resource, name, sub] => (*resource, Some(name.to_string()), Some(*sub)),
        _ => return Err(not_resource()),
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method.to_ascii_uppercase().as_str(), name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return Err(not_resource()),
    };
    let resource = match subresource {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_string(),
    };
    Ok(RequestAttributes {
        verb: verb.to_string(),
        api_group: api_group.to_string(),
        resource,
        namespace,
        name,
    })
}

/// Whether some rule of [`RULES`] allows the request.
pub fn allows(attrs: &RequestAttributes) -> bool {
    RULES.iter().any(|r| {
        r.api_group == attrs.api_group
            && r.resource == attrs.resource
            && r.verbs.contains(&attrs.verb.as_str())
            && (r.resource_names.is_empty()
                || attrs
                    .name
                    .as_deref()
                    .is_some_and(|n| r.resource_names.contains(&n)))
    })
}

/// For mocked-API tests: fail when the code under test makes a request that [`RULES`] does
/// not allow, so the table stays derived from what the code really calls.
pub fn check_request(method: &str, uri: &str) -> Result<RequestAttributes, RbacError> {
    let attrs = request_attributes(method, uri)?;
    if allows(&attrs) {
        Ok(attrs)
    } else {
        Err(RbacError::NotAllowed(attrs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crd_name_is_the_types() {
        use kube::CustomResourceExt;
        assert_eq!(CRD_NAME, crate::crd::ZookeeperCluster::crd_name());
    }
    use std::collections::HashSet;

    #[test]
    fn maps_requests_like_the_api_server() {
        let cases = [
            (
                "GET",
                "/apis/apps/v1/namespaces/ns/statefulsets/zk",
                "get",
                "apps",
                "statefulsets",
            ),
            (
                "GET",
                "/apis/apps/v1/statefulsets?labelSelector=a%3Db",
                "list",
                "apps",
                "statefulsets",
            ),
            (
                "GET",
                "/apis/apps/v1/statefulsets?watch=true&resourceVersion=1",
                "watch",
                "apps",
                "statefulsets",
            ),
            (
                "POST",
                "/api/v1/namespaces/ns/pods/zk-0/eviction",
                "create",
                "",
                "pods/eviction",
            ),
            (
                "PATCH",
                "/apis/zookeeper.ensemble.dev/v1alpha1/namespaces/ns/zookeeperclusters/a/status?fieldManager=x",
                "patch",
                crate::names::API_GROUP,
                "zookeeperclusters/status",
            ),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/op/leases/l",
                "update",
                "coordination.k8s.io",
                "leases",
            ),
            (
                "DELETE",
                "/api/v1/namespaces/ns/services",
                "deletecollection",
                "",
                "services",
            ),
            (
                "GET",
                "http://127.0.0.1:6443/api/v1/namespaces/ns/pods",
                "list",
                "",
                "pods",
            ),
        ];
        for (method, uri, verb, group, resource) in cases {
            let a = request_attributes(method, uri).unwrap();
            assert_eq!(
                (a.verb.as_str(), a.api_group.as_str(), a.resource.as_str()),
                (verb, group, resource),
                "{method} {uri}"
            );
        }
        let a = request_attributes("GET", "/api/v1/namespaces/ns").unwrap();
        assert_eq!(
            (a.resource.as_str(), a.name.as_deref()),
            ("namespaces", Some("ns"))
        );
        assert!(request_attributes("GET", "/version").is_err());
    }

    #[test]
    fn allows_exactly_the_table() {
        assert!(check_request("POST", "/api/v1/namespaces/ns/pods/zk-0/eviction").is_ok());
        assert!(
            check_request(
                "PATCH",
                "/apis/apps/v1/namespaces/ns/statefulsets/zk?fieldManager=f&force=true"
            )
            .is_ok()
        );
        assert!(check_request("POST", "/api/v1/namespaces/ns/events").is_ok());
        // Pods are evicted, never deleted: deleting would bypass the PodDisruptionBudget.
        assert!(matches!(
            check_request("DELETE", "/api/v1/namespaces/ns/pods/zk-0"),
            Err(RbacError::NotAllowed(_))
        ));
        // Children are written by server-side apply only and deleted by the garbage collector.
        assert!(check_request("DELETE", "/apis/apps/v1/namespaces/ns/statefulsets/zk").is_err());
        assert!(check_request("PUT", "/api/v1/namespaces/ns/services/zk-cs").is_err());
        // The spec of a ZookeeperCluster belongs to its user.
        assert!(
            check_request(
                "PATCH",
                "/apis/zookeeper.ensemble.dev/v1alpha1/namespaces/ns/zookeeperclusters/a"
            )
            .is_err()
        );
        // Events are created, never rewritten.
        assert!(check_request("PATCH", "/api/v1/namespaces/ns/events/e").is_err());
        // No cluster-wide secrets, no listing of CRDs, no other CRD.
        assert!(check_request("GET", "/api/v1/secrets").is_err());
        assert!(
            check_request(
                "GET",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
            )
            .is_err()
        );
        assert!(
            check_request(
                "GET",
                &format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}")
            )
            .is_ok()
        );
        assert!(
            check_request(
                "GET",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/other.example.com"
            )
            .is_err()
        );
    }

    #[test]
    fn table_is_well_formed() {
        let known = [
            "get", "list", "watch", "create", "patch", "update", "delete",
        ];
        let mut seen = HashSet::new();
        for r in RULES {
            assert!(
                seen.insert((r.api_group, r.resource, r.resource_names, r.scope)),
                "duplicate rule for {}",
                r.resource
            );
            assert!(!r.verbs.is_empty(), "{} has no verbs", r.resource);
            for v in r.verbs {
                assert!(known.contains(v), "unknown verb {v} on {}", r.resource);
            }
            // Pinned to one name: the CRD check (the only cluster-scoped rule) and reading the
            // super-user key (no other Secret is readable).
            assert_eq!(
                r.scope == Scope::Cluster
                    || r.resource == "secrets"
                        && r.verbs == ["get"]
                        && r.scope == Scope::OperatorNamespace,
                !r.resource_names.is_empty(),
                "{}",
                r.resource
            );
        }
        // Secrets: read only the key, and nothing outside the operator's namespace.
        // (and in the watched namespaces, the clusters' TLS Secrets by name: never listed).
        for r in RULES.iter().filter(|r| r.resource == "secrets") {
            assert!(!r.verbs.contains(&"list") && !r.verbs.contains(&"watch"));
            if r.scope == Scope::Watched {
                assert_eq!(r.verbs, ["get", "create", "patch", "delete"]);
            } else {
                assert_eq!(r.scope, Scope::OperatorNamespace);
                assert!(r.verbs == ["get"] || r.verbs == ["create"], "{:?}", r.verbs);
            }
        }
        assert_eq!(rules_in(Scope::OperatorNamespace).count(), 3);
    }
}
