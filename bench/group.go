package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// runGroup is the group scenario: --groups groups of --members members,
// every member connected; in each group one member sends at --rate
// messages per second (open loop) and every other member must get each
// message once. Delivery latency is per (message, member): its p99 over
// a group of 500 is the send-to-last-member time of the slow messages.
func runGroup(ctx context.Context, e *env) (*Report, error) {
	cfg := e.cfg
	r := e.newReport("group", map[string]any{
		"groups":         cfg.Groups,
		"members":        cfg.Members,
		"rate_per_group": cfg.Rate,
		"size":           cfg.Size,
		"warmup":         cfg.Warmup.String(),
	})
	accts, err := e.newAccounts(ctx, cfg.Groups*cfg.Members)
	if err != nil {
		return nil, err
	}
	groups := make([]string, cfg.Groups)
	for g := range groups {
		members := accts[g*cfg.Members : (g+1)*cfg.Members]
		if groups[g], err = e.api.createGroup(ctx, members); err != nil {
			return nil, err
		}
	}
	l := NewLedger(e.runID, e.errs)
	conns, err := e.connectAll(ctx, accts, func(a account) func(*inbound, time.Time) { return ledgerHandler(l, a.UserID) })
	if err != nil {
		return nil, err
	}
	defer closeAll(conns)

	p := planLoad(cfg.Groups, cfg.Rate, cfg.Warmup, cfg.Duration)
	senders := make([]loadSender, cfg.Groups)
	for g := range senders {
		members := accts[g*cfg.Members : (g+1)*cfg.Members]
		var recipients []string
		for _, m := range members[1:] {
			recipients = append(recipients, m.UserID)
		}
		senders[g] = loadSender{
			conn:        conns[g*cfg.Members],
			flow:        l.AddFlow(members[0].UserID, recipients, p.Scheds[g], p.measureFrom(p.Scheds[g])),
			recipientID: groups[g],
			messageType: "group",
		}
	}
	l.Seal()
	if err := e.runLoad(ctx, l, senders, p, r); err != nil {
		return nil, fmt.Errorf("run load: %w", err)
	}
	return r, nil
}

// createGroup makes a group of members, the first its admin, and returns
// its id.
func (a *api) createGroup(ctx context.Context, members []account) (string, error) {
	ids := make([]string, 0, len(members)-1)
	for _, m := range members[1:] {
		ids = append(ids, m.UserID)
	}
	body, _ := json.Marshal(map[string]any{"name": "bench", "member_ids": ids})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base.JoinPath("/v1/groups").String(), bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+members[0].Token)
	resp, err := a.hc.Do(req)
	if err != nil {
		a.errs.Note("http", err.Error())
		return "", fmt.Errorf("create group: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		e := &apiError{Status: resp.StatusCode, Code: responseCode(resp.StatusCode, resp.Body)}
		a.errs.Note(e.Code, "POST /v1/groups")
		return "", fmt.Errorf("create group: %w", e)
	}
	var out struct {
		GroupID string `json:"group_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.GroupID == "" {
		return "", fmt.Errorf("create group: answer without group_id: %v", err)
	}
	return out.GroupID, nil
}
