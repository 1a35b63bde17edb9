// The reference program for the Go packs' offset tables. It links every function those packs
// probe, so `swift package generate-offset-tables` can build it with each Go toolchain and record
// the DWARF facts (argument registers, field offsets, type checks) that stripped binaries lack.
// Adding a pack for another Go library: use that library here too, then regenerate.
//
// Building it is the point; run without arguments it exits at once.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/gorilla/mux"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	if len(os.Args) < 2 {
		return
	}
	// go/net-http server, go/gorilla-mux and go/net-http client, from a started goroutine (go/runtime).
	router := mux.NewRouter()
	router.HandleFunc("/items/{id}", func(w http.ResponseWriter, r *http.Request) {
		done := make(chan error)
		go func() {
			response, err := http.Get("http://" + r.Host + "/")
			if err == nil {
				response.Body.Close()
			}
			done <- err
		}()
		fmt.Fprintln(w, <-done)
	})
	// go/net-http server-hijacked.
	router.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		if connection, _, err := w.(http.Hijacker).Hijack(); err == nil {
			connection.Close()
		}
	})
	go http.ListenAndServe(os.Args[1], router)

	// go/grpc server and unary client.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	server := grpc.NewServer()
	healthpb.RegisterHealthServer(server, health.NewServer())
	go server.Serve(listener)
	connection, err := grpc.Dial(listener.Addr().String(), grpc.WithInsecure())
	if err != nil {
		panic(err)
	}
	client := healthpb.NewHealthClient(connection)
	reply, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{})
	fmt.Println(reply, err)
	// go/grpc streaming client.
	if stream, err := client.Watch(context.Background(), &healthpb.HealthCheckRequest{}); err == nil {
		fmt.Println(stream.Recv())
	}
}
