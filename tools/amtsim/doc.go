// Package amtsim runs a fleet of simulated Intel AMT devices on loopback
// addresses, faithful enough on the wire that a provisioning server written
// against real firmware cannot tell the difference (PROTOCOL.md §1-§9).
//
// Tests and `amtprov dev --simulate N` use it in-process through Start;
// the amtsim binary (cmd/amtsim) wraps the same API. Each device is a
// firmware.Device (state machine, WS-Man, digest auth) behind its own
// sockets: 16992 HTTP, 16993 TLS with the setup-mode TLS-PKI checks, UDP
// 623 RMCP, and a hello sender dialling the provisioning server from the
// device's address while it is in setup mode. A small JSON control API
// (ControlHandler) lists devices, injects faults and resets devices.
//
// Layout: fleetgen makes identities from a seed, listener owns the sockets
// and network-level faults, pkicheck the §6.1 chain rules, hello the
// hello schedule, rmcp the ping/pong codec, probes the per-second probe
// counts, control the HTTP control API.
package amtsim
