//! Apply: server-side apply of every owned object, one field manager, forced; StatefulSet last.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use kube::runtime::events::EventType;

use super::children::Children;
use super::{ClusterId, Context, Error};
use crate::names::{self, APPLIED_HASH_ANNOTATION, MANAGER};
use crate::render::DesiredObjects;
use crate::status::reason;

fn params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

/// Hash of a rendered object (before the hash annotation is added).
pub fn applied_hash<K: Serialize>(obj: &K) -> String {
    names::short_hash(&serde_json::to_vec(obj).expect("k8s objects serialize to JSON"))
}

/// Whether `live` differs from what we would apply: it is missing, carries another hash, or
/// someone else has written its spec (a manager other than ours owns non-status fields).
pub fn needs_apply<K: Resource>(live: Option<&K>, hash: &str) -> bool {
    let Some(live) = live else { return true };
    let meta = live.meta();
    let ours = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(APPLIED_HASH_ANNOTATION))
        .is_some_and(|h| h == hash);
    !ours || super::children::foreign_writer(meta)
}

/// What the pass knows of a live object before applying it.
enum Live<'a, K> {
    /// Nothing: read it first.
    Unknown,
    /// It does not exist (the watch has listed its kind without it, or this pass read it).
    Missing,
    /// As this pass read it.
    Read(&'a K),
}

/// Applies one child unless the watch shows it already applied as rendered (see
/// [`Children`]); a child the watch shows missing is applied without a read; otherwise it is
/// read and applied when it differs. The result is recorded.
async fn apply_child<K>(
    client: &Client,
    namespace: &str,
    desired: &K,
    children: &Children,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + k8s_openapi::Resource
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let kind = <K as k8s_openapi::Resource>::KIND;
    let name = desired.name_any();
    if children.current(kind, namespace, &name, &applied_hash(desired)) {
        return Ok(());
    }
    let live = if children.absent(kind, namespace, &name) {
        Live::Missing
    } else {
        Live::Unknown
    };
    let live = apply_one(client, namespace, desired, live).await?;
    children.observe(kind, live.meta());
    Ok(())
}

/// Applies one object unless the live one already matches; returns the live object.
async fn apply_one<K>(
    client: &Client,
    namespace: &str,
    desired: &K,
    live: Live<'_, K>,
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = desired.name_any();
    let hash = applied_hash(desired);
    let read;
    let live = match live {
        Live::Unknown => {
            read = api.get_opt(&name).await?;
            read.as_ref()
        }
        Live::Missing => None,
        Live::Read(live) => Some(live),
    };
    if let Some(live) = live
        && !needs_apply(Some(live), &hash)
    {
        return Ok(live.clone());
    }
    let mut obj = desired.clone();
    obj.meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(APPLIED_HASH_ANNOTATION.to_string(), hash);
    api.patch(&name, &params(), &Patch::Apply(&obj)).await
}

/// Applies every owned object (see [`apply_all`]); a failure is also a Warning Event on the
/// cluster, since it stops everything after it.
pub async fn apply(
    ctx: &Context,
    id: &ClusterId,
    desired: &DesiredObjects,
    live_statefulset: Option<&StatefulSet>,
) -> Result<StatefulSet, Error> {
    let result = apply_all(
        &ctx.client,
        &id.namespace,
        desired,
        &ctx.children,
        live_statefulset,
    )
    .await;
    if let Err(e) = &result {
        ctx.publish(
            id,
            EventType::Warning,
            reason::APPLY_FAILED,
            "Apply",
            e.to_string(),
        )
        .await;
    }
    result
}

/// Applies the objects in order: Services, PDB, the membership ConfigMap and the NetworkPolicy
/// first so the StatefulSet's pods find their DNS names, disruption budget and policy in place.
/// Those are read only when `children` neither shows them applied as rendered nor missing; the
/// StatefulSet is not read again: `live_statefulset` is what this pass read of it (`None`: it
/// does not exist). It is returned as the server has it.
pub async fn apply_all(
    client: &Client,
    namespace: &str,
    desired: &DesiredObjects,
    children: &Children,
    live_statefulset: Option<&StatefulSet>,
) -> Result<StatefulSet, Error> {
    // Destructured without `..`: a new object that is never applied does not compile.
    let DesiredObjects {
        headless_service,
        client_service,
        pdb,
        members,
        network_policy,
        statefulset,
    } = desired;
    apply_child::<Service>(client, namespace, headless_service, children)
        .await
        .map_err(|source| Error::ApplyService {
            name: headless_service.name_any(),
            source,
        })?;
    apply_child::<Service>(client, namespace, client_service, children)
        .await
        .map_err(|source| Error::ApplyService {
            name: client_service.name_any(),
            source,
        })?;
    apply_child::<PodDisruptionBudget>(client, namespace, pdb, children)
        .await
        .map_err(|source| Error::ApplyPdb { source })?;
    // Before the StatefulSet: a member it creates must find itself in the published membership.
    apply_child::<ConfigMap>(client, namespace, members, children)
        .await
        .map_err(|source| Error::ApplyConfigMap { source })?;
    // Before the StatefulSet: a member is never reachable from more than the policy admits.
    apply_child::<NetworkPolicy>(client, namespace, network_policy, children)
        .await
        .map_err(|source| Error::ApplyNetworkPolicy { source })?;
    let live = live_statefulset.map_or(Live::Missing, Live::Read);
    apply_one::<StatefulSet>(client, namespace, statefulset, live)
        .await
        .map_err(|source| Error::ApplyStatefulSet { source })
}
