"""`python -m robustlth.ledger {status,run,render} EXPERIMENT`: see robustlth/ledger/__init__.py."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from ..cli import _Parser, int_at_least, number_in
from ..errors import RobustLTHError
from ..replicates import parse_seeds
from .cells import describe, load_records
from .plans import EXPERIMENTS
from .runner import Machine, render_experiment, run_pending


def build_parser():
    p = _Parser(prog="python -m robustlth.ledger", description="Run, show and render the results ledger's "
                "experiments: each a plan of cells whose records are committed under RESULTS/EXPERIMENT/cells/.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("status", "how many cells are recorded, stale and pending (per device)"),
                       ("run", "run the pending cells that fit the budget, in plan order, then re-render"),
                       ("render", "re-render the tables and figures from the committed records")):
        q = sub.add_parser(name, help=text, description=text)
        q.add_argument("experiment", help="one of: " + EXPERIMENTS.help())
        q.add_argument("--scale", default="full", choices=("full", "quick"),
                       help="full: the experiment itself; quick: the same plan in seconds on CPU (a dry run)")
        q.add_argument("--seeds", default="0,1,2", help="comma-separated distinct seeds of the plan (default 0,1,2)")
        q.add_argument("--results", type=Path, default=Path("benchmarks/results"),
                       help="folder of the experiments' records and tables (default benchmarks/results)")
        if name == "run":
            q.add_argument("--budget-s", type=number_in(0, low_open=True), default=None,
                           help="start a cell only if it is expected to end within this many seconds of the start "
                                "(default: run every pending cell)")
            q.add_argument("--cache", type=Path, default=Path("runs/ledger"),
                           help="stage cache: searches, checkpoints, partial cells (default runs/ledger; never "
                                "committed)")
            q.add_argument("--device", default="cpu", help="torch device for the cells (cpu, cuda, cuda:1)")
            q.add_argument("--workers", type=int_at_least(1, 64), default=1,
                           help="cells run at once, each in its own process (default 1)")
            q.add_argument("--threads", type=int_at_least(1, 1024), default=None,
                           help="torch threads per worker (default: torch's choice)")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        EXPERIMENTS.check(args.experiment, "experiment")
        seeds = parse_seeds(args.seeds)
        exp = EXPERIMENTS[args.experiment](args.scale)
        folder = args.results / exp.folder()
        if args.command == "status":
            print(json.dumps({"experiment": exp.folder(), **describe(exp.cells(seeds), load_records(folder))}))
        elif args.command == "render":
            print(json.dumps({"experiment": exp.folder(), "files": render_experiment(exp, folder, seeds)}))
        else:
            machine = Machine(args.device, args.workers, args.threads)
            summary = run_pending(args.experiment, args.scale, tuple(seeds), args.results, args.cache, args.budget_s,
                                  machine)
            print(json.dumps(summary))
    except RobustLTHError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
