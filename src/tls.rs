//! TLS material of a cluster: the per-cluster CA, the members' certificate, the Secret that
//! holds them, when to renew, and the client side (the operator's own TLS connections).
//!
//! Pure apart from reading the clock's value it is given: [`plan`] looks at what the Secret
//! holds now and says what it must hold, so a pass after an operator restart decides the same.
//!
//! One certificate serves every member: its SANs name every ordinal a cluster can have (at
//! most 9), the headless Service's wildcard and the client Service, so scaling never needs a
//! new certificate. It is both a server and a client certificate: members are TLS clients of
//! each other on the quorum ports, and the operator presents it when the client port asks for
//! one (mutual TLS).

pub mod apply;
pub mod bridge;
pub mod transition;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;

use crate::names;
use crate::render::labels::object_meta;
use crate::validate::ValidatedCluster;

/// Secret key of the CA certificate (PEM): what clients trust.
pub const CA_CERT: &str = "ca.crt";
/// Secret key of the CA's private key (operator-managed CA only).
pub const CA_KEY: &str = "ca.key";
/// Secret key of the signing CA's certificate while `ca.crt` trusts two CAs (a CA rotation).
pub const ISSUER_CERT: &str = "issuer.crt";
/// Secret keys of the next CA during the first roll of a CA rotation.
pub const NEXT_CA_CERT: &str = "next-ca.crt";
/// See [`NEXT_CA_CERT`].
pub const NEXT_CA_KEY: &str = "next-ca.key";
/// Annotation on the operator's Secret: the phase of a CA rotation in progress
/// (`trust-both`, then `signed-by-new`); absent when none is.
pub const CA_ROTATION_ANNOTATION: &str = "zookeeper.ensemble.dev/ca-rotation";
/// Annotation on a ZookeeperCluster asking for a new CA: any new value starts one rotation.
pub const ROTATE_CA_ANNOTATION: &str = "zookeeper.ensemble.dev/rotate-ca";
/// Annotation on the operator's Secret: the value of [`ROTATE_CA_ANNOTATION`] last acted on.
pub const CA_ROTATED_FOR_ANNOTATION: &str = "zookeeper.ensemble.dev/ca-rotated-for";
/// A CA this close to expiry is replaced, by the rotation's three rolls.
pub const CA_RENEW_BEFORE: Duration = Duration::from_secs(365 * 24 * 3600);
/// Secret key of the members' certificate (PEM).
pub const CERT: &str = "tls.crt";
/// Secret key of the members' private key (PKCS#8 PEM).
pub const KEY: &str = "tls.key";
/// Annotation on the Secret: when the members' certificate expires (RFC 3339).
pub const NOT_AFTER_ANNOTATION: &str = "zookeeper.ensemble.dev/tls-not-after";
/// Pod-template annotation: a hash of the certificate material the members run with, so a new
/// certificate or CA rolls the members (leader last) like any other restart-relevant change.
pub const MATERIAL_HASH_ANNOTATION: &str = "zookeeper.ensemble.dev/tls-hash";
/// Where the members mount the Secret.
pub const MOUNT: &str = "/etc/zookeeper/tls";

/// How long a members' certificate is valid.
pub const CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// How long the operator's CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// A certificate this close to expiry is issued again (and the members roll onto it).
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// The most members a cluster has (`spec.replicas` <= 9): every ordinal gets its names.
const MAX_MEMBERS: u32 = 9;

/// The Secret the operator manages for `cluster` (`<cluster>-tls`).
pub fn managed_secret(cluster: &str) -> String {
    format!("{cluster}-tls")
}

/// The Secret the members mount: the operator's copy of cert-manager's or the user's
/// ([`bridge`]: a new CA is bridged), or the operator's own.
pub fn secret_name(v: &ValidatedCluster) -> String {
    if v.spec.tls.issuer_ref.is_some() || v.spec.tls.secret_name.is_some() {
        bridge::members_secret(&v.name)
    } else {
        managed_secret(&v.name)
    }
}

/// A failure to make or read TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused to build a key or certificate.
    #[error("generate {what}: {source}")]
    Generate {
        /// Which object.
        what: &'static str,
        /// Why.
        source: rcgen::Error,
    },
    /// A Secret lacks a key or holds something that is not PEM of the right kind.
    #[error("secret key {key}: {detail}")]
    Material {
        /// The Secret's key.
        key: &'static str,
        /// What is wrong.
        detail: String,
    },
}

impl TlsError {
    /// A bounded label for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            TlsError::Generate { .. } => "tls-generate",
            TlsError::Material { .. } => "tls-material",
        }
    }
}

fn generate(what: &'static str) -> impl FnOnce(rcgen::Error) -> TlsError {
    move |source| TlsError::Generate { what, source }
}

