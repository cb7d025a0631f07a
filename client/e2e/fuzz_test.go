package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/unibus/unibus/subjects"
)

// The fuzz targets of this package. Their seed corpora (testdata/fuzz, and
// the f.Add calls) run with every `go test`; `make fuzz` explores beyond
// them.

// clearRoom is the room of the golden cleartext frame.
const clearRoom = "clear-room"

// fuzzRing knows the rooms of the golden frames: testRoom, encrypted at
// epoch 7 with fixedRoomKey and owned by fixedOwner, and clearRoom,
// cleartext; the golden sender is a member of both.
func fuzzRing(t testing.TB) *testRing {
	t.Helper()
	ring := newTestRing(fixedOwner(t).PublicKey())
	ring.setState(testRoom, RoomState{Epoch: 7})
	ring.setKey(testRoom, 7, fixedRoomKey())
	ring.setState(clearRoom, RoomState{Cleartext: true})
	sender := fixedIdentity(t, 0x01).PublicKey()
	ring.addMember(testRoom, sender)
	ring.addMember(clearRoom, sender)
	return ring
}

// frameErrors are the errors opening or receiving a frame may end with,
// other than the key ring's own.
var frameErrors = []error{
	ErrMalformedFrame, ErrUnsupportedVersion, ErrFrameTooLarge, ErrBadSignature, ErrModeMismatch,
	ErrWrongRoom, ErrNotMember, ErrStaleEpoch, ErrFutureEpoch, ErrReplay, ErrDecrypt, ErrFrameAge, ErrBadGrant,
}

