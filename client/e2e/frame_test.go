package e2e

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/chacha20poly1305"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const goldenPath = "testdata/frames.golden"

// goldenFrame is one frame of the golden file.
type goldenFrame struct {
	name    string
	payload string
	frame   Frame
	wire    []byte
}

// goldenFrames seals the golden frames: fixed identity, room key, nonces and
// clock, so the same code always yields the same bytes.
func goldenFrames(t testing.TB) []goldenFrame {
	t.Helper()
	id := fixedIdentity(t, 0x01)
	sealed := newSealer(t, SealerConfig{Identity: id, Room: testRoom, Epoch: 7, RoomKey: fixedRoomKey(), Rand: &countingReader{}})
	clear := newSealer(t, SealerConfig{Identity: id, Room: "clear-room", Cleartext: true})

	var out []goldenFrame
	add := func(name string, s *Sealer, m Message, now time.Time) Frame {
		f, wire := seal(t, s, m, now)
		out = append(out, goldenFrame{name: name, payload: string(m.Payload), frame: f, wire: wire})
		return f
	}
	root := add("sealed", sealed, Message{Payload: []byte("hello, unibus")}, testNow)
	add("sealed-reply", sealed, Message{Thread: root.ID(), ReplyTo: root.ID(), Payload: []byte("a reply in the thread")}, testNow.Add(time.Second))
	add("react", sealed, Message{Type: TypeReact, ReplyTo: root.ID(), Payload: []byte("👍")}, testNow.Add(2*time.Second))
	add("sealed-empty", sealed, Message{}, testNow.Add(3*time.Second))
	add("cleartext", clear, Message{Payload: []byte(`{"text":"hello, world"}`)}, testNow)
	return out
}

// TestGoldenFrames pins the wire format: if this fails, the format changed.
// Run `go test -run TestGoldenFrames -update` only for a deliberate change
// (which is a new Version).
func TestGoldenFrames(t *testing.T) {
	frames := goldenFrames(t)
	if *update {
		var b bytes.Buffer
		for _, g := range frames {
			fmt.Fprintf(&b, "%s %s %s\n", g.name, g.frame.ID(), g.wire)
		}
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := readGolden(t)
	if len(want) != len(frames) {
		t.Fatalf("golden file holds %d frames, want %d", len(want), len(frames))
	}
	for i, g := range frames {
		w := want[i]
		if w.name != g.name {
			t.Fatalf("golden frame %d is %q, want %q", i, w.name, g.name)
		}
		if !bytes.Equal(g.wire, w.wire) {
			t.Errorf("%s: wire form changed\n got: %s\nwant: %s", g.name, g.wire, w.wire)
		}
		if id := g.frame.ID(); id != w.id {
			t.Errorf("%s: ID = %s, want %s", g.name, id, w.id)
		}
		// The golden bytes decode, verify and open to the payload.
		f, err := Decode(w.wire)
		if err != nil {
			t.Fatalf("%s: Decode: %v", g.name, err)
		}
		var payload []byte
		if f.Clear {
			payload, err = OpenCleartext(f)
		} else {
			payload, err = Open(f, fixedRoomKey())
		}
		if err != nil {
			t.Fatalf("%s: open: %v", g.name, err)
		}
		if string(payload) != g.payload {
			t.Errorf("%s: payload = %q, want %q", g.name, payload, g.payload)
		}
		if id, err := MessageID(w.wire); err != nil || id != w.id {
			t.Errorf("%s: MessageID = %q, %v; want %s", g.name, id, err, w.id)
		}
	}
}

type goldenLine struct {
	name, id string
	wire     []byte
}

func readGolden(t testing.TB) []goldenLine {
	t.Helper()
	f, err := os.Open(goldenPath)
	if err != nil {
		t.Fatalf("open golden file (run with -update to create it): %v", err)
	}
	defer f.Close()
	var out []goldenLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, MaxFrameSize)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 3)
		if len(parts) != 3 {
			t.Fatalf("golden line %q: want name, ID and wire", sc.Text())
		}
		out = append(out, goldenLine{name: parts[0], id: parts[1], wire: []byte(parts[2])})
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read golden file: %v", err)
	}
	return out
}

