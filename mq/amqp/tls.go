package amqp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/internal/redact"
	"github.com/finalbus/final/mq"
)

// Errors of the connection to the broker. The provider's errors never
// carry the URL's password.
var (
	// ErrInvalidURL: the broker URL does not parse, or WithTLS was given
	// with an amqp:// URL. Nothing was sent.
	ErrInvalidURL = errors.New("amqp: invalid broker URL")
	// ErrCertificate: the broker's TLS certificate did not verify against
	// the roots (WithTLS's RootCAs, or the system's); it also wraps
	// mq.ErrUnavailable and the *tls.CertificateVerificationError.
	ErrCertificate = errors.New("amqp: the broker's TLS certificate does not verify")
)

// dial opens one connection, over TLS for an amqps:// URL. Its errors show
// the URL with the password masked: amqp091-go's parse errors quote the
// whole URL, so the URL is parsed here first and those errors are not
// passed on.
func (p *Provider) dial(timeout time.Duration, role string) (*amqp.Connection, error) {
	uri, err := amqp.ParseURI(p.url)
	if err != nil {
		return nil, fmt.Errorf("%w %s: it does not parse (in the user name and password, percent-encode the reserved characters / # ? @ : %%)",
			ErrInvalidURL, redact.URL(p.url))
	}
	cfg := amqp.Config{
		Heartbeat: p.opts.heartbeat,
		Dial:      dialFunc(p.opts.dialer, timeout, role == "publish"),
		Properties: amqp.Table{
			"connection_name": "final." + p.cfg.Service + "." + role,
		},
	}
	if p.opts.tls != nil {
		if uri.Scheme != "amqps" {
			return nil, fmt.Errorf("%w %s: WithTLS needs an amqps:// URL", ErrInvalidURL, redact.URL(p.url))
		}
		// amqp091-go sets ServerName on the config it is given.
		cfg.TLSClientConfig = p.opts.tls.Clone()
	}
	conn, err := amqp.DialConfig(p.url, cfg)
	var verify *tls.CertificateVerificationError
	switch {
	case err == nil:
		return conn, nil
	case errors.As(err, &verify):
		return nil, fmt.Errorf("amqp: dial %s: %w: %w: %w", redact.URL(p.url), mq.ErrUnavailable, ErrCertificate, err)
	default:
		return nil, fmt.Errorf("amqp: dial %s: %w: %w", redact.URL(p.url), mq.ErrUnavailable, err)
	}
}
