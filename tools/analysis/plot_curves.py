"""Plot each loss term and the learning rate over the iterations, from the
scalars mmengine logged in one or more work dirs (several runs overlaid).

Example::

    python tools/analysis/plot_curves.py work_dirs/demo work_dirs/mae_demo \\
        --names NoiseMIM MAE --out work_dirs/curves.png

Reads ``<work_dir>/<timestamp>/vis_data/scalars.json`` (every launch of the
run, in order; a resumed launch replaces the iterations it logs again). A
timestamp folder or a ``scalars.json`` file works as well.
"""
import argparse
import os
import os.path as osp

from noisemim.analysis.curves import default_keys, load_runs, plot_curves


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        'runs', nargs='+', help='work dirs (or timestamp folders, or '
        'scalars.json files), one per run')
    parser.add_argument(
        '--names', nargs='+', help='a legend name per run; default: the '
        "work dir's folder name")
    parser.add_argument(
        '--keys', nargs='+', help='the scalars to draw; default: every loss '
        'term and lr')
    parser.add_argument(
        '--out', default='work_dirs/curves.png', help='the PNG to write')
    parser.add_argument(
        '--columns', type=int, default=3, help='subplots per row')
    parser.add_argument('--title', help='a title over the figure')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    runs = load_runs(args.runs, args.names)
    keys = args.keys or default_keys(runs)
    if osp.dirname(args.out):
        os.makedirs(osp.dirname(args.out), exist_ok=True)
    png = plot_curves(runs, args.out, keys, args.columns, args.title)
    for run in runs:
        steps = max((c[0][-1] for c in run.curves.values() if len(c[0])),
                    default=0)
        print(f'{run.name}: {len(run.sources)} log(s), up to iteration '
              f'{steps}')
    print(f'wrote {png} ({", ".join(keys)})')


if __name__ == '__main__':
    main()
