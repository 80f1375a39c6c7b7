"""Engine throughput against raw ONNX Runtime: ``alscale bench`` itself, run as a script.

    python benchmarks/bench_engine.py --rows 2000000 --scaling 1000000 --scaling 4000000

Prints rows/s over the timed scan, the ratio pipeline / (actors x raw single-thread
onnxruntime) and peak memory of the benchmark process and of each actor; writes
bench-results/engine.json.  Options, messages and exit codes are those of ``alscale bench``
(bad input: one line, exit 2; Ctrl-C or SIGTERM: cleaned up, exit 130), because this runs the
same entry point.
"""

import sys

from alscale.cli import main

if __name__ == "__main__":
    main(["bench", *sys.argv[1:]], prog_name="alscale")
