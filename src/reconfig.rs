//! Carries out a [`MembershipStep`] through ZooKeeper's `reconfig`, as the cluster's super user.
//!
//! The planner ([`crate::membership`]) decides; this module only talks to ZooKeeper:
//! [`Reconfigurer::committed`] reads the committed configuration (after a `sync`, so a lagging
//! member cannot answer with an old one), [`Reconfigurer::apply`] sends one incremental
//! `reconfig` guarded by the version that was read, and [`member_config_version`] asks one
//! member which configuration it has learned.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use sha1::Digest as _;
use zookeeper_client::{Client, EnsembleUpdate};

use crate::health::MemberAddress;
use crate::membership::{
    CommittedConfig, ConfigVersion, MembershipStep, ParseConfigError, ServerId,
};
use crate::tls::ClientTls;

/// Where ZooKeeper keeps its configuration.
const CONFIG_NODE: &str = "/zookeeper/config";

/// A SASL DIGEST-MD5 login: how the operator's sessions authenticate with a cluster that
/// enforces client authentication (`spec.clientAuth`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SaslLogin {
    /// The user name.
    pub user: String,
    password: String,
}

impl std::fmt::Debug for SaslLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SaslLogin {{ user: {:?}, password: <redacted> }}",
            self.user
        )
    }
}

impl SaslLogin {
    /// `user` with `password`.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
        }
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The client's SASL options.
    pub fn options(&self) -> zookeeper_client::SaslOptions {
        zookeeper_client::SaslOptions::digest_md5(self.user.clone(), self.password.clone()).into()
    }
}

/// Adds the SASL login to a connector, when there is one.
fn with_login(
    connector: zookeeper_client::Connector,
    login: Option<&SaslLogin>,
) -> zookeeper_client::Connector {
    match login {
        Some(login) => connector.with_sasl(login.options()),
        None => connector,
    }
}

/// The per-cluster ZooKeeper super user the operator authenticates as: `super` of the digest
/// scheme, and, on a cluster that enforces SASL client authentication, the operator's SASL user
/// (the servers' `zookeeper.superUser`).
#[derive(Clone)]
pub struct SuperUser {
    password: String,
    sasl: Option<SaslLogin>,
}

impl std::fmt::Debug for SuperUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SuperUser {{ password: <redacted>, sasl: {:?} }}",
            self.sasl
        )
    }
}

impl SuperUser {
    /// The user name ZooKeeper's digest provider treats as super user.
    pub const NAME: &'static str = "super";

    /// The super user with this password.
    pub fn new(password: impl Into<String>) -> Self {
        Self {
            password: password.into(),
            sasl: None,
        }
    }

    /// The same user, logging in through SASL as `login` too (a cluster with client
    /// authentication enforced closes sessions that do not).
    pub fn with_sasl(self, login: Option<SaslLogin>) -> Self {
        Self {
            sasl: login,
            ..self
        }
    }

    /// The SASL login, when there is one.
    pub fn sasl(&self) -> Option<&SaslLogin> {
        self.sasl.as_ref()
    }

    /// What the client sends to the `digest` scheme: `super:<password>`.
    pub fn credentials(&self) -> String {
        format!("{}:{}", Self::NAME, self.password)
    }

    /// `super:<base64 of sha1(super:<password>)>`: the value of the servers'
    /// `zookeeper.DigestAuthenticationProvider.superDigest`.
    pub fn digest(&self) -> String {
        let hash = sha1::Sha1::digest(self.credentials().as_bytes());
        format!(
            "{}:{}",
            Self::NAME,
            base64::engine::general_purpose::STANDARD.encode(hash)
        )
    }

    /// The JVM flag that makes a server accept this super user.
    pub fn server_flag(&self) -> String {
        format!(
            "-Dzookeeper.DigestAuthenticationProvider.superDigest={}",
            self.digest()
        )
    }
}

