// IDL of the `make run` demo: the service that the demo's Thrift servers v1 and v2 serve and
// that the demo client calls through the Meltemi listener.

namespace go echo

service Echo {
  // Returns the server's name and msg, as "<name>: <msg>".
  string echo(1: string msg),
}
