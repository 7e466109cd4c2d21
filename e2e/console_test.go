package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/regoauth/regoauth/keystore"
)

// chromium returns the path of a headless-capable Chromium, skipping or failing like tool.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if strict() {
		t.Fatal("chromium is not installed, and REGOAUTH_E2E=1 requires it")
	}
	t.Skip("chromium is not installed")
	return ""
}

// screenshots is where the browser test saves its screenshots: $REGOAUTH_SCREENSHOTS when set
// (how docs/images is refreshed), else the test's artifact folder (kept with go test
// -artifacts).
func screenshots(t *testing.T) string {
	if dir := os.Getenv("REGOAUTH_SCREENSHOTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.ArtifactDir()
}

// person is one browser user: its own browser context (cookies of its own), sharing the
// Chromium process.
type person struct {
	t    *testing.T
	name string
	ctx  context.Context
	base string // http://TOKEN-ADDR/console
	dir  string
}

func (p *person) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

func (p *person) text(sel string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		p.t.Fatalf("%s: reading %s: %v", p.name, sel, err)
	}
	return s
}

// submit clicks what sends a form (or follows a link), waits for the page it leads to and
// returns that page's HTTP status.
func (p *person) submit(what, sel string) int {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
	return int(resp.Status)
}

// page is the text of the whole page.
func (p *person) page() string { return p.text("body") }

func (p *person) open(path string) {
	p.t.Helper()
	p.do("open "+path, chromedp.Navigate(p.base+path))
}

// shot saves a full-page screenshot as NAME.png.
func (p *person) shot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(p.dir, name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

func (p *person) wantText(what string, want ...string) {
	p.t.Helper()
	body := p.page()
	for _, w := range want {
		if !strings.Contains(body, w) {
			p.t.Fatalf("%s: %s: the page lacks %q:\n%s", p.name, what, w, body)
		}
	}
}

// signin fills and sends the sign-in form, as a person types it.
func (p *person) signin(account, key string) {
	p.t.Helper()
	p.open("/signin")
	p.do("fill the sign-in form",
		chromedp.SendKeys(chromedp.CSS("#account"), account),
		chromedp.SendKeys(chromedp.CSS("#key"), key),
	)
	if status := p.submit("sign in", "form.stack button[type=submit]"); status != http.StatusOK {
		p.t.Fatalf("%s: sign-in: HTTP %d:\n%s", p.name, status, p.page())
	}
	p.do("signed in", chromedp.WaitVisible(chromedp.CSS("form.signout")))
}

// cookies are the browser's cookies for the console, to replay outside the browser.
func (p *person) cookies() []*http.Cookie {
	p.t.Helper()
	var out []*http.Cookie
	p.do("read cookies", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		res, err := cdpGetCookies(ctx, t, p.base+"/")
		for _, c := range res {
			out = append(out, &http.Cookie{Name: c.Name, Value: c.Value})
		}
		return err
	}))
	return out
}

