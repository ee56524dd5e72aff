// smux_peer is the Go side of smolmux's interop tests (testsuite/tests/smux_interop.rs): a
// peer built on the real xtaci/smux, as Debian packages it (1.5.16), that mirrors
// examples/mux_peer.rs: the same byte pattern, the same `ok ...` line.
//
// Build it offline, in GOPATH mode:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o smux_peer .
//
// Modes:
//
//	smux_peer -mode serve -listen ADDR [options]   echo every stream until EOF, then close it
//	smux_peer -mode client -connect ADDR [options] open -streams streams at once, write -bytes
//	                                               on each while reading them back, check them
//
// smux 1.5.16 has no CloseWrite: Stream.Close sends FIN (an EOF mark for the peer) and forgets
// the stream, so that nothing more can be read on it. A Go client therefore closes a stream
// only once it has read the whole echo; its -send-then-close mode is the closest to a
// half-close it has (write, FIN, read nothing more).
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/xtaci/smux"
)

// patternByte is byte i of every stream, as in examples/mux_peer.rs.
func patternByte(i int64) byte { return byte((i%251*31 + 7) % 251) }

type options struct {
	mode, listen, connect     string
	version                   int
	keepaliveInterval         time.Duration
	keepaliveTimeout          time.Duration
	streams                   int
	bytes                     int64
	writeSize                 int
	idle                      time.Duration
	replyAfterEOF             bool
	closeSessionOnData        bool
	closeSession, sendThenFIN bool
}

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "", "serve or client")
	flag.StringVar(&o.listen, "listen", "127.0.0.1:0", "serve: HOST:PORT to listen on (port 0: any free port)")
	flag.StringVar(&o.connect, "connect", "", "client: HOST:PORT to dial")
	flag.IntVar(&o.version, "version", 1, "smux protocol version, 1 or 2")
	flag.DurationVar(&o.keepaliveInterval, "keepalive-interval", 10*time.Second, "NOP interval")
	flag.DurationVar(&o.keepaliveTimeout, "keepalive-timeout", 30*time.Second, "close the session when nothing arrived for this long")
	flag.IntVar(&o.streams, "streams", 1, "client: streams to open at once")
	flag.Int64Var(&o.bytes, "bytes", 1000000, "client: bytes to send (and expect back) on each stream")
	flag.IntVar(&o.writeSize, "write-size", 32768, "bytes per Write call (the echo's read buffer too)")
	flag.DurationVar(&o.idle, "idle", 0, "client: wait this long after connecting before opening streams")
	flag.BoolVar(&o.replyAfterEOF, "reply-after-eof", false, "serve: read each stream to EOF before writing the echo back")
	flag.BoolVar(&o.closeSessionOnData, "close-session-on-data", false, "serve: close the whole session when the first bytes arrive")
	flag.BoolVar(&o.closeSession, "close-session", false, "client: write -bytes on each stream, then close the session without closing the streams")
	flag.BoolVar(&o.sendThenFIN, "send-then-close", false, "client: on each stream write -bytes, then Close (FIN) without reading; then check one echo stream")
	flag.Parse()

	config := smux.DefaultConfig()
	config.Version = o.version
	config.KeepAliveInterval = o.keepaliveInterval
	config.KeepAliveTimeout = o.keepaliveTimeout
	if err := smux.VerifyConfig(config); err != nil {
		fmt.Fprintln(os.Stderr, "smux_peer: config:", err)
		os.Exit(2)
	}
	switch o.mode {
	case "serve":
		serve(&o, config)
	case "client":
		start := time.Now()
		if err := client(&o, config); err != nil {
			fmt.Println("FAIL", err)
			os.Exit(1)
		}
		secs := time.Since(start).Seconds()
		fmt.Printf("ok streams=%d bytes=%d secs=%.3f MBps=%.1f\n", o.streams, o.bytes, secs,
			float64(o.streams)*float64(o.bytes)/secs/1e6)
	default:
		fmt.Fprintln(os.Stderr, "smux_peer: -mode must be serve or client")
		os.Exit(2)
	}
}

// serve prints `listening on ADDR`, then one line per finished stream and per ended session.
func serve(o *options, config *smux.Config) {
	listener, err := net.Listen("tcp", o.listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "smux_peer: listening on %s: %v\n", o.listen, err)
		os.Exit(1)
	}
	fmt.Println("listening on", listener.Addr())
	var out sync.Mutex
	say := func(format string, args ...interface{}) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	for {
		conn, err := listener.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "smux_peer: accept:", err)
			os.Exit(1)
		}
		session, err := smux.Server(conn, config)
		if err != nil {
			fmt.Fprintln(os.Stderr, "smux_peer:", err)
			os.Exit(1)
		}
		go func() {
			for {
				stream, err := session.AcceptStream()
				if err != nil {
					say("session ended: %v", err)
					return
				}
				go func() {
					n, err := echo(o, session, stream)
					if err != nil {
						say("stream %d: %v after %d bytes", stream.ID(), err, n)
					} else {
						say("stream %d: echoed %d bytes", stream.ID(), n)
					}
				}()
			}
		}()
	}
}

