package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/policies"
	"github.com/regoauth/regoauth/policy"
)

func policyCommand(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Explain decisions and try policy changes"}
	f.register(cmd)
	cmd.AddCommand(explainCommand(f))
	return cmd
}

// explainOptions are the flags of `policy explain`.
type explainOptions struct {
	req       admin.ExplainRequest
	policy    string
	builtin   bool
	inputFile string
	verbose   bool
}

func explainCommand(f *clientFlags) *cobra.Command {
	var o explainOptions
	cmd := &cobra.Command{
		Use:   "explain --account A --scope repository:NAME:ACTIONS",
		Short: "Show why a token request gets what it gets",
		Long: `Shows the policy input a token request of an account would have (its grants, groups,
roles, reservations and, with --key, the key's restrictions), the decision of the server's active
policy, which rules fired, and why each denied action was denied. The server builds the input
from its store exactly as the token endpoint does; admins may explain any account, every account
itself.

With --policy, the same input is also decided by a policy on this machine (a bundle directory or
tarball, beside the built-in library unless --builtin=false): a change is tried before it ships.
With --input, the input comes from a file instead of the server (a policy input, or a decision
log event, whose "input" is used) and only the local policy decides.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runExplain(cmd.Context(), cmd.OutOrStdout(), f, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.req.Account, "account", "", "account whose token request to explain")
	fl.StringVar(&o.req.KeyID, "key", "", "explain a request made with this API key id (its restrictions apply)")
	fl.StringArrayVar(&o.req.Scopes, "scope", nil, "requested scope, as in a token request, e.g. repository:app:push,pull (repeatable)")
	fl.StringVar(&o.req.ClientIP, "ip", "", "client address of the request (for keys limited to networks)")
	fl.StringVar(&o.req.Service, "service", "", "registry service of the request")
	fl.StringVar(&o.policy, "policy", "", "also decide with this policy bundle (directory or tarball) on this machine")
	fl.BoolVar(&o.builtin, "builtin", true, "load the built-in library beside --policy")
	fl.StringVar(&o.inputFile, "input", "", "read the policy input from this file instead of the server")
	fl.BoolVarP(&o.verbose, "verbose", "v", false, "list every rule that fired")
	return cmd
}

func runExplain(ctx context.Context, w io.Writer, f *clientFlags, o explainOptions) error {
	var active *policy.Explanation
	var input *policy.Input
	if o.inputFile != "" {
		if o.req.Account != "" || len(o.req.Scopes) > 0 {
			return usageError{errors.New("--input replaces --account and --scope: give one or the other")}
		}
		in, err := readInput(o.inputFile)
		if err != nil {
			return err
		}
		input = in
	} else {
		if o.req.Account == "" {
			return usageError{errors.New("--account is required (or --input FILE)")}
		}
		c, err := f.client()
		if err != nil {
			return err
		}
		x, err := c.Explain(ctx, o.req)
		if err != nil {
			return err
		}
		active, input = &x, x.Input
	}
	var candidate *policy.Explanation
	if o.policy != "" || o.inputFile != "" {
		x, err := explainLocally(ctx, o, input)
		if err != nil {
			return err
		}
		candidate = &x
	}
	if f.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		switch {
		case active != nil && candidate != nil:
			return enc.Encode(map[string]any{"active": active, "candidate": candidate})
		case active != nil:
			return enc.Encode(active)
		}
		return enc.Encode(candidate)
	}
	return printExplanation(w, active, candidate, o.verbose)
}

// readInput reads a policy input, or the input of a decision log event.
func readInput(path string) (*policy.Input, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var event struct {
		Input *policy.Input `json:"input"`
	}
	if json.Unmarshal(raw, &event) == nil && event.Input != nil {
		return event.Input, nil
	}
	var in policy.Input
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, fmt.Errorf("%s: not a policy input: %w", path, err)
	}
	return &in, nil
}

// explainLocally decides input with the policy of the flags, on this machine.
func explainLocally(ctx context.Context, o explainOptions, input *policy.Input) (policy.Explanation, error) {
	src := policy.Source{}
	if o.builtin {
		src.Builtin = policies.FS
	}
	if o.policy != "" {
		st, err := os.Stat(o.policy)
		if err != nil {
			return policy.Explanation{}, err
		}
		if st.IsDir() {
			src.Dir = o.policy
		} else {
			src.Bundle = o.policy
		}
	}
	e := policy.New(policy.Options{Source: src, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	defer e.Stop(ctx)
	if err := e.Start(ctx); err != nil {
		return policy.Explanation{}, err
	}
	if !e.Ready() {
		return policy.Explanation{}, errors.New("the local policy is not complete (builtin=false and no bundle?)")
	}
	return e.Explain(ctx, input)
}

func printExplanation(w io.Writer, active, candidate *policy.Explanation, verbose bool) error {
	main := active
	if main == nil {
		main = candidate
	}
	in := main.Input
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if active != nil {
		fmt.Fprintf(tw, "active policy\t%s\n", active.Revision)
	}
	if candidate != nil {
		fmt.Fprintf(tw, "local policy\t%s\n", candidate.Revision)
	}
	p := in.Principal
	who := "anonymous"
	if !p.Anonymous {
		who = fmt.Sprintf("%s  groups=%s  roles=%s", p.Account, dash(strings.Join(p.Groups, ",")), dash(strings.Join(p.Roles, ",")))
		if main.AccountWithheld {
			who = p.Account + "  (its groups, roles and keys are not yours to see)"
		}
		if p.Key != nil {
			who += "  key=" + p.Key.ID
			if r := p.Key.Restrictions; r != nil {
				who += fmt.Sprintf(" (actions=%s repositories=%s cidrs=%s)", dash(strings.Join(r.Actions, ",")), dash(strings.Join(r.Repositories, ",")), dash(strings.Join(r.CIDRs, ",")))
			}
		}
	}
	fmt.Fprintf(tw, "principal\t%s\n", who)
	var grants []string
	for _, g := range in.Grants {
		grants = append(grants, fmt.Sprintf("%s %s %s", g.Subject, g.Repository, strings.Join(g.Actions, ",")))
	}
	fmt.Fprintf(tw, "grants\t%s\n", dash(strings.Join(grants, "; ")))
	fmt.Fprintf(tw, "owned\t%s\n\n", dash(strings.Join(in.Owned, ", ")))
	header := "SCOPE\tACTION\tRESULT\tWHY"
	if active != nil && candidate != nil {
		header += "\tLOCAL POLICY\tWHY"
	}
	fmt.Fprintln(tw, header)
	for i, v := range main.Actions {
		line := fmt.Sprintf("%s:%s\t%s\t%s\t%s", v.Type, v.Name, v.Action, result(v), why(v))
		if active != nil && candidate != nil && i < len(candidate.Actions) {
			c := candidate.Actions[i]
			mark := ""
			if c.Allowed != v.Allowed {
				mark = " (changes)"
			}
			line += fmt.Sprintf("\t%s%s\t%s", result(c), mark, why(c))
		}
		fmt.Fprintln(tw, line)
	}
	if len(main.Actions) == 0 {
		fmt.Fprintln(tw, "(no scopes: a login probe, which gets an empty token)")
	}
	if verbose {
		fmt.Fprintln(tw, "\nRULES FIRED\tLOCATION\tTITLE\tARGUMENTS")
		for _, r := range main.Rules {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Rule, r.Location, dash(r.Title), dash(strings.Join(r.Args, " ")))
		}
	}
	return tw.Flush()
}

func result(v policy.ActionVerdict) string {
	if v.Allowed {
		return "allowed"
	}
	return "DENIED"
}

// why names the rules that permitted an allowed action, and the reason of a denied one.
func why(v policy.ActionVerdict) string {
	var titles []string
	for _, r := range v.Rules {
		if r.Location == "" { // the stand-in for rules about an account the asker may not read
			titles = append(titles, r.Title)
			continue
		}
		titles = append(titles, fmt.Sprintf("%s (%s)", r.Title, r.Location))
	}
	if v.Allowed {
		return "by " + dash(strings.Join(titles, ", "))
	}
	reason := v.Reason
	if reason == "" {
		reason = "not in the decision"
	}
	if len(titles) > 0 {
		reason += "; fired: " + strings.Join(titles, ", ")
	}
	return reason
}
