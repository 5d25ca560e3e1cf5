package migration

import (
	"testing"
	"testing/fstest"
)

func TestMigrationsOrderAndErrors(t *testing.T) {
	fsys := fstest.MapFS{
		"m/0010_later.sql":  {Data: []byte("b")},
		"m/0002_first.sql":  {Data: []byte("a")},
		"m/README.md":       {Data: []byte("ignored")},
		"bad/x_nonum.sql":   {Data: []byte("x")},
		"dup/0001_a.sql":    {Data: []byte("x")},
		"dup/01_b.sql":      {Data: []byte("y")},
		"zero/0000_z.sql":   {Data: []byte("z")},
		"nosep/0003abc.sql": {Data: []byte("z")},
	}
	ms, err := Read(fsys, "m")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Version != 2 || ms[1].Version != 10 || ms[0].SQL != "a" {
		t.Fatalf("got %+v, want versions 2 then 10", ms)
	}
	for _, dir := range []string{"bad", "dup", "zero", "nosep", "missing"} {
		if _, err := Read(fsys, dir); err == nil {
			t.Errorf("%s: want an error", dir)
		}
	}
}
