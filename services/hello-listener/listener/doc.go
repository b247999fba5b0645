// Package listener is the hello intake of amtprov: a TCP server on which
// Intel AMT firmware in setup mode connects, writes one hello and closes
// (PROTOCOL.md §4.1). Each valid hello becomes one
// amt.v1.device.hello.<uuid> event; anything else is counted by reason,
// logged at a bounded rate, and never reaches the bus.
//
// Defences, because every byte is untrusted: a read deadline per
// connection, a 16 KiB cap, a cap on concurrent connections, and a token
// bucket per source IP. An HTTP GET on the same port gets a small plain
// status page, as MeshCentral's hello server does, so operators can probe it.
package listener
