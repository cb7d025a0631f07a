package svc

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// endpoint is one control-plane operation: what micro registers and what
// the pipeline runs. Handlers never see a request that has not passed the
// pipeline.
type endpoint struct {
	spec     subjects.Endpoint // its entry in the endpoint table
	reqType  reflect.Type
	respType reflect.Type
	// handle decodes the body strictly and runs the operation.
	handle func(ctx context.Context, c caller, body []byte) (any, error)
}

// op builds an endpoint from a typed operation: the request body is decoded
// strictly into a Req before fn runs, and fn's Resp is the reply body.
func op[Req, Resp any](fn func(context.Context, caller, *Req) (Resp, error)) endpoint {
	return endpoint{
		reqType:  reflect.TypeFor[Req](),
		respType: reflect.TypeFor[Resp](),
		handle: func(ctx context.Context, c caller, body []byte) (any, error) {
			var req Req
			if err := decodeStrict(body, &req); err != nil {
				return nil, err
			}
			return fn(ctx, c, &req)
		},
	}
}

// caller is the identity a request acts for.
type caller struct {
	// pub is the caller's normalized user public key, never empty.
	pub string
	// user is the caller's record when the signed-request stage read it
	// (always in AuthEnforce); nil otherwise, and then handlers that need
	// it read it themselves.
	user *kvstore.User
	// softened reports that AuthSoft let a failed check pass (the
	// signature, the nonce or the registration): administrator endpoints
	// refuse such a caller, since soft mode would otherwise let anyone act
	// as any claimed administrator.
	softened bool
}

// call is one request handed from micro's subscription to a worker.
type call struct {
	subject string
	header  nats.Header
	body    []byte
	start   time.Time
	w       responder
	reply   string
	// reply is the reply subject the request names, and replyOwner the
	// user whose inbox it is (see
	// subjects.InboxOwner); the reply is sent only if that is the caller.
	replyOwner string
	// pub is the caller as admit found it: the verified signer, or (in
	// AuthSoft after a failed check, and in AuthOff) the claimed one.
	pub string
	// lookup is the key a signed request claims when nothing is known of
	// it here (AuthEnforce): the stranger lane reads its record before its
	// signature is checked and pub set.
	lookup string
	// nonce is the verified request nonce, to claim; verified reports
	// that the signature checked out.
	nonce    string
	verified bool
	// deadline is RequestTimeout after start; the request is refused then
	// if it is still queued.
	deadline time.Time
}

// mayReply reports whether the reply subject is the caller's own inbox:
// the inbox of the verified signer (or, in AuthSoft and AuthOff, of the
// caller the request acts for), and before the signature is checked, of
// the key the request claims in Unibus-Pub. A request that claims no key
// may be told in its own inbox, whoever's that is, why it is refused
// (401, 413): such a reply carries a fixed message and nothing from the
// store, and only the inbox's owner can subscribe to it.
func (c *call) mayReply() bool {
	who := cmp.Or(c.pub, c.lookup)
	if who == "" {
		if cl, err := claimedCaller(c.header); err == nil {
			who = cl.pub
		}
	}
	return who == "" || who == c.replyOwner
}

// logCaller is who the request is from, for logs: the caller admit found
// or else the one the request claims (unverified); nil if neither.
func (c *call) logCaller() *caller {
	if who := cmp.Or(c.pub, c.lookup); who != "" {
		return &caller{pub: who}
	}
	if cl, err := claimedCaller(c.header); err == nil {
		return &cl
	}
	return nil
}

// responder sends the reply to a request. micro.Request implements it for
// replies sent from micro's handler; asyncReply for replies sent later by a
// worker, which must not touch micro's request (micro reads its state after
// the handler returns).
type responder interface {
	Respond(data []byte, opts ...micro.RespondOpt) error
	Error(code, description string, data []byte, opts ...micro.RespondOpt) error
}

// asyncReply publishes a reply exactly as micro.Request would, but only
// into a peer's inbox: the handler checked whose (call.mayReply), and this
// refuses anything that is not an inbox at all, should a future path skip
// that check. The connection's permissions refuse it a third time.
type asyncReply struct {
	nc    *nats.Conn
	reply string
}

