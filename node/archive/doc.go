// Package archive is a facility's local study store.
//
// Each instance is compressed where that helps, encrypted to its study's key
// (age, streaming) and chunked into content-addressed blocks (CIDv1, sha2-256,
// raw leaves) in a boxo blockstore on disk. A study is a DAG whose root links
// the encrypted instances under opaque names and one encrypted detail manifest
// holding the full study, series and instance metadata and the SHA-256 of every
// original instance. An index of studies, series and instances, itself
// encrypted at rest, answers local queries.
//
// Invariants: reads return the original bytes exactly; a study is committed
// all or nothing (blocks are synced before the index records them, and blocks
// left behind by an interrupted commit are swept on the next Open); nothing
// is ever written to disk in clear except content addresses.
package archive
