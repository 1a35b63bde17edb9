// back: the downstream half of Sonde's two-service demo. It serves plain
// net/http (ServeMux) and gRPC (the standard health service) and has no
// tracing code of its own: every span comes from Sonde's probes.
//
//	HTTP  GET /items/<id>   200 + JSON; id 0 → 404; id 500 → 500
//	HTTP  GET /healthz      200 "ok"
//	gRPC  /grpc.health.v1.Health/Check  service "" and "backend" → SERVING,
//	      any other name → status NotFound (health.Server's own behaviour)
//	gRPC  /grpc.health.v1.Health/Watch  server-streaming, stays open until the
//	      client cancels
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	httpListen := flag.String("http-listen", "127.0.0.1:0", "address for the net/http server")
	grpcListen := flag.String("grpc-listen", "127.0.0.1:0", "address for the gRPC server")
	portFile := flag.String("port-file", "", `once listening, write "httpPort grpcPort" here`)
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("/items/", items)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})

	healthServer := health.NewServer() // "" is SERVING from the start
	healthServer.SetServingStatus("backend", healthpb.HealthCheckResponse_SERVING)
	grpcServer := grpc.NewServer()
	healthpb.RegisterHealthServer(grpcServer, healthServer)

	httpListener, err := net.Listen("tcp", *httpListen)
	if err != nil {
		log.Fatal(err)
	}
	grpcListener, err := net.Listen("tcp", *grpcListen)
	if err != nil {
		log.Fatal(err)
	}
	httpPort := httpListener.Addr().(*net.TCPAddr).Port
	grpcPort := grpcListener.Addr().(*net.TCPAddr).Port
	if *portFile != "" {
		content := fmt.Sprintf("%d %d\n", httpPort, grpcPort)
		if err := os.WriteFile(*portFile, []byte(content), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("back: http on %s, grpc on %s", httpListener.Addr(), grpcListener.Addr())

	go func() { log.Fatal(grpcServer.Serve(grpcListener)) }()
	log.Fatal(http.Serve(httpListener, mux))
}

// items answers GET /items/<id>.
func items(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/items/"))
	switch {
	case err != nil || id < 0:
		http.Error(w, "bad item id", http.StatusBadRequest)
	case id == 0:
		http.Error(w, "no item 0", http.StatusNotFound)
	case id == 500:
		http.Error(w, "item 500 fails on purpose", http.StatusInternalServerError)
	default:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"id\":%d,\"name\":\"item-%d\"}\n", id, id)
	}
}
