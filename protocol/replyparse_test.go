package protocol

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestReadReply: update and cancel replies read by hand, each rule by name. The cases marked
// "json accepted" are replies encoding/json read (and decodeAs still does): the hand reader
// refuses them, as the envelope's reader refuses their like.
func TestReadReply(t *testing.T) {
	const upd = `{"version":1,"type":"update_reply","agreementId":"a1","from":"o/n","to":"agbot","seq":7,"time":"2026-12-07T09:30:00.123456789Z","status":"failed","reason":"disk \"full\""}`
	wantUpd := &UpdateReply{Meta: Meta{Version: 1, Type: TypeUpdateReply, Agreement: "a1", From: "o/n", To: "agbot", Seq: 7,
		Time: time.Date(2026, 12, 7, 9, 30, 0, 123456789, time.UTC)}, Status: StatusFailed, Reason: `disk "full"`}
	tests := []struct {
		name  string
		t     MessageType
		data  string
		want  Message // nil: refused
		wantS string
	}{
		{"update reply", TypeUpdateReply, upd, wantUpd, ""},
		{"white space and order", TypeUpdateReply, " {\"reason\" : \"disk \\\"full\\\"\" ,\n\t\"status\":\"failed\", \"time\" : \"2026-12-07T09:30:00.123456789Z\",\r\n" +
			`"seq": 7, "to":"agbot", "from" :"o\/n","agreementId":"a1","type":"update_reply","version":1 } `, wantUpd, ""},
		{"cancel reply", TypeCancelReply, `{"version":1,"type":"cancel_reply","agreementId":"a1","from":"o/n","to":"agbot","seq":3,"time":"2026-12-07T09:30:00Z","status":"applied"}`,
			&CancelReply{Meta: Meta{Version: 1, Type: TypeCancelReply, Agreement: "a1", From: "o/n", To: "agbot", Seq: 3, Time: time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)}, Status: StatusApplied}, ""},
		{"missing fields stay zero", TypeUpdateReply, `{"status":"applied"}`, &UpdateReply{Status: StatusApplied}, ""},
		{"not an object", TypeUpdateReply, `["status"]`, nil, "must be a JSON object"},
		{"unknown field", TypeUpdateReply, `{"status":"applied","x":{"y":[1,"}"]}}`, nil, `unknown field "x"`},
		{"reason in a cancel reply", TypeCancelReply, `{"status":"applied","reason":"r"}`, nil, `unknown field "reason"`},
		{"field name case changed (json accepted)", TypeUpdateReply, `{"Status":"applied"}`, nil, `unknown field "Status"`},
		{"string null (json accepted)", TypeUpdateReply, `{"from":null}`, nil, "field from: must be a string"},
		{"time null (json accepted)", TypeUpdateReply, `{"time":null}`, nil, "field time: must be an RFC 3339 time"},
		{"time not RFC 3339", TypeUpdateReply, `{"time":"7 Dec 2026"}`, nil, "field time: must be an RFC 3339 time"},
		{"time a number", TypeUpdateReply, `{"time":1733563800}`, nil, "field time: must be an RFC 3339 time"},
		{"version a float", TypeUpdateReply, `{"version":1.0}`, nil, "field version: must be an integer"},
		{"version a string", TypeUpdateReply, `{"version":"1"}`, nil, "field version: must be an integer"},
		{"seq negative", TypeUpdateReply, `{"seq":-1}`, nil, "field seq: must be an unsigned integer"},
		{"seq beyond 64 bits", TypeUpdateReply, `{"seq":18446744073709551616}`, nil, "field seq: must be an unsigned integer"},
		{"status an object", TypeUpdateReply, `{"status":{}}`, nil, "field status: must be a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, ok, err := readReply([]byte(tc.data), tc.t)
			if !ok {
				t.Fatal("not read by hand")
			}
			if tc.want == nil {
				if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.wantS) {
					t.Fatalf("readReply = %v, want ErrMalformed with %q", err, tc.wantS)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(m, tc.want) {
				t.Fatalf("readReply = %+v, %v; want %+v", m, err, tc.want)
			}
		})
	}
	for _, typ := range []MessageType{TypeProposal, TypeProposalReply, TypeUpdate, TypeCancel, TypeResync} {
		if _, ok, _ := readReply([]byte(`{}`), typ); ok {
			t.Errorf("%s read by hand: only update and cancel replies are", typ)
		}
	}
}

// TestOpenKeepsReplyRefusals: a reply the hand reader refuses is refused when opened too,
// though encoding/json (the fallback that tells a message of another type than its header
// apart) would read it as the header's type; a message of another type is still named so.
func TestOpenKeepsReplyRefusals(t *testing.T) {
	hdr := &Header{Type: TypeUpdateReply, From: nodeID, To: agbotID, Agreement: agreement}
	reply := func(status string) []byte {
		return []byte(`{"version":1,"type":"update_reply","agreementId":"` + agreement + `","from":"` + nodeID +
			`","to":"` + agbotID + `","seq":2,"time":"2026-12-07T09:30:00Z",` + status + `}`)
	}
	for _, tc := range []struct {
		name string
		body []byte
		want error // nil: opened
	}{
		{"update reply", reply(`"status":"applied"`), nil},
		{"field name case changed", reply(`"Status":"applied"`), ErrMalformed},
		{"string null", reply(`"status":"applied","reason":null`), ErrMalformed},
		{"a cancel reply under an update reply's header", []byte(strings.Replace(string(reply(`"status":"applied"`)), `"update_reply"`, `"cancel_reply"`, 1)), ErrHeaderMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := decodeAgainstHeader(tc.body, hdr, Limits{})
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("decodeAgainstHeader = %+v, %v; want %v", m, err, tc.want)
			}
		})
	}
}

// FuzzReadReply compares readReply with decodeAs (encoding/json, strictly): nothing decodeAs
// refuses is accepted, and what both accept reads the same.
func FuzzReadReply(f *testing.F) {
	for _, m := range allMessages() {
		if b, err := Encode(m); err == nil {
			f.Add(b, m.Head().Type == TypeCancelReply)
		}
	}
	f.Add([]byte(`{"version":-0,"seq":0,"time":"2026-12-07T09:30:00+01:00","reason":"\u00e9\n"}`), false)
	f.Add([]byte(` { "status" : "applied" , "type" : "cancel_reply" } `), true)
	f.Fuzz(func(t *testing.T, data []byte, cancel bool) {
		if checkJSON(data) != nil {
			return // both readers run only on what checkJSON accepted
		}
		typ := TypeUpdateReply
		if cancel {
			typ = TypeCancelReply
		}
		m, _, err := readReply(data, typ)
		ref, rerr := decodeAs(data, typ)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("refused without ErrMalformed: %v", err)
			}
			return
		}
		if rerr != nil {
			t.Fatalf("accepted what encoding/json refuses (%v): %+v", rerr, m)
		}
		if !reflect.DeepEqual(m, ref) {
			t.Fatalf("read %+v, encoding/json reads %+v", m, ref)
		}
	})
}

// BenchmarkReadReply: an update reply as the agbot reads each node's acknowledgement, by
// hand and through encoding/json (decodeAs).
func BenchmarkReadReply(b *testing.B) {
	data, err := Encode(&UpdateReply{Meta: meta(TypeUpdateReply, nodeID, agbotID, 2), Status: StatusApplied})
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range []struct {
		name string
		read func() error
	}{
		{"by-hand", func() error { _, _, err := readReply(data, TypeUpdateReply); return err }},
		{"encoding-json", func() error { _, err := decodeAs(data, TypeUpdateReply); return err }},
	} {
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := r.read(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
