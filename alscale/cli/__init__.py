"""The ``alscale`` command line: one module per command, errors become one line and exit 2.

Each command lives in its own module of this package and exposes a ``command`` attribute (a
:class:`click.Command`); :data:`COMMAND_MODULES` lists them.  Modules are imported lazily so
``alscale --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import click

from alscale import __version__
from alscale._signals import sigterm_as_interrupt
from alscale.exceptions import AlscaleError

__all__ = ["COMMAND_MODULES", "main"]

# command name -> module under alscale.cli
COMMAND_MODULES: dict[str, str] = {
    "bench": "bench",
    "demo": "demo",
    "init": "init",
    "inspect-model": "inspect_model",
    "label": "label",
    "listen": "listen",
    "pull": "pull",
    "push": "push",
    "round": "round",
    "select": "select",
    "simulate": "simulate",
    "status": "status",
}


class _LazyGroup(click.Group):
    """A group that imports command modules on demand and turns AlscaleError (and an unusable path) into exit 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(name)
        if module is None:
            return None
        return importlib.import_module(f"alscale.cli.{module}").command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:  # `alscale --bogus`: one line too
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `alscale`: click's help, as before
                raise
            _fail(f"{exc.format_message()} (see alscale --help)")

    def invoke(self, ctx: click.Context):
        try:
            with sigterm_as_interrupt():  # `timeout`, Kubernetes and CI stop a command with SIGTERM: cleaned up as at Ctrl-C
                return super().invoke(ctx)
        except AlscaleError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:  # Ctrl-C: what the command started is cleaned up by now; 130 as a shell reports SIGINT
            click.echo("alscale: interrupted", err=True)
            _exit_interrupted()
        except click.UsageError as exc:  # a bad flag value: the same one line, not click's usage block
            _fail(f"{_sibling_option(exc, ctx) or exc.format_message()} (see {_help_command(exc.ctx, ctx)})")
        except OSError as exc:
            if exc.filename is None:  # not about a path the user gave: a real fault, with its traceback
                raise
            # a path the user named cannot be used (a file where a folder is expected, no permission, ...)
            where = exc.filename2 or exc.filename  # a failed rename: its target is the user's path
            _fail(f"Cannot use {str(where)!r}: {exc.strerror or type(exc).__name__}.")


#: Commands whose options are easily given to the other one: ``alscale pull --path`` is push's.
_SIBLINGS = {"push": "pull", "pull": "push"}


def _sibling_option(exc: click.UsageError, group: click.Context) -> str | None:
    """For an option of the sibling command (``pull --path``), a message that says whose it is."""
    name = group.invoked_subcommand
    if not isinstance(exc, click.NoSuchOption) or name not in _SIBLINGS:
        return None
    sibling = group.command.get_command(group, _SIBLINGS[name])
    if not any(exc.option_name in p.opts for p in sibling.params if isinstance(p, click.Option)):
        return None
    return f"No such option {exc.option_name!r} for `alscale {name}`: it is an option of `alscale {_SIBLINGS[name]}`."


def _help_command(ctx: click.Context | None, group: click.Context | None = None) -> str:
    """``alscale SUBCOMMAND --help`` for the command whose flags were wrong (whatever argv[0] was).

    ``ctx`` is the failing command's context; click gives none for a flag that lacks its value,
    and then the ``group`` context names the subcommand being invoked.
    """
    if ctx is None and group is not None and group.invoked_subcommand:
        return f"alscale {group.invoked_subcommand} --help"
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(["alscale", *reversed(names), "--help"])


def _exit_interrupted() -> None:
    """Exit 130 after Ctrl-C, once the command's own clean-up has run.

    Ray's core worker, shut down a moment before, can still crash the interpreter as it
    finalizes (a segmentation fault in one of its threads, exit 139): a process of its own
    ends at once instead.  Inside another program (a test's runner) it exits as usual.
    """
    if "ray" in sys.modules and sys.stderr is sys.__stderr__ and sys.stdout is sys.__stdout__:
        import logging
        import os

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(130)


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"alscale: error: {' '.join(message.split())}", err=True)  # one line, whatever it held
    sys.exit(code)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="alscale")
def main() -> None:
    """alscale: pick the examples worth labeling from pools of millions.

    Score an unlabeled Parquet pool with an ONNX classifier on Ray actors, select a batch
    (uncertainty top-K, BADGE, core-set, Cluster-Margin, query-by-committee) and write a batch
    manifest that a labeling queue can take.

    Start with `alscale demo`; `alscale COMMAND --help` explains each command.
    """
