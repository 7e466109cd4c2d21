package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pages are the parsed templates, one set per page (each page defines "content" in the
// layout), and the static files with the content hashes their URLs carry.
type pages struct {
	byName map[string]*template.Template
	static map[string]staticFile
}

type staticFile struct {
	body        []byte
	contentType string
	hash        string
}

func loadPages(prefix string) (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}, static: map[string]staticFile{}}
	entries, err := fs.ReadDir(staticFS, "static")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		body, err := staticFS.ReadFile("static/" + e.Name())
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(body)
		ct := "text/css; charset=utf-8"
		if strings.HasSuffix(e.Name(), ".js") {
			ct = "text/javascript; charset=utf-8"
		}
		p.static[e.Name()] = staticFile{body: body, contentType: ct, hash: hex.EncodeToString(sum[:8])}
	}
	funcs := template.FuncMap{
		"path": func(rel string) string { return prefix + rel },
		"static": func(name string) (string, error) {
			f, ok := p.static[name]
			if !ok {
				return "", fmt.Errorf("no static file %q", name)
			}
			return prefix + "/static/" + name + "?v=" + f.hash, nil
		},
		"when":     when,
		"ends":     ends,
		"join":     func(s []string) string { return strings.Join(s, ", ") },
		"subject":  func(s keystore.Subject) string { return string(s.Kind) + " " + s.Name },
		"keyState": keyState,
		"columns":  func(labels ...string) []string { return labels },
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		base := strings.TrimSuffix(path.Base(name), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, name)
		if err != nil {
			return nil, err
		}
		p.byName[base] = t
	}
	return p, nil
}

// view is what every page template gets; Data is the page's own.
type view struct {
	Title  string
	Nav    string
	Notice string
	// Error is a failure of the whole form or page, in plain words; field errors are the page's.
	Error string
	Me    *me
	Data  any
	// Now is the instant the page describes (what has ended, what has expired).
	Now time.Time
}

// me is the signed-in caller as the layout shows it.
type me struct {
	Account    string
	KeyID      string
	KeyName    string
	Admin      bool
	Restricted bool
	CSRF       string
}

func (c *Console) newView(r *http.Request, s *session, title string) *view {
	v := &view{Title: title, Now: c.opts.Now()}
	if s != nil {
		k := s.caller.Principal.Key
		v.Me = &me{Account: s.account(), KeyID: k.ID, KeyName: k.Name, Admin: s.admin, Restricted: s.restricted(), CSRF: s.csrf}
	}
	if n := notices[r.URL.Query().Get("done")]; n != "" {
		v.Notice = n
	}
	return v
}

