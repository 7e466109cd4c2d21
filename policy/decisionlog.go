package policy

import (
	"context"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/server"
)

// logDecision hands one decision to OPA's decision logger, when the configuration has
// decision_logs: it then goes to the console or a log service in OPA's event format, after
// the drop and mask policies (data.system.log.drop, data.system.log.mask) have run. The event's
// decision_id is the decision's ID, which the token endpoint also returns in a header.
//
// It runs after the evaluation's store transaction is closed: the mask and drop policies open
// their own, and a second read lock taken while a writer waits would deadlock.
func (e *Engine) logDecision(ctx context.Context, q query, id string, start time.Time, input ast.Value, ev evaluation, evalErr error) {
	if e.logs == nil {
		return
	}
	// The logger masks and encodes Go values; only this path pays for the conversion.
	in, err := ast.JSON(input)
	if err != nil {
		e.metrics.logFailures.Inc()
		return
	}
	info := &server.Info{
		DecisionID: id,
		Path:       e.paths[q],
		Timestamp:  start.UTC(),
		Input:      &in,
		InputAST:   input,
		Error:      evalErr,
	}
	if ev.rev != nil {
		info.Bundles = make(map[string]server.BundleInfo, len(ev.rev.bundles))
		for name, rev := range ev.rev.bundles {
			info.Bundles[name] = server.BundleInfo{Revision: rev}
		}
	}
	if evalErr == nil && ev.defined {
		res := ev.doc()
		info.Results = &res
	}
	if err := e.logs.Log(ctx, info); err != nil {
		e.metrics.logFailures.Inc()
		e.opts.Logger.Warn("decision log failed", "decision_id", id, "error", err)
	}
}
