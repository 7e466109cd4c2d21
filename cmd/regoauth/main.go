// Command regoauth is the token server for private container registries: `serve` runs it from a
// config file, `dev` runs an all-in-one local stack, and the other commands manage accounts,
// API keys, grants and repositories through the admin API, move a key store's records
// (`export`, `import`) and make signing keys. It is wiring and command line only: what the
// server does is in package server and the packages it assembles.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// usageError marks a mistake in how a command was called (exit status 2): an unknown command
// or flag, a missing or extra argument, a flag value out of its range.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal starts a graceful stop; a second one ends the process at once (the
	// signals' default action), for an operator who will not wait for the drain.
	go func() {
		<-ctx.Done()
		stop()
	}()
	err := rootCommand().ExecuteContext(ctx)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, errorLine(err))
	os.Exit(exitCode(err))
}

// errorLine is how a failure is reported: one line, never a stack or the usage text. An error
// may carry text from elsewhere (a server's answer, a file's name): control characters in it
// are written escaped, so none moves the cursor, rewrites the line or colours the terminal, and
// neither do the characters that reorder text shown right to left.
func errorLine(err error) string {
	msg := strings.ReplaceAll(strings.ReplaceAll(err.Error(), "\r\n", "\n"), "\n", "; ")
	var b strings.Builder
	b.WriteString("regoauth: ")
	for _, r := range msg {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// exitCode is 2 for a usage mistake and 1 for any other failure.
func exitCode(err error) int {
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "regoauth",
		Short:         "Token server for private container registries, with Rego policies",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		// With no command, the help; with one cobra does not know, a usage error. (Without Args
		// and RunE cobra reports an unknown command as an error of no particular type.)
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.AddCommand(serveCommand(), devCommand(), bootstrapCommand(), signingCommand(), exportCommand(), importCommand())
	root.AddCommand(initCommand(), healthcheckCommand())
	client := &clientFlags{}
	root.AddCommand(accountsCommand(client), keysCommand(client), grantsCommand(client), reposCommand(client), whoamiCommand(client))
	root.AddCommand(policyCommand(client))
	markUsageErrors(root)
	return root
}

// markUsageErrors makes every error about how a command was called a usageError: bad flags
// (for every command, through the root's flag error function) and bad arguments (by wrapping
// each command's argument check).
func markUsageErrors(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		// A group of commands (accounts, keys, …) given a word it does not know would print
		// its help and exit 0: "regoauth accounts udpate x" in a script must fail.
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.Args = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					return unknownCommand(cmd, args[0])
				}
				return nil
			}
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
		if check := c.Args; check != nil {
			c.Args = func(cmd *cobra.Command, args []string) error {
				if err := check(cmd, args); err != nil {
					var ue usageError
					if errors.As(err, &ue) {
						return err
					}
					return usageError{err}
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// unknownCommand is cobra's message for an unknown command, with its suggestions.
func unknownCommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	return usageError{errors.New(msg)}
}
