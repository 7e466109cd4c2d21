package policy

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// OPA's REST client logs, at debug, every request to a bundle, decision log or status service
// with its URL and headers, and every response with its headers and a dump of it; it masks only
// Authorization. Errors name the URL too. A service's custom headers (an API key), a token in a
// resource's query, credentials in a URL and a server's cookies are secrets: they are withheld
// from every line the engine logs and every error it records.

// withheld replaces a secret.
const withheld = "REDACTED"

// loggedHeaders are the headers whose values are logged as they are; every other header keeps
// its name and loses its value.
var loggedHeaders = map[string]bool{
	"Accept": true, "Accept-Encoding": true, "Age": true, "Cache-Control": true,
	"Content-Encoding": true, "Content-Length": true, "Content-Type": true, "Date": true,
	"Etag": true, "Expires": true, "Last-Modified": true, "Prefer": true, "Retry-After": true,
	"Server": true, "User-Agent": true, "Vary": true, "X-Content-Type-Options": true,
	"X-Request-Id": true,
}

func redactHeaders(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for name, values := range h {
		if loggedHeaders[http.CanonicalHeaderKey(name)] {
			out[name] = values
		} else {
			out[name] = []string{withheld}
		}
	}
	return out
}

// urlInText finds URLs in a message or an error.
var urlInText = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)

// redactURL withholds a URL's user information (a password, or a token given as the user
// name alone) and the values of its query.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return withheld
	}
	if u.User != nil {
		u.User = url.User(withheld)
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			u.RawQuery = withheld
		} else {
			for k := range q {
				q[k] = []string{withheld}
			}
			u.RawQuery = q.Encode()
		}
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

func redactText(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlInText.ReplaceAllStringFunc(s, redactURL)
}

// redactDump keeps a response dump's status line and body: its headers are logged, redacted,
// beside it.
func redactDump(s string) string {
	status, rest, _ := strings.Cut(s, "\r\n")
	_, body, found := strings.Cut(rest, "\r\n\r\n")
	if !found {
		return redactText(status)
	}
	return redactText(status + "\r\n\r\n" + body)
}

// redactField withholds the secrets of one field of an OPA log line. Objects and arrays (a
// status update's bundles, with their messages and errors) are redacted throughout.
func redactField(key string, v any) any {
	switch v := v.(type) {
	case http.Header:
		return redactHeaders(v)
	case string:
		if key == "response" {
			return redactDump(v)
		}
		return redactText(v)
	case error:
		return redactText(v.Error())
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = redactField(k, x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = redactField("", x)
		}
		return out
	case []string:
		out := make([]string, len(v))
		for i, x := range v {
			out[i] = redactText(x)
		}
		return out
	}
	return v
}
