# Checks and their tally for the e2e test scripts (smoke-test, helm-e2e). Source it after common.sh.
# Each check logs PASS or FAIL, `figure` notes a measurement; `checks_summary NAME` prints the
# closing line "NAME: N passed, N failed" and succeeds when nothing failed.
# shellcheck shell=bash
export KUBECONFIG=${KUBECONFIG:-$KUBECONFIG_PATH}
KUBECTL=${KUBECTL:-$(bin kubectl)}
[[ -x $KUBECTL ]] || KUBECTL=kubectl

k() { "$KUBECTL" "$@"; }
PASSED=0 FAILED=0
pass() { PASSED=$((PASSED + 1)); log "PASS $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAIL $*"; }
check() { # DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
eventually() { # SECONDS COMMAND... : poll every second
  local secs=$1 i; shift
  for ((i = 0; i < secs; i++)); do "$@" > /dev/null 2>&1 && return 0; sleep 1; done
  return 1
}
# why_stuck NAMESPACE: what each pod that is not Ready waits for (unschedulable and why, image
# pull, crash loop, probe), and how much of the node's CPU and memory pods already request.
why_stuck() {
  local ns=$1
  log "pods in $ns that are not Ready, and why:"
  k -n "$ns" get pods -o jsonpath='{range .items[*]}{.metadata.name}{"\t"}{.status.phase}{"\t"}{range .status.conditions[?(@.status=="False")]}{.type}: {.reason} {.message}; {end}{range .status.containerStatuses[*]}{.state.waiting.reason} {.state.waiting.message} {.lastState.terminated.reason}{end}{"\n"}{end}' 2> /dev/null \
    | grep -v $'\tRunning\t$' | sed 's/^/  /' >&2 || true
  log "requests on the node (a Pending pod with 'Insufficient cpu' needs room: another workload holds it):"
  k describe nodes 2> /dev/null | sed -n '/Allocated resources:/,/Events:/p' | sed 's/^/  /' >&2 || true
}
FIGURES=()
figure() { FIGURES+=("$*"); log "FIGURE $*"; }
checks_summary() { # NAME
  echo "$1: $PASSED passed, $FAILED failed"
  ((FAILED == 0))
}
require_cluster() { # the API server answers at $KUBECONFIG
  k get --raw /readyz > /dev/null 2>&1 || die "no API server answers at $KUBECONFIG; start the cluster with: e2e/cluster up"
}

# build_rust_e2e DIR: builds the Rust e2e tests (cargo test --test e2e) and copies the test binary
# to DIR/e2e-tests, so that rust_check runs this build even when the sources change meanwhile.
build_rust_e2e() {
  local exe
  # The test target's own artifact: the operator binary built beside it has an executable too.
  exe=$(cd "$REPO_DIR" && cargo test --quiet --test e2e --no-run --message-format=json \
    | grep -F '"kind":["test"]' | grep -F '"name":"e2e"' \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1) || return 1
  [[ -x $exe ]] || return 1
  cp "$exe" "$1/e2e-tests" && E2E_TESTS=$1/e2e-tests
}

# One test of the Rust e2e suite (e2e/tests/, #[ignore]d ones included) as one check: the binary
# build_rust_e2e made, else `cargo test --test e2e`. Its output goes to stderr and the FIGURE lines
# it logs join FIGURES. A name that matches no test fails (the harness would report "0 passed").
rust_check() { # DESCRIPTION TEST_PATH
  local what=$1 name=$2 out line
  local run=(cargo test --quiet --test e2e --)
  [[ -n ${E2E_TESTS:-} ]] && run=("$E2E_TESTS")
  out=$(mktemp)
  log "running the Rust e2e test $name"
  if (cd "$REPO_DIR" && "${run[@]}" --ignored --exact "$name" --nocapture) 2>&1 | tee "$out" >&2 \
    && grep -q "test result: ok. 1 passed" "$out"; then
    pass "$what"
    while IFS= read -r line; do FIGURES+=("$line"); done < <(sed -n 's/.*FIGURE //p' "$out")
  else
    fail "$what (e2e test $name: cargo test --test e2e -- --ignored --exact $name)"
  fi
  rm -f "$out"
}
