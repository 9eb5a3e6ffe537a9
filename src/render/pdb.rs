//! The PodDisruptionBudget (policy/v1), kept in step with `spec.pdb`.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{object_meta, selector_labels};
use crate::names;
use crate::validate::ValidatedCluster;

/// PodDisruptionBudget over the members; evictions (ours included) respect it.
pub fn pdb(v: &ValidatedCluster, owner: Option<&OwnerReference>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: object_meta(names::pdb(&v.name), &v.namespace, &v.name, owner),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(v.spec.pdb.max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&v.name)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
