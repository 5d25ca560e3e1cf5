package auth

import (
	"crypto/hmac"
	"crypto/sha256"
)

// DeriveKey returns a 32-byte key for purpose, derived from the signing
// key (HMAC-SHA256): other secrets of the server (the cursor key) live and
// rotate with the one key file every node of a deployment already shares,
// and knowing a derived key tells nothing of the signing key.
func (s *Signer) DeriveKey(purpose string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("natter derived key: " + purpose))
	return m.Sum(nil)
}
