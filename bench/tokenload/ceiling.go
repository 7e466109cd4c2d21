package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/regoauth/regoauth/tokens"
)

// ceiling is the signing reference of one block of runs, measured in this process with every
// core busy: raw ES256 signatures (P-256 over a SHA-256 digest, no JWT), and whole registry
// tokens as the server's signer makes them (claims, header with kid and x5c, ES256).
type ceiling struct {
	raw, jwt float64 // per second, all cores
	// rawCPU is the CPU time of one raw signature: the unit CPU per token is also given in.
	rawCPU time.Duration
}

func measureCeiling(ctx context.Context, d time.Duration, key *tokens.Key) (ceiling, error) {
	var c ceiling
	priv, ok := key.Private.(*ecdsa.PrivateKey)
	if !ok {
		return c, errors.New("the signing key is not ECDSA")
	}
	digest := sha256.Sum256([]byte("header.payload"))
	signer, err := tokens.NewSigner(key, tokens.SignerOptions{Issuer: "regoauth", TTL: 5 * time.Minute})
	if err != nil {
		return c, err
	}
	access := []tokens.Access{{Type: "repository", Name: "ns1/app2", Actions: []string{"pull", "push"}},
		{Type: "repository", Name: "ns3/app4", Actions: []string{"pull"}}}
	raw := func() error {
		_, err := ecdsa.SignASN1(rand.Reader, priv, digest[:])
		return err
	}
	jwt := func() error {
		_, err := signer.Sign("acct1", service, access)
		return err
	}
	// The two alternate in short slices, so that both see the same share of a shared machine.
	const slices = 10
	var rawN, jwtN int64
	var rawTime, jwtTime, rawCPU time.Duration
	for range slices {
		n, elapsed, cpu, err := saturate(ctx, d/slices, raw)
		if err != nil {
			return c, err
		}
		rawN, rawTime, rawCPU = rawN+n, rawTime+elapsed, rawCPU+cpu
		if n, elapsed, _, err = saturate(ctx, d/slices, jwt); err != nil {
			return c, err
		}
		jwtN, jwtTime = jwtN+n, jwtTime+elapsed
	}
	c.raw, c.rawCPU = float64(rawN)/rawTime.Seconds(), rawCPU/time.Duration(rawN)
	c.jwt = float64(jwtN) / jwtTime.Seconds()
	return c, nil
}

// saturate runs fn on every core for d; it returns how many calls completed, the time they
// took and the CPU time the process spent meanwhile.
func saturate(ctx context.Context, d time.Duration, fn func() error) (int64, time.Duration, time.Duration, error) {
	var (
		n       atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	start := time.Now()
	stop := start.Add(d)
	cpu0 := processCPU()
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for time.Now().Before(stop) && ctx.Err() == nil {
				if err := fn(); err != nil {
					errOnce.Do(func() { first = err })
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	if n.Load() == 0 && first == nil {
		first = errors.New("no signature completed")
	}
	return n.Load(), time.Since(start), processCPU() - cpu0, first
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
