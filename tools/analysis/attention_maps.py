"""Attention maps: the class token's attention in the last block, per head and
averaged over heads, drawn over the input images.

Example::

    python tools/analysis/attention_maps.py work_dirs/demo/iter_200.pth \\
        --config configs/pretrain/noisemim_vit-tiny_demo.py \\
        --out-dir docs/figures

Writes ``attention_maps.png`` (a row per model and image) and
``attention_maps.json`` (each head's map over the patch grid, summing to 1,
and the attention share the class token keeps for itself).
"""
import argparse
import os.path as osp

from noisemim.analysis import (class_token_attention, image_batches,
                               image_paths, probe_encoder, to_display,
                               vit_encoder)
from noisemim.analysis.cli import (add_image_args, add_model_args, load_models,
                                   output_path, write_json)
from noisemim.analysis.plots import plot_attention_maps


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_model_args(parser)
    add_image_args(parser, num_images=4)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    paths = image_paths(args.images, args.num_images)
    rows, numbers = [], {}
    for label, model in load_models(args):
        last = len(vit_encoder(model).layers) - 1
        numbers[label] = dict(block=last, images={})
        names = iter(paths)
        for inputs in image_batches(model, paths, args.batch_size, label):
            probe = probe_encoder(model, inputs, blocks=[last])
            attn = class_token_attention(probe.attention[0],
                                         probe.num_extra_tokens,
                                         probe.patch_resolution)
            for image, maps, mean_map, share in zip(
                    to_display(inputs, model).numpy(), attn.maps.cpu(),
                    attn.mean_map.cpu(), attn.extra_share.cpu()):
                name = osp.basename(next(names))
                rows.append((f'{label}\n{name}', image, mean_map, maps))
                numbers[label]['images'][name] = dict(
                    class_token_self_share=share.tolist(),
                    mean_map=mean_map.tolist(),
                    head_maps=maps.tolist())
    out = args.out_dir
    write_json(output_path(out, 'attention_maps.json'), numbers)
    png = plot_attention_maps(rows, output_path(out, 'attention_maps.png'))
    print(f'wrote {png} and attention_maps.json ({len(paths)} images)')


if __name__ == '__main__':
    main()
