package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	httptransport "github.com/go-kit/kit/transport/http"
)

// Handler serves the read API of INTERFACES.md: GET /v1/devices and
// GET /v1/devices/{uuid}. Every error is JSON {"error":{"code","message"}}.
func (s *Service) Handler() http.Handler {
	e := MakeEndpoints(s)
	opts := []httptransport.ServerOption{httptransport.ServerErrorEncoder(s.encodeError)}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/devices", httptransport.NewServer(e.ListDevices, decodeListDevices, encodeJSON, opts...))
	mux.Handle("GET /v1/devices/{uuid}", httptransport.NewServer(e.GetDevice, decodeGetDevice, encodeJSON, opts...))
	// Anything else still answers in the API's error shape.
	mux.HandleFunc("/v1/devices", s.methodNotAllowed)
	mux.HandleFunc("/v1/devices/{uuid}", s.methodNotAllowed)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no such resource: "+r.URL.Path)
	})
	// Every request is measured under the path of the pattern that served
	// it (httpmetrics.go).
	return s.instrument(mux)
}

func (s *Service) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET")
	writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", r.Method+" is not allowed here; the inventory API is read-only")
}

func decodeGetDevice(_ context.Context, r *http.Request) (any, error) {
	return getDeviceRequest{UUID: r.PathValue("uuid")}, nil
}

func decodeListDevices(_ context.Context, r *http.Request) (any, error) {
	q := r.URL.Query()
	req := listDevicesRequest{State: q.Get("state"), After: q.Get("after")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("%w: limit %q is not a number", ErrBadRequest, v)
		}
		if n < 1 {
			return nil, fmt.Errorf("%w: limit %d: want 1 to %d", ErrBadRequest, n, MaxPageSize)
		}
		req.Limit = n
	}
	return req, nil
}

func encodeJSON(_ context.Context, w http.ResponseWriter, response any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(response)
}

// errorStatus is the one place that turns errors into API replies.
func errorStatus(err error) (status int, code string) {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, "NOT_FOUND"
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest, "BAD_REQUEST"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "UNAVAILABLE"
	}
	return http.StatusInternalServerError, "INTERNAL"
}

func (s *Service) encodeError(ctx context.Context, err error, w http.ResponseWriter) {
	status, code := errorStatus(err)
	msg := err.Error()
	if status >= 500 {
		// The detail (SQL, addresses) is for the log, not for clients.
		s.log.ErrorContext(ctx, "inventory API request failed", "err", err)
		msg = http.StatusText(status)
	}
	writeError(w, status, code, msg)
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(b) // the client may be gone; nothing to do about it
}
