package certauthority_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/telemetry"
	ca "github.com/amtprov/amtprov/services/certauthority"
)

// BenchmarkSign is one device certificate end to end inside the service:
// key parse, policy (suffix query), RSA-3072 signature by the organisation
// CA, and the recording transaction (lock, supersede, insert, outbox).
// Transport (NATS round trip) excluded. Run with -benchtime=200x.
func BenchmarkSign(b *testing.B) {
	pool := storetest.New(b)
	svc, err := ca.NewService(context.Background(), ca.Config{AllowedSuffixes: []string{testSuffix}}, pool, keyringB(b), telemetry.Providers{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	_, pkcs1, _ := rsaPubB(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := svc.Sign(context.Background(), ca.SignRequest{UUID: devUUID(i), FQDN: fmt.Sprintf("amt-%d.%s", i, testSuffix), PublicKey: pkcs1}); err != nil {
			b.Fatal(err)
		}
	}
}
