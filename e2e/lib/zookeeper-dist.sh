#!/usr/bin/env bash
# Prepare a runnable Apache ZooKeeper distribution from Maven Central.
#
# Usage: e2e/lib/zookeeper-dist.sh [VERSION]      (default: ZOOKEEPER_VERSION of e2e/versions.env)
#
# Puts org.apache.zookeeper:zookeeper:VERSION and its runtime dependencies, plus an SLF4J
# binding so the server logs and ZooKeeper's Prometheus metrics provider with its Prometheus
# client jars, into
#   ${ZKOP_CACHE:-$HOME/.cache/zookeeper-operator}/zookeeper-VERSION/lib/*.jar
# and a logging configuration into .../zookeeper-VERSION/conf/. Prints that directory on
# stdout; progress goes to stderr. A second run reuses what is there.
#
# Run a server with:
#   java -cp "$DIR/lib/*:$DIR/conf" org.apache.zookeeper.server.quorum.QuorumPeerMain zoo.cfg
set -euo pipefail

# shellcheck source=e2e/versions.env
source "$(dirname "${BASH_SOURCE[0]}")/../versions.env"
VERSION="${1:-$ZOOKEEPER_VERSION}"
CACHE="${ZKOP_CACHE:-$HOME/.cache/zookeeper-operator}"
DIST="$CACHE/zookeeper-$VERSION"
STAMP="$DIST/.complete"

log() { echo "zookeeper-dist: $*" >&2; }

if ! [[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  log "version '$VERSION' is not of the form X.Y.Z (e.g. 3.9.5)"
  exit 2
fi

# ZooKeeper's Prometheus metrics provider (zookeeper-prometheus-metrics, 3.6+), which the release
# tarball ships: the module of the same release, but for 3.9.5, whose module the Maven repository
# this project resolves from does not serve: 3.9.4's (the provider only implements the 3.9 line's
# MetricsProvider interface; its own ZooKeeper dependency is excluded, the server stays $VERSION).
MAJOR_MINOR="${VERSION%.*}"
case "$VERSION" in
  3.4.* | 3.5.*) METRICS_VERSION="" ;;
  3.9.5) METRICS_VERSION=3.9.4 ;;
  *) METRICS_VERSION=$VERSION ;;
esac
METRICS_JAR=""
[[ -z "$METRICS_VERSION" ]] || METRICS_JAR="$DIST/lib/zookeeper-prometheus-metrics-$METRICS_VERSION.jar"

if [[ -f "$STAMP" ]] && compgen -G "$DIST/lib/zookeeper-$VERSION.jar" >/dev/null \
  && { [[ -z "$METRICS_JAR" ]] || [[ -f "$METRICS_JAR" ]]; }; then
  log "reusing $DIST"
  echo "$DIST"
  exit 0
fi

for tool in mvn java; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "'$tool' is not installed; install it (Debian: apt-get install -y maven openjdk-17-jre-headless) and run again"
    exit 1
  fi
done

# ZooKeeper 3.4 logs through log4j 1.2 (its pom brings slf4j-log4j12). From 3.5 on the binding
# is an optional dependency, so it is named here with the version ZooKeeper's parent pom
# manages: log4j 1.2 for 3.5-3.7, logback for 3.8+.
MANAGED=""
EXTRA_DEPS=""
case "$MAJOR_MINOR" in
  3.4) ;;
  3.5 | 3.6 | 3.7)
    EXTRA_DEPS='<dependency><groupId>org.slf4j</groupId><artifactId>slf4j-log4j12</artifactId></dependency>'
    ;;
  *)
    EXTRA_DEPS='<dependency><groupId>ch.qos.logback</groupId><artifactId>logback-classic</artifactId></dependency>'
    ;;
esac
if [[ -n "$EXTRA_DEPS" ]]; then
  MANAGED="<dependencyManagement><dependencies><dependency><groupId>org.apache.zookeeper</groupId><artifactId>parent</artifactId><version>$VERSION</version><type>pom</type><scope>import</scope></dependency></dependencies></dependencyManagement>"
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
MVN=(mvn -B -q)
PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.6.1

