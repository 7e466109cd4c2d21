package policy

import "encoding/binary"

// The decision cache is keyed on an input's canonical encoding, written from the Go types
// without building the OPA value: a decision the cache answers then costs no OPA value at all
// (building and hashing one was a third of the allocations of a cached token request).
//
// The encoding is injective: every field, in a fixed order, length-prefixed, with a mark for
// each optional object; so two inputs with the same encoding have the same OPA value (value()).
// Two inputs whose values are equal may still differ here only where value() gives one form to
// two Go values (a nil and an empty list, an absent and an empty optional string), which the
// encoding writes alike too. TestInputKeysMatchValues holds the two together, and fails when a
// field is added to the types without being written here.
type keyWriter []byte

func (w keyWriter) str(s string) keyWriter {
	w = binary.AppendUvarint(w, uint64(len(s)))
	return append(w, s...)
}

func (w keyWriter) strs(ss []string) keyWriter {
	w = binary.AppendUvarint(w, uint64(len(ss)))
	for _, s := range ss {
		w = w.str(s)
	}
	return w
}

func (w keyWriter) flag(b bool) keyWriter {
	if b {
		return append(w, 1)
	}
	return append(w, 0)
}

func (w keyWriter) count(n int) keyWriter { return binary.AppendUvarint(w, uint64(n)) }

// appendKey appends the token input's canonical encoding to b.
func (in *Input) appendKey(b []byte) []byte {
	w := keyWriter(b).str(in.Service)
	w = in.Client.appendKey(w)
	w = in.Principal.appendKey(w)
	w = w.count(len(in.Grants))
	for _, g := range in.Grants {
		w = w.str(g.Subject).str(g.Repository).strs(g.Actions).str(g.Expires)
	}
	w = w.strs(in.Owned)
	w = w.count(len(in.Scopes))
	for _, s := range in.Scopes {
		w = w.str(s.Type).str(s.Class).str(s.Name).strs(s.Actions)
	}
	return w
}

// appendKey appends the admin input's canonical encoding to b.
func (in *AdminInput) appendKey(b []byte) []byte {
	w := in.Principal.appendKey(keyWriter(b))
	w = in.Client.appendKey(w)
	t := in.Target
	w = w.str(in.Operation).str(t.Account).str(t.Group).str(t.Repository).str(t.KeyID).str(t.Owner).str(t.Expires)
	// A nil list of actions is absent from the value, an empty one is there, empty.
	w = w.flag(t.Actions != nil).strs(t.Actions)
	w = appendRestrictions(w, t.Restrictions)
	return w.strs(in.Owned)
}

func (c Client) appendKey(w keyWriter) keyWriter { return w.str(c.IP).str(c.ID).str(c.UserAgent) }

func (p Principal) appendKey(w keyWriter) keyWriter {
	w = w.str(p.Account).flag(p.Anonymous).strs(p.Groups).strs(p.Roles).flag(p.Key != nil)
	if k := p.Key; k != nil {
		w = w.str(k.ID).str(k.Name).str(k.Expires)
		w = appendRestrictions(w, k.Restrictions)
	}
	return w
}

func appendRestrictions(w keyWriter, r *Restrictions) keyWriter {
	w = w.flag(r != nil)
	if r != nil {
		w = w.strs(r.Actions).strs(r.Repositories).strs(r.CIDRs)
	}
	return w
}
