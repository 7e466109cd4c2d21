package server

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/regoauth/regoauth/policies"
	"github.com/regoauth/regoauth/policy"
)

// source reads the files a policy source names.
func (p PolicySource) source() (policy.Source, error) {
	src := policy.Source{Dir: p.Dir, Bundle: p.Bundle, OPAConfig: p.OPA.Inline}
	if p.builtin() {
		src.Builtin = policies.FS
	}
	if p.OPA.File != "" {
		raw, err := os.ReadFile(p.OPA.File)
		if err != nil {
			return src, err
		}
		src.OPAConfig = raw
	}
	if s := p.Signing; s != nil {
		key, err := os.ReadFile(s.KeyFile)
		if err != nil {
			return src, err
		}
		src.Signing = &policy.Signing{Key: string(key), Algorithm: s.Algorithm, Scope: s.Scope}
	}
	return src, nil
}

// startPolicy starts the policy engine (and the dry-run candidate, when configured): local
// bundles must load now; bundles from servers arrive in the background, and /readyz says
// not-ready until they have.
func (s *Server) startPolicy(ctx context.Context) error {
	p := s.cfg.Policy
	src, err := p.source()
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	s.engine = policy.New(policy.Options{
		DecisionQuery: p.DecisionQuery, AdminQuery: p.AdminQuery, Source: src,
		Logger: s.logger.With("component", "policy"), Registerer: s.registry,
		DecisionCacheBytes: p.decisionCache(), EvaluateAll: p.evaluateAll(),
	})
	if err := s.engine.Start(ctx); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	if p.DryRun == nil {
		return nil
	}
	csrc, err := p.DryRun.source()
	if err != nil {
		return fmt.Errorf("policy.dry_run: %w", err)
	}
	s.candidate = policy.New(policy.Options{
		DecisionQuery: p.DecisionQuery, AdminQuery: p.AdminQuery, Source: csrc,
		Logger: s.logger.With("component", "policy_dry_run"),
	})
	if err := s.candidate.Start(ctx); err != nil {
		return fmt.Errorf("policy.dry_run: %w", err)
	}
	s.engine.DryRun(s.candidate)
	return nil
}

// stopPolicy stops the engines with a deadline for uploading buffered decision logs.
func (s *Server) stopPolicy() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.engine != nil {
		s.engine.Stop(ctx)
	}
	if s.candidate != nil {
		s.candidate.Stop(ctx)
	}
}
