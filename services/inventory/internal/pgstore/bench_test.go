package pgstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/services/inventory/internal/pgstore"
	"github.com/amtprov/amtprov/services/inventory/internal/record"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// BenchmarkApply measures the database side of ingestion alone: batches of
// 512 hellos of new devices, one transaction each.
func BenchmarkApply(b *testing.B) {
	pool := storetest.New(b)
	repo := pgstore.New(pool)
	base := time.Now()
	n := 0
	for b.Loop() {
		us := make([]record.Update, 512)
		for i := range us {
			n++
			m := record.Mark{At: base.Add(time.Duration(n)), EventID: fmt.Sprint("e", n)}
			u := record.Seen(fmt.Sprintf("%08x-0000-4000-8000-%012x", n, n), m.At)
			u.Hello = &record.Hello{Mark: m, InterfaceVersion: 3, AdminCredentialsSet: true, RootHashes: []record.RootHash{{Alg: "sha256", Hex: fmt.Sprintf("%064x", n)}}}
			u.State = &record.State{Mark: m, State: "in"}
			u.Addr = &record.Addr{Mark: m, IP: "10.0.0.1"}
			u.LastHelloAt, u.LocationSeen = m.At, m.At
			us[i] = u
		}
		if err := repo.Apply(context.Background(), us); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*512)/b.Elapsed().Seconds(), "events/s")
}
