// IDL of the interop tests: the services that real Thrift peers (apache/thrift Go and
// Debian's python3-thrift) serve and call through the Meltemi codec relay.

namespace go echo
namespace py echo

exception EchoError {
  1: string message
}

service Echo {
  // Returns msg.
  string echo(1: string msg),
  // Records msg; lastFired returns it, which proves the oneway call arrived.
  oneway void fire(1: string msg),
  // Returns the msg of the last fire call the server handled, or "".
  string lastFired(),
  // Always throws EchoError{message: msg}: a declared exception.
  string fail(1: string msg) throws (1: EchoError err),
  // Returns the value of the THeader info header `key` the server received with this call,
  // or "" when there is none (or the transport has no headers).
  string header(1: string key),
}

// A second service, served next to Echo by a multiplexed server.
service Calc {
  i32 add(1: i32 a, 2: i32 b),
}
