"""Engine throughput against raw ONNX Runtime (same as ``alscale bench``).

    python benchmarks/bench_engine.py --rows 2000000 --scaling 1000000 --scaling 4000000

Prints rows/s, the ratio pipeline / (actors x raw single-thread onnxruntime) and peak memory
of the driver and each actor; writes bench-results/engine.json.
"""

from alscale.cli.bench import command

if __name__ == "__main__":
    command(prog_name="bench_engine")
