package pdfsafe

import (
	"fmt"
	"io"
	"reflect"

	"github.com/digitorus/pdf"

	"github.com/vula-eid/vula/internal/signing"
)

// checkObjectStreams checks every object stream digitorus/pdf may read when it resolves an
// object: those the cross-reference entries name and those their /Extends reach. Its types are
// unexported, so their fields are read through reflect (as internal/signing/pades does for
// references); the field names are those of digitorus/pdf v0.1.2's read.go and lex.go.
func checkObjectStreams(pr *pdf.Reader) error {
	xs := pr.Xref()
	parent := pr.Trailer().GetPtr()
	c := &objStms{
		xref:    reflect.ValueOf(xs),
		resolve: func(id int) pdf.Value { return pr.Resolve(parent, xs[id].Ptr()) },
	}
	// Object streams by number and generation: an entry names its stream as "n 0 R", an
	// /Extends may name any generation.
	var todo [][2]uint64
	for i := range c.xref.Len() {
		if e := c.xref.Index(i); e.FieldByName("inStream").Bool() {
			todo = append(todo, [2]uint64{e.FieldByName("stream").Field(0).Uint(), 0})
		}
	}
	extends := map[int]int{}
	checked := map[[2]uint64]bool{}
	for len(todo) > 0 {
		ref := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if checked[ref] {
			continue
		}
		checked[ref] = true
		ext, err := c.check(int(ref[0]), ref[1])
		if err != nil {
			return err
		}
		if ext[0] >= 0 {
			extends[int(ref[0])] = int(ext[0])
			todo = append(todo, [2]uint64{uint64(ext[0]), uint64(ext[1])})
		}
	}
	// An /Extends chain that comes back on itself is searched for ever.
	for id := range extends {
		seen := map[int]bool{}
		for cur, ok := id, true; ok; cur, ok = extends[cur] {
			if seen[cur] {
				return fmt.Errorf("%w: the object streams' /Extends form a loop (object %d)", signing.ErrInvalid, cur)
			}
			seen[cur] = true
		}
	}
	return nil
}

type objStms struct {
	xref    reflect.Value // digitorus/pdf's []xref
	resolve func(id int) pdf.Value
	total   int64 // decoded bytes read so far
}

// entry returns the cross-reference entry of object id, and whether it is the one
// digitorus/pdf resolves "id gen R" with (a mismatched one resolves to null).
func (c *objStms) entry(id int, gen uint64) (reflect.Value, bool) {
	if id < 0 || id >= c.xref.Len() {
		return reflect.Value{}, false
	}
	e := c.xref.Index(id)
	p := e.FieldByName("ptr")
	return e, int(p.Field(0).Uint()) == id && p.Field(1).Uint() == gen
}

// check checks object stream "id gen R" and returns the reference its /Extends holds (number
// and generation), or -1.
func (c *objStms) check(id int, gen uint64) (ext [2]int64, err error) {
	none := [2]int64{-1, 0}
	e, ok := c.entry(id, gen)
	if !ok {
		return none, nil // resolved to null, on which digitorus/pdf panics ("not a stream")
	}
	if e.FieldByName("inStream").Bool() {
		return none, fmt.Errorf("%w: object stream %d is itself stored in an object stream", signing.ErrInvalid, id)
	}
	s := c.resolve(id)
	if s.Kind() != pdf.Stream || s.Key("Type").Name() != "ObjStm" {
		return none, fmt.Errorf("%w: object %d holds objects but is not an object stream", signing.ErrInvalid, id)
	}
	// Every value digitorus/pdf reads from this dictionary while looking into the stream
	// (/Length, /Filter, /DecodeParms, /N, /First, /Extends) must not be stored in an object
	// stream, or reading it reads this stream again, without end. The whole dictionary and
	// what it refers to (a few levels down, each object once) is held to that, as ISO 32000-1
	// 7.5.7 requires of /Length.
	hdr := reflect.ValueOf(s.RawData()).FieldByName("hdr")
	if err := c.noStoredRefs(hdr, 0, map[int]bool{}); err != nil {
		return none, fmt.Errorf("%w (object stream %d)", err, id)
	}
	if err := checkColumns(s.Key("DecodeParms")); err != nil {
		return none, fmt.Errorf("%w (object stream %d)", err, id)
	}
	n, first := s.Key("N").Int64(), s.Key("First").Int64()
	if n < 0 || n > maxObjects || first <= 0 {
		return none, fmt.Errorf("%w: object stream %d has /N %d and /First %d", signing.ErrInvalid, id, n, first)
	}
	data, err := io.ReadAll(io.LimitReader(s.Reader(), maxObjStm+1))
	if err != nil {
		return none, fmt.Errorf("%w: object stream %d cannot be decoded: %v", signing.ErrInvalid, id, err)
	}
	if c.total += int64(len(data)); len(data) > maxObjStm || c.total > maxObjStmTotal {
		return none, fmt.Errorf("%w: the object streams decode to more than %d bytes", signing.ErrTooLarge, min(c.total, maxObjStmTotal))
	}
	if err := checkObjStmData(data, n, first); err != nil {
		return none, fmt.Errorf("%w (object stream %d)", err, id)
	}
	ext = none
	for _, k := range hdr.MapKeys() {
		if k.String() == "Extends" {
			if p := hdr.MapIndex(k).Elem(); p.Kind() == reflect.Struct && p.Type().Name() == "objptr" {
				ext = [2]int64{int64(p.Field(0).Uint()), int64(p.Field(1).Uint())}
			}
		}
	}
	return ext, nil
}

