"""keel.mem: allocation-trace tools (docs/mem.md); snapshot_to_trace converts PyTorch CUDA
memory snapshots into keel traces."""