// errNotInbox refuses a reply subject outside the peers' inboxes.
var errNotInbox = errors.New("reply subject is not a peer inbox")

func (r asyncReply) publish(m *nats.Msg) error {
	if _, err := subjects.InboxOwner(m.Subject); err != nil {
		return fmt.Errorf("%w: %w", errNotInbox, err)
	}
	return r.nc.PublishMsg(m)
}

var _ responder = asyncReply{}
var _ responder = micro.Request(nil)

func (r asyncReply) Respond(data []byte, opts ...micro.RespondOpt) error {
	m := &nats.Msg{Subject: r.reply, Data: data}
	for _, o := range opts {
		o(m)
	}
	return r.publish(m)
}

func (r asyncReply) Error(code, description string, data []byte, opts ...micro.RespondOpt) error {
	m := &nats.Msg{
		Subject: r.reply,
		Header:  nats.Header{micro.ErrorHeader: {description}, micro.ErrorCodeHeader: {code}},
	}
	for _, o := range opts {
		o(m)
	}
	m.Data = data
	return r.publish(m)
}

// handler is the micro handler of ep, whose bodies are bounded by limit.
// It runs on micro's subscription goroutine, one request at a time, and
// never waits: it checks what needs no store (the reply subject, the size,
// the signature and the caller's rate, in admit), then queues the request
// for a worker, and refuses it at once when any of that fails or the queue
// is full. Unsigned and oversized floods and noisy identities are thus
// turned away before they take a place in the queue or touch the store.
// A request signed by a key nothing is known of here goes to the stranger
// lane instead (see strangerLane), and one by a key found unregistered
// lately is refused without a signature check (401), so that made-up
// signers never reach the queue; the refusals of requests whose signer is
// not verified are answered at the stranger lane's pace.
//
// A request whose reply subject is not the caller's own inbox is answered
// nowhere and runs no further (misdirected): the services hold rights the
// caller lacks, and a reply is a publish to a subject the caller chose.
// All replies, refusals included, go through asyncReply, which will not
// publish outside the peers' inboxes.
func (s *service) handler(ep *endpoint, st *endpointStats, limit int) micro.Handler {
	return micro.HandlerFunc(func(r micro.Request) {
		c := &call{
			subject: r.Subject(),
			header:  nats.Header(r.Headers()),
			body:    r.Data(),
			start:   time.Now(),
			reply:   r.Reply(),
			w:       asyncReply{nc: s.cfg.Conn, reply: r.Reply()},
		}
		owner, err := subjects.InboxOwner(c.reply)
		if err != nil {
			s.misdirected(ep, st, c)
			return
		}
		c.replyOwner = owner
		c.deadline = c.start.Add(s.cfg.RequestTimeout)
		if n := len(c.body); n > limit {
			s.refuse(ep, st, c, newError(subjects.CodeTooLarge, nil,
				"the request body is %d bytes, over the limit of %d bytes for %s", n, limit, c.subject))
			return
		}
		if e := s.admit(c); e != nil {
			s.refuse(ep, st, c, e)
			return
		}
		if !c.mayReply() {
			s.misdirected(ep, st, c)
			return
		}
		if c.lookup != "" {
			s.limits.lookup(lookup{s: s, ep: ep, st: st, c: c})
			return
		}
		if e := s.enqueue(ep, st, c); e != nil {
			s.finish(c.w, ep, st, c.logCaller(), c.start, e)
		}
	})
}

// proceed continues the pipeline of a request whose signer the stranger
// lane found registered, on the lane's goroutine: signature and rate as
// admit checks a known signer's, then a worker.
func (s *service) proceed(ep *endpoint, st *endpointStats, c *call) {
	if e := s.verifySigned(c); e != nil {
		s.refuse(ep, st, c, e)
		return
	}
	if e := s.enqueue(ep, st, c); e != nil {
		s.finish(c.w, ep, st, c.logCaller(), c.start, e)
	}
}