/// A failed reconfiguration action.
#[derive(Debug, thiserror::Error)]
pub enum ReconfigError {
    /// No session with the ensemble.
    #[error("connect to {connect_string} as the super user: {source}")]
    Connect {
        /// Where.
        connect_string: String,
        /// Why.
        source: zookeeper_client::Error,
    },
    /// No answer in time.
    #[error("{action} at {connect_string}: no answer within {timeout:?}")]
    Timeout {
        /// What was attempted.
        action: &'static str,
        /// Where.
        connect_string: String,
        /// The budget.
        timeout: Duration,
    },
    /// `sync` or `get_config` failed.
    #[error("read the committed configuration: {0}")]
    ReadConfig(#[source] zookeeper_client::Error),
    /// The configuration text does not parse.
    #[error("parse the configuration: {0}")]
    ParseConfig(#[from] ParseConfigError),
    /// Another change was committed after `expected` was read (a retry, or a second operator).
    #[error("{change}: the configuration changed since version {expected} was read")]
    ConfigChanged {
        /// The step.
        change: String,
        /// The version the step was planned from.
        expected: ConfigVersion,
    },
    /// `reconfig` failed.
    #[error("{change}: {reason}")]
    UpdateEnsemble {
        /// The step.
        change: String,
        /// ZooKeeper's answer, spelled out.
        reason: String,
        /// The client error.
        #[source]
        source: zookeeper_client::Error,
    },
    /// The step is not a change.
    #[error("{0:?} is not a configuration change")]
    NotAChange(MembershipStep),
}

impl ReconfigError {
    /// A bounded label for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            ReconfigError::Connect { .. } => "connect",
            ReconfigError::Timeout { .. } => "timeout",
            ReconfigError::ReadConfig(_) => "read-config",
            ReconfigError::ParseConfig(_) => "parse-config",
            ReconfigError::ConfigChanged { .. } => "config-changed",
            ReconfigError::UpdateEnsemble { .. } => "update-ensemble",
            ReconfigError::NotAChange(_) => "not-a-change",
        }
    }
}

/// ZooKeeper's reconfig error codes, which the client only knows by number.
fn spell(e: &zookeeper_client::Error) -> String {
    match e {
        zookeeper_client::Error::UnexpectedErrorCode(-13) => {
            "the new configuration has no quorum of connected, synced servers".into()
        }
        zookeeper_client::Error::UnexpectedErrorCode(-14) => {
            "another reconfiguration is in progress".into()
        }
        zookeeper_client::Error::NoAuth => {
            "not authorized (the servers do not accept this super user)".into()
        }
        zookeeper_client::Error::ReconfigDisabled => {
            "reconfiguration is disabled on the servers (reconfigEnabled=false)".into()
        }
        other => other.to_string(),
    }
}

async fn within<T>(
    action: &'static str,
    connect_string: &str,
    timeout: Duration,
    f: impl Future<Output = Result<T, ReconfigError>>,
) -> Result<T, ReconfigError> {
    tokio::time::timeout(timeout, f).await.unwrap_or_else(|_| {
        Err(ReconfigError::Timeout {
            action,
            connect_string: connect_string.to_string(),
            timeout,
        })
    })
}

/// Opens a session, over TLS when `tls` is given.
async fn session(
    connector: zookeeper_client::Connector,
    connect_string: &str,
    tls: Option<&ClientTls>,
) -> Result<Client, ReconfigError> {
    let failed = |source| ReconfigError::Connect {
        connect_string: connect_string.to_string(),
        source,
    };
    match tls {
        None => connector.connect(connect_string).await.map_err(failed),
        Some(tls) => {
            let options = tls.zookeeper_options().map_err(failed)?;
            connector
                .with_tls(options)
                .secure_connect(connect_string)
                .await
                .map_err(failed)
        }
    }
}

/// A session with the ensemble, authenticated as the super user.
pub struct Reconfigurer {
    client: Client,
    connect_string: String,
    timeout: Duration,
}

impl Reconfigurer {
    /// Connects to any member of `connect_string` as `user`; `timeout` bounds this and every
    /// later call.
    pub async fn connect(
        connect_string: &str,
        user: &SuperUser,
        timeout: Duration,
    ) -> Result<Self, ReconfigError> {
        Self::connect_over(connect_string, user, timeout, None).await
    }

    /// [`Self::connect`] over TLS when `tls` is given (every member of `connect_string` is then
    /// asked on its `secureClientPort`, trusting the cluster's CA only).
    pub async fn connect_over(
        connect_string: &str,
        user: &SuperUser,
        timeout: Duration,
        tls: Option<&ClientTls>,
    ) -> Result<Self, ReconfigError> {
        let client = within("connect", connect_string, timeout, async {
            let connector = Client::connector()
                .with_session_timeout(timeout.max(Duration::from_secs(4)))
                .with_auth("digest", user.credentials().as_bytes());
            let connector = with_login(connector, user.sasl());
            session(connector, connect_string, tls).await
        })
        .await?;
        Ok(Self {
            client,
            connect_string: connect_string.to_string(),
            timeout,
        })
    }

