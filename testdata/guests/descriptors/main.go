// Command descriptors is a guest for the engines' descriptor tests: it uses
// only WASI. It reads commands from descriptor 3 in one goroutine while
// another sleeps, so both must make progress through Go's netpoller:
//
//	"echo X": writes "X" to stdout
//	"sleep":  writes "slept" after 20ms of time.Sleep, without blocking reads
//	"spin":   computes forever without calling the host
//	"exit":   returns from main
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"time"
)

func main() {
	f := os.NewFile(3, "commands")
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		cmd, arg, _ := strings.Cut(lines.Text(), " ")
		switch cmd {
		case "echo":
			fmt.Println(arg)
		case "sleep":
			go func() {
				time.Sleep(20 * time.Millisecond)
				fmt.Println("slept")
			}()
		case "spin":
			spin()
		case "exit":
			return
		}
	}
	fmt.Println("eof", lines.Err())
	select {} // parked forever: the host stops the instance
}

//go:noinline
func spin() {
	for n := 0; ; n++ {
		if n < 0 {
			return
		}
	}
}
