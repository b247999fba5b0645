package firmware

import (
	"net/http"
)

// Handler is the device's whole HTTP surface, the same on 16992 and 16993.
func (d *Device) Handler() http.Handler {
	return http.HandlerFunc(d.serveHTTP)
}

func (d *Device) serveHTTP(w http.ResponseWriter, r *http.Request) {
	// PROTOCOL.md §8.2, §9.1: every answer of AMT's web server carries the banner.
	w.Header().Set("Server", "Intel(R) Active Management Technology "+d.cfg.AMTVersion)
	switch r.URL.Path {
	case "/":
		d.Counters.HTTPProbes.Add(1)
		http.Redirect(w, r, "/logon.htm", http.StatusSeeOther)
	case "/wsman":
		d.serveWSMan(w, r)
	default:
		d.Counters.HTTPProbes.Add(1)
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
	}
}

// serveWSMan answers POST /wsman; the WS-Man engine is filled in by wsman.go.
func (d *Device) serveWSMan(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	d.Counters.WSManCalls.Add(1)
	http.Error(w, "Unauthorized", http.StatusUnauthorized)
}
