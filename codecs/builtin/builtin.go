// Package builtin assembles the codec registry the plugin uses: the protocols Meltemi ships
// (dubbo, thrift) plus any third-party codecs compiled into the same binary.
package builtin

import (
	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/codecs/dubbo"
	"github.com/meltemi-mesh/meltemi/codecs/thrift"
)

// Factories returns the factories of the built-in protocols.
func Factories() []codecs.Factory {
	return []codecs.Factory{dubbo.Factory{}, thrift.Factory{}}
}

// Registry returns a registry of the built-in protocols and extra. A third-party codec whose
// name collides with a built-in one is an error, not an override.
func Registry(extra ...codecs.Factory) (*codecs.Registry, error) {
	return codecs.NewRegistry(append(Factories(), extra...)...)
}
