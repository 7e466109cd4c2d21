package console

import (
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

// fields splits a list typed into one box: separated by commas, spaces or new lines.
func fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

// keyExpiries are the lifetimes the key form offers, in the order shown.
var keyExpiries = []struct{ Value, Label string }{
	{"", "Never"}, {"7d", "7 days"}, {"30d", "30 days"}, {"90d", "90 days"}, {"365d", "1 year"},
}

type keyForm struct {
	Name, Expires, Repos, CIDRs string
	ReadOnly                    bool
	Errors                      map[string]string
}

type keysData struct {
	Keys     []keystore.Key
	Form     keyForm
	Expiries []struct{ Value, Label string }
}

func (c *Console) keysPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.renderKeys(w, r, s, keyForm{}, http.StatusOK, "")
}

func (c *Console) renderKeys(w http.ResponseWriter, r *http.Request, s *session, f keyForm, status int, formErr string) {
	keys, err := c.ops.ListKeys(r.Context(), s.caller, s.account())
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	// Newest first: the key just made, or the one in use, is at the top.
	slices.SortStableFunc(keys, func(a, b keystore.Key) int { return b.Created.Compare(a.Created) })
	v := c.newView(r, s, "Your API keys")
	v.Nav, v.Error = "keys", formErr
	v.Data = keysData{Keys: keys, Form: f, Expiries: keyExpiries}
	c.render(w, r, status, "keys", v)
}

type keyCreatedData struct {
	Key      admin.KeyCreated
	Registry string
	Login    string
}

func (c *Console) createKey(w http.ResponseWriter, r *http.Request, s *session) {
	pf := r.PostForm
	f := keyForm{Name: strings.TrimSpace(pf.Get("name")), Expires: pf.Get("expires"), Repos: pf.Get("repos"),
		CIDRs: pf.Get("cidrs"), ReadOnly: pf.Get("readonly") != "", Errors: map[string]string{}}
	req := admin.KeyRequest{Name: f.Name, ExpiresIn: f.Expires}
	if keystore.ValidateKeyName(f.Name) != nil {
		f.Errors["name"] = "A name is at most 64 characters, letters, digits, spaces and punctuation."
	}
	if !slices.ContainsFunc(keyExpiries, func(e struct{ Value, Label string }) bool { return e.Value == f.Expires }) {
		f.Errors["expires"] = "Pick one of the lifetimes offered."
	}
	for _, p := range fields(f.Repos) {
		if keystore.ValidatePattern(p) != nil {
			f.Errors["repos"] = "“" + p + "” is not a repository name or pattern: use lowercase letters, digits, . _ - : and / between parts, * within a part, ** for any depth."
			break
		}
		req.Restrictions.Repositories = append(req.Restrictions.Repositories, p)
	}
	for _, n := range fields(f.CIDRs) {
		if _, err := netip.ParsePrefix(n); err != nil {
			f.Errors["cidrs"] = "“" + n + "” is not a network: write it like 10.0.0.0/8 or 2001:db8::/32."
			break
		}
		req.Restrictions.CIDRs = append(req.Restrictions.CIDRs, n)
	}
	if f.ReadOnly {
		req.Restrictions.Actions = []string{"pull"}
	}
	if len(f.Errors) > 0 {
		c.renderKeys(w, r, s, f, http.StatusBadRequest, "The key was not created: see the fields marked below.")
		return
	}
	k, err := c.ops.CreateKey(r.Context(), s.caller, req)
	if err != nil {
		status, msg := c.plain(r, err)
		c.renderKeys(w, r, s, f, status, "The key was not created. "+msg)
		return
	}
	c.opts.Logger.Info("console: key created", "account", s.account(), "key_id", k.ID, "by_key", s.record.KeyID)
	v := c.newView(r, s, "Your new API key")
	v.Nav = "keys"
	v.Data = keyCreatedData{Key: k, Registry: c.opts.Registry,
		Login: "echo '" + k.Secret + "' | docker login " + c.opts.Registry + " --username " + k.Account + " --password-stdin"}
	c.render(w, r, http.StatusOK, "keycreated", v)
}

type confirmData struct {
	Question string
	Detail   string
	Action   string
	Fields   map[string]string
	Button   string
	Cancel   string
}

