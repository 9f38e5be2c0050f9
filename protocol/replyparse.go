package protocol

import (
	"fmt"
	"strconv"
)

// Replies are read by hand as well (helpers in envelopeparse.go): in a fan-out every node's
// acknowledgement is an update reply, and decoding it with encoding/json (reflection, and
// the goroutine stack it grows on the fresh goroutine net/http gives each connection handed
// back after a long-poll) was 6% of the agbot's CPU. The rules are the envelope's: field
// names exactly as written, no unknown field, a field of the wrong JSON type or null
// refused; otherwise the same values as encoding/json reads (FuzzReadReply checks it).

// readReply decodes data, which checkJSON accepted, as a message of type t when t is an
// update or cancel reply; ok is false for any other type (decodeAs reads those).
func readReply(data []byte, t MessageType) (m Message, ok bool, err error) {
	var r replyFields
	switch t {
	case TypeUpdateReply:
		u := &UpdateReply{}
		m, r = u, replyFields{meta: &u.Meta, status: &u.Status, reason: &u.Reason}
	case TypeCancelReply:
		c := &CancelReply{}
		m, r = c, replyFields{meta: &c.Meta, status: &c.Status}
	default:
		return nil, false, nil
	}
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, true, fmt.Errorf("%s: %w: must be a JSON object", t, ErrMalformed)
	}
	eachMember(data[i:], func(key string, val []byte) {
		if err == nil {
			err = r.set(key, val)
		}
	})
	if err != nil {
		return nil, true, fmt.Errorf("%s: %w", t, err)
	}
	return m, true, nil
}

// replyFields points at the fields of one reply; reason is nil for a reply without one.
type replyFields struct {
	meta   *Meta
	status *ReplyStatus
	reason *string
}

// set reads the member key of a reply.
func (r replyFields) set(key string, val []byte) error {
	var err error
	switch key {
	case "version":
		if r.meta.Version, err = strconv.Atoi(string(val)); err != nil {
			return fmt.Errorf("%w: field version: must be an integer", ErrMalformed)
		}
		return nil
	case "seq":
		if r.meta.Seq, err = strconv.ParseUint(string(val), 10, 64); err != nil {
			return fmt.Errorf("%w: field seq: must be an unsigned integer", ErrMalformed)
		}
		return nil
	case "time":
		// time.Time reads JSON null as the zero time; here null is refused like any null.
		if val[0] != '"' || r.meta.Time.UnmarshalJSON(val) != nil {
			return fmt.Errorf("%w: field time: must be an RFC 3339 time", ErrMalformed)
		}
		return nil
	}
	dst := r.stringField(key)
	if dst == nil {
		return fmt.Errorf("%w: unknown field %s", ErrMalformed, quote(key))
	}
	if *dst, err = jsonString(val); err != nil {
		return fmt.Errorf("%w: field %s: must be a string", ErrMalformed, key)
	}
	return nil
}

// stringField is the string field of the reply named key in JSON, nil if there is none.
func (r replyFields) stringField(key string) *string {
	switch key {
	case "type":
		return (*string)(&r.meta.Type)
	case "agreementId":
		return &r.meta.Agreement
	case "from":
		return &r.meta.From
	case "to":
		return &r.meta.To
	case "status":
		return (*string)(r.status)
	case "reason":
		return r.reason // nil for a cancel reply: an unknown field there
	}
	return nil
}
