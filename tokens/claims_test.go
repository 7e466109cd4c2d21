package tokens

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"math/big"
	"testing"
)

// TestClaimsJSONMatchesEncodingJSON holds the hand-written claims encoder to encoding/json's
// output, byte for byte, on claims that need every kind of escaping.
func TestClaimsJSONMatchesEncodingJSON(t *testing.T) {
	for _, c := range []Claims{
		{},
		{Issuer: "regoauth", Subject: "user1", Audience: "registry.example.com", Expiry: 1700000300, NotBefore: 1700000000,
			IssuedAt: 1700000000, ID: "00112233445566778899aabbccddeeff", Access: []Access{}},
		{Issuer: "a\"b\\c", Subject: "<script>&</script>", Audience: "tab\there\nnew\rline\b\f\x00\x1f\x7f",
			Expiry: -1, ID: "\u2028\u2029é漢字\xff\xfe invalid", Access: []Access{
				{Type: "repository", Name: "registry.example.com:5000/acme/app", Actions: []string{"pull", "push"}},
				{Type: "repository", Class: "plugin", Name: "x", Actions: nil},
				{Type: "registry", Name: "catalog", Actions: []string{}},
			}},
	} {
		assertSameJSON(t, c)
	}
}

func FuzzClaimsJSON(f *testing.F) {
	f.Add("regoauth", "user1", "acme/app", "pull", int64(1700000000))
	f.Add("\"\\<>&", "\x00\t\u2028", "\xff", "é", int64(-5))
	f.Fuzz(func(t *testing.T, iss, sub, name, action string, exp int64) {
		assertSameJSON(t, Claims{Issuer: iss, Subject: sub, Audience: name, Expiry: exp, NotBefore: -exp, ID: action,
			Access: []Access{{Type: name, Class: action, Name: name, Actions: []string{action, sub}}}})
	})
}

func assertSameJSON(t *testing.T, c Claims) {
	t.Helper()
	want, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.appendJSON(nil); !bytes.Equal(got, want) {
		t.Fatalf("claims JSON\n got %s\nwant %s", got, want)
	}
}

// TestRawECDSA converts many signatures, among them ones whose r or s is shorter than the
// field (about 1 in 128 each), and checks that the fixed-size form verifies.
func TestRawECDSA(t *testing.T) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		key, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		size := (curve.Params().BitSize + 7) / 8
		short := 0
		for i := 0; i < 2000 && (i < 100 || short < 2); i++ {
			digest := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
			der, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
			if err != nil {
				t.Fatal(err)
			}
			raw, err := rawECDSA(nil, der, size)
			if err != nil {
				t.Fatal(err)
			}
			if len(raw) != 2*size {
				t.Fatalf("raw signature of %d bytes, want %d", len(raw), 2*size)
			}
			if raw[0] == 0 || raw[size] == 0 {
				short++
			}
			r, s := new(big.Int).SetBytes(raw[:size]), new(big.Int).SetBytes(raw[size:])
			if !ecdsa.Verify(&key.PublicKey, digest[:], r, s) {
				t.Fatalf("signature %d does not verify in raw form", i)
			}
		}
		if short == 0 {
			t.Errorf("%s: no signature with a short r or s among those tried", curve.Params().Name)
		}
	}
	for _, bad := range [][]byte{nil, {0x30, 0x00}, {0x30, 0x03, 0x02, 0x01, 0x01}, {0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01}} {
		if _, err := rawECDSA(nil, bad, 32); err == nil {
			t.Errorf("rawECDSA(%x) did not fail", bad)
		}
	}
}
