package cli

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/pgfeed/pgfeed/source"
	"github.com/spf13/cobra"
)

// version and commit override the module version and VCS revision of the
// build info when set at link time (-ldflags "-X
// github.com/pgfeed/pgfeed/internal/cli.version=v1.2.3 -X ...cli.commit=SHA"),
// for builds where the go command stamps none (-buildvcs=false, a source
// tree without .git, as in the Docker build).
var version, commit string

// BuildInfo is what `pgfeed version` reports.
type BuildInfo struct {
	Version    string `json:"version"`          // module version, or "(devel)"
	Commit     string `json:"commit,omitempty"` // VCS revision the binary was built from
	CommitTime string `json:"commit_time,omitempty"`
	Modified   bool   `json:"modified,omitempty"` // built from a tree with uncommitted changes
	Go         string `json:"go"`                 // Go version
	Platform   string `json:"platform"`           // GOOS/GOARCH
	PostgreSQL []int  `json:"postgresql"`         // supported PostgreSQL major versions
}

// readBuildInfo reads the binary's build information.
func readBuildInfo() BuildInfo {
	b := BuildInfo{Version: "(devel)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	for v := source.MinServerVersion; v <= source.MaxServerVersion; v++ {
		b.PostgreSQL = append(b.PostgreSQL, v)
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		if info.Main.Version != "" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.time":
				b.CommitTime = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if version != "" {
		b.Version = version
	}
	if commit != "" && commit != b.Commit {
		b.Commit, b.CommitTime, b.Modified = commit, "", false
	}
	return b
}

// String is the one-line form, for pgfeed --version.
func (b BuildInfo) String() string {
	s := "pgfeed " + b.Version
	if b.Commit != "" {
		s += " (" + shortCommit(b)
		if b.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return s
}

func shortCommit(b BuildInfo) string {
	if len(b.Commit) > 12 {
		return b.Commit[:12]
	}
	return b.Commit
}

func newVersionCmd(e *env) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "version",
		Short: "Print pgfeed's version, commit, Go version and the PostgreSQL versions it supports",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			b := readBuildInfo()
			if asJSON {
				return json.NewEncoder(e.stdout).Encode(b)
			}
			commit := "unknown (built without version control information)"
			if b.Commit != "" {
				commit = b.Commit
				if b.CommitTime != "" {
					commit += " (" + b.CommitTime + ")"
				}
				if b.Modified {
					commit += ", with uncommitted changes"
				}
			}
			pg := make([]string, len(b.PostgreSQL))
			for i, v := range b.PostgreSQL {
				pg[i] = strconv.Itoa(v)
			}
			_, err := fmt.Fprintf(e.stdout, "pgfeed %s\ncommit:     %s\ngo:         %s %s\npostgresql: %s\n",
				b.Version, commit, b.Go, b.Platform, strings.Join(pg, ", "))
			return err
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return c
}