// TestFormatSpec recomputes a golden frame from the documented format alone,
// without the package's encoders, so the documentation and the code agree.
func TestFormatSpec(t *testing.T) {
	var g goldenFrame
	for _, f := range goldenFrames(t) {
		if f.name == "sealed-reply" {
			g = f
		}
	}
	f := g.frame
	lp := func(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }

	// Canonical header.
	var h []byte
	h = append(h, 1, 0x00) // version, flags (sealed)
	h = lp(h, "MSG")
	h = lp(h, testRoom)
	h = binary.BigEndian.AppendUint64(h, 7)
	h = lp(h, fixedIdentity(t, 0x01).PublicKey())
	// The golden sealer's second frame: the first took the clock in
	// microseconds, the second counts on by one.
	h = binary.BigEndian.AppendUint64(h, uint64(testNow.UnixMicro())+1)
	h = binary.BigEndian.AppendUint64(h, uint64(testNow.Add(time.Second).UnixMilli()))
	h = lp(append(h, 0x01), f.Thr)
	h = lp(append(h, 0x02), f.Re)
	if !bytes.Equal(h, f.header()) {
		t.Fatalf("header\n got %x\nwant %x", f.header(), h)
	}

	// Subkey and payload.
	info := lp([]byte("unibus-frame-v1"), testRoom)
	info = binary.BigEndian.AppendUint64(info, 7)
	info = lp(info, f.Sender)
	subkey, err := hkdf.Key(sha256.New, fixedRoomKey(), nil, string(info), 32)
	if err != nil {
		t.Fatal(err)
	}
	a, err := chacha20poly1305.NewX(subkey)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := a.Open(nil, f.Nonce, f.CT, h)
	if err != nil {
		t.Fatalf("open payload by the spec: %v", err)
	}
	if string(pt) != g.payload {
		t.Errorf("payload = %q, want %q", pt, g.payload)
	}

	// Signature and message ID.
	msg := []byte("unibus-frame-sig-v1\n")
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(h)))
	msg = append(msg, h...)
	msg = append(msg, byte(len(f.Nonce)))
	msg = append(msg, f.Nonce...)
	msg = append(msg, f.CT...)
	raw, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(f.Sender))
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(raw, msg, f.Sig) {
		t.Error("signature does not verify over the documented message")
	}
	sum := sha256.Sum256(msg)
	if id := base64.RawURLEncoding.EncodeToString(sum[:]); id != f.ID() {
		t.Errorf("ID = %s, want %s", f.ID(), id)
	}

	// Wire keys, in order.
	wantPrefix := fmt.Sprintf(`{"v":1,"t":"MSG","room":%q,"ep":7,"from":%q,"seq":%d,"ts":%d,"thr":%q,"re":%q,"n":"`,
		testRoom, f.Sender, f.Seq, f.TS, f.Thr, f.Re)
	if !bytes.HasPrefix(g.wire, []byte(wantPrefix)) {
		t.Errorf("wire = %s\nwant prefix %s", g.wire, wantPrefix)
	}
}

// legacyFrame is Frame as it was before threads: a frame that uses neither
// thr nor re must encode exactly as this does.
type legacyFrame struct {
	V      int    `json:"v"`
	T      string `json:"t"`
	Room   string `json:"room"`
	Epoch  uint64 `json:"ep"`
	Clear  bool   `json:"clear,omitempty"`
	Sender string `json:"from"`
	Seq    uint64 `json:"seq"`
	TS     int64  `json:"ts"`
	Nonce  []byte `json:"n,omitempty"`
	CT     []byte `json:"ct"`
	Sig    []byte `json:"sig"`
}

// preGrantFrame is the golden "sealed" frame as sealed before frames
// carried key grants.
const preGrantFrame = `{"v":1,"t":"MSG","room":"golden-room","ep":7,"from":"UCFIRY65OQE7DFP5KLNS2PF2LVZMUZYJX4OZIEQ36N2IQANUB5XVZ45L","seq":1767225600000000,"ts":1767225600000,"n":"QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZX","ct":"WSt6S+pAwzx50Fey4+bXr6DCrfKt/mDWnajFCKc=","sig":"j2/aMPrRCvOXEppYgTpzK5JQjaE84/y+avQWCZfSRgILlInhQMYt5CkCU4z6F+aVhDxLaHik+pRqI49idSyeCw=="}`

