package main

import (
	"net/http"

	"github.com/natter-chat/natter/web"
)

// withWebApp serves the web app at / and /static/ beside the API.
func withWebApp(on bool, api http.Handler) http.Handler {
	if !on {
		return api
	}
	app := web.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if web.Routes(r) {
			app.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}
