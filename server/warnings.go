package server

import (
	"bytes"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/regoauth/regoauth/keystore/redisstore"
)

// Permission bits of one class of users (owner, group, others), the kinds of access exposureOf
// asks about.
const (
	canRead  fs.FileMode = 0o4
	canWrite fs.FileMode = 0o2
)

// Warnings are what a valid configuration may still get wrong, one sentence each naming its
// field, for the log of a server's start: a listener serving plain HTTP beyond this host, a file
// holding a secret that other users of the host can read or change, and trusted proxies among
// public addresses. file is the configuration file it was read from ("" when none, as in
// regoauth dev): that file, and OPA's when policy.opa names one, warn when other users can
// change them, or can read them and they hold a secret inline. What decides the policy from local
// files — policy.dir and everything in it, policy.bundle, and the dry run's — warns when others
// can change it, and every one of these files when others can replace it through a folder on its
// way, whatever its own mode. None is refused: a proxy in front may end TLS, and Kubernetes
// mounts secrets and configuration with mode 0644 unless told otherwise.
func (c Config) Warnings(file string) []string { return c.warnings(file, os.Stat) }

// warnings is Warnings with the file system's stat.
func (c Config) warnings(file string, stat func(string) (fs.FileInfo, error)) []string {
	var ws []string
	warn := func(format string, args ...any) { ws = append(ws, fmt.Sprintf(format, args...)) }
	if c.Listen.TLS == nil && !loopback(c.Listen.Addr) {
		warn("listen.addr %q serves plain HTTP beyond this host: API keys and tokens cross the network in clear unless a proxy in front ends TLS (otherwise set listen.tls)", c.Listen.Addr)
	}
	if c.Metrics != nil && c.Metrics.TLS == nil && !loopback(c.Metrics.Addr) {
		warn("metrics.addr %q serves plain HTTP beyond this host: the metrics cross the network in clear unless a proxy in front ends TLS (otherwise set metrics.tls)", c.Metrics.Addr)
	}
	for _, f := range c.configurationFiles(file) {
		st, err := stat(f.path)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		if who := exposureOf(st, canRead); who != "" {
			if inline := f.inline(); len(inline) > 0 {
				warn("%s %q %s (mode %04o), and it holds secrets inline: %s: chmod 600 it, or move them out of it (%s)", f.field, f.path, who, st.Mode().Perm(), strings.Join(inline, ", "), f.moveOut)
			}
		}
		if who := exposureOf(st, canWrite); who != "" {
			warn("%s %q %s (mode %04o), and whoever changes it %s: chmod go-w it", f.field, f.path, who, st.Mode().Perm(), f.chooses)
		}
		if w := folderWarning(f.field, f.path, f.chooses, stat); w != "" {
			ws = append(ws, w)
		}
	}
	for _, f := range c.secretFiles() {
		st, err := stat(f.path)
		if err != nil || !st.Mode().IsRegular() {
			continue // a file that is not there is an error of its own, when it is loaded
		}
		if f.ifPrivateKey && !holdsPrivateKey(f.path) {
			continue
		}
		if who := exposure(st); who != "" {
			warn("%s %q %s (mode %04o), and it is %s: chmod 600 it", f.field, f.path, who, st.Mode().Perm(), f.what)
		}
		if w := folderWarning(f.field, f.path, f.chooses, stat); w != "" {
			ws = append(ws, w)
		}
	}
	for _, f := range c.publicFiles() {
		st, err := stat(f.path)
		if err != nil || !st.Mode().IsRegular() || holdsPrivateKey(f.path) {
			continue // a private key among them is a secret file, checked above
		}
		if who := exposureOf(st, canWrite); who != "" {
			warn("%s %q %s (mode %04o), and whoever changes it %s: chmod go-w it", f.field, f.path, who, st.Mode().Perm(), f.chooses)
		}
		if w := folderWarning(f.field, f.path, f.chooses, stat); w != "" {
			ws = append(ws, w)
		}
	}
	for _, p := range c.policySources() {
		ws = append(ws, p.localWarnings(stat)...)
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
	// what the file is; chooses, what whoever replaces it chooses.
	field, path, what, chooses string
	// ifPrivateKey: only when it holds a private key (signing.publish also takes certificates
	// and public keys).
	ifPrivateKey bool
}

// secretFiles lists the files of the configuration that hold secrets.
func (c Config) secretFiles() []secretFile {
	var files []secretFile
	add := func(field, path, what, chooses string) {
		if path != "" {
			files = append(files, secretFile{field: field, path: path, what: what, chooses: chooses})
		}
	}
	if c.Listen.TLS != nil {
		add("listen.tls.key_file", c.Listen.TLS.KeyFile, "the listener's TLS private key", "chooses the listener's TLS key")
	}
	if c.Metrics != nil && c.Metrics.TLS != nil {
		add("metrics.tls.key_file", c.Metrics.TLS.KeyFile, "the metrics listener's TLS private key", "chooses the metrics listener's TLS key")
	}
	add("signing.key_file", c.Signing.KeyFile, "the key every token is signed with", "chooses the key every token is signed with")
	for i, p := range c.Signing.Publish {
		files = append(files, secretFile{field: fmt.Sprintf("signing.publish[%d]", i), path: p, what: "a private signing key",
			chooses: "chooses a key the JWKS publishes", ifPrivateKey: true})
	}
	for i, s := range c.RefreshTokens.Secrets {
		add(fmt.Sprintf("refresh_tokens.secrets[%d].file", i), s.File, "a refresh token secret", "chooses a refresh token secret, and can make refresh tokens with it")
	}
	add("store.url.file", c.Store.URL.File, "the store URL, with its password if it has one", "chooses the store, and with it every account's rights")
	if u, err := c.Store.URL.Resolve(); err == nil {
		if kind, path, err := ParseStoreURL(u); err == nil && kind == storeBolt {
			add("store.url", path, "the key store, whose writer can give any account any right", "chooses every account's keys and rights")
		}
	}
	for _, p := range c.policySources() {
		// An HS* algorithm verifies with a shared secret; the others with a public key.
		if p.Signing != nil && strings.HasPrefix(strings.ToUpper(p.Signing.Algorithm), "HS") {
			add(p.field+".signing.key_file", p.Signing.KeyFile, "the secret bundles are signed with", "chooses the secret bundles are signed with, and with it the policy")
		}
	}
	return files
}

// publicFiles lists the files of the configuration that hold nothing secret, yet whoever changes
// them chooses what is trusted: a key the JWKS publishes (registries reading it accept tokens
// signed with it), the certificate chain tokens carry, the public key bundles are verified with.
// Only field, path and chooses are set.
func (c Config) publicFiles() []secretFile {
	var files []secretFile
	add := func(field, path, chooses string) {
		if path != "" {
			files = append(files, secretFile{field: field, path: path, chooses: chooses})
		}
	}
	for i, p := range c.Signing.Publish {
		add(fmt.Sprintf("signing.publish[%d]", i), p, "chooses a key the JWKS publishes, and registries reading it accept tokens signed with that key")
	}
	add("signing.cert_file", c.Signing.CertFile, "chooses the certificate chain every token carries")
	for _, p := range c.policySources() {
		if p.Signing != nil && !strings.HasPrefix(strings.ToUpper(p.Signing.Algorithm), "HS") {
			add(p.field+".signing.key_file", p.Signing.KeyFile, "chooses the key bundles are verified with, and with it the policy")
		}
	}
	return files
}

// namedSource is a policy source with its field.
type namedSource struct {
	field string
	*PolicySource
}

// policySources are the policy and, when configured, its dry-run candidate.
func (c Config) policySources() []namedSource {
	sources := []namedSource{{"policy", &c.Policy.PolicySource}}
	if c.Policy.DryRun != nil {
		sources = append(sources, namedSource{"policy.dry_run", c.Policy.DryRun})
	}
	return sources
}

// localWarnings are the warnings of a policy source's local bundle: a policy.dir whose folder,
// or a folder or file in it, others can change (adding a file is enough), a policy.bundle
// others can change, and either of them in a folder others can rename it out of.
func (p namedSource) localWarnings(stat func(string) (fs.FileInfo, error)) []string {
	// Whoever changes a signed bundle cannot write a policy of their own: they can put back an
	// older signed one, or break the signature so that no new revision activates.
	chooses := "chooses the policy"
	if p.Signing != nil {
		chooses = "can put back any bundle ever signed with " + p.field + ".signing's key, or keep the policy from loading"
	}
	var ws []string
	if p.Dir != "" {
		field := p.field + ".dir"
		t := treeExposure(p.Dir, stat)
		if t.count > 0 {
			more := ""
			if t.count > 1 {
				more = fmt.Sprintf(", as can %d more folders and files in it", t.count-1)
			}
			if t.stopped {
				more += fmt.Sprintf(" (of the first %d looked at)", walkLimit)
			}
			ws = append(ws, fmt.Sprintf("%s %q holds what others can change: %q %s (mode %04o)%s; whoever changes what it holds %s: chmod -R go-w %q",
				field, p.Dir, t.first, t.who, unixMode(t.st), more, chooses, p.Dir))
		}
		if w := folderWarning(field, p.Dir, chooses, stat); w != "" {
			ws = append(ws, w)
		}
	}
	if p.Bundle != "" {
		field := p.field + ".bundle"
		if st, err := stat(p.Bundle); err == nil && st.Mode().IsRegular() {
			if who := exposureOf(st, canWrite); who != "" {
				ws = append(ws, fmt.Sprintf("%s %q %s (mode %04o), and whoever changes it %s: chmod go-w it", field, p.Bundle, who, st.Mode().Perm(), chooses))
			}
			if w := folderWarning(field, p.Bundle, chooses, stat); w != "" {
				ws = append(ws, w)
			}
		}
	}
	return ws
}

// walkLimit bounds the walk of a policy.dir: a bundle holds tens or hundreds of files, and a
// folder named by mistake (/, a home folder) must not hold up the start.
const walkLimit = 4096

// treeFinding is what treeExposure found.
type treeFinding struct {
	// first is the first path others can change, st its stat, who says who can.
	first string
	st    fs.FileInfo
	who   string
	// count is how many paths others can change; stopped, whether the walk ended at walkLimit
	// entries before the end of the tree.
	count   int
	stopped bool
}

// treeExposure walks the folder root names — itself, and every folder and file under it — for
// what users other than the server can change. Symbolic links under root are not followed: the
// walk stays in the tree (a link is replaced through the folder holding it, which is judged).
// The sticky bit does not help here: adding a file to a folder changes what it holds. A path
// on a read-only file system is changed by nobody.
func treeExposure(root string, stat func(string) (fs.FileInfo, error)) treeFinding {
	var t treeFinding
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return t // a folder that is not there is an error of its own, when the policy loads
	}
	entries := 0
	filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		if entries++; entries > walkLimit {
			t.stopped = true
			return filepath.SkipAll
		}
		st, err := stat(p)
		if err != nil {
			return nil
		}
		if who := exposureOf(st, canWrite); who != "" && !readOnlyFS(p) {
			if t.count == 0 {
				t.first, t.st, t.who = p, st, who
			}
			t.count++
		}
		return nil
	})
	return t
}

