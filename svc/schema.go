package svc

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/unibus/unibus/subjects"
)

// metadata is what "nats micro info" shows for an endpoint: what it does,
// who may call it, the JSON of its request and reply (derived from the wire
// types in package subjects, so they cannot drift apart) and its size
// limit.
func metadata(ep *endpoint, limit int) map[string]string {
	return map[string]string{
		"summary":       ep.spec.Summary,
		"access":        string(ep.spec.Access),
		"request":       schemaOf(ep.reqType),
		"request_type":  typeName(ep.reqType),
		"response":      schemaOf(ep.respType),
		"response_type": typeName(ep.respType),
		"max_bytes":     strconv.Itoa(limit),
		"signed":        "headers Unibus-Pub, Unibus-Ts, Unibus-Nonce, Unibus-Sig (see subjects.SignRequest)",
		"errors": `micro error headers and {"error":string,"code":int,"retry_after_ms"?:integer}; codes 400 401 403 404 409 413 429 503; ` +
			`a 429 carries the retry hint in the ` + subjects.HeaderRetryAfter + ` header too`,
	}
}

// typeName names a wire type, "subjects.RoomInfo", or "empty" for a body
// with no fields.
func typeName(t reflect.Type) string {
	if t.Kind() == reflect.Struct && t.NumField() == 0 {
		return "empty"
	}
	return t.String()
}

var timeType = reflect.TypeFor[time.Time]()

// schemaOf describes the JSON encoding of t as JSON: objects list their
// keys in order with the type of each value ("string", "bool", "integer",
// "base64", "time"), an optional key ends in "?", an array is [element], a
// map is {"<key>": value}. An empty struct is {} (an empty body is
// accepted too).
func schemaOf(t reflect.Type) string {
	var b strings.Builder
	writeSchema(&b, t)
	return b.String()
}

func writeSchema(b *strings.Builder, t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		b.WriteString(`"time"`)
		return
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		b.WriteString(`"base64"`)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		b.WriteByte('{')
		n := 0
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if strings.Contains(","+opts+",", ",omitempty,") || strings.Contains(","+opts+",", ",omitzero,") {
				name += "?"
			}
			if n > 0 {
				b.WriteByte(',')
			}
			n++
			writeString(b, name)
			b.WriteByte(':')
			writeSchema(b, f.Type)
		}
		b.WriteByte('}')
	case reflect.Slice, reflect.Array:
		b.WriteByte('[')
		writeSchema(b, t.Elem())
		b.WriteByte(']')
	case reflect.Map:
		b.WriteString(`{"<key>":`)
		writeSchema(b, t.Elem())
		b.WriteByte('}')
	case reflect.String:
		b.WriteString(`"string"`)
	case reflect.Bool:
		b.WriteString(`"bool"`)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		b.WriteString(`"integer"`)
	case reflect.Float32, reflect.Float64:
		b.WriteString(`"number"`)
	default:
		b.WriteString(`"any"`)
	}
}

func writeString(b *strings.Builder, s string) {
	q, _ := json.Marshal(s) // a string always encodes
	b.Write(q)
}