// TestPreGrantFrame: a sealed frame without a key grant still decodes,
// verifies and opens with the room key (the grant is not signed and
// changes neither the signature nor the ID), but no Receiver admits its
// sender.
func TestPreGrantFrame(t *testing.T) {
	f, err := Decode([]byte(preGrantFrame))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	golden := goldenFrames(t)[0]
	if f.ID() != golden.frame.ID() {
		t.Fatalf("ID = %s, want the golden frame's %s", f.ID(), golden.frame.ID())
	}
	if p, err := Open(f, fixedRoomKey()); err != nil || string(p) != golden.payload {
		t.Fatalf("Open = %q, %v", p, err)
	}
	_, err = newReceiver(t, fuzzRing(t)).Accept(testRoom, f, testNow)
	if !errors.Is(err, ErrNotMember) || !errors.Is(err, ErrBadGrant) {
		t.Fatalf("Accept = %v, want ErrNotMember and ErrBadGrant", err)
	}
	// With the grant the golden frame carries, it is accepted.
	f.Grant = golden.frame.Grant
	if _, err := newReceiver(t, fuzzRing(t)).Accept(testRoom, f, testNow); err != nil {
		t.Fatalf("Accept with the grant: %v", err)
	}
}

func TestUnthreadedFrameOmitsOptionalKeys(t *testing.T) {
	for _, g := range goldenFrames(t) {
		if g.frame.Thr != "" || g.frame.Re != "" {
			continue
		}
		t.Run(g.name, func(t *testing.T) {
			var keys map[string]json.RawMessage
			if err := json.Unmarshal(g.wire, &keys); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"thr", "re"} {
				if _, ok := keys[k]; ok {
					t.Errorf("wire has key %q: %s", k, g.wire)
				}
			}
			f := g.frame
			legacy, err := json.Marshal(legacyFrame{f.V, f.T, f.Room, f.Epoch, f.Clear, f.Sender, f.Seq, f.TS, f.Nonce, f.CT, f.Sig})
			if err != nil {
				t.Fatal(err)
			}
			// A sealed frame adds its key grant last, the one key the
			// legacy encoding lacks.
			if len(f.Grant) != 0 {
				grant, err := json.Marshal(f.Grant)
				if err != nil {
					t.Fatal(err)
				}
				legacy = append(append(append(legacy[:len(legacy)-1], `,"g":`...), grant...), '}')
			}
			if !bytes.Equal(legacy, g.wire) {
				t.Errorf("wire differs from the pre-thread encoding\n got %s\nwant %s", g.wire, legacy)
			}
			decoded, err := Decode(g.wire)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if err := decoded.Verify(); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

func TestFrameRoundTrip(t *testing.T) {
	for _, g := range goldenFrames(t) {
		t.Run(g.name, func(t *testing.T) {
			f, err := Decode(g.wire)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			wire, err := f.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(wire, g.wire) {
				t.Errorf("Encode(Decode(wire))\n got %s\nwant %s", wire, g.wire)
			}
			if f.ID() != g.frame.ID() {
				t.Errorf("ID after decoding = %s, want %s", f.ID(), g.frame.ID())
			}
			// Another layout of the same JSON is the same frame.
			relaid := mutateJSON(t, g.wire, func(map[string]any) {})
			if bytes.Equal(relaid, g.wire) {
				t.Fatal("relaid JSON is identical; the test proves nothing")
			}
			if id, err := MessageID(relaid); err != nil || id != g.frame.ID() {
				t.Errorf("MessageID of relaid JSON = %s, %v; want %s", id, err, g.frame.ID())
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	var sealed, clear []byte
	for _, g := range goldenFrames(t) {
		switch g.name {
		case "sealed":
			sealed = g.wire
		case "cleartext":
			clear = g.wire
		}
	}
	set := func(k string, v any) func(m map[string]any) {
		return func(m map[string]any) { m[k] = v }
	}
	del := func(k string) func(m map[string]any) {
		return func(m map[string]any) { delete(m, k) }
	}
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	account, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	accountPub, err := account.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	sender := fixedIdentity(t, 0x01).PublicKey()
	bigCT := base64.StdEncoding.EncodeToString(make([]byte, MaxPayloadSize+chacha20poly1305.Overhead+1))

	tests := []struct {
		name string
		wire []byte
		want error
	}{
		{"empty", nil, ErrMalformedFrame},
		{"not json", []byte("hello"), ErrMalformedFrame},
		{"null", []byte("null"), ErrMalformedFrame},
		{"array", []byte("[]"), ErrMalformedFrame},
		{"empty object", []byte("{}"), ErrMalformedFrame},
		{"truncated", sealed[:len(sealed)-2], ErrMalformedFrame},
		{"trailing data", append(bytes.Clone(sealed), `{}`...), ErrMalformedFrame},
		{"short key grant", mutateJSON(t, sealed, set("g", b64(GrantSize-1))), ErrMalformedFrame},
		{"long key grant", mutateJSON(t, sealed, set("g", b64(GrantSize+1))), ErrMalformedFrame},
		{"cleartext with a key grant", mutateJSON(t, clear, set("g", b64(GrantSize))), ErrMalformedFrame},
		{"trailing garbage", append(bytes.Clone(sealed), 'x'), ErrMalformedFrame},
		{"too large", append(bytes.Clone(sealed), bytes.Repeat([]byte(" "), MaxFrameSize)...), ErrFrameTooLarge},
		{"payload too large", mutateJSON(t, sealed, set("ct", bigCT)), ErrFrameTooLarge},
		{"unknown key", mutateJSON(t, sealed, set("x", 1)), ErrMalformedFrame},
		{"version 2", mutateJSON(t, sealed, set("v", 2)), ErrUnsupportedVersion},
		{"version 0", mutateJSON(t, sealed, set("v", 0)), ErrMalformedFrame},
		{"version -1", mutateJSON(t, sealed, set("v", -1)), ErrMalformedFrame},
		{"version as string", mutateJSON(t, sealed, set("v", "1")), ErrMalformedFrame},
		{"no version", mutateJSON(t, sealed, del("v")), ErrMalformedFrame},
		{"no type", mutateJSON(t, sealed, del("t")), ErrMalformedFrame},
		{"lower-case type", mutateJSON(t, sealed, set("t", "msg")), ErrMalformedFrame},
		{"long type", mutateJSON(t, sealed, set("t", strings.Repeat("M", MaxTypeLen+1))), ErrMalformedFrame},
		{"type with dot", mutateJSON(t, sealed, set("t", "MSG.X")), ErrMalformedFrame},
		{"no room", mutateJSON(t, sealed, del("room")), ErrMalformedFrame},
		{"room with wildcard", mutateJSON(t, sealed, set("room", "a.*")), ErrMalformedFrame},
		{"negative epoch", mutateJSON(t, sealed, set("ep", -1)), ErrMalformedFrame},
		{"sealed with epoch 0", mutateJSON(t, sealed, set("ep", 0)), ErrMalformedFrame},
		{"no sender", mutateJSON(t, sealed, del("from")), ErrMalformedFrame},
		{"lower-case sender", mutateJSON(t, sealed, set("from", strings.ToLower(sender))), ErrMalformedFrame},
		{"sender with newline", mutateJSON(t, sealed, set("from", sender[:28]+"\n"+sender[28:])), ErrMalformedFrame},
		{"account as sender", mutateJSON(t, sealed, set("from", accountPub)), ErrMalformedFrame},
		{"seq 0", mutateJSON(t, sealed, set("seq", 0)), ErrMalformedFrame},
		{"seq as float", mutateJSON(t, sealed, set("seq", 1.5)), ErrMalformedFrame},
		{"thread not an ID", mutateJSON(t, sealed, set("thr", "root")), ErrMalformedFrame},
		{"reply-to padded", mutateJSON(t, sealed, set("re", base64.URLEncoding.EncodeToString(make([]byte, 32)))), ErrMalformedFrame},
		{"reply-to std base64", mutateJSON(t, sealed, set("re", "+"+strings.Repeat("A", 42))), ErrMalformedFrame},
		{"reply-to non-canonical", mutateJSON(t, sealed, set("re", strings.Repeat("A", 42)+"B")), ErrMalformedFrame},
		{"react without target", mutateJSON(t, sealed, set("t", TypeReact)), ErrMalformedFrame},
		{"no nonce", mutateJSON(t, sealed, del("n")), ErrMalformedFrame},
		{"short nonce", mutateJSON(t, sealed, set("n", b64(NonceSize-1))), ErrMalformedFrame},
		{"nonce not base64", mutateJSON(t, sealed, set("n", "!!!")), ErrMalformedFrame},
		{"short ciphertext", mutateJSON(t, sealed, set("ct", b64(15))), ErrMalformedFrame},
		{"no signature", mutateJSON(t, sealed, del("sig")), ErrMalformedFrame},
		{"short signature", mutateJSON(t, sealed, set("sig", b64(63))), ErrMalformedFrame},
		{"cleartext with nonce", mutateJSON(t, clear, set("n", b64(NonceSize))), ErrMalformedFrame},
		{"cleartext with epoch", mutateJSON(t, clear, set("ep", 1)), ErrMalformedFrame},
		{"clear as string", mutateJSON(t, clear, set("clear", "true")), ErrMalformedFrame},
	}
	tests = append(tests, struct {
		name string
		wire []byte
		want error
	}{"long unknown key", mutateJSON(t, sealed, set(strings.Repeat("k", 100_000), 1)), ErrMalformedFrame})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Decode(tt.wire)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %+v, %v; want %v", f, err, tt.want)
			}
			if len(err.Error()) > 400 {
				t.Errorf("error message is %d bytes long", len(err.Error()))
			}
			if _, err := MessageID(tt.wire); err == nil {
				t.Error("MessageID accepted what Decode rejects")
			}
		})
	}
}

// TestTamperedFrames changes each part of a sealed frame and checks that the
// frame no longer verifies, and that Open fails on the signature, before any
// decryption.
func TestTamperedFrames(t *testing.T) {
	var root Frame
	var reply Frame
	for _, g := range goldenFrames(t) {
		switch g.name {
		case "sealed":
			root = g.frame
		case "sealed-reply":
			reply = g.frame
		}
	}
	other := newIdentity(t).PublicKey()
	otherID := reply.Re[:42] + "A"
	if otherID == reply.Re {
		otherID = reply.Re[:42] + "Q"
	}
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name   string
		base   Frame
		mutate func(f *Frame)
	}{
		{"type", root, func(f *Frame) { f.T = "NOTE" }},
		{"room", root, func(f *Frame) { f.Room = "other-room" }},
		{"epoch", root, func(f *Frame) { f.Epoch++ }},
		{"sender", root, func(f *Frame) { f.Sender = other }},
		{"seq", root, func(f *Frame) { f.Seq++ }},
		{"timestamp", root, func(f *Frame) { f.TS++ }},
		{"thread added", root, func(f *Frame) { f.Thr = reply.Thr }},
		{"reply-to added", root, func(f *Frame) { f.Re = reply.Re }},
		{"thread removed", reply, func(f *Frame) { f.Thr = "" }},
		{"reply-to removed", reply, func(f *Frame) { f.Re = "" }},
		{"thread changed", reply, func(f *Frame) { f.Thr = otherID }},
		{"reply-to changed", reply, func(f *Frame) { f.Re = otherID }},
		{"thread and reply-to swapped", reply, func(f *Frame) { f.Thr, f.Re = f.Re, otherID }},
		{"nonce", root, func(f *Frame) { f.Nonce = flip(f.Nonce, 0) }},
		{"ciphertext first byte", root, func(f *Frame) { f.CT = flip(f.CT, 0) }},
		{"ciphertext tag", root, func(f *Frame) { f.CT = flip(f.CT, len(f.CT)-1) }},
		{"ciphertext garbage", root, func(f *Frame) { f.CT = bytes.Repeat([]byte{0xee}, len(f.CT)) }},
		{"ciphertext truncated", root, func(f *Frame) { f.CT = f.CT[:len(f.CT)-1] }},
		{"signature", root, func(f *Frame) { f.Sig = flip(f.Sig, 0) }},
		{"signature last byte", root, func(f *Frame) { f.Sig = flip(f.Sig, 63) }},
		{"signature of another frame", root, func(f *Frame) { f.Sig = reply.Sig }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.base
			tt.mutate(&f)
			if err := f.Verify(); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify = %v, want ErrBadSignature", err)
			}
			pt, err := Open(f, fixedRoomKey())
			if !errors.Is(err, ErrBadSignature) || errors.Is(err, ErrDecrypt) {
				t.Fatalf("Open = %q, %v; want ErrBadSignature, not a decryption error", pt, err)
			}
			// The same through the wire.
			wire, err := f.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			d, err := Decode(wire)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if err := d.Verify(); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify after the wire = %v, want ErrBadSignature", err)
			}
		})
	}
}

