//! The pinned versions of `e2e/versions.env`, read at compile time, for Rust tests.
//!
//! Include it with `#[path = ".../e2e/lib/versions.rs"] mod versions;`. A key missing from the
//! file is a compile error.

#![allow(dead_code)]

/// The file itself, for tests that compare it with other copies.
pub const FILE: &str = include_str!("../versions.env");

pub const KUBE_VERSION: &str = pin("KUBE_VERSION");
pub const ETCD_VERSION: &str = pin("ETCD_VERSION");
pub const COREDNS_VERSION: &str = pin("COREDNS_VERSION");
pub const HELM_VERSION: &str = pin("HELM_VERSION");
pub const PAUSE_VERSION: &str = pin("PAUSE_VERSION");
pub const ZOOKEEPER_VERSION: &str = pin("ZOOKEEPER_VERSION");
pub const OPERATOR_VERSION: &str = pin("OPERATOR_VERSION");
pub const PROMETHEUS_VERSION: &str = pin("PROMETHEUS_VERSION");
pub const KUBE_ROUTER_VERSION: &str = pin("KUBE_ROUTER_VERSION");
pub const CERT_MANAGER_VERSION: &str = pin("CERT_MANAGER_VERSION");

/// Every key with its value, in the order of the file.
pub const ALL: [(&str, &str); 10] = [
    ("KUBE_VERSION", KUBE_VERSION),
    ("ETCD_VERSION", ETCD_VERSION),
    ("COREDNS_VERSION", COREDNS_VERSION),
    ("HELM_VERSION", HELM_VERSION),
    ("PAUSE_VERSION", PAUSE_VERSION),
    ("ZOOKEEPER_VERSION", ZOOKEEPER_VERSION),
    ("OPERATOR_VERSION", OPERATOR_VERSION),
    ("PROMETHEUS_VERSION", PROMETHEUS_VERSION),
    ("KUBE_ROUTER_VERSION", KUBE_ROUTER_VERSION),
    ("CERT_MANAGER_VERSION", CERT_MANAGER_VERSION),
];

/// The value of the line `KEY=VALUE` (the first one; comment lines never match).
const fn pin(key: &str) -> &'static str {
    let text = FILE.as_bytes();
    let key = key.as_bytes();
    let mut start = 0;
    while start < text.len() {
        let mut end = start;
        while end < text.len() && text[end] != b'\n' {
            end += 1;
        }
        if end - start > key.len() && text[start + key.len()] == b'=' {
            let mut same = true;
            let mut i = 0;
            while i < key.len() {
                if text[start + i] != key[i] {
                    same = false;
                }
                i += 1;
            }
            if same {
                let (_, rest) = text.split_at(start + key.len() + 1);
                let (value, _) = rest.split_at(end - start - key.len() - 1);
                match core::str::from_utf8(value) {
                    Ok(v) => return v,
                    Err(_) => panic!("e2e/versions.env is not UTF-8"),
                }
            }
        }
        start = end + 1;
    }
    panic!("a pinned version is missing from e2e/versions.env")
}
