package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

// Client calls the admin API with an API key.
type Client struct {
	base *url.URL
	key  string
	http *http.Client
}

// NewClient returns a client for the token server at server (e.g. http://localhost:5001).
func NewClient(server, apiKey string, httpClient *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server %q: want an http:// or https:// URL", server)
	}
	if apiKey == "" {
		return nil, errors.New("an API key is required (--key-file or REGOAUTH_KEY)")
	}
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: u, key: apiKey, http: httpClient}, nil
}

// APIError is an error response from the server.
type APIError struct {
	Status  int
	Code    string
	Message string
	Reasons []string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
	if e.Code == "forbidden" && len(e.Reasons) > 0 {
		msg = fmt.Sprintf("forbidden: %s (HTTP %d)", strings.Join(e.Reasons, "; "), e.Status)
	}
	return msg
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	u := *c.base
	u.Path += Prefix + path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var eb errorBody
		if json.Unmarshal(raw, &eb) != nil || eb.Error == "" {
			return &APIError{Status: resp.StatusCode, Message: c.notTheAPI(resp, raw)}
		}
		return &APIError{Status: resp.StatusCode, Code: eb.Code, Message: eb.Error, Reasons: eb.Reasons}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s (%w)", c.notTheAPI(resp, raw), err)
	}
	return nil
}

// notTheAPI describes an answer that is not the admin API's: a proxy's error page, another
// service at the URL, a body cut short.
func (c *Client) notTheAPI(resp *http.Response, raw []byte) string {
	what := resp.Header.Get("Content-Type")
	if what == "" {
		what = "no content type"
	}
	text := strings.Join(strings.Fields(string(truncate(raw, 200))), " ")
	if text == "" {
		text = "an empty body"
	}
	return fmt.Sprintf("%s answered HTTP %d with %s, not the admin API's JSON (is it a regoauth server, and is it up?): %s",
		c.base.Redacted(), resp.StatusCode, what, text)
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// Whoami returns the caller's account and key.
func (c *Client) Whoami(ctx context.Context) (w Whoami, err error) {
	return w, c.do(ctx, "GET", "/whoami", nil, nil, &w)
}

// CreateAccount creates an account.
func (c *Client) CreateAccount(ctx context.Context, req AccountRequest) (a keystore.Account, err error) {
	return a, c.do(ctx, "POST", "/accounts", nil, req, &a)
}

// ListAccounts lists accounts.
func (c *Client) ListAccounts(ctx context.Context) (list []keystore.Account, err error) {
	return list, c.do(ctx, "GET", "/accounts", nil, nil, &list)
}

// GetAccount reads one account.
func (c *Client) GetAccount(ctx context.Context, name string) (a keystore.Account, err error) {
	return a, c.do(ctx, "GET", "/accounts/"+url.PathEscape(name), nil, nil, &a)
}

// UpdateAccount changes an account.
func (c *Client) UpdateAccount(ctx context.Context, name string, req AccountUpdate) (a keystore.Account, err error) {
	return a, c.do(ctx, "PATCH", "/accounts/"+url.PathEscape(name), nil, req, &a)
}

// CreateKey creates an API key; the result holds its secret, shown this once.
func (c *Client) CreateKey(ctx context.Context, req KeyRequest) (k KeyCreated, err error) {
	return k, c.do(ctx, "POST", "/keys", nil, req, &k)
}

// ListKeys lists keys, of one account when account is not empty.
func (c *Client) ListKeys(ctx context.Context, account string) (list []keystore.Key, err error) {
	return list, c.do(ctx, "GET", "/keys", optional("account", account), nil, &list)
}

// RevokeKey revokes a key by id.
func (c *Client) RevokeKey(ctx context.Context, id string) (k keystore.Key, err error) {
	return k, c.do(ctx, "DELETE", "/keys/"+url.PathEscape(id), nil, nil, &k)
}

// AddGrant adds actions to a grant row and returns the row.
func (c *Client) AddGrant(ctx context.Context, req GrantRequest) (g keystore.Grant, err error) {
	return g, c.do(ctx, "POST", "/grants", nil, req, &g)
}

// RemoveGrant removes actions from a grant row, or the row.
func (c *Client) RemoveGrant(ctx context.Context, req GrantRequest) error {
	return c.do(ctx, "DELETE", "/grants", nil, req, nil)
}

// ListGrants lists grants, filtered by the non-empty fields of req.
func (c *Client) ListGrants(ctx context.Context, req GrantRequest) (list []keystore.Grant, err error) {
	q := url.Values{}
	for k, v := range map[string]string{"account": req.Account, "group": req.Group, "repository": req.Repository} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return list, c.do(ctx, "GET", "/grants", q, nil, &list)
}

// ReserveRepository records ownership of a repository name.
func (c *Client) ReserveRepository(ctx context.Context, req RepositoryRequest) (o keystore.Ownership, err error) {
	return o, c.do(ctx, "POST", "/repositories", nil, req, &o)
}

// ListRepositories lists owned repositories, of one owner when owner is not empty.
func (c *Client) ListRepositories(ctx context.Context, owner string) (list []keystore.Ownership, err error) {
	return list, c.do(ctx, "GET", "/repositories", optional("owner", owner), nil, &list)
}

// ReleaseRepository removes ownership of a repository name. A name with an empty, "." or ".."
// segment is refused before it is sent: in a URL path, a proxy or a router that cleans paths
// would release another name (DELETE .../shop/x/../premium is .../shop/premium to them).
func (c *Client) ReleaseRepository(ctx context.Context, name string) error {
	if name == "" || !keystore.CleanPath(name) {
		return fmt.Errorf("%w: repository name %q: an empty, \".\" or \"..\" segment would name another path", keystore.ErrInvalid, name)
	}
	return c.do(ctx, "DELETE", "/repositories/"+name, nil, nil, nil)
}

func optional(key, value string) url.Values {
	if value == "" {
		return nil
	}
	return url.Values{key: {value}}
}
