// Package blocks moves content-addressed blocks between members:
// /dicomesh/blocks/1.0.0, a request-and-stream protocol for the verified
// blocks of a study DAG, and a Fetcher that pulls a whole DAG from several
// holders at once.
//
// A requester asks for up to MaxWant CIDs per request, on one long-lived
// stream per source; the source answers each CID in order with the block or
// "not here". Blocks are ciphertext (raw leaves) or opaque dag-pb nodes, so
// any member may serve any block it holds; only a granted recipient can
// decrypt a study.
//
// The Fetcher walks the DAG from its root: each block is hashed and checked
// against its CID on arrival before it is stored in the local blockstore,
// nodes are decoded for their links, and requests are spread over every
// source, each taking the next batch when it has answered the last. A source
// that fails, stalls past the idle timeout, lacks a block or sends a block
// that does not match its CID is dropped and its outstanding requests go to
// the others. Blocks already in the local store are never fetched again, so
// an interrupted fetch resumes where it stopped. Since the receiver verifies
// every block, a source reads its blocks without hashing them (a store that
// is a Reader), and a store that is a VerifiedPutter takes the fetched
// blocks without hashing them again.
//
// This protocol is the fast path for the same blocks boxo's bitswap would
// carry: one ordered stream per source avoids bitswap's want-list round
// trips, which here stalled or ran at a fraction of the link's speed.
package blocks
