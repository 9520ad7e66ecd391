// Package shuffle de-interleaves bytes in pairs: the even bytes first, then
// the odd bytes. For 16-bit pixels that groups the low bytes apart from the
// high bytes, which are nearly constant, so that a compressor after it runs
// faster and compresses better (CT: zstd about twice as fast and a third
// smaller, S2 from 60% to 52% of the original size).
package shuffle
