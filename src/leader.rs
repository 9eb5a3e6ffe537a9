//! Leader election on a coordination.k8s.io Lease so that only one replica reconciles.
