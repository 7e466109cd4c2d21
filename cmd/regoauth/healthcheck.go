package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"
)

// defaultHealthcheckURL is the liveness endpoint of a server listening on the default address.
const defaultHealthcheckURL = "http://127.0.0.1:5001/healthz"

// healthcheckCommand probes the server's own health endpoint, so a container image with no
// shell and no curl can still declare a health check (Docker's HEALTHCHECK, compose).
func healthcheckCommand() *cobra.Command {
	var target string
	var timeout time.Duration
	var insecure bool
	cmd := &cobra.Command{
		Use:   "healthcheck [--url URL]",
		Short: "Exit 0 when the server's health endpoint answers 200, 1 otherwise",
		Long: `Sends one GET to the URL (default $REGOAUTH_HEALTHCHECK_URL, then ` + defaultHealthcheckURL + `)
and exits 0 on a 200 answer, 1 on anything else, with one line saying why. Point it at /readyz to
check that a policy is active and the store answers. --insecure skips certificate verification,
for a probe of the container's own TLS listener on the loopback address.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			target = firstNonEmpty(target, os.Getenv("REGOAUTH_HEALTHCHECK_URL"), defaultHealthcheckURL)
			u, err := url.Parse(target)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return usageError{fmt.Errorf("--url %q: want an http:// or https:// URL", target)}
			}
			if timeout <= 0 {
				return usageError{errors.New("--timeout must be positive")}
			}
			if err := probe(u.String(), timeout, insecure); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ok")
			return nil
		},
	}
	cmd.Flags().StringVar(&target, "url", "", "the endpoint to probe")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the answer")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "do not verify the server's certificate (https only)")
	return cmd
}

// probe GETs target and reports an error unless the answer is 200.
func probe(target string, timeout time.Duration, insecure bool) error {
	transport := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	if insecure {
		// A probe sends no credentials and reads nothing but a status code.
		transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	client := &http.Client{
		Timeout:   timeout,
		Transport: transport,
		// A health endpoint that redirects is not healthy.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(target)
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("unhealthy: %s answered %s", target, resp.Status)
	}
	return nil
}
