//! Quorum authentication (`spec.quorumAuth`): the members prove to each other with SASL
//! DIGEST-MD5 that they hold the cluster's quorum password before a learner may follow or a
//! server may take votes, so a process that reaches the quorum ports without it cannot join.
//!
//! The password lives in the Secret `<cluster>-quorum-auth` (key [`PASSWORD_KEY`]), created once
//! with random bytes and never rewritten by the operator: every member of a running ensemble
//! must hold the same password, and a member restarted with another one could not rejoin. The
//! members mount it at [`DIR`]; `start-zookeeper --quorum_auth_dir` writes the JAAS sections.

use std::collections::BTreeMap;
use std::io::Read;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::render::labels::object_meta;
use crate::validate::ValidatedCluster;

/// Where the members mount the quorum Secret.
pub const DIR: &str = "/etc/zookeeper/quorum-auth";
/// The Secret's key holding the password.
pub const PASSWORD_KEY: &str = "password";

/// The Secret holding a cluster's quorum password.
pub fn secret_name(cluster: &str) -> String {
    format!("{cluster}-quorum-auth")
}

/// A failed quorum-authentication step.
#[derive(Debug, thiserror::Error)]
pub enum QuorumAuthError {
    /// The API refused a read or the creation.
    #[error("failed to {action} the quorum Secret {name}: {source}")]
    Api {
        /// What was tried.
        action: &'static str,
        /// The Secret.
        name: String,
        /// Why.
        source: kube::Error,
    },
    /// No random bytes for a new password.
    #[error("cannot read random bytes for the quorum password: {0}")]
    Random(std::io::Error),
    /// The Secret exists but holds no usable password.
    #[error(
        "the quorum Secret {name} has no usable `password` ({problem}); the members of a running ensemble share that password: put the one they started with back (kubectl -n {namespace} edit secret {name}), or, for a cluster that holds no data yet, delete the Secret so the operator creates a new one"
    )]
    Unusable {
        /// The Secret.
        name: String,
        /// Its namespace.
        namespace: String,
        /// What is wrong.
        problem: &'static str,
    },
}

impl QuorumAuthError {
    /// A bounded label for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            QuorumAuthError::Api { .. } => "apply",
            QuorumAuthError::Random(_) | QuorumAuthError::Unusable { .. } => "quorum-auth",
        }
    }
}

/// What is wrong with a Secret's password, as `start-zookeeper` would refuse it.
pub fn password_problem(data: Option<&BTreeMap<String, ByteString>>) -> Option<&'static str> {
    let Some(bytes) = data.and_then(|d| d.get(PASSWORD_KEY)) else {
        return Some("missing");
    };
    let Ok(text) = std::str::from_utf8(&bytes.0) else {
        return Some("not UTF-8 text");
    };
    if text.is_empty() {
        return Some("empty");
    }
    if text.chars().any(char::is_control) {
        return Some("a line break or another control character");
    }
    None
}

/// A new random password: 32 bytes from the kernel, hex.
pub fn new_password() -> Result<String, std::io::Error> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The quorum Secret holding `password`, owned by the cluster.
pub fn secret(v: &ValidatedCluster, password: &str, owner: Option<&OwnerReference>) -> Secret {
    Secret {
        metadata: object_meta(secret_name(&v.name), &v.namespace, &v.name, owner),
        data: Some(BTreeMap::from([(
            PASSWORD_KEY.to_string(),
            ByteString(password.as_bytes().to_vec()),
        )])),
        type_: Some("Opaque".to_string()),
        ..Default::default()
    }
}

/// The pass's quorum-authentication step, before render: creates the quorum Secret when there
/// is none and checks the one there is; never rewrites it.
pub async fn prepare(
    client: &Client,
    v: &ValidatedCluster,
    owner: &OwnerReference,
) -> Result<(), QuorumAuthError> {
    if !v.spec.quorum_auth.enabled {
        return Ok(());
    }
    let name = secret_name(&v.name);
    let api: Api<Secret> = Api::namespaced(client.clone(), &v.namespace);
    let api_err = |action| {
        let name = name.clone();
        move |source| QuorumAuthError::Api {
            action,
            name,
            source,
        }
    };
    let live = api.get_opt(&name).await.map_err(api_err("read"))?;
    let live = match live {
        Some(s) => s,
        None => {
            let desired = secret(
                v,
                &new_password().map_err(QuorumAuthError::Random)?,
                Some(owner),
            );
            match api.create(&PostParams::default(), &desired).await {
                Ok(created) => created,
                // Created in the meantime (another pass): that one stands.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    api.get(&name).await.map_err(api_err("read"))?
                }
                Err(source) => return Err(api_err("create")(source)),
            }
        }
    };
    match password_problem(live.data.as_ref()) {
        None => Ok(()),
        Some(problem) => Err(QuorumAuthError::Unusable {
            name,
            namespace: v.namespace.clone(),
            problem,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_random_hex_and_checked_as_the_script_checks_them() {
        let (a, b) = (new_password().unwrap(), new_password().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        let data = |v: &[u8]| BTreeMap::from([(PASSWORD_KEY.to_string(), ByteString(v.to_vec()))]);
        assert_eq!(password_problem(Some(&data(a.as_bytes()))), None);
        assert_eq!(password_problem(None), Some("missing"));
        assert_eq!(password_problem(Some(&data(b""))), Some("empty"));
        assert_eq!(
            password_problem(Some(&data(b"pw\n"))),
            Some("a line break or another control character")
        );
        assert_eq!(
            password_problem(Some(&data(&[0xff]))),
            Some("not UTF-8 text")
        );
    }
}
