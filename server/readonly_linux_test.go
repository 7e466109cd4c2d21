package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A folder on a read-only file system is changed by nobody, whatever its mode: Kubernetes mounts
// ConfigMap and Secret volumes read-only in folders of mode 0777 or 1777, and the root file
// system of a container may be read-only. The same folder writable warns.
func TestReadOnlyFolderWarnings(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a file system needs root")
	}
	dir := filepath.Join(t.TempDir(), "config")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0777,size=1m"); err != nil {
		t.Skipf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, 0) })
	file := writeMode(t, filepath.Join(dir, "regoauth.yaml"), "issuer: x\n", 0o644)
	bundle := mkdir(t, filepath.Join(dir, "bundle"), 0o777)
	cfg := Defaults()
	cfg.Listen.Addr = "127.0.0.1:5001"
	cfg.Policy.Dir = bundle
	got := cfg.Warnings(file)
	want := []string{`configuration file "` + file + `" can be replaced: its folder "` + dir + `"`, `policy.dir "` + bundle + `" holds what others can change`, `policy.dir "` + bundle + `" can be replaced`}
	if len(got) != len(want) {
		t.Fatalf("read-write: warnings %q, want %d beginning %q", got, len(want), want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Fatalf("read-write: warnings %q, want %d beginning %q", got, len(want), want)
		}
	}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Warnings(file); len(got) != 0 {
		t.Fatalf("read-only: warnings %q, want none", got)
	}
}
