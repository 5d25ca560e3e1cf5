// Package torture holds natter's fault, abuse and load tests: kill -9 in
// a loop under load, consumer crashes, retries, a full stream, and a
// security sweep. Each test reports its figures (t.Logf, and the file
// given by -torture.report). They run the real binary through
// internal/testnode and take minutes, so they sit behind a build tag:
//
//	go test -tags torture -race -count=1 ./torture/ -torture.duration=60s
//
// docs/reliability.md lists the tests, their latest figures and what
// they prove.
package torture
