package subjects_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/subjects"
)

func TestJSONRoundTrip(t *testing.T) {
	added := time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)
	revoked := added.Add(time.Hour)
	pub := testPub(t, nkeys.PrefixByteUser, 1)
	tests := []any{
		&subjects.ErrorBody{Error: "no such room", Code: subjects.CodeNotFound},
		&subjects.ErrorBody{Error: "slow down", Code: subjects.CodeTooManyRequests, RetryAfterMs: 250},
		&subjects.AddUserRequest{Pub: pub, Name: "bot", Admin: true},
		&subjects.UserInfo{Pub: pub, Name: "bot", Admin: true, EncKey: []byte{1, 2}, EncKeySig: []byte{3}, AddedAt: added, Revoked: true, RevokedAt: &revoked},
		&subjects.UserInfo{Pub: pub, AddedAt: added},
		&subjects.GetUserRequest{Pub: pub},
		&subjects.ListUsersResponse{Users: []subjects.UserInfo{{Pub: pub, AddedAt: added}}},
		&subjects.ListUsersResponse{Users: []subjects.UserInfo{}},
		&subjects.RevokeUserRequest{Pub: pub},
		&subjects.SetKeyRequest{EncKey: []byte("enc"), EncKeySig: []byte("sig")},
		&subjects.CreateRoomRequest{Name: "ops", Mode: subjects.ModeE2E, History: subjects.HistoryNone, SealedKey: []byte{9}},
		&subjects.CreateRoomRequest{RoomID: "abc", Salt: []byte{4}, Name: "ops", Mode: subjects.ModeE2E, SealedKey: []byte{9}, Grant: []byte{8}},
		&subjects.CreateRoomRequest{},
		&subjects.RoomInfo{RoomID: "abc", Subject: "unibus.v1.room.abc", Name: "ops", Mode: subjects.ModeCleartext, History: subjects.HistoryNone, Owner: pub, Epoch: 7, CreatedAt: added},
		&subjects.RoomInfo{RoomID: "abc", Subject: "unibus.v1.room.abc", Mode: subjects.ModeE2E, History: subjects.HistoryNone, Owner: pub, Salt: []byte{4}, Epoch: 7, NextEpoch: 8, CreatedAt: added},
		&subjects.RoomRequest{RoomID: "abc"},
		&subjects.InviteRequest{RoomID: "abc", Pub: pub, Epoch: 3, SealedKey: []byte{1}, OwnerSig: []byte{2}},
		&subjects.InviteRequest{RoomID: "abc", Pub: pub, Epoch: 3, SealedKey: []byte{1}, Grant: []byte{3}, OwnerSig: []byte{2}},
		&subjects.RemoveRequest{RoomID: "abc", Pub: pub, Rekey: &subjects.RekeyBundle{FromEpoch: 3, Keys: map[string][]byte{pub: {1}}}, OwnerSig: []byte{2}},
		&subjects.RemoveRequest{RoomID: "abc", Pub: pub, Rekey: &subjects.RekeyBundle{FromEpoch: 3, Keys: map[string][]byte{pub: {1}}, Grants: map[string][]byte{pub: {3}}}, OwnerSig: []byte{2}},
		&subjects.RemoveRequest{RoomID: "abc", Pub: pub, OwnerSig: []byte{2}},
		&subjects.RekeyRequest{RoomID: "abc", FromEpoch: 3, Keys: map[string][]byte{pub: {1}, "U2": {2}}, OwnerSig: []byte{2}},
		&subjects.RekeyRequest{RoomID: "abc", FromEpoch: 3, Keys: map[string][]byte{pub: {1}, "U2": {2}}, Grants: map[string][]byte{pub: {3}, "U2": {4}}, OwnerSig: []byte{2}},
		&subjects.MemberInfo{Pub: pub, Role: subjects.RoleOwner, JoinedEpoch: 1},
		&subjects.MemberInfo{Pub: pub, Role: subjects.RoleOwner, JoinedEpoch: 1, EncKey: []byte{1}, EncKeySig: []byte{2}, Grant: []byte{3}},
		&subjects.MembersRequest{RoomID: "abc"},
		&subjects.MembersRequest{RoomID: "abc", Pub: pub},
		&subjects.MembersResponse{Members: []subjects.MemberInfo{{Pub: pub, Role: subjects.RoleMember, JoinedEpoch: 2}}},
		&subjects.MembersResponse{Members: []subjects.MemberInfo{}},
		&subjects.RoomRef{RoomID: "abc", Subject: "unibus.v1.room.abc", Epoch: 2, History: subjects.HistoryNone, Role: subjects.RoleMember, Mode: subjects.ModeE2E},
		&subjects.RoomRef{RoomID: "abc", Subject: "unibus.v1.room.abc", Epoch: 2, History: subjects.HistoryNone, Role: subjects.RoleMember, Mode: subjects.ModeE2E, Owner: pub, Salt: []byte{4}},
		&subjects.MineResponse{Rooms: []subjects.RoomRef{{RoomID: "abc"}}, Invitations: []subjects.Invitation{}},
		&subjects.MineResponse{Rooms: []subjects.RoomRef{}, Invitations: []subjects.Invitation{
			{RoomID: "abc", Name: "ops", Mode: subjects.ModeE2E, Owner: pub, Salt: []byte{4}, Epoch: 2, InvitedAt: added, ExpiresAt: revoked},
		}},
		&subjects.Invitation{RoomID: "abc", Mode: subjects.ModeCleartext, Owner: pub, InvitedAt: added, ExpiresAt: revoked},
		&subjects.MemberInfo{Pub: pub, Role: subjects.RoleInvited, JoinedEpoch: 2, EncKey: []byte{1}, EncKeySig: []byte{2}, Grant: []byte{3}},
		&subjects.KeyRequest{RoomID: "abc", Epoch: 4},
		&subjects.KeyRequest{RoomID: "abc"},
		&subjects.KeyResponse{RoomID: "abc", Epoch: 4, SealedKey: []byte{5}},
		&subjects.KeyResponse{RoomID: "abc", Epoch: 4, SealedKey: []byte{5}, Grant: []byte{6}},
		&subjects.BlobPutRequest{RoomID: "abc", Blob: subjects.BlobID(nil), Size: 600 << 10, Index: 1, Data: []byte{1, 2}},
		&subjects.BlobInfo{RoomID: "abc", Blob: subjects.BlobID(nil), Size: 3, Chunks: 1, Complete: true},
		&subjects.BlobGetRequest{RoomID: "abc", Blob: subjects.BlobID(nil), Index: 2},
		&subjects.BlobChunk{RoomID: "abc", Blob: subjects.BlobID(nil), Index: 1, Chunks: 2, Size: 600 << 10, Data: []byte{3}},
		&subjects.BlobRef{RoomID: "abc", Blob: subjects.BlobID(nil), Epoch: 2, Size: 5},
	}
	for _, in := range tests {
		name := reflect.TypeOf(in).Elem().Name()
		t.Run(name, func(t *testing.T) {
			data, err := json.Marshal(in)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			out := reflect.New(reflect.TypeOf(in).Elem()).Interface()
			if err := json.Unmarshal(data, out); err != nil {
				t.Fatalf("Unmarshal(%s): %v", data, err)
			}
			if !reflect.DeepEqual(in, out) {
				t.Errorf("round trip of %s:\n got %#v\nwant %#v", data, out, in)
			}
			checkSnakeCase(t, data)
		})
	}
}

