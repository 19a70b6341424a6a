// Package redact hides the passwords of connection strings before they
// reach a log line or an error.
package redact

import "strings"

// Mask is what a password is replaced with (as net/url's URL.Redacted).
const Mask = "xxxxx"

// URL returns raw with the password of its userinfo replaced by Mask; the
// user name, host, path and query stay as they are.
//
// It does not rely on raw parsing: a password with an unencoded reserved
// character ("/", "#", "?", "@") makes net/url misread the URL, and the
// URLs that do not parse are the ones that end up in error messages. The
// userinfo is taken to end at the last "@", so an "@" later in the URL
// hides more than the password, never less.
func URL(raw string) string {
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 {
		start = i + len("://")
	}
	at := strings.LastIndex(raw[start:], "@")
	if at < 0 {
		return raw // no userinfo
	}
	userinfo := raw[start : start+at]
	colon := strings.Index(userinfo, ":")
	if colon < 0 {
		return raw // a user name without a password
	}
	return raw[:start] + userinfo[:colon+1] + Mask + raw[start+at:]
}
