//go:build race

package bench

// residentFactor is how much RSS a byte of heap costs: the race detector
// shadows the heap of a -race binary (the test binary, spawned as natter).
const residentFactor = 3
