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
