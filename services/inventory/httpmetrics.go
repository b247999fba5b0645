package inventory

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
)

// The read API's RED metrics use the OpenTelemetry HTTP semantic
// conventions: one histogram, http.server.request.duration (Prometheus:
// http_server_request_duration_seconds_{bucket,sum,count}), by
// http.request.method, http.route (the mux pattern, never the raw path)
// and http.response.status_code; its count is the request rate, the
// 4xx/5xx share of it the error rate. /healthz, /readyz and /metrics are
// served outside Handler and not counted.

// methodAttr is the method as recorded: by name if HTTP defines it, any
// other as "_OTHER", as the conventions require, so a client cannot mint
// series.
func methodAttr(m string) httpconv.RequestMethodAttr {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return httpconv.RequestMethodAttr(m)
	}
	return httpconv.RequestMethodOther
}

// instrument records every request mux serves under its route: the path of
// the pattern that matched, which ServeMux leaves in r.Pattern; the
// catch-all "/" of unknown paths has no route.
func (s *Service) instrument(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		mux.ServeHTTP(sw, r)
		_, route, found := strings.Cut(r.Pattern, " ") // "GET /v1/devices" -> "/v1/devices"
		if !found {
			route = r.Pattern
		}
		if route == "/" {
			route = ""
		}
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		status := sw.status
		if status == 0 {
			status = http.StatusOK // nothing written: net/http answers 200
		}
		attrs := []attribute.KeyValue{s.m.httpDuration.AttrResponseStatusCode(status)}
		if route != "" {
			attrs = append(attrs, s.m.httpDuration.AttrRoute(route))
		}
		if status >= 500 {
			attrs = append(attrs, s.m.httpDuration.AttrErrorType(httpconv.ErrorTypeAttr(strconv.Itoa(status))))
		}
		s.m.httpDuration.Record(r.Context(), time.Since(start).Seconds(), methodAttr(r.Method), scheme, attrs...)
	})
}

// statusWriter remembers the status the handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
