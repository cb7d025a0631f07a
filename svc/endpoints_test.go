package svc_test

import (
	"bytes"
	"testing"

	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
)

// allEndpoints lists every control-plane subject with a string field of
// its request ("" for none) and whether its body may carry sealed keys
// (the larger limit).
var allEndpoints = []struct {
	subject string
	field   string
	bundle  bool
}{
	{subjects.UsersAdd, "pub", false},
	{subjects.UsersGet, "pub", false},
	{subjects.UsersList, "", false},
	{subjects.UsersRevoke, "pub", false},
	{subjects.UsersSetKey, "enc_key", false},
	{subjects.RoomsCreate, "mode", true},
	{subjects.RoomsGet, "room_id", false},
	{subjects.RoomsInvite, "room_id", true},
	{subjects.RoomsRemove, "room_id", true},
	{subjects.RoomsLeave, "room_id", false},
	{subjects.RoomsMembers, "room_id", false},
	{subjects.RoomsMine, "", false},
	{subjects.RoomsRekey, "room_id", true},
	{subjects.RoomsKey, "room_id", false},
	{subjects.BlobsPut, "blob", true},
	{subjects.BlobsGet, "blob", false},
}

// TestBadBodies sends malformed, over-strict and over-size bodies to every
// endpoint, as the admin (who may call every one): each is refused and
// nothing is stored.
func TestBadBodies(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.admin, subjects.ModeE2E)
	valid := `{"room_id":"` + room.RoomID + `"`

	before := e.snapshot(t)
	for _, ep := range allEndpoints {
		t.Run(ep.subject, func(t *testing.T) {
			for _, tc := range []struct {
				name, body, want string
			}{
				{"malformed", `{"room_id":`, "truncated JSON"},
				{"not JSON", `room please`, "malformed JSON at byte 1"},
				{"not an object", `["a"]`, "must be a JSON object"},
				{"unknown field", `{"surprise":1}`, `unknown field "surprise"`},
				{"trailing data", `{} {}`, "after the JSON object"},
				{"wrong type", `{"` + ep.field + `":true}`, `field "` + ep.field + `" must be a`},
			} {
				t.Run(tc.name, func(t *testing.T) {
					if ep.field == "" && tc.name == "wrong type" {
						tc.want = `unknown field ""` // no field to get wrong
					}
					wantError(t, e.admin.request(t, ep.subject, []byte(tc.body)), subjects.CodeBadRequest, tc.want)
				})
			}
			t.Run("over size", func(t *testing.T) {
				limit := svc.DefaultMaxRequestBytes
				if ep.bundle {
					limit = svc.DefaultMaxBundleBytes
				}
				// A valid start, padded to one byte over the limit.
				body := append([]byte(valid+`,"pad":"`), bytes.Repeat([]byte("x"), limit)...)
				body = append(body[:limit-2], `"}`...)
				body = append(body, ' ')
				wantError(t, e.admin.request(t, ep.subject, body), subjects.CodeTooLarge, "over the limit")
			})
		})
	}
	e.unchanged(t, before)
}

// TestBundleLimit: a rekey of a 1,000-member room (sealed keys of
// MLKEM768-X25519 size) fits the default limits.
func TestBundleLimit(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	req := subjects.RekeyRequest{RoomID: room.RoomID, FromEpoch: room.Epoch, ToEpoch: room.NextEpoch, Keys: map[string][]byte{}}
	for range 999 {
		req.Keys[e.newIdentity(t, "member").pub] = sealedKey(t)
	}
	req.Keys[e.alice.pub] = sealedKey(t)
	if err := req.SignOwner(e.alice.kp); err != nil {
		t.Fatal(err)
	}
	// The members are not in the room, so the rekey is refused, but only
	// after the whole bundle arrived, was verified and compared with the
	// members.
	r := e.alice.request(t, subjects.RoomsRekey, req)
	if n := len(e.alice.msg(t, subjects.RoomsRekey, req).Data); n < 1_500_000 {
		t.Fatalf("bundle of %d bytes, want a realistic size", n)
	}
	wantError(t, r, subjects.CodeConflict, "999 for non-members")
}
