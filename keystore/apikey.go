package keystore

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"io"
	"strings"
)

// API keys read "rak_<id>_<secret>". The id is public (safe to log, used to look the key up);
// the secret carries 256 bits of entropy, so a fast hash is enough at rest: nothing can be
// guessed from it, and verifying costs microseconds instead of bcrypt's hundreds of ms.
const (
	keyPrefix   = "rak_"
	idBytes     = 10 // 16 base32 characters
	secretBytes = 32 // 52 base32 characters
)

var keyEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

var (
	idLen     = keyEncoding.EncodedLen(idBytes)
	secretLen = keyEncoding.EncodedLen(secretBytes)
)

// NewAPIKey draws a new key from random. It returns the plaintext (to show once), the key id
// and the hash to store.
func NewAPIKey(random io.Reader) (plaintext, id string, hash []byte, err error) {
	buf := make([]byte, idBytes+secretBytes)
	if _, err := io.ReadFull(random, buf); err != nil {
		return "", "", nil, fmt.Errorf("reading random: %w", err)
	}
	id = keyEncoding.EncodeToString(buf[:idBytes])
	plaintext = keyPrefix + id + "_" + keyEncoding.EncodeToString(buf[idBytes:])
	return plaintext, id, HashAPIKey(plaintext), nil
}

// ParseAPIKey returns the id of a well-formed key. It does not say whether the key is valid.
func ParseAPIKey(s string) (id string, ok bool) {
	if len(s) != len(keyPrefix)+idLen+1+secretLen || !strings.HasPrefix(s, keyPrefix) || s[len(keyPrefix)+idLen] != '_' {
		return "", false
	}
	id = s[len(keyPrefix) : len(keyPrefix)+idLen]
	if !isKeyAlphabet(id) || !isKeyAlphabet(s[len(keyPrefix)+idLen+1:]) {
		return "", false
	}
	return id, true
}

// ValidKeyID reports whether s has the form of a key id.
func ValidKeyID(s string) bool { return len(s) == idLen && isKeyAlphabet(s) }

func isKeyAlphabet(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// HashAPIKey is the at-rest form of a plaintext key.
func HashAPIKey(plaintext string) []byte {
	sum := sha256.Sum256([]byte(plaintext))
	return sum[:]
}

// Matches compares plaintext with the stored hash in constant time.
func (k Key) Matches(plaintext string) bool {
	return len(k.Hash) == sha256.Size && subtle.ConstantTimeCompare(HashAPIKey(plaintext), k.Hash) == 1
}