// refuse answers a request that the handler refused, unless its reply
// subject is not the caller's inbox. A request whose signer was not
// verified is answered by the stranger lane, at its pace.
func (s *service) refuse(ep *endpoint, st *endpointStats, c *call, e *Error) {
	if !c.mayReply() {
		s.misdirected(ep, st, c)
		return
	}
	if c.pub == "" {
		s.limits.refuseStranger(refusalOf(s, ep, st, c, e))
		return
	}
	s.finish(c.w, ep, st, c.logCaller(), c.start, e)
}

// misdirected counts and logs (at debug level: anyone can send them) a
// request whose reply subject is not its caller's inbox. It is not
// answered and changes nothing.
func (s *service) misdirected(ep *endpoint, st *endpointStats, c *call) {
	st.misdirected.Add(1)
	if s.log.Enabled(s.base, slog.LevelDebug) {
		attrs := []any{"endpoint", ep.spec.Name, "reply", c.reply}
		if who := c.logCaller(); who != nil {
			attrs = append(attrs, "pub", who.pub)
		}
		s.log.Debug("request dropped: its reply subject is not the caller's inbox", attrs...)
	}
}

// admit is the first stage of the pipeline, the one that needs no store:
// the request signature (AuthEnforce: 401 when it does not check out;
// AuthSoft: logged) and then, once the caller is known, its rate limit
// (429). In AuthEnforce (admitSigned) only a verified signer the services
// know to be registered is charged, so an unsigned, forged or made-up
// flood costs no bucket of theirs.
func (s *service) admit(c *call) *Error {
	if s.cfg.AuthMode == AuthEnforce {
		return s.admitSigned(c)
	}
	if s.cfg.AuthMode == AuthOff {
		who, err := claimedCaller(c.header)
		if err != nil {
			return asError(err)
		}
		c.pub = who.pub
	} else {
		sr, verr := subjects.VerifyRequest(c.subject, c.header, c.body, c.start, s.cfg.MaxSkew)
		switch {
		case verr == nil:
			c.pub, c.nonce, c.verified = sr.Pub, sr.Nonce, true
		default:
			who, err := claimedCaller(c.header)
			if err != nil {
				return asError(err)
			}
			c.pub = who.pub
			s.softAllow(c, who.pub, "signature", s.verifyError(verr))
		}
	}
	if wait, newcomer, ok := s.limits.take(c.pub, c.start); !ok {
		return s.tooManyRequests(c.pub, wait, newcomer)
	}
	return nil
}

// admitSigned is admit in AuthEnforce. What the limiter knows of the
// claimed signer comes first, before the signature is checked: a key
// found unregistered or revoked lately is refused (401) from memory; a
// key nothing is known of is left to the stranger lane (call.lookup),
// which reads its record first and checks its signature only if it is
// registered. A known registered signer's signature is checked here, and
// its rate (verifySigned). A request without all the signature headers
// is refused by the signature check, which needs no cryptography then.
func (s *service) admitSigned(c *call) *Error {
	if pub, ok := signedClaim(c.header); ok {
		switch s.limits.signer(pub, c.start) {
		case signerUnknown:
			c.lookup = pub
			return nil
		case signerUnregistered:
			return errUnregistered(pub)
		case signerRevoked:
			return errRevoked(pub)
		}
	}
	return s.verifySigned(c)
}

// verifySigned checks the signature of a request whose signer is known
// to be registered (401), and charges its rate (429).
func (s *service) verifySigned(c *call) *Error {
	sr, err := subjects.VerifyRequest(c.subject, c.header, c.body, c.start, s.cfg.MaxSkew)
	if err != nil {
		return s.verifyError(err)
	}
	c.pub, c.nonce, c.verified = sr.Pub, sr.Nonce, true
	if wait, newcomer, ok := s.limits.takeRegistered(c.pub, c.start); !ok {
		return s.tooManyRequests(c.pub, wait, newcomer)
	}
	return nil
}

