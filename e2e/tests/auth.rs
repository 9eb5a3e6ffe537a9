//! Client authentication on the local cluster: a `spec.clientAuth` cluster whose users come from
//! a Secret becomes Available (the operator's own SASL user, in the Secret `<name>-operator-auth`
//! it writes, reads the configuration), a user with the right password writes and reads through
//! the client Service, a client without a login, a wrong password or an unknown user is refused,
//! and a scale from 3 to 5 members and back works: the operator's reconfiguration sessions log in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;
use zookeeper_client::{Acls, Client, CreateMode};
use zookeeper_operator::reconfig::SaslLogin;

use super::{
    TestNamespace, apply_cluster, client, cluster, connect_string, log, spec, wait_settled,
};

const NAME: &str = "zk";
const USERS: &str = "zk-users";
const PASSWORD: &str = "alice's \"pass\\word\"";

/// A session as `login` (or none), proven by a first request.
async fn session(address: &str, login: Option<&SaslLogin>) -> Result<Client, String> {
    let mut connector = Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_fail_eagerly();
    if let Some(login) = login {
        connector = connector.with_sasl(login.options());
    }
    let attempt = async {
        let client = connector
            .connect(address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        client
            .get_children("/")
            .await
            .map_err(|e| format!("first request: {e}"))?;
        Ok(client)
    };
    tokio::time::timeout(Duration::from_secs(20), attempt)
        .await
        .unwrap_or_else(|_| Err("no answer within 20 s".to_string()))
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed: run e2e/operator-test"]
async fn client_auth_admits_users_with_their_password_only_and_the_operator_still_scales() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "e2e-auth").await;
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": USERS},
        "stringData": {"alice": PASSWORD, "bob": "bobs-password"}
    }))
    .expect("Secret");
    Api::<Secret>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the users' Secret");
    let auth = json!({"clientAuth": {"enabled": true, "secretName": USERS}});
    let started = Instant::now();
    apply_cluster(&client, &ns.name, NAME, spec(auth.clone()))
        .await
        .expect("apply");
    let zk = wait_settled(&client, &ns.name, NAME, Duration::from_secs(420)).await;
    log(format!(
        "client auth: Available and settled in {:.1}s, configVersion {:?}",
        started.elapsed().as_secs_f64(),
        zk.status.as_ref().and_then(|s| s.config_version.clone())
    ));
    assert!(
        zk.status
            .as_ref()
            .and_then(|s| s.config_version.as_ref())
            .is_some(),
        "the operator read the committed configuration (it logs in as its own user)"
    );
    let operator_secret = Api::<Secret>::namespaced(client.clone(), &ns.name)
        .get(&format!("{NAME}-operator-auth"))
        .await
        .expect("the operator's own user Secret");
    log(format!(
        "client auth: {NAME}-operator-auth holds {:?}",
        operator_secret
            .data
            .as_ref()
            .map(|d| d.keys().cloned().collect::<Vec<_>>())
    ));

    let address = connect_string(&client, &ns.name, NAME).await;
    let alice = SaslLogin::new("alice", PASSWORD);
    let as_alice = session(&address, Some(&alice))
        .await
        .expect("alice logs in with her password");
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    as_alice
        .create("/auth-e2e", b"written by alice", &persistent)
        .await
        .expect("alice writes");
    let bob = SaslLogin::new("bob", "bobs-password");
    let as_bob = session(&address, Some(&bob))
        .await
        .expect("bob logs in with his password");
    let (data, _) = as_bob.get_data("/auth-e2e").await.expect("bob reads");
    assert_eq!(data, b"written by alice");

    let mut refused = BTreeMap::new();
    for (who, login) in [
        ("no login", None),
        (
            "a wrong password",
            Some(SaslLogin::new("alice", "not-her-password")),
        ),
        ("an unknown user", Some(SaslLogin::new("mallory", "pw"))),
    ] {
        let outcome = session(&address, login.as_ref()).await;
        assert!(outcome.is_err(), "{who} is refused");
        refused.insert(who, outcome.err().unwrap_or_default());
    }
    log(format!("client auth: refused {refused:?}"));

    // The operator's reconfiguration sessions log in too: 3 -> 5 -> 3.
    for replicas in [5, 3] {
        let mut change = auth.clone();
        super::merge(&mut change, json!({"replicas": replicas}));
        let t0 = Instant::now();
        apply_cluster(&client, &ns.name, NAME, spec(change))
            .await
            .expect("apply replicas");
        let zk = wait_settled(&client, &ns.name, NAME, Duration::from_secs(420)).await;
        let status = zk.status.as_ref().expect("status");
        let participants = status
            .members
            .iter()
            .filter(|m| m.role.as_deref() == Some("participant"))
            .count();
        log(format!(
            "client auth: {replicas} members in {:.1}s, configVersion {:?}, {participants} participants",
            t0.elapsed().as_secs_f64(),
            status.config_version
        ));
        assert_eq!(status.members.len(), replicas, "{replicas} members");
        assert_eq!(
            participants, replicas,
            "every member is a voting participant"
        );
    }
    let (data, _) = as_alice
        .get_data("/auth-e2e")
        .await
        .expect("alice's session outlived both membership changes");
    assert_eq!(data, b"written by alice");
    let zk = cluster(&client, &ns.name, NAME).await;
    eprintln!(
        "AUTH client authentication | settled | 3 refusals | scaled 3->5->3 | configVersion {:?}",
        zk.status.and_then(|s| s.config_version)
    );
}