/// The names the members' certificate is valid for: every ordinal's DNS name in its long and
/// short forms, the headless Service's wildcard, the client Service, and the pod's loopback
/// (so a probe inside the pod can verify it), plus `extra` (tests add 127.0.0.x).
pub fn member_sans(v: &ValidatedCluster, extra: &[String]) -> Vec<String> {
    let (name, ns, domain) = (&v.name, &v.namespace, &v.spec.cluster_domain);
    let hs = names::headless_service(name);
    let cs = names::client_service(name);
    let mut sans = Vec::new();
    for i in 0..MAX_MEMBERS {
        let pod = names::member_pod(name, i);
        sans.push(names::member_host(name, i, ns, domain));
        sans.push(format!("{pod}.{hs}.{ns}.svc"));
        sans.push(format!("{pod}.{hs}.{ns}"));
        sans.push(format!("{pod}.{hs}"));
    }
    sans.push(format!("*.{hs}.{ns}.svc.{domain}"));
    sans.push(format!("*.{hs}.{ns}.svc"));
    sans.push(names::client_host(name, ns, domain));
    sans.push(format!("{cs}.{ns}.svc"));
    sans.push(format!("{cs}.{ns}"));
    sans.push(cs);
    sans.push("localhost".to_string());
    sans.push("127.0.0.1".to_string());
    sans.extend(extra.iter().cloned());
    sans
}

/// PEM text of a cluster's TLS material.
#[derive(Clone, PartialEq, Eq)]
pub struct Material {
    /// The CA certificate clients and members trust.
    pub ca_cert: String,
    /// The CA's key; `None` for a user's Secret (the operator then never issues).
    pub ca_key: Option<String>,
    /// The certificate of the CA that signs (whose key is `ca_key`) when `ca_cert` trusts more
    /// than that one CA (a CA rotation); `None`: `ca_cert` is the issuer.
    pub issuer_cert: Option<String>,
    /// The members' certificate.
    pub cert: String,
    /// The members' key.
    pub key: String,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("ca_cert", &self.ca_cert)
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl Material {
    /// The certificate of the CA that signs.
    pub fn issuer(&self) -> &str {
        self.issuer_cert.as_deref().unwrap_or(&self.ca_cert)
    }
}

/// A CA's parameters. Its name carries a hash of its key: two CAs of one cluster (old and new,
/// both trusted during a rotation) must differ in name, or a TLS peer looking a certificate's
/// issuer up by name may check it against the wrong one.
fn ca_params(
    cluster: &str,
    namespace: &str,
    key: &KeyPair,
    now: OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(
        DnType::CommonName,
        format!(
            "{cluster}.{namespace} ZooKeeper CA {}",
            names::short_hash(key.public_key_pem().as_bytes())
        ),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, names::MANAGER);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + CA_VALIDITY;
    params
}

fn member_params(
    v: &ValidatedCluster,
    sans: Vec<String>,
    now: OffsetDateTime,
) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(sans).map_err(generate("members' certificate"))?;
    params.distinguished_name.push(
        DnType::CommonName,
        names::member_domain(&v.name, &v.namespace, &v.spec.cluster_domain),
    );
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + CERT_VALIDITY;
    Ok(params)
}

/// A new CA for the cluster and a members' certificate signed by it.
pub fn issue(
    v: &ValidatedCluster,
    extra_sans: &[String],
    now: OffsetDateTime,
) -> Result<Material, TlsError> {
    let ca_key = KeyPair::generate().map_err(generate("CA key"))?;
    let ca = ca_params(&v.name, &v.namespace, &ca_key, now)
        .self_signed(&ca_key)
        .map_err(generate("CA certificate"))?;
    let ca_cert = ca.pem();
    reissue(v, &ca_cert, &ca_key.serialize_pem(), extra_sans, now)
}

/// A new members' certificate from the CA the Secret already holds (renewal: the CA, which
/// clients trust, stays).
pub fn reissue(
    v: &ValidatedCluster,
    ca_cert: &str,
    ca_key: &str,
    extra_sans: &[String],
    now: OffsetDateTime,
) -> Result<Material, TlsError> {
    reissue_trusting(v, ca_cert, None, ca_key, extra_sans, now)
}

