// soak-load: the constant-rate load of scripts/soak.sh. It sends GET requests
// for the given paths in turn at -rate requests per second for -duration,
// over -connections kept-open connections, and prints one line per path:
// "PATH sent ok failed", then "total sent ok failed seconds". A request the
// connections cannot start on time is sent late, never skipped, so every
// request counts. Standard library only (Debian's Go 1.19, GOPATH mode).
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type counts struct{ sent, ok, failed atomic.Int64 }

func main() {
	base := flag.String("url", "", "base URL, e.g. http://127.0.0.1:8080")
	paths := flag.String("paths", "/", "comma-separated paths, requested in turn")
	rate := flag.Int("rate", 1000, "requests per second")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	connections := flag.Int("connections", 32, "concurrent requests at most")
	flag.Parse()

	routes := strings.Split(*paths, ",")
	perRoute := make([]counts, len(routes))
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *connections, MaxConnsPerHost: *connections},
	}
	work := make(chan int, *rate) // route index of each request due
	var workers sync.WaitGroup
	for i := 0; i < *connections; i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for route := range work {
				c := &perRoute[route]
				c.sent.Add(1)
				response, err := client.Get(*base + routes[route])
				if err != nil {
					c.failed.Add(1)
					continue
				}
				io.Copy(io.Discard, response.Body)
				response.Body.Close()
				if response.StatusCode < 500 {
					c.ok.Add(1)
				} else {
					c.failed.Add(1)
				}
			}
		}()
	}

	start := time.Now()
	total := int(duration.Seconds() * float64(*rate))
	interval := time.Second / time.Duration(*rate)
	for i := 0; i < total; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		work <- i % len(routes)
	}
	close(work)
	workers.Wait()
	elapsed := time.Since(start).Seconds()

	var sent, ok, failed int64
	for i, route := range routes {
		c := &perRoute[i]
		fmt.Printf("%s %d %d %d\n", route, c.sent.Load(), c.ok.Load(), c.failed.Load())
		sent += c.sent.Load()
		ok += c.ok.Load()
		failed += c.failed.Load()
	}
	fmt.Printf("total %d %d %d %.1f\n", sent, ok, failed, elapsed)
}
