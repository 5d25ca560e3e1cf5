package main

import (
	"context"
	"fmt"
	"os"
	"time"

	nclient "github.com/natter-chat/natter/client"
)

// cliRegister creates an account; it does not log in.
func cliRegister(ctx context.Context, args []string, cio cliIO) error {
	p := newPersonFlags("register", "[--server URL] USERNAME  (the password from the terminal, or a line on stdin)")
	pos, err := p.parse(args, 1, 1)
	if err != nil {
		return err
	}
	st, err := openCredentialStore()
	if err != nil {
		return err
	}
	creds, _ := st.load()
	pw, err := readPassword(cio, "password for "+pos[0]+" (at least 8 characters): ")
	if err != nil {
		return err
	}
	c := nclient.New(p.serverURL(creds), nclient.Options{})
	u, err := c.Register(ctx, pos[0], pw)
	switch nclient.Code(err) {
	case "":
	case "username_taken":
		return fmt.Errorf("username %s is taken: pick another", pos[0])
	case "bad_request":
		return fmt.Errorf("%w (usernames: 3-32 of a-z 0-9 _ . ; passwords: at least 8 characters)", err)
	}
	if err != nil {
		return fmt.Errorf("register on %s: %w", c.BaseURL(), err)
	}
	if *p.json {
		return printJSON(cio.out, u)
	}
	fmt.Fprintf(cio.out, "registered %s (user id %s) on %s; now: natter login %s\n", u.Username, u.UserID, c.BaseURL(), u.Username)
	return nil
}

// cliLogin logs in as a new device and stores its tokens.
func cliLogin(ctx context.Context, args []string, cio cliIO) error {
	p := newPersonFlags("login", "[--server URL] [--device NAME] USERNAME  (the password from the terminal, or a line on stdin)")
	host, _ := os.Hostname()
	device := p.fs.String("device", "natter CLI on "+host, "a name for this device, shown in the list of devices")
	pos, err := p.parse(args, 1, 1)
	if err != nil {
		return err
	}
	st, err := openCredentialStore()
	if err != nil {
		return err
	}
	old, err := st.load()
	if err != nil {
		return err
	}
	pw, err := readPassword(cio, "password for "+pos[0]+": ")
	if err != nil {
		return err
	}
	c := nclient.New(p.serverURL(old), nclient.Options{})
	sess, err := c.Login(ctx, pos[0], pw, *device)
	if nclient.Code(err) == "unauthorized" {
		return fmt.Errorf("wrong username or password for %s on %s", pos[0], c.BaseURL())
	}
	if err != nil {
		return fmt.Errorf("log in on %s: %w", c.BaseURL(), err)
	}
	creds := credentials{Server: c.BaseURL(), Username: pos[0], Session: sess}
	// The old login is another device: revoke it rather than leave its
	// tokens working with nobody holding them (best effort: it may be on
	// another server, or revoked already).
	if old != nil && old.DeviceID != sess.DeviceID {
		oc := nclient.New(old.Server, nclient.Options{Session: old.Session, Shared: st.sharedRefresh})
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = oc.RevokeDevice(rctx, old.DeviceID)
		cancel()
	}
	if err := st.forget(); err != nil {
		return err
	}
	if err := st.save(creds); err != nil {
		return err
	}
	if *p.json {
		return printJSON(cio.out, map[string]string{"server": creds.Server, "user_id": sess.UserID, "device_id": sess.DeviceID, "credentials": st.path()})
	}
	fmt.Fprintf(cio.out, "logged in as %s on %s (device %s); tokens in %s\n", pos[0], creds.Server, sess.DeviceID, st.path())
	return nil
}

// cliLogout revokes this device on the server and forgets its tokens.
func cliLogout(ctx context.Context, args []string, cio cliIO) error {
	p := newPersonFlags("logout", "")
	if _, err := p.parse(args, 0, 0); err != nil {
		return err
	}
	c, st, err := p.session()
	if err != nil {
		return err
	}
	err = c.RevokeDevice(ctx, c.Session().DeviceID)
	// A device the server no longer accepts is as good as revoked.
	if err != nil && nclient.Code(err) != "unauthorized" {
		return fmt.Errorf("revoke this device on %s: %w (tokens kept; try again)", c.BaseURL(), err)
	}
	if err := st.forget(); err != nil {
		return err
	}
	fmt.Fprintf(cio.out, "logged out: device %s revoked, %s removed\n", c.Session().DeviceID, st.path())
	return nil
}

// cliWhoami says who is logged in, checking with the server.
func cliWhoami(ctx context.Context, args []string, cio cliIO) error {
	p := newPersonFlags("whoami", "")
	if _, err := p.parse(args, 0, 0); err != nil {
		return err
	}
	c, st, err := p.session()
	if err != nil {
		return err
	}
	me, err := c.Me(ctx)
	if err != nil {
		return explain(err)
	}
	if *p.json {
		return printJSON(cio.out, map[string]string{"server": c.BaseURL(), "user_id": me.UserID, "username": me.Username, "device_id": me.DeviceID, "credentials": st.path()})
	}
	fmt.Fprintf(cio.out, "%s (user id %s) on %s, device %s; tokens in %s\n", me.Username, me.UserID, c.BaseURL(), me.DeviceID, st.path())
	return nil
}
