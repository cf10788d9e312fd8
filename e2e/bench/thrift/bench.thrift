// IDL of the end-to-end benchmark's Thrift backend (echo_server.cpp); the load generator
// encodes the same call by hand (e2e/bench/loadgen).

namespace cpp meltemi_bench

service Bench {
  // Returns payload.
  binary echo(1: binary payload),
}
