package svc

import (
	"cmp"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"runtime"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// AuthMode says how strictly the services check signed requests.
type AuthMode string

const (
	// AuthEnforce (the default) refuses any request whose signature,
	// timestamp, nonce or signer does not check out (401).
	AuthEnforce AuthMode = "enforce"
	// AuthSoft runs every check of AuthEnforce but only logs the failures
	// (report-only, for migrating clients): the request proceeds as the
	// identity claimed in the Unibus-Pub header. Backend errors still refuse
	// the request (503), and a request without a usable Unibus-Pub header is
	// still 401, because every endpoint acts on behalf of a caller.
	AuthSoft AuthMode = "soft"
	// AuthOff skips the signed-request checks entirely (development only):
	// the caller is whoever the Unibus-Pub header names. Nothing is logged
	// per request and no nonce is claimed.
	AuthOff AuthMode = "off"
)

// ClockMargin is how far the clocks of two instances of the services may
// differ on top of the skew they allow a request: a request's nonce is
// kept that much longer than the window in which any instance accepts it.
const ClockMargin = time.Minute

// MinNonceTTL is the shortest time the store may keep claimed nonces when
// the services allow maxSkew: a request is accepted from maxSkew before its
// timestamp to maxSkew after it on each instance, whose clocks may differ
// by ClockMargin.
func MinNonceTTL(maxSkew time.Duration) time.Duration { return 2*maxSkew + ClockMargin }

// Defaults of Config.
const (
	// DefaultMaxSkew is the clock skew allowed between a request's
	// timestamp and the service's clock, in either direction. The store's
	// nonce TTL must be at least twice the skew.
	DefaultMaxSkew = 2 * time.Minute
	// DefaultMaxRequestBytes bounds the body of most requests.
	DefaultMaxRequestBytes = 64 << 10
	// DefaultMaxBundleBytes bounds the body of the requests that carry
	// sealed room keys (create, invite, remove, rekey): 4 MiB holds a
	// rekey for a few thousand members (an MLKEM768-X25519 sealed key is
	// about 1.1 KiB, some 1.6 KiB in base64). The NATS max_payload must be
	// at least as large for such requests to reach the service.
	DefaultMaxBundleBytes = 4 << 20
	// DefaultRequestTimeout bounds one request from the moment the service
	// sees it: the wait for a worker and every store call.
	DefaultRequestTimeout = 10 * time.Second
	// DefaultMaxBlobBytes bounds the stored size of a blob (in encrypted
	// rooms the sealed size: the content plus 44 bytes and 16 per 64 KiB).
	DefaultMaxBlobBytes = 64 << 20
	// DefaultVersion is the service version when Config.Version is empty.
	DefaultVersion = "0.0.0-dev"
	// DefaultQueueLength bounds the requests each service holds for a free
	// worker.
	DefaultQueueLength = 1024
	// DefaultMaxMembersPerRoom bounds the members of a room. A rekey of a
	// full room (a sealed key per member, about rekeyBytesPerMember of
	// JSON each) then fits well inside DefaultMaxBundleBytes.
	DefaultMaxMembersPerRoom = 1000
	// DefaultMaxRoomsPerUser bounds the rooms a user is a member of (owned
	// ones included); 1000 keeps the lookup of a user's rooms (rooms.mine)
	// within one direct get.
	DefaultMaxRoomsPerUser = 1000
	// DefaultRateLimit is the sustained rate, in requests per second, at
	// which one identity may call one instance of the services.
	DefaultRateLimit = 50
	// DefaultRateBurst is how many requests one identity may make at once
	// before DefaultRateLimit applies.
	DefaultRateBurst = 100
	// DefaultMaxBlobBytesPerUser bounds the blobs one user uploads, in all
	// rooms together: 1 GiB, 16 blobs of DefaultMaxBlobBytes.
	DefaultMaxBlobBytesPerUser = 1 << 30
	// DefaultMaxBlobBytesPerRoom bounds the blobs of one room, whoever
	// uploaded them: 4 GiB.
	DefaultMaxBlobBytesPerRoom = 4 << 30
	// DefaultBlobUploadTimeout is how long an upload may take from its
	// first chunk to its last before it is removed.
	DefaultBlobUploadTimeout = time.Hour

	// maxWorkers bounds Config.Workers.
	maxWorkers = 4096
	// maxQueueLength bounds Config.QueueLength.
	maxQueueLength = 1 << 16
	// maxQueuedBytes bounds the bodies of the requests a service holds for
	// a free worker, whatever their number (as nats.go bounds a
	// subscription's pending bytes): beyond it requests are refused (503).
	maxQueuedBytes = 64 << 20
	// maxBodyBytes bounds every body limit: NATS's own ceiling on
	// max_payload.
	maxBodyBytes = 64 << 20
	// maxRateBurst bounds Config.RateBurst.
	maxRateBurst = 1 << 20
	// rekeyBytesPerMember is the JSON of one member's entry in a rekey
	// bundle: the key (56 bytes and quotes) and a base64 MLKEM768-X25519
	// sealed key (about 1,560 bytes), rounded up.
	rekeyBytesPerMember = 1700
)

// Config configures the control-plane services. Store, Conn and nothing
// else are required.
type Config struct {
	// Store holds the state; every instance of the services shares it.
	Store *kvstore.Store
	// Conn is the services' connection, in the UNIBUS account. The caller
	// owns it: Stop does not close it.
	Conn *nats.Conn
	// Logger receives request failures and lifecycle events; nil discards
	// them.
	Logger *slog.Logger
	// AuthMode is AuthEnforce (when empty), AuthSoft or AuthOff.
	AuthMode AuthMode
	// MaxSkew is the clock skew allowed on signed requests; zero means
	// DefaultMaxSkew. The store's nonce TTL must be at least
	// MinNonceTTL(MaxSkew).
	MaxSkew time.Duration
	// RequireEncryptedRooms refuses the creation of cleartext rooms (403).
	RequireEncryptedRooms bool
	// MaxRequestBytes bounds request bodies (413 beyond); zero means
	// DefaultMaxRequestBytes.
	MaxRequestBytes int
	// MaxBundleBytes bounds the bodies of requests that carry sealed keys
	// (rooms create, invite, remove, rekey) and blob chunks (blobs put);
	// zero means DefaultMaxBundleBytes. It must be at least MaxRequestBytes
	// and hold a blob chunk (about 700 KB). The NATS payload limit of
	// every peer (authcallout.PeerLimits.MaxPublishBytes, and the server's
	// max_payload) must be larger, by the size of the signature headers.
	MaxBundleBytes int
	// EndpointMaxBytes overrides the body limit of single endpoints, by
	// subject (e.g. subjects.RoomsInvite: 1 << 20); the other endpoints keep
	// MaxRequestBytes or MaxBundleBytes. Every key must be a subject of
	// these services, every limit 1..64 MiB, and the limit of blobs.put
	// must hold a blob chunk (about 700 KB). Over its limit a request is
	// refused with 413.
	EndpointMaxBytes map[string]int
	// Workers bounds how many requests each service handles at once; zero
	// means 4 × GOMAXPROCS.
	Workers int
	// QueueLength bounds the requests each service holds for a free
	// worker; zero means DefaultQueueLength. A request that finds the queue
	// full (or the queued bodies over 64 MiB) is refused at once with 503.
	QueueLength int
	// RequestTimeout bounds each request from its arrival (waiting for a
	// worker included); zero means DefaultRequestTimeout. A request still
	// waiting for a worker when it expires is refused with 503, so that a
	// saturated service answers every request within about RequestTimeout.
	RequestTimeout time.Duration
	// MaxMembersPerRoom bounds the members of a room, its owner included;
	// zero means DefaultMaxMembersPerRoom, a negative value means no
	// limit. An invitation into a full room is refused with 409 and
	// nothing is stored. A rekey of a full room must fit in MaxBundleBytes
	// (about 1.7 KB per member), which Start checks.
	MaxMembersPerRoom int
	// MaxRoomsPerUser bounds the rooms a user is a member of, owned ones
	// included; zero means DefaultMaxRoomsPerUser, a negative value means
	// no limit. Creating a room, or being invited into one, beyond it is
	// refused with 409 and nothing is stored.
	MaxRoomsPerUser int
	// RateLimit is how many requests per second, sustained, each identity
	// may make to one instance of the services (to each instance, when
	// several run); zero means DefaultRateLimit, a negative value turns
	// rate limiting off. Beyond it requests are refused with 429 and a
	// retry hint (subjects.HeaderRetryAfter), before any store work. The
	// identity is the request's verified signer (the claimed one in
	// AuthSoft and AuthOff).
	RateLimit float64
	// RateBurst is how many requests an identity may make at once before
	// RateLimit applies; zero means DefaultRateBurst.
	RateBurst int
	// MaxBlobBytes bounds the stored size of a blob (413 beyond); zero
	// means DefaultMaxBlobBytes, and at most subjects.MaxBlobSize. The put
	// of a blob's last chunk reads the whole blob back to check its hash,
	// within RequestTimeout: raise both together.
	MaxBlobBytes int64
	// Version is the services' semantic version (x.y.z…), shown by
	// "nats micro ls"; empty means DefaultVersion.
	Version string
	// MaxBlobBytesPerUser bounds the total size of the blobs one user
	// stores, complete or being uploaded, in all rooms; zero means
	// DefaultMaxBlobBytesPerUser, a negative value no limit. A blob whose
	// first chunk would take its uploader over it is refused with 413,
	// and nothing is stored. It must be at least MaxBlobBytes.
	MaxBlobBytesPerUser int64
	// MaxBlobBytesPerRoom bounds the total size of the blobs of one room,
	// whoever uploaded them, in the same way; zero means
	// DefaultMaxBlobBytesPerRoom, a negative value no limit.
	MaxBlobBytesPerRoom int64
	// BlobUploadTimeout is how long an upload may take from its first
	// chunk to its completion; zero means DefaultBlobUploadTimeout. An
	// upload accepts chunks until RequestTimeout before it runs out (so
	// that no chunk is still being written then), and once it has run out
	// the services remove it, its chunks and its place in the quotas. It
	// must be at least twice RequestTimeout.
	BlobUploadTimeout time.Duration
}

// semVer is the semantic-version pattern micro requires.
var semVer = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// withDefaults fills in the zero values.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.AuthMode = cmp.Or(c.AuthMode, AuthEnforce)
	c.MaxSkew = cmp.Or(c.MaxSkew, DefaultMaxSkew)
	c.MaxRequestBytes = cmp.Or(c.MaxRequestBytes, DefaultMaxRequestBytes)
	c.MaxBundleBytes = cmp.Or(c.MaxBundleBytes, max(DefaultMaxBundleBytes, c.MaxRequestBytes))
	c.Workers = cmp.Or(c.Workers, 4*runtime.GOMAXPROCS(0))
	c.QueueLength = cmp.Or(c.QueueLength, DefaultQueueLength)
	c.MaxMembersPerRoom = cmp.Or(c.MaxMembersPerRoom, DefaultMaxMembersPerRoom)
	c.MaxRoomsPerUser = cmp.Or(c.MaxRoomsPerUser, DefaultMaxRoomsPerUser)
	c.RateLimit = cmp.Or(c.RateLimit, DefaultRateLimit)
	c.RateBurst = cmp.Or(c.RateBurst, DefaultRateBurst)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, DefaultRequestTimeout)
	c.MaxBlobBytes = cmp.Or(c.MaxBlobBytes, DefaultMaxBlobBytes)
	c.Version = cmp.Or(c.Version, DefaultVersion)
	c.MaxBlobBytesPerUser = cmp.Or(c.MaxBlobBytesPerUser, DefaultMaxBlobBytesPerUser)
	c.MaxBlobBytesPerRoom = cmp.Or(c.MaxBlobBytesPerRoom, DefaultMaxBlobBytesPerRoom)
	c.BlobUploadTimeout = cmp.Or(c.BlobUploadTimeout, DefaultBlobUploadTimeout)
	return c
}

