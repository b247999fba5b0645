module github.com/amtprov/amtprov/services/discovery

go 1.26

require github.com/amtprov/amtprov/libs v0.0.0

replace github.com/amtprov/amtprov/libs => ../../libs
