"""Attention-head diversity per block: KL divergence between every pair of
heads, averaged over query tokens and images; several checkpoints in one
figure.

Example::

    python tools/analysis/head_diversity.py work_dirs/demo/iter_200.pth \\
        --config configs/pretrain/noisemim_vit-tiny_demo.py \\
        --out-dir docs/figures

Writes ``head_diversity.png``, ``head_diversity.csv`` (model, block, head,
mean KL to the other heads; ``head=mean`` for the block mean) and
``head_diversity.json`` (the full KL matrices).
"""
import argparse

from noisemim.analysis import image_paths, measure_head_diversity, per_head_kl
from noisemim.analysis.cli import (add_image_args, add_model_args, load_models,
                                   output_path, write_csv, write_json)
from noisemim.analysis.plots import plot_head_diversity


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_model_args(parser)
    add_image_args(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    paths = image_paths(args.images, args.num_images)
    per_head, matrices, rows = {}, {}, []
    for label, model in load_models(args):
        kl = measure_head_diversity(model, paths, args.batch_size, label)
        per_head[label] = {b: per_head_kl(m).tolist() for b, m in kl.items()}
        matrices[label] = {str(b): m.tolist() for b, m in kl.items()}
        for b, heads in per_head[label].items():
            rows += [(label, b, h, f'{v:.6g}') for h, v in enumerate(heads)]
            rows.append((label, b, 'mean', f'{sum(heads) / len(heads):.6g}'))
    out = args.out_dir
    write_csv(
        output_path(out, 'head_diversity.csv'),
        ('model', 'block', 'head', 'kl'), rows)
    write_json(
        output_path(out, 'head_diversity.json'),
        dict(images=len(paths), kl_matrix=matrices))
    png = plot_head_diversity(per_head, output_path(out, 'head_diversity.png'))
    print(f'wrote {png} and head_diversity.csv/.json ({len(paths)} images)')


if __name__ == '__main__':
    main()
