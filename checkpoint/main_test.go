package checkpoint

import (
	"os"
	"testing"

	"github.com/pgfeed/pgfeed/internal/pgcluster"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// pg is the cluster the Postgres store's tests run against.
var pg *pgcluster.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pg, pgcluster.Options{})) }
