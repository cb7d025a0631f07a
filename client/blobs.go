package client

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/subjects"
)

// Blobs: files and other content too large for a message, stored in a room
// through the blobs service and shared by sending their BlobRef.
//
// A blob is named by the SHA-256 of what is stored (subjects.BlobID), and a
// reader checks that hash, so the service and the store cannot change a blob
// unnoticed. In an encrypted room the content is sealed before it leaves the
// client, and the blob ID is the hash of the sealed bytes. A sealed blob is
//
//	header    = "UBB" ‖ u8(1) ‖ u64(epoch) ‖ salt          (44 bytes; salt: 32 random bytes)
//	key       = HKDF-SHA256(ikm = roomKey of epoch, salt,
//	                        info = "unibus-blob-v1" ‖ lp(room) ‖ u64(epoch), 32 bytes)
//	segment i = XChaCha20-Poly1305(key, nonce = u64(i) ‖ u8(last) ‖ 15 zero bytes,
//	                               plaintext i, additional data = header)
//	blob      = header ‖ segment 0 ‖ … ‖ segment n-1
//
// where the plaintext is cut into segments of 64 KiB, the last one holding
// the rest (0..64 KiB; the empty content is one empty segment), last is 1
// for the last segment and 0 for the others, and integers are big-endian
// (lp is one length byte and the string, as in frames). The random salt
// makes a new key per blob, so the counter nonces never repeat under a key;
// the index and the last flag in the nonce make reordered, dropped or
// truncated segments fail to open, and the header, bound by the key and the
// additional data, cannot be changed either. Sealing in segments (the
// STREAM construction, as age does) keeps memory bounded on both sides: no
// step holds more than a chunk of the blob.

// ErrBlobCorrupt reports a blob whose content does not match its ID (the
// SHA-256 of what was stored), a malformed reply of the blobs service, or,
// in an encrypted room, a sealed blob that does not open with the room key
// (which also matches e2e.ErrDecrypt).
var ErrBlobCorrupt = errors.New("blob is corrupt")

// BlobRef names a blob for the members of its room; send it, as JSON, in a
// message. See subjects.BlobRef.
type BlobRef = subjects.BlobRef

// Sealed-blob format.
const (
	blobMagic       = "UBB\x01"
	blobSaltSize    = 32
	blobHeaderSize  = len(blobMagic) + 8 + blobSaltSize
	blobSegmentSize = 64 << 10
	blobTagSize     = chacha20poly1305.Overhead
	blobKeyDomain   = "unibus-blob-v1"
)

// PutBlob stores the content of r in a room and returns the reference to
// send to its members. In an encrypted room the content is sealed first,
// with a key derived from the room key of the current epoch.
//
// The blob ID must be known before the first chunk is sent, so the content
// is read twice: when r is an io.Seeker that can seek (a file), PutBlob
// rewinds it to where it started, and memory stays bounded; otherwise it
// holds the content in memory (at most subjects.MaxBlobSize). Content that
// changes between the two reads is refused by the service.
//
// progress, when not nil, is called after each chunk with the bytes sent
// and the blob's stored size. A blob already stored in the room (the same
// content, in a cleartext room) completes after its first chunk. A blob over
// the deployment's limit fails with ErrTooLarge before anything is stored.
func (c *Conn) PutBlob(ctx context.Context, roomID string, r io.Reader, progress func(done, total int64)) (BlobRef, error) {
	if err := subjects.ValidateRoomID(roomID); err != nil {
		return BlobRef{}, fmt.Errorf("put blob: %w", err)
	}
	// The current epoch, so that members who joined since can open it.
	rc, err := c.keys.room(ctx, roomID, true)
	if err != nil {
		return BlobRef{}, fmt.Errorf("put blob in room %s: %w", roomID, err)
	}
	c.keys.mu.Lock()
	info := rc.info
	c.keys.mu.Unlock()
	ref := BlobRef{RoomID: roomID}
	var seal *blobSealing
	if info.Mode != subjects.ModeCleartext {
		key, err := c.keys.roomKey(ctx, roomID, info.Epoch)
		if err != nil {
			return BlobRef{}, fmt.Errorf("put blob in room %s: %w", roomID, err)
		}
		if seal, err = newBlobSealing(key, roomID, info.Epoch); err != nil {
			return BlobRef{}, fmt.Errorf("put blob in room %s: %w", roomID, err)
		}
		ref.Epoch = info.Epoch
	}
	src, err := rewindable(r)
	if err != nil {
		return BlobRef{}, fmt.Errorf("put blob in room %s: %w", roomID, err)
	}
	start, err := src.Seek(0, io.SeekCurrent)
	if err != nil {
		return BlobRef{}, fmt.Errorf("put blob in room %s: %w", roomID, err)
	}

	// First read: the blob's ID and sizes.
	content := &countingReader{r: src}
	sum := sha256.New()
	size, err := io.Copy(sum, io.LimitReader(seal.reader(content), subjects.MaxBlobSize+1))
	if err != nil {
		return BlobRef{}, fmt.Errorf("put blob in room %s: read: %w", roomID, err)
	}
	if size > subjects.MaxBlobSize {
		return BlobRef{}, fmt.Errorf("put blob in room %s: over %d bytes: %w", roomID, subjects.MaxBlobSize, ErrTooLarge)
	}
	ref.Blob, ref.Size = hex.EncodeToString(sum.Sum(nil)), content.n

	// Second read: the upload.
	if _, err := src.Seek(start, io.SeekStart); err != nil {
		return BlobRef{}, fmt.Errorf("put blob in room %s: rewind: %w", roomID, err)
	}
	if err := c.upload(ctx, ref, size, seal.reader(src), progress); err != nil {
		return BlobRef{}, fmt.Errorf("put blob in room %s: %w", roomID, err)
	}
	return ref, nil
}

