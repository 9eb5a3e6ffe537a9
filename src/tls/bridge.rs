//! Certificates from a cert-manager Issuer or a Secret of the user's, and a change of their CA
//! without a quorum loss.
//!
//! cert-manager writes a new certificate and the CA that signed it into its Secret at once (and
//! a user replacing the content of their Secret does the same). Had
//! the members mounted that Secret, a new CA (the Issuer's CA replaced, or `issuerRef` pointed
//! at another Issuer) would reach the first restarted member as a certificate its peers do not
//! trust and a trust its peers' certificates fail: it could not rejoin, and the roll would stop
//! with one member out. So the members mount the operator's copy, `<cluster>-tls-members`, and
//! a new CA reaches them in the same three quorum-safe rolls as a rotation of the operator's
//! own CA, each begun once every member runs the one before:
//!
//! 1. `trust-both`: the members trust the CAs they trusted and the new one; they still present
//!    the certificate of the old CA;
//! 2. `signed-by-new`: they present cert-manager's new certificate, still trusting both;
//! 3. they trust the new CA alone.
//!
//! Members of neighbouring steps always trust each other. A renewal by the same CA (the usual
//! case) is copied at once: one roll, as before. Pure: [`plan`] looks at both Secrets and the
//! material every member runs with, so a pass after an operator restart decides the same.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::{CA_ROTATION_ANNOTATION, Material, material_hash, read};
use crate::validate::ValidatedCluster;

/// The Secret the members mount with `spec.tls.issuerRef` (`<cluster>-tls-members`).
pub fn members_secret(cluster: &str) -> String {
    format!("{cluster}-tls-members")
}

/// The Secret cert-manager writes for the members' Certificate (`<cluster>-tls`).
pub fn issued_secret(cluster: &str) -> String {
    super::managed_secret(cluster)
}

/// A CA change under way, as the members' Secret records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Both CAs trusted, the old one's certificate presented.
    TrustBoth,
    /// Both CAs trusted, the new one's certificate presented.
    SignedByNew,
}

impl Step {
    /// The value of [`CA_ROTATION_ANNOTATION`].
    pub fn as_str(self) -> &'static str {
        match self {
            Step::TrustBoth => "trust-both",
            Step::SignedByNew => "signed-by-new",
        }
    }
}

/// What the members' Secret holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Members {
    /// What the members mount (`ca_cert` may name several CAs).
    pub material: Material,
    /// A CA change under way.
    pub step: Option<Step>,
}

impl Members {
    fn steady(issued: &Material) -> Self {
        Members {
            material: plain(issued),
            step: None,
        }
    }
}

/// The certificates of a PEM bundle, each as one normalised block (so two bundles compare by
/// their certificates, not their whitespace).
pub fn certificates(bundle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in bundle.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line == "-----BEGIN CERTIFICATE-----" {
            current = Some(format!("{line}\n"));
        } else if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
            if line == "-----END CERTIFICATE-----" {
                out.extend(current.take());
            }
        }
    }
    out
}

/// `material` without what only the operator's own CA has.
fn plain(material: &Material) -> Material {
    Material {
        ca_key: None,
        issuer_cert: None,
        ..material.clone()
    }
}

/// What the members' Secret holds; `None` when it holds no usable material.
pub fn read_members(secret: &Secret) -> Option<Members> {
    let material = read(secret.data.as_ref()?).ok()?;
    let step = match secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CA_ROTATION_ANNOTATION))
        .map(String::as_str)
    {
        Some("trust-both") => Some(Step::TrustBoth),
        Some("signed-by-new") => Some(Step::SignedByNew),
        _ => None,
    };
    Some(Members {
        material: plain(&material),
        step,
    })
}

/// What the members' Secret must hold now, given what it holds (`None`: nothing usable yet),
/// what cert-manager issued, and the material hash every member runs with (`None` while a roll
/// is under way). `None`: keep it as it is.
pub fn plan(
    existing: Option<&Secret>,
    issued: &Material,
    members_run: Option<&str>,
) -> Option<Members> {
    let Some(current) = existing.and_then(read_members) else {
        return Some(Members::steady(issued));
    };
    let m = &current.material;
    let trusted = certificates(&m.ca_cert);
    let new_cas: Vec<String> = certificates(&issued.ca_cert)
        .into_iter()
        .filter(|c| !trusted.contains(c))
        .collect();
    if !new_cas.is_empty() {
        // A CA the members do not trust yet: trust it beside the others, keep the certificate.
        return Some(Members {
            material: Material {
                ca_cert: trusted.iter().chain(&new_cas).map(String::as_str).collect(),
                ..m.clone()
            },
            step: Some(Step::TrustBoth),
        });
    }
    let rolled = members_run == Some(material_hash(m).as_str());
    match current.step {
        Some(Step::TrustBoth) if rolled => Some(Members {
            material: Material {
                cert: issued.cert.clone(),
                key: issued.key.clone(),
                ..m.clone()
            },
            step: Some(Step::SignedByNew),
        }),
        // Every member presents a certificate of the new CA: trust cert-manager's CA alone.
        Some(Step::SignedByNew) if rolled => Some(Members::steady(issued)),
        Some(_) => None,
        None => {
            let same = trusted == certificates(&issued.ca_cert)
                && m.cert == issued.cert
                && m.key == issued.key;
            (!same).then(|| Members::steady(issued))
        }
    }
}

