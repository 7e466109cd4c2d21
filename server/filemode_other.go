//go:build !unix

package server

import "io/fs"

// exposure: outside Unix, a file's mode does not say who can read it, so nothing is reported.
func exposure(fs.FileInfo) string { return "" }

// exposureOf is exposure limited to some kinds of access; outside Unix, nothing is reported.
func exposureOf(fs.FileInfo, fs.FileMode) string { return "" }

// ownedByServer: outside Unix, nothing is reported, so no file needs an owner.
func ownedByServer(fs.FileInfo) bool { return false }
