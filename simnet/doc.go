// Package simnet runs a federation of dicomesh nodes inside one process:
// real nodes (stores on disk, libp2p hosts on loopback sockets, Raft over
// them), each with its own home in a folder. The demo, end-to-end tests and
// scale runs use it to stand a federation up in seconds.
//
// Start founds the federation at the first facility and has each other one
// join with an invitation from the first, the same way hospitals do, then
// waits until every member sees the others as voters under one leader.
package simnet
