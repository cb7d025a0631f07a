//go:build !race

package router_test

// raceSlowdown scales the time bounds of the tests: 1 without the race
// detector.
const raceSlowdown = 1
