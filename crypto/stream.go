package crypto

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"io"
	"sync"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// The age payload, written here rather than by age.Encrypt's writer, which
// allocates and zeroes a 64 KiB chunk buffer for every file and grows it
// to about twice that at the first chunk it seals (bytes.Buffer growth): for a study of
// hundreds of instances, each its own age file, that cost more than the
// encryption itself. age.Encrypt still makes the header (the file key, its
// stanzas, the MAC) and the payload nonce; what follows is age's STREAM
// (c2sp.org/age, "Payload"): the payload key is HKDF-SHA-256 of the file key
// with the nonce as salt and "payload" as info, and each 64 KiB chunk is
// sealed with ChaCha20-Poly1305 under a nonce of an 11-byte big-endian
// counter and a last-chunk flag byte. age.Decrypt reads the result; the
// tests check that for every size around the chunk boundaries.

const (
	chunkSize    = 64 << 10
	payloadNonce = 16
)

// keyCatcher is the recipient handed to age.Encrypt: it wraps the file key
// for the real recipient and keeps it for the payload.
type keyCatcher struct {
	to      age.Recipient
	fileKey []byte
}

func (c *keyCatcher) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	c.fileKey = bytes.Clone(fileKey)
	return c.to.Wrap(fileKey)
}

// beginPayload appends the age header for a new file key and the payload
// nonce to dst, and returns the payload's AEAD.
func beginPayload(dst []byte, to age.Recipient) ([]byte, cipher.AEAD, error) {
	catcher := &keyCatcher{to: to}
	w := appender{b: dst}
	if _, err := age.Encrypt(&w, catcher); err != nil { // writes the header and the nonce, nothing else
		return dst, nil, err
	}
	if len(catcher.fileKey) == 0 || len(w.b)-len(dst) < payloadNonce {
		return dst, nil, errors.New("age header without a file key or payload nonce")
	}
	nonce := w.b[len(w.b)-payloadNonce:]
	key, err := hkdf.Key(sha256.New, catcher.fileKey, nonce, "payload", chacha20poly1305.KeySize)
	clear(catcher.fileKey)
	if err != nil {
		return dst, nil, err
	}
	aead, err := chacha20poly1305.New(key)
	return w.b, aead, err
}

type appender struct{ b []byte }

func (a *appender) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

// streamNonce is a chunk's nonce: a counter and the last-chunk flag.
type streamNonce [chacha20poly1305.NonceSize]byte

func (n *streamNonce) next() {
	for i := len(n) - 2; i >= 0; i-- {
		n[i]++
		if n[i] != 0 {
			return
		}
	}
	panic("age payload: chunk counter overflow") // 2^88 chunks
}

// appendEncrypted appends the age encryption of plain to dst.
func appendEncrypted(dst, plain []byte, to age.Recipient) ([]byte, error) {
	out, aead, err := beginPayload(dst, to)
	if err != nil {
		return dst, err
	}
	var n streamNonce
	for {
		c := min(len(plain), chunkSize)
		if c == len(plain) {
			n[len(n)-1] = 1
		}
		out = aead.Seal(out, n[:], plain[:c], nil)
		plain = plain[c:]
		if len(plain) == 0 {
			return out, nil
		}
		n.next()
	}
}

// chunkBufs are the chunk buffers of streamWriters.
var chunkBufs = sync.Pool{New: func() any { return new([chunkSize + chacha20poly1305.Overhead]byte) }}

// streamWriter encrypts what is written to it as an age file. A chunk is
// sealed once the byte after it arrives (only Close knows the last chunk).
type streamWriter struct {
	dst   io.Writer
	aead  cipher.AEAD
	nonce streamNonce
	buf   *[chunkSize + chacha20poly1305.Overhead]byte
	n     int // plaintext bytes in buf
	err   error
}

func newStreamWriter(dst io.Writer, to age.Recipient) (*streamWriter, error) {
	hdr, aead, err := beginPayload(nil, to)
	if err != nil {
		return nil, err
	}
	if _, err := dst.Write(hdr); err != nil {
		return nil, err
	}
	return &streamWriter{dst: dst, aead: aead, buf: chunkBufs.Get().(*[chunkSize + chacha20poly1305.Overhead]byte)}, nil
}

func (w *streamWriter) flush(last bool) error {
	if last {
		w.nonce[len(w.nonce)-1] = 1
	}
	ct := w.aead.Seal(w.buf[:0], w.nonce[:], w.buf[:w.n], nil)
	w.n = 0
	if !last {
		w.nonce.next()
	}
	_, err := w.dst.Write(ct)
	return err
}

func (w *streamWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	total := len(p)
	for len(p) > 0 {
		if w.n == chunkSize {
			if w.err = w.flush(false); w.err != nil {
				return total - len(p), w.err
			}
		}
		c := copy(w.buf[w.n:chunkSize], p)
		w.n += c
		p = p[c:]
	}
	return total, nil
}

// Close seals and writes the last chunk; it does not close dst.
func (w *streamWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	w.err = w.flush(true)
	chunkBufs.Put(w.buf)
	w.buf = nil
	if w.err != nil {
		return w.err
	}
	w.err = errors.New("age payload: write after close")
	return nil
}
