"""`jaxrec demo [--out DIR] [--quick] [--seed S]`: the whole flow on the embedded synthetic
default. A fixed amount of work: the same figures on 1 core and on 2 for the same seed (two
compute threads by default, see `add_parser`)."""

from __future__ import annotations

import json


def _run(args) -> int:
    from jaxrec.recipes import demo, report

    cfg = demo.DemoConfig.quick(seed=args.seed) if args.quick else demo.DemoConfig(seed=args.seed)
    result = demo.run_demo(args.out, cfg)
    systems = result["systems"]
    print(f"report: {result['paths']['report']}")
    for name in (n for n in report.SYSTEM_ORDER if n in systems):
        m = systems[name]
        print(f"  {name:>17s}  recall@10 {m['recall@10']:.4f}  ndcg@10 {m['ndcg@10']:.4f}")
    print(f"total {result['timings']['total']:.0f} s")
    if args.json:
        print(json.dumps(systems, sort_keys=True))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="data -> ids -> tasks -> train -> eval -> report")
    p.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument("--quick", action="store_true", help="small CI setting (about 2 minutes)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data, the index, the models and the data order")  # fmt: skip
    p.add_argument("--json", action="store_true")
    # Two compute threads for the generative model (SASRec's worker keeps one): at the demo's
    # shapes XLA gives the same numbers with 1 and 2 threads (every loss, validation point and
    # test figure compared), so a 1-core machine still gets the same figures, later.
    p.set_defaults(func=_run, cpu_threads_default=2)
