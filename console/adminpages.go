package console

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

// The admin pages list whole tables. Each page is one admin operation (the policy decides who
// may see it) that asks the store for the one page it shows, filters included, so a table of
// 10,000 rows costs about what a table of 50 does (BenchmarkPages).

// pageSize is how many rows a listing shows at once.
const pageSize = 50

// pager is the position in a paged listing and links to its neighbours.
type pager struct {
	Page, Pages, Total, First, Last int
	Prev, Next                      string
}

// paginate returns page (1-based) of items and the links to the pages beside it, which keep
// the listing's filters (query).
func paginate[T any](items []T, r *http.Request, path string) ([]T, pager) {
	p := pageOf(len(items), requestedPage(r), r, path)
	return items[(p.Page-1)*pageSize : p.Last], p
}

// storePage has the store read the page of a listing the request names, or the last page when
// that one is past the end. fetch reads the rows from offset and says how many it read of how
// many there are; the pager links to path.
func storePage[P any](r *http.Request, path string, fetch func(offset int) (res P, rows, total int, err error)) (P, pager, error) {
	page := requestedPage(r)
	res, rows, total, err := fetch((page - 1) * pageSize)
	if err == nil && rows == 0 && total > 0 {
		// Past the last page: show the last one.
		page = (total + pageSize - 1) / pageSize
		res, _, total, err = fetch((page - 1) * pageSize)
	}
	return res, pageOf(total, page, r, path), err
}

// requestedPage is the page a listing asks for, from 1.
func requestedPage(r *http.Request) int {
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	return max(page, 1)
}

// pageOf places page (clamped to the pages there are) in a listing of total rows.
func pageOf(total, page int, r *http.Request, path string) pager {
	pages := max(1, (total+pageSize-1)/pageSize)
	page = min(max(page, 1), pages)
	start, end := (page-1)*pageSize, min(page*pageSize, total)
	p := pager{Page: page, Pages: pages, Total: total, First: min(start+1, end), Last: end}
	link := func(n int) string {
		q := r.URL.Query()
		q.Set("page", strconv.Itoa(n))
		return path + "?" + q.Encode()
	}
	if page > 1 {
		p.Prev = link(page - 1)
	}
	if page < pages {
		p.Next = link(page + 1)
	}
	return p
}

type accountForm struct {
	Name, Groups, Roles string
	Disabled            bool
	Errors              map[string]string
}

type accountsData struct {
	Filter   string
	Accounts []keystore.Account
	Pager    pager
	Form     accountForm
}

func (c *Console) accountsPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.renderAccounts(w, r, s, accountForm{}, http.StatusOK, "")
}

func (c *Console) renderAccounts(w http.ResponseWriter, r *http.Request, s *session, f accountForm, status int, formErr string) {
	d := accountsData{Filter: strings.TrimSpace(r.URL.Query().Get("q")), Form: f}
	query := keystore.AccountQuery{Contains: d.Filter, Limit: pageSize}
	res, p, err := storePage(r, c.path("/admin/accounts"), func(offset int) (keystore.AccountPage, int, int, error) {
		query.Offset = offset
		res, err := c.ops.PageAccounts(r.Context(), s.caller, query)
		return res, len(res.Accounts), res.Total, err
	})
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	d.Accounts, d.Pager = res.Accounts, p
	v := c.newView(r, s, "Accounts")
	v.Nav, v.Error, v.Data = "accounts", formErr, d
	c.render(w, r, status, "accounts", v)
}

// names reads a list of group or role names, reporting the first bad one in plain words.
func names(kind, s string) ([]string, string) {
	list := fields(s)
	for _, n := range list {
		if keystore.ValidateName(kind, n) != nil {
			return nil, "“" + n + "” is not a " + kind + " name: use lowercase letters, digits, dots, dashes or underscores."
		}
	}
	return list, ""
}