// TestSignedGarbageFailsDecryption: a frame its sender signed, but whose
// payload was sealed under another key, passes the signature and fails
// decryption; so the decryption error in TestTamperedFrames would show.
func TestSignedGarbageFailsDecryption(t *testing.T) {
	id := newIdentity(t)
	s := newSealer(t, SealerConfig{Identity: id, Room: testRoom, Epoch: 1, RoomKey: NewRoomKey()})
	f, _ := seal(t, s, Message{Payload: []byte("secret")}, testNow)
	if err := f.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if pt, err := Open(f, fixedRoomKey()); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Open with the wrong room key = %q, %v; want ErrDecrypt", pt, err)
	}
	if _, err := Open(f, []byte("short")); !errors.Is(err, ErrInvalidRoomKey) {
		t.Fatalf("Open with a short room key = %v, want ErrInvalidRoomKey", err)
	}
}

// TestSubkeyIsPerSender: one member cannot pass off a frame as another's by
// re-signing it, because the payload is sealed under the sender's subkey.
func TestSubkeyIsPerSender(t *testing.T) {
	roomKey := NewRoomKey()
	alice, mallory := newIdentity(t), newIdentity(t)
	s := newSealer(t, SealerConfig{Identity: alice, Room: testRoom, Epoch: 1, RoomKey: roomKey})
	f, _ := seal(t, s, Message{Payload: []byte("from alice")}, testNow)

	f.Sender = mallory.PublicKey()
	sig, err := mallory.Sign(f.signedMessage())
	if err != nil {
		t.Fatal(err)
	}
	f.Sig = sig
	if err := f.Verify(); err != nil {
		t.Fatalf("Verify of the re-signed frame: %v", err)
	}
	if _, err := Open(f, roomKey); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Open of alice's ciphertext under mallory's name = %v, want ErrDecrypt", err)
	}
}

