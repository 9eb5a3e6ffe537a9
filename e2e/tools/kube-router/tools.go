//go:build tools

// Package tools pins the kube-router that e2e/lib/build-binaries.sh builds; the local cluster runs
// only its NetworkPolicy firewall (e2e/cluster firewall on).
package tools

import (
	_ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
)
