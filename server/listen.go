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

// shutdownGrace bounds how long a listener started by Listen waits for requests in flight once
// it is told to stop, and the server's listeners when another actor failed.
const shutdownGrace = 10 * time.Second

// httpListener is a bound address and the HTTP server that serves it.
type httpListener struct {
	name   string
	ln     net.Listener
	srv    *http.Server
	logger *slog.Logger
}

// newListener binds addr now, so that a taken port fails at start. With tlsConfig it serves
// TLS.
func newListener(name, addr string, tlsConfig *tls.Config, h http.Handler, logger *slog.Logger) (*httpListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	srv := newHTTPServer(h, logger)
	srv.TLSConfig = tlsConfig
	return &httpListener{name: name, ln: ln, srv: srv, logger: logger}, nil
}

// serve serves until the listener is shut down (then it returns nil) or fails.
func (l *httpListener) serve() error {
	l.logger.Info("listening", "listener", l.name, "addr", l.ln.Addr().String(), "tls", l.srv.TLSConfig != nil)
	var err error
	if l.srv.TLSConfig != nil {
		err = l.srv.ServeTLS(l.ln, "", "")
	} else {
		err = l.srv.Serve(l.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("%s listener: %w", l.name, err)
}

// shutdown closes the listener, so new connections are refused, and waits for the requests in
// flight until ctx ends; then it closes the connections still open and says so.
func (l *httpListener) shutdown(ctx context.Context) error {
	err := l.srv.Shutdown(ctx)
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	l.srv.Close()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s listener: requests still in flight at the end of the grace period were cut off", l.name)
	}
	return fmt.Errorf("%s listener shutdown: %w", l.name, err)
}

// Listen binds l now (so that a taken port fails at start) and returns the actor that serves h
// on it, over TLS when l says so, until its context ends; then it stops taking connections and
// waits up to shutdownGrace for requests in flight.
func Listen(name string, l Listener, h http.Handler, logger *slog.Logger) (Actor, error) {
	tlsConfig, err := l.TLS.config()
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	hl, err := newListener(name, l.Addr, tlsConfig, h, logger)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- hl.serve() }()
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
		}
		shutdown, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		return hl.shutdown(shutdown)
	}, nil
}

// config loads the certificate once, for a listener that does not reload (Listen's).
func (t *TLS) config() (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
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
