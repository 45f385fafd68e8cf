// Package cli implements the pgfeed command line: one cobra command per
// file. It turns failures a user can fix into one line on stderr and a
// non-zero exit code.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/pgfeed/pgfeed/config"
	"github.com/pgfeed/pgfeed/source"
	"github.com/spf13/cobra"
)

// env is what commands read and write besides their flags.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	logs           logFlags // --log-format, --log-level (log.go)
}

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdout: stdout, stderr: stderr, getenv: os.Getenv}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if cmd, err := root.ExecuteContextC(ctx); err != nil {
		err = usageError(cmd, err)
		var cfgErr *config.Error
		if errors.As(err, &cfgErr) {
			// One line per problem of the file, each naming its field.
			for _, line := range strings.Split(strings.TrimRight(cfgErr.Error(), "\n"), "\n") {
				e.printError(line)
			}
			return 1
		}
		e.printError(oneLine(err))
		if errors.Is(err, source.ErrGap) {
			return ExitGap
		}
		return 1
	}
	return 0
}

// ExitGap is the exit code of a stop on a gap (an invalidated or vanished
// slot, another cluster): starting again does not help, a person must
// choose the way out the error names. Supervisors do not restart on it
// (deploy/pgfeed.service: RestartPreventExitStatus).
const ExitGap = 3

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "pgfeed",
		Short:         "Stream every committed change of a PostgreSQL database",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.Version = readBuildInfo().String()
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see %s --help)", err, c.CommandPath())
	})
	var cpuprofile string
	var profile *os.File
	root.PersistentFlags().StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of this run to FILE")
	_ = root.PersistentFlags().MarkHidden("cpuprofile")
	e.logs.register(root)
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := e.logs.check(cmd); err != nil {
			return err
		}
		if cpuprofile == "" {
			return nil
		}
		var err error
		if profile, err = os.Create(cpuprofile); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		return pprof.StartCPUProfile(profile)
	}
	root.PersistentPostRun = func(*cobra.Command, []string) {
		if profile != nil {
			pprof.StopCPUProfile()
			profile.Close()
		}
	}
	root.AddCommand(newStreamCmd(e), newSlotCmd(e), newDemoCmd(e), newBenchCmd(e), newRunCmd(e), newReplayCmd(e), newSnapshotCmd(e), newBackfillCmd(e), newServeCmd(e), newVersionCmd(e))
	refuseBareGroups(root)
	return root
}

// refuseBareGroups makes each command that only groups subcommands (pgfeed
// slot) fail on a missing or unknown subcommand. Cobra prints the group's
// help and exits 0 for "pgfeed slot lst", so a typo in a script would pass.
func refuseBareGroups(c *cobra.Command) {
	for _, sub := range c.Commands() {
		if sub.HasSubCommands() && sub.Run == nil && sub.RunE == nil {
			sub.RunE = func(cmd *cobra.Command, args []string) error {
				var names []string
				for _, s := range cmd.Commands() {
					if s.IsAvailableCommand() {
						names = append(names, s.Name())
					}
				}
				what := "name a subcommand"
				if len(args) > 0 {
					what = fmt.Sprintf("unknown command %q", args[0]) + suggest(cmd, args[0])
				}
				path := cmd.CommandPath()
				return fmt.Errorf("%s: %s: use %s %s (see %s --help)", strings.TrimPrefix(path, cmd.Root().Name()+" "), what, path, strings.Join(names, "|"), path)
			}
		}
		refuseBareGroups(sub)
	}
}

// cobraMessages are the argument errors of cobra's validators and of its
// required flags, reworded: each says what the command takes.
var cobraMessages = []struct {
	re  *regexp.Regexp
	say func(m []string) string
}{
	{regexp.MustCompile(`^accepts (\d+) arg\(s\), received (\d+)$`), func(m []string) string {
		return fmt.Sprintf("takes %s, got %s", args(m[1]), m[2])
	}},
	{regexp.MustCompile(`^requires at least (\d+) arg\(s\), only received (\d+)$`), func(m []string) string {
		return fmt.Sprintf("takes at least %s, got %s", args(m[1]), m[2])
	}},
	{regexp.MustCompile(`^accepts at most (\d+) arg\(s\), received (\d+)$`), func(m []string) string {
		return fmt.Sprintf("takes at most %s, got %s", args(m[1]), m[2])
	}},
	{regexp.MustCompile(`^accepts between (\d+) and (\d+) arg\(s\), received (\d+)$`), func(m []string) string {
		return fmt.Sprintf("takes %s to %s arguments, got %s", m[1], m[2], m[3])
	}},
	{regexp.MustCompile(`^required flag\(s\) (.+) not set$`), func(m []string) string {
		return "missing required flag --" + strings.ReplaceAll(strings.ReplaceAll(m[1], `"`, ""), ", ", ", --")
	}},
}

// suggest is " (did you mean NAME?)" for the subcommand of cmd closest to
// typed, or "". Cobra sets its default distance only on its own path.
func suggest(cmd *cobra.Command, typed string) string {
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(typed); len(s) > 0 {
		return fmt.Sprintf(" (did you mean %s?)", s[0])
	}
	return ""
}

func args(n string) string {
	if n == "1" {
		return "1 argument"
	}
	return n + " arguments"
}

// usageError turns cobra's own messages about arguments ("accepts 1
// arg(s), received 0", `unknown command "x" for "pgfeed run"`) into one
// line that names the command, what it takes and where to read more.
// Other errors pass unchanged.
func usageError(cmd *cobra.Command, err error) error {
	if cmd == nil {
		return err
	}
	path := cmd.CommandPath()
	// Main prefixes "pgfeed: "; the line names the subcommand after it.
	name := ""
	if cmd.HasParent() {
		name = strings.TrimPrefix(path, cmd.Root().Name()+" ") + ": "
	}
	usage := fmt.Sprintf("usage: %s (see %s --help)", cmd.UseLine(), path)
	msg := err.Error()
	for _, cm := range cobraMessages {
		if m := cm.re.FindStringSubmatch(msg); m != nil {
			return fmt.Errorf("%s%s: %s", name, cm.say(m), usage)
		}
	}
	if arg, ok := strings.CutPrefix(msg, "unknown command "); ok {
		arg, _, _ = strings.Cut(arg, " for ")
		if cmd.HasSubCommands() {
			what := "unknown command " + arg + suggest(cmd, strings.Trim(arg, `"`))
			return fmt.Errorf("%s%s: see %s --help", name, what, path)
		}
		return fmt.Errorf("%stakes no arguments, got %s: %s", name, arg, usage)
	}
	return err
}

// oneLine keeps the first line of an error: the CLI promises one clear line.
func oneLine(err error) string {
	var ue *source.UserError
	msg := err.Error()
	if errors.As(err, &ue) {
		msg = ue.Msg
	}
	first, _, _ := strings.Cut(msg, "\n")
	return first
}

// connFlags are the connection flags every command that talks to
// PostgreSQL shares.
type connFlags struct {
	dsn string
}

func (f *connFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.dsn, "dsn", "", "PostgreSQL connection string or URL (default $PGFEED_DSN, else the PG* variables)")
}

func (f *connFlags) resolve(e *env) string {
	if f.dsn != "" {
		return f.dsn
	}
	return e.getenv("PGFEED_DSN")
}
