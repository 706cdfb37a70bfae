"""`simmim-ray` command line: train | search | check | report | convert, one module per command.

Bad input exits 2 with one line (`simmim-ray: error: ...`); no trace unless --debug. No feasible trial: exit 3.
Ctrl-C / SIGTERM: Ray stopped, one line saying how to resume, exit 130 / 143 (signals.py).
"""
from __future__ import annotations

import sys

from simmim_ray import signals
from simmim_ray.cli import check, convert, report, search, train
from simmim_ray.cli.args import Parser
from simmim_ray.errors import NoFeasibleTrial, UserError, one_line

COMMANDS = {"train": train, "search": search, "check": check, "report": report, "convert": convert}


def build_parser() -> Parser:
    p = Parser(prog="simmim-ray", description="SimMIM pre-training and constrained architecture search on Ray.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    signals.install()  # Ctrl-C and SIGTERM, for every command and stage (signals.py)
    try:
        args = build_parser().parse_args(argv)
        try:
            return COMMANDS[args.command].run(args)
        except UserError as e:
            if args.debug:
                raise
            print(f"simmim-ray: error: {one_line(e)}", file=sys.stderr)
            return 2
        except NoFeasibleTrial as e:
            print(f"simmim-ray: {one_line(e)}", file=sys.stderr)
            return 3
    except KeyboardInterrupt as e:
        signals.stop_ray()
        print(f"simmim-ray: {one_line(signals.message(e))}", file=sys.stderr, flush=True)
        return signals.exit_code(e)
    finally:
        signals.uninstall()


if __name__ == "__main__":
    sys.exit(main())
