package firmware

// Design notes (what a reader of the simulator will want to know first).
//
// State machine. A Device starts in setup mode (InProvisioning) or, with
// Config.Provisioned, in post-provisioning/ACM with TLS on (another
// console's certificate, AcceptNonSecureConnections true as MeshCentral
// sets it). The settings store has a committed copy (in effect: TLS,
// certificate, admin credentials) and a working copy (what WS-Man reads
// and writes). In setup mode every write is staged; CommitChanges checks
// that the admin ACL and a new MEBx password are set and that enabled TLS
// has a credential context (else DATA_MISSING, 2057), copies the working
// copy over and moves to PostProvisioning/ACM. After provisioning, writes
// take effect at once except TLS settings and the credential context,
// which still wait for CommitChanges. Reboot drops the working copy;
// Unprovision goes to PreProvisioning with factory settings; Reset opens
// the setup window again.
//
// Authorisation. WS-Man is served to the mutually authenticated TLS
// session of remote configuration (request over TLS with peer
// certificates, device InProvisioning: the listener has verified the
// chain) or to HTTP digest with the committed admin credentials. Setup
// mode exposes the discovery surface (banner, 303, 401 on /index.htm) and
// nothing else: there are no credentials a digest could match.
//
// Wire fidelity. Responses are rendered from property lists modelled on
// shared/fixtures/wsman-responses (prefixes a..h, Action …Response,
// RelatesTo, EPR selectors, fault prefixes of a real AMT fault); the
// fixture walk test holds them to it. AMT_PublicPrivateKeyPair.DERKey is
// the base64 PKCS#1 RSAPublicKey, as the recorded fixture decodes and as
// MeshCommander expects (it strips the SubjectPublicKeyInfo header before
// comparing); PROTOCOL.md §6.3 calls it SubjectPublicKeyInfo, which the
// recording contradicts.
//
// Leniency, on purpose: methods are recognised by the Action's last path
// segment (go-wsman v1.8.1 sends RequestStateChange of AMT classes under a
// cim-schema/2 prefix), method input element names compare
// case-insensitively (SetAdminACLEntryEx_INPUT), digest nc may be eight hex
// digits or a bare counter and the digest uri may be the absolute URL
// (go-wsman's first attempt). Strictness, on purpose: Put and Create bodies
// must be the class element, so go-wsman v1.8.1's un-namespaced
// TLSSettingData/RedirectionService Put bodies get a SOAP fault.
//
// Device faults: transient_5xx answers 503 before authentication; slow adds
// three seconds per WS-Man call; wrong_password makes every digest fail;
// reboot makes the device reboot when CommitChanges arrives in setup mode
// (staged settings lost, connection dropped without an answer).
