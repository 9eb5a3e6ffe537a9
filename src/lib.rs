//! zookeeper-operator: runs Apache ZooKeeper ensembles on Kubernetes with quorum-safe,
//! leader-last rolling restarts.
//!
//! The pipeline of one reconcile is split into pure steps (validate, render, plan, status)
//! and thin IO steps (apply, observe, act) so that almost all behaviour is testable without
//! a cluster.

pub mod client_auth;
pub mod controller;
pub mod crd;
pub mod election;
pub mod health;
pub mod membership;
pub mod metrics;
pub mod names;
pub mod quorum_auth;
pub mod rbac;
pub mod reconfig;
pub mod render;
pub mod rollout;
pub mod status;
pub mod tls;
pub mod validate;

/// Makes ring rustls' process-wide crypto provider. Two providers are compiled in (ring, which
/// the Kubernetes client uses, and aws-lc-rs, which `zookeeper-client`'s TLS pulls in through
/// rustls' default features), and with two rustls refuses to choose: the first TLS client built
/// without an explicit provider panics. Every process calls this before it builds a client;
/// calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}
