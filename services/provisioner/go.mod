module github.com/amtprov/amtprov/services/provisioner

go 1.26

require github.com/amtprov/amtprov/libs v0.0.0

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.opentelemetry.io/otel v1.47.0 // indirect
	go.opentelemetry.io/otel/trace v1.47.0 // indirect
)

replace github.com/amtprov/amtprov/libs => ../../libs
