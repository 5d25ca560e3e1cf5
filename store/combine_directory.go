package store

import (
	"context"
	"fmt"
)

// Accounts live on the user side, so the operator's user listing is
// that side's; every user-side adapter (SQLite, PostgreSQL) has it.

func (c *combined) ListUsers(ctx context.Context, prefix, after string, limit int) ([]UserListing, error) {
	d, ok := c.UserSide.(UserDirectory)
	if !ok {
		return nil, fmt.Errorf("list users: the user store has no directory: %w", ErrUnavailable)
	}
	return d.ListUsers(ctx, prefix, after, limit)
}

func (c *combined) DeviceActivity(ctx context.Context, userID string) ([]DeviceActivity, error) {
	d, ok := c.UserSide.(UserDirectory)
	if !ok {
		return nil, fmt.Errorf("devices of %s: the user store has no directory: %w", userID, ErrUnavailable)
	}
	return d.DeviceActivity(ctx, userID)
}
