// A small net/http server that Sonde traces in the demo and the end-to-end tests.
// It has no tracing code of its own: every span comes from Sonde's probes.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	portFile := flag.String("port-file", "", "write the chosen port here once listening")
	certificate := flag.String("tls-cert", "", "serve HTTPS (and so HTTP/2) with this certificate")
	key := flag.String("tls-key", "", "the private key of -tls-cert")
	listenAfter := flag.Duration("listen-after", 0, "wait this long before listening (a service that starts slowly)")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello") // status left implicit: Go sends 200
	})
	mux.HandleFunc("/created", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "failure on purpose", http.StatusInternalServerError)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		w.WriteHeader(http.StatusAccepted)
	})
	// An outgoing request made while serving: traced as a CLIENT span, child of
	// this request's SERVER span. ?to=host:port sends it elsewhere (e.g. to a
	// closed port, to see a failed client span).
	mux.HandleFunc("/proxy", func(w http.ResponseWriter, r *http.Request) {
		proxy(w, r, "proxy")
	})
	// The same, but the call is made from a goroutine the handler starts.
	mux.HandleFunc("/proxy-async", func(w http.ResponseWriter, r *http.Request) {
		done := make(chan struct{})
		go func() {
			proxy(w, r, "proxy-async")
			close(done)
		}()
		<-done
	})
	// A handler that gives up on the request the way httputil.ReverseProxy does
	// when its client goes away: net/http recovers the panic and closes the
	// connection, so ServeHTTP never returns.
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	})
	// An outgoing request that panics inside the client's round trip (its
	// Proxy function fails) and is recovered by the handler, then one that
	// succeeds: the second is still a child of this request's span.
	mux.HandleFunc("/proxy-recovered", func(w http.ResponseWriter, r *http.Request) {
		func() {
			defer func() { recover() }()
			panicking := &http.Client{Transport: &http.Transport{Proxy: func(*http.Request) (*url.URL, error) {
				panic("proxy lookup failed")
			}}}
			panicking.Get("http://" + r.Host + "/hello?via=never")
		}()
		proxy(w, r, "proxy-recovered")
	})
	// Outgoing requests nested in each other on the handler's goroutine: each
	// request's proxy lookup (as a PAC or discovery client would) first sends
	// the next, ?depth=N times. With ?panic=1 the innermost lookup panics and
	// the request above it recovers: the two innermost calls never return.
	mux.HandleFunc("/nested", func(w http.ResponseWriter, r *http.Request) {
		depth, err := strconv.Atoi(r.URL.Query().Get("depth"))
		if err != nil || depth < 0 || depth > 64 {
			http.Error(w, "depth: a number from 0 to 64", http.StatusBadRequest)
			return
		}
		nestedGet(r.Host, depth, r.URL.Query().Get("panic") == "1")
		fmt.Fprintln(w, "nested", depth)
	})
	// A handler that takes the connection over (as a WebSocket upgrade does)
	// and writes its own response: net/http never finishes this request.
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		connection, buffered, err := w.(http.Hijacker).Hijack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer connection.Close()
		buffered.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		buffered.Flush()
	})
	// The traceparent headers this request arrived with, space-separated: what
	// a downstream service sees of trace context propagation.
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, strings.Join(r.Header.Values("Traceparent"), " "))
	})
	// Relays /headers of this server, answering with its body: what the
	// request this server sent carried. ?traceparent= sets the outgoing
	// request's own traceparent, as an instrumented application would.
	mux.HandleFunc("/relay", func(w http.ResponseWriter, r *http.Request) {
		request, err := http.NewRequest("GET", "http://"+r.Host+"/headers", nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if own := r.URL.Query().Get("traceparent"); own != "" {
			request.Header.Set("Traceparent", own)
		}
		response, err := http.DefaultClient.Do(request)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer response.Body.Close()
		io.Copy(w, response.Body)
	})
	// Every other path gets ServeMux's 404.

	time.Sleep(*listenAfter)
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	port := listener.Addr().(*net.TCPAddr).Port
	if *portFile != "" {
		if err := os.WriteFile(*portFile, []byte(strconv.Itoa(port)), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("demo server listening on %s", listener.Addr())
	if *certificate != "" {
		log.Fatal(http.ServeTLS(listener, mux, *certificate, *key))
	}
	log.Fatal(http.Serve(listener, mux))
}

// proxy forwards to /hello on ?to=host:port, or on this server, and answers with its status.
func proxy(w http.ResponseWriter, r *http.Request, via string) {
	target := r.URL.Query().Get("to")
	if target == "" {
		target = r.Host
	}
	response, err := http.Get("http://" + target + "/hello?via=" + via)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	response.Body.Close()
	w.WriteHeader(response.StatusCode)
}

// nestedGet sends GET /hello?level=LEVEL to host; for level > 0 its proxy lookup
// first calls nestedGet for level-1. With panicking, level 0's lookup panics and
// level 1 recovers.
func nestedGet(host string, level int, panicking bool) {
	if panicking && level == 1 {
		defer func() { recover() }()
	}
	transport := &http.Transport{DisableKeepAlives: true, Proxy: func(*http.Request) (*url.URL, error) {
		if level > 0 {
			nestedGet(host, level-1, panicking)
		} else if panicking {
			panic("proxy lookup failed")
		}
		return nil, nil
	}}
	response, err := (&http.Client{Transport: transport}).Get(fmt.Sprintf("http://%s/hello?level=%d", host, level))
	if err == nil {
		io.Copy(io.Discard, response.Body)
		response.Body.Close()
	}
}
