package amqp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

// A publish and its delivery go through a TLS-terminating proxy in front of
// the local RabbitMQ, verified against a private CA given with WithTLS.
func TestTLSPublishAndDeliver(t *testing.T) {
	ca := newCA(t, "final test CA")
	proxy := startTLSProxy(t, &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "broker", "127.0.0.1")}})
	cfg := &tls.Config{RootCAs: ca.pool()}
	roundTrip(t, amqp.NewProvider(proxy.url(t), amqp.WithTLS(cfg)))
	require.GreaterOrEqual(t, proxy.handshakes.Load(), int32(2), "the publishing and the consuming connection went through TLS")
	require.Empty(t, cfg.ServerName, "the caller's tls.Config was changed")
}

// A broker that requires a client certificate accepts the one given in
// WithTLS's Certificates, and refuses a client without one.
func TestTLSClientCertificate(t *testing.T) {
	ca := newCA(t, "final test CA")
	proxy := startTLSProxy(t, &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "broker", "127.0.0.1")},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.pool(),
	})
	client := ca.issue(t, "final-client")
	roundTrip(t, amqp.NewProvider(proxy.url(t), amqp.WithTLS(&tls.Config{RootCAs: ca.pool(), Certificates: []tls.Certificate{client}})))

	p := amqp.NewProvider(proxy.url(t), amqp.WithTLS(&tls.Config{RootCAs: ca.pool()}))
	err := p.Init(context.Background(), mq.Config{Service: testenv.Service(t, nil), Logger: quiet()})
	// Under TLS 1.3 the refusal comes after the client's handshake, and
	// amqp091-go reports it as a write on a closed connection.
	require.Error(t, err, "a client without a certificate was let in")
	require.ErrorIs(t, err, mq.ErrUnavailable)
	require.NoError(t, p.Close())
}

// An amqps:// URL works without WithTLS too, with amqp091-go's query
// parameters naming the CA file.
func TestTLSCACertFileInURL(t *testing.T) {
	ca := newCA(t, "final test CA")
	proxy := startTLSProxy(t, &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "broker", "127.0.0.1")}})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o600))
	roundTrip(t, amqp.NewProvider(proxy.url(t)+"?cacertfile="+caFile))
}

// A broker certificate that does not verify fails Init with ErrCertificate,
// and the error says why, without the password.
func TestTLSCertificateThatDoesNotVerify(t *testing.T) {
	ca, other := newCA(t, "final test CA"), newCA(t, "someone else's CA")
	for _, tc := range []struct {
		name string
		cert tls.Certificate
		want string
	}{
		{"unknown authority", other.issue(t, "broker", "127.0.0.1"), "certificate signed by unknown authority"},
		{"other host", ca.issue(t, "broker", "127.0.0.2"), "certificate is valid for 127.0.0.2, not 127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := startTLSProxy(t, &tls.Config{Certificates: []tls.Certificate{tc.cert}})
			url := strings.Replace(proxy.url(t), "guest:guest@", "guest:s3cret-pw@", 1)
			p := amqp.NewProvider(url, amqp.WithTLS(&tls.Config{RootCAs: ca.pool()}))
			err := p.Init(context.Background(), mq.Config{Service: testenv.Service(t, nil), Logger: quiet()})
			require.ErrorIs(t, err, amqp.ErrCertificate)
			require.ErrorIs(t, err, mq.ErrUnavailable)
			var verr *tls.CertificateVerificationError
			require.ErrorAs(t, err, &verr)
			require.ErrorContains(t, err, "does not verify")
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "s3cret-pw")
			require.Zero(t, proxy.handshakes.Load(), "no TLS session was established")
			require.NoError(t, p.Close())
		})
	}
}

// WithTLS with an amqp:// URL is refused rather than sending the
// credentials in the clear.
func TestWithTLSNeedsAmqpsURL(t *testing.T) {
	url := testenv.AMQP(t)
	p := amqp.NewProvider(url, amqp.WithTLS(&tls.Config{}))
	err := p.Init(context.Background(), mq.Config{Service: testenv.Service(t, nil), Logger: quiet()})
	require.ErrorIs(t, err, amqp.ErrInvalidURL)
	require.ErrorContains(t, err, "WithTLS needs an amqps:// URL")
	require.NotErrorIs(t, err, mq.ErrUnavailable, "a configuration error is not worth retrying")
	require.NoError(t, p.Close())
}