// signedClaim returns the key a request claims to be signed by, if it
// carries every signature header (none of them is checked).
func signedClaim(h nats.Header) (string, bool) {
	for _, name := range [...]string{subjects.HeaderTs, subjects.HeaderNonce, subjects.HeaderSig} {
		if h.Get(name) == "" {
			return "", false
		}
	}
	pub, err := subjects.NormalizeUserKey(h.Get(subjects.HeaderPub))
	return pub, err == nil
}

// tooManyRequests is the 429 of a caller over its rate, with the wait
// until its next token.
func (s *service) tooManyRequests(pub string, wait time.Duration, newcomer bool) *Error {
	e := &Error{Code: subjects.CodeTooManyRequests, RetryAfter: wait}
	retry := time.Duration(e.retryAfterMs()) * time.Millisecond
	if newcomer {
		e.Message = fmt.Sprintf("too many requests from identities this service has not seen recently; retry in %s", retry)
	} else {
		e.Message = fmt.Sprintf("too many requests from %s: the limit is %g per second, in bursts of up to %d; retry in %s",
			pub, s.cfg.RateLimit, s.cfg.RateBurst, retry)
	}
	return e
}

// run is the rest of the pipeline, on a worker: authenticate, decode,
// handle, reply.
func (s *service) run(ctx context.Context, ep *endpoint, st *endpointStats, c *call) {
	who, err := s.authenticate(ctx, c)
	if err != nil {
		s.finish(c.w, ep, st, c.logCaller(), c.start, asError(err))
		return
	}
	resp, err := ep.handle(ctx, who, c.body)
	if err != nil {
		s.finish(c.w, ep, st, &who, c.start, asError(err))
		return
	}
	if u, ok := resp.(subjects.UserInfo); ok {
		// A record of u exists: if u was found unregistered lately, its
		// next request reads the store again; one just added is served
		// as registered at once.
		s.limits.recordSeen(u.Pub, ep.spec.Subject == subjects.UsersAdd, time.Now())
	}
	data, err := json.Marshal(resp)
	if err != nil {
		s.finish(c.w, ep, st, &who, c.start, newError(subjects.CodeUnavailable, err, msgUnavailable))
		return
	}
	st.record(time.Since(c.start), nil) // before the reply, so that stats never lag it
	if err := c.w.Respond(data); err != nil {
		s.log.Debug("reply not sent", "subject", c.subject, "pub", who.pub, "err", err)
	}
}

// finish counts and logs e, then sends it as the error reply (in that
// order, so that stats and logs never lag the reply).
func (s *service) finish(w responder, ep *endpoint, st *endpointStats, who *caller, start time.Time, e *Error) {
	st.record(time.Since(start), e)
	level := levelOf(e.Code)
	if level > slog.LevelDebug && !s.logs.allow(time.Now()) {
		level = slog.LevelDebug // a flood of refusals must not flood the log
	}
	if s.log.Enabled(s.base, level) {
		attrs := []any{"endpoint", ep.spec.Name, "code", e.Code, "error", e.Message}
		if who != nil {
			attrs = append(attrs, "pub", who.pub)
		}
		if e.Cause != nil {
			attrs = append(attrs, "cause", e.Cause.Error())
		}
		s.log.Log(s.base, level, "request refused", attrs...)
	}
	body, _ := json.Marshal(e.Body()) // strings and integers
	var opts []micro.RespondOpt
	if ms := e.retryAfterMs(); ms > 0 {
		opts = append(opts, micro.WithHeaders(micro.Headers{subjects.HeaderRetryAfter: {strconv.FormatInt(ms, 10)}}))
	}
	if err := w.Error(strconv.Itoa(e.Code), e.Message, body, opts...); err != nil {
		s.log.Debug("error reply not sent", "endpoint", ep.spec.Name, "err", err)
	}
}