// valid checks a configuration with its defaults applied.
func (c Config) valid() error {
	switch {
	case c.Store == nil:
		return fmt.Errorf("%w: a store is required", ErrConfigValidation)
	case c.Conn == nil:
		return fmt.Errorf("%w: a NATS connection is required", ErrConfigValidation)
	case c.Conn.IsClosed():
		return fmt.Errorf("%w: the NATS connection is closed", ErrConfigValidation)
	}
	switch c.AuthMode {
	case AuthEnforce, AuthSoft, AuthOff:
	default:
		return fmt.Errorf("%w: auth mode must be %q, %q or %q, got %q", ErrConfigValidation, AuthEnforce, AuthSoft, AuthOff, c.AuthMode)
	}
	if c.MaxSkew < time.Second {
		return fmt.Errorf("%w: max skew must be at least 1s, got %s", ErrConfigValidation, c.MaxSkew)
	}
	if ttl, least := c.Store.NonceTTL(), MinNonceTTL(c.MaxSkew); ttl < least {
		return fmt.Errorf("%w: the store keeps nonces for %s, less than twice the max skew %s plus %s for the clocks of the instances to differ (a replay could outlive its nonce): keep them at least %s", ErrConfigValidation, ttl, c.MaxSkew, ClockMargin, least)
	}
	if c.MaxRequestBytes < 1 {
		return fmt.Errorf("%w: max request bytes must be positive, got %d", ErrConfigValidation, c.MaxRequestBytes)
	}
	if c.MaxBundleBytes < c.MaxRequestBytes {
		return fmt.Errorf("%w: max bundle bytes (%d) must be at least max request bytes (%d)", ErrConfigValidation, c.MaxBundleBytes, c.MaxRequestBytes)
	}
	if c.MaxBundleBytes < maxBlobPutBytes {
		return fmt.Errorf("%w: max bundle bytes (%d) must be at least %d, the size of a blob chunk request", ErrConfigValidation, c.MaxBundleBytes, maxBlobPutBytes)
	}
	if c.MaxBlobBytes < 1 || c.MaxBlobBytes > subjects.MaxBlobSize {
		return fmt.Errorf("%w: max blob bytes must be 1..%d, got %d", ErrConfigValidation, int64(subjects.MaxBlobSize), c.MaxBlobBytes)
	}
	if c.MaxBundleBytes > maxBodyBytes {
		return fmt.Errorf("%w: max bundle bytes must be at most %d, got %d", ErrConfigValidation, maxBodyBytes, c.MaxBundleBytes)
	}
	for subject, n := range c.EndpointMaxBytes {
		if !slices.ContainsFunc(subjects.Endpoints(), func(ep subjects.Endpoint) bool { return ep.Subject == subject }) {
			return fmt.Errorf("%w: endpoint max bytes: %q is not a control-plane subject (e.g. %s)", ErrConfigValidation, subject, subjects.RoomsInvite)
		}
		if n < 1 || n > maxBodyBytes {
			return fmt.Errorf("%w: endpoint max bytes of %s must be 1..%d, got %d", ErrConfigValidation, subject, maxBodyBytes, n)
		}
		if subject == subjects.BlobsPut && n < maxBlobPutBytes {
			return fmt.Errorf("%w: endpoint max bytes of %s (%d) must be at least %d, the size of a blob chunk request", ErrConfigValidation, subject, n, maxBlobPutBytes)
		}
	}
	if c.Workers < 1 || c.Workers > maxWorkers {
		return fmt.Errorf("%w: workers must be 1..%d, got %d", ErrConfigValidation, maxWorkers, c.Workers)
	}
	if c.QueueLength < 1 || c.QueueLength > maxQueueLength {
		return fmt.Errorf("%w: queue length must be 1..%d, got %d", ErrConfigValidation, maxQueueLength, c.QueueLength)
	}
	if c.RequestTimeout < 0 {
		return fmt.Errorf("%w: request timeout must be positive, got %s", ErrConfigValidation, c.RequestTimeout)
	}
	for _, subject := range []string{subjects.RoomsRekey, subjects.RoomsRemove} {
		if n, limit := c.MaxMembersPerRoom, c.bodyLimit(subject, true); n > 0 && n*rekeyBytesPerMember > limit {
			return fmt.Errorf("%w: max members per room (%d) needs rekey bundles of about %d bytes, over the limit of %d for %s: raise the bundle limit or lower the member limit",
				ErrConfigValidation, n, n*rekeyBytesPerMember, limit, subject)
		}
	}
	if math.IsNaN(c.RateLimit) || math.IsInf(c.RateLimit, 0) {
		return fmt.Errorf("%w: rate limit must be a number of requests per second, got %g", ErrConfigValidation, c.RateLimit)
	}
	if c.RateBurst < 1 || c.RateBurst > maxRateBurst {
		return fmt.Errorf("%w: rate burst must be 1..%d, got %d", ErrConfigValidation, maxRateBurst, c.RateBurst)
	}
	if !semVer.MatchString(c.Version) {
		return fmt.Errorf("%w: version %q is not a semantic version (x.y.z)", ErrConfigValidation, c.Version)
	}
	return c.validBlobQuotas()
}