func TestCleartextFrames(t *testing.T) {
	id := newIdentity(t)
	roomKey := NewRoomKey()
	cs := newSealer(t, SealerConfig{Identity: id, Room: testRoom, Cleartext: true})
	ss := newSealer(t, SealerConfig{Identity: id, Room: testRoom, Epoch: 1, RoomKey: roomKey})
	payload := []byte("in the clear")

	cf, cwire := seal(t, cs, Message{Payload: payload}, testNow)
	if !cf.Clear || cf.Epoch != 0 || len(cf.Nonce) != 0 || !bytes.Equal(cf.CT, payload) {
		t.Fatalf("cleartext frame = %+v, want clear, epoch 0, no nonce, payload in ct", cf)
	}
	if !bytes.Contains(cwire, []byte(`"clear":true`)) || bytes.Contains(cwire, []byte(`"n":`)) {
		t.Errorf("cleartext wire = %s, want clear:true and no nonce", cwire)
	}
	if err := cf.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	got, err := OpenCleartext(cf)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("OpenCleartext = %q, %v; want %q", got, err, payload)
	}
	sf, swire := seal(t, ss, Message{Payload: payload}, testNow)
	if bytes.Contains(swire, []byte(`"clear"`)) {
		t.Errorf("sealed wire has a clear key: %s", swire)
	}
	if bytes.Contains(swire, payload) || bytes.Contains(swire, []byte(base64.StdEncoding.EncodeToString(payload))) {
		t.Error("sealed wire holds the payload in the clear")
	}

	// Each opener refuses the other mode.
	if _, err := Open(cf, roomKey); !errors.Is(err, ErrModeMismatch) {
		t.Errorf("Open(cleartext frame) = %v, want ErrModeMismatch", err)
	}
	if _, err := OpenCleartext(sf); !errors.Is(err, ErrModeMismatch) {
		t.Errorf("OpenCleartext(sealed frame) = %v, want ErrModeMismatch", err)
	}

	// Flipping the mode breaks the signature: the flag is signed.
	asSealed := cf
	asSealed.Clear, asSealed.Epoch, asSealed.Nonce = false, 1, make([]byte, NonceSize)
	asSealed.CT = append(bytes.Clone(cf.CT), make([]byte, chacha20poly1305.Overhead)...)
	if err := asSealed.Verify(); !errors.Is(err, ErrBadSignature) {
		t.Errorf("cleartext frame dressed as sealed: Verify = %v, want ErrBadSignature", err)
	}
	if _, err := Open(asSealed, roomKey); !errors.Is(err, ErrBadSignature) {
		t.Errorf("cleartext frame dressed as sealed: Open = %v, want ErrBadSignature", err)
	}
	asClear := sf
	asClear.Clear, asClear.Epoch, asClear.Nonce, asClear.Grant = true, 0, nil, nil
	if err := asClear.Verify(); !errors.Is(err, ErrBadSignature) {
		t.Errorf("sealed frame dressed as cleartext: Verify = %v, want ErrBadSignature", err)
	}
	if pt, err := OpenCleartext(asClear); !errors.Is(err, ErrBadSignature) {
		t.Errorf("sealed frame dressed as cleartext: OpenCleartext = %q, %v; want ErrBadSignature", pt, err)
	}
}

