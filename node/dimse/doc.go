// Package dimse is the node's DICOM network service (PS3.7 message
// exchange over the PS3.8 upper layer), so that a PACS or a modality can
// send studies in and query the archive unchanged: association negotiation
// (called and calling AE titles, presentation contexts with the common
// transfer syntaxes, maximum PDU length), C-ECHO, C-STORE, C-FIND at
// study and series level and C-MOVE (Study Root and Patient Root); a
// C-CANCEL is passed over, as every operation has ended before the next
// request is read. A received data set is wrapped in a Part 10 file with a
// file meta group built from the association, passed through the node's
// guarded parser, and made durable before the response says success: an
// acknowledged instance is stored. A Store that is also a Spooler (the
// node) is handed each instance's bytes as its PDUs arrive, keeps it in an
// encrypted spool file synced before the response, and commits the
// association's instances together once it has ended: a release is
// answered at once, since every acknowledged instance is already durable,
// and the study is visible after the commit.
//
// Every length a peer declares (PDU, item, PDV, command element) is checked
// against what is really there and against hard limits before anything is
// allocated; a malformed PDU aborts that association and the server goes on.
//
// Send is the C-STORE client: it pushes a study into a PACS over one
// association, one presentation context per SOP class and transfer syntax,
// each instance as stored. C-MOVE sends the studies a query selects to a
// destination the node knows by AE title (its PACS table), with the
// sub-operation counts.
package dimse
