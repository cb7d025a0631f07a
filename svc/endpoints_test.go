package svc_test

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
)

// firstField is the JSON name of the first field of a request type ("" for
// an empty body): a string, or base64 bytes, in every request.
func firstField(t reflect.Type) string {
	if t.NumField() == 0 {
		return ""
	}
	name, _, _ := strings.Cut(t.Field(0).Tag.Get("json"), ",")
	return name
}

// TestBadBodies sends malformed, over-strict and over-size bodies to every
// endpoint, as the admin (who may call every one): each is refused and
// nothing is stored.
func TestBadBodies(t *testing.T) {
	// Seven requests to each endpoint by one caller: more than a burst.
	e := newEnv(t, withConfig(func(c *svc.Config) { c.RateLimit = -1 }))
	room := e.createRoom(t, e.admin, subjects.ModeE2E)
	valid := `{"room_id":"` + room.RoomID + `"`

	before := e.snapshot(t)
	for _, ep := range subjects.Endpoints() {
		field := firstField(ep.Request)
		t.Run(ep.Subject, func(t *testing.T) {
			for _, tc := range []struct {
				name, body, want string
			}{
				{"malformed", `{"room_id":`, "truncated JSON"},
				{"not JSON", `room please`, "malformed JSON at byte 1"},
				{"not an object", `["a"]`, "must be a JSON object"},
				{"unknown field", `{"surprise":1}`, `unknown field "surprise"`},
				{"trailing data", `{} {}`, "after the JSON object"},
				{"wrong type", `{"` + field + `":true}`, `field "` + field + `" must be a`},
			} {
				t.Run(tc.name, func(t *testing.T) {
					if field == "" && tc.name == "wrong type" {
						tc.want = `unknown field ""` // no field to get wrong
					}
					wantError(t, e.admin.request(t, ep.Subject, []byte(tc.body)), subjects.CodeBadRequest, tc.want)
				})
			}
			t.Run("over size", func(t *testing.T) {
				limit := svc.DefaultMaxRequestBytes
				if ep.Bundle {
					limit = svc.DefaultMaxBundleBytes
				}
				// A valid start, padded to one byte over the limit.
				body := append([]byte(valid+`,"pad":"`), bytes.Repeat([]byte("x"), limit)...)
				body = append(body[:limit-2], `"}`...)
				body = append(body, ' ')
				wantError(t, e.admin.request(t, ep.Subject, body), subjects.CodeTooLarge, "over the limit")
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
	req := subjects.RekeyRequest{RoomID: room.RoomID, FromEpoch: room.Epoch, ToEpoch: room.NextEpoch, Keys: map[string][]byte{}, Grants: map[string][]byte{}}
	for range 999 {
		pub := e.newIdentity(t, "member").pub
		req.Keys[pub], req.Grants[pub] = sealedKey(t), grant(t)
	}
	req.Keys[e.alice.pub], req.Grants[e.alice.pub] = sealedKey(t), grant(t)
	if err := subjects.SignOwner(e.alice.kp, &req); err != nil {
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