// upload sends the stored form of a blob, size bytes read from stored, in
// chunks, until the service reports the blob complete.
func (c *Conn) upload(ctx context.Context, ref BlobRef, size int64, stored io.Reader, progress func(done, total int64)) error {
	sum := sha256.New()
	stored = io.TeeReader(stored, sum)
	chunks := subjects.BlobChunks(size)
	buf := make([]byte, min(int64(subjects.BlobChunkSize), size))
	var done int64
	for i := range chunks {
		data := buf[:subjects.BlobChunkLen(size, i)]
		if _, err := io.ReadFull(stored, data); err != nil {
			return fmt.Errorf("the content changed while it was uploaded: read: %w", err)
		}
		changed := false
		if i == chunks-1 {
			// Still send the last chunk: the service then finds the
			// mismatch and deletes the chunks sent so far.
			n, _ := io.Copy(io.Discard, stored)
			changed = n != 0 || hex.EncodeToString(sum.Sum(nil)) != ref.Blob
		}
		var info subjects.BlobInfo
		err := c.call(ctx, subjects.BlobsPut, subjects.BlobPutRequest{RoomID: ref.RoomID, Blob: ref.Blob, Size: size, Index: i, Data: data}, &info)
		switch {
		case changed && err != nil:
			return fmt.Errorf("the content changed while it was uploaded: %w", err)
		case changed:
			return errors.New("the content changed while it was uploaded")
		case err != nil:
			return err
		}
		done += int64(len(data))
		if info.Complete {
			if progress != nil {
				progress(size, size)
			}
			return nil
		}
		if progress != nil {
			progress(done, size)
		}
	}
	return fmt.Errorf("%s: blob %s: the service did not complete it: %w", subjects.BlobsPut, ref.Blob, ErrUnavailable)
}

// GetBlob writes the content of a blob of a room to w: the blob's chunks
// are fetched in order, checked against the blob's ID (SHA-256) and, in an
// encrypted room, opened with the room key of the epoch the blob names.
//
// GetBlob writes as it downloads, so that memory stays bounded: when it
// fails, discard what it wrote. In an encrypted room every byte it writes
// was authenticated with the room key, and the end of the content is
// written only after the whole blob matched its ID; in a cleartext room
// nothing vouches for the content before GetBlob returns nil. A mismatch is
// ErrBlobCorrupt.
//
// progress, when not nil, is called after each chunk with the bytes
// fetched and the blob's stored size.
func (c *Conn) GetBlob(ctx context.Context, roomID, blobID string, w io.Writer, progress func(done, total int64)) error {
	if err := subjects.ValidateRoomID(roomID); err != nil {
		return fmt.Errorf("get blob: %w", err)
	}
	if err := subjects.ValidateBlobID(blobID); err != nil {
		return fmt.Errorf("get blob: %w", err)
	}
	rc, err := c.keys.room(ctx, roomID, false)
	if err != nil {
		return fmt.Errorf("get blob %s: %w", blobID, err)
	}
	c.keys.mu.Lock()
	mode := rc.info.Mode
	c.keys.mu.Unlock()
	sink := w
	var open *blobOpening
	if mode != subjects.ModeCleartext {
		open = &blobOpening{room: roomID, w: w, key: func(epoch uint64) ([]byte, error) {
			return c.keys.roomKey(ctx, roomID, epoch)
		}}
		sink = open
	}
	sum := sha256.New()
	var size, done int64
	chunks := 1
	for i := 0; i < chunks; i++ {
		var ch subjects.BlobChunk
		if err := c.call(ctx, subjects.BlobsGet, subjects.BlobGetRequest{RoomID: roomID, Blob: blobID, Index: i}, &ch); err != nil {
			return fmt.Errorf("get blob %s: %w", blobID, err)
		}
		if i == 0 {
			size, chunks = ch.Size, ch.Chunks
		}
		if err := checkChunk(ch, roomID, blobID, i, size, chunks); err != nil {
			return fmt.Errorf("get blob %s: %w", blobID, err)
		}
		sum.Write(ch.Data)
		if i == chunks-1 && hex.EncodeToString(sum.Sum(nil)) != blobID {
			return fmt.Errorf("get blob %s: %w: the content does not match its SHA-256", blobID, ErrBlobCorrupt)
		}
		if _, err := sink.Write(ch.Data); err != nil {
			return fmt.Errorf("get blob %s: %w", blobID, err)
		}
		done += int64(len(ch.Data))
		if progress != nil {
			progress(done, size)
		}
	}
	if open != nil {
		if err := open.close(); err != nil {
			return fmt.Errorf("get blob %s: %w", blobID, err)
		}
	}
	return nil
}

