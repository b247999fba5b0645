package inventory_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/store"
	"github.com/amtprov/amtprov/libs/store/pglocal"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/inventory"
)

// TestPostgresRestartMidStream stops PostgreSQL (a private cluster) while
// the inventory is writing, keeps it down until JetStream has redelivered
// events the inventory could not write, and starts it again: nothing is
// lost, and the tables equal those of an uninterrupted run.
func TestPostgresRestartMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("stops and starts a private PostgreSQL cluster (about 20 s)")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	dir, err := os.MkdirTemp("", "inventory-pgrestart-") // not t.TempDir: the postgres user must reach it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	url, stop, err := pglocal.Start(ctx, dir, nil)
	if errors.Is(err, pglocal.ErrNoBinaries) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop(context.Background()) })
	pool, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := store.Migrate(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}

	_, js := bustest.Connect(t)
	tel, _ := telemetry.NewForTest("inventory")
	evs := fleet(t, 400, 8)
	half := len(evs) / 2
	publish(t, js, evs[:half])
	r := startInventory(t, inventory.Config{BatchSize: 64, Workers: 128}, pool, js, tel)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if info := consumerInfo(t, js, "inventory"); info != nil && info.AckFloor.Stream > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no progress within 30s")
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}

	if err := stop(ctx); err != nil {
		t.Fatal(err)
	}
	publish(t, js, evs[half:])
	deadline = time.Now().Add(30 * time.Second)
	for {
		if info := consumerInfo(t, js, "inventory"); info.NumRedelivered > 0 {
			t.Logf("database down: %d events acked, %d redelivered", info.AckFloor.Stream, info.NumRedelivered)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no redelivery within 30s of the database going down")
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	again, stop2, err := pglocal.Start(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop2(context.Background()) })
	if again != url {
		t.Fatalf("the restarted cluster moved from %s to %s; the pool cannot follow", url, again)
	}

	waitAcked(t, js, "inventory", 2*time.Minute)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	ref := storetest.New(t)
	whole := startInventory(t, inventory.Config{Durable: "reference"}, ref, js, tel)
	waitAcked(t, js, "reference", time.Minute)
	if err := whole.stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := dump(t, pool), dump(t, ref); got != want {
		t.Fatalf("tables after a database restart differ from an uninterrupted run:\n got %.2000s\nwant %.2000s", got, want)
	}
}