// The errors of a failed dial show the URL with its password masked,
// whatever went wrong.
func TestDialErrorsHideThePassword(t *testing.T) {
	url := testenv.AMQP(t)
	host := testenv.Hostport(url)
	const secret = "s3cr/et-pw"
	for _, tc := range []struct {
		name, url string
		is        error
	}{
		// A password with an unencoded reserved character makes the URL
		// unparseable, and amqp091-go quotes an unparseable URL whole.
		{"unparseable", "amqp://guest:" + secret + "@" + host + "/", amqp.ErrInvalidURL},
		{"refused login", "amqp://guest:" + strings.ReplaceAll(secret, "/", "%2F") + "@" + host + "/", mq.ErrUnavailable},
		{"nothing listening", "amqp://guest:" + strings.ReplaceAll(secret, "/", "%2F") + "@127.0.0.1:1/", mq.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := amqp.NewProvider(tc.url)
			err := p.Init(context.Background(), mq.Config{Service: testenv.Service(t, nil), Logger: quiet()})
			t.Logf("%v", err)
			require.ErrorIs(t, err, tc.is)
			require.ErrorContains(t, err, "guest:xxxxx@", "the error names the broker")
			for _, s := range []string{secret, "s3cr", "et-pw", "%2F"} {
				require.NotContains(t, err.Error(), s, "the error carries (part of) the password")
			}
			require.NoError(t, p.Close())
		})
	}
}

// A broker reached over TLS, with a private CA and a client certificate.
func ExampleWithTLS() {
	caPEM, err := os.ReadFile("/etc/final/rabbitmq-ca.pem")
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		log.Fatal("no certificate in rabbitmq-ca.pem")
	}
	client, err := tls.LoadX509KeyPair("/etc/final/client.pem", "/etc/final/client-key.pem")
	if err != nil {
		log.Fatal(err)
	}
	// url.UserPassword percent-encodes what the password needs.
	broker := url.URL{Scheme: "amqps", User: url.UserPassword("orders", os.Getenv("RABBITMQ_PASSWORD")), Host: "rabbit.internal:5671", Path: "/prod"}
	provider := amqp.NewProvider(broker.String(),
		amqp.WithTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{client}, MinVersion: tls.VersionTLS12}))
	_ = provider // final.New("order_svc", db, provider, final.DefaultOptions())
}

// roundTrip publishes a message through p and receives it.
func roundTrip(t *testing.T, p *amqp.Provider) {
	t.Helper()
	svc := testenv.Service(t, nil)
	topic := svc + ".t"
	require.NoError(t, p.Init(context.Background(), mq.Config{Service: svc, Topics: []string{topic}, Prefetch: 4, Logger: quiet()}))
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deliveries, err := p.Consume(ctx)
	require.NoError(t, err)
	m := message.New(topic, []byte("over TLS"))
	publishWait(t, p, m)
	select {
	case d := <-deliveries:
		got, err := d.Message()
		require.NoError(t, err)
		require.Equal(t, m.UUID, got.UUID)
		require.Equal(t, []byte("over TLS"), got.Payload)
		require.NoError(t, d.Ack())
	case <-ctx.Done():
		t.Fatal("no delivery over TLS")
	}
}

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// issue signs a certificate for name, usable by a server for hosts (IP
// addresses or DNS names) and by a client.
func (ca *testCA) issue(t *testing.T, name string, hosts ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsProxy terminates TLS on loopback and forwards the plain bytes to the
// local RabbitMQ. It is closed, and its goroutines waited for, when the
// test ends.
type tlsProxy struct {
	ln         net.Listener
	target     string
	handshakes atomic.Int32 // TLS sessions established

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startTLSProxy(t *testing.T, cfg *tls.Config) *tlsProxy {
	t.Helper()
	target := testenv.Hostport(testenv.AMQP(t))
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	p := &tlsProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// url is the test broker's URL with the amqps scheme and the proxy's address.
func (p *tlsProxy) url(t *testing.T) string {
	u := testenv.AMQP(t)
	u = strings.Replace(u, testenv.Hostport(u), p.ln.Addr().String(), 1)
	return "amqps://" + strings.TrimPrefix(u, "amqp://")
}

func (p *tlsProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go p.serve(c.(*tls.Conn))
	}
}

func (p *tlsProxy) serve(c *tls.Conn) {
	defer p.wg.Done()
	defer p.untrack(c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := c.HandshakeContext(ctx)
	cancel()
	if err != nil {
		return
	}
	p.handshakes.Add(1)
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil || !p.track(up) {
		return
	}
	defer p.untrack(up)
	copied := make(chan struct{})
	go func() { // owned by serve, which waits for it
		defer close(copied)
		_, _ = io.Copy(up, c)
		_ = up.Close()
	}()
	_, _ = io.Copy(c, up)
	_ = c.Close()
	<-copied
}

// track registers c so that close can close it; it closes c and reports
// false once the proxy is closed.
func (p *tlsProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *tlsProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *tlsProxy) close() {
	p.mu.Lock()
	p.closed = true
	_ = p.ln.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
