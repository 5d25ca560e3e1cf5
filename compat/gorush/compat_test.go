// Package gorush_test checks natter's gorush requests against gorush
// itself: what push/gorush.Build produces is decoded with gorush v1.22's
// own notify.RequestPush and passes its CheckMessage, field by field. It
// is a module of its own so that natter's go.mod does not carry gorush's
// dependencies; .ci/run runs it.
package gorush_test

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/appleboy/gorush/core"
	"github.com/appleboy/gorush/notify"

	"github.com/natter-chat/natter/push"
	"github.com/natter-chat/natter/push/gorush"
	"github.com/natter-chat/natter/store"
)

func notifications() []push.Notification {
	var ns []push.Notification
	for i, p := range []string{store.PlatformIOS, store.PlatformAndroid, store.PlatformIOS} {
		ns = append(ns, push.Notification{
			ID: "conv1-7:dev" + strconv.Itoa(i), DeviceID: "dev" + strconv.Itoa(i), Platform: p,
			Token: "token-" + strconv.Itoa(i), Title: "alice", Body: "héllo 👋", Badge: 3 + i,
			ThreadID: "conv1", CollapseID: "conv1", Priority: push.PriorityHigh,
			Data: map[string]string{push.DataConversationID: "conv1", push.DataMessageID: "conv1-7", push.DataCursor: "42"},
		})
	}
	return ns
}

func TestGorushDecodesAndAcceptsNatterRequests(t *testing.T) {
	ns := notifications()
	req, err := gorush.Build(ns)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var got notify.RequestPush
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields() // every field natter sends is one gorush knows
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("gorush cannot decode %s: %v", body, err)
	}
	if len(got.Notifications) != len(ns) {
		t.Fatalf("%d notifications, want %d", len(got.Notifications), len(ns))
	}
	for i, g := range got.Notifications {
		n := ns[i]
		if err := notify.CheckMessage(&g); err != nil {
			t.Errorf("notification %d: CheckMessage: %v", i, err)
		}
		wantPlatform := core.PlatFormIos
		if n.Platform == store.PlatformAndroid {
			wantPlatform = core.PlatFormAndroid
		}
		checks := []struct {
			field     string
			got, want any
		}{
			{"notif_id", g.ID, n.ID},
			{"tokens", len(g.Tokens) == 1 && g.Tokens[0] == n.Token, true},
			{"platform", g.Platform, wantPlatform},
			{"title", g.Title, n.Title},
			{"message", g.Message, n.Body},
			{"badge", g.Badge != nil && *g.Badge == n.Badge, true},
			{"thread-id", g.ThreadID, n.ThreadID},
			{"collapse_id", g.CollapseID, n.CollapseID},
			{"priority", g.Priority, "high"},
			{"data.conversation_id", g.Data[push.DataConversationID], "conv1"},
			{"data.message_id", g.Data[push.DataMessageID], "conv1-7"},
			{"data.cursor", g.Data[push.DataCursor], "42"},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("notification %d: %s = %v, want %v", i, c.field, c.got, c.want)
			}
		}
	}
}

// gorush refuses a notification without a token; natter never builds one,
// and this is the check that would catch it.
func TestCheckMessageRefusesWhatNatterMustNotSend(t *testing.T) {
	var bad notify.PushNotification
	if err := json.Unmarshal([]byte(`{"tokens": [""], "platform": 1, "message": "x"}`), &bad); err != nil {
		t.Fatal(err)
	}
	if notify.CheckMessage(&bad) == nil {
		t.Fatal("CheckMessage accepted an empty token: this test cannot tell a bad request")
	}
}
