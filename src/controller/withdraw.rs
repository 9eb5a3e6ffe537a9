//! Taking a member out of its Services before it is evicted, and putting members back.
//!
//! The headless Service publishes members that are not Ready (`publishNotReadyAddresses`: peers
//! must find each other before they form a quorum), so it also keeps publishing a member whose
//! pod is terminating, until the pod object is gone, which is after its network is torn down.
//! In that window the member's ordinal name resolves to an address nobody answers, and a client
//! that reconnects to it waits out its whole connect timeout (the Java client: session timeout /
//! number of servers, 3.3 s with 3 members and a 10 s session). So, right before an eviction,
//! the operator takes [`IN_SERVICE_LABEL`] off the pod, which both Services select by, and waits
//! until their EndpointSlices no longer list it: from then on the name does not resolve (a
//! client moves on at once) while the process still answers. The replacement pod carries the
//! label from the template. A member left without the label (the eviction failed, or the
//! operator stopped in between) is put back by the next pass.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

use super::{ClusterId, Context, Error};
use crate::names::{self, IN_SERVICE, IN_SERVICE_LABEL};

/// How long an eviction waits for the Services to drop the member; past it, the eviction goes
/// ahead (as it would without this step).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the EndpointSlices are read meanwhile.
const POLL: Duration = Duration::from_millis(100);

/// The label EndpointSlices carry with the name of their Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Puts `pod` in its Services (`in_service`) or takes it out. `uid` makes sure it is the pod
/// that was observed: a merge patch that names another UID is refused (UIDs are immutable).
pub async fn set_in_service(
    ctx: &Context,
    namespace: &str,
    pod: &str,
    uid: Option<&str>,
    in_service: bool,
) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let value = if in_service {
        json!(IN_SERVICE)
    } else {
        json!(null)
    };
    let mut metadata = json!({ "labels": { IN_SERVICE_LABEL: value } });
    if let Some(uid) = uid {
        metadata["uid"] = json!(uid);
    }
    api.patch(
        pod,
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": metadata })),
    )
    .await
    .map(|_| ())
}

/// Waits until neither of the cluster's Services lists `pod` (at most [`DRAIN_TIMEOUT`]) and
/// says how long that took; `None` when it still did at the deadline or could not be read.
pub async fn wait_out_of_services(ctx: &Context, id: &ClusterId, pod: &str) -> Option<Duration> {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &id.namespace);
    let selector = format!(
        "{SERVICE_NAME_LABEL} in ({},{})",
        names::headless_service(&id.name),
        names::client_service(&id.name)
    );
    let params = ListParams::default().labels(&selector);
    let started = Instant::now();
    loop {
        match api.list(&params).await {
            Ok(list) if !lists(&list.items, pod) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) => {
                tracing::info!(pod, error = %e, "cannot read the EndpointSlices; evicting without waiting for them");
                return None;
            }
        }
        if started.elapsed() >= DRAIN_TIMEOUT {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether any of `slices` has an endpoint for `pod`.
fn lists(slices: &[EndpointSlice], pod: &str) -> bool {
    slices.iter().flat_map(|s| &s.endpoints).any(|e| {
        e.target_ref
            .as_ref()
            .is_some_and(|r| r.kind.as_deref() == Some("Pod") && r.name.as_deref() == Some(pod))
    })
}

/// Puts back every member that is not terminating and lacks the label (an eviction that failed
/// after it was taken out, or an operator that stopped in between; a pod of a template older
/// than the label gets it too, which changes nothing until the Services select by it).
pub async fn restore(ctx: &Context, id: &ClusterId, pods: &[Pod]) -> Result<(), Error> {
    for pod in pods.iter().filter(|p| needs_restore(p)) {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        set_in_service(ctx, &id.namespace, name, pod.metadata.uid.as_deref(), true)
            .await
            .map_err(|source| Error::RestoreInService {
                pod: name.to_string(),
                source,
            })?;
        tracing::info!(pod = name, "member put back in its Services");
    }
    Ok(())
}

/// A pod that runs (not terminating) without the label.
fn needs_restore(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(IN_SERVICE_LABEL))
            .is_none_or(|v| v != IN_SERVICE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::Endpoint;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn slice(pods: &[&str]) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: pods
                .iter()
                .map(|p| Endpoint {
                    addresses: vec!["10.0.0.1".into()],
                    target_ref: Some(ObjectReference {
                        kind: Some("Pod".into()),
                        name: Some(p.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            metadata: ObjectMeta::default(),
            ports: None,
        }
    }

    #[test]
    fn a_pod_is_listed_while_any_slice_has_it() {
        let slices = [slice(&["zk-0", "zk-1"]), slice(&["zk-2"])];
        assert!(lists(&slices, "zk-2"));
        assert!(lists(&slices, "zk-0"));
        assert!(!lists(&slices[..1], "zk-2"));
        assert!(!lists(&[], "zk-2"));
    }

    fn pod(labels: &[(&str, &str)], terminating: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("zk-1".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                deletion_timestamp: terminating.then(|| Time(k8s_openapi::jiff::Timestamp::now())),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn only_a_running_member_without_the_label_is_put_back() {
        assert!(needs_restore(&pod(&[], false)));
        assert!(needs_restore(&pod(&[(IN_SERVICE_LABEL, "false")], false)));
        assert!(!needs_restore(&pod(
            &[(IN_SERVICE_LABEL, IN_SERVICE)],
            false
        )));
        // Being evicted: it stays out.
        assert!(!needs_restore(&pod(&[], true)));
    }
}