// validBlobQuotas checks the blob quotas and the upload timeout.
func (c Config) validBlobQuotas() error {
	for _, q := range []struct {
		name  string
		quota int64
	}{{"max blob bytes per user", c.MaxBlobBytesPerUser}, {"max blob bytes per room", c.MaxBlobBytesPerRoom}} {
		if q.quota > 0 && q.quota < c.MaxBlobBytes {
			return fmt.Errorf("%w: %s (%d) must be at least max blob bytes (%d), or negative for no limit", ErrConfigValidation, q.name, q.quota, c.MaxBlobBytes)
		}
	}
	if c.BlobUploadTimeout < 2*c.RequestTimeout {
		return fmt.Errorf("%w: blob upload timeout (%s) must be at least twice the request timeout (%s): an upload stops taking chunks one request timeout before it runs out", ErrConfigValidation, c.BlobUploadTimeout, c.RequestTimeout)
	}
	return nil
}

// bodyLimit is the body limit of the endpoint at subject: its
// EndpointMaxBytes entry, or else MaxBundleBytes when bundle is set
// (requests that may carry sealed keys or blob chunks), MaxRequestBytes
// otherwise.
func (c Config) bodyLimit(subject string, bundle bool) int {
	if n, ok := c.EndpointMaxBytes[subject]; ok {
		return n
	}
	if bundle {
		return c.MaxBundleBytes
	}
	return c.MaxRequestBytes
}

// LargestBodyBytes is the largest request body the services accept under
// c, its defaults applied: what the NATS payload limit of every peer must
// hold, with the signature headers on top.
func (c Config) LargestBodyBytes() int {
	c = c.withDefaults()
	n := max(c.MaxBundleBytes, c.MaxRequestBytes)
	for _, limit := range c.EndpointMaxBytes {
		n = max(n, limit)
	}
	return n
}
