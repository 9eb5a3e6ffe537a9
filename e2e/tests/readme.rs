//! The README's "First questions" commands, run as written (in a namespace of their own) against
//! the reference ensemble, with a check after each answer that it did what the README says.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim};
use kube::api::{Api, ListParams};
use serde_json::Value;
use zookeeper_operator::crd::ZookeeperCluster;

use super::{
    TestNamespace, apply_cluster, client, cluster, condition, log, member_pods, wait_settled,
};

/// The README's marked block, one `(question, commands)` per `# How do I` comment.
fn first_questions() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    let start = readme
        .find("<!-- first-questions -->")
        .expect("README.md marks its first questions with <!-- first-questions -->");
    let end = readme[start..]
        .find("<!-- /first-questions -->")
        .expect("the first-questions block ends")
        + start;
    let mut out: Vec<(String, String)> = Vec::new();
    for line in readme[start..end].lines() {
        if line.starts_with("```") || line.starts_with("<!--") || line.trim().is_empty() {
            continue;
        }
        if let Some(q) = line.strip_prefix("# How do I") {
            out.push((format!("How do I{q}"), String::new()));
        } else if let Some((_, commands)) = out.last_mut() {
            commands.push_str(line);
            commands.push('\n');
        }
    }
    out
}

/// Runs `commands` as a bash script with the local cluster's kubectl; its output.
fn run(commands: &str, namespace: &str) -> String {
    let script = format!(
        "set -euo pipefail\neval \"$(e2e/cluster env)\"\n{}",
        commands.replace("zookeeper-demo", namespace)
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("run bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the README's commands failed:\n{script}\n---\n{text}"
    );
    text
}

#[tokio::test]
#[ignore = "needs the local Kubernetes with the operator installed: run e2e/operator-test"]
async fn first_questions_work_as_written() {
    let questions = first_questions();
    let asked: Vec<&str> = questions.iter().map(|(q, _)| q.as_str()).collect();
    assert_eq!(asked.len(), 4, "{asked:?}");
    for (i, word) in ["connect", "change a setting", "scale", "delete"]
        .iter()
        .enumerate()
    {
        assert!(asked[i].contains(word), "question {i}: {}", asked[i]);
    }

    let client = client().await;
    let guard = TestNamespace::create(&client, "e2e-readme").await;
    let ns = guard.name.clone();
    // The demo's ensemble: the reference sample, one node so members share it (as e2e/demo does).
    let sample: Value = serde_saphyr::from_str(
        &std::fs::read_to_string("config/samples/zk.yaml").expect("the reference sample"),
    )
    .expect("the sample parses");
    let mut spec = sample["spec"].clone();
    spec["antiAffinity"] = "preferred".into();
    apply_cluster(&client, &ns, "zk", spec)
        .await
        .expect("apply the reference ensemble");
    wait_settled(&client, &ns, "zk", Duration::from_secs(420)).await;

    let (q, commands) = &questions[0];
    let out = run(commands, &ns);
    log(format!("{q}: {}", out.lines().last().unwrap_or_default()));
    assert!(out.contains("[zookeeper]"), "{q} lists /:\n{out}");

    let (q, commands) = &questions[1];
    let before = member_pods(&client, &ns, "zk").await;
    run(commands, &ns);
    let zk = cluster(&client, &ns, "zk").await;
    assert_eq!(zk.spec.config.tick_time, 2500, "{q}");
    assert_eq!(
        condition(&zk, "Progressing").map(|c| c.1).as_deref(),
        Some("UpToDate")
    );
    let after = member_pods(&client, &ns, "zk").await;
    assert!(
        after
            .iter()
            .all(|p| !before.iter().any(|b| b.metadata.uid == p.metadata.uid)),
        "{q}: every member was restarted into the new setting"
    );
    log(format!("{q}: every member restarted with tickTime 2500"));

    let (q, commands) = &questions[2];
    let out = run(commands, &ns);
    let zk = cluster(&client, &ns, "zk").await;
    let status = zk.status.clone().expect("a status");
    assert_eq!(zk.spec.replicas, 3, "{q}");
    assert_eq!(status.members.len(), 3, "{q}:\n{out}");
    assert!(status.config_version.is_some(), "{q}");
    let events = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items;
    let count = |reason: &str| {
        events
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .count()
    };
    assert_eq!(
        (count("MemberRemoved"), count("MemberAdded")),
        (2, 2),
        "{q}: 3 -> 1 -> 3 removes two servers and adds two"
    );
    log(format!("{q}: 3 -> 1 -> 3 through reconfiguration\n{out}"));

    let (q, commands) = &questions[3];
    run(commands, &ns);
    assert!(
        Api::<ZookeeperCluster>::namespaced(client.clone(), &ns)
            .get_opt("zk")
            .await
            .expect("get")
            .is_none(),
        "{q}"
    );
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels("app.kubernetes.io/instance=zk"))
        .await
        .expect("list claims")
        .items;
    assert!(claims.is_empty(), "{q}: {} claims left", claims.len());
    log(format!("{q}: the cluster and its volumes are gone"));
}
