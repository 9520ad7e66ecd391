// Package layering holds the test that keeps dicomesh's import graph pointing
// down (see ARCHITECTURE.md): the pure packages import nothing that performs
// I/O, nothing below node imports node, only the composition roots construct
// libp2p hosts, and every package has a doc comment. It has no code of its own.
package layering
