package wsman_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/wsman"
)

const (
	testRealm    = "Digest:727734D63A1FC0423736E48DA554E462"
	testPassword = "S3cret-Pa55!"
)

func digestServer(t *testing.T, maxUses int) (*digestDevice, *replay, string) {
	t.Helper()
	rp := &replay{tb: t, routes: fixtureRoutes}
	dd := &digestDevice{realm: testRealm, user: "admin", pass: testPassword, maxUses: maxUses, next: rp}
	srv := startServer(t, dd)
	return dd, rp, hostPort(srv)
}

func TestDigestAuthentication(t *testing.T) {
	ctx := testContext(t)

	t.Run("challenge answered once, then reused on keep-alive", func(t *testing.T) {
		dd, rp, addr := digestServer(t, 1000)
		c := newClient(t, addr, func(cfg *wsman.Config) { cfg.Username, cfg.Password = "admin", testPassword })
		for i := range 5 {
			if _, err := c.GeneralSettings(ctx); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if n := dd.challengeCount(); n != 1 {
			t.Errorf("%d challenges for 5 calls, want 1 (nonce reused)", n)
		}
		if n := len(rp.requests()); n != 5 {
			t.Errorf("%d requests reached the device, want 5", n)
		}
	})

	t.Run("stale nonce is answered again", func(t *testing.T) {
		dd, _, addr := digestServer(t, 2)
		c := newClient(t, addr, func(cfg *wsman.Config) { cfg.Username, cfg.Password = "admin", testPassword })
		for i := range 6 {
			if _, err := c.GeneralSettings(ctx); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if n := dd.challengeCount(); n != 3 {
			t.Errorf("%d challenges for 6 calls at 2 per nonce, want 3", n)
		}
	})

	t.Run("wrong password is ErrUnauthorized without the password", func(t *testing.T) {
		dd, rp, addr := digestServer(t, 1000)
		const wrong = "Wr0ng-Secret#"
		c := newClient(t, addr, func(cfg *wsman.Config) { cfg.Username, cfg.Password = "admin", wrong })
		_, err := c.GeneralSettings(ctx)
		if !errors.Is(err, wsman.ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
		if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), "response=") {
			t.Fatalf("error leaks credentials: %v", err)
		}
		if dd.challengeCount() > 2 || len(rp.requests()) != 0 {
			t.Errorf("%d challenges, %d requests served: want at most 2 and none", dd.challengeCount(), len(rp.requests()))
		}
		if wsman.Retryable(err) {
			t.Error("ErrUnauthorized must not be retryable")
		}
	})

	t.Run("no credentials configured", func(t *testing.T) {
		_, _, addr := digestServer(t, 1000)
		c := newClient(t, addr, nil)
		if _, err := c.GeneralSettings(ctx); !errors.Is(err, wsman.ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
	})
}

// TestConcurrentCalls shares one client between goroutines: MessageIDs are
// unique (the counter is atomic) and every call is answered.
func TestConcurrentCalls(t *testing.T) {
	_, rp, addr := digestServer(t, 1<<20)
	c := newClient(t, addr, func(cfg *wsman.Config) { cfg.Username, cfg.Password = "admin", testPassword })
	ctx := testContext(t)
	const workers, calls = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers*calls)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				if _, err := c.SetupAndConfiguration(ctx); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range rp.requests() {
		if seen[r.MessageID] {
			t.Fatalf("MessageID %s sent twice", r.MessageID)
		}
		seen[r.MessageID] = true
	}
	if len(seen) != workers*calls {
		t.Fatalf("%d distinct requests, want %d", len(seen), workers*calls)
	}
}

// amtFault is the real AMT fault of PROTOCOL.md §8.2 (GWM amterror test).
const amtFault = `<?xml version="1.0" encoding="UTF-8"?><a:Envelope xmlns:a="http://www.w3.org/2003/05/soap-envelope" xmlns:b="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:c="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><a:Header><b:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</b:To><b:RelatesTo>0</b:RelatesTo><b:Action a:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/08/addressing/fault</b:Action><b:MessageID>uuid:00000000-8086-8086-8086-00000003BE62</b:MessageID></a:Header><a:Body><a:Fault><a:Code><a:Value>a:Sender</a:Value><a:Subcode><a:Value>b:DestinationUnreachable</a:Value></a:Subcode></a:Code><a:Reason><a:Text xml:lang="en-US">No route can be determined to reach the destination role defined by the WSAddressing To.</a:Text></a:Reason><a:Detail><c:FaultDetail>http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/InvalidResourceURI</c:FaultDetail></a:Detail></a:Fault></a:Body></a:Envelope>`

// TestHostileResponses: every kind of bad answer is a clear typed error,
// never a hang, a panic or an unbounded read.
func TestHostileResponses(t *testing.T) {
	deep := strings.Repeat("<x>", 5000) + strings.Repeat("</x>", 5000)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		cfg     func(*wsman.Config)
		check   func(t *testing.T, err error)
	}{
		{"huge chunked body", func(w http.ResponseWriter, r *http.Request) {
			chunk := []byte(strings.Repeat("<a>x</a>", 1024))
			for i := 0; i < 1024 && r.Context().Err() == nil; i++ { // 8 MiB
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, nil, isErr(wsman.ErrResponseTooLarge)},
		{"declared length over the limit", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5000000")
			_, _ = w.Write([]byte("<a/>"))
		}, func(c *wsman.Config) { c.MaxResponseBytes = 1 << 20 }, isErr(wsman.ErrResponseTooLarge)},
		{"deep nesting", bodyOf(200, string(soapResponse(deep))), nil, isErr(wsman.ErrMalformedResponse)},
		{"garbage", bodyOf(200, "\x00\x01garbage\xff"), nil, isErr(wsman.ErrMalformedResponse)},
		{"empty 200", bodyOf(200, ""), nil, isErr(wsman.ErrMalformedResponse)},
		{"SOAP 1.1 envelope", bodyOf(200, `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><g:AMT_GeneralSettings xmlns:g="x"/></s:Body></s:Envelope>`), nil, isErr(wsman.ErrMalformedResponse)},
		{"unnamespaced envelope", bodyOf(200, `<Envelope><Body><AMT_GeneralSettings/></Body></Envelope>`), nil, isErr(wsman.ErrMalformedResponse)},
		{"entity expansion", bodyOf(200, `<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxxxxxxxxxx"><!ENTITY y "&x;&x;&x;&x;&x;&x;&x;&x;">]><a:Envelope xmlns:a="http://www.w3.org/2003/05/soap-envelope"><a:Body><g:AMT_GeneralSettings xmlns:g="x"><g:DigestRealm>&y;</g:DigestRealm></g:AMT_GeneralSettings></a:Body></a:Envelope>`), nil, isErr(wsman.ErrMalformedResponse)},
		{"external entity", bodyOf(200, `<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a:Envelope xmlns:a="http://www.w3.org/2003/05/soap-envelope"><a:Body>&x;</a:Body></a:Envelope>`), nil, isErr(wsman.ErrMalformedResponse)},
		{"other charset", bodyOf(200, `<?xml version="1.0" encoding="ISO-8859-1"?><a:Envelope xmlns:a="http://www.w3.org/2003/05/soap-envelope"><a:Body/></a:Envelope>`), nil, isErr(wsman.ErrMalformedResponse)},
		{"fault with 400", bodyOf(400, amtFault), nil, func(t *testing.T, err error) {
			var f *wsman.Fault
			if !errors.As(err, &f) {
				t.Fatalf("err = %v, want *Fault", err)
			}
			if f.Code != "a:Sender" || f.SubcodeLocal() != "DestinationUnreachable" || !strings.HasPrefix(f.Reason, "No route can be determined") ||
				!strings.HasSuffix(f.Detail, "InvalidResourceURI") || f.HTTPStatus != 400 {
				t.Fatalf("fault = %+v", f)
			}
			if wsman.Retryable(err) {
				t.Error("a fault must not be retryable")
			}
		}},
		{"fault with 500", bodyOf(500, amtFault), nil, func(t *testing.T, err error) {
			var f *wsman.Fault
			if !errors.As(err, &f) || f.HTTPStatus != 500 {
				t.Fatalf("err = %v, want *Fault with status 500", err)
			}
		}},
		{"503 without fault", bodyOf(503, "Service Unavailable"), nil, func(t *testing.T, err error) {
			var he *wsman.HTTPError
			if !errors.As(err, &he) || he.Status != 503 || !he.Retryable() || !wsman.Retryable(err) {
				t.Fatalf("err = %v, want retryable *HTTPError 503", err)
			}
		}},
		{"404 without fault", bodyOf(404, "Not Found"), nil, func(t *testing.T, err error) {
			var he *wsman.HTTPError
			if !errors.As(err, &he) || he.Status != 404 || wsman.Retryable(err) {
				t.Fatalf("err = %v, want non-retryable *HTTPError 404", err)
			}
		}},
		{"slow drip", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			for _, b := range []byte(amtFault) {
				if _, err := w.Write([]byte{b}); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}, func(c *wsman.Config) { c.Timeout = 300 * time.Millisecond }, func(t *testing.T, err error) {
			if !errors.Is(err, wsman.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) || !wsman.Retryable(err) {
				t.Fatalf("err = %v, want ErrUnreachable and DeadlineExceeded", err)
			}
		}},
		{"no answer at all", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body) // then the server notices the client leave
			<-r.Context().Done()
		}, func(c *wsman.Config) { c.Timeout = 200 * time.Millisecond }, isErr(wsman.ErrUnreachable)},
		{"connection dropped after the request", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}, nil, func(t *testing.T, err error) {
			if !errors.Is(err, wsman.ErrConnectionLost) || errors.Is(err, wsman.ErrUnreachable) {
				t.Fatalf("err = %v, want ErrConnectionLost", err)
			}
		}},
		{"redirect is not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/logon.htm", http.StatusSeeOther)
		}, nil, func(t *testing.T, err error) {
			var he *wsman.HTTPError
			if !errors.As(err, &he) || he.Status != http.StatusSeeOther {
				t.Fatalf("err = %v, want *HTTPError 303", err)
			}
		}},
		{"non-zero ReturnValue", bodyOf(200, string(soapResponse(`<g:SetMEBxPassword_OUTPUT><g:ReturnValue>2054</g:ReturnValue></g:SetMEBxPassword_OUTPUT>`))), nil, func(t *testing.T, err error) {
			var re *wsman.ReturnError
			if !errors.As(err, &re) || re.ReturnValue != 2054 || re.Name != "INVALID_PASSWORD" || re.Method != "AMT_SetupAndConfigurationService.SetMEBxPassword" {
				t.Fatalf("err = %v, want ReturnError 2054 INVALID_PASSWORD", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, tc.handler)
			c := newClient(t, hostPort(srv), tc.cfg)
			ctx := testContext(t)
			var err error
			if strings.Contains(tc.name, "ReturnValue") {
				err = c.SetMEBxPassword(ctx, "N3w-MEBx!")
			} else {
				_, err = c.GeneralSettings(ctx)
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), hostPort(srv)) {
				t.Errorf("error does not say which device: %v", err)
			}
			tc.check(t, err)
		})
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := newClient(t, addr, nil)
	_, err = c.GeneralSettings(testContext(t))
	if !errors.Is(err, wsman.ErrUnreachable) || !wsman.Retryable(err) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
}