/// The members' Secret holding `members`, owned by the cluster.
pub fn members_secret_object(
    v: &ValidatedCluster,
    members: &Members,
    owner: Option<&OwnerReference>,
) -> Secret {
    let mut s = super::secret(v, &members.material, owner);
    s.metadata.name = Some(members_secret(&v.name));
    if let Some(step) = members.step {
        s.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(
                CA_ROTATION_ANNOTATION.to_string(),
                step.as_str().to_string(),
            );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    /// A CA named `cn`, and a member certificate it signed.
    fn issued_by(cn: &str, member: &str) -> Material {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let ca = params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![member.to_string()])
            .unwrap()
            .signed_by(&key, &Issuer::new(params, &ca_key))
            .unwrap();
        Material {
            ca_cert: ca.pem(),
            ca_key: None,
            issuer_cert: None,
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn secret_of(members: &Members) -> Secret {
        let zk: crate::crd::ZookeeperCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
            "kind": "ZookeeperCluster",
            "metadata": {"name": "zk", "namespace": "ns"},
            "spec": {"tls": {"enabled": true, "issuerRef": {"name": "team-ca"}}},
        }))
        .unwrap();
        let v = crate::validate::validate(&zk).unwrap();
        members_secret_object(&v, members, None)
    }

    #[test]
    fn the_first_certificate_and_a_renewal_by_the_same_ca_are_copied_at_once() {
        let first = issued_by("team-ca", "zk-0");
        let copied = plan(None, &first, None).expect("no Secret yet: copy");
        assert_eq!(copied.material, first);
        assert_eq!(copied.step, None);
        let secret = secret_of(&copied);
        assert_eq!(secret.metadata.name.as_deref(), Some("zk-tls-members"));
        assert_eq!(plan(Some(&secret), &first, None), None, "nothing new");

        let renewed = Material {
            cert: issued_by("other", "zk-0").cert,
            ..first.clone()
        };
        let next = plan(Some(&secret), &renewed, None).expect("a renewal is copied");
        assert_eq!((next.material.cert, next.step), (renewed.cert, None));
    }

    #[test]
    fn a_new_ca_takes_three_rolls_each_trusted_by_its_neighbours() {
        let old = issued_by("team-ca", "zk-0");
        let new = issued_by("team-ca-2", "zk-0");
        let start = secret_of(&plan(None, &old, None).unwrap());

        // 1: trust both, still present the old CA's certificate.
        let one = plan(Some(&start), &new, None).expect("a new CA starts the bridge");
        assert_eq!(one.step, Some(Step::TrustBoth));
        assert_eq!(one.material.cert, old.cert);
        assert_eq!(
            certificates(&one.material.ca_cert),
            [certificates(&old.ca_cert), certificates(&new.ca_cert)].concat()
        );
        let one_secret = secret_of(&one);
        assert_eq!(read_members(&one_secret), Some(one.clone()));
        // Nothing moves while a roll is under way, or when the members run something else.
        assert_eq!(plan(Some(&one_secret), &new, None), None);
        assert_eq!(plan(Some(&one_secret), &new, Some("other")), None);

        // 2: once every member trusts both, present the new CA's certificate.
        let run = material_hash(&one.material);
        let two = plan(Some(&one_secret), &new, Some(&run)).expect("rolled: move on");
        assert_eq!(two.step, Some(Step::SignedByNew));
        assert_eq!(
            (&two.material.cert, &two.material.key),
            (&new.cert, &new.key)
        );
        assert_eq!(two.material.ca_cert, one.material.ca_cert);
        let two_secret = secret_of(&two);
        assert_eq!(plan(Some(&two_secret), &new, Some(&run)), None);

        // 3: once every member presents it, trust the new CA alone.
        let run = material_hash(&two.material);
        let three = plan(Some(&two_secret), &new, Some(&run)).expect("rolled: end");
        assert_eq!((three.material, three.step), (new.clone(), None));
    }

    #[test]
    fn a_third_ca_during_the_bridge_is_trusted_before_anything_else_moves() {
        let a = issued_by("a", "zk-0");
        let b = issued_by("b", "zk-0");
        let c = issued_by("c", "zk-0");
        let start = secret_of(&plan(None, &a, None).unwrap());
        let one = secret_of(&plan(Some(&start), &b, None).unwrap());
        let again = plan(Some(&one), &c, None).expect("c is new");
        assert_eq!(again.step, Some(Step::TrustBoth));
        assert_eq!(again.material.cert, a.cert, "still a's certificate");
        assert_eq!(certificates(&again.material.ca_cert).len(), 3);
    }

    #[test]
    fn bundles_compare_by_their_certificates() {
        let a = issued_by("a", "zk-0").ca_cert;
        let b = issued_by("b", "zk-0").ca_cert;
        let spaced = format!("\n{}\n\n{}", a.replace('\n', "\r\n"), b);
        assert_eq!(
            certificates(&spaced),
            [certificates(&a), certificates(&b)].concat()
        );
        assert_eq!(certificates("not a certificate"), Vec::<String>::new());
    }
}
