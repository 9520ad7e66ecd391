package shuffle

import "encoding/binary"

// Split writes src to dst, which must be as long: the bytes at even
// offsets, then those at odd offsets, then the last byte when src is odd
// in length.
func Split(dst, src []byte) {
	dst = dst[:len(src)]
	h := len(src) / 2
	lo, hi := dst[:h], dst[h:2*h]
	i := 0
	for ; i+8 <= h; i += 8 {
		x := binary.LittleEndian.Uint64(src[2*i:])
		y := binary.LittleEndian.Uint64(src[2*i+8:])
		binary.LittleEndian.PutUint64(lo[i:], pack(x)|pack(y)<<32)
		binary.LittleEndian.PutUint64(hi[i:], pack(x>>8)|pack(y>>8)<<32)
	}
	for ; i < h; i++ {
		lo[i] = src[2*i]
		hi[i] = src[2*i+1]
	}
	if len(src)%2 == 1 {
		dst[len(src)-1] = src[len(src)-1]
	}
}

// Join reverses Split: it writes to dst, which must be as long, the bytes
// that Split made src from.
func Join(dst, src []byte) {
	dst = dst[:len(src)]
	h := len(src) / 2
	lo, hi := src[:h], src[h:2*h]
	i := 0
	for ; i+8 <= h; i += 8 {
		l := binary.LittleEndian.Uint64(lo[i:])
		u := binary.LittleEndian.Uint64(hi[i:])
		binary.LittleEndian.PutUint64(dst[2*i:], spread(l)|spread(u)<<8)
		binary.LittleEndian.PutUint64(dst[2*i+8:], spread(l>>32)|spread(u>>32)<<8)
	}
	for ; i < h; i++ {
		dst[2*i] = lo[i]
		dst[2*i+1] = hi[i]
	}
	if len(src)%2 == 1 {
		dst[len(src)-1] = src[len(src)-1]
	}
}

// pack gathers bytes 0, 2, 4 and 6 of x into the low 32 bits.
func pack(x uint64) uint64 {
	x &= 0x00ff00ff00ff00ff
	x = (x | x>>8) & 0x0000ffff0000ffff
	return (x | x>>16) & 0x00000000ffffffff
}

// spread places the bytes of the low 32 bits of x at bytes 0, 2, 4 and 6.
func spread(x uint64) uint64 {
	x &= 0x00000000ffffffff
	x = (x | x<<16) & 0x0000ffff0000ffff
	return (x | x<<8) & 0x00ff00ff00ff00ff
}