// folderWarning warns of a file others can replace through a folder on its way (replaceableBy),
// whatever the file's own mode; "" when they cannot. field and path name the file; chooses says
// what whoever replaces it chooses.
func folderWarning(field, path, chooses string, stat func(string) (fs.FileInfo, error)) string {
	r := replaceableBy(path, stat)
	if r.dir == "" {
		return ""
	}
	dir, child, st := r.dir, r.child, r.st
	noun := "file" // or "folder": policy.dir
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		noun = "folder"
	}
	where := fmt.Sprintf("the folder %q on its way", dir)
	if r.holdsFile {
		where = fmt.Sprintf("its folder %q", dir)
	}
	fix := fmt.Sprintf("chmod go-w %q", dir)
	if st.Mode()&fs.ModeSticky != 0 {
		// As on /tmp: an entry is renamed by its owner, and anything in the folder by the
		// folder's owner; replaceableBy found one of them is someone else.
		owner := child
		if !ownedByServer(st) {
			owner = dir
		}
		fix = fmt.Sprintf("the folder has the sticky bit, but %q is neither the server's user's nor root's: chown it, or keep the %s in a folder only they can change", owner, noun)
	}
	return fmt.Sprintf("%s %q can be replaced: %s %s (mode %04o), and whoever replaces the %s %s: %s",
		field, path, where, r.who, unixMode(st), noun, chooses, fix)
}

