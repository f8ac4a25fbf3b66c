//go:build race

package main

// raceEnabled: this test binary (and so a daemon it runs as itself) is
// built with the race detector, whose shadow memory inflates RSS.
const raceEnabled = true
