package password

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
)

// Dovecot's {CRAM-MD5} (alias {HMAC-MD5}) stores the two HMAC-MD5 contexts after
// the key pads were absorbed: the MD5 state words (a, b, c, d) of the outer
// (opad) context, then of the inner (ipad) context, each word little-endian —
// 32 bytes, written as 64 hex digits (src/lib/hmac-cram-md5.c). Holding those
// states is enough to finish any HMAC-MD5 without the password, which is what a
// CRAM-MD5 server needs.

// CRAMMD5Context computes Dovecot's {CRAM-MD5} context for a password.
func CRAMMD5Context(password string) [32]byte {
	key := []byte(password)
	if len(key) > md5.BlockSize {
		s := md5.Sum(key)
		key = s[:]
	}
	var ipad, opad [md5.BlockSize]byte
	copy(ipad[:], key)
	copy(opad[:], key)
	for i := range ipad {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	var out [32]byte
	copy(out[0:16], md5State(opad[:]))
	copy(out[16:32], md5State(ipad[:]))
	return out
}

// md5State absorbs exactly one block and returns the state words little-endian.
func md5State(block []byte) []byte {
	h := md5.New()
	h.Write(block)
	m, err := h.(interface{ MarshalBinary() ([]byte, error) }).MarshalBinary()
	if err != nil || len(m) < 4+16 {
		panic("password: crypto/md5 state format changed")
	}
	// crypto/md5 marshals "md5\x01" + 4 big-endian words + buffer + length.
	out := make([]byte, 16)
	for i := 0; i < 4; i++ {
		binary.LittleEndian.PutUint32(out[4*i:], binary.BigEndian.Uint32(m[4+4*i:]))
	}
	return out
}

// md5FromState rebuilds an MD5 hash that has absorbed one 64-byte block and is in
// state le (4 little-endian words).
func md5FromState(le []byte) hash.Hash {
	m := make([]byte, 0, 4+16+md5.BlockSize+8)
	m = append(m, "md5\x01"...)
	for i := 0; i < 4; i++ {
		m = binary.BigEndian.AppendUint32(m, binary.LittleEndian.Uint32(le[4*i:]))
	}
	m = append(m, make([]byte, md5.BlockSize)...)
	m = binary.BigEndian.AppendUint64(m, md5.BlockSize)
	h := md5.New()
	if err := h.(interface{ UnmarshalBinary([]byte) error }).UnmarshalBinary(m); err != nil {
		panic("password: crypto/md5 state format changed: " + err.Error())
	}
	return h
}

// CRAMMD5Digest computes HMAC-MD5(password, challenge) from a 32-byte context.
func CRAMMD5Digest(ctx [32]byte, challenge []byte) [16]byte {
	inner := md5FromState(ctx[16:32])
	inner.Write(challenge)
	outer := md5FromState(ctx[0:16])
	outer.Write(inner.Sum(nil))
	var out [16]byte
	copy(out[:], outer.Sum(nil))
	return out
}

// CRAMMD5Secret returns the 32-byte context for an entry that can serve CRAM-MD5
// ({PLAIN} or {CRAM-MD5}).
func (e Entry) CRAMMD5Secret() ([32]byte, error) {
	var ctx [32]byte
	switch e.Scheme {
	case "PLAIN":
		p, err := e.Plaintext()
		if err != nil {
			return ctx, err
		}
		return CRAMMD5Context(p), nil
	case "CRAM-MD5":
		raw, err := e.decode(32)
		if err != nil {
			return ctx, err
		}
		if len(raw) != 32 {
			return ctx, fmt.Errorf("%w: {CRAM-MD5} is %d bytes, want 32", ErrMalformed, len(raw))
		}
		copy(ctx[:], raw)
		return ctx, nil
	}
	return ctx, fmt.Errorf("%w: {%s} cannot serve CRAM-MD5", ErrUnknownScheme, e.Scheme)
}

// VerifyCRAMMD5 checks a client's hex digest (RFC 2195) for challenge in constant time.
func VerifyCRAMMD5(ctx [32]byte, challenge []byte, digestHex string) error {
	got, err := hex.DecodeString(digestHex)
	if err != nil || len(got) != md5.Size {
		return ErrMismatch
	}
	want := CRAMMD5Digest(ctx, challenge)
	if !hmac.Equal(got, want[:]) {
		return ErrMismatch
	}
	return nil
}
