package server

import (
	"fmt"
	"slices"
	"time"

	"github.com/regoauth/regoauth/tokens"
)

// keyring is the signing material a configuration names: the signer, the JWKS it publishes and
// the refresh token codec. It is loaded as one, so that reloading keys (rotation, a renewed
// certificate, new refresh secrets) can swap it as one.
type keyring struct {
	signer  *tokens.Signer
	jwks    []byte
	refresh *tokens.RefreshCodec // nil when refresh tokens are off
	// published are the kids of the JWKS, the signing key's first: what a reload logs.
	published []string
}

func loadKeyring(cfg Config) (*keyring, error) {
	key, err := tokens.LoadKeyFiles(cfg.Signing.KeyFile, cfg.Signing.CertFile, tokens.KIDMode(cfg.Signing.KID))
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	k := &keyring{}
	if k.signer, err = tokens.NewSigner(key, tokens.SignerOptions{Issuer: cfg.Issuer, TTL: time.Duration(cfg.TokenTTL)}); err != nil {
		return nil, err
	}
	if k.jwks, k.published, err = publishedKeys(key, cfg.Signing); err != nil {
		return nil, err
	}
	if k.refresh, err = refreshCodec(cfg.RefreshTokens); err != nil {
		return nil, err
	}
	return k, nil
}

// JWKS is the key set a configuration publishes: its active signing key and every key listed
// in signing.publish, each under the kid its tokens carry.
func JWKS(cfg Signing) ([]byte, error) {
	key, err := tokens.LoadKeyFiles(cfg.KeyFile, cfg.CertFile, tokens.KIDMode(cfg.KID))
	if err != nil {
		return nil, err
	}
	jwks, _, err := publishedKeys(key, cfg)
	return jwks, err
}

// publishedKeys is the JWKS of the active key and every key listed in signing.publish, and
// their kids.
func publishedKeys(active *tokens.Key, cfg Signing) ([]byte, []string, error) {
	keys := []tokens.PublicKey{active.PublicKey()}
	kids := []string{active.KID}
	for _, f := range cfg.Publish {
		k, err := tokens.LoadPublicKeyFile(f, tokens.KIDMode(cfg.KID))
		if err != nil {
			return nil, nil, fmt.Errorf("signing.publish: %w", err)
		}
		if !slices.Contains(kids, k.KID) {
			keys, kids = append(keys, k), append(kids, k.KID)
		}
	}
	jwks, err := tokens.JWKS(keys...)
	return jwks, kids, err
}

func refreshCodec(cfg RefreshTokens) (*tokens.RefreshCodec, error) {
	if len(cfg.Secrets) == 0 {
		return nil, nil
	}
	secrets := make([][]byte, len(cfg.Secrets))
	for i, s := range cfg.Secrets {
		v, err := s.Resolve()
		if err != nil {
			return nil, fmt.Errorf("refresh_tokens.secrets[%d]: %w", i, err)
		}
		secrets[i] = []byte(v)
	}
	c, err := tokens.NewRefreshCodec(secrets, time.Duration(cfg.TTL), nil)
	if err != nil {
		return nil, fmt.Errorf("refresh_tokens: %w", err)
	}
	return c, nil
}
