// Package amt holds the Intel AMT facts every amtprov component shares: the
// setup-mode "hello" packet codec (PROTOCOL.md §4), PID/PPS checksums (§5),
// root-certificate hashes, device UUIDs in SMBIOS byte order (§4.5) and the
// provisioning states and control modes of §2.
//
// It does no I/O. The hello listener decodes with it, the simulator and
// `amtprov hello send` encode with it.
package amt
