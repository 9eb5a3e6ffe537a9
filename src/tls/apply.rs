//! The IO half of TLS, one step of a reconcile before render: read the cluster's TLS Secret,
//! write the operator-managed one when [`super::plan`] says so (a new cluster, a certificate
//! near expiry), and hand on what the rest of the pass needs: the client side for the
//! operator's own connections and the material hash for the pod template.
//!
//! Wiring (controller): `let tls = tls::apply::prepare(&ctx.client, &cluster, &id.owner,
//! OffsetDateTime::now_utc()).await?;` after validate; after render,
//! `set_tls_material_hash(&mut desired.statefulset, &tls.material_hash)`; probe addresses
//! `.with_tls(tls.client.clone())`; reconfiguration through `Reconfigurer::connect_over`.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use time::OffsetDateTime;

use super::{
    ClientTls, MATERIAL_HASH_ANNOTATION, Managed, Material, TlsError, client_secret,
    client_secret_object, managed_secret_object, material_hash, not_after, plan, plan_client, read,
    read_managed, recorded_client_certificates, secret_name,
};
use crate::names::MANAGER;
use crate::validate::ValidatedCluster;

/// What the rest of a pass needs from the cluster's TLS material.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// How the operator connects to the members' TLS client port.
    pub client: ClientTls,
    /// For the pod template: a new certificate or CA rolls the members.
    pub material_hash: String,
    /// When the members' certificate expires.
    pub not_after: Option<OffsetDateTime>,
}

/// A failed TLS step.
#[derive(Debug, thiserror::Error)]
pub enum TlsStepError {
    /// The API refused the read.
    #[error("failed to read the TLS secret {name}: {source}")]
    ReadSecret {
        /// The Secret.
        name: String,
        /// Why.
        source: kube::Error,
    },
    /// The API refused the write.
    #[error("failed to apply the TLS secret {name}: {source}")]
    ApplySecret {
        /// The Secret.
        name: String,
        /// Why.
        source: kube::Error,
    },
    /// The API refused to delete the Secret of a client identity removed from the spec.
    #[error("failed to delete the client certificate secret {name}: {source}")]
    DeleteSecret {
        /// The Secret.
        name: String,
        /// Why.
        source: kube::Error,
    },
    /// The user's Secret does not exist.
    #[error(
        "spec.tls.secretName {name}: no such Secret in namespace {namespace}, or it lacks one of ca.crt, tls.crt and tls.key; create it with PEM ca.crt, tls.crt and tls.key, or remove spec.tls.secretName to let the operator issue the certificates"
    )]
    MissingUserSecret {
        /// The Secret.
        name: String,
        /// Its namespace.
        namespace: String,
    },
    /// The API refused the cert-manager Certificate (is cert-manager installed?).
    #[error(
        "failed to apply the cert-manager Certificate {name}: {source}; spec.tls.issuerRef needs cert-manager's CRDs in the cluster (and the operator's permission on certificates.cert-manager.io)"
    )]
    ApplyCertificate {
        /// The Certificate.
        name: String,
        /// Why.
        source: kube::Error,
    },
    /// cert-manager has not written the certificate yet.
    #[error(
        "waiting for cert-manager to issue the Certificate {name} from {issuer} into the Secret {name} (kubectl -n {namespace} describe certificate {name}); the members are created once it has"
    )]
    CertificateNotIssued {
        /// The Certificate and its Secret.
        name: String,
        /// `Issuer/name` or `ClusterIssuer/name`.
        issuer: String,
        /// Its namespace.
        namespace: String,
    },
    /// The Secret's material is not usable.
    #[error("the TLS secret {name}: {source}")]
    Material {
        /// The Secret.
        name: String,
        /// Why.
        source: TlsError,
    },
}

impl TlsStepError {
    /// A bounded label for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            TlsStepError::ReadSecret { .. }
            | TlsStepError::ApplySecret { .. }
            | TlsStepError::DeleteSecret { .. }
            | TlsStepError::ApplyCertificate { .. } => "apply",
            TlsStepError::MissingUserSecret { .. }
            | TlsStepError::CertificateNotIssued { .. }
            | TlsStepError::Material { .. } => "tls",
        }
    }
}

