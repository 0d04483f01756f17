// Command probe is the network client in wharf's test image: HTTP and
// HTTPS requests (verifying a given CA), raw TCP and UDP exchanges, and
// name lookups, each printing what it got so a test can read it. It is
// built static and added to the busybox image as /bin/probe.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/websocket"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/internal/agent/wire"
)

const usage = `usage:
  probe get URL [CA-FILE]       GET (Host from $PROBE_HOST if set); prints the status, X- headers and body
  probe keepalive URL WAIT-FILE GET twice on one connection: WAIT-FILE.ready after the first, the second once WAIT-FILE exists
  probe bench URL N             N GETs on one connection; prints the p50 and p90 latency
  probe download URL            GET, discarding the body; prints its size and MB/s
  probe wsecho PORT             serves WebSocket echo on PORT (any path), and HTTP GET / with "ws echo"
  probe tcp ADDR MESSAGE        sends MESSAGE, prints the reply
  probe udp ADDR MESSAGE        sends a datagram, prints the reply
  probe resolve NAME            prints NAME's addresses
  probe syscall raw|keyctl|ptrace  opens a raw ICMP socket, joins a new session keyring, or attaches
                                to PID 1 with ptrace (and lets go); prints ok or the error

  probe agent SOCKET CMD...     asks the wharf agent at SOCKET to run CMD; prints its reply
  probe impostor SOCKET         replaces SOCKET with a listener of its own, prints "listening", then
                                "request" and what came for each connection that sent one`

func main() {
	if len(os.Args) < 3 {
		fail(usage)
	}
	var err error
	switch arg := os.Args[2]; os.Args[1] {
	case "get":
		ca := ""
		if len(os.Args) > 3 {
			ca = os.Args[3]
		}
		err = get(arg, ca)
	case "keepalive":
		if len(os.Args) < 4 {
			fail(usage)
		}
		err = keepalive(arg, os.Args[3])
	case "bench":
		n := 0
		if len(os.Args) > 3 {
			n, _ = strconv.Atoi(os.Args[3])
		}
		err = bench(arg, max(n, 1))
	case "download":
		err = download(arg)
	case "wsecho":
		err = wsEcho(arg)
	case "tcp", "udp":
		if len(os.Args) < 4 {
			fail(usage)
		}
		err = exchange(os.Args[1], arg, os.Args[3])
	case "agent":
		err = driveAgent(arg, os.Args[3:])
	case "impostor":
		err = impostor(arg)
	case "resolve":
		var addrs []string
		if addrs, err = net.LookupHost(arg); err == nil {
			fmt.Println(strings.Join(addrs, " "))
		}
	case "syscall":
		err = trySyscall(arg)
	default:
		fail(usage)
	}
	if err != nil {
		fail("error: " + err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(1)
}

func client(caFile string) (*http.Client, error) {
	tr := &http.Transport{Proxy: nil}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}, nil
}

func printResponse(resp *http.Response) error {
	defer resp.Body.Close()
	fmt.Printf("status=%d\n", resp.StatusCode)
	for name, v := range resp.Header {
		if strings.HasPrefix(name, "X-") {
			fmt.Printf("%s: %s\n", name, strings.Join(v, ","))
		}
	}
	_, err := io.Copy(os.Stdout, resp.Body)
	fmt.Println()
	return err
}

func get(url, caFile string) error {
	c, err := client(caFile)
	if err != nil {
		return err
	}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return err
	}
	req.Host = os.Getenv("PROBE_HOST")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	return printResponse(resp)
}

// keepalive sends two requests over one kept-alive connection and says
// whether the second reused it.
func keepalive(url, waitFile string) error {
	c, _ := client("")
	for i := range 2 {
		if i == 1 {
			for {
				if _, err := os.Stat(waitFile); err == nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		var reused bool
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
		})
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		fmt.Printf("request %d reused=%v\n", i+1, reused)
		if err := printResponse(resp); err != nil {
			return err
		}
		if i == 0 {
			os.WriteFile(waitFile+".ready", nil, 0o644)
		}
	}
	return nil
}

func exchange(network, addr, msg string) error {
	conn, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(conn, msg+"\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	fmt.Print(line)
	return nil
}

// bench times n sequential GETs on one kept-alive connection.
func bench(url string, n int) error {
	c, _ := client("")
	var took []time.Duration
	for range n {
		start := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	fmt.Printf("p50_us=%d p90_us=%d\n", took[n/2].Microseconds(), took[n*9/10].Microseconds())
	return nil
}

// download reads a response body to the end and reports the rate.
func download(url string) error {
	c, _ := client("")
	c.Timeout = 5 * time.Minute
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return err
	}
	d := time.Since(start)
	fmt.Printf("bytes=%d seconds=%.3f mbps=%.1f\n", n, d.Seconds(), float64(n)/1e6/d.Seconds())
	return nil
}

// wsEcho serves a WebSocket that sends back every message it gets,
// prefixed with "echo: ".
func wsEcho(port string) error {
	echo := websocket.Handler(func(c *websocket.Conn) {
		for {
			var msg string
			if err := websocket.Message.Receive(c, &msg); err != nil {
				return
			}
			if err := websocket.Message.Send(c, "echo: "+msg); err != nil {
				return
			}
		}
	})
	return http.ListenAndServe(":"+port, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			io.WriteString(w, "ws echo")
			return
		}
		echo.ServeHTTP(w, r)
	}))
}

// trySyscall makes a call a sandboxed container should be refused: a raw
// socket (needs CAP_NET_RAW), keyctl (blocked by the seccomp profile) or
// ptrace of PID 1 (wharf-init, which is not dumpable).
func trySyscall(name string) error {
	switch name {
	case "raw":
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		unix.Close(fd)
	case "keyctl":
		if _, err := unix.KeyctlJoinSessionKeyring("wharf-probe"); err != nil {
			return fmt.Errorf("keyctl: %w", err)
		}
	case "ptrace":
		// PTRACE_SEIZE takes the access check of PTRACE_ATTACH without
		// stopping the process; the probe lets go of it at once.
		if err := unix.PtraceSeize(1); err != nil {
			return fmt.Errorf("ptrace PID 1: %w", err)
		}
		unix.PtraceDetach(1)
	default:
		fail(usage)
	}
	fmt.Println("ok")
	return nil
}

// impostor listens in the agent's place at socket (removed first) and
// prints each request a caller sends before it hangs up.
func impostor(socket string) error {
	os.Remove(socket)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Net: "unix", Name: socket})
	if err != nil {
		return err
	}
	fmt.Println("listening")
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return err
		}
		var req wire.Request
		if _, err := wire.Receive(c, &req); err == nil {
			b, _ := json.Marshal(req)
			fmt.Printf("request %s\n", b)
		}
		c.Close()
	}
}

// driveAgent asks the agent listening at socket to run cmd, as wharf
// would, and prints the agent's reply.
func driveAgent(socket string, cmd []string) error {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Net: "unix", Name: socket})
	if err != nil {
		return err
	}
	defer c.Close()
	// An agent that refuses the caller answers and hangs up at once, so
	// the request may not go through; its answer is there to read.
	sendErr := wire.Send(c, wire.Request{Exec: &wire.Exec{Args: cmd, Stdin: -1, Stdout: -1, Stderr: -1}})
	var r wire.Reply
	if _, err := wire.Receive(c, &r); err != nil {
		return errors.Join(sendErr, err)
	}
	fmt.Printf("started=%v error=%s\n", r.Started, r.Error)
	return nil
}
