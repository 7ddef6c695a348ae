// pause is the sandbox ("infra") container of the real-node tier: containerd's
// CRI plugin starts it first in every pod to hold the pod's namespaces, and
// every other container of the pod joins them. It does what Kubernetes'
// build/pause/linux/pause.c does, in Go so that it builds with the toolchain
// this repository already needs (CGO_ENABLED=0 gives a static binary for a
// FROM scratch image):
//   - block until SIGINT or SIGTERM, then exit 0 (the kubelet stops a sandbox
//     with SIGTERM; a non-zero exit would be reported as a failure);
//   - on SIGCHLD reap every exited child: with a shared PID namespace the
//     pause process is PID 1 and inherits the pod's orphans, which would stay
//     zombies if nobody waited for them.
//
// As PID 1 of a PID namespace, the kernel drops every signal for which the
// process has installed no handler (SIGTERM included); signal.Notify installs one.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is printed by -v, as pause.c does, so a probe can check the binary runs.
const version = "pvshift-pause 1"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println(version)
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: warning: not running as PID 1")
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reapChildren()
			continue
		}
		fmt.Fprintf(os.Stderr, "pause: shutting down, got signal %v\n", sig)
		os.Exit(0)
	}
}

// reapChildren waits for every child that has exited. Signals coalesce (one
// SIGCHLD may stand for several exits), so it loops until none is left.
func reapChildren() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
