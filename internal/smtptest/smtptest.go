// Package smtptest runs a real SMTP server inside a test (emersion/go-smtp
// on a random loopback port) that records every message it accepts, and
// that a test can stop and restart on the same port, make refuse
// recipients (5xx), defer them (4xx), or cut off in the middle of DATA.
package smtptest

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// ErrCutOff, returned by an OnData hook, drops that one connection in the
// middle of DATA, before the message is taken in (a crash as that client
// sees it); other connections go on.
var ErrCutOff = errors.New("smtptest: connection cut off during DATA")

// Message is one message the server accepted.
type Message struct {
	From      string
	To        []string
	Subject   string
	MessageID string
	Text      string // the text/plain part, decoded
	HTML      string // the text/html part, decoded
	Raw       []byte
}

// Server is a recording SMTP server.
type Server struct {
	t    testing.TB
	Addr string // host:port, the same across restarts

	mu       sync.Mutex
	srv      *smtp.Server
	msgs     []Message
	rejectTo map[string]*smtp.SMTPError
	hook     func(n int) error // called before accepting DATA number n (1-based)
	datas    int
	user     string
	pass     string
	dataSeen chan struct{}
	sessions int // connections accepted
}

// Start starts a server on a random loopback port; it stops with the test.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, rejectTo: map[string]*smtp.SMTPError{}, dataSeen: make(chan struct{}, 100)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(s.Stop)
	return s
}

// URL is an SMTP_URL for the server (plain text, as for a local test server).
func (s *Server) URL() string { return "smtp://" + s.Addr + "?starttls=none" }

// RequireAuth makes the server demand AUTH PLAIN with these credentials.
func (s *Server) RequireAuth(user, pass string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user, s.pass = user, pass
}

func (s *Server) serve(ln net.Listener) {
	srv := smtp.NewServer(backend{s})
	srv.Addr = s.Addr
	srv.Domain = "smtptest.local"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.MaxMessageBytes = 10 << 20
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// Stop closes the listener and every open connection (a crash of the
// server, as the client sees it). Stopping a stopped server is a no-op.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// Restart starts the server again on the same address.
func (s *Server) Restart() {
	s.t.Helper()
	var ln net.Listener
	var err error
	// The port was just released; another process could take it, but on a
	// loopback address in a test that is not worth more than a short retry.
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", s.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("restart smtp server on %s: %v", s.Addr, err)
	}
	s.serve(ln)
}

// RejectRecipient makes RCPT TO of addr fail with code (550: permanent,
// 450: temporary); code 0 accepts it again.
func (s *Server) RejectRecipient(addr string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == 0 {
		delete(s.rejectTo, strings.ToLower(addr))
		return
	}
	enh := smtp.EnhancedCode{5, 1, 1}
	if code < 500 {
		enh = smtp.EnhancedCode{4, 2, 0}
	}
	s.rejectTo[strings.ToLower(addr)] = &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: "mailbox unavailable for " + addr}
}

// OnData sets a hook run when a message's DATA arrives, before the server
// accepts it; a non-nil error refuses the message with it (ErrCutOff:
// drops the connection instead of answering). n counts DATA commands since
// Start, from 1.
func (s *Server) OnData(hook func(n int) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = hook
}

// DataSeen receives once per DATA command the server starts reading.
func (s *Server) DataSeen() <-chan struct{} { return s.dataSeen }

// Sessions returns how many connections the server has accepted.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// Messages returns the messages accepted so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// To returns the accepted messages addressed to addr.
func (s *Server) To(addr string) []Message {
	var out []Message
	for _, m := range s.Messages() {
		for _, to := range m.To {
			if strings.EqualFold(to, addr) {
				out = append(out, m)
			}
		}
	}
	return out
}

// Wait waits until at least n messages were accepted, or fails the test.
func (s *Server) Wait(n int, within time.Duration) []Message {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if m := s.Messages(); len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("smtp server: %d messages after %s, want %d", len(s.Messages()), within, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.s.mu.Lock()
	b.s.sessions++
	b.s.mu.Unlock()
	return &session{s: b.s, conn: c}, nil
}

type session struct {
	s      *Server
	conn   *smtp.Conn
	from   string
	to     []string
	authed bool
}

func (ss *session) authRequired() bool {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	return ss.s.user != "" && !ss.authed
}

func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (ss *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		ss.s.mu.Lock()
		ok := username == ss.s.user && password == ss.s.pass
		ss.s.mu.Unlock()
		if !ok {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.authRequired() {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	rej := ss.s.rejectTo[strings.ToLower(to)]
	ss.s.mu.Unlock()
	if rej != nil {
		return rej
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.datas++
	n, hook := ss.s.datas, ss.s.hook
	ss.s.mu.Unlock()
	select {
	case ss.s.dataSeen <- struct{}{}:
	default:
	}
	if hook != nil {
		if err := hook(n); err != nil {
			if errors.Is(err, ErrCutOff) {
				_ = ss.conn.Conn().Close()
			}
			return err
		}
	}
	m, err := parse(raw)
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "unparseable message: " + err.Error()}
	}
	m.From, m.To = ss.from, append([]string(nil), ss.to...)
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, m)
	ss.s.mu.Unlock()
	return nil
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

// parse reads the headers and the text and HTML parts of a message.
func parse(raw []byte) (Message, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Message{}, err
	}
	dec := new(mime.WordDecoder)
	subj, err := dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return Message{}, err
	}
	m := Message{Subject: subj, MessageID: msg.Header.Get("Message-Id"), Raw: raw}
	err = walk(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body, &m)
	return m, err
}

func walk(contentType, encoding string, body io.Reader, m *Message) error {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = "text/plain"
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := walk(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, m); err != nil {
				return err
			}
		}
	}
	b, err := decode(encoding, body)
	if err != nil {
		return err
	}
	// SMTP carries CRLF line ends; tests compare with Go strings.
	text := strings.ReplaceAll(string(b), "\r\n", "\n")
	switch mt {
	case "text/plain":
		m.Text = text
	case "text/html":
		m.HTML = text
	}
	return nil
}
