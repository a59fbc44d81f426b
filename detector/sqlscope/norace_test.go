//go:build !race

package sqlscope_test

const raceEnabled = false