/// Reads (and for the operator's CA, writes) the cluster's TLS Secret; `None` when TLS is off.
/// `rotate_request` is the cluster's [`super::ROTATE_CA_ANNOTATION`], if any.
pub async fn prepare(
    client: &Client,
    cluster: &ValidatedCluster,
    owner: &OwnerReference,
    now: OffsetDateTime,
    rotate_request: Option<&str>,
) -> Result<Option<Prepared>, TlsStepError> {
    if !cluster.spec.tls.enabled {
        return Ok(None);
    }
    let name = secret_name(cluster);
    let api: Api<Secret> = Api::namespaced(client.clone(), &cluster.namespace);
    let live = api
        .get_opt(&name)
        .await
        .map_err(|source| TlsStepError::ReadSecret {
            name: name.clone(),
            source,
        })?;
    let material_err = |source| TlsStepError::Material {
        name: name.clone(),
        source,
    };
    let material = if let Some(issuer) = &cluster.spec.tls.issuer_ref {
        // cert-manager's certificates: the operator keeps the Certificate, cert-manager its
        // Secret, and the operator the members' copy of it (a new CA is bridged: `bridge`).
        apply_certificate(client, cluster, owner, issuer).await?;
        let issued_name = super::bridge::issued_secret(&cluster.name);
        let not_issued = || TlsStepError::CertificateNotIssued {
            name: issued_name.clone(),
            issuer: format!("{}/{}", issuer.kind, issuer.name),
            namespace: cluster.namespace.clone(),
        };
        // While cert-manager's Secret is gone (being issued again) the members keep their copy.
        copy_for_members(client, &api, cluster, owner, &issued_name, live.as_ref())
            .await?
            .or_else(|| {
                live.as_ref()
                    .and_then(super::bridge::read_members)
                    .map(|m| m.material)
            })
            .ok_or_else(not_issued)?
    } else if let Some(user_secret) = &cluster.spec.tls.secret_name {
        // The user's certificates: read, never written; the members mount the operator's copy
        // (a new CA is bridged as cert-manager's is).
        copy_for_members(client, &api, cluster, owner, user_secret, live.as_ref())
            .await?
            .ok_or_else(|| TlsStepError::MissingUserSecret {
                name: user_secret.clone(),
                namespace: cluster.namespace.clone(),
            })?
    } else {
        let recorded = live
            .as_ref()
            .map(recorded_client_certificates)
            .unwrap_or_default();
        let desired_ids = &cluster.spec.tls.client_certificates;
        // Identities removed from the spec lose their Secret first, so the record below never
        // forgets a Secret that still exists.
        for id in recorded.iter().filter(|id| !desired_ids.contains(id)) {
            delete_client_secret(&api, &client_secret(&cluster.name, id)).await?;
        }
        let current = live.as_ref().and_then(read_managed);
        // A CA rotation moves on only once every member runs the Secret's material: read the
        // StatefulSet then (only then).
        let members_run = match current.as_ref().and_then(|c| c.rotation.as_ref()) {
            Some(_) => members_run(client, cluster).await?,
            None => None,
        };
        let apply = |managed: Managed| {
            let desired = managed_secret_object(cluster, &managed, Some(owner));
            let api = api.clone();
            async move {
                apply_secret(&api, &desired).await?;
                Ok::<_, TlsStepError>(managed.material)
            }
        };
        let planned = plan(
            cluster,
            live.as_ref(),
            now,
            rotate_request,
            members_run.as_deref(),
        )
        .map_err(material_err)?;
        let material = match (planned, current) {
            (Some(fresh), _) => apply(fresh).await?,
            (None, Some(current)) if recorded != *desired_ids => {
                // Record the identities issued from now on (the material stays).
                apply(current).await?
            }
            (None, Some(current)) => current.material,
            (None, None) => {
                read(&live.and_then(|s| s.data).unwrap_or_default()).map_err(material_err)?
            }
        };
        for id in desired_ids {
            issue_client_secret(&api, cluster, owner, &material, id, now).await?;
        }
        material
    };
    Ok(Some(Prepared {
        client: ClientTls::of(&material, cluster.spec.tls.mutual).map_err(material_err)?,
        material_hash: material_hash(&material),
        not_after: not_after(&material.cert).ok(),
    }))
}

/// Keeps the members' copy (`<cluster>-tls-members`, `members` as read) of the Secret `source`
/// (cert-manager's or the user's) as [`super::bridge::plan`] says, and returns what the members
/// mount; `None` when `source` does not exist or lacks `ca.crt`, `tls.crt` or `tls.key`.
async fn copy_for_members(
    client: &Client,
    api: &Api<Secret>,
    cluster: &ValidatedCluster,
    owner: &OwnerReference,
    source: &str,
    members: Option<&Secret>,
) -> Result<Option<super::Material>, TlsStepError> {
    let Some(data) = api
        .get_opt(source)
        .await
        .map_err(|source_err| TlsStepError::ReadSecret {
            name: source.to_string(),
            source: source_err,
        })?
        .and_then(|s| s.data)
        .filter(|data| {
            [super::CA_CERT, super::CERT, super::KEY]
                .iter()
                .all(|k| data.get(*k).is_some_and(|v| !v.0.is_empty()))
        })
    else {
        return Ok(None);
    };
    let issued = read(&data).map_err(|e| TlsStepError::Material {
        name: source.to_string(),
        source: e,
    })?;
    let current = members.and_then(super::bridge::read_members);
    let members_run = match current.as_ref().and_then(|c| c.step) {
        Some(_) => members_run(client, cluster).await?,
        None => None,
    };
    let Some(next) = super::bridge::plan(members, &issued, members_run.as_deref()) else {
        return Ok(current.map(|c| c.material));
    };
    apply_secret(
        api,
        &super::bridge::members_secret_object(cluster, &next, Some(owner)),
    )
    .await?;
    Ok(Some(next.material))
}

