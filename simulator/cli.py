"""The one front door: ``prakerja-sim`` and its subcommands.

Each subcommand lives beside the library it wraps and is imported only when it is run, so
``prakerja-sim population`` does not pay for importing Locust or the web stack.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from simulator import __version__
from simulator.errors import SimulatorError

# name -> "module:attribute" of a click command. Loaded lazily (see LazyGroup).
COMMANDS: dict[str, str] = {
    "population": "simulator.generators.cli:population",
    "nik": "simulator.generators.cli:nik",
    "ktp": "simulator.generators.ktp.cli:ktp",
    "serve": "simulator.api.cli:serve",
    "seed-db": "simulator.seed.cli:seed_db",
    "surge": "simulator.surge.cli:surge",
    "demo": "simulator.surge.cli:demo",
    "demand": "simulator.demand.cli:demand",
    "upstreams": "simulator.upstreams.cli:upstreams",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args, lazy_commands: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._available()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            return self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def _available(self) -> list[str]:
        names = []
        for name, target in self.lazy_commands.items():
            module_name = target.partition(":")[0]
            if importlib.util.find_spec(module_name) is not None:
                names.append(name)
        return names

    def _load(self, cmd_name: str) -> click.Command | None:
        module_name, _, attr = self.lazy_commands[cmd_name].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.startswith(err.name):
                return None  # that capability is not installed in this build
            raise
        return getattr(module, attr)


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="prakerja-sim")
def cli() -> None:
    """Make a Kartu Prakerja-style wave registration testable before it opens."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors end in one line on stderr and a non-zero exit."""
    try:
        # standalone_mode=False returns ctx.exit(code)'s code instead of raising SystemExit.
        rv = cli.main(args=argv, prog_name="prakerja-sim", standalone_mode=False)
        if isinstance(rv, int) and rv != 0:
            sys.exit(rv)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except SimulatorError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":
    main()
