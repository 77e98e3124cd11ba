package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/go-playground/validator/v10"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/account"
	"github.com/rentalportal/portal/store"
)

const adminUsage = `Usage:
  rentalportal admin create --email E --name N [--password-env VAR]
      create an administrator; the password is read from the first line of
      stdin, or from the environment variable VAR (never from a flag, which
      would leave it in the shell history and the process list)
  rentalportal admin promote --email E
      make an existing user an administrator (effective at their next login)

Administrators are made only here: the API never lets a user register as one.
`

// runAdmin manages administrators in the database of DATABASE_URL (or the
// embedded SQLite file under DATA_DIR).
func runAdmin(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, adminUsage)
		return errors.New("admin: missing subcommand (create or promote)")
	}
	fs := flag.NewFlagSet("admin "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, adminUsage) }
	email := fs.String("email", "", "the user's email")
	name := fs.String("name", "", "the administrator's name (create)")
	passwordEnv := fs.String("password-env", "", "read the password from this environment variable (create)")
	switch args[0] {
	case "create", "promote":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, adminUsage)
		return nil
	default:
		fmt.Fprint(stderr, adminUsage)
		return fmt.Errorf("admin: unknown subcommand %q (create or promote)", args[0])
	}
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("admin %s: %w", args[0], err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("admin %s: unexpected arguments %v", args[0], fs.Args())
	}
	*email = account.NormalizeEmail(*email)
	if err := validator.New().Var(*email, "required,max=254,email"); err != nil {
		return fmt.Errorf("admin %s: --email must be a valid email address", args[0])
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	if args[0] == "promote" {
		return adminPromote(ctx, cfg, *email, stdout)
	}
	*name = strings.TrimSpace(*name)
	if *name == "" || len([]rune(*name)) > 100 {
		return errors.New("admin create: --name is required (at most 100 characters)")
	}
	password, err := readPassword(*passwordEnv, getenv, stdin)
	if err != nil {
		return err
	}
	if problem := account.PasswordProblem(password, *email); problem != "" {
		return fmt.Errorf("admin create: the password %s", problem)
	}
	return adminCreate(ctx, cfg, *email, *name, password, stdout)
}

// readPassword takes the password from the named variable, or else from the
// first line of stdin.
func readPassword(envVar string, getenv func(string) string, stdin io.Reader) (string, error) {
	if envVar != "" {
		pw := getenv(envVar)
		if pw == "" {
			return "", fmt.Errorf("admin create: --password-env %s: the variable is empty or unset", envVar)
		}
		return pw, nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("admin create: read the password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("admin create: no password: write it on stdin or use --password-env VAR")
	}
	return pw, nil
}

// adminDB opens the configured database, migrated unless MIGRATE_ON_START is off.
func adminDB(ctx context.Context, cfg *Config) (*store.DB, error) {
	db, err := store.Open(ctx, cfg.DatabaseURL, filepath.Join(cfg.DataDir, "portal.db"), store.Options{MaxOpenConns: 2})
	if err != nil {
		return nil, err
	}
	if cfg.MigrateOnStart {
		if err := db.Migrate(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

func adminCreate(ctx context.Context, cfg *Config, email, name, password string, stdout io.Writer) error {
	hasher, err := account.NewHasher(cfg.BcryptCost)
	if err != nil {
		return fmt.Errorf("BCRYPT_COST: %w", err)
	}
	hash, err := hasher.Hash(password)
	if err != nil {
		return err
	}
	db, err := adminDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	u := &store.User{Email: email, PasswordHash: hash, Name: name, Role: "admin"}
	if err := store.CreateUser(ctx, db, u); err != nil {
		if portal.ErrorCode(err) == portal.EDUPLICATE {
			return fmt.Errorf("admin create: %s already has an account; use \"rentalportal admin promote --email %s\"", email, email)
		}
		return fmt.Errorf("admin create: %w", err)
	}
	fmt.Fprintf(stdout, "created administrator %s (id %s)\n", u.Email, u.ID)
	return nil
}

func adminPromote(ctx context.Context, cfg *Config, email string, stdout io.Writer) error {
	db, err := adminDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	u, err := store.GetUserByEmail(ctx, db, email)
	if portal.ErrorCode(err) == portal.ENOTFOUND {
		return fmt.Errorf("admin promote: no user has the email %s", email)
	}
	if err != nil {
		return fmt.Errorf("admin promote: %w", err)
	}
	if u.Role == "admin" {
		fmt.Fprintf(stdout, "%s is already an administrator\n", u.Email)
		return nil
	}
	if err := store.SetUserRole(ctx, db, u.ID, "admin"); err != nil {
		return fmt.Errorf("admin promote: %w", err)
	}
	fmt.Fprintf(stdout, "%s is now an administrator (was %s); it takes effect at their next login\n", u.Email, u.Role)
	return nil
}
