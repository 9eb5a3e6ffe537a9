//! SASL DIGEST-MD5 client authentication (`spec.clientAuth`): where the members find their
//! users, and the Secret holding the operator's own user.
//!
//! The members mount two Secrets: the users' (`spec.clientAuth.secretName`, one key per user)
//! at [`USERS_DIR`], and the operator's (`<name>-operator-auth`, one key
//! [`names::OPERATOR_USER`]) at [`OPERATOR_DIR`]. `start-zookeeper --client_auth_dir` writes
//! both into the JAAS `Server` section; `--super_user` makes the operator's user ZooKeeper's
//! super user, so it may `reconfig`. The operator's password is a keyed hash of the cluster's
//! UID ([`crate::controller::membership::SuperKey::operator_login`]), written here by
//! server-side apply on every pass. The users' Secret is read to check it before any member
//! mounts it (what `start-zookeeper` would refuse is reported on the cluster instead) and to
//! hash it: the hash sits on the pod template, so a changed password rolls the members (the
//! JAAS file is written at start).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use crate::names::{self, MANAGER};
use crate::reconfig::SaslLogin;
use crate::render::labels::object_meta;
use crate::validate::ValidatedCluster;

/// Where the users' Secret is mounted.
pub const USERS_DIR: &str = "/etc/zookeeper/client-auth/users";
/// Where the operator's Secret is mounted.
pub const OPERATOR_DIR: &str = "/etc/zookeeper/client-auth/operator";

/// The pod-template annotation with the hash of the users' Secret.
pub const USERS_HASH_ANNOTATION: &str = "zookeeper.ensemble.dev/client-auth-hash";

/// A failed client-authentication step.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    /// The operator has no key to derive its own password from.
    #[error(
        "spec.clientAuth is on but the operator has no super-user key (it reads it from its Secret at start), so it cannot log in to the members; restart the operator once its key Secret exists"
    )]
    NoOperatorLogin,
    /// The API refused a read or write.
    #[error("failed to {action} the client-auth secret {name}: {source}")]
    Api {
        /// `read` or `apply`.
        action: &'static str,
        /// The Secret.
        name: String,
        /// Why.
        source: kube::Error,
    },
    /// The users' Secret does not exist.
    #[error(
        "spec.clientAuth.secretName {name}: no such Secret in namespace {namespace}; create it with one key per user (kubectl create secret generic {name} --from-literal=USER=PASSWORD)"
    )]
    MissingUsers {
        /// The Secret.
        name: String,
        /// Its namespace.
        namespace: String,
    },
    /// An entry the members could not use.
    #[error("spec.clientAuth.secretName {name}: {problem}")]
    Users {
        /// The Secret.
        name: String,
        /// What is wrong (never a password).
        problem: String,
    },
}

impl ClientAuthError {
    /// A bounded label for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            ClientAuthError::Api { .. } => "apply",
            _ => "client-auth",
        }
    }
}

/// Checks the users' Secret as `start-zookeeper` will (names of letters, digits, '.', '_', '-';
/// passwords non-empty, one line, no control characters; not the operator's user) and returns
/// the hash of its content.
pub fn users_hash(data: &BTreeMap<String, ByteString>) -> Result<String, String> {
    let mut all = Vec::new();
    for (user, password) in data {
        let name_ok = user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && user
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            return Err(format!(
                "user name '{user}' must be letters, digits, '.', '_' or '-' (not starting with '.' or '-')"
            ));
        }
        if user == names::OPERATOR_USER {
            return Err(format!(
                "'{user}' is the operator's own user; name your users otherwise"
            ));
        }
        let Ok(text) = std::str::from_utf8(&password.0) else {
            return Err(format!("the password of '{user}' is not UTF-8 text"));
        };
        if text.is_empty() {
            return Err(format!("the password of '{user}' is empty"));
        }
        if text.chars().any(char::is_control) {
            return Err(format!(
                "the password of '{user}' has a line break or another control character (a Secret made from a file keeps its trailing newline: use --from-literal)"
            ));
        }
        all.extend_from_slice(user.as_bytes());
        all.push(0);
        all.extend_from_slice(&password.0);
        all.push(0);
    }
    Ok(names::short_hash(&all))
}

