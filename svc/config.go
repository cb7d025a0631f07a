package svc

import (
	"fmt"
	"log/slog"
	"regexp"
	"runtime"
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
	// maxWorkers bounds Config.Workers.
	maxWorkers = 4096
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
	// DefaultMaxSkew. The store's nonce TTL must be at least 2 × MaxSkew.
	MaxSkew time.Duration
	// RequireEncryptedRooms refuses the creation of cleartext rooms (403).
	RequireEncryptedRooms bool
	// MaxRequestBytes bounds request bodies (413 beyond); zero means
	// DefaultMaxRequestBytes.
	MaxRequestBytes int
	// MaxBundleBytes bounds the bodies of requests that carry sealed keys
	// (rooms create, invite, remove, rekey) and blob chunks (blobs put);
	// zero means DefaultMaxBundleBytes. It must be at least MaxRequestBytes
	// and hold a blob chunk (about 700 KB).
	MaxBundleBytes int
	// Workers bounds how many requests each service handles at once; zero
	// means 4 × GOMAXPROCS.
	Workers int
	// RequestTimeout bounds each request (waiting for a worker included);
	// zero means DefaultRequestTimeout. When every worker stays busy for
	// that long, the request is refused with 503.
	RequestTimeout time.Duration
	// MaxBlobBytes bounds the stored size of a blob (413 beyond); zero
	// means DefaultMaxBlobBytes, and at most subjects.MaxBlobSize. The put
	// of a blob's last chunk reads the whole blob back to check its hash,
	// within RequestTimeout: raise both together.
	MaxBlobBytes int64
	// Version is the services' semantic version (x.y.z…), shown by
	// "nats micro ls"; empty means DefaultVersion.
	Version string
}

// semVer is the semantic-version pattern micro requires.
var semVer = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// withDefaults fills in the zero values.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.AuthMode == "" {
		c.AuthMode = AuthEnforce
	}
	if c.MaxSkew == 0 {
		c.MaxSkew = DefaultMaxSkew
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxBundleBytes == 0 {
		c.MaxBundleBytes = max(DefaultMaxBundleBytes, c.MaxRequestBytes)
	}
	if c.Workers == 0 {
		c.Workers = 4 * runtime.GOMAXPROCS(0)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxBlobBytes == 0 {
		c.MaxBlobBytes = DefaultMaxBlobBytes
	}
	if c.Version == "" {
		c.Version = DefaultVersion
	}
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
	if ttl := c.Store.NonceTTL(); ttl < 2*c.MaxSkew {
		return fmt.Errorf("%w: the store keeps nonces for %s, less than twice the max skew %s (a replay could outlive its nonce)", ErrConfigValidation, ttl, c.MaxSkew)
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
	if c.Workers < 1 || c.Workers > maxWorkers {
		return fmt.Errorf("%w: workers must be 1..%d, got %d", ErrConfigValidation, maxWorkers, c.Workers)
	}
	if c.RequestTimeout < 0 {
		return fmt.Errorf("%w: request timeout must be positive, got %s", ErrConfigValidation, c.RequestTimeout)
	}
	if !semVer.MatchString(c.Version) {
		return fmt.Errorf("%w: version %q is not a semantic version (x.y.z)", ErrConfigValidation, c.Version)
	}
	return nil
}