log "fetching the pom of org.apache.zookeeper:zookeeper:$VERSION"
if ! "${MVN[@]}" "$PLUGIN:copy" -Dartifact="org.apache.zookeeper:zookeeper:$VERSION:pom" \
  -DoutputDirectory="$WORK" >"$WORK/mvn.log" 2>&1; then
  cat "$WORK/mvn.log" >&2
  log "maven could not fetch org.apache.zookeeper:zookeeper:$VERSION; check that Maven Central is reachable and that the version exists"
  exit 1
fi

# The official binary tarball also ships the "provided" dependencies (metrics-core, without
# which the server does not start; Jetty for the admin server; snappy; jline; commons-cli):
# name each of them without a version so the parent pom's managed version applies.
if [[ -n "$MANAGED" ]]; then
  EXTRA_DEPS+="$(perl -0777 -ne '
    while (/<dependency>(.*?)<\/dependency>/sg) {
      my $d = $1;
      next unless $d =~ /<scope>provided<\/scope>/;
      next if $d =~ /<optional>true<\/optional>/;
      my ($g) = $d =~ /<groupId>(.*?)<\/groupId>/;
      my ($a) = $d =~ /<artifactId>(.*?)<\/artifactId>/;
      print "<dependency><groupId>$g</groupId><artifactId>$a</artifactId></dependency>";
    }' "$WORK/zookeeper-$VERSION.pom")"
fi

if [[ -n "$METRICS_VERSION" ]]; then
  EXTRA_DEPS+="<dependency><groupId>org.apache.zookeeper</groupId><artifactId>zookeeper-prometheus-metrics</artifactId><version>$METRICS_VERSION</version><exclusions><exclusion><groupId>org.apache.zookeeper</groupId><artifactId>*</artifactId></exclusion></exclusions></dependency>"
fi

cat >"$WORK/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.ensemble.zookeeper-operator</groupId>
  <artifactId>zookeeper-dist</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  $MANAGED
  <dependencies>
    <dependency>
      <groupId>org.apache.zookeeper</groupId>
      <artifactId>zookeeper</artifactId>
      <version>$VERSION</version>
    </dependency>
    $EXTRA_DEPS
  </dependencies>
</project>
EOF

log "resolving org.apache.zookeeper:zookeeper:$VERSION and its runtime dependencies with Maven (this takes a minute the first time)"
# Resolved into a stage first: a directory of an earlier run may be in use by running servers,
# so it only gains jars (those of a newer list), it never loses one while a JVM may read it.
STAGE="$WORK/dist"
mkdir -p "$STAGE/lib" "$STAGE/conf"
if ! "${MVN[@]}" -f "$WORK/pom.xml" \
  "$PLUGIN:copy-dependencies" \
  -DincludeScope=runtime -DoutputDirectory="$STAGE/lib" >"$WORK/mvn.log" 2>&1; then
  cat "$WORK/mvn.log" >&2
  log "maven could not resolve org.apache.zookeeper:zookeeper:$VERSION; check that Maven Central is reachable and that the version exists"
  exit 1
fi

if ! [[ -f "$STAGE/lib/zookeeper-$VERSION.jar" ]] || { [[ -n "$METRICS_JAR" ]] && ! [[ -f "$STAGE/lib/${METRICS_JAR##*/}" ]]; }; then
  log "maven finished but zookeeper-$VERSION.jar or ${METRICS_JAR:+its metrics provider }is missing; see the list below"
  ls "$STAGE/lib" >&2
  exit 1
fi

# Log to the console only: tests and containers collect stdout/stderr.
cat >"$STAGE/conf/logback.xml" <<'EOF'
<configuration>
  <appender name="CONSOLE" class="ch.qos.logback.core.ConsoleAppender">
    <encoder>
      <pattern>%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n</pattern>
    </encoder>
  </appender>
  <root level="${zookeeper.console.threshold:-INFO}">
    <appender-ref ref="CONSOLE"/>
  </root>
</configuration>
EOF
cat >"$STAGE/conf/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n
EOF

mkdir -p "$DIST"
cp -R -n "$STAGE/lib" "$STAGE/conf" "$DIST/"
touch "$STAMP"
log "ready: $(ls "$DIST/lib" | wc -l) jars in $DIST/lib"
echo "$DIST"
