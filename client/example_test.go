package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
)

// A bot connects with its identity, pinning the server's CA, and registers
// its encryption key so that room keys can be sealed to it.
func ExampleConnect() {
	ctx := context.Background()
	id, err := identity.Load("bot.nk")
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.Connect(ctx, "tls://127.0.0.1:4222", id, client.WithCA("certs/ca.pem"))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if err := c.SetEncryptionKey(ctx, client.EncryptionKeyPath("bot.nk")); err != nil {
		log.Fatal(err)
	}
}

// The owner creates an encrypted room and invites a peer, which must
// accept (see Conn.Accept); the room key is made and sealed on the
// client, never seen by the servers.
func ExampleConn_CreateRoom() {
	ctx := context.Background()
	var c *client.Conn // from client.Connect
	room, err := c.CreateRoom(ctx, "ops", subjects.ModeE2E)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Invite(ctx, room.RoomID, "UBOB…"); err != nil {
		log.Fatal(err)
	}
}

// An invitation is a proposal: the invitee accepts those of owners it
// knows, declines the others, and is a member only once it accepts.
func ExampleConn_Accept() {
	ctx := context.Background()
	var c *client.Conn // from client.Connect
	trusted := map[string]bool{"UALICE…": true}
	invitations, err := c.Invitations(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, inv := range invitations {
		if !trusted[inv.Owner] {
			_, _ = c.Decline(ctx, inv.RoomID)
			continue
		}
		room, err := c.Accept(ctx, inv.RoomID)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("joined", room.Name)
	}
}

// A member finds its rooms without knowing their IDs and listens:
// the handler sees only frames that verify and decrypt.
func ExampleConn_Subscribe() {
	ctx := context.Background()
	var c *client.Conn // from client.Connect
	rooms, err := c.ListMyRooms(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range rooms {
		_, err := c.Subscribe(ctx, r.RoomID, func(m client.Message) {
			fmt.Printf("%s from %s: %s\n", m.Room, m.Sender, m.Data)
			if m.Type == "MSG" && m.Sender != c.Identity().PublicKey() {
				_, _ = c.PublishReply(ctx, m.Room, m.ID, []byte("got it"))
				_, _ = c.React(ctx, m.Room, m.ID, "👍")
			}
		}, nil)
		if err != nil {
			log.Fatal(err)
		}
	}
}

// Removing a member of an encrypted room rekeys it in the same request.
func ExampleConn_Remove() {
	ctx := context.Background()
	var c *client.Conn // from client.Connect
	if _, err := c.Remove(ctx, "ROOM-ID", "UCAROL…"); err != nil {
		log.Fatal(err)
	}
}

// A send is acknowledged once the room log stored it; telemetry that may
// be lost goes fire-and-forget.
func ExampleConn_Publish() {
	ctx := context.Background()
	var c *client.Conn // from client.Connect
	sent, err := c.Publish(ctx, "ROOM-ID", []byte("deploy finished"))
	if err != nil {
		log.Fatal(err) // e.g. client.ErrForbidden: not a member
	}
	fmt.Println("stored as", sent.Seq)
	_, _ = c.Publish(ctx, "ROOM-ID", []byte("cpu 12%"), client.NoAck())
}

// A bot that restarts resumes where it stopped: it saves the position of
// the last message it handled and subscribes from the next one; what was
// sent meanwhile is read from the room log first, then it goes on live.
func ExampleFromSeq() {
	ctx := context.Background()
	var c *client.Conn    // from client.Connect
	var saved uint64 = 41 // the Seq of the last message handled, kept on disk
	_, err := c.Subscribe(ctx, "ROOM-ID", func(m client.Message) {
		fmt.Printf("%d: %s\n", m.Seq, m.Data)
		saved = m.Seq // and write it to disk
	}, nil, client.FromSeq(saved+1))
	if err != nil {
		log.Fatal(err)
	}
}

// A chat client shows the last page of a room and scrolls back.
func ExampleConn_History() {
	ctx := context.Background()
	var c *client.Conn // from client.Connect
	page, err := c.History(ctx, "ROOM-ID", client.HistoryQuery{Last: 50})
	for err == nil && len(page.Messages) > 0 {
		for _, m := range page.Messages {
			fmt.Printf("%d %s: %s\n", m.Seq, m.Sender, m.Data)
		}
		page, err = c.History(ctx, "ROOM-ID", client.HistoryQuery{Last: 50, Before: page.Messages[0].Seq})
	}
	if err != nil {
		log.Fatal(err)
	}
}

// A bot learns of its invitations as they happen, and of those made while
// it was away, and accepts those of owners it trusts.
func ExampleConn_Events() {
	ctx := context.Background()
	var c *client.Conn // from client.Connect
	var saved uint64   // the Seq of the last event handled, kept on disk
	accept := make(chan string, 16)
	_, err := c.Events(ctx, saved+1, func(e subjects.Event) {
		if e.Type == subjects.EventInvited && e.By == "UALICE…" {
			accept <- e.RoomID // accepted outside the handler
		}
		saved = e.Seq
	})
	if err != nil {
		log.Fatal(err)
	}
	for room := range accept {
		if _, err := c.Accept(ctx, room); err != nil {
			log.Print(err)
		}
	}
}
