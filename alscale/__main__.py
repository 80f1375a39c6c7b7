"""``python -m alscale``: the command line."""

from alscale.cli import main

if __name__ == "__main__":
    main(prog_name="alscale")
