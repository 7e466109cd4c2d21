// Package secretfile writes the files that hold keys and secrets: signing keys and their
// certificates, refresh token secrets, API keys, exports of the key store. Every write goes
// through a temporary file in the target's directory, readable only by its owner while it is
// written, synced, and renamed into place (or linked, when an existing file must not be
// replaced), so that a crash, a full disk or a second writer never leaves half a key where a
// good one was, nor a secret readable by others for a moment. It knows how keys are generated
// only through package tokens, and nothing of servers or stores.
package secretfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/regoauth/regoauth/tokens"
)

// Write replaces path with data, with permissions perm.
func Write(path string, data []byte, perm fs.FileMode) error {
	return WriteFrom(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFrom replaces path with what write writes, with permissions perm. Nothing changes at
// path unless write succeeds.
func WriteFrom(path string, perm fs.FileMode, write func(io.Writer) error) error {
	return place(path, perm, write, os.Rename)
}

// Create writes data to path, which must not exist: an existing file is never replaced, and
// the error then matches fs.ErrExist.
func Create(path string, data []byte, perm fs.FileMode) error {
	return place(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}, func(tmp, path string) error {
		// A hard link fails if path exists, where a rename would replace it.
		if err := os.Link(tmp, path); err != nil {
			var le *os.LinkError
			if errors.As(err, &le) && errors.Is(le.Err, fs.ErrExist) {
				return fmt.Errorf("%s: %w", path, fs.ErrExist)
			}
			return err
		}
		return nil
	})
}

// place writes through a temporary file beside path, then puts it at path with commit.
func place(path string, perm fs.FileMode, write func(io.Writer) error, commit func(tmp, path string) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a rename, or a link, there is nothing left to remove but the name
	err = tmp.Chmod(perm)
	if err == nil {
		err = write(tmp)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = commit(tmp.Name(), path)
	}
	if err != nil {
		return err
	}
	// The new name is durable once its directory is synced; not every system can, and the
	// file itself is complete either way.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// EnsureSecret writes 32 random bytes, hex-encoded, to path unless it exists: a refresh token
// secret that stays the same across restarts.
func EnsureSecret(path string, random io.Reader) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	b := make([]byte, 32)
	if _, err := io.ReadFull(random, b); err != nil {
		return err
	}
	err := Create(path, []byte(hex.EncodeToString(b)+"\n"), 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil // another process made it first
	}
	return err
}

// EnsureSigningKey creates a signing key of alg and a self-signed certificate at the given
// paths unless the key file exists already, then loads them. It is how `regoauth dev` keeps one
// signing key across restarts. The key is written last: a key file always has its certificate.
func EnsureSigningKey(keyPath, certPath string, alg jose.SignatureAlgorithm, commonName string, now time.Time) (*tokens.Key, error) {
	if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) {
		priv, err := tokens.GenerateKey(alg, rand.Reader)
		if err != nil {
			return nil, err
		}
		cert, err := tokens.SelfSignedCertificate(priv, commonName, now.Add(-time.Hour), 10*365*24*time.Hour)
		if err != nil {
			return nil, err
		}
		keyPEM, err := tokens.EncodePrivateKeyPEM(priv)
		if err != nil {
			return nil, err
		}
		if err := Write(certPath, tokens.EncodeCertificatesPEM(cert), 0o644); err != nil {
			return nil, err
		}
		if err := Create(keyPath, keyPEM, 0o600); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	}
	return tokens.LoadKeyFiles(keyPath, certPath, tokens.KIDThumbprint)
}
