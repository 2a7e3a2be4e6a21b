package labprobe

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labforge/labforge/internal/lab"
)

// SanitizeMessage makes a message from a lab safe to put into a condition, an event or a
// log line: invalid UTF-8 (and U+FFFD, which stands for it) and non-printable characters (control characters, escape
// sequences, bidirectional overrides, zero-width characters) are dropped, every run of
// whitespace becomes one space, and the result is trimmed and cut, on a character
// boundary, to at most lab.MarkerMaxMessageLength bytes.
func SanitizeMessage(s string) string { return sanitize(s, lab.MarkerMaxMessageLength) }

// SanitizeError returns err with its message made safe like SanitizeMessage makes a
// marker message safe: what a lab puts into an error (the names of a certificate it
// presents, bytes of a malformed answer) may hold control characters, terminal escape
// sequences, newlines or kilobytes of text, and the message goes into a condition, an
// event or a log line. errors.Is and errors.As still see err. nil stays nil.
func SanitizeError(err error) error {
	if err == nil {
		return nil
	}
	if _, done := err.(*sanitizedError); done {
		return err
	}
	return &sanitizedError{err: err, msg: SanitizeMessage(err.Error())}
}

// sanitizedError is an error whose message was made safe by SanitizeError.
type sanitizedError struct {
	err error
	msg string
}

func (e *sanitizedError) Error() string { return e.msg }
func (e *sanitizedError) Unwrap() error { return e.err }

func sanitize(s string, maxBytes int) string {
	var b strings.Builder
	b.Grow(min(len(s), maxBytes))
	pendingSpace := false
	for i, w := 0, 0; i < len(s); i += w {
		var r rune
		r, w = utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError:
			// Invalid UTF-8, or the replacement character JSON decoding puts in its
			// place: garbage either way.
			continue
		case unicode.IsSpace(r):
			pendingSpace = b.Len() > 0
			continue
		case !unicode.IsPrint(r):
			continue
		}
		need := utf8.RuneLen(r)
		if pendingSpace {
			need++
		}
		if b.Len()+need > maxBytes {
			break
		}
		if pendingSpace {
			b.WriteByte(' ')
			pendingSpace = false
		}
		b.WriteRune(r)
	}
	return b.String()
}
