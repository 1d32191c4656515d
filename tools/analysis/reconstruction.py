"""Reconstruction view: the original image, the corrupted encoder input and
the MIM and denoise reconstructions side by side, per model and image.

Supports NoiseMIM checkpoints (``noise_ratio=0`` is the SimMIM-style ViT) and
mmpretrain MAE checkpoints (masked input and the decoder's reconstruction; MAE
has no denoising). In the input, masked patches are gray and patches noised in
feature space are tinted red (pixel noise is drawn as it is).

Example::

    python tools/analysis/reconstruction.py work_dirs/demo/iter_200.pth \\
        --config configs/pretrain/noisemim_vit-tiny_demo.py \\
        --out-dir docs/figures

Writes ``reconstruction.png`` and ``reconstruction.json`` (per image, the mean
squared error against the training targets on the masked and noised patches).
"""
import argparse
import os.path as osp

from noisemim.analysis import (image_batches, image_paths, reconstruct,
                               reconstructor_for, to_display)
from noisemim.analysis.cli import (add_image_args, add_model_args, load_models,
                                   output_path, write_json)
from noisemim.analysis.plots import corrupted_view, plot_reconstructions

COLUMNS = ('original', 'encoder input', 'MIM reconstruction',
           'denoise reconstruction')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_model_args(parser)
    add_image_args(parser, num_images=4)
    parser.add_argument(
        '--seed', type=int, default=0, help='seeds the mask and the noise')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    paths = image_paths(args.images, args.num_images)
    models = load_models(args)
    for _, model in models:
        reconstructor_for(model)  # fail before any work if one is missing
    rows, numbers = [], {}
    for label, model in models:
        numbers[label] = {}
        names = iter(paths)
        batches = image_batches(model, paths, args.batch_size, label)
        for step, inputs in enumerate(batches):
            rec = reconstruct(model, inputs, seed=args.seed + step)
            shown = {
                'original':
                to_display(rec.original, model),
                'encoder input':
                to_display(rec.corrupted, model),
                'MIM reconstruction':
                to_display(rec.mim, model),
                'denoise reconstruction':
                None if rec.denoise is None else to_display(
                    rec.denoise, model),
            }
            for i in range(inputs.shape[0]):
                name = osp.basename(next(names))
                mask = rec.mask[i].cpu().numpy()
                noised = (None if rec.noised is None else
                          rec.noised[i].cpu().numpy())
                panels = {
                    k: None if v is None else v[i].numpy()
                    for k, v in shown.items()
                }
                panels['encoder input'] = corrupted_view(
                    panels['encoder input'],
                    mask,
                    noised,
                    rec.patch_size,
                    tint_noised=not rec.noise_in_pixels)
                rows.append((f'{label}\n{name}', panels))
                numbers[label][name] = dict(
                    masked_share=float(mask.mean()),
                    noised_share=0.
                    if noised is None else float(noised.mean()),
                    **{
                        f'{k}_mse': v[i].item()
                        for k, v in rec.errors.items()
                    })
    out = args.out_dir
    write_json(output_path(out, 'reconstruction.json'), numbers)
    png = plot_reconstructions(rows, output_path(out, 'reconstruction.png'))
    print(f'wrote {png} and reconstruction.json ({len(paths)} images)')


if __name__ == '__main__':
    main()