// levelOf is the log level of a refusal: backend failures are errors,
// authentication failures warnings, the rest (the caller's mistakes, and
// rate limiting, which would flood the log) debug. Beyond logBudget, the
// first two are logged at debug too.
func levelOf(code int) slog.Level {
	switch code {
	case subjects.CodeUnavailable:
		return slog.LevelError
	case subjects.CodeUnauthenticated:
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

// authenticate is the signed-request stage that needs the store: the
// nonce, claimed once in the shared store, and the signer's registration
// (admit checked the signature, timestamp and key). See AuthMode for what
// each mode does with a failure; backend errors are 503 in every mode. A
// caller found registered gets a rate-limit bucket of its own.
func (s *service) authenticate(ctx context.Context, c *call) (caller, error) {
	var (
		who caller
		err error
	)
	switch {
	case s.cfg.AuthMode == AuthOff:
		who = caller{pub: c.pub}
	case !c.verified:
		// AuthSoft after a failed signature check (logged by admit). An
		// unverified nonce is not claimed: it proves nothing, and claiming
		// it would let anyone burn a victim's nonces.
		who, err = s.lookupCaller(ctx, c, c.pub, true)
		who.softened = true
	default:
		who, err = s.claimAndLookup(ctx, c)
	}
	if err != nil {
		return caller{}, err
	}
	if who.user != nil || s.cfg.AuthMode == AuthOff {
		s.limits.remember(who.pub, time.Now())
	}
	return who, nil
}

// claimAndLookup claims the verified nonce and reads the signer's record.
func (s *service) claimAndLookup(ctx context.Context, c *call) (caller, error) {
	soft := s.cfg.AuthMode == AuthSoft
	// The nonce claim and the user read are independent: run them at once
	// (one store round trip less), then judge them in order.
	user := make(chan userRead, 1)
	go func() {
		u, err := s.cfg.Store.GetUser(ctx, c.pub)
		user <- userRead{u, err}
	}()
	claimErr := s.cfg.Store.ClaimNonce(ctx, c.nonce)
	read := <-user
	if claimErr != nil {
		e := storeError(claimErr, storeMessages{invalid: "malformed request nonce"})
		if !soft || e.Code == subjects.CodeUnavailable {
			return caller{}, e
		}
		s.softAllow(c, c.pub, "nonce", e)
		who, err := s.judgeCaller(c, c.pub, read, soft)
		who.softened = true
		return who, err
	}
	return s.judgeCaller(c, c.pub, read, soft)
}

// userRead is the outcome of a user lookup.
type userRead struct {
	u   kvstore.User
	err error
}

// lookupCaller reads the caller's record and judges it (judgeCaller).
func (s *service) lookupCaller(ctx context.Context, c *call, pub string, soft bool) (caller, error) {
	u, err := s.cfg.Store.GetUser(ctx, pub)
	return s.judgeCaller(c, pub, userRead{u, err}, soft)
}

// judgeCaller decides on the caller's record: an unknown or revoked caller
// is 401 (logged and allowed when soft), a backend failure 503.
func (s *service) judgeCaller(c *call, pub string, read userRead, soft bool) (caller, error) {
	u, err := read.u, read.err
	var e *Error
	switch {
	case err != nil:
		e = storeError(err, storeMessages{notFound: errUnregistered(pub).Message, notFoundCode: subjects.CodeUnauthenticated})
		if e.Code != subjects.CodeUnauthenticated {
			return caller{}, e // a backend failure: 503 in every mode
		}
	case u.Revoked():
		e = errRevoked(pub)
	default:
		return caller{pub: pub, user: &u}, nil
	}
	if !soft {
		s.limits.refuse(pub, err == nil, time.Now())
		return caller{}, e
	}
	s.softAllow(c, pub, "registration", e)
	return caller{pub: pub, softened: true}, nil
}

// softAllow logs a check that failed but is allowed in AuthSoft.
func (s *service) softAllow(c *call, pub, check string, e *Error) {
	attrs := []any{"subject", c.subject, "pub", pub, "check", check, "error", e.Message}
	if e.Cause != nil {
		attrs = append(attrs, "cause", e.Cause.Error())
	}
	s.log.Warn("signed-request check failed; allowed by soft auth mode", attrs...)
}

// verifyError turns a subjects.VerifyRequest error into a 401 with a human
// message.
func (s *service) verifyError(err error) *Error {
	switch {
	case errors.Is(err, subjects.ErrMissingSignature):
		return unauthenticated(err, "the request is not signed: the %s, %s, %s and %s headers are required",
			subjects.HeaderPub, subjects.HeaderTs, subjects.HeaderNonce, subjects.HeaderSig)
	case errors.Is(err, subjects.ErrClockSkew):
		return unauthenticated(err, "the request timestamp is more than %s away from the service's clock; check your clock", s.cfg.MaxSkew)
	case errors.Is(err, subjects.ErrBadSignature):
		return unauthenticated(err, "the request signature does not verify")
	default:
		return unauthenticated(err, "malformed signature headers (%s, %s, %s, %s)",
			subjects.HeaderPub, subjects.HeaderTs, subjects.HeaderNonce, subjects.HeaderSig)
	}
}

// claimedCaller is the caller the Unibus-Pub header names, unverified.
func claimedCaller(h nats.Header) (caller, error) {
	pub, err := subjects.NormalizeUserKey(h.Get(subjects.HeaderPub))
	if err != nil {
		return caller{}, unauthenticated(err, "the request names no caller: set the %s header to your user public key and sign the request", subjects.HeaderPub)
	}
	return caller{pub: pub}, nil
}

// decodeStrict decodes a JSON object into v: unknown fields, anything
// after the object and a body that is not UTF-8 (JSON's only encoding;
// encoding/json would quietly turn bad bytes in strings into U+FFFD) are
// refused. An empty body is an empty object. Errors are 400 with a message
// that names the problem, not Go's error text.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if !utf8.Valid(body) {
		return badRequest("the request body is not valid UTF-8 (at byte %d)", invalidUTF8At(body))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("unexpected data after the JSON object")
	}
	return nil
}