// TestConsoleInABrowser is the marketplace through the console, in headless Chromium, with
// real crane pushes and pulls against the registry of `regoauth dev`: a seller signs in, makes a
// key, reserves a listing, pushes to it with that key and sells pull until a date; the buyer
// signs in, sees the purchase and pulls; the seller revokes and the buyer is refused; a sale
// that ends is refused once it has ended; a form posted without its CSRF token, one posted from
// another site and a session after sign-out or after its key is revoked are refused. Every step
// saves a screenshot.
func TestConsoleInABrowser(t *testing.T) {
	browserPath := chromium(t)
	tool(t, "crane")
	d := startDev(t, "", "--policy", bundleWithoutTests(t, "../bundles/marketplace"))
	d.cli(t, d.AdminKey, "accounts", "create", "seller", "--group", "sellers")
	d.cli(t, d.AdminKey, "accounts", "create", "buyer")
	buyerKey := strings.TrimSpace(d.cli(t, d.AdminKey, "keys", "create", "--account", "buyer", "--name", "buyer laptop"))
	sellerBootstrap := strings.TrimSpace(d.cli(t, d.AdminKey, "keys", "create", "--account", "seller", "--name", "first key"))
	if want := "Web console: http://" + d.Addr + "/console/"; !strings.Contains(d.logs(), want) {
		t.Fatalf("regoauth dev does not print %q:\n%s", want, d.logs())
	}
	dir := screenshots(t)
	t.Logf("screenshots in %s", dir)

	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browserPath), chromedp.NoSandbox, chromedp.WindowSize(1280, 900))...)
	defer cancel()
	browser, cancel := chromedp.NewContext(alloc)
	defer cancel()
	if err := chromedp.Do(browser); err != nil { // starts Chromium
		t.Fatalf("starting %s: %v", browserPath, err)
	}
	newPerson := func(name string) *person {
		ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
		t.Cleanup(cancel)
		// The tab is made on the context's first use and lives as long as that context: make it
		// now, on this context, not on the shorter ones each step runs under.
		if err := chromedp.Do(ctx); err != nil {
			t.Fatalf("opening a browser context for %s: %v", name, err)
		}
		return &person{t: t, name: name, ctx: ctx, base: "http://" + d.Addr + "/console", dir: dir}
	}
	seller, buyer := newPerson("seller"), newPerson("buyer")
	const listing = "shop/app"
	// push and pull as a person does with crane, logged in with key in a home of its own.
	push := func(user, key string) result {
		s := newSession(t, "crane", d, d.Registry, user, key)
		s.login()
		return s.steps.push(s, listing)
	}
	pull := func(user, key string) result {
		s := newSession(t, "crane", d, d.Registry, user, key)
		if r := s.steps.login(s, key); r.code != 0 {
			return r
		}
		r, _ := s.steps.pull(s, listing)
		return r
	}

	// The seller signs in and makes a key.
	seller.open("/signin")
	seller.shot("01-signin")
	seller.signin("seller", sellerBootstrap)
	seller.wantText("keys page", "Your API keys", "first key")
	seller.do("fill the key form",
		chromedp.SendKeys(chromedp.CSS("#name"), "laptop"),
		chromedp.SetValue(chromedp.CSS("#expires"), "90d"),
	)
	seller.submit("create a key", `form[action$="/keys"] button[type=submit]`)
	seller.do("the new key", chromedp.WaitVisible(chromedp.CSS("#secret")),
		chromedp.WaitVisible(chromedp.CSS("button.copy"))) // the script ran: copy buttons shown
	sellerKey := strings.TrimSpace(seller.text("#secret"))
	if !strings.HasPrefix(sellerKey, "rak_") {
		t.Fatalf("the new key reads %q", sellerKey)
	}
	seller.wantText("new key", "shown only this once", "docker login "+d.Registry.Addr+" --username seller --password-stdin")
	seller.shot("02-key-created")
	seller.open("/keys")
	seller.shot("03-keys")

	// It reserves the listing, pushes to it with the new key, and sells pull until a date.
	seller.open("/repos")
	seller.do("fill the reservation", chromedp.SendKeys(chromedp.CSS("#repository"), "shop/app"))
	seller.submit("reserve", `form[action$="/repos/reserve"] button`)
	seller.wantText("reserved", "The repository is reserved for you")
	if r := push("seller", sellerKey); r.code != 0 {
		t.Fatalf("pushing with the key made in the console:\n%s", r.out)
	}
	until := time.Now().UTC().Add(30 * 24 * time.Hour).Truncate(time.Minute)
	seller.do("fill the sale",
		chromedp.SendKeys(chromedp.CSS("#account"), "buyer"),
		chromedp.SetValue(chromedp.CSS("#until"), until.Format("2006-01-02T15:04")),
	)
	seller.submit("sell", `form[action$="/repo/sell"] button`)
	seller.wantText("sold", "Pull access is granted", "account buyer", "until "+until.Format("2006-01-02 15:04 UTC"))
	seller.shot("04-listing-sold")
	seller.open("/repos")
	seller.shot("05-repositories")

	// The buyer signs in, sees the purchase, and pulls.
	buyer.signin("buyer", buyerKey)
	buyer.open("/access")
	buyer.wantText("shared with the buyer", "shop/app", "pull", "until "+until.Format("2006-01-02 15:04 UTC"))
	buyer.shot("06-buyer-shared")
	if r := pull("buyer", buyerKey); r.code != 0 {
		t.Fatalf("the buyer could not pull after the sale:\n%s", r.out)
	}
	// A session pushes content of its own (pushing what is already there would write nothing).
	if r := push("buyer", buyerKey); r.code == 0 {
		t.Fatalf("the buyer pushed to the seller's listing:\n%s", r.out)
	}

	// The seller asks why the buyer can pull, then revokes; the buyer is refused.
	seller.open("/explain?account=buyer&repository=shop/app&action=pull&action=push")
	seller.wantText("explanation", "pull on shop/app: allowed", "push on shop/app: refused", "not yours to see")
	seller.shot("07-explain")
	seller.open("/repo?name=shop/app")
	seller.submit("revoke", `a[href*="/repo/revoke"]`)
	seller.wantText("confirmation", "Revoke buyer’s pull on shop/app?")
	seller.shot("08-confirm-revoke")
	seller.submit("confirm", ".confirm button")
	seller.wantText("revoked", "The access is revoked")
	if r := pull("buyer", buyerKey); r.code == 0 {
		t.Fatal("the buyer pulled after the seller revoked the sale")
	}

	// A sale that ends: it gives pull until its end and nothing from then on.
	end := time.Now().UTC().Add(6 * time.Second).Truncate(time.Second)
	if end.Second() == 0 {
		// Chromium reads back a datetime-local value of :00 seconds without them, and SetValue,
		// which compares what it set with what it reads, then fails.
		end = end.Add(time.Second)
	}
	seller.do("fill a sale that ends in seconds",
		chromedp.SendKeys(chromedp.CSS("#account"), "buyer"),
		chromedp.SetValue(chromedp.CSS("#until"), end.Format("2006-01-02T15:04:05")),
	)
	seller.submit("sell until a moment", `form[action$="/repo/sell"] button`)
	seller.wantText("sold until a moment", "Pull access is granted")
	if r := pull("buyer", buyerKey); r.code != 0 {
		t.Fatalf("the buyer could not pull before the sale ended:\n%s", r.out)
	}
	time.Sleep(time.Until(end))
	if r := pull("buyer", buyerKey); r.code == 0 {
		t.Fatal("the buyer pulled after the sale ended")
	}
	seller.open("/repo?name=shop/app")
	seller.wantText("ended sale", "ended "+end.Format("2006-01-02 15:04 UTC"))
	seller.shot("09-sale-ended")
	buyer.open("/access")
	buyer.wantText("ended for the buyer", "ended "+end.Format("2006-01-02 15:04 UTC"))

	// A form without its CSRF token, and one posted from another site, are refused.
	jar, _ := cookiejar.New(nil)
	consoleURL, _ := url.Parse(seller.base + "/")
	jar.SetCookies(consoleURL, seller.cookies())
	replay := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	keysBefore := d.cli(t, d.AdminKey, "keys", "list", "--account", "seller")
	resp, err := replay.PostForm(seller.base+"/keys", url.Values{"name": {"no csrf"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a key form without its CSRF token: HTTP %d", resp.StatusCode)
	}
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<!doctype html><title>win a prize</title><form method="post" action="%s/keys"><input name="name" value="stolen"><button id="go">Claim</button></form>`, seller.base)
	}))
	defer evil.Close()
	seller.do("a page on another site", chromedp.Navigate(evil.URL))
	if status := seller.submit("a form on another site", "#go"); status != http.StatusForbidden {
		t.Fatalf("a form posted from another site: HTTP %d", status)
	}
	seller.wantText("cross-site form", "sent from another site")
	seller.shot("10-cross-site-refused")
	if after := d.cli(t, d.AdminKey, "keys", "list", "--account", "seller"); after != keysBefore {
		t.Fatalf("a refused form created a key:\n%s", after)
	}

	// Signing out ends the session wherever its cookie is; so does revoking the session's key.
	seller.open("/keys")
	seller.submit("sign out", "form.signout button")
	seller.wantText("signed out", "You are signed out")
	resp, err = replay.Get(seller.base + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a copy of the cookie after sign-out: HTTP %d", resp.StatusCode)
	}
	buyer.open("/keys")
	d.cli(t, d.AdminKey, "keys", "revoke", keyID(buyerKey))
	buyer.open("/keys")
	buyer.wantText("session of a revoked key", "Please sign in", "session has ended")
	buyer.shot("11-session-ended")

	// An admin's pages.
	adminUser := newPerson("admin")
	adminUser.signin("admin", d.AdminKey)
	for _, pg := range []struct{ path, name, want string }{
		{"/admin/accounts", "12-admin-accounts", "seller"},
		{"/admin/account?name=seller", "13-admin-account", "Account seller"},
		{"/admin/grants", "14-admin-grants", "shop/app"},
		{"/admin/repos", "15-admin-reservations", "shop/app"},
		{"/admin/keys?id=" + keyID(sellerKey)[:5], "16-admin-find-key", keyID(sellerKey)},
		{"/admin/status", "17-admin-status", "active"},
	} {
		adminUser.open(pg.path)
		adminUser.wantText(pg.path, pg.want)
		adminUser.shot(pg.name)
	}

	// At phone width the pages still read, and every field has its label.
	phone := newPerson("phone")
	phone.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	phone.signin("seller", sellerKey)
	phone.open("/repo?name=shop/app")
	phone.shot("18-phone-listing")
	unlabelled, err := chromedp.Run(phone.ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("input:not([type=hidden]), select"))
		.filter(e => !(e.labels && e.labels.length)).map(e => e.name)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(unlabelled) > 0 {
		t.Fatalf("fields without a label: %v", unlabelled)
	}

	// With the keyboard alone: Tab reaches the sign-in fields, the focused field shows a
	// visible outline, and Enter signs in.
	keys := newPerson("keyboard")
	keys.open("/signin")
	keys.tabTo("account")
	keys.shot("19-keyboard-focus")
	outline, err := chromedp.Run(keys.ctx, chromedp.Evaluate[string](`(() => {
		const s = getComputedStyle(document.activeElement);
		return s.outlineStyle + " " + s.outlineWidth; })()`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(outline, "none") || strings.HasSuffix(outline, " 0px") {
		t.Fatalf("the focused field shows no outline: %q", outline)
	}
	keys.do("type the account", chromedp.KeyEvent("seller"))
	keys.tabTo("key")
	keys.do("type the key", chromedp.KeyEvent(sellerKey))
	keys.do("Enter", chromedp.KeyEvent(kb.Enter))
	keys.do("signed in by keyboard", chromedp.WaitVisible(chromedp.CSS("form.signout")))
}

// tabTo presses Tab until the element with the id has the focus, failing after 20 presses.
func (p *person) tabTo(id string) {
	p.t.Helper()
	for range 20 {
		p.do("Tab", chromedp.KeyEvent(kb.Tab))
		active, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.activeElement ? document.activeElement.id : ""`))
		if err != nil {
			p.t.Fatal(err)
		}
		if active == id {
			return
		}
	}
	p.t.Fatalf("%s: Tab never reached #%s", p.name, id)
}

// bundleWithoutTests copies a bundle directory without its _test.rego files, as operators ship
// it (make bundles).
func bundleWithoutTests(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || strings.HasSuffix(e.Name(), "_test.rego") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// cdpGetCookies reads the browser's cookies for u.
func cdpGetCookies(ctx context.Context, t *chromedp.Target, u string) ([]*network.Cookie, error) {
	res, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{u}})
	if err != nil {
		return nil, err
	}
	if len(res.Cookies) == 0 {
		return nil, errors.New("the browser holds no console cookie")
	}
	return res.Cookies, nil
}

// keyID is the public id inside an API key.
func keyID(key string) string {
	id, ok := keystore.ParseAPIKey(key)
	if !ok {
		panic("not an API key: " + key)
	}
	return id
}