func TestCanceledContext(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		<-r.Context().Done()
	}))
	c := newClient(t, hostPort(srv), nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived // the request is at the device: now the caller gives up
		cancel()
	}()
	_, err := c.GeneralSettings(ctx)
	if !errors.Is(err, context.Canceled) || errors.Is(err, wsman.ErrUnreachable) {
		t.Fatalf("err = %v, want context.Canceled only", err)
	}
}

// TestEnumerationBounded: a device that never ends an enumeration is cut
// off after a bounded number of pulls.
func TestEnumerationBounded(t *testing.T) {
	pulls := 0
	var mu sync.Mutex
	srv := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), "enumeration/Enumerate<") {
			_, _ = w.Write(soapResponse(`<g:EnumerateResponse><g:EnumerationContext>C1</g:EnumerationContext></g:EnumerateResponse>`))
			return
		}
		mu.Lock()
		pulls++
		mu.Unlock()
		_, _ = w.Write(soapResponse(`<g:PullResponse><g:Items><h:CIM_SoftwareIdentity><h:InstanceID>AMT</h:InstanceID></h:CIM_SoftwareIdentity></g:Items></g:PullResponse>`))
	}))
	c := newClient(t, hostPort(srv), nil)
	_, err := c.SoftwareIdentities(testContext(t))
	if !errors.Is(err, wsman.ErrMalformedResponse) {
		t.Fatalf("err = %v, want ErrMalformedResponse", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if pulls != 256 {
		t.Fatalf("%d pulls, want the bound of 256", pulls)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []wsman.Config{
		{Address: ""},
		{Address: "10.0.0.1"},
		{Address: "10.0.0.1:http"},
		{Address: "10.0.0.1:70000"},
		{Address: ":16993"},
		{Address: "10.0.0.1:16993", Timeout: -time.Second},
		{Address: "10.0.0.1:16993", MaxResponseBytes: -1},
	} {
		if _, err := wsman.New(cfg); !errors.Is(err, wsman.ErrInvalidArgument) {
			t.Errorf("New(%+v) err = %v, want ErrInvalidArgument", cfg, err)
		}
	}
}

func isErr(want error) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("err = %v, want %v", err, want)
		}
	}
}

func bodyOf(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/soap+xml; charset=UTF-8")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// TestKeepAlive: sequential calls share one connection.
func TestKeepAlive(t *testing.T) {
	var (
		mu    sync.Mutex
		conns int
	)
	srv := httptestServerWithConnCount(t, &replay{tb: t, routes: fixtureRoutes}, func() { mu.Lock(); conns++; mu.Unlock() })
	c := newClient(t, srv, nil)
	ctx := testContext(t)
	for range 10 {
		if _, err := c.SetupAndConfiguration(ctx); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Fatalf("%d connections for 10 sequential calls, want 1", conns)
	}
}

func httptestServerWithConnCount(t *testing.T, h http.Handler, onNew func()) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			onNew()
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return hostPort(srv)
}
