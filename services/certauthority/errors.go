package certauthority

import "github.com/amtprov/amtprov/libs/admin"

// Reply codes of amt.v1.ca.sign besides admin's BAD_REQUEST, INTERNAL,
// UNAVAILABLE and TIMEOUT. Stable: the provisioner maps them to
// CA_POLICY_REJECTED.
const (
	CodeFQDNNotAllowed     = "POLICY_FQDN_NOT_ALLOWED"    // FQDN outside every allowed suffix
	CodeKeyTooSmall        = "KEY_TOO_SMALL"              // RSA key below Config.MinRSABits
	CodeKeyInvalid         = "KEY_INVALID"                // not a PKCS#1/SPKI RSA or ECDSA P-256/P-384 key
	CodePurposeNotAllowed  = "POLICY_PURPOSE_NOT_ALLOWED" // purpose other than device-tls
	CodeValidityNotAllowed = "POLICY_VALIDITY_NOT_ALLOWED"
)

// Codes of domain.add refusals (ImportError.Rule), one per firmware rule
// (PROTOCOL.md §6.1 item 3, §6.2).
const (
	CodePFXUnreadable   = "DOMAIN_PFX_UNREADABLE"  // not PKCS#12, or wrong password
	CodeChainTooShort   = "DOMAIN_CHAIN_TOO_SHORT" // fewer than 2 certificates
	CodeNotSetupCert    = "DOMAIN_NOT_SETUP_CERT"  // leaf has neither the Intel OID nor the setup OU
	CodeNoServerAuth    = "DOMAIN_NO_SERVER_AUTH"  // leaf EKU lacks serverAuth
	CodeNoRoot          = "DOMAIN_NO_ROOT"         // chain does not end in a self-signed root
	CodeKeyMismatch     = "DOMAIN_KEY_MISMATCH"    // private key is not the leaf's
	CodeExpired         = "DOMAIN_EXPIRED"         // a certificate is outside its validity period
	CodeSuffixMismatch  = "DOMAIN_SUFFIX_MISMATCH" // leaf names do not cover the suffix
	CodeDomainExists    = admin.CodeConflict       // a domain of that name exists (use replace)
	CodeDomainNotDevKey = "DOMAIN_NOT_DEV"         // create-dev on a name held by an imported chain
)
