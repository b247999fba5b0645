package control_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
	"github.com/amtprov/amtprov/tools/amtsim/internal/control"
	"github.com/amtprov/amtprov/tools/amtsim/internal/fleetgen"
	"github.com/amtprov/amtprov/tools/amtsim/internal/keypool"
)

type injected struct {
	uuid string
	kind firmware.FaultKind
	d    time.Duration
}

func newAPI(t *testing.T) (http.Handler, []*firmware.Device, *[]injected) {
	t.Helper()
	cfgs, err := fleetgen.Generate(fleetgen.Options{
		Count: 3, Seed: 4, Base: netip.MustParseAddr("127.60.0.1"), Range: netip.MustParsePrefix("127.60.0.0/16"),
		DNSSuffix: "corp.example.com", ProvisionedShare: 1.0 / 3, AdminPassword: "P@ssw0rd!",
	})
	if err != nil {
		t.Fatal(err)
	}
	pool := keypool.New(1)
	devs := make([]*firmware.Device, len(cfgs))
	byUUID := map[string]*firmware.Device{}
	for i, c := range cfgs {
		if devs[i], err = firmware.NewDevice(c, firmware.Realism{}, pool); err != nil {
			t.Fatal(err)
		}
		byUUID[c.UUID] = devs[i]
	}
	var calls []injected
	h := control.New(control.Source{
		Devices: func() []*firmware.Device { return devs },
		Device:  func(u string) (*firmware.Device, bool) { d, ok := byUUID[u]; return d, ok },
		Probes:  func(string) (any, bool) { return []int{1, 2}, true },
		Stats:   func() any { return map[string]int{"devices": len(devs)} },
		InjectFault: func(u string, k firmware.FaultKind, d time.Duration) error {
			if k == firmware.FaultReboot {
				return errors.New("refused by the fleet")
			}
			calls = append(calls, injected{u, k, d})
			return nil
		},
		KnownFault: func(k firmware.FaultKind) bool { return k != "meltdown" },
	})
	return h, devs, &calls
}

func do(t *testing.T, h http.Handler, method, path, body string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	var out map[string]any
	if rec.Body.Len() > 0 && rec.Body.Bytes()[0] == '{' {
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return rec.Code, out
}

func TestRoutes(t *testing.T) {
	h, devs, calls := newAPI(t)
	u := devs[0].Config().UUID
	missing := "/devices/00000000-0000-4000-8000-000000000000"
	tests := []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/stats", "", 200},
		{"GET", "/devices/" + u + "/probes", "", 200},
		{"GET", missing, "", 404},
		{"GET", missing + "/probes", "", 404},
		{"POST", missing + "/fault", `{"kind":"slow"}`, 404},
		{"POST", missing + "/reset", "", 404},
		{"POST", missing + "/reboot", "", 404},
		{"DELETE", "/devices/" + u, "", 405},
		{"POST", "/devices/" + u + "/fault", `{"kind":"reboot"}`, 400}, // the fleet refuses
		{"POST", "/devices/" + u + "/fault", `{"kind":"meltdown"}`, 400},
		{"POST", "/devices/" + u + "/fault", `{"kind":"slow","for":"200h"}`, 400},
	}
	for _, tt := range tests {
		code, body := do(t, h, tt.method, tt.path, tt.body)
		if code != tt.want {
			t.Errorf("%s %s: %d, want %d (%v)", tt.method, tt.path, code, tt.want, body)
		}
		if code >= 400 && code != 405 {
			e, _ := body["error"].(map[string]any)
			if e["code"] == "" || e["message"] == "" {
				t.Errorf("%s %s: error body %v", tt.method, tt.path, body)
			}
		}
	}
	if code, _ := do(t, h, "POST", "/devices/"+u+"/fault", `{"kind":"transient_5xx"}`); code != 200 {
		t.Fatalf("fault without duration: %d", code)
	}
	if len(*calls) != 1 || (*calls)[0] != (injected{u, firmware.FaultTransient5xx, time.Minute}) {
		t.Fatalf("InjectFault calls %+v, want one of 1m", *calls)
	}
}

func TestResetAndReboot(t *testing.T) {
	h, devs, _ := newAPI(t)
	var prov *firmware.Device
	for _, d := range devs {
		if d.State() == amt.PostProvisioning {
			prov = d
		}
	}
	if prov == nil {
		t.Fatal("no provisioned device")
	}
	code, body := do(t, h, "POST", "/devices/"+prov.Config().UUID+"/reboot", "")
	if code != 200 || body["state"] != "post" {
		t.Fatalf("reboot: %d %v", code, body)
	}
	code, body = do(t, h, "POST", "/devices/"+prov.Config().UUID+"/reset", "")
	if code != 200 || body["state"] != "in" || prov.State() != amt.InProvisioning {
		t.Fatalf("reset: %d %v", code, body)
	}
}
