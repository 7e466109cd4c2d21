package main

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"

	"github.com/regoauth/regoauth/internal/secretfile"
	"github.com/regoauth/regoauth/server"
	"github.com/regoauth/regoauth/tokens"
)

func signingCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "signing", Short: "Create token signing keys and publish their public halves"}

	var alg, keyOut, certOut, cn, caKeyPath, caCertPath string
	var days int
	generate := &cobra.Command{
		Use:   "generate --key FILE [--cert FILE [--ca-key FILE --ca-cert FILE]]",
		Short: "Generate a signing key (and a certificate for the registry's rootcertbundle)",
		Long: `Generates a signing key and, with --cert, its certificate: self-signed (the registries trust
the certificate itself), or with --ca-key and --ca-cert issued by that certificate authority.
Then --cert holds the chain, the new certificate first and the authority's after it; tokens carry
it in x5c, and registries that trust the authority (its certificate in their rootcertbundle)
accept them without knowing the key, so a key can be replaced without touching the registries.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyOut == "" {
				return usageError{errors.New("--key is required")}
			}
			if days < 1 {
				return usageError{errors.New("--days must be at least 1")}
			}
			if (caKeyPath == "") != (caCertPath == "") || (caKeyPath != "" && certOut == "") {
				return usageError{errors.New("--ca-key and --ca-cert go together, with --cert")}
			}
			var ca *tokens.Key
			if caKeyPath != "" {
				var err error
				if ca, err = tokens.LoadKeyFiles(caKeyPath, caCertPath, tokens.KIDThumbprint); err != nil {
					return fmt.Errorf("the certificate authority: %w", err)
				}
			}
			for _, p := range []string{keyOut, certOut} {
				if _, err := os.Stat(p); p != "" && err == nil {
					return fmt.Errorf("%s exists; refusing to overwrite a key or certificate", p)
				}
			}
			priv, err := tokens.GenerateKey(jose.SignatureAlgorithm(alg), rand.Reader)
			if err != nil {
				return usageError{err}
			}
			keyPEM, err := tokens.EncodePrivateKeyPEM(priv)
			if err != nil {
				return err
			}
			var chain []*x509.Certificate
			if certOut != "" {
				notBefore, validity := time.Now().Add(-time.Hour), time.Duration(days)*24*time.Hour
				var cert *x509.Certificate
				if ca == nil {
					cert, err = tokens.SelfSignedCertificate(priv, cn, notBefore, validity)
				} else {
					cert, err = tokens.IssueCertificate(priv.Public(), cn, notBefore, validity, ca.Chain[0], ca.Private)
				}
				if err != nil {
					return err
				}
				chain = []*x509.Certificate{cert}
				if ca != nil {
					chain = append(chain, ca.Chain...)
				}
			}
			// Created, never replaced: the checks above only make the message clearer.
			if err := secretfile.Create(keyOut, keyPEM, 0o600); err != nil {
				return err
			}
			if certOut != "" {
				if err := secretfile.Create(certOut, tokens.EncodeCertificatesPEM(chain...), 0o644); err != nil {
					return err
				}
			}
			k, err := tokens.NewKey(priv, chain, tokens.KIDThumbprint)
			if err != nil {
				return err
			}
			libtrustKID, _ := tokens.KeyID(priv.Public(), tokens.KIDLibtrust)
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%s)\nkid thumbprint: %s\nkid libtrust:   %s\n", keyOut, k.Algorithm, k.KID, libtrustKID)
			switch {
			case ca != nil:
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (issued by %s, valid until %s; the registries trust %s)\n",
					certOut, ca.Chain[0].Subject.CommonName, chain[0].NotAfter.UTC().Format(time.DateOnly), caCertPath)
			case certOut != "":
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (valid %d days; the registry's auth.token.rootcertbundle)\n", certOut, days)
			}
			return nil
		},
	}
	generate.Flags().StringVar(&alg, "alg", "ES256", "ES256, ES384 or RS256")
	generate.Flags().StringVar(&keyOut, "key", "", "where to write the private key (PEM, mode 0600)")
	generate.Flags().StringVar(&certOut, "cert", "", "where to write the certificate (PEM): self-signed, or issued by --ca-key")
	generate.Flags().StringVar(&cn, "cn", "regoauth", "the certificate's common name")
	generate.Flags().IntVar(&days, "days", 825, "certificate validity in days")
	generate.Flags().StringVar(&caKeyPath, "ca-key", "", "the private key of a certificate authority that issues the certificate")
	generate.Flags().StringVar(&caCertPath, "ca-cert", "", "that authority's certificate (PEM; with its own chain, if any)")

	var config configFlag
	jwks := &cobra.Command{
		Use:   "jwks --config FILE",
		Short: "Print the JWKS of the configured keys, for a registry's auth.token.jwks file",
		Long: `Prints the JSON Web Key Set of the active signing key and of every key in signing.publish,
each under the kid its tokens carry. The server also serves it at /.well-known/jwks.json.
A registry that trusts only a JWKS (no rootcertbundle) needs tokens without x5c: configure
no signing.cert_file for it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.load()
			if err != nil {
				return err
			}
			raw, err := server.JWKS(cfg.Signing)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(raw))
			return nil
		},
	}
	config.register(jwks)
	cmd.AddCommand(generate, jwks)
	return cmd
}