// noStoredRefs refuses a reference, in v or in what it refers to, to an object stored in an
// object stream.
func (c *objStms) noStoredRefs(v reflect.Value, depth int, seen map[int]bool) error {
	if depth > 4 {
		return nil
	}
	switch v.Kind() {
	case reflect.Interface:
		return c.noStoredRefs(v.Elem(), depth, seen)
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if err := c.noStoredRefs(it.Value(), depth, seen); err != nil {
				return err
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			if err := c.noStoredRefs(v.Index(i), depth, seen); err != nil {
				return err
			}
		}
	case reflect.Struct:
		switch v.Type().Name() {
		case "stream":
			return c.noStoredRefs(v.FieldByName("hdr"), depth, seen)
		case "objptr":
			id := int(v.Field(0).Uint())
			e, ok := c.entry(id, v.Field(1).Uint())
			if !ok || seen[id] {
				return nil
			}
			seen[id] = true
			if e.FieldByName("inStream").Bool() {
				return fmt.Errorf("%w: an object stream's dictionary refers to object %d, stored in an object stream", signing.ErrInvalid, id)
			}
			return c.noStoredRefs(reflect.ValueOf(c.resolve(id).RawData()), depth+1, seen)
		}
	}
	return nil
}

// checkObjStmData checks an object stream's decoded data as digitorus/pdf will read it: n
// pairs of numbers from the start, then an object at first+offset for each. Its lexer never
// ends at the end of this data inside an array or a string, so the data, read as tokens from
// its start, must leave none open; and each object must start where a token of that reading
// starts (or between tokens), so that reading from there is the same reading, from which
// nothing is left open either: an array counted from a later start is counted from 0 too.
func checkObjStmData(data []byte, n, first int64) error {
	l := newLexer(data)
	between := make([]bool, len(data)+1) // where a fresh reading starts in step with this one
	var nums []int64
	depth := 0
	for {
		for l.pos < len(data) && (isSpace(data[l.pos]) || data[l.pos] == '%') {
			between[l.pos] = true
			l.skip1()
		}
		between[l.pos] = true
		t, more := l.next()
		if !more {
			break
		}
		if int64(len(nums)) < 2*n {
			v, _ := parseInt(t.text)
			if t.kind != tokWord {
				v = 0
			}
			nums = append(nums, v)
		}
		if t.kind == tokDelim {
			switch string(t.text) {
			case "[":
				depth++
			case "]":
				depth = max(depth-1, 0)
			}
		}
	}
	if l.open || depth > 0 {
		return fmt.Errorf("%w: an object stream ends inside an array or a string", signing.ErrInvalid)
	}
	if int64(len(nums)) < 2*n {
		return fmt.Errorf("%w: an object stream says it holds %d objects but has only %d tokens", signing.ErrInvalid, n, len(nums))
	}
	for i := 1; i < len(nums); i += 2 {
		at := first + nums[i]
		if at < 0 || at > int64(len(data)) || !between[at] {
			return fmt.Errorf("%w: an object stream places an object at %d, not at the start of one", signing.ErrInvalid, at)
		}
	}
	return nil
}
