package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/rentalportal/portal/store"
)

// NotificationView is an in-app notification as the API shows it.
type NotificationView struct {
	ID    string `json:"id"`
	Type  string `json:"type"` // the domain event: booking.confirmed, upload.ready, ...
	Title string `json:"title"`
	Body  string `json:"body"`
	// SubjectType and SubjectID say what it is about (booking, upload,
	// payout, account) for a client to link to.
	SubjectType string     `json:"subject_type"`
	SubjectID   string     `json:"subject_id"`
	Read        bool       `json:"read"`
	ReadAt      *time.Time `json:"read_at"`
	CreatedAt   time.Time  `json:"created_at"`
}

// NotificationList is the body of GET /api/v1/notifications: the one list
// shape, plus the caller's unread count (over all pages).
type NotificationList struct {
	ListResponse[NotificationView]
	UnreadCount int `json:"unread_count"`
}

func notificationView(n *store.Notification) NotificationView {
	v := NotificationView{ID: n.ID, Type: n.Type, Title: n.Title, Body: n.Body, SubjectType: n.SubjectType,
		SubjectID: n.SubjectID, Read: n.ReadAt != nil, CreatedAt: n.CreatedAt.UTC()}
	if n.ReadAt != nil {
		t := n.ReadAt.UTC()
		v.ReadAt = &t
	}
	return v
}

// listNotifications lists the caller's own notifications, newest first,
// paginated, with the unread count; ?unread=true lists only unread ones.
// Nobody sees another user's notifications, admins included.
func (s *Server) listNotifications(c *gin.Context) {
	page, err := parsePage(c)
	if err != nil {
		renderError(c, err)
		return
	}
	f := store.NotificationFilter{UserID: principal(c).UserID}
	if v := c.Query("unread"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			renderError(c, invalidParam("unread", "must be true or false"))
			return
		}
		f.UnreadOnly = b
	}
	ctx := c.Request.Context()
	rows, next, err := store.ListNotifications(ctx, s.deps.DB, f, page)
	if err != nil {
		renderError(c, err)
		return
	}
	unread, err := store.UnreadNotifications(ctx, s.deps.DB, f.UserID)
	if err != nil {
		renderError(c, err)
		return
	}
	views := make([]NotificationView, len(rows))
	for i := range rows {
		views[i] = notificationView(&rows[i])
	}
	c.JSON(http.StatusOK, NotificationList{ListResponse: newList(views, page, next), UnreadCount: unread})
}

// readNotification marks one of the caller's notifications read and
// returns it. Marking it again changes nothing (read_at stays the first
// time); another user's notification is 404, as is an unknown one.
func (s *Server) readNotification(c *gin.Context) {
	n, err := store.MarkNotificationRead(c.Request.Context(), s.deps.DB, principal(c).UserID, c.Param("id"))
	if err != nil {
		renderError(c, notFound(err, "notification"))
		return
	}
	c.JSON(http.StatusOK, notificationView(n))
}