// isFrameError reports whether err matches one of frameErrors.
func isFrameError(err error) bool {
	for _, e := range frameErrors {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// FuzzDecodeVerify feeds arbitrary bytes to Decode, Verify, Open and a
// Receiver that holds the golden rooms' keys. Whatever decodes must
// re-encode to a frame with the same ID; whatever verifies, opens or is
// received must be one of the genuinely signed seeds (same signed content,
// same payload), since nobody else holds the key. Every error must match
// one of the package's sentinels.
func FuzzDecodeVerify(f *testing.F) {
	golden := goldenFrames(f)
	genuine := make(map[string]string) // ID → payload
	grants := make(map[string][]byte)  // ID → the owner's grant to the sender
	for _, g := range golden {
		f.Add(g.wire)
		genuine[g.frame.ID()] = g.payload
		grants[g.frame.ID()] = g.frame.Grant
	}
	f.Add([]byte(""))
	f.Add([]byte("{}"))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"t":"MSG","room":"r","ep":1,"from":"U","seq":1,"ts":0,"n":"","ct":"","sig":""}`))
	f.Add([]byte("\x00\xff garbage"))
	ring := fuzzRing(f)

	f.Fuzz(func(t *testing.T, wire []byte) {
		fr, err := Decode(wire)
		// A fresh receiver per input: the golden frames are accepted once
		// each, whatever came before.
		r := newReceiver(t, ring)
		for _, room := range []string{testRoom, clearRoom} {
			got, rerr := r.Receive(room, wire, testNow)
			if rerr != nil {
				if !isFrameError(rerr) {
					t.Fatalf("Receive error %v matches no sentinel", rerr)
				}
				continue
			}
			if err != nil {
				t.Fatalf("Receive accepted what Decode refuses (%v): %q", err, wire)
			}
			want, ok := genuine[got.ID]
			if !ok || got.ID != fr.ID() || got.Frame.Room != room {
				t.Fatalf("Receive(%s) accepted a frame that is none of the signed seeds: %s", room, wire)
			}
			if !bytes.Equal(got.Payload, []byte(want)) {
				t.Fatalf("Receive(%s) opened a genuine frame to %q, want %q", room, got.Payload, want)
			}
			if !bytes.Equal(got.Frame.Grant, grants[got.ID]) {
				t.Fatalf("Receive(%s) accepted a genuine frame with another key grant: %x", room, got.Frame.Grant)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrMalformedFrame) && !errors.Is(err, ErrUnsupportedVersion) && !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("Decode error %v matches no sentinel", err)
			}
			if _, err := MessageID(wire); err == nil {
				t.Fatal("MessageID accepted what Decode refuses")
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
		if fr2.ID() != fr.ID() || !bytes.Equal(fr2.Sig, fr.Sig) {
			t.Fatalf("ID or signature changed through Encode and Decode: %s, %s", fr.ID(), fr2.ID())
		}
		if id, err := MessageID(wire); err != nil || id != fr.ID() {
			t.Fatalf("MessageID = %q, %v; want %q", id, err, fr.ID())
		}

		if err := fr.Verify(); err != nil {
			if !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify of a decoded frame = %v, want nil or ErrBadSignature", err)
			}
			if _, err := Open(fr, fixedRoomKey()); err == nil {
				t.Fatal("Open accepted a frame that does not verify")
			}
			if _, err := OpenCleartext(fr); err == nil {
				t.Fatal("OpenCleartext accepted a frame that does not verify")
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

// Fields of a frame that FuzzTamperFrame changes.
const (
	tamperV = iota
	tamperT
	tamperRoom
	tamperEpoch
	tamperClear
	tamperSender
	tamperSeq
	tamperTS
	tamperThr
	tamperRe
	tamperNonce
	tamperCT
	tamperSig
	tamperGrant     // one byte of the key grant (not signed: only receivers refuse it)
	tamperCTLonger  // one more byte of ciphertext
	tamperCTShorter // one byte less
	tamperSwapIDs   // thread and reply-to swapped (when they differ), or moved
	tamperWire      // one byte of the wire form
	tamperFields
)

// cloneFrame returns a deep copy of f.
func cloneFrame(f Frame) Frame {
	f.Nonce = bytes.Clone(f.Nonce)
	f.CT = bytes.Clone(f.CT)
	f.Sig = bytes.Clone(f.Sig)
	f.Grant = bytes.Clone(f.Grant)
	return f
}

// flipByte returns b with byte pos (modulo its length) XORed with x, which
// must not be 0; an empty b becomes {x}.
func flipByte(b []byte, pos int, x byte) []byte {
	if len(b) == 0 {
		return []byte{x}
	}
	c := bytes.Clone(b)
	c[pos%len(c)] ^= x
	return c
}

// flipBits returns n with byte pos%8 XORed with x, which must not be 0.
func flipBits(n uint64, pos int, x byte) uint64 {
	return n ^ uint64(x)<<(8*(pos%8))
}

// tamper changes one field of f, a golden frame, or one byte of its wire
// form. It reports false when the change is not possible for this frame.
func tamper(f Frame, wire []byte, field uint8, pos int, x byte) (Frame, []byte, bool) {
	f = cloneFrame(f)
	switch field {
	case tamperV:
		f.V = int(flipBits(uint64(f.V), pos%2, x))
	case tamperT:
		f.T = string(flipByte([]byte(f.T), pos, x))
	case tamperRoom:
		f.Room = string(flipByte([]byte(f.Room), pos, x))
	case tamperEpoch:
		f.Epoch = flipBits(f.Epoch, pos, x)
	case tamperClear:
		f.Clear = !f.Clear
	case tamperSender:
		f.Sender = string(flipByte([]byte(f.Sender), pos, x))
	case tamperSeq:
		f.Seq = flipBits(f.Seq, pos, x)
	case tamperTS:
		f.TS = int64(flipBits(uint64(f.TS), pos, x))
	case tamperThr:
		f.Thr = string(flipByte([]byte(f.Thr), pos, x))
	case tamperRe:
		f.Re = string(flipByte([]byte(f.Re), pos, x))
	case tamperNonce:
		f.Nonce = flipByte(f.Nonce, pos, x)
	case tamperCT:
		f.CT = flipByte(f.CT, pos, x)
	case tamperSig:
		f.Sig = flipByte(f.Sig, pos, x)
	case tamperGrant:
		f.Grant = flipByte(f.Grant, pos, x)
	case tamperCTLonger:
		f.CT = append(f.CT, x)
	case tamperCTShorter:
		if len(f.CT) == 0 {
			return f, nil, false
		}
		f.CT = f.CT[:len(f.CT)-1]
	case tamperSwapIDs:
		if f.Thr == f.Re {
			if f.Thr == "" {
				return f, nil, false
			}
			f.Thr = "" // the reply stays, the thread goes
		} else {
			f.Thr, f.Re = f.Re, f.Thr
		}
	case tamperWire:
		return Frame{}, flipByte(wire, pos, x), true
	}
	w, err := f.marshal()
	if err != nil {
		return f, nil, false
	}
	return f, w, true
}

// FuzzTamperFrame takes a genuinely sealed (or signed cleartext) golden
// frame and changes one thing in it: one field, whatever its domain, or one
// byte of its wire form. Verify, Open, OpenCleartext, a Receiver that holds
// the room's key, and Decode followed by any of them must all reject the
// result, unless it is the same frame (a wire change that decodes to the
// same fields: JSON and base64 have other spellings of the same values).
func FuzzTamperFrame(f *testing.F) {
	golden := goldenFrames(f)
	for i := range golden {
		for field := range uint8(tamperFields) {
			f.Add(uint8(i), field, uint16(i+int(field)), byte(1))
		}
	}
	f.Add(uint8(0), uint8(tamperSig), uint16(63), byte(0x80))
	f.Add(uint8(0), uint8(tamperSender), uint16(55), byte(0x20))
	f.Add(uint8(4), uint8(tamperWire), uint16(6), byte(0x20))
	ring := fuzzRing(f)

	f.Fuzz(func(t *testing.T, which, field uint8, pos uint16, x byte) {
		if x == 0 {
			x = 1 // a flip must change something
		}
		g := golden[int(which)%len(golden)]
		field %= tamperFields
		fr, wire, ok := tamper(g.frame, g.wire, field, int(pos), x)
		if !ok {
			return
		}
		decoded, derr := Decode(wire)
		if field == tamperWire {
			if derr != nil {
				checkRejected(t, ring, g, wire, nil)
				return
			}
			fr = decoded
		} else if reflect.DeepEqual(fr, g.frame) {
			t.Fatalf("tamper(field %d) left the frame as it was", field)
		}
		if sameFrame(fr, g.frame) {
			if field != tamperWire {
				t.Fatalf("tamper(field %d) left the signed content and signature as they were", field)
			}
			return // another spelling of the same frame
		}
		if onlyGrantDiffers(fr, g.frame) {
			// The signature does not cover the grant: the frame verifies
			// and opens, but no receiver admits its sender.
			checkGrantRejected(t, ring, g, wire, fr)
			return
		}
		checkRejected(t, ring, g, wire, &fr)
		if derr == nil {
			checkRejected(t, ring, g, nil, &decoded)
		}
	})
}

// sameFrame reports whether a and b have the same signed content and
// signature (comparing the fields, so that it also holds for frames that
// are not well formed).
func sameFrame(a, b Frame) bool {
	a.Nonce, b.Nonce = nilIfEmpty(a.Nonce), nilIfEmpty(b.Nonce)
	a.CT, b.CT = nilIfEmpty(a.CT), nilIfEmpty(b.CT)
	a.Sig, b.Sig = nilIfEmpty(a.Sig), nilIfEmpty(b.Sig)
	a.Grant, b.Grant = nilIfEmpty(a.Grant), nilIfEmpty(b.Grant)
	return reflect.DeepEqual(a, b)
}

// onlyGrantDiffers reports whether a and b differ in their key grant
// alone.
func onlyGrantDiffers(a, b Frame) bool {
	a.Grant, b.Grant = nil, nil
	return sameFrame(a, b)
}

// checkGrantRejected fails unless a Receiver refuses fr, the golden frame
// g with another key grant, and its wire form (when not nil); the frame
// may still verify and open, as its signature is intact.
func checkGrantRejected(t *testing.T, ring *testRing, g goldenFrame, wire []byte, fr Frame) {
	t.Helper()
	if got, err := newReceiver(t, ring).Accept(g.frame.Room, fr, testNow); err == nil {
		t.Fatalf("tampered %s frame with grant %x accepted: %+v", g.name, fr.Grant, got.Frame)
	}
	if wire != nil {
		if got, err := newReceiver(t, ring).Receive(g.frame.Room, wire, testNow); err == nil {
			t.Fatalf("tampered %s frame received: %s → %+v", g.name, wire, got.Frame)
		}
	}
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// checkRejected fails unless every way in refuses the tampered frame fr
// (when not nil) and its wire form (when not nil), derived from g.
func checkRejected(t *testing.T, ring *testRing, g goldenFrame, wire []byte, fr *Frame) {
	t.Helper()
	desc := fmt.Sprintf("tampered %s frame", g.name)
	if fr != nil {
		if err := fr.Verify(); err == nil {
			t.Fatalf("%s verifies: %+v", desc, *fr)
		}
		if p, err := Open(*fr, fixedRoomKey()); err == nil {
			t.Fatalf("%s opens to %q: %+v", desc, p, *fr)
		}
		if p, err := OpenCleartext(*fr); err == nil {
			t.Fatalf("%s opens as cleartext to %q: %+v", desc, p, *fr)
		}
		for _, room := range []string{g.frame.Room, fr.Room} {
			// The error may be the key ring's (an unknown room), which
			// matches no sentinel.
			if got, err := newReceiver(t, ring).Accept(room, *fr, testNow); err == nil {
				t.Fatalf("%s accepted in %s: %+v", desc, room, got.Frame)
			}
		}
	}
	if wire != nil {
		if got, err := newReceiver(t, ring).Receive(g.frame.Room, wire, testNow); err == nil {
			t.Fatalf("%s received: %s → %+v", desc, wire, got.Frame)
		}
	}
}

// FuzzOpenRoomKey feeds arbitrary sealed keys and contexts to OpenRoomKey
// with a real encryption key. It must never panic, and must open only the
// genuinely sealed key in the context it was sealed for: any other bytes,
// room, epoch or recipient fail.
func FuzzOpenRoomKey(f *testing.F) {
	k, err := newEncryptionKey(bytes.Repeat([]byte{0x07}, seedSize))
	if err != nil {
		f.Fatal(err)
	}
	recipient := fixedIdentity(f, 0x01).PublicKey()
	sealed, err := SealRoomKey(k.PublicKey(), testRoom, 7, recipient, fixedRoomKey())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(testRoom, uint64(7), recipient, sealed)
	f.Add(testRoom, uint64(8), recipient, sealed)
	f.Add(testRoom+"x", uint64(7), recipient, sealed)
	f.Add(testRoom, uint64(0), recipient, sealed)
	f.Add("a.b", uint64(7), recipient, sealed)
	f.Add(testRoom, uint64(7), fixedIdentity(f, 0x02).PublicKey(), sealed)
	f.Add(testRoom, uint64(7), recipient, sealed[:len(sealed)-1])
	f.Add(testRoom, uint64(7), recipient, []byte{})
	f.Add(testRoom, uint64(7), recipient, make([]byte, SealedRoomKeySize))

	// Sealing is randomized, so the corpus holds other genuine sealings of
	// the same key than the one above: what opens is checked by its
	// context and result, not by its bytes.
	f.Fuzz(func(t *testing.T, room string, epoch uint64, who string, b []byte) {
		key, err := OpenRoomKey(k, room, epoch, who, b)
		if err != nil {
			if !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrInvalidRoomKey) &&
				!errors.Is(err, subjects.ErrInvalidRoomID) && !errors.Is(err, subjects.ErrInvalidUserKey) {
				t.Fatalf("OpenRoomKey error %v matches no sentinel", err)
			}
			if key != nil {
				t.Fatalf("OpenRoomKey returned a key with error %v", err)
			}
			return
		}
		norm, nerr := subjects.NormalizeUserKey(who)
		if room != testRoom || epoch != 7 || nerr != nil || norm != recipient {
			t.Fatalf("a key sealed for %s epoch 7 to %s opens for %q epoch %d to %q", testRoom, recipient, room, epoch, who)
		}
		if !bytes.Equal(key, fixedRoomKey()) {
			t.Fatalf("OpenRoomKey = %x, want the sealed room key", key)
		}
		if len(b) != SealedRoomKeySize {
			t.Fatalf("a sealed key of %d bytes opens", len(b))
		}
	})
}

// FuzzReplayWindow drives a ReplayWindow that tracks two windows with
// sequence numbers and senders taken from the input, and compares every
// answer with a plain model: a set of seen numbers per window, the highest
// one, and least-recently-used eviction.
func FuzzReplayWindow(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, 1<<63), 1<<63-1))
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x01\x40\x00\x00\x00\x00\x00\x04\x00"))
	f.Add([]byte("\xff\xff\xff\xff\xff\xff\xff\xff\xbf\xff\xff\xff\xff\xff\xff\xfe\x80\x00\x00\x00\x00\x00\x00\x01"))

	f.Fuzz(func(t *testing.T, data []byte) {
		const tracked = 2
		w := NewReplayWindow(tracked)
		type model struct {
			seen map[uint64]bool
			top  uint64
		}
		models := map[string]*model{}
		var lru []string // most recently used first
		touch := func(s string) {
			for i, o := range lru {
				if o == s {
					lru = append(lru[:i], lru[i+1:]...)
					break
				}
			}
			lru = append([]string{s}, lru...)
		}
		var top uint64
		for len(data) >= 8 {
			// Each step is 8 bytes: the top two bits pick a sender and a
			// dry run (check without commit); the rest is the sequence
			// number, or, with bit 61 set, a step back from the highest
			// number seen, so that the window's edge is often hit.
			v := binary.BigEndian.Uint64(data)
			data = data[8:]
			sender := []string{"U1", "U2", "U3"}[int(v>>63)+int(v>>60&1)]
			dry := v>>62&1 == 1
			seq := v & (1<<60 - 1)
			if v>>61&1 == 1 {
				seq = top - seq%(2*ReplayWindowSize)
			}

			m := models[sender]
			want := m == nil || seq > m.top || (m.top-seq < ReplayWindowSize && !m.seen[seq])
			err := w.check(windowKey{testRoom, 1, sender}, seq, !dry)
			if got := err == nil; got != want {
				t.Fatalf("check(%s, %d, commit %v) = %v, want replay %v", sender, seq, !dry, err, !want)
			}
			if err != nil && !errors.Is(err, ErrReplay) {
				t.Fatalf("check error %v does not match ErrReplay", err)
			}
			if err != nil || dry {
				continue
			}
			if m == nil {
				if len(models) == tracked {
					delete(models, lru[len(lru)-1])
					lru = lru[:len(lru)-1]
				}
				m = &model{seen: map[uint64]bool{}, top: seq}
				models[sender] = m
			}
			m.seen[seq] = true
			m.top = max(m.top, seq)
			top = max(top, seq)
			touch(sender)
			if n := w.Len(); n != len(models) {
				t.Fatalf("Len = %d, want %d", n, len(models))
			}
		}
	})
}
