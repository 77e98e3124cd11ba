package api

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/account"
	"github.com/rentalportal/portal/store"
)

// Defaults of the account and booking settings when Config leaves them zero.
const (
	defaultBcryptCost         = 12
	defaultBookingPaymentTTL  = 30 * time.Minute
	defaultBookingMaxNights   = 90
	defaultBookingMaxAdvance  = 365
	invalidCredentialsMessage = "invalid email or password"
)

// setupAccounts fills the account and booking settings left zero and builds
// the password hasher.
func (s *Server) setupAccounts() error {
	if s.cfg.BcryptCost == 0 {
		s.cfg.BcryptCost = defaultBcryptCost
	}
	if s.cfg.BookingPaymentTTL <= 0 {
		s.cfg.BookingPaymentTTL = defaultBookingPaymentTTL
	}
	if s.cfg.BookingMaxNights <= 0 {
		s.cfg.BookingMaxNights = defaultBookingMaxNights
	}
	if s.cfg.BookingMaxAdvanceDays <= 0 {
		s.cfg.BookingMaxAdvanceDays = defaultBookingMaxAdvance
	}
	h, err := account.NewHasher(s.cfg.BcryptCost)
	if err != nil {
		return portal.WrapError(portal.EINVALID, err, "BCRYPT_COST: %v", err)
	}
	s.hasher = h
	setupValidator()
	return nil
}

// UserView is a user as the API shows it.
type UserView struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

func userView(u *store.User) UserView {
	return UserView{ID: u.ID, Email: u.Email, Name: u.Name, Role: u.Role, CreatedAt: u.CreatedAt.UTC()}
}

// TokenResponse answers register and login.
type TokenResponse struct {
	AccessToken string   `json:"access_token"`
	TokenType   string   `json:"token_type"`
	ExpiresIn   int      `json:"expires_in"`
	User        UserView `json:"user"`
}

type registerRequest struct {
	Email string `json:"email" binding:"required,max=254,email"`
	// Password rules need the email too: account.PasswordProblem checks them.
	Password string `json:"password" binding:"required"`
	Name     string `json:"name" binding:"required,notblank,max=100"`
	// Admin is never self-assigned: only the CLI makes admins.
	Role string `json:"role" binding:"required,oneof=renter owner"`
}

// register creates an account and logs it in: 201 with a token.
func (s *Server) register(c *gin.Context) {
	var req registerRequest
	err := bindJSON(c, &req)
	if code := portal.ErrorCode(err); code != "" && code != portal.EVALIDATION {
		renderError(c, err)
		return
	}
	if req.Password != "" {
		if problem := account.PasswordProblem(req.Password, req.Email); problem != "" {
			err = withDetail(err, "password", problem)
		}
	}
	if err != nil {
		renderError(c, err)
		return
	}
	hash, err := s.hasher.Hash(req.Password)
	if err != nil {
		renderError(c, err)
		return
	}
	u := &store.User{Email: account.NormalizeEmail(req.Email), PasswordHash: hash, Name: req.Name, Role: req.Role}
	if err := store.CreateUser(c.Request.Context(), s.deps.DB, u); err != nil {
		renderError(c, err)
		return
	}
	s.respondToken(c, http.StatusCreated, u)
}

type loginRequest struct {
	Email    string `json:"email" binding:"required,max=254"`
	Password string `json:"password" binding:"required,max=1024"`
}

// login checks credentials: 200 with a token, or 401 with one message and
// about the same time whether or not the email is registered.
func (s *Server) login(c *gin.Context) {
	var req loginRequest
	if err := bindJSON(c, &req); err != nil {
		renderError(c, err)
		return
	}
	ctx := c.Request.Context()
	u, err := store.GetUserByEmail(ctx, s.deps.DB, req.Email)
	switch portal.ErrorCode(err) {
	case "":
	case portal.ENOTFOUND:
		s.hasher.CheckNobody(req.Password)
		renderError(c, portal.Errorf(portal.EUNAUTHORIZED, invalidCredentialsMessage))
		return
	default:
		renderError(c, err)
		return
	}
	if !s.hasher.Check(u.PasswordHash, req.Password) {
		renderError(c, portal.Errorf(portal.EUNAUTHORIZED, invalidCredentialsMessage))
		return
	}
	if s.hasher.NeedsRehash(u.PasswordHash) {
		// BCRYPT_COST changed: store a hash at the new cost while we know the
		// password. Failing to is harmless; the next login tries again.
		if hash, err := s.hasher.Hash(req.Password); err == nil {
			if err := store.SetPasswordHash(ctx, s.deps.DB, u.ID, hash); err != nil {
				loggerOf(c).WarnContext(ctx, "could not store a rehashed password", "user_id", u.ID, "err", err)
			}
		}
	}
	s.respondToken(c, http.StatusOK, u)
}

func (s *Server) respondToken(c *gin.Context, status int, u *store.User) {
	token, ttl, err := s.tokens.Issue(Principal{UserID: u.ID, Role: u.Role})
	if err != nil {
		renderError(c, err)
		return
	}
	c.Set(ctxUserID, u.ID)
	c.JSON(status, TokenResponse{AccessToken: token, TokenType: "Bearer", ExpiresIn: int(ttl / time.Second), User: userView(u)})
}

// me returns the caller's account.
func (s *Server) me(c *gin.Context) {
	u, err := store.GetUser(c.Request.Context(), s.deps.DB, principal(c).UserID)
	if portal.ErrorCode(err) == portal.ENOTFOUND {
		err = portal.WrapError(portal.EUNAUTHORIZED, err, "the account of this token no longer exists")
	}
	if err != nil {
		renderError(c, err)
		return
	}
	c.JSON(http.StatusOK, userView(u))
}

// withDetail adds a field detail to a validation error, or makes one.
func withDetail(err error, field, msg string) error {
	d := portal.FieldError{Field: field, Message: msg}
	if pe, ok := err.(*portal.Error); ok && pe.Code == portal.EVALIDATION {
		pe.Details = append(pe.Details, d)
		return pe
	}
	return &portal.Error{Code: portal.EVALIDATION, Message: "the request has invalid fields", Details: []portal.FieldError{d}}
}