func (c *Console) confirm(w http.ResponseWriter, r *http.Request, s *session, title, nav string, d confirmData) {
	v := c.newView(r, s, title)
	v.Nav, v.Data = nav, d
	c.render(w, r, http.StatusOK, "confirm", v)
}

// back is where a form returns to: a console path given by the form, or def. Only the console's
// own pages qualify, so a form cannot be made to redirect elsewhere.
func (c *Console) back(r *http.Request, def string) string {
	b := r.PostForm.Get("back")
	if b == "" || !strings.HasPrefix(b, c.opts.Prefix+"/") || strings.ContainsAny(b, "\\\r\n") || strings.HasPrefix(b, "//") {
		return def
	}
	if u, err := url.Parse(b); err != nil || u.Host != "" || u.Scheme != "" {
		return def
	}
	return b
}

// withDone adds a notice code to a console URL.
func withDone(u, code string) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "done=" + code
}

func (c *Console) revokeKeyPage(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.URL.Query().Get("id")
	if !keystore.ValidKeyID(id) {
		c.fail(w, r, s, http.StatusBadRequest, "That is not a key id.")
		return
	}
	back := c.path("/keys")
	if r.URL.Query().Get("from") == "admin" {
		back = c.path("/admin/keys?id=" + url.QueryEscape(id))
	}
	detail := "Anything using it — docker, CI jobs, this console if you signed in with it — stops working at once. This cannot be undone."
	if id == s.record.KeyID {
		detail = "You signed in with this key: revoking it also signs you out. " + detail
	}
	c.confirm(w, r, s, "Revoke a key", "keys", confirmData{
		Question: "Revoke the key " + id + "?", Detail: detail, Action: c.path("/keys/revoke"),
		Fields: map[string]string{"id": id, "back": back}, Button: "Revoke the key", Cancel: back,
	})
}

func (c *Console) revokeKey(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PostForm.Get("id")
	if !keystore.ValidKeyID(id) {
		c.fail(w, r, s, http.StatusBadRequest, "That is not a key id.")
		return
	}
	if _, err := c.ops.RevokeKey(r.Context(), s.caller, id); err != nil {
		c.failErr(w, r, s, err)
		return
	}
	c.opts.Logger.Info("console: key revoked", "account", s.account(), "key_id", id, "by_key", s.record.KeyID)
	http.Redirect(w, r, withDone(c.back(r, c.path("/keys")), "key-revoked"), http.StatusSeeOther)
}

type reposData struct {
	Owned     []keystore.Ownership
	Reserve   string
	Errors    map[string]string
	CanChange bool
}

func (c *Console) reposPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.renderRepos(w, r, s, reposData{}, http.StatusOK, "")
}

func (c *Console) renderRepos(w http.ResponseWriter, r *http.Request, s *session, d reposData, status int, formErr string) {
	owned, err := c.ops.ListRepositories(r.Context(), s.caller, s.account())
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	d.Owned, d.CanChange = owned, !s.restricted()
	v := c.newView(r, s, "Your repositories")
	v.Nav, v.Error, v.Data = "repos", formErr, d
	c.render(w, r, status, "repos", v)
}

func (c *Console) reserve(w http.ResponseWriter, r *http.Request, s *session) {
	name := strings.TrimSpace(r.PostForm.Get("repository"))
	d := reposData{Reserve: name, Errors: map[string]string{}}
	if name == "" || keystore.ValidatePattern(name) != nil || strings.Contains(name, "*") {
		d.Errors["repository"] = "A repository name is lowercase letters, digits, . _ - : and / between parts, e.g. shop/my-app."
		c.renderRepos(w, r, s, d, http.StatusBadRequest, "")
		return
	}
	if _, err := c.ops.ReserveRepository(r.Context(), s.caller, admin.RepositoryRequest{Repository: name}); err != nil {
		status, msg := c.plain(r, err)
		d.Errors["repository"] = msg
		c.renderRepos(w, r, s, d, status, "")
		return
	}
	http.Redirect(w, r, withDone(c.path("/repo?name="+url.QueryEscape(name)), "reserved"), http.StatusSeeOther)
}

