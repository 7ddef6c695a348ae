//go:build tools

// Package tools pins the etcd server that pvshift's local cluster runs.
package tools

import _ "go.etcd.io/etcd/server/v3"
