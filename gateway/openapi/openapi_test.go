package openapi

import (
	"encoding/json"
	"strings"
	"testing"
)

type document struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
}

func parse(t *testing.T) (document, any) {
	t.Helper()
	var doc document
	if err := json.Unmarshal(Spec, &doc); err != nil {
		t.Fatalf("openapi.json does not parse: %v", err)
	}
	var raw any
	if err := json.Unmarshal(Spec, &raw); err != nil {
		t.Fatalf("openapi.json does not parse: %v", err)
	}
	return doc, raw
}

func TestVersion(t *testing.T) {
	doc, _ := parse(t)
	if doc.OpenAPI != "3.0.3" {
		t.Fatalf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
}

// TestContractPaths checks that every operation of the client contract
// (and natter's extensions) is described.
func TestContractPaths(t *testing.T) {
	doc, _ := parse(t)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/healthz"},
		{"GET", "/readyz"},
		{"GET", "/v1/me"},
		{"GET", "/v1/me/privacy"},
		{"GET", "/v1/me/blocks"},
		{"GET", "/v1/openapi.json"},
		{"POST", "/v1/auth/register"},
		{"POST", "/v1/auth/login"},
		{"POST", "/v1/auth/refresh"},
		{"GET", "/v1/me/devices"},
		{"DELETE", "/v1/me/devices/{device_id}"},
		{"PUT", "/v1/me/devices/{device_id}/push"},
		{"GET", "/v1/users/{user_id}"},
		{"GET", "/v1/users/by-username/{username}"},
		{"GET", "/v1/users/{user_id}/presence"},
		{"PUT", "/v1/me/privacy"},
		{"PUT", "/v1/me/blocks/{user_id}"},
		{"DELETE", "/v1/me/blocks/{user_id}"},
		{"POST", "/v1/conversations"},
		{"GET", "/v1/conversations"},
		{"GET", "/v1/conversations/{conversation_id}"}, // extension
		{"GET", "/v1/conversations/{conversation_id}/messages"},
		{"PUT", "/v1/conversations/{conversation_id}/mute"},
		{"POST", "/v1/messages"},
		{"POST", "/v1/messages/{message_id}/status"},
		{"DELETE", "/v1/messages/{message_id}"},
		{"POST", "/v1/groups"},
		{"GET", "/v1/groups/{group_id}"},
		{"POST", "/v1/groups/{group_id}/members"},
		{"DELETE", "/v1/groups/{group_id}/members/{user_id}"},
		{"PATCH", "/v1/groups/{group_id}"},
		{"PATCH", "/v1/groups/{group_id}/members/{user_id}"},
		{"GET", "/v1/messages/{message_id}/receipts"},
		{"GET", "/v1/events"},
		{"GET", "/v1/ws"},
		{"POST", "/v1/conversations/{conversation_id}/typing"}, // extension: HTTP-only clients
		{"POST", "/v1/presence/subscribe"},                     // extension: HTTP-only clients
		{"POST", "/v1/presence/unsubscribe"},                   // extension: HTTP-only clients
	} {
		ops, ok := doc.Paths[tc.path]
		if !ok {
			t.Errorf("%s %s: path missing", tc.method, tc.path)
			continue
		}
		if _, ok := ops[strings.ToLower(tc.method)]; !ok {
			t.Errorf("%s %s: method missing", tc.method, tc.path)
		}
	}
}

// TestOperations checks what every operation must have: an operationId, a
// 2xx or 101 answer, the error body on every 4xx/5xx, and a Retry-After
// header on 429.
func TestOperations(t *testing.T) {
	doc, _ := parse(t)
	seen := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			var op struct {
				OperationID string `json:"operationId"`
				Responses   map[string]struct {
					Headers map[string]json.RawMessage `json:"headers"`
					Content map[string]json.RawMessage `json:"content"`
				} `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Errorf("%s %s: %v", method, path, err)
				continue
			}
			if op.OperationID == "" || seen[op.OperationID] {
				t.Errorf("%s %s: missing or duplicate operationId %q", method, path, op.OperationID)
			}
			seen[op.OperationID] = true
			success := false
			for status, r := range op.Responses {
				switch {
				case status == "101" || status[0] == '2':
					success = true
				case path == "/healthz":
				default:
					if _, ok := r.Content["application/json"]; !ok {
						t.Errorf("%s %s: %s has no error body", method, path, status)
					}
				}
				if status == "429" && r.Headers["Retry-After"] == nil {
					t.Errorf("%s %s: 429 without Retry-After", method, path)
				}
			}
			if !success {
				t.Errorf("%s %s: no success response", method, path)
			}
		}
	}
}

// TestRefs checks that every $ref points at something in the document.
func TestRefs(t *testing.T) {
	_, raw := parse(t)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				if resolve(raw, ref) == nil {
					t.Errorf("unresolved $ref %q", ref)
				}
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(raw)
}

func resolve(doc any, ref string) any {
	if !strings.HasPrefix(ref, "#/") {
		return nil
	}
	cur := doc
	for _, part := range strings.Split(ref[2:], "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		if cur, ok = m[part]; !ok {
			return nil
		}
	}
	return cur
}