// replaceable is a folder in which others can rename an entry on the way to a file.
type replaceable struct {
	// dir is the folder, st its stat and who says who can change it; child is its entry on the
	// way, the file itself when holdsFile.
	dir, child, who string
	st              fs.FileInfo
	holdsFile       bool
}

// replaceableBy finds a folder on the way to path, as written and with symbolic links resolved,
// in which users other than the server can rename an entry, and so put another file in the
// path's place. A folder on a read-only file system lets nobody. One with the sticky bit, as
// /tmp, lets others rename only what they own: an entry that is the server's user's or root's,
// in such a folder that is theirs too, is safe.
func replaceableBy(path string, stat func(string) (fs.FileInfo, error)) replaceable {
	abs, err := filepath.Abs(path)
	if err != nil {
		return replaceable{}
	}
	paths := []string{abs}
	if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
		paths = append(paths, real)
	}
	seen := map[string]bool{}
	for _, p := range paths {
		for child, dir := p, filepath.Dir(p); child != dir; child, dir = dir, filepath.Dir(dir) {
			if seen[child] {
				continue
			}
			seen[child] = true
			st, err := stat(dir)
			if err != nil || !st.IsDir() {
				continue
			}
			who := exposureOf(st, canWrite)
			if who == "" || readOnlyFS(dir) {
				continue
			}
			if st.Mode()&fs.ModeSticky != 0 && ownedByServer(st) {
				if entry, err := os.Lstat(child); err == nil && ownedByServer(entry) {
					continue
				}
			}
			return replaceable{dir: dir, child: child, who: who, st: st, holdsFile: child == p}
		}
	}
	return replaceable{}
}

