# NoiseMIM ViT-L/16, ImageNet-1K, 224 px, 400 epochs, total batch 4096:
# 8 GPUs x 128 images x 4 accumulated batches per update. ~245 MB per sample
# in bf16 (estimated from ViT-B's measured ~92 MB) makes 128 per GPU ~31 GB of
# activations, with room to spare on an 80 GB GPU (256 x 2, ~63 GB, is the
# faster choice where it fits). Other GPU counts: docs/gpu.md.
_base_ = './noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py'
model = dict(
    backbone=dict(arch='l'),
    mim_head=dict(in_channels=1024),
    denoise_head=dict(in_channels=1024))
train_dataloader = dict(batch_size=128)
optim_wrapper = dict(accumulative_counts=4)
