package gateway

import (
	"net/http"
	"slices"
)

// CORS headers natter allows and exposes: what a web app on another
// origin needs to call the REST API with a bearer token.
const (
	corsAllowHeaders  = "Authorization, Content-Type"
	corsAllowMethods  = "GET, POST, PUT, PATCH, DELETE"
	corsExposeHeaders = "Retry-After"
	corsMaxAge        = "600"
)

// cors answers preflights and marks answers readable for the origins in
// --allowed-origins (the server's own origin needs no CORS). Tokens
// travel in the Authorization header, never in cookies, so no
// credentials mode is allowed.
func (g *Gateway) cors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || !slices.Contains(g.cfg.AllowedOrigins, origin) {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Add("Vary", "Origin")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			w.Header().Set("Access-Control-Allow-Methods", corsAllowMethods)
			w.Header().Set("Access-Control-Allow-Headers", corsAllowHeaders)
			w.Header().Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Access-Control-Expose-Headers", corsExposeHeaders)
		h.ServeHTTP(w, r)
	})
}
