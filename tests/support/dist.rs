//! The ZooKeeper distribution the real-ZooKeeper tests run: the jars `e2e/lib/zookeeper-dist.sh`
//! fetches, for the version pinned in `e2e/versions.env`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "../../e2e/lib/versions.rs"]
mod versions;

/// The ZooKeeper version the tests run.
pub const VERSION: &str = versions::ZOOKEEPER_VERSION;

/// The distribution directory, or a failure that says how to get it.
pub fn dist() -> PathBuf {
    let cache = std::env::var_os("ZKOP_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/zookeeper-operator"))
        })
        .expect("neither ZKOP_CACHE nor HOME is set");
    let dir = cache.join(format!("zookeeper-{VERSION}"));
    let jar = dir.join(format!("lib/zookeeper-{VERSION}.jar"));
    assert!(
        jar.is_file(),
        "ZooKeeper {VERSION} jars are missing ({} not found): run e2e/lib/zookeeper-dist.sh first",
        jar.display()
    );
    let java = Command::new("java")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        java.is_ok_and(|s| s.success()),
        "`java` is not runnable: install a JRE 11+ (Debian: apt-get install -y openjdk-17-jre-headless), then run e2e/lib/zookeeper-dist.sh"
    );
    dir
}

/// The JVM classpath of a server: the distribution's jars and its `conf/` (logback).
pub fn classpath(dist: &Path) -> String {
    format!("{}/lib/*:{}/conf", dist.display(), dist.display())
}