// echo copies the stream back until EOF (or, with -reply-after-eof, reads it all first), then
// closes it.
func echo(o *options, session *smux.Session, stream *smux.Stream) (int64, error) {
	defer stream.Close()
	buf := make([]byte, o.writeSize)
	var kept []byte
	var total int64
	for {
		n, err := stream.Read(buf)
		if n > 0 && o.closeSessionOnData {
			session.Close()
			return total, fmt.Errorf("closed the session on the first data")
		}
		if n > 0 {
			total += int64(n)
			if o.replyAfterEOF {
				kept = append(kept, buf[:n]...)
			} else if err := writeAll(stream, buf[:n], o.writeSize); err != nil {
				return total, err
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return total, err
		}
	}
	return total, writeAll(stream, kept, o.writeSize)
}

// writeAll writes b in Write calls of at most size bytes.
func writeAll(w io.Writer, b []byte, size int) error {
	for len(b) > 0 {
		n := len(b)
		if n > size {
			n = size
		}
		if _, err := w.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func client(o *options, config *smux.Config) error {
	conn, err := net.Dial("tcp", o.connect)
	if err != nil {
		return fmt.Errorf("dialing %s: %v", o.connect, err)
	}
	session, err := smux.Client(conn, config)
	if err != nil {
		return err
	}
	defer session.Close()
	time.Sleep(o.idle)
	streams := make([]*smux.Stream, o.streams)
	for i := range streams {
		if streams[i], err = session.OpenStream(); err != nil {
			return fmt.Errorf("opening stream #%d: %v", i, err)
		}
	}
	errs := make(chan error, o.streams)
	for _, stream := range streams {
		go func(stream *smux.Stream) {
			switch {
			case o.closeSession:
				errs <- send(o, stream)
			case o.sendThenFIN:
				err := send(o, stream)
				if err == nil {
					err = stream.Close()
				}
				errs <- err
			default:
				errs <- exchange(o, stream)
			}
		}(stream)
	}
	for range streams {
		if err := <-errs; err != nil {
			return err
		}
	}
	switch {
	case o.closeSession:
		return session.Close()
	case o.sendThenFIN:
		// The session must still work after the peer wrote to streams we forgot.
		stream, err := session.OpenStream()
		if err != nil {
			return fmt.Errorf("opening the stream after the FINs: %v", err)
		}
		return exchange(o, stream)
	}
	return nil
}

// send writes -bytes pattern bytes on the stream.
func send(o *options, stream *smux.Stream) error {
	buf := make([]byte, o.writeSize)
	for sent := int64(0); sent < o.bytes; {
		n := int64(len(buf))
		if n > o.bytes-sent {
			n = o.bytes - sent
		}
		for k := int64(0); k < n; k++ {
			buf[k] = patternByte(sent + k)
		}
		if _, err := stream.Write(buf[:n]); err != nil {
			return fmt.Errorf("stream %d: writing at byte %d: %v", stream.ID(), sent, err)
		}
		sent += n
	}
	return nil
}

// exchange writes the pattern while reading it back and checking it, then closes the stream
// once the whole echo has come (there is no half-close in smux 1.5.16).
func exchange(o *options, stream *smux.Stream) error {
	sent := make(chan error, 1)
	go func() { sent <- send(o, stream) }()
	buf := make([]byte, 65536)
	var received int64
	for received < o.bytes {
		n, err := stream.Read(buf)
		for k := 0; k < n; k++ {
			at := received + int64(k)
			if at >= o.bytes {
				return fmt.Errorf("stream %d: the echo is longer than the %d bytes sent", stream.ID(), o.bytes)
			}
			if buf[k] != patternByte(at) {
				return fmt.Errorf("stream %d: byte %d of the echo is %d, expected %d", stream.ID(), at, buf[k], patternByte(at))
			}
		}
		received += int64(n)
		if err != nil {
			return fmt.Errorf("stream %d: reading after %d of %d bytes: %v", stream.ID(), received, o.bytes, err)
		}
	}
	if err := <-sent; err != nil {
		return err
	}
	return stream.Close()
}
