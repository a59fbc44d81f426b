package tenantguardprocessor

// keyUse is what readSpan does with one attribute key: the configured slots
// it fills (tenant keys, derivations, bindings; usually one, or none) and
// the semantic-convention fact it carries, if any.
type keyUse struct {
	key   string
	slots []int
	fact  fact
}

// fact is a semantic-convention attribute readSpan reads for the rules.
type fact uint8

const (
	factNone fact = iota
	factHTTPStatus
	factGRPCStatus
	factDBSystem
	factMessaging
	factS3Bucket
	factQuery    // db.query.text: wins over db.statement
	factQueryOld // db.statement
)

// keyTable finds a key's use in about one probe. A span carries ten or more
// attributes and most are none of the few the rules read, so each key must be
// rejected cheaply: comparing it against every wanted key (a string switch
// and the slots) cost more than the rest of the span's reading. Keys are
// hashed on their length and three of their bytes; a miss is usually an
// empty cell or a length that differs.
type keyTable struct {
	cells []int32 // 1 + index into uses; 0 is empty
	uses  []keyUse
	mask  uint32
}

func newKeyTable(slots []slot) keyTable {
	var t keyTable
	add := func(key string) *keyUse {
		for i := range t.uses {
			if t.uses[i].key == key {
				return &t.uses[i]
			}
		}
		t.uses = append(t.uses, keyUse{key: key})
		return &t.uses[len(t.uses)-1]
	}
	for k, f := range map[string]fact{
		attrHTTPStatus: factHTTPStatus, attrHTTPStatusOld: factHTTPStatus,
		attrGRPCStatus: factGRPCStatus,
		attrDBSystem:   factDBSystem, attrDBSystemOld: factDBSystem,
		attrMessaging: factMessaging, attrS3Bucket: factS3Bucket,
		attrQuery: factQuery, attrQueryOld: factQueryOld,
	} {
		add(k).fact = f
	}
	for i := range slots {
		u := add(slots[i].key)
		u.slots = append(u.slots, i)
	}
	size := 16
	for size < 4*len(t.uses) {
		size *= 2
	}
	t.cells, t.mask = make([]int32, size), uint32(size-1)
	for i := range t.uses {
		h := keyHash(t.uses[i].key) & t.mask
		for t.cells[h] != 0 {
			h = (h + 1) & t.mask
		}
		t.cells[h] = int32(i + 1)
	}
	return t
}

func keyHash(k string) uint32 {
	n := len(k)
	if n == 0 {
		return 0
	}
	h := uint32(n) | uint32(k[0])<<8 | uint32(k[n/2])<<16 | uint32(k[n-1])<<24
	h *= 0x9E3779B1
	return h ^ h>>15
}

// find returns key's use, or nil for a key the rules do not read.
func (t *keyTable) find(k string) *keyUse {
	for h := keyHash(k) & t.mask; ; h = (h + 1) & t.mask {
		c := t.cells[h]
		if c == 0 {
			return nil
		}
		if u := &t.uses[c-1]; len(u.key) == len(k) && u.key == k {
			return u
		}
	}
}
