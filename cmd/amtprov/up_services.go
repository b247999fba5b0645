package main

// upService is one row of the table of services `amtprov up` runs. Adding a
// service to the local cluster is one row here (plus its user in
// deploy/nats/accounts.conf).
type upService struct {
	name    string // binary under the bin dir, NATS user, OpenTelemetry service name
	opsEnv  string // variable naming its /healthz, /readyz, /metrics address
	db      bool   // gets DATABASE_URL
	secrets bool   // gets AMTPROV_SECRET_KEYS_FILE (the run's keyring)
	hello   bool   // takes hellos: gets HELLO_ADDR
}

// upServices lists the services in start order; `amtprov up` stops them in
// the reverse order (the hello listener first, so intake stops before the
// services behind it).
func upServices() []upService {
	return []upService{
		{name: "certauthority", opsEnv: "OPS_ADDR", db: true, secrets: true},
		{name: "inventory", opsEnv: "API_ADDR", db: true},
		{name: "provisioner", opsEnv: "OPS_ADDR", db: true, secrets: true},
		{name: "discovery", opsEnv: "OPS_ADDR", db: true, secrets: true},
		{name: "hello-listener", opsEnv: "OPS_ADDR", hello: true},
	}
}
