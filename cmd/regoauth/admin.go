package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/keystore"
)

// clientFlags are shared by every command that calls the admin API.
type clientFlags struct {
	server  string
	keyFile string
	output  string
	// stderr is where warnings go: the standard error of the command being run.
	stderr io.Writer
}

func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.server, "server", "", "token server URL (default $REGOAUTH_SERVER or http://localhost:5001)")
	cmd.PersistentFlags().StringVar(&f.keyFile, "key-file", "", "file holding the API key (default $REGOAUTH_KEY, then $REGOAUTH_KEY_FILE)")
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	cmd.PersistentPreRun = func(c *cobra.Command, _ []string) { f.stderr = c.ErrOrStderr() }
}

// client builds an admin client from flags and environment.
func (f *clientFlags) client() (*admin.Client, error) {
	if f.output != "table" && f.output != "json" {
		return nil, usageError{fmt.Errorf("--output %q: use table or json", f.output)}
	}
	server := firstNonEmpty(f.server, os.Getenv("REGOAUTH_SERVER"), "http://localhost:5001")
	key := os.Getenv("REGOAUTH_KEY")
	keyFile := firstNonEmpty(f.keyFile, os.Getenv("REGOAUTH_KEY_FILE"))
	if f.keyFile != "" || (key == "" && keyFile != "") {
		raw, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("reading the API key: %w", err)
		}
		key = strings.TrimSpace(string(raw))
		if key == "" {
			return nil, usageError{fmt.Errorf("the API key file %s is empty", keyFile)}
		}
		if strings.ContainsFunc(key, unicode.IsSpace) {
			return nil, usageError{fmt.Errorf("the API key file %s holds more than one word: it holds the key alone", keyFile)}
		}
		f.warnIfExposed(keyFile)
	}
	if key == "" {
		return nil, usageError{errors.New("no API key: use --key-file FILE or set REGOAUTH_KEY")}
	}
	c, err := admin.NewClient(server, key, nil)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// warnIfExposed warns when other users of the host can read or change the key file, as ssh does
// of a private key; the command goes on, since refusing would break a setup that works.
func (f *clientFlags) warnIfExposed(path string) {
	st, err := os.Stat(path)
	if err != nil || runtime.GOOS == "windows" || f.stderr == nil {
		return
	}
	if perm := st.Mode().Perm(); perm&0o066 != 0 {
		fmt.Fprintf(f.stderr, "regoauth: warning: the API key file %s can be read or changed by other users (mode %04o); chmod 600 %s\n", path, perm, path)
	}
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// print writes v as JSON, or as a table through rows when the output is a table.
func (f *clientFlags) print(w io.Writer, v any, header string, rows func(tw io.Writer)) error {
	if f.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	rows(tw)
	return tw.Flush()
}

func accountsCommand(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "accounts", Short: "Manage accounts"}
	f.register(cmd)
	var groups, roles []string
	create := &cobra.Command{
		Use: "create NAME", Short: "Create an account", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			a, err := c.CreateAccount(cmd.Context(), admin.AccountRequest{Name: args[0], Groups: groups, Roles: roles})
			if err != nil {
				return err
			}
			return f.printAccounts(cmd.OutOrStdout(), a)
		},
	}
	create.Flags().StringArrayVar(&groups, "group", nil, "group the account belongs to (repeatable)")
	create.Flags().StringArrayVar(&roles, "role", nil, "role of the account, e.g. admin (repeatable)")
	list := &cobra.Command{
		Use: "list", Short: "List accounts", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			list, err := c.ListAccounts(cmd.Context())
			if err != nil {
				return err
			}
			return f.printAccounts(cmd.OutOrStdout(), list...)
		},
	}
	get := &cobra.Command{
		Use: "get NAME", Short: "Show an account", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			a, err := c.GetAccount(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return f.printAccounts(cmd.OutOrStdout(), a)
		},
	}
	setDisabled := func(use, short string, disabled bool) *cobra.Command {
		return &cobra.Command{
			Use: use + " NAME", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := f.client()
				if err != nil {
					return err
				}
				a, err := c.UpdateAccount(cmd.Context(), args[0], admin.AccountUpdate{Disabled: &disabled})
				if err != nil {
					return err
				}
				return f.printAccounts(cmd.OutOrStdout(), a)
			},
		}
	}
	cmd.AddCommand(create, list, get,
		setDisabled("disable", "Disable an account: none of its keys authenticates until it is enabled", true),
		setDisabled("enable", "Enable a disabled account", false))
	return cmd
}

func (f *clientFlags) printAccounts(w io.Writer, list ...keystore.Account) error {
	var v any = list
	if len(list) == 1 {
		v = list[0]
	}
	return f.print(w, v, "NAME\tGROUPS\tROLES\tDISABLED\tCREATED", func(tw io.Writer) {
		for _, a := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", a.Name, dash(strings.Join(a.Groups, ",")), dash(strings.Join(a.Roles, ",")), a.Disabled, stamp(a.Created))
		}
	})
}

