package authz

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// TestResponseJSONIsEncodingJSONs: the token response written by hand is the body
// encoding/json made of the struct: byte for byte for the values a token request produces
// (base64url tokens, RFC 3339 times, scope strings), and the same document for any strings.
func TestResponseJSONIsEncodingJSONs(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	str := func(alphabet string, n int) string {
		var b strings.Builder
		for range n {
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	const token = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
	const scope = "abcdefghijklmnopqrstuvwxyz0123456789._-/: ,*"
	const anything = "a\"\\/\n\t\x00\x1f<>&\u2028\u2029é\xff\xfe😀 z"
	for i := range 2000 {
		alphabet := token
		if i%2 == 1 {
			alphabet = anything
		}
		resp := response{Token: str(alphabet, r.IntN(40)), ExpiresIn: r.IntN(1 << 20), IssuedAt: str(alphabet, r.IntN(30))}
		resp.AccessToken = resp.Token
		if r.IntN(2) == 0 {
			resp.RefreshToken = str(alphabet, 1+r.IntN(40))
		}
		if r.IntN(2) == 0 {
			s := ""
			if i%2 == 0 {
				s = str(scope, r.IntN(30))
			} else {
				s = str(anything, r.IntN(30))
			}
			resp.Scope = &s
		}
		got := resp.appendJSON(nil)
		want, err := json.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 && !bytes.Equal(got, want) {
			t.Fatalf("written %s\nencoding/json %s", got, want)
		}
		var a, b map[string]any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		if err := json.Unmarshal(want, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("written %v\nencoding/json %v", a, b)
		}
	}
}
