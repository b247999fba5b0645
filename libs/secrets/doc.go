// Package secrets encrypts secrets at rest: device admin and MEBx passwords,
// provisioning and CA private keys, PPS values. It is an AES-256-GCM keyring
// (ARCHITECTURE.md "Security"): one active key seals, every key in the ring
// opens, so keys can be rotated by putting a new key first and re-sealing old
// rows at leisure (each sealed value names the key that sealed it).
//
// The additional authenticated data binds a ciphertext to its place: callers
// pass AAD(table, key, column), so a value copied into another row or column
// does not open. Device credentials, of which a device has several versions,
// use CredentialAAD (device, version, column) and OpenCredential.
//
// Keys come from the environment (LoadKeyring: AMTPROV_SECRET_KEYS or
// AMTPROV_SECRET_KEYS_FILE) in production, or from a key file DevKeyring
// creates for `amtprov dev`. Nothing in this package logs, and no error it
// returns contains key material or plaintext.
package secrets
