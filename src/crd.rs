//! The ZookeeperCluster custom resource.