// checkChunk checks a reply of blobs.get against the request and the first
// reply.
func checkChunk(ch subjects.BlobChunk, roomID, blobID string, index int, size int64, chunks int) error {
	switch {
	case ch.RoomID != roomID || ch.Blob != blobID || ch.Index != index:
		return fmt.Errorf("%w: the service answered chunk %d of %s/%s for chunk %d of %s/%s",
			ErrBlobCorrupt, ch.Index, ch.RoomID, ch.Blob, index, roomID, blobID)
	case size < 0 || size > subjects.MaxBlobSize || chunks != subjects.BlobChunks(size):
		return fmt.Errorf("%w: the service reports %d bytes in %d chunks", ErrBlobCorrupt, size, chunks)
	case ch.Size != size || ch.Chunks != chunks:
		return fmt.Errorf("%w: chunk %d reports %d bytes in %d chunks, chunk 0 %d in %d", ErrBlobCorrupt, index, ch.Size, ch.Chunks, size, chunks)
	case len(ch.Data) != subjects.BlobChunkLen(size, index):
		return fmt.Errorf("%w: chunk %d is %d bytes, want %d", ErrBlobCorrupt, index, len(ch.Data), subjects.BlobChunkLen(size, index))
	}
	return nil
}

// rewindable returns r if it can seek, or else its content in memory, at
// most subjects.MaxBlobSize bytes.
func rewindable(r io.Reader) (io.ReadSeeker, error) {
	if rs, ok := r.(io.ReadSeeker); ok {
		if _, err := rs.Seek(0, io.SeekCurrent); err == nil {
			return rs, nil
		}
		// A pipe or a terminal: an *os.File that cannot seek.
	}
	data, err := io.ReadAll(io.LimitReader(r, subjects.MaxBlobSize+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(data) > subjects.MaxBlobSize {
		return nil, fmt.Errorf("the content is over %d bytes: %w", subjects.MaxBlobSize, ErrTooLarge)
	}
	return bytes.NewReader(data), nil
}

// countingReader counts what it reads.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// blobSealing is the key and header of one sealed blob. Its readers seal
// the same content to the same bytes, so a blob can be read twice.
type blobSealing struct {
	aead   cipher.AEAD
	header []byte
}

// newBlobSealing makes the header (with a fresh salt) and the key of a new
// blob of room, sealed with roomKey of epoch.
func newBlobSealing(roomKey []byte, room string, epoch uint64) (*blobSealing, error) {
	header := make([]byte, 0, blobHeaderSize)
	header = append(header, blobMagic...)
	header = binary.BigEndian.AppendUint64(header, epoch)
	salt := make([]byte, blobSaltSize)
	// crypto/rand.Read never fails; it crashes the program if the system's
	// randomness is unavailable.
	_, _ = rand.Read(salt)
	header = append(header, salt...)
	aead, err := blobAEAD(roomKey, room, epoch, salt)
	if err != nil {
		return nil, err
	}
	return &blobSealing{aead: aead, header: header}, nil
}

// blobAEAD derives the key of a blob.
func blobAEAD(roomKey []byte, room string, epoch uint64, salt []byte) (cipher.AEAD, error) {
	if len(roomKey) != e2e.RoomKeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", e2e.ErrInvalidRoomKey, len(roomKey), e2e.RoomKeySize)
	}
	info := make([]byte, 0, len(blobKeyDomain)+1+len(room)+8)
	info = append(info, blobKeyDomain...)
	info = append(info, byte(len(room)))
	info = append(info, room...)
	info = binary.BigEndian.AppendUint64(info, epoch)
	key, err := hkdf.Key(sha256.New, roomKey, salt, string(info), chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive blob key: %w", err)
	}
	defer clear(key) // NewX keeps its own copy
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("derive blob key: %w", err)
	}
	return aead, nil
}