// decodeError describes a JSON decoding error for humans.
func decodeError(err error) *Error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
		b64    base64.CorruptInputError
	)
	switch {
	case errors.As(err, &syntax) && strings.Contains(syntax.Error(), "max depth"):
		return newError(subjects.CodeBadRequest, err, "the JSON is nested too deeply (at byte %d)", syntax.Offset)
	case errors.As(err, &syntax):
		return newError(subjects.CodeBadRequest, err, "malformed JSON at byte %d", syntax.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return newError(subjects.CodeBadRequest, err, "truncated JSON")
	case errors.As(err, &typ) && typ.Field != "":
		return newError(subjects.CodeBadRequest, err, "field %q must be %s, got JSON %s", typ.Field, jsonKind(typ.Type), typ.Value)
	case errors.As(err, &typ):
		return newError(subjects.CodeBadRequest, err, "the request body must be a JSON object, not a JSON %s", typ.Value)
	case errors.As(err, &b64):
		return newError(subjects.CodeBadRequest, err, "a binary field is not valid standard base64 (at byte %d)", int64(b64))
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return newError(subjects.CodeBadRequest, err, "unknown field %s", boundedFieldName(name))
	}
	return newError(subjects.CodeBadRequest, err, "malformed JSON request")
}

// maxFieldNameLen bounds how much of an unknown field's name an error
// message repeats: the name comes from the request and may be as long as
// the body, and the message travels twice in the reply (header and body).
const maxFieldNameLen = 64

// boundedFieldName requotes a field name quoted by encoding/json,
// truncated to maxFieldNameLen bytes on a rune boundary.
func boundedFieldName(quoted string) string {
	name, err := strconv.Unquote(quoted)
	if err != nil {
		name = quoted
	}
	if len(name) <= maxFieldNameLen {
		return strconv.Quote(name)
	}
	cut := maxFieldNameLen
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return strconv.Quote(name[:cut]) + "..."
}

// invalidUTF8At returns the offset of the first byte of b that is not
// part of valid UTF-8.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// jsonKind names the JSON kind of a Go type, with an article.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("an integer of %d bits", t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("a non-negative integer of %d bits", t.Bits())
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	case reflect.Map, reflect.Struct, reflect.Pointer:
		return "an object"
	}
	return "another type"
}