/// A new members' certificate signed by `issuer` (default: `trust`, a single CA) with
/// `issuer_key`, the members trusting `trust` (one CA, or during a rotation two).
pub fn reissue_trusting(
    v: &ValidatedCluster,
    trust: &str,
    issuer: Option<&str>,
    issuer_key: &str,
    extra_sans: &[String],
    now: OffsetDateTime,
) -> Result<Material, TlsError> {
    let signing_key = KeyPair::from_pem(issuer_key).map_err(|e| TlsError::Material {
        key: CA_KEY,
        detail: e.to_string(),
    })?;
    let issuer_pem = issuer.unwrap_or(trust);
    let signer =
        Issuer::from_ca_cert_pem(issuer_pem, signing_key).map_err(|e| TlsError::Material {
            key: CA_CERT,
            detail: e.to_string(),
        })?;
    let key = KeyPair::generate().map_err(generate("members' key"))?;
    let cert = member_params(v, member_sans(v, extra_sans), now)?
        .signed_by(&key, &signer)
        .map_err(generate("members' certificate"))?;
    Ok(Material {
        ca_cert: trust.to_string(),
        ca_key: Some(issuer_key.to_string()),
        issuer_cert: issuer.filter(|i| *i != trust).map(str::to_string),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// When a PEM certificate expires.
pub fn not_after(cert_pem: &str) -> Result<OffsetDateTime, TlsError> {
    let err = |detail: String| TlsError::Material { key: CERT, detail };
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| err(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| err(e.to_string()))?;
    Ok(cert.validity().not_after.to_datetime())
}

/// Whether a certificate expiring at `not_after` is issued again now.
pub fn due(not_after: OffsetDateTime, now: OffsetDateTime) -> bool {
    not_after - now < RENEW_BEFORE
}

/// The material a Secret holds, read from its data.
pub fn read(data: &BTreeMap<String, ByteString>) -> Result<Material, TlsError> {
    let text = |key: &'static str| -> Result<String, TlsError> {
        let bytes = data.get(key).ok_or_else(|| TlsError::Material {
            key,
            detail: "missing".to_string(),
        })?;
        String::from_utf8(bytes.0.clone()).map_err(|_| TlsError::Material {
            key,
            detail: "not PEM text".to_string(),
        })
    };
    Ok(Material {
        ca_cert: text(CA_CERT)?,
        ca_key: text(CA_KEY).ok(),
        issuer_cert: text(ISSUER_CERT).ok(),
        cert: text(CERT)?,
        key: text(KEY)?,
    })
}

/// A CA rotation in progress, as the operator's Secret records it. A new CA takes three rolls of
/// the members, each quorum-safe: members of two neighbouring phases always trust each other.
#[derive(Clone, PartialEq, Eq)]
pub enum CaRotation {
    /// First roll: the members trust the current and the next CA; the current one still signs.
    TrustBoth {
        /// The next CA's certificate.
        next_cert: String,
        /// Its key.
        next_key: String,
    },
    /// Second roll: the next CA signs the members' certificate; both are still trusted. (The
    /// third roll trusts the new CA alone and ends the rotation.)
    SignedByNew,
}

impl std::fmt::Debug for CaRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CaRotation::TrustBoth { .. } => "TrustBoth",
            CaRotation::SignedByNew => "SignedByNew",
        })
    }
}

impl CaRotation {
    /// The value of [`CA_ROTATION_ANNOTATION`].
    pub fn phase(&self) -> &'static str {
        match self {
            CaRotation::TrustBoth { .. } => "trust-both",
            CaRotation::SignedByNew => "signed-by-new",
        }
    }
}

/// What the operator-managed Secret holds: the material, a CA rotation in progress, and the
/// rotation request last acted on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Managed {
    /// The members' material (`ca_cert` is what they trust).
    pub material: Material,
    /// A CA rotation in progress.
    pub rotation: Option<CaRotation>,
    /// The value of [`ROTATE_CA_ANNOTATION`] a rotation was last started for.
    pub rotated_for: Option<String>,
}

impl Managed {
    /// Material with no rotation in progress.
    pub fn steady(material: Material) -> Self {
        Self {
            material,
            rotation: None,
            rotated_for: None,
        }
    }
}

/// What an operator-managed Secret holds; `None` when it holds no usable material or no CA key.
pub fn read_managed(secret: &Secret) -> Option<Managed> {
    let data = secret.data.as_ref()?;
    let material = read(data).ok()?;
    material.ca_key.as_ref()?;
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    let rotation = match annotations.get(CA_ROTATION_ANNOTATION).map(String::as_str) {
        Some("trust-both") => Some(CaRotation::TrustBoth {
            next_cert: text(NEXT_CA_CERT)?,
            next_key: text(NEXT_CA_KEY)?,
        }),
        Some("signed-by-new") => Some(CaRotation::SignedByNew),
        _ => None,
    };
    Some(Managed {
        material,
        rotation,
        rotated_for: annotations.get(CA_ROTATED_FOR_ANNOTATION).cloned(),
    })
}