func keysCommand(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage API keys"}
	f.register(cmd)
	var account, name, expires string
	var readOnly bool
	var repos, cidrs []string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an API key; only the key is printed, and it is shown this once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			req := admin.KeyRequest{Account: account, Name: name, ExpiresIn: expires,
				Restrictions: keystore.Restrictions{Repositories: repos, CIDRs: cidrs}}
			if readOnly {
				req.Restrictions.Actions = []string{"pull"}
			}
			k, err := c.CreateKey(cmd.Context(), req)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.print(cmd.OutOrStdout(), k, "", nil)
			}
			fmt.Fprintln(cmd.OutOrStdout(), k.Secret)
			return nil
		},
	}
	create.Flags().StringVar(&account, "account", "", "account the key belongs to (default: the caller's)")
	create.Flags().StringVar(&name, "name", "", "a label for the key, e.g. ci")
	create.Flags().StringVar(&expires, "expires", "", "lifetime, e.g. 720h or 90d (default: no expiry)")
	create.Flags().BoolVar(&readOnly, "read-only", false, "the key may only ever pull")
	create.Flags().StringArrayVar(&repos, "repo", nil, "limit the key to repositories matching this pattern (repeatable)")
	create.Flags().StringArrayVar(&cidrs, "cidr", nil, "limit the key to clients in this network (repeatable)")

	var listAccount string
	list := &cobra.Command{
		Use: "list", Short: "List API keys (never their secrets)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			keys, err := c.ListKeys(cmd.Context(), listAccount)
			if err != nil {
				return err
			}
			return f.print(cmd.OutOrStdout(), keys, "ID\tACCOUNT\tNAME\tCREATED\tEXPIRES\tLAST USED\tREVOKED\tRESTRICTIONS", func(tw io.Writer) {
				for _, k := range keys {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%v\t%s\n", k.ID, k.Account, dash(k.Name), stamp(k.Created),
						stamp(k.Expires), stamp(k.LastUsed), k.Revoked, restrictions(k.Restrictions))
				}
			})
		},
	}
	list.Flags().StringVar(&listAccount, "account", "", "only this account's keys")
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke an API key at once", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			k, err := c.RevokeKey(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.print(cmd.OutOrStdout(), k, "", nil)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked key %s of %s\n", k.ID, k.Account)
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func restrictions(r keystore.Restrictions) string {
	var parts []string
	if len(r.Actions) > 0 {
		parts = append(parts, "actions="+strings.Join(r.Actions, ","))
	}
	if len(r.Repositories) > 0 {
		parts = append(parts, "repos="+strings.Join(r.Repositories, ","))
	}
	if len(r.CIDRs) > 0 {
		parts = append(parts, "cidrs="+strings.Join(r.CIDRs, ","))
	}
	return dash(strings.Join(parts, " "))
}

// grantFlags are the subject and repository flags of the grants commands.
type grantFlags struct {
	account, group, repo, actions string
	// expires and until end a grant being added.
	expires, until string
}

func (g *grantFlags) register(cmd *cobra.Command, actionsUsage string) {
	cmd.Flags().StringVar(&g.account, "account", "", "the account the grant applies to")
	cmd.Flags().StringVar(&g.group, "group", "", "the group the grant applies to")
	cmd.Flags().StringVar(&g.repo, "repo", "", "repository name or pattern (acme/* within one level, acme/** at any depth)")
	cmd.Flags().StringVar(&g.actions, "actions", "", actionsUsage)
}

func (g *grantFlags) request(needActions bool) (admin.GrantRequest, error) {
	if (g.account == "") == (g.group == "") {
		return admin.GrantRequest{}, usageError{errors.New("give exactly one of --account and --group")}
	}
	if g.repo == "" {
		return admin.GrantRequest{}, usageError{errors.New("--repo is required")}
	}
	req := admin.GrantRequest{Account: g.account, Group: g.group, Repository: g.repo}
	if g.actions != "" {
		for a := range strings.SplitSeq(g.actions, ",") {
			req.Actions = append(req.Actions, strings.TrimSpace(a))
		}
	}
	if needActions && len(req.Actions) == 0 {
		return req, usageError{errors.New("--actions is required, e.g. --actions pull,push")}
	}
	if g.expires != "" && g.until != "" {
		return req, usageError{errors.New("give --expires or --until, not both")}
	}
	req.ExpiresIn = g.expires
	if g.until != "" {
		t, err := parseUntil(g.until)
		if err != nil {
			return req, usageError{err}
		}
		req.Expires = t
	}
	return req, nil
}

