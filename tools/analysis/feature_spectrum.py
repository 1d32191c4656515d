"""Frequency spectrum of each block's features: the relative log amplitude of
the highest frequency against the zero frequency (Park & Kim 2022), per block;
several checkpoints in one figure.

Example::

    python tools/analysis/feature_spectrum.py work_dirs/demo/iter_200.pth \\
        --config configs/pretrain/noisemim_vit-tiny_demo.py \\
        --out-dir docs/figures

Writes ``feature_spectrum.png``, ``feature_spectrum.csv`` (model, block,
``Delta log amplitude`` at the highest frequency) and ``feature_spectrum.json``
(the full profiles from frequency 0 to pi).
"""
import argparse

from noisemim.analysis import image_paths, measure_feature_spectrum
from noisemim.analysis.cli import (add_image_args, add_model_args, load_models,
                                   output_path, write_csv, write_json)
from noisemim.analysis.plots import plot_feature_spectrum


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_model_args(parser)
    add_image_args(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    paths = image_paths(args.images, args.num_images)
    profiles, rows = {}, []
    for label, model in load_models(args):
        spectrum = measure_feature_spectrum(model, paths, args.batch_size,
                                            label)
        profiles[label] = {b: p.tolist() for b, p in spectrum.items()}
        rows += [(label, b, f'{p[-1]:.6g}')
                 for b, p in profiles[label].items()]
    out = args.out_dir
    write_csv(
        output_path(out, 'feature_spectrum.csv'),
        ('model', 'block', 'delta_log_amplitude_high'), rows)
    write_json(
        output_path(out, 'feature_spectrum.json'),
        dict(
            images=len(paths),
            frequencies='diagonal from 0 to pi (in units of pi: '
            'linspace(0, 1, len(profile)))',
            profiles={
                m: {
                    str(b): p
                    for b, p in v.items()
                }
                for m, v in profiles.items()
            }))
    png = plot_feature_spectrum(profiles,
                                output_path(out, 'feature_spectrum.png'))
    print(f'wrote {png} and feature_spectrum.csv/.json ({len(paths)} images)')


if __name__ == '__main__':
    main()
