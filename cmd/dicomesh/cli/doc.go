// Package cli implements the dicomesh command line. It is a thin client of
// package node: it parses flags, opens the node on its home directory, calls
// it and prints the result. The command names and flags are a contract that
// scripts outside the repository rely on; extend them, never rename.
//
// Exit codes: 0 success, 1 failure, 2 usage error, 3 completed but some input
// was rejected.
package cli
