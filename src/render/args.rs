//! The `start-zookeeper` command line, built only from typed, validated values.
//!
//! The flag set is the reference image's; our own image accepts the same flags. No string from
//! the user reaches a shell: the flags are passed as an argument vector, not through `sh -c`.

use crate::health::WHITELIST;
use crate::validate::ValidatedCluster;

/// Where the data volume is mounted.
pub const DATA_MOUNT: &str = "/var/lib/zookeeper";
/// ZooKeeper configuration directory: on the data volume, since ZooKeeper rewrites `zoo.cfg` and
/// writes a new dynamic configuration file on every reconfiguration it commits.
pub const CONF_DIR: &str = "/var/lib/zookeeper/conf";
/// Where the published membership ConfigMap is mounted.
pub const MEMBERS_DIR: &str = "/etc/zookeeper/members";

/// The published membership file a member with no configuration of its own boots with.
pub fn membership_file() -> String {
    format!("{MEMBERS_DIR}/{}", crate::names::MEMBERS_BOOT_KEY)
}

/// The full `start-zookeeper` invocation (`--servers` is left out: the servers come from the
/// dynamic configuration).
pub fn start_zookeeper(v: &ValidatedCluster) -> Vec<String> {
    let c = &v.spec.config;
    let p = &v.spec.ports;
    let mut args = vec!["start-zookeeper".to_string()];
    let flags: [(&str, String); 18] = [
        // Dynamic membership: no server list here, so growing or shrinking restarts nobody.
        ("membership_file", membership_file()),
        ("data_dir", format!("{DATA_MOUNT}/data")),
        ("data_log_dir", format!("{DATA_MOUNT}/data/log")),
        ("conf_dir", CONF_DIR.to_string()),
        ("client_port", plaintext_client_port(v).to_string()),
        ("election_port", p.leader_election.to_string()),
        ("server_port", p.server.to_string()),
        ("tick_time", c.tick_time.to_string()),
        ("init_limit", c.init_limit.to_string()),
        ("sync_limit", c.sync_limit.to_string()),
        ("heap", v.heap.to_string()),
        ("max_client_cnxns", c.max_client_cnxns.to_string()),
        ("snap_retain_count", c.snap_retain_count.to_string()),
        ("purge_interval", c.purge_interval.to_string()),
        ("max_session_timeout", c.max_session_timeout.to_string()),
        ("min_session_timeout", c.min_session_timeout.to_string()),
        ("log_level", c.log_level.as_str().to_string()),
        ("metrics_port", metrics_port(v).unwrap_or(0).to_string()),
    ];
    args.extend(flags.into_iter().map(|(k, v)| format!("--{k}={v}")));
    if v.tls_mode.has_certificates() {
        let auth = if v.spec.tls.mutual { "need" } else { "none" };
        args.push(format!("--tls_dir={}", crate::tls::MOUNT));
        if v.tls_mode.tls_only() {
            args.push(format!("--secure_client_port={}", p.client));
        } else {
            // Turning TLS on: one of the two steps in which every port takes both.
            args.push(format!("--tls_transition={}", v.tls_mode.as_str()));
        }
        args.push(format!("--tls_client_auth={auth}"));
    }
    if v.spec.client_auth.enabled {
        // The users' Secret, and the operator's own user, ZooKeeper's super user.
        args.extend([
            format!("--client_auth_dir={}", crate::client_auth::USERS_DIR),
            format!("--client_auth_dir={}", crate::client_auth::OPERATOR_DIR),
            format!("--super_user={}", crate::names::OPERATOR_USER),
        ]);
    }
    if v.spec.quorum_auth.enabled {
        args.push(format!("--quorum_auth_dir={}", crate::quorum_auth::DIR));
    }
    args
}

/// The plaintext client port: `spec.ports.client`, or with TLS on the loopback-only
/// `spec.tls.loopbackPort` (then `spec.ports.client` is the TLS port). The pod's own probes use
/// it. While TLS is being turned on the client port takes both, so it is `spec.ports.client`.
pub fn plaintext_client_port(v: &ValidatedCluster) -> i32 {
    if v.tls_mode.tls_only() {
        v.spec.tls.loopback_port
    } else {
        v.spec.ports.client
    }
}

/// The port of ZooKeeper's Prometheus metrics endpoint, when it runs (`spec.metrics.enabled`).
/// `start-zookeeper --metrics_port=0` leaves the provider off.
pub fn metrics_port(v: &ValidatedCluster) -> Option<i32> {
    v.spec.metrics.enabled.then_some(v.spec.ports.metrics)
}

/// JVM flags for the server: the four-letter-word whitelist (ZooKeeper 3.5+ answers only `srvr`
/// otherwise); DNS answers cached for one second and failures not at all, so a peer restarted in
/// a new pod (new IP) is reached at once (images whose java.security sets networkaddress.cache.*
/// override these; this project's image does so with the same values); and a 1 s timeout for
/// opening an election connection: ZooKeeper dials peers one at a time from one thread, so
/// dialing a vanished pod IP for the default 5 s held up the whole election.
pub fn server_jvm_flags() -> String {
    format!(
        "-Dzookeeper.4lw.commands.whitelist={WHITELIST} -Dsun.net.inetaddr.negative.ttl=0 -Dsun.net.inetaddr.ttl=1 -Dzookeeper.cnxTimeout=1000"
    )
}
