//! What a CA outside the operator writes for the members (cert-manager's Issuer, a user's
//! tooling): for the tests of a change of CA, CAs that share one name, as a CA renewed with a
//! new key does.

use zookeeper_operator::tls::{self, Material};
use zookeeper_operator::validate::ValidatedCluster;

/// A new CA named `ca_name` (a new key at each call) and the members' certificate of `v` it
/// signed (the cluster's SANs and `extra`): `ca.crt`, `tls.crt` and `tls.key`, no CA key.
pub fn issued_by_a_ca_named(v: &ValidatedCluster, ca_name: &str, extra: &[String]) -> Material {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = params.self_signed(&key).unwrap().pem();
    Material {
        ca_key: None,
        ..tls::reissue(
            v,
            &ca,
            &key.serialize_pem(),
            extra,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap()
    }
}
