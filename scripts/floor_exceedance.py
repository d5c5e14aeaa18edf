"""How often a perfect generator fails "within k x of the floor's p95" of a zero-centred metric.

    python scripts/floor_exceedance.py --runs 60 --k 1.5                 # the default run
    python scripts/floor_exceedance.py --runs 30 --set dataset.name=gmm-ring

For run seeds 0 .. runs-1, the run config is composed as ``diffctl run`` composes it (the
embedded default plus ``--set`` overrides), and a fresh real sample stands in for the model's
samples (drawn with the seed of the run's ``sample`` stream, so independent of the reference
and of the floors). The metric is computed against the run's reference sample and divided by
the run's own floor p95 (:func:`diffctl.runs.evaluation.metric_floors`, the floors of the
final evaluation), exactly as a run's report reads it. Prints each ratio and the share above
``k``: the rate at which the real distribution itself fails the target, which no model can
beat. Unbiased MMD² has a right-skewed null, and its p95 is estimated from 20 draws, so the
rate is not the nominal 5% / k.
"""

from __future__ import annotations

import argparse

import numpy as np

from diffctl.registry import get_registry
from diffctl.runs.components import build_dataset
from diffctl.runs.config import compose
from diffctl.runs.evaluation import metric_floors, metric_options_on
from diffctl.seeds import stream_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=60, help="run seeds 0 .. runs-1")
    parser.add_argument("--k", type=float, default=1.5, help="the target: value <= k x p95")
    parser.add_argument("--metric", default="mmd-rbf", help="a zero-centred sample metric")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="a config override, as diffctl run --set")
    args = parser.parse_args()
    registry = get_registry()
    if not registry.metric_info(args.metric).zero_centred:
        parser.error(f"{args.metric} is not zero-centred: its floor is read at its mean")

    ratios = []
    for seed in range(args.runs):
        config = compose(seed=seed, metrics=[args.metric], overrides=args.overrides)
        dataset = build_dataset(config, registry)
        options = metric_options_on(config, registry, "cpu")
        n = config.sample.num_samples
        real = dataset.reference(n, stream_seed(seed, "reference"))
        stand_in = dataset.reference(n, stream_seed(seed, "sample"))
        value = registry.create("metric", args.metric, options.get(args.metric))(
            stand_in, real)[args.metric]
        floor = metric_floors(registry, [args.metric], options, dataset, n,
                              config.eval.floor_draws, seed)[args.metric]
        ratios.append(value / floor["p95"])
        print(f"seed {seed:3d}  {args.metric} {value:+.3e}  floor p95 {floor['p95']:.3e}  "
              f"ratio {ratios[-1]:+.2f}", flush=True)
    r = np.asarray(ratios)
    above = int((r > args.k).sum())
    print(f"{config.dataset.name}, {n} vs {n} points: an independent real sample exceeds "
          f"{args.k:g} x p95 in {above} of {len(r)} run seeds ({above / len(r):.1%}); "
          f"ratio mean {r.mean():+.2f}, max {r.max():.2f}")


if __name__ == "__main__":
    main()
