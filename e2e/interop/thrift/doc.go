// Package thriftinterop tests Meltemi's Thrift codec against real third-party Thrift peers:
// github.com/apache/thrift (Go) and Debian's python3-thrift, as clients and servers, talking
// through the codecproxy relay in every transport and protocol they share.
//
// echo.thrift is the IDL; gen-go holds its committed Go bindings (regenerate with
// generate.sh); peer.py is the Python server and client, whose bindings the tests generate
// at run time.
package thriftinterop