func (c *Console) releasePage(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.URL.Query().Get("name")
	if keystore.ValidatePattern(name) != nil {
		c.fail(w, r, s, http.StatusBadRequest, "That is not a repository name.")
		return
	}
	c.confirm(w, r, s, "Release a repository", "repos", confirmData{
		Question: "Release " + name + "?",
		Detail:   "You will no longer own it: you lose push and the right to sell it, and someone else may reserve the name.",
		Action:   c.path("/repos/release"), Fields: map[string]string{"name": name},
		Button: "Release it", Cancel: c.path("/repo?name=" + url.QueryEscape(name)),
	})
}

func (c *Console) release(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.ops.ReleaseRepository(r.Context(), s.caller, r.PostForm.Get("name")); err != nil {
		c.failErr(w, r, s, err)
		return
	}
	http.Redirect(w, r, withDone(c.path("/repos"), "released"), http.StatusSeeOther)
}

type saleForm struct {
	Account, Until string
	Errors         map[string]string
}

type repoData struct {
	Name      string
	Grants    []keystore.Grant
	Form      saleForm
	CanChange bool
	Owner     bool
}

func (c *Console) repoPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.renderRepo(w, r, s, r.URL.Query().Get("name"), saleForm{}, http.StatusOK, "")
}

func (c *Console) renderRepo(w http.ResponseWriter, r *http.Request, s *session, name string, f saleForm, status int, formErr string) {
	if keystore.ValidatePattern(name) != nil {
		c.fail(w, r, s, http.StatusBadRequest, "That is not a repository name.")
		return
	}
	// Listing the grants on a repository is the policy's to allow: its owner and admins.
	grants, err := c.ops.ListGrants(r.Context(), s.caller, admin.GrantRequest{Repository: name})
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	v := c.newView(r, s, name)
	v.Nav, v.Error = "repos", formErr
	v.Data = repoData{Name: name, Grants: grants, Form: f, CanChange: !s.restricted(),
		Owner: slices.Contains(s.caller.Principal.Owned, name)}
	c.render(w, r, status, "repo", v)
}

// parseUntil reads an end typed in the sale form: a date, or a date and time (from a
// datetime-local field), in UTC.
func parseUntil(s string) (time.Time, bool) {
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02", time.RFC3339} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// sell grants pull on a repository to an account, with an optional end: a sale.
func (c *Console) sell(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PostForm.Get("repository")
	f := saleForm{Account: strings.TrimSpace(r.PostForm.Get("account")), Until: strings.TrimSpace(r.PostForm.Get("until")), Errors: map[string]string{}}
	req := admin.GrantRequest{Account: f.Account, Repository: name, Actions: []string{"pull"}}
	if keystore.ValidateName("account", f.Account) != nil {
		f.Errors["account"] = "Enter the buyer's account name: lowercase letters, digits, dots, dashes or underscores."
	}
	if f.Until != "" {
		t, ok := parseUntil(f.Until)
		switch {
		case !ok:
			f.Errors["until"] = "Enter a date and time like 2026-03-01 12:00, or leave it empty for no end."
		case !t.After(c.opts.Now()):
			f.Errors["until"] = "The end must be in the future."
		case t.After(keystore.LatestInstant):
			f.Errors["until"] = "The end must be no later than " + keystore.LatestInstant.Format("2006-01-02 15:04") + " UTC."
		}
		req.Expires = t
	}
	if len(f.Errors) > 0 {
		c.renderRepo(w, r, s, name, f, http.StatusBadRequest, "")
		return
	}
	if _, err := c.ops.AddGrant(r.Context(), s.caller, req); err != nil {
		status, msg := c.plain(r, err)
		if errors.Is(err, keystore.ErrNotFound) {
			f.Errors["account"] = "There is no account named “" + f.Account + "”."
			msg = ""
		}
		c.renderRepo(w, r, s, name, f, status, msg)
		return
	}
	c.opts.Logger.Info("console: pull granted", "repository", name, "to", f.Account, "until", f.Until, "by", s.account())
	http.Redirect(w, r, withDone(c.path("/repo?name="+url.QueryEscape(name)), "sold"), http.StatusSeeOther)
}

func (c *Console) revokeSalePage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	name, account := q.Get("name"), q.Get("account")
	if keystore.ValidatePattern(name) != nil || keystore.ValidateName("account", account) != nil {
		c.fail(w, r, s, http.StatusBadRequest, "That is not a repository and an account.")
		return
	}
	c.confirm(w, r, s, "Revoke access", "repos", confirmData{
		Question: "Revoke " + account + "’s pull on " + name + "?",
		Detail:   account + " can no longer pull it, from the next request on.",
		Action:   c.path("/repo/revoke"), Fields: map[string]string{"repository": name, "account": account},
		Button: "Revoke access", Cancel: c.path("/repo?name=" + url.QueryEscape(name)),
	})
}

