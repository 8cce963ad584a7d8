// The replay server of kinformer's benchmarks: a fake Kubernetes API server that serves synthetic
// objects built from recorded fixtures, as fast as it can. Standard library only.
module kinformer.bench/replay

go 1.26.0
