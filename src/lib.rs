//! zookeeper-operator: runs Apache ZooKeeper ensembles on Kubernetes with quorum-safe,
//! leader-last rolling restarts.
//!
//! The pipeline of one reconcile is split into pure steps (validate, render, plan, status)
//! and thin IO steps (apply, observe, act) so that almost all behaviour is testable without
//! a cluster.

pub mod controller;
pub mod crd;
pub mod election;
pub mod health;
pub mod membership;
pub mod metrics;
pub mod names;
pub mod rbac;
pub mod reconfig;
pub mod render;
pub mod rollout;
pub mod status;
pub mod tls;
pub mod validate;
