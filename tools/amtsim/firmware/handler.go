package firmware

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
)

// slowFaultDelay is what FaultSlow adds to every WS-Man call.
const slowFaultDelay = 3 * time.Second

// logonPage is the small page behind the 303 of GET / (§9.1).
const logonPage = `<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN">
<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<title>Intel&reg; Active Management Technology</title></head>
<body><p>Intel<sup>&reg;</sup> Active Management Technology</p>
<form METHOD="GET" action="index.htm"><input type=submit value="Log On..."></form>
</body></html>
`

// Handler is the device's whole HTTP surface, the same on 16992 and 16993.
//
// What is exposed in setup mode: AMT's web server is up (it has to be, to
// take the remote-configuration session on 16993), so the discovery
// surface of §9.1 answers in every state: the Server banner, GET / → 303
// /logon.htm, /index.htm → 401 digest challenge. Nothing behind it is
// reachable until provisioning: no admin credentials exist before the
// commit, so every digest attempt fails, and WS-Man is served only to the
// mutually authenticated TLS session of §6.1 ("only authorized secure
// connections accepted", IRG intelamtdevicemodes1, §2.1).
func (d *Device) Handler() http.Handler {
	return http.HandlerFunc(d.serveHTTP)
}

func (d *Device) serveHTTP(w http.ResponseWriter, r *http.Request) {
	// PROTOCOL.md §8.2, §9.1: every answer of AMT's web server carries the banner.
	w.Header().Set("Server", "Intel(R) Active Management Technology "+d.cfg.AMTVersion)
	switch r.URL.Path {
	case "/wsman":
		d.serveWSMan(w, r)
		return
	case "/":
		d.Counters.HTTPProbes.Add(1)
		w.Header().Set("Location", "/logon.htm")
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusSeeOther)
	case "/logon.htm":
		d.Counters.HTTPProbes.Add(1)
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Length", strconv.Itoa(len(logonPage)))
		_, _ = io.WriteString(w, logonPage)
	case "/index.htm":
		d.Counters.HTTPProbes.Add(1)
		d.mu.Lock()
		res := d.checkDigestLocked(r, time.Now())
		d.mu.Unlock()
		if res != authOK {
			d.challenge(w, res == authStale)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, logonPage)
	default:
		d.Counters.HTTPProbes.Add(1)
		http.NotFound(w, r)
	}
}

// serveWSMan answers POST /wsman (§8).
func (d *Device) serveWSMan(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	d.Counters.WSManCalls.Add(1)
	now := time.Now()
	d.mu.Lock()
	transient := d.hasFaultLocked(FaultTransient5xx, now)
	slow := d.hasFaultLocked(FaultSlow, now)
	setup := d.fw.state == amt.InProvisioning && r.TLS != nil && len(r.TLS.PeerCertificates) > 0
	plainClosed := r.TLS == nil && !d.plainPortOpenLocked()
	res := authOK
	if !setup {
		res = d.checkDigestLocked(r, now)
	}
	d.mu.Unlock()
	if plainClosed {
		// TLS on without non-secure connections: firmware no longer
		// listens on 16992. Drop the connection as a closed port would.
		panic(http.ErrAbortHandler)
	}
	if transient {
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
		return
	}
	if res != authOK {
		d.challenge(w, res == authStale)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "Request Entity Too Large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "Bad Request", http.StatusBadRequest)
		return
	}
	c := &call{d: d, ctx: r.Context(), setupSession: setup}
	delay := time.Duration(0)
	if d.realism.Latency != nil {
		// Called under the device lock so a per-device seeded
		// distribution needs no locking of its own.
		d.mu.Lock()
		delay = d.realism.Latency()
		d.mu.Unlock()
	}
	if slow {
		delay += slowFaultDelay
	}
	if !sleepCtx(c, delay) {
		return // the client went away
	}
	req, err := parseEnvelope(body)
	if err != nil {
		f := faultSchemaValidation(err.Error())
		if errors.Is(err, errVersion) {
			f = faultVersionMismatch()
		}
		d.writeFault(w, f, "")
		return
	}
	c.req = req
	resp, f := d.dispatch(c)
	if c.abort {
		// Rebooted mid-call: the TCP connection dies without an answer.
		panic(http.ErrAbortHandler)
	}
	if f != nil {
		d.writeFault(w, f, req.messageID)
		return
	}
	d.mu.Lock()
	d.msgID++
	id := d.msgID
	d.mu.Unlock()
	writeSOAP(w, http.StatusOK, envelope(resp, req.messageID, id))
}

func (d *Device) writeFault(w http.ResponseWriter, f *wsFault, relatesTo string) {
	d.mu.Lock()
	d.msgID++
	id := d.msgID
	d.mu.Unlock()
	status := http.StatusBadRequest
	if f.code == "a:Receiver" {
		status = http.StatusInternalServerError
	}
	writeSOAP(w, status, faultEnvelope(f, relatesTo, id))
}

// writeSOAP sends an envelope with AMT's headers (§8.2 HTTP framing).
func writeSOAP(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/soap+xml; charset=UTF-8")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
