// A C++ HTTP server on Debian's cpp-httplib whose handlers query PostgreSQL through libpq, for
// the cpp/httplib tests. Usage: server CONNINFO. Prints "listening PORT" once it accepts.
//   GET /hello          200 "hello"
//   GET /double/N       200 with N * 2, computed by the database (one connection per thread)
//   GET /unavailable    503
//   GET /throw          the handler throws: httplib answers 500
//   anything else       404 (no route)
#include <httplib.h>
#include <libpq-fe.h>

#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>

static std::string conninfo;

// Each of httplib's worker threads keeps its own connection: a PGconn is not shared.
static PGconn *connection() {
    thread_local std::unique_ptr<PGconn, void (*)(PGconn *)> conn(nullptr, PQfinish);
    if (!conn) conn.reset(PQconnectdb(conninfo.c_str()));
    return conn.get();
}

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CONNINFO\n", argv[0]);
        return 2;
    }
    conninfo = argv[1];
    httplib::Server server;
    server.Get("/hello", [](const httplib::Request &, httplib::Response &res) { res.set_content("hello", "text/plain"); });
    server.Get(R"(/double/(\d+))", [](const httplib::Request &req, httplib::Response &res) {
        std::string number = req.matches[1];
        const char *values[] = {number.c_str()};
        PGresult *result = PQexecParams(connection(), "select $1::int * 2", 1, nullptr, values, nullptr, nullptr, 0);
        if (PQresultStatus(result) == PGRES_TUPLES_OK) {
            res.set_content(PQgetvalue(result, 0, 0), "text/plain");
        } else {
            res.status = 500;
            res.set_content(PQerrorMessage(connection()), "text/plain");
        }
        PQclear(result);
    });
    server.Get("/unavailable", [](const httplib::Request &, httplib::Response &res) { res.status = 503; });
    server.Get("/throw", [](const httplib::Request &, httplib::Response &) -> void { throw std::runtime_error("handler failed"); });
    int port = server.bind_to_any_port("127.0.0.1");
    if (port < 0) {
        std::perror("bind");
        return 1;
    }
    std::printf("listening %d\n", port);
    std::fflush(stdout);
    return server.listen_after_bind() ? 0 : 1;
}
