//! How `e2e/cluster up` starts a component whose earlier process is still there (the start and
//! wait logic of e2e/cluster, sourced with a scratch state directory; no cluster, no root):
//! a recorded process that runs but fails its health check is waited for until it exits, then a
//! new one starts; one that serves is left alone; one that neither serves nor exits ends the wait
//! with the PID to stop; a port another process still holds is waited for, and named.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs SCRIPT after sourcing e2e/cluster with its state under DIR; the component is `demo`,
/// whose health check is `healthy_demo` and whose ports are $DEMO_PORTS.
fn cluster_fn(dir: &Path, script: &str, envs: &[(&str, &str)]) -> Output {
    let prelude = r#"
source e2e/cluster
RUN_DIR=$SCRATCH/run LOG_DIR=$SCRATCH/logs
mkdir -p "$RUN_DIR" "$LOG_DIR"
ports() { [[ $1 == demo ]] && echo "${DEMO_PORTS:-}"; }
healthy() { [[ $1 == demo ]] && healthy_demo; }
healthy_demo() { false; }
# record PID (a `sleep` started with &) as the recorded process of demo, the way `start` records
# one: by the program it runs, once it runs it (right after the fork /proc/PID/exe is still bash)
record_demo() {
  local exe i
  exe=$(readlink -f "$(command -v sleep)")
  for ((i = 0; i < 50; i++)); do [[ $(readlink "/proc/$1/exe") == "$exe" ]] && break; sleep 0.1; done
  echo "$1 $exe" > "$RUN_DIR/demo.pid"
}
demo_pid() { cut -d' ' -f1 < "$RUN_DIR/demo.pid"; }
"#;
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("{prelude}\n{script}"))
        .current_dir(repo())
        .env("ZKOP_CACHE", dir.join("cache"))
        .env("SCRATCH", dir)
        .stdin(std::process::Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("bash runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_component_still_shutting_down_is_waited_for_then_replaced() {
    let dir = tempfile::tempdir().unwrap();
    // the old process: no longer serving, exits 3 s later (kube-apiserver after SIGTERM: 60 s)
    let out = cluster_fn(
        dir.path(),
        r#"
EXIT_WAIT=30
sleep 3 & old=$!
record_demo "$old"
start demo "$(command -v sleep)" 30
new=$(demo_pid)
echo "old=$old new=$new"
kill "$new"
"#,
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = text(&out.stdout);
    let (old, new) = stdout
        .trim()
        .strip_prefix("old=")
        .and_then(|s| s.split_once(" new="))
        .unwrap_or_else(|| panic!("stdout: {stdout}"));
    assert_ne!(old, new, "a new process was started");
    assert!(
        stderr.contains(&format!(
            "demo (pid {old}) runs but does not answer its health check: shutting down (or still starting); waiting up to 30s"
        )),
        "{stderr}"
    );
    let waited: u64 = stderr
        .split(&format!("demo (pid {old}) exited after "))
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no 'exited after' line:\n{stderr}"));
    assert!(
        (2..=5).contains(&waited),
        "waited {waited}s for a process that exits after 3 s"
    );
    assert!(stderr.contains("starting demo (log: "), "{stderr}");
}

#[test]
fn a_serving_component_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = cluster_fn(
        dir.path(),
        r#"
healthy_demo() { true; }
sleep 30 & old=$!
record_demo "$old"
start demo "$(command -v sleep)" 30
[[ $(demo_pid) == "$old" ]] && echo same
kill "$old"
"#,
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(text(&out.stdout).trim(), "same");
    assert!(stderr.contains("demo already running (pid "), "{stderr}");
    assert!(!stderr.contains("starting demo"), "{stderr}");
}

#[test]
fn a_component_that_neither_serves_nor_exits_ends_the_wait_with_its_pid() {
    let dir = tempfile::tempdir().unwrap();
    let out = cluster_fn(
        dir.path(),
        r#"
EXIT_WAIT=2
sleep 30 & old=$!
echo "$old" > "$SCRATCH/old"
record_demo "$old"
trap 'kill "$old"' EXIT
start demo "$(command -v sleep)" 30
"#,
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let old = std::fs::read_to_string(dir.path().join("old")).unwrap();
    let old = old.trim();
    assert!(
        stderr.contains(&format!(
            "ERROR: demo (pid {old}) runs but has not answered its health check in 2s (hung, or shutting down slowly)"
        )) && stderr.contains(&format!("stop it (kill {old}), then rerun: e2e/cluster up")),
        "{stderr}"
    );
    assert!(!stderr.contains("starting demo"), "{stderr}");
}

#[test]
fn a_port_still_held_is_waited_for_and_its_holder_named() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let me = std::process::id();

    // held throughout: the wait ends naming this process
    let out = cluster_fn(
        dir.path(),
        "EXIT_WAIT=2\nstart demo \"$(command -v sleep)\" 30",
        &[("DEMO_PORTS", &addr)],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "demo: waiting up to 2s for an old process to release {addr} ("
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("ERROR: demo cannot start: still held after 2s:")
            && stderr.contains(&format!("pid {me})")),
        "the holder is named with its pid {me}:\n{stderr}"
    );

    // released after 2 s: the new process starts then
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        drop(listener);
    });
    let out = cluster_fn(
        dir.path(),
        "EXIT_WAIT=20\nstart demo \"$(command -v sleep)\" 30\nkill \"$(demo_pid)\"",
        &[("DEMO_PORTS", &addr)],
    );
    releaser.join().unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("demo: waiting up to 20s for an old process to release"),
        "{stderr}"
    );
    assert!(stderr.contains("starting demo (log: "), "{stderr}");
}
