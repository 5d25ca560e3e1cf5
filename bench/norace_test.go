//go:build !race

package bench

// residentFactor is how much RSS a byte of heap costs (see race_test.go).
const residentFactor = 1
