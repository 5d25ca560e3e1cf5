package operator

// The operator API's wire types: each request is one JSON object, each
// answer one JSON object or {"error": {"code", "message"}} (codes of
// schema: bad_request, not_found, unavailable, internal). Times are ms
// since the epoch, 0 for never.

// ListUsersRequest asks for users whose username starts with Match, after
// the username After, at most Limit (default 50, at most 1000).
type ListUsersRequest struct {
	Match string `json:"match,omitempty"`
	After string `json:"after,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

// UserRow is one user of a listing.
type UserRow struct {
	UserID    string `json:"user_id"`
	Username  string `json:"username"`
	CreatedAt int64  `json:"created_at"`
	// Devices counts the active (not revoked) devices.
	Devices     int   `json:"devices"`
	LastLoginAt int64 `json:"last_login_at"`
	// Online and LastSeen are the user's presence across the cluster,
	// unfiltered by their privacy settings (operators see it all).
	Online   bool  `json:"online"`
	LastSeen int64 `json:"last_seen,omitempty"`
}

// ListUsersReply is a page of users; Next, when set, is the After of the
// following page.
type ListUsersReply struct {
	Users []UserRow `json:"users"`
	Next  string    `json:"next,omitempty"`
}

// UserRequest names one user by username or user id.
type UserRequest struct {
	User string `json:"user"`
}

// DeviceRow is one device (login) of a user.
type DeviceRow struct {
	DeviceID      string `json:"device_id"`
	Name          string `json:"name"`
	CreatedAt     int64  `json:"created_at"`
	LastRefreshAt int64  `json:"last_refresh_at"`
	RevokedAt     int64  `json:"revoked_at,omitempty"`
}

// UserGroupRow is one group a user is a member of.
type UserGroupRow struct {
	GroupID string `json:"group_id"`
	Name    string `json:"name"`
	Role    string `json:"role"`
	Members int    `json:"members"`
}

// UserReply is one user in full.
type UserReply struct {
	UserRow
	LastSeenPrivacy string      `json:"last_seen_privacy"`
	OnlinePrivacy   string      `json:"online_privacy"`
	DeviceList      []DeviceRow `json:"device_list"`
	// Blocks counts the users this user has blocked.
	Blocks int            `json:"blocks"`
	Groups []UserGroupRow `json:"groups"`
	// GroupsKnown is false when the store has no groups (Cassandra).
	GroupsKnown bool `json:"groups_known"`
}

// RevokeDeviceRequest revokes one device of a user: its tokens stop
// working and its connections close (4001), as DELETE /v1/me/devices/{id}
// would.
type RevokeDeviceRequest struct {
	User     string `json:"user"`
	DeviceID string `json:"device_id"`
}

// RevokeDeviceReply confirms a revocation.
type RevokeDeviceReply struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	Revoked  bool   `json:"revoked"`
}

// ListGroupsRequest asks for groups with ids after After, at most Limit.
type ListGroupsRequest struct {
	After string `json:"after,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

// GroupRow is one group of a listing.
type GroupRow struct {
	GroupID       string `json:"group_id"`
	Name          string `json:"name"`
	Members       int    `json:"members"`
	CreatedBy     string `json:"created_by"`          // user id
	CreatedByName string `json:"created_by_username"` // "" when the user is gone
	CreatedAt     int64  `json:"created_at"`
	LastMessageAt int64  `json:"last_message_at"`
	LastSeq       int64  `json:"last_seq"`
}

// ListGroupsReply is a page of groups; Next is the After of the next.
type ListGroupsReply struct {
	Groups []GroupRow `json:"groups"`
	Next   string     `json:"next,omitempty"`
}

// GroupRequest names one group by id.
type GroupRequest struct {
	GroupID string `json:"group_id"`
}

// MemberRow is one current member of a group.
type MemberRow struct {
	UserID   string `json:"user_id"`
	Username string `json:"username"`
	Role     string `json:"role"`
	JoinedAt int64  `json:"joined_at"`
}

// GroupReply is one group with its members, longest-standing first.
type GroupReply struct {
	GroupRow
	MemberList []MemberRow `json:"member_list"`
}

// ErrorReply is a refused request.
type ErrorReply struct {
	Error *ErrorBody `json:"error"`
}

// ErrorBody is the error's code and message, as in REST error bodies.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
