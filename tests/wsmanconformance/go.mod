module github.com/amtprov/amtprov/tests/wsmanconformance

go 1.26

replace (
	github.com/amtprov/amtprov/libs => ../../libs
	github.com/amtprov/amtprov/tools/amtsim => ../../tools/amtsim
)

require (
	github.com/amtprov/amtprov/libs v0.0.0
	github.com/amtprov/amtprov/tools/amtsim v0.0.0
	github.com/open-amt-cloud-toolkit/go-wsman-messages v1.8.1
	go.uber.org/goleak v1.3.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.opentelemetry.io/otel v1.47.0 // indirect
	go.opentelemetry.io/otel/trace v1.47.0 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
