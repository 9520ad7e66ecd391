// Package frame is the framing of the federation's request and response
// protocols: a uvarint length, then that many bytes, the length checked
// against a limit before anything is allocated.
package frame