/// What the operator-managed Secret must hold now, given what it holds (`None`: no Secret yet,
/// or one the operator cannot read), the rotation a user asked for (the value of
/// [`ROTATE_CA_ANNOTATION`]) and the material hash every member runs with (`None` while a roll
/// is under way). `Ok(None)`: keep it as it is.
///
/// - no Secret, or no usable CA in it: a new CA and certificate (members roll onto them);
/// - a rotation in progress moves on once every member runs the Secret's current material:
///   trust both CAs -> the new CA signs -> trust the new CA alone (each a roll);
/// - a CA within [`CA_RENEW_BEFORE`] of expiry, or a new rotation request: a rotation starts;
/// - a certificate within [`RENEW_BEFORE`] of expiry: a new certificate from the same CA.
pub fn plan(
    v: &ValidatedCluster,
    existing: Option<&Secret>,
    now: OffsetDateTime,
    request: Option<&str>,
    members_run: Option<&str>,
) -> Result<Option<Managed>, TlsError> {
    let Some(current) = existing.and_then(read_managed) else {
        let mut fresh = Managed::steady(issue(v, &[], now)?);
        fresh.rotated_for = request.map(str::to_string);
        return Ok(Some(fresh));
    };
    let m = &current.material;
    let ca_key = m.ca_key.as_deref().unwrap_or_default();
    let rolled = members_run == Some(material_hash(m).as_str());
    let expiring = not_after(&m.cert).map(|t| due(t, now)).unwrap_or(true);
    let renewed =
        |m: &Material| reissue_trusting(v, &m.ca_cert, m.issuer_cert.as_deref(), ca_key, &[], now);
    let next = match &current.rotation {
        Some(CaRotation::TrustBoth {
            next_cert,
            next_key,
        }) if rolled => Managed {
            material: reissue_trusting(v, &m.ca_cert, Some(next_cert), next_key, &[], now)?,
            rotation: Some(CaRotation::SignedByNew),
            rotated_for: current.rotated_for.clone(),
        },
        Some(CaRotation::SignedByNew) if rolled => {
            // Every member presents a certificate of the new CA: trust it alone.
            let issuer = m.issuer().to_string();
            Managed {
                material: Material {
                    ca_cert: issuer,
                    issuer_cert: None,
                    ..m.clone()
                },
                rotation: None,
                rotated_for: current.rotated_for.clone(),
            }
        }
        Some(_) if expiring => Managed {
            material: renewed(m)?,
            ..current.clone()
        },
        Some(_) => return Ok(None),
        None => {
            let ca_expiring = not_after(m.issuer())
                .map(|t| t - now < CA_RENEW_BEFORE)
                .unwrap_or(true);
            let requested = request.is_some_and(|r| Some(r) != current.rotated_for.as_deref());
            if ca_expiring || requested {
                let next_key = KeyPair::generate().map_err(generate("CA key"))?;
                let next_cert = ca_params(&v.name, &v.namespace, &next_key, now)
                    .self_signed(&next_key)
                    .map_err(generate("CA certificate"))?
                    .pem();
                let base = if expiring { renewed(m)? } else { m.clone() };
                let issuer = base.issuer().to_string();
                Managed {
                    material: Material {
                        ca_cert: format!("{issuer}{next_cert}"),
                        issuer_cert: Some(issuer),
                        ..base
                    },
                    rotation: Some(CaRotation::TrustBoth {
                        next_cert,
                        next_key: next_key.serialize_pem(),
                    }),
                    rotated_for: request.map(str::to_string).or(current.rotated_for.clone()),
                }
            } else if expiring {
                Managed {
                    material: renewed(m)?,
                    ..current.clone()
                }
            } else {
                return Ok(None);
            }
        }
    };
    Ok(Some(next))
}

/// The operator-managed Secret holding `managed`, owned by the cluster.
pub fn managed_secret_object(
    v: &ValidatedCluster,
    managed: &Managed,
    owner: Option<&OwnerReference>,
) -> Secret {
    let mut s = secret(v, &managed.material, owner);
    let annotations = s.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if let Some(r) = &managed.rotation {
        annotations.insert(CA_ROTATION_ANNOTATION.to_string(), r.phase().to_string());
    }
    if let Some(token) = &managed.rotated_for {
        annotations.insert(CA_ROTATED_FOR_ANNOTATION.to_string(), token.clone());
    }
    if let Some(CaRotation::TrustBoth {
        next_cert,
        next_key,
    }) = &managed.rotation
    {
        let data = s.data.get_or_insert_with(BTreeMap::new);
        data.insert(
            NEXT_CA_CERT.to_string(),
            ByteString(next_cert.clone().into_bytes()),
        );
        data.insert(
            NEXT_CA_KEY.to_string(),
            ByteString(next_key.clone().into_bytes()),
        );
    }
    s
}

/// The operator-managed Secret holding `material` (no rotation in progress), owned by the
/// cluster.
pub fn secret(v: &ValidatedCluster, material: &Material, owner: Option<&OwnerReference>) -> Secret {
    let mut meta = object_meta(managed_secret(&v.name), &v.namespace, &v.name, owner);
    let mut annotations = BTreeMap::new();
    if let Ok(t) = not_after(&material.cert)
        && let Ok(text) = t.format(&time::format_description::well_known::Rfc3339)
    {
        annotations.insert(NOT_AFTER_ANNOTATION.to_string(), text);
    }
    let ids = &v.spec.tls.client_certificates;
    if !ids.is_empty() {
        annotations.insert(CLIENT_CERTIFICATES_ANNOTATION.to_string(), ids.join(","));
    }
    meta.annotations = (!annotations.is_empty()).then_some(annotations);
    let mut data = BTreeMap::from([
        (
            CA_CERT.to_string(),
            ByteString(material.ca_cert.clone().into_bytes()),
        ),
        (
            CERT.to_string(),
            ByteString(material.cert.clone().into_bytes()),
        ),
        (
            KEY.to_string(),
            ByteString(material.key.clone().into_bytes()),
        ),
    ]);
    if let Some(ca_key) = &material.ca_key {
        data.insert(CA_KEY.to_string(), ByteString(ca_key.clone().into_bytes()));
    }
    if let Some(issuer) = &material.issuer_cert {
        data.insert(
            ISSUER_CERT.to_string(),
            ByteString(issuer.clone().into_bytes()),
        );
    }
    Secret {
        metadata: meta,
        type_: Some("Opaque".to_string()),
        data: Some(data),
        ..Default::default()
    }
}

