//! SASL DIGEST-MD5 client authentication (`spec.clientAuth`): where the members find their
//! users, and the Secret holding the operator's own user.
//!
//! The members mount two Secrets: the users' (`spec.clientAuth.secretName`, one key per user,
//! never read by the operator) at [`USERS_DIR`], and the operator's (`<name>-operator-auth`, one
//! key [`names::OPERATOR_USER`]) at [`OPERATOR_DIR`]. `start-zookeeper --client_auth_dir` writes
//! both into the JAAS `Server` section; `--super_user` makes the operator's user ZooKeeper's
//! super user, so it may `reconfig`. The operator's password is a keyed hash of the cluster's
//! UID ([`crate::controller::membership::SuperKey::operator_login`]), written here by
//! server-side apply on every pass.

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
