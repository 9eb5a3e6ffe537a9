//! The README's ZookeeperCluster reference stays in sync with the CRD: every spec field the
//! operator defines is documented there.

use kube::CustomResourceExt;
use serde_json::Value;
use zookeeper_operator::crd::ZookeeperCluster;

/// Fields whose insides are Kubernetes' own types or free-form maps, documented as a whole.
const DOCUMENTED_AS_A_WHOLE: &[&str] = &[
    "spec.resources",
    "spec.probes.readiness",
    "spec.probes.liveness",
    "spec.pod.tolerations",
    "spec.pod.imagePullSecrets",
];

fn collect(path: &str, schema: &Value, out: &mut Vec<String>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, sub) in props {
        let p = format!("{path}.{name}");
        let nested =
            sub.get("properties").is_some() && !DOCUMENTED_AS_A_WHOLE.contains(&p.as_str());
        if nested {
            collect(&p, sub, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn readme_documents_every_spec_field() {
    let crd = serde_json::to_value(ZookeeperCluster::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut fields = Vec::new();
    collect("spec", spec, &mut fields);
    assert!(fields.len() > 30, "the walk found the fields: {fields:?}");
    let readme = std::fs::read_to_string("README.md").unwrap();
    let missing: Vec<_> = fields
        .iter()
        .filter(|f| !readme.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's reference lacks {missing:?}"
    );
}