/// The pod-template annotation value for `material`: changes with the CA or the certificate.
pub fn material_hash(material: &Material) -> String {
    names::short_hash(format!("{}{}", material.ca_cert, material.cert).as_bytes())
}

/// Secret key of a client's key store for ZooKeeper's Java client: the PKCS#8 key, then the
/// certificate (`zookeeper.ssl.keyStore.type=PEM`).
pub const KEYSTORE: &str = "keystore.pem";
/// Annotation on the operator's `<cluster>-tls` Secret: the client identities whose Secrets
/// the operator issued (comma-separated), so a name removed from the spec loses its Secret
/// without the operator ever listing Secrets.
pub const CLIENT_CERTIFICATES_ANNOTATION: &str = "zookeeper.ensemble.dev/client-certificates";

/// The Secret holding the certificate of client identity `id` (`<cluster>-client-<id>`).
pub fn client_secret(cluster: &str, id: &str) -> String {
    format!("{cluster}-client-{id}")
}

/// The ACL identity ZooKeeper gives a session that presents the certificate of `id`.
pub fn client_acl_id(id: &str) -> String {
    format!("CN={id}")
}

/// PEM text of one client identity's certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientMaterial {
    /// The CA that signed it (what the client trusts).
    pub ca_cert: String,
    /// The client certificate, subject `CN=<id>`.
    pub cert: String,
    /// Its key (PKCS#8).
    pub key: String,
}

