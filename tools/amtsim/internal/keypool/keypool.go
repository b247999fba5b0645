// Package keypool hands simulated devices RSA-2048 keys for
// AMT_PublicKeyManagementService.GenerateKeyPair. Real firmware makes a
// fresh key each time; generating 10,000 would take minutes, so the fleet
// shares a small pool, each key made the first time its slot is used
// (ISSUE 3 item 5 allows this).
package keypool

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"sync"
	"sync/atomic"
)

// Bits is the key size AMT provisioning asks for (GenerateKeyPair(0, 2048)).
const Bits = 2048

type slot struct {
	once sync.Once
	key  *rsa.PrivateKey
	err  error
}

// Pool is a firmware.KeySource. It is safe for concurrent use.
type Pool struct {
	slots []slot
	next  atomic.Uint64
}

// New makes a pool of size keys (at least 1), none generated yet.
func New(size int) *Pool {
	if size < 1 {
		size = 1
	}
	return &Pool{slots: make([]slot, size)}
}

// Key returns the pool's keys round-robin, generating a slot's key on its
// first use.
func (p *Pool) Key() (*rsa.PrivateKey, error) {
	s := &p.slots[(p.next.Add(1)-1)%uint64(len(p.slots))]
	s.once.Do(func() {
		s.key, s.err = rsa.GenerateKey(rand.Reader, Bits)
		if s.err != nil {
			s.err = fmt.Errorf("generate RSA-%d key: %w", Bits, s.err)
		}
	})
	return s.key, s.err
}