func TestSealerConfig(t *testing.T) {
	id := newIdentity(t)
	tests := []struct {
		name string
		cfg  SealerConfig
	}{
		{"no identity", SealerConfig{Room: testRoom, Epoch: 1, RoomKey: NewRoomKey()}},
		{"bad room", SealerConfig{Identity: id, Room: "a b", Epoch: 1, RoomKey: NewRoomKey()}},
		{"epoch 0", SealerConfig{Identity: id, Room: testRoom, RoomKey: NewRoomKey()}},
		{"no room key", SealerConfig{Identity: id, Room: testRoom, Epoch: 1}},
		{"short room key", SealerConfig{Identity: id, Room: testRoom, Epoch: 1, RoomKey: make([]byte, 16)}},
		{"cleartext with epoch", SealerConfig{Identity: id, Room: testRoom, Epoch: 1, Cleartext: true}},
		{"cleartext with key", SealerConfig{Identity: id, Room: testRoom, RoomKey: NewRoomKey(), Cleartext: true}},
		{"cleartext with key grant", SealerConfig{Identity: id, Room: testRoom, Grant: make([]byte, GrantSize), Cleartext: true}},
		{"no key grant", SealerConfig{Identity: id, Room: testRoom, Epoch: 1, RoomKey: NewRoomKey()}},
		{"short key grant", SealerConfig{Identity: id, Room: testRoom, Epoch: 1, RoomKey: NewRoomKey(), Grant: make([]byte, GrantSize-1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewSealer(tt.cfg); !errors.Is(err, ErrConfigValidation) {
				t.Fatalf("NewSealer = %v, want ErrConfigValidation", err)
			}
		})
	}
}

func TestSealRejects(t *testing.T) {
	id := newIdentity(t)
	s := newSealer(t, SealerConfig{Identity: id, Room: testRoom, Epoch: 1, RoomKey: NewRoomKey()})
	tests := []struct {
		name string
		msg  Message
		want error
	}{
		{"payload too large", Message{Payload: make([]byte, MaxPayloadSize+1)}, ErrFrameTooLarge},
		{"bad type", Message{Type: "msg"}, ErrMalformedFrame},
		{"bad thread", Message{Thread: "root"}, ErrMalformedFrame},
		{"react without target", Message{Type: TypeReact}, ErrMalformedFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := s.Seal(tt.msg, testNow); !errors.Is(err, tt.want) {
				t.Fatalf("Seal = %v, want %v", err, tt.want)
			}
		})
	}
	// The largest payload fits in a frame.
	_, wire, err := s.Seal(Message{Payload: make([]byte, MaxPayloadSize)}, testNow)
	if err != nil {
		t.Fatalf("Seal of MaxPayloadSize: %v", err)
	}
	if _, err := Decode(wire); err != nil {
		t.Fatalf("Decode of the largest frame (%d bytes): %v", len(wire), err)
	}

	// A wiped identity cannot sign.
	id.Wipe()
	if _, _, err := s.Seal(Message{}, testNow); err == nil {
		t.Fatal("Seal with a wiped identity succeeded")
	}
}

