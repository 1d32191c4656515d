"""Markdown tables and the accelerator peaks that model FLOP utilisation needs."""
from typing import Dict, List, Optional, Sequence

# Dense bf16 tensor-core peaks in FLOP/s (vendor data sheets, no sparsity),
# most specific name first: "NVIDIA H200 NVL" must not match "H200", nor
# "NVIDIA H100 PCIe" the SXM part. The SXM parts report no form factor
# ("NVIDIA H100 80GB HBM3", "NVIDIA H200").
PEAK_BF16_FLOPS = (
    ('GH200', 989.4e12),
    ('H200 NVL', 835.5e12),
    ('H200', 989.4e12),  # SXM
    ('H100 NVL', 835.5e12),
    ('H100 PCIe', 756.5e12),
    ('H100', 989.4e12),  # SXM5
    ('A100', 312.0e12),
    ('L40S', 362.1e12),
    ('A10G', 70.0e12),
    ('RTX 4090', 165.2e12),
)


def peak_bf16_flops(device_name: str) -> Optional[float]:
    """The dense bf16 peak of a known accelerator.

    Args:
        device_name (str): e.g. ``torch.cuda.get_device_name()``.

    Returns:
        float | None: FLOP/s, or None for a device not in the table.
    """
    for key, peak in PEAK_BF16_FLOPS:
        if key.lower() in device_name.lower():
            return peak
    return None


def format_table(columns: Sequence[str], rows: List[Dict[str, str]]) -> str:
    """A Markdown table.

    Args:
        columns (Sequence[str]): Column headers, in order.
        rows (List[Dict[str, str]]): Cells by header; missing ones are empty.

    Returns:
        str: The table, one line per row.
    """
    lines = ['| ' + ' | '.join(columns) + ' |',
             '|' + '|'.join(' --- ' for _ in columns) + '|']
    for row in rows:
        lines.append('| ' + ' | '.join(str(row.get(c, '')) for c in columns) +
                     ' |')
    return '\n'.join(lines)
