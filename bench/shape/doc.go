// Package shape is a command, a TCP proxy that makes a loopback connection
// behave like a wide-area link: each direction is limited to a rate and delayed by half
// a round-trip time, and the bytes in flight are bounded by the link's
// bandwidth-delay product plus a queue, so that a sender feels the link as
// it would a real one. It stands in for netem on machines whose kernel has
// none, for the shaped-link runs of bench/transfer.sh.
//
//	shape -listen 127.0.0.1:9000 -to 127.0.0.1:4801 -rate 100mbit -rtt 40ms
//
// It serves until SIGTERM or SIGINT, then prints the connections and bytes
// it carried on stderr. What it does not model: loss, jitter,
// and the kernel's TCP between the proxy and its two ends (loopback).
package main
