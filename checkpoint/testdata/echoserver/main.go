// Command echoserver is the checkpoint package's test workload: it listens on
// TCP :7000 and answers each line with "<n> <line>", n counting lines per
// connection, so a test can tell that a restored process kept its state.
// It is built with CGO_ENABLED=0 into a rootfs holding only this binary.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// Our stdout is a pipe an agent drains; if that agent restarts, a write
	// must fail with EPIPE instead of killing us.
	signal.Ignore(syscall.SIGPIPE)
	// Before anything is printed: a test may send SIGTERM as soon as it sees
	// the first line.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	addr := ":7000"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "echoserver: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("echoserver listening on %s\n", ln.Addr())

	go func() {
		s := <-sig
		fmt.Printf("echoserver: %v, exiting\n", s)
		os.Exit(0)
	}()

	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintf(os.Stderr, "echoserver: accept: %v\n", err)
			continue
		}
		go serve(c)
	}
}

func serve(c net.Conn) {
	defer c.Close()
	fmt.Printf("echoserver: connection from %s\n", c.RemoteAddr())
	sc := bufio.NewScanner(c)
	n := 0
	for sc.Scan() {
		n++
		if _, err := fmt.Fprintf(c, "%d %s\n", n, sc.Text()); err != nil {
			return
		}
	}
}
