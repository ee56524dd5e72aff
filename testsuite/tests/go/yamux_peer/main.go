// yamux_peer is the Go side of smolmux's yamux interop tests (testsuite/tests/yamux_interop.rs):
// a peer built on the real hashicorp/yamux, as Debian packages it (0.0+git20190923.df201c7),
// that mirrors examples/mux_peer.rs and tests/go/smux_peer: the same byte pattern, the same
// `ok ...` line.
//
// Build it offline, in GOPATH mode:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o yamux_peer .
//
// Modes:
//
//	yamux_peer -mode serve -listen ADDR [options]   echo every stream until EOF, then close it
//	yamux_peer -mode client -connect ADDR [options] open -streams streams at once, write -bytes
//	                                                on each while reading them back, check them
//
// This yamux has no way to reset a stream: it sends RST only for a SYN it refuses (its accept
// backlog of -accept-backlog streams is full, or it sent GoAway). Stream.Close sends FIN, and
// afterwards Read returns EOF as soon as the buffer is empty, so a Go client closes a stream
// only once it has read the whole echo; -send-then-close is the closest it has to a half-close.
package main

import (
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// patternByte is byte i of every stream, as in examples/mux_peer.rs.
func patternByte(i int64) byte { return byte((i%251*31 + 7) % 251) }

type options struct {
	mode, listen, connect string
	keepaliveInterval     time.Duration
	writeTimeout          time.Duration
	window                uint
	acceptBacklog         int
	streams               int
	bytes                 int64
	writeSize             int
	idle                  time.Duration
	holdAccept            time.Duration
	goAwayAfter           time.Duration
	replyAfterEOF         bool
	closeSession          bool
	sendThenFIN           bool
	openThenClose         bool
	quiet                 bool
}

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "", "serve or client")
	flag.StringVar(&o.listen, "listen", "127.0.0.1:0", "serve: HOST:PORT to listen on (port 0: any free port)")
	flag.StringVar(&o.connect, "connect", "", "client: HOST:PORT to dial")
	flag.DurationVar(&o.keepaliveInterval, "keepalive-interval", 0, "Ping interval (0: no keepalive)")
	flag.DurationVar(&o.writeTimeout, "write-timeout", 10*time.Second, "ConnectionWriteTimeout: also how long a keepalive Ping waits for its reply")
	flag.UintVar(&o.window, "window", 256*1024, "MaxStreamWindowSize: the receive window of each stream, in bytes")
	flag.IntVar(&o.acceptBacklog, "accept-backlog", 256, "AcceptBacklog: streams waiting for accept; the next SYN gets RST (also caps our un-ACKed opens)")
	flag.IntVar(&o.streams, "streams", 1, "client: streams to open at once")
	flag.Int64Var(&o.bytes, "bytes", 1000000, "client: bytes to send (and expect back) on each stream")
	flag.IntVar(&o.writeSize, "write-size", 32768, "bytes per Write call (the echo's read buffer too); a 16 MiB write goes out as frames as large as the peer's window")
	flag.DurationVar(&o.idle, "idle", 0, "client: wait this long after connecting before opening streams")
	flag.DurationVar(&o.holdAccept, "hold-accept", 0, "serve: wait this long after the session starts before accepting streams")
	flag.DurationVar(&o.goAwayAfter, "goaway-after", 0, "send GoAway(0) this long after the session starts (0: never); existing streams go on")
	flag.BoolVar(&o.replyAfterEOF, "reply-after-eof", false, "serve: read each stream to EOF before writing the echo back")
	flag.BoolVar(&o.closeSession, "close-session", false, "client: write -bytes on each stream, then close the session without closing the streams")
	flag.BoolVar(&o.sendThenFIN, "send-then-close", false, "client: on each stream write -bytes, then Close (FIN) without reading; then check one echo stream")
	flag.BoolVar(&o.openThenClose, "open-then-close", false, "client: open each stream and Close it without data; wait until the peer's FINs have ended them all, then check one echo stream")
	flag.BoolVar(&o.quiet, "quiet", false, "serve: no line per echoed stream (errors are still printed)")
	flag.Parse()

	config := yamux.DefaultConfig()
	config.EnableKeepAlive = o.keepaliveInterval > 0
	if config.EnableKeepAlive {
		config.KeepAliveInterval = o.keepaliveInterval
	}
	config.ConnectionWriteTimeout = o.writeTimeout
	config.MaxStreamWindowSize = uint32(o.window)
	config.AcceptBacklog = o.acceptBacklog
	config.LogOutput = os.Stderr
	if err := yamux.VerifyConfig(config); err != nil {
		fmt.Fprintln(os.Stderr, "yamux_peer: config:", err)
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
		fmt.Fprintln(os.Stderr, "yamux_peer: -mode must be serve or client")
		os.Exit(2)
	}
}

// goAwayLater sends GoAway(0) after -goaway-after, and says so.
func goAwayLater(o *options, session *yamux.Session, say func(string, ...interface{})) {
	if o.goAwayAfter <= 0 {
		return
	}
	go func() {
		time.Sleep(o.goAwayAfter)
		if err := session.GoAway(); err != nil {
			say("goaway failed: %v", err)
		} else {
			say("sent goaway")
		}
	}()
}

