package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
	"github.com/gin-gonic/gin/binding"
	"github.com/go-playground/validator/v10"

	"github.com/rentalportal/portal"
)

var setupValidatorOnce sync.Once

// setupValidator teaches Gin's validator (go-playground/validator, tag
// "binding") to name fields by their JSON (or query) name in errors, and
// adds the rules our requests use.
func setupValidator() {
	setupValidatorOnce.Do(func() {
		v, ok := binding.Validator.Engine().(*validator.Validate)
		if !ok {
			return
		}
		v.RegisterTagNameFunc(func(f reflect.StructField) string {
			for _, tag := range []string{"json", "form"} {
				name, _, _ := strings.Cut(f.Tag.Get(tag), ",")
				if name == "-" {
					return ""
				}
				if name != "" {
					return name
				}
			}
			return f.Name
		})
		_ = v.RegisterValidation("notblank", func(fl validator.FieldLevel) bool {
			return fl.Field().Kind() != reflect.String || strings.TrimSpace(fl.Field().String()) != ""
		})
	})
}

// bindJSON decodes the request's JSON body into dst and validates it with
// the `binding` tags. Errors, in the one error shape: 415 unless the body is
// application/json; 413 past the body limit; 400 invalid for malformed JSON,
// a value of the wrong type or an unknown field (named in details when
// known); 400 validation_failed with one detail per field that breaks a rule.
func bindJSON(c *gin.Context, dst any) error {
	if ct := c.ContentType(); ct != "application/json" {
		return portal.Errorf(portal.EUNSUPPORTED, "Content-Type must be application/json")
	}
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		if err != nil {
			if e := jsonError(err); portal.ErrorCode(e) == portal.ETOOLARGE {
				return e
			}
		}
		return portal.Errorf(portal.EINVALID, "the body must hold exactly one JSON object")
	}
	return validate(dst)
}

// validate runs the `binding` rules of dst.
func validate(dst any) error {
	setupValidator()
	err := binding.Validator.ValidateStruct(dst)
	if err == nil {
		return nil
	}
	var ve validator.ValidationErrors
	if !errors.As(err, &ve) {
		return portal.WrapError(portal.EINVALID, err, "invalid request")
	}
	details := make([]portal.FieldError, 0, len(ve))
	for _, fe := range ve {
		details = append(details, portal.FieldError{Field: fieldPath(fe), Message: ruleMessage(fe)})
	}
	return &portal.Error{Code: portal.EVALIDATION, Message: "the request has invalid fields", Details: details, Err: err}
}

// fieldPath is the JSON path of a field error without the Go struct name:
// "createListingRequest.photos[0]" → "photos[0]".
func fieldPath(fe validator.FieldError) string {
	ns := fe.Namespace()
	if _, rest, ok := strings.Cut(ns, "."); ok {
		return rest
	}
	return fe.Field()
}

// ruleMessage says in words which rule a field broke.
func ruleMessage(fe validator.FieldError) string {
	p := fe.Param()
	kind := fe.Kind()
	switch fe.Tag() {
	case "required":
		return "is required"
	case "notblank":
		return "must not be blank"
	case "email":
		return "must be a valid email address"
	case "min", "max":
		word := "at least"
		if fe.Tag() == "max" {
			word = "at most"
		}
		switch kind {
		case reflect.String:
			return fmt.Sprintf("must be %s %s characters", word, p)
		case reflect.Slice, reflect.Array, reflect.Map:
			return fmt.Sprintf("must have %s %s items", word, p)
		}
		return fmt.Sprintf("must be %s %s", word, p)
	case "oneof":
		return "must be one of: " + strings.Join(strings.Fields(p), ", ")
	case "datetime":
		if p == "2006-01-02" {
			return "must be a date YYYY-MM-DD"
		}
		return "must be a time in the layout " + p
	case "iso4217":
		return "must be an ISO 4217 currency code in capitals, such as EUR"
	case "unique":
		return "must not repeat an item"
	}
	return fmt.Sprintf("breaks the rule %q", fe.Tag())
}

// jsonError turns a decoding failure into a client-safe *portal.Error.
func jsonError(err error) error {
	var tooLarge *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooLarge):
		return portal.WrapError(portal.ETOOLARGE, err, "request body over %d bytes", tooLarge.Limit)
	case errors.Is(err, io.EOF):
		return portal.WrapError(portal.EINVALID, err, "the request body is empty: send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return portal.WrapError(portal.EINVALID, err, "malformed JSON: the body ends too early")
	case errors.As(err, &syntax):
		return portal.WrapError(portal.EINVALID, err, "malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return portal.WrapError(portal.EINVALID, err, "the body must be a JSON object")
		}
		msg := "must be " + jsonKind(typ.Type)
		return &portal.Error{Code: portal.EINVALID, Message: fmt.Sprintf("field %s %s", typ.Field, msg),
			Details: []portal.FieldError{{Field: typ.Field, Message: msg}}, Err: err}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return &portal.Error{Code: portal.EINVALID, Message: fmt.Sprintf("unknown field %s", name),
			Details: []portal.FieldError{{Field: name, Message: "is not a field of this request"}}, Err: err}
	}
	return portal.WrapError(portal.EINVALID, err, "malformed JSON")
}

// jsonKind names a Go type as a JSON client sees it.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}
