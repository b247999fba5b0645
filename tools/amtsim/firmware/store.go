package firmware

import (
	"crypto"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
)

// Instance names firmware uses (fixtures under amt/tls, amt/publickey,
// amt/publicprivate).
const (
	tlsRemoteID     = "Intel(r) AMT 802.3 TLS Settings"
	tlsLocalID      = "Intel(r) AMT LMS TLS Settings"
	keyIDPrefix     = "Intel(r) AMT Key: Handle: "
	certIDPrefix    = "Intel(r) AMT Certificate: Handle: "
	tlsCollectionID = "TLSProtocolEndpoint Instances Collection"
	// gwmCollectionID is how GWM and MeshCentral spell the collection in
	// requests (PROTOCOL.md §7.6 [C]); firmware accepts both.
	gwmCollectionID = "TLSProtocolEndpointInstances Collection"

	maxKeyPairs     = 16 // GenerateKeyPair beyond this: MAX_LIMIT_REACHED
	maxCertificates = 32 // AddCertificate beyond this: MAX_LIMIT_REACHED
)

// PT_STATUS return values (PROTOCOL.md §2.4).
const (
	ptSuccess           = 0
	ptInternalError     = 1
	ptNotPermitted      = 16
	ptMaxLimitReached   = 23
	ptInvalidParameter  = 36
	ptInvalidPassword   = 2054
	ptDataMissing       = 2057
	ptDuplicate         = 2058
	ptInvalidKey        = 2062
	ptInvalidCert       = 2063
	ptCertKeyNotMatch   = 2064
	ptUnsupported       = 2066
	ptNotFound          = 2068
	hbsInvalidState     = 2 // IPS_HostBasedSetupService methods (§2.3)
	redirectionSOLIDER  = 32771
	redirectionDisabled = 32768
	optInAll            = 4294967295
)

// tlsSetting is one AMT_TLSSettingData instance.
type tlsSetting struct {
	enabled         bool
	acceptNonSecure bool
	mutualAuth      bool
	trustedCN       []string
}

type keyPair struct {
	handle int
	key    *rsa.PrivateKey
}

type certEntry struct {
	handle      int
	cert        *x509.Certificate
	trustedRoot bool
}

// store is the firmware's settings flash: one committed copy that is in
// effect and one working copy that WS-Man reads and writes. In setup mode
// every write lands in the working copy only and CommitChanges copies it
// over (PROTOCOL.md §6.1 item 5, §6.3 step 6); Reboot throws the working
// copy away. After provisioning, writes take effect at once except the TLS
// settings and credential context, which still wait for CommitChanges
// (§7.6, RPS tls.ts commits after the Put).
type store struct {
	adminUser string
	adminHA1  []byte // MD5(user:realm:password), 16 bytes; nil = not set

	mebxPassword string
	mebxChanged  bool

	hostname   string
	domainName string

	remoteTLS, localTLS tlsSetting

	keys     []keyPair
	certs    []certEntry
	nextKey  int
	nextCert int
	// tlsContext is the handle of the certificate AMT_TLSCredentialContext
	// points at, -1 when there is none.
	tlsContext int

	redirection     int // AMT_RedirectionService.EnabledState, 32768..32771
	listenerEnabled bool
	kvmEnabled      bool
	optInRequired   uint32
}

func (s store) clone() store {
	c := s
	c.adminHA1 = append([]byte(nil), s.adminHA1...)
	if s.adminHA1 == nil {
		c.adminHA1 = nil
	}
	c.remoteTLS.trustedCN = append([]string(nil), s.remoteTLS.trustedCN...)
	c.localTLS.trustedCN = append([]string(nil), s.localTLS.trustedCN...)
	c.keys = append([]keyPair(nil), s.keys...)
	c.certs = append([]certEntry(nil), s.certs...)
	return c
}

// factoryStore is the flash contents of a device fresh out of the factory
// (or after a full unprovision).
func factoryStore(cfg Config) store {
	return store{
		mebxPassword:    cfg.MEBxPassword,
		hostname:        cfg.Hostname,
		domainName:      cfg.DNSSuffix,
		localTLS:        tlsSetting{acceptNonSecure: true},
		tlsContext:      -1,
		redirection:     redirectionDisabled,
		listenerEnabled: false,
		kvmEnabled:      false,
		optInRequired:   optInAll,
	}
}

func (s *store) key(handle int) (keyPair, bool) {
	for _, k := range s.keys {
		if k.handle == handle {
			return k, true
		}
	}
	return keyPair{}, false
}

func (s *store) certByHandle(handle int) (certEntry, bool) {
	for _, c := range s.certs {
		if c.handle == handle {
			return c, true
		}
	}
	return certEntry{}, false
}

// keyFor finds the held key pair whose public key is pub.
func (s *store) keyFor(pub crypto.PublicKey) (keyPair, bool) {
	rp, ok := pub.(*rsa.PublicKey)
	if !ok {
		return keyPair{}, false
	}
	for _, k := range s.keys {
		if k.key.PublicKey.Equal(rp) {
			return k, true
		}
	}
	return keyPair{}, false
}

// serverCertificate builds the TLS certificate of the credential context,
// or nil when there is none.
func (s *store) serverCertificate() *tls.Certificate {
	if s.tlsContext < 0 {
		return nil
	}
	c, ok := s.certByHandle(s.tlsContext)
	if !ok {
		return nil
	}
	k, ok := s.keyFor(c.cert.PublicKey)
	if !ok {
		return nil
	}
	return &tls.Certificate{Certificate: [][]byte{c.cert.Raw}, PrivateKey: k.key, Leaf: c.cert}
}

// firmwareState is everything guarded by Device.mu that models the engine.
type firmwareState struct {
	state amt.ProvisioningState
	mode  amt.ControlMode

	committed store
	staged    store

	// selfSigned is what 16993 presents while no certificate is committed,
	// made on first use.
	selfSigned *tls.Certificate
	// clockOffset is the ME clock minus the host clock (time sync methods).
	clockOffset time.Duration
}

// provisionedStore is the flash of a device activated by another console:
// admin credentials, TLS on with a certificate of its own (issued by a CA
// that is not ours), redirection enabled.
func provisionedStore(cfg Config, key *rsa.PrivateKey) (store, error) {
	s := factoryStore(cfg)
	s.adminUser = cfg.AdminUser
	s.adminHA1 = digestHA1(cfg.AdminUser, cfg.Realm, cfg.AdminPassword)
	s.mebxChanged = true
	cert, err := selfSignedCert(key, cfg.Hostname+"."+cfg.DNSSuffix, "Other Console Root CA")
	if err != nil {
		return store{}, fmt.Errorf("making the certificate of the other console: %w", err)
	}
	s.keys = []keyPair{{handle: 0, key: key}}
	s.certs = []certEntry{{handle: 0, cert: cert.Leaf}}
	s.nextKey, s.nextCert = 1, 1
	s.tlsContext = 0
	// MeshCentral's policy (§6.3 step 5): TLS on, 16992 still answering.
	s.remoteTLS = tlsSetting{enabled: true, acceptNonSecure: true}
	s.redirection = redirectionSOLIDER
	s.listenerEnabled = true
	s.kvmEnabled = true
	return s, nil
}
