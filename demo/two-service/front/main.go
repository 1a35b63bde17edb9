// front: the upstream half of Sonde's two-service demo. A gorilla/mux router
// whose handlers call back over HTTP (http.DefaultClient) and gRPC (the
// health service). It has no tracing code of its own: every span comes from
// Sonde's probes. See README.md for the routes and the spans each produces.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

type front struct {
	backHTTP string // base URL, e.g. http://127.0.0.1:8081
	health   healthpb.HealthClient
	// refusing calls the same service through an interceptor that fails every
	// call with a plain error, as auth or rate-limit interceptors do.
	refusing healthpb.HealthClient
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	backHTTP := flag.String("back-http", "127.0.0.1:8081", "back's net/http server: host:port or base URL")
	backGRPC := flag.String("back-grpc", "127.0.0.1:8082", "back's gRPC server: host:port")
	portFile := flag.String("port-file", "", "write the chosen port here once listening")
	flag.Parse()

	base := strings.TrimRight(*backHTTP, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	// Dial does not block: the connection is made on the first call.
	conn, err := grpc.Dial(*backGRPC, grpc.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	refusingConn, err := grpc.Dial(*backGRPC, grpc.WithInsecure(), grpc.WithUnaryInterceptor(refuse))
	if err != nil {
		log.Fatal(err)
	}
	f := &front{backHTTP: base, health: healthpb.NewHealthClient(conn), refusing: healthpb.NewHealthClient(refusingConn)}

	r := mux.NewRouter()
	r.HandleFunc("/api/items/{id:[0-9]+}", f.item).Methods(http.MethodGet)
	r.HandleFunc("/api/private/{id:[0-9]+}", f.private).Methods(http.MethodGet)
	r.HandleFunc("/api/health/{service}", f.healthCheck).Methods(http.MethodGet)
	r.HandleFunc("/api/watch/{service}", f.watch).Methods(http.MethodGet)
	r.HandleFunc("/api/refused/{service}", f.refused).Methods(http.MethodGet)
	r.HandleFunc("/api/unsent/{service}", f.unsent).Methods(http.MethodGet)
	r.HandleFunc("/api/async/{id:[0-9]+}", f.async).Methods(http.MethodGet)
	r.HandleFunc("/api/local", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "local")
	}).Methods(http.MethodGet)
	// Anything else: mux's own 404 (405 for a known path with another method).

	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	port := listener.Addr().(*net.TCPAddr).Port
	if *portFile != "" {
		if err := os.WriteFile(*portFile, []byte(strconv.Itoa(port)+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("front: listening on %s, back http %s, back grpc %s", listener.Addr(), base, *backGRPC)
	log.Fatal(http.Serve(listener, r))
}

// getItem makes the outgoing HTTP call and returns back's status and body.
func (f *front) getItem(url string) (int, []byte, error) {
	resp, err := http.DefaultClient.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// relay writes back's answer (or a 502 when back could not be reached).
func relay(w http.ResponseWriter, code int, body []byte, err error) {
	if err != nil {
		http.Error(w, "back unreachable: "+err.Error(), http.StatusBadGateway)
		return
	}
	w.WriteHeader(code)
	w.Write(body)
}

// GET /api/items/{id}: GET back /items/{id} on the handler's goroutine.
func (f *front) item(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	code, body, err := f.getItem(f.backHTTP + "/items/" + id + "?src=front")
	relay(w, code, body, err)
}

// GET /api/private/{id}: like item, but the URL carries user info
// (demo:s3cret@) that must never appear in a span.
func (f *front) private(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	url := strings.Replace(f.backHTTP, "://", "://demo:s3cret@", 1) + "/items/" + id + "?src=private"
	code, body, err := f.getItem(url)
	relay(w, code, body, err)
}

// GET /api/async/{id}: the outgoing call runs in a goroutine the handler
// starts, then the handler waits for it.
func (f *front) async(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	var (
		wg   sync.WaitGroup
		code int
		body []byte
		err  error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		code, body, err = f.getItem(f.backHTTP + "/items/" + id + "?src=async")
	}()
	wg.Wait()
	relay(w, code, body, err)
}

// GET /api/health/{service}: unary gRPC Check. back answers SERVING for ""
// and "backend" and NotFound for any other name; front maps that to 404.
func (f *front) healthCheck(w http.ResponseWriter, r *http.Request) {
	service := mux.Vars(r)["service"]
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	resp, err := f.health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	switch {
	case status.Code(err) == codes.NotFound:
		http.Error(w, "unknown service "+service, http.StatusNotFound)
	case err != nil:
		http.Error(w, "check failed: "+err.Error(), http.StatusBadGateway)
	default:
		fmt.Fprintln(w, resp.GetStatus().String())
	}
}

// GET /api/watch/{service}: server-streaming gRPC Watch. Reads the first
// status message, then cancels the stream (back sees Canceled).
func (f *front) watch(w http.ResponseWriter, r *http.Request) {
	service := mux.Vars(r)["service"]
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	stream, err := f.health.Watch(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		http.Error(w, "watch failed: "+err.Error(), http.StatusBadGateway)
		return
	}
	first, err := stream.Recv()
	if err != nil {
		http.Error(w, "watch failed: "+err.Error(), http.StatusBadGateway)
		return
	}
	fmt.Fprintln(w, first.GetStatus().String())
}

// refuse is a unary client interceptor that fails the call before it is sent,
// with an error that carries no gRPC status.
func refuse(ctx context.Context, method string, req, reply interface{}, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return errors.New("refused by the client's interceptor")
}

// GET /api/unsent/{service}: a health check that grpc fails before its stream
// exists, with status Internal: no codec is registered for the content subtype
// it asks for. Answers 502 with the error.
func (f *front) unsent(w http.ResponseWriter, r *http.Request) {
	_, err := f.health.Check(r.Context(), &healthpb.HealthCheckRequest{Service: mux.Vars(r)["service"]},
		grpc.CallContentSubtype("sonde-unregistered"))
	http.Error(w, fmt.Sprint(err), http.StatusBadGateway)
}

// GET /api/refused/{service}: a health check that the client's interceptor
// refuses; answers 502 with the error.
func (f *front) refused(w http.ResponseWriter, r *http.Request) {
	_, err := f.refusing.Check(r.Context(), &healthpb.HealthCheckRequest{Service: mux.Vars(r)["service"]})
	http.Error(w, fmt.Sprint(err), http.StatusBadGateway)
}
