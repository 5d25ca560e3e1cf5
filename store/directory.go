package store

import "context"

// UserListing is one row of an operator's user list.
type UserListing struct {
	User
	// Devices counts the active (not revoked) devices.
	Devices int
	// LastLoginAt is when the newest device was created (every login is
	// a new device), 0 for a user who never logged in.
	LastLoginAt int64
}

// DeviceActivity is one device of a user as an operator sees it.
type DeviceActivity struct {
	Device
	// LastRefreshAt is when its refresh token was last rotated (the
	// client came back after its access token expired), 0 when never.
	LastRefreshAt int64
}

// UserDirectory lists accounts for operators (natter users). It reads
// across users, which nothing on a user's path does; only the operator
// API calls it. On combined stores it lives on the user side.
type UserDirectory interface {
	// ListUsers lists up to limit users whose username starts with
	// prefix ("" matches all) and sorts after after ("" starts at the
	// first), in username order.
	ListUsers(ctx context.Context, prefix, after string, limit int) ([]UserListing, error)
	// DeviceActivity lists every device of userID, revoked ones too,
	// oldest first; none (no error) for an unknown user.
	DeviceActivity(ctx context.Context, userID string) ([]DeviceActivity, error)
}

// GroupListing is one row of an operator's group list.
type GroupListing struct {
	Group
	// LastMessageAt is the server time of the group's last message, 0
	// when it has none; LastSeq its conversation's last seq.
	LastMessageAt int64
	LastSeq       int64
}

// UserGroup is one group a user is a current member of.
type UserGroup struct {
	Group
	Role string
}

// GroupDirectory lists groups for operators (natter groups).
type GroupDirectory interface {
	// ListGroups lists up to limit groups with ids after after ("" starts
	// at the first), in id order (ids are ULIDs: creation order).
	ListGroups(ctx context.Context, after string, limit int) ([]GroupListing, error)
	// UserGroups lists the groups userID is a current member of, in id
	// order, with their role; none for an unknown user.
	UserGroups(ctx context.Context, userID string) ([]UserGroup, error)
}