// unixMode is a file's mode as chmod writes it: 0644, or 1777 for a folder with the sticky bit.
func unixMode(st fs.FileInfo) fs.FileMode {
	m, mode := st.Mode(), st.Mode().Perm()
	for bit, octal := range map[fs.FileMode]fs.FileMode{fs.ModeSticky: 0o1000, fs.ModeSetgid: 0o2000, fs.ModeSetuid: 0o4000} {
		if m&bit != 0 {
			mode |= octal
		}
	}
	return mode
}

// configurationFile is a file that says what the server does: whoever changes it chooses that,
// and it may hold secrets inline.
type configurationFile struct {
	field, path string
	// inline names the settings of the file that hold a secret inline.
	inline func() []string
	// chooses is what whoever changes the file chooses; moveOut, how its secrets can be kept
	// out of it.
	chooses, moveOut string
}

// configurationFiles are the configuration file (when there is one) and OPA's configuration
// files.
func (c Config) configurationFiles(file string) []configurationFile {
	var files []configurationFile
	if file != "" {
		files = append(files, configurationFile{field: "configuration file", path: file, inline: c.inlineSecrets,
			chooses: "chooses the policy, the signing key and the store",
			moveOut: "{file: PATH} or {env: NAME} for store.url and refresh_tokens.secrets, a *_path setting or ${NAME} in policy.opa"})
	}
	for _, p := range c.policySources() {
		if path := p.OPA.File; path != "" {
			files = append(files, configurationFile{field: p.field + ".opa", path: path,
				inline: func() []string {
					raw, err := os.ReadFile(path)
					if err != nil {
						return nil
					}
					return opaSecrets("", raw)
				},
				chooses: "chooses the bundle servers, and with them the policy",
				moveOut: "a *_path setting or ${NAME}"})
		}
	}
	return files
}

// inlineSecrets names the settings of the configuration that hold a secret in the file itself
// rather than in a file or the environment it names: a store URL with a password, a refresh
// token secret, and what OPA's inline configuration holds (opaSecrets).
func (c Config) inlineSecrets() []string {
	var fields []string
	if redisstore.IsURL(c.Store.URL.Value) && redisstore.HasPassword(c.Store.URL.Value) {
		fields = append(fields, "store.url (its password)")
	}
	for i, s := range c.RefreshTokens.Secrets {
		if s.Value != "" {
			fields = append(fields, fmt.Sprintf("refresh_tokens.secrets[%d]", i))
		}
	}
	for _, p := range c.policySources() {
		if len(p.OPA.Inline) > 0 {
			fields = append(fields, opaSecrets(p.field+".opa.", p.OPA.Inline)...)
		}
	}
	return fields
}

