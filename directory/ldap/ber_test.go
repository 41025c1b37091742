package ldap

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"reflect"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
)

// The hand-written encoder must produce exactly what asn1-ber produces for the
// same requests (go-ldap's encoding, which every server accepts).
func TestEncodeMatchesASN1BER(t *testing.T) {
	for _, v := range []int64{0, 1, 3, 127, 128, 255, 256, 32767, 32768, 1 << 23, 1<<31 - 1} {
		want := ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, v, "").Bytes()
		if got := appendInt(nil, tagInteger, v); !bytes.Equal(got, want) {
			t.Errorf("appendInt(%d) = %x, want %x", v, got, want)
		}
	}
	for _, n := range []int{0, 1, 127, 128, 255, 256, 65535, 65536, 1 << 20} {
		s := string(bytes.Repeat([]byte{'x'}, n))
		want := ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, s, "").Bytes()
		if got := appendString(nil, tagOctetString, s); !bytes.Equal(got, want) {
			t.Errorf("appendString(len %d): header %x, want %x", n, got[:min(6, len(got))], want[:min(6, len(want))])
		}
		if headerLen(n)+n != len(want) {
			t.Errorf("headerLen(%d) = %d", n, headerLen(n))
		}
	}

	// A whole search request message, as lconn.search writes it.
	filter, err := goldap.CompileFilter("(&(cn=al\\2aice)(status=valid))")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	c := &lconn{nc: &recordConn{w: &out}, r: bufio.NewReader(bytes.NewReader(nil)), msgID: 41}
	c.search("ou=users,dc=example,dc=com", goldap.ScopeSingleLevel, filter.Bytes(), []string{"cn", "status"}, 2, 5*time.Second)
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 3, nil, "")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "ou=users,dc=example,dc=com", ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(goldap.ScopeSingleLevel), ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(goldap.NeverDerefAliases), ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, uint64(2), ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, uint64(5), ""))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, ""))
	op.AppendChild(filter)
	as := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	as.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "cn", ""))
	as.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "status", ""))
	op.AppendChild(as)
	env := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	env.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(42), ""))
	env.AppendChild(op)
	if want := env.Bytes(); !bytes.Equal(out.Bytes(), want) {
		t.Errorf("search request\n got %x\nwant %x", out.Bytes(), want)
	}
}

// recordConn is a net.Conn that records writes and has nothing to read.
type recordConn struct {
	fakeConn
	w *bytes.Buffer
}

func (r *recordConn) Write(p []byte) (int, error) { return r.w.Write(p) }

func TestParseResponses(t *testing.T) {
	entry := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 4, nil, "")
	entry.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "cn=alice,ou=users", ""))
	attrs := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	for _, a := range []struct {
		name string
		vals []string
	}{{"cn", []string{"alice"}}, {"mail", []string{"a@example.com", string(bytes.Repeat([]byte{'m'}, 300))}}, {"empty", nil}} {
		at := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
		at.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a.name, ""))
		set := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "")
		for _, v := range a.vals {
			set.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, ""))
		}
		at.AppendChild(set)
		attrs.AppendChild(at)
	}
	entry.AppendChild(attrs)
	done := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 5, nil, "")
	done.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(49), ""))
	done.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
	done.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "bad password", ""))
	msg := func(id int64, op *ber.Packet) []byte {
		env := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
		env.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
		env.AppendChild(op)
		return env.Bytes()
	}
	stream := append(msg(300, entry), msg(300, done)...)
	r := bufio.NewReaderSize(bytes.NewReader(stream), 16)
	buf, err := readMessage(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, tag, body, err := parseMessage(buf)
	if err != nil || id != 300 || tag != tagSearchResultEntry {
		t.Fatalf("parseMessage = %d %#x %v", id, tag, err)
	}
	e, err := parseEntry(body)
	if err != nil {
		t.Fatal(err)
	}
	want := &goldap.Entry{DN: "cn=alice,ou=users", Attributes: []*goldap.EntryAttribute{
		{Name: "cn", Values: []string{"alice"}},
		{Name: "mail", Values: []string{"a@example.com", string(bytes.Repeat([]byte{'m'}, 300))}},
		{Name: "empty"},
	}}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("entry = %+v", e)
	}
	buf, err = readMessage(r, buf)
	if err != nil {
		t.Fatal(err)
	}
	_, tag, body, err = parseMessage(buf)
	if err != nil || tag != tagSearchResultDone {
		t.Fatalf("done: %#x %v", tag, err)
	}
	if err := result(body); !goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) || err.Error() == "" {
		t.Errorf("result = %v", err)
	}

	for _, bad := range [][]byte{
		{0x31, 0x00},             // not a SEQUENCE
		{0x30, 0x80, 0x00, 0x00}, // indefinite length
		{0x30, 0x85, 1, 1, 1, 1, 1},
		{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}, // over maxResponse
		{0x30, 0x05, 0x02, 0x01},             // truncated
	} {
		if _, err := readMessage(bufio.NewReader(bytes.NewReader(bad)), nil); err == nil {
			t.Errorf("readMessage(%x) accepted", bad)
		}
	}
}

// FuzzParse feeds arbitrary server bytes through the response decoder: errors
// are fine, panics and out-of-bounds reads are not.
func FuzzParse(f *testing.F) {
	f.Add([]byte{0x30, 0x0c, 0x02, 0x01, 0x01, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00})
	f.Add([]byte{0x30, 0x1d, 0x02, 0x01, 0x02, 0x64, 0x18, 0x04, 0x04, 'c', 'n', '=', 'a', 0x30, 0x10, 0x30, 0x0e,
		0x04, 0x02, 'c', 'n', 0x31, 0x08, 0x04, 0x01, 'a', 0x04, 0x03, 'b', 'c', 'd'})
	f.Add([]byte{0x30, 0x81, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		var buf []byte
		for range 4 {
			var err error
			if buf, err = readMessage(r, buf); err != nil {
				return
			}
			_, tag, body, err := parseMessage(buf)
			if err != nil {
				continue
			}
			switch tag {
			case tagSearchResultEntry:
				parseEntry(body)
			default:
				result(body)
			}
		}
	})
}

// fakeConn is a net.Conn that does nothing.
type fakeConn struct{}

func (fakeConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (fakeConn) Write(p []byte) (int, error)      { return len(p), nil }
func (fakeConn) Close() error                     { return nil }
func (fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (fakeConn) SetDeadline(time.Time) error      { return nil }
func (fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (fakeConn) SetWriteDeadline(time.Time) error { return nil }
