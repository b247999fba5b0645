package record_test

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/amtprov/amtprov/services/inventory/internal/record"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func TestMarkAfter(t *testing.T) {
	tests := []struct {
		a, b record.Mark
		want bool
	}{
		{record.Mark{At: t0.Add(time.Second), EventID: "a"}, record.Mark{At: t0, EventID: "z"}, true},
		{record.Mark{At: t0, EventID: "z"}, record.Mark{At: t0.Add(time.Second), EventID: "a"}, false},
		{record.Mark{At: t0, EventID: "b"}, record.Mark{At: t0, EventID: "a"}, true},
		{record.Mark{At: t0, EventID: "a"}, record.Mark{At: t0, EventID: "a"}, false},
		{record.Mark{At: t0, EventID: "a"}, record.Mark{At: t0.In(time.FixedZone("x", 3600)), EventID: "a"}, false},
	}
	for i, tt := range tests {
		if got := tt.a.After(tt.b); got != tt.want {
			t.Errorf("%d: %+v.After(%+v) = %v, want %v", i, tt.a, tt.b, got, tt.want)
		}
	}
}

func updates() []record.Update {
	m := func(min int, id string) record.Mark {
		return record.Mark{At: t0.Add(time.Duration(min) * time.Minute), EventID: id}
	}
	u := "4bac9510-04a6-4321-bae2-d45ddf07b684"
	a := record.Seen(u, t0.Add(time.Minute))
	a.Hello = &record.Hello{Mark: m(1, "h1"), InterfaceVersion: 3}
	a.State = &record.State{Mark: m(1, "h1"), State: "in"}
	a.Addr = &record.Addr{Mark: m(1, "h1"), IP: "192.0.2.1"}
	a.LastHelloAt, a.LocationSeen = a.LastSeen, a.LastSeen
	b := record.Seen(u, t0.Add(3*time.Minute))
	b.State = &record.State{Mark: m(3, "p3"), State: "post"}
	b.Provisioning = &record.Provisioning{Mark: m(3, "p3"), State: "succeeded"}
	c := record.Seen(u, t0.Add(3*time.Minute))
	c.Addr = &record.Addr{Mark: m(3, "d3"), IP: "192.0.2.9"}
	c.Ports = &record.Ports{Mark: m(3, "d3"), Ports: []int{16992}}
	c.State = &record.State{Mark: m(3, "d3"), State: "in"} // loses the tie to p3
	c.LocationSeen = c.LastSeen
	d := record.Seen(u, t0)
	d.Version = &record.Version{Mark: m(0, "v0"), AMTVersion: "16"}
	return []record.Update{a, b, c, d}
}

func TestMergeIsOrderIndependentAndIdempotent(t *testing.T) {
	us := updates()
	want := us[0]
	for _, u := range us[1:] {
		want.Merge(u)
	}
	if want.State.State != "post" || want.Addr.IP != "192.0.2.9" || !want.FirstSeen.Equal(t0) ||
		!want.LastSeen.Equal(t0.Add(3*time.Minute)) || !want.LastHelloAt.Equal(t0.Add(time.Minute)) || want.Version.AMTVersion != "16" {
		t.Fatalf("merged: %+v", want)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for range 50 {
		perm := rng.Perm(len(us))
		got := us[perm[0]]
		for _, i := range perm[1:] {
			got.Merge(us[i])
			got.Merge(us[i]) // twice: no effect
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("order %v: %+v, want %+v", perm, got, want)
		}
	}
}

func TestTimeJSON(t *testing.T) {
	b, err := json.Marshal(struct {
		A, B record.Time
	}{A: record.Time{Time: t0.Add(500 * time.Millisecond).In(time.FixedZone("x", 3600))}})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"A":"2026-11-26T12:00:00.5Z","B":""}` {
		t.Fatalf("got %s", b)
	}
	var back struct{ A, B record.Time }
	if err := json.Unmarshal(b, &back); err != nil || !back.A.Equal(t0.Add(500*time.Millisecond)) || !back.B.IsZero() {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}
