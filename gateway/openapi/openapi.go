// Package openapi embeds natter's OpenAPI 3.0.3 description of the REST
// API, served at GET /v1/openapi.json. The document is written by hand
// to match the client contract (shared/protocol.md) and docs/protocol.md;
// openapi_test.go checks that it lists every path of the contract.
package openapi

import _ "embed"

// Spec is the OpenAPI document, as served. Callers must not modify it.
//
//go:embed openapi.json
var Spec []byte
