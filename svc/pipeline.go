package svc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// endpoint is one control-plane operation: what micro registers and what
// the pipeline runs. Handlers never see a request that has not passed the
// pipeline.
type endpoint struct {
	name     string // subjects.Endpoint…, appended to the service's group
	summary  string // one line for "nats micro info"
	access   string // who may call, for "nats micro info"
	bundle   bool   // the body may carry sealed keys: Config.MaxBundleBytes
	reqType  reflect.Type
	respType reflect.Type
	// handle decodes the body strictly and runs the operation.
	handle func(ctx context.Context, c caller, body []byte) (any, error)
}

// op builds an endpoint from a typed operation: the request body is decoded
// strictly into a Req before fn runs, and fn's Resp is the reply body.
func op[Req, Resp any](name, summary, access string, fn func(context.Context, caller, *Req) (Resp, error)) endpoint {
	return endpoint{
		name:     name,
		summary:  summary,
		access:   access,
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

// withBundle marks an endpoint whose body may carry sealed room keys.
func (e endpoint) withBundle() endpoint {
	e.bundle = true
	return e
}

// caller is the identity a request acts for.
type caller struct {
	// pub is the caller's normalized user public key, never empty.
	pub string
	// user is the caller's record when the signed-request stage read it
	// (always in AuthEnforce); nil otherwise, and then handlers that need
	// it read it themselves.
	user *kvstore.User
}

// call is one request handed from micro's subscription to a worker.
type call struct {
	subject string
	header  nats.Header
	body    []byte
	start   time.Time
	w       responder
}

// responder sends the reply to a request. micro.Request implements it for
// replies sent from micro's handler; asyncReply for replies sent later by a
// worker, which must not touch micro's request (micro reads its state after
// the handler returns).
type responder interface {
	Respond(data []byte, opts ...micro.RespondOpt) error
	Error(code, description string, data []byte, opts ...micro.RespondOpt) error
}

// asyncReply publishes a reply exactly as micro.Request would.
type asyncReply struct {
	nc    *nats.Conn
	reply string
}

var _ responder = asyncReply{}
var _ responder = micro.Request(nil)

func (r asyncReply) Respond(data []byte, _ ...micro.RespondOpt) error {
	return r.nc.PublishMsg(&nats.Msg{Subject: r.reply, Data: data})
}

func (r asyncReply) Error(code, description string, data []byte, _ ...micro.RespondOpt) error {
	return r.nc.PublishMsg(&nats.Msg{
		Subject: r.reply,
		Header:  nats.Header{micro.ErrorHeader: {description}, micro.ErrorCodeHeader: {code}},
		Data:    data,
	})
}

// handler is the micro handler of ep. It runs on micro's subscription
// goroutine, one request at a time: it checks the size, then hands the
// request to a worker, waiting for a free one at most until the request's
// deadline (503 after that, or when the service is stopping).
func (s *service) handler(ep *endpoint, st *endpointStats) micro.Handler {
	limit := s.cfg.MaxRequestBytes
	if ep.bundle {
		limit = s.cfg.MaxBundleBytes
	}
	return micro.HandlerFunc(func(r micro.Request) {
		start := time.Now()
		if n := len(r.Data()); n > limit {
			s.finish(r, ep, st, nil, start, newError(subjects.CodeTooLarge, nil,
				"the request body is %d bytes, over the limit of %d bytes for %s", n, limit, r.Subject()))
			return
		}
		if !s.enter() {
			s.finish(r, ep, st, nil, start, newError(subjects.CodeUnavailable, nil, "the service is stopping; retry"))
			return
		}
		ctx, cancel := context.WithTimeout(s.base, s.cfg.RequestTimeout)
		c := &call{
			subject: r.Subject(),
			header:  nats.Header(r.Headers()),
			body:    r.Data(),
			start:   start,
			w:       asyncReply{nc: s.cfg.Conn, reply: r.Reply()},
		}
		select {
		case s.slots <- struct{}{}:
			go func() {
				defer s.wg.Done()
				defer func() { <-s.slots }()
				defer cancel()
				s.run(ctx, ep, st, c)
			}()
		case <-ctx.Done():
			cancel()
			st.busy.Add(1)
			s.finish(r, ep, st, nil, start, newError(subjects.CodeUnavailable, ctx.Err(), "the service is busy; retry later"))
			s.wg.Done()
		case <-s.quit:
			cancel()
			s.finish(r, ep, st, nil, start, newError(subjects.CodeUnavailable, nil, "the service is stopping; retry"))
			s.wg.Done()
		}
	})
}

// run is the request pipeline, on a worker: authenticate, decode, handle,
// reply.
func (s *service) run(ctx context.Context, ep *endpoint, st *endpointStats, c *call) {
	who, err := s.authenticate(ctx, c)
	if err != nil {
		var claimed *caller
		if cl, cerr := claimedCaller(c.header); cerr == nil {
			claimed = &cl // unverified, for the log
		}
		s.finish(c.w, ep, st, claimed, c.start, asError(err))
		return
	}
	resp, err := ep.handle(ctx, who, c.body)
	if err != nil {
		s.finish(c.w, ep, st, &who, c.start, asError(err))
		return
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
	if level := levelOf(e.Code); s.log.Enabled(s.base, level) {
		attrs := []any{"endpoint", ep.name, "code", e.Code, "error", e.Message}
		if who != nil {
			attrs = append(attrs, "pub", who.pub)
		}
		if e.Cause != nil {
			attrs = append(attrs, "cause", e.Cause.Error())
		}
		s.log.Log(s.base, level, "request refused", attrs...)
	}
	body, _ := json.Marshal(e.Body()) // a struct of a string and an int
	if err := w.Error(strconv.Itoa(e.Code), e.Message, body); err != nil {
		s.log.Debug("error reply not sent", "endpoint", ep.name, "err", err)
	}
}

// levelOf is the log level of a refusal: backend failures are errors,
// authentication failures warnings, the rest (the caller's mistakes) debug.
func levelOf(code int) slog.Level {
	switch code {
	case subjects.CodeUnavailable:
		return slog.LevelError
	case subjects.CodeUnauthenticated:
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

// authenticate is the signed-request stage: signature, timestamp and key
// (subjects.VerifyRequest), then the nonce (claimed once in the shared
// store), then the signer's registration. See AuthMode for what each mode
// does with a failure; backend errors are 503 in every mode.
func (s *service) authenticate(ctx context.Context, c *call) (caller, error) {
	if s.cfg.AuthMode == AuthOff {
		return claimedCaller(c.header)
	}
	soft := s.cfg.AuthMode == AuthSoft
	sr, verr := subjects.VerifyRequest(c.subject, c.header, c.body, time.Now(), s.cfg.MaxSkew)
	if verr != nil {
		e := s.verifyError(verr)
		if !soft {
			return caller{}, e
		}
		who, err := claimedCaller(c.header)
		if err != nil {
			return caller{}, err
		}
		s.softAllow(c, who.pub, "signature", e)
		// An unverified nonce is not claimed: it proves nothing, and
		// claiming it would let anyone burn a victim's nonces.
		return s.lookupCaller(ctx, c, who.pub, true)
	}
	// The nonce claim and the user read are independent: run them at once
	// (one store round trip less), then judge them in order.
	user := make(chan userRead, 1)
	go func() {
		u, err := s.cfg.Store.GetUser(ctx, sr.Pub)
		user <- userRead{u, err}
	}()
	claimErr := s.cfg.Store.ClaimNonce(ctx, sr.Nonce)
	read := <-user
	if claimErr != nil {
		e := storeError(claimErr, storeMessages{invalid: "malformed request nonce"})
		if !soft || e.Code == subjects.CodeUnavailable {
			return caller{}, e
		}
		s.softAllow(c, sr.Pub, "nonce", e)
	}
	return s.judgeCaller(c, sr.Pub, read, soft)
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
		e = storeError(err, storeMessages{notFound: pub + " is not a registered user", notFoundCode: subjects.CodeUnauthenticated})
		if e.Code != subjects.CodeUnauthenticated {
			return caller{}, e // a backend failure: 503 in every mode
		}
	case u.Revoked():
		e = unauthenticated(nil, "%s is revoked", pub)
	default:
		return caller{pub: pub, user: &u}, nil
	}
	if !soft {
		return caller{}, e
	}
	s.softAllow(c, pub, "registration", e)
	return caller{pub: pub}, nil
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

// decodeStrict decodes a JSON object into v: unknown fields and anything
// after the object are refused. An empty body is an empty object. Errors
// are 400 with a message that names the problem, not Go's error text.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
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
	case errors.As(err, &syntax):
		return newError(subjects.CodeBadRequest, err, "malformed JSON at byte %d", syntax.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return newError(subjects.CodeBadRequest, err, "truncated JSON")
	case errors.As(err, &typ) && typ.Field != "":
		return newError(subjects.CodeBadRequest, err, "field %q must be %s, not a JSON %s", typ.Field, jsonKind(typ.Type), typ.Value)
	case errors.As(err, &typ):
		return newError(subjects.CodeBadRequest, err, "the request body must be a JSON object, not a JSON %s", typ.Value)
	case errors.As(err, &b64):
		return newError(subjects.CodeBadRequest, err, "a binary field is not valid standard base64 (at byte %d)", int64(b64))
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return newError(subjects.CodeBadRequest, err, "unknown field %s", name)
	}
	return newError(subjects.CodeBadRequest, err, "malformed JSON request")
}

// jsonKind names the JSON kind of a Go type, with an article.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
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
