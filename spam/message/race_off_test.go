//go:build !race

package message

const raceSlowdown = 1
