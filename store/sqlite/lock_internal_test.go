package sqlite

import (
	"database/sql"
	"testing"
)

// HoldWriteLock takes the write lock of the file at path, as another process's
// open write transaction would, and returns the function that gives it up
// (ROLLBACK). The connection is closed at cleanup. Exported for the external
// tests (package sqlite_test).
func HoldWriteLock(t testing.TB, path string) (release func()) {
	t.Helper()
	ctx := t.Context()
	locker, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { locker.Close() })
	conn, err := locker.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
	}
}
