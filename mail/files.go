package mail

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	netmail "net/mail"
	"os"
	"path/filepath"
)

// Files writes each message as an .eml file into a folder instead of
// sending it: the embedded default, so `make run` shows every email it
// would send (open the file in any mail client). One log line per message
// names the subject and the file, with the recipient hashed.
type Files struct {
	dir  string
	from *netmail.Address
	log  *slog.Logger
}

// NewFiles returns a writer into dir (created if needed).
func NewFiles(dir, from string, log *slog.Logger) (*Files, error) {
	addr, err := ParseAddress(from)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("mail folder %s: %w", dir, err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Files{dir: dir, from: addr, log: log}, nil
}

// String describes where messages go.
func (f *Files) String() string { return "files under " + f.dir }

// Dir is the folder messages are written to.
func (f *Files) Dir() string { return f.dir }

// Send writes the message to <dir>/<key>.eml, where key derives from the
// message ID: the same message written twice is one file. The write is
// atomic (a temporary file renamed into place).
func (f *Files) Send(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	gm, err := compose(f.from, m)
	if err != nil {
		return err
	}
	key := m.ID
	if key == "" {
		h := sha256.Sum256([]byte(gm.GetMessageID()))
		key = hex.EncodeToString(h[:12])
	}
	path := filepath.Join(f.dir, safeName(key)+".eml")
	tmp, err := os.CreateTemp(f.dir, ".mail-*")
	if err != nil {
		return fmt.Errorf("write mail: %w", err)
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after the rename
	if _, err := gm.WriteTo(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write mail: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write mail: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write mail: %w", err)
	}
	f.log.InfoContext(ctx, "mail written", "to", RecipientHash(m.To), "subject", m.Subject, "file", path)
	return nil
}

// safeName keeps a file name to letters, digits, dash, dot and underscore.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			b[i] = '_'
		}
	}
	if len(b) > 120 {
		b = b[:120]
	}
	return string(b)
}
