package chat

import "time"

// DeviceRevoked says whether the device was revoked; transports whose
// login outlives a request (NATS-native) check it on every request.
func (a *Accounts) DeviceRevoked(deviceID string) bool { return a.revoke.IsRevoked(deviceID) }

// TokenTTL is how long an access token lives.
func (a *Accounts) TokenTTL() time.Duration { return a.signer.TTL() }
