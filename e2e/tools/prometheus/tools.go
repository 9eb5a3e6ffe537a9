//go:build tools

// Package tools pins the Prometheus server and promtool that e2e/lib/build-binaries.sh builds.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
