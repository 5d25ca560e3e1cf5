package main

import (
	"context"

	"github.com/natter-chat/natter/config"
	"github.com/natter-chat/natter/push"
	"github.com/natter-chat/natter/push/apns"
	"github.com/natter-chat/natter/push/fcm"
)

func apnsSender(cfg config.Push) (push.Sender, error) {
	return apns.New(apns.Config{KeyFile: cfg.APNsKey, KeyID: cfg.APNsKeyID, TeamID: cfg.APNsTeamID, Topic: cfg.APNsTopic,
		Host: cfg.APNsURL, Timeout: cfg.Timeout})
}

func fcmSender(ctx context.Context, cfg config.Push) (push.Sender, error) {
	return fcm.New(ctx, fcm.Config{CredentialsFile: cfg.FCMCredentials, Endpoint: cfg.FCMURL, Timeout: cfg.Timeout})
}
