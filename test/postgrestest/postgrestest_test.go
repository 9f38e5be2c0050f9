package postgrestest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestStartAnswersWithPasswordOnly(t *testing.T) {
	s := Start(t)
	url := s.NewDatabase(t)
	ctx := context.Background()
	t.Run("password", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, url+"&password="+s.Password)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var one int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("SELECT 1 = %d, %v", one, err)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		if conn, err := pgx.Connect(ctx, url+"&password=wrong"); err == nil {
			conn.Close(ctx)
			t.Fatal("connected with a wrong password")
		}
	})
}
