package main

import (
	"context"
	"time"
)

// jaegerAddrs are the loopback endpoints of the Jaeger `amtprov up` runs.
type jaegerAddrs struct {
	otlpHTTP  string // OTLP/HTTP receiver, where services send spans
	otlpGRPC  string
	queryHTTP string // UI and /api/traces
	queryGRPC string
	health    string
}

// startJaeger runs bin with deploy/jaeger/config.yaml (in-memory storage,
// loopback only) on free ports and waits until its query API answers.
func startJaeger(ctx context.Context, bin, confPath, logDir string, timeout time.Duration, onStart func(*upProc)) (jaegerAddrs, error) {
	addrs, err := freeAddrs("127.0.0.1", 5)
	if err != nil {
		return jaegerAddrs{}, err
	}
	a := jaegerAddrs{otlpHTTP: addrs[0], otlpGRPC: addrs[1], queryHTTP: addrs[2], queryGRPC: addrs[3], health: addrs[4]}
	env := []string{
		"JAEGER_OTLP_HTTP=" + a.otlpHTTP,
		"JAEGER_OTLP_GRPC=" + a.otlpGRPC,
		"JAEGER_QUERY_HTTP=" + a.queryHTTP,
		"JAEGER_QUERY_GRPC=" + a.queryGRPC,
		"JAEGER_HEALTH_HTTP=" + a.health,
	}
	p, err := startUpProc("jaeger", bin, []string{"--config", confPath}, env, logDir)
	if err != nil {
		return a, err
	}
	onStart(p)
	return a, p.waitHTTP(ctx, "http://"+a.queryHTTP+"/api/services", timeout)
}
