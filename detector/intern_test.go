package detector

import "testing"

// rowOf answers from the interner's last lookup when it names the tenant
// asked for (ingest asks right after interning it), and from the map
// otherwise; both must agree with what setRow and forgetTakenRows did.
func TestInternerRowOfAgreesWithTheMap(t *testing.T) {
	in := newInterner(4)
	acme := in.intern("acme")
	r1 := &coverageRow{}
	in.setRow(acme, 10, r1)
	if got := in.rowOf(acme, 10); got != r1 {
		t.Fatalf("rowOf(acme) right after setRow = %p, want %p", got, r1)
	}
	globex := in.intern("globex")
	if got := in.rowOf(acme, 10); got != r1 {
		t.Fatalf("rowOf(acme) after interning another tenant = %p, want %p (from the map)", got, r1)
	}
	if got := in.rowOf(globex, 10); got != nil {
		t.Fatalf("rowOf(globex), which has no row, = %p", got)
	}
	in.intern("acme")
	if got := in.rowOf(acme, 11); got != nil {
		t.Fatalf("rowOf(acme) in another hour = %p, want none", got)
	}
	r2 := &coverageRow{}
	in.setRow(acme, 11, r2)
	if got := in.rowOf(acme, 11); got != r2 {
		t.Fatalf("rowOf(acme) after a new hour's setRow = %p, want %p", got, r2)
	}
	// The current generation rotates: acme comes back from the previous one
	// with its row.
	for _, s := range []string{"a", "b", "c", "d"} {
		in.intern(s)
	}
	in.intern("acme")
	if got := in.rowOf(acme, 11); got != r2 {
		t.Fatalf("rowOf(acme) after a rotation = %p, want %p", got, r2)
	}
	r2.taken = true
	in.forgetTakenRows()
	if got := in.rowOf(acme, 11); got != nil {
		t.Fatalf("rowOf(acme) after its row was taken = %p, want none", got)
	}
	in.intern("globex")
	if got := in.rowOf(acme, 11); got != nil {
		t.Fatalf("rowOf(acme) from the map after its row was taken = %p, want none", got)
	}
}