func (c *Console) createAccount(w http.ResponseWriter, r *http.Request, s *session) {
	pf := r.PostForm
	f := accountForm{Name: strings.TrimSpace(pf.Get("name")), Groups: pf.Get("groups"), Roles: pf.Get("roles"), Errors: map[string]string{}}
	if keystore.ValidateName("account", f.Name) != nil {
		f.Errors["name"] = "An account name is 1 to 64 lowercase letters, digits, dots, dashes or underscores, starting and ending with a letter or digit."
	}
	groups, msg := names("group", f.Groups)
	if msg != "" {
		f.Errors["groups"] = msg
	}
	roles, msg := names("role", f.Roles)
	if msg != "" {
		f.Errors["roles"] = msg
	}
	if len(f.Errors) > 0 {
		c.renderAccounts(w, r, s, f, http.StatusBadRequest, "The account was not created: see the fields marked below.")
		return
	}
	if _, err := c.ops.CreateAccount(r.Context(), s.caller, admin.AccountRequest{Name: f.Name, Groups: groups, Roles: roles}); err != nil {
		status, msg := c.plain(r, err)
		c.renderAccounts(w, r, s, f, status, "The account was not created. "+msg)
		return
	}
	http.Redirect(w, r, withDone(c.path("/admin/account?name="+url.QueryEscape(f.Name)), "account-created"), http.StatusSeeOther)
}

type accountData struct {
	Account keystore.Account
	Form    accountForm
	// Shown is the account as the page shows it, which the form sends back (shown_groups,
	// shown_roles, shown_disabled) so that saving writes only what was changed on the page.
	Shown accountForm
}

func (c *Console) accountPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.renderAccount(w, r, s, r.URL.Query().Get("name"), nil, http.StatusOK, "")
}

func (c *Console) renderAccount(w http.ResponseWriter, r *http.Request, s *session, name string, f *accountForm, status int, formErr string) {
	if keystore.ValidateName("account", name) != nil {
		c.fail(w, r, s, http.StatusBadRequest, "That is not an account name.")
		return
	}
	a, err := c.ops.GetAccount(r.Context(), s.caller, name)
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	if f == nil {
		f = &accountForm{Name: a.Name, Groups: strings.Join(a.Groups, ", "), Roles: strings.Join(a.Roles, ", "), Disabled: a.Disabled}
	}
	v := c.newView(r, s, "Account "+a.Name)
	shown := accountForm{Groups: strings.Join(a.Groups, ", "), Roles: strings.Join(a.Roles, ", "), Disabled: a.Disabled}
	v.Nav, v.Error, v.Data = "accounts", formErr, accountData{Account: a, Form: *f, Shown: shown}
	c.render(w, r, status, "account", v)
}

func (c *Console) updateAccount(w http.ResponseWriter, r *http.Request, s *session) {
	pf := r.PostForm
	f := accountForm{Name: pf.Get("name"), Groups: pf.Get("groups"), Roles: pf.Get("roles"), Disabled: pf.Get("disabled") != "", Errors: map[string]string{}}
	groups, msg := names("group", f.Groups)
	if msg != "" {
		f.Errors["groups"] = msg
	}
	roles, msg := names("role", f.Roles)
	if msg != "" {
		f.Errors["roles"] = msg
	}
	if len(f.Errors) > 0 {
		c.renderAccount(w, r, s, f.Name, &f, http.StatusBadRequest, "Nothing was saved: see the fields marked below.")
		return
	}
	if groups == nil {
		groups = []string{}
	}
	if roles == nil {
		roles = []string{}
	}
	// Only what was changed on the page is written: a page opened before another admin
	// disabled the account, saved to change its groups, must not enable it again. (A form
	// without what it showed, from an older page, writes every field as before.)
	update := admin.AccountUpdate{Groups: &groups, Roles: &roles, Disabled: &f.Disabled}
	if pf.Has("shown_groups") && slices.Equal(groups, fields(pf.Get("shown_groups"))) {
		update.Groups = nil
	}
	if pf.Has("shown_roles") && slices.Equal(roles, fields(pf.Get("shown_roles"))) {
		update.Roles = nil
	}
	if pf.Has("shown_disabled") && f.Disabled == (pf.Get("shown_disabled") == "1") {
		update.Disabled = nil
	}
	a, err := c.ops.UpdateAccount(r.Context(), s.caller, f.Name, update)
	if err != nil {
		status, msg := c.plain(r, err)
		c.renderAccount(w, r, s, f.Name, &f, status, "Nothing was saved. "+msg)
		return
	}
	done := "account-updated"
	if a.Disabled {
		done = "account-disabled"
	}
	http.Redirect(w, r, withDone(c.path("/admin/account?name="+url.QueryEscape(a.Name)), done), http.StatusSeeOther)
}