// notices are the messages a redirect after a change may ask for, by code: a fixed set, so a
// link cannot make the console say something it did not.
var notices = map[string]string{
	"key-revoked":      "The key is revoked. It no longer works anywhere.",
	"reserved":         "The repository is reserved for you.",
	"released":         "The reservation is released.",
	"sold":             "Pull access is granted.",
	"sale-revoked":     "The access is revoked. It no longer works.",
	"account-created":  "The account is created.",
	"account-updated":  "The account is saved.",
	"account-disabled": "The account is disabled: none of its keys work until it is enabled.",
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, v *view) {
	t, ok := c.pages.byName[page]
	if !ok {
		c.opts.Logger.Error("console: no such page template", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", v); err != nil {
		c.opts.Logger.Error("console: rendering a page", "page", page, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Pages show keys, grants and sometimes a secret: never kept by a browser or a proxy.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// errorTitles head error pages in plain words.
var errorTitles = map[int]string{
	http.StatusBadRequest:          "That did not work",
	http.StatusUnauthorized:        "You are not signed in",
	http.StatusForbidden:           "Not allowed",
	http.StatusNotFound:            "Not found",
	http.StatusConflict:            "That clashes with what exists",
	http.StatusTooManyRequests:     "Too many attempts",
	http.StatusServiceUnavailable:  "Unavailable for a moment",
	http.StatusInternalServerError: "Something went wrong",
}

// fail shows an error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	title := errorTitles[status]
	if title == "" {
		title = http.StatusText(status)
	}
	v := c.newView(r, s, title)
	v.Error = msg
	c.render(w, r, status, "error", v)
}

// failErr shows an error page for err.
func (c *Console) failErr(w http.ResponseWriter, r *http.Request, s *session, err error) {
	status, msg := c.plain(r, err)
	c.fail(w, r, s, status, msg)
}

// plain turns an error into a status and a sentence a person can act on. Refusals by the policy
// carry the policy's reasons; store and policy outages never show their details.
func (c *Console) plain(r *http.Request, err error) (int, string) {
	var f *admin.Forbidden
	switch {
	case errors.As(err, &f):
		msg := "You are not allowed to do this."
		if len(f.Reasons) > 0 {
			msg += " The policy says: " + strings.Join(f.Reasons, "; ") + "."
		}
		return http.StatusForbidden, msg
	case errors.Is(err, keystore.ErrInvalid):
		return http.StatusBadRequest, sentence(strings.ReplaceAll(err.Error(), keystore.ErrInvalid.Error()+": ", ""))
	case errors.Is(err, keystore.ErrNotFound):
		return http.StatusNotFound, "Not found: " + strings.TrimSuffix(err.Error(), ": "+keystore.ErrNotFound.Error()) + "."
	case errors.Is(err, keystore.ErrExists):
		return http.StatusConflict, sentence(err.Error())
	case errors.Is(err, keystore.ErrConflict):
		return http.StatusConflict, sentence(strings.ReplaceAll(err.Error(), keystore.ErrConflict.Error()+": ", ""))
	case errors.Is(err, keystore.ErrLimit):
		return http.StatusForbidden, sentence("a limit is reached: " + strings.TrimSuffix(err.Error(), ": "+keystore.ErrLimit.Error()))
	case errors.Is(err, admin.ErrBusy):
		return http.StatusServiceUnavailable, sentence(admin.ErrBusy.Error())
	case errors.Is(err, keystore.ErrNotWritable):
		c.opts.Logger.Warn("console: the store cannot take writes", "path", r.URL.Path, "error", err)
		return http.StatusServiceUnavailable, "The store cannot take changes right now. Try again later; if it persists, tell your administrator."
	case errors.Is(err, keystore.ErrUnconfirmed):
		c.opts.Logger.Warn("console: a change was not confirmed by the store's replicas", "path", r.URL.Path, "error", err)
		return http.StatusServiceUnavailable, "The change was made, but the store's replicas did not confirm it in time, so it may be lost if the store fails now. Check it, and make it again if it is missing."
	case errors.Is(err, keystore.ErrUnavailable), errors.Is(err, policy.ErrNotReady):
		c.opts.Logger.Warn("console: unavailable", "path", r.URL.Path, "error", err)
		return http.StatusServiceUnavailable, "The service is unavailable for a moment. Try again shortly."
	}
	c.opts.Logger.Error("console: internal error", "path", r.URL.Path, "error", err)
	return http.StatusInternalServerError, "Something went wrong on our side. Try again; if it persists, tell your administrator."
}

// sentence capitalises a message and ends it with a full stop.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

func (c *Console) static(w http.ResponseWriter, r *http.Request) {
	f, ok := c.pages.static[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	// URLs carry the content hash, so a file under one URL never changes.
	if r.URL.Query().Get("v") == f.hash {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	w.Write(f.body)
}

// when shows an instant in UTC, to the minute; "—" for none.
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// ends describes a grant's end as of now.
func ends(g keystore.Grant, now time.Time) string {
	switch {
	case g.Expires.IsZero():
		return "no end"
	case g.Expired(now):
		return "ended " + when(g.Expires)
	}
	return "until " + when(g.Expires)
}

func keyState(k keystore.Key, now time.Time) string {
	switch {
	case k.Revoked:
		return "revoked"
	case k.Expired(now):
		return "expired"
	}
	return "active"
}