/// The pass's client-authentication step, before render: writes the operator's own user,
/// checks the users' Secret and returns its hash for the pod template; `None` when client
/// authentication is off.
pub async fn prepare(
    client: &Client,
    v: &ValidatedCluster,
    login: Option<&SaslLogin>,
    owner: &OwnerReference,
) -> Result<Option<String>, ClientAuthError> {
    let auth = &v.spec.client_auth;
    let (true, Some(users)) = (auth.enabled, &auth.secret_name) else {
        return Ok(None);
    };
    let login = login.ok_or(ClientAuthError::NoOperatorLogin)?;
    let operator = names::operator_auth_secret(&v.name);
    apply(client, v, login, owner)
        .await
        .map_err(|source| ClientAuthError::Api {
            action: "apply",
            name: operator,
            source,
        })?;
    let api: Api<Secret> = Api::namespaced(client.clone(), &v.namespace);
    let live = api
        .get_opt(users)
        .await
        .map_err(|source| ClientAuthError::Api {
            action: "read",
            name: users.clone(),
            source,
        })?
        .ok_or_else(|| ClientAuthError::MissingUsers {
            name: users.clone(),
            namespace: v.namespace.clone(),
        })?;
    users_hash(&live.data.unwrap_or_default())
        .map(Some)
        .map_err(|problem| ClientAuthError::Users {
            name: users.clone(),
            problem,
        })
}

/// The Secret holding the operator's user: key [`names::OPERATOR_USER`], its password.
pub fn operator_secret(
    v: &ValidatedCluster,
    login: &SaslLogin,
    owner: Option<&OwnerReference>,
) -> Secret {
    Secret {
        metadata: object_meta(
            names::operator_auth_secret(&v.name),
            &v.namespace,
            &v.name,
            owner,
        ),
        data: Some(BTreeMap::from([(
            login.user.clone(),
            ByteString(login.password().as_bytes().to_vec()),
        )])),
        type_: Some("Opaque".to_string()),
        ..Default::default()
    }
}

/// Writes the operator's Secret (server-side apply; unchanged content is a no-op).
pub async fn apply(
    client: &Client,
    v: &ValidatedCluster,
    login: &SaslLogin,
    owner: &OwnerReference,
) -> Result<(), kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &v.namespace);
    let desired = operator_secret(v, login, Some(owner));
    api.patch(
        &names::operator_auth_secret(&v.name),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&desired),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ZookeeperCluster;

    fn data(entries: &[(&str, &[u8])]) -> BTreeMap<String, ByteString> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
            .collect()
    }

    #[test]
    fn the_users_secret_is_checked_as_the_script_will_and_hashed() {
        let ok = data(&[("alice", br#"a"b\c${x}"#), ("bob.b-2_x", b"pw")]);
        let hash = users_hash(&ok).unwrap();
        assert_eq!(hash, users_hash(&ok).unwrap());
        let changed = data(&[("alice", b"new"), ("bob.b-2_x", b"pw")]);
        assert_ne!(hash, users_hash(&changed).unwrap());
        for (bad, want) in [
            (data(&[("alice", b"pw\n")]), "has a line break"),
            (data(&[("alice", b"")]), "the password of 'alice' is empty"),
            (data(&[("alice", &[0xff])]), "not UTF-8"),
            (data(&[(".hidden", b"pw")]), "user name '.hidden'"),
            (
                data(&[("zookeeper-operator", b"pw")]),
                "the operator's own user",
            ),
        ] {
            let err = users_hash(&bad).unwrap_err();
            assert!(err.contains(want), "{err}");
            assert!(!err.contains("pw"), "a password in a message: {err}");
        }
    }

    #[test]
    fn the_operator_secret_holds_one_user_and_is_owned_by_the_cluster() {
        let zk: ZookeeperCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
            "kind": "ZookeeperCluster",
            "metadata": {"name": "zk", "namespace": "ns"},
            "spec": {"clientAuth": {"enabled": true, "secretName": "zk-users"}},
        }))
        .unwrap();
        let v = crate::validate::validate(&zk).unwrap();
        let owner = OwnerReference {
            name: "zk".into(),
            uid: "u".into(),
            ..Default::default()
        };
        let s = operator_secret(
            &v,
            &SaslLogin::new("zookeeper-operator", "pw"),
            Some(&owner),
        );
        assert_eq!(s.metadata.name.as_deref(), Some("zk-operator-auth"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(s.metadata.owner_references.unwrap()[0].uid, "u");
        let data = s.data.unwrap();
        assert_eq!(data.len(), 1);
        assert_eq!(data["zookeeper-operator"].0, b"pw");
    }
}
