package server

import "golang.org/x/sys/unix"

// readOnlyFS reports whether path is on a file system mounted read-only, which nobody changes
// whatever the modes say: the read-only root file system of a container, and the ConfigMap and
// Secret volumes Kubernetes mounts read-only (their folders are mode 0777 or 1777).
func readOnlyFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Flags&unix.ST_RDONLY != 0
}
