package e2e

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeVerify feeds arbitrary bytes to Decode and Verify. Whatever
// decodes must re-encode to a frame with the same ID; whatever verifies must
// be one of the genuinely signed seeds (same signed content, same payload),
// since nobody else holds the key.
func FuzzDecodeVerify(f *testing.F) {
	golden := goldenFrames(f)
	genuine := make(map[string]string) // ID → payload
	for _, g := range golden {
		f.Add(g.wire)
		genuine[g.frame.ID()] = g.payload
	}
	f.Add([]byte(""))
	f.Add([]byte("{}"))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"t":"MSG","room":"r","ep":1,"from":"U","seq":1,"ts":0,"n":"","ct":"","sig":""}`))
	f.Add([]byte("\x00\xff garbage"))

	f.Fuzz(func(t *testing.T, wire []byte) {
		fr, err := Decode(wire)
		if err != nil {
			if !errors.Is(err, ErrMalformedFrame) && !errors.Is(err, ErrUnsupportedVersion) && !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("Decode error %v matches no sentinel", err)
			}
			return
		}
		again, err := fr.Encode()
		if err != nil {
			t.Fatalf("Encode of a decoded frame: %v", err)
		}
		fr2, err := Decode(again)
		if err != nil {
			t.Fatalf("Decode of a re-encoded frame: %v", err)
		}
		if fr2.ID() != fr.ID() {
			t.Fatalf("ID changed through Encode and Decode: %s, %s", fr.ID(), fr2.ID())
		}

		if err := fr.Verify(); err != nil {
			if !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify of a decoded frame = %v, want nil or ErrBadSignature", err)
			}
			if _, err := Open(fr, fixedRoomKey()); err == nil {
				t.Fatal("Open accepted a frame that does not verify")
			}
			return
		}
		want, ok := genuine[fr.ID()]
		if !ok {
			t.Fatalf("a frame that is none of the signed seeds verifies: %s", wire)
		}
		var payload []byte
		if fr.Clear {
			payload, err = OpenCleartext(fr)
		} else {
			payload, err = Open(fr, fixedRoomKey())
		}
		if err != nil {
			t.Fatalf("open of a genuine frame: %v", err)
		}
		if !bytes.Equal(payload, []byte(want)) {
			t.Fatalf("genuine frame opened to %q, want %q", payload, want)
		}
	})
}