type grantsData struct {
	Subject, Repository, State string
	Grants                     []keystore.Grant
	Pager                      pager
}

// grantsPage reads only the page it shows: the table may hold many thousands of rows.
func (c *Console) grantsPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := grantsData{Subject: strings.TrimSpace(q.Get("subject")), Repository: strings.TrimSpace(q.Get("repository")), State: q.Get("state")}
	query := keystore.GrantQuery{Subject: d.Subject, Repository: d.Repository, Now: c.opts.Now(), Limit: pageSize}
	switch d.State {
	case "ends":
		query.Ends = keystore.EndsLater
	case "ended":
		query.Ends = keystore.Ended
	default:
		d.State = ""
	}
	res, p, err := storePage(r, c.path("/admin/grants"), func(offset int) (keystore.GrantPage, int, int, error) {
		query.Offset = offset
		res, err := c.ops.PageGrants(r.Context(), s.caller, query)
		return res, len(res.Grants), res.Total, err
	})
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	d.Grants, d.Pager = res.Grants, p
	v := c.newView(r, s, "All grants")
	v.Nav, v.Data = "grants", d
	c.render(w, r, http.StatusOK, "grants", v)
}

type reservationsData struct {
	Owner, Repository string
	Owned             []keystore.Ownership
	Pager             pager
}

// reservationsPage reads only the page it shows.
func (c *Console) reservationsPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := reservationsData{Owner: strings.TrimSpace(q.Get("owner")), Repository: strings.TrimSpace(q.Get("repository"))}
	query := keystore.OwnershipQuery{Owner: d.Owner, Repository: d.Repository, Limit: pageSize}
	res, p, err := storePage(r, c.path("/admin/repos"), func(offset int) (keystore.OwnershipPage, int, int, error) {
		query.Offset = offset
		res, err := c.ops.PageRepositories(r.Context(), s.caller, query)
		return res, len(res.Ownerships), res.Total, err
	})
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	d.Owned, d.Pager = res.Ownerships, p
	v := c.newView(r, s, "All reservations")
	v.Nav, v.Data = "reservations", d
	c.render(w, r, http.StatusOK, "reservations", v)
}

type keySearchData struct {
	ID      string
	Keys    []keystore.Key
	Pager   pager
	Error   string
	Created bool
}

// keySearchPage finds keys by id, or by the beginning of one (an id from a log line).
func (c *Console) keySearchPage(w http.ResponseWriter, r *http.Request, s *session) {
	d := keySearchData{ID: strings.TrimSpace(r.URL.Query().Get("id"))}
	v := c.newView(r, s, "Find a key")
	v.Nav = "keysearch"
	status := http.StatusOK
	if d.ID != "" {
		if len(d.ID) < 4 || !keystore.ValidKeyID(d.ID+strings.Repeat("a", max(0, 16-len(d.ID)))) {
			d.Error = "Enter at least the first 4 characters of a key id (16 characters of a-z and 2-7)."
			status = http.StatusBadRequest
		} else {
			list, err := c.ops.ListKeys(r.Context(), s.caller, "")
			if err != nil {
				c.failErr(w, r, s, err)
				return
			}
			matched := list[:0:0]
			for _, k := range list {
				if strings.HasPrefix(k.ID, d.ID) {
					matched = append(matched, k)
				}
			}
			d.Keys, d.Pager = paginate(matched, r, c.path("/admin/keys"))
		}
	}
	v.Data = d
	c.render(w, r, status, "keysearch", v)
}

type statusData struct {
	Known   bool
	Policy  policy.Status
	StoreOK bool
	Checked time.Time
}

func (c *Console) statusPage(w http.ResponseWriter, r *http.Request, s *session) {
	ok, err := c.ops.Permits(r.Context(), s.caller, "status.read", policy.AdminTarget{})
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	if !ok {
		c.fail(w, r, s, http.StatusForbidden, "You are not allowed to see the service status.")
		return
	}
	d := statusData{Checked: c.opts.Now()}
	if h := c.opts.Health; h != nil {
		d.Known, d.Policy = true, h.Status()
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		d.StoreOK = h.Ping(ctx) == nil
		cancel()
	}
	v := c.newView(r, s, "Status")
	v.Nav, v.Data = "status", d
	c.render(w, r, http.StatusOK, "status", v)
}
