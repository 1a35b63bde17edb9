//! A hyper 0.14 HTTP/1 server the rust/hyper tests trace. Prints "listening PORT" once bound.
//!   GET /hello        200 "hello"
//!   GET /unavailable  503
//!   anything else     404
use std::convert::Infallible;
use std::net::SocketAddr;

use hyper::service::{make_service_fn, service_fn};
use hyper::{Body, Request, Response, Server, StatusCode};

async fn handle(request: Request<Body>) -> Result<Response<Body>, Infallible> {
    let status = match request.uri().path() {
        "/hello" => StatusCode::OK,
        "/unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::NOT_FOUND,
    };
    let body = if status == StatusCode::OK { "hello" } else { "" };
    Ok(Response::builder().status(status).body(Body::from(body)).unwrap())
}

#[tokio::main(worker_threads = 2)]
async fn main() {
    let services = make_service_fn(|_| async { Ok::<_, Infallible>(service_fn(handle)) });
    let server = Server::bind(&SocketAddr::from(([127, 0, 0, 1], 0))).serve(services);
    println!("listening {}", server.local_addr().port());
    if let Err(error) = server.await {
        eprintln!("server error: {error}");
        std::process::exit(1);
    }
}