// envReference is a ${NAME} of OPA's configuration, replaced by the variable's value when the
// policy source loads it (package policy).
var envReference = regexp.MustCompile(`\$\{[^}]+\}`)

// secretWords are parts of a setting's name that say it holds a secret, wherever it is.
var secretWords = []string{"password", "secret", "token", "passphrase"}

// opaSecrets names, each after prefix, the settings of an OPA configuration that hold a secret
// inline: a bundle service's credentials (a bearer token, an OAuth2 client secret, a TLS key's
// passphrase, a plugin's settings) and each of its headers (an Authorization or API key header),
// a password in a service's URL, a private key or an HS* secret among the keys, and any setting
// whose name says password, secret, token or passphrase. Names of files (path, *_path, *_file,
// the client_tls certificate and key), the bearer scheme and values with a ${NAME} reference,
// read from the environment, hold none.
func opaSecrets(prefix string, raw []byte) []string {
	var cfg map[string]any
	if yaml.Unmarshal(raw, &cfg) != nil {
		return nil // a configuration that does not parse fails to load, with an error of its own
	}
	var found []string
	var walk func(path []string, parent map[string]any, v any)
	walk = func(path []string, parent map[string]any, v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(v)) {
				walk(append(path[:len(path):len(path)], k), v, v[k])
			}
		case []any: // services may be a list
			for i, e := range v {
				walk(append(path[:len(path):len(path)], fmt.Sprintf("[%d]", i)), parent, e)
			}
		case string:
			if at := opaSecret(path, parent, v); at != "" && !slices.Contains(found, prefix+at) {
				found = append(found, prefix+at)
			}
		}
	}
	walk(nil, nil, cfg)
	return found
}

// opaSecret says where the value v of OPA's setting path is a secret held inline — the
// setting, or the credentials holding it — or "" when it is not one.
func opaSecret(path []string, parent map[string]any, v string) string {
	key := ""
	for _, p := range slices.Backward(path) {
		if !strings.HasPrefix(p, "[") {
			key = p
			break
		}
	}
	if key == "path" || strings.HasSuffix(key, "_path") || strings.HasSuffix(key, "_file") {
		return ""
	}
	// entry: a setting of one service or key itself, services.acr.url or keys.k.key.
	service, entry := len(path) >= 3 && path[0] == "services", len(path) == 3
	if service && len(path) == 5 && path[2] == "credentials" && path[3] == "client_tls" && key != "private_key_passphrase" {
		return "" // the names of the certificate and key files
	}
	if service && entry && key == "url" {
		if urlPassword(v) {
			return settingPath(path) + " (its password)"
		}
		return ""
	}
	if !heldInline(v) {
		return ""
	}
	switch {
	case service && path[2] == "credentials":
		if key == "scheme" {
			return ""
		}
		// Named as a whole: some of their settings (a token URL, a client id) are no secret.
		return settingPath(path[:3])
	case service && path[2] == "headers":
		return settingPath(path[:min(len(path), 4)])
	case entry && path[0] == "keys" && key == "private_key":
		return settingPath(path)
	case entry && path[0] == "keys" && key == "key":
		if alg, _ := parent["algorithm"].(string); strings.HasPrefix(strings.ToUpper(alg), "HS") {
			return settingPath(path)
		}
		return ""
	}
	if name := strings.ToLower(key); slices.ContainsFunc(secretWords, func(w string) bool { return strings.Contains(name, w) }) {
		return settingPath(path)
	}
	return ""
}

// settingPath writes the path of a setting: services.acr.url, services[0].url.
func settingPath(path []string) string {
	var b strings.Builder
	for i, p := range path {
		if i > 0 && !strings.HasPrefix(p, "[") {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// urlPassword reports whether a URL's user info holds a password, other than one read from the
// environment.
func urlPassword(u string) bool {
	_, rest, ok := strings.Cut(u, "://")
	if !ok {
		return false
	}
	authority, _, _ := strings.Cut(rest, "/")
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return false
	}
	_, password, _ := strings.Cut(authority[:at], ":")
	return heldInline(password)
}

// heldInline reports whether a value of OPA's configuration is written out in it: not empty,
// and with no ${NAME}, which takes it from the environment ("Bearer ${TOKEN}").
func heldInline(v string) bool { return strings.TrimSpace(v) != "" && !envReference.MatchString(v) }

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
