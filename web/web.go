// Package web is natter's web app: static files embedded in the binary
// and served at /, talking to the same REST and WebSocket API as any
// client (docs/protocol.md). Plain JavaScript modules, no framework and
// no build step, so what is served is what is in web/static.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var files embed.FS

// Handler serves the app: GET / is the page, /static/... its files.
func Handler() http.Handler {
	static, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	fileServer := http.StripPrefix("/static/", http.FileServer(http.FS(static)))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		secure(w)
		http.ServeFileFS(w, r, static, "index.html")
	})
	mux.Handle("GET /static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secure(w)
		w.Header().Set("Cache-Control", "no-cache") // revalidate: a new binary may ship new files
		fileServer.ServeHTTP(w, r)
	}))
	return mux
}

// secure: the page runs only its own scripts and talks only to its own
// origin (REST and WebSocket); it cannot be framed.
func secure(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// Routes says which requests Handler serves: everything else is the API's.
func Routes(r *http.Request) bool {
	return r.Method == http.MethodGet && (r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/static/") && len(r.URL.Path) > len("/static/"))
}
