module github.com/amtprov/amtprov/services/discovery

go 1.26.0

require github.com/amtprov/amtprov/libs v0.0.0 // indirect

replace github.com/amtprov/amtprov/libs => ../../libs

require (
	github.com/amtprov/amtprov/tools/amtsim v0.0.0
	go.uber.org/goleak v1.3.0
)

require (
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/time v0.16.0
)

replace github.com/amtprov/amtprov/tools/amtsim => ../../tools/amtsim
