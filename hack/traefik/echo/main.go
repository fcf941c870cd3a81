// Command echo is the backend of the local traffic checks: an HTTP server that answers every request with
// the name it was started with (body and X-Backend header), so a client in front of a router can count
// which backend served each request. Standard library only; keep-alive on, so a load test measures the
// router rather than connection set-up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	name := flag.String("name", "", "the name every response carries (required)")
	listen := flag.String("listen", ":8080", "address to listen on")
	flag.Parse()
	if *name == "" {
		fmt.Fprintln(os.Stderr, "echo: -name is required")
		os.Exit(2)
	}
	body := []byte(*name + "\n")
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Backend", *name)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(body)
	})
	server := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 90 * time.Second}

	// SIGTERM from the kubelet: finish the requests in flight, then exit 0.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdown)
	}()
	log.Printf("echo %q listening on %s", *name, *listen)
	if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
