module github.com/amtprov/amtprov/tools/amtsim

go 1.26

require github.com/amtprov/amtprov/libs v0.0.0

require (
	github.com/open-amt-cloud-toolkit/go-wsman-messages v1.8.1 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	golang.org/x/net v0.62.0 // indirect
)

replace github.com/amtprov/amtprov/libs => ../../libs
