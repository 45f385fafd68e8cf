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
	if err := root.ExecuteContext(ctx); err != nil {
		var cfgErr *config.Error
		if errors.As(err, &cfgErr) {
			// One line per problem of the file, each naming its field.
			for _, line := range strings.Split(strings.TrimRight(cfgErr.Error(), "\n"), "\n") {
				fmt.Fprintln(stderr, "pgfeed: "+line)
			}
			return 1
		}
		fmt.Fprintln(stderr, "pgfeed: "+oneLine(err))
		return 1
	}
	return 0
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "pgfeed",
		Short:         "Stream every committed change of a PostgreSQL database",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see %s --help)", err, c.CommandPath())
	})
	var cpuprofile string
	var profile *os.File
	root.PersistentFlags().StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of this run to FILE")
	_ = root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
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
	root.AddCommand(newStreamCmd(e), newSlotCmd(e), newDemoCmd(e), newBenchCmd(e), newRunCmd(e), newReplayCmd(e), newSnapshotCmd(e), newBackfillCmd(e))
	return root
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
