// Package control is the simulator's small JSON control API (INTERFACES.md
// "Simulator"): list devices with their state and counters, inject a fault,
// reset or reboot a device, fleet statistics. Tests and benchmarks use it to
// assert on ground truth; `amtprov dev --simulate N` serves it too.
package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
)

// Source is what the API reads and acts on (the fleet).
type Source struct {
	Devices     func() []*firmware.Device
	Device      func(uuid string) (*firmware.Device, bool)
	Probes      func(uuid string) (any, bool)
	Stats       func() any
	InjectFault func(uuid string, kind firmware.FaultKind, d time.Duration) error
	KnownFault  func(firmware.FaultKind) bool
}

const (
	maxBody      = 4 << 10
	defaultFault = time.Minute
	maxFault     = 7 * 24 * time.Hour
)

// Error codes of the API, as in amtprov's HTTP API.
const (
	codeNotFound   = "NOT_FOUND"
	codeBadRequest = "BAD_REQUEST"
)

type api struct{ src Source }

// New returns the control API handler.
func New(src Source) http.Handler {
	a := &api{src: src}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /devices", a.list)
	mux.HandleFunc("GET /devices/{uuid}", a.show)
	mux.HandleFunc("GET /devices/{uuid}/probes", a.probes)
	mux.HandleFunc("POST /devices/{uuid}/fault", a.fault)
	mux.HandleFunc("POST /devices/{uuid}/reset", a.reset)
	mux.HandleFunc("POST /devices/{uuid}/reboot", a.reboot)
	mux.HandleFunc("GET /stats", a.stats)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return mux
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	var want *amt.ProvisioningState
	if s := r.URL.Query().Get("state"); s != "" {
		st, err := amt.ParseProvisioningState(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
			return
		}
		want = &st
	}
	out := []firmware.Info{}
	for _, d := range a.src.Devices() {
		if want != nil && d.State() != *want {
			continue
		}
		out = append(out, d.Info())
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) device(w http.ResponseWriter, r *http.Request) (*firmware.Device, bool) {
	u := r.PathValue("uuid")
	d, ok := a.src.Device(u)
	if !ok {
		writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no device %q in the fleet", u))
	}
	return d, ok
}

func (a *api) show(w http.ResponseWriter, r *http.Request) {
	if d, ok := a.device(w, r); ok {
		writeJSON(w, http.StatusOK, d.Info())
	}
}

func (a *api) probes(w http.ResponseWriter, r *http.Request) {
	d, ok := a.device(w, r)
	if !ok {
		return
	}
	p, _ := a.src.Probes(d.Config().UUID)
	writeJSON(w, http.StatusOK, map[string]any{"uuid": d.Config().UUID, "seconds": p})
}

// faultRequest is the body of POST /devices/{uuid}/fault.
type faultRequest struct {
	Kind string `json:"kind"`
	For  string `json:"for"`
}

func (a *api) fault(w http.ResponseWriter, r *http.Request) {
	d, ok := a.device(w, r)
	if !ok {
		return
	}
	var req faultRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		return
	}
	kind := firmware.FaultKind(req.Kind)
	if !a.src.KnownFault(kind) {
		writeError(w, http.StatusBadRequest, codeBadRequest,
			fmt.Sprintf("unknown fault kind %q (want reset, reboot, unreachable, slow, wrong_password, cert_refused or transient_5xx)", req.Kind))
		return
	}
	dur := defaultFault
	if req.For != "" {
		v, err := time.ParseDuration(req.For)
		if err != nil || v <= 0 || v > maxFault {
			writeError(w, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("for %q: want a duration from 1ns to %v, e.g. \"10s\"", req.For, maxFault))
			return
		}
		dur = v
	}
	if err := a.src.InjectFault(d.Config().UUID, kind, dur); err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, d.Info())
}

func (a *api) reset(w http.ResponseWriter, r *http.Request) {
	if d, ok := a.device(w, r); ok {
		d.Reset()
		writeJSON(w, http.StatusOK, d.Info())
	}
}

func (a *api) reboot(w http.ResponseWriter, r *http.Request) {
	if d, ok := a.device(w, r); ok {
		d.Reboot()
		writeJSON(w, http.StatusOK, d.Info())
	}
}

func (a *api) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.src.Stats())
}

// decode reads a small JSON body strictly: size-limited, no unknown fields,
// one value.
func decode(r *http.Request, v any) error {
	body := http.MaxBytesReader(nil, r.Body, maxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("request body larger than %d bytes", maxBody)
		}
		return fmt.Errorf("request body: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("request body: more than one JSON value")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": strings.TrimSpace(msg)}})
}
