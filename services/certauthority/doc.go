// Package certauthority is amtprov's certificate authority (issue 4 item 1).
//
// It has two jobs:
//
//   - The organisation CA (RSA-3072, created by the first replica to start,
//     under a PostgreSQL advisory lock, and loaded by every other; private key
//     sealed with libs/secrets) signs device TLS certificates on request/reply
//     subject amt.v1.ca.sign (queue group "certauthority", so replicas share
//     the load). The provisioner calls it through Client.Sign with the public
//     key it read from the device (AMT_PublicPrivateKeyPair.DERKey, a PKCS#1
//     RSAPublicKey; SubjectPublicKeyInfo is accepted too). Policy: the FQDN
//     must lie inside an allowed DNS suffix (Config.AllowedSuffixes, plus the
//     suffixes of the provisioning domains unless disabled), an RSA key must
//     have at least 2048 bits, and a device has at most one active
//     certificate per purpose: issuing one supersedes the previous
//     (certificates.superseded_at/by). Every certificate is recorded in
//     `certificates` and announced as amt.v1.cert.issued.<uuid> through the
//     outbox in the same transaction.
//
//   - Provisioning domains (PROTOCOL.md §6): the certificate chains the
//     provisioner presents to a device in setup mode. domain.create-dev issues
//     a development chain (root + leaf with OU "Intel(R) Client Setup
//     Certificate", EKU serverAuth + 2.16.840.1.113741.1.2.3, CN and SAN =
//     suffix, §6.2); domain.add imports a vendor PFX and refuses what firmware
//     would refuse, naming the rule (ImportError). LoadProvisioningDomains
//     gives the provisioner the chains with their decrypted keys.
//
// Layering follows go-kit: Service holds the logic, endpoints.go turns its
// methods into endpoints, and libs/admin serves them over go-kit's NATS
// transport with the one error encoder of that package. cmd/certauthority
// and `amtprov dev` build the service with New and run it with Run.
package certauthority
