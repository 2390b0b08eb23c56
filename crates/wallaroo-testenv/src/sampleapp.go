// The program inside the sample chart's images and the test node's sandbox (pause) image:
// built here for every platform the images carry, static, so pods really run on a real
// node. It waits for SIGTERM or SIGINT and exits 0. With an argument, it prints it first.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Println(os.Args[1:])
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
