package isolation

import (
	"os/exec"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
)

// regressions are sequences the model test found, kept as it shrank them; each is replayed on
// every configuration and must agree with the model at every step.
var regressions = []struct {
	name string
	ops  []op
}{
	{
		// Grant ends were judged by the store's wall clock, not the server's.
		"a grant that ends, on the server's clock",
		[]op{
			{Kind: "account", Actor: "root", Account: "sam", Groups: []string{"sellers"}},
			{Kind: "key", Actor: "root", Label: "k2", Account: "sam"},
			{Kind: "grant", Actor: "root", Account: "sam", Repo: "app", Actions: []string{"pull"}, Expires: "1h"},
			{Kind: "advance", Advance: 59 * time.Minute},
		},
	},
	{
		// A grant pattern with a "." or ".." segment, which no repository can match and a
		// proxy or a link would read as another path, was accepted.
		"a grant pattern with a dot segment",
		[]op{
			{Kind: "account", Actor: "root", Account: "shopfront", Roles: []string{"checkout"}},
			{Kind: "key", Actor: "root", Label: "k9"},
			{Kind: "grant", Actor: "k9", Account: "shopfront", Repo: "shop/../premium", Actions: []string{"delete"}},
			{Kind: "grant", Actor: "root", Group: "buyers", Repo: "./shop/app", Actions: []string{"pull"}},
			{Kind: "ungrant", Actor: "root", Group: "buyers", Repo: "./shop/app"},
		},
	},
	{
		"a key pattern with a dot segment",
		[]op{
			{Kind: "key", Actor: "root", Label: "k1", Restr: mRestrictions{repos: []string{"shop/../premium"}}},
			{Kind: "key", Actor: "root", Label: "k2", Restr: mRestrictions{repos: []string{"shop/app", "./shop/app"}}},
		},
	},
	{
		// DELETE /admin/v1/repositories/shop/x/../premium was redirected to .../shop/premium,
		// and clients follow a 307 with the same method and key. The server now takes the path
		// as sent; the client refuses such a name, which a proxy could still clean.
		"a release of an unclean name",
		[]op{
			{Kind: "account", Actor: "root", Account: "sam", Groups: []string{"sellers"}},
			{Kind: "reserve", Actor: "root", Repo: "shop/premium", Owner: "sam"},
			{Kind: "release", Actor: "root", Repo: "shop/x/../premium"},
			{Kind: "release", Actor: "root", Repo: "shop/x/../premium", Raw: true},
			{Kind: "release", Actor: "root", Repo: "shop//premium", Raw: true},
			{Kind: "release", Actor: "root", Repo: "shop/./premium", Raw: true},
			{Kind: "key", Actor: "root", Label: "k3", Account: "sam"},
		},
	},
}

func TestRegressions(t *testing.T) {
	var redisURL string
	if _, err := exec.LookPath("redis-server"); err == nil {
		redisURL = redistest.Start(t).URL()
	}
	for _, backend := range []string{"bolt", "redis"} {
		for _, b := range []*bundleModel{library, marketplace, teams} {
			cfg := config{backend: backend, bundle: b, redisURL: redisURL}
			t.Run(cfg.String(), func(t *testing.T) {
				if backend == "redis" {
					redistest.Program(t, "redis-server")
				}
				dir := t.TempDir()
				for _, r := range regressions {
					if d := replay(t, cfg, dir, r.ops); d != nil {
						t.Errorf("%s:\n%s%s", r.name, numbered(r.ops), d.msg)
					}
				}
			})
		}
	}
}