func (c *Console) revokeSale(w http.ResponseWriter, r *http.Request, s *session) {
	name, account := r.PostForm.Get("repository"), r.PostForm.Get("account")
	// Only pull: what an owner sells. Anything else the account holds on the repository was
	// not the owner's to give, so it is not theirs to take.
	err := c.ops.RemoveGrant(r.Context(), s.caller, admin.GrantRequest{Account: account, Repository: name, Actions: []string{"pull"}})
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	c.opts.Logger.Info("console: pull revoked", "repository", name, "from", account, "by", s.account())
	http.Redirect(w, r, withDone(c.path("/repo?name="+url.QueryEscape(name)), "sale-revoked"), http.StatusSeeOther)
}

type accessRow struct {
	Grant keystore.Grant
	Via   string
}

func (c *Console) accessPage(w http.ResponseWriter, r *http.Request, s *session) {
	// The account's own rows through the admin operation (ended ones included, so a buyer sees
	// when a purchase ended); its groups' rows from the principal the session loaded (the live
	// ones — what the token endpoint would use).
	own, err := c.ops.ListGrants(r.Context(), s.caller, admin.GrantRequest{Account: s.account()})
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	rows := make([]accessRow, 0, len(own))
	for _, g := range own {
		rows = append(rows, accessRow{Grant: g, Via: "you"})
	}
	for _, g := range s.caller.Principal.Grants {
		if g.Subject.Kind == keystore.SubjectGroup {
			rows = append(rows, accessRow{Grant: g, Via: "group " + g.Subject.Name})
		}
	}
	v := c.newView(r, s, "Shared with you")
	v.Nav, v.Data = "access", rows
	c.render(w, r, http.StatusOK, "access", v)
}

type explainData struct {
	Account, Repository string
	Actions             map[string]bool
	Errors              map[string]string
	Result              *policy.Explanation
}

// explainPage answers "why can't they pull?" with the policy's explanation: an account, a
// repository and actions in, the decision and the rules that made it out. It changes nothing,
// so it is a GET form (its URL can be shared).
func (c *Console) explainPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := explainData{Account: q.Get("account"), Repository: q.Get("repository"), Actions: map[string]bool{}, Errors: map[string]string{}}
	for _, a := range q["action"] {
		if slices.Contains(keystore.GrantActions, a) {
			d.Actions[a] = true
		}
	}
	v := c.newView(r, s, "Why can’t they pull?")
	v.Nav = "explain"
	status := http.StatusOK
	if !q.Has("repository") {
		d.Account, d.Actions["pull"] = s.account(), true
	} else {
		if keystore.ValidateName("account", d.Account) != nil {
			d.Errors["account"] = "Enter an account name."
		}
		if d.Repository == "" || keystore.ValidatePattern(d.Repository) != nil || strings.Contains(d.Repository, "*") {
			d.Errors["repository"] = "Enter a repository name, e.g. shop/app."
		}
		if len(d.Actions) == 0 {
			d.Errors["action"] = "Pick at least one action."
		}
		if len(d.Errors) == 0 {
			var acts []string
			for _, a := range keystore.GrantActions {
				if d.Actions[a] {
					acts = append(acts, a)
				}
			}
			x, err := c.ops.Explain(r.Context(), s.caller, admin.ExplainRequest{Account: d.Account,
				Scopes: []string{"repository:" + d.Repository + ":" + strings.Join(acts, ",")}})
			if err != nil {
				status, v.Error = c.plain(r, err)
			} else {
				d.Result = &x
			}
		} else {
			status = http.StatusBadRequest
		}
	}
	v.Data = d
	c.render(w, r, status, "explain", v)
}