// parseUntil reads --until: an RFC 3339 instant, or a date, which means the start of that day
// in UTC.
func parseUntil(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--until %q: use a date (2026-03-01, the start of that day in UTC) or an instant (2026-03-01T12:00:00Z)", s)
}

func grantsCommand(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "grants", Short: "Manage grants: who may do what on which repositories"}
	f.register(cmd)
	var addFlags, removeFlags, listFlags grantFlags
	add := &cobra.Command{
		Use: "add (--account NAME | --group NAME) --repo PATTERN --actions pull,push,delete [--expires 30d | --until DATE]", Short: "Grant actions, for ever or until an end", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := addFlags.request(true)
			if err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			g, err := c.AddGrant(cmd.Context(), req)
			if err != nil {
				return err
			}
			return f.printGrants(cmd.OutOrStdout(), g)
		},
	}
	addFlags.register(add, "actions to grant: pull, push, delete (comma-separated)")
	add.Flags().StringVar(&addFlags.expires, "expires", "", "end the grant after this long, e.g. 720h or 30d (default: no end)")
	add.Flags().StringVar(&addFlags.until, "until", "", "end the grant at this date (start of the day, UTC) or RFC 3339 instant")
	remove := &cobra.Command{
		Use: "remove (--account NAME | --group NAME) --repo PATTERN [--actions …]", Short: "Remove actions, or the whole grant", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := removeFlags.request(false)
			if err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.RemoveGrant(cmd.Context(), req); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s on %s\n", firstNonEmpty(strings.Join(req.Actions, ","), "every action"), req.Repository)
			return nil
		},
	}
	removeFlags.register(remove, "actions to remove (default: the whole grant)")
	list := &cobra.Command{
		Use: "list [--account NAME | --group NAME] [--repo PATTERN]", Short: "List grants", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			grants, err := c.ListGrants(cmd.Context(), admin.GrantRequest{Account: listFlags.account, Group: listFlags.group, Repository: listFlags.repo})
			if err != nil {
				return err
			}
			return f.printGrants(cmd.OutOrStdout(), grants...)
		},
	}
	list.Flags().StringVar(&listFlags.account, "account", "", "only this account's grants")
	list.Flags().StringVar(&listFlags.group, "group", "", "only this group's grants")
	list.Flags().StringVar(&listFlags.repo, "repo", "", "only grants with exactly this pattern")
	cmd.AddCommand(add, remove, list)
	return cmd
}

func (f *clientFlags) printGrants(w io.Writer, list ...keystore.Grant) error {
	var v any = list
	if len(list) == 1 {
		v = list[0]
	}
	return f.print(w, v, "SUBJECT\tREPOSITORY\tACTIONS\tENDS", func(tw io.Writer) {
		for _, g := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.Subject, g.Repository, strings.Join(g.Actions, ","), stamp(g.Expires))
		}
	})
}

func reposCommand(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "repos", Short: "Reserve repository names for owners"}
	f.register(cmd)
	var owner, listOwner string
	reserve := &cobra.Command{
		Use: "reserve NAME [--owner ACCOUNT]", Short: "Reserve one repository name (no pattern); its owner may push, pull, delete and sell pull on it", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			o, err := c.ReserveRepository(cmd.Context(), admin.RepositoryRequest{Repository: args[0], Owner: owner})
			if err != nil {
				return err
			}
			return f.printRepos(cmd.OutOrStdout(), o)
		},
	}
	reserve.Flags().StringVar(&owner, "owner", "", "the owning account (default: the caller)")
	list := &cobra.Command{
		Use: "list [--owner ACCOUNT]", Short: "List reserved repositories", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			repos, err := c.ListRepositories(cmd.Context(), listOwner)
			if err != nil {
				return err
			}
			return f.printRepos(cmd.OutOrStdout(), repos...)
		},
	}
	list.Flags().StringVar(&listOwner, "owner", "", "only this account's repositories")
	release := &cobra.Command{
		Use: "release NAME", Short: "Release a reserved repository name, and every grant on exactly that name", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.ReleaseRepository(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "released %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(reserve, list, release)
	return cmd
}

func (f *clientFlags) printRepos(w io.Writer, list ...keystore.Ownership) error {
	var v any = list
	if len(list) == 1 {
		v = list[0]
	}
	return f.print(w, v, "REPOSITORY\tOWNER\tRESERVED", func(tw io.Writer) {
		for _, o := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", o.Repository, o.Owner, stamp(o.Created))
		}
	})
}

func whoamiCommand(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use: "whoami", Short: "Show the account and key the CLI authenticates as", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			w, err := c.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			return f.print(cmd.OutOrStdout(), w, "ACCOUNT\tROLES\tKEY\tKEY NAME", func(tw io.Writer) {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", w.Account.Name, dash(strings.Join(w.Account.Roles, ",")), w.Key.ID, dash(w.Key.Name))
			})
		},
	}
	f.register(cmd)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
