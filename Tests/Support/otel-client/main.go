// A client instrumented with the OpenTelemetry Go SDK: it starts a span and
// sends its W3C trace context with each request, as any SDK-instrumented
// upstream would.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func main() {
	provider := sdktrace.NewTracerProvider()
	ctx, span := provider.Tracer("sonde-test").Start(context.Background(), "upstream")
	request, err := http.NewRequestWithContext(ctx, "GET", os.Args[1], nil)
	if err != nil {
		panic(err)
	}
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(request.Header))
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		panic(err)
	}
	response.Body.Close()
	span.End()
	fmt.Println(span.SpanContext().TraceID(), span.SpanContext().SpanID())
}