    /// The committed configuration, read after a `sync` with the leader.
    pub async fn committed(&self) -> Result<CommittedConfig, ReconfigError> {
        within("read config", &self.connect_string, self.timeout, async {
            self.client
                .sync(CONFIG_NODE)
                .await
                .map_err(ReconfigError::ReadConfig)?;
            let (data, _) = self
                .client
                .get_config()
                .await
                .map_err(ReconfigError::ReadConfig)?;
            Ok(CommittedConfig::parse(&String::from_utf8_lossy(&data))?)
        })
        .await
    }

    /// Sends `step` as one incremental `reconfig`, accepted only while the committed version is
    /// still `expected`; returns the configuration it committed.
    pub async fn apply(
        &self,
        step: &MembershipStep,
        expected: ConfigVersion,
    ) -> Result<CommittedConfig, ReconfigError> {
        let (change, joining, leaving) = match step {
            MembershipStep::Add(s) => (format!("add server.{}", s.id), vec![s.line()], vec![]),
            MembershipStep::Remove(id) => {
                (format!("remove server.{id}"), vec![], vec![id.to_string()])
            }
            MembershipStep::Readdress(servers) => (
                format!(
                    "commit the client addresses of {}",
                    servers
                        .iter()
                        .map(|s| format!("server.{}", s.id))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                servers
                    .iter()
                    .map(crate::membership::ServerSpec::line)
                    .collect(),
                vec![],
            ),
            other => return Err(ReconfigError::NotAChange(other.clone())),
        };
        within("reconfig", &self.connect_string, self.timeout, async {
            let update = EnsembleUpdate::Incremental {
                joinings: joining.iter().map(String::as_str),
                leavings: leaving.iter().map(String::as_str),
            };
            // The client calls it `expected_zxid`: the version of the configuration the change
            // is based on (zkCli's `reconfig -v`), which is the zxid that committed it.
            match self.client.update_ensemble(update, Some(expected.0)).await {
                Ok((data, _)) => Ok(CommittedConfig::parse(&String::from_utf8_lossy(&data))?),
                Err(zookeeper_client::Error::BadVersion) => {
                    Err(ReconfigError::ConfigChanged { change, expected })
                }
                Err(source) => Err(ReconfigError::UpdateEnsemble {
                    change,
                    reason: spell(&source),
                    source,
                }),
            }
        })
        .await
    }
}

/// The configuration version member `address` has learned: its own answer to `get_config`,
/// without `sync`, logged in as `address.sasl` when given. A member that does not serve gives
/// an error.
pub async fn member_config_version(
    address: &MemberAddress,
    timeout: Duration,
) -> Result<ConfigVersion, ReconfigError> {
    let connect_string = address.to_string();
    within("read member config", &connect_string, timeout, async {
        let connector = Client::connector().with_session_timeout(Duration::from_secs(4));
        let connector = with_login(connector, address.sasl.as_ref());
        let client = session(connector, &connect_string, address.tls.as_ref()).await?;
        let (data, _) = client
            .get_config()
            .await
            .map_err(ReconfigError::ReadConfig)?;
        Ok(CommittedConfig::parse(&String::from_utf8_lossy(&data))?.version)
    })
    .await
}

/// [`member_config_version`] of every member that answers; members that do not are left out.
pub async fn member_config_versions(
    members: impl IntoIterator<Item = (ServerId, MemberAddress)>,
    timeout: Duration,
) -> BTreeMap<ServerId, ConfigVersion> {
    let asks = members
        .into_iter()
        .map(|(id, address)| async move { (id, member_config_version(&address, timeout).await) });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .filter_map(|(id, r)| r.ok().map(|v| (id, v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn super_digest_matches_zookeepers_generator() {
        // `echo -n super:secret | openssl sha1 -binary | base64`, which is what
        // DigestAuthenticationProvider.generateDigest("super:secret") computes.
        let user = SuperUser::new("secret");
        assert_eq!(user.credentials(), "super:secret");
        assert_eq!(user.digest(), "super:lK75jTNcA+U9vtVEw5vB51mj/w4=");
        assert!(user.server_flag().ends_with(&user.digest()));
        assert!(!format!("{user:?}").contains("secret"));
    }

    #[test]
    fn reconfig_error_codes_are_spelled_out() {
        let e = zookeeper_client::Error::UnexpectedErrorCode(-13);
        assert!(spell(&e).contains("no quorum"));
        let e = zookeeper_client::Error::UnexpectedErrorCode(-14);
        assert!(spell(&e).contains("in progress"));
    }
}
