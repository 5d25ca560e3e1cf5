// Package migrations holds the SQLite adapter's embedded SQL migrations,
// named NNNN_description.sql (read with store/migration).
package migrations

import "embed"

// SQLite holds the SQLite adapter's migrations at the root of the file
// system.
//
//go:embed *.sql
var SQLite embed.FS