impl std::fmt::Debug for ClientMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMaterial")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// A client certificate for identity `id`, signed by the cluster's CA (`material` must hold
/// the CA's key: the operator's own CA).
pub fn issue_client(
    material: &Material,
    id: &str,
    now: OffsetDateTime,
) -> Result<ClientMaterial, TlsError> {
    let ca_key = material
        .ca_key
        .as_deref()
        .ok_or_else(|| TlsError::Material {
            key: CA_KEY,
            detail: "missing: client certificates need the operator's own CA".to_string(),
        })?;
    let signing_key = KeyPair::from_pem(ca_key).map_err(|e| TlsError::Material {
        key: CA_KEY,
        detail: e.to_string(),
    })?;
    let issuer = Issuer::from_ca_cert_pem(material.issuer(), signing_key).map_err(|e| {
        TlsError::Material {
            key: CA_CERT,
            detail: e.to_string(),
        }
    })?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, id);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + CERT_VALIDITY;
    let key = KeyPair::generate().map_err(generate("client key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(generate("client certificate"))?;
    Ok(ClientMaterial {
        ca_cert: material.ca_cert.clone(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// What the Secret of client identity `id` must hold now, given what it holds: a new
/// certificate when there is none, when it is not of the cluster's current CA, or when it is
/// within [`RENEW_BEFORE`] of expiry. `Ok(None)`: keep it.
pub fn plan_client(
    material: &Material,
    id: &str,
    existing: Option<&BTreeMap<String, ByteString>>,
    now: OffsetDateTime,
) -> Result<Option<ClientMaterial>, TlsError> {
    let text = |key: &str| {
        existing
            .and_then(|d| d.get(key))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    let current_ok = match (text(CA_CERT), text(CERT), text(KEY), text(KEYSTORE)) {
        (Some(ca), Some(cert), Some(_), Some(_)) => {
            ca == material.ca_cert && not_after(&cert).map(|t| !due(t, now)).unwrap_or(false)
        }
        _ => false,
    };
    if current_ok {
        return Ok(None);
    }
    issue_client(material, id, now).map(Some)
}

/// The Secret of client identity `id` holding `client`, owned by the cluster.
pub fn client_secret_object(
    v: &ValidatedCluster,
    id: &str,
    client: &ClientMaterial,
    owner: Option<&OwnerReference>,
) -> Secret {
    let mut meta = object_meta(client_secret(&v.name, id), &v.namespace, &v.name, owner);
    if let Ok(t) = not_after(&client.cert)
        && let Ok(text) = t.format(&time::format_description::well_known::Rfc3339)
    {
        meta.annotations = Some(BTreeMap::from([(NOT_AFTER_ANNOTATION.to_string(), text)]));
    }
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    Secret {
        metadata: meta,
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([
            (CA_CERT.to_string(), bytes(&client.ca_cert)),
            (CERT.to_string(), bytes(&client.cert)),
            (KEY.to_string(), bytes(&client.key)),
            (
                KEYSTORE.to_string(),
                bytes(&format!("{}{}", client.key, client.cert)),
            ),
        ])),
        ..Default::default()
    }
}

/// The client identities recorded on the operator's `<cluster>-tls` Secret.
pub fn recorded_client_certificates(secret: &Secret) -> Vec<String> {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CLIENT_CERTIFICATES_ANNOTATION))
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// How the operator connects to a member's TLS client port: the cluster's CA, and, for
/// mutual TLS, the members' certificate as its identity.
#[derive(Clone)]
pub struct ClientTls {
    /// PEM of the CA to trust.
    pub ca_cert: String,
    /// PEM certificate and key presented when the server asks.
    pub identity: Option<(String, String)>,
    config: Arc<tokio_rustls::rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        self.ca_cert == other.ca_cert && self.identity == other.identity
    }
}

impl Eq for ClientTls {}

impl std::hash::Hash for ClientTls {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.ca_cert.hash(state);
        self.identity.hash(state);
    }
}

impl ClientTls {
    /// Trusts `ca_cert` only; presents `identity` (certificate, key) when asked.
    pub fn new(ca_cert: &str, identity: Option<(&str, &str)>) -> Result<Self, TlsError> {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let pem_err = |key: &'static str| {
            move |e: rustls::pki_types::pem::Error| TlsError::Material {
                key,
                detail: e.to_string(),
            }
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_cert.as_bytes()) {
            roots
                .add(cert.map_err(pem_err(CA_CERT))?)
                .map_err(|e| TlsError::Material {
                    key: CA_CERT,
                    detail: e.to_string(),
                })?;
        }
        if roots.is_empty() {
            return Err(TlsError::Material {
                key: CA_CERT,
                detail: "no certificate".to_string(),
            });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Material {
                key: CA_CERT,
                detail: e.to_string(),
            })?
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(pem_err(CERT))?;
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(pem_err(KEY))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::Material {
                        key: KEY,
                        detail: e.to_string(),
                    })?
            }
        };
        Ok(Self {
            ca_cert: ca_cert.to_string(),
            identity: identity.map(|(c, k)| (c.to_string(), k.to_string())),
            config: Arc::new(config),
        })
    }

    /// The client side of a cluster's `material`, with the members' certificate as identity
    /// when `mutual`.
    pub fn of(material: &Material, mutual: bool) -> Result<Self, TlsError> {
        Self::new(
            &material.ca_cert,
            mutual.then_some((material.cert.as_str(), material.key.as_str())),
        )
    }

    /// The rustls configuration (for the four-letter-word client).
    pub fn config(&self) -> Arc<tokio_rustls::rustls::ClientConfig> {
        self.config.clone()
    }

    /// The same, for `zookeeper-client` sessions (reconfiguration).
    pub fn zookeeper_options(
        &self,
    ) -> Result<zookeeper_client::TlsOptions, zookeeper_client::Error> {
        // zookeeper-client takes rustls' process-wide provider, which two compiled-in providers
        // (ring for kube, aws-lc-rs for zookeeper-client) leave undecided: ring, as everywhere
        // else in the operator. Installing it again is refused harmlessly.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let options = zookeeper_client::TlsOptions::new().with_pem_ca(&self.ca_cert)?;
        match &self.identity {
            Some((cert, key)) => options.with_pem_identity(cert, key),
            None => Ok(options),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ZookeeperCluster;
    use crate::validate::validate;

    fn cluster() -> ValidatedCluster {
        let zk: ZookeeperCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "zookeeper.ensemble.dev/v1alpha1",
            "kind": "ZookeeperCluster",
            "metadata": {"name": "zk", "namespace": "prod"},
            "spec": {"tls": {"enabled": true}},
        }))
        .unwrap();
        // Everything but the TLS switch, refused until the operator serves it end to end.
        let mut plain = zk.clone();
        plain.spec.tls = Default::default();
        let mut v = validate(&plain).unwrap();
        v.spec.tls = zk.spec.tls.clone();
        v
    }

    /// `plan` for a Secret holding `data` and no rotation, its material.
    fn plan_m(
        v: &ValidatedCluster,
        data: Option<&BTreeMap<String, ByteString>>,
        now: OffsetDateTime,
    ) -> Result<Option<Material>, TlsError> {
        let secret = data.map(|d| Secret {
            data: Some(d.clone()),
            ..Default::default()
        });
        plan(v, secret.as_ref(), now, None, None).map(|m| m.map(|m| m.material))
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn sans_cover_every_ordinal_the_wildcard_and_the_client_service() {
        let sans = member_sans(&cluster(), &[]);
        for name in [
            "zk-0.zk-hs.prod.svc.cluster.local",
            "zk-8.zk-hs.prod.svc.cluster.local",
            "zk-2.zk-hs.prod.svc",
            "zk-2.zk-hs.prod",
            "zk-2.zk-hs",
            "*.zk-hs.prod.svc.cluster.local",
            "zk-cs.prod.svc.cluster.local",
            "zk-cs.prod",
            "zk-cs",
            "127.0.0.1",
        ] {
            assert!(sans.iter().any(|s| s == name), "{name} missing: {sans:?}");
        }
    }

    #[test]
    fn a_new_cluster_gets_a_ca_and_a_certificate_it_signed() {
        let v = cluster();
        let m = plan_m(&v, None, now()).unwrap().expect("a new Secret");
        assert!(m.ca_cert.contains("BEGIN CERTIFICATE") && m.key.contains("BEGIN PRIVATE KEY"));
        assert!(m.ca_key.is_some());
        let t = not_after(&m.cert).unwrap();
        assert_eq!(t, now() + CERT_VALIDITY);
        // rustls accepts the CA and the identity.
        ClientTls::of(&m, true).unwrap();
        // The Secret round-trips, and a fresh certificate is kept.
        let s = secret(&v, &m, None);
        assert_eq!(s.metadata.name.as_deref(), Some("zk-tls"));
        assert!(s.metadata.annotations.unwrap()[NOT_AFTER_ANNOTATION].starts_with("2027-"));
        let data = s.data.unwrap();
        assert_eq!(read(&data).unwrap(), m);
        assert!(plan_m(&v, Some(&data), now()).unwrap().is_none());
    }

    #[test]
    fn a_certificate_near_expiry_is_reissued_by_the_same_ca() {
        let v = cluster();
        let m = plan_m(&v, None, now()).unwrap().unwrap();
        let data = secret(&v, &m, None).data.unwrap();
        let later = now() + CERT_VALIDITY - RENEW_BEFORE + time::Duration::hours(1);
        let renewed = plan_m(&v, Some(&data), later).unwrap().expect("renewed");
        assert_eq!(renewed.ca_cert, m.ca_cert);
        assert_ne!(renewed.cert, m.cert);
        assert_ne!(material_hash(&renewed), material_hash(&m));
        assert_eq!(not_after(&renewed.cert).unwrap(), later + CERT_VALIDITY);
        // Just before the threshold nothing changes.
        let before = now() + CERT_VALIDITY - RENEW_BEFORE - time::Duration::hours(1);
        assert!(plan_m(&v, Some(&data), before).unwrap().is_none());
    }

    fn mutual_with_clients(ids: &[&str]) -> ValidatedCluster {
        let mut v = cluster();
        v.spec.tls.mutual = true;
        v.spec.tls.client_certificates = ids.iter().map(|s| s.to_string()).collect();
        v
    }

    #[test]
    fn a_client_certificate_names_its_identity_and_is_signed_by_the_clusters_ca() {
        let v = mutual_with_clients(&["alice"]);
        let m = plan_m(&v, None, now()).unwrap().unwrap();
        let c = plan_client(&m, "alice", None, now())
            .unwrap()
            .expect("issued");
        assert_eq!(c.ca_cert, m.ca_cert);
        let (_, pem) = x509_parser::pem::parse_x509_pem(c.cert.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        assert_eq!(cert.subject().to_string(), client_acl_id("alice"));
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(m.ca_cert.as_bytes()).unwrap();
        let ca = ca_pem.parse_x509().unwrap();
        assert_eq!(cert.issuer(), ca.subject());
        cert.verify_signature(Some(ca.public_key()))
            .expect("signed by the cluster's CA");
        assert_eq!(not_after(&c.cert).unwrap(), now() + CERT_VALIDITY);
        // rustls takes it as a client identity.
        ClientTls::new(&c.ca_cert, Some((&c.cert, &c.key))).unwrap();
        // The Secret: the Java key store is the key, then the certificate; it round-trips.
        let s = client_secret_object(&v, "alice", &c, None);
        assert_eq!(s.metadata.name.as_deref(), Some("zk-client-alice"));
        let data = s.data.unwrap();
        assert_eq!(
            data[KEYSTORE].0,
            format!("{}{}", c.key, c.cert).into_bytes()
        );
        assert!(
            plan_client(&m, "alice", Some(&data), now())
                .unwrap()
                .is_none()
        );
        // Near expiry, or of another CA (the cluster's CA was replaced): issued again.
        let later = now() + CERT_VALIDITY - RENEW_BEFORE + time::Duration::hours(1);
        assert!(
            plan_client(&m, "alice", Some(&data), later)
                .unwrap()
                .is_some()
        );
        let other = issue(&v, &[], now()).unwrap();
        let again = plan_client(&other, "alice", Some(&data), now())
            .unwrap()
            .unwrap();
        assert_eq!(again.ca_cert, other.ca_cert);
        // A user's CA has no key here: nothing to sign with.
        let users = Material {
            ca_key: None,
            ..m.clone()
        };
        assert!(issue_client(&users, "alice", now()).is_err());
    }

    #[test]
    fn the_clusters_secret_records_the_client_identities_issued() {
        let v = mutual_with_clients(&["alice", "orders"]);
        let m = plan_m(&v, None, now()).unwrap().unwrap();
        let s = secret(&v, &m, None);
        assert_eq!(recorded_client_certificates(&s), ["alice", "orders"]);
        let none = secret(&cluster(), &m, None);
        assert!(recorded_client_certificates(&none).is_empty());
        assert!(
            none.metadata
                .annotations
                .unwrap()
                .contains_key(NOT_AFTER_ANNOTATION)
        );
    }

    fn signed_by(cert: &str, ca: &str) -> bool {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca.as_bytes()).unwrap();
        let ca = ca_pem.parse_x509().unwrap();
        cert.verify_signature(Some(ca.public_key())).is_ok()
    }

    fn certificates(bundle: &str) -> usize {
        bundle.matches("-----BEGIN CERTIFICATE-----").count()
    }

    #[test]
    fn a_ca_rotation_takes_three_rolls_each_trusted_by_its_neighbours() {
        let v = mutual_with_clients(&["alice"]);
        let m0 = plan(&v, None, now(), None, None).unwrap().unwrap();
        assert_eq!(m0.rotation, None);
        let old_ca = m0.material.ca_cert.clone();
        let s0 = managed_secret_object(&v, &m0, None);
        assert!(plan(&v, Some(&s0), now(), None, None).unwrap().is_none());
        // A request starts the rotation: trust both, the old CA still signs, same certificate.
        let m1 = plan(&v, Some(&s0), now(), Some("r1"), None)
            .unwrap()
            .unwrap();
        assert!(matches!(m1.rotation, Some(CaRotation::TrustBoth { .. })));
        assert_eq!(certificates(&m1.material.ca_cert), 2);
        assert!(m1.material.ca_cert.starts_with(&old_ca));
        assert_eq!(m1.material.issuer(), old_ca);
        assert_eq!(m1.material.cert, m0.material.cert);
        assert_ne!(material_hash(&m1.material), material_hash(&m0.material));
        ClientTls::of(&m1.material, true).unwrap();
        let s1 = managed_secret_object(&v, &m1, None);
        assert_eq!(read_managed(&s1).as_ref(), Some(&m1));
        // Nothing moves while the members are not all on it.
        for run in [None, Some(material_hash(&m0.material))] {
            assert!(
                plan(&v, Some(&s1), now(), Some("r1"), run.as_deref())
                    .unwrap()
                    .is_none()
            );
        }
        // Rolled: the new CA signs; both still trusted.
        let h1 = material_hash(&m1.material);
        let m2 = plan(&v, Some(&s1), now(), Some("r1"), Some(&h1))
            .unwrap()
            .unwrap();
        assert_eq!(m2.rotation, Some(CaRotation::SignedByNew));
        assert_eq!(m2.material.ca_cert, m1.material.ca_cert);
        let Some(CaRotation::TrustBoth { next_cert, .. }) = &m1.rotation else {
            unreachable!()
        };
        assert!(signed_by(&m2.material.cert, next_cert));
        assert!(!signed_by(&m2.material.cert, &old_ca));
        assert_eq!(m2.material.issuer(), next_cert.as_str());
        // A client certificate issued now is of the new CA and trusts both.
        let alice = issue_client(&m2.material, "alice", now()).unwrap();
        assert!(signed_by(&alice.cert, next_cert));
        assert_eq!(alice.ca_cert, m2.material.ca_cert);
        let s2 = managed_secret_object(&v, &m2, None);
        assert_eq!(read_managed(&s2).as_ref(), Some(&m2));
        assert!(!s2.data.as_ref().unwrap().contains_key(NEXT_CA_KEY));
        // Rolled again: the new CA alone; the rotation is over and not started again.
        let h2 = material_hash(&m2.material);
        let m3 = plan(&v, Some(&s2), now(), Some("r1"), Some(&h2))
            .unwrap()
            .unwrap();
        assert_eq!(m3.rotation, None);
        assert_eq!(&m3.material.ca_cert, next_cert);
        assert_eq!(m3.material.cert, m2.material.cert);
        assert_eq!(m3.rotated_for.as_deref(), Some("r1"));
        let s3 = managed_secret_object(&v, &m3, None);
        let h3 = material_hash(&m3.material);
        assert!(
            plan(&v, Some(&s3), now(), Some("r1"), Some(&h3))
                .unwrap()
                .is_none()
        );
        // A new request value starts another.
        let again = plan(&v, Some(&s3), now(), Some("r2"), Some(&h3))
            .unwrap()
            .unwrap();
        assert!(matches!(again.rotation, Some(CaRotation::TrustBoth { .. })));
    }

    #[test]
    fn a_ca_near_expiry_is_rotated_and_an_expiring_certificate_renewed_on_the_way() {
        let v = cluster();
        let m0 = plan(&v, None, now(), None, None).unwrap().unwrap();
        let s0 = managed_secret_object(&v, &m0, None);
        let late = now() + CA_VALIDITY - CA_RENEW_BEFORE + time::Duration::days(1);
        let m1 = plan(&v, Some(&s0), late, None, None).unwrap().unwrap();
        assert!(matches!(m1.rotation, Some(CaRotation::TrustBoth { .. })));
        // The members' certificate had expired long before: renewed by the old CA.
        assert_ne!(m1.material.cert, m0.material.cert);
        assert!(signed_by(&m1.material.cert, &m0.material.ca_cert));
        assert_eq!(not_after(&m1.material.cert).unwrap(), late + CERT_VALIDITY);
    }

    #[test]
    fn unreadable_material_is_replaced() {
        let v = cluster();
        let broken = BTreeMap::from([(CA_CERT.to_string(), ByteString(b"junk".to_vec()))]);
        assert!(plan_m(&v, Some(&broken), now()).unwrap().is_some());
        assert!(ClientTls::new("junk", None).is_err());
    }
}
