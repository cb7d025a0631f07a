//go:build race

package router_test

// raceSlowdown scales the time bounds of the tests: the race detector
// makes the code several times slower.
const raceSlowdown = 10
