//go:build unix

package server

import (
	"io/fs"
	"os"
	"slices"
	"syscall"
)

// exposure says who other than the server can read or change a file, as the end of a sentence
// naming it, or "" when nobody can. Group access is the server's own when it runs with the
// file's group, as in a Kubernetes secret volume with fsGroup and mode 0440.
func exposure(st fs.FileInfo) string { return exposureOf(st, canRead|canWrite) }

// exposureOf is exposure limited to some kinds of access: canRead, canWrite or both.
func exposureOf(st fs.FileInfo, kinds fs.FileMode) string {
	perm := st.Mode().Perm()
	if others := perm & kinds; others != 0 {
		return access(others) + " by every user of this host"
	}
	if group := perm >> 3 & kinds; group != 0 && !ownGroup(st) {
		return access(group) + " by its group, which the server does not run with"
	}
	return ""
}

// access names read (4) and write (2) permission bits.
func access(bits fs.FileMode) string {
	switch {
	case bits&0o4 != 0 && bits&0o2 != 0:
		return "can be read and changed"
	case bits&0o4 != 0:
		return "can be read"
	}
	return "can be changed"
}

// ownGroup reports whether the server runs with the file's group, as its effective or a
// supplementary group.
func ownGroup(st fs.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	gid := int(sys.Gid)
	if gid == os.Getegid() {
		return true
	}
	groups, err := os.Getgroups()
	return err == nil && slices.Contains(groups, gid)
}

// ownedByServer reports whether a file is the server's user's or root's: in a folder with the
// sticky bit (as /tmp), nobody else can remove or rename it, whoever can write the folder.
func ownedByServer(st fs.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && (sys.Uid == 0 || int(sys.Uid) == os.Geteuid())
}