// serve prints `listening on ADDR`, then one line per finished stream and per ended session.
func serve(o *options, config *yamux.Config) {
	listener, err := net.Listen("tcp", o.listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "yamux_peer: listening on %s: %v\n", o.listen, err)
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
			fmt.Fprintln(os.Stderr, "yamux_peer: accept:", err)
			os.Exit(1)
		}
		session, err := yamux.Server(conn, config)
		if err != nil {
			fmt.Fprintln(os.Stderr, "yamux_peer:", err)
			os.Exit(1)
		}
		goAwayLater(o, session, say)
		go func() {
			time.Sleep(o.holdAccept)
			for {
				stream, err := session.AcceptStream()
				if err != nil {
					say("session ended: %v", err)
					return
				}
				go func() {
					n, err := echo(o, stream)
					if err != nil {
						say("stream %d: %v after %d bytes", stream.StreamID(), err, n)
					} else if !o.quiet {
						say("stream %d: echoed %d bytes", stream.StreamID(), n)
					}
				}()
			}
		}()
	}
}

// echo copies the stream back until EOF (or, with -reply-after-eof, reads it all first), then
// closes it.
func echo(o *options, stream *yamux.Stream) (int64, error) {
	defer stream.Close()
	buf := make([]byte, o.writeSize)
	var kept []byte
	var total int64
	for {
		n, err := stream.Read(buf)
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

func client(o *options, config *yamux.Config) error {
	conn, err := net.Dial("tcp", o.connect)
	if err != nil {
		return fmt.Errorf("dialing %s: %v", o.connect, err)
	}
	session, err := yamux.Client(conn, config)
	if err != nil {
		return err
	}
	defer session.Close()
	goAwayLater(o, session, func(format string, args ...interface{}) {
		fmt.Printf(format+"\n", args...)
	})
	time.Sleep(o.idle)
	// Opened one by one, as an application would: yamux blocks an open while -accept-backlog
	// of its opens are un-ACKed, so 600 at once pass only if the peer ACKs what it accepts.
	streams := make([]*yamux.Stream, o.streams)
	for i := range streams {
		if streams[i], err = session.OpenStream(); err != nil {
			return fmt.Errorf("opening stream #%d: %v", i, err)
		}
	}
	errs := make(chan error, o.streams)
	for _, stream := range streams {
		go func(stream *yamux.Stream) {
			switch {
			case o.closeSession:
				errs <- send(o, stream)
			case o.sendThenFIN:
				err := send(o, stream)
				if err == nil {
					err = stream.Close()
				}
				errs <- err
			case o.openThenClose:
				errs <- stream.Close()
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
	case o.openThenClose:
		// yamux forgets a stream once both FINs have passed: the peer's FINs must come.
		deadline := time.Now().Add(10 * time.Second)
		for session.NumStreams() > 0 {
			if time.Now().After(deadline) {
				return fmt.Errorf("%d of %d streams closed without data never got the peer's FIN", session.NumStreams(), o.streams)
			}
			time.Sleep(10 * time.Millisecond)
		}
		fallthrough
	case o.sendThenFIN:
		// The session must still work afterwards.
		stream, err := session.OpenStream()
		if err != nil {
			return fmt.Errorf("opening the stream afterwards: %v", err)
		}
		return exchange(o, stream)
	}
	return nil
}

// send writes -bytes pattern bytes on the stream.
func send(o *options, stream *yamux.Stream) error {
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
			return fmt.Errorf("stream %d: writing at byte %d: %v", stream.StreamID(), sent, err)
		}
		sent += n
	}
	return nil
}

// exchange writes the pattern while reading it back and checking it, then closes the stream
// once the whole echo has come (Read after our own Close would end at the buffer's end).
func exchange(o *options, stream *yamux.Stream) error {
	sent := make(chan error, 1)
	go func() { sent <- send(o, stream) }()
	buf := make([]byte, 65536)
	var received int64
	for received < o.bytes {
		n, err := stream.Read(buf)
		for k := 0; k < n; k++ {
			at := received + int64(k)
			if at >= o.bytes {
				return fmt.Errorf("stream %d: the echo is longer than the %d bytes sent", stream.StreamID(), o.bytes)
			}
			if buf[k] != patternByte(at) {
				return fmt.Errorf("stream %d: byte %d of the echo is %d, expected %d", stream.StreamID(), at, buf[k], patternByte(at))
			}
		}
		received += int64(n)
		if err != nil {
			return fmt.Errorf("stream %d: reading after %d of %d bytes: %v", stream.StreamID(), received, o.bytes, err)
		}
	}
	if err := <-sent; err != nil {
		return err
	}
	// Nothing more may come: the echo ends where the pattern does.
	stream.Close()
	if extra, _ := ioutil.ReadAll(stream); len(extra) > 0 {
		return fmt.Errorf("stream %d: %d bytes after the echo", stream.StreamID(), len(extra))
	}
	return nil
}
