//! What the e2e scripts print during long steps (e2e/lib/common.sh, e2e/lib/build-binaries.sh):
//! a go build's `go: downloading` lines go to a log file and become one summary line, a failed
//! build shows the end of that log and what to do next, a build says beforehand roughly how long
//! it takes, and the release build prints a start line and an end line when not on a terminal.
//! The go and cargo commands here are stand-ins on PATH that print what the real ones print.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MODULES: usize = 187;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn executable(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/usr/bin/env bash\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A `go` that prints one `go: downloading` line per module on stderr (and one on stdout, which
/// the real one never does, so that stdout is proven to be captured too), then does what
/// $FAKE_GO_EXIT says: 0 creates the file named by `-o`, anything else is a compile error.
fn fake_go(bin: &Path) {
    executable(
        &bin.join("go"),
        &format!(
            r##"
for ((i = 0; i < {MODULES}; i++)); do echo "go: downloading example.com/module$i v1.$i.0" >&2; done
echo "go: downloading example.com/on-stdout v0.1.0"
out=""
while (($#)); do [[ $1 == -o ]] && out=$2; shift; done
if [[ ${{FAKE_GO_EXIT:-0}} != 0 ]]; then
  echo "# go.etcd.io/etcd/server/v3" >&2
  echo "server/main.go:12:3: undefined: brokenThing" >&2
  exit "$FAKE_GO_EXIT"
fi
[[ -n $out ]] && {{ printf '#!/bin/sh\n' > "$out"; chmod +x "$out"; }}
exit 0
"##
        ),
    );
}

fn bash(script: &str, cache: &Path, path_prefix: &Path, envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .current_dir(repo())
        .env("ZKOP_CACHE", cache)
        .env(
            "PATH",
            format!(
                "{}:{}",
                path_prefix.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .stdin(std::process::Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("bash runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_no_download_lines(out: &Output) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        !stdout.contains("go: downloading"),
        "a download line reached stdout:\n{stdout}"
    );
    assert!(
        !stderr.contains("go: downloading"),
        "a download line reached stderr:\n{stderr}"
    );
}

#[test]
fn go_downloads_are_logged_and_summarised_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("fakebin");
    std::fs::create_dir(&bin).unwrap();
    fake_go(&bin);
    let log = dir.path().join("logs/sample.log");
    let script = format!(
        "source e2e/lib/common.sh; go_logged 'the sample' '{}' go build -o '{}/out' ./x",
        log.display(),
        dir.path().display()
    );
    let out = bash(&script, dir.path(), &bin, &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_no_download_lines(&out);
    assert!(out.stdout.is_empty(), "stdout: {:?}", text(&out.stdout));
    let summary = format!(
        "fetched {} Go modules for the sample (log: {})",
        MODULES + 1,
        log.display()
    );
    assert!(stderr.contains(&summary), "want {summary:?} in:\n{stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line for the whole build:\n{stderr}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged
            .lines()
            .filter(|l| l.starts_with("go: downloading"))
            .count(),
        MODULES + 1,
        "every download line is in the log"
    );
}

#[test]
fn a_failed_go_build_shows_the_end_of_its_log_and_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("fakebin");
    std::fs::create_dir(&bin).unwrap();
    fake_go(&bin);
    let log = dir.path().join("logs/sample.log");
    let script = format!(
        "source e2e/lib/common.sh; go_logged 'the sample' '{}' go build ./x; echo \"rc=$?\" >&2",
        log.display()
    );
    let out = bash(&script, dir.path(), &bin, &[("FAKE_GO_EXIT", "3")]);
    let stderr = text(&out.stderr);
    assert_no_download_lines(&out);
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("rc=3"),
        "the exit status is returned:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "the sample failed (exit 3); the last lines of {}:",
            log.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("  server/main.go:12:3: undefined: brokenThing"),
        "the compiler's message is shown:\n{stderr}"
    );
}

/// The estimates come from the last recorded time of a build, also from the Kubernetes line,
/// which names the commands it built; nothing recorded gives the fallback.
#[test]
fn estimates_come_from_the_recorded_build_times() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    std::fs::write(
        dir.path().join("bin/build-times.txt"),
        "2026-01-01T00:00:00Z kubernetes-v1.34.4(kube-apiserver kubelet kubectl) 684s\n\
         2026-01-01T00:01:00Z etcd-v3.6.16 94s\n\
         2026-01-02T00:01:00Z etcd-v3.6.16 50s\n\
         2026-01-02T00:02:00Z etcd-v3.6.160 999s\n",
    )
    .unwrap();
    let out = bash(
        "source e2e/lib/common.sh; estimate kubernetes-v1.34.4 X; estimate etcd-v3.6.16 X; \
         estimate helm-v3.19.5 'a few minutes'",
        dir.path(),
        dir.path(),
        &[],
    );
    let stdout = text(&out.stdout);
    let times = dir.path().join("bin/build-times.txt");
    assert_eq!(
        stdout,
        format!(
            "about 11 min on this machine (recorded in {0})\n50s on this machine (recorded in {0})\na few minutes\n",
            times.display()
        ),
        "{}",
        text(&out.stderr)
    );
}

/// build-binaries.sh end to end with the stand-in go and a scratch cache: the estimate comes from
/// the recorded time, the downloads are one line, the new time is recorded; a failure names the
/// log and the command to rerun.
#[test]
fn build_binaries_says_how_long_and_summarises_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("fakebin");
    std::fs::create_dir(&bin).unwrap();
    fake_go(&bin);
    let times = dir.path().join("bin/build-times.txt");
    std::fs::create_dir_all(times.parent().unwrap()).unwrap();
    let versions = std::fs::read_to_string(repo().join("e2e/versions.env")).unwrap();
    let etcd = versions
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_VERSION="))
        .expect("ETCD_VERSION in e2e/versions.env")
        .trim_matches('"')
        .to_string();
    std::fs::write(&times, format!("2026-01-01T00:00:00Z etcd-{etcd} 94s\n")).unwrap();

    let out = bash("e2e/lib/build-binaries.sh etcd", dir.path(), &bin, &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_no_download_lines(&out);
    assert!(
        stderr.contains(&format!(
            "building etcd {etcd}: about 2 min on this machine (recorded in {})",
            times.display()
        )),
        "{stderr}"
    );
    let log = dir.path().join(format!("bin/logs/etcd-{etcd}.log"));
    assert!(
        stderr.contains(&format!(
            "fetched {} Go modules for etcd {etcd} (log: {})",
            MODULES + 1,
            log.display()
        )),
        "{stderr}"
    );
    assert!(dir.path().join(format!("bin/etcd-{etcd}/etcd")).is_file());
    let recorded = std::fs::read_to_string(&times).unwrap();
    assert_eq!(
        recorded.lines().count(),
        2,
        "the new build time is recorded:\n{recorded}"
    );
    assert!(
        stderr.lines().count() <= 4,
        "a build is a few lines:\n{stderr}"
    );

    // a second run reuses the binary and says so in one line
    let out = bash("e2e/lib/build-binaries.sh etcd", dir.path(), &bin, &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("(reused: etcd)"), "{stderr}");

    // a failing build: the end of the log, then what to do
    std::fs::remove_dir_all(dir.path().join(format!("bin/etcd-{etcd}"))).unwrap();
    let out = bash(
        "e2e/lib/build-binaries.sh etcd",
        dir.path(),
        &bin,
        &[("FAKE_GO_EXIT", "1")],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert_no_download_lines(&out);
    assert!(stderr.contains("undefined: brokenThing"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "ERROR: go build of etcd failed; read {} (its end is above), fix, then rerun: ",
            log.display()
        )) && stderr.contains("build-binaries.sh etcd"),
        "{stderr}"
    );
}

/// The release build off a terminal: cargo runs with --quiet between a start line that says
/// roughly how long and an end line with the elapsed seconds; a failure says what to do.
#[test]
fn release_build_prints_a_start_and_an_end_line_in_ci() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("fakebin");
    std::fs::create_dir(&bin).unwrap();
    let args = dir.path().join("cargo-args");
    executable(
        &bin.join("cargo"),
        &format!(
            "echo \"$*\" > '{}'\nexit ${{FAKE_CARGO_EXIT:-0}}\n",
            args.display()
        ),
    );
    let out = bash(
        "source e2e/lib/common.sh; release_build",
        dir.path(),
        &bin,
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&args).unwrap().trim(),
        "build --release --quiet"
    );
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    // "building the release binary (cargo build --release): about ..." in a fresh tree,
    // "checking the release binary is current (cargo build --release; ...)" when it was built
    // after the last change of the sources (this test runs in the real tree)
    assert!(
        (lines[0].contains("building the release binary (cargo build --release)")
            || lines[0].contains("checking the release binary is current (cargo build --release;")),
        "{stderr}"
    );
    assert!(
        lines[1].contains("release binary ready in ") && lines[1].contains("s: "),
        "{stderr}"
    );

    let out = bash(
        "source e2e/lib/common.sh; release_build",
        dir.path(),
        &bin,
        &[("FAKE_CARGO_EXIT", "101")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{stderr}");
    assert!(
        stderr.contains("the release build failed after ")
            && stderr.contains("s (exit 101)")
            && stderr.contains("fix them, then rerun: cargo build --release"),
        "{stderr}"
    );
}