func TestSealerSequence(t *testing.T) {
	id := newIdentity(t)
	key := NewRoomKey()
	s := newSealer(t, SealerConfig{Identity: id, Room: testRoom, Epoch: 1, RoomKey: key})

	f1, _ := seal(t, s, Message{}, testNow)
	if want := uint64(testNow.UnixMicro()); f1.Seq != want {
		t.Errorf("first seq = %d, want the clock in microseconds, %d", f1.Seq, want)
	}
	f2, _ := seal(t, s, Message{}, testNow)
	if f2.Seq != f1.Seq+1 {
		t.Errorf("second seq at the same instant = %d, want %d", f2.Seq, f1.Seq+1)
	}
	f3, _ := seal(t, s, Message{}, testNow.Add(-time.Hour))
	if f3.Seq != f2.Seq+1 {
		t.Errorf("seq after the clock went back = %d, want %d", f3.Seq, f2.Seq+1)
	}
	// Later frames count densely, whatever the clock says, so that a
	// receiver's window tolerates reordering by frames, not by time.
	f4, _ := seal(t, s, Message{}, testNow.Add(time.Second))
	if f4.Seq != f3.Seq+1 {
		t.Errorf("seq a second later = %d, want %d", f4.Seq, f3.Seq+1)
	}
	if f1.Nonce == nil || bytes.Equal(f1.Nonce, f2.Nonce) {
		t.Error("two frames share a nonce")
	}

	// A restarted sender (a new sealer) continues above what it sent.
	restarted := newSealer(t, SealerConfig{Identity: id, Room: testRoom, Epoch: 1, RoomKey: key})
	f5, _ := seal(t, restarted, Message{}, testNow.Add(2*time.Second))
	if f5.Seq <= f4.Seq {
		t.Errorf("seq after a restart = %d, want above %d", f5.Seq, f4.Seq)
	}
	// A clock before 1970 still yields positive, increasing numbers.
	early := newSealer(t, SealerConfig{Identity: id, Room: testRoom, Epoch: 1, RoomKey: key})
	if f, _ := seal(t, early, Message{}, time.Unix(-10, 0)); f.Seq != 1 {
		t.Errorf("seq with a clock before 1970 = %d, want 1", f.Seq)
	}
}

func TestSealerConcurrent(t *testing.T) {
	s := newSealer(t, SealerConfig{Identity: newIdentity(t), Room: testRoom, Epoch: 1, RoomKey: NewRoomKey(), Rand: &countingReader{}})
	const workers, each = 8, 50
	seqs := make(chan uint64, workers*each)
	errs := make(chan error, workers)
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for range each {
				f, _, err := s.Seal(Message{Payload: []byte("x")}, testNow)
				if err != nil {
					errs <- err
					return
				}
				seqs <- f.Seq
			}
		}()
	}
	for range workers {
		<-done
	}
	close(seqs)
	close(errs)
	for err := range errs {
		t.Fatalf("Seal: %v", err)
	}
	seen := make(map[uint64]bool)
	for seq := range seqs {
		if seen[seq] {
			t.Fatalf("seq %d assigned twice", seq)
		}
		seen[seq] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("%d sequence numbers, want %d", len(seen), workers*each)
	}
}
