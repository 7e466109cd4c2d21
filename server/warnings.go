package server

import (
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// Warnings are what a valid configuration may still get wrong, one sentence each naming its
// field, for the log of a server's start: a listener serving plain HTTP beyond this host, a file
// holding a secret that other users of the host can read or change, and trusted proxies among
// public addresses. None is refused: a proxy in front may end TLS, and Kubernetes mounts secrets
// with mode 0644 unless told otherwise.
func (c Config) Warnings() []string { return c.warnings(os.Stat) }

// warnings is Warnings with the file system's stat.
func (c Config) warnings(stat func(string) (fs.FileInfo, error)) []string {
	var ws []string
	warn := func(format string, args ...any) { ws = append(ws, fmt.Sprintf(format, args...)) }
	if c.Listen.TLS == nil && !loopback(c.Listen.Addr) {
		warn("listen.addr %q serves plain HTTP beyond this host: API keys and tokens cross the network in clear unless a proxy in front ends TLS (otherwise set listen.tls)", c.Listen.Addr)
	}
	if c.Metrics != nil && c.Metrics.TLS == nil && !loopback(c.Metrics.Addr) {
		warn("metrics.addr %q serves plain HTTP beyond this host: the metrics cross the network in clear unless a proxy in front ends TLS (otherwise set metrics.tls)", c.Metrics.Addr)
	}
	for _, f := range c.secretFiles() {
		st, err := stat(f.path)
		if err != nil || !st.Mode().IsRegular() {
			continue // a file that is not there is an error of its own, when it is loaded
		}
		who := exposure(st)
		if who == "" || f.ifPrivateKey && !holdsPrivateKey(f.path) {
			continue
		}
		warn("%s %q %s (mode %04o), and it is %s: chmod 600 it", f.field, f.path, who, st.Mode().Perm(), f.what)
	}
	for i, p := range c.TrustedProxies {
		if prefix, err := netip.ParsePrefix(p); err == nil && publicNetwork(prefix) {
			warn("trusted_proxies[%d] %q holds public addresses: any host there can name any client with X-Forwarded-For, past key network restrictions and per-address limits; list only your own proxies' addresses", i, p)
		}
	}
	return ws
}

// loopback reports whether a listener's address binds this host's loopback interface alone. An
// empty host (":5001") binds every interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// secretFile is a file the configuration names that holds a secret.
type secretFile struct {
	field, path, what string
	// ifPrivateKey: only when it holds a private key (signing.publish also takes certificates
	// and public keys).
	ifPrivateKey bool
}

// secretFiles lists the files of the configuration that hold secrets.
func (c Config) secretFiles() []secretFile {
	var files []secretFile
	add := func(field, path, what string) {
		if path != "" {
			files = append(files, secretFile{field: field, path: path, what: what})
		}
	}
	if c.Listen.TLS != nil {
		add("listen.tls.key_file", c.Listen.TLS.KeyFile, "the listener's TLS private key")
	}
	if c.Metrics != nil && c.Metrics.TLS != nil {
		add("metrics.tls.key_file", c.Metrics.TLS.KeyFile, "the metrics listener's TLS private key")
	}
	add("signing.key_file", c.Signing.KeyFile, "the key every token is signed with")
	for i, p := range c.Signing.Publish {
		files = append(files, secretFile{field: fmt.Sprintf("signing.publish[%d]", i), path: p, what: "a private signing key", ifPrivateKey: true})
	}
	for i, s := range c.RefreshTokens.Secrets {
		add(fmt.Sprintf("refresh_tokens.secrets[%d].file", i), s.File, "a refresh token secret")
	}
	add("store.url.file", c.Store.URL.File, "the store URL, with its password if it has one")
	if u, err := c.Store.URL.Resolve(); err == nil {
		if kind, path, err := ParseStoreURL(u); err == nil && kind == storeBolt {
			add("store.url", path, "the key store, whose writer can give any account any right")
		}
	}
	for _, p := range []struct {
		field  string
		source *PolicySource
	}{{"policy", &c.Policy.PolicySource}, {"policy.dry_run", c.Policy.DryRun}} {
		// An HS* algorithm verifies with a shared secret; the others with a public key.
		if p.source != nil && p.source.Signing != nil && strings.HasPrefix(strings.ToUpper(p.source.Signing.Algorithm), "HS") {
			add(p.field+".signing.key_file", p.source.Signing.KeyFile, "the secret bundles are signed with")
		}
	}
	return files
}

// holdsPrivateKey reports whether a PEM file holds a private key.
func holdsPrivateKey(path string) bool {
	raw, err := os.ReadFile(path)
	return err == nil && bytes.Contains(raw, []byte("PRIVATE KEY-----"))
}

// notPublic are the networks no host of the internet is reached at: private, shared (carrier
// grade NAT), loopback and link-local addresses.
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("::1/128"),
}

// publicNetwork reports whether p is more than one host and holds public addresses.
func publicNetwork(p netip.Prefix) bool {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if p.IsSingleIP() {
		return false
	}
	return !slices.ContainsFunc(notPublic, func(n netip.Prefix) bool { return n.Bits() <= p.Bits() && n.Contains(p.Addr()) })
}
