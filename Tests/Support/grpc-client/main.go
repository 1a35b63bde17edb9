// A gRPC client whose calls carry a traceparent in their metadata, as one
// instrumented with an OpenTelemetry SDK would send: health Check (unary) and
// Watch (a server stream, read once) on the address given, with a tracestate
// too when one is given.
//
//	grpc-client ADDRESS TRACEPARENT [TRACESTATE]
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	connection, err := grpc.DialContext(ctx, os.Args[1], grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		panic(err)
	}
	defer connection.Close()
	client := healthpb.NewHealthClient(connection)
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", os.Args[2])
	if len(os.Args) > 3 {
		ctx = metadata.AppendToOutgoingContext(ctx, "tracestate", os.Args[3])
	}
	check, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "backend"})
	if err != nil {
		panic(err)
	}
	watchContext, stop := context.WithCancel(ctx)
	watch, err := client.Watch(watchContext, &healthpb.HealthCheckRequest{Service: "backend"})
	if err != nil {
		panic(err)
	}
	first, err := watch.Recv()
	if err != nil {
		panic(err)
	}
	stop()
	fmt.Println(check.Status, first.Status)
}