/// Server-side applies the operator's Secret `desired` (named in its metadata).
async fn apply_secret(api: &Api<Secret>, desired: &Secret) -> Result<(), TlsStepError> {
    let name = desired.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(desired),
    )
    .await
    .map_err(|source| TlsStepError::ApplySecret { name, source })?;
    Ok(())
}

/// The TLS material hash every member runs with ([`material_all_members_run`]), read from the
/// StatefulSet.
async fn members_run(
    client: &Client,
    cluster: &ValidatedCluster,
) -> Result<Option<String>, TlsStepError> {
    Ok(
        Api::<StatefulSet>::namespaced(client.clone(), &cluster.namespace)
            .get_opt(&cluster.name)
            .await
            .map_err(|source| TlsStepError::ReadSecret {
                name: format!("statefulset {}", cluster.name),
                source,
            })?
            .as_ref()
            .and_then(material_all_members_run),
    )
}

/// The cert-manager API of Certificates.
fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    )
}

/// The members' cert-manager Certificate: `<cluster>-tls` into the Secret of the same name,
/// the members' SANs, server and client use, a PKCS#8 ECDSA key made anew at each renewal,
/// owned by the cluster.
pub fn certificate_object(
    cluster: &ValidatedCluster,
    owner: Option<&OwnerReference>,
    issuer: &crate::crd::IssuerRef,
) -> DynamicObject {
    let name = super::bridge::issued_secret(&cluster.name);
    let sans = super::member_sans(cluster, &[]);
    let (ips, dns): (Vec<String>, Vec<String>) = sans
        .into_iter()
        .partition(|s| s.parse::<std::net::IpAddr>().is_ok());
    let meta =
        crate::render::labels::object_meta(name.clone(), &cluster.namespace, &cluster.name, owner);
    let mut obj = DynamicObject::new(&name, &certificate_resource()).within(&cluster.namespace);
    obj.metadata = meta;
    obj.data = serde_json::json!({
        "spec": {
            "secretName": name,
            "dnsNames": dns,
            "ipAddresses": ips,
            "duration": "2160h",
            "renewBefore": "720h",
            "usages": ["digital signature", "key encipherment", "server auth", "client auth"],
            "privateKey": {"algorithm": "ECDSA", "size": 256, "encoding": "PKCS8", "rotationPolicy": "Always"},
            "issuerRef": {"name": issuer.name, "kind": issuer.kind, "group": issuer.group},
        }
    });
    obj
}

/// Server-side applies [`certificate_object`].
async fn apply_certificate(
    client: &Client,
    cluster: &ValidatedCluster,
    owner: &OwnerReference,
    issuer: &crate::crd::IssuerRef,
) -> Result<(), TlsStepError> {
    let desired = certificate_object(cluster, Some(owner), issuer);
    let name = super::bridge::issued_secret(&cluster.name);
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &cluster.namespace, &certificate_resource());
    let mut body = serde_json::to_value(&desired).unwrap_or_default();
    body["apiVersion"] = "cert-manager.io/v1".into();
    body["kind"] = "Certificate".into();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| TlsStepError::ApplyCertificate { name, source })?;
    Ok(())
}

/// Keeps the Secret of client identity `id` holding a certificate of the cluster's current CA
/// that is not near expiry: one read, and a write only when [`plan_client`] says so.
async fn issue_client_secret(
    api: &Api<Secret>,
    cluster: &ValidatedCluster,
    owner: &OwnerReference,
    material: &Material,
    id: &str,
    now: OffsetDateTime,
) -> Result<(), TlsStepError> {
    let name = client_secret(&cluster.name, id);
    let live = api
        .get_opt(&name)
        .await
        .map_err(|source| TlsStepError::ReadSecret {
            name: name.clone(),
            source,
        })?;
    let data = live.and_then(|s| s.data);
    let planned =
        plan_client(material, id, data.as_ref(), now).map_err(|source| TlsStepError::Material {
            name: name.clone(),
            source,
        })?;
    if let Some(fresh) = planned {
        apply_secret(api, &client_secret_object(cluster, id, &fresh, Some(owner))).await?;
    }
    Ok(())
}

/// Deletes the Secret of a client identity no longer in the spec (gone already: fine).
async fn delete_client_secret(api: &Api<Secret>, name: &str) -> Result<(), TlsStepError> {
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(source) => Err(TlsStepError::DeleteSecret {
            name: name.to_string(),
            source,
        }),
    }
}

/// The TLS material hash every member runs with: the StatefulSet's template carries it, the
/// controller has seen that template, and every pod is of it and Ready. `None` while a roll is
/// under way.
pub fn material_all_members_run(sts: &StatefulSet) -> Option<String> {
    let spec = sts.spec.as_ref()?;
    let hash = spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(MATERIAL_HASH_ANNOTATION)?
        .clone();
    let ready = sts.status.as_ref()?.ready_replicas.unwrap_or(0);
    (crate::render::members::all_pods_updated(sts) && ready >= spec.replicas.unwrap_or(1))
        .then_some(hash)
}
