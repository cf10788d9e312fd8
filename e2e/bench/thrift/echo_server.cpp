// The Thrift backend of the end-to-end benchmark: Bench.echo on a TNonblockingServer
// (framed TBinaryProtocol, one I/O thread), as a typical C++ Thrift service is deployed.
// Usage: echo_server PORT   (prints "ready PORT" once listening; PORT 0 picks one)
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/server/TNonblockingServer.h>
#include <thrift/server/TServer.h>
#include <thrift/transport/TNonblockingServerSocket.h>

#include "Bench.h"

namespace {

class Handler : public meltemi_bench::BenchIf {
 public:
  void echo(std::string& out, const std::string& payload) override { out = payload; }
};

// Ready prints the bound port once the server listens, which serve() does itself.
class Ready : public apache::thrift::server::TServerEventHandler {
 public:
  explicit Ready(apache::thrift::server::TNonblockingServer* server) : server_(server) {}
  void preServe() override {
    std::printf("ready %d\n", server_->getListenPort());
    std::fflush(stdout);
  }

 private:
  apache::thrift::server::TNonblockingServer* server_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s PORT\n", argv[0]);
    return 2;
  }
  using apache::thrift::server::TNonblockingServer;
  auto socket = std::make_shared<apache::thrift::transport::TNonblockingServerSocket>(
      "127.0.0.1", std::atoi(argv[1]));
  auto processor = std::make_shared<meltemi_bench::BenchProcessor>(std::make_shared<Handler>());
  TNonblockingServer server(processor, socket);
  server.setNumIOThreads(1);
  server.setServerEventHandler(std::make_shared<Ready>(&server));
  server.serve();
  return 0;
}
