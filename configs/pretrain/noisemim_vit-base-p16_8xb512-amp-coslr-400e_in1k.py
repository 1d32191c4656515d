# NoiseMIM ViT-B/16, ImageNet-1K, 224 px, 400 epochs, total batch 4096
# (8 GPUs x 512). 512 images per GPU take ~47 GB of activations in bf16 (the
# measured ~92 MB per sample), inside an 80 GB GPU; other GPU counts and
# smaller GPUs: docs/gpu.md (batch x accumulative_counts, lr scaled to match).
_base_ = [
    '../_base_/models/noisemim_vit-base-p16.py',
    '../_base_/datasets/imagenet_bs512_noisemim.py',
    '../_base_/schedules/adamw_coslr_400e_bs4096.py',
    '../_base_/default_runtime.py',
]
# bf16 mixed precision without a loss scaler (bf16 has fp32's exponent range);
# the loss terms are computed in fp32. tools/train.py --precision auto switches
# to fp16 with a dynamic loss scaler on GPUs without bf16, and to fp32 on a CPU
# without native bf16 (docs/gpu.md, "Precision").
optim_wrapper = dict(
    type='AmpOptimWrapper', dtype='bfloat16', loss_scale=dict(enabled=False))
