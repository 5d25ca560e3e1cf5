package migrations

import (
	"testing"

	"github.com/natter-chat/natter/store/migration"
)

func TestSQLiteMigrationsLoad(t *testing.T) {
	ms, err := migration.Read(SQLite, ".")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].Version != 1 {
		t.Fatalf("want migrations starting at version 1, got %+v", ms)
	}
	for i, m := range ms {
		if m.Version != i+1 {
			t.Errorf("%s: version %d, want %d (no gaps)", m.Name, m.Version, i+1)
		}
		if m.SQL == "" {
			t.Errorf("%s is empty", m.Name)
		}
	}
}
