"""The README and docs/: every relative link and image resolves (anchors
against the target's headings), the README stays short and starts with the
two commands, and every doc page is reachable from it."""
import glob
import os.path as osp
import re
from typing import Iterator, List, Set, Tuple

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
README = osp.join(ROOT, 'README.md')
PAGES = [README] + sorted(glob.glob(osp.join(ROOT, 'docs', '*.md')))
# [text](target) and ![alt](target "title"); the text may hold `code`.
LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?'
                  r'(?:\s+"[^"]*")?\s*\)')
FENCE = re.compile(r'^\s*(```|~~~)')
INLINE_CODE = re.compile(r'`[^`]*`')


def _prose(path: str) -> Iterator[Tuple[int, str]]:
    """Lines outside code fences, with inline code removed."""
    fenced = False
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if FENCE.match(line):
                fenced = not fenced
                continue
            if not fenced:
                yield number, INLINE_CODE.sub('', line)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation
    dropped (letters, digits, ``_``, ``-`` and spaces kept), spaces to
    hyphens."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # links
    text = text.replace('`', '').strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(path: str) -> Set[str]:
    """The anchors of a Markdown file's headings (duplicates get -1, -2...)."""
    seen, found = {}, set()
    fenced = False
    with open(path, encoding='utf-8') as f:
        for line in f:
            if FENCE.match(line):
                fenced = not fenced
            m = None if fenced else re.match(r'^#{1,6}\s+(.*?)\s*#*\s*$', line)
            if m:
                base = slug(m.group(1))
                n = seen.get(base, 0)
                seen[base] = n + 1
                found.add(base if n == 0 else f'{base}-{n}')
    return found


def relative_links(path: str) -> List[Tuple[int, str]]:
    links = []
    for number, line in _prose(path):
        for target in LINK.findall(line):
            if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.I):
                continue  # http:, https:, mailto:
            links.append((number, target))
    return links


def test_the_link_parser_and_slugs():
    line = ('See [a `b` c](docs/x.md#sec-one), ![img](figures/p.png "t") and '
            '[web](https://example.org).')
    assert LINK.findall(line) == ['docs/x.md#sec-one', 'figures/p.png',
                                  'https://example.org']
    assert slug('Object detection: ViTDet-style Mask R-CNN (mmdet)') == (
        'object-detection-vitdet-style-mask-r-cnn-mmdet')
    assert slug('The grid: `configs/pretrain/study/`') == (
        'the-grid-configspretrainstudy')
    assert slug("What is the paper's and what is ours") == (
        'what-is-the-papers-and-what-is-ours')


@pytest.mark.parametrize('page', PAGES, ids=lambda p: osp.relpath(p, ROOT))
def test_every_relative_link_resolves(page):
    broken = []
    for number, target in relative_links(page):
        file_part, _, anchor = target.partition('#')
        dest = page if not file_part else osp.normpath(
            osp.join(osp.dirname(page), file_part))
        where = f'{osp.relpath(page, ROOT)}:{number}: {target}'
        if not osp.exists(dest):
            broken.append(f'{where} (no {osp.relpath(dest, ROOT)})')
        elif anchor and dest.endswith('.md') and anchor not in anchors(dest):
            broken.append(f'{where} (no heading with anchor #{anchor})')
    assert not broken, 'broken links:\n' + '\n'.join(broken)


def test_readme_is_short_and_starts_with_the_two_commands():
    with open(README, encoding='utf-8') as f:
        lines = f.read().splitlines()
    assert len(lines) <= 250, f'README.md has {len(lines)} lines (max 250)'
    head = '\n'.join(lines[:40])
    assert 'make demo' in head and 'make test' in head


def test_every_doc_page_is_linked_from_the_readme():
    linked = {
        osp.normpath(osp.join(ROOT, t.partition('#')[0]))
        for _, t in relative_links(README)
    }
    unlinked = [osp.relpath(p, ROOT) for p in PAGES[1:] if p not in linked]
    assert not unlinked, f'docs not linked from README.md: {unlinked}'
