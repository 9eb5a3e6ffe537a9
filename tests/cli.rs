//! The binary: `crd` output equals the committed crd/ (regenerate with the command in the
//! message), `render -f` prints every object, bad input names the field and exits non-zero.

use std::process::Command;

fn operator(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zookeeper-operator"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn committed_crd_is_not_stale() {
    let out = operator(&["crd"]);
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string("crd/zookeeperclusters.yaml").unwrap_or_default();
    assert!(
        generated == committed,
        "crd/zookeeperclusters.yaml is stale: run `cargo run -- crd > crd/zookeeperclusters.yaml`"
    );
}

#[test]
fn render_prints_every_object_of_each_sample() {
    for sample in ["zk", "minimal", "production"] {
        let out = operator(&["render", "-f", &format!("config/samples/{sample}.yaml")]);
        assert!(
            out.status.success(),
            "{sample}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let yaml = String::from_utf8(out.stdout).unwrap();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).unwrap();
        let kinds: Vec<_> = docs
            .iter()
            .map(|d| d["kind"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            kinds,
            [
                "Service",
                "Service",
                "PodDisruptionBudget",
                "ConfigMap",
                "NetworkPolicy",
                "StatefulSet"
            ],
            "{sample}"
        );
    }
}

#[test]
fn render_of_an_invalid_spec_names_each_field_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: zookeeper.ensemble.dev/v1alpha1\nkind: ZookeeperCluster\nmetadata: {name: bad}\n\
         spec: {replicas: 2, config: {heap: 3G}, resources: {limits: {memory: 2Gi}}}\n",
    )
    .unwrap();
    let out = operator(&["render", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "nothing is rendered for an invalid spec"
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("spec.replicas is 2"), "{err}");
    assert!(err.contains("spec.config.heap 3G does not fit"), "{err}");
}

#[test]
fn render_of_a_missing_file_says_what_to_pass() {
    let out = operator(&["render", "-f", "/nonexistent/zk.yaml"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot read /nonexistent/zk.yaml"), "{err}");
}

/// The image's start script, run as a uid that cannot write the data volume (a hostPath volume
/// keeps its owner; only volumes that honour fsGroup are handed to the pod's group): it stops
/// before anything else and says what to change.
#[test]
fn start_script_names_an_unwritable_data_volume_and_the_fix() {
    assert_eq!(
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default(),
        "0",
        "this test switches to another uid with setpriv: run it as root (CI does)"
    );
    use std::os::unix::fs::PermissionsExt;
    // A volume as a hostPath provisioner leaves it: owned by someone else, readable, not writable.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    std::fs::set_permissions(&volume, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = std::fs::canonicalize("deploy/images/zookeeper/start-zookeeper").unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid", "2345", "--regid", "2345", "--clear-groups"])
        .arg(&script)
        .arg(format!("--data_dir={}/data", volume.display()))
        .arg(format!("--data_log_dir={}/data/log", volume.display()))
        .arg(format!("--conf_dir={}/conf", volume.display()))
        .output()
        .expect("run start-zookeeper through setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "is not writable by uid 2345",
        "honour the pod's fsGroup",
        "spec.securityContext.runAsUser",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in: {stderr}");
    }
    assert!(!volume.join("data").exists(), "nothing was written");
}
