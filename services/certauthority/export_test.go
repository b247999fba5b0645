package certauthority

import "crypto/x509"

// OrgKeyPKCS8ForTest exposes the organisation CA key so a test can check it
// never reaches the database in clear.
func (s *Service) OrgKeyPKCS8ForTest() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(s.caKey)
	if err != nil {
		panic(err)
	}
	return der
}
