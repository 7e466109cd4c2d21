package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Actor is one part of a running server — a listener, the key-use recorder, the embedded
// registry of dev mode — run until its context ends. When one fails, the others are stopped.
type Actor func(ctx context.Context) error

// shutdownGrace bounds how long a listener waits for requests in flight once it is told to stop.
const shutdownGrace = 10 * time.Second

// Listen binds l now (so that a taken port fails at start) and returns the actor that serves h
// on it, over TLS when l says so, until its context ends; then it stops taking connections and
// waits up to shutdownGrace for requests in flight.
func Listen(name string, l Listener, h http.Handler, logger *slog.Logger) (Actor, error) {
	tlsConfig, err := l.TLS.config()
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	ln, err := net.Listen("tcp", l.Addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	srv := newHTTPServer(h, logger)
	srv.TLSConfig = tlsConfig
	return func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() {
			if tlsConfig != nil {
				errc <- srv.ServeTLS(ln, "", "")
			} else {
				errc <- srv.Serve(ln)
			}
		}()
		logger.Info("listening", "listener", name, "addr", ln.Addr().String(), "tls", tlsConfig != nil)
		select {
		case err := <-errc:
			return fmt.Errorf("%s listener: %w", name, err)
		case <-ctx.Done():
		}
		shutdown, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("%s listener shutdown: %w", name, err)
		}
		return nil
	}, nil
}

// config loads the certificate once. It is handed out through GetCertificate, the hook a
// certificate reload would swap.
func (t *TLS) config() (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil },
	}, nil
}

// newHTTPServer applies the timeouts and header limits every listener shares.
func newHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}
