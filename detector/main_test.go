package detector

import (
	"fmt"
	"os"
	"reflect"
	"testing"
)

// TestMain checks, once every test has run, that nothing wrote into
// noNotes, the notes every trace without any reads (shard.n): a write
// there would give every such trace another's findings.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 && !reflect.ValueOf(noNotes).IsZero() {
		fmt.Fprintf(os.Stderr, "noNotes was written: %+v\n", noNotes)
		code = 1
	}
	os.Exit(code)
}
