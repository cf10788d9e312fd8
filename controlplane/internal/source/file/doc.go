// Package file is the controller's file source: it reads a directory of Kubernetes-style YAML
// manifests (the objects one would kubectl apply) into model.Inputs, and watches it so that
// edits apply live. It is the embedded default that runs without a cluster (`make run` points
// it at envoy-config/demo/).
//
// Files are *.yaml and *.yml anywhere under the directory, each holding one or more
// documents separated by "---". Hidden files and directories (a leading "."), which is also
// where ConfigMap mounts keep their timestamped data, and editor temporaries are ignored.
// Kinds read:
//
//   - MetaRouter (metaprotocol.meltemi.io/v1alpha1, and Aeraki's metaprotocol.aeraki.io/v1alpha1
//     into the same type, its apiVersion kept) and ApplicationProtocol, validated with the
//     OpenAPI schema and CEL rules of the CRDs in controlplane/config/crd, as the API server
//     would;
//   - Service and Pod (v1; of Pods only metadata is kept) and EndpointSlice (discovery.k8s.io/v1);
//   - ServiceEntry, WorkloadEntry and DestinationRule (networking.istio.io v1alpha3, v1beta1
//     and v1, all held as v1), checked for the fields without which they mean nothing.
//
// Decoding is strict: a field the type does not have is an error naming the document and
// the field's path, because a misspelt field silently ignored is a routing rule that does not
// apply. Other kinds are skipped with a warning, so the directory may hold a whole mesh's
// manifests. Objects without a namespace are in "default". An object defined in two files is
// an error of the file that comes later in path order.
//
// Load reads a directory once. Source.Run reads it, then watches it: a file that fails to
// read, parse or validate is reported (log and metrics) and the last content of that file
// that was good stays in effect, so a typo never takes routes away; a deleted file's objects
// go away. Changes are noticed through fsnotify events anywhere in the tree (new
// subdirectories are watched as they appear), coalesced until the directory has been quiet
// for 50 ms, then the tree is read again and only files whose bytes changed are parsed again;
// the output is called only when the objects in effect changed. Symbolic links to files are
// followed: a ConfigMap volume's atomic swap of its "..data" link is an event in the
// directory and is seen, but an in-place edit of a link's target outside the tree is not.
package file