// blobNonce is the nonce of segment i.
func blobNonce(nonce []byte, i uint64, last bool) []byte {
	clear(nonce)
	binary.BigEndian.PutUint64(nonce, i)
	if last {
		nonce[8] = 1
	}
	return nonce
}

// reader returns the stored form of the content of src: sealed, or, for a
// nil sealing (a cleartext room), src itself.
func (s *blobSealing) reader(src io.Reader) io.Reader {
	if s == nil {
		return src
	}
	return &blobSealer{s: s, src: src, out: s.header, plain: make([]byte, blobSegmentSize+1)}
}

// blobSealer reads a content and returns it sealed, one segment at a time.
type blobSealer struct {
	s     *blobSealing
	src   io.Reader
	out   []byte // sealed bytes not yet read
	plain []byte // a segment and one byte more, to tell the last segment
	have  int    // bytes of plain filled
	ct    []byte
	nonce [chacha20poly1305.NonceSizeX]byte
	seg   uint64
	done  bool
}

func (r *blobSealer) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.done {
			return 0, io.EOF
		}
		if err := r.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// next seals the next segment: a full one when a byte follows it, else the
// last one.
func (r *blobSealer) next() error {
	n, err := io.ReadFull(r.src, r.plain[r.have:])
	r.have += n
	last := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	if err != nil && !last {
		return err
	}
	size := min(r.have, blobSegmentSize)
	r.ct = r.s.aead.Seal(r.ct[:0], blobNonce(r.nonce[:], r.seg, last), r.plain[:size], r.s.header)
	r.out = r.ct
	r.seg++
	if last {
		r.done = true
		return nil
	}
	r.have = copy(r.plain, r.plain[size:r.have])
	return nil
}

// blobOpening opens a sealed blob written to it and writes the content to
// w, one segment at a time. key returns the room key of an epoch.
type blobOpening struct {
	room  string
	w     io.Writer
	key   func(epoch uint64) ([]byte, error)
	hdr   []byte // the header, once complete
	aead  cipher.AEAD
	buf   []byte // sealed bytes after the header, not yet opened
	plain []byte
	nonce [chacha20poly1305.NonceSizeX]byte
	seg   uint64
}

// Write takes the next bytes of the sealed blob. It opens a segment once a
// byte after it arrived, so the last one is opened only by close.
func (o *blobOpening) Write(p []byte) (int, error) {
	n := len(p)
	if o.aead == nil {
		take := min(blobHeaderSize-len(o.hdr), len(p))
		o.hdr, p = append(o.hdr, p[:take]...), p[take:]
		if len(o.hdr) < blobHeaderSize {
			return n, nil
		}
		if err := o.start(); err != nil {
			return 0, err
		}
	}
	o.buf = append(o.buf, p...)
	const sealed = blobSegmentSize + blobTagSize
	off := 0
	for len(o.buf)-off > sealed {
		if err := o.open(o.buf[off:off+sealed], false); err != nil {
			return 0, err
		}
		off += sealed
	}
	o.buf = o.buf[:copy(o.buf, o.buf[off:])]
	return n, nil
}

// start reads the header and derives the blob's key.
func (o *blobOpening) start() error {
	h := o.hdr
	if string(h[:len(blobMagic)]) != blobMagic {
		return fmt.Errorf("%w: not a sealed blob (unknown header)", ErrBlobCorrupt)
	}
	epoch := binary.BigEndian.Uint64(h[len(blobMagic):])
	if epoch == 0 {
		return fmt.Errorf("%w: sealed blob names epoch 0", ErrBlobCorrupt)
	}
	key, err := o.key(epoch)
	if err != nil {
		return fmt.Errorf("room key of epoch %d: %w", epoch, err)
	}
	aead, err := blobAEAD(key, o.room, epoch, h[len(blobMagic)+8:])
	if err != nil {
		return err
	}
	o.aead = aead
	return nil
}

// open opens one segment and writes its content.
func (o *blobOpening) open(sealed []byte, last bool) error {
	var err error
	o.plain, err = o.aead.Open(o.plain[:0], blobNonce(o.nonce[:], o.seg, last), sealed, o.hdr)
	if err != nil {
		return fmt.Errorf("%w: segment %d does not open: %w", ErrBlobCorrupt, o.seg, e2e.ErrDecrypt)
	}
	o.seg++
	if _, err := o.w.Write(o.plain); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// close opens the last segment.
func (o *blobOpening) close() error {
	if o.aead == nil {
		return fmt.Errorf("%w: too short for a sealed blob (%d bytes)", ErrBlobCorrupt, len(o.hdr))
	}
	if len(o.buf) < blobTagSize {
		return fmt.Errorf("%w: truncated sealed blob", ErrBlobCorrupt)
	}
	return o.open(o.buf, true)
}

var (
	_ io.Reader = (*blobSealer)(nil)
	_ io.Writer = (*blobOpening)(nil)
)