// checkSnakeCase fails if a JSON object key in data is not snake_case
// (public keys used as map keys are exempt).
func checkSnakeCase(t *testing.T, data []byte) {
	t.Helper()
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if !nkeys.IsValidPublicUserKey(k) && k != "U2" && (k != strings.ToLower(k) || strings.Contains(k, "-")) {
					t.Errorf("key %q in %s is not snake_case", k, data)
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	walk(v)
}

func TestJSONKeys(t *testing.T) {
	added := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"error body", subjects.ErrorBody{Error: "not found", Code: 404}, `{"error":"not found","code":404}`},
		{"error body with a retry hint", subjects.ErrorBody{Error: "slow down", Code: 429, RetryAfterMs: 20}, `{"error":"slow down","code":429,"retry_after_ms":20}`},
		{"room ref", subjects.RoomRef{RoomID: "r", Subject: "s", Epoch: 1, History: "none", Role: "owner", Mode: "e2e"},
			`{"room_id":"r","subject":"s","epoch":1,"policy":"none","role":"owner","mode":"e2e"}`},
		{"user info, optional fields omitted", subjects.UserInfo{Pub: "U", AddedAt: added},
			`{"pub":"U","added_at":"2025-01-02T03:04:05Z"}`},
		{"user info, all fields", subjects.UserInfo{Pub: "U", Name: "n", Admin: true, EncKey: []byte{1}, EncKeySig: []byte{2}, AddedAt: added, Revoked: true, RevokedAt: &added},
			`{"pub":"U","name":"n","admin":true,"enc_key":"AQ==","enc_key_sig":"Ag==","added_at":"2025-01-02T03:04:05Z","revoked":true,"revoked_at":"2025-01-02T03:04:05Z"}`},
		{"add user, optional omitted", subjects.AddUserRequest{Pub: "U"}, `{"pub":"U"}`},
		{"set key", subjects.SetKeyRequest{EncKey: []byte{1}, EncKeySig: []byte{2}, EncKeyVersion: 3, EncKeyIssuedAt: added},
			`{"enc_key":"AQ==","enc_key_sig":"Ag==","enc_key_version":3,"enc_key_issued_at":"2025-01-02T03:04:05Z"}`},
		{"create room, empty", subjects.CreateRoomRequest{}, `{}`},
		{"create room", subjects.CreateRoomRequest{Name: "n", Mode: "e2e", History: "none", SealedKey: []byte{1}},
			`{"name":"n","mode":"e2e","history":"none","sealed_key":"AQ=="}`},
		{"create room, owner-bound ID and grant", subjects.CreateRoomRequest{RoomID: "r", Salt: []byte{4}, Mode: "e2e", SealedKey: []byte{1}, Grant: []byte{2}},
			`{"room_id":"r","salt":"BA==","mode":"e2e","sealed_key":"AQ==","grant":"Ag=="}`},
		{"room info with salt", subjects.RoomInfo{RoomID: "r", Subject: "s", Mode: "e2e", History: "none", Owner: "U", Salt: []byte{4}, Epoch: 1, NextEpoch: 2, CreatedAt: added},
			`{"room_id":"r","subject":"s","mode":"e2e","history":"none","owner":"U","salt":"BA==","epoch":1,"next_epoch":2,"created_at":"2025-01-02T03:04:05Z"}`},
		{"room info", subjects.RoomInfo{RoomID: "r", Subject: "s", Mode: "cleartext", History: "none", Owner: "U", CreatedAt: added},
			`{"room_id":"r","subject":"s","mode":"cleartext","history":"none","owner":"U","epoch":0,"created_at":"2025-01-02T03:04:05Z"}`},
		{"invite, cleartext room", subjects.InviteRequest{RoomID: "r", Pub: "U", OwnerSig: []byte{1}},
			`{"room_id":"r","pub":"U","owner_sig":"AQ=="}`},
		{"invite", subjects.InviteRequest{RoomID: "r", Pub: "U", Epoch: 2, SealedKey: []byte{1}, Grant: []byte{4}, OwnerSig: []byte{2}},
			`{"room_id":"r","pub":"U","epoch":2,"sealed_key":"AQ==","grant":"BA==","owner_sig":"Ag=="}`},
		{"remove", subjects.RemoveRequest{RoomID: "r", Pub: "U", Rekey: &subjects.RekeyBundle{FromEpoch: 2, ToEpoch: 3, Keys: map[string][]byte{"UB": {2}, "UA": {1}}, Grants: map[string][]byte{"UB": {5}, "UA": {4}}}, OwnerSig: []byte{3}},
			`{"room_id":"r","pub":"U","rekey":{"from_epoch":2,"to_epoch":3,"keys":{"UA":"AQ==","UB":"Ag=="},"grants":{"UA":"BA==","UB":"BQ=="}},"owner_sig":"Aw=="}`},
		{"rekey", subjects.RekeyRequest{RoomID: "r", FromEpoch: 2, ToEpoch: 3, Keys: map[string][]byte{"UA": {1}}, Grants: map[string][]byte{"UA": {4}}, OwnerSig: []byte{3}},
			`{"room_id":"r","from_epoch":2,"to_epoch":3,"keys":{"UA":"AQ=="},"grants":{"UA":"BA=="},"owner_sig":"Aw=="}`},
		{"rekey without grants (refused by the service)", subjects.RekeyRequest{RoomID: "r", FromEpoch: 2, ToEpoch: 3, Keys: map[string][]byte{"UA": {1}}},
			`{"room_id":"r","from_epoch":2,"to_epoch":3,"keys":{"UA":"AQ=="},"grants":null}`},
		{"member", subjects.MemberInfo{Pub: "U", Role: "member", JoinedEpoch: 3}, `{"pub":"U","role":"member","joined_epoch":3}`},
		{"member with grant", subjects.MemberInfo{Pub: "U", Role: "member", JoinedEpoch: 3, EncKey: []byte{1}, EncKeySig: []byte{2}, Grant: []byte{3}},
			`{"pub":"U","role":"member","joined_epoch":3,"enc_key":"AQ==","enc_key_sig":"Ag==","grant":"Aw=="}`},
		{"members, all", subjects.MembersRequest{RoomID: "r"}, `{"room_id":"r"}`},
		{"members, one user", subjects.MembersRequest{RoomID: "r", Pub: "U"}, `{"room_id":"r","pub":"U"}`},
		{"key request, latest", subjects.KeyRequest{RoomID: "r"}, `{"room_id":"r"}`},
		{"key response, legacy key without grant", subjects.KeyResponse{RoomID: "r", Epoch: 1, SealedKey: []byte{1}}, `{"room_id":"r","epoch":1,"sealed_key":"AQ=="}`},
		{"key response", subjects.KeyResponse{RoomID: "r", Epoch: 1, SealedKey: []byte{1}, Grant: []byte{2}}, `{"room_id":"r","epoch":1,"sealed_key":"AQ==","grant":"Ag=="}`},
		{"room ref with salt", subjects.RoomRef{RoomID: "r", Subject: "s", Epoch: 1, History: "none", Role: "owner", Mode: "e2e", Owner: "U", Salt: []byte{4}},
			`{"room_id":"r","subject":"s","epoch":1,"policy":"none","role":"owner","mode":"e2e","owner":"U","salt":"BA=="}`},
		{"blob put", subjects.BlobPutRequest{RoomID: "r", Blob: "b", Size: 1, Data: []byte{1}}, `{"room_id":"r","blob":"b","size":1,"index":0,"data":"AQ=="}`},
		{"blob put, empty blob", subjects.BlobPutRequest{RoomID: "r", Blob: "b"}, `{"room_id":"r","blob":"b","size":0,"index":0}`},
		{"blob info", subjects.BlobInfo{RoomID: "r", Blob: "b", Size: 1, Chunks: 1}, `{"room_id":"r","blob":"b","size":1,"chunks":1,"complete":false}`},
		{"blob get", subjects.BlobGetRequest{RoomID: "r", Blob: "b", Index: 3}, `{"room_id":"r","blob":"b","index":3}`},
		{"blob chunk", subjects.BlobChunk{RoomID: "r", Blob: "b", Index: 1, Chunks: 2, Size: 9, Data: []byte{1}},
			`{"room_id":"r","blob":"b","index":1,"chunks":2,"size":9,"data":"AQ=="}`},
		{"blob ref, cleartext room", subjects.BlobRef{RoomID: "r", Blob: "b", Size: 0}, `{"room_id":"r","blob":"b","size":0}`},
		{"blob ref", subjects.BlobRef{RoomID: "r", Blob: "b", Epoch: 2, Size: 7}, `{"room_id":"r","blob":"b","epoch":2,"size":7}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("Marshal =\n %s\nwant\n %s", got, tt.want)
			}
		})
	}
}

func TestEmptyListsEncodeAsArrays(t *testing.T) {
	tests := []struct {
		v    any
		want string
	}{
		{subjects.MineResponse{}, `{"rooms":[],"invitations":[]}`},
		{&subjects.MineResponse{}, `{"rooms":[],"invitations":[]}`},
		{subjects.MineResponse{Rooms: []subjects.RoomRef{}}, `{"rooms":[],"invitations":[]}`},
		{subjects.ListUsersResponse{}, `{"users":[]}`},
		{&subjects.ListUsersResponse{}, `{"users":[]}`},
		{subjects.MembersResponse{}, `{"members":[]}`},
		{&subjects.MembersResponse{}, `{"members":[]}`},
		{subjects.MineResponse{Rooms: []subjects.RoomRef{{RoomID: "r", Subject: "s", Epoch: 1, History: "none", Role: "owner", Mode: "cleartext"}}},
			`{"rooms":[{"room_id":"r","subject":"s","epoch":1,"policy":"none","role":"owner","mode":"cleartext"}],"invitations":[]}`},
		{struct {
			M subjects.MineResponse `json:"m"`
		}{}, `{"m":{"rooms":[],"invitations":[]}}`},
	}
	for _, tt := range tests {
		got, err := json.Marshal(tt.v)
		if err != nil {
			t.Fatalf("Marshal(%#v): %v", tt.v, err)
		}
		if string(got) != tt.want {
			t.Errorf("Marshal(%#v) = %s, want %s", tt.v, got, tt.want)
		}
	}
}

// ownerSigned is implemented by the owner-signed request types.
type ownerSigned = subjects.OwnerSigned

// ownerCase is an owner-signed request type with a fresh value, the op it
// is signed for, and one mutation per field.
type ownerCase struct {
	name      string
	op        string
	new       func() ownerSigned
	setSig    func(ownerSigned, []byte)
	mutations map[string]func(ownerSigned) // field name (dotted for nested) → change it
	fields    []string                     // fields that mutations must cover
}

func ownerCases(t *testing.T) []ownerCase {
	alice := testPub(t, nkeys.PrefixByteUser, 1)
	bob := testPub(t, nkeys.PrefixByteUser, 2)
	return []ownerCase{
		{
			name: "invite",
			op:   subjects.RoomsInvite,
			new: func() ownerSigned {
				return &subjects.InviteRequest{RoomID: "room", Pub: bob, Epoch: 2, SealedKey: []byte{1, 2, 3}, Grant: []byte{4, 5, 6}}
			},
			setSig: func(r ownerSigned, sig []byte) { r.(*subjects.InviteRequest).OwnerSig = sig },
			mutations: map[string]func(ownerSigned){
				"RoomID":    func(r ownerSigned) { r.(*subjects.InviteRequest).RoomID = "room2" },
				"Pub":       func(r ownerSigned) { r.(*subjects.InviteRequest).Pub = alice },
				"Epoch":     func(r ownerSigned) { r.(*subjects.InviteRequest).Epoch = 3 },
				"SealedKey": func(r ownerSigned) { r.(*subjects.InviteRequest).SealedKey[1] = 9 },
				"Grant":     func(r ownerSigned) { r.(*subjects.InviteRequest).Grant[1] = 9 },
			},
			fields: fieldNames(subjects.InviteRequest{}),
		},
		{
			name: "remove",
			op:   subjects.RoomsRemove,
			new: func() ownerSigned {
				return &subjects.RemoveRequest{RoomID: "room", Pub: bob, Rekey: &subjects.RekeyBundle{FromEpoch: 2, Keys: map[string][]byte{alice: {1}}, Grants: map[string][]byte{alice: {4}}}}
			},
			setSig: func(r ownerSigned, sig []byte) { r.(*subjects.RemoveRequest).OwnerSig = sig },
			mutations: map[string]func(ownerSigned){
				"RoomID":          func(r ownerSigned) { r.(*subjects.RemoveRequest).RoomID = "room2" },
				"Pub":             func(r ownerSigned) { r.(*subjects.RemoveRequest).Pub = alice },
				"Rekey":           func(r ownerSigned) { r.(*subjects.RemoveRequest).Rekey = nil },
				"Rekey.FromEpoch": func(r ownerSigned) { r.(*subjects.RemoveRequest).Rekey.FromEpoch = 3 },
				"Rekey.ToEpoch":   func(r ownerSigned) { r.(*subjects.RemoveRequest).Rekey.ToEpoch = 9 },
				"Rekey.Keys":      func(r ownerSigned) { r.(*subjects.RemoveRequest).Rekey.Keys[alice][0] = 2 },
				"Rekey.Keys+":     func(r ownerSigned) { r.(*subjects.RemoveRequest).Rekey.Keys[bob] = []byte{1} },
				"Rekey.Grants":    func(r ownerSigned) { r.(*subjects.RemoveRequest).Rekey.Grants[alice][0] = 5 },
				"Rekey.Grants+":   func(r ownerSigned) { r.(*subjects.RemoveRequest).Rekey.Grants[bob] = []byte{4} },
			},
			fields: append(fieldNames(subjects.RemoveRequest{}), prefixed("Rekey.", fieldNames(subjects.RekeyBundle{}))...),
		},
		{
			name: "rekey",
			op:   subjects.RoomsRekey,
			new: func() ownerSigned {
				return &subjects.RekeyRequest{RoomID: "room", FromEpoch: 2, Keys: map[string][]byte{alice: {1}, bob: {2}}, Grants: map[string][]byte{alice: {4}, bob: {5}}}
			},
			setSig: func(r ownerSigned, sig []byte) { r.(*subjects.RekeyRequest).OwnerSig = sig },
			mutations: map[string]func(ownerSigned){
				"RoomID":    func(r ownerSigned) { r.(*subjects.RekeyRequest).RoomID = "room2" },
				"FromEpoch": func(r ownerSigned) { r.(*subjects.RekeyRequest).FromEpoch = 3 },
				"ToEpoch":   func(r ownerSigned) { r.(*subjects.RekeyRequest).ToEpoch = 9 },
				"Keys":      func(r ownerSigned) { r.(*subjects.RekeyRequest).Keys[bob][0] = 3 },
				"Keys-":     func(r ownerSigned) { delete(r.(*subjects.RekeyRequest).Keys, bob) },
				"Keys swap": func(r ownerSigned) {
					k := r.(*subjects.RekeyRequest).Keys
					k[alice], k[bob] = k[bob], k[alice]
				},
				"Grants":  func(r ownerSigned) { r.(*subjects.RekeyRequest).Grants[bob][0] = 6 },
				"Grants-": func(r ownerSigned) { delete(r.(*subjects.RekeyRequest).Grants, bob) },
				"Grants swap": func(r ownerSigned) {
					g := r.(*subjects.RekeyRequest).Grants
					g[alice], g[bob] = g[bob], g[alice]
				},
			},
			fields: fieldNames(subjects.RekeyRequest{}),
		},
	}
}

func fieldNames(v any) []string {
	var names []string
	typ := reflect.TypeOf(v)
	for i := range typ.NumField() {
		if name := typ.Field(i).Name; name != "OwnerSig" {
			names = append(names, name)
		}
	}
	return names
}

func prefixed(p string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = p + n
	}
	return out
}

func signingBytes(t *testing.T, r ownerSigned) []byte {
	t.Helper()
	b, err := r.SigningBytes()
	if err != nil {
		t.Fatalf("SigningBytes: %v", err)
	}
	return b
}

func TestOwnerSigningBytes(t *testing.T) {
	for _, tc := range ownerCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			// Every field (but OwnerSig) has a mutation, so a new field
			// cannot be left out of this test.
			for _, f := range tc.fields {
				if tc.mutations[f] == nil {
					t.Errorf("no mutation for field %s", f)
				}
			}

			base := signingBytes(t, tc.new())
			if !bytes.Equal(base, signingBytes(t, tc.new())) {
				t.Fatal("SigningBytes is not deterministic")
			}
			wantPrefix := "unibus-owner-v1\n" + tc.op + "\n"
			if !strings.HasPrefix(string(base), wantPrefix) || len(base) != len(wantPrefix)+64 {
				t.Errorf("SigningBytes = %q, want %q + 64 hex digits", base, wantPrefix)
			}

			seen := map[string]string{string(base): "base"}
			names := make([]string, 0, len(tc.mutations))
			for name := range tc.mutations {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				r := tc.new()
				tc.mutations[name](r)
				got := string(signingBytes(t, r))
				if prev, ok := seen[got]; ok {
					t.Errorf("changing %s gives the same signing bytes as %s", name, prev)
				}
				seen[got] = name
			}

			r := tc.new()
			tc.setSig(r, []byte("any signature"))
			if !bytes.Equal(signingBytes(t, r), base) {
				t.Error("OwnerSig changes the signing bytes")
			}
		})
	}
}

// TestOwnerSigningBytesFormat pins the format against an independent
// computation, as a client in another language would do it.
func TestOwnerSigningBytesFormat(t *testing.T) {
	r := &subjects.RekeyRequest{RoomID: "r", FromEpoch: 2, ToEpoch: 3, Keys: map[string][]byte{"UB": {2}, "UA": {1}}, Grants: map[string][]byte{"UB": {4}, "UA": {3}}, OwnerSig: []byte{9}}
	j := `{"room_id":"r","from_epoch":2,"to_epoch":3,"keys":{"UA":"AQ==","UB":"Ag=="},"grants":{"UA":"Aw==","UB":"BA=="}}`
	sum := sha256.Sum256([]byte(j))
	want := "unibus-owner-v1\nunibus.v1.rooms.rekey\n" + hex.EncodeToString(sum[:])
	if got := signingBytes(t, r); string(got) != want {
		t.Errorf("SigningBytes = %q, want %q", got, want)
	}
}

func TestOwnerSignVerify(t *testing.T) {
	owner := testKey(t, nkeys.PrefixByteUser, 1)
	ownerPub := testPub(t, nkeys.PrefixByteUser, 1)
	other := testKey(t, nkeys.PrefixByteUser, 2)
	otherPub := testPub(t, nkeys.PrefixByteUser, 2)

	for _, tc := range ownerCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.new()
			if err := subjects.VerifyOwner(ownerPub, r); !errors.Is(err, subjects.ErrMissingSignature) {
				t.Errorf("unsigned: VerifyOwner = %v, want ErrMissingSignature", err)
			}
			if err := subjects.SignOwner(owner, r); err != nil {
				t.Fatalf("SignOwner: %v", err)
			}
			if err := subjects.VerifyOwner(ownerPub, r); err != nil {
				t.Fatalf("VerifyOwner: %v", err)
			}
			if err := subjects.VerifyOwner(" "+strings.ToLower(ownerPub), r); err != nil {
				t.Errorf("VerifyOwner(lower-case owner): %v", err)
			}
			if err := subjects.VerifyOwner(otherPub, r); !errors.Is(err, subjects.ErrBadSignature) {
				t.Errorf("VerifyOwner(another user) = %v, want ErrBadSignature", err)
			}
			if err := subjects.VerifyOwner(testPub(t, nkeys.PrefixByteAccount, 1), r); !errors.Is(err, subjects.ErrInvalidUserKey) {
				t.Errorf("VerifyOwner(account key) = %v, want ErrInvalidUserKey", err)
			}

			// The signature survives the wire: what the service decodes
			// and re-encodes verifies.
			data, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			decoded := reflect.New(reflect.TypeOf(r).Elem()).Interface().(ownerSigned)
			if err := json.Unmarshal(data, decoded); err != nil {
				t.Fatal(err)
			}
			if err := subjects.VerifyOwner(ownerPub, decoded); err != nil {
				t.Errorf("after a JSON round trip: VerifyOwner = %v", err)
			}

			// A change after signing breaks the signature.
			for name, mutate := range tc.mutations {
				r := tc.new()
				if err := subjects.SignOwner(owner, r); err != nil {
					t.Fatal(err)
				}
				mutate(r)
				if err := subjects.VerifyOwner(ownerPub, r); !errors.Is(err, subjects.ErrBadSignature) {
					t.Errorf("%s changed after signing: VerifyOwner = %v, want ErrBadSignature", name, err)
				}
			}

			// A signature by someone else does not pass for the owner's.
			r = tc.new()
			if err := subjects.SignOwner(other, r); err != nil {
				t.Fatal(err)
			}
			if err := subjects.VerifyOwner(ownerPub, r); !errors.Is(err, subjects.ErrBadSignature) {
				t.Errorf("signed by another user: VerifyOwner = %v, want ErrBadSignature", err)
			}

			if err := subjects.SignOwner(testKey(t, nkeys.PrefixByteAccount, 1), tc.new()); !errors.Is(err, subjects.ErrInvalidUserKey) {
				t.Errorf("SignOwner(account key) = %v, want ErrInvalidUserKey", err)
			}
		})
	}

	// A signature for one operation does not pass for another: an invite's
	// signature over the same fields is not a valid removal.
	invite := &subjects.InviteRequest{RoomID: "room", Pub: otherPub}
	if err := subjects.SignOwner(owner, invite); err != nil {
		t.Fatal(err)
	}
	remove := &subjects.RemoveRequest{RoomID: "room", Pub: otherPub, OwnerSig: invite.OwnerSig}
	if err := subjects.VerifyOwner(ownerPub, remove); !errors.Is(err, subjects.ErrBadSignature) {
		t.Errorf("invite signature on a removal: VerifyOwner = %v, want ErrBadSignature", err)
	}
}

func TestEncKeyBinding(t *testing.T) {
	kp := testKey(t, nkeys.PrefixByteUser, 1)
	pub := testPub(t, nkeys.PrefixByteUser, 1)
	encKey := []byte("hello")

	issued := time.Unix(1767225600, 0)

	msg := subjects.EncKeyBindingMessage(pub, encKey, 3, issued)
	want := "unibus-enckey-v2\n" + pub + "\n3\n1767225600\n2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	if string(msg) != want {
		t.Errorf("EncKeyBindingMessage = %q, want %q", msg, want)
	}

	sig, err := subjects.SignEncKeyBinding(kp, encKey, 3, issued)
	if err != nil {
		t.Fatalf("SignEncKeyBinding: %v", err)
	}
	if err := kp.Verify(msg, sig); err != nil {
		t.Errorf("signature is not over EncKeyBindingMessage: %v", err)
	}
	if err := subjects.VerifyEncKeyBinding(pub, encKey, 3, issued, sig); err != nil {
		t.Errorf("VerifyEncKeyBinding: %v", err)
	}

	tests := []struct {
		name    string
		pub     string
		encKey  []byte
		version uint64
		issued  time.Time
		sig     []byte
		is      error
	}{
		{"other key", pub, []byte("hellp"), 3, issued, sig, subjects.ErrBadSignature},
		{"other user", testPub(t, nkeys.PrefixByteUser, 2), encKey, 3, issued, sig, subjects.ErrBadSignature},
		{"older version", pub, encKey, 2, issued, sig, subjects.ErrBadSignature},
		{"newer version", pub, encKey, 4, issued, sig, subjects.ErrBadSignature},
		{"version 0", pub, encKey, 0, issued, sig, subjects.ErrBadSignature},
		{"other time", pub, encKey, 3, issued.Add(time.Second), sig, subjects.ErrBadSignature},
		{"truncated sig", pub, encKey, 3, issued, sig[:63], subjects.ErrBadSignature},
		{"no sig", pub, encKey, 3, issued, nil, subjects.ErrMissingSignature},
		{"account key", testPub(t, nkeys.PrefixByteAccount, 1), encKey, 3, issued, sig, subjects.ErrInvalidUserKey},
	}
	for _, tt := range tests {
		if err := subjects.VerifyEncKeyBinding(tt.pub, tt.encKey, tt.version, tt.issued, tt.sig); !errors.Is(err, tt.is) {
			t.Errorf("%s: VerifyEncKeyBinding = %v, want %v", tt.name, err, tt.is)
		}
	}
	if _, err := subjects.SignEncKeyBinding(testKey(t, nkeys.PrefixByteAccount, 1), encKey, 1, issued); !errors.Is(err, subjects.ErrInvalidUserKey) {
		t.Errorf("SignEncKeyBinding(account key) = %v, want ErrInvalidUserKey", err)
	}
	if _, err := subjects.SignEncKeyBinding(kp, encKey, 0, issued); err == nil {
		t.Errorf("SignEncKeyBinding(version 0) succeeded")
	}
}

func TestBlobID(t *testing.T) {
	// The ID is what sha256sum prints.
	if got, want := subjects.BlobID([]byte("hello")), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; got != want {
		t.Errorf("BlobID = %s, want %s", got, want)
	}
	if err := subjects.ValidateBlobID(subjects.BlobID(nil)); err != nil {
		t.Errorf("ValidateBlobID(BlobID(nil)) = %v", err)
	}
	valid := subjects.BlobID([]byte("x"))
	for _, tc := range []struct {
		name, id, reason string
	}{
		{"empty", "", "0 characters"},
		{"short", valid[:63], "63 characters"},
		{"long", valid + "0", "65 characters"},
		{"upper case", strings.ToUpper(valid[:2]) + valid[2:], "lowercase hex"},
		{"not hex", "g" + valid[1:], `contains 'g'`},
		{"wildcard", "*" + valid[1:], `contains '*'`},
		{"dot", "." + valid[1:], `contains '.'`},
		{"path", "/" + valid[1:], `contains '/'`},
	} {
		err := subjects.ValidateBlobID(tc.id)
		if !errors.Is(err, subjects.ErrInvalidBlobID) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: ValidateBlobID(%q) = %v, want ErrInvalidBlobID mentioning %q", tc.name, tc.id, err, tc.reason)
		}
	}
}

func TestBlobChunks(t *testing.T) {
	const c = subjects.BlobChunkSize
	for _, tc := range []struct {
		size   int64
		chunks int
		lens   []int // every chunk's length, then -1 for the one past the end
	}{
		{0, 1, []int{0, -1}},
		{1, 1, []int{1, -1}},
		{c - 1, 1, []int{c - 1, -1}},
		{c, 1, []int{c, -1}},
		{c + 1, 2, []int{c, 1, -1}},
		{3*c + 5, 4, []int{c, c, c, 5, -1}},
		{subjects.MaxBlobSize, subjects.MaxBlobChunks, nil},
	} {
		if got := subjects.BlobChunks(tc.size); got != tc.chunks {
			t.Errorf("BlobChunks(%d) = %d, want %d", tc.size, got, tc.chunks)
		}
		var total int64
		for i, want := range tc.lens {
			got := subjects.BlobChunkLen(tc.size, i)
			if got != want {
				t.Errorf("BlobChunkLen(%d, %d) = %d, want %d", tc.size, i, got, want)
			}
			total += int64(max(got, 0))
		}
		if tc.lens != nil && total != tc.size {
			t.Errorf("chunks of a blob of %d bytes add up to %d", tc.size, total)
		}
		if got := subjects.BlobChunkLen(tc.size, -1); got != -1 {
			t.Errorf("BlobChunkLen(%d, -1) = %d, want -1", tc.size, got)
		}
	}
	if got := subjects.BlobChunkLen(-1, 0); got != -1 {
		t.Errorf("BlobChunkLen(-1, 0) = %d, want -1", got)
	}
}
