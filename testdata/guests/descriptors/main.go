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
//	"abs C MS": waits in poll_oneoff for clock C (0 realtime, 1 monotonic)
//	          to read MS milliseconds later than now, as an absolute time,
//	          and writes "abs C waited Wms"
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

//go:wasmimport wasi_snapshot_preview1 clock_time_get
func rawClockTimeGet(id uint32, precision uint64, out unsafe.Pointer) uint32

// pollUntil waits in poll_oneoff until clock reads ms later than now,
// given as an absolute time (subclockflags abstime).
func pollUntil(clock uint32, ms uint64) time.Duration {
	var now uint64
	rawClockTimeGet(clock, 1, unsafe.Pointer(&now))
	var sub [48]byte
	*(*uint32)(unsafe.Pointer(&sub[16])) = clock
	*(*uint64)(unsafe.Pointer(&sub[24])) = now + ms*1e6
	*(*uint16)(unsafe.Pointer(&sub[40])) = 1 // abstime
	var ev [32]byte
	var nOut uint32
	start := time.Now()
	rawPollOneoff(unsafe.Pointer(&sub[0]), unsafe.Pointer(&ev[0]), 1, unsafe.Pointer(&nOut))
	return time.Since(start)
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
		case "abs":
			c, ms, _ := strings.Cut(arg, " ")
			clock, _ := strconv.ParseUint(c, 10, 32)
			n, _ := strconv.ParseUint(ms, 10, 64)
			fmt.Printf("abs %d waited %dms\n", clock, pollUntil(uint32(clock), n).Milliseconds())
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
