// Package dubbointerop tests Meltemi's Dubbo codec against real third-party Dubbo peers:
// dubbo.apache.org/dubbo-go/v3 as consumer and provider (dubbo protocol, hessian2, direct
// URL, no registry) and a raw client that encodes its bodies with
// github.com/apache/dubbo-go-hessian2, all talking through the codecproxy relay.
//
// The provider runs in a subprocess (the test binary itself, re-executed by TestMain) so that
// it can be killed at once: dubbo-go's graceful shutdown takes many seconds. The consumer runs
// in the test process, where the tests can look at what it receives.
package dubbointerop
