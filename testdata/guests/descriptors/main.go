// Command descriptors is a guest for the engines' descriptor tests: it uses
// only WASI. It reads commands from descriptor 3 in one goroutine while
// another sleeps, so both must make progress through Go's netpoller:
//
//	"echo X": writes "X" to stdout
//	"sleep":  writes "slept" after 20ms of time.Sleep, without blocking reads
//	"spin":   computes forever without calling the host
//	"exit":   returns from main
//	"poll N": calls poll_oneoff directly with N subscriptions (one real
//	          one in memory) and writes "poll N errno E"
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

//go:wasmimport wasi_snapshot_preview1 poll_oneoff
func rawPollOneoff(in, out unsafe.Pointer, n uint32, nOut unsafe.Pointer) uint32

// pollN asks poll_oneoff to read n subscriptions from a buffer that holds
// one clock subscription due at once.
func pollN(n uint32) uint32 {
	var sub [48]byte // kind 0 (clock), timeout 0: due at once
	var ev [32]byte
	var nOut uint32
	return rawPollOneoff(unsafe.Pointer(&sub[0]), unsafe.Pointer(&ev[0]), n, unsafe.Pointer(&nOut))
}

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
		case "poll":
			n, _ := strconv.ParseUint(arg, 10, 32)
			fmt.Printf("poll %d errno %d\n", n, pollN(uint32(n)))
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
